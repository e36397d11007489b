//! Presence through Redis: a hash per topic whose entries name the replica
//! instances holding them (one user may be held by two at once); each
//! instance keeps a heartbeat key alive, and an instance whose heartbeat
//! expired is taken off the entries (those it held alone are announced as
//! left) by whichever replica lists or sweeps the topic next.
//!
//! Each topic's script touches only that topic's hash and channel, so it
//! runs on a cluster; heartbeat keys live on their own shards and are read
//! by the Rust side (see `liveness`).
//!
//! Only a server with members starts this ([`RedisPresence::start`]); the
//! log alone ([`super::RedisBroadcast`]) writes no heartbeats, and a
//! server without members reads presence through
//! [`RedisPresence::reader`], which writes none either.
//!
//! Sweeping costs Redis nothing while every replica lives: beside its
//! heartbeat key each instance stamps its time in one sorted set, and a
//! sweep reads the instances whose stamp is older than the heartbeat TTL.
//! Only when one of them has really died (its heartbeat key is gone) are
//! the topics with local members swept, once per dead instance. Sweeping
//! every topic every two seconds cost 5,000 scripts a second with 10,000
//! rooms.

use super::doubts::Doubts;
use super::liveness::Liveness;
use super::{RedisBroadcast, keys, unavailable};
use crate::broadcast::presence::{PresenceMap, Removed, Watcher};
use crate::broadcast::{BroadcastError, Change, LeaveReason, Presence, PresenceWatch};
use async_trait::async_trait;
use bytes::Bytes;
use fred::prelude::*;
use fred::types::scripts::Script;
use futures_util::TryStreamExt;
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

const PRESENCE_LUA: &str = include_str!("presence.lua");

/// A replica's presence entries outlive it by at most this long (plus one
/// sweep): the time its heartbeat key lives without being refreshed.
pub const PRESENCE_TTL: Duration = Duration::from_secs(10);
/// How often the heartbeat key is refreshed: three chances per TTL.
const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(3);
/// How often dead replicas are looked for (and, when one is found, the
/// presence of topics with local members swept of its members).
pub const PRESENCE_SWEEP: Duration = Duration::from_secs(2);
/// Entries put back at once after an outage: one at a time, a replica
/// with 10,000 members took 10,000 round trips to be whole again.
const RESTORE_IN_FLIGHT: usize = 64;

pub struct RedisPresence {
    client: Client,
    script: Script,
    /// This process among all replicas, for presence liveness. Random, so
    /// two replicas misconfigured with one SERVER_ID still differ.
    instance: String,
    /// This replica's own presence entries (topic to member to info), to
    /// put back after Redis lost them.
    local: PresenceMap,
    /// PUBLISH, or SPUBLISH on a cluster.
    publish: &'static str,
    /// Which other instances are alive.
    liveness: Liveness,
    /// Whether this instance's heartbeat key was written once: its first
    /// member must not be seen by others before it.
    beating: AtomicBool,
    /// False for a reader: it has no members, so no heartbeat and no
    /// entries of its own.
    keeps_members: bool,
    /// Topics whose entries in Redis may not match the local ones.
    doubts: Doubts,
    /// Told of the changes this process made (joins, leaves, and the
    /// leaves of dead replicas it swept).
    watcher: Watcher,
}

impl RedisPresence {
    /// Shares the log's command connection and keeps this replica's
    /// heartbeat alive, sweeps dead replicas' members out of the topics it
    /// has members in, and after an outage puts its own members back. The
    /// keeper ends when the returned handle is dropped.
    pub fn start(log: &RedisBroadcast) -> Arc<Self> {
        let this = Self::new(log, true);
        this.spawn_keeper(log.resumed.subscribe());
        this
    }

    /// Presence for a server without members: lists a topic's members (and
    /// drops a dead replica's, as every lister does) over the log's command
    /// connection; no heartbeat, no keeper, and adding a member is refused.
    pub fn reader(log: &RedisBroadcast) -> Arc<Self> {
        Self::new(log, false)
    }

    fn new(log: &RedisBroadcast, keeps_members: bool) -> Arc<Self> {
        Arc::new(Self {
            client: log.client.clone(),
            script: Script::from_lua(PRESENCE_LUA),
            instance: std::iter::repeat_with(fastrand::alphanumeric)
                .take(12)
                .collect(),
            local: PresenceMap::default(),
            publish: log.publish_command(),
            liveness: Liveness::new(PRESENCE_TTL),
            beating: AtomicBool::new(false),
            keeps_members,
            doubts: Doubts::default(),
            watcher: Watcher::default(),
        })
    }

