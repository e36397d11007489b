//! What a session's packets travel on, waiting for the next one, and what
//! can wake or end a session's task.

use super::polling::{Polling, Upgrade};
use crate::door::socket::is_capacity_error;
use crate::hub::Outbound;
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

/// Why a session ended.
#[derive(Debug)]
pub(super) enum End {
    /// The client said goodbye (Engine.IO close or Socket.IO disconnect):
    /// nothing to recover.
    Goodbye,
    /// The transport went away: recoverable within the window.
    Lost,
    Shutdown,
    /// Sent elsewhere (this replica drains or sheds load): recoverable.
    Moved,
    TooSlow,
    PingTimeout,
    ConnectTimeout,
    TooLarge,
    TokenExpired,
    /// The server API disconnected the user: not recoverable.
    Disconnected,
    Flood,
    Protocol(&'static str),
}

/// What woke the task.
pub(super) enum Wake {
    Shutdown,
    Expired,
    TooSlow,
    Queued(Outbound),
    Packet(String),
    Closed(End),
    /// A WebSocket ping or pong: counted against the rate.
    Control,
    Upgrade(Upgrade),
    Heartbeat {
        unanswered: bool,
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
            Some(Err(err)) if is_capacity_error(&err) => Wake::Closed(End::TooLarge),
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
