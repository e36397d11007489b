//! The hub: one replica's rooms, behind every protocol door.
//!
//! A door (native JSON at `/ws`, Socket.IO) turns what its client sends
//! into hub calls and what the hub queues into its own frames; the rules of
//! a room live here, once: member first, then subscribe, then read the log
//! (so nothing published in between is missed); every step undone when a
//! later one fails; presence; the read-back after an outage.
//!
//! The hub is a [`Backend`] (the shared log and presence: publish,
//! history, commands) with sessions on top; it dereferences to it, so a
//! front end that holds a hub can do everything a backend does.
//!
//! - [`names`]: validated room and display names.
//! - [`rules`]: which names are rooms, which a token allows, which are
//!   read-only; for every front end.
//! - [`backend`]: rooms without sessions (grpc-server runs on this alone).
//! - [`session`]: one client's rooms and positions.
//! - [`mailbox`]: a session's queue and what it holds.
//! - [`rooms`]: local membership and the fan-out.
//! - [`connected`]: sessions by user, and what commands do to them.
//! - `turns`: how many joins wait on the log at once.
//! - [`local`]: what this replica holds, where deliveries land.
//! - [`wire`]: message bodies and member infos as replicas exchange them.
//! - [`error`]: error codes and the hub's refusals.
//! - [`metrics`]: the replica's Prometheus metrics.
//!
//! The hub never waits for a client and never formats a door's frames.

pub(crate) mod backend;
pub(crate) mod connected;
pub(crate) mod error;
pub(crate) mod local;
pub(crate) mod mailbox;
pub(crate) mod metrics;
pub(crate) mod names;
mod repair;
pub(crate) mod rooms;
pub(crate) mod rules;
pub(crate) mod session;
mod turns;
pub(crate) mod wire;

pub use backend::{Backend, ReplicaReport, RoomSettings};
pub use error::{ErrorCode, HubError};
pub use mailbox::{Outbound, RoomEvent, RoomMessage};
pub use names::{DisplayName, NameError, RoomName};
pub use rules::{RoomRules, USERS_ROOM};
pub use session::Session;

use crate::broadcast::{self, Broadcast, From, LeaveReason, Presence};
use crate::redis::RedisSettings;
use crate::webhooks::{EventType, Webhooks};
use backend::topic;
use bytes::Bytes;
use local::{Local, Stats};
use mailbox::Mailbox;
use metrics::Metrics;
use session::JoinedRooms;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio_util::sync::CancellationToken;
use wire::MemberInfo;

/// What the hub enforces, whatever the door.
#[derive(Debug, Clone)]
pub struct HubSettings {
    /// What rooms follow with or without sessions.
    pub rooms: RoomSettings,
    /// Rooms one session may be in at once.
    pub max_rooms: usize,
    /// Items queued for a session before it is cancelled as too slow.
    pub send_queue: usize,
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
    backend: Backend,
    max_rooms: usize,
    send_queue: usize,
    local: Arc<Local>,
    next_session: AtomicU64,
    turns: turns::Turns,
}

impl std::ops::Deref for Hub {
    type Target = Backend;
    fn deref(&self) -> &Backend {
        &self.backend
    }
}

impl Hub {
    /// Connects the log and presence (Redis when settings are given,
    /// in-process otherwise), keeps this replica's presence alive and
    /// starts the outage repairs.
    pub async fn connect(
        settings: HubSettings,
        redis: Option<&RedisSettings>,
        metrics: Arc<Metrics>,
        webhooks: Arc<Webhooks>,
    ) -> anyhow::Result<Arc<Self>> {
        let local = Local::new(metrics.clone(), settings.rooms.server_id.clone());
        let (log, presence) =
            broadcast::connect_with_presence(redis, settings.rooms.history, local.deliverer())
                .await?;
        Ok(Self::new(settings, local, log, presence, metrics, webhooks))
    }

    /// A hub over backends built by the caller, which must deliver to
    /// `local` (see [`Local::deliverer`]).
    pub fn new(
        settings: HubSettings,
        local: Arc<Local>,
        log: Arc<dyn Broadcast>,
        presence: Arc<dyn Presence>,
        metrics: Arc<Metrics>,
        webhooks: Arc<Webhooks>,
    ) -> Arc<Self> {
        let hub = Arc::new(Self {
            backend: Backend::new(settings.rooms, log, presence, metrics, webhooks),
            max_rooms: settings.max_rooms,
            send_queue: settings.send_queue,
            local,
            next_session: AtomicU64::new(1),
            turns: turns::Turns::default(),
        });
        repair::spawn(&hub);
        connected::listen_for_control(&hub);
        hub
    }

