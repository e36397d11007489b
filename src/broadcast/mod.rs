//! The one publish/subscribe interface both servers use.
//!
//! A topic is an ordered log: every published payload gets an id that is
//! strictly greater than every earlier id of that topic, on every replica,
//! and the last [`HistoryPolicy`] worth of payloads stays readable so a
//! subscriber that missed some can catch up. Two implementations sit behind
//! [`Broadcast`]: [`memory`] for a standalone process and [`redis`] for
//! replicas that share one Redis.
//!
//! Ids are microseconds since the Unix epoch, bumped to `last + 1` when two
//! publishes land in the same microsecond. A log that is lost (Redis
//! restarted empty) therefore restarts at a higher id than any id of the lost
//! log, and the log remembers where it started: a `since` older than that
//! start is known to come from an earlier history and is never replayed
//! against the new one.
//!
//! Every log has a position from the first time anyone looks at it: a
//! replay of a topic that holds nothing yet creates the log, empty, at the
//! current id, so a subscriber that joined an empty topic can resume from
//! there and be told truthfully whether it missed anything.
//!
//! Presence (who is in a topic, across replicas) is a second interface,
//! [`Presence`], so a user of the log alone (the user service) carries none
//! of its heartbeats.
//!
//! Implementations must never block the caller on a subscriber: deliveries
//! go to a synchronous [`Deliver`] callback that only queues.

pub(crate) mod memory;
pub(crate) mod presence;
pub mod redis;

use crate::redis::RedisSettings;
use async_trait::async_trait;
use bytes::Bytes;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// One published payload as a subscriber receives it.
#[derive(Debug, Clone)]
pub struct Envelope {
    pub topic: Arc<str>,
    pub kind: Kind,
    pub payload: Bytes,
}

/// What an [`Envelope`] carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A logged payload with its id.
    Message { id: u64 },
    /// A member entered the topic's presence; the payload is its info.
    Joined,
    /// A member left the topic's presence (or its replica died).
    Left,
    /// Not for one topic: deliveries may have been lost from here on (the
    /// subscriber reconnected, or fell behind), until `resumed` changes
    /// and what was missed can be read back. Sent before the first
    /// delivery that may follow the gap, so that a reader stops counting
    /// what it got as complete before anything newer arrives.
    Interrupted,
}

impl Envelope {
    /// The [`Kind::Interrupted`] notice.
    pub fn interrupted() -> Self {
        Self {
            topic: Arc::from(""),
            kind: Kind::Interrupted,
            payload: Bytes::new(),
        }
    }
}

/// Where a [`Broadcast::replay`] starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum From {
    /// Nothing to replay: only the log's position.
    Position,
    /// Everything after this id, if the log still holds all of it.
    Since(u64),
    /// The newest `n` payloads.
    Last(usize),
}

/// Called for every payload published on a topic this process subscribed
/// to, in id order per topic. It runs on the broadcast's reader task, so it
/// must not block or await.
pub type Deliver = Arc<dyn Fn(Envelope) + Send + Sync>;

/// What a topic's log still holds after a given id.
#[derive(Debug, Default)]
pub struct Replay {
    /// True when every payload after `since` is in `messages`; false when some
    /// were trimmed, or `since` belongs to a history that no longer exists.
    pub recovered: bool,
    /// Where the log stands: the id of its newest payload, or the point it
    /// was created at while it holds none. A `since` of this value replays
    /// everything published after the read.
    pub position: u64,
    /// Payloads asked for, oldest first; empty when not recovered.
    pub messages: Vec<(u64, Bytes)>,
}

/// How much of each topic's log is kept.
#[derive(Debug, Clone, Copy)]
pub struct HistoryPolicy {
    pub max_len: usize,
    pub max_age: Duration,
}

