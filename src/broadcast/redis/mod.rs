//! Broadcast through Redis: each topic's log is a Redis stream, written and
//! published by one Lua script so that log order and delivery order agree
//! on every replica.
//!
//! Two connections: one for commands, one dedicated subscriber (a
//! subscribed connection cannot run other commands). Both reconnect by
//! themselves; after the subscriber reconnects it resubscribes every topic
//! and bumps [`Broadcast::resumed`] so callers can read back what was
//! published while it was away (Redis pub/sub does not keep it).
//! Publishing on the subscriber (RESP3), which saves Redis a write per
//! message, lost acknowledged messages in the chaos lane, twice
//! (docs/BENCHMARKS.md, "Publishes on the subscriber connection").
//!
//! - `group`: publishes sent to Redis in groups (group commit);
//!   `expiry`: which of them set their log's expiry.
//! - [`keys`]: key and channel names.
//! - [`wire`]: parsing pub/sub messages and script replies.
//! - [`presence`]: who is in a topic, for servers that have members;
//!   `liveness`: which replicas are alive.
//! - `replicas`: what each replica reports of itself.
//! - `subscriptions`: making them, and making them again where Redis
//!   delivers them after a reconnect or a slot move; `topics`: when to
//!   make and drop them.
//! - `probe`: readiness, from a write to every primary.

mod doubts;
mod expiry;
mod group;
pub(crate) mod keys;
mod liveness;
pub(crate) mod presence;
mod probe;
mod replicas;
mod subscriptions;
mod topics;
pub mod wire;

pub use presence::RedisPresence;

use super::{Broadcast, BroadcastError, Deliver, Envelope, From, Histories, Replay};
use crate::redis::RedisSettings;
use async_trait::async_trait;
use bytes::Bytes;
use fred::clients::SubscriberClient;
use fred::prelude::*;
use fred::types::scripts::Script;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::broadcast::error::RecvError;

const PUBLISH_LUA: &str = concat!(include_str!("log.lua"), include_str!("publish.lua"));
const REPLAY_LUA: &str = concat!(include_str!("log.lua"), include_str!("replay.lua"));

/// Capacity of fred's pub/sub fan-in channel. The reader task drains it
/// without awaiting anyone, so this only has to absorb scheduling hiccups
/// (512 is 5 ms at 100,000 messages/s into one replica); an overflow is
/// logged and announced as a gap, which the rooms repair from the log.
/// fred gives every one of a client's nine event channels this capacity,
/// allocated up front, so it is set on the subscriber alone: at 2,048 the
/// nine cost 1.2 MB of a replica's 10 MiB at start, at 512 a quarter of
/// that (docs/BENCHMARKS.md).
const PUBSUB_CAPACITY: usize = 512;

pub struct RedisBroadcast {
    client: Client,
    subscriber: SubscriberClient,
    publisher: group::Publisher,
    replay: Script,
    histories: Histories,
    /// Redis Cluster: SPUBLISH / SSUBSCRIBE, so each room's traffic stays
    /// on the shard that owns it instead of crossing every node.
    sharded: bool,
    /// For `--redis-wait-replicas`.
    settings: RedisSettings,
    /// Local subscriber counts per topic.
    topics: topics::Topics,
    resumed: tokio::sync::watch::Sender<u64>,
    /// Whether the last probe write succeeded: readiness means a command
    /// works, not that a socket is open (a Redis out of memory, read-only
    /// or refusing commands keeps its connections).
    commands_work: Arc<AtomicBool>,
    /// Stops the prober and the topology watch with this broadcast.
    _tasks: tokio_util::sync::DropGuard,
}

fn unavailable(err: Error) -> BroadcastError {
    BroadcastError::Unavailable(err.to_string())
}

/// After every reconnect of the command connection, which the publishes
/// take, maybe to a promoted replica that missed the last refresh, every
/// log's expiry is set again.
fn spawn_expiry_reset(
    client: &Client,
    publisher: group::Publisher,
    stop: tokio_util::sync::CancellationToken,
) {
    let mut reconnects = client.reconnect_rx();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                next = reconnects.recv() => match next {
                    Ok(_) | Err(RecvError::Lagged(_)) => publisher.forget_expiries(),
                    Err(RecvError::Closed) => break,
                },
                () = stop.cancelled() => break,
            }
        }
    });
}

/// PUBLISH, or SPUBLISH on a cluster (the channel shares its room's slot).
fn publish_command(sharded: bool) -> &'static str {
    if sharded { "SPUBLISH" } else { "PUBLISH" }
}

