//! Local room membership and fan-out: which sessions of this replica are
//! in which room, and handing each broadcast to them.
//!
//! Fan-out never waits for a client: each member has a bounded queue, and a
//! member whose queue is full is cancelled (its door closes it) instead of
//! making anyone else wait or memory grow. A message is decoded once per
//! replica and shared by every recipient; each door serialises it once, on
//! its first recipient, into the message's frame cache.
//!
//! After Redis comes back, messages published while this replica was cut
//! off are read back from the log ([`Rooms::begin_repair`]); live
//! deliveries of a room wait meanwhile so that order is kept.

use super::backend::TOPIC_PREFIX;
use super::mailbox::{Mailbox, Outbound, RoomEvent, RoomMessage, try_queue};
use super::metrics::Metrics;
use super::names::RoomName;
use crate::broadcast::{Envelope, Kind};
use axum::extract::ws::Utf8Bytes;
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

/// Live deliveries held per room while it is being repaired; beyond this
/// they are dropped (and logged): members recover them with `since`.
const REPAIR_BUFFER: usize = 10_000;

#[derive(Default)]
struct Room {
    members: HashMap<u64, Mailbox>,
    /// The members that asked for presence events. Kept apart so a join
    /// storm in a big room costs one queue push per watcher, not per member.
    watchers: HashMap<u64, Mailbox>,
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
    rooms: Mutex<HashMap<RoomName, Room>>,
    metrics: Arc<Metrics>,
}

impl Rooms {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self {
            rooms: Mutex::new(HashMap::new()),
            metrics,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<RoomName, Room>> {
        self.rooms.lock().expect("rooms lock poisoned")
    }

    /// Adds a member; returns the room name shared with the map.
    pub fn join(&self, room: &RoomName, member: u64, mailbox: Mailbox) -> RoomName {
        let mut rooms = self.lock();
        let existing = rooms
            .get_key_value(room.as_str())
            .map(|(name, _)| name.clone());
        let name = existing.unwrap_or_else(|| {
            rooms.insert(room.clone(), Room::default());
            self.metrics.rooms.set(rooms.len() as i64);
            room.clone()
        });
        rooms
            .get_mut(&name)
            .expect("inserted above")
            .members
            .insert(member, mailbox);
        name
    }

    /// Sends the room's presence events to this member too.
    pub fn watch(&self, room: &RoomName, member: u64, mailbox: Mailbox) {
        if let Some(room) = self.lock().get_mut(room.as_str()) {
            room.watchers.insert(member, mailbox);
        }
    }

    /// Records the log position seen when joining, for repairs.
    pub fn note_position(&self, room: &RoomName, position: u64) {
        if let Some(room) = self.lock().get_mut(room.as_str())
            && room.joined_at == 0
        {
            room.joined_at = position;
        }
    }

    pub fn leave(&self, room: &RoomName, member: u64) {
        let mut rooms = self.lock();
        if let Some(entry) = rooms.get_mut(room.as_str()) {
            entry.members.remove(&member);
            entry.watchers.remove(&member);
            if entry.members.is_empty() {
                rooms.remove(room.as_str());
                self.metrics.rooms.set(rooms.len() as i64);
            }
        }
    }

    /// Local members of a room (tests and stats).
    pub fn members(&self, room: &str) -> usize {
        self.lock().get(room).map_or(0, |r| r.members.len())
    }

    /// Every room with local members and how many, by name.
    pub fn counts(&self) -> Vec<(String, usize)> {
        let mut counts: Vec<_> = self
            .lock()
            .iter()
            .filter(|(_, room)| !room.members.is_empty())
            .map(|(name, room)| (name.as_str().to_owned(), room.members.len()))
            .collect();
        counts.sort();
        counts
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
        let delivered = fan_out(&name, room, envelope.kind, envelope.payload);
        drop(rooms);
        self.metrics.messages_out.inc_by(delivered);
    }

    /// Deliveries may have been lost from here on: every room holds what
    /// arrives from now until its repair, so that nothing delivered after
    /// the gap moves the point the repair reads the log back from.
    pub fn hold(&self) {
        for room in self.lock().values_mut() {
            room.held.get_or_insert_with(Vec::new);
        }
    }

    /// Starts repairing every room: returns each with the id to read the
    /// log after. Live deliveries are held until [`Rooms::finish_repair`]
    /// (from [`Rooms::hold`] on, where the gap was announced first).
    pub fn begin_repair(&self) -> Vec<(RoomName, u64)> {
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
    pub fn finish_repair(&self, room: &RoomName, missed: Vec<(u64, Bytes)>) {
        let mut rooms = self.lock();
        let Some((name, entry)) = entry(&mut rooms, room.as_str()) else {
            return;
        };
        let held = entry.held.take().unwrap_or_default();
        let mut delivered = 0;
        for (id, payload) in missed {
            delivered += fan_out(&name, entry, Kind::Message { id }, payload);
        }
        for envelope in held {
            delivered += fan_out(&name, entry, envelope.kind, envelope.payload);
        }
        drop(rooms);
        self.metrics.messages_out.inc_by(delivered);
    }
}

impl Rooms {
    /// Ends a repair that could not read the log back: what was held is
    /// dropped, and every member is told to reconnect and resume from
    /// what it has, which fills the gap the read-back could not. Returns
    /// how many were told.
    pub fn finish_repair_elsewhere(&self, room: &RoomName) -> usize {
        let mut rooms = self.lock();
        let Some((_, entry)) = entry(&mut rooms, room.as_str()) else {
            return 0;
        };
        entry.held = None;
        let mut told = 0;
        for member in entry.members.values() {
            told += try_queue(member, Outbound::Reconnect) as usize;
        }
        told
    }
}

/// A room with the map's shared copy of its name.
fn entry<'a>(
    rooms: &'a mut HashMap<RoomName, Room>,
    name: &str,
) -> Option<(RoomName, &'a mut Room)> {
    let key = rooms.get_key_value(name)?.0.clone();
    rooms.get_mut(name).map(|room| (key, room))
}

/// Decodes once and queues to every member; returns how many got it, for
/// room messages.
fn fan_out(name: &RoomName, room: &mut Room, kind: Kind, payload: Bytes) -> u64 {
    let item = match kind {
        Kind::Message { id } => {
            if id <= room.last_delivered {
                return 0;
            }
            room.last_delivered = id;
            let Some(message) = RoomMessage::new(name.clone(), id, payload) else {
                tracing::warn!(room = %name, id, "dropping undecodable room message");
                return 0;
            };
            Arc::new(message)
        }
        // Handled for every room at once (`Rooms::hold`), never per room.
        Kind::Interrupted => return 0,
        Kind::Joined | Kind::Left => {
            let info = match Utf8Bytes::try_from(payload) {
                Ok(info) if info.as_str().starts_with('{') => info,
                _ => {
                    tracing::warn!(room = %name, "dropping undecodable presence event");
                    return 0;
                }
            };
            let event = Arc::new(RoomEvent {
                room: name.clone(),
                joined: kind == Kind::Joined,
                info,
                native: OnceLock::new(),
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
