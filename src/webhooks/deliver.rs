//! Delivery: each replica takes the leases of the queues it can, and for
//! each queue it holds and each receiver POSTs the events in order, one
//! at a time, retrying one until the receiver acknowledges it.

use super::metrics::WebhookMetrics;
use super::post::Poster;
use super::queue::{Cursor, Entry, PARTITIONS, Queue};
use crate::broadcast::unix_ms;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// How often leases are taken or kept, and the gauges refreshed.
const LEASE_INTERVAL: Duration = Duration::from_secs(1);
/// How long a lease outlives a replica that stopped keeping it: the
/// longest a dead replica's queues wait for another one.
pub const LEASE_TTL: Duration = Duration::from_secs(5);
/// How often a held queue is read when nothing woke it: events queued by
/// other replicas wait this long at most.
const POLL: Duration = Duration::from_millis(200);
/// Events read from a queue at once.
const BATCH: usize = 64;
/// How long a queue's deliveries wait after a read that was not full, so
/// that the next read takes what arrived meanwhile: one read for several
/// events under load, this much latency added to a webhook.
const GATHER: Duration = Duration::from_millis(20);
/// How often a receiver's cursor is stored while its queue stays busy.
const STORE_EVERY: Duration = Duration::from_millis(250);
/// First wait before another try; doubled each time up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(10);

pub struct Dispatcher {
    pub queue: Arc<dyn Queue>,
    pub poster: Poster,
    pub urls: Vec<hyper::Uri>,
    /// This replica, as a lease holder.
    pub owner: String,
    pub max_age: Duration,
    pub metrics: Arc<WebhookMetrics>,
    /// Per (queue, receiver): woken when this replica queued an event.
    wake: Vec<Notify>,
    /// Per (queue, receiver): the last event acknowledged, for the gauge
    /// and trimming. A std mutex: never held across an await.
    acked: Vec<std::sync::Mutex<Cursor>>,
    /// Per (queue, receiver): when the event being tried was queued (Unix
    /// ms), 0 when none is.
    head: Vec<AtomicU64>,
}

