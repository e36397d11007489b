//! Nagle's algorithm, only while the process is overloaded.
//!
//! Chat sockets run with Nagle off: with it, a frame written while the
//! previous one is unacknowledged waits for that ACK, which a client may
//! delay (a member of a room of 10 at 2,000 messages/s: p99 0.8 ms without,
//! 13 ms with). Once the process cannot keep up the trade reverses: frames
//! are late already, and letting the kernel merge them into fewer segments
//! cuts its share of a delivery, most of the cost, by a third or more (CPU
//! per delivery 4.2 → 3.3 µs at 1000 members × 300 messages/s;
//! docs/BENCHMARKS.md). So a monitor measures how long a task ready to run
//! waits for its turn, and while that is long every chat socket turns
//! Nagle on at its next write; once the process has caught up they turn it
//! off again the same way.
//!
//! gRPC connections do the same in user space: hyper writes each response
//! as soon as it is ready, one `writev` per call (0.7 per call at 16
//! connections × 32 streams); while the process is overloaded a
//! connection's write waits for one turn of the runtime, so what the other
//! calls finish meanwhile leaves with it (0.07 per call, and 10-13% less
//! server CPU per call).
//!
//! A chat server also asks its frames: on a machine shared with other
//! busy processes the runtime waits long at light loads too (a room of 10
//! at 2,000 messages/s: 70-90 µs at the median, 350 µs at the 90th), and
//! Nagle there cost the room's tail 10-24 ms. What tells load from a busy
//! neighbour is how late frames leave after their message arrived (all
//! three measured in one hour): 20-40 µs on average in that room, 2-2.6
//! ms at saturation (1000 members × 300 messages/s) and 0.9-1.7 ms once
//! Nagle has the process keeping up. So on a server that writes room
//! messages, Nagle comes on only while frames are late too, and goes off
//! once they are on time again.
//!
//! The state is the process's, not a server's: every server of a process
//! shares its runtime, so they are late together.

use std::cell::Cell;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_util::sync::{CancellationToken, DropGuard};

static OVERLOADED: AtomicBool = AtomicBool::new(false);

/// How often the monitor measures.
const PERIOD: Duration = Duration::from_millis(10);
/// The mean wait (an exponential average over about eight measurements)
/// from which the process counts as overloaded. Measured with three
/// replicas and the load generator on two cores: at light loads the wait
/// is 9-16 µs at the median and 300-650 µs at the 99th percentile (a
/// fan-out burst); at saturation (1000 members × 300 messages/s) 180-210
/// µs at the median, 600-670 µs at the 90th.
const OVERLOADED_FROM: Duration = Duration::from_micros(200);
/// The process has caught up once the mean of the last [`CALM_WINDOW`]
/// waits (120 ms) is under [`CALM_MEAN`]. Not the run of short waits it
/// first was (four in a row under 80 µs): under Nagle a saturated process
/// keeps up, and its waits come in two kinds, 1-2 µs when the monitor
/// finds the queue empty and 100-400 µs when it does not, 45% of them
/// under 80 µs at 1000 × 300. Four short ones in a row came every few
/// hundred milliseconds, so Nagle went off, the process fell behind and
/// it went on again: off for a third or more of a saturated run. The mean
/// tells the two apart: at light loads (median 7-14 µs) it falls under 30
/// µs within a window of the load ending, so the members of a busy room
/// do not wait for ACKs much longer after a burst (a thousand clients
/// connecting) than before.
const CALM_WINDOW: usize = 12;
const CALM_MEAN: Duration = Duration::from_micros(30);
/// A wait counts at most this long, so that one stall (the machine busy
/// elsewhere for a moment) is not taken for overload: it takes three long
/// waits in a row.
const SAMPLE_CAP: Duration = Duration::from_micros(800);

/// Frames are late from this mean (an exponential average over about
/// eight measurements of the sampled frames), and on time again under
/// [`FRAMES_ON_TIME`]: far enough under what they are while Nagle keeps a
/// saturated process up (0.9 ms at the least) that it stays on there.
const FRAMES_LATE_FROM: Duration = Duration::from_millis(1);
const FRAMES_ON_TIME: Duration = Duration::from_micros(300);
/// One frame in this many, per thread, is timed: a clock read and two
/// shared counters per frame would be a few percent of a delivery.
const SAMPLE_EVERY: u8 = 8;
/// A frame counts at most this late, so one stalled socket does not
/// outweigh the rest.
const FRAME_CAP: Duration = Duration::from_millis(50);
/// The sampled frames' lateness in µs and how many, since the monitor's
/// last measurement.
static FRAMES_LATE_US: AtomicU64 = AtomicU64::new(0);
static FRAMES_TIMED: AtomicU64 = AtomicU64::new(0);

/// A socket writes a room message that arrived at `arrived`.
pub fn writing(arrived: Instant) {
    thread_local! {
        static UNTIL_NEXT: Cell<u8> = const { Cell::new(0) };
    }
    let due = UNTIL_NEXT.with(|until| match until.get() {
        0 => {
            until.set(SAMPLE_EVERY - 1);
            true
        }
        n => {
            until.set(n - 1);
            false
        }
    });
    if due {
        let late = arrived.elapsed().min(FRAME_CAP).as_micros() as u64;
        FRAMES_LATE_US.fetch_add(late, Ordering::Relaxed);
        FRAMES_TIMED.fetch_add(1, Ordering::Relaxed);
    }
}

/// The mean lateness of the frames timed since the last call, if any.
fn frames_late() -> Option<Duration> {
    let timed = FRAMES_TIMED.swap(0, Ordering::Relaxed);
    let late_us = FRAMES_LATE_US.swap(0, Ordering::Relaxed);
    (timed > 0).then(|| Duration::from_micros(late_us / timed))
}

