//! Who may connect: JWT verification shared by both chat doors and the
//! gRPC server, and the room rules a token carries.
//!
//! Tokens are verified with a key of one family only (an HS256 secret, or
//! an RS256 / ES256 public key), so a token signed with another algorithm,
//! or `alg: none`, is refused whatever its header says. `exp` is required,
//! `nbf` honoured, both with a small leeway for clock skew. A token's text
//! never reaches a log line.

pub(crate) mod rooms;

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use rooms::RoomRule;

/// Clock skew tolerated on `exp` and `nbf`.
pub const LEEWAY: Duration = Duration::from_secs(5);

/// Whether a token is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Anyone may connect; tokens are ignored.
    #[default]
    Off,
    /// Anonymous connections allowed; a token, when given, must be valid.
    Optional,
    /// Every connection needs a valid token.
    Required,
}

impl std::str::FromStr for Mode {
    type Err = String;
    fn from_str(mode: &str) -> Result<Self, String> {
        match mode {
            "off" => Ok(Self::Off),
            "optional" => Ok(Self::Optional),
            "required" => Ok(Self::Required),
            other => Err(format!("{other:?} is not one of off, optional, required")),
        }
    }
}

/// Where the verification key comes from.
#[derive(Clone)]
pub enum KeySource {
    /// An HS256 shared secret.
    Secret(Vec<u8>),
    /// The text of a PEM public key (RSA for RS256, EC P-256 for ES256).
    PublicKeyPem(Vec<u8>),
}

impl std::fmt::Debug for KeySource {
    /// Never the key itself.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Secret(_) => f.write_str("Secret(..)"),
            Self::PublicKeyPem(_) => f.write_str("PublicKeyPem(..)"),
        }
    }
}

/// The verified claims of a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// `sub`: the member's `user`.
    pub user: String,
    /// `name`: its display name.
    pub name: Option<String>,
    /// `exp`, seconds since the Unix epoch: the connection ends then.
    pub expires: u64,
    /// `rooms`: which rooms it may join and post to; `None`: any.
    pub rooms: Option<RoomRule>,
    /// `scope`, space-separated: what it may change over gRPC.
    pub scope: Vec<String>,
}

impl Identity {
    /// How long until the token expires (zero when it has).
    pub fn remaining(&self) -> Duration {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        Duration::from_secs(self.expires.saturating_sub(now))
    }

    pub fn has_scope(&self, scope: &str) -> bool {
        self.scope.iter().any(|s| s == scope)
    }
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("a token is required")]
    Missing,
    #[error("token expired")]
    Expired,
    #[error("token not valid yet")]
    NotYetValid,
    #[error("invalid token: {0}")]
    Invalid(String),
}

/// Absent `sub` and `exp` default here so that the validation below names
/// the missing claim.
#[derive(Deserialize)]
struct Claims {
    #[serde(default)]
    sub: String,
    #[serde(default)]
    exp: u64,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    rooms: Option<Vec<String>>,
    #[serde(default)]
    scope: Option<String>,
}

/// Verifies tokens for one server, as `--auth` and the key flags say.
#[derive(Clone)]
pub struct Verifier {
    mode: Mode,
    key: Option<(DecodingKey, Validation)>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// Anyone may connect.
    pub fn off() -> Self {
        Self {
            mode: Mode::Off,
            key: None,
        }
    }

    pub fn new(mode: Mode, key: Option<&KeySource>) -> Result<Self, String> {
        let key = match (mode, key) {
            (Mode::Off, _) => None,
            (_, None) => {
                return Err(
                    "--auth optional or required needs --jwt-secret or --jwt-public-key-file"
                        .into(),
                );
            }
            (_, Some(KeySource::Secret(secret))) => {
                if secret.len() < 16 {
                    return Err("--jwt-secret must be at least 16 bytes".into());
                }
                Some((
                    DecodingKey::from_secret(secret),
                    validation(Algorithm::HS256),
                ))
            }
            (_, Some(KeySource::PublicKeyPem(pem))) => Some(
                DecodingKey::from_rsa_pem(pem)
                    .map(|key| (key, validation(Algorithm::RS256)))
                    .or_else(|_| {
                        DecodingKey::from_ec_pem(pem).map(|key| (key, validation(Algorithm::ES256)))
                    })
                    .map_err(|_| "the JWT public key is neither an RSA nor an EC PEM key")?,
            ),
        };
        Ok(Self { mode, key })
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// `Ok(None)`: anonymous (auth off, or optional without a token).
    pub fn verify(&self, token: Option<&str>) -> Result<Option<Identity>, AuthError> {
        let (key, validation) = match (&self.key, token) {
            (None, _) => return Ok(None),
            (Some(_), None) if self.mode == Mode::Optional => return Ok(None),
            (Some(_), None) => return Err(AuthError::Missing),
            (Some((key, validation)), Some(_)) => (key, validation),
        };
        let token = token.expect("matched above");
        let data = jsonwebtoken::decode::<Claims>(token, key, validation).map_err(|err| {
            use jsonwebtoken::errors::ErrorKind;
            match err.kind() {
                ErrorKind::ExpiredSignature => AuthError::Expired,
                ErrorKind::ImmatureSignature => AuthError::NotYetValid,
                ErrorKind::InvalidSignature => AuthError::Invalid("bad signature".into()),
                ErrorKind::InvalidAlgorithm => AuthError::Invalid("algorithm not accepted".into()),
                ErrorKind::MissingRequiredClaim(claim) => {
                    AuthError::Invalid(format!("missing claim `{claim}`"))
                }
                _ => AuthError::Invalid("malformed token".into()),
            }
        })?;
        let claims = data.claims;
        if claims.sub.is_empty() {
            return Err(AuthError::Invalid("empty `sub`".into()));
        }
        Ok(Some(Identity {
            user: claims.sub,
            name: claims.name,
            expires: claims.exp,
            rooms: claims.rooms.map(RoomRule::new),
            scope: claims
                .scope
                .map(|s| s.split_whitespace().map(str::to_owned).collect())
                .unwrap_or_default(),
        }))
    }
}

fn validation(algorithm: Algorithm) -> Validation {
    let mut validation = Validation::new(algorithm);
    validation.leeway = LEEWAY.as_secs();
    validation.validate_nbf = true;
    validation.validate_aud = false;
    validation.set_required_spec_claims(&["exp", "sub"]);
    validation
}

/// What `rtchat token` signs.
#[derive(Debug, serde::Serialize)]
pub struct NewToken<'a> {
    pub sub: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<&'a str>,
    pub exp: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rooms: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<&'a str>,
}

/// Signs an HS256 token (for development and tests).
pub fn mint(claims: &NewToken<'_>, secret: &[u8]) -> Result<String, String> {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(Algorithm::HS256),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(secret),
    )
    .map_err(|e| e.to_string())
}

/// Seconds since the Unix epoch, `ttl` from now.
pub fn expiry_in(ttl: Duration) -> u64 {
    (SystemTime::now() + ttl)
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

/// Compares without stopping at the first difference, so response time
/// does not reveal how much of a guessed secret was right.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests;
