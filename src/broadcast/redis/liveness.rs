//! Which replica instances are alive: their heartbeat key exists. An
//! instance found alive is believed so for [`ALIVE_CACHE`] without asking
//! Redis again, so listing a busy room's presence costs no lookups; and
//! which died lately, found from the time each stamps beside its heartbeat.

use super::keys;
use fred::prelude::*;
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

/// Instances stamped longer ago than this are forgotten from the set.
const FORGET_AFTER: Duration = Duration::from_secs(3600);

/// Far below the presence TTL, which a death takes anyway to show.
const ALIVE_CACHE: Duration = Duration::from_secs(1);

pub(super) struct Liveness {
    /// Instances found alive, and when. A std mutex: never held across an
    /// await.
    alive: std::sync::Mutex<HashMap<String, Instant>>,
    /// How long a heartbeat key lives: an entry older is of no use.
    ttl: Duration,
}

impl Liveness {
    pub(super) fn new(ttl: Duration) -> Self {
        Self {
            alive: std::sync::Mutex::default(),
            ttl,
        }
    }

    /// Which of these other instances are dead: their heartbeat key is gone.
    /// One that cannot be checked counts as alive.
    pub(super) async fn dead_among(
        &self,
        client: &Client,
        me: &str,
        instances: HashSet<&str>,
    ) -> Vec<String> {
        let now = Instant::now();
        let unknown: Vec<&str> = {
            let alive = self.alive.lock().unwrap_or_else(|e| e.into_inner());
            instances
                .into_iter()
                .filter(|i| *i != me)
                .filter(|i| alive.get(*i).is_none_or(|at| now - *at > ALIVE_CACHE))
                .collect()
        };
        let checks = unknown.iter().map(|instance| async move {
            let exists: Result<bool, Error> = client.exists(keys::alive(instance)).await;
            (*instance, exists.unwrap_or(true))
        });
        let checked = futures_util::future::join_all(checks).await;
        let mut alive = self.alive.lock().unwrap_or_else(|e| e.into_inner());
        alive.retain(|_, at| now - *at <= self.ttl);
        let mut dead = Vec::new();
        for (instance, exists) in checked {
            if exists {
                alive.insert(instance.to_owned(), now);
            } else {
                dead.push(instance.to_owned());
            }
        }
        dead
    }

    /// Looks for instances that stopped stamping for longer than a
    /// heartbeat lives: true if one whose heartbeat key is gone too was not
    /// known dead yet (`dead` remembers those).
    pub(super) async fn newly_dead(
        &self,
        client: &Client,
        me: &str,
        dead: &mut HashSet<String>,
    ) -> bool {
        let stale_before = unix_ms(self.ttl.as_millis() as u64) as f64;
        let stale: Result<Vec<String>, Error> = client
            .zrangebyscore(keys::INSTANCES, "-inf", stale_before, false, None)
            .await;
        let Ok(stale) = stale else { return false };
        // One that stamps again (it was cut off, not dead) may die later: it
        // is found again then.
        dead.retain(|instance| stale.contains(instance));
        let mut found = false;
        for instance in stale {
            if instance == me || dead.contains(&instance) {
                continue;
            }
            let alive: Result<bool, Error> = client.exists(keys::alive(&instance)).await;
            if alive == Ok(false) {
                dead.insert(instance);
                found = true;
            }
        }
        let forget_before = unix_ms(FORGET_AFTER.as_millis() as u64) as f64;
        let _: Result<i64, Error> = client
            .zremrangebyscore(keys::INSTANCES, "-inf", forget_before)
            .await;
        found
    }
}

/// Unix time in ms, `ago` ms in the past. Replicas' clocks only preselect
/// candidates here; whether one is dead is its heartbeat key's TTL in
/// Redis, so a skewed clock delays a sweep by the skew, never fakes one.
fn unix_ms(ago: u64) -> u64 {
    crate::broadcast::unix_ms().saturating_sub(ago)
}
