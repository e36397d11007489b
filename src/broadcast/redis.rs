//! Broadcast through Redis: each topic's log is a Redis stream plus a small
//! meta hash, written and published by one Lua script so that log order and
//! delivery order agree on every replica.
//!
//! Two connections: one for commands, one dedicated subscriber (a
//! subscribed connection cannot run other commands). Both reconnect by
//! themselves; after the subscriber reconnects it resubscribes every topic
//! and bumps [`Broadcast::resumed`] so callers can read back what was
//! published while it was away (Redis pub/sub does not keep it).
//!
//! Presence lives in a hash per topic whose entries name the replica
//! instance holding them; each instance keeps a heartbeat key alive, and
//! entries of an instance whose heartbeat expired are dropped (and
//! announced as left) by whichever replica lists or sweeps the topic next.

use super::presence::PresenceMap;
use super::{Broadcast, BroadcastError, Deliver, Envelope, From, HistoryPolicy, Kind, Replay};
use async_trait::async_trait;
use bytes::Bytes;
use fred::clients::SubscriberClient;
use fred::prelude::*;
use fred::types::scripts::Script;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;

const PUBLISH_LUA: &str = concat!(include_str!("trim.lua"), include_str!("publish.lua"));
const REPLAY_LUA: &str = concat!(include_str!("trim.lua"), include_str!("replay.lua"));
const PRESENCE_LUA: &str = include_str!("presence.lua");

/// Capacity of fred's pub/sub fan-in channel. The reader task drains it
/// without awaiting anyone, so this only has to absorb scheduling hiccups;
/// an overflow is logged and announced through `resumed`, like an outage.
const PUBSUB_CAPACITY: usize = 16 * 1024;

/// A replica's presence entries outlive it by at most this long (plus one
/// sweep): the time its heartbeat key lives without being refreshed.
pub const PRESENCE_TTL: Duration = Duration::from_secs(10);
/// How often the heartbeat key is refreshed: three chances per TTL.
const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(3);
/// How often the presence of topics with local members is swept for
/// members of dead replicas.
pub const PRESENCE_SWEEP: Duration = Duration::from_secs(2);

pub struct RedisBroadcast {
    client: Client,
    subscriber: SubscriberClient,
    publish: Script,
    replay: Script,
    policy: HistoryPolicy,
    /// Local subscriber counts per topic. An async mutex held across the
    /// SUBSCRIBE round trip: it orders subscribe and unsubscribe of the same
    /// topic, and only joins and leaves take it, never message delivery.
    refs: tokio::sync::Mutex<HashMap<String, usize>>,
    resumed: tokio::sync::watch::Sender<u64>,
    presence_script: Script,
    /// This process among all replicas, for presence liveness. Random, so
    /// two replicas misconfigured with one SERVER_ID still differ.
    instance: String,
    /// This replica's own presence entries (topic to member to info), to
    /// put back after Redis lost them. A std mutex, never held across an
    /// await.
    local_presence: PresenceMap,
}

fn channel(topic: &str) -> String {
    format!("rtchat:chan:{topic}")
}

fn keys(topic: &str) -> Vec<String> {
    vec![
        format!("rtchat:log:{topic}"),
        format!("rtchat:meta:{topic}"),
    ]
}

fn unavailable(err: Error) -> BroadcastError {
    BroadcastError::Unavailable(err.to_string())
}

impl RedisBroadcast {
    pub async fn connect(
        url: &str,
        timeout: Duration,
        policy: HistoryPolicy,
        deliver: Deliver,
    ) -> anyhow::Result<Self> {
        let mut builder = crate::redis::builder(url, timeout)?;
        builder.with_performance_config(|perf| perf.broadcast_channel_capacity = PUBSUB_CAPACITY);
        let client = builder.build()?;
        let subscriber = builder.build_subscriber_client()?;
        crate::redis::connect(&[&client, &subscriber]).await;

        let this = Self {
            client,
            subscriber,
            publish: Script::from_lua(PUBLISH_LUA),
            replay: Script::from_lua(REPLAY_LUA),
            policy,
            refs: tokio::sync::Mutex::new(HashMap::new()),
            resumed: tokio::sync::watch::Sender::new(0),
            presence_script: Script::from_lua(PRESENCE_LUA),
            instance: std::iter::repeat_with(fastrand::alphanumeric)
                .take(12)
                .collect(),
            local_presence: PresenceMap::default(),
        };
        this.spawn_reader(deliver);
        this.spawn_resubscriber();
        Ok(this)
    }

