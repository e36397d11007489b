//! The ws-server assembled above its front ends: the native door at `/ws`,
//! the Socket.IO door at `/socket.io/`, the server API at `/api/`, its
//! pages, health and metrics, over one hub.
//!
//! [`run`] takes a bound listener, the settings and a shutdown token, so
//! tests and `main` start it the same way. Upgraded sockets outlive axum's
//! own graceful shutdown, so they are tracked and closed with 1001 before
//! exit. Connections pass [`crate::gate`] before any request is read.
//!
//! - [`state`]: the router's state, a sub-state per front end.
//! - `pages`: the chat and users pages.
//! - `health`: liveness, readiness, metrics.
//! - `origin`: which pages may reach the doors.

mod health;
mod origin;
mod pages;
pub(crate) mod state;

use crate::api::{ApiKey, ApiState};
use crate::door::DoorState;
use crate::door::limits::Limits;
use crate::gate::origins::AllowedOrigins;
use crate::hub::metrics::Metrics;
use crate::hub::{Hub, HubSettings};
use crate::redis::RedisSettings;
use axum::Router;
use axum::routing::get;
use state::AppState;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// What the server runs on, built from the flags by the `config` module.
#[derive(Debug, Clone)]
pub struct Settings {
    pub hub: HubSettings,
    pub limits: Limits,
    pub socketio: crate::socketio::Settings,
    /// Pages allowed to connect, besides the server's own.
    pub origins: AllowedOrigins,
    /// Who may connect.
    pub verifier: crate::auth::Verifier,
    /// Bounds before and beside requests, and per client address.
    pub gate: crate::gate::GateSettings,
    /// `None`: standalone.
    pub redis: Option<RedisSettings>,
    /// How long shutdown waits for sockets to close.
    pub shutdown_timeout: Duration,
    /// `Some`: the server API is on, behind this key.
    pub api_key: Option<ApiKey>,
}

/// The routes: each front end's handlers take only their own sub-state.
pub fn app(state: AppState, origins: AllowedOrigins, api_key: Option<ApiKey>) -> Router {
    // The two doors, behind the origin check.
    let doors = Router::new()
        .route("/ws", get(crate::ws::upgrade))
        .route(
            "/socket.io/",
            get(crate::socketio::get)
                .post(crate::socketio::post)
                .options(crate::socketio::preflight),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            Arc::new(origins),
            origin::check,
        ));
    let api = match api_key {
        Some(key) => crate::api::router(state.api.clone(), key),
        None => Router::new(),
    };
    Router::new()
        .route("/", get(pages::chat))
        .route("/users", get(pages::users))
        .merge(doors)
        .merge(api)
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .with_state(state)
}

/// Serves until `shutdown` is cancelled, then closes every socket (1001)
/// within `shutdown_timeout`.
pub async fn run(
    listener: TcpListener,
    settings: Settings,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let metrics = Arc::new(Metrics::new());
    let hub = Hub::connect(settings.hub.clone(), settings.redis.as_ref(), metrics).await?;
    let gate = crate::gate::Gate::new(settings.gate.clone());
    let door = DoorState::new(
        hub.clone(),
        settings.verifier.clone(),
        gate.clone(),
        settings.limits.clone(),
        shutdown.clone(),
    );
    let sio = crate::socketio::SioState::new(
        door.clone(),
        settings.socketio.clone(),
        settings.redis.as_ref(),
        listener.local_addr()?,
    )
    .await?;
    let state = AppState {
        door: door.clone(),
        sio,
        api: ApiState { hub },
    };
    let addr = listener.local_addr()?;
    let mode = crate::redis::mode(settings.redis.as_ref());
    let api = settings.api_key.is_some();
    tracing::info!(%addr, id = %settings.hub.rooms.server_id, mode, api, "ws-server listening");

    crate::gate::http1::serve(
        listener,
        app(state, settings.origins.clone(), settings.api_key.clone()),
        gate,
        shutdown.clone(),
        settings.shutdown_timeout,
    )
    .await;

    door.connections.close();
    if tokio::time::timeout(settings.shutdown_timeout, door.connections.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            open = door.connections.len(),
            "shutdown timeout; dropping remaining connections"
        );
    }
    tracing::info!("ws-server stopped");
    Ok(())
}
