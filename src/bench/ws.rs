//! WebSocket fan-out benchmark: members spread over replicas join one room,
//! publishers send at a fixed total rate, and every member checks what it
//! receives against what was sent.
//!
//! Each message carries its sequence number and send time, so loss,
//! duplicates and end-to-end latency are measured per delivery. Servers
//! must allow the publishers' rate (`--rate-limit` on the ws-server).

use super::{Percentiles, latency_histogram};
use crate::process;
use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use futures_util::FutureExt;
use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::net::TcpSocket;
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{WebSocketStream, client_async_with_config};
use tokio_util::sync::CancellationToken;

type Socket = WebSocketStream<tokio::net::TcpStream>;

#[derive(Debug, Clone, Args)]
pub struct WsBenchArgs {
    /// WebSocket URLs of the replicas; members are spread round-robin.
    #[arg(
        long = "url",
        env = "BENCH_URLS",
        value_delimiter = ',',
        default_value = "ws://127.0.0.1:3000/ws"
    )]
    pub urls: Vec<String>,

    /// Connections that join the room and receive.
    #[arg(long, default_value_t = 1000)]
    pub members: usize,

    /// Connections that send (not members of the room).
    #[arg(long, default_value_t = 10)]
    pub publishers: usize,

    /// Messages per second sent in total by all publishers.
    #[arg(long, default_value_t = 25.0)]
    pub rate: f64,

    /// How long publishers send.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub duration: Duration,

    /// Room used for the run.
    #[arg(long, default_value = "bench")]
    pub room: String,

    /// Message text size in bytes (at least the 40 bytes of bookkeeping).
    #[arg(long, default_value_t = 64)]
    pub size: usize,

    /// Server process ids, for their CPU time and memory.
    #[arg(long = "pid", value_delimiter = ',')]
    pub pids: Vec<u32>,

    /// Only open the members, joined, and hold them for --duration; reports
    /// server memory per connection.
    #[arg(long)]
    pub idle: bool,

    /// Local addresses to connect from, round-robin (e.g. 127.0.0.2): one
    /// address has about 28,000 ephemeral ports per server address.
    #[arg(long = "source-ip", value_delimiter = ',')]
    pub source_ips: Vec<IpAddr>,

    /// Connections opened at once while setting up.
    #[arg(long, default_value_t = 200)]
    pub connect_concurrency: usize,

    /// How long to wait for in-flight messages after the last send.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub drain: Duration,

    /// What the servers speak.
    #[arg(long, value_enum, default_value_t = Protocol::Rtchat)]
    pub protocol: Protocol,

    /// Print the report as one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// The wire protocol of the servers under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Protocol {
    /// rtchat's JSON frames.
    Rtchat,
    /// Socket.IO 4 over its WebSocket transport with the original chat's
    /// events (`join_room`, `message`), to measure the original with the
    /// same generator; URLs like
    /// ws://host:port/socket.io/?EIO=4&transport=websocket.
    SocketIo,
}