    fn spawn_keeper(self: &Arc<Self>, mut resumed: tokio::sync::watch::Receiver<u64>) {
        let this = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut heartbeat = tokio::time::interval(HEARTBEAT_INTERVAL);
            let mut sweep = tokio::time::interval(PRESENCE_SWEEP);
            // Set when Redis may have lost this replica's entries (it was
            // unreachable, or came back), cleared once they are put back.
            let mut restore = false;
            // Dead instances already swept out of the local topics.
            let mut swept = HashSet::new();
            loop {
                tokio::select! {
                    _ = heartbeat.tick() => {
                        let Some(this) = this.upgrade() else { break };
                        if !this.heartbeat().await {
                            restore = true;
                        } else if restore || this.doubts.any() {
                            restore = !this.restore().await;
                        }
                    }
                    _ = sweep.tick() => {
                        let Some(this) = this.upgrade() else { break };
                        this.sweep(&mut swept).await;
                    }
                    changed = resumed.changed() => {
                        let Some(this) = this.upgrade() else { break };
                        if changed.is_err() {
                            break;
                        }
                        this.doubts.doubt_recent_removals();
                        restore = !(this.heartbeat().await && this.restore().await);
                    }
                }
            }
        });
    }

    async fn heartbeat(&self) -> bool {
        let ttl = Expiration::PX(PRESENCE_TTL.as_millis() as i64);
        let alive: Result<(), Error> = self
            .client
            .set(keys::alive(&self.instance), 1, Some(ttl), None, false)
            .await;
        let stamped: Result<(), Error> = self
            .client
            .zadd(
                keys::INSTANCES,
                None,
                None,
                false,
                false,
                (crate::broadcast::unix_ms() as f64, self.instance.as_str()),
            )
            .await;
        let result = alive.and(stamped);
        if let Err(err) = &result {
            tracing::debug!(%err, "presence heartbeat failed");
        }
        self.beating.fetch_or(result.is_ok(), Ordering::Relaxed);
        result.is_ok()
    }

    /// Looks for instances that stopped stamping; for each one whose
    /// heartbeat key is gone too, and not swept yet, lists (and so cleans)
    /// every topic with local members.
    async fn sweep(&self, swept: &mut HashSet<String>) {
        let dead = self
            .liveness
            .newly_dead(&self.client, &self.instance, swept)
            .await;
        if dead {
            for topic in self.local.topics() {
                let _ = self.presence(&topic).await;
            }
        }
    }

    /// Puts back every local presence entry (entries Redis had lost are
    /// announced as joined again), then removes this instance's entries
    /// that are no longer local from the topics where a leave may not
    /// have landed. False if any of it failed.
    ///
    /// Members join and leave meanwhile: an entry put back after its
    /// member's leave reached Redis, or a join that landed before a keep
    /// listing the members from before it, leaves the topic in doubt, and
    /// so checked again at the next heartbeat.
    async fn restore(&self) -> bool {
        let put_back = futures_util::stream::iter(self.local.entries().into_iter().map(Ok))
            .try_for_each_concurrent(RESTORE_IN_FLIGHT, |(topic, member, info)| async move {
                self.add(&topic, &member, info).await?;
                self.settle_race(&topic, &member, false);
                Ok::<_, BroadcastError>(())
            })
            .await;
        if let Err(err) = put_back {
            tracing::debug!(%err, "could not restore presence yet");
            return false;
        }
        for topic in self.doubts.topics() {
            let held = self.local.members(&topic);
            let mut args = vec![Value::from(self.instance.as_str())];
            args.extend(held.iter().map(|m| Value::from(m.as_str())));
            match self.run(&topic, "keep", args).await {
                Ok(dropped) => {
                    tracing::debug!(topic, ?dropped, "presence in doubt checked");
                    self.tell_left(&topic, dropped, LeaveReason::Disconnected);
                    if self.local.members(&topic) == held {
                        self.doubts.settled(&topic);
                    }
                }
                Err(err) => {
                    tracing::debug!(%err, topic, "could not clean presence yet");
                    return false;
                }
            }
        }
        true
    }

    /// Makes this instance one of a member's holders.
    async fn add(&self, topic: &str, member: &str, info: Bytes) -> Result<(), BroadcastError> {
        let args = vec![
            Value::from(member),
            Value::from(self.instance.as_str()),
            Value::Bytes(info.clone()),
        ];
        if self.run(topic, "add", args).await?.as_i64() == Some(1) {
            self.watcher.tell(topic, &info, Change::Joined);
        }
        Ok(())
    }

    /// Takes this instance off a member's holders; the member leaves with
    /// its last one.
    async fn remove(
        &self,
        topic: &str,
        member: &str,
        reason: LeaveReason,
    ) -> Result<(), BroadcastError> {
        let args = vec![Value::from(member), Value::from(self.instance.as_str())];
        let removed = self.run(topic, "remove", args).await?;
        if let Some(info) = removed.as_bytes() {
            self.watcher
                .tell(topic, &Bytes::copy_from_slice(info), Change::Left(reason));
        }
        Ok(())
    }

    /// A member's add and remove on this instance can reach Redis in the
    /// other order than they were made (a retry after a reload of the
    /// script, or after a reconnect): a session that leaves while another
    /// of the same member joins. Once one is answered, if the member's
    /// local state is no longer what it wrote (held again after a remove,
    /// gone after an add), the topic is checked at the next heartbeat,
    /// which puts back or drops the entry.
    fn settle_race(&self, topic: &str, member: &str, removed: bool) {
        if self.local.holds(topic, member) == removed {
            self.doubts.doubt(topic);
        }
    }

    /// Tells the watch of the entries a drop or keep removed.
    fn tell_left(&self, topic: &str, dropped: Value, reason: LeaveReason) {
        if let Value::Array(infos) = dropped {
            for info in infos.iter().filter_map(Value::as_bytes) {
                self.watcher
                    .tell(topic, &Bytes::copy_from_slice(info), Change::Left(reason));
            }
        }
    }

    async fn run(&self, topic: &str, op: &str, args: Vec<Value>) -> Result<Value, BroadcastError> {
        let mut all: Vec<Value> = vec![op.into(), keys::channel(topic).into(), self.publish.into()];
        all.extend(args);
        self.script
            .evalsha_with_reload(&self.client, vec![keys::presence(topic)], all)
            .await
            .map_err(unavailable)
    }
}