impl Dispatcher {
    pub fn new(
        queue: Arc<dyn Queue>,
        poster: Poster,
        urls: Vec<hyper::Uri>,
        owner: String,
        max_age: Duration,
        metrics: Arc<WebhookMetrics>,
    ) -> Self {
        let slots = PARTITIONS * urls.len();
        Self {
            queue,
            poster,
            urls,
            owner,
            max_age,
            metrics,
            wake: (0..slots).map(|_| Notify::new()).collect(),
            acked: (0..slots).map(|_| Default::default()).collect(),
            head: (0..slots).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    fn slot(&self, partition: usize, receiver: usize) -> usize {
        partition * self.urls.len() + receiver
    }

    /// This replica queued events in `partition`.
    pub fn wake(&self, partition: usize) {
        for receiver in 0..self.urls.len() {
            self.wake[self.slot(partition, receiver)].notify_one();
        }
    }

    /// Keeps leases and runs the deliveries of held queues until `stop`;
    /// then gives the leases up.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        let mut held: Vec<Option<CancellationToken>> = vec![None; PARTITIONS];
        let mut tick = tokio::time::interval(LEASE_INTERVAL);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.cancelled() => break,
            }
            for (partition, running) in held.iter_mut().enumerate() {
                let holds = match self.queue.lease(partition, &self.owner).await {
                    Ok(holds) => holds,
                    Err(err) => {
                        tracing::debug!(%err, "could not keep a webhook lease");
                        false
                    }
                };
                match (holds, running.is_some()) {
                    (true, false) => {
                        let token = stop.child_token();
                        for receiver in 0..self.urls.len() {
                            let this = self.clone();
                            let token = token.clone();
                            tokio::spawn(this.deliver(partition, receiver, token));
                        }
                        *running = Some(token);
                    }
                    (false, true) => running.take().expect("checked").cancel(),
                    _ => {}
                }
            }
            self.refresh(&held).await;
        }
        for (partition, running) in held.into_iter().enumerate() {
            if let Some(token) = running {
                token.cancel();
                self.queue.release(partition, &self.owner).await;
            }
        }
    }

    /// The gauges, and trimming what every receiver acknowledged.
    async fn refresh(&self, held: &[Option<CancellationToken>]) {
        let now = unix_ms();
        let mut queued = 0;
        let mut oldest = 0;
        for (partition, _) in held.iter().enumerate().filter(|(_, h)| h.is_some()) {
            let Ok(last) = self.queue.last_seq(partition).await else {
                continue;
            };
            let mut least: Option<Cursor> = None;
            for receiver in 0..self.urls.len() {
                let slot = self.slot(partition, receiver);
                let acked = self.acked(slot);
                queued += last.saturating_sub(acked.seq);
                if least.as_ref().is_none_or(|l| acked.seq < l.seq) {
                    least = Some(acked);
                }
                let head = self.head[slot].load(Ordering::Relaxed);
                if head > 0 {
                    oldest = oldest.max(now.saturating_sub(head));
                }
            }
            // What every receiver acknowledged is of no more use.
            if let Some(least) = least.filter(|l| l.seq > 0) {
                self.queue.trim(partition, &least).await;
            }
        }
        self.metrics.queued.set(queued as i64);
        self.metrics.oldest_seconds.set((oldest / 1000) as i64);
    }

    fn acked(&self, slot: usize) -> Cursor {
        self.acked[slot]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn set_acked(&self, slot: usize, cursor: &Cursor) {
        *self.acked[slot].lock().unwrap_or_else(|e| e.into_inner()) = cursor.clone();
    }

    async fn deliver(self: Arc<Self>, partition: usize, receiver: usize, stop: CancellationToken) {
        let name = self.urls[receiver].to_string();
        let slot = self.slot(partition, receiver);
        let mut cursor = loop {
            match self.queue.cursor(partition, &name).await {
                Ok(cursor) => break cursor,
                Err(err) => tracing::debug!(%err, "webhook cursor not read yet"),
            }
            if pause(&stop, LEASE_INTERVAL).await {
                return;
            }
        };
        self.set_acked(slot, &cursor);
        // The cursor as last stored: under load it is stored every
        // [`STORE_EVERY`] (or [`BATCH`] events), and at once when the queue
        // runs dry, so a busy queue costs Redis one cursor write per many
        // events, at the price of sending those again after a takeover.
        let mut stored = cursor.clone();
        let mut stored_at = Instant::now();
        while !stop.is_cancelled() {
            let entries = match self.queue.read(partition, &cursor, BATCH).await {
                Ok(entries) => entries,
                Err(err) => {
                    tracing::debug!(%err, "webhook queue not read");
                    if pause(&stop, LEASE_INTERVAL).await {
                        return;
                    }
                    continue;
                }
            };
            if entries.is_empty() {
                if cursor != stored {
                    if !self.store(partition, slot, &name, &cursor).await {
                        return;
                    }
                    (stored, stored_at) = (cursor.clone(), Instant::now());
                }
                tokio::select! {
                    _ = self.wake[slot].notified() => {}
                    _ = tokio::time::sleep(POLL) => {}
                    _ = stop.cancelled() => return,
                }
                // What else is queued meanwhile goes in the same read.
                if pause(&stop, GATHER).await {
                    return;
                }
                continue;
            }
            let full = entries.len() == BATCH;
            for entry in entries {
                self.count_gap(&cursor, &entry);
                if !self.deliver_one(slot, receiver, &entry, &stop).await {
                    break;
                }
                cursor = entry.position;
            }
            let due = cursor.seq >= stored.seq + BATCH as u64 || stored_at.elapsed() >= STORE_EVERY;
            if (due || stop.is_cancelled()) && cursor != stored {
                if !self.store(partition, slot, &name, &cursor).await {
                    return;
                }
                (stored, stored_at) = (cursor.clone(), Instant::now());
            }
            if !full && pause(&stop, GATHER).await {
                return;
            }
        }
    }

    /// Stores a receiver's cursor; false when another replica holds the
    /// queue now (it goes on from the last cursor stored: what this one
    /// delivered since is sent again, at least once). A cursor that could
    /// not be written is kept for the next try.
    async fn store(&self, partition: usize, slot: usize, name: &str, cursor: &Cursor) -> bool {
        match self
            .queue
            .advance(partition, name, &self.owner, cursor)
            .await
        {
            Ok(true) => {
                self.set_acked(slot, cursor);
                true
            }
            Ok(false) => false,
            Err(err) => {
                tracing::debug!(%err, "webhook cursor not stored; kept for the next");
                true
            }
        }
    }

    /// Events the queue dropped between the cursor and `entry` (it was
    /// full).
    fn count_gap(&self, cursor: &Cursor, entry: &Entry) {
        let seq = entry.position.seq;
        if cursor.seq > 0 && seq > cursor.seq + 1 {
            let lost = seq - cursor.seq - 1;
            self.metrics.dropped.inc_by(lost);
            tracing::warn!(
                lost,
                "webhook events were dropped undelivered: the queue was full (--webhook-max-queue)"
            );
        }
    }

    /// Tries one event until its receiver acknowledges it, or it is older
    /// than the age bound (dropped); false when stopped first.
    async fn deliver_one(
        &self,
        slot: usize,
        receiver: usize,
        entry: &Entry,
        stop: &CancellationToken,
    ) -> bool {
        let url = &self.urls[receiver];
        self.head[slot].store(entry.queued_at, Ordering::Relaxed);
        let mut tries = 0u32;
        let done = loop {
            if unix_ms().saturating_sub(entry.queued_at) > self.max_age.as_millis() as u64 {
                self.metrics.dropped.inc();
                tracing::warn!(
                    event = %entry.id,
                    receiver = %shown(url),
                    "webhook event dropped undelivered: older than --webhook-max-age"
                );
                break true;
            }
            match self.poster.post(url, &entry.id, &entry.body).await {
                Ok(()) => {
                    self.metrics.delivered.inc();
                    if tries > 0 {
                        self.metrics.retried.inc();
                    }
                    break true;
                }
                Err(err) => {
                    self.metrics.failed(err.label());
                    tries += 1;
                    if tries == 1 || tries.is_multiple_of(10) {
                        tracing::warn!(
                            event = %entry.id,
                            receiver = %shown(url),
                            tries,
                            %err,
                            "webhook event not delivered; trying again"
                        );
                    }
                    if pause(stop, backoff(tries)).await {
                        break false;
                    }
                }
            }
        };
        self.head[slot].store(0, Ordering::Relaxed);
        done
    }
}

