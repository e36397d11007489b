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
//! - [`keys`]: key and channel names.
//! - [`wire`]: parsing pub/sub messages and script replies.
//! - [`presence`]: who is in a topic, for servers that have members.

pub mod keys;
pub mod presence;
pub mod wire;

pub use presence::RedisPresence;

use super::{Broadcast, BroadcastError, Deliver, From, HistoryPolicy, Replay};
use crate::redis::RedisSettings;
use async_trait::async_trait;
use bytes::Bytes;
use fred::clients::SubscriberClient;
use fred::prelude::*;
use fred::types::scripts::Script;
use fred::util::redis_keyslot;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;

const PUBLISH_LUA: &str = concat!(include_str!("trim.lua"), include_str!("publish.lua"));
const REPLAY_LUA: &str = concat!(include_str!("trim.lua"), include_str!("replay.lua"));

/// Capacity of fred's pub/sub fan-in channel. The reader task drains it
/// without awaiting anyone, so this only has to absorb scheduling hiccups
/// (2048 is 68 ms at 30,000 messages/s); an overflow is logged and
/// announced through `resumed`, like an outage. fred gives every one of a
/// client's nine event channels this capacity, allocated up front, so it
/// is set on the subscriber alone: at 16 Ki it cost 20 MB of RSS at start.
const PUBSUB_CAPACITY: usize = 2048;

pub struct RedisBroadcast {
    client: Client,
    subscriber: SubscriberClient,
    publish: Script,
    replay: Script,
    policy: HistoryPolicy,
    /// Redis Cluster: SPUBLISH / SSUBSCRIBE, so each room's traffic stays
    /// on the shard that owns it instead of crossing every node.
    sharded: bool,
    /// For `--redis-wait-replicas`.
    settings: RedisSettings,
    /// Local subscriber counts per topic. An async mutex held across the
    /// SUBSCRIBE round trip: it orders subscribe and unsubscribe of the same
    /// topic, and only joins and leaves take it, never message delivery.
    refs: tokio::sync::Mutex<HashMap<String, usize>>,
    resumed: tokio::sync::watch::Sender<u64>,
    /// Whether the last probe write succeeded: readiness means a command
    /// works, not that a socket is open (a Redis out of memory, read-only
    /// or refusing commands keeps its connections).
    commands_work: Arc<AtomicBool>,
    /// Stops the prober and the topology watch with this broadcast.
    _tasks: tokio_util::sync::DropGuard,
}

/// Subscribes again to every topic the subscriber tracks. Not fred's
/// `resubscribe_all`: that sends a `SUBSCRIBE` without channels when only
/// sharded ones are tracked, which Redis refuses, and then stops. Sharded
/// channels go one slot per command (a command may not span slots), all
/// in flight at once.
async fn resubscribe(subscriber: &SubscriberClient, sharded: bool) -> Result<(), Error> {
    if !sharded {
        let channels: Vec<String> = subscriber
            .tracked_channels()
            .iter()
            .map(|c| c.to_string())
            .collect();
        if channels.is_empty() {
            return Ok(());
        }
        return subscriber.subscribe(channels).await;
    }
    let mut by_slot: HashMap<u16, Vec<String>> = HashMap::new();
    for channel in subscriber.tracked_shard_channels() {
        let slot = redis_keyslot(channel.as_bytes());
        by_slot.entry(slot).or_default().push(channel.to_string());
    }
    let subscribes = by_slot
        .into_values()
        .map(|channels| subscriber.ssubscribe(channels));
    futures_util::future::try_join_all(subscribes)
        .await
        .map(drop)
}

/// How often a cluster's slot table is compared with the last one seen.
const TOPOLOGY_CHECK: Duration = Duration::from_secs(3);

/// Who serves which slots, as a client last saw it.
fn slot_table(client: &impl ClusterInterface) -> Vec<(u16, u16, String)> {
    client
        .cached_cluster_state()
        .map(|state| {
            state
                .slots()
                .iter()
                .map(|range| (range.start, range.end, range.primary.to_string()))
                .collect()
        })
        .unwrap_or_default()
}

