//! In-process broadcast for a standalone server: the log lives in memory and
//! every publish is delivered straight to this process.

use super::presence::{PresenceMap, Removed, Watcher};
use super::{
    Broadcast, BroadcastError, Change, Deliver, Envelope, From, Histories, Kind, LeaveReason,
    Presence, PresenceWatch, Replay, now_micros,
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
    histories: Histories,
    deliver: Deliver,
    /// A std mutex: nothing is awaited while it is held, and holding it
    /// across delivery is what keeps delivery order equal to id order.
    topics: Mutex<HashMap<Arc<str>, Log>>,
    /// Topic to member to info. Held across delivery for the same reason.
    presence: PresenceMap,
    watcher: Watcher,
    resumed: tokio::sync::watch::Sender<u64>,
    /// The one replica's report of itself.
    report: Mutex<Option<Bytes>>,
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
    pub fn new(histories: impl Into<Histories>, deliver: Deliver) -> Self {
        Self {
            histories: histories.into(),
            deliver,
            topics: Mutex::new(HashMap::new()),
            presence: PresenceMap::default(),
            watcher: Watcher::default(),
            resumed: tokio::sync::watch::Sender::new(0),
            report: Mutex::new(None),
        }
    }

    /// The oldest id a topic's log keeps at `now`.
    fn oldest_kept(&self, topic: &str, now: u64) -> u64 {
        let max_age = self.histories.of(topic).max_age.as_micros() as u64;
        now.saturating_sub(max_age)
    }

    /// Appends and delivers; with a key already used within the history's
    /// age, nothing but that publish's id.
    fn append(&self, topic: &str, key: Option<&str>, payload: Bytes) -> u64 {
        let now = now_micros();
        let oldest_kept = self.oldest_kept(topic, now);
        let max_len = self.histories.of(topic).max_len;
        let mut topics = self.topics.lock().expect("broadcast log lock poisoned");
        if topics.len() > SWEEP_ABOVE_TOPICS {
            topics.retain(|name, log| log.last >= self.oldest_kept(name, now));
        }
        let log = log_of(&mut topics, topic, now);
        if let Some(key) = key {
            if let Some(&id) = log.keys.get(key)
                && id >= oldest_kept
            {
                return id;
            }
            if log.keys.len() >= max_len.max(SWEEP_ABOVE_TOPICS) {
                log.keys.retain(|_, id| *id >= oldest_kept);
            }
        }
        let id = now.max(log.last + 1);
        log.last = id;
        log.entries.push_back((id, payload.clone()));
        log.trim(max_len, oldest_kept);
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
        let oldest_kept = self.oldest_kept(topic, now);
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
        log.trim(self.histories.of(topic).max_len, oldest_kept);
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
            self.watcher.tell(topic, &info, Change::Joined);
            (self.deliver)(Envelope {
                topic: Arc::from(topic),
                kind: Kind::Joined,
                payload: info,
            });
        }
        Ok(())
    }

    async fn presence_remove(
        &self,
        topic: &str,
        member: &str,
        reason: LeaveReason,
    ) -> Result<(), BroadcastError> {
        if let Removed::Gone(info) = self.presence.remove(topic, member) {
            self.watcher.tell(topic, &info, Change::Left(reason));
            (self.deliver)(Envelope {
                topic: Arc::from(topic),
                kind: Kind::Left,
                payload: info,
            });
        }
        Ok(())
    }

    fn set_watch(&self, watch: PresenceWatch) {
        self.watcher.set(watch);
    }

    async fn presence(&self, topic: &str) -> Result<Vec<Bytes>, BroadcastError> {
        Ok(self.presence.infos(topic))
    }

    async fn report(&self, state: Bytes) -> Result<(), BroadcastError> {
        *self.report.lock().expect("report lock poisoned") = Some(state);
        Ok(())
    }

    async fn replicas(&self) -> Result<Vec<Bytes>, BroadcastError> {
        Ok(self
            .report
            .lock()
            .expect("report lock poisoned")
            .iter()
            .cloned()
            .collect())
    }
}

#[cfg(test)]
mod tests;
