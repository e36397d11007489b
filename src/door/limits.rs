//! The bounds every door enforces on its sockets itself; the rest (room
//! names, rooms per connection, message size, queue length) are the hub's.
//! Breaking one is answered with an error code or a close code, never with
//! a crash or a silent drop.

use std::time::Duration;

/// Frames (or Socket.IO packets) a client already sent that are answered
/// before a close that sends it elsewhere, on either door; the frame rate
/// bounds how many can be waiting.
pub(crate) const ANSWERED_BEFORE_CLOSE: usize = 256;

/// Flags and defaults: `--max-frame-bytes`, `--rate-limit`, ... in
/// `rtchat ws-server --help`.
#[derive(Debug, Clone)]
pub struct Limits {
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
