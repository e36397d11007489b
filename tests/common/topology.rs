//! Redis past one server, as users run it: a Redis Cluster of three
//! primaries with a replica each, and a Sentinel set (one primary, one
//! replica, three sentinels), all private processes on free ports, each
//! waited for until it really serves.

use super::{DEADLINE, Redis};
use std::time::{Duration, Instant};

/// Anything rtchat can be pointed at with `--redis-url`.
pub trait RedisUrl {
    fn url(&self) -> String;
}

impl RedisUrl for Redis {
    fn url(&self) -> String {
        Redis::url(self)
    }
}

impl RedisUrl for RedisCluster {
    fn url(&self) -> String {
        RedisCluster::url(self)
    }
}

impl RedisUrl for SentinelSet {
    fn url(&self) -> String {
        SentinelSet::url(self)
    }
}

/// The Redis a scenario runs on, when it runs on several.
pub enum Shared {
    One(Redis),
    Cluster(RedisCluster),
    Sentinel(SentinelSet),
}

impl Shared {
    /// The single Redis, for scenarios that restart it.
    pub fn one(&mut self) -> &mut Redis {
        match self {
            Shared::One(redis) => redis,
            _ => panic!("this scenario runs on one Redis"),
        }
    }

    /// Cuts every pub/sub connection on every node.
    pub fn kill_subscribers(&self) {
        let nodes: Vec<&Redis> = match self {
            Shared::One(redis) => vec![redis],
            Shared::Cluster(cluster) => cluster.nodes.iter().collect(),
            Shared::Sentinel(set) => vec![&set.primary, &set.replica],
        };
        for node in nodes.into_iter().filter(|n| n.pid().is_some()) {
            node.kill_subscribers();
        }
    }
}

impl RedisUrl for Shared {
    fn url(&self) -> String {
        match self {
            Shared::One(redis) => redis.url(),
            Shared::Cluster(cluster) => cluster.url(),
            Shared::Sentinel(set) => set.url(),
        }
    }
}

