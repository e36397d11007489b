//! gRPC benchmark: many concurrent calls over several HTTP/2 connections,
//! for throughput and latency percentiles of unary and streaming RPCs.

use super::usage::{Meter, Usage, ms3, opt};
use super::{Percentiles, latency_histogram};
use crate::grpc::pb::user_service_client::UserServiceClient;
use crate::grpc::pb::{CreateUserRequest, Empty, UserRequest};
use crate::process;
use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use futures_util::StreamExt;
use serde::Serialize;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Rpc {
    /// Unary GetUser of user 1.
    Get,
    /// ListUsers, reading the whole stream each call.
    List,
    /// Unary CreateUser with fresh emails.
    Create,
}

#[derive(Debug, Clone, Args)]
pub struct GrpcBenchArgs {
    /// Server address.
    #[arg(long, env = "GRPC_ADDR", default_value = "http://127.0.0.1:50051")]
    pub addr: String,

    /// Which RPC to call.
    #[arg(long, value_enum, default_value_t = Rpc::Get)]
    pub rpc: Rpc,

    /// HTTP/2 connections.
    #[arg(long, default_value_t = 16)]
    pub connections: usize,

    /// Calls in flight per connection.
    #[arg(long, default_value_t = 32)]
    pub streams: usize,

    /// How long to call.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub duration: Duration,

    /// Stop after this many calls in total instead.
    #[arg(long)]
    pub count: Option<u64>,

    /// Create this many users before measuring (for `--rpc list`).
    #[arg(long, default_value_t = 0)]
    pub seed: usize,

    /// Server process ids, for their CPU time and memory.
    #[arg(long = "pid", value_delimiter = ',')]
    pub pids: Vec<u32>,

    /// Print the report as one JSON object.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Serialize)]
pub struct GrpcReport {
    pub rpc: Rpc,
    pub connections: usize,
    pub streams: usize,
    pub duration_s: f64,
    pub calls: u64,
    pub errors: u64,
    pub calls_per_s: f64,
    /// Messages received (users, for list).
    pub items: u64,
    pub items_per_s: f64,
    pub latency_ms: Percentiles,
    #[serde(flatten)]
    pub usage: Usage,
}

/// One HTTP/2 connection, called directly. tonic's `Channel` queues every
/// call through a buffer and a worker task; on two shared cores what the
/// load generator spends is taken from the server it measures.
#[derive(Clone)]
struct H2Connection(hyper::client::conn::http2::SendRequest<tonic::body::Body>);

impl H2Connection {
    async fn open(origin: &axum::http::Uri) -> anyhow::Result<Self> {
        if origin.scheme_str() != Some("http") {
            bail!("--addr must be http://host:port (the benchmark speaks plaintext HTTP/2)");
        }
        let host = origin.host().context("--addr has no host")?;
        let port = origin.port_u16().unwrap_or(80);
        let tcp = TcpStream::connect((host.trim_matches(['[', ']']), port)).await?;
        tcp.set_nodelay(true)?;
        let (send, connection) =
            hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                .handshake(hyper_util::rt::TokioIo::new(tcp))
                .await?;
        tokio::spawn(connection);
        Ok(Self(send))
    }
}

type ResponseFuture = Pin<
    Box<
        dyn Future<Output = Result<axum::http::Response<hyper::body::Incoming>, hyper::Error>>
            + Send,
    >,
>;

impl tower_service::Service<axum::http::Request<tonic::body::Body>> for H2Connection {
    type Response = axum::http::Response<hyper::body::Incoming>;
    type Error = hyper::Error;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: axum::http::Request<tonic::body::Body>) -> Self::Future {
        Box::pin(self.0.send_request(request))
    }
}

struct Worker {
    calls: u64,
    errors: u64,
    items: u64,
    latency: hdrhistogram::Histogram<u64>,
}

