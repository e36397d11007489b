//! `rtchat bench log`: the Redis log on its own, as the chat servers use
//! it. Publishers append to many rooms' logs through the same broadcast
//! code as ws-server, while subscriber replicas (each subscribed to every
//! room) receive them; reports messages per second, publish latency, and
//! the Redis server's CPU per message. What one Redis can carry, apart from
//! what the WebSocket side of one machine can generate.

use super::usage::{Meter, Usage};
use super::{Percentiles, latency_histogram};
use crate::broadcast::{self, HistoryPolicy};
use crate::redis::RedisSettings;
use clap::Args;
use serde::Serialize;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Args)]
pub struct LogBenchArgs {
    /// The Redis to measure (a private one: the run writes `bench-log-*`
    /// rooms).
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    pub redis_url: String,

    /// The Redis server's process id, for its CPU time per message; on a
    /// cluster, every primary's (comma-separated), summed.
    #[arg(long, value_delimiter = ',')]
    pub redis_pid: Vec<u32>,

    /// Rooms the messages are spread over, round-robin.
    #[arg(long, default_value_t = 10_000)]
    pub rooms: usize,

    /// Publishes in flight at once (a busy replica has many).
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,

    /// Replicas subscribed to every room, each receiving every message.
    #[arg(long, default_value_t = 3)]
    pub subscribers: usize,

    /// Payload size in bytes.
    #[arg(long, default_value_t = 100)]
    pub size: usize,

    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub duration: Duration,

    /// Replicas each publish waits for, as the servers' `--redis-wait-replicas`.
    #[arg(long, default_value_t = 0)]
    pub wait_replicas: u32,

    /// Print the report as one JSON object.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Serialize)]
pub struct LogReport {
    pub rooms: usize,
    pub concurrency: usize,
    pub subscribers: usize,
    pub published: u64,
    pub received: u64,
    pub messages_per_s: f64,
    pub publish_latency_ms: Percentiles,
    pub redis_cpu_us_per_message: Option<f64>,
    #[serde(flatten)]
    pub usage: Usage,
}

pub async fn run(args: LogBenchArgs) -> anyhow::Result<()> {
    let settings = RedisSettings {
        url: args.redis_url.clone(),
        timeout: Duration::from_secs(5),
        wait_replicas: args.wait_replicas,
    };
    let policy = HistoryPolicy {
        max_len: 1000,
        max_age: Duration::from_secs(24 * 3600),
    };
    let rooms: Arc<Vec<String>> =
        Arc::new((0..args.rooms).map(|k| format!("bench-log-{k}")).collect());
    let received = Arc::new(AtomicU64::new(0));
    let mut replicas = Vec::new();
    for _ in 0..args.subscribers {
        let received = received.clone();
        let log = broadcast::connect(
            Some(&settings),
            policy,
            Arc::new(move |_| {
                received.fetch_add(1, Ordering::Relaxed);
            }),
        )
        .await?;
        for room in rooms.iter() {
            log.subscribe(room).await?;
        }
        replicas.push(log);
    }
    let publisher = broadcast::connect(Some(&settings), policy, Arc::new(|_| {})).await?;
    let payload = bytes::Bytes::from(vec![b'x'; args.size]);

    let meter = Meter::start(&[], &args.redis_pid);
    let started = Instant::now();
    let deadline = started + args.duration;
    let next = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for _ in 0..args.concurrency.max(1) {
        let (publisher, rooms, next, payload) = (
            publisher.clone(),
            rooms.clone(),
            next.clone(),
            payload.clone(),
        );
        workers.push(tokio::spawn(async move {
            let mut latency = latency_histogram();
            while Instant::now() < deadline {
                let n = next.fetch_add(1, Ordering::Relaxed) as usize;
                let sent = Instant::now();
                publisher
                    .publish(&rooms[n % rooms.len()], payload.clone())
                    .await?;
                let _ = latency.record(sent.elapsed().as_micros().max(1) as u64);
            }
            anyhow::Ok(latency)
        }));
    }
    let mut latency = latency_histogram();
    for worker in workers {
        latency.add(worker.await??)?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let published = latency.len();
    let expected = published * args.subscribers as u64;
    let drain = Instant::now() + Duration::from_secs(5);
    while received.load(Ordering::Relaxed) < expected && Instant::now() < drain {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let usage = meter.stop();
    drop(replicas);
    let report = LogReport {
        rooms: args.rooms,
        concurrency: args.concurrency,
        subscribers: args.subscribers,
        published,
        received: received.load(Ordering::Relaxed),
        messages_per_s: published as f64 / elapsed,
        publish_latency_ms: Percentiles::from_micros(&latency),
        redis_cpu_us_per_message: usage
            .redis_cpu_s
            .filter(|_| published > 0)
            .map(|s| s * 1e6 / published as f64),
        usage,
    };
    super::print_report(&report, args.json, |r| {
        format!(
            "{} rooms, {} in flight, {} subscribed replicas\npublished {}  received {} (of {})\nmessages/s {:.0}\npublish latency ms  p50 {:.2}  p99 {:.2}  max {:.2}\nredis cpu us/message {}",
            r.rooms,
            r.concurrency,
            r.subscribers,
            r.published,
            r.received,
            r.published * r.subscribers as u64,
            r.messages_per_s,
            r.publish_latency_ms.p50,
            r.publish_latency_ms.p99,
            r.publish_latency_ms.max,
            super::usage::ms3(r.redis_cpu_us_per_message)
        )
    })
}
