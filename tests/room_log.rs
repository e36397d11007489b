//! A room's log on Redis is one stream and nothing else: what a reader's
//! `since` recovers is decided from it alone. A position taken on an empty
//! room recovers what follows it, a log Redis lost does not pass for the
//! old one, a log whose newest id is ahead of Redis's clock still takes
//! messages in order, and an idle room's log expires (its expiry set
//! now and then, not by every message). On a real Redis, through the
//! broadcast the servers use.

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

fn pttl(redis: &Redis, room: &str) -> i64 {
    let key = format!("rtchat:log:{{{room}}}");
    redis.cli(&["PTTL", &key]).parse().unwrap()
}

/// Publishes to `room` until its log has an expiry again, within `within`.
async fn until_expiry_set(redis: &Redis, log: &dyn Broadcast, room: &str, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        // A publish may fail while the connection comes back: the next
        // one tries again.
        let _ = log.publish(room, Bytes::from("again")).await;
        if pttl(redis, room) > 0 {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the log of {room} never got its expiry back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A log's expiry is set by a replica's first message to it, not by every
/// message; a log Redis lost is made again with one, and after a
/// reconnect (maybe to another primary) the next message sets it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logs_expiry_is_set_once_then_again_when_it_may_be_lost() {
    let redis = Redis::start();
    let log = log(&redis).await;
    let key = "rtchat:log:{kept}";
    log.publish("kept", Bytes::from("first")).await.unwrap();
    let ttl = pttl(&redis, "kept");
    assert!(
        ttl > 3_600_000 && ttl <= 5_400_000,
        "1.5 history ages: {ttl}"
    );
    // Whether the next message sets it shows once it has none.
    redis.cli(&["PERSIST", key]);
    log.publish("kept", Bytes::from("second")).await.unwrap();
    assert_eq!(pttl(&redis, "kept"), -1, "set again by the second message");

    redis.cli(&["DEL", key]);
    let made_again = log.publish("kept", Bytes::from("third")).await.unwrap();
    assert!(
        pttl(&redis, "kept") > 3_600_000,
        "the log made again expires"
    );
    let replay = log.replay("kept", From::Last(10)).await.unwrap();
    assert_eq!(bodies(&replay.messages), ["third"]);
    assert_eq!(replay.position, made_again);

    redis.cli(&["PERSIST", key]);
    redis.cli(&["CLIENT", "KILL", "TYPE", "normal"]);
    until_expiry_set(&redis, log.as_ref(), "kept", Duration::from_secs(10)).await;
}

/// Half a history age after the call that set it, the expiry is set again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logs_expiry_is_set_again_after_half_an_age() {
    let redis = Redis::start();
    let age = Duration::from_secs(2);
    let log = in_process::redis_log(
        redis.url(),
        HistoryPolicy {
            max_len: 100,
            max_age: age,
        },
    )
    .await;
    let before = std::time::Instant::now();
    log.publish("short", Bytes::from("first")).await.unwrap();
    redis.cli(&["PERSIST", "rtchat:log:{short}"]);
    until_expiry_set(&redis, log.as_ref(), "short", Duration::from_secs(10)).await;
    assert!(
        before.elapsed() >= age / 2,
        "set again after {:?}, before half an age",
        before.elapsed()
    );
}
