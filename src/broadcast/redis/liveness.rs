//! Which replica instances are alive: their heartbeat key exists. An
//! instance found alive is believed so for [`ALIVE_CACHE`] without asking
//! Redis again, so listing a busy room's presence costs no lookups.

use super::keys;
use fred::prelude::*;
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

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
}
