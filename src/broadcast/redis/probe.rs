//! Readiness means a command works: a short-lived key written every second
//! to every primary, whose outcome `is_ready` reports.

use super::keys;
use fred::prelude::*;
use fred::util::redis_keyslot;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// How often readiness is checked with a real write.
const PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// One write with a short life, the kind every publish makes, to every
/// shard: on a cluster each primary gets its own probe key, since one
/// shard down fails every room it owns.
pub async fn probe(client: &Client) -> bool {
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

pub fn spawn_prober(
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
