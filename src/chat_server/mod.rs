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
//! - [`drain`]: readiness off, then sockets sent elsewhere at a pace.
//! - [`rebalance`]: reports, fair shares, and shedding the excess.
//! - `pages`: the chat, users and operator's pages.
//! - `health`: liveness, readiness, metrics.
//! - `origin`: which pages may reach the doors.
//! - `status`: the report of this replica the others and the operator's
//!   page read.

pub mod drain;
mod health;
mod origin;
mod pages;
pub mod rebalance;
pub(crate) mod state;
mod status;

use crate::api::{ApiKey, ApiState};
use crate::door::DoorState;
use crate::door::limits::Limits;
use crate::gate::origins::AllowedOrigins;
use crate::hub::metrics::Metrics;
use crate::hub::{Hub, HubSettings};
use crate::redis::RedisSettings;
use axum::Router;
use axum::routing::get;
use drain::DrainSettings;
use rebalance::RebalanceSettings;
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
    /// The longest a drain may take before the rest is closed at once.
    pub shutdown_timeout: Duration,
    pub drain: DrainSettings,
    /// `None`: no rebalancing (off, or standalone).
    pub rebalance: Option<RebalanceSettings>,
    /// `Some`: the server API is on, behind this key.
    pub api_key: Option<ApiKey>,
    /// `None`: no webhooks.
    pub webhooks: Option<crate::webhooks::WebhookSettings>,
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
    // The operator's page comes with the API it calls, and not without.
    let api = match api_key {
        Some(key) => crate::api::router(state.api.clone(), key)
            .route("/admin", get(pages::admin))
            .route("/admin.js", get(pages::admin_js))
            .route("/admin.css", get(pages::admin_css)),
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

/// How long sockets still open when the drain ends (or its deadline
/// passes) have to take their close frames, and requests in progress to
/// finish.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// Serves until `shutdown` is cancelled or a drain of this replica is asked
/// for; then drains (see [`drain`]) and returns once no socket is left,
/// or `shutdown_timeout` after the drain began.
pub async fn run(
    listener: TcpListener,
    settings: Settings,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let webhooks = crate::webhooks::Webhooks::start(
        settings.webhooks.clone(),
        settings.redis.as_ref(),
        &settings.hub.rooms.server_id,
    )
    .await?;
    let metrics = Arc::new(Metrics::with(|registry| webhooks.register(registry)));
    let hub = Hub::connect(
        settings.hub.clone(),
        settings.redis.as_ref(),
        metrics,
        webhooks.clone(),
    )
    .await?;
    let gate = crate::gate::Gate::new(settings.gate.clone());
    // `stop` closes what is left at once; `draining` starts the drain.
    let stop = CancellationToken::new();
    let door = DoorState::new(
        hub.clone(),
        settings.verifier.clone(),
        gate.clone(),
        settings.limits.clone(),
        stop.clone(),
        CancellationToken::new(),
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

    let source = Arc::new(status::StatusSource::new(settings.redis.is_some()));
    if let Some(rebalance) = settings.rebalance {
        tokio::spawn(rebalance::run(door.clone(), rebalance, source.clone()));
    }
    tokio::spawn(status::run(
        door.clone(),
        source,
        settings.rebalance.is_some(),
    ));
    let drainer = {
        let door = door.clone();
        let (drain, timeout) = (settings.drain, settings.shutdown_timeout);
        async move {
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = door.hub.drain_requested().cancelled() => {}
            }
            let deadline = tokio::time::Instant::now() + timeout;
            drain::run(&door, drain, deadline).await;
            stop.cancel();
        }
    };
    let serve = crate::gate::http1::serve(
        listener,
        app(state, settings.origins.clone(), settings.api_key.clone()),
        gate,
        door.shutdown.clone(),
        CLOSE_GRACE,
    );
    tokio::join!(drainer, serve);

    door.connections.close();
    if tokio::time::timeout(CLOSE_GRACE, door.connections.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            open = door.connections.len(),
            "shutdown timeout; dropping remaining connections"
        );
    }
    // Every session has left its rooms: their events are emitted.
    webhooks.close(CLOSE_GRACE).await;
    tracing::info!("ws-server stopped");
    Ok(())
}
