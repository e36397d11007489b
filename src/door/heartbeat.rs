//! Ping timing, the same on both doors.

use super::limits::Limits;

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
