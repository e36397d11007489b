//! Which pages may connect: the `Origin` check of every WebSocket upgrade
//! (both doors) and CORS for Socket.IO polling. A browser sends `Origin`
//! on both, so refusing unknown ones stops cross-site WebSocket hijacking;
//! a request without `Origin` (not a browser) is not refused for it.
//!
//! The server's own origin is always allowed, whatever the list: a page
//! is same-origin when its host (and port, when the request's `Host` has
//! one) is the `Host` it was served under. The port is compared only when
//! `Host` carries one because proxies such as the original's nginx config
//! forward `Host $host`, without the port the browser used.

use axum::http::{HeaderMap, HeaderValue, header};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowedOrigins {
    /// `*`: any page.
    Any,
    /// These origins (`scheme://host[:port]`, lowercased) and the server's
    /// own; empty for the default, the server's own only.
    Listed(Vec<String>),
}

impl Default for AllowedOrigins {
    fn default() -> Self {
        Self::Listed(Vec::new())
    }
}

impl std::str::FromStr for AllowedOrigins {
    type Err = String;

    /// A comma-separated list of origins, or `*`.
    fn from_str(list: &str) -> Result<Self, String> {
        let mut origins = Vec::new();
        for origin in list.split(',').map(str::trim).filter(|o| !o.is_empty()) {
            if origin == "*" {
                return Ok(Self::Any);
            }
            let normal = normalize(origin);
            let Some((scheme, rest)) = normal.split_once("://") else {
                return Err(format!(
                    "{origin:?} is not an origin like https://chat.example.com"
                ));
            };
            if !matches!(scheme, "http" | "https") || rest.is_empty() || rest.contains('/') {
                return Err(format!(
                    "{origin:?} is not an origin like https://chat.example.com"
                ));
            }
            origins.push(normal);
        }
        Ok(Self::Listed(origins))
    }
}

fn normalize(origin: &str) -> String {
    origin.trim_end_matches('/').to_ascii_lowercase()
}

impl AllowedOrigins {
    /// Whether a request with these headers may connect.
    pub fn allows(&self, headers: &HeaderMap) -> bool {
        let Some(origin) = headers.get(header::ORIGIN) else {
            return true;
        };
        let Ok(origin) = origin.to_str() else {
            return false;
        };
        match self {
            Self::Any => true,
            Self::Listed(list) => {
                let origin = normalize(origin);
                list.contains(&origin) || same_origin(&origin, headers.get(header::HOST))
            }
        }
    }

    /// CORS headers for an allowed browser request (none without `Origin`).
    pub fn cors(&self, headers: &HeaderMap) -> Vec<(header::HeaderName, HeaderValue)> {
        match headers.get(header::ORIGIN) {
            Some(origin) if self.allows(headers) => vec![
                (header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone()),
                (
                    header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                    HeaderValue::from_static("true"),
                ),
                (header::VARY, HeaderValue::from_static("Origin")),
            ],
            _ => Vec::new(),
        }
    }
}

fn same_origin(origin: &str, host: Option<&HeaderValue>) -> bool {
    let Some(host) = host.and_then(|h| h.to_str().ok()) else {
        return false;
    };
    let host = host.to_ascii_lowercase();
    let Some((_, authority)) = origin.split_once("://") else {
        return false;
    };
    if authority == host {
        return true;
    }
    // `Host` without a port (a proxy's `$host`): the host names must agree.
    let has_port = |a: &str| {
        a.rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
            && !a.ends_with(']')
    };
    if has_port(&host) {
        return false;
    }
    let name = if has_port(authority) {
        authority
            .rsplit_once(':')
            .map_or(authority, |(name, _)| name)
    } else {
        authority
    };
    name == host
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(origin: Option<&str>, host: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_str(host).unwrap());
        if let Some(origin) = origin {
            h.insert(header::ORIGIN, HeaderValue::from_str(origin).unwrap());
        }
        h
    }

    #[test]
    fn default_is_the_servers_own_origin() {
        let own = AllowedOrigins::default();
        assert!(
            own.allows(&headers(None, "chat:3000")),
            "no Origin: not a browser"
        );
        assert!(own.allows(&headers(Some("http://chat:3000"), "chat:3000")));
        assert!(own.allows(&headers(Some("https://CHAT:3000"), "chat:3000")));
        assert!(!own.allows(&headers(Some("http://evil.example"), "chat:3000")));
        assert!(!own.allows(&headers(Some("http://chat:4000"), "chat:3000")));
        assert!(!own.allows(&headers(Some("null"), "chat:3000")));
        // A proxy forwarding `Host $host` drops the port the page used.
        assert!(own.allows(&headers(Some("http://localhost:8080"), "localhost")));
        assert!(!own.allows(&headers(Some("http://evil:8080"), "localhost")));
    }

    #[test]
    fn lists_and_any() {
        let list: AllowedOrigins = "https://app.example.com, http://localhost:5173/"
            .parse()
            .unwrap();
        assert!(list.allows(&headers(Some("https://app.example.com"), "chat")));
        assert!(list.allows(&headers(Some("http://localhost:5173"), "chat")));
        assert!(
            list.allows(&headers(Some("http://chat"), "chat")),
            "own origin too"
        );
        assert!(!list.allows(&headers(Some("https://other.example.com"), "chat")));
        let any: AllowedOrigins = "*".parse().unwrap();
        assert!(any.allows(&headers(Some("http://anything"), "chat")));
        assert!("ftp://x".parse::<AllowedOrigins>().is_err());
        assert!("https://x/path".parse::<AllowedOrigins>().is_err());
        assert!("chat.example.com".parse::<AllowedOrigins>().is_err());
    }

    #[test]
    fn cors_only_for_allowed_browsers() {
        let own = AllowedOrigins::default();
        assert_eq!(own.cors(&headers(Some("http://chat"), "chat")).len(), 3);
        assert!(own.cors(&headers(Some("http://evil"), "chat")).is_empty());
        assert!(own.cors(&headers(None, "chat")).is_empty());
    }
}