impl Protocol {
    /// Reads the server's greeting (and answers it, for Socket.IO).
    async fn handshake(self, ws: &mut Socket) -> anyhow::Result<()> {
        match self {
            Self::Rtchat => {
                expect_frame(ws, "welcome", |t| t.contains(r#""type":"welcome""#)).await
            }
            Self::SocketIo => {
                expect_frame(ws, "an Engine.IO open packet", |t| t.starts_with('0')).await?;
                ws.send(Message::text("40")).await?;
                expect_frame(ws, "a Socket.IO connect packet", |t| t.starts_with("40")).await
            }
        }
    }

    fn join(self, room: &str) -> String {
        match self {
            Self::Rtchat => serde_json::json!({"type": "join_room", "room": room}).to_string(),
            Self::SocketIo => format!("42{}", serde_json::json!(["join_room", room])),
        }
    }

    fn message(self, room: &str, text: &str) -> String {
        let body = serde_json::json!({"type": "message", "room": room, "message": text});
        match self {
            Self::Rtchat => body.to_string(),
            Self::SocketIo => format!("42{}", serde_json::json!(["message", body])),
        }
    }

    /// The answer a frame needs at once: Engine.IO's ping wants a pong.
    fn reply(self, text: &str) -> Option<&'static str> {
        (self == Self::SocketIo && text == "2").then_some("3")
    }
}

#[derive(Debug, Serialize)]
pub struct FanoutReport {
    pub members: usize,
    pub publishers: usize,
    pub replicas: usize,
    pub target_rate: f64,
    pub duration_s: f64,
    pub sent: u64,
    pub expected: u64,
    pub delivered: u64,
    pub lost: u64,
    pub duplicated: u64,
    pub deliveries_per_s: f64,
    pub latency_ms: Percentiles,
    pub server_cpu_s: Option<f64>,
    pub server_cpu_us_per_delivery: Option<f64>,
    pub server_rss_kib: Option<u64>,
    pub bench_cpu_s: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct IdleReport {
    pub connections: usize,
    pub replicas: usize,
    pub server_rss_before_kib: Option<u64>,
    pub server_rss_after_kib: Option<u64>,
    pub server_bytes_per_connection: Option<f64>,
    pub bench_rss_kib: Option<u64>,
}

pub async fn run(args: WsBenchArgs) -> anyhow::Result<()> {
    if args.urls.is_empty() || args.members == 0 {
        bail!("need at least one --url and one member");
    }
    process::raise_fd_limit();
    if args.idle {
        let report = idle(&args).await?;
        print_report(&report, args.json, |r| {
            format!(
                "idle connections: {} over {} replicas\nserver RSS: {} KiB -> {} KiB\nper connection: {} bytes",
                r.connections,
                r.replicas,
                opt(r.server_rss_before_kib),
                opt(r.server_rss_after_kib),
                opt(r.server_bytes_per_connection.map(|b| b.round()))
            )
        })
    } else {
        let report = fanout(&args).await?;
        print_report(&report, args.json, |r| {
            format!(
                "members {} over {} replicas, publishers {}, target {} msg/s for {:.1} s\n\
                 sent {}  expected {}  delivered {}  lost {}  duplicated {}\n\
                 deliveries/s {:.0}\n\
                 latency ms  p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}\n\
                 server cpu s {}  us/delivery {}  rss KiB {}\n\
                 bench cpu s {}",
                r.members,
                r.replicas,
                r.publishers,
                r.target_rate,
                r.duration_s,
                r.sent,
                r.expected,
                r.delivered,
                r.lost,
                r.duplicated,
                r.deliveries_per_s,
                r.latency_ms.p50,
                r.latency_ms.p90,
                r.latency_ms.p99,
                r.latency_ms.max,
                opt(r.server_cpu_s.map(|v| (v * 1000.0).round() / 1000.0)),
                opt(r
                    .server_cpu_us_per_delivery
                    .map(|v| (v * 1000.0).round() / 1000.0)),
                opt(r.server_rss_kib),
                opt(r.bench_cpu_s.map(|v| (v * 1000.0).round() / 1000.0)),
            )
        })
    }
}

fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "-".into())
}

fn print_report<T: Serialize>(
    report: &T,
    json: bool,
    text: impl Fn(&T) -> String,
) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(report)?);
    } else {
        println!("{}", text(report));
    }
    Ok(())
}

/// Small socket buffers, as on the server: tungstenite zeroes a whole read
/// buffer chunk (128 KiB by default) on every read, which would make the
/// load generator spend most of its time in memset.
fn client_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(4096)
}

