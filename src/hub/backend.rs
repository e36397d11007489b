//! A replica's rooms as the shared log sees them, without sessions: post
//! as any user, read a room's history and presence, send a command to
//! every replica. The hub's sessions sit on top of it; grpc-server, which
//! has no chat clients, runs on it alone (no local rooms, no presence
//! heartbeat). The same rules of a room apply as to a door's client,
//! except the token scope, which a backend does not have.

use super::metrics::Metrics;
use super::rules::RoomRules;
use super::wire::MessageBody;
use super::{DisplayName, HubError, RoomName};
use crate::broadcast::{Broadcast, Change, From, HistoryPolicy, Presence, PresenceWatch};
use crate::webhooks::{EventType, Webhooks, event::with_fields};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Instant;

/// Broadcast topics of chat rooms, so other users of the broadcast (the
/// user service) cannot collide with a room name.
pub const TOPIC_PREFIX: &str = "room:";

pub fn topic(room: &RoomName) -> String {
    format!("{TOPIC_PREFIX}{room}")
}

/// The broadcast topic of commands to every replica. Not a room topic, so
/// no room name can collide with it.
pub const CONTROL_TOPIC: &str = "control";

/// One command on [`CONTROL_TOPIC`].
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Control {
    /// Close every connection of this user.
    Disconnect(String),
    /// The replica with this id drains (as on SIGTERM) and exits.
    Drain(String),
}

/// What a ws-server replica reports of itself beside its heartbeat, for
/// rebalancing and the server API. Fields may be added; readers ignore
/// what they do not know.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReplicaReport {
    pub server: String,
    /// Open sockets, both doors.
    pub sockets: u64,
    /// A draining replica's sockets are moving elsewhere: it takes none.
    pub draining: bool,
    /// What the operator's page shows of it; absent from the reports of
    /// versions before the page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<ReplicaStatus>,
}

/// A replica as the operator's page shows it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ReplicaStatus {
    /// Whether it answers ready (Redis works, not draining).
    pub ready: bool,
    /// Open sockets of the native door, and of the Socket.IO door.
    pub native: u64,
    pub socketio: u64,
    /// Rooms with members here.
    pub rooms: u64,
    /// When it started, Unix ms.
    pub started_ms: u64,
    pub version: String,
    /// Counters since it started: messages accepted, and deliveries
    /// queued to its members (readers take rates from two reports).
    pub messages_in: u64,
    pub messages_out: u64,
    /// Round trip of its last report to Redis, in ms; none standalone.
    #[serde(default)]
    pub redis_rtt_ms: Option<f64>,
    /// Its rooms with the most members here, busiest first.
    #[serde(default)]
    pub top_rooms: Vec<(String, u64)>,
}

/// What every front end's rooms follow, whether it holds sessions or not.
#[derive(Debug, Clone)]
pub struct RoomSettings {
    /// This replica's name, stamped on every message it accepts.
    pub server_id: String,
    /// Which names are rooms.
    pub rules: RoomRules,
    /// Largest message text, in bytes.
    pub max_message_bytes: usize,
    /// How much of each room's log is kept, for `since` and `history`.
    pub history: HistoryPolicy,
}

/// The user every message a backend posts (server API, ChatService) is
/// from; its display name says who.
pub const BACKEND_USER: &str = "api";
/// Longest idempotency key, in characters.
pub const MAX_IDEMPOTENCY_KEY: usize = 128;
/// Messages a history read answers when it names no limit.
pub const DEFAULT_HISTORY: usize = 100;

/// Who a message is from.
#[derive(Debug, Clone, Copy)]
pub struct Author<'a> {
    pub user: &'a str,
    pub name: Option<&'a DisplayName>,
    /// Backends and members keep their idempotency keys apart, so that no
    /// member can take a key a backend is about to use.
    pub backend: bool,
}

impl<'a> Author<'a> {
    /// A backend posting under a display name of its choice.
    pub fn backend(name: Option<&'a DisplayName>) -> Self {
        Self {
            user: BACKEND_USER,
            name,
            backend: true,
        }
    }

    /// A member of the chat posting from its connection.
    pub fn member(user: &'a str, name: Option<&'a DisplayName>) -> Self {
        Self {
            user,
            name,
            backend: false,
        }
    }
}

/// A room's log as a backend reads it.
#[derive(Debug)]
pub struct History {
    /// For a read with `since`: whether everything after it is here.
    pub recovered: Option<bool>,
    /// Where the room's log stands (a `since` that misses nothing).
    pub position: u64,
    /// Message ids and bodies, oldest first.
    pub messages: Vec<(u64, Bytes)>,
}

pub struct Backend {
    settings: RoomSettings,
    pub(super) log: Arc<dyn Broadcast>,
    pub(super) presence: Arc<dyn Presence>,
    metrics: Arc<Metrics>,
    pub(super) webhooks: Arc<Webhooks>,
}

impl Backend {
    /// Rooms over the log and presence; the members' joins and leaves that
    /// this process makes (the dead replicas' it sweeps included) go to
    /// `webhooks`.
    pub fn new(
        settings: RoomSettings,
        log: Arc<dyn Broadcast>,
        presence: Arc<dyn Presence>,
        metrics: Arc<Metrics>,
        webhooks: Arc<Webhooks>,
    ) -> Self {
        presence.set_watch(member_events(&webhooks));
        Self {
            settings,
            log,
            presence,
            metrics,
            webhooks,
        }
    }

    pub fn webhooks(&self) -> &Arc<Webhooks> {
        &self.webhooks
    }

