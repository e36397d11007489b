//! The WebSocket side of the door: a session that starts on a WebSocket,
//! and the upgrade of a polling session (the probe answered on the new
//! socket, then the socket handed to the session's task).

use super::answers::{random_id, unknown_session};
use super::connection::run;
use super::packet::engine;
use super::polling::{Polling, Upgrade};
use super::state::SioState;
use super::transport::Link;
use crate::door::admission::admit;
use crate::door::socket::configure;
use axum::extract::WebSocketUpgrade;
use axum::extract::ws::{Message, Utf8Bytes, WebSocket};
use axum::response::Response;
use futures_util::StreamExt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// `GET /socket.io/?transport=websocket`: a new session on a WebSocket, or
/// the upgrade of the polling session `sid`.
pub(super) fn upgrade(
    state: SioState,
    peer: SocketAddr,
    headers: &axum::http::HeaderMap,
    ws: WebSocketUpgrade,
    sid: Option<String>,
) -> Response {
    let ws = configure(ws, &state.door.limits);
    match sid {
        None => {
            let admission = match admit(&state.door, peer, headers) {
                Ok(admission) => admission,
                Err(refused) => return axum::response::IntoResponse::into_response(refused),
            };
            let token = state.door.connections.token();
            ws.on_upgrade(move |socket| {
                let connections = state.door.connections.clone();
                connections.spawn(run(state, peer, random_id(), Link::Ws(socket), admission));
                drop(token);
                std::future::ready(())
            })
        }
        Some(sid) => {
            let Some(polling) = state.polling.get(&sid) else {
                return unknown_session();
            };
            let timeout = state.door.limits.ping_timeout;
            ws.on_upgrade(move |socket| probe(socket, polling, timeout))
        }
    }
}

/// Answers the client's probe on the new socket, then hands the socket to
/// the session's task once the client asks for the upgrade.
async fn probe(mut socket: WebSocket, polling: Arc<Polling>, timeout: Duration) {
    async fn next(socket: &mut WebSocket, timeout: Duration) -> Option<Utf8Bytes> {
        match tokio::time::timeout(timeout, socket.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => Some(text),
            _ => None,
        }
    }
    if next(&mut socket, timeout).await.as_deref() != Some(engine::PROBE) {
        return;
    }
    if socket
        .send(Message::Text(engine::PROBE_REPLY.into()))
        .await
        .is_err()
        || polling.upgrade.send_async(Upgrade::Probed).await.is_err()
    {
        return;
    }
    if next(&mut socket, timeout).await.as_deref() == Some(engine::UPGRADE) {
        let _ = polling
            .upgrade
            .send_async(Upgrade::Done(Box::new(socket)))
            .await;
    }
}
