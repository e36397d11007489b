//! The origin check in front of both doors: pages from origins not allowed
//! are refused (403); allowed ones get their CORS headers.

use crate::gate::origins::AllowedOrigins;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

pub(super) async fn check(
    State(origins): State<Arc<AllowedOrigins>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if !origins.allows(request.headers()) {
        tracing::debug!(origin = ?request.headers().get(header::ORIGIN), "origin refused");
        return (StatusCode::FORBIDDEN, "origin not allowed").into_response();
    }
    let cors = origins.cors(request.headers());
    let mut response = next.run(request).await;
    // Insert, not append: a response relayed from another replica has them
    // already, and a repeated Access-Control-Allow-Origin is refused.
    for (name, value) in cors {
        response.headers_mut().insert(name, value);
    }
    response
}