impl RedisBroadcast {
    pub async fn connect(
        redis: &RedisSettings,
        histories: Histories,
        deliver: Deliver,
    ) -> anyhow::Result<Self> {
        let mut builder = crate::redis::builder(redis)?;
        let client = builder.build()?;
        builder.with_performance_config(|perf| perf.broadcast_channel_capacity = PUBSUB_CAPACITY);
        let subscriber = builder.build_subscriber_client()?;
        let connected = crate::redis::connect(&[&client, &subscriber]).await;
        let commands_work = Arc::new(AtomicBool::new(connected && probe::probe(&client).await));
        let tasks = tokio_util::sync::CancellationToken::new();
        probe::spawn_prober(client.clone(), commands_work.clone(), tasks.clone());

        let publisher = group::Publisher::new(client.clone(), redis.clone(), redis.is_cluster());
        let this = Self {
            client,
            subscriber,
            publisher,
            replay: Script::from_lua(REPLAY_LUA),
            histories,
            sharded: redis.is_cluster(),
            settings: redis.clone(),
            topics: topics::Topics::default(),
            resumed: tokio::sync::watch::Sender::new(0),
            commands_work,
            _tasks: tasks.clone().drop_guard(),
        };
        this.spawn_reader(deliver.clone());
        spawn_expiry_reset(&this.client, this.publisher.clone(), tasks.clone());
        let renewal = subscriptions::Renewal {
            subscriber: this.subscriber.clone(),
            sharded: this.sharded,
            resumed: this.resumed.clone(),
            deliver,
        };
        if this.sharded {
            subscriptions::spawn_topology_watch(renewal.clone(), tasks.clone());
        }
        subscriptions::spawn_resubscriber(renewal, tasks);
        Ok(this)
    }

    /// Drains pub/sub messages into `deliver`. Never awaits a consumer.
    fn spawn_reader(&self, deliver: Deliver) {
        let mut rx = self.subscriber.message_rx();
        let resumed = self.resumed.clone();
        tokio::spawn(async move {
            loop {
                match rx.recv().await {
                    Ok(message) => {
                        let parsed = message
                            .value
                            .into_bytes()
                            .and_then(|raw| wire::parse_message(&message.channel, raw));
                        match parsed {
                            Some(envelope) => deliver(envelope),
                            None => tracing::warn!(
                                channel = %message.channel,
                                "ignoring malformed pub/sub message"
                            ),
                        }
                    }
                    Err(RecvError::Lagged(missed)) => {
                        tracing::error!(
                            missed,
                            "pub/sub reader fell behind; recovering from the log"
                        );
                        // Before the messages after the gap, which follow.
                        deliver(Envelope::interrupted());
                        resumed.send_modify(|n| *n += 1);
                    }
                    Err(RecvError::Closed) => break,
                }
            }
        });
    }

    /// What the scripts publish with.
    pub(super) fn publish_command(&self) -> &'static str {
        publish_command(self.sharded)
    }

    /// The topic's history bounds as the log scripts take them: its
    /// length, and its age in microseconds.
    fn bounds(&self, topic: &str) -> (i64, i64) {
        let policy = self.histories.of(topic);
        (policy.max_len as i64, policy.max_age.as_micros() as i64)
    }

    /// Queues the publish for the next group and waits for its id.
    async fn append(
        &self,
        topic: &str,
        idempotency_key: Option<&str>,
        payload: Bytes,
    ) -> Result<u64, BroadcastError> {
        let (max_len, max_age) = self.bounds(topic);
        self.publisher
            .publish(group::Post {
                topic: topic.to_owned(),
                idempotency_key: idempotency_key.map(str::to_owned),
                payload,
                max_len,
                max_age,
            })
            .await
    }
}

#[async_trait]
impl Broadcast for RedisBroadcast {
    async fn publish(&self, topic: &str, payload: Bytes) -> Result<u64, BroadcastError> {
        self.append(topic, None, payload).await
    }

    async fn publish_once(
        &self,
        topic: &str,
        key: &str,
        payload: Bytes,
    ) -> Result<u64, BroadcastError> {
        self.append(topic, Some(key), payload).await
    }

    async fn subscribe(&self, topic: &str) -> Result<(), BroadcastError> {
        let subscribe =
            || subscriptions::subscribe(&self.subscriber, self.sharded, keys::channel(topic));
        self.topics
            .subscribe(topic, subscribe)
            .await
            .map_err(unavailable)
    }

    async fn unsubscribe(&self, topic: &str) {
        let unsubscribe = || async {
            let channel = keys::channel(topic);
            let unsubscribed =
                subscriptions::unsubscribe(&self.subscriber, self.sharded, channel).await;
            if let Err(err) = unsubscribed {
                // Harmless: stray deliveries for a topic without local
                // members are dropped by the caller.
                tracing::debug!(%err, topic, "unsubscribe failed");
            }
        };
        self.topics.unsubscribe(topic, unsubscribe).await;
    }

    async fn replay(&self, topic: &str, from: From) -> Result<Replay, BroadcastError> {
        let (mode, value) = match from {
            From::Position => ("position", Value::from("")),
            From::Since(id) => ("since", Value::Integer(id as i64)),
            From::Last(n) => ("last", Value::Integer(n as i64)),
        };
        let (max_len, max_age) = self.bounds(topic);
        let (max_len, max_age) = (Value::Integer(max_len), Value::Integer(max_age));
        let reply: Vec<Value> = self
            .replay
            .evalsha_with_reload(
                &self.client,
                keys::log(topic),
                vec![Value::from(mode), value, max_age, max_len],
            )
            .await
            .map_err(unavailable)?;
        let replay = wire::parse_replay(reply)?;
        // A first read creates the log's position, which members resume
        // from: with --redis-wait-replicas it must survive a failover too.
        crate::redis::wait_for_replicas(&self.client, &self.settings, topic)
            .await
            .map_err(BroadcastError::Unavailable)?;
        Ok(replay)
    }

    fn is_ready(&self) -> bool {
        self.client.is_connected()
            && self.subscriber.is_connected()
            && self.commands_work.load(Ordering::Relaxed)
    }

    fn resumed(&self) -> tokio::sync::watch::Receiver<u64> {
        self.resumed.subscribe()
    }
}