    /// `user_connected` / `user_disconnected`: the member info with the
    /// session's id on this replica (several sessions of one user may be
    /// open at once, on several replicas).
    pub(super) fn session_event(&self, kind: EventType, user: &str, session: u64, info: &[u8]) {
        self.webhooks.emit(kind, user, || {
            with_fields(&serde_json::json!({ "session": session }), info)
        });
    }

    pub fn settings(&self) -> &RoomSettings {
        &self.settings
    }

    /// Which names are rooms, for every front end.
    pub fn rules(&self) -> &RoomRules {
        &self.settings.rules
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// True while publishes and history reads can succeed.
    pub fn is_ready(&self) -> bool {
        self.log.is_ready()
    }

    /// Publishes to every member of the room on every replica; returns the
    /// id. With an idempotency key (1 to [`MAX_IDEMPOTENCY_KEY`]
    /// characters), a publish of the same key to the same room within the
    /// log's keep time is stored and delivered once, and every retry
    /// answers the first one's id.
    pub async fn publish_as(
        &self,
        author: Author<'_>,
        room: &RoomName,
        text: &str,
        idempotency_key: Option<&str>,
    ) -> Result<u64, HubError> {
        let max = self.settings.max_message_bytes;
        if text.is_empty() || text.len() > max {
            return Err(HubError::MessageTooLong(max));
        }
        if let Some(key) = idempotency_key
            && (key.is_empty() || key.chars().count() > MAX_IDEMPOTENCY_KEY)
        {
            return Err(HubError::InvalidIdempotencyKey(MAX_IDEMPOTENCY_KEY));
        }
        let timestamp = humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string();
        let body = MessageBody {
            room: room.as_str(),
            user: author.user,
            name: author.name.map(DisplayName::as_str),
            message: text,
            server: &self.settings.server_id,
            timestamp: &timestamp,
        };
        let payload =
            Bytes::from(serde_json::to_vec(&body).expect("message bodies always serialise"));
        let started = Instant::now();
        let topic = topic(room);
        let id = match idempotency_key {
            Some(key) => {
                let scope = if author.backend { "api" } else { "client" };
                let key = format!("{scope}:{key}");
                self.log.publish_once(&topic, &key, payload.clone()).await?
            }
            None => self.log.publish(&topic, payload.clone()).await?,
        };
        self.metrics
            .publish_seconds
            .observe(started.elapsed().as_secs_f64());
        self.metrics.messages_in.inc();
        self.webhooks.emit(EventType::Message, room.as_str(), || {
            with_fields(&serde_json::json!({ "id": id }), &payload)
        });
        Ok(id)
    }

    /// The room's log after `since` (or its newest `limit` messages),
    /// at most `limit` ([`DEFAULT_HISTORY`] when `None`) of them.
    pub async fn history(
        &self,
        room: &RoomName,
        since: Option<u64>,
        limit: Option<usize>,
    ) -> Result<History, HubError> {
        let limit = limit
            .unwrap_or(DEFAULT_HISTORY)
            .min(self.settings.history.max_len);
        let from = match since {
            Some(since) => From::Since(since),
            None if limit > 0 => From::Last(limit),
            None => From::Position,
        };
        let mut replay = self.log.replay(&topic(room), from).await?;
        replay.messages.truncate(limit);
        Ok(History {
            recovered: since.map(|_| replay.recovered),
            position: replay.position,
            messages: replay.messages,
        })
    }

    /// Infos of the room's members on every replica.
    pub async fn room_presence(&self, room: &RoomName) -> Result<Vec<Bytes>, HubError> {
        Ok(self.presence.presence(&topic(room)).await?)
    }

    /// Publishes this replica's report of itself.
    pub async fn report(&self, report: &ReplicaReport) -> Result<(), HubError> {
        let json = serde_json::to_vec(report).expect("reports always serialise");
        Ok(self.presence.report(json.into()).await?)
    }

    /// The latest report of every live replica (none standalone, where
    /// nothing reports).
    pub async fn replicas(&self) -> Result<Vec<ReplicaReport>, HubError> {
        let all = self.presence.replicas().await?;
        Ok(all
            .iter()
            .filter_map(|report| serde_json::from_slice(report).ok())
            .collect())
    }

    /// Closes every connection of `user`, on every replica: native clients
    /// get close code 4002, Socket.IO clients a DISCONNECT (no automatic
    /// reconnect), and neither session is recoverable. Not a ban: the user
    /// may connect again.
    pub async fn disconnect(&self, user: &str) -> Result<(), HubError> {
        self.command(Control::Disconnect(user.to_owned())).await
    }

    /// Asks the replica named `server` to drain and exit, wherever it is.
    pub async fn drain_replica(&self, server: &str) -> Result<(), HubError> {
        self.command(Control::Drain(server.to_owned())).await
    }

    async fn command(&self, command: Control) -> Result<(), HubError> {
        let payload = serde_json::to_vec(&command).expect("control commands always serialise");
        self.log.publish(CONTROL_TOPIC, payload.into()).await?;
        Ok(())
    }
}

/// `member_joined` / `member_left` of rooms, from the presence changes
/// this process makes: data is the member's info with the room first
/// (and, for a leave, why).
fn member_events(webhooks: &Arc<Webhooks>) -> PresenceWatch {
    let webhooks = webhooks.clone();
    Arc::new(move |topic, info, change| {
        let Some(room) = topic.strip_prefix(TOPIC_PREFIX) else {
            return;
        };
        let kind = match change {
            Change::Joined => EventType::MemberJoined,
            Change::Left(_) => EventType::MemberLeft,
        };
        webhooks.emit(kind, room, || {
            let mut fields = serde_json::json!({ "room": room });
            if let Change::Left(reason) = change {
                fields["reason"] = reason.as_str().into();
            }
            with_fields(&fields, info)
        });
    })
}
