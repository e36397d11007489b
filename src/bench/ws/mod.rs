//! WebSocket fan-out benchmark: members spread over replicas join one room,
//! publishers send at a fixed total rate, and every member checks what it
//! receives against what was sent.
//!
//! Each message carries its sequence number and send time, so loss,
//! duplicates and end-to-end latency are measured per delivery. Servers
//! must allow the publishers' rate (`--rate-limit` on the ws-server).
//!
//! - [`wire`]: what the generator sends and recognises, per protocol.
//! - [`clients`]: opening members and publishers.
//! - [`fanout`]: the timed run and its accounting.
//! - [`idle`]: memory per idle joined connection.
//! - [`report`]: what a run prints.

mod clients;
mod fanout;
mod idle;
mod report;
mod wire;

pub use report::{FanoutReport, IdleReport};
pub use wire::Protocol;

use crate::process;
use anyhow::bail;
use clap::Args;
use std::net::IpAddr;
use std::time::Duration;

type Socket = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

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

    /// Room used for the run; with `--rooms` above 1, the prefix of
    /// rooms `<room>-0`, `<room>-1`, ...
    #[arg(long, default_value = "bench")]
    pub room: String,

    /// Rooms the members are spread over (member i joins room i mod N, on
    /// replica (i / N) mod replicas, so each room spans the replicas);
    /// message k goes to room k mod N, so the total rate is spread evenly.
    #[arg(long, default_value_t = 1)]
    pub rooms: usize,

    /// The Redis server's process id, for its CPU time per message; on a
    /// cluster, every primary's (comma-separated), summed.
    #[arg(long, value_delimiter = ',')]
    pub redis_pid: Vec<u32>,

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

impl WsBenchArgs {
    /// The name of room `k` of the run.
    fn room_name(&self, k: usize) -> String {
        if self.rooms <= 1 {
            self.room.clone()
        } else {
            format!("{}-{k}", self.room)
        }
    }

    /// Member `i`'s room and replica URL.
    fn placement(&self, i: usize) -> (usize, &str) {
        let rooms = self.rooms.max(1);
        (i % rooms, &self.urls[(i / rooms) % self.urls.len()])
    }
}

pub async fn run(args: WsBenchArgs) -> anyhow::Result<()> {
    if args.urls.is_empty() || args.members == 0 {
        bail!("need at least one --url and one member");
    }
    if args.rooms == 0 || args.rooms > args.members {
        bail!("--rooms must be between 1 and --members");
    }
    process::raise_fd_limit();
    if args.idle {
        let report = idle::run(&args).await?;
        super::print_report(&report, args.json, report::idle_text)
    } else {
        let report = fanout::run(&args).await?;
        super::print_report(&report, args.json, report::fanout_text)
    }
}
