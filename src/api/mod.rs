//! The server API: what a backend does with rooms over HTTP, without
//! pretending to be a WebSocket client. On ws-server under `/api/`, only
//! when `--api-key` is set; every call carries the key (`X-API-Key: KEY`
//! or `Authorization: apikey KEY`).
//!
//! Requests and answers are JSON; a refusal is `{"code","message"}` with
//! the native error codes (`docs` of each operation: `openapi.json`, served
//! at `/api/openapi.json` and kept true by the test suite).
//!
//! - [`handlers`]: the operations, each one hub call.
//! - [`error`]: refusals as HTTP answers.
//! - `cluster`: every replica and the busiest rooms, for the operator's page.
//! - [`cli`]: `rtchat api`, the operations from the command line.

pub mod cli;
mod cluster;
pub(crate) mod error;
mod handlers;

use crate::hub::Hub;
use axum::Router;
use axum::extract::{FromRef, Request, State};
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use error::ApiError;
use std::fmt;
use std::sync::Arc;

/// Largest request body: a publish's message is bounded by
/// `--max-message-bytes` far below this.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

const OPENAPI: &str = include_str!("openapi.json");

/// The key every call must carry. Never printed: `Debug` hides it.
#[derive(Clone)]
pub struct ApiKey(Arc<str>);

impl ApiKey {
    pub fn new(key: String) -> Result<Self, String> {
        if key.trim().is_empty() {
            return Err("the API key must not be empty".into());
        }
        Ok(Self(key.into()))
    }

    fn matches(&self, given: &str) -> bool {
        crate::auth::constant_time_eq(given.as_bytes(), self.0.as_bytes())
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(..)")
    }
}

/// What the API's handlers may touch: the hub, as a backend does, and
/// nothing of the doors.
#[derive(Clone)]
pub struct ApiState {
    pub(crate) hub: Arc<Hub>,
}

/// The `/api/` routes, behind the key check.
pub(crate) fn router<S>(state: ApiState, key: ApiKey) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    ApiState: FromRef<S>,
{
    Router::new()
        .route("/api/publish", post(handlers::publish))
        .route("/api/history", post(handlers::history))
        .route("/api/presence", post(handlers::presence))
        .route("/api/disconnect", post(handlers::disconnect))
        .route("/api/drain", post(handlers::drain))
        .route("/api/rooms", post(handlers::rooms))
        .route("/api/stats", post(handlers::stats))
        .route("/api/cluster", post(cluster::cluster))
        .route_layer(axum::middleware::from_fn_with_state(
            (state, key),
            check_key,
        ))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        // The document holds no secret: tools read it before they have a key.
        .route("/api/openapi.json", get(openapi))
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

/// The key from `X-API-Key` or `Authorization: apikey`.
fn given_key(headers: &HeaderMap) -> Option<&str> {
    if let Some(key) = headers.get("x-api-key") {
        return key.to_str().ok();
    }
    let auth = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, key) = auth.split_once(' ')?;
    scheme.eq_ignore_ascii_case("apikey").then(|| key.trim())
}

async fn check_key(
    State((state, key)): State<(ApiState, ApiKey)>,
    request: Request,
    next: Next,
) -> Response {
    match given_key(request.headers()) {
        Some(given) if key.matches(given) => next.run(request).await,
        given => {
            let why = if given.is_some() {
                "wrong API key"
            } else {
                "missing API key: send X-API-Key or Authorization: apikey"
            };
            let err = ApiError::unauthorized(why);
            state.hub.metrics().error(err.code);
            err.into_response()
        }
    }
}
