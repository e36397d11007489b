//! `cargo bench --bench deploys -- <scenario>`: what a deploy and a
//! scale-out do to the clients, measured on the test deployment (three
//! replicas on one private Redis behind the deploy nginx config, 500
//! native members resuming with `since`, 100 socket.io-client members
//! recovering, two publishers at 20 acknowledged messages a second).
//!
//! Scenarios: `roll-before` and `roll-after` (a rolling restart with the
//! drain off and with the default drain), `scale-before` and `scale-after`
//! (a fourth replica, rebalancing off and on), `roll-original` (the Node
//! original, ORIGINAL=its directory with node_modules, with 600
//! socket.io-client members on WebSocket and one Socket.IO publisher).
//! Each prints the reconnects' peaks, reconnect times, deliveries and the
//! replicas' socket counts over time. Needs what the test suite installs.

#[path = "../common/mod.rs"]
mod common;

use common::crowd::peak;
use common::swarm::{History, NativeSwarm, Posts, SioSwarm, publisher, unix_ms};
use common::*;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const ROOM: &str = "deploy";
const NATIVE: usize = 500;
const SOCKETIO: usize = 100;
const RATE: u32 = 20;
/// The drain as it was: every socket closed at once, nothing rebalanced.
const BEFORE: &[&str] = &[
    "--drain-delay",
    "0s",
    "--drain-duration",
    "0s",
    "--rebalance",
    "off",
];
const AFTER: &[&str] = &[];

fn main() {
    let scenario = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .unwrap_or_default();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        match scenario.as_str() {
            "roll-before" => roll(BEFORE).await,
            "roll-after" => roll(AFTER).await,
            "scale-before" => scale(BEFORE).await,
            "scale-after" => scale(AFTER).await,
            "roll-original" => node_original::roll().await,
            _ => eprintln!(
                "usage: cargo bench --bench deploys -- \
                 roll-before|roll-after|scale-before|scale-after|roll-original"
            ),
        }
    });
}

/// Every replica's open sockets, once a second, by the replicas' own
/// gauge (`None` while one is down).
#[derive(Clone, Default)]
struct Counts(Arc<Mutex<Vec<Sample>>>);

/// When (Unix ms), and each replica's count.
type Sample = (u64, Vec<Option<u64>>);

impl Counts {
    fn sample(&self, addrs: Vec<String>, stop: CancellationToken) {
        let counts = self.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(1));
            while !stop.is_cancelled() {
                every.tick().await;
                let mut now = Vec::new();
                for addr in &addrs {
                    now.push(sockets(addr).await);
                }
                counts.0.lock().unwrap().push((unix_ms(), now));
            }
        });
    }

    fn print(&self, from: u64, every: usize) {
        println!("sockets per replica over time (s: counts):");
        for (at, counts) in self.0.lock().unwrap().iter().step_by(every) {
            let shown: Vec<String> = counts
                .iter()
                .map(|c| c.map_or("-".into(), |n| n.to_string()))
                .collect();
            println!(
                "  {:>5.1}: {}",
                (*at - from) as f64 / 1000.0,
                shown.join(" ")
            );
        }
    }
}

/// A replica's gauge of open sockets, `None` while it is down.
async fn sockets(addr: &str) -> Option<u64> {
    use std::io::{Read, Write};
    let addr: std::net::SocketAddr = addr.parse().ok()?;
    let metrics = tokio::task::spawn_blocking(move || {
        let mut stream =
            std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        let request = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).ok()?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer).ok()?;
        Some(answer)
    })
    .await
    .ok()??;
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("rtchat_connections ")?.trim().parse().ok())
}

fn metrics_addrs(d: &ChatDeployment, n: usize) -> Vec<String> {
    CHAT_IPS[..n]
        .iter()
        .map(|ip| format!("{ip}:{}", d.ws_port))
        .collect()
}

/// Peaks of reconnects (when each member was back) per 100 ms and per
/// second, reconnect times, and deliveries of the acknowledged messages.
fn report(members: &[History], acked: &HashSet<u64>, unanswered: usize) {
    let back: Vec<u64> = members
        .iter()
        .flat_map(|m| m.closes.iter().zip(&m.reconnect_ms).map(|(c, r)| c + r))
        .collect();
    let mut times: Vec<u64> = members
        .iter()
        .flat_map(|m| m.reconnect_ms.clone())
        .collect();
    times.sort_unstable();
    let pct =
        |q: f64| times.get(((times.len() as f64 * q) as usize).min(times.len().saturating_sub(1)));
    let closes: Vec<u64> = members.iter().flat_map(|m| m.closes.clone()).collect();
    println!(
        "closes: {}, peak {} in 100 ms, {} in 1 s",
        closes.len(),
        peak(closes.clone(), 100).0,
        peak(closes, 1000).0
    );
    println!(
        "reconnects: {}, peak {} in 100 ms, {} in 1 s; reconnect time p50 {:?} ms, p99 {:?} ms, max {:?} ms",
        back.len(),
        peak(back.clone(), 100).0,
        peak(back, 1000).0,
        pct(0.5),
        pct(0.99),
        times.last()
    );
    let expected = acked.len() * members.len();
    let (mut delivered, mut missing, mut twice, mut told_lost) = (0, 0, 0, 0);
    for m in members {
        let seen: HashSet<u64> = m.ids.iter().copied().collect();
        twice += m.ids.len() - seen.len();
        let got = acked.intersection(&seen).count();
        delivered += got;
        missing += acked.len() - got;
        told_lost += m.recovered_false;
    }
    println!(
        "deliveries: {delivered} of {expected} ({} messages x {} members), \
         {missing} missing, {twice} duplicated, {told_lost} recovered: false, \
         {unanswered} posts unanswered",
        acked.len(),
        members.len()
    );
}

