//! The chat server's client-facing bounds, as flags.

use clap::Args;
use std::time::Duration;

/// Every bound a chat client can run into, with its default.
#[derive(Debug, Clone, Args)]
pub struct LimitArgs {
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
