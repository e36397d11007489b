//! The Socket.IO door: Engine.IO 4 / Socket.IO 5 at `/socket.io/`, so the
//! original's pages and clients (socket.io-client 4.x, python-socketio 5.x)
//! reach the same hub as native clients: same rooms, ids, history and
//! limits. Like the native door it only translates; the rules of a room
//! are the hub's.
//!
//! - [`packet`]: Engine.IO and Socket.IO packets.
//! - [`answers`]: refusals, the open packet, ids.
//! - [`polling`]: a long-polling session's side and the registry.
//! - [`recovery`]: the store of sessions saved for recovery.
//! - [`relay`]: polling requests that reached another replica.
//! - [`state`]: the door's state.
//! - [`transport`]: what a session's packets travel on, why it woke or ended.
//! - [`socket`]: a connected client, saved for recovery as it changes.
//! - [`connection`]: one client's task, on polling or WebSocket.
//! - [`events`]: what the original's events do, as hub calls.
//! - [`requests`]: the HTTP requests of a polling session.
//! - [`websocket`]: sessions on a WebSocket, and the upgrade from polling.

mod answers;
mod connection;
mod events;
pub mod packet;
mod polling;
mod recovery;
mod relay;
mod requests;
mod socket;
mod state;
mod transport;
mod websocket;

pub use state::{Settings, SioState};

use answers::{bad_request, refuse, unknown_session, unknown_transport};
use axum::extract::{ConnectInfo, FromRequestParts, Query, Request, State, WebSocketUpgrade};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::net::SocketAddr;

/// Engine.IO's query string.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct EngineQuery {
    #[serde(rename = "EIO")]
    eio: Option<String>,
    transport: Option<String>,
    sid: Option<String>,
}

/// `GET /socket.io/`: a polling handshake or poll, or a WebSocket (new, or
/// the upgrade of a polling session).
pub(crate) async fn get(
    State(state): State<SioState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Query(query): Query<EngineQuery>,
    request: Request,
) -> Response {
    if query.eio.as_deref() != Some("4") {
        return refuse(StatusCode::BAD_REQUEST, 5, "Unsupported protocol version");
    }
    match (query.transport.as_deref(), query.sid) {
        (Some("websocket"), Some(sid)) if state.polling.get(&sid).is_none() => match &state.relay {
            Some(relay) => relay
                .forward_upgrade(&sid, request)
                .await
                .unwrap_or_else(unknown_session),
            None => unknown_session(),
        },
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
        (Some("polling"), None) => requests::handshake(state, peer, request.headers()).await,
        (Some("polling"), Some(sid)) => requests::poll(state, &sid, request).await,
        _ => unknown_transport(),
    }
}

/// `POST /socket.io/`: packets of a polling session.
pub(crate) async fn post(
    State(state): State<SioState>,
    Query(query): Query<EngineQuery>,
    request: Request,
) -> Response {
    match (query.eio.as_deref(), query.transport.as_deref(), query.sid) {
        (Some("4"), Some("polling"), Some(sid)) => requests::receive(state, &sid, request).await,
        (Some("4"), Some("polling"), None) => bad_request(),
        (Some("4"), _, _) => unknown_transport(),
        _ => refuse(StatusCode::BAD_REQUEST, 5, "Unsupported protocol version"),
    }
}

/// `OPTIONS /socket.io/`: a CORS preflight (the origin check already
/// passed; its headers are added on the way out).
pub(crate) async fn preflight(headers: axum::http::HeaderMap) -> Response {
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