/// Polls `check` until it is true, or panics with `what` after `within`.
pub fn wait_until(what: &str, within: Duration, mut check: impl FnMut() -> bool) {
    let end = Instant::now() + within;
    while !check() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Three primaries and three replicas, created with `redis-cli --cluster
/// create`. A node's failure is noticed after two seconds (shorter, a
/// node merely slowed by a loaded machine is failed over).
pub struct RedisCluster {
    pub nodes: Vec<Redis>,
}

impl RedisCluster {
    pub fn start() -> Self {
        let nodes: Vec<Redis> = (0..6)
            .map(|_| {
                Redis::start_with(&[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "2000",
                    "--cluster-port",
                    "0",
                    // A replica always may take over, however long its
                    // primary was away.
                    "--cluster-replica-validity-factor",
                    "0",
                ])
            })
            .collect();
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let out = std::process::Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .output()
            .expect("redis-cli comes with redis-server");
        assert!(
            out.status.success(),
            "cluster create failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let cluster = Self { nodes };
        cluster.wait_healthy();
        cluster
    }

    /// fred's URL form: any node as the seed, the others as `node=`.
    pub fn url(&self) -> String {
        let mut url = format!("redis-cluster://127.0.0.1:{}?", self.nodes[0].port);
        let others: Vec<String> = self.nodes[1..]
            .iter()
            .map(|n| format!("node=127.0.0.1:{}", n.port))
            .collect();
        url.push_str(&others.join("&"));
        url
    }

    /// Every live node says the cluster is ok, agrees on who serves each
    /// slot, and every replica is in sync with its primary.
    pub fn wait_healthy(&self) {
        wait_until("a healthy Redis Cluster", 3 * DEADLINE, || {
            let live: Vec<&Redis> = self.nodes.iter().filter(|n| n.pid().is_some()).collect();
            let ok = live.iter().all(|n| {
                n.try_cli(&["CLUSTER", "INFO"])
                    .is_some_and(|info| info.contains("cluster_state:ok"))
            });
            let views: Vec<Option<Vec<(u16, u16)>>> =
                live.iter().map(|n| self.primaries_seen_by(n)).collect();
            let agreed = views.iter().all(|v| v.is_some() && *v == views[0]);
            let synced = live.iter().all(|n| {
                n.try_cli(&["INFO", "replication"]).is_some_and(|info| {
                    !info.contains("role:slave") || info.contains("master_link_status:up")
                })
            });
            ok && agreed && synced
        });
    }

    /// (first slot, port) of each primary as `node` sees them, sorted.
    fn primaries_seen_by(&self, node: &Redis) -> Option<Vec<(u16, u16)>> {
        let nodes = node.try_cli(&["CLUSTER", "NODES"])?;
        let mut primaries = Vec::new();
        for line in nodes.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 9 || !fields[2].contains("master") || fields[2].contains("fail") {
                continue;
            }
            let port = fields[1].split(['@', ':']).nth(1)?.parse().ok()?;
            let first = fields[8].split('-').next()?.parse().ok()?;
            primaries.push((first, port));
        }
        primaries.sort();
        (primaries.len() == 3).then_some(primaries)
    }

    /// The slot a key (or a room's topic) hashes to, as Redis computes it.
    pub fn keyslot(&self, key: &str) -> u16 {
        self.live()
            .cli(&["CLUSTER", "KEYSLOT", key])
            .parse()
            .unwrap()
    }

    /// Index in `nodes` of the primary serving `slot` now.
    pub fn primary_of(&self, slot: u16) -> usize {
        self.try_primary_of(slot)
            .unwrap_or_else(|| panic!("no primary serves slot {slot}"))
    }

    /// The same, `None` while none does (during a failover).
    fn try_primary_of(&self, slot: u16) -> Option<usize> {
        let nodes = self.live().try_cli(&["CLUSTER", "NODES"])?;
        for line in nodes.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 9 || !fields[2].contains("master") || fields[2].contains("fail") {
                continue;
            }
            let owns = fields[8..].iter().any(|range| {
                let mut ends = range.split('-').map(|s| s.parse::<u16>());
                match (ends.next(), ends.next()) {
                    (Some(Ok(a)), Some(Ok(b))) => (a..=b).contains(&slot),
                    (Some(Ok(a)), None) => a == slot,
                    _ => false,
                }
            });
            if owns {
                let port: u16 = fields[1].split(['@', ':']).nth(1)?.parse().ok()?;
                return self.nodes.iter().position(|n| n.port == port);
            }
        }
        None
    }

    /// The indexes of the three primaries, in slot order.
    pub fn primaries(&self) -> Vec<usize> {
        let view = self
            .primaries_seen_by(self.live())
            .expect("three primaries");
        view.iter()
            .map(|(_, port)| self.nodes.iter().position(|n| n.port == *port).unwrap())
            .collect()
    }

    /// SIGKILLs the primary serving `slot` and waits until its replica has
    /// taken over and the cluster serves every slot again.
    pub fn kill_primary_of(&mut self, slot: u16) -> usize {
        let old = self.primary_of(slot);
        self.nodes[old].stop();
        wait_until("a replica promoted", 3 * DEADLINE, || {
            self.live()
                .try_cli(&["CLUSTER", "INFO"])
                .is_some_and(|info| info.contains("cluster_state:ok"))
                && self.try_primary_of(slot).is_some_and(|new| new != old)
        });
        old
    }

    /// Moves one slot, with its keys, from its primary to primary `to`,
    /// the way `redis-cli --cluster reshard` does it: importing and
    /// migrating marks, `MIGRATE` of every key, then the new owner told to
    /// every primary.
    pub fn move_slot(&self, slot: u16, to: usize) {
        let from = self.primary_of(slot);
        let id = |i: usize| self.nodes[i].cli(&["CLUSTER", "MYID"]);
        let (from_id, to_id) = (id(from), id(to));
        let slot_s = slot.to_string();
        let (src, dst) = (&self.nodes[from], &self.nodes[to]);
        dst.cli(&["CLUSTER", "SETSLOT", &slot_s, "IMPORTING", &from_id]);
        src.cli(&["CLUSTER", "SETSLOT", &slot_s, "MIGRATING", &to_id]);
        loop {
            let keys = src.cli(&["CLUSTER", "GETKEYSINSLOT", &slot_s, "100"]);
            let keys: Vec<&str> = keys.lines().filter(|k| !k.is_empty()).collect();
            if keys.is_empty() {
                break;
            }
            let port = dst.port.to_string();
            let mut args = vec!["MIGRATE", "127.0.0.1", &port, "", "0", "5000", "KEYS"];
            args.extend(keys);
            assert_eq!(src.cli(&args), "OK");
        }
        for i in self.primaries() {
            self.nodes[i].cli(&["CLUSTER", "SETSLOT", &slot_s, "NODE", &to_id]);
        }
        wait_until("every node to agree on the moved slot", DEADLINE, || {
            self.try_primary_of(slot) == Some(to)
        });
    }

    fn live(&self) -> &Redis {
        self.nodes
            .iter()
            .find(|n| n.pid().is_some())
            .expect("a live node")
    }

    /// Process ids of the primaries, for their CPU time.
    pub fn primary_pids(&self) -> Vec<u32> {
        self.primaries()
            .into_iter()
            .filter_map(|i| self.nodes[i].pid())
            .collect()
    }
}

