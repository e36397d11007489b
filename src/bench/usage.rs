//! CPU and memory of the servers under test and of the generator itself,
//! over one measured interval, the same way for every benchmark: a run
//! capped by the generator shows as such.

use crate::process;
use serde::Serialize;
use std::time::Duration;

/// Readings taken when the measured interval starts.
pub struct Meter {
    pids: Vec<u32>,
    redis: Vec<u32>,
    server_cpu: Option<Duration>,
    redis_cpu: Option<Duration>,
    bench_cpu: Option<Duration>,
}

/// What the interval cost. `None` where a process could not be read (gone,
/// or no `--pid` given).
#[derive(Debug, Clone, Serialize)]
pub struct Usage {
    pub server_cpu_s: Option<f64>,
    pub server_rss_kib: Option<u64>,
    /// The Redis the servers share (every shard's process summed), when
    /// its processes were given.
    pub redis_cpu_s: Option<f64>,
    pub bench_cpu_s: Option<f64>,
}

impl Meter {
    pub fn start(pids: &[u32], redis: &[u32]) -> Self {
        Self {
            pids: pids.to_vec(),
            redis: redis.to_vec(),
            server_cpu: process::total_cpu(pids),
            redis_cpu: cpu_of(redis),
            bench_cpu: process::cpu_time(std::process::id()),
        }
    }

    pub fn stop(&self) -> Usage {
        let since = |before: Option<Duration>, now: Option<Duration>| {
            before.zip(now).map(|(b, n)| (n - b).as_secs_f64())
        };
        Usage {
            server_cpu_s: since(self.server_cpu, process::total_cpu(&self.pids)),
            server_rss_kib: process::total_rss_kib(&self.pids),
            redis_cpu_s: since(self.redis_cpu, cpu_of(&self.redis)),
            bench_cpu_s: since(self.bench_cpu, process::cpu_time(std::process::id())),
        }
    }
}

/// CPU time of the given processes together; `None` without any, or when
/// one cannot be read.
fn cpu_of(pids: &[u32]) -> Option<Duration> {
    if pids.is_empty() {
        None
    } else {
        process::total_cpu(pids)
    }
}

/// A reading for a text report: the value, or `-`.
pub fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "-".into())
}

/// Rounded to milliseconds for a text report.
pub fn ms3(seconds: Option<f64>) -> String {
    opt(seconds.map(|v| format!("{v:.3}")))
}
