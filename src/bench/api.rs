//! Server API benchmark: `POST /api/publish` over keep-alive HTTP/1.1
//! connections, one request in flight on each, for publishes per second
//! and their latency percentiles.

use super::usage::{Meter, Usage, ms3, opt};
use super::{Percentiles, latency_histogram};
use anyhow::{Context, bail};
use axum::body::Body;
use clap::Args;
use serde::Serialize;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Args)]
pub struct ApiBenchArgs {
    /// The chat server's base URL.
    #[arg(long, env = "API_URL", default_value = "http://127.0.0.1:3000")]
    pub url: String,

    /// The server's API key.
    #[arg(long, env = "API_KEY", hide_env_values = true)]
    pub api_key: String,

    /// Connections, each with one publish in flight.
    #[arg(long, default_value_t = 1)]
    pub connections: usize,

    /// Rooms the publishes are spread over.
    #[arg(long, default_value_t = 1)]
    pub rooms: usize,

    /// How long to publish.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub duration: Duration,

    /// Server process ids, for their CPU time and memory.
    #[arg(long = "pid", value_delimiter = ',')]
    pub pids: Vec<u32>,

    /// Print the report as one JSON object.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Serialize)]
pub struct ApiReport {
    pub connections: usize,
    pub rooms: usize,
    pub duration_s: f64,
    pub publishes: u64,
    pub errors: u64,
    pub publishes_per_s: f64,
    pub latency_ms: Percentiles,
    pub server_cpu_us_per_publish: Option<f64>,
    #[serde(flatten)]
    pub usage: Usage,
}

struct Worker {
    publishes: u64,
    errors: u64,
    latency: hdrhistogram::Histogram<u64>,
}

pub async fn run(args: ApiBenchArgs) -> anyhow::Result<()> {
    if args.connections == 0 || args.rooms == 0 {
        bail!("need at least one connection and one room");
    }
    crate::process::raise_fd_limit();
    let base: axum::http::Uri = args.url.parse().context("invalid --url")?;
    if base.scheme_str() != Some("http") {
        bail!("--url must be http://host:port");
    }
    let authority = base.authority().context("--url has no host")?.to_string();
    let mut senders = Vec::with_capacity(args.connections);
    for _ in 0..args.connections {
        let tcp = tokio::net::TcpStream::connect(&authority)
            .await
            .with_context(|| format!("cannot connect to {}", args.url))?;
        tcp.set_nodelay(true)?;
        let (send, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp)).await?;
        tokio::spawn(connection);
        senders.push(send);
    }
    let meter = Meter::start(&args.pids, &[]);
    let started = Instant::now();
    let deadline = started + args.duration;
    let tasks: Vec<_> = senders
        .into_iter()
        .enumerate()
        .map(|(i, send)| {
            let (authority, key) = (authority.clone(), args.api_key.clone());
            tokio::spawn(work(send, authority, key, i, args.rooms, deadline))
        })
        .collect();
    let mut latency = latency_histogram();
    let (mut publishes, mut errors) = (0, 0);
    for task in tasks {
        let worker = task.await??;
        publishes += worker.publishes;
        errors += worker.errors;
        latency.add(worker.latency)?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let usage = meter.stop();
    let report = ApiReport {
        connections: args.connections,
        rooms: args.rooms,
        duration_s: elapsed,
        publishes,
        errors,
        publishes_per_s: publishes as f64 / elapsed,
        latency_ms: Percentiles::from_micros(&latency),
        server_cpu_us_per_publish: usage
            .server_cpu_s
            .filter(|_| publishes > 0)
            .map(|s| s * 1e6 / publishes as f64),
        usage,
    };
    super::print_report(&report, args.json, text)
}

async fn work(
    mut send: hyper::client::conn::http1::SendRequest<Body>,
    authority: String,
    key: String,
    worker: usize,
    rooms: usize,
    deadline: Instant,
) -> anyhow::Result<Worker> {
    let mut w = Worker {
        publishes: 0,
        errors: 0,
        latency: latency_histogram(),
    };
    while Instant::now() < deadline {
        let room = (worker + w.publishes as usize) % rooms;
        let body = format!(
            r#"{{"room":"bench-{room}","message":"publish {}"}}"#,
            w.publishes
        );
        let request = axum::http::Request::post("/api/publish")
            .header("host", &authority)
            .header("content-type", "application/json")
            .header("x-api-key", &key)
            .body(Body::from(body))?;
        let start = Instant::now();
        send.ready().await.context("the connection closed")?;
        let response = send.send_request(request).await?;
        let ok = response.status().is_success();
        axum::body::to_bytes(Body::new(response.into_body()), 64 * 1024).await?;
        if ok {
            w.publishes += 1;
            let _ = w.latency.record(start.elapsed().as_micros().max(1) as u64);
        } else {
            w.errors += 1;
        }
    }
    Ok(w)
}

fn text(r: &ApiReport) -> String {
    let (l, u) = (&r.latency_ms, &r.usage);
    format!(
        "publishes over {} connections to {} rooms for {:.1} s\npublishes {}  errors {}  publishes/s {:.0}\n\
         latency ms  p50 {:.3}  p90 {:.3}  p99 {:.3}  max {:.3}\nserver cpu s {}  rss KiB {}\nbench cpu s {}",
        r.connections,
        r.rooms,
        r.duration_s,
        r.publishes,
        r.errors,
        r.publishes_per_s,
        l.p50,
        l.p90,
        l.p99,
        l.max,
        ms3(u.server_cpu_s),
        opt(u.server_rss_kib),
        ms3(u.bench_cpu_s),
    )
}
