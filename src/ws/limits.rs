//! Every bound a client can run into, with its default. Breaking one is
//! answered with an error frame (see [`super::protocol::ErrorCode`]), never
//! with a crash or a silent drop.

use clap::Args;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Args)]
pub struct Limits {
    /// Longest room name, in characters of [A-Za-z0-9_.:-].
    #[arg(long, env = "MAX_ROOM_LEN", default_value_t = 128)]
    pub max_room_len: usize,

    /// Largest message text, in bytes.
    #[arg(long, env = "MAX_MESSAGE_BYTES", default_value_t = 4096)]
    pub max_message_bytes: usize,

    /// Largest incoming WebSocket frame, in bytes; a larger frame is refused
    /// from its header, before its payload is read, and closes the socket.
    #[arg(long, env = "MAX_FRAME_BYTES", default_value_t = 16 * 1024)]
    pub max_frame_bytes: usize,

    /// Frames per second a connection may send, sustained.
    #[arg(long, env = "RATE_LIMIT", default_value_t = 50.0)]
    pub rate_limit: f64,

    /// Frames a connection may send in a burst above the sustained rate.
    #[arg(long, env = "RATE_BURST", default_value_t = 100.0)]
    pub rate_burst: f64,

    /// Rooms one connection may be in at once.
    #[arg(long, env = "MAX_ROOMS", default_value_t = 64)]
    pub max_rooms: usize,

    /// Frames queued for a client before it is considered too slow and
    /// closed (code 1013), so memory never grows with a stalled reader.
    #[arg(long, env = "SEND_QUEUE", default_value_t = 1024)]
    pub send_queue: usize,

    /// Open WebSocket connections per replica; more get HTTP 503.
    #[arg(long, env = "MAX_CONNECTIONS", default_value_t = 100_000)]
    pub max_connections: usize,

    /// How often idle clients are pinged. Keep it well below the proxy's
    /// read timeout (nginx: 60 s by default).
    #[arg(long, env = "PING_INTERVAL", default_value = "25s", value_parser = humantime::parse_duration)]
    pub ping_interval: Duration,

    /// How long a client may stay silent after a ping before it is closed.
    #[arg(long, env = "PING_TIMEOUT", default_value = "20s", value_parser = humantime::parse_duration)]
    pub ping_timeout: Duration,
}

/// Why a room name was refused; the text goes to the client as is.
pub fn check_room(name: &str, max_len: usize) -> Result<(), String> {
    let len = name.chars().count();
    if len == 0 || len > max_len {
        return Err(format!("room name must be 1 to {max_len} characters"));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'))
    {
        return Err("room name may only contain A-Z a-z 0-9 _ . : -".into());
    }
    Ok(())
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
    fn room_names() {
        assert!(check_room("general", 128).is_ok());
        assert!(check_room("team-a:ops_1.x", 128).is_ok());
        assert!(check_room("", 128).is_err());
        assert!(check_room(&"a".repeat(129), 128).is_err());
        assert!(check_room(&"a".repeat(128), 128).is_ok());
        assert!(check_room("with space", 128).is_err());
        assert!(check_room("ünï", 128).is_err());
    }

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
