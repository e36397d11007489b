//! The WebSocket chat server: HTTP routes, shared state and start-up.
//!
//! [`run`] takes a bound listener and a shutdown token, so tests and `main`
//! start it the same way. Upgraded sockets outlive axum's own graceful
//! shutdown, so they are tracked here and closed with 1001 before exit.
//!
//! This is the native door onto the [`crate::hub`]: it owns sockets and
//! frames, never the rules of a room.
//!
//! - [`connection`]: one socket's loop and write path.
//! - [`cmd`]: what each client frame does, as hub calls.
//! - [`protocol`]: the frames, their validation and the close codes.
//! - [`limits`]: the door's own bounds and the rate limiter.
//! - [`origins`]: which pages may connect, on both doors.
//!
//! Connections pass [`crate::gate`] before any request is read.

pub mod cmd;
pub mod connection;
pub mod limits;
pub mod origins;
pub mod protocol;

use crate::config::WsServerArgs;
use crate::hub::metrics::Metrics;
use crate::hub::{DisplayName, Hub, HubSettings};
use crate::redis::RedisSettings;
use axum::Router;
use axum::extract::{ConnectInfo, Query, State, WebSocketUpgrade};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use limits::Limits;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Per-connection socket buffers. tungstenite's defaults (128 KiB read
/// buffer allocated up front) would cost over a gigabyte for 10,000 idle
/// sockets. The read buffer only ever holds client frames, which are few
/// (rate-limited; one frame in fans out to hundreds out) and mostly under
/// 256 bytes; a longer one takes one `read` per 256 bytes. Measured per
/// idle connection: 4 KiB buffers ~10 KB, 1 KiB ~5.3 KB, 256 bytes ~4.7 KB
/// (docs/BENCHMARKS.md).
const READ_BUFFER_BYTES: usize = 256;
const WRITE_BUFFER_BYTES: usize = 1024;
/// Unsent bytes allowed to pile up in a socket's write buffer before writes
/// fail instead of buffering more.
const MAX_WRITE_BUFFER_BYTES: usize = 1024 * 1024;

const CHAT_PAGE: &str = include_str!("page.html");
/// The users page: grpc-server's users over gRPC-Web, from wherever
/// `?grpc=` points (grpc-server itself, or Envoy's grpc_web filter).
const USERS_PAGE: &str = include_str!("users.html");
const USERS_CSP: &str = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src http: https:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";
/// The page loads nothing from elsewhere; inline script and style only.
const PAGE_CSP: &str = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// What the server runs on, built from the flags by `crate::config`.
#[derive(Debug, Clone)]
pub struct Settings {
    pub hub: HubSettings,
    pub limits: Limits,
    pub socketio: crate::socketio::Settings,
    /// Pages allowed to connect, besides the server's own.
    pub origins: origins::AllowedOrigins,
    /// Who may connect.
    pub verifier: crate::auth::Verifier,
    /// Bounds before and beside requests, and per client address.
    pub gate: crate::gate::GateSettings,
    /// `None`: standalone.
    pub redis: Option<RedisSettings>,
    /// How long shutdown waits for sockets to close.
    pub shutdown_timeout: Duration,
    /// `Some`: the server API is on, behind this key.
    pub api_key: Option<crate::api::ApiKey>,
}

/// Everything a request or connection handler may touch; cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

pub struct Shared {
    pub hub: Arc<Hub>,
    pub origins: origins::AllowedOrigins,
    pub verifier: crate::auth::Verifier,
    /// The per-address counts and the request time bound.
    pub gate: crate::gate::Gate,
    /// The Socket.IO door's sessions and recovery store.
    pub sio: crate::socketio::Door,
    pub limits: Limits,
    pub metrics: Arc<Metrics>,
    pub shutdown: CancellationToken,
    /// Upgraded sockets, so shutdown can wait for their close frames.
    pub connections: TaskTracker,
    /// One permit per open socket, taken before the upgrade and held by
    /// the connection's task: `--max-connections` is a hard bound, however
    /// many upgrades race.
    pub slots: Arc<Semaphore>,
}

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

