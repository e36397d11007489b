//! The Node original's rolling restart with the same balancer: three
//! replicas of its server.js (Redis URL, port and listen address from the
//! environment) on one Redis behind the deploy nginx config, 600
//! socket.io-client members on WebSocket (the original shares no session,
//! so long-polling needs an affinity the deploy config does not have) and
//! one Socket.IO publisher at 40 messages a second. The original has no
//! message ids, acks or recovery: members keep the publisher's numbers, and
//! what they missed is counted against what it sent.

use super::report;
use crate::common::swarm::{SioSwarm, unix_ms};
use crate::common::*;
use std::collections::HashSet;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const MEMBERS: usize = 600;
const RATE: u32 = 40;

fn replica(dir: &str, redis: &Redis, i: usize, port: u16) -> Child {
    Command::new("node")
        .arg("server.js")
        .current_dir(dir)
        .env("HOST", CHAT_IPS[i])
        .env("PORT", port.to_string())
        .env("REDIS_URL", redis.url())
        .env("SERVER_ID", format!("server-{}", i + 1))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("node")
}

async fn listening(addr: String) {
    wait_for("the replica to listen", DEADLINE, async || {
        std::net::TcpStream::connect(&addr).ok().map(|_| ())
    })
    .await;
}

pub async fn roll() {
    let dir = std::env::var("ORIGINAL").expect("ORIGINAL=the original's directory");
    let redis = Redis::start();
    let port = free_port_on(&CHAT_IPS);
    let mut replicas: Vec<Child> = (0..3).map(|i| replica(&dir, &redis, i, port)).collect();
    for ip in &CHAT_IPS[..3] {
        listening(format!("{ip}:{port}")).await;
    }
    let dns = dns::Dns::start();
    let addrs: Vec<std::net::Ipv4Addr> =
        CHAT_IPS[..3].iter().map(|ip| ip.parse().unwrap()).collect();
    dns.set("ws-server", &addrs);
    let nginx = Nginx::start(|listen| deploy_nginx_config(dns.port, port, listen));
    let env = [
        ("SWARM_TRANSPORTS", "websocket"),
        ("SWARM_KEY", "message"),
        ("SWARM_ACKS", "none"),
    ];
    let mut sio = SioSwarm::start_with(&nginx.url(""), super::ROOM, MEMBERS, &env);
    // Its joins are not confirmed: they have had time to land.
    tokio::time::sleep(Duration::from_secs(2)).await;
    sio.publish(RATE);
    let from = unix_ms();
    tokio::time::sleep(Duration::from_secs(3)).await;
    for (i, child) in replicas.iter_mut().enumerate() {
        let started = unix_ms();
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        wait_for("the replica to exit", Duration::from_secs(60), async || {
            child.try_wait().unwrap().map(|_| ())
        })
        .await;
        println!(
            "replica {} exited {:.1} s after SIGTERM",
            i + 1,
            (unix_ms() - started) as f64 / 1000.0
        );
        *child = replica(&dir, &redis, i, port);
        listening(format!("{}:{port}", CHAT_IPS[i])).await;
    }
    tokio::time::sleep(Duration::from_secs(20)).await;
    sio.quiet();
    // What was sent has arrived by now, or never will.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let sio = sio.report();
    let members = sio.members;
    let sent: HashSet<u64> = sio.sent.iter().map(|s| s.parse().unwrap()).collect();
    println!("{:.1} s in all", (unix_ms() - from) as f64 / 1000.0);
    report(&members, &sent, 0);
    for mut child in replicas {
        let _ = child.kill();
        let _ = child.wait();
    }
}
