//! Redis connection settings shared by the broadcast and the user store:
//! fail a command after a timeout instead of queueing it while Redis is
//! away, and reconnect forever, at start-up too.

use fred::prelude::*;
use fred::types::{ClusterHash, CustomCommand};
use std::time::Duration;

/// How long the first connection is waited for at start-up before the
/// server starts anyway (not ready) and keeps retrying.
pub const STARTUP_WAIT: Duration = Duration::from_secs(3);

/// Where the shared Redis is and how long a command may take.
#[derive(Debug, Clone)]
pub struct RedisSettings {
    pub url: String,
    /// A command taking longer fails (the caller gets "unavailable")
    /// instead of waiting for Redis to come back.
    pub timeout: Duration,
    /// Replicas that must hold each write before it is acknowledged
    /// (`WAIT`); 0 acknowledges once the primary has it.
    pub wait_replicas: u32,
}

impl RedisSettings {
    /// Whether the URL names a Redis Cluster: keys of one topic share a
    /// slot everywhere, but only a cluster needs sharded pub/sub.
    pub fn is_cluster(&self) -> bool {
        Config::from_url(&self.url).is_ok_and(|config| config.server.is_clustered())
    }
}

/// How a server shares state, for its start-up log line.
pub fn mode(redis: Option<&RedisSettings>) -> &'static str {
    if redis.is_some() {
        "redis"
    } else {
        "standalone"
    }
}

pub fn builder(redis: &RedisSettings) -> anyhow::Result<Builder> {
    let timeout = redis.timeout;
    let clustered = redis.is_cluster();
    let mut config =
        Config::from_url(&redis.url).map_err(|e| anyhow::anyhow!("invalid --redis-url: {e}"))?;
    // Keep retrying when Redis is not up yet at start-up, as after any later
    // disconnect: containers start in any order.
    config.fail_fast = false;
    let mut builder = Builder::from_config(config);
    builder
        .with_performance_config(|perf| perf.default_command_timeout = timeout)
        .with_connection_config(|conn| {
            conn.connection_timeout = timeout;
            conn.internal_command_timeout = timeout;
            // One attempt: a command whose connection drops is failed, not
            // sent again (a publish would be stored twice). On a cluster
            // following a MOVED or ASK redirection takes an attempt of its
            // own, so there fred's default of three is kept: a command in
            // flight when its primary dies may then run twice.
            conn.max_command_attempts = if clustered { 3 } else { 1 };
            // Commands are small and pipelined from many tasks; with Nagle's
            // algorithm one written while the previous is unacknowledged
            // may wait for that ACK, the delay measured on the WebSocket
            // side (docs/BENCHMARKS.md).
            conn.tcp.nodelay = Some(true);
        })
        // 100 ms doubling to 2 s, forever: a replica outlives Redis.
        .set_policy(ReconnectPolicy::new_exponential(0, 100, 2_000, 2));
    Ok(builder)
}

/// With `--redis-wait-replicas`: waits until that many replicas of the
/// shard owning `tag`'s slot hold everything `client` wrote there. Sent
/// as an ordinary (pipelined) command: the `WAIT`s of concurrent writers
/// queue behind each other in Redis, and each after the first finds the
/// replicas mostly caught up. The error says how many acknowledged.
pub async fn wait_for_replicas(
    client: &Client,
    redis: &RedisSettings,
    tag: &str,
) -> Result<(), String> {
    if redis.wait_replicas == 0 {
        return Ok(());
    }
    let slot = fred::util::redis_keyslot(tag.as_bytes());
    let wait = CustomCommand::new_static("WAIT", ClusterHash::Custom(slot), false);
    let timeout_ms = (redis.timeout / 2).as_millis() as i64;
    let wanted = i64::from(redis.wait_replicas);
    let acked: i64 = client
        .custom(wait, vec![wanted, timeout_ms])
        .await
        .map_err(|err| err.to_string())?;
    if acked < wanted {
        return Err(format!(
            "{acked} of {wanted} Redis replicas acknowledged the write in time"
        ));
    }
    Ok(())
}

/// Starts connecting and waits up to [`STARTUP_WAIT`]; false if Redis was
/// not reached by then (the clients keep trying in the background).
pub async fn connect(clients: &[&dyn ClientLikeConnect]) -> bool {
    for client in clients {
        client.start();
    }
    let connected = tokio::time::timeout(STARTUP_WAIT, async {
        for client in clients {
            if !client.wait().await {
                return false;
            }
        }
        true
    })
    .await
    .unwrap_or(false);
    if !connected {
        tracing::warn!("Redis not reachable yet; serving as not ready while retrying");
    }
    connected
}

/// The two fred calls [`connect`] needs, for any kind of fred client.
#[async_trait::async_trait]
pub trait ClientLikeConnect: Sync {
    fn start(&self);
    async fn wait(&self) -> bool;
}

#[async_trait::async_trait]
impl<C: ClientLike + Sync> ClientLikeConnect for C {
    fn start(&self) {
        self.connect();
    }
    async fn wait(&self) -> bool {
        self.wait_for_connect().await.is_ok()
    }
}
