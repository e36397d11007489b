//! What this replica tells the others and the operator's page about
//! itself: the report beside its heartbeat (sockets, draining, and the
//! status the page shows). With rebalancing on, its look at the others
//! writes the report; otherwise, and once a drain began, this does.

use crate::door::DoorState;
use crate::hub::{ReplicaReport, backend::ReplicaStatus};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How often the report is written when rebalancing does not.
const REPORT_EVERY: Duration = Duration::from_secs(1);
/// Rooms a report names, busiest first.
const TOP_ROOMS: usize = 10;

/// What a status needs beside the door: when the replica started and how
/// long its last report took.
pub struct StatusSource {
    started_ms: u64,
    /// Microseconds; 0 before the first report succeeded.
    rtt_us: AtomicU64,
    with_redis: bool,
}

impl StatusSource {
    pub fn new(with_redis: bool) -> Self {
        Self {
            started_ms: crate::broadcast::unix_ms(),
            rtt_us: AtomicU64::new(0),
            with_redis,
        }
    }

    fn status(&self, door: &DoorState) -> ReplicaStatus {
        let metrics = &door.metrics;
        let sockets = metrics.connections.get().max(0) as u64;
        let socketio = (metrics.socketio.get().max(0) as u64).min(sockets);
        let mut rooms = door.hub.local_rooms();
        let room_count = rooms.len() as u64;
        // Only the busiest are named: with thousands of rooms, picking them
        // costs a pass, not a sort of every room twice a second.
        let busiest = |a: &(String, usize), b: &(String, usize)| b.1.cmp(&a.1).then(a.0.cmp(&b.0));
        if rooms.len() > TOP_ROOMS {
            rooms.select_nth_unstable_by(TOP_ROOMS, busiest);
            rooms.truncate(TOP_ROOMS);
        }
        rooms.sort_by(busiest);
        let rtt = self.rtt_us.load(Ordering::Relaxed);
        ReplicaStatus {
            ready: door.hub.is_ready() && !door.draining.is_cancelled(),
            native: sockets - socketio,
            socketio,
            rooms: room_count,
            started_ms: self.started_ms,
            version: env!("CARGO_PKG_VERSION").to_owned(),
            messages_in: metrics.messages_in.get(),
            messages_out: metrics.messages_out.get(),
            redis_rtt_ms: (self.with_redis && rtt > 0).then_some(rtt as f64 / 1000.0),
            top_rooms: rooms
                .into_iter()
                .map(|(room, n)| (room, n as u64))
                .collect(),
        }
    }

    /// Writes this replica's report; its round trip is the next status's
    /// Redis time.
    pub async fn report(
        &self,
        door: &DoorState,
        sockets: u64,
        draining: bool,
    ) -> Result<(), crate::hub::HubError> {
        let report = ReplicaReport {
            server: door.hub.settings().server_id.clone(),
            sockets,
            draining,
            status: Some(self.status(door)),
        };
        let started = Instant::now();
        door.hub.report(&report).await?;
        self.rtt_us.store(
            started.elapsed().as_micros().max(1) as u64,
            Ordering::Relaxed,
        );
        Ok(())
    }
}

/// Reports every second, except while rebalancing reports (until a drain
/// begins).
pub async fn run(door: DoorState, source: std::sync::Arc<StatusSource>, rebalancing: bool) {
    let mut ticks = tokio::time::interval(REPORT_EVERY);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = door.shutdown.cancelled() => return,
        }
        let draining = door.draining.is_cancelled();
        if rebalancing && !draining {
            continue;
        }
        let sockets = door.sockets().max(0) as u64;
        if let Err(err) = source.report(&door, sockets, draining).await {
            tracing::debug!(%err, "could not report this replica's status");
        }
    }
}
