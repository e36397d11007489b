//! What a WebSocket run reports: counts that must add up, latency, and the
//! CPU and memory of servers and generator.

use super::super::Percentiles;
use super::super::usage::{Usage, ms3, opt};
use serde::Serialize;

#[derive(Debug, Serialize)]
pub struct FanoutReport {
    pub members: usize,
    pub rooms: usize,
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
    pub server_cpu_us_per_delivery: Option<f64>,
    pub server_cpu_us_per_message: Option<f64>,
    pub redis_cpu_us_per_message: Option<f64>,
    #[serde(flatten)]
    pub usage: Usage,
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

pub fn idle_text(r: &IdleReport) -> String {
    format!(
        "idle connections: {} over {} replicas\nserver RSS: {} KiB -> {} KiB\nper connection: {} bytes",
        r.connections,
        r.replicas,
        opt(r.server_rss_before_kib),
        opt(r.server_rss_after_kib),
        opt(r.server_bytes_per_connection.map(|b| b.round()))
    )
}

pub fn fanout_text(r: &FanoutReport) -> String {
    format!(
        "members {} in {} rooms over {} replicas, publishers {}, target {} msg/s for {:.1} s\n\
                 sent {}  expected {}  delivered {}  lost {}  duplicated {}\n\
                 deliveries/s {:.0}\n\
                 latency ms  p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}\n\
                 server cpu s {}  us/delivery {}  us/message {}  rss KiB {}\n\
                 redis cpu s {}  us/message {}\n\
                 bench cpu s {}",
        r.members,
        r.rooms,
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
        ms3(r.usage.server_cpu_s),
        ms3(r.server_cpu_us_per_delivery),
        ms3(r.server_cpu_us_per_message),
        opt(r.usage.server_rss_kib),
        ms3(r.usage.redis_cpu_s),
        ms3(r.redis_cpu_us_per_message),
        ms3(r.usage.bench_cpu_s),
    )
}