/// Opens one WebSocket, from `source` when given, and reads the greeting.
async fn connect(url: &str, source: Option<IpAddr>, protocol: Protocol) -> anyhow::Result<Socket> {
    let uri: tokio_tungstenite::tungstenite::http::Uri = url.parse().context("invalid --url")?;
    let host = uri.host().context("--url has no host")?;
    let port = uri.port_u16().unwrap_or(80);
    let addr: SocketAddr = tokio::net::lookup_host((host, port))
        .await?
        .find(|a| source.is_none_or(|s| s.is_ipv4() == a.is_ipv4()))
        .context("cannot resolve --url host")?;
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(ip) = source {
        socket
            .bind(SocketAddr::new(ip, 0))
            .with_context(|| format!("cannot bind {ip}"))?;
    }
    let stream = socket
        .connect(addr)
        .await
        .with_context(|| format!("cannot connect to {addr}"))?;
    stream.set_nodelay(true)?;
    let (mut ws, _) = client_async_with_config(url, stream, Some(client_config()))
        .await
        .context("WebSocket handshake failed")?;
    protocol.handshake(&mut ws).await?;
    Ok(ws)
}

async fn expect_frame(
    ws: &mut Socket,
    what: &str,
    matches: impl Fn(&str) -> bool,
) -> anyhow::Result<()> {
    let frame = tokio::time::timeout(Duration::from_secs(30), ws.next())
        .await
        .with_context(|| format!("no {what} in time"))?;
    match frame {
        Some(Ok(Message::Text(text))) if matches(&text) => Ok(()),
        Some(Ok(other)) => bail!("expected {what}, got {other:?}"),
        Some(Err(err)) => Err(err.into()),
        None => bail!("closed before {what}"),
    }
}

/// Socket.IO does not confirm a join: sends marker messages to the room
/// until every member has received one, so that no member is still joining
/// when the measurement starts.
async fn confirm_joined(args: &WsBenchArgs, members: Vec<Socket>) -> anyhow::Result<Vec<Socket>> {
    let mut sender = connect(&args.urls[0], None, args.protocol).await?;
    let (mut pending, mut ready) = (members, Vec::new());
    for round in 0..30 {
        let marker = format!("warm-up {round}");
        sender
            .send(Message::text(args.protocol.message(&args.room, &marker)))
            .await?;
        let checks = pending.into_iter().map(|mut ws| async move {
            let seen = saw_warm_up(&mut ws, args.protocol).await;
            (ws, seen)
        });
        pending = Vec::new();
        for (ws, seen) in futures_util::future::join_all(checks).await {
            if seen {
                ready.push(ws)
            } else {
                pending.push(ws)
            }
        }
        if pending.is_empty() {
            return Ok(ready);
        }
    }
    bail!(
        "{} members never received the room's messages",
        pending.len()
    )
}

/// Reads for up to a second until a warm-up marker arrives.
async fn saw_warm_up(ws: &mut Socket, protocol: Protocol) -> bool {
    let wait = async {
        while let Some(Ok(frame)) = ws.next().await {
            let Message::Text(text) = frame else { continue };
            if let Some(reply) = protocol.reply(&text) {
                let _ = ws.send(Message::text(reply)).await;
            } else if text.contains(r#""message":"warm-up "#) {
                return true;
            }
        }
        false
    };
    tokio::time::timeout(Duration::from_secs(1), wait)
        .await
        .unwrap_or(false)
}

