//! Joins take turns at the log: a few hundred at a time wait on it, the
//! rest wait for a turn first. In a burst of reconnects every join used to
//! have its Redis calls in flight at once, each a few KB of state: 10,000
//! Socket.IO joins on one replica peaked at 100 MB of heap, 58 MB with
//! turns, and left about 200 bytes more per socket resident after
//! (docs/BENCHMARKS.md, "A burst of Socket.IO joins").

use std::time::Duration;
use tokio::sync::{Semaphore, SemaphorePermit};

/// Joins waiting on the log together; Redis answers them pipelined.
/// (64 measured the same.)
pub(super) const JOINS_AT_ONCE: usize = 256;

/// How long a join waits for its turn before it goes ahead anyway. While
/// Redis is away the joins ahead of it take their whole timeouts; turns
/// must not make a join fail much later than it would without them.
pub(super) const TURN_WAIT: Duration = Duration::from_secs(1);

pub(super) struct Turns(Semaphore);

impl Default for Turns {
    fn default() -> Self {
        Self(Semaphore::new(JOINS_AT_ONCE))
    }
}

impl Turns {
    /// Held while the join waits on the log; `None`: the turn was slow to
    /// come and the join goes ahead without one.
    pub async fn take(&self) -> Option<SemaphorePermit<'_>> {
        let turn = tokio::time::timeout(TURN_WAIT, self.0.acquire()).await;
        turn.ok().map(|permit| permit.expect("never closed"))
    }
}
