//! Draining, on SIGTERM or a drain command: readiness off and new sockets
//! refused at once (a balancer retries them elsewhere); the sockets held
//! are served for `delay` (the time a balancer needs to see the replica
//! gone), then sent elsewhere evenly over `duration`, oldest first, each
//! answered before its close, so that reconnects reach the other replicas
//! as a trickle instead of a wave. Done once none is left, or at the
//! deadline (`--shutdown-timeout` after the start), whichever comes first.

use crate::door::DoorState;
use std::time::Duration;
use tokio::time::Instant;

/// The drain's timing, from `--drain-delay` and `--drain-duration`.
#[derive(Debug, Clone, Copy)]
pub struct DrainSettings {
    pub delay: Duration,
    pub duration: Duration,
}

/// Never slower than this, so that sessions which begin during the drain
/// (with none held, the pace would be zero) are sent off too. Any floor
/// above the held sockets' own pace would end the drain early in a burst
/// twice as dense as the duration promises.
const MIN_RATE: f64 = 1.0;

/// Once every session was sent off, how long the sockets still closing
/// (answering what their clients sent) have before the rest (transports
/// that never became a session) is closed at once.
const LAST_CALL: Duration = Duration::from_secs(1);

/// How often the pace is kept: sockets are sent off in small steps.
const TICK: Duration = Duration::from_millis(20);

/// How far a late tick (a busy machine) may catch up at once, in ticks'
/// worth: the rest is spread over the following ticks, never bunched.
const CATCH_UP: f64 = 1.5;

/// Drains `door` until no socket is left or `deadline`.
pub(super) async fn run(door: &DoorState, settings: DrainSettings, deadline: Instant) {
    let metrics = &door.metrics;
    door.draining.cancel();
    metrics.draining.set(1);
    tracing::info!(
        sockets = door.sockets(),
        delay = ?settings.delay,
        duration = ?settings.duration,
        "draining"
    );
    let served_until = (Instant::now() + settings.delay).min(deadline);
    while Instant::now() < served_until && door.sockets() > 0 {
        tokio::time::sleep(TICK).await;
    }
    let held = door.hub.sessions();
    let rate = (held as f64 / settings.duration.as_secs_f64()).max(MIN_RATE);
    let per_tick = (CATCH_UP * rate * TICK.as_secs_f64()).ceil() as usize;
    let started = Instant::now();
    let mut told = 0;
    let mut last_call: Option<Instant> = None;
    loop {
        // Sessions that begin during the drain (a Socket.IO CONNECT on a
        // transport opened before it) are sent off at the same pace.
        // A late tick does not catch up in one burst (see CATCH_UP).
        let due = (started.elapsed().as_secs_f64() * rate).ceil() as usize;
        let now = due.saturating_sub(told).min(per_tick);
        if now > 0 {
            let sent = door.hub.shed(now);
            metrics.drained.inc_by(sent as u64);
            told += now;
        }
        let left = door.sockets();
        if door.hub.sessions() == 0 && told >= held {
            last_call.get_or_insert_with(|| Instant::now() + LAST_CALL);
        }
        if left == 0 || last_call.is_some_and(|at| Instant::now() >= at) {
            tracing::info!(sent = metrics.drained.get(), left, "drained");
            return;
        }
        if Instant::now() >= deadline {
            tracing::warn!(left, "shutdown timeout before the drain ended");
            return;
        }
        tokio::time::sleep(TICK).await;
    }
}
