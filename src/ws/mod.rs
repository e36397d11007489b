//! The WebSocket chat server: HTTP routes, shared state and start-up.
//!
//! [`run`] takes a bound listener and a shutdown token, so tests and `main`
//! start it the same way. Upgraded sockets outlive axum's own graceful
//! shutdown, so they are tracked here and closed with 1001 before exit.

pub mod connection;
pub mod limits;
pub mod metrics;
pub mod protocol;
pub mod rooms;

use crate::broadcast::{self, Broadcast, Deliver, HistoryPolicy};
use crate::config::WsServerArgs;
use anyhow::Context;
use axum::Router;
use axum::extract::{ConnectInfo, Query, State, WebSocketUpgrade};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use limits::Limits;
use metrics::Metrics;
use rooms::Rooms;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::net::TcpListener;
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
/// The page loads nothing from elsewhere; inline script and style only.
const PAGE_CSP: &str = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// Everything a request or connection handler may touch; cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

pub struct Shared {
    pub server_id: String,
    pub broker: Arc<dyn Broadcast>,
    pub rooms: Arc<Rooms>,
    pub limits: Limits,
    /// Largest `history` a join may ask for: what the log keeps.
    pub history_size: usize,
    pub metrics: Arc<Metrics>,
    pub shutdown: CancellationToken,
    /// Upgraded sockets, so shutdown can wait for their close frames.
    pub connections: TaskTracker,
    next_connection: AtomicU64,
}

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl Shared {
    pub fn next_connection_id(&self) -> u64 {
        self.next_connection.fetch_add(1, Ordering::Relaxed)
    }
}

pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/ws", get(upgrade))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

/// Binds `--listen` and serves until SIGTERM or Ctrl-C.
pub async fn serve(args: WsServerArgs) -> anyhow::Result<()> {
    let listener = crate::process::listen(args.listen).await?;
    run(listener, args, crate::shutdown::on_signal()).await
}

pub async fn run(
    listener: TcpListener,
    args: WsServerArgs,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let metrics = Arc::new(Metrics::new());
    let rooms = Arc::new(Rooms::new(metrics.clone()));
    let deliver: Deliver = {
        let rooms = rooms.clone();
        Arc::new(move |envelope| rooms.deliver(envelope))
    };
    let policy = HistoryPolicy {
        max_len: args.history_size,
        max_age: args.history_ttl,
    };
    let broker = broadcast::connect(&args.redis, policy, deliver).await?;
    let state = AppState(Arc::new(Shared {
        server_id: args.id.clone(),
        broker,
        rooms,
        limits: args.limits.clone(),
        history_size: args.history_size,
        metrics,
        shutdown: shutdown.clone(),
        connections: TaskTracker::new(),
        next_connection: AtomicU64::new(1),
    }));
    spawn_repairs(state.clone());
    let addr = listener.local_addr()?;
    let mode = args.redis.mode();
    tracing::info!(%addr, id = %args.id, mode, "ws-server listening");

    axum::serve(
        crate::process::without_nagle(listener),
        app(state.clone()).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown.clone().cancelled_owned())
    .await
    .context("HTTP server failed")?;

    state.connections.close();
    if tokio::time::timeout(args.shutdown_timeout, state.connections.wait())
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

/// After every Redis outage (or a pub/sub overflow), reads back from the
/// log what this replica's rooms missed and delivers it in order.
fn spawn_repairs(state: AppState) {
    let mut resumed = state.broker.resumed();
    tokio::spawn(async move {
        while resumed.changed().await.is_ok() {
            for (room, after) in state.rooms.begin_repair() {
                let missed = match state
                    .broker
                    .replay(&rooms::topic(&room), broadcast::From::Since(after))
                    .await
                {
                    Ok(replay) if replay.recovered => replay.messages,
                    Ok(_) => {
                        tracing::warn!(%room, "history lost with Redis; members resume with `since`");
                        Vec::new()
                    }
                    Err(err) => {
                        tracing::warn!(%err, %room, "could not read back missed messages");
                        Vec::new()
                    }
                };
                if !missed.is_empty() {
                    tracing::info!(%room, count = missed.len(), "delivering messages missed during an outage");
                }
                state.rooms.finish_repair(&room, missed);
            }
        }
    });
}

async fn page() -> Response {
    (
        [
            (header::CONTENT_SECURITY_POLICY, PAGE_CSP),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Html(CHAT_PAGE),
    )
        .into_response()
}

/// Query parameters of `/ws`.
#[derive(serde::Deserialize)]
struct Connect {
    /// Display name shown beside the connection id.
    name: Option<String>,
}

async fn upgrade(
    ws: WebSocketUpgrade,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    State(state): State<AppState>,
    Query(connect): Query<Connect>,
) -> Response {
    let name = match connect.name.as_deref().map(protocol::check_name) {
        None => None,
        Some(Ok(name)) => Some(name.to_owned()),
        Some(Err(why)) => return (StatusCode::BAD_REQUEST, why).into_response(),
    };
    if state.shutdown.is_cancelled() {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down").into_response();
    }
    if state.connections.len() >= state.limits.max_connections {
        return (StatusCode::SERVICE_UNAVAILABLE, "too many connections").into_response();
    }
    let frame_limit = state.limits.max_frame_bytes;
    let token = state.connections.token();
    ws.read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(WRITE_BUFFER_BYTES)
        .max_write_buffer_size(MAX_WRITE_BUFFER_BYTES)
        .max_frame_size(frame_limit)
        .max_message_size(frame_limit)
        .on_upgrade(move |socket| {
            // A task of its own rather than axum's upgrade task, which
            // would keep the upgrade's state beside ours for the
            // connection's whole life.
            let connections = state.connections.clone();
            connections.spawn(connection::run(socket, state, peer, name));
            drop(token);
            std::future::ready(())
        })
}

async fn readyz(State(state): State<AppState>) -> Response {
    if state.shutdown.is_cancelled() {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down").into_response()
    } else if state.broker.is_ready() {
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