#[async_trait]
impl Presence for RedisPresence {
    async fn presence_add(
        &self,
        topic: &str,
        member: &str,
        info: Bytes,
    ) -> Result<(), BroadcastError> {
        if !self.keeps_members {
            return Err(BroadcastError::Protocol(
                "this server reads presence only; it has no members".into(),
            ));
        }
        self.local.add(topic, member, info.clone());
        if !self.beating.load(Ordering::Relaxed) {
            self.heartbeat().await;
        }
        let added = self.add(topic, member, info).await;
        self.settle_race(topic, member, false);
        self.doubts.unsure_of(topic, added)
    }

    async fn presence_remove(
        &self,
        topic: &str,
        member: &str,
        reason: LeaveReason,
    ) -> Result<(), BroadcastError> {
        if self.local.remove(topic, member) == Removed::StillHeld {
            return Ok(());
        }
        let removed = self.remove(topic, member, reason).await;
        self.doubts.note_removal(topic);
        self.settle_race(topic, member, true);
        self.doubts.unsure_of(topic, removed)
    }

    fn set_watch(&self, watch: PresenceWatch) {
        self.watcher.set(watch);
    }

    async fn report(&self, state: Bytes) -> Result<(), BroadcastError> {
        if !self.keeps_members {
            return Err(BroadcastError::Protocol(
                "this server reads presence only; it reports no replica".into(),
            ));
        }
        super::replicas::report(&self.client, &self.instance, state).await
    }

    async fn replicas(&self) -> Result<Vec<Bytes>, BroadcastError> {
        super::replicas::list(&self.client, PRESENCE_TTL).await
    }

    async fn presence(&self, topic: &str) -> Result<Vec<Bytes>, BroadcastError> {
        let values: Vec<Bytes> = self
            .client
            .hvals(keys::presence(topic))
            .await
            .map_err(unavailable)?;
        let entries: Vec<(Vec<&str>, Bytes)> = values.iter().filter_map(split_entry).collect();
        let dead = self
            .liveness
            .dead_among(
                &self.client,
                &self.instance,
                entries
                    .iter()
                    .flat_map(|(holders, _)| holders)
                    .copied()
                    .collect(),
            )
            .await;
        if !dead.is_empty() {
            let args = dead.iter().map(|d| Value::from(d.as_str())).collect();
            let dropped = self.run(topic, "drop", args).await?;
            tracing::debug!(topic, ?dead, ?dropped, "dead replicas taken off presence");
            self.tell_left(topic, dropped, LeaveReason::ReplicaDied);
        }
        Ok(entries
            .into_iter()
            .filter(|(holders, _)| holders.iter().any(|h| !dead.iter().any(|d| d == h)))
            .map(|(_, info)| info)
            .collect())
    }
}

/// A presence hash value, `<holders>\n<info>`: the instances holding the
/// member, space separated, and its info.
fn split_entry(value: &Bytes) -> Option<(Vec<&str>, Bytes)> {
    let nl = value.iter().position(|&b| b == b'\n')?;
    let holders = std::str::from_utf8(&value[..nl]).ok()?;
    Some((holders.split(' ').collect(), value.slice(nl + 1..)))
}