pub async fn run(args: GrpcBenchArgs) -> anyhow::Result<()> {
    if args.connections == 0 || args.streams == 0 {
        bail!("need at least one connection and one stream");
    }
    process::raise_fd_limit();
    let origin: axum::http::Uri = args.addr.parse().context("invalid --addr")?;
    let mut channels = Vec::with_capacity(args.connections);
    for _ in 0..args.connections {
        channels.push(
            H2Connection::open(&origin)
                .await
                .with_context(|| format!("cannot connect to {}", args.addr))?,
        );
    }
    seed(&channels[0], &origin, args.seed).await?;

    let workers_total = (args.connections * args.streams) as u64;
    let per_worker = args.count.map(|n| n.div_ceil(workers_total));
    let meter = Meter::start(&args.pids, &[]);
    let started = Instant::now();
    let deadline = started + args.duration;
    let mut tasks = Vec::new();
    for (c, channel) in channels.iter().enumerate() {
        for s in 0..args.streams {
            let client = UserServiceClient::with_origin(channel.clone(), origin.clone());
            let tag = c * args.streams + s;
            tasks.push(tokio::spawn(work(
                client, args.rpc, deadline, per_worker, tag,
            )));
        }
    }
    let mut latency = latency_histogram();
    let (mut calls, mut errors, mut items) = (0, 0, 0);
    for task in tasks {
        let worker = task.await?;
        calls += worker.calls;
        errors += worker.errors;
        items += worker.items;
        latency.add(worker.latency)?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let report = GrpcReport {
        rpc: args.rpc,
        connections: args.connections,
        streams: args.streams,
        duration_s: elapsed,
        calls,
        errors,
        calls_per_s: calls as f64 / elapsed,
        items,
        items_per_s: items as f64 / elapsed,
        latency_ms: Percentiles::from_micros(&latency),
        usage: meter.stop(),
    };
    super::print_report(&report, args.json, text)
}

fn text(report: &GrpcReport) -> String {
    let (l, u) = (&report.latency_ms, &report.usage);
    format!(
        "{:?} over {} connections x {} streams for {:.1} s\ncalls {}  errors {}  calls/s {:.0}  items/s {:.0}\n\
         latency ms  p50 {:.3}  p90 {:.3}  p99 {:.3}  max {:.3}\nserver cpu s {}  rss KiB {}\nbench cpu s {}",
        report.rpc,
        report.connections,
        report.streams,
        report.duration_s,
        report.calls,
        report.errors,
        report.calls_per_s,
        report.items_per_s,
        l.p50,
        l.p90,
        l.p99,
        l.max,
        ms3(u.server_cpu_s),
        opt(u.server_rss_kib),
        ms3(u.bench_cpu_s),
    )
}

async fn seed(
    channel: &H2Connection,
    origin: &axum::http::Uri,
    users: usize,
) -> anyhow::Result<()> {
    if users == 0 {
        return Ok(());
    }
    let stamp = std::process::id();
    let batch: Vec<_> = (0..users).collect();
    for chunk in batch.chunks(256) {
        let calls = chunk.iter().map(|i| {
            let mut client = UserServiceClient::with_origin(channel.clone(), origin.clone());
            let request = CreateUserRequest {
                name: format!("Seed {i}"),
                email: format!("seed-{stamp}-{i}@example.com"),
            };
            async move { client.create_user(request).await }
        });
        for result in futures_util::future::join_all(calls).await {
            result.context("seeding users")?;
        }
    }
    eprintln!("  seeded {users} users");
    Ok(())
}

async fn work(
    mut client: UserServiceClient<H2Connection>,
    rpc: Rpc,
    deadline: Instant,
    limit: Option<u64>,
    tag: usize,
) -> Worker {
    let mut w = Worker {
        calls: 0,
        errors: 0,
        items: 0,
        latency: latency_histogram(),
    };
    let stamp = format!("{}-{tag}", std::process::id());
    while Instant::now() < deadline && limit.is_none_or(|n| w.calls < n) {
        let start = Instant::now();
        let result: Result<u64, tonic::Status> = match rpc {
            Rpc::Get => client.get_user(UserRequest { id: 1 }).await.map(|_| 1),
            Rpc::Create => {
                let request = CreateUserRequest {
                    name: "Bench".into(),
                    email: format!("bench-{stamp}-{}@example.com", w.calls),
                };
                client.create_user(request).await.map(|_| 1)
            }
            Rpc::List => match client.list_users(Empty {}).await {
                Ok(response) => {
                    let mut stream = response.into_inner();
                    let mut n = 0;
                    let mut failed = None;
                    while let Some(item) = stream.next().await {
                        match item {
                            Ok(_) => n += 1,
                            Err(status) => {
                                failed = Some(status);
                                break;
                            }
                        }
                    }
                    failed.map_or(Ok(n), Err)
                }
                Err(status) => Err(status),
            },
        };
        w.calls += 1;
        match result {
            Ok(n) => {
                w.items += n;
                let _ = w.latency.record(start.elapsed().as_micros().max(1) as u64);
            }
            Err(_) => w.errors += 1,
        }
    }
    w
}
