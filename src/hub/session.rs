//! One connected client as the hub sees it, whatever door it came through:
//! who it is, its queue, and the rooms it is in with the last message id it
//! was handed in each.
//!
//! Skipping anything not newer than that id is what makes a `since` replay
//! followed by live traffic free of gaps and duplicates.

use super::mailbox::{Mailbox, Outbound};
use super::names::{DisplayName, RoomName};
use bytes::Bytes;

pub struct Session {
    /// Unique on this replica; the key of its room memberships.
    pub(super) id: u64,
    /// The member's public id, shown on its messages and in presence.
    pub(super) user: Box<str>,
    pub(super) name: Option<DisplayName>,
    /// This member as presence shows it, serialised once.
    pub(super) info: Bytes,
    pub(super) mailbox: Mailbox,
    pub(super) rooms: JoinedRooms,
    /// The rooms its token allows; `None`: any.
    pub(super) allowed: Option<Box<crate::auth::RoomRule>>,
}

impl Session {
    /// Limits the session to the rooms its token names.
    pub fn restrict(&mut self, rule: crate::auth::RoomRule) {
        self.allowed = Some(Box::new(rule));
    }

    pub fn user(&self) -> &str {
        &self.user
    }

    pub fn name(&self) -> Option<&DisplayName> {
        self.name.as_ref()
    }

    /// Cancelled when the fan-out found this session's queue full: the door
    /// must close the client.
    pub fn too_slow(&self) -> &tokio_util::sync::CancellationToken {
        &self.mailbox.too_slow
    }

    pub fn rooms(&self) -> usize {
        self.rooms.len()
    }

    pub fn is_in(&self, room: &str) -> bool {
        self.rooms.find(room).is_some()
    }

    /// Every room the session is in, with the position it joined it at.
    pub fn positions(&self) -> Vec<(String, u64)> {
        self.rooms
            .0
            .iter()
            .map(|(name, joined)| (name.as_str().to_owned(), joined.joined_at))
            .collect()
    }

    /// Keeps an earlier join position for a room rejoined on recovery.
    pub fn set_joined_at(&mut self, room: &RoomName, position: u64) {
        if let Some(joined) = self.rooms.get_mut(room) {
            joined.joined_at = position;
        }
    }

    /// Whether a queued item goes out to this client: `false` when it
    /// already has the message (replayed) or left the room meanwhile.
    /// Moves the room's position on.
    pub fn admit(&mut self, item: &Outbound) -> bool {
        match item {
            Outbound::Room(message) => {
                let Some(joined) = self.rooms.get_mut(&message.room) else {
                    return false;
                };
                if message.id <= joined.last {
                    return false;
                }
                joined.last = message.id;
                true
            }
            Outbound::Event(event) => self.rooms.get_mut(&event.room).is_some_and(|j| j.events),
            Outbound::Disconnect | Outbound::Reconnect => true,
        }
    }
}

/// The rooms a session is in: at most `--max-rooms` and usually one, so a
/// vector rather than a hash map. Every delivered frame looks its room up
/// here; names are the room map's shared allocations, so the lookup is a
/// pointer comparison instead of hashing the name (a few % of fan-out CPU).
#[derive(Default)]
pub(super) struct JoinedRooms(Vec<(RoomName, Joined)>);

/// What a session remembers of a room it is in.
#[derive(Default)]
pub(super) struct Joined {
    /// Last message id handed to this client in the room.
    pub last: u64,
    /// Whether it asked for member_joined / member_left events.
    pub events: bool,
    /// The room's log position when the session joined it: where a resume
    /// that knows nothing newer starts.
    pub joined_at: u64,
}

impl JoinedRooms {
    pub fn find(&self, room: &str) -> Option<&RoomName> {
        self.0
            .iter()
            .map(|(name, _)| name)
            .find(|name| name.as_str() == room)
    }

    pub fn get_mut(&mut self, room: &RoomName) -> Option<&mut Joined> {
        // A name that is not the current allocation (the room was left and
        // created anew meanwhile) still matches by value.
        let at = self
            .0
            .iter()
            .position(|(name, _)| name.same(room))
            .or_else(|| self.0.iter().position(|(name, _)| name == room))?;
        Some(&mut self.0[at].1)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn insert(&mut self, name: RoomName) {
        // Exact: one room is the common case, and idle sessions are many.
        self.0.reserve_exact(1);
        self.0.push((name, Joined::default()));
    }

    /// The name as joined, if the session was in the room.
    pub fn remove(&mut self, room: &str) -> Option<RoomName> {
        let at = self.0.iter().position(|(name, _)| name.as_str() == room)?;
        Some(self.0.swap_remove(at).0)
    }

    pub fn take_all(&mut self) -> Vec<RoomName> {
        std::mem::take(&mut self.0)
            .into_iter()
            .map(|(name, _)| name)
            .collect()
    }
}
