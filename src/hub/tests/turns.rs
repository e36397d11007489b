//! Joins take turns at the log: at most [`JOINS_AT_ONCE`] wait on it
//! together, and a join whose turn is slow to come goes ahead anyway.

use super::*;
use crate::hub::turns::{JOINS_AT_ONCE, TURN_WAIT};

/// Lets every other task run until it waits on something.
async fn settle() {
    for _ in 0..1000 {
        tokio::task::yield_now().await;
    }
}

fn started(f: &Fixture) -> usize {
    f.log.switches.replays_started.load(Ordering::SeqCst)
}

/// `n` joins of one room, each by a session of its own, spawned while the
/// log holds every replay; returns once as many as take turns are at it.
async fn held_joins(f: &Fixture, n: usize) -> Vec<tokio::task::JoinHandle<()>> {
    f.log.gated.store(true, Ordering::SeqCst);
    let joins = (0..n)
        .map(|i| {
            let hub = f.hub.clone();
            tokio::spawn(async move {
                let (mut session, _rx) = hub.open(format!("u{i}"), None);
                let request = JoinRequest::default();
                hub.join(&mut session, &room("r"), request).await.unwrap();
            })
        })
        .collect();
    settle().await;
    assert_eq!(started(f), JOINS_AT_ONCE);
    joins
}

#[tokio::test(start_paused = true)]
async fn a_burst_of_joins_waits_on_the_log_a_few_at_a_time() {
    let f = fixture();
    let joins = held_joins(&f, JOINS_AT_ONCE + 36).await;
    f.log.gate.add_permits(JOINS_AT_ONCE + 36);
    for join in joins {
        join.await.unwrap();
    }
    assert_eq!(started(&f), JOINS_AT_ONCE + 36);
    assert_eq!(f.hub.local_members("r"), JOINS_AT_ONCE + 36);
}

#[tokio::test(start_paused = true)]
async fn a_join_whose_turn_is_slow_goes_ahead() {
    let f = fixture();
    let _joins = held_joins(&f, JOINS_AT_ONCE + 1).await;
    // Paused time: this moves the clock, it does not wait.
    tokio::time::sleep(TURN_WAIT).await;
    settle().await;
    assert_eq!(started(&f), JOINS_AT_ONCE + 1);
}