struct Load {
    natives: NativeSwarm,
    sio: SioSwarm,
    publishers: Vec<tokio::task::JoinHandle<Posts>>,
    stop: CancellationToken,
}

impl Load {
    async fn start(d: &ChatDeployment) -> Self {
        let url = d.nginx.ws_url();
        let natives = NativeSwarm::start(&url, ROOM, NATIVE).await;
        let sio = SioSwarm::start(&d.nginx.url(""), ROOM, SOCKETIO);
        let stop = CancellationToken::new();
        let publishers = ["a", "b"]
            .iter()
            .map(|name| publisher(&url, ROOM, name, RATE, stop.clone()))
            .collect();
        Self {
            natives,
            sio,
            publishers,
            stop,
        }
    }

    async fn finish(mut self, d: &ChatDeployment) {
        self.stop.cancel();
        let mut acked = HashSet::new();
        let mut unanswered = 0;
        for p in self.publishers {
            let posts = p.await.unwrap();
            acked.extend(posts.acked);
            unanswered += posts.unanswered.len();
        }
        let url = d.nginx.ws_url();
        let last: u64 = Client::connect(&url)
            .await
            .say(ROOM, "settle")
            .await
            .parse()
            .unwrap();
        acked.insert(last);
        let natives = &self.natives;
        wait_for(
            "every member to have the last message",
            DEADLINE * 6,
            async || natives.all_reached(last).then_some(()),
        )
        .await;
        self.sio.wait_for(last).await;
        let mut members = self.natives.finish().await;
        members.extend(self.sio.finish());
        report(&members, &acked, unanswered);
    }
}

async fn roll(flags: &[&str]) {
    let mut d = ChatDeployment::start_with(flags);
    let load = Load::start(&d).await;
    let counts = Counts::default();
    let stop = CancellationToken::new();
    counts.sample(metrics_addrs(&d, 3), stop.clone());
    let from = unix_ms();
    tokio::time::sleep(Duration::from_secs(3)).await;
    for i in 0..d.replicas.len() {
        let started = unix_ms();
        d.replicas[i].signal("TERM");
        let status = d.replicas[i]
            .wait_exit_within(Duration::from_secs(60))
            .await;
        println!(
            "replica {} exited ({status}) {:.1} s after SIGTERM",
            i + 1,
            (unix_ms() - started) as f64 / 1000.0
        );
        d.replicas[i] = chat_replica(&d.redis, i, d.ws_port, flags);
        let ready = d.replicas[i].http_url("/readyz");
        wait_for("the new replica to be ready", DEADLINE, async || {
            (http_get(&ready).await.0 == 200).then_some(())
        })
        .await;
    }
    // What the roll left behind, and rebalancing (when on) undoing it.
    tokio::time::sleep(Duration::from_secs(20)).await;
    stop.cancel();
    load.finish(&d).await;
    counts.print(from, 1);
}

async fn scale(flags: &[&str]) {
    let mut d = ChatDeployment::start_with(flags);
    let load = Load::start(&d).await;
    let counts = Counts::default();
    let stop = CancellationToken::new();
    counts.sample(metrics_addrs(&d, 4), stop.clone());
    let from = unix_ms();
    tokio::time::sleep(Duration::from_secs(3)).await;
    d.replicas.push(chat_replica(&d.redis, 3, d.ws_port, flags));
    let addrs: Vec<std::net::Ipv4Addr> =
        CHAT_IPS[..4].iter().map(|ip| ip.parse().unwrap()).collect();
    d.dns.set("ws-server", &addrs);
    println!("a fourth replica at 3 s");
    tokio::time::sleep(Duration::from_secs(60)).await;
    stop.cancel();
    let mut shed = 0;
    for r in &d.replicas {
        let (_, m) = http_get(&r.http_url("/metrics")).await;
        shed += m
            .lines()
            .find_map(|l| {
                l.strip_prefix("rtchat_rebalanced_sockets_total ")?
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
            .unwrap_or(0);
    }
    println!("sockets sent elsewhere by rebalancing: {shed}");
    load.finish(&d).await;
    counts.print(from, 3);
}

mod node_original;
