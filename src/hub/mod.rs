//! The hub: one replica's rooms, behind every protocol door.
//!
//! A door (native JSON at `/ws`, Socket.IO) turns what its client sends
//! into hub calls and what the hub queues into its own frames; the rules of
//! a room live here, once: member first, then subscribe, then read the log
//! (so nothing published in between is missed); every step undone when a
//! later one fails; presence; the read-back after an outage.
//!
//! - [`names`]: validated room and display names.
//! - [`session`]: one client's rooms and positions.
//! - [`rooms`]: local membership and the fan-out.
//! - [`connected`]: sessions by user, and the control topic.
//! - [`server`]: what a backend does with rooms, without a session.
//! - [`wire`]: message bodies and member infos as replicas exchange them.
//! - [`error`]: error codes and the hub's refusals.
//! - [`metrics`]: the replica's Prometheus metrics.
//!
//! The hub never waits for a client and never formats a door's frames.

pub mod connected;
pub mod error;
pub mod metrics;
pub mod names;
mod repair;
pub mod rooms;
pub mod server;
pub mod session;
pub mod wire;

pub use error::{ErrorCode, HubError};
pub use names::{DisplayName, NameError, RoomName};
pub use rooms::{Outbound, RoomEvent, RoomMessage};
pub use session::Session;

use crate::broadcast::{self, Broadcast, From, HistoryPolicy, Presence};
use crate::redis::RedisSettings;
use bytes::Bytes;
use metrics::Metrics;
use rooms::{Mailbox, Rooms, topic};
use session::JoinedRooms;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio_util::sync::CancellationToken;
use wire::MemberInfo;

/// The room the user service posts every user change to: members may
/// read it, only the server side (the user service, the server API) posts.
pub const USERS_ROOM: &str = "users";

/// What the hub enforces, whatever the door.
#[derive(Debug, Clone)]
pub struct HubSettings {
    /// This replica's name, stamped on every message it accepts.
    pub server_id: String,
    /// Rooms one session may be in at once.
    pub max_rooms: usize,
    /// Largest message text, in bytes.
    pub max_message_bytes: usize,
    /// Items queued for a session before it is cancelled as too slow.
    pub send_queue: usize,
    /// How much of each room's log is kept, for `since` and `history`.
    pub history: HistoryPolicy,
}

/// What a join asks for besides membership.
#[derive(Debug, Clone, Copy, Default)]
pub struct JoinRequest {
    /// Replay everything after this message id, if the log still has it.
    pub since: Option<u64>,
    /// Replay the newest messages kept, when no `since` is given.
    pub history: Option<usize>,
    /// Queue member_joined / member_left events of the room.
    pub presence: bool,
}

/// A join that happened.
#[derive(Debug)]
pub struct Joined {
    /// The room as the session now holds it.
    pub room: RoomName,
    /// For a join with `since`: whether everything after it is in `replay`.
    pub recovered: Option<bool>,
    /// Where the room's log stands: a resume with this as `since` misses
    /// nothing, even when the room has had no message yet.
    pub position: u64,
    /// Messages to send before any queued one, oldest first, none the
    /// session already had.
    pub replay: Vec<RoomMessage>,
}

pub struct Hub {
    settings: HubSettings,
    rooms: Arc<Rooms>,
    log: Arc<dyn Broadcast>,
    presence: Arc<dyn Presence>,
    metrics: Arc<Metrics>,
    next_session: AtomicU64,
}

