//! Events of a standalone process: in memory, lost with it (there is no
//! other replica to deliver them anyway). Bounded like the Redis queues.

use super::{Cursor, Entry, PARTITIONS, Queue, QueueError};
use crate::broadcast::unix_ms;
use async_trait::async_trait;
use bytes::Bytes;
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

pub struct MemoryQueue {
    max_len: usize,
    /// A std mutex: every use is a short update, never awaited.
    parts: Vec<Mutex<Part>>,
}

#[derive(Default)]
struct Part {
    events: VecDeque<Entry>,
    seq: u64,
    cursors: HashMap<String, Cursor>,
}

impl MemoryQueue {
    pub fn new(max_len: usize) -> Self {
        Self {
            max_len,
            parts: (0..PARTITIONS).map(|_| Mutex::default()).collect(),
        }
    }

    fn part(&self, partition: usize) -> std::sync::MutexGuard<'_, Part> {
        self.parts[partition]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl Queue for MemoryQueue {
    async fn append(&self, partition: usize, events: &[(String, Bytes)]) -> Result<(), QueueError> {
        let mut part = self.part(partition);
        let now = unix_ms();
        for (id, body) in events {
            part.seq += 1;
            let seq = part.seq;
            part.events.push_back(Entry {
                position: Cursor {
                    at: seq.to_string(),
                    seq,
                },
                queued_at: now,
                id: id.clone(),
                body: body.clone(),
            });
            if part.events.len() > self.max_len {
                part.events.pop_front();
            }
        }
        Ok(())
    }

    async fn lease(&self, _partition: usize, _owner: &str) -> Result<bool, QueueError> {
        Ok(true)
    }

    async fn release(&self, _partition: usize, _owner: &str) {}

    async fn read(
        &self,
        partition: usize,
        after: &Cursor,
        count: usize,
    ) -> Result<Vec<Entry>, QueueError> {
        let part = self.part(partition);
        Ok(part
            .events
            .iter()
            .filter(|e| e.position.seq > after.seq)
            .take(count)
            .cloned()
            .collect())
    }

    async fn cursor(&self, partition: usize, receiver: &str) -> Result<Cursor, QueueError> {
        Ok(self
            .part(partition)
            .cursors
            .get(receiver)
            .cloned()
            .unwrap_or_default())
    }

    async fn advance(
        &self,
        partition: usize,
        receiver: &str,
        _owner: &str,
        cursor: &Cursor,
    ) -> Result<bool, QueueError> {
        self.part(partition)
            .cursors
            .insert(receiver.to_owned(), cursor.clone());
        Ok(true)
    }

    async fn last_seq(&self, partition: usize) -> Result<u64, QueueError> {
        Ok(self.part(partition).seq)
    }

    async fn trim(&self, partition: usize, upto: &Cursor) {
        let mut part = self.part(partition);
        while part
            .events
            .front()
            .is_some_and(|e| e.position.seq <= upto.seq)
        {
            part.events.pop_front();
        }
    }
}