    /// Keeps this replica's heartbeat alive, sweeps dead replicas' members
    /// out of the topics it has members in, and after an outage puts its
    /// own members back. Runs until the process ends.
    pub fn spawn_presence_keeper(self: &Arc<Self>) {
        let this = Arc::downgrade(self);
        let mut resumed = self.resumed.subscribe();
        tokio::spawn(async move {
            let mut heartbeat = tokio::time::interval(HEARTBEAT_INTERVAL);
            let mut sweep = tokio::time::interval(PRESENCE_SWEEP);
            // Set when Redis may have lost this replica's entries (it was
            // unreachable, or came back), cleared once they are put back.
            let mut restore = false;
            loop {
                tokio::select! {
                    _ = heartbeat.tick() => {
                        let Some(this) = this.upgrade() else { break };
                        if !this.heartbeat().await {
                            restore = true;
                        } else if restore {
                            restore = !this.restore_presence().await;
                        }
                    }
                    _ = sweep.tick() => {
                        let Some(this) = this.upgrade() else { break };
                        for topic in this.local_topics() {
                            let _ = this.presence(&topic).await;
                        }
                    }
                    changed = resumed.changed() => {
                        let Some(this) = this.upgrade() else { break };
                        if changed.is_err() {
                            break;
                        }
                        restore = !(this.heartbeat().await && this.restore_presence().await);
                    }
                }
            }
        });
    }

    async fn heartbeat(&self) -> bool {
        let key = format!("rtchat:alive:{}", self.instance);
        let ttl = Expiration::PX(PRESENCE_TTL.as_millis() as i64);
        let result: Result<(), Error> = self.client.set(key, 1, Some(ttl), None, false).await;
        if let Err(err) = &result {
            tracing::debug!(%err, "presence heartbeat failed");
        }
        result.is_ok()
    }

    fn local_topics(&self) -> Vec<String> {
        self.local_presence.topics()
    }

    /// Puts back every local presence entry; entries Redis had lost are
    /// announced as joined again. False if any could not be put back.
    async fn restore_presence(&self) -> bool {
        for (topic, member, info) in self.local_presence.entries() {
            if let Err(err) = self.presence_op(&topic, "add", &member, Some(info)).await {
                tracing::debug!(%err, topic, "could not restore presence yet");
                return false;
            }
        }
        true
    }

    async fn presence_op(
        &self,
        topic: &str,
        op: &str,
        member: &str,
        info: Option<Bytes>,
    ) -> Result<Value, BroadcastError> {
        let mut args: Vec<Value> = vec![op.into(), channel(topic).into(), member.into()];
        if let Some(info) = info {
            args.extend([
                self.instance.as_str().into(),
                Value::Bytes(info),
                (PRESENCE_TTL.as_millis() as i64).into(),
            ]);
        }
        self.presence_script
            .evalsha_with_reload(&self.client, vec![format!("rtchat:presence:{topic}")], args)
            .await
            .map_err(unavailable)
    }

    /// Drains pub/sub messages into `deliver`. Never awaits a consumer.
    fn spawn_reader(&self, deliver: Deliver) {
        let mut rx = self.subscriber.message_rx();
        let resumed = self.resumed.clone();
        tokio::spawn(async move {
            loop {
                match rx.recv().await {
                    Ok(message) => match parse_message(&message) {
                        Some(envelope) => deliver(envelope),
                        None => {
                            tracing::warn!(channel = %message.channel, "ignoring malformed pub/sub message")
                        }
                    },
                    Err(RecvError::Lagged(missed)) => {
                        tracing::error!(
                            missed,
                            "pub/sub reader fell behind; recovering from the log"
                        );
                        resumed.send_modify(|n| *n += 1);
                    }
                    Err(RecvError::Closed) => break,
                }
            }
        });
    }

    /// After every reconnect of the subscriber: resubscribe, then announce.
    fn spawn_resubscriber(&self) {
        let subscriber = self.subscriber.clone();
        let resumed = self.resumed.clone();
        let mut reconnects = subscriber.reconnect_rx();
        tokio::spawn(async move {
            loop {
                match reconnects.recv().await {
                    Ok(_) | Err(RecvError::Lagged(_)) => {}
                    Err(RecvError::Closed) => break,
                }
                match subscriber.resubscribe_all().await {
                    Ok(()) => {
                        tracing::info!("Redis connection restored; topics resubscribed");
                        resumed.send_modify(|n| *n += 1);
                    }
                    Err(err) => tracing::warn!(%err, "resubscribe after reconnect failed"),
                }
            }
        });
    }

    /// The history bounds as the log scripts take them.
    fn max_len(&self) -> Value {
        Value::Integer(self.policy.max_len as i64)
    }

    fn max_age_micros(&self) -> Value {
        Value::Integer(self.policy.max_age.as_micros() as i64)
    }
}