impl Hub {
    /// Connects the log and presence (Redis when settings are given,
    /// in-process otherwise) and starts the outage repairs.
    pub async fn connect(
        settings: HubSettings,
        redis: Option<&RedisSettings>,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Arc<Self>> {
        let rooms = Arc::new(Rooms::new(metrics.clone()));
        let (log, presence) =
            broadcast::connect_with_presence(redis, settings.history, rooms.deliverer()).await?;
        Ok(Self::new(settings, rooms, log, presence, metrics))
    }

    /// A hub over backends built by the caller, which must deliver to
    /// `rooms` (see [`Rooms::deliverer`]).
    pub fn new(
        settings: HubSettings,
        rooms: Arc<Rooms>,
        log: Arc<dyn Broadcast>,
        presence: Arc<dyn Presence>,
        metrics: Arc<Metrics>,
    ) -> Arc<Self> {
        let hub = Arc::new(Self {
            settings,
            rooms,
            log,
            presence,
            metrics,
            next_session: AtomicU64::new(1),
        });
        repair::spawn(&hub);
        hub.listen_for_control();
        hub
    }

    pub fn settings(&self) -> &HubSettings {
        &self.settings
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// True while joins and publishes can succeed.
    pub fn is_ready(&self) -> bool {
        self.log.is_ready()
    }

    /// A new session and the receiving end of its queue, which its door
    /// drains through [`Session::admit`].
    pub fn open(
        &self,
        user: String,
        name: Option<DisplayName>,
    ) -> (Session, flume::Receiver<Outbound>) {
        // flume grows its queue as items arrive; tokio's mpsc allocates a
        // 32-slot block per channel up front, ~0.7 KB per idle connection.
        let (queue, rx) = flume::bounded(self.settings.send_queue);
        let info = MemberInfo::encode(&user, name.as_ref(), &self.settings.server_id);
        let id = self.next_session.fetch_add(1, Ordering::Relaxed);
        let mailbox = Mailbox {
            queue,
            too_slow: CancellationToken::new(),
        };
        self.rooms.connected.add(&user, id, mailbox.clone());
        let session = Session {
            id,
            user: user.into_boxed_str(),
            name,
            info,
            allowed: None,
            mailbox,
            rooms: JoinedRooms::default(),
        };
        (session, rx)
    }

    /// Refuses a room the session's token does not name.
    fn check_allowed(session: &Session, room: &RoomName) -> Result<(), HubError> {
        match &session.allowed {
            Some(rule) if !rule.allows(room.as_str()) => Err(HubError::Forbidden),
            _ => Ok(()),
        }
    }

    /// Joins a room (or, when already in it, replays and turns events on).
    /// On error nothing changed: no membership, subscription or presence.
    pub async fn join(
        &self,
        session: &mut Session,
        room: &RoomName,
        request: JoinRequest,
    ) -> Result<Joined, HubError> {
        Self::check_allowed(session, room)?;
        let topic = topic(room);
        let existing = session.rooms.find(room.as_str()).cloned();
        let is_new = existing.is_none();
        let name = match existing {
            Some(name) => name,
            None => {
                let max = self.settings.max_rooms;
                if session.rooms.len() >= max {
                    return Err(HubError::TooManyRooms(max));
                }
                // Member first, then subscribe, then read the log: anything
                // published after the read is already on its way to the
                // queue, so nothing falls in between.
                let name = self.rooms.join(room, session.id, session.mailbox.clone());
                if let Err(err) = self.log.subscribe(&topic).await {
                    self.rooms.leave(&name, session.id);
                    return Err(err.into());
                }
                name
            }
        };
        let from = match (request.since, request.history) {
            (Some(since), _) => From::Since(since),
            (None, Some(n)) if n > 0 => From::Last(n.min(self.settings.history.max_len)),
            _ => From::Position,
        };
        let replay = match self.log.replay(&topic, from).await {
            Ok(replay) => replay,
            Err(err) => {
                if is_new {
                    self.rooms.leave(&name, session.id);
                    self.log.unsubscribe(&topic).await;
                }
                return Err(err.into());
            }
        };
        if is_new {
            session.rooms.insert(name.clone());
            session.set_joined_at(&name, replay.position);
            self.rooms.note_position(&name, replay.position);
        }
        if request.presence {
            // Before the presence entry below, so a watcher sees its own
            // member_joined first.
            self.rooms.watch(&name, session.id, session.mailbox.clone());
            session.rooms.get_mut(&name).expect("joined above").events = true;
        }
        if is_new {
            // Before the door says "joined": once a client is told it
            // joined, everyone asking for the room's presence sees it.
            if let Err(err) = self
                .presence
                .presence_add(&topic, &session.user, session.info.clone())
                .await
            {
                tracing::warn!(%err, room = %name, "could not announce presence");
            }
        }
        let joined = session.rooms.get_mut(&name).expect("joined above");
        let mut messages = Vec::with_capacity(replay.messages.len());
        for (id, body) in replay.messages {
            if id > joined.last
                && let Some(message) = RoomMessage::new(name.clone(), id, body)
            {
                joined.last = id;
                messages.push(message);
            }
        }
        Ok(Joined {
            room: name,
            recovered: request.since.map(|_| replay.recovered),
            position: replay.position,
            replay: messages,
        })
    }

    /// Leaves a room; false if the session was not in it.
    pub async fn leave(&self, session: &mut Session, room: &str) -> bool {
        match session.rooms.remove(room) {
            Some(name) => {
                self.forget(session, &name).await;
                true
            }
            None => false,
        }
    }

    /// Leaves every room, as a session ends; a disconnect no longer finds it.
    pub async fn leave_all(&self, session: &mut Session) {
        self.rooms.connected.remove(&session.user, session.id);
        for room in session.rooms.take_all() {
            self.forget(session, &room).await;
        }
    }

    /// Undoes a join: local membership, subscription and presence.
    async fn forget(&self, session: &Session, room: &RoomName) {
        let topic = topic(room);
        self.rooms.leave(room, session.id);
        if let Err(err) = self.presence.presence_remove(&topic, &session.user).await {
            tracing::debug!(%err, %room, "could not announce leaving");
        }
        self.log.unsubscribe(&topic).await;
    }

    /// Publishes to every member of the room on every replica (the session
    /// need not be in it, as in the Socket.IO original); returns the id.
    pub async fn publish(
        &self,
        session: &Session,
        room: &RoomName,
        text: &str,
    ) -> Result<u64, HubError> {
        Self::check_allowed(session, room)?;
        if room.as_str() == USERS_ROOM {
            return Err(HubError::ReadOnly);
        }
        let author = server::Author {
            user: &session.user,
            name: session.name.as_ref(),
        };
        self.publish_as(author, room, text, None).await
    }

    /// Infos of the room's members on every replica, for a session that may
    /// join the room.
    pub async fn presence(
        &self,
        session: &Session,
        room: &RoomName,
    ) -> Result<Vec<Bytes>, HubError> {
        Self::check_allowed(session, room)?;
        Ok(self.presence.presence(&topic(room)).await?)
    }

    /// Local members of a room on this replica.
    pub fn local_members(&self, room: &str) -> usize {
        self.rooms.members(room)
    }
}

#[cfg(test)]
mod tests;
