//! Who may call the UserService (health and reflection stay open so load
//! balancers and tools work without a secret): the static `--auth-token`
//! for services, and JWTs (`--auth`) for users, whose `scope` must hold
//! [`WRITE_SCOPE`] for the methods that change users.

use tonic::{Request, Status};

/// The scope a token needs for CreateUser, UpdateUser and DeleteUser.
pub const WRITE_SCOPE: &str = "users:write";

/// Who is calling, as the interceptor found out; read by the methods.
#[derive(Debug, Clone)]
pub enum Caller {
    /// No check asked for (no static token, `--auth off`): anything goes.
    Open,
    /// The static token: a service, allowed everything.
    Service,
    /// A verified JWT.
    User(crate::auth::Identity),
    /// No token under `--auth optional`: reads only.
    Anonymous,
}

impl Caller {
    /// PERMISSION_DENIED unless the caller may change users.
    pub fn may_write(&self) -> Result<(), Status> {
        match self {
            Self::Open | Self::Service => Ok(()),
            Self::User(identity) if identity.has_scope(WRITE_SCOPE) => Ok(()),
            Self::User(_) | Self::Anonymous => Err(Status::permission_denied(format!(
                "this method needs a token with scope {WRITE_SCOPE}"
            ))),
        }
    }
}

/// The caller of a request (a request that skipped the interceptor is
/// treated as open: only the UserService has one).
pub fn caller<T>(request: &Request<T>) -> Caller {
    request
        .extensions()
        .get::<Caller>()
        .cloned()
        .unwrap_or(Caller::Open)
}

/// An interceptor that admits requests carrying `authorization: Bearer
/// <token>`: the static token, or a JWT the verifier accepts.
#[derive(Clone)]
pub struct BearerAuth {
    token: Option<std::sync::Arc<str>>,
    verifier: crate::auth::Verifier,
}

impl BearerAuth {
    pub fn new(token: Option<String>, verifier: crate::auth::Verifier) -> Self {
        Self {
            token: token.map(Into::into),
            verifier,
        }
    }
}

impl tonic::service::Interceptor for BearerAuth {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        use crate::auth::Mode;
        let given = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let jwt = self.verifier.mode() != Mode::Off;
        let caller = match (&self.token, given) {
            (Some(expected), Some(given))
                if crate::auth::constant_time_eq(given.as_bytes(), expected.as_bytes()) =>
            {
                Caller::Service
            }
            (None, _) if !jwt => Caller::Open,
            (Some(_), Some(_)) if !jwt => {
                return Err(Status::unauthenticated("invalid bearer token"));
            }
            (Some(_), None) if !jwt => return Err(Status::unauthenticated("missing bearer token")),
            (static_token, given) => match self.verifier.verify(given) {
                Ok(Some(identity)) => Caller::User(identity),
                // Optional and no token; the static token, when set, is
                // still needed for anything.
                Ok(None) if static_token.is_none() => Caller::Anonymous,
                Ok(None) => return Err(Status::unauthenticated("missing bearer token")),
                Err(why) => return Err(Status::unauthenticated(why.to_string())),
            },
        };
        request.extensions_mut().insert(caller);
        Ok(request)
    }
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
        let mut open = BearerAuth::new(None, crate::auth::Verifier::off());
        assert!(open.call(with_header(None)).is_ok());
        let mut auth = BearerAuth::new(Some("s3cret".into()), crate::auth::Verifier::off());
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
