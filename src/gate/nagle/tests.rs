//! The monitor's rule on recorded waits, and sockets following it.

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
fn a_busy_machine_is_not_load_while_frames_leave_on_time() {
    let mut late = Lateness::default();
    // Waits measured in a room of 10 beside two more replicas, Redis and
    // the generator on two cores: as long as at saturation.
    let busy = [70, 90, 350, 600, 180, 800];
    let mut measure = |frames_ms: u64| {
        late.frames(Some(Duration::from_millis(frames_ms)));
        busy.iter()
            .filter_map(|&us| late.observe(Duration::from_micros(us)))
            .collect::<Vec<_>>()
    };
    let on_time: Vec<_> = (0..20).flat_map(|_| measure(0)).collect();
    assert!(on_time.is_empty(), "off while frames leave on time");
    // Frames fall behind: on, and off once they leave on time again
    // (a quarter of a second), the waits as long as before.
    let behind: Vec<_> = (0..10).flat_map(|_| measure(20)).collect();
    assert_eq!(behind, [true]);
    let caught_up: Vec<_> = (0..30).flat_map(|_| measure(0)).collect();
    assert_eq!(caught_up, [false]);
}

#[test]
fn frames_of_a_past_burst_do_not_make_the_next_late() {
    let mut late = Lateness::default();
    late.frames(None);
    assert_eq!(late.frames_us, None, "no frames yet: the waits decide");
    late.frames(Some(Duration::from_millis(4)));
    for _ in 0..30 {
        late.frames(None);
    }
    assert!(!late.frames_beyond(FRAMES_ON_TIME), "{:?}", late.frames_us);
    assert_eq!(feed(&mut late, &[400], 10), Vec::<bool>::new());
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
