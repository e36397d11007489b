//! Events in Redis: a stream per queue, shared by every replica (see
//! `queue.lua` for the keys). A replica that dies leaves its events there;
//! its leases expire and another replica delivers them.

use super::{Cursor, Entry, Queue, QueueError};
use async_trait::async_trait;
use bytes::Bytes;
use fred::prelude::*;
use fred::types::scripts::Script;
use fred::types::{ClusterHash, CustomCommand};
use std::time::Duration;

const QUEUE_LUA: &str = include_str!("queue.lua");

pub struct RedisQueue {
    client: Client,
    script: Script,
    max_len: usize,
    /// How long a lease outlives its holder.
    lease_ttl: Duration,
}

/// The keys of one queue; the tag spreads queues over a cluster's shards.
struct Keys {
    events: String,
    seq: String,
    lease: String,
    cursors: String,
}

fn keys(partition: usize) -> Keys {
    let base = format!("rtchat:webhooks:{{wh{partition}}}");
    Keys {
        events: format!("{base}:events"),
        seq: format!("{base}:seq"),
        lease: format!("{base}:lease"),
        cursors: format!("{base}:cursors"),
    }
}

fn failed(err: Error) -> QueueError {
    QueueError(err.to_string())
}

impl RedisQueue {
    pub fn new(client: Client, max_len: usize, lease_ttl: Duration) -> Self {
        Self {
            client,
            script: Script::from_lua(QUEUE_LUA),
            max_len,
            lease_ttl,
        }
    }

    async fn run(&self, keys: Vec<String>, args: Vec<Value>) -> Result<i64, QueueError> {
        self.script
            .evalsha_with_reload(&self.client, keys, args)
            .await
            .map_err(failed)
    }
}

#[async_trait]
impl Queue for RedisQueue {
    async fn append(&self, partition: usize, events: &[(String, Bytes)]) -> Result<(), QueueError> {
        let k = keys(partition);
        let mut args: Vec<Value> = Vec::with_capacity(2 + events.len() * 2);
        args.push("append".into());
        args.push((self.max_len as i64).into());
        for (id, body) in events {
            args.push(id.as_str().into());
            args.push(Value::Bytes(body.clone()));
        }
        self.run(vec![k.events, k.seq], args).await.map(drop)
    }

    async fn lease(&self, partition: usize, owner: &str) -> Result<bool, QueueError> {
        let ttl = self.lease_ttl.as_millis() as i64;
        let args = vec!["lease".into(), owner.into(), ttl.into()];
        Ok(self.run(vec![keys(partition).lease], args).await? == 1)
    }

    async fn release(&self, partition: usize, owner: &str) {
        let args = vec!["release".into(), owner.into()];
        let _ = self.run(vec![keys(partition).lease], args).await;
    }

    async fn read(
        &self,
        partition: usize,
        after: &Cursor,
        count: usize,
    ) -> Result<Vec<Entry>, QueueError> {
        let start = if after.at.is_empty() {
            "-".to_owned()
        } else {
            format!("({}", after.at)
        };
        let reply: Value = self
            .client
            .xrange(keys(partition).events, start, "+", Some(count as u64))
            .await
            .map_err(failed)?;
        parse_entries(reply).ok_or_else(|| QueueError("unexpected XRANGE reply".into()))
    }

    async fn cursor(&self, partition: usize, receiver: &str) -> Result<Cursor, QueueError> {
        let text: Option<String> = self
            .client
            .hget(keys(partition).cursors, receiver)
            .await
            .map_err(failed)?;
        Ok(text.as_deref().and_then(Cursor::decode).unwrap_or_default())
    }

    async fn advance(
        &self,
        partition: usize,
        receiver: &str,
        owner: &str,
        cursor: &Cursor,
    ) -> Result<bool, QueueError> {
        let k = keys(partition);
        let args = vec![
            "advance".into(),
            owner.into(),
            receiver.into(),
            cursor.encode().into(),
        ];
        Ok(self.run(vec![k.lease, k.cursors], args).await? == 1)
    }

    async fn last_seq(&self, partition: usize) -> Result<u64, QueueError> {
        let seq: Option<u64> = self.client.get(keys(partition).seq).await.map_err(failed)?;
        Ok(seq.unwrap_or(0))
    }

    async fn trim(&self, partition: usize, upto: &Cursor) {
        if upto.at.is_empty() {
            return;
        }
        // MINID keeps `upto` itself: the next read starts after it anyway.
        let xtrim = CustomCommand::new_static("XTRIM", ClusterHash::FirstKey, false);
        let args: Vec<Value> = vec![
            keys(partition).events.into(),
            "MINID".into(),
            upto.at.as_str().into(),
        ];
        let _: Result<Value, Error> = self.client.custom(xtrim, args).await;
    }
}

/// XRANGE's reply: `[[id, [field, value, ...]], ...]`.
fn parse_entries(reply: Value) -> Option<Vec<Entry>> {
    let Value::Array(items) = reply else {
        return matches!(reply, Value::Null).then(Vec::new);
    };
    let mut entries = Vec::with_capacity(items.len());
    for item in items {
        let Value::Array(mut pair) = item else {
            return None;
        };
        let fields = pair.pop()?;
        let at = pair.pop()?.as_string()?;
        let Value::Array(fields) = fields else {
            return None;
        };
        let (mut seq, mut id, mut body) = (None, None, None);
        for kv in fields.chunks(2) {
            let [name, value] = kv else { return None };
            match name.as_str()?.as_ref() {
                "n" => seq = value.as_u64(),
                "i" => id = value.as_string(),
                "b" => body = value.as_bytes().map(Bytes::copy_from_slice),
                _ => {}
            }
        }
        let queued_at = at.split('-').next()?.parse().ok()?;
        entries.push(Entry {
            position: Cursor { at, seq: seq? },
            queued_at,
            id: id?,
            body: body?,
        });
    }
    Some(entries)
}
