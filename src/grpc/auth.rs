//! Optional bearer-token check for the UserService (health and reflection
//! stay open so load balancers and tools work without the secret).

use tonic::{Request, Status};

/// Reads the token from `--auth-token` or, when given, the file named by
/// `--auth-token-file` (trailing newline ignored).
pub fn load_token(
    token: Option<String>,
    file: Option<std::path::PathBuf>,
) -> anyhow::Result<Option<String>> {
    use anyhow::Context;
    let token = match file {
        Some(path) => Some(
            std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read --auth-token-file {}", path.display()))?
                .trim_end_matches(['\r', '\n'])
                .to_owned(),
        ),
        None => token,
    };
    match token {
        Some(t) if t.is_empty() => anyhow::bail!("the auth token is empty"),
        other => Ok(other),
    }
}

/// An interceptor that admits requests carrying `authorization: Bearer <token>`.
#[derive(Clone)]
pub struct BearerAuth {
    token: Option<std::sync::Arc<str>>,
}

impl BearerAuth {
    pub fn new(token: Option<String>) -> Self {
        Self {
            token: token.map(Into::into),
        }
    }
}

impl tonic::service::Interceptor for BearerAuth {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        let Some(expected) = &self.token else {
            return Ok(request);
        };
        let given = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        match given {
            Some(given) if constant_time_eq(given.as_bytes(), expected.as_bytes()) => Ok(request),
            Some(_) => Err(Status::unauthenticated("invalid bearer token")),
            None => Err(Status::unauthenticated("missing bearer token")),
        }
    }
}

/// Compares without stopping at the first difference, so response time
/// does not reveal how much of a guessed token was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::service::Interceptor;

    fn with_header(value: Option<&str>) -> Request<()> {
        let mut request = Request::new(());
        if let Some(value) = value {
            request
                .metadata_mut()
                .insert("authorization", value.parse().unwrap());
        }
        request
    }

    #[test]
    fn checks_bearer_token() {
        let mut open = BearerAuth::new(None);
        assert!(open.call(with_header(None)).is_ok());
        let mut auth = BearerAuth::new(Some("s3cret".into()));
        assert!(auth.call(with_header(Some("Bearer s3cret"))).is_ok());
        for bad in [
            None,
            Some("Bearer nope"),
            Some("s3cret"),
            Some("Bearer s3cre"),
        ] {
            assert_eq!(
                auth.call(with_header(bad)).unwrap_err().code(),
                tonic::Code::Unauthenticated
            );
        }
    }
}
