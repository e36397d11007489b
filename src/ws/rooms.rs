//! Local room membership and fan-out: which connections of this replica are
//! in which room, and handing each broadcast to them.
//!
//! Fan-out never waits for a client: each member has a bounded queue, and a
//! member whose queue is full is cancelled (its connection closes with
//! 1013) instead of making anyone else wait or memory grow.

use super::metrics::Metrics;
use super::protocol::message_frame;
use crate::broadcast::Envelope;
use axum::extract::ws::Utf8Bytes;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Broadcast topics of chat rooms, so other users of the broadcast (the
/// user service) cannot collide with a room name.
pub const TOPIC_PREFIX: &str = "room:";

pub fn topic(room: &str) -> String {
    format!("{TOPIC_PREFIX}{room}")
}

/// A frame waiting in a connection's send queue.
#[derive(Debug)]
pub enum Outbound {
    Room(Arc<RoomMessage>),
}

/// One room message, built once per replica and shared by every recipient.
#[derive(Debug)]
pub struct RoomMessage {
    pub room: Arc<str>,
    pub id: u64,
    pub frame: Utf8Bytes,
}

/// How the fan-out reaches one connection.
#[derive(Clone)]
pub struct Member {
    pub queue: mpsc::Sender<Outbound>,
    /// Cancelled when the queue overflows.
    pub too_slow: CancellationToken,
}

pub struct Rooms {
    /// A std mutex: held only for map updates and for one pass of
    /// non-blocking `try_send`s, never across an await.
    rooms: Mutex<HashMap<Arc<str>, HashMap<u64, Member>>>,
    metrics: Arc<Metrics>,
}

impl Rooms {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self {
            rooms: Mutex::new(HashMap::new()),
            metrics,
        }
    }

    /// Adds a member; returns the room name shared with the map.
    pub fn join(&self, room: &str, conn: u64, member: Member) -> Arc<str> {
        let mut rooms = self.rooms.lock().expect("rooms lock poisoned");
        let existing = rooms.get_key_value(room).map(|(name, _)| name.clone());
        let name = existing.unwrap_or_else(|| {
            let name: Arc<str> = Arc::from(room);
            rooms.insert(name.clone(), HashMap::new());
            self.metrics.rooms.set(rooms.len() as i64);
            name
        });
        rooms
            .get_mut(&name)
            .expect("inserted above")
            .insert(conn, member);
        name
    }

    pub fn leave(&self, room: &str, conn: u64) {
        let mut rooms = self.rooms.lock().expect("rooms lock poisoned");
        if let Some(members) = rooms.get_mut(room) {
            members.remove(&conn);
            if members.is_empty() {
                rooms.remove(room);
                self.metrics.rooms.set(rooms.len() as i64);
            }
        }
    }

    /// Hands one broadcast to every local member of its room.
    pub fn deliver(&self, envelope: Envelope) {
        let Some(room) = envelope.topic.strip_prefix(TOPIC_PREFIX) else {
            return;
        };
        let rooms = self.rooms.lock().expect("rooms lock poisoned");
        let Some((name, members)) = rooms.get_key_value(room) else {
            return;
        };
        let Some(frame) = message_frame(envelope.id, &envelope.payload) else {
            tracing::warn!(room, id = envelope.id, "dropping undecodable room message");
            return;
        };
        let message = Arc::new(RoomMessage {
            room: name.clone(),
            id: envelope.id,
            frame,
        });
        let mut delivered = 0;
        for member in members.values() {
            match member.queue.try_send(Outbound::Room(message.clone())) {
                Ok(()) => delivered += 1,
                Err(mpsc::error::TrySendError::Full(_)) => member.too_slow.cancel(),
                Err(mpsc::error::TrySendError::Closed(_)) => {}
            }
        }
        drop(rooms);
        self.metrics.messages_out.inc_by(delivered);
    }
}
