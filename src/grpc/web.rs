//! gRPC-Web for browsers: tonic-web translates it, and CORS lets the pages
//! of `--allowed-origins` call (the same list and rules as ws-server's).

use crate::gate::origins::AllowedOrigins;
use axum::http::{HeaderName, Method, header};
use std::time::Duration;
use tower_http::cors::{AllowOrigin, CorsLayer};

/// Preflights are cached this long by the browser.
const PREFLIGHT_MAX_AGE: Duration = Duration::from_secs(600);

pub fn cors(origins: AllowedOrigins) -> CorsLayer {
    CorsLayer::new()
        .allow_origin(AllowOrigin::predicate(move |_, request| {
            origins.allows(&request.headers)
        }))
        .allow_methods([Method::POST])
        .allow_headers([
            header::CONTENT_TYPE,
            header::AUTHORIZATION,
            HeaderName::from_static("x-grpc-web"),
            HeaderName::from_static("x-user-agent"),
            HeaderName::from_static("grpc-timeout"),
        ])
        .expose_headers([
            HeaderName::from_static("grpc-status"),
            HeaderName::from_static("grpc-message"),
            HeaderName::from_static("grpc-status-details-bin"),
        ])
        .max_age(PREFLIGHT_MAX_AGE)
}
