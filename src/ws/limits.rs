//! Every bound a client can run into, with its default. Breaking one is
//! answered with an error frame (see [`super::protocol::ErrorCode`]), never
//! with a crash or a silent drop.

use std::time::{Duration, Instant};

/// The bounds the native door enforces itself; the rest (rooms per
/// connection, message size, queue length) are the hub's. Flags and
/// defaults: `crate::config::LimitArgs`.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Longest room name accepted in a frame.
    pub max_room_len: usize,
    /// Largest incoming frame, refused from its header.
    pub max_frame_bytes: usize,
    /// Frames per second a connection may send, sustained, and the burst
    /// above it.
    pub rate_limit: f64,
    pub rate_burst: f64,
    /// Open WebSocket connections per replica.
    pub max_connections: usize,
    /// Ping to idle clients, and the silence after it that closes them.
    pub ping_interval: Duration,
    pub ping_timeout: Duration,
}

/// Ping timing, the same on both doors: a ping after `ping_interval`
/// without one, and the client closed when `ping_timeout` passes after a
/// ping with nothing heard. Only the flag lives in the connection; the
/// timer is the connection's pinned `Sleep`.
#[derive(Debug, Default)]
pub struct Heartbeat {
    ping_sent: bool,
}

impl Heartbeat {
    /// The timer fired: true if the last ping went unanswered (close);
    /// otherwise a ping is due and the timer now waits for its answer.
    pub fn fired(
        &mut self,
        timer: std::pin::Pin<&mut tokio::time::Sleep>,
        limits: &Limits,
    ) -> bool {
        let unanswered = self.ping_sent;
        self.ping_sent = true;
        timer.reset(tokio::time::Instant::now() + limits.ping_timeout);
        unanswered
    }

    /// Something came from the client: it is alive.
    pub fn heard(&mut self, timer: std::pin::Pin<&mut tokio::time::Sleep>, limits: &Limits) {
        if std::mem::take(&mut self.ping_sent) {
            timer.reset(tokio::time::Instant::now() + limits.ping_interval);
        }
    }
}

/// A token bucket: `rate` tokens per second up to `burst`.
#[derive(Debug)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    refilled: Instant,
}

impl TokenBucket {
    pub fn new(rate: f64, burst: f64) -> Self {
        let burst = burst.max(1.0);
        Self {
            rate,
            burst,
            tokens: burst,
            refilled: Instant::now(),
        }
    }

    /// Takes one token if there is one.
    pub fn try_take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.refilled = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_refills_at_rate() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(10.0, 2.0);
        assert!(bucket.try_take(start));
        assert!(bucket.try_take(start));
        assert!(!bucket.try_take(start));
        assert!(bucket.try_take(start + Duration::from_millis(100)));
        assert!(!bucket.try_take(start + Duration::from_millis(100)));
    }
}
