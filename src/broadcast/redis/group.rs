//! Group commit of publishes. A publish that finds fewer than
//! [`IN_FLIGHT`] script calls of its replica unanswered goes to Redis at
//! once, from the poster's own task, so at light load nothing waits and
//! nothing is handed between tasks. One that finds them all busy waits in
//! a queue, and when a call is answered, whatever waits there goes as the
//! next call, together: Redis reads one command, runs one script
//! (publish.lua) and writes one reply (and one write per subscriber) for
//! many messages, so its per-command floor is shared instead of paid per
//! message. Every publish of the replica (its sockets', the server API's,
//! grpc-server's posts) shares the queue.
//!
//! Each publish keeps its own id, idempotency key and answer. A poster
//! posts one message at a time (each door waits for a post's answer before
//! it reads the next), so its messages reach the log in the order posted;
//! the queue is first in, first out, and a group's messages are appended
//! in queue order. On a cluster a script may only touch one slot, so a
//! group is split by slot and its parts go at once, each to its shard.

use super::expiry::Expiries;
use super::{keys, wire};
use crate::broadcast::BroadcastError;
use crate::redis::RedisSettings;
use bytes::Bytes;
use fred::prelude::*;
use fred::types::scripts::Script;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{Semaphore, oneshot};

/// Publishes of one replica queued or on their way at once before a
/// poster waits for room (a post given up by its poster still counts until
/// it is sent).
const QUEUE: usize = 4096;

/// The most messages one script call carries: a group keeps Redis busy for
/// about 10 µs a message, so 128 is about a millisecond of others' waiting.
const MAX_GROUP: usize = 128;

/// Script calls of one replica unanswered at once. More keep Redis busy
/// while the replica hands out one call's answers and gathers the next
/// group; fewer group more. Measured with `rtchat bench log` (100 rooms):
/// at 64 publishes in flight 2 and 4 slots cost Redis the same (7.7-7.9 µs
/// a message, against 10.1 ungrouped), at 16 posters waiting for their
/// answers 4 slots carried 15% more messages a second than 2.
const IN_FLIGHT: usize = 4;

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

#[derive(Clone)]
pub(super) struct Publisher(Arc<Shared>);

struct Shared {
    committer: Committer,
    /// One permit per publish queued or on its way, given back when its
    /// call is over.
    room: Semaphore,
    state: Mutex<State>,
}

/// Invariant: something waits only while every call slot is taken, and the
/// call that frees a slot takes the waiting group instead.
#[derive(Default)]
struct State {
    in_flight: usize,
    waiting: VecDeque<(Post, Reply)>,
}

impl Publisher {
    pub fn new(client: Client, settings: RedisSettings, sharded: bool) -> Self {
        Self(Arc::new(Shared {
            committer: Committer {
                client,
                settings,
                sharded,
                script: Script::from_lua(super::PUBLISH_LUA),
                expiries: Expiries::default(),
            },
            room: Semaphore::new(QUEUE),
            state: Mutex::new(State::default()),
        }))
    }

    /// Stores one publish and answers its id.
    pub async fn publish(&self, post: Post) -> Result<u64, BroadcastError> {
        self.0.room.acquire().await.expect("never closed").forget();
        let (reply, answer) = oneshot::channel();
        let direct = {
            let mut state = self.0.state.lock().expect("never poisoned");
            if state.in_flight < IN_FLIGHT {
                state.in_flight += 1;
                Some((post, reply))
            } else {
                state.waiting.push_back((post, reply));
                None
            }
        };
        if let Some(post) = direct {
            let _slot = Slot {
                shared: self.0.clone(),
                carried: 1,
            };
            self.0.committer.commit_group(vec![post]).await;
        }
        answer.await.unwrap_or_else(|_| {
            Err(BroadcastError::Unavailable(
                "the publish was dropped".into(),
            ))
        })
    }

    /// Every log's expiry is set again from here on (after a reconnect).
    pub fn forget_expiries(&self) {
        self.0.committer.expiries.forget_all();
    }
}

/// A call slot and the room of the posts its call carries: handed on when
/// the call is over, and also when its poster is dropped first (a server
/// API client that hung up), else the slot would be lost and posts would
/// wait for good.
struct Slot {
    shared: Arc<Shared>,
    carried: usize,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.shared.room.add_permits(self.carried);
        self.shared.clone().next_group();
    }
}

impl Shared {
    /// A call was answered: its slot takes what waits, in a task of its
    /// own (the poster whose call it was has its answer already), or is
    /// freed.
    fn next_group(self: Arc<Self>) {
        let group: Vec<_> = {
            let mut state = self.state.lock().expect("never poisoned");
            if state.waiting.is_empty() {
                state.in_flight -= 1;
                return;
            }
            let n = state.waiting.len().min(MAX_GROUP);
            state.waiting.drain(..n).collect()
        };
        // (No runtime: it is shutting down, and the waiting posts with it.)
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let slot = Slot {
                    carried: group.len(),
                    shared: self,
                };
                slot.shared.committer.commit_group(group).await;
            });
        }
    }
}

struct Committer {
    client: Client,
    settings: RedisSettings,
    sharded: bool,
    script: Script,
    expiries: Expiries,
}

impl Committer {
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
        let mut keys = Vec::with_capacity(posts.len() * 2);
        let mut args = Vec::with_capacity(1 + posts.len() * 5);
        args.push(Value::from(super::publish_command(self.sharded)));
        let sent = Instant::now();
        let expire = self
            .expiries
            .due(posts.iter().map(|(post, _)| post.topic.as_str()), sent);
        for ((post, _), &expire) in posts.iter().zip(&expire) {
            keys.push(keys::log(&post.topic));
            if let Some(key) = &post.idempotency_key {
                keys.push(keys::idempotency(&post.topic, key));
            }
            args.extend([
                Value::from(keys::channel(&post.topic)),
                Value::Bytes(post.payload.clone()),
                Value::Integer(post.max_len),
                Value::Integer(post.max_age),
                Value::Integer(
                    i64::from(post.idempotency_key.is_some()) | if expire { 2 } else { 0 },
                ),
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
            Err(err) => vec![Err(super::unavailable(err)); posts.len()],
        };
        // One WAIT covers every write of the group before it (same shard).
        let waited = if answers.iter().any(Result::is_ok) {
            crate::redis::wait_for_replicas(&self.client, &self.settings, &posts[0].0.topic).await
        } else {
            Ok(())
        };
        for (((post, reply), answer), expire) in posts.into_iter().zip(answers).zip(expire) {
            let answer = match (&waited, answer) {
                (Err(why), Ok(_)) => Err(BroadcastError::Unavailable(why.clone())),
                (_, answer) => answer,
            };
            if expire && answer.is_ok() {
                let age = Duration::from_micros(post.max_age.max(0) as u64);
                self.expiries.refreshed(&post.topic, sent, age);
            }
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
