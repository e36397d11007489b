//! `rtchat bench`: load generators that measure a running deployment.
//!
//! They report what a reader needs to trust the numbers: counts that must
//! add up (sent, expected, delivered, lost, duplicated), latency
//! percentiles, the CPU time of the server processes, and the generator's
//! own CPU time, so a run capped by the generator is visible as such.

pub(crate) mod api;
pub(crate) mod grpc;
pub(crate) mod log;
pub(crate) mod receiver;
pub(crate) mod trivial;
pub(crate) mod usage;
pub(crate) mod ws;

use clap::{Args, Subcommand};

#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub mode: BenchMode,
}

#[derive(Debug, Subcommand)]
pub enum BenchMode {
    /// WebSocket fan-out (members, publishers, rate) or idle connections.
    Ws(ws::WsBenchArgs),
    /// Server API publishes over keep-alive connections: publishes/s, latency.
    Api(api::ApiBenchArgs),
    /// gRPC calls at a concurrency: throughput and latency.
    Grpc(grpc::GrpcBenchArgs),
    /// The Redis log alone: publishes over many rooms, Redis CPU per message.
    Log(log::LogBenchArgs),
    /// Run the trivial broadcast server that `bench ws` results are
    /// compared with.
    TrivialServer(trivial::TrivialArgs),
    /// Run a webhook receiver that answers every POST at once and prints
    /// how many it got when stopped.
    Receiver(receiver::ReceiverArgs),
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    match args.mode {
        BenchMode::Ws(args) => ws::run(args).await,
        BenchMode::Api(args) => api::run(args).await,
        BenchMode::Grpc(args) => grpc::run(args).await,
        BenchMode::Log(args) => log::run(args).await,
        BenchMode::TrivialServer(args) => trivial::run(args).await,
        BenchMode::Receiver(args) => receiver::run(args).await,
    }
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Percentiles {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

impl Percentiles {
    /// From a histogram recorded in microseconds.
    pub fn from_micros(h: &hdrhistogram::Histogram<u64>) -> Self {
        let ms = |v: u64| v as f64 / 1000.0;
        Self {
            p50: ms(h.value_at_quantile(0.50)),
            p90: ms(h.value_at_quantile(0.90)),
            p99: ms(h.value_at_quantile(0.99)),
            max: ms(h.max()),
        }
    }
}

/// A latency histogram in microseconds, 1 us to 10 min, 2 significant
/// digits: small enough to keep one per connection.
pub fn latency_histogram() -> hdrhistogram::Histogram<u64> {
    hdrhistogram::Histogram::new_with_bounds(1, 600_000_000, 2).expect("valid histogram bounds")
}

/// Prints a report as one JSON object, or as text.
pub fn print_report<T: serde::Serialize>(
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
