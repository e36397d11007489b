//! The system under test and the faults done to it: three ws-server
//! replicas behind the deploy nginx config, each reaching Redis through a
//! link the schedule can break (on one Redis), a grpc-server, and the
//! seeded schedule of faults.

use crate::common::faults::{Fault, FaultyLink};
use crate::common::*;
use serde_json::json;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

pub const API_KEY: &str = "chaos-api-key-do-not-log";
const READY_BOUND: Duration = Duration::from_secs(30);

/// The Redis the lane runs on.
pub enum Backing {
    /// One Redis with its acknowledged writes on disk (AOF, fsync always),
    /// each replica reaching it through a link the schedule can break.
    One(Redis),
    /// A primary, a replica and three sentinels; the links cannot stand
    /// between a replica and the primary the sentinels name, so this run
    /// fails over instead of partitioning.
    Sentinel(SentinelSet),
}

impl From<Redis> for Backing {
    fn from(redis: Redis) -> Self {
        Self::One(redis)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Kill,
    Term,
    Partition,
    Latency,
    RedisRestart,
    Failover,
}

#[derive(Debug, Clone, Copy)]
pub struct Planned {
    pub at: Duration,
    pub kind: Kind,
    pub replica: usize,
    /// How long a partition or a latency lasts, or a killed replica
    /// stays down.
    pub lasts: Duration,
}

/// Faults from `seed` over `length`, one every 2-7 s, several at once
/// (never two on one replica, never two on Redis).
pub fn schedule(seed: u64, length: Duration, kinds: &[Kind]) -> Vec<Planned> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut plan = Vec::new();
    let mut busy_until = [Duration::ZERO; 3];
    let mut redis_busy_until = Duration::ZERO;
    let mut at = Duration::from_secs(3);
    while at < length {
        let kind = kinds[rng.usize(..kinds.len())];
        let replica = rng.usize(..3);
        let lasts = match kind {
            Kind::Partition => Duration::from_millis(rng.u64(5_000..20_000)),
            Kind::Latency => Duration::from_millis(rng.u64(3_000..10_000)),
            Kind::Kill => Duration::from_millis(rng.u64(500..3_000)),
            Kind::Term => Duration::from_secs(6),
            Kind::RedisRestart | Kind::Failover => Duration::from_secs(8),
        };
        let on_redis = matches!(kind, Kind::RedisRestart | Kind::Failover);
        let free = if on_redis {
            redis_busy_until <= at
        } else {
            busy_until[replica] <= at
        };
        if free {
            if on_redis {
                redis_busy_until = at + lasts;
            } else {
                busy_until[replica] = at + lasts + Duration::from_secs(2);
            }
            plan.push(Planned {
                at,
                kind,
                replica,
                lasts,
            });
        }
        at += Duration::from_millis(rng.u64(2_000..7_000));
    }
    plan
}

pub struct Lane {
    pub backing: Arc<Mutex<Backing>>,
    pub links: Vec<FaultyLink>,
    urls: Vec<String>,
    ws_port: u16,
    replicas: Arc<Mutex<Vec<Option<Process>>>>,
    extra: Vec<String>,
    _dns: dns::Dns,
    pub nginx: Nginx,
    pub grpc: Process,
}

/// A `--redis-url` as it is.
pub struct Url(String);

impl RedisUrl for Url {
    fn url(&self) -> String {
        self.0.clone()
    }
}

impl Lane {
    pub async fn start(backing: Backing) -> Self {
        let (links, urls, extra) = match &backing {
            Backing::One(redis) => {
                let mut links = Vec::new();
                for _ in 0..3 {
                    links.push(FaultyLink::to_redis(redis.port).await);
                }
                let urls = links.iter().map(|l| l.url()).collect();
                (links, urls, vec![])
            }
            Backing::Sentinel(set) => (
                vec![],
                vec![set.url(); 3],
                vec!["--redis-wait-replicas".to_owned(), "1".to_owned()],
            ),
        };
        let mut extra = extra;
        extra.extend(
            [
                "--api-key",
                API_KEY,
                "--redis-timeout",
                "1s",
                "--drain-delay",
                "1s",
                "--drain-duration",
                "2s",
            ]
            .map(String::from),
        );
        // On Sentinel its user writes are waited for like the replicas'
        // posts: without it a failover may lose an acknowledged change
        // (README, Redis Cluster and Sentinel), and its stream with it.
        let (grpc_url, grpc_flags) = match &backing {
            Backing::One(redis) => (redis.url(), vec!["--redis-timeout", "1s"]),
            Backing::Sentinel(set) => (
                set.url(),
                vec!["--redis-timeout", "1s", "--redis-wait-replicas", "1"],
            ),
        };
        let grpc = Process::grpc_server("grpc-chaos", Some(&Url(grpc_url)), &grpc_flags);
        let ws_port = free_port_on(&CHAT_IPS);
        let args: Vec<&str> = extra.iter().map(String::as_str).collect();
        let replicas = (0..3)
            .map(|i| Some(chat_replica(&Url(urls[i].clone()), i, ws_port, &args)))
            .collect();
        let dns = dns::Dns::start();
        let ips: Vec<std::net::Ipv4Addr> =
            CHAT_IPS[..3].iter().map(|ip| ip.parse().unwrap()).collect();
        dns.set("ws-server", &ips);
        let nginx = Nginx::start(|port| deploy_nginx_config(dns.port, ws_port, port));
        Self {
            backing: Arc::new(Mutex::new(backing)),
            links,
            urls,
            ws_port,
            replicas: Arc::new(Mutex::new(replicas)),
            extra,
            _dns: dns,
            nginx,
            grpc,
        }
    }