/// Opens `args.members` joined members, `connect_concurrency` at a time.
async fn open_members(args: &WsBenchArgs) -> anyhow::Result<Vec<Socket>> {
    let gate = Arc::new(Semaphore::new(args.connect_concurrency.max(1)));
    let join = args.protocol.join(&args.room);
    let protocol = args.protocol;
    let mut tasks = Vec::with_capacity(args.members);
    for i in 0..args.members {
        let url = args.urls[i % args.urls.len()].clone();
        let source =
            (!args.source_ips.is_empty()).then(|| args.source_ips[i % args.source_ips.len()]);
        let gate = gate.clone();
        let join = join.clone();
        tasks.push(tokio::spawn(async move {
            let _permit = gate.acquire().await?;
            let mut ws = connect(&url, source, protocol).await?;
            ws.send(Message::text(join)).await?;
            if protocol == Protocol::Rtchat {
                expect_frame(&mut ws, "joined", |t| t.contains(r#""type":"joined""#)).await?;
            }
            anyhow::Ok(ws)
        }));
    }
    let mut members = Vec::with_capacity(args.members);
    for (i, task) in tasks.into_iter().enumerate() {
        members.push(task.await?.with_context(|| format!("member {i}"))?);
        if (i + 1) % 1000 == 0 {
            eprintln!("  {} members connected", i + 1);
        }
    }
    match args.protocol {
        Protocol::Rtchat => Ok(members),
        Protocol::SocketIo => confirm_joined(args, members).await,
    }
}

async fn idle(args: &WsBenchArgs) -> anyhow::Result<IdleReport> {
    let before = process::total_rss_kib(&args.pids);
    let members = open_members(args).await?;
    // Let allocator and kernel settle before reading memory.
    tokio::time::sleep(args.duration.min(Duration::from_secs(2))).await;
    let after = process::total_rss_kib(&args.pids);
    tokio::time::sleep(args.duration.saturating_sub(Duration::from_secs(2))).await;
    let per = match (before, after) {
        (Some(b), Some(a)) => Some(a.saturating_sub(b) as f64 * 1024.0 / members.len() as f64),
        _ => None,
    };
    let report = IdleReport {
        connections: members.len(),
        replicas: args.urls.len(),
        server_rss_before_kib: before,
        server_rss_after_kib: after,
        server_bytes_per_connection: per,
        bench_rss_kib: process::rss_kib(std::process::id()),
    };
    drop(members);
    Ok(report)
}

fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or_default()
}

/// What every member shares: the running total, for progress and drain.
struct Tally {
    delivered: AtomicU64,
}

async fn fanout(args: &WsBenchArgs) -> anyhow::Result<FanoutReport> {
    if args.publishers == 0 || args.rate <= 0.0 {
        bail!("need at least one publisher and a positive --rate");
    }
    let max_messages =
        (args.rate * args.duration.as_secs_f64()).ceil() as usize + args.publishers + 1;
    let tally = Arc::new(Tally {
        delivered: AtomicU64::new(0),
    });
    let members = open_members(args).await?;
    let mut publishers = Vec::with_capacity(args.publishers);
    for i in 0..args.publishers {
        publishers.push(connect(&args.urls[i % args.urls.len()], None, args.protocol).await?);
    }
    eprintln!(
        "  {} members and {} publishers ready",
        members.len(),
        publishers.len()
    );

    let stop_members = CancellationToken::new();
    let mut receivers = Vec::with_capacity(members.len());
    for ws in members {
        receivers.push(tokio::spawn(receive(
            ws,
            tally.clone(),
            stop_members.clone(),
            max_messages,
            args.protocol,
        )));
    }

    let cpu_before = process::total_cpu(&args.pids);
    let bench_cpu_before = process::cpu_time(std::process::id());
    let started = Instant::now();
    let seq = Arc::new(AtomicU64::new(0));
    let deadline = started + args.duration;
    let interval = Duration::from_secs_f64(args.publishers as f64 / args.rate);
    let mut senders = Vec::new();
    for (i, ws) in publishers.into_iter().enumerate() {
        let offset = interval.mul_f64(i as f64 / args.publishers as f64);
        let (seq, room, size) = (seq.clone(), args.room.clone(), args.size);
        senders.push(tokio::spawn(publish(
            ws,
            args.protocol,
            seq,
            room,
            size,
            started + offset,
            interval,
            deadline,
            max_messages,
        )));
    }
    let progress = spawn_progress(seq.clone(), tally.clone(), started);
    for sender in senders {
        sender.await??;
    }
    let sent = seq.load(Ordering::SeqCst);
    let expected = sent * args.members as u64;
    // Wait for stragglers, stopping early once everything arrived.
    let drain_end = Instant::now() + args.drain;
    while tally.delivered.load(Ordering::SeqCst) < expected && Instant::now() < drain_end {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let cpu_after = process::total_cpu(&args.pids);
    let bench_cpu_after = process::cpu_time(std::process::id());
    progress.abort();
    stop_members.cancel();
    let mut latency = latency_histogram();
    let mut delivered_unique = 0u64;
    let mut duplicated = 0u64;
    for receiver in receivers {
        let seen = receiver.await?;
        latency.add(seen.latency)?;
        for &count in &seen.counts[..sent as usize] {
            delivered_unique += u64::from(count.min(1));
            duplicated += u64::from(count.saturating_sub(1));
        }
    }
    let delivered = tally.delivered.load(Ordering::SeqCst);
    let server_cpu = match (cpu_before, cpu_after) {
        (Some(b), Some(a)) => Some((a - b).as_secs_f64()),
        _ => None,
    };
    Ok(FanoutReport {
        members: args.members,
        publishers: args.publishers,
        replicas: args.urls.len(),
        target_rate: args.rate,
        duration_s: args.duration.as_secs_f64(),
        sent,
        expected,
        delivered,
        lost: expected - delivered_unique,
        duplicated,
        deliveries_per_s: delivered as f64 / args.duration.as_secs_f64(),
        latency_ms: Percentiles::from_micros(&latency),
        server_cpu_s: server_cpu,
        server_cpu_us_per_delivery: server_cpu
            .filter(|_| delivered > 0)
            .map(|s| s * 1e6 / delivered as f64),
        server_rss_kib: process::total_rss_kib(&args.pids),
        bench_cpu_s: match (bench_cpu_before, bench_cpu_after) {
            (Some(b), Some(a)) => Some((a - b).as_secs_f64()),
            _ => None,
        },
    })
}

#[allow(clippy::too_many_arguments)]
async fn publish(
    mut ws: Socket,
    protocol: Protocol,
    seq: Arc<AtomicU64>,
    room: String,
    size: usize,
    first: Instant,
    interval: Duration,
    deadline: Instant,
    max_messages: usize,
) -> anyhow::Result<()> {
    let mut ticks = tokio::time::interval_at(first.into(), interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    loop {
        // Read whatever the server sends meanwhile (errors, pings), so it
        // never blocks on this connection.
        let tick = tokio::select! {
            tick = ticks.tick() => tick,
            frame = ws.next() => {
                match frame {
                    Some(Ok(Message::Text(text))) => {
                        if let Some(reply) = protocol.reply(&text) {
                            ws.send(Message::text(reply)).await?;
                        } else if text.contains(r#""type":"error""#) {
                            eprintln!("  publisher got an error: {text}");
                        }
                    }
                    Some(Ok(_)) => {}
                    Some(Err(err)) => return Err(err.into()),
                    None => bail!("the server closed a publisher's connection"),
                }
                continue;
            }
        };
        if tick.into_std() >= deadline {
            break;
        }
        let n = seq.fetch_add(1, Ordering::SeqCst);
        if n as usize >= max_messages {
            seq.fetch_sub(1, Ordering::SeqCst);
            break;
        }
        let mut text = format!("b{n} {}", now_micros());
        if text.len() < size {
            text.push(' ');
            text.extend(std::iter::repeat_n('x', size - text.len()));
        }
        ws.send(Message::text(protocol.message(&room, &text)))
            .await?;
    }
    let _ = ws.close(None).await;
    Ok(())
}

/// Reads one member's frames until stopped; returns its latency histogram.
/// What one member saw.
struct Received {
    latency: hdrhistogram::Histogram<u64>,
    /// Deliveries per sequence number (saturating), for loss and duplicates.
    counts: Vec<u8>,
}

/// Deliveries a member counts before adding them to the shared total: one
/// contended atomic per batch instead of per message.
const TALLY_BATCH: u64 = 64;

/// Reads one member's frames until stopped.
async fn receive(
    mut ws: Socket,
    tally: Arc<Tally>,
    stop: CancellationToken,
    messages: usize,
    protocol: Protocol,
) -> Received {
    let mut seen = Received {
        latency: latency_histogram(),
        counts: vec![0; messages],
    };
    let mut unreported = 0;
    let stop = stop.cancelled_owned();
    tokio::pin!(stop);
    loop {
        // Report the batch whenever the socket has nothing more right now,
        // so the total is exact while the run drains.
        let frame = match ws.next().now_or_never() {
            Some(frame) => frame,
            None => {
                tally
                    .delivered
                    .fetch_add(std::mem::take(&mut unreported), Ordering::Relaxed);
                tokio::select! {
                    frame = ws.next() => frame,
                    _ = &mut stop => break,
                }
            }
        };
        let Some(Ok(Message::Text(text))) = frame else {
            if matches!(frame, Some(Ok(_))) {
                continue;
            }
            break;
        };
        if let Some(reply) = protocol.reply(&text) {
            let _ = ws.send(Message::text(reply)).await;
            continue;
        }
        let now = now_micros();
        if let Some((n, sent_at)) = parse_bench_text(&text)
            && let Some(count) = seen.counts.get_mut(n as usize)
        {
            *count = count.saturating_add(1);
            unreported += 1;
            if unreported >= TALLY_BATCH {
                tally
                    .delivered
                    .fetch_add(std::mem::take(&mut unreported), Ordering::Relaxed);
            }
            let _ = seen.latency.record(now.saturating_sub(sent_at).max(1));
        }
    }
    tally.delivered.fetch_add(unreported, Ordering::Relaxed);
    let _ = ws.close(None).await;
    seen
}

/// Finds "b<seq> <micros>" in a message frame without a full JSON parse.
fn parse_bench_text(frame: &str) -> Option<(u64, u64)> {
    let start = frame.find("\"message\":\"b")? + "\"message\":\"b".len();
    let mut parts = frame[start..].split([' ', '"']);
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

fn spawn_progress(
    seq: Arc<AtomicU64>,
    tally: Arc<Tally>,
    started: Instant,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(Duration::from_secs(1));
        ticks.tick().await;
        loop {
            ticks.tick().await;
            eprintln!(
                "  {:>5.1} s  sent {:>8}  delivered {:>10}",
                started.elapsed().as_secs_f64(),
                seq.load(Ordering::Relaxed),
                tally.delivered.load(Ordering::Relaxed)
            );
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn speaks_the_original_socket_io_events() {
        let p = Protocol::SocketIo;
        assert_eq!(p.join("bench"), r#"42["join_room","bench"]"#);
        let sent = p.message("bench", "b7 1700000000000000");
        assert!(sent.starts_with(r#"42["message",{"#), "{sent}");
        // What the original broadcasts back carries the text unchanged.
        let echo = r#"42["message",{"user":"x","message":"b7 1700000000000000","server":"s","timestamp":"t"}]"#;
        assert_eq!(parse_bench_text(echo), Some((7, 1_700_000_000_000_000)));
        assert_eq!(p.reply("2"), Some("3"));
        assert_eq!(Protocol::Rtchat.reply("2"), None);
    }

    #[test]
    fn parses_bench_payload_from_frame() {
        let frame = r#"{"type":"message","id":"1","room":"bench","user":"u","message":"b42 1700000000000000 xxxx","server":"s"}"#;
        assert_eq!(parse_bench_text(frame), Some((42, 1_700_000_000_000_000)));
        assert_eq!(
            parse_bench_text(r#"{"type":"message","message":"hello"}"#),
            None
        );
    }
}