/// How often readiness is checked with a real write.
const PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// One write with a short life, the kind every publish makes, to every
/// shard: on a cluster each primary gets its own probe key, since one
/// shard down fails every room it owns.
async fn probe(client: &Client) -> bool {
    let ttl = Expiration::PX(10_000);
    let writes = probe_tags(client).into_iter().map(|tag| {
        let key = keys::probe(client.id(), tag);
        client.set::<(), _, _>(key, 1, Some(ttl.clone()), None, false)
    });
    let done = futures_util::future::try_join_all(writes).await;
    if let Err(err) = &done {
        tracing::debug!(%err, "Redis probe failed");
    }
    done.is_ok()
}

/// One probe tag per primary whose key hashes into a slot it owns, as the
/// client sees the cluster now; just 0 for a single Redis.
fn probe_tags(client: &Client) -> Vec<usize> {
    let Some(state) = client.cached_cluster_state() else {
        return vec![0];
    };
    let slot_of = |tag| redis_keyslot(keys::probe(client.id(), tag).as_bytes());
    state
        .unique_primary_nodes()
        .iter()
        .filter_map(|primary| {
            // A primary owns about a third of the slots of three: the
            // first few tags find one of its slots.
            (0..10_000).find(|&tag| state.get_server(slot_of(tag)) == Some(primary))
        })
        .collect()
}

fn spawn_prober(
    client: Client,
    commands_work: Arc<AtomicBool>,
    stop: tokio_util::sync::CancellationToken,
) {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(PROBE_INTERVAL);
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                () = stop.cancelled() => break,
            }
            let works = client.is_connected() && probe(&client).await;
            if commands_work.swap(works, Ordering::Relaxed) != works {
                if works {
                    tracing::info!("Redis commands work again");
                } else {
                    tracing::warn!("Redis commands fail; not ready until they work");
                }
            }
        }
    });
}

fn unavailable(err: Error) -> BroadcastError {
    BroadcastError::Unavailable(err.to_string())
}

