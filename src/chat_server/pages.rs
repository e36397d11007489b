//! The pages ws-server serves itself: self-contained, with a strict
//! Content-Security-Policy, so they load nothing from elsewhere.

use axum::http::header;
use axum::response::{Html, IntoResponse, Response};

const CHAT_PAGE: &str = include_str!("page.html");
/// The users page: grpc-server's users over gRPC-Web, from wherever
/// `?grpc=` points (grpc-server itself, or Envoy's grpc_web filter).
const USERS_PAGE: &str = include_str!("users.html");
const USERS_CSP: &str = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src http: https:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";
/// The page loads nothing from elsewhere; inline script and style only.
const PAGE_CSP: &str = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

pub(super) async fn chat() -> Response {
    static_page(CHAT_PAGE, PAGE_CSP)
}

pub(super) async fn users() -> Response {
    static_page(USERS_PAGE, USERS_CSP)
}

fn static_page(html: &'static str, csp: &'static str) -> Response {
    (
        [
            (header::CONTENT_SECURITY_POLICY, csp),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Html(html),
    )
        .into_response()
}
