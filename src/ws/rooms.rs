//! Local room membership and fan-out: which connections of this replica are
//! in which room, and handing each broadcast to them.
//!
//! Fan-out never waits for a client: each member has a bounded queue, and a
//! member whose queue is full is cancelled (its connection closes with
//! 1013) instead of making anyone else wait or memory grow.
//!
//! After Redis comes back, messages published while this replica was cut
//! off are read back from the log ([`Rooms::begin_repair`]); live
//! deliveries of a room wait meanwhile so that order is kept.

use super::metrics::Metrics;
use super::protocol::{event_frame, message_frame};
use crate::broadcast::{Envelope, Kind};
use axum::extract::ws::Utf8Bytes;
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio_util::sync::CancellationToken;

/// Broadcast topics of chat rooms, so other users of the broadcast (the
/// user service) cannot collide with a room name.
pub const TOPIC_PREFIX: &str = "room:";

/// Live deliveries held per room while it is being repaired; beyond this
/// they are dropped (and logged): members recover them with `since`.
const REPAIR_BUFFER: usize = 10_000;

pub fn topic(room: &str) -> String {
    format!("{TOPIC_PREFIX}{room}")
}

/// A frame waiting in a connection's send queue.
#[derive(Debug)]
pub enum Outbound {
    /// A room message: skipped by a connection that already has its id.
    Room(Arc<RoomMessage>),
    /// A presence event, for members that asked for them.
    Event(Arc<RoomEvent>),
}

/// One room message, built once per replica and shared by every recipient.
#[derive(Debug)]
pub struct RoomMessage {
    pub room: Arc<str>,
    pub id: u64,
    pub frame: Utf8Bytes,
}

/// A presence event of a room, shared like a [`RoomMessage`].
#[derive(Debug)]
pub struct RoomEvent {
    pub room: Arc<str>,
    pub frame: Utf8Bytes,
}

/// How the fan-out reaches one connection.
#[derive(Clone)]
pub struct Member {
    pub queue: flume::Sender<Outbound>,
    /// Cancelled when the queue overflows.
    pub too_slow: CancellationToken,
}

#[derive(Default)]
struct Room {
    members: HashMap<u64, Member>,
    /// The members that asked for presence events. Kept apart so a join
    /// storm in a big room costs one queue push per watcher, not per member.
    watchers: HashMap<u64, Member>,
    /// Newest message id handed out here; older or equal ones are repeats.
    last_delivered: u64,
    /// The log's position when the room got its first local member: the
    /// lower bound of what a repair reads back.
    joined_at: u64,
    /// Some while being repaired: live deliveries wait here.
    held: Option<Vec<Envelope>>,
}

pub struct Rooms {
    /// A std mutex: held only for map updates and for one pass of
    /// non-blocking `try_send`s, never across an await.
    rooms: Mutex<HashMap<Arc<str>, Room>>,
    metrics: Arc<Metrics>,
}

impl Rooms {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self {
            rooms: Mutex::new(HashMap::new()),
            metrics,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Arc<str>, Room>> {
        self.rooms.lock().expect("rooms lock poisoned")
    }

    /// Adds a member; returns the room name shared with the map.
    pub fn join(&self, room: &str, conn: u64, member: Member) -> Arc<str> {
        let mut rooms = self.lock();
        let existing = rooms.get_key_value(room).map(|(name, _)| name.clone());
        let name = existing.unwrap_or_else(|| {
            let name: Arc<str> = Arc::from(room);
            rooms.insert(name.clone(), Room::default());
            self.metrics.rooms.set(rooms.len() as i64);
            name
        });
        rooms
            .get_mut(&name)
            .expect("inserted above")
            .members
            .insert(conn, member);
        name
    }

    /// Sends the room's presence events to this member too.
    pub fn watch(&self, room: &str, conn: u64, member: Member) {
        if let Some(room) = self.lock().get_mut(room) {
            room.watchers.insert(conn, member);
        }
    }

    /// Records the log position seen when joining, for repairs.
    pub fn note_position(&self, room: &str, position: u64) {
        if let Some(room) = self.lock().get_mut(room)
            && room.joined_at == 0
        {
            room.joined_at = position;
        }
    }

