//! The chaos lane: three ws-server replicas behind the deploy nginx config
//! and a grpc-server, native and Socket.IO members that post and
//! reconnect, backends publishing through the server API, and faults drawn
//! from a seeded schedule, stacked: replicas SIGKILLed and SIGTERMed and
//! started again, partitioned from Redis (a blackhole that leaves sockets
//! open), slowed, and Redis itself restarted (or, on Sentinel, failed
//! over). Afterwards every history is checked against the promises.
//!
//! `CHAOS_SEED=<n>` replays a run's schedule (the seed is printed);
//! `CHAOS_MINUTES=<m>` makes the schedule longer (default 1.5).

mod common;

use common::chaos::{Acked, MemberLog, Verdict, backend, check_messages, native_member};
use common::faults::{Fault, FaultyLink};
use common::swarm::{History, SioSwarm};
use common::*;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

const API_KEY: &str = "chaos-api-key-do-not-log";
const ROOMS: usize = 3;
const NATIVES_PER_ROOM: usize = 3;
const SIO_PER_ROOM: usize = 2;
/// Presence heals within 12 s (README); the bound leaves room for a
/// loaded machine.
const PRESENCE_BOUND: Duration = Duration::from_secs(25);
const READY_BOUND: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_on_one_redis() {
    run(Redis::start_with(&["--appendonly", "yes", "--appendfsync", "always"]).into()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_on_sentinel() {
    run(Backing::Sentinel(SentinelSet::start())).await;
}

/// The Redis the lane runs on.
enum Backing {
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
enum Kind {
    Kill,
    Term,
    Partition,
    Latency,
    RedisRestart,
    Failover,
}

#[derive(Debug, Clone, Copy)]
struct Planned {
    at: Duration,
    kind: Kind,
    replica: usize,
    /// How long a partition or a latency lasts, or a killed replica
    /// stays down.
    lasts: Duration,
}

/// Faults from `seed` over `length`, one every 2-7 s, several at once
/// (never two on one replica, never two on Redis).
fn schedule(seed: u64, length: Duration, kinds: &[Kind]) -> Vec<Planned> {
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

struct Lane {
    backing: Arc<Mutex<Backing>>,
    links: Vec<FaultyLink>,
    urls: Vec<String>,
    ws_port: u16,
    replicas: Arc<Mutex<Vec<Option<Process>>>>,
    extra: Vec<String>,
    _dns: dns::Dns,
    nginx: Nginx,
    grpc: Process,
}

/// A `--redis-url` as it is.
struct Url(String);

impl RedisUrl for Url {
    fn url(&self) -> String {
        self.0.clone()
    }
}

impl Lane {
    async fn start(backing: Backing) -> Self {
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
        let grpc_url = match &backing {
            Backing::One(redis) => redis.url(),
            Backing::Sentinel(set) => set.url(),
        };
        let grpc = Process::grpc_server(
            "grpc-chaos",
            Some(&Url(grpc_url)),
            &["--redis-timeout", "1s"],
        );
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

    fn replica_url(&self, i: usize, path: &str) -> String {
        format!("http://{}:{}{path}", CHAT_IPS[i], self.ws_port)
    }

    /// Starts replica `i` again on its address (after a kill or a drain).
    async fn restart(&self, i: usize) {
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

    async fn inject(&self, fault: Planned) {
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
    async fn all_ready(&self) -> f64 {
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

    /// Members of a room, cluster-wide, as the server API lists them.
    async fn presence(&self, room: &str) -> Option<usize> {
        let body = json!({"room": room}).to_string();
        let url = self.nginx.url("/api/presence");
        let call = api_post(&url, Key::Header(API_KEY), &body);
        let (status, answer) = tokio::time::timeout(Duration::from_secs(5), call)
            .await
            .ok()?;
        (status == 200).then(|| answer["members"].as_array().unwrap().len())
    }

    fn rss_kib(&self) -> Vec<u64> {
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
fn fail_over_and_rejoin(set: &mut SentinelSet) {
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

async fn run(backing: Backing) {
    let seed = std::env::var("CHAOS_SEED")
        .ok()
        .map(|s| s.parse().expect("CHAOS_SEED is a number"))
        .unwrap_or_else(|| fastrand::u64(..));
    let minutes: f64 = std::env::var("CHAOS_MINUTES")
        .ok()
        .map(|s| s.parse().expect("CHAOS_MINUTES is a number"))
        .unwrap_or(1.5);
    eprintln!("chaos seed: {seed} (replay with CHAOS_SEED={seed})");
    let kinds: &[Kind] = match backing {
        Backing::One(_) => &[
            Kind::Kill,
            Kind::Term,
            Kind::Partition,
            Kind::Partition,
            Kind::Latency,
            Kind::RedisRestart,
        ],
        Backing::Sentinel(_) => &[Kind::Kill, Kind::Term, Kind::Failover],
    };
    let plan = schedule(seed, Duration::from_secs_f64(minutes * 60.0), kinds);
    let lane = Arc::new(Lane::start(backing).await);

    let rooms: Vec<String> = (0..ROOMS).map(|r| format!("chaos-{r}")).collect();
    let mut sio = Vec::new();
    for room in &rooms {
        sio.push((
            room.clone(),
            SioSwarm::start(&lane.nginx.url(""), room, SIO_PER_ROOM),
        ));
    }
    let quiet = CancellationToken::new();
    let stop = CancellationToken::new();
    let mut members = Vec::new();
    for (r, room) in rooms.iter().enumerate() {
        for n in 0..NATIVES_PER_ROOM {
            let name = format!("n{r}{n}");
            members.push(native_member(
                &lane.nginx.ws_url(),
                room,
                &name,
                seed ^ (r * 16 + n) as u64,
                quiet.clone(),
                stop.clone(),
            ));
        }
    }
    let backends: Vec<_> = (0..2)
        .map(|b| {
            let name = format!("backend{b}");
            backend(
                &lane.nginx.url(""),
                API_KEY,
                &rooms,
                &name,
                seed ^ (1000 + b),
                quiet.clone(),
            )
        })
        .collect();
    let users = users::start(&lane.grpc, quiet.clone());

    // The schedule, each fault on its own task so that they stack.
    let started = Instant::now();
    let mut faults = Vec::new();
    for fault in plan.clone() {
        let lane = lane.clone();
        faults.push(tokio::spawn(async move {
            tokio::time::sleep_until(started + fault.at).await;
            eprintln!(
                "chaos: {:>5.1} s {:?}",
                started.elapsed().as_secs_f64(),
                fault
            );
            lane.inject(fault).await;
        }));
    }
    for fault in faults {
        fault.await.unwrap();
    }
    let faults_over = started.elapsed();
    for link in &lane.links {
        link.heal();
    }
    let mut verdict = Verdict::default();
    let ready_s = lane.all_ready().await;
    verdict.check(
        "every replica is ready again within 30 s of the last fault",
        vec![],
    );

    // Quiet: every post still unanswered is retried until acknowledged.
    quiet.cancel();
    let mut posts: Vec<Acked> = Vec::new();
    for b in backends {
        posts.extend(b.await.unwrap());
    }
    let (user_changes, user_broken) = users.finish().await;
    verdict.check(
        "SubscribeToUpdates streams got every user change or ended with UNAVAILABLE",
        user_broken,
    );
    // A last message per room, once every member finished its posts.
    wait_for(
        "every member's last post acknowledged",
        DEADLINE * 6,
        async || (!members.iter().any(|m| m.posting.load(Ordering::Relaxed))).then_some(()),
    )
    .await;
    let mut last_ids = Vec::new();
    for room in &rooms {
        let id = api_publish(
            &lane.nginx.url(""),
            API_KEY,
            json!({"room": room, "message": format!("settle-{room}"), "idempotency_key": format!("settle-{room}")}),
        )
        .await;
        let id: u64 = id.parse().unwrap();
        posts.push(Acked {
            room: room.clone(),
            key: format!("settle-{room}"),
            id,
            tries: 1,
        });
        last_ids.push(id);
    }
    let rooms_of: Vec<usize> = (0..ROOMS)
        .flat_map(|r| std::iter::repeat_n(r, NATIVES_PER_ROOM))
        .collect();
    wait_for(
        "every native member to have its room's last message",
        DEADLINE * 3,
        async || {
            members
                .iter()
                .zip(&rooms_of)
                .all(|(m, r)| m.newest.load(Ordering::Relaxed) >= last_ids[*r])
                .then_some(())
        },
    )
    .await;
    let mut histories: Vec<(String, Vec<History>)> = Vec::new();
    for ((room, mut swarm), last) in sio.into_iter().zip(&last_ids) {
        swarm.wait_for(*last).await;
        histories.push((room, swarm.finish()));
    }

    // Presence: exactly the members still connected, whatever died.
    let presence_started = Instant::now();
    let expected = NATIVES_PER_ROOM;
    let mut presence_broken = Vec::new();
    for room in &rooms {
        let healed = tokio::time::timeout(PRESENCE_BOUND, async {
            while lane.presence(room).await != Some(expected) {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
        .await;
        if healed.is_err() {
            presence_broken.push(format!(
                "{room}: {:?}, not {expected}",
                lane.presence(room).await
            ));
        }
    }
    let presence_s = presence_started.elapsed().as_secs_f64();

    let rss_before = lane.rss_kib();
    stop.cancel();
    let mut logs: Vec<MemberLog> = Vec::new();
    for m in members {
        logs.push(m.task.await.unwrap());
    }
    for room in &rooms {
        let emptied = tokio::time::timeout(PRESENCE_BOUND, async {
            while lane.presence(room).await != Some(0) {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
        .await;
        if emptied.is_err() {
            presence_broken.push(format!(
                "{room} kept {:?} after every member left",
                lane.presence(room).await
            ));
        }
    }
    verdict.check(
        "presence lists every connected member and no other, within the healing time",
        presence_broken,
    );
    for log in &logs {
        posts.extend(log.posts.iter().cloned());
    }
    check_messages(&mut verdict, &logs, &histories, &posts);

    // Memory once the faults stop: three looks a few seconds apart.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rss_after = lane.rss_kib();
    let grew: Vec<String> = rss_before
        .iter()
        .zip(&rss_after)
        .enumerate()
        .filter(|(_, (before, after))| **after > **before + 8 * 1024)
        .map(|(i, (before, after))| format!("replica {i}: {before} KiB -> {after} KiB"))
        .collect();
    verdict.check("no replica's RSS keeps growing after the faults", grew);

    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for fault in &plan {
        *counts.entry(format!("{:?}", fault.kind)).or_default() += 1;
    }
    let retried = posts.iter().filter(|p| p.tries > 1).count();
    let delivered: usize = logs.iter().map(|l| l.seen.len()).sum::<usize>()
        + histories
            .iter()
            .flat_map(|(_, h)| h)
            .map(|h| h.ids.len())
            .sum::<usize>();
    let gaps: usize = logs.iter().map(|l| l.gaps.len()).sum::<usize>()
        + histories
            .iter()
            .flat_map(|(_, h)| h)
            .map(|h| h.recovered_false)
            .sum::<usize>();
    let reconnects: usize = logs.iter().map(|l| l.connects.saturating_sub(1)).sum();
    eprintln!(
        "chaos report: seed {seed}; faults over {:.0} s: {counts:?}; clients: {} native, {} Socket.IO, \
         2 backends, 1 gRPC writer; {} messages acknowledged ({retried} after a retry), {delivered} \
         deliveries, {reconnects} native reconnects, {gaps} told recovered: false; {} user changes; \
         ready {ready_s:.1} s after the last fault, presence exact {presence_s:.1} s after; RSS KiB {rss_before:?} -> {rss_after:?}",
        faults_over.as_secs_f64(),
        logs.len(),
        ROOMS * SIO_PER_ROOM,
        posts.len(),
        user_changes,
    );
    for promise in &verdict.checked {
        eprintln!("chaos: kept: {promise}");
    }
    assert!(
        verdict.broken.is_empty(),
        "seed {seed} (replay with CHAOS_SEED={seed}) broke: {:#?}",
        verdict.broken
    );
}

/// gRPC user changes during the faults, and one `SubscribeToUpdates`
/// stream at a time that must see every change made while it was open
/// (from the change's request on) or end with UNAVAILABLE.
mod users {
    use super::common::grpc::create;
    use super::common::{Endpoint, Process};
    use rtchat::grpc::pb::Empty;
    use rtchat::grpc::pb::user_service_client::UserServiceClient;
    use std::collections::HashSet;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;
    use tokio::task::JoinHandle;
    use tokio::time::Instant;
    use tokio_util::sync::CancellationToken;
    use tonic::transport::Channel;

    #[derive(Default)]
    struct Seen {
        /// Per stream: when it opened, the user ids it delivered, how it
        /// ended (`None`: still open).
        streams: Vec<(Instant, HashSet<i32>, Option<tonic::Code>)>,
    }

    pub struct Users {
        writer: JoinHandle<Vec<(Instant, i32)>>,
        reader: JoinHandle<()>,
        seen: Arc<Mutex<Seen>>,
    }

    pub fn start(grpc: &Process, quiet: CancellationToken) -> Users {
        let url = grpc.grpc_url();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let reader = {
            let (url, seen) = (url.clone(), seen.clone());
            tokio::spawn(async move {
                loop {
                    let Ok(mut c) = userservice_client(&url).await else {
                        tokio::time::sleep(Duration::from_millis(300)).await;
                        continue;
                    };
                    let opened = Instant::now();
                    let Ok(stream) = c.subscribe_to_updates(Empty {}).await else {
                        tokio::time::sleep(Duration::from_millis(300)).await;
                        continue;
                    };
                    let mut stream = stream.into_inner();
                    let n = {
                        let mut seen = seen.lock().unwrap();
                        seen.streams.push((opened, HashSet::new(), None));
                        seen.streams.len() - 1
                    };
                    let end = loop {
                        match stream.message().await {
                            Ok(Some(update)) => {
                                if let Some(user) = update.user {
                                    seen.lock().unwrap().streams[n].1.insert(user.id);
                                }
                            }
                            Ok(None) => break tonic::Code::Ok,
                            Err(status) => break status.code(),
                        }
                    };
                    seen.lock().unwrap().streams[n].2 = Some(end);
                }
            })
        };
        let writer = tokio::spawn(async move {
            let mut made = Vec::new();
            let mut n = 0;
            while !quiet.is_cancelled() {
                n += 1;
                let asked = Instant::now();
                if let Ok(mut c) = userservice_client(&url).await {
                    let call = c.create_user(create(
                        &format!("Chaos {n}"),
                        &format!("chaos{n}@example.com"),
                    ));
                    if let Ok(Ok(user)) = tokio::time::timeout(Duration::from_secs(3), call).await {
                        made.push((asked, user.into_inner().id));
                    }
                }
                tokio::time::sleep(Duration::from_millis(700)).await;
            }
            made
        });
        Users {
            writer,
            reader,
            seen,
        }
    }

    async fn userservice_client(
        url: &str,
    ) -> Result<UserServiceClient<Channel>, tonic::transport::Error> {
        UserServiceClient::connect(url.to_owned()).await
    }

    impl Users {
        /// How many changes were made, and the broken promises.
        pub async fn finish(self) -> (usize, Vec<String>) {
            let made = self.writer.await.unwrap();
            // The last change reaches the open stream within the deadline.
            let last = made.last().map(|(_, id)| *id);
            let end = Instant::now() + super::DEADLINE;
            while let Some(last) = last {
                let has = {
                    let seen = self.seen.lock().unwrap();
                    seen.streams
                        .last()
                        .is_some_and(|s| s.1.contains(&last) && s.2.is_none())
                };
                if has || Instant::now() > end {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            self.reader.abort();
            let seen = self.seen.lock().unwrap();
            let mut broken = Vec::new();
            for (i, (opened, ids, end)) in seen.streams.iter().enumerate() {
                match end {
                    Some(tonic::Code::Unavailable) => {}
                    Some(code) => broken.push(format!("stream {i} ended with {code:?}")),
                    None => {
                        for (asked, id) in &made {
                            if asked > opened && !ids.contains(id) {
                                broken.push(format!("stream {i} missed user {id}"));
                            }
                        }
                    }
                }
            }
            (made.len(), broken)
        }
    }
}
