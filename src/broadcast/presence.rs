//! This process's own presence entries: topic to member to info. The
//! in-process broadcast answers from it; the Redis one keeps it to put its
//! members back after Redis lost them.

use bytes::Bytes;
use std::collections::HashMap;
use std::sync::Mutex;

#[derive(Default)]
pub struct PresenceMap {
    /// A std mutex: every use is a map update, never awaited.
    topics: Mutex<HashMap<String, HashMap<String, Bytes>>>,
}

impl PresenceMap {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, HashMap<String, Bytes>>> {
        self.topics.lock().expect("presence lock poisoned")
    }

    /// True if the member was not there yet.
    pub fn add(&self, topic: &str, member: &str, info: Bytes) -> bool {
        let mut topics = self.lock();
        let members = topics.entry(topic.to_owned()).or_default();
        members.insert(member.to_owned(), info).is_none()
    }

    /// The member's info, if it was there.
    pub fn remove(&self, topic: &str, member: &str) -> Option<Bytes> {
        let mut topics = self.lock();
        let members = topics.get_mut(topic)?;
        let info = members.remove(member);
        if members.is_empty() {
            topics.remove(topic);
        }
        info
    }

    pub fn infos(&self, topic: &str) -> Vec<Bytes> {
        self.lock()
            .get(topic)
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }

    /// The members of one topic.
    pub fn members(&self, topic: &str) -> Vec<String> {
        self.lock()
            .get(topic)
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
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
                    .map(|(m, i)| (topic.clone(), m.clone(), i.clone()))
            })
            .collect()
    }
}
