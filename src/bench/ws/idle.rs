//! Memory per idle joined connection: server RSS before and after opening
//! the members.

use super::clients::open_members;
use super::{IdleReport, WsBenchArgs};
use crate::process;
use std::time::Duration;

pub(super) async fn run(args: &WsBenchArgs) -> anyhow::Result<IdleReport> {
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
