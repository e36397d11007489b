//! What a backend may do with rooms without being a client: post as any
//! user, read a room's history and presence, see what this replica holds.
//! The server API (`crate::api`) and the user service reach rooms here;
//! the same rules of a room apply as to a door's client, except the token
//! scope, which a backend does not have.

use super::connected::{CONTROL_TOPIC, Control};
use super::wire::MessageBody;
use super::{DisplayName, Hub, HubError, RoomName, rooms::topic};
use crate::broadcast::From;
use bytes::Bytes;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often a hub that could not subscribe the control topic tries again.
const CONTROL_RETRY: Duration = Duration::from_secs(1);

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
}

impl<'a> Author<'a> {
    /// A backend posting under a display name of its choice.
    pub fn backend(name: Option<&'a DisplayName>) -> Self {
        Self {
            user: BACKEND_USER,
            name,
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

/// This replica's own counts.
#[derive(Debug, Clone, Copy)]
pub struct Stats {
    pub connections: i64,
    pub rooms: i64,
    pub messages_in: u64,
    pub messages_out: u64,
}

impl Hub {
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
            Some(key) => self.log.publish_once(&topic, key, payload).await?,
            None => self.log.publish(&topic, payload).await?,
        };
        self.metrics
            .publish_seconds
            .observe(started.elapsed().as_secs_f64());
        self.metrics.messages_in.inc();
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

    /// This replica's rooms with their local member counts.
    pub fn local_rooms(&self) -> Vec<(String, usize)> {
        self.rooms.counts()
    }

    /// Closes every connection of `user`, on every replica: native clients
    /// get close code 4002, Socket.IO clients a DISCONNECT (no automatic
    /// reconnect), and neither session is recoverable. Not a ban: the user
    /// may connect again.
    pub async fn disconnect(&self, user: &str) -> Result<(), HubError> {
        let command = Control::Disconnect(user.to_owned());
        let payload = serde_json::to_vec(&command).expect("control commands always serialise");
        self.log.publish(CONTROL_TOPIC, payload.into()).await?;
        Ok(())
    }

    /// Listens on the control topic, retrying until the backend answers.
    pub(super) fn listen_for_control(self: &Arc<Self>) {
        let hub = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                let Some(hub) = hub.upgrade() else { return };
                match hub.log.subscribe(CONTROL_TOPIC).await {
                    Ok(()) => return,
                    Err(err) => tracing::debug!(%err, "control topic not subscribed yet"),
                }
                drop(hub);
                tokio::time::sleep(CONTROL_RETRY).await;
            }
        });
    }

    pub fn stats(&self) -> Stats {
        Stats {
            connections: self.metrics.connections.get(),
            rooms: self.metrics.rooms.get(),
            messages_in: self.metrics.messages_in.get(),
            messages_out: self.metrics.messages_out.get(),
        }
    }
}
