//! Who may connect, as flags for both servers, and `rtchat token`.

use clap::Args;
use std::time::Duration;

/// Who may connect, for both servers.
#[derive(Debug, Clone, Args)]
pub struct AuthArgs {
    /// `off` (anyone), `optional` (anonymous allowed; a token given must be
    /// valid) or `required` (a valid JWT for every connection).
    #[arg(long, env = "AUTH", default_value = "off", value_parser = clap::value_parser!(crate::auth::Mode))]
    pub auth: crate::auth::Mode,

    /// HS256 secret that tokens are signed with (at least 16 bytes).
    #[arg(long, env = "JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,

    /// The HS256 secret read from this file instead (a mounted secret; a
    /// trailing newline is not part of it).
    #[arg(long, env = "JWT_SECRET_FILE", conflicts_with = "jwt_secret")]
    pub jwt_secret_file: Option<std::path::PathBuf>,

    /// PEM public key (RSA for RS256, EC P-256 for ES256) that tokens are
    /// signed with, instead of a secret.
    #[arg(long, env = "JWT_PUBLIC_KEY_FILE", conflicts_with_all = ["jwt_secret", "jwt_secret_file"])]
    pub jwt_public_key_file: Option<std::path::PathBuf>,
}

/// A secret kept in a file, without the newline editors and `echo` add.
/// Every secret file is read here, once, at start; an empty one is
/// refused, whichever flag names it.
pub(super) fn read_secret(path: &std::path::Path, flag: &str) -> anyhow::Result<Vec<u8>> {
    use anyhow::Context;
    let mut secret =
        std::fs::read(path).with_context(|| format!("cannot read {flag} {}", path.display()))?;
    while secret.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        secret.pop();
    }
    if secret.is_empty() {
        anyhow::bail!("{flag} {} is empty", path.display());
    }
    Ok(secret)
}

impl AuthArgs {
    /// The verifier these flags describe; reads the key file.
    pub fn verifier(&self) -> anyhow::Result<crate::auth::Verifier> {
        use anyhow::Context;
        let key = match (
            &self.jwt_secret,
            &self.jwt_secret_file,
            &self.jwt_public_key_file,
        ) {
            (Some(secret), _, _) => {
                Some(crate::auth::KeySource::Secret(secret.as_bytes().to_vec()))
            }
            (None, Some(path), _) => Some(crate::auth::KeySource::Secret(read_secret(
                path,
                "--jwt-secret-file",
            )?)),
            (None, None, Some(path)) => Some(crate::auth::KeySource::PublicKeyPem(
                std::fs::read(path).with_context(|| {
                    format!("cannot read --jwt-public-key-file {}", path.display())
                })?,
            )),
            (None, None, None) => None,
        };
        crate::auth::Verifier::new(self.auth, key.as_ref()).map_err(anyhow::Error::msg)
    }
}

#[derive(Debug, Clone, Args)]
pub struct TokenArgs {
    /// The member's user id (`sub`).
    #[arg(long)]
    pub sub: String,

    /// Display name (`name`).
    #[arg(long)]
    pub name: Option<String>,

    /// Room patterns the token allows (`rooms`; `*` matches any run of
    /// characters), comma-separated. Any room when absent.
    #[arg(long, value_delimiter = ',')]
    pub rooms: Option<Vec<String>>,

    /// Space-separated scopes (`scope`), e.g. `users:write` for the gRPC
    /// write methods.
    #[arg(long)]
    pub scope: Option<String>,

    /// How long the token is valid.
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    pub ttl: Duration,

    /// The HS256 secret the servers verify with.
    #[arg(
        long,
        env = "JWT_SECRET",
        hide_env_values = true,
        required_unless_present = "jwt_secret_file"
    )]
    pub jwt_secret: Option<String>,

    /// Or the file it is kept in.
    #[arg(long, env = "JWT_SECRET_FILE", conflicts_with = "jwt_secret")]
    pub jwt_secret_file: Option<std::path::PathBuf>,
}

impl TokenArgs {
    fn secret(&self) -> anyhow::Result<Vec<u8>> {
        match (&self.jwt_secret, &self.jwt_secret_file) {
            (Some(secret), _) => Ok(secret.as_bytes().to_vec()),
            (None, Some(path)) => read_secret(path, "--jwt-secret-file"),
            (None, None) => anyhow::bail!("--jwt-secret or --jwt-secret-file is required"),
        }
    }

    /// `rtchat token`: a token signed with the configured secret.
    pub fn mint(&self) -> anyhow::Result<String> {
        let claims = crate::auth::NewToken {
            sub: &self.sub,
            name: self.name.as_deref(),
            exp: crate::auth::expiry_in(self.ttl),
            rooms: self.rooms.clone(),
            scope: self.scope.as_deref(),
        };
        crate::auth::mint(&claims, &self.secret()?).map_err(anyhow::Error::msg)
    }
}
