//! How the hub reaches one session: its bounded queue and the token that
//! says it overflowed. Fan-out and server commands both queue through
//! here, and never wait for a client.

use super::names::RoomName;
use axum::extract::ws::Utf8Bytes;
use bytes::Bytes;
use std::sync::{Arc, OnceLock};
use std::time::Instant;
use tokio_util::sync::CancellationToken;

/// An item waiting in a session's send queue: 16 bytes, whatever it holds.
#[derive(Debug, Clone)]
pub enum Outbound {
    /// A room message: skipped by a session that already has its id.
    Room(Arc<RoomMessage>),
    /// A presence event, for members that asked for them.
    Event(Arc<RoomEvent>),
    /// The server disconnects this client (server API `disconnect`): the
    /// door closes it (native close 4002, Socket.IO DISCONNECT) and it is
    /// not recovered.
    Disconnect,
    /// This replica is draining or sheds load: the door answers what the
    /// client already sent, then closes it so that it reconnects elsewhere
    /// and resumes (native close 1001, Socket.IO: the transport closed, its
    /// session saved for recovery).
    Reconnect,
}

/// One room message, decoded once per replica and shared by every recipient.
#[derive(Debug)]
pub struct RoomMessage {
    pub room: RoomName,
    pub id: u64,
    /// The stored body: a JSON object (`room`, `user`, `message`, ...)
    /// without `type` and `id`, checked to be UTF-8 and an object.
    pub body: Utf8Bytes,
    /// The native door's frame, built by its first recipient.
    pub native: OnceLock<Utf8Bytes>,
    /// The Socket.IO door's packet, likewise.
    pub socketio: OnceLock<Utf8Bytes>,
    /// When this replica got it: how late its frames leave tells the
    /// sockets whether merging writes is worth a client's delayed ACK
    /// (`crate::gate::nagle`).
    pub arrived: Instant,
}

impl RoomMessage {
    /// `None` for a body that is not a UTF-8 JSON object: it cannot be
    /// spliced into any door's frame.
    pub fn new(room: RoomName, id: u64, body: Bytes) -> Option<Self> {
        if body.first() != Some(&b'{') {
            return None;
        }
        Some(Self {
            room,
            id,
            body: Utf8Bytes::try_from(body).ok()?,
            native: OnceLock::new(),
            socketio: OnceLock::new(),
            arrived: Instant::now(),
        })
    }
}

/// A presence event of a room, shared like a [`RoomMessage`].
#[derive(Debug)]
pub struct RoomEvent {
    pub room: RoomName,
    /// True for a member that joined, false for one that left.
    pub joined: bool,
    /// The member's info: a UTF-8 JSON object.
    pub info: Utf8Bytes,
    pub native: OnceLock<Utf8Bytes>,
}

/// How the fan-out reaches one session.
#[derive(Debug, Clone)]
pub struct Mailbox {
    pub queue: flume::Sender<Outbound>,
    /// Cancelled when the queue overflows.
    pub too_slow: CancellationToken,
}

/// Queues one item; 1 if queued. A full queue cancels the session as too
/// slow instead of waiting or growing.
pub(super) fn try_queue(member: &Mailbox, item: Outbound) -> u64 {
    match member.queue.try_send(item) {
        Ok(()) => 1,
        Err(flume::TrySendError::Full(_)) => {
            member.too_slow.cancel();
            0
        }
        Err(flume::TrySendError::Disconnected(_)) => 0,
    }
}
