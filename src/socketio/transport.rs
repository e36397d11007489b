//! What a session's packets travel on, and waiting for the next one.

use super::connection::{End, Wake};
use super::polling::Polling;
use super::websocket::Upgrade;
use axum::extract::ws::{Message, WebSocket};
use futures_util::StreamExt;
use std::sync::Arc;

/// The transport a session's packets travel on. Not boxed: the WebSocket
/// is the long-lived case, and a box would only add an indirection to it.
#[allow(clippy::large_enum_variant)]
pub enum Link {
    Ws(WebSocket),
    Polling {
        polling: Arc<Polling>,
        inbound: flume::Receiver<String>,
        upgrade: flume::Receiver<Upgrade>,
    },
}

/// The next thing the transport brings.
pub(super) async fn incoming(link: &mut Link) -> Wake {
    match link {
        Link::Ws(ws) => match ws.next().await {
            Some(Ok(Message::Text(text))) => Wake::Packet(text.to_string()),
            Some(Ok(Message::Binary(_))) => {
                Wake::Closed(End::Protocol("binary frames are not supported"))
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => Wake::Control,
            Some(Ok(Message::Close(_))) | None => Wake::Closed(End::Lost),
            Some(Err(err)) if crate::ws::connection::is_capacity_error(&err) => {
                Wake::Closed(End::TooLarge)
            }
            Some(Err(_)) => Wake::Closed(End::Lost),
        },
        // Boxed: only polling sessions pay for its state, not the many
        // idle WebSockets.
        Link::Polling {
            polling,
            inbound,
            upgrade,
        } => Box::pin(polled(polling, inbound, upgrade)).await,
    }
}

async fn polled(
    polling: &Polling,
    inbound: &flume::Receiver<String>,
    upgrade: &flume::Receiver<Upgrade>,
) -> Wake {
    tokio::select! {
        packet = inbound.recv_async() => match packet {
            Ok(packet) => Wake::Packet(packet),
            Err(_) => Wake::Closed(End::Lost),
        },
        step = upgrade.recv_async() => match step {
            Ok(step) => Wake::Upgrade(step),
            Err(_) => Wake::Closed(End::Lost),
        },
        _ = polling.closed.cancelled() => Wake::Closed(End::Lost),
    }
}
