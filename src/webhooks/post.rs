//! One POST of one event to one receiver, signed.

use bytes::Bytes;
use hmac::{Hmac, Mac};
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use sha2::Sha256;
use std::time::Duration;

/// `X-Rtchat-Signature: sha256=<hex>` of `body` with `secret`.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let mut out = String::with_capacity(7 + digest.len() * 2);
    out.push_str("sha256=");
    for byte in digest {
        use std::fmt::Write;
        let _ = write!(out, "{byte:02x}");
    }
    out
}

/// Why a try did not deliver.
#[derive(Debug, thiserror::Error)]
pub enum PostError {
    #[error("the receiver answered {0}")]
    Status(u16),
    #[error("the receiver did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the receiver could not be reached: {0}")]
    Unreachable(String),
}

impl PostError {
    /// The metric label.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Status(_) => "status",
            Self::Timeout(_) => "timeout",
            Self::Unreachable(_) => "unreachable",
        }
    }
}

/// Keeps connections to receivers open between events.
pub struct Poster {
    client: Client<HttpConnector, Full<Bytes>>,
    secret: Vec<u8>,
    timeout: Duration,
    user_agent: String,
}

impl Poster {
    pub fn new(secret: Vec<u8>, timeout: Duration) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(timeout));
        Self {
            client: Client::builder(TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(30))
                .build(connector),
            secret,
            timeout,
            user_agent: format!("rtchat/{}", env!("CARGO_PKG_VERSION")),
        }
    }

    /// POSTs one event; Ok on a 2xx answer.
    pub async fn post(&self, url: &hyper::Uri, id: &str, body: &Bytes) -> Result<(), PostError> {
        let request = hyper::Request::post(url.clone())
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .header(hyper::header::USER_AGENT, &self.user_agent)
            .header("x-rtchat-event-id", id)
            .header("x-rtchat-signature", signature(&self.secret, body))
            .body(Full::new(body.clone()))
            .map_err(|e| PostError::Unreachable(e.to_string()))?;
        let answer = tokio::time::timeout(self.timeout, self.client.request(request))
            .await
            .map_err(|_| PostError::Timeout(self.timeout))?
            .map_err(|e| PostError::Unreachable(crate::logging::source_chain(&e)))?;
        let status = answer.status();
        // The answer's body is not read: dropping it closes the connection
        // only when the receiver sent one it did not finish.
        if status.is_success() {
            Ok(())
        } else {
            Err(PostError::Status(status.as_u16()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_the_rfc_4231_vector() {
        // RFC 4231, test case 2.
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
