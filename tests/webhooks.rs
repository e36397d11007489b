//! Webhooks: events reach a real HTTP receiver started by the test, signed,
//! in order per room, once acknowledged; they wait out a receiver that is
//! down, survive the replica that produced them, and three replicas
//! deliver each once.

#[macro_use]
mod common;

use common::receiver::{Receiver, of_type, room_story};
use common::*;
use rtchat::grpc::pb::{UpdateUserRequest, UserRequest};
use serde_json::Value;
use std::collections::HashMap;
use std::time::Duration;

const SECRET: &str = "webhook-do-not-log-secret";

/// ws-server flags sending every event type to `receiver`.
fn hooks(receiver: &Receiver) -> Vec<String> {
    receiver.flags(SECRET)
}

fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

/// A standalone ws-server with the default event types.
fn standalone_sending_to(url: &str) -> Process {
    Process::ws_server(
        "hook-1",
        None,
        &["--webhook-url", url, "--webhook-secret", SECRET],
    )
}

async fn named(server: &impl Endpoint, name: &str) -> Client {
    Client::connect(&format!("{}?name={name}", server.ws_url())).await
}

async fn joins_messages_leaves_and_sessions(with_redis: bool) {
    let receiver = Receiver::start(SECRET).await;
    let redis = with_redis.then(Redis::start);
    let server = Process::ws_server(
        "hook-1",
        redis.as_ref().map(|r| r as &dyn RedisUrl),
        &strs(&hooks(&receiver)),
    );
    let mut ana = named(&server, "ana").await;
    ana.join("lobby").await;
    let mut bo = named(&server, "bo").await;
    bo.join("lobby").await;
    for i in 0..20 {
        bo.say("lobby", &format!("m{i}")).await;
    }
    bo.leave("lobby").await;
    drop(bo);
    drop(ana);

    let mut expected = vec!["member_joined ana".to_owned(), "member_joined bo".into()];
    expected.extend((0..20).map(|i| format!("message m{i}")));
    expected.push("member_left bo (left)".into());
    expected.push("member_left ana (disconnected)".into());
    let story = receiver
        .wait_until("the room's events", DEADLINE, |events| {
            let story = room_story(events, "lobby");
            (story.len() >= expected.len()).then_some(story)
        })
        .await;
    assert_eq!(story, expected);
    let events = receiver
        .wait_until("the sessions' events", DEADLINE, |events| {
            (of_type(events, "user_disconnected").len() == 2).then(|| events.to_vec())
        })
        .await;
    // Each user's events are ordered; two users' partitions are not.
    let connected = of_type(&events, "user_connected");
    let mut names: Vec<&str> = connected
        .iter()
        .map(|e| e["data"]["name"].as_str().unwrap_or(""))
        .collect();
    names.sort();
    assert_eq!(names, ["ana", "bo"], "{events:?}");
    for event in &connected {
        assert_eq!(event["data"]["server"], "hook-1", "{event}");
    }
    for event in &events {
        assert_eq!(event["id"].as_str().unwrap().len(), 32, "{event}");
        humantime::parse_rfc3339(event["time"].as_str().unwrap()).unwrap();
    }
    let message = of_type(&events, "message")[0];
    assert!(message["data"]["id"].as_u64().unwrap() > 0, "{message}");
    assert_eq!(message["data"]["name"], "bo");
    // Every request verified with the receiver's secret, and carried the
    // body's own id.
    for request in receiver.requests() {
        assert!(request.verified);
        assert_eq!(request.id, request.event["id"]);
    }
}

in_both_modes!(joins_messages_leaves_and_sessions);

/// `message` is off unless asked for; a type list is honoured.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_are_off_by_default() {
    let receiver = Receiver::start(SECRET).await;
    let url = receiver.url();
    let server = standalone_sending_to(&url);
    let mut ana = named(&server, "ana").await;
    ana.join("quiet").await;
    ana.say("quiet", "unseen").await;
    ana.leave("quiet").await;
    receiver
        .wait_until("the leave", DEADLINE, |events| {
            (!of_type(events, "member_left").is_empty()).then_some(())
        })
        .await;
    assert!(of_type(&receiver.acknowledged(), "message").is_empty());

    let refused = rtchat()
        .args(["ws-server", "--webhook-url", &url, "--webhook-secret", "s"])
        .args(["--webhook-events", "member_joined,nope"])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("unknown --webhook-events type \"nope\""),
        "{stderr}"
    );
    let no_secret = rtchat()
        .args(["ws-server", "--webhook-url", &url])
        .output()
        .unwrap();
    assert!(!no_secret.status.success());
}

