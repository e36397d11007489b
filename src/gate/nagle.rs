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
//! The state is the process's, not a server's: every server of a process
//! shares its runtime, so they are late together.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
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
            if let Some(overloaded) = late.observe(queued.elapsed()) {
                tracing::debug!(overloaded, "sockets follow the load");
                OVERLOADED.store(overloaded, Ordering::Relaxed);
            }
        }
        OVERLOADED.store(false, Ordering::Relaxed);
    });
    guard
}

/// The exponential average of the monitor's waits and the last few of
/// them: on by the average, off by the mean of the last few.
#[derive(Default)]
struct Lateness {
    mean_us: u64,
    /// The last [`CALM_WINDOW`] waits in µs (capped, so they fit); `next`
    /// is where the next one goes, over the oldest.
    recent: [u16; CALM_WINDOW],
    next: usize,
    overloaded: bool,
}

impl Lateness {
    /// The new state when it changes.
    fn observe(&mut self, late: Duration) -> Option<bool> {
        let late = late.min(SAMPLE_CAP);
        let sample = late.as_micros() as u64;
        self.mean_us = (self.mean_us * 7 + sample) / 8;
        self.recent[self.next] = sample as u16;
        self.next = (self.next + 1) % CALM_WINDOW;
        let overloaded = if self.overloaded {
            !self.calm()
        } else {
            Duration::from_micros(self.mean_us) >= OVERLOADED_FROM
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
mod tests {
    use super::*;

    fn feed(late: &mut Lateness, us: &[u64], times: usize) -> Vec<bool> {
        us.iter()
            .cycle()
            .take(us.len() * times)
            .filter_map(|&us| late.observe(Duration::from_micros(us)))
            .collect()
    }

    #[test]
    fn a_sustained_wait_turns_it_on_and_catching_up_off() {
        let mut late = Lateness::default();
        let light = [10, 12, 9, 15, 60, 11, 10, 600, 14, 9];
        assert!(feed(&mut late, &light, 50).is_empty(), "light load");
        let saturated = [200, 150, 650, 210, 180, 400];
        assert_eq!(feed(&mut late, &saturated, 20), [true]);
        assert!(feed(&mut late, &[100], 50).is_empty(), "hysteresis");
        assert_eq!(feed(&mut late, &[10], CALM_WINDOW), [false]);
        assert!(feed(&mut late, &light, 5).is_empty(), "stays off");
    }

    #[test]
    fn keeping_up_thanks_to_nagle_is_not_calm() {
        let mut late = Lateness::default();
        assert_eq!(feed(&mut late, &[400], 10), [true]);
        // Waits measured at 1000 × 300 under Nagle: often none at all, as
        // often a few hundred µs; short ones several in a row.
        let keeping_up = [1, 2, 1, 1, 150, 1, 300, 2, 90, 1, 1, 400, 2, 120, 1];
        assert!(feed(&mut late, &keeping_up, 100).is_empty());
    }

    #[test]
    fn a_burst_ends_one_window_after_the_first_calm_waits() {
        let mut late = Lateness::default();
        assert_eq!(feed(&mut late, &[800], 20), [true]);
        assert!(feed(&mut late, &[10], CALM_WINDOW - 1).is_empty());
        assert_eq!(feed(&mut late, &[10], 1), [false]);
        assert!(feed(&mut late, &[10, 300, 10, 10], 5).is_empty());
    }

    #[tokio::test]
    async fn a_socket_follows_the_state_at_its_next_write() {
        use tokio::io::AsyncWriteExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap());
        let (client, accepted) = tokio::join!(client, listener.accept());
        let _client = client.unwrap();
        let mut socket = Socket::new(accepted.unwrap().0);
        assert!(socket.tcp.nodelay().unwrap());
        OVERLOADED.store(true, Ordering::Relaxed);
        socket.write_all(b"a").await.unwrap();
        let under_load = socket.tcp.nodelay().unwrap();
        OVERLOADED.store(false, Ordering::Relaxed);
        socket.write_all(b"b").await.unwrap();
        assert!(!under_load, "Nagle on while overloaded");
        assert!(socket.tcp.nodelay().unwrap(), "and off again after");
    }

    #[test]
    fn a_write_is_held_once_per_flush_and_only_while_overloaded() {
        let woken = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let waker = waker_fn(woken.clone());
        let mut cx = Context::from_waker(&waker);
        let mut coalesce = Coalesce::default();
        assert!(!coalesce.hold_if(false, &mut cx), "not while calm");
        assert!(coalesce.hold_if(true, &mut cx));
        assert_eq!(woken.load(Ordering::Relaxed), 1, "woken to write next turn");
        assert!(!coalesce.hold_if(true, &mut cx), "then it writes");
        assert!(!coalesce.hold_if(true, &mut cx), "until its flush ends");
        coalesce.flushed();
        assert!(coalesce.hold_if(true, &mut cx));
        assert_eq!(woken.load(Ordering::Relaxed), 2);
    }

    fn waker_fn(count: std::sync::Arc<std::sync::atomic::AtomicUsize>) -> std::task::Waker {
        struct Count(std::sync::Arc<std::sync::atomic::AtomicUsize>);
        impl std::task::Wake for Count {
            fn wake(self: std::sync::Arc<Self>) {
                self.0.fetch_add(1, Ordering::Relaxed);
            }
        }
        std::sync::Arc::new(Count(count)).into()
    }

    #[test]
    fn one_long_stall_is_not_overload() {
        let mut late = Lateness::default();
        assert!(late.observe(Duration::from_millis(500)).is_none());
        assert!(late.observe(Duration::from_millis(500)).is_none());
        assert!(feed(&mut late, &[10], 50).is_empty());
    }
}