/// Waits, or returns true at once when stopped.
async fn pause(stop: &CancellationToken, wait: Duration) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(wait) => false,
        _ = stop.cancelled() => true,
    }
}

/// 100 ms doubling to 10 s, ±20% so that receivers coming back are not hit
/// by every queue at once.
fn backoff(tries: u32) -> Duration {
    let base = FIRST_BACKOFF.saturating_mul(1 << tries.saturating_sub(1).min(16));
    base.min(MAX_BACKOFF).mul_f64(0.8 + fastrand::f64() * 0.4)
}

/// A receiver as logs show it: host, port and path, never a query (which
/// may carry a token) or user info.
fn shown(url: &hyper::Uri) -> String {
    let host = url.host().unwrap_or("?");
    let port = url.port_u16().map(|p| format!(":{p}")).unwrap_or_default();
    format!("{host}{port}{}", url.path())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_its_cap_and_logs_hide_queries() {
        assert!(backoff(1) <= Duration::from_millis(120));
        assert!(backoff(3) >= Duration::from_millis(320));
        assert!(backoff(40) <= MAX_BACKOFF.mul_f64(1.2));
        let url: hyper::Uri = "http://u:p@hook.example:8080/in?token=secret"
            .parse()
            .unwrap();
        assert_eq!(shown(&url), "hook.example:8080/in");
    }
}
