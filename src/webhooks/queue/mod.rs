//! Where events wait until every receiver acknowledged them: Redis streams
//! shared by all replicas, or memory in a standalone process.
//!
//! Events are spread over [`PARTITIONS`] queues by room (or user): one
//! room's events share a queue, so they are delivered in order. Each queue
//! is delivered by one replica at a time, the holder of its lease; a
//! receiver's position in a queue (its cursor) is stored beside it, so
//! another replica takes over where a dead one stopped.
//!
//! Every event carries its queue's sequence number: a gap between two
//! read events is events the queue dropped (it was full), and is counted.

pub(super) mod memory;
pub(super) mod redis;

use async_trait::async_trait;
use bytes::Bytes;

/// Queues events are spread over. A replica delivers the queues it holds
/// the lease of; more queues spread a busy receiver's events over more
/// concurrent requests.
pub const PARTITIONS: usize = 16;

/// The queue of an event about `key` (a room, or a user): the same on every
/// replica and version.
pub fn partition(key: &str) -> usize {
    usize::from(fred::util::redis_keyslot(key.as_bytes())) % PARTITIONS
}

/// One queued event.
#[derive(Debug, Clone)]
pub struct Entry {
    pub position: Cursor,
    /// Unix ms when it was queued.
    pub queued_at: u64,
    /// `X-Rtchat-Event-Id`.
    pub id: String,
    pub body: Bytes,
}

/// Where a receiver stands in a queue: the last event it acknowledged.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cursor {
    /// The queue's own position (a Redis stream id); empty before the first.
    pub at: String,
    /// The event's sequence number in its queue; 0 before the first.
    pub seq: u64,
}

impl Cursor {
    pub fn encode(&self) -> String {
        format!("{} {}", self.at, self.seq)
    }

    pub fn decode(text: &str) -> Option<Self> {
        let (at, seq) = text.split_once(' ')?;
        Some(Self {
            at: at.to_owned(),
            seq: seq.parse().ok()?,
        })
    }
}

#[derive(Debug, thiserror::Error)]
#[error("webhook queue unavailable: {0}")]
pub struct QueueError(pub String);

#[async_trait]
pub trait Queue: Send + Sync + 'static {
    /// Appends events (id, body) to a queue, in order, dropping its oldest
    /// beyond the size bound.
    async fn append(&self, partition: usize, events: &[(String, Bytes)]) -> Result<(), QueueError>;

    /// Takes the queue's lease for `owner`, or keeps it; false while
    /// another owner holds it.
    async fn lease(&self, partition: usize, owner: &str) -> Result<bool, QueueError>;

    /// Gives a held lease up (a replica shutting down), so another replica
    /// takes over without waiting for it to expire.
    async fn release(&self, partition: usize, owner: &str);

    /// Up to `count` events after `after`, oldest first.
    async fn read(
        &self,
        partition: usize,
        after: &Cursor,
        count: usize,
    ) -> Result<Vec<Entry>, QueueError>;

    /// The receiver's cursor; the default one (before everything) for a
    /// receiver new to the queue.
    async fn cursor(&self, partition: usize, receiver: &str) -> Result<Cursor, QueueError>;

    /// Moves the receiver's cursor while `owner` holds the lease; false
    /// when it does not (another replica delivers now).
    async fn advance(
        &self,
        partition: usize,
        receiver: &str,
        owner: &str,
        cursor: &Cursor,
    ) -> Result<bool, QueueError>;

    /// The sequence number of the queue's newest event (0 when none), to
    /// count what waits.
    async fn last_seq(&self, partition: usize) -> Result<u64, QueueError>;

    /// Forgets events up to `upto`, which every receiver acknowledged.
    async fn trim(&self, partition: usize, upto: &Cursor);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_round_trips_and_partitions_are_stable() {
        let cursor = Cursor {
            at: "1700000000000-3".into(),
            seq: 42,
        };
        assert_eq!(Cursor::decode(&cursor.encode()), Some(cursor));
        assert_eq!(Cursor::decode("junk"), None);
        // CRC16 of the key, as Redis Cluster computes slots.
        assert_eq!(partition("room:general"), partition("room:general"));
        assert!(partition("x") < PARTITIONS);
    }
}
