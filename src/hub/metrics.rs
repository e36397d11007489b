//! Prometheus metrics of one ws-server replica, counted by the hub and
//! by every door. Counters are atomics, so
//! the fan-out path pays one atomic add per broadcast, not per recipient.

use super::error::ErrorCode;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, &'static str)>;

pub struct Metrics {
    registry: Registry,
    pub connections: Gauge,
    /// Of those, Socket.IO's.
    pub socketio: Gauge,
    pub rooms: Gauge,
    pub messages_in: Counter,
    pub messages_out: Counter,
    pub slow_consumers: Counter,
    /// 1 from the start of a drain.
    pub draining: Gauge,
    /// Sockets sent elsewhere by a drain.
    pub drained: Counter,
    /// Sockets sent elsewhere by rebalancing.
    pub rebalanced: Counter,
    errors: Family<Labels, Counter>,
    pub publish_seconds: Histogram,
}

impl Metrics {
    pub fn new() -> Self {
        Self::with(|_| {})
    }

    /// The replica's metrics and whatever `more` registers beside them
    /// (the webhooks').
    pub fn with(more: impl FnOnce(&mut Registry)) -> Self {
        let mut registry = Registry::with_prefix("rtchat");
        more(&mut registry);
        let connections = Gauge::default();
        let socketio = Gauge::default();
        let rooms = Gauge::default();
        let messages_in = Counter::default();
        let messages_out = Counter::default();
        let slow_consumers = Counter::default();
        let draining = Gauge::default();
        let drained = Counter::default();
        let rebalanced = Counter::default();
        let errors = Family::<Labels, Counter>::default();
        // 50 us .. ~1.6 s: loopback Redis answers in well under a millisecond.
        let publish_seconds = Histogram::new(exponential_buckets(0.000_05, 2.0, 16));
        registry.register(
            "connections",
            "Open WebSocket connections",
            connections.clone(),
        );
        registry.register(
            "socketio_connections",
            "Open Socket.IO connections (counted in rtchat_connections too)",
            socketio.clone(),
        );
        registry.register("rooms", "Rooms with members on this replica", rooms.clone());
        registry.register(
            "messages_in",
            "Room messages accepted from clients",
            messages_in.clone(),
        );
        registry.register(
            "messages_out",
            "Room messages queued to local members",
            messages_out.clone(),
        );
        registry.register(
            "slow_consumers",
            "Connections closed because their send queue was full",
            slow_consumers.clone(),
        );
        registry.register(
            "draining",
            "1 while this replica drains (not ready, sockets sent elsewhere)",
            draining.clone(),
        );
        registry.register(
            "drained_sockets",
            "Sockets closed by a drain so that they reconnect elsewhere",
            drained.clone(),
        );
        registry.register(
            "rebalanced_sockets",
            "Sockets closed by rebalancing so that they reconnect to a replica with room",
            rebalanced.clone(),
        );
        registry.register("errors", "Error frames sent, by code", errors.clone());
        registry.register(
            "publish_latency_seconds",
            "Time to append a message to history and publish it (Redis round trip when shared)",
            publish_seconds.clone(),
        );
        Self {
            registry,
            connections,
            socketio,
            rooms,
            messages_in,
            messages_out,
            slow_consumers,
            draining,
            drained,
            rebalanced,
            errors,
            publish_seconds,
        }
    }

    pub fn error(&self, code: ErrorCode) {
        self.errors
            .get_or_create(&vec![("code", code.as_str())])
            .inc();
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
