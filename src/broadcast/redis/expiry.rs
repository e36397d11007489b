//! Which publishes set their log's expiry. Setting it on every message (a
//! PEXPIRE in the publish script) was about a tenth of the script's time
//! in Redis where messages are grouped, for a deadline that moves by
//! microseconds. A replica now sets it with its first message to a topic,
//! and again once half the history's age has passed since a call that set
//! it was sent. The expiry is 1.5 ages, so whoever posted a log's last
//! message had set it at most half an age before: the log lives at least
//! one age after its last message and at most one and a half, as the
//! README says.
//!
//! Only an answered call counts: one that failed or timed out may not
//! have run, and the next message sets the expiry again. A log Redis lost
//! is made again by the script with its expiry (publish.lua), and after a
//! reconnect, maybe to a promoted replica that never got the last
//! refresh, every topic sets it again.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Topics remembered at most: forgetting one only costs its next message
/// a refresh, so the map is emptied of what is due, or at all, when full.
const REMEMBERED: usize = 4096;

#[derive(Default)]
pub(super) struct Expiries {
    /// Per topic, until when its log's expiry needs no refresh.
    fresh_until: Mutex<HashMap<String, Instant>>,
}

impl Expiries {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Instant>> {
        self.fresh_until.lock().expect("expiry lock poisoned")
    }

    /// For each of a group's topics, in order, whether its message sets
    /// the expiry: when due, and only the first of a topic in the group
    /// (the rest follow it in the same script call).
    pub fn due<'a>(&self, topics: impl Iterator<Item = &'a str>, now: Instant) -> Vec<bool> {
        let map = self.map();
        let mut flagged: Vec<&str> = Vec::new();
        topics
            .map(|topic| {
                let due = map.get(topic).is_none_or(|until| now >= *until);
                let first = due && !flagged.contains(&topic);
                if first {
                    flagged.push(topic);
                }
                first
            })
            .collect()
    }

    /// A call sent at `sent` set the expiry of `topic`, whose history is
    /// `max_age` long.
    pub fn refreshed(&self, topic: &str, sent: Instant, max_age: Duration) {
        let mut map = self.map();
        if map.len() >= REMEMBERED && !map.contains_key(topic) {
            map.retain(|_, until| *until > sent);
            if map.len() >= REMEMBERED {
                map.clear();
            }
        }
        map.insert(topic.to_owned(), sent + max_age / 2);
    }

    /// After a reconnect: every topic sets its expiry again.
    pub fn forget_all(&self) {
        self.map().clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AGE: Duration = Duration::from_secs(60);

    #[test]
    fn due_first_then_after_half_an_age() {
        let expiries = Expiries::default();
        let t0 = Instant::now();
        assert_eq!(
            expiries.due(["a", "b", "a"].into_iter(), t0),
            [true, true, false]
        );
        expiries.refreshed("a", t0, AGE);
        assert_eq!(
            expiries.due(["a", "b"].into_iter(), t0 + AGE / 4),
            [false, true]
        );
        assert_eq!(expiries.due(["a"].into_iter(), t0 + AGE / 2), [true]);
        expiries.forget_all();
        assert_eq!(expiries.due(["a"].into_iter(), t0), [true]);
    }

    #[test]
    fn a_full_map_drops_what_is_due_then_everything() {
        let expiries = Expiries::default();
        let t0 = Instant::now();
        for i in 0..REMEMBERED {
            expiries.refreshed(&i.to_string(), t0, AGE);
        }
        // All still fresh: emptied to make room.
        expiries.refreshed("new", t0, AGE);
        assert_eq!(expiries.map().len(), 1);
        for i in 0..REMEMBERED - 1 {
            expiries.refreshed(&i.to_string(), t0, AGE);
        }
        // Half an age later all of those are due: only they go.
        expiries.refreshed("later", t0 + AGE, AGE);
        assert_eq!(
            expiries.due(["new", "later"].into_iter(), t0 + AGE),
            [true, false]
        );
        assert_eq!(expiries.map().len(), 1);
    }
}