pub fn app(state: AppState, api_key: Option<crate::api::ApiKey>) -> Router {
    // The two doors, behind the origin check.
    let doors = Router::new()
        .route("/ws", get(upgrade))
        .route(
            "/socket.io/",
            get(crate::socketio::get)
                .post(crate::socketio::post)
                .options(crate::socketio::preflight),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            check_origin,
        ));
    let api = match api_key {
        Some(key) => crate::api::router(state.clone(), key),
        None => Router::new(),
    };
    Router::new()
        .route("/", get(page))
        .route("/users", get(users_page))
        .merge(doors)
        .merge(api)
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

/// Binds `--listen` and serves until SIGTERM or Ctrl-C.
pub async fn serve(args: WsServerArgs) -> anyhow::Result<()> {
    let settings = args.settings()?;
    let listener = crate::process::listen(args.listen).await?;
    run(listener, settings, crate::shutdown::on_signal()).await
}

pub async fn run(
    listener: TcpListener,
    settings: Settings,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let metrics = Arc::new(Metrics::new());
    let hub = Hub::connect(
        settings.hub.clone(),
        settings.redis.as_ref(),
        metrics.clone(),
    )
    .await?;
    let sio = crate::socketio::Door::new(
        settings.socketio.clone(),
        settings.redis.as_ref(),
        listener.local_addr()?,
        settings.limits.ping_interval,
    )
    .await?;
    let gate = crate::gate::Gate::new(settings.gate.clone());
    let state = AppState(Arc::new(Shared {
        hub,
        origins: settings.origins.clone(),
        verifier: settings.verifier.clone(),
        gate: gate.clone(),
        sio,
        slots: Arc::new(Semaphore::new(settings.limits.max_connections)),
        limits: settings.limits.clone(),
        metrics,
        shutdown: shutdown.clone(),
        connections: TaskTracker::new(),
    }));
    let addr = listener.local_addr()?;
    let mode = crate::redis::mode(settings.redis.as_ref());
    let api = settings.api_key.is_some();
    tracing::info!(%addr, id = %settings.hub.server_id, mode, api, "ws-server listening");

    crate::gate::http1::serve(
        listener,
        app(state.clone(), settings.api_key.clone()),
        gate,
        shutdown.clone(),
        settings.shutdown_timeout,
    )
    .await;

    state.connections.close();
    if tokio::time::timeout(settings.shutdown_timeout, state.connections.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            open = state.connections.len(),
            "shutdown timeout; dropping remaining connections"
        );
    }
    tracing::info!("ws-server stopped");
    Ok(())
}

async fn page() -> Response {
    static_page(CHAT_PAGE, PAGE_CSP)
}

async fn users_page() -> Response {
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

/// Query parameters of `/ws`.
#[derive(serde::Deserialize)]
struct Connect {
    /// Display name shown beside the connection id (anonymous clients).
    name: Option<String>,
    /// A JWT, for clients that cannot set `Authorization` (browsers).
    token: Option<String>,
}

/// The bearer token of a request: `Authorization: Bearer ...`, else the
/// given query parameter.
pub fn bearer<'a>(headers: &'a axum::http::HeaderMap, query: Option<&'a str>) -> Option<&'a str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .or(query)
}

