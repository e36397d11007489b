//! In-process broadcast for a standalone server: the log lives in memory and
//! every publish is delivered straight to this process.

use super::presence::PresenceMap;
use super::{
    Broadcast, BroadcastError, Deliver, Envelope, From, HistoryPolicy, Kind, Presence, Replay,
    now_micros,
};
use async_trait::async_trait;
use bytes::Bytes;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

/// Topics whose newest entry is older than the history age are dropped on
/// the next publish once there are more than this many, so memory follows
/// the number of active topics, not every topic ever used.
const SWEEP_ABOVE_TOPICS: usize = 1024;

pub struct MemoryBroadcast {
    policy: HistoryPolicy,
    deliver: Deliver,
    /// A std mutex: nothing is awaited while it is held, and holding it
    /// across delivery is what keeps delivery order equal to id order.
    topics: Mutex<HashMap<Arc<str>, Log>>,
    /// Topic to member to info. Held across delivery for the same reason.
    presence: PresenceMap,
    resumed: tokio::sync::watch::Sender<u64>,
}

struct Log {
    /// The map's key again, so a delivery shares it instead of allocating.
    name: Arc<str>,
    /// First id of this log: a `since` below it is from before it existed.
    start: u64,
    last: u64,
    /// Highest id trimmed away; a `since` below it has lost messages.
    max_trimmed: u64,
    entries: VecDeque<(u64, Bytes)>,
    /// Idempotency key to the id it was published with, for as long as
    /// the history's age; swept by age when it outgrows the log.
    keys: HashMap<Box<str>, u64>,
}

impl MemoryBroadcast {
    pub fn new(policy: HistoryPolicy, deliver: Deliver) -> Self {
        Self {
            policy,
            deliver,
            topics: Mutex::new(HashMap::new()),
            presence: PresenceMap::default(),
            resumed: tokio::sync::watch::Sender::new(0),
        }
    }

    fn max_age_micros(&self) -> u64 {
        self.policy.max_age.as_micros() as u64
    }

    /// Appends and delivers; with a key already used within the history's
    /// age, nothing but that publish's id.
    fn append(&self, topic: &str, key: Option<&str>, payload: Bytes) -> u64 {
        let now = now_micros();
        let oldest_kept = now.saturating_sub(self.max_age_micros());
        let mut topics = self.topics.lock().expect("broadcast log lock poisoned");
        if topics.len() > SWEEP_ABOVE_TOPICS {
            topics.retain(|_, log| log.last >= oldest_kept);
        }
        let log = log_of(&mut topics, topic, now);
        if let Some(key) = key {
            if let Some(&id) = log.keys.get(key)
                && id >= oldest_kept
            {
                return id;
            }
            if log.keys.len() >= self.policy.max_len.max(SWEEP_ABOVE_TOPICS) {
                log.keys.retain(|_, id| *id >= oldest_kept);
            }
        }
        let id = now.max(log.last + 1);
        log.last = id;
        log.entries.push_back((id, payload.clone()));
        log.trim(self.policy.max_len, oldest_kept);
        if let Some(key) = key {
            log.keys.insert(key.into(), id);
        }
        (self.deliver)(Envelope {
            topic: log.name.clone(),
            kind: Kind::Message { id },
            payload,
        });
        id
    }
}

impl Log {
    /// An empty log at `now`: its first id will be above it.
    fn new(name: Arc<str>, now: u64) -> Self {
        Self {
            name,
            start: now,
            last: now,
            max_trimmed: 0,
            entries: VecDeque::new(),
            keys: HashMap::new(),
        }
    }

    fn trim(&mut self, max_len: usize, oldest_kept: u64) {
        while let Some(&(id, _)) = self.entries.front() {
            if self.entries.len() > max_len || id < oldest_kept {
                self.max_trimmed = id;
                self.entries.pop_front();
            } else {
                break;
            }
        }
    }
}

#[async_trait]
impl Broadcast for MemoryBroadcast {
    async fn publish(&self, topic: &str, payload: Bytes) -> Result<u64, BroadcastError> {
        Ok(self.append(topic, None, payload))
    }

    async fn publish_once(
        &self,
        topic: &str,
        key: &str,
        payload: Bytes,
    ) -> Result<u64, BroadcastError> {
        Ok(self.append(topic, Some(key), payload))
    }

    async fn subscribe(&self, _topic: &str) -> Result<(), BroadcastError> {
        Ok(())
    }

    async fn unsubscribe(&self, _topic: &str) {}

