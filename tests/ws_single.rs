//! One ws-server replica, as a user sees it. Every scenario runs twice:
//! standalone (no Redis anywhere) and with a private Redis.

#[macro_use]
mod common;

use common::*;
use serde_json::json;

async fn protocol_round_trip(with_redis: bool) {
    let (_redis, server) = replica(with_redis, &[]).await;
    let mut alice = Client::connect(&server.ws_url()).await;
    let mut bob = Client::connect(&server.ws_url()).await;
    assert_eq!(alice.server, "server-1");
    assert_ne!(alice.user, bob.user, "connection ids are unique");

    // Even a room without messages hands out a position to resume from.
    let joined = alice.join("general").await;
    assert_eq!(
        (&joined["type"], &joined["room"]),
        (&json!("joined"), &json!("general"))
    );
    assert!(
        joined["last_id"].as_str().unwrap().parse::<u64>().is_ok(),
        "{joined}"
    );
    bob.join("general").await;

    alice
        .send(json!({"type": "message", "room": "general", "message": "hi", "ack": "a1"}))
        .await;
    let ack = alice.recv_type("ack").await;
    assert_eq!(ack["ack"], "a1");
    let own = alice.recv_type("message").await;
    let seen = bob.recv_type("message").await;
    assert_eq!(own, seen, "sender and member get the same frame");
    assert_eq!(seen["id"], ack["id"]);
    assert_eq!(seen["room"], "general");
    assert_eq!(seen["user"], alice.user.as_str());
    assert_eq!(seen["message"], "hi");
    assert_eq!(seen["server"], "server-1");
    let timestamp = seen["timestamp"].as_str().unwrap();
    assert!(
        humantime::parse_rfc3339(timestamp).is_ok() && timestamp.ends_with('Z'),
        "{timestamp}"
    );

    // Without an ack token there is no ack, only the message.
    bob.send(json!({"type": "message", "room": "general", "message": "no ack"}))
        .await;
    assert_eq!(bob.recv_type("message").await["message"], "no ack");
    assert_eq!(alice.recv_type("message").await["message"], "no ack");

    assert_eq!(
        alice.leave("general").await,
        json!({"type": "left", "room": "general"})
    );
    bob.say("general", "after leave").await;
    alice.join("other").await;
    bob.join("other").await;
    bob.say("other", "marker").await;
    assert_eq!(
        alice.texts_until("marker").await,
        Vec::<String>::new(),
        "nothing from a left room"
    );

    // Back in the left room and still in the other one: each message comes
    // once, under its own room, from the rejoin on.
    alice.join("general").await;
    bob.say("general", "back").await;
    bob.say("other", "elsewhere").await;
    bob.say("general", "again").await;
    let mut got = Vec::new();
    for _ in 0..3 {
        let frame = alice.recv_type("message").await;
        got.push(format!("{} {}", frame["room"], frame["message"]));
    }
    assert_eq!(
        got,
        [
            r#""general" "back""#,
            r#""other" "elsewhere""#,
            r#""general" "again""#
        ]
    );
    bob.say("other", "end").await;
    assert_eq!(alice.texts_until("end").await, Vec::<String>::new());
}

async fn rooms_are_isolated(with_redis: bool) {
    let (_redis, server) = replica(with_redis, &[]).await;
    let mut red = Client::connect(&server.ws_url()).await;
    let mut blue = Client::connect(&server.ws_url()).await;
    red.join("red").await;
    blue.join("blue").await;
    // The sender is in neither room; a marker sent last to both rooms shows
    // that nothing crossed over before it.
    let mut sender = Client::connect(&server.ws_url()).await;
    sender.say("red", "for red").await;
    sender.say("blue", "for blue").await;
    sender.say("red", "end").await;
    sender.say("blue", "end").await;
    assert_eq!(red.texts_until("end").await, vec!["for red"]);
    assert_eq!(blue.texts_until("end").await, vec!["for blue"]);
}