/// Measures the runtime's queueing until the guard is dropped.
pub fn watch() -> DropGuard {
    let stop = CancellationToken::new();
    let guard = stop.clone().drop_guard();
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(PERIOD);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut late = Lateness::default();
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                _ = stop.cancelled() => break,
            }
            // Back of the run queue: the wait is what every task ready
            // now waits, with no timer granularity in it.
            let queued = Instant::now();
            tokio::task::yield_now().await;
            let wait = queued.elapsed();
            late.frames(frames_late());
            if let Some(overloaded) = late.observe(wait) {
                tracing::debug!(
                    overloaded,
                    wait_us = late.mean_us,
                    frames_us = late.frames_us,
                    "sockets follow the load"
                );
                OVERLOADED.store(overloaded, Ordering::Relaxed);
            }
        }
        OVERLOADED.store(false, Ordering::Relaxed);
    });
    guard
}

/// The exponential average of the monitor's waits and the last few of
/// them: on by the average, off by the mean of the last few; and, once
/// the process writes room messages, the average of their frames'
/// lateness, which must agree.
#[derive(Default)]
struct Lateness {
    mean_us: u64,
    /// `None` until a frame was timed: a process without room messages
    /// (grpc-server) goes by its waits alone.
    frames_us: Option<u64>,
    /// The last [`CALM_WINDOW`] waits in µs (capped, so they fit); `next`
    /// is where the next one goes, over the oldest.
    recent: [u16; CALM_WINDOW],
    next: usize,
    overloaded: bool,
}

impl Lateness {
    /// A measurement's frames. None written counts as none late, once
    /// the process has written any: a room message's frames are late
    /// while they queue, and an average left over from the last burst
    /// would turn Nagle on for the next one's first waits (a room of 10
    /// after 1000 × 25: 200 ms of it, p99 1.6 → 6.2 ms).
    fn frames(&mut self, late: Option<Duration>) {
        self.frames_us = match (late, self.frames_us) {
            (Some(late), None) => Some(late.as_micros() as u64),
            (Some(late), Some(mean)) => Some(average(mean, late.as_micros() as u64)),
            (None, Some(mean)) => Some(average(mean, 0)),
            (None, None) => None,
        };
    }

    /// Whether frames agree with the waits: no frames timed, no say.
    fn frames_beyond(&self, bound: Duration) -> bool {
        self.frames_us
            .is_none_or(|us| Duration::from_micros(us) >= bound)
    }

    /// The new state when it changes.
    fn observe(&mut self, late: Duration) -> Option<bool> {
        let late = late.min(SAMPLE_CAP);
        let sample = late.as_micros() as u64;
        self.mean_us = average(self.mean_us, sample);
        self.recent[self.next] = sample as u16;
        self.next = (self.next + 1) % CALM_WINDOW;
        let overloaded = if self.overloaded {
            !self.calm() && self.frames_beyond(FRAMES_ON_TIME)
        } else {
            Duration::from_micros(self.mean_us) >= OVERLOADED_FROM
                && self.frames_beyond(FRAMES_LATE_FROM)
        };
        if overloaded == self.overloaded {
            return None;
        }
        if !overloaded {
            // Start again from the calm, not from the burst's average.
            self.mean_us = sample;
        }
        self.overloaded = overloaded;
        Some(overloaded)
    }

    fn calm(&self) -> bool {
        let total: u64 = self.recent.iter().map(|&us| u64::from(us)).sum();
        Duration::from_micros(total / CALM_WINDOW as u64) < CALM_MEAN
    }
}

/// The monitor's exponential average: a new measurement weighs an eighth,
/// so the average spans about the last eight (80 ms).
fn average(mean: u64, sample: u64) -> u64 {
    (mean * 7 + sample) / 8
}

/// Holds a connection's write back for one turn of the runtime while the
/// process is overloaded.
#[derive(Default)]
pub struct Coalesce {
    held: bool,
}

impl Coalesce {
    /// True when the write should wait: the task is woken at once, so it
    /// goes to the back of the run queue and writes on its next turn.
    pub fn hold(&mut self, cx: &mut Context<'_>) -> bool {
        self.hold_if(OVERLOADED.load(Ordering::Relaxed), cx)
    }

    fn hold_if(&mut self, overloaded: bool, cx: &mut Context<'_>) -> bool {
        if self.held || !overloaded {
            return false;
        }
        self.held = true;
        cx.waker().wake_by_ref();
        true
    }

    /// Once a flush has completed, the next write may be held again (the
    /// writes of one flush are held once, not each).
    pub fn flushed(&mut self) {
        self.held = false;
    }
}

/// An accepted chat socket whose Nagle setting follows the load.
pub struct Socket {
    tcp: TcpStream,
    nagle: bool,
}

impl Socket {
    pub fn new(tcp: TcpStream) -> Self {
        crate::process::no_delay(&tcp);
        Self { tcp, nagle: false }
    }

    /// One atomic load per write; a system call only when the state
    /// changes. Turning Nagle off also sends what it was holding.
    fn follow_load(&mut self) {
        let overloaded = OVERLOADED.load(Ordering::Relaxed);
        if overloaded != self.nagle {
            self.nagle = overloaded;
            if let Err(err) = self.tcp.set_nodelay(!overloaded) {
                tracing::debug!(%err, "cannot change Nagle's algorithm");
            }
        }
    }
}

impl AsyncRead for Socket {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for Socket {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.follow_load();
        Pin::new(&mut self.tcp).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.follow_load();
        Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests;