impl RedisBroadcast {
    pub async fn connect(
        redis: &RedisSettings,
        policy: HistoryPolicy,
        deliver: Deliver,
    ) -> anyhow::Result<Self> {
        let mut builder = crate::redis::builder(redis)?;
        let client = builder.build()?;
        builder.with_performance_config(|perf| perf.broadcast_channel_capacity = PUBSUB_CAPACITY);
        let subscriber = builder.build_subscriber_client()?;
        let connected = crate::redis::connect(&[&client, &subscriber]).await;
        let commands_work = Arc::new(AtomicBool::new(connected && probe(&client).await));
        let tasks = tokio_util::sync::CancellationToken::new();
        spawn_prober(client.clone(), commands_work.clone(), tasks.clone());

        let this = Self {
            client,
            subscriber,
            publish: Script::from_lua(PUBLISH_LUA),
            replay: Script::from_lua(REPLAY_LUA),
            policy,
            sharded: redis.is_cluster(),
            settings: redis.clone(),
            refs: tokio::sync::Mutex::new(HashMap::new()),
            resumed: tokio::sync::watch::Sender::new(0),
            commands_work,
            _tasks: tasks.clone().drop_guard(),
        };
        this.spawn_reader(deliver);
        this.spawn_resubscriber();
        if this.sharded {
            this.spawn_topology_watch(tasks);
        }
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
                        resumed.send_modify(|n| *n += 1);
                    }
                    Err(RecvError::Closed) => break,
                }
            }
        });
    }

    /// After every reconnect of the subscriber: resubscribe, then announce.
    fn spawn_resubscriber(&self) {
        let (subscriber, sharded) = (self.subscriber.clone(), self.sharded);
        let resumed = self.resumed.clone();
        let mut reconnects = subscriber.reconnect_rx();
        tokio::spawn(async move {
            loop {
                match reconnects.recv().await {
                    Ok(_) | Err(RecvError::Lagged(_)) => {}
                    Err(RecvError::Closed) => break,
                }
                match resubscribe(&subscriber, sharded).await {
                    Ok(()) => {
                        tracing::info!("Redis connection restored; topics resubscribed");
                        resumed.send_modify(|n| *n += 1);
                    }
                    Err(err) => tracing::warn!(%err, "resubscribe after reconnect failed"),
                }
            }
        });
    }

    /// On a cluster, a slot that moves to another primary (resharding, or
    /// a failover whose old primary lives on) is unsubscribed by Redis
    /// without the connection dropping, so no reconnect announces it. The
    /// subscriber's slot table is refreshed every few seconds; when it has
    /// changed, every topic is subscribed again where it now lives and the
    /// change announced like an outage, so rooms read back what they missed.
    fn spawn_topology_watch(&self, stop: tokio_util::sync::CancellationToken) {
        let (subscriber, sharded) = (self.subscriber.clone(), self.sharded);
        let resumed = self.resumed.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(TOPOLOGY_CHECK);
            let mut known = slot_table(&subscriber);
            loop {
                tokio::select! {
                    _ = ticks.tick() => {}
                    () = stop.cancelled() => break,
                }
                if subscriber.sync_cluster().await.is_err() {
                    continue;
                }
                let now = slot_table(&subscriber);
                if now == known {
                    continue;
                }
                known = now;
                match resubscribe(&subscriber, sharded).await {
                    Ok(()) => {
                        tracing::info!("Redis Cluster slots moved; topics resubscribed");
                        resumed.send_modify(|n| *n += 1);
                    }
                    Err(err) => {
                        tracing::warn!(%err, "resubscribe after a slot move failed");
                        known = Vec::new();
                    }
                }
            }
        });
    }

    /// What the scripts publish with.
    pub(super) fn publish_command(&self) -> &'static str {
        if self.sharded { "SPUBLISH" } else { "PUBLISH" }
    }

    /// The history bounds as the log scripts take them.
    fn max_len(&self) -> Value {
        Value::Integer(self.policy.max_len as i64)
    }

    fn max_age_micros(&self) -> Value {
        Value::Integer(self.policy.max_age.as_micros() as i64)
    }
}

#[async_trait]
impl Broadcast for RedisBroadcast {
    async fn publish(&self, topic: &str, payload: Bytes) -> Result<u64, BroadcastError> {
        let id: Value = self
            .publish
            .evalsha_with_reload(
                &self.client,
                keys::log(topic),
                vec![
                    Value::from(keys::channel(topic)),
                    Value::Bytes(payload),
                    self.max_len(),
                    self.max_age_micros(),
                    Value::from(self.publish_command()),
                ],
            )
            .await
            .map_err(unavailable)?;
        let id = wire::parse_id(&id)?;
        crate::redis::wait_for_replicas(&self.client, &self.settings, topic)
            .await
            .map_err(BroadcastError::Unavailable)?;
        Ok(id)
    }

    async fn subscribe(&self, topic: &str) -> Result<(), BroadcastError> {
        let mut refs = self.refs.lock().await;
        let count = refs.get(topic).copied().unwrap_or(0);
        if count == 0 {
            let channel = keys::channel(topic);
            let subscribed = if self.sharded {
                self.subscriber.ssubscribe(channel).await
            } else {
                self.subscriber.subscribe(channel).await
            };
            subscribed.map_err(unavailable)?;
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
                let channel = keys::channel(topic);
                let unsubscribed = if self.sharded {
                    self.subscriber.sunsubscribe(channel).await
                } else {
                    self.subscriber.unsubscribe(channel).await
                };
                if let Err(err) = unsubscribed {
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
                keys::log(topic),
                vec![
                    Value::from(mode),
                    value,
                    self.max_age_micros(),
                    self.max_len(),
                ],
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
