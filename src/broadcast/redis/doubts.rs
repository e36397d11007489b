//! Which topics' presence in Redis may not match this replica's own
//! entries, so that they are checked once Redis answers again: a leave
//! (or a refused join's undo) that failed, an add that timed out and may
//! still run, or a removal a failover may have lost (presence writes are
//! not waited for).

use super::BroadcastError;
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How far back a removal may be lost with a failed primary: far above
/// the replication lag of a healthy replica.
const REMOVALS_DOUBTED: Duration = Duration::from_secs(10);

#[derive(Default)]
pub(super) struct Doubts {
    unsure: Mutex<HashSet<String>>,
    /// Topics an entry was removed from lately, and when.
    removed_lately: Mutex<HashMap<String, Instant>>,
}

impl Doubts {
    fn unsure(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.unsure.lock().expect("presence lock poisoned")
    }

    /// Remembers that Redis may not match the local entries of `topic`
    /// when `result` failed.
    pub fn unsure_of<T>(
        &self,
        topic: &str,
        result: Result<T, BroadcastError>,
    ) -> Result<T, BroadcastError> {
        if result.is_err() {
            self.doubt(topic);
        }
        result
    }

    /// Remembers that Redis may not match the local entries of `topic`.
    pub fn doubt(&self, topic: &str) {
        self.unsure().insert(topic.to_owned());
    }

    pub fn any(&self) -> bool {
        !self.unsure().is_empty()
    }

    pub fn topics(&self) -> Vec<String> {
        self.unsure().iter().cloned().collect()
    }

    /// The topic was checked.
    pub fn settled(&self, topic: &str) {
        self.unsure().remove(topic);
    }

    pub fn note_removal(&self, topic: &str) {
        let mut lately = self.removed_lately.lock().expect("presence lock poisoned");
        if lately.len() >= 64 {
            lately.retain(|_, at| at.elapsed() < REMOVALS_DOUBTED);
        }
        lately.insert(topic.to_owned(), Instant::now());
    }

    /// After a reconnect: the topics removed from lately are checked again.
    pub fn doubt_recent_removals(&self) {
        let recent: Vec<String> = self
            .removed_lately
            .lock()
            .expect("presence lock poisoned")
            .iter()
            .filter(|(_, at)| at.elapsed() < REMOVALS_DOUBTED)
            .map(|(topic, _)| topic.clone())
            .collect();
        self.unsure().extend(recent);
    }
}