async fn since_replays_then_goes_live(with_redis: bool) {
    let (_redis, server) = replica(with_redis, &[]).await;
    let mut sender = Client::connect(&server.ws_url()).await;
    sender.join("r").await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(sender.say("r", &format!("m{i}")).await);
    }
    let mut late = Client::connect(&server.ws_url()).await;
    let joined = late.join_since("r", &ids[1]).await;
    assert_eq!(joined["recovered"], true);
    assert_eq!(joined["last_id"], ids[4].as_str());
    let replayed = late.messages(3).await;
    assert_eq!(
        replayed
            .iter()
            .map(|m| m["id"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ids[2..]
    );
    sender.say("r", "live").await;
    assert_eq!(late.texts_until("live").await, Vec::<String>::new());

    // An id this history never had is refused, not replayed from.
    let mut stranger = Client::connect(&server.ws_url()).await;
    let joined = stranger.join_since("r", "1").await;
    assert_eq!(joined["recovered"], false);
    sender.say("r", "after").await;
    assert_eq!(stranger.texts_until("after").await, Vec::<String>::new());
}

async fn history_is_bounded(with_redis: bool) {
    let (_redis, server) = replica(with_redis, &["--history-size", "3"]).await;
    let mut c = Client::connect(&server.ws_url()).await;
    c.join("r").await;
    let mut ids = Vec::new();
    for i in 0..6 {
        ids.push(c.say("r", &format!("m{i}")).await);
    }
    let mut late = Client::connect(&server.ws_url()).await;
    assert_eq!(
        late.join_since("r", &ids[1]).await["recovered"],
        false,
        "m2 was trimmed"
    );
    let mut late = Client::connect(&server.ws_url()).await;
    assert_eq!(late.join_since("r", &ids[2]).await["recovered"], true);
    assert_eq!(
        late.messages(3)
            .await
            .iter()
            .map(|m| m["message"].clone())
            .collect::<Vec<_>>(),
        ["m3", "m4", "m5"]
    );

    // Exact at any size, though Redis cuts its log back in batches.
    let (_redis, server) = replica(with_redis, &["--history-size", "32"]).await;
    let mut c = Client::connect(&server.ws_url()).await;
    c.join("r").await;
    let mut ids = Vec::new();
    for i in 0..40 {
        ids.push(c.say("r", &format!("m{i}")).await);
    }
    for (since, recovered) in [(6, false), (7, true), (39, true)] {
        let mut late = Client::connect(&server.ws_url()).await;
        let joined = late.join_since("r", &ids[since]).await;
        assert_eq!(joined["recovered"], recovered, "since m{since}");
    }
    let mut late = Client::connect(&server.ws_url()).await;
    late.join_since("r", &ids[7]).await;
    let replayed = late.messages(32).await;
    assert_eq!(replayed[0]["message"], "m8");
    assert_eq!(replayed[31]["message"], "m39");
}

/// Messages older than `--history-ttl` are trimmed from a log that stays
/// in use: a `since` behind them is no longer recovered, a recent one is.
async fn history_ages_out(with_redis: bool) {
    let (_redis, server) = replica(with_redis, &["--history-ttl", "1s"]).await;
    let mut c = Client::connect(&server.ws_url()).await;
    c.join("r").await;
    // A message every 100 ms for 2 s: the first ones age out while the
    // log is written to.
    let mut ids = Vec::new();
    let mut pace = tokio::time::interval(std::time::Duration::from_millis(100));
    for i in 0..20 {
        pace.tick().await;
        ids.push(c.say("r", &format!("m{i}")).await);
    }
    let mut late = Client::connect(&server.ws_url()).await;
    assert_eq!(
        late.join_since("r", &ids[0]).await["recovered"],
        false,
        "m1 is 1.9 s old"
    );
    let mut late = Client::connect(&server.ws_url()).await;
    assert_eq!(late.join_since("r", &ids[18]).await["recovered"], true);
    assert_eq!(late.messages(1).await[0]["message"], "m19");
}

async fn health_ready_metrics_and_page(with_redis: bool) {
    let (_redis, server) = replica(with_redis, &[]).await;
    assert_eq!(http_get(&server.http_url("/healthz")).await.0, 200);
    assert_eq!(http_get(&server.http_url("/readyz")).await.0, 200);
    let (status, page) = http_get(&server.http_url("/")).await;
    assert_eq!(status, 200);
    assert!(
        page.contains("<html") && !page.contains("http://") && !page.contains("https://"),
        "self-contained page"
    );
    let mut c = Client::connect(&server.ws_url()).await;
    c.join("r").await;
    c.say("r", "counted").await;
    let (status, metrics) = http_get(&server.http_url("/metrics")).await;
    assert_eq!(status, 200);
    for line in [
        "rtchat_connections 1",
        "rtchat_rooms 1",
        "rtchat_messages_in_total 1",
        "rtchat_messages_out_total 1",
    ] {
        assert!(metrics.contains(line), "missing {line:?} in {metrics}");
    }
    assert!(metrics.contains("rtchat_publish_latency_seconds_count 1"));
}

async fn sigterm_closes_clients_with_1001(with_redis: bool) {
    // A real process: the signal is what is tested.
    let redis = with_redis.then(Redis::start);
    let mut server =
        Process::ws_server("server-1", redis.as_ref().map(|r| r as &dyn RedisUrl), &[]);
    let mut a = Client::connect(&server.ws_url()).await;
    let mut b = Client::connect(&server.ws_url()).await;
    a.join("r").await;
    server.signal("TERM");
    assert_eq!(a.recv_close().await, Some(1001));
    assert_eq!(b.recv_close().await, Some(1001));
    assert!(server.wait_exit().await.success());
}

in_both_modes!(
    protocol_round_trip,
    rooms_are_isolated,
    since_replays_then_goes_live,
    history_is_bounded,
    history_ages_out,
    health_ready_metrics_and_page,
    sigterm_closes_clients_with_1001,
);

/// A server whose log reader went away (the process reading the other end
/// of its stderr exited) keeps serving and still stops on SIGTERM: a log
/// line it cannot write is dropped. It used to be reported with a print to
/// stderr that panicked, killing every task that logged, the signal's
/// among them, so the server never stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_whose_log_reader_left_still_stops_on_sigterm() {
    let mut server = Process::spawn_server_unread(&["ws-server", "--id", "server-1"]);
    // Logged (at debug, as tests run it) with nobody reading.
    let mut ana = Client::connect(&server.ws_url()).await;
    ana.join("general").await;
    ana.say("general", "still here").await;
    server.signal("TERM");
    assert_eq!(ana.recv_close().await, Some(1001));
    assert!(server.wait_exit().await.success());
}
