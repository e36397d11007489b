//! A door's WebSocket: its buffers and frame bounds, the errors that mean
//! a bound was broken, and the token expiry both doors wait on.

use super::limits::Limits;
use axum::extract::WebSocketUpgrade;
use tokio_tungstenite::tungstenite;

/// Per-connection socket buffers. tungstenite's defaults (128 KiB read
/// buffer allocated up front) would cost over a gigabyte for 10,000 idle
/// sockets. The read buffer only ever holds client frames, which are few
/// (rate-limited; one frame in fans out to hundreds out) and mostly under
/// 128 bytes (a join, a short message); a longer one takes one `read` per
/// 128 bytes. Measured per idle connection: 4 KiB buffers ~10 KB, 1 KiB
/// ~5.3 KB, 256 bytes ~4.7 KB, 128 bytes about 130 bytes less
/// (docs/BENCHMARKS.md).
const READ_BUFFER_BYTES: usize = 128;
const WRITE_BUFFER_BYTES: usize = 1024;
/// Unsent bytes allowed to pile up in a socket's write buffer before writes
/// fail instead of buffering more.
const MAX_WRITE_BUFFER_BYTES: usize = 1024 * 1024;

/// Socket buffers and frame limits, the same for both doors.
pub(crate) fn configure(ws: WebSocketUpgrade, limits: &Limits) -> WebSocketUpgrade {
    ws.read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(WRITE_BUFFER_BYTES)
        .max_write_buffer_size(MAX_WRITE_BUFFER_BYTES)
        .max_frame_size(limits.max_frame_bytes)
        .max_message_size(limits.max_frame_bytes)
}

/// True for tungstenite's "frame or message over the configured size".
pub(crate) fn is_capacity_error(err: &axum::Error) -> bool {
    use std::error::Error as _;
    let mut source = err.source();
    while let Some(inner) = source {
        if let Some(tungstenite::Error::Capacity(_)) = inner.downcast_ref::<tungstenite::Error>() {
            return true;
        }
        source = inner.source();
    }
    false
}

/// Completes when the connection's token expires; never without a token.
pub(crate) async fn expired(expiry: &mut Option<std::pin::Pin<Box<tokio::time::Sleep>>>) {
    match expiry {
        Some(sleep) => sleep.as_mut().await,
        None => std::future::pending().await,
    }
}
