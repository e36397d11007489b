//! Broadcast through Redis: each topic's log is a Redis stream plus a small
//! meta hash, written and published by one Lua script so that log order and
//! delivery order agree on every replica.
//!
//! Two connections: one for commands, one dedicated subscriber (a
//! subscribed connection cannot run other commands). Both reconnect by
//! themselves; after the subscriber reconnects it resubscribes every topic
//! and bumps [`Broadcast::resumed`] so callers can read back what was
//! published while it was away (Redis pub/sub does not keep it).

use super::{Broadcast, BroadcastError, Deliver, Envelope, HistoryPolicy, Replay};
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

/// Capacity of fred's pub/sub fan-in channel. The reader task drains it
/// without awaiting anyone, so this only has to absorb scheduling hiccups;
/// an overflow is counted and repaired from the log.
const PUBSUB_CAPACITY: usize = 16 * 1024;

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
        };
        this.spawn_reader(deliver);
        this.spawn_resubscriber();
        Ok(this)
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

    fn history_args(&self) -> (String, String) {
        (
            self.policy.max_len.to_string(),
            self.policy.max_age.as_micros().to_string(),
        )
    }
}

fn parse_message(message: &fred::types::Message) -> Option<Envelope> {
    let topic = message.channel.strip_prefix("rtchat:chan:")?;
    let raw = message.value.clone().into_bytes()?;
    let space = raw.iter().position(|&b| b == b' ')?;
    let id = std::str::from_utf8(&raw[..space]).ok()?.parse().ok()?;
    Some(Envelope {
        topic: Arc::from(topic),
        id,
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
        let (max_len, max_age) = self.history_args();
        let id: Value = self
            .publish
            .evalsha_with_reload(
                &self.client,
                keys(topic),
                vec![
                    Value::from(channel(topic)),
                    Value::Bytes(payload),
                    max_len.into(),
                    max_age.into(),
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

    async fn replay(&self, topic: &str, since: Option<u64>) -> Result<Replay, BroadcastError> {
        let (_, max_age) = self.history_args();
        let since = since.map(|s| s.to_string()).unwrap_or_default();
        let reply: Vec<Value> = self
            .replay
            .evalsha_with_reload(&self.client, keys(topic), vec![since, max_age])
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

    fn is_ready(&self) -> bool {
        self.client.is_connected() && self.subscriber.is_connected()
    }

    fn resumed(&self) -> tokio::sync::watch::Receiver<u64> {
        self.resumed.subscribe()
    }
}