    pub fn leave(&self, room: &str, conn: u64) {
        let mut rooms = self.lock();
        if let Some(entry) = rooms.get_mut(room) {
            entry.members.remove(&conn);
            entry.watchers.remove(&conn);
            if entry.members.is_empty() {
                rooms.remove(room);
                self.metrics.rooms.set(rooms.len() as i64);
            }
        }
    }

    /// Hands one broadcast to every local member of its room.
    pub fn deliver(&self, envelope: Envelope) {
        let Some(name) = envelope.topic.strip_prefix(TOPIC_PREFIX) else {
            return;
        };
        let mut rooms = self.lock();
        let Some((name, room)) = entry(&mut rooms, name) else {
            return;
        };
        if let Some(held) = &mut room.held {
            if held.len() < REPAIR_BUFFER {
                held.push(envelope);
            } else {
                tracing::warn!(room = %name, "repair buffer full; dropping a live delivery");
            }
            return;
        }
        let delivered = fan_out(&name, room, envelope.kind, &envelope.payload);
        drop(rooms);
        self.metrics.messages_out.inc_by(delivered);
    }

    /// Starts repairing every room: returns each with the id to read the
    /// log after. Live deliveries are held until [`Rooms::finish_repair`].
    pub fn begin_repair(&self) -> Vec<(Arc<str>, u64)> {
        let mut rooms = self.lock();
        rooms
            .iter_mut()
            .map(|(name, room)| {
                room.held.get_or_insert_with(Vec::new);
                (name.clone(), room.last_delivered.max(room.joined_at))
            })
            .collect()
    }

    /// Delivers what the log had (ids not yet handed out), then what was
    /// held, and resumes live delivery.
    pub fn finish_repair(&self, room: &str, missed: Vec<(u64, Bytes)>) {
        let mut rooms = self.lock();
        let Some((name, entry)) = entry(&mut rooms, room) else {
            return;
        };
        let held = entry.held.take().unwrap_or_default();
        let mut delivered = 0;
        for (id, payload) in missed {
            delivered += fan_out(&name, entry, Kind::Message { id }, &payload);
        }
        for envelope in held {
            delivered += fan_out(&name, entry, envelope.kind, &envelope.payload);
        }
        drop(rooms);
        self.metrics.messages_out.inc_by(delivered);
    }
}

/// A room with the map's shared copy of its name.
fn entry<'a>(
    rooms: &'a mut HashMap<Arc<str>, Room>,
    name: &str,
) -> Option<(Arc<str>, &'a mut Room)> {
    let key = rooms.get_key_value(name)?.0.clone();
    rooms.get_mut(name).map(|room| (key, room))
}

/// Builds the frame once and queues it to every member; returns how many
/// got it, for room messages.
fn fan_out(name: &Arc<str>, room: &mut Room, kind: Kind, payload: &[u8]) -> u64 {
    let item = match kind {
        Kind::Message { id } => {
            if id <= room.last_delivered {
                return 0;
            }
            room.last_delivered = id;
            let Some(frame) = message_frame(id, payload) else {
                tracing::warn!(room = %name, id, "dropping undecodable room message");
                return 0;
            };
            Arc::new(RoomMessage {
                room: name.clone(),
                id,
                frame,
            })
        }
        Kind::Joined | Kind::Left => {
            let Some(frame) = event_frame(kind == Kind::Joined, name, payload) else {
                tracing::warn!(room = %name, "dropping undecodable presence event");
                return 0;
            };
            let event = Arc::new(RoomEvent {
                room: name.clone(),
                frame,
            });
            for member in room.watchers.values() {
                try_queue(member, Outbound::Event(event.clone()));
            }
            // Not counted: `messages_out` counts room messages only.
            return 0;
        }
    };
    let mut delivered = 0;
    for member in room.members.values() {
        delivered += try_queue(member, Outbound::Room(item.clone()));
    }
    delivered
}

fn try_queue(member: &Member, item: Outbound) -> u64 {
    match member.queue.try_send(item) {
        Ok(()) => 1,
        Err(flume::TrySendError::Full(_)) => {
            member.too_slow.cancel();
            0
        }
        Err(flume::TrySendError::Disconnected(_)) => 0,
    }
}
