//! This process's own presence entries: topic to member to info. The
//! in-process broadcast answers from it; the Redis one keeps it to put its
//! members back after Redis lost them.
//!
//! One member (a user) may be in a room through several sessions of this
//! process (two tabs; a Socket.IO session recovered here before its old
//! one timed out): the entry stays until the last of them leaves.

use super::{Change, PresenceWatch};
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

/// Where a presence tells its changes, once set.
#[derive(Default)]
pub struct Watcher(OnceLock<PresenceWatch>);

impl Watcher {
    /// Only the first watch is kept: a process has one.
    pub fn set(&self, watch: PresenceWatch) {
        let _ = self.0.set(watch);
    }

    pub fn tell(&self, topic: &str, info: &Bytes, change: Change) {
        if let Some(watch) = self.0.get() {
            watch(topic, info, change);
        }
    }
}

#[derive(Default)]
pub struct PresenceMap {
    /// A std mutex: every use is a map update, never awaited.
    topics: Mutex<HashMap<String, HashMap<String, Entry>>>,
}

struct Entry {
    info: Bytes,
    /// Sessions of this process holding the member in the topic.
    sessions: usize,
}

/// What a removal did.
#[derive(Debug, PartialEq, Eq)]
pub enum Removed {
    /// The member's last session left: its info.
    Gone(Bytes),
    /// Another session of this process still holds the member.
    StillHeld,
    /// The member was not here.
    Unknown,
}

impl PresenceMap {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, HashMap<String, Entry>>> {
        self.topics.lock().expect("presence lock poisoned")
    }

    /// True if the member was not there yet.
    pub fn add(&self, topic: &str, member: &str, info: Bytes) -> bool {
        let mut topics = self.lock();
        let members = topics.entry(topic.to_owned()).or_default();
        match members.get_mut(member) {
            Some(entry) => {
                entry.info = info;
                entry.sessions += 1;
                false
            }
            None => {
                members.insert(member.to_owned(), Entry { info, sessions: 1 });
                true
            }
        }
    }

    /// One session of the member leaves the topic.
    pub fn remove(&self, topic: &str, member: &str) -> Removed {
        let mut topics = self.lock();
        let Some(members) = topics.get_mut(topic) else {
            return Removed::Unknown;
        };
        let Some(entry) = members.get_mut(member) else {
            return Removed::Unknown;
        };
        if entry.sessions > 1 {
            entry.sessions -= 1;
            return Removed::StillHeld;
        }
        let info = members.remove(member).expect("found above").info;
        if members.is_empty() {
            topics.remove(topic);
        }
        Removed::Gone(info)
    }

    /// Whether a session of this process holds the member in the topic.
    pub fn holds(&self, topic: &str, member: &str) -> bool {
        self.lock()
            .get(topic)
            .is_some_and(|m| m.contains_key(member))
    }

    pub fn infos(&self, topic: &str) -> Vec<Bytes> {
        self.lock()
            .get(topic)
            .map(|m| m.values().map(|e| e.info.clone()).collect())
            .unwrap_or_default()
    }

    /// The members of one topic, sorted: two lists compare equal when the
    /// members are.
    pub fn members(&self, topic: &str) -> Vec<String> {
        let mut members: Vec<String> = self
            .lock()
            .get(topic)
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        members.sort_unstable();
        members
    }

    pub fn topics(&self) -> Vec<String> {
        self.lock().keys().cloned().collect()
    }

    /// Every (topic, member, info).
    pub fn entries(&self) -> Vec<(String, String, Bytes)> {
        let topics = self.lock();
        topics
            .iter()
            .flat_map(|(topic, members)| {
                members
                    .iter()
                    .map(|(m, e)| (topic.clone(), m.clone(), e.info.clone()))
            })
            .collect()
    }
}
