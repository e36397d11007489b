//! The in-process broadcast's log, positions and presence.

use super::*;
use crate::broadcast::HistoryPolicy;
use std::time::Duration;

fn broadcast(max_len: usize) -> (MemoryBroadcast, Arc<Mutex<Vec<u64>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    let policy = HistoryPolicy {
        max_len,
        max_age: Duration::from_secs(3600),
    };
    let deliver: Deliver = Arc::new(move |env: Envelope| {
        if let Kind::Message { id } = env.kind {
            sink.lock().unwrap().push(id)
        }
    });
    (MemoryBroadcast::new(policy, deliver), seen)
}

#[tokio::test]
async fn ids_increase_and_replay_after_since() {
    let (b, seen) = broadcast(10);
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(b.publish("t", Bytes::from(format!("{i}"))).await.unwrap());
    }
    assert!(ids.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(*seen.lock().unwrap(), ids);
    let r = b.replay("t", From::Since(ids[1])).await.unwrap();
    assert!(r.recovered);
    assert_eq!(r.messages.iter().map(|m| m.0).collect::<Vec<_>>(), ids[2..]);
    assert_eq!(r.position, ids[4]);
}

#[tokio::test]
async fn a_key_publishes_once_per_topic() {
    let (b, seen) = broadcast(10);
    let first = b.publish_once("t", "k", Bytes::from("a")).await.unwrap();
    let again = b.publish_once("t", "k", Bytes::from("b")).await.unwrap();
    let other = b.publish_once("u", "k", Bytes::from("c")).await.unwrap();
    assert_eq!(first, again);
    assert_ne!(first, other);
    assert_eq!(*seen.lock().unwrap(), [first, other]);
    let r = b.replay("t", From::Last(10)).await.unwrap();
    assert_eq!(r.messages, [(first, Bytes::from("a"))]);
}

#[tokio::test]
async fn trimmed_or_foreign_since_is_not_recovered() {
    let (b, _) = broadcast(2);
    let ids: Vec<u64> =
        futures_util::future::join_all((0..4).map(|_| b.publish("t", Bytes::new())))
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect();
    assert!(!b.replay("t", From::Since(ids[0])).await.unwrap().recovered);
    assert!(b.replay("t", From::Since(ids[1])).await.unwrap().recovered);
    assert!(
        !b.replay("t", From::Since(1)).await.unwrap().recovered,
        "since before the log started"
    );
    assert!(
        !b.replay("t", From::Since(ids[3] + 1))
            .await
            .unwrap()
            .recovered,
        "since from the future"
    );
    assert!(
        !b.replay("other", From::Since(ids[3]))
            .await
            .unwrap()
            .recovered
    );
}

mod position_tests {
    use super::super::*;
    use crate::broadcast::HistoryPolicy;
    use std::time::Duration;

    /// Gap found by a churn run: a member of an empty room had nothing to
    /// resume from, and `since: "0"` was answered "not recovered".
    #[tokio::test]
    async fn an_empty_topic_has_a_position_to_resume_from() {
        let b = MemoryBroadcast::new(
            HistoryPolicy {
                max_len: 10,
                max_age: Duration::from_secs(60),
            },
            Arc::new(|_| {}),
        );
        let joined = b.replay("t", From::Position).await.unwrap();
        assert!(joined.recovered);
        assert!(joined.position > 0, "an empty topic still has a position");
        let first = b.publish("t", Bytes::from("a")).await.unwrap();
        let second = b.publish("t", Bytes::from("b")).await.unwrap();
        assert!(first > joined.position);
        let resumed = b.replay("t", From::Since(joined.position)).await.unwrap();
        assert!(resumed.recovered, "nothing was lost since the join");
        assert_eq!(
            resumed.messages.iter().map(|m| m.0).collect::<Vec<_>>(),
            [first, second]
        );
        assert_eq!(resumed.position, second);

        // A `since` into a topic this backend never had is not recovered,
        // and still hands out a position for the next resume.
        let lost = b.replay("u", From::Since(joined.position)).await.unwrap();
        assert!(!lost.recovered);
        let again = b.replay("u", From::Since(lost.position)).await.unwrap();
        assert!(again.recovered && again.messages.is_empty());
    }
}

mod presence_tests {
    use super::super::*;
    use crate::broadcast::HistoryPolicy;
    use std::time::Duration;

    #[tokio::test]
    async fn presence_announces_changes_once() {
        let events = Arc::new(Mutex::new(Vec::new()));
        let sink = events.clone();
        let deliver: Deliver =
            Arc::new(move |env: Envelope| sink.lock().unwrap().push((env.kind, env.payload)));
        let b = MemoryBroadcast::new(
            HistoryPolicy {
                max_len: 10,
                max_age: Duration::from_secs(60),
            },
            deliver,
        );
        b.presence_add("t", "u1", Bytes::from("a")).await.unwrap();
        b.presence_add("t", "u1", Bytes::from("a")).await.unwrap();
        b.presence_add("t", "u2", Bytes::from("b")).await.unwrap();
        let mut present = b.presence("t").await.unwrap();
        present.sort();
        assert_eq!(present, [Bytes::from("a"), Bytes::from("b")]);
        b.presence_remove("t", "u1", LeaveReason::Left)
            .await
            .unwrap();
        b.presence_remove("t", "u1", LeaveReason::Left)
            .await
            .unwrap();
        let kinds: Vec<Kind> = events.lock().unwrap().iter().map(|e| e.0).collect();
        assert_eq!(kinds, [Kind::Joined, Kind::Joined, Kind::Left]);
        assert_eq!(b.presence("t").await.unwrap(), [Bytes::from("b")]);
    }

    #[tokio::test]
    async fn last_n_replays_the_newest() {
        let deliver: Deliver = Arc::new(|_| {});
        let b = MemoryBroadcast::new(
            HistoryPolicy {
                max_len: 10,
                max_age: Duration::from_secs(60),
            },
            deliver,
        );
        for i in 0..5 {
            b.publish("t", Bytes::from(format!("{i}"))).await.unwrap();
        }
        let r = b.replay("t", From::Last(2)).await.unwrap();
        assert_eq!(
            r.messages.iter().map(|m| m.1.clone()).collect::<Vec<_>>(),
            [Bytes::from("3"), Bytes::from("4")]
        );
    }
}