/// How much of each topic's log is kept: one policy for every topic but
/// the few named. A log that carries more than rooms (grpc-server's user
/// updates beside the rooms it posts to) keeps each by its own bounds, and
/// a room's log is trimmed by the room bounds whoever publishes to it.
#[derive(Debug, Clone)]
pub struct Histories {
    default: HistoryPolicy,
    named: Vec<(&'static str, HistoryPolicy)>,
}

impl Histories {
    /// `topic` keeps `policy` instead of the default.
    pub fn with(mut self, topic: &'static str, policy: HistoryPolicy) -> Self {
        self.named.push((topic, policy));
        self
    }

    pub fn of(&self, topic: &str) -> HistoryPolicy {
        self.named
            .iter()
            .find(|(name, _)| *name == topic)
            .map_or(self.default, |(_, policy)| *policy)
    }
}

impl std::convert::From<HistoryPolicy> for Histories {
    fn from(default: HistoryPolicy) -> Self {
        Self {
            default,
            named: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum BroadcastError {
    /// The shared backend is unreachable or did not answer in time.
    #[error("broadcast backend unavailable: {0}")]
    Unavailable(String),
    /// The backend answered something this version does not understand.
    #[error("unexpected reply from broadcast backend: {0}")]
    Protocol(String),
}

#[async_trait]
pub trait Broadcast: Send + Sync + 'static {
    /// Appends `payload` to the topic's log and delivers it to every
    /// subscribed process; returns its id. Log order and delivery order are
    /// the same.
    async fn publish(&self, topic: &str, payload: Bytes) -> Result<u64, BroadcastError>;

    /// [`Broadcast::publish`] that happens once per `key` and topic within
    /// the history's age: a repeat stores and delivers nothing and returns
    /// the first publish's id, so a backend may retry a publish whose
    /// answer it lost.
    async fn publish_once(
        &self,
        topic: &str,
        key: &str,
        payload: Bytes,
    ) -> Result<u64, BroadcastError>;

    /// Starts delivering the topic to this process. Counted: the backend
    /// subscription is made on the first call and kept until the matching
    /// number of [`Broadcast::unsubscribe`] calls. Returns once deliveries
    /// are guaranteed, so a history read after it leaves no gap.
    async fn subscribe(&self, topic: &str) -> Result<(), BroadcastError>;

    /// Undoes one [`Broadcast::subscribe`].
    async fn unsubscribe(&self, topic: &str);

    /// Reads the log from where `from` says, creating it (empty, at the
    /// current id) if it does not exist yet.
    async fn replay(&self, topic: &str, from: From) -> Result<Replay, BroadcastError>;

    /// True while publishes and subscriptions can succeed.
    fn is_ready(&self) -> bool;

    /// A counter that moves each time deliveries resumed after an outage, so
    /// a subscriber can read back what was published meanwhile.
    fn resumed(&self) -> tokio::sync::watch::Receiver<u64>;
}

/// Why a member left a topic's presence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaveReason {
    /// It asked to leave.
    Left,
    /// Its session ended (or, after an outage of Redis, its leave was
    /// found missing).
    Disconnected,
    /// The replica holding it died; another replica noticed.
    ReplicaDied,
}

impl LeaveReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Left => "left",
            Self::Disconnected => "disconnected",
            Self::ReplicaDied => "replica_died",
        }
    }
}

/// A change of a topic's presence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Joined,
    Left(LeaveReason),
}

/// Told of each change this process made to the shared presence (topic,
/// member info, change): each change is made, and so told, by exactly one
/// process, the dead replicas' leaves included. It runs on the caller's
/// task, so it must not block or await.
pub type PresenceWatch = Arc<dyn Fn(&str, &Bytes, Change) + Send + Sync>;