    /// Items queued for a session before it is cancelled as too slow.
    pub fn send_queue(&self) -> usize {
        self.send_queue
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
        let (queue, rx) = flume::bounded(self.send_queue);
        let info = MemberInfo::encode(&user, name.as_ref(), &self.settings().server_id);
        let id = self.next_session.fetch_add(1, Ordering::Relaxed);
        let mailbox = Mailbox {
            queue,
            too_slow: CancellationToken::new(),
        };
        self.local.connected.add(&user, id, mailbox.clone());
        self.session_event(EventType::UserConnected, &user, id, &info);
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

    /// Joins a room (or, when already in it, replays and turns events on).
    /// On error nothing changed: no membership, subscription or presence.
    pub async fn join(
        &self,
        session: &mut Session,
        room: &RoomName,
        request: JoinRequest,
    ) -> Result<Joined, HubError> {
        RoomRules::check_token(session.allowed.as_deref(), room)?;
        let _turn = self.turns.take().await;
        let topic = topic(room);
        let existing = session.rooms.find(room.as_str()).cloned();
        let is_new = existing.is_none();
        let name = match existing {
            Some(name) => name,
            None => {
                let max = self.max_rooms;
                if session.rooms.len() >= max {
                    return Err(HubError::TooManyRooms(max));
                }
                // Member first, then subscribe, then read the log: anything
                // published after the read is already on its way to the
                // queue, so nothing falls in between.
                let name = self
                    .local
                    .rooms
                    .join(room, session.id, session.mailbox.clone());
                if let Err(err) = self.log.subscribe(&topic).await {
                    self.local.rooms.leave(&name, session.id);
                    return Err(err.into());
                }
                name
            }
        };
        let from = match (request.since, request.history) {
            (Some(since), _) => From::Since(since),
            (None, Some(n)) if n > 0 => From::Last(n.min(self.settings().history.max_len)),
            _ => From::Position,
        };
        let replay = match self.log.replay(&topic, from).await {
            Ok(replay) => replay,
            Err(err) => {
                if is_new {
                    self.local.rooms.leave(&name, session.id);
                    self.log.unsubscribe(&topic).await;
                }
                return Err(err.into());
            }
        };
        if is_new {
            session.rooms.insert(name.clone());
            session.set_joined_at(&name, replay.position);
            self.local.rooms.note_position(&name, replay.position);
        }
        if request.presence {
            // Before the presence entry below, so a watcher sees its own
            // member_joined first.
            self.local
                .rooms
                .watch(&name, session.id, session.mailbox.clone());
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
            // Who was in a room when: what a presence list is checked
            // against after faults.
            tracing::debug!(room = %name, user = %session.user, "joined");
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
        // Everything up to the position is in the replay or from before
        // the join: a repair of the room under way here (after this replica
        // lost Redis) hands out older messages, and they are not for it.
        joined.last = joined.last.max(replay.position);
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
                self.forget(session, &name, LeaveReason::Left).await;
                true
            }
            None => false,
        }
    }

    /// Leaves every room, as a session ends; a disconnect no longer finds it.
    pub async fn leave_all(&self, session: &mut Session) {
        let ended = self.local.connected.remove(&session.user, session.id);
        for room in session.rooms.take_all() {
            self.forget(session, &room, LeaveReason::Disconnected).await;
        }
        if ended {
            let (user, id) = (&session.user, session.id);
            self.session_event(EventType::UserDisconnected, user, id, &session.info);
        }
    }

    /// Undoes a join: local membership, subscription and presence.
    async fn forget(&self, session: &Session, room: &RoomName, reason: LeaveReason) {
        tracing::debug!(%room, user = %session.user, ?reason, "left");
        let topic = topic(room);
        self.local.rooms.leave(room, session.id);
        if let Err(err) = self
            .presence
            .presence_remove(&topic, &session.user, reason)
            .await
        {
            tracing::debug!(%err, %room, "could not announce leaving");
        }
        self.log.unsubscribe(&topic).await;
    }

    /// Publishes to every member of the room on every replica (the session
    /// need not be in it, as in the Socket.IO original); returns the id.
    /// With an idempotency key a client may retry a post whose answer it
    /// did not get (or got as `unavailable`, which after a Redis timeout
    /// cannot say whether Redis will still run it) without posting twice.
    pub async fn publish(
        &self,
        session: &Session,
        room: &RoomName,
        text: &str,
        idempotency_key: Option<&str>,
    ) -> Result<u64, HubError> {
        RoomRules::check_token(session.allowed.as_deref(), room)?;
        RoomRules::check_client_post(room)?;
        let author = backend::Author::member(&session.user, session.name.as_ref());
        self.publish_as(author, room, text, idempotency_key).await
    }

    /// Infos of the room's members on every replica, for a session that may
    /// join the room.
    pub async fn presence(
        &self,
        session: &Session,
        room: &RoomName,
    ) -> Result<Vec<Bytes>, HubError> {
        RoomRules::check_token(session.allowed.as_deref(), room)?;
        Ok(self.presence.presence(&topic(room)).await?)
    }

    /// Local members of a room on this replica.
    pub fn local_members(&self, room: &str) -> usize {
        self.local.rooms.members(room)
    }

    /// Sessions on this replica.
    pub fn sessions(&self) -> usize {
        self.local.connected.count()
    }

    /// Tells the `n` oldest sessions to reconnect elsewhere (see
    /// [`Outbound::Reconnect`]); how many were told.
    pub fn shed(&self, n: usize) -> usize {
        self.local.connected.shed(n)
    }

    /// Cancelled when a drain of this replica is asked for: on the control
    /// topic (the server API's drain, sent from any replica) or here.
    pub fn drain_requested(&self) -> &CancellationToken {
        self.local.connected.drain_requested()
    }

    /// This replica's rooms with their local member counts.
    pub fn local_rooms(&self) -> Vec<(String, usize)> {
        self.local.rooms.counts()
    }

    pub fn stats(&self) -> Stats {
        let metrics = self.metrics();
        Stats {
            connections: metrics.connections.get(),
            rooms: metrics.rooms.get(),
            messages_in: metrics.messages_in.get(),
            messages_out: metrics.messages_out.get(),
        }
    }
}

#[cfg(test)]
mod tests;
