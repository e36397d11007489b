//! Webhooks: what happens in the chat, POSTed to the application's
//! backend, signed, at least once and in order per room.
//!
//! An event is written to a queue the moment its action succeeded (a
//! member joined, a message was stored): to Redis when the server shares
//! one, so the events outlive the replica that produced them, and are
//! delivered by whichever replica holds the queue's lease. The members of
//! a replica that died leave through the presence sweep of another
//! replica, which queues their `member_left` (reason `replica_died`).
//!
//! - [`event`]: types and the JSON body.
//! - `queue`: where events wait (Redis streams, or memory standalone).
//! - `deliver`: leases, ordered delivery, retries.
//! - `post`: one signed POST.
//! - `metrics`: delivered, failed, retried, dropped, queued, oldest age.
//!
//! Between the action and the queue write an event sits in this process
//! for well under a millisecond (longer while Redis is unreachable, up to
//! [`PENDING`] events, beyond which new ones are dropped and counted): a
//! replica killed in that window loses those events. Its members'
//! `member_left` are still sent, by the sweep.

mod deliver;
pub mod event;
mod metrics;
pub(crate) mod post;
mod queue;

pub use crate::broadcast::LeaveReason;
pub use event::EventType;

use crate::redis::RedisSettings;
use bytes::Bytes;
use metrics::WebhookMetrics;
use queue::Queue;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Events waiting in this process for their queue write (Redis away).
pub const PENDING: usize = 10_000;
/// Events written to a queue in one call at most.
const WRITE_BATCH: usize = 256;

/// What `--webhook-*` asked for.
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    pub urls: Vec<hyper::Uri>,
    pub secret: Vec<u8>,
    pub events: Vec<EventType>,
    pub timeout: Duration,
    pub max_age: Duration,
    pub max_queue: usize,
}

struct Pending {
    partition: usize,
    id: String,
    body: Bytes,
}