    async fn replay(&self, topic: &str, from: From) -> Result<Replay, BroadcastError> {
        let now = now_micros();
        let oldest_kept = now.saturating_sub(self.max_age_micros());
        let mut topics = self.topics.lock().expect("broadcast log lock poisoned");
        if !topics.contains_key(topic) {
            log_of(&mut topics, topic, now);
            // Whatever `since` points into is gone (or never was here).
            return Ok(Replay {
                recovered: !matches!(from, From::Since(_)),
                position: now,
                messages: Vec::new(),
            });
        }
        let log = topics.get_mut(topic).expect("checked above");
        log.trim(self.policy.max_len, oldest_kept);
        let position = log.last;
        let messages = match from {
            From::Position => Vec::new(),
            From::Last(n) => log
                .entries
                .iter()
                .skip(log.entries.len().saturating_sub(n))
                .cloned()
                .collect(),
            From::Since(since) => {
                if since < log.start || since > log.last || since < log.max_trimmed {
                    return Ok(Replay {
                        recovered: false,
                        position,
                        messages: Vec::new(),
                    });
                }
                log.entries
                    .iter()
                    .filter(|(id, _)| *id > since)
                    .cloned()
                    .collect()
            }
        };
        Ok(Replay {
            recovered: true,
            position,
            messages,
        })
    }

    fn is_ready(&self) -> bool {
        true
    }

    fn resumed(&self) -> tokio::sync::watch::Receiver<u64> {
        self.resumed.subscribe()
    }
}

/// The topic's log, created empty at `now` when missing.
fn log_of<'a>(topics: &'a mut HashMap<Arc<str>, Log>, topic: &str, now: u64) -> &'a mut Log {
    if !topics.contains_key(topic) {
        let name: Arc<str> = Arc::from(topic);
        topics.insert(name.clone(), Log::new(name, now));
    }
    topics.get_mut(topic).expect("inserted above")
}

#[async_trait]
impl Presence for MemoryBroadcast {
    async fn presence_add(
        &self,
        topic: &str,
        member: &str,
        info: Bytes,
    ) -> Result<(), BroadcastError> {
        if self.presence.add(topic, member, info.clone()) {
            (self.deliver)(Envelope {
                topic: Arc::from(topic),
                kind: Kind::Joined,
                payload: info,
            });
        }
        Ok(())
    }

    async fn presence_remove(&self, topic: &str, member: &str) -> Result<(), BroadcastError> {
        if let Some(info) = self.presence.remove(topic, member) {
            (self.deliver)(Envelope {
                topic: Arc::from(topic),
                kind: Kind::Left,
                payload: info,
            });
        }
        Ok(())
    }

    async fn presence(&self, topic: &str) -> Result<Vec<Bytes>, BroadcastError> {
        Ok(self.presence.infos(topic))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn broadcast(max_len: usize) -> (MemoryBroadcast, Arc<Mutex<Vec<u64>>>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        let policy = HistoryPolicy {
            max_len,
            max_age: Duration::from_secs(3600),
        };
        let deliver: Deliver = Arc::new(move |env: Envelope| {
            if let Kind::Message { id } = env.kind {
                sink.lock().unwrap().push(id)
            }
        });
        (MemoryBroadcast::new(policy, deliver), seen)
    }

    #[tokio::test]
    async fn ids_increase_and_replay_after_since() {
        let (b, seen) = broadcast(10);
        let mut ids = Vec::new();
        for i in 0..5 {
            ids.push(b.publish("t", Bytes::from(format!("{i}"))).await.unwrap());
        }
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(*seen.lock().unwrap(), ids);
        let r = b.replay("t", From::Since(ids[1])).await.unwrap();
        assert!(r.recovered);
        assert_eq!(r.messages.iter().map(|m| m.0).collect::<Vec<_>>(), ids[2..]);
        assert_eq!(r.position, ids[4]);
    }

    #[tokio::test]
    async fn a_key_publishes_once_per_topic() {
        let (b, seen) = broadcast(10);
        let first = b.publish_once("t", "k", Bytes::from("a")).await.unwrap();
        let again = b.publish_once("t", "k", Bytes::from("b")).await.unwrap();
        let other = b.publish_once("u", "k", Bytes::from("c")).await.unwrap();
        assert_eq!(first, again);
        assert_ne!(first, other);
        assert_eq!(*seen.lock().unwrap(), [first, other]);
        let r = b.replay("t", From::Last(10)).await.unwrap();
        assert_eq!(r.messages, [(first, Bytes::from("a"))]);
    }

    #[tokio::test]
    async fn trimmed_or_foreign_since_is_not_recovered() {
        let (b, _) = broadcast(2);
        let ids: Vec<u64> =
            futures_util::future::join_all((0..4).map(|_| b.publish("t", Bytes::new())))
                .await
                .into_iter()
                .map(Result::unwrap)
                .collect();
        assert!(!b.replay("t", From::Since(ids[0])).await.unwrap().recovered);
        assert!(b.replay("t", From::Since(ids[1])).await.unwrap().recovered);
        assert!(
            !b.replay("t", From::Since(1)).await.unwrap().recovered,
            "since before the log started"
        );
        assert!(
            !b.replay("t", From::Since(ids[3] + 1))
                .await
                .unwrap()
                .recovered,
            "since from the future"
        );
        assert!(
            !b.replay("other", From::Since(ids[3]))
                .await
                .unwrap()
                .recovered
        );
    }
}

#[cfg(test)]
mod position_tests {
    use super::*;
    use std::time::Duration;

