//! In-process broadcast for a standalone server: the log lives in memory and
//! every publish is delivered straight to this process.

use super::{Broadcast, BroadcastError, Deliver, Envelope, HistoryPolicy, Replay, now_micros};
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
}

impl MemoryBroadcast {
    pub fn new(policy: HistoryPolicy, deliver: Deliver) -> Self {
        Self {
            policy,
            deliver,
            topics: Mutex::new(HashMap::new()),
            resumed: tokio::sync::watch::Sender::new(0),
        }
    }

    fn max_age_micros(&self) -> u64 {
        self.policy.max_age.as_micros() as u64
    }
}

impl Log {
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
        let now = now_micros();
        let oldest_kept = now.saturating_sub(self.max_age_micros());
        let mut topics = self.topics.lock().expect("broadcast log lock poisoned");
        if topics.len() > SWEEP_ABOVE_TOPICS {
            topics.retain(|_, log| log.last >= oldest_kept);
        }
        if !topics.contains_key(topic) {
            let name: Arc<str> = Arc::from(topic);
            let log = Log {
                name: name.clone(),
                start: now,
                last: 0,
                max_trimmed: 0,
                entries: VecDeque::new(),
            };
            topics.insert(name, log);
        }
        let log = topics.get_mut(topic).expect("inserted above");
        let id = now.max(log.last + 1);
        log.last = id;
        log.entries.push_back((id, payload.clone()));
        log.trim(self.policy.max_len, oldest_kept);
        (self.deliver)(Envelope {
            topic: log.name.clone(),
            id,
            payload,
        });
        Ok(id)
    }

    async fn subscribe(&self, _topic: &str) -> Result<(), BroadcastError> {
        Ok(())
    }

    async fn unsubscribe(&self, _topic: &str) {}

    async fn replay(&self, topic: &str, since: Option<u64>) -> Result<Replay, BroadcastError> {
        let oldest_kept = now_micros().saturating_sub(self.max_age_micros());
        let mut topics = self.topics.lock().expect("broadcast log lock poisoned");
        let Some(log) = topics.get_mut(topic) else {
            return Ok(Replay {
                recovered: since.is_none(),
                ..Replay::default()
            });
        };
        log.trim(self.policy.max_len, oldest_kept);
        let last_id = Some(log.last);
        let Some(since) = since else {
            return Ok(Replay {
                recovered: true,
                last_id,
                messages: Vec::new(),
            });
        };
        if since < log.start || since > log.last || since < log.max_trimmed {
            return Ok(Replay {
                recovered: false,
                last_id,
                messages: Vec::new(),
            });
        }
        let messages = log
            .entries
            .iter()
            .filter(|(id, _)| *id > since)
            .cloned()
            .collect();
        Ok(Replay {
            recovered: true,
            last_id,
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
        let deliver: Deliver = Arc::new(move |env: Envelope| sink.lock().unwrap().push(env.id));
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
        let r = b.replay("t", Some(ids[1])).await.unwrap();
        assert!(r.recovered);
        assert_eq!(r.messages.iter().map(|m| m.0).collect::<Vec<_>>(), ids[2..]);
        assert_eq!(r.last_id, Some(ids[4]));
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
        assert!(!b.replay("t", Some(ids[0])).await.unwrap().recovered);
        assert!(b.replay("t", Some(ids[1])).await.unwrap().recovered);
        assert!(
            !b.replay("t", Some(1)).await.unwrap().recovered,
            "since before the log started"
        );
        assert!(
            !b.replay("t", Some(ids[3] + 1)).await.unwrap().recovered,
            "since from the future"
        );
        assert!(!b.replay("other", Some(ids[3])).await.unwrap().recovered);
    }
}