/// A receiver answering 500 three times, then 200: the event is tried four
/// times with one id and acknowledged once, and the events behind it wait
/// for it (order per room).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_tries_are_retried_with_the_same_id() {
    let receiver = Receiver::start(SECRET).await;
    let redis = Redis::start();
    receiver.answer_next(&[500, 500, 500]);
    // Only the room's events, so that the first one sent gets the 500s.
    let mut flags = hooks(&receiver);
    *flags.last_mut().unwrap() = "member_joined,message".into();
    let server = Process::ws_server("hook-1", Some(&redis), &strs(&flags));
    let mut ana = named(&server, "ana").await;
    ana.join("retry").await;
    ana.say("retry", "after").await;
    let story = receiver
        .wait_until("both events", DEADLINE, |events| {
            let story = room_story(events, "retry");
            (story.len() >= 2).then_some(story)
        })
        .await;
    assert_eq!(story, ["member_joined ana", "message after"]);
    let requests = receiver.requests();
    let first = &requests[0];
    let tries: Vec<_> = requests.iter().filter(|r| r.id == first.id).collect();
    let statuses: Vec<u16> = tries.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [500, 500, 500, 200]);
    assert!(tries.iter().all(|r| r.event == first.event && r.verified));
    let mut acknowledged: HashMap<String, usize> = HashMap::new();
    for r in requests.iter().filter(|r| r.status == 200) {
        *acknowledged.entry(r.id.clone()).or_default() += 1;
    }
    assert!(acknowledged.values().all(|n| *n == 1), "{acknowledged:?}");
    let metrics = http_get(&server.http_url("/metrics")).await.1;
    assert!(
        metrics.contains("rtchat_webhook_events_retried_total 1"),
        "{metrics}"
    );
}

/// A receiver down for 20 s (connections refused) gets everything once it
/// is back, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_down_for_20s_loses_nothing() {
    let mut receiver = Receiver::start(SECRET).await;
    let redis = Redis::start();
    let server = Process::ws_server("hook-1", Some(&redis), &strs(&hooks(&receiver)));
    let mut ana = named(&server, "ana").await;
    ana.join("outage").await;
    receiver
        .wait_until("the join", DEADLINE, |events| {
            (!room_story(events, "outage").is_empty()).then_some(())
        })
        .await;
    receiver.stop();
    let down = std::time::Instant::now();
    let mut sent = 0;
    while down.elapsed() < Duration::from_secs(20) {
        ana.say("outage", &format!("during {sent}")).await;
        sent += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let metrics = http_get(&server.http_url("/metrics")).await.1;
    assert!(
        metrics.contains("rtchat_webhook_attempts_failed_total{reason=\"unreachable\"}"),
        "{metrics}"
    );
    receiver.restart().await;
    let expected: Vec<String> = std::iter::once("member_joined ana".to_owned())
        .chain((0..sent).map(|i| format!("message during {i}")))
        .collect();
    // The longest wait between tries is 10 s (±20%).
    let story = receiver
        .wait_until(
            "the events queued meanwhile",
            Duration::from_secs(30),
            |events| {
                let story = room_story(events, "outage");
                (story.len() >= expected.len()).then_some(story)
            },
        )
        .await;
    assert_eq!(story, expected);
}

/// A replica SIGKILLed with members: another replica sweeps them out of
/// presence and sends their member_left (reason replica_died) within the
/// presence healing time; and with three replicas every event is delivered
/// once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_deliver_once_and_report_a_dead_ones_members() {
    let receiver = Receiver::start(SECRET).await;
    let redis = Redis::start();
    let flags = hooks(&receiver);
    let replicas: Vec<Process> = (1..=3)
        .map(|i| Process::ws_server(&format!("hook-{i}"), Some(&redis), &strs(&flags)))
        .collect();
    let mut clients = Vec::new();
    for (i, replica) in replicas.iter().enumerate() {
        for room in ["r1", "r2"] {
            let mut c = named(replica, &format!("u{i}{room}")).await;
            c.join(room).await;
            c.say(room, &format!("from {i} in {room}")).await;
            clients.push(c);
        }
    }
    // 6 joins and 6 messages, 6 connections.
    receiver
        .wait_until("every event", DEADLINE, |events| {
            (of_type(events, "message").len() >= 6 && of_type(events, "member_joined").len() >= 6)
                .then_some(())
        })
        .await;

    let mut replicas = replicas;
    let mut dead = replicas.remove(2);
    dead.kill();
    let killed = std::time::Instant::now();
    let lefts = receiver
        .wait_until(
            "the dead replica's members to leave",
            Duration::from_secs(25),
            |events| {
                let lefts: Vec<Value> = of_type(events, "member_left")
                    .into_iter()
                    .filter(|e| e["data"]["reason"] == "replica_died")
                    .cloned()
                    .collect();
                (lefts.len() >= 2).then_some(lefts)
            },
        )
        .await;
    let healed_in = killed.elapsed();
    let mut names: Vec<&str> = lefts
        .iter()
        .map(|e| e["data"]["name"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["u2r1", "u2r2"]);
    assert!(lefts.iter().all(|e| e["data"]["server"] == "hook-3"));
    // Presence heals within its TTL (10 s) and one sweep (2 s), plus the
    // lease of a queue the dead replica delivered (5 s) at worst.
    assert!(healed_in < Duration::from_secs(20), "{healed_in:?}");

    let requests = receiver.requests();
    assert!(requests.iter().all(|r| r.status == 200 && r.verified));
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for r in &requests {
        *seen.entry(r.id.as_str()).or_default() += 1;
    }
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "delivered more than once: {twice:?}");
}

