//! Keeping the subscriber's subscriptions where Redis delivers them: one
//! topic at a time (sharded on a cluster), all again after a reconnect,
//! and, on a cluster, again whenever slots move to another primary.
//! Each time all are made again, `resumed` is bumped so that rooms read
//! back from the log what was published meanwhile.

use crate::broadcast::{Deliver, Envelope};
use fred::clients::SubscriberClient;
use fred::prelude::*;
use fred::util::redis_keyslot;
use std::collections::HashMap;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::watch;

pub async fn subscribe(
    subscriber: &SubscriberClient,
    sharded: bool,
    channel: String,
) -> Result<(), Error> {
    if sharded {
        subscriber.ssubscribe(channel).await
    } else {
        subscriber.subscribe(channel).await?;
        // A barrier: Redis answers commands of one connection in order, so
        // once this PING is answered the SUBSCRIBE has been processed and
        // a publish made from now on (a presence event, which no log
        // keeps) reaches this replica.
        subscriber.ping::<Value>(None).await.map(drop)
    }
}

pub async fn unsubscribe(
    subscriber: &SubscriberClient,
    sharded: bool,
    channel: String,
) -> Result<(), Error> {
    if sharded {
        subscriber.sunsubscribe(channel).await
    } else {
        subscriber.unsubscribe(channel).await
    }
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

/// What making every subscription again needs.
#[derive(Clone)]
pub struct Renewal {
    pub subscriber: SubscriberClient,
    pub sharded: bool,
    pub resumed: watch::Sender<u64>,
    pub deliver: Deliver,
}

impl Renewal {
    /// Announces the gap, subscribes everything again and announces that;
    /// false if that failed. The gap goes first: a subscription made again
    /// delivers at once, and what it delivers must not pass for the
    /// continuation of what came before.
    async fn renew(&self, why: &str) -> bool {
        (self.deliver)(Envelope::interrupted());
        match resubscribe(&self.subscriber, self.sharded).await {
            Ok(()) => {
                tracing::info!("{why}; topics resubscribed");
                self.resumed.send_modify(|n| *n += 1);
                true
            }
            Err(err) => {
                tracing::warn!(%err, after = why, "resubscribe failed");
                false
            }
        }
    }
}

/// First wait before a failed renewal is tried again; it doubles up to
/// [`RENEW_RETRY_MAX`].
const RENEW_RETRY_FIRST: Duration = Duration::from_millis(100);
const RENEW_RETRY_MAX: Duration = Duration::from_secs(2);

/// After every reconnect of the subscriber: resubscribe, then announce. A
/// renewal that fails (the connection dropped again during a failover,
/// the node refused) is tried again until it holds: until then this
/// replica hears nothing, and its rooms hold what they get from the gap
/// on, so giving up until some later reconnect would leave them silent.
pub fn spawn_resubscriber(renewal: Renewal, stop: tokio_util::sync::CancellationToken) {
    let mut reconnects = renewal.subscriber.reconnect_rx();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                next = reconnects.recv() => match next {
                    Ok(_) | Err(RecvError::Lagged(_)) => {}
                    Err(RecvError::Closed) => break,
                },
                () = stop.cancelled() => break,
            }
            let mut delay = RENEW_RETRY_FIRST;
            while !renewal.renew("Redis connection restored").await {
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = stop.cancelled() => return,
                }
                delay = (delay * 2).min(RENEW_RETRY_MAX);
            }
        }
    });
}

/// On a cluster, a slot that moves to another primary (resharding, or a
/// failover whose old primary lives on) is unsubscribed by Redis without
/// the connection dropping, so no reconnect announces it. The subscriber's
/// slot table is refreshed every few seconds; when it has changed, every
/// topic is subscribed again where it now lives.
pub fn spawn_topology_watch(renewal: Renewal, stop: tokio_util::sync::CancellationToken) {
    tokio::spawn(async move {
        let subscriber = &renewal.subscriber;
        let mut ticks = tokio::time::interval(TOPOLOGY_CHECK);
        let mut known = slot_table(subscriber);
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                () = stop.cancelled() => break,
            }
            if subscriber.sync_cluster().await.is_err() {
                continue;
            }
            let now = slot_table(subscriber);
            if now == known {
                continue;
            }
            // A failed renewal is tried again at the next tick.
            known = if renewal.renew("Redis Cluster slots moved").await {
                now
            } else {
                Vec::new()
            };
        }
    });
}