fn parse_message(message: &fred::types::Message) -> Option<Envelope> {
    let topic = message.channel.strip_prefix("rtchat:chan:")?;
    let raw = message.value.clone().into_bytes()?;
    let space = raw.iter().position(|&b| b == b' ')?;
    let kind = match &raw[..space] {
        b"+" => Kind::Joined,
        b"-" => Kind::Left,
        id => Kind::Message {
            id: std::str::from_utf8(id).ok()?.parse().ok()?,
        },
    };
    Some(Envelope {
        topic: Arc::from(topic),
        kind,
        payload: raw.slice(space + 1..),
    })
}

fn parse_id(value: &Value) -> Result<Option<u64>, BroadcastError> {
    let text = value.as_str().unwrap_or_default();
    if text.is_empty() {
        return Ok(None);
    }
    text.parse()
        .map(Some)
        .map_err(|_| BroadcastError::Protocol(format!("bad message id {text:?}")))
}

#[async_trait]
impl Broadcast for RedisBroadcast {
    async fn publish(&self, topic: &str, payload: Bytes) -> Result<u64, BroadcastError> {
        let id: Value = self
            .publish
            .evalsha_with_reload(
                &self.client,
                keys(topic),
                vec![
                    Value::from(channel(topic)),
                    Value::Bytes(payload),
                    self.max_len(),
                    self.max_age_micros(),
                ],
            )
            .await
            .map_err(unavailable)?;
        parse_id(&id)?.ok_or_else(|| BroadcastError::Protocol("publish returned no id".into()))
    }

    async fn subscribe(&self, topic: &str) -> Result<(), BroadcastError> {
        let mut refs = self.refs.lock().await;
        let count = refs.get(topic).copied().unwrap_or(0);
        if count == 0 {
            self.subscriber
                .subscribe(channel(topic))
                .await
                .map_err(unavailable)?;
        }
        refs.insert(topic.to_owned(), count + 1);
        Ok(())
    }

    async fn unsubscribe(&self, topic: &str) {
        let mut refs = self.refs.lock().await;
        match refs.get_mut(topic) {
            Some(count) if *count > 1 => *count -= 1,
            Some(_) => {
                refs.remove(topic);
                if let Err(err) = self.subscriber.unsubscribe(channel(topic)).await {
                    // Harmless: stray deliveries for a topic without local
                    // members are dropped by the caller.
                    tracing::debug!(%err, topic, "unsubscribe failed");
                }
            }
            None => {}
        }
    }

    async fn replay(&self, topic: &str, from: From) -> Result<Replay, BroadcastError> {
        let (mode, value) = match from {
            From::Position => ("position", Value::from("")),
            From::Since(id) => ("since", Value::Integer(id as i64)),
            From::Last(n) => ("last", Value::Integer(n as i64)),
        };
        let reply: Vec<Value> = self
            .replay
            .evalsha_with_reload(
                &self.client,
                keys(topic),
                vec![Value::from(mode), value, self.max_age_micros()],
            )
            .await
            .map_err(unavailable)?;
        let mut items = reply.into_iter();
        let recovered = items.next().and_then(|v| v.as_i64()) == Some(1);
        let last_id = match items.next() {
            Some(v) => parse_id(&v)?,
            None => return Err(BroadcastError::Protocol("empty replay reply".into())),
        };
        let mut messages = Vec::new();
        while let (Some(id), Some(payload)) = (items.next(), items.next()) {
            let id = parse_id(&id)?
                .ok_or_else(|| BroadcastError::Protocol("replayed entry without id".into()))?;
            let payload = payload.into_bytes().unwrap_or_default();
            messages.push((id, payload));
        }
        Ok(Replay {
            recovered,
            last_id,
            messages,
        })
    }

    async fn presence_add(
        &self,
        topic: &str,
        member: &str,
        info: Bytes,
    ) -> Result<(), BroadcastError> {
        self.local_presence.add(topic, member, info.clone());
        self.presence_op(topic, "add", member, Some(info))
            .await
            .map(drop)
    }

    async fn presence_remove(&self, topic: &str, member: &str) -> Result<(), BroadcastError> {
        self.local_presence.remove(topic, member);
        self.presence_op(topic, "remove", member, None)
            .await
            .map(drop)
    }

    async fn presence(&self, topic: &str) -> Result<Vec<Bytes>, BroadcastError> {
        let infos: Vec<Value> = self
            .presence_script
            .evalsha_with_reload(
                &self.client,
                vec![format!("rtchat:presence:{topic}")],
                vec!["list", &channel(topic)],
            )
            .await
            .map_err(unavailable)?;
        Ok(infos.into_iter().filter_map(Value::into_bytes).collect())
    }

    fn is_ready(&self) -> bool {
        self.client.is_connected() && self.subscriber.is_connected()
    }

    fn resumed(&self) -> tokio::sync::watch::Receiver<u64> {
        self.resumed.subscribe()
    }
}