/// A receiver holding another secret finds no valid signature: it refuses
/// them all, and the event waits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_secret_fails_verification() {
    let receiver = Receiver::start("not-the-secret").await;
    let url = receiver.url();
    let server = standalone_sending_to(&url);
    let mut ana = named(&server, "ana").await;
    ana.join("r").await;
    wait_for("an event tried again", DEADLINE, async || {
        let requests = receiver.requests();
        let mut tries: HashMap<String, usize> = HashMap::new();
        for r in &requests {
            *tries.entry(r.id.clone()).or_default() += 1;
        }
        tries.values().any(|n| *n >= 2).then_some(())
    })
    .await;
    let requests = receiver.requests();
    assert!(requests.iter().all(|r| !r.verified && r.status == 401));
    assert!(receiver.acknowledged().is_empty());
    assert!(!server.logged(SECRET));
}

/// grpc-server's user changes: created, updated, deleted, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_changes_from_grpc_server() {
    let receiver = Receiver::start(SECRET).await;
    let redis = Redis::start();
    let server = Process::grpc_server("grpc-1", Some(&redis), &strs(&hooks(&receiver)));
    let mut c = grpc::client(&server).await;
    let user = c
        .create_user(grpc::create("Ana", "ana@example.com"))
        .await
        .unwrap()
        .into_inner();
    c.update_user(UpdateUserRequest {
        id: user.id,
        name: "Ana B".into(),
        email: String::new(),
    })
    .await
    .unwrap();
    c.delete_user(UserRequest { id: user.id }).await.unwrap();
    let changes = receiver
        .wait_until("three user changes", DEADLINE, |events| {
            let changes: Vec<(String, String)> = events
                .iter()
                .filter(|e| e["type"].as_str().unwrap().starts_with("user_"))
                .map(|e| {
                    let kind = e["type"].as_str().unwrap().to_owned();
                    (kind, e["data"]["name"].as_str().unwrap().to_owned())
                })
                .collect();
            (changes.len() >= 3).then_some(changes)
        })
        .await;
    let expected = [
        ("user_created", "Ana"),
        ("user_updated", "Ana B"),
        ("user_deleted", "Ana B"),
    ]
    .map(|(k, n)| (k.to_owned(), n.to_owned()));
    assert_eq!(changes, expected);
}

/// On a Redis Cluster the queues spread over the shards; every room's
/// events still arrive in order, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_redis_cluster() {
    let receiver = Receiver::start(SECRET).await;
    let cluster = tokio::task::spawn_blocking(RedisCluster::start)
        .await
        .unwrap();
    let flags = hooks(&receiver);
    let replicas: Vec<Process> = (1..=2)
        .map(|i| Process::ws_server(&format!("hook-{i}"), Some(&cluster), &strs(&flags)))
        .collect();
    let rooms: Vec<String> = (0..6).map(|i| format!("c{i}")).collect();
    let mut clients = Vec::new();
    for (i, room) in rooms.iter().enumerate() {
        let mut c = named(&replicas[i % 2], &format!("m{i}")).await;
        c.join(room).await;
        for n in 0..5 {
            c.say(room, &format!("{room}-{n}")).await;
        }
        clients.push(c);
    }
    for (i, room) in rooms.iter().enumerate() {
        let mut expected = vec![format!("member_joined m{i}")];
        expected.extend((0..5).map(|n| format!("message {room}-{n}")));
        let story = receiver
            .wait_until(&format!("the events of {room}"), DEADLINE, |events| {
                let story = room_story(events, room);
                (story.len() >= expected.len()).then_some(story)
            })
            .await;
        assert_eq!(story, expected);
    }
    let holding = cluster
        .primaries()
        .into_iter()
        .filter(|&i| {
            let keys = cluster.nodes[i].cli(&["--scan", "--pattern", "rtchat:webhooks:*:events"]);
            !keys.trim().is_empty()
        })
        .count();
    assert!(holding > 1, "the queues are on {holding} shard(s)");
}