async fn upgrade(
    ws: WebSocketUpgrade,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    State(state): State<AppState>,
    Query(connect): Query<Connect>,
    headers: axum::http::HeaderMap,
) -> Response {
    // Admitted first: the per-address bounds are cheap, a signature is not.
    let admission = match admit(&state, peer, &headers) {
        Ok(admission) => admission,
        Err(refused) => return refused.into_response(),
    };
    let identity = match state
        .verifier
        .verify(bearer(&headers, connect.token.as_deref()))
    {
        Ok(identity) => identity,
        Err(why) => return (StatusCode::UNAUTHORIZED, why.to_string()).into_response(),
    };
    // With a token the name is the token's: never the client's choice.
    let asked = match &identity {
        Some(identity) => identity.name.as_deref(),
        None => connect.name.as_deref(),
    };
    let name = match asked.map(DisplayName::parse) {
        None => None,
        Some(Ok(name)) => Some(name),
        Some(Err(why)) => return (StatusCode::BAD_REQUEST, why.0).into_response(),
    };
    let token = state.connections.token();
    configure(ws, &state.limits).on_upgrade(move |socket| {
        // A task of its own rather than axum's upgrade task, which
        // would keep the upgrade's state beside ours for the
        // connection's whole life.
        let connections = state.connections.clone();
        connections.spawn(connection::run(
            socket, state, peer, name, identity, admission,
        ));
        drop(token);
        std::future::ready(())
    })
}

/// A connection's places: in its client address's count and in the
/// replica's; both given back when it is dropped.
pub struct Admission {
    _client: crate::gate::clients::Slot,
    _slot: tokio::sync::OwnedSemaphorePermit,
}

/// Admits a new connection (either door): 503 while shutting down or at
/// `--max-connections`, 429 over the client address's bounds.
pub fn admit(
    state: &AppState,
    peer: SocketAddr,
    headers: &axum::http::HeaderMap,
) -> Result<Admission, NotAdmitted> {
    if state.shutdown.is_cancelled() {
        return Err(NotAdmitted::ShuttingDown);
    }
    let clients = state.gate.clients();
    let ip = clients.address(peer.ip(), headers);
    let client = clients.admit(ip).map_err(NotAdmitted::Client)?;
    let Ok(slot) = state.slots.clone().try_acquire_owned() else {
        return Err(NotAdmitted::Full);
    };
    Ok(Admission {
        _client: client,
        _slot: slot,
    })
}

/// Why a connection was not admitted.
#[derive(Debug)]
pub enum NotAdmitted {
    ShuttingDown,
    Full,
    Client(crate::gate::clients::Refused),
}

impl IntoResponse for NotAdmitted {
    fn into_response(self) -> Response {
        match self {
            Self::ShuttingDown => {
                (StatusCode::SERVICE_UNAVAILABLE, "shutting down").into_response()
            }
            Self::Full => (StatusCode::SERVICE_UNAVAILABLE, "too many connections").into_response(),
            Self::Client(why) => (StatusCode::TOO_MANY_REQUESTS, why.to_string()).into_response(),
        }
    }
}

/// Refuses pages from origins not allowed (403), and adds CORS headers for
/// allowed ones.
async fn check_origin(
    State(state): State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if !state.origins.allows(request.headers()) {
        tracing::debug!(origin = ?request.headers().get(header::ORIGIN), "origin refused");
        return (StatusCode::FORBIDDEN, "origin not allowed").into_response();
    }
    let cors = state.origins.cors(request.headers());
    let mut response = next.run(request).await;
    // Insert, not append: a response relayed from another replica has them
    // already, and a repeated Access-Control-Allow-Origin is refused.
    for (name, value) in cors {
        response.headers_mut().insert(name, value);
    }
    response
}

/// Socket buffers and frame limits, the same for both doors.
pub fn configure(ws: WebSocketUpgrade, limits: &Limits) -> WebSocketUpgrade {
    ws.read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(WRITE_BUFFER_BYTES)
        .max_write_buffer_size(MAX_WRITE_BUFFER_BYTES)
        .max_frame_size(limits.max_frame_bytes)
        .max_message_size(limits.max_frame_bytes)
}

async fn readyz(State(state): State<AppState>) -> Response {
    if state.shutdown.is_cancelled() {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down").into_response()
    } else if state.hub.is_ready() {
        (StatusCode::OK, "ready").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "redis unreachable").into_response()
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}
