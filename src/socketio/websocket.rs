//! The WebSocket side of the door: a session that starts on a WebSocket,
//! and the upgrade of a polling session (the probe answered on the new
//! socket, then the socket handed to the session's task).

use super::connection::run;
use super::packet::engine;
use super::polling::Polling;
use super::transport::Link;
use super::{random_id, unknown_session};
use crate::ws::AppState;
use axum::extract::WebSocketUpgrade;
use axum::extract::ws::{Message, Utf8Bytes, WebSocket};
use axum::response::Response;
use futures_util::StreamExt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// A WebSocket taking over a polling session.
pub enum Upgrade {
    /// The probe was answered: end the pending poll so the client can
    /// finish the upgrade.
    Probed,
    /// The client sent `upgrade`: carry on over this socket.
    Done(Box<WebSocket>),
}

/// `GET /socket.io/?transport=websocket`: a new session on a WebSocket, or
/// the upgrade of the polling session `sid`.
pub fn upgrade(
    state: AppState,
    peer: SocketAddr,
    headers: &axum::http::HeaderMap,
    ws: WebSocketUpgrade,
    sid: Option<String>,
) -> Response {
    let ws = crate::ws::configure(ws, &state.limits);
    match sid {
        None => {
            let admission = match crate::ws::admit(&state, peer, headers) {
                Ok(admission) => admission,
                Err(refused) => return axum::response::IntoResponse::into_response(refused),
            };
            let token = state.connections.token();
            ws.on_upgrade(move |socket| {
                let connections = state.connections.clone();
                connections.spawn(run(state, peer, random_id(), Link::Ws(socket), admission));
                drop(token);
                std::future::ready(())
            })
        }
        Some(sid) => {
            let Some(polling) = state.sio.polling.get(&sid) else {
                return unknown_session();
            };
            let timeout = state.limits.ping_timeout;
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
