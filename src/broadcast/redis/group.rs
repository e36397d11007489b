//! Group commit of publishes. Every publish of a replica (its sockets', the
//! server API's, grpc-server's posts) goes through one queue; a task sends
//! what it finds there as one script call (publish.lua), with at most
//! [`IN_FLIGHT`] groups unanswered. At light load a group is one publish
//! sent at once, so nothing waits; under load, what arrived while groups
//! were in flight goes together, and Redis reads one command, runs one
//! script and writes one reply (and one write per subscriber) for many
//! messages: its per-command floor is shared instead of paid per message.
//!
//! Each publish keeps its own id, idempotency key and answer, and order is
//! kept: the queue is first in, first out, a group's messages are appended
//! in queue order, and groups go out in that order on one connection (one
//! per shard). On a cluster a script may only touch one slot, so a group
//! is split by slot and its parts go at once, each to its shard; one room
//! is one slot, so a room's messages stay in order there too.

use super::{keys, wire};
use crate::broadcast::BroadcastError;
use crate::redis::RedisSettings;
use bytes::Bytes;
use fred::prelude::*;
use fred::types::scripts::Script;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::sync::{mpsc, oneshot};

/// Publishes waiting at once before a post waits for room in the queue.
const QUEUE: usize = 4096;

/// The most messages one script call carries: a group keeps Redis busy for
/// about 10 µs a message, so 128 is about a millisecond of others' waiting.
const MAX_GROUP: usize = 128;

/// Groups sent before the answer to the first: two keep Redis busy while
/// the replica hands out one group's answers and gathers the next, and
/// still leave the publishes that arrive meanwhile to be grouped. Their
/// order holds: they go out on one connection (one per shard), which Redis
/// runs in order.
const IN_FLIGHT: usize = 2;

/// One publish waiting for its group.
pub(super) struct Post {
    pub topic: String,
    /// Already scoped and validated by the caller.
    pub idempotency_key: Option<String>,
    pub payload: Bytes,
    /// The topic's history bounds: length, and age in microseconds.
    pub max_len: i64,
    pub max_age: i64,
}

type Reply = oneshot::Sender<Result<u64, BroadcastError>>;

/// Where publishes are queued; the committing task ends with the last one.
#[derive(Clone)]
pub(super) struct Publisher {
    queue: mpsc::Sender<(Post, Reply)>,
}

impl Publisher {
    pub fn spawn(client: Client, settings: RedisSettings, sharded: bool) -> Self {
        let (queue, posts) = mpsc::channel(QUEUE);
        let committer = Committer {
            client,
            settings,
            sharded,
            script: Script::from_lua(super::PUBLISH_LUA),
        };
        tokio::spawn(committer.run(posts));
        Self { queue }
    }

    /// Queues one publish and waits for its id.
    pub async fn publish(&self, post: Post) -> Result<u64, BroadcastError> {
        let (reply, answer) = oneshot::channel();
        let stopped = || BroadcastError::Unavailable("the publisher has stopped".into());
        self.queue
            .send((post, reply))
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

struct Committer {
    client: Client,
    settings: RedisSettings,
    sharded: bool,
    script: Script,
}

impl Committer {
    async fn run(self, mut posts: mpsc::Receiver<(Post, Reply)>) {
        let mut in_flight = FuturesUnordered::new();
        let mut group = Vec::with_capacity(MAX_GROUP);
        loop {
            tokio::select! {
                biased;
                Some(()) = in_flight.next(), if !in_flight.is_empty() => {}
                taken = posts.recv_many(&mut group, MAX_GROUP), if in_flight.len() < IN_FLIGHT => {
                    if taken == 0 {
                        break;
                    }
                    let taken = std::mem::replace(&mut group, Vec::with_capacity(MAX_GROUP));
                    in_flight.push(self.commit_group(taken));
                }
            }
        }
        while in_flight.next().await.is_some() {}
    }

    async fn commit_group(&self, group: Vec<(Post, Reply)>) {
        if self.sharded {
            let parts = by_slot(group);
            futures_util::future::join_all(parts.into_iter().map(|part| self.commit(part))).await;
        } else {
            self.commit(group).await;
        }
    }

    /// One script call for posts whose keys share a shard (or a slot).
    async fn commit(&self, posts: Vec<(Post, Reply)>) {
        let mut keys = Vec::with_capacity(posts.len() * 3);
        let mut args = Vec::with_capacity(1 + posts.len() * 5);
        args.push(Value::from(if self.sharded {
            "SPUBLISH"
        } else {
            "PUBLISH"
        }));
        for (post, _) in &posts {
            keys.extend(keys::log(&post.topic));
            if let Some(key) = &post.idempotency_key {
                keys.push(keys::idempotency(&post.topic, key));
            }
            args.extend([
                Value::from(keys::channel(&post.topic)),
                Value::Bytes(post.payload.clone()),
                Value::Integer(post.max_len),
                Value::Integer(post.max_age),
                Value::Integer(i64::from(post.idempotency_key.is_some())),
            ]);
        }
        let reply: Result<Vec<Value>, Error> = self
            .script
            .evalsha_with_reload(&self.client, keys, args)
            .await;
        let answers = match reply {
            Ok(ids) if ids.len() == posts.len() => {
                ids.iter().map(wire::parse_group_entry).collect()
            }
            Ok(ids) => {
                let err = BroadcastError::Protocol(format!(
                    "{} answers for a group of {}",
                    ids.len(),
                    posts.len()
                ));
                vec![Err(err); posts.len()]
            }
            Err(err) => vec![Err(BroadcastError::Unavailable(err.to_string())); posts.len()],
        };
        // One WAIT covers every write of the group before it (same shard).
        let waited = if answers.iter().any(Result::is_ok) {
            crate::redis::wait_for_replicas(&self.client, &self.settings, &posts[0].0.topic).await
        } else {
            Ok(())
        };
        for ((_, reply), answer) in posts.into_iter().zip(answers) {
            let answer = match (&waited, answer) {
                (Err(why), Ok(_)) => Err(BroadcastError::Unavailable(why.clone())),
                (_, answer) => answer,
            };
            // The poster may have gone (its socket closed): nothing to tell.
            let _ = reply.send(answer);
        }
    }
}

/// Splits a group by hash slot, keeping queue order within each part.
fn by_slot(posts: Vec<(Post, Reply)>) -> Vec<Vec<(Post, Reply)>> {
    let mut parts: Vec<(u16, Vec<(Post, Reply)>)> = Vec::new();
    for post in posts {
        let slot = fred::util::redis_keyslot(post.0.topic.as_bytes());
        match parts.iter_mut().find(|(s, _)| *s == slot) {
            Some((_, part)) => part.push(post),
            None => parts.push((slot, vec![post])),
        }
    }
    parts.into_iter().map(|(_, part)| part).collect()
}
