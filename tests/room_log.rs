//! A room's log on Redis is one stream and nothing else: what a reader's
//! `since` recovers is decided from it alone. A position taken on an empty
//! room recovers what follows it, a log Redis lost does not pass for the
//! old one, a log whose newest id is ahead of Redis's clock still takes
//! messages in order, and an idle room's log expires. On a real Redis,
//! through the broadcast the servers use.

mod common;

use bytes::Bytes;
use common::*;
use rtchat::broadcast::{Broadcast, From, HistoryPolicy};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

async fn log(redis: &Redis) -> Arc<dyn Broadcast> {
    let policy = HistoryPolicy {
        max_len: 100,
        max_age: Duration::from_secs(3600),
    };
    in_process::redis_log(redis.url(), policy).await
}

fn bodies(messages: &[(u64, Bytes)]) -> Vec<String> {
    let text = |body: &Bytes| String::from_utf8(body.to_vec()).unwrap();
    messages.iter().map(|(_, body)| text(body)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_position_on_an_empty_room_recovers_what_follows_and_a_lost_log_does_not() {
    let redis = Redis::start();
    let log = log(&redis).await;
    let start = log.replay("fresh", From::Position).await.unwrap();
    assert!(start.recovered && start.messages.is_empty());
    let again = log
        .replay("fresh", From::Since(start.position))
        .await
        .unwrap();
    assert!(again.recovered && again.messages.is_empty());

    let a = log.publish("fresh", Bytes::from("a")).await.unwrap();
    let b = log.publish("fresh", Bytes::from("b")).await.unwrap();
    assert!(start.position < a && a < b, "{} {a} {b}", start.position);
    let since_start = log
        .replay("fresh", From::Since(start.position))
        .await
        .unwrap();
    assert!(since_start.recovered);
    assert_eq!(since_start.position, b);
    assert_eq!(bodies(&since_start.messages), ["a", "b"]);
    // The marker that holds the position is never read back as a message.
    let last = log.replay("fresh", From::Last(10)).await.unwrap();
    assert_eq!(bodies(&last.messages), ["a", "b"]);

    // Redis loses every key: a since from the old log is not recovered,
    // and the new log's position is above everything the old one gave.
    redis.cli(&["FLUSHALL"]);
    let lost = log.replay("fresh", From::Since(a)).await.unwrap();
    assert!(!lost.recovered, "{lost:?}");
    assert!(lost.position > b);
    // An id the log never had (from the future, or made up) neither.
    let made_up = log
        .replay("fresh", From::Since(lost.position + 7))
        .await
        .unwrap();
    assert!(!made_up.recovered);
    let between = log
        .replay("fresh", From::Since(lost.position - 1))
        .await
        .unwrap();
    assert!(!between.recovered);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_ahead_of_the_clock_still_takes_messages_in_order() {
    let redis = Redis::start();
    let log = log(&redis).await;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    // As after a failover to a Redis whose clock is an hour behind.
    let ahead = now.as_micros() as u64 + 3_600_000_000;
    redis.cli(&[
        "XADD",
        "rtchat:log:{ahead}",
        &format!("{ahead}-0"),
        "p",
        "x",
    ]);
    let first = log.publish("ahead", Bytes::from("first")).await.unwrap();
    let second = log.publish("ahead", Bytes::from("second")).await.unwrap();
    assert_eq!((first, second), (ahead + 1, ahead + 2));
    let replay = log.replay("ahead", From::Since(ahead)).await.unwrap();
    assert!(replay.recovered);
    assert_eq!(bodies(&replay.messages), ["first", "second"]);
}

/// An idle room's log expires, and it is the room's only key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rooms_log_is_its_only_key_and_expires() {
    let redis = Redis::start();
    let log = log(&redis).await;
    log.publish("once", Bytes::from("only")).await.unwrap();
    log.replay("quiet", From::Position).await.unwrap();
    for room in ["once", "quiet"] {
        let keys = redis.cli(&["KEYS", &format!("*{{{room}}}*")]);
        assert_eq!(keys.trim(), format!("rtchat:log:{{{room}}}"));
        let ttl: i64 = redis.cli(&["PTTL", keys.trim()]).parse().unwrap();
        assert!(ttl > 0, "the log of {room} expires (PTTL {ttl})");
    }
}
