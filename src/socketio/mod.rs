//! The Socket.IO door: Engine.IO 4 / Socket.IO 5 at `/socket.io/`, so the
//! original's pages and clients (socket.io-client 4.x, python-socketio 5.x)
//! reach the same hub as native clients: same rooms, ids, history and
//! limits. Like the native door it only translates; the rules of a room
//! are the hub's.
//!
//! - [`packet`]: Engine.IO and Socket.IO packets.
//! - [`polling`]: the HTTP long-polling transport and its session registry.
//! - [`connection`]: one client's task, on polling or WebSocket.
//! - [`transport`]: what a session's packets travel on.
//! - [`websocket`]: sessions on a WebSocket, and the upgrade from polling.
//! - [`events`]: what the original's events do, as hub calls.
//! - [`recovery`]: session state saved for connection state recovery.
//! - [`relay`]: polling requests that reached another replica.

pub mod connection;
pub mod events;
pub mod packet;
pub mod polling;
pub mod recovery;
pub mod relay;
pub mod transport;
pub mod websocket;

use crate::ws::AppState;
use axum::extract::{ConnectInfo, FromRequestParts, Query, Request, State, WebSocketUpgrade};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use recovery::SessionStore;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// What the door needs besides the hub and the native limits.
#[derive(Debug, Clone)]
pub struct Settings {
    /// How long a disconnected session can be recovered; `None`: recovery
    /// off (no offsets on events, for clients whose handlers cannot take
    /// the extra argument).
    pub recovery_window: Option<Duration>,
    /// `host:port` other replicas reach this one at; derived when `None`.
    pub advertise: Option<String>,
}

/// The door's shared state, one per replica.
pub struct Door {
    pub settings: Settings,
    pub polling: polling::Registry,
    pub store: Arc<dyn SessionStore>,
    /// With Redis: forwards polling requests to the replica holding them.
    pub relay: Option<relay::Relay>,
}

impl Door {
    /// `listen`: where this replica accepts connections.
    pub async fn new(
        settings: Settings,
        redis: Option<&crate::redis::RedisSettings>,
        listen: SocketAddr,
        ping_interval: Duration,
    ) -> anyhow::Result<Self> {
        let (store, relay): (Arc<dyn SessionStore>, _) = match redis {
            Some(redis) => {
                let advertised = match &settings.advertise {
                    Some(addr) => addr.clone(),
                    None => relay::advertised_address(listen, redis),
                };
                tracing::debug!(%advertised, "polling sessions are relayed to this address");
                (
                    Arc::new(recovery::RedisStore::connect(redis).await?),
                    Some(relay::Relay::connect(redis, advertised, ping_interval).await?),
                )
            }
            None => (Arc::new(recovery::MemoryStore::default()), None),
        };
        Ok(Self {
            settings,
            polling: polling::Registry::default(),
            store,
            relay,
        })
    }
}

/// Engine.IO's query string.
#[derive(Debug, serde::Deserialize)]
pub struct EngineQuery {
    #[serde(rename = "EIO")]
    eio: Option<String>,
    transport: Option<String>,
    sid: Option<String>,
}

/// Engine.IO's error body for a refused request.
fn refuse(status: StatusCode, code: u8, message: &str) -> Response {
    let body = serde_json::json!({"code": code, "message": message}).to_string();
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn unknown_transport() -> Response {
    refuse(StatusCode::BAD_REQUEST, 0, "Transport unknown")
}

fn unknown_session() -> Response {
    refuse(StatusCode::BAD_REQUEST, 1, "Session ID unknown")
}

fn bad_request() -> Response {
    refuse(StatusCode::BAD_REQUEST, 3, "Bad request")
}

/// `GET /socket.io/`: a polling handshake or poll, or a WebSocket (new, or
/// the upgrade of a polling session).
pub async fn get(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Query(query): Query<EngineQuery>,
    request: Request,
) -> Response {
    if query.eio.as_deref() != Some("4") {
        return refuse(StatusCode::BAD_REQUEST, 5, "Unsupported protocol version");
    }
    match (query.transport.as_deref(), query.sid) {
        (Some("websocket"), Some(sid)) if state.sio.polling.get(&sid).is_none() => {
            match &state.sio.relay {
                Some(relay) => relay
                    .forward_upgrade(&sid, request)
                    .await
                    .unwrap_or_else(unknown_session),
                None => unknown_session(),
            }
        }
        (Some("websocket"), sid) => {
            let (mut parts, _) = request.into_parts();
            match WebSocketUpgrade::from_request_parts(&mut parts, &state).await {
                Ok(ws) => {
                    let headers = parts.headers.clone();
                    websocket::upgrade(state, peer, &headers, ws, sid)
                }
                Err(_) => bad_request(),
            }
        }
        (Some("polling"), None) => polling::handshake(state, peer, request.headers()).await,
        (Some("polling"), Some(sid)) => polling::poll(state, &sid, request).await,
        _ => unknown_transport(),
    }
}

/// `POST /socket.io/`: packets of a polling session.
pub async fn post(
    State(state): State<AppState>,
    Query(query): Query<EngineQuery>,
    request: Request,
) -> Response {
    match (query.eio.as_deref(), query.transport.as_deref(), query.sid) {
        (Some("4"), Some("polling"), Some(sid)) => polling::receive(state, &sid, request).await,
        (Some("4"), Some("polling"), None) => bad_request(),
        (Some("4"), _, _) => unknown_transport(),
        _ => refuse(StatusCode::BAD_REQUEST, 5, "Unsupported protocol version"),
    }
}

/// `OPTIONS /socket.io/`: a CORS preflight (the origin check already
/// passed; its headers are added on the way out).
pub async fn preflight(headers: axum::http::HeaderMap) -> Response {
    let asked = headers
        .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
        .cloned()
        .unwrap_or(axum::http::HeaderValue::from_static("content-type"));
    (
        StatusCode::NO_CONTENT,
        [
            (
                header::ACCESS_CONTROL_ALLOW_METHODS,
                axum::http::HeaderValue::from_static("GET, POST, OPTIONS"),
            ),
            (header::ACCESS_CONTROL_ALLOW_HEADERS, asked),
        ],
    )
        .into_response()
}

/// The Engine.IO open packet: the session id, the upgrade on offer and
/// the heartbeat and payload bounds the client must keep to.
pub fn open_packet(state: &AppState, sid: &str, upgrades: bool) -> String {
    let limits = &state.limits;
    let open = serde_json::json!({
        "sid": sid,
        "upgrades": if upgrades { vec!["websocket"] } else { vec![] },
        "pingInterval": limits.ping_interval.as_millis() as u64,
        "pingTimeout": limits.ping_timeout.as_millis() as u64,
        "maxPayload": limits.max_frame_bytes,
    });
    format!("0{open}")
}

/// A random id as Engine.IO makes them: 20 URL-safe characters.
pub fn random_id() -> String {
    std::iter::repeat_with(fastrand::alphanumeric)
        .take(20)
        .collect()
}
