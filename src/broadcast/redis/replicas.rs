//! What each replica reports of itself (its sockets, whether it drains),
//! in one hash beside the heartbeats: rebalancing and the operator's page
//! read every live replica's report with one command, on a cluster too.
//!
//! A report is stamped with its writer's clock; one older than the
//! presence TTL (the caller's `fresh_for`) is a dead replica's and is
//! dropped by the next reader. A skewed clock makes a replica look dead
//! (or alive) for the skew.

use super::keys;
use crate::broadcast::{BroadcastError, unix_ms};
use bytes::Bytes;
use fred::prelude::*;
use std::time::Duration;

pub(super) async fn report(
    client: &Client,
    instance: &str,
    state: Bytes,
) -> Result<(), BroadcastError> {
    let mut value = format!("{}\n", unix_ms()).into_bytes();
    value.extend_from_slice(&state);
    let _: () = client
        .hset(keys::REPLICAS, (instance, Value::Bytes(value.into())))
        .await
        .map_err(super::unavailable)?;
    Ok(())
}

pub(super) async fn list(
    client: &Client,
    fresh_for: Duration,
) -> Result<Vec<Bytes>, BroadcastError> {
    let all: std::collections::HashMap<String, Bytes> = client
        .hgetall(keys::REPLICAS)
        .await
        .map_err(super::unavailable)?;
    let fresh_after = unix_ms().saturating_sub(fresh_for.as_millis() as u64);
    let mut live = Vec::new();
    let mut dead = Vec::new();
    for (instance, value) in all {
        match split(&value) {
            Some((at, state)) if at >= fresh_after => live.push(state),
            _ => dead.push(instance),
        }
    }
    if !dead.is_empty() {
        let _: Result<i64, Error> = client.hdel(keys::REPLICAS, dead).await;
    }
    Ok(live)
}

/// `<unix ms>\n<report>`.
fn split(value: &Bytes) -> Option<(u64, Bytes)> {
    let nl = value.iter().position(|&b| b == b'\n')?;
    let at = std::str::from_utf8(&value[..nl]).ok()?.parse().ok()?;
    Some((at, value.slice(nl + 1..)))
}