    pub fn replica_url(&self, i: usize, path: &str) -> String {
        format!("http://{}:{}{path}", CHAT_IPS[i], self.ws_port)
    }

    /// Starts replica `i` again on its address (after a kill or a drain).
    pub async fn restart(&self, i: usize) {
        let url = Url(self.urls[i].clone());
        let (port, extra) = (self.ws_port, self.extra.clone());
        let process = tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = extra.iter().map(String::as_str).collect();
            chat_replica(&url, i, port, &args)
        })
        .await
        .unwrap();
        self.replicas.lock().unwrap()[i] = Some(process);
    }

    pub async fn inject(&self, fault: Planned) {
        let i = fault.replica;
        match fault.kind {
            Kind::Kill => {
                let taken = self.replicas.lock().unwrap()[i].take();
                if let Some(mut process) = taken {
                    process.kill();
                }
                tokio::time::sleep(fault.lasts).await;
                self.restart(i).await;
            }
            Kind::Term => {
                let taken = self.replicas.lock().unwrap()[i].take();
                if let Some(mut process) = taken {
                    process.signal("TERM");
                    // Its drain: not ready, then its sockets sent elsewhere.
                    let end = Instant::now() + DEADLINE * 2;
                    while process.is_running() {
                        assert!(
                            Instant::now() < end,
                            "replica {i} did not exit after SIGTERM"
                        );
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
                self.restart(i).await;
            }
            Kind::Partition => {
                self.links[i].set(Fault::Blackhole);
                tokio::time::sleep(fault.lasts).await;
                self.links[i].heal();
            }
            Kind::Latency => {
                self.links[i].set(Fault::Latency(Duration::from_millis(150)));
                tokio::time::sleep(fault.lasts).await;
                self.links[i].heal();
            }
            Kind::RedisRestart => {
                let backing = self.backing.clone();
                tokio::task::spawn_blocking(move || match &mut *backing.lock().unwrap() {
                    Backing::One(redis) => redis.restart(),
                    Backing::Sentinel(_) => unreachable!("one Redis only"),
                })
                .await
                .unwrap();
            }
            Kind::Failover => {
                let backing = self.backing.clone();
                tokio::task::spawn_blocking(move || match &mut *backing.lock().unwrap() {
                    Backing::Sentinel(set) => fail_over_and_rejoin(set),
                    Backing::One(_) => unreachable!("Sentinel only"),
                })
                .await
                .unwrap();
            }
        }
    }

    /// Seconds until every replica answers ready (a command works).
    pub async fn all_ready(&self) -> f64 {
        let started = Instant::now();
        for i in 0..3 {
            let url = self.replica_url(i, "/readyz");
            wait_for(
                "every replica ready after the faults",
                READY_BOUND,
                async || (http_get_maybe(&url).await == Some(200)).then_some(()),
            )
            .await;
        }
        started.elapsed().as_secs_f64()
    }

    /// Members of a room, cluster-wide, as the server API lists them: each
    /// one's user.
    pub async fn presence(&self, room: &str) -> Option<Vec<String>> {
        let body = json!({"room": room}).to_string();
        let url = self.nginx.url("/api/presence");
        let call = api_post(&url, Key::Header(API_KEY), &body);
        let (status, answer) = tokio::time::timeout(Duration::from_secs(5), call)
            .await
            .ok()?;
        (status == 200).then(|| {
            let members = answer["members"].as_array().unwrap();
            members
                .iter()
                .map(|m| m["user"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
    }

    /// A room's presence hash as Redis holds it (each entry names the
    /// replica instances holding it) and the instances alive, for a
    /// presence that never settled.
    pub fn presence_in_redis(&self, room: &str) -> String {
        let backing = self.backing.lock().unwrap();
        let redis = match &*backing {
            Backing::One(redis) => redis,
            Backing::Sentinel(set) => [&set.primary, &set.replica]
                .into_iter()
                .find(|r| {
                    r.try_cli(&["ROLE"])
                        .is_some_and(|role| role.starts_with("master"))
                })
                .unwrap_or(&set.primary),
        };
        let key = format!("rtchat:presence:{{room:{room}}}");
        let entries = redis.try_cli(&["HGETALL", &key]).unwrap_or_default();
        let alive = redis
            .try_cli(&["KEYS", "rtchat:alive:*"])
            .unwrap_or_default();
        format!("{key}: {entries:?}; alive: {alive:?}")
    }

    pub fn rss_kib(&self) -> Vec<u64> {
        let replicas = self.replicas.lock().unwrap();
        replicas
            .iter()
            .flatten()
            .map(|p| {
                let status = std::fs::read_to_string(format!("/proc/{}/status", p.pid())).unwrap();
                status
                    .lines()
                    .find_map(|l| l.strip_prefix("VmRSS:"))
                    .and_then(|v| v.split_whitespace().next()?.parse().ok())
                    .unwrap()
            })
            .collect()
    }
}

/// Kills the primary, lets the sentinels promote the replica, and starts
/// the old primary again as the new one's replica, so that the next
/// failover has somewhere to go.
pub fn fail_over_and_rejoin(set: &mut SentinelSet) {
    set.fail_over();
    let new_primary = set.replica.port;
    set.primary.restart_as_replica_of(new_primary);
    std::mem::swap(&mut set.primary, &mut set.replica);
    wait_until("the old primary to sync as a replica", DEADLINE * 3, || {
        set.replica
            .try_cli(&["INFO", "replication"])
            .is_some_and(|i| i.contains("master_link_status:up"))
    });
}
