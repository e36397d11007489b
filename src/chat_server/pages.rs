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

/// The operator's page, only with the server API on: it calls the API with
/// the key the operator types in; its script and style are files of their
/// own, so the policy allows no inline code at all.
const ADMIN_PAGE: &str = include_str!("admin/admin.html");
const ADMIN_JS: &str = include_str!("admin/admin.js");
const ADMIN_CSS: &str = include_str!("admin/admin.css");
const ADMIN_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

pub(super) async fn admin() -> Response {
    static_page(ADMIN_PAGE, ADMIN_CSP)
}

pub(super) async fn admin_js() -> Response {
    asset(ADMIN_JS, "text/javascript; charset=utf-8")
}

pub(super) async fn admin_css() -> Response {
    asset(ADMIN_CSS, "text/css; charset=utf-8")
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}