/// The producer's handle; a no-op when webhooks are off.
pub struct Webhooks {
    /// Bits of the event types to send; 0 when off.
    wanted: u16,
    sender: Option<flume::Sender<Pending>>,
    metrics: Arc<WebhookMetrics>,
    /// Events emitted and not yet written to their queue.
    unwritten: Arc<AtomicUsize>,
    written: Arc<Notify>,
    stop: CancellationToken,
    tasks: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl Webhooks {
    /// Webhooks off: every emit is a no-op.
    pub fn off() -> Arc<Self> {
        Arc::new(Self {
            wanted: 0,
            sender: None,
            metrics: Arc::default(),
            unwritten: Arc::default(),
            written: Arc::default(),
            stop: CancellationToken::new(),
            tasks: Default::default(),
        })
    }

    /// Starts the queue writer and the delivery of the queues this replica
    /// takes; `server` names it in lease keys. Off without settings.
    pub async fn start(
        settings: Option<WebhookSettings>,
        redis: Option<&RedisSettings>,
        server: &str,
    ) -> anyhow::Result<Arc<Self>> {
        let Some(settings) = settings else {
            return Ok(Self::off());
        };
        let queue: Arc<dyn Queue> = match redis {
            Some(redis) => {
                let client = crate::redis::builder(redis)?.build()?;
                crate::redis::connect(&[&client]).await;
                Arc::new(queue::redis::RedisQueue::new(
                    client,
                    settings.max_queue,
                    deliver::LEASE_TTL,
                ))
            }
            None => {
                tracing::info!(
                    "webhook events are kept in memory (no Redis): those undelivered when this process stops are lost"
                );
                Arc::new(queue::memory::MemoryQueue::new(settings.max_queue))
            }
        };
        let metrics = Arc::new(WebhookMetrics::default());
        let owner = format!(
            "{server}-{}",
            std::iter::repeat_with(fastrand::alphanumeric)
                .take(8)
                .collect::<String>()
        );
        let dispatcher = Arc::new(deliver::Dispatcher::new(
            queue.clone(),
            post::Poster::new(settings.secret, settings.timeout),
            settings.urls,
            owner,
            settings.max_age,
            metrics.clone(),
        ));
        let (sender, receiver) = flume::bounded(PENDING);
        let unwritten = Arc::new(AtomicUsize::new(0));
        let written = Arc::new(Notify::new());
        let stop = CancellationToken::new();
        let writer = tokio::spawn(write(
            queue,
            receiver,
            dispatcher.clone(),
            unwritten.clone(),
            written.clone(),
        ));
        let delivery = tokio::spawn(dispatcher.run(stop.clone()));
        Ok(Arc::new(Self {
            wanted: settings
                .events
                .iter()
                .fold(0, |bits, kind| bits | kind.bit()),
            sender: Some(sender),
            metrics,
            unwritten,
            written,
            stop,
            tasks: std::sync::Mutex::new(vec![writer, delivery]),
        }))
    }

    fn wants(&self, kind: EventType) -> bool {
        self.wanted & kind.bit() != 0
    }

    /// Queues an event about `key` (a room, or a user: events of one key
    /// are delivered in order). `data` builds its JSON value, and is only
    /// called for a type that is sent.
    pub fn emit(&self, kind: EventType, key: &str, data: impl FnOnce() -> Vec<u8>) {
        if !self.wants(kind) {
            return;
        }
        let Some(sender) = &self.sender else { return };
        let id = event::new_id();
        let body = event::body(&id, kind, &data());
        let pending = Pending {
            partition: queue::partition(key),
            id,
            body,
        };
        self.unwritten.fetch_add(1, Ordering::Relaxed);
        if sender.try_send(pending).is_err() {
            self.unwritten.fetch_sub(1, Ordering::Relaxed);
            self.metrics.dropped.inc();
            tracing::warn!(
                kind = kind.as_str(),
                "webhook event dropped: {PENDING} events wait for the queue (Redis unreachable?)"
            );
        }
    }

    pub fn register(&self, registry: &mut prometheus_client::registry::Registry) {
        self.metrics.register(registry);
    }

    /// As the server stops: waits up to `within` for emitted events to
    /// reach their queue, then stops delivering and gives the leases up
    /// (other replicas deliver the rest).
    pub async fn close(&self, within: Duration) {
        let flushed = tokio::time::timeout(within, async {
            loop {
                let notified = self.written.notified();
                if self.unwritten.load(Ordering::Relaxed) == 0 {
                    return;
                }
                notified.await;
            }
        })
        .await;
        if flushed.is_err() {
            tracing::warn!(
                unwritten = self.unwritten.load(Ordering::Relaxed),
                "webhook events not written to their queue before shutdown"
            );
        }
        self.stop.cancel();
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|e| e.into_inner()));
        for task in tasks {
            if !task.is_finished() {
                // The delivery releases its leases; the writer is aborted.
                let _ = tokio::time::timeout(Duration::from_secs(1), task).await;
            }
        }
    }
}

impl Drop for Webhooks {
    fn drop(&mut self) {
        self.stop.cancel();
        for task in self
            .tasks
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            task.abort();
        }
    }
}

/// Writes emitted events to their queues in batches, in order per queue,
/// retrying a write while the queue is unreachable (a retried write that
/// had landed queues the events twice, with their ids: receivers
/// deduplicate by id).
async fn write(
    queue: Arc<dyn Queue>,
    receiver: flume::Receiver<Pending>,
    dispatcher: Arc<deliver::Dispatcher>,
    unwritten: Arc<AtomicUsize>,
    written: Arc<Notify>,
) {
    while let Ok(first) = receiver.recv_async().await {
        let mut batch = vec![first];
        while batch.len() < WRITE_BATCH {
            match receiver.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let count = batch.len();
        let mut parts: Vec<(usize, Vec<(String, Bytes)>)> = Vec::new();
        for event in batch {
            match parts.iter_mut().find(|(p, _)| *p == event.partition) {
                Some((_, events)) => events.push((event.id, event.body)),
                None => parts.push((event.partition, vec![(event.id, event.body)])),
            }
        }
        let writes = parts.iter().map(|(partition, events)| {
            let queue = &queue;
            let dispatcher = &dispatcher;
            async move {
                let mut wait = Duration::from_millis(100);
                while let Err(err) = queue.append(*partition, events).await {
                    tracing::warn!(%err, "webhook events not queued yet; trying again");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(2));
                }
                dispatcher.wake(*partition);
            }
        });
        futures_util::future::join_all(writes).await;
        unwritten.fetch_sub(count, Ordering::Relaxed);
        written.notify_waiters();
    }
}