    /// Gap found by a churn run: a member of an empty room had nothing to
    /// resume from, and `since: "0"` was answered "not recovered".
    #[tokio::test]
    async fn an_empty_topic_has_a_position_to_resume_from() {
        let b = MemoryBroadcast::new(
            HistoryPolicy {
                max_len: 10,
                max_age: Duration::from_secs(60),
            },
            Arc::new(|_| {}),
        );
        let joined = b.replay("t", From::Position).await.unwrap();
        assert!(joined.recovered);
        assert!(joined.position > 0, "an empty topic still has a position");
        let first = b.publish("t", Bytes::from("a")).await.unwrap();
        let second = b.publish("t", Bytes::from("b")).await.unwrap();
        assert!(first > joined.position);
        let resumed = b.replay("t", From::Since(joined.position)).await.unwrap();
        assert!(resumed.recovered, "nothing was lost since the join");
        assert_eq!(
            resumed.messages.iter().map(|m| m.0).collect::<Vec<_>>(),
            [first, second]
        );
        assert_eq!(resumed.position, second);

        // A `since` into a topic this backend never had is not recovered,
        // and still hands out a position for the next resume.
        let lost = b.replay("u", From::Since(joined.position)).await.unwrap();
        assert!(!lost.recovered);
        let again = b.replay("u", From::Since(lost.position)).await.unwrap();
        assert!(again.recovered && again.messages.is_empty());
    }
}

#[cfg(test)]
mod presence_tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn presence_announces_changes_once() {
        let events = Arc::new(Mutex::new(Vec::new()));
        let sink = events.clone();
        let deliver: Deliver =
            Arc::new(move |env: Envelope| sink.lock().unwrap().push((env.kind, env.payload)));
        let b = MemoryBroadcast::new(
            HistoryPolicy {
                max_len: 10,
                max_age: Duration::from_secs(60),
            },
            deliver,
        );
        b.presence_add("t", "u1", Bytes::from("a")).await.unwrap();
        b.presence_add("t", "u1", Bytes::from("a")).await.unwrap();
        b.presence_add("t", "u2", Bytes::from("b")).await.unwrap();
        let mut present = b.presence("t").await.unwrap();
        present.sort();
        assert_eq!(present, [Bytes::from("a"), Bytes::from("b")]);
        b.presence_remove("t", "u1").await.unwrap();
        b.presence_remove("t", "u1").await.unwrap();
        let kinds: Vec<Kind> = events.lock().unwrap().iter().map(|e| e.0).collect();
        assert_eq!(kinds, [Kind::Joined, Kind::Joined, Kind::Left]);
        assert_eq!(b.presence("t").await.unwrap(), [Bytes::from("b")]);
    }

    #[tokio::test]
    async fn last_n_replays_the_newest() {
        let deliver: Deliver = Arc::new(|_| {});
        let b = MemoryBroadcast::new(
            HistoryPolicy {
                max_len: 10,
                max_age: Duration::from_secs(60),
            },
            deliver,
        );
        for i in 0..5 {
            b.publish("t", Bytes::from(format!("{i}"))).await.unwrap();
        }
        let r = b.replay("t", From::Last(2)).await.unwrap();
        assert_eq!(
            r.messages.iter().map(|m| m.1.clone()).collect::<Vec<_>>(),
            [Bytes::from("3"), Bytes::from("4")]
        );
    }
}