/// One primary, one replica and three sentinels watching them as `rtchat`.
pub struct SentinelSet {
    pub primary: Redis,
    pub replica: Redis,
    pub sentinels: Vec<Redis>,
}

pub const SENTINEL_SERVICE: &str = "rtchat";

impl SentinelSet {
    pub fn start() -> Self {
        let primary = Redis::start();
        let replica = Redis::start_with(&["--replicaof", "127.0.0.1", &primary.port.to_string()]);
        let monitor = format!(
            "sentinel monitor {SENTINEL_SERVICE} 127.0.0.1 {} 2",
            primary.port
        );
        let sentinels = (0..3)
            .map(|_| {
                Redis::start_sentinel(&[
                    &monitor,
                    // Not shorter: on a loaded machine a slow reply would
                    // be taken for a dead primary and failed over.
                    &format!("sentinel down-after-milliseconds {SENTINEL_SERVICE} 3000"),
                    &format!("sentinel failover-timeout {SENTINEL_SERVICE} 5000"),
                ])
            })
            .collect();
        let set = Self {
            primary,
            replica,
            sentinels,
        };
        wait_until(
            "sentinels that know each other and the replica",
            3 * DEADLINE,
            || {
                set.sentinels.iter().all(|s| {
                    let others = s
                        .try_cli(&["SENTINEL", "SENTINELS", SENTINEL_SERVICE])
                        .unwrap_or_default();
                    let replicas = s
                        .try_cli(&["SENTINEL", "REPLICAS", SENTINEL_SERVICE])
                        .unwrap_or_default();
                    others.matches("runid").count() == 2
                        && replicas.contains(&set.replica.port.to_string())
                }) && set
                    .replica
                    .try_cli(&["INFO", "replication"])
                    .is_some_and(|i| i.contains("master_link_status:up"))
                    && set.primary_port() == Some(set.primary.port)
            },
        );
        set
    }

    /// fred's URL form: a sentinel as the host, the others as `node=`.
    pub fn url(&self) -> String {
        format!(
            "redis-sentinel://127.0.0.1:{}?node=127.0.0.1:{}&node=127.0.0.1:{}&sentinelServiceName={SENTINEL_SERVICE}",
            self.sentinels[0].port, self.sentinels[1].port, self.sentinels[2].port
        )
    }

    /// The port every sentinel names as the primary, once they agree.
    pub fn primary_port(&self) -> Option<u16> {
        let ports: Vec<Option<u16>> = self
            .sentinels
            .iter()
            .map(|s| {
                let reply =
                    s.try_cli(&["SENTINEL", "GET-MASTER-ADDR-BY-NAME", SENTINEL_SERVICE])?;
                reply.lines().nth(1)?.trim().parse().ok()
            })
            .collect();
        ports[0].filter(|_| ports.iter().all(|p| *p == ports[0]))
    }

    /// SIGKILLs the primary and waits until the sentinels have promoted the
    /// replica and it accepts writes.
    pub fn fail_over(&mut self) {
        self.primary.stop();
        let replica = self.replica.port;
        wait_until("the sentinels to promote the replica", 3 * DEADLINE, || {
            self.primary_port() == Some(replica)
                && self
                    .replica
                    .try_cli(&["ROLE"])
                    .is_some_and(|role| role.starts_with("master"))
        });
    }
}

/// Runs each scenario `fn(redis: Shared)` on one Redis (`one_redis::name`)
/// and on a Redis Cluster (`redis_cluster::name`).
#[allow(unused_macros)]
macro_rules! on_one_redis_and_a_cluster {
    ($($scenario:ident),* $(,)?) => {
        mod one_redis {
            use crate::common::{Redis, Shared};
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $scenario() { super::$scenario(Shared::One(Redis::start())).await })*
        }
        mod redis_cluster {
            use crate::common::{RedisCluster, Shared};
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $scenario() {
                let cluster = tokio::task::spawn_blocking(RedisCluster::start).await.unwrap();
                super::$scenario(Shared::Cluster(cluster)).await
            })*
        }
    };
}