/// Who is in a topic, on every replica, and which replicas there are.
/// Changes of a topic's members are delivered to the
/// topic's subscribers as [`Kind::Joined`] / [`Kind::Left`] envelopes
/// through the same [`Deliver`] callback as the log.
#[async_trait]
pub trait Presence: Send + Sync + 'static {
    /// Puts `member` in the topic's presence with `info`; if it was not
    /// there, every subscriber gets a [`Kind::Joined`] with the info.
    async fn presence_add(
        &self,
        topic: &str,
        member: &str,
        info: Bytes,
    ) -> Result<(), BroadcastError>;

    /// Takes `member` out of the topic's presence; if it was there, every
    /// subscriber gets a [`Kind::Left`] with its info.
    async fn presence_remove(
        &self,
        topic: &str,
        member: &str,
        reason: LeaveReason,
    ) -> Result<(), BroadcastError>;

    /// Tells `watch` of every change this process makes from now on.
    fn set_watch(&self, watch: PresenceWatch);

    /// Infos of the topic's present members, on every replica. Members of
    /// replicas that died without saying goodbye are dropped (and announced
    /// as left) once the replica's heartbeat expires.
    async fn presence(&self, topic: &str) -> Result<Vec<Bytes>, BroadcastError>;

    /// Publishes this replica's report of itself (a JSON object: sockets,
    /// draining, ...), replacing its last one.
    async fn report(&self, state: Bytes) -> Result<(), BroadcastError>;

    /// The latest report of every live replica, this one's included; a
    /// replica that stopped reporting drops out with its heartbeat.
    async fn replicas(&self) -> Result<Vec<Bytes>, BroadcastError>;
}

/// The log alone, for a server that needs no presence: Redis when
/// settings are given, in-process otherwise.
pub async fn connect(
    redis: Option<&RedisSettings>,
    histories: impl Into<Histories>,
    deliver: Deliver,
) -> anyhow::Result<Arc<dyn Broadcast>> {
    let histories = histories.into();
    Ok(match redis {
        Some(redis) => Arc::new(redis::RedisBroadcast::connect(redis, histories, deliver).await?),
        None => Arc::new(memory::MemoryBroadcast::new(histories, deliver)),
    })
}

/// The log and presence over the same backend, for a server with members:
/// this replica's presence is kept alive (a heartbeat, and its entries put
/// back after an outage).
pub async fn connect_with_presence(
    redis: Option<&RedisSettings>,
    histories: impl Into<Histories>,
    deliver: Deliver,
) -> anyhow::Result<(Arc<dyn Broadcast>, Arc<dyn Presence>)> {
    connect_both(redis, histories.into(), deliver, true).await
}

/// The log and a presence that only reads others' members, for a server
/// without members (grpc-server): no heartbeat, nothing kept alive, one
/// command connection and one subscriber in all.
pub async fn connect_presence_reader(
    redis: Option<&RedisSettings>,
    histories: impl Into<Histories>,
    deliver: Deliver,
) -> anyhow::Result<(Arc<dyn Broadcast>, Arc<dyn Presence>)> {
    connect_both(redis, histories.into(), deliver, false).await
}

async fn connect_both(
    redis: Option<&RedisSettings>,
    histories: Histories,
    deliver: Deliver,
    members: bool,
) -> anyhow::Result<(Arc<dyn Broadcast>, Arc<dyn Presence>)> {
    Ok(match redis {
        Some(redis) => {
            let log = Arc::new(redis::RedisBroadcast::connect(redis, histories, deliver).await?);
            let presence: Arc<dyn Presence> = if members {
                redis::RedisPresence::start(&log)
            } else {
                redis::RedisPresence::reader(&log)
            };
            (log, presence)
        }
        None => {
            let both = Arc::new(memory::MemoryBroadcast::new(histories, deliver));
            (both.clone(), both)
        }
    })
}

/// Milliseconds since the Unix epoch: replicas' reports, webhook queue
/// times, the operator's page.
pub(crate) fn unix_ms() -> u64 {
    now_micros() / 1000
}

/// Microseconds since the Unix epoch, the clock message ids follow.
pub(crate) fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or_default()
}
