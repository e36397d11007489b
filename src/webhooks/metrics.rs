//! The webhooks' Prometheus metrics, registered beside the server's own.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, &'static str)>;

#[derive(Default)]
pub struct WebhookMetrics {
    /// Events a receiver acknowledged (2xx), once per receiver.
    pub delivered: Counter,
    /// Tries that did not deliver, by why (status, timeout, unreachable).
    pub failed: Family<Labels, Counter>,
    /// Events that needed more than one try, counted once delivered.
    pub retried: Counter,
    /// Events dropped: too old, or pushed out of a full queue.
    pub dropped: Counter,
    /// Events waiting for a receiver, in the queues this replica delivers.
    pub queued: Gauge,
    /// Age of the oldest event waiting in those queues, in seconds.
    pub oldest_seconds: Gauge,
}

impl WebhookMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "webhook_events_delivered",
            "Webhook events a receiver acknowledged with a 2xx answer",
            self.delivered.clone(),
        );
        registry.register(
            "webhook_attempts_failed",
            "Webhook tries that did not deliver, by reason",
            self.failed.clone(),
        );
        registry.register(
            "webhook_events_retried",
            "Webhook events delivered after more than one try",
            self.retried.clone(),
        );
        registry.register(
            "webhook_events_dropped",
            "Webhook events dropped undelivered (older than --webhook-max-age, or beyond --webhook-max-queue)",
            self.dropped.clone(),
        );
        registry.register(
            "webhook_events_queued",
            "Webhook events waiting for a receiver in the queues this replica delivers",
            self.queued.clone(),
        );
        registry.register(
            "webhook_oldest_queued_seconds",
            "Age of the oldest webhook event waiting in the queues this replica delivers",
            self.oldest_seconds.clone(),
        );
    }

    pub fn failed(&self, reason: &'static str) {
        self.failed.get_or_create(&vec![("reason", reason)]).inc();
    }
}
