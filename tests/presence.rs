//! Who is in a room, on every replica: presence lists, member events,
//! display names, and healing when a replica dies or loses Redis.

mod common;

use common::*;
use serde_json::{Value, json};
use std::collections::BTreeSet;

async fn named(url: &str, name: &str) -> Client {
    Client::connect(&format!("{url}?name={name}")).await
}

async fn join_with_events(c: &mut Client, room: &str) -> Value {
    c.send(json!({"type": "join_room", "room": room, "presence": true}))
        .await;
    c.recv_type("joined").await
}

async fn names_present(c: &mut Client, room: &str) -> BTreeSet<String> {
    c.send(json!({"type": "presence", "room": room})).await;
    let frame = c.recv_type("presence").await;
    assert_eq!(frame["room"], room);
    frame["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap().to_owned())
        .collect()
}

/// Asks for presence until it is `expected`, collecting the presence
/// events that arrive meanwhile.
async fn wait_for_presence(
    c: &mut Client,
    room: &str,
    expected: BTreeSet<String>,
    within: std::time::Duration,
) -> Vec<(String, String)> {
    let mut events = Vec::new();
    wait_for("presence to settle", within, async || {
        c.send(json!({"type": "presence", "room": room})).await;
        loop {
            let frame = c.recv().await;
            match frame["type"].as_str().unwrap() {
                "presence" => {
                    let names: BTreeSet<String> = frame["members"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|m| m["name"].as_str().unwrap().to_owned())
                        .collect();
                    return (names == expected).then_some(());
                }
                "member_joined" | "member_left" => events.push((
                    frame["type"].as_str().unwrap().to_owned(),
                    frame["name"].as_str().unwrap().to_owned(),
                )),
                other => panic!("unexpected {other}"),
            }
        }
    })
    .await;
    events
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|n| n.to_string()).collect()
}

/// The next frame, which must be a presence event.
async fn event(c: &mut Client) -> (String, String) {
    let frame = c.recv().await;
    let kind = frame["type"].as_str().unwrap().to_owned();
    assert!(
        kind == "member_joined" || kind == "member_left",
        "expected a presence event, got {frame}"
    );
    (kind, frame["name"].as_str().unwrap().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_presence_and_names() {
    let server = Process::ws_server("server-1", None, &[]);
    let mut ana = named(&server.ws_url(), "ana").await;
    join_with_events(&mut ana, "ops").await;
    assert_eq!(
        event(&mut ana).await,
        ("member_joined".into(), "ana".into())
    );
    let mut bo = named(&server.ws_url(), "bo%20b").await;
    bo.join("ops").await;
    assert_eq!(
        event(&mut ana).await,
        ("member_joined".into(), "bo b".into())
    );
    assert_eq!(names_present(&mut bo, "ops").await, set(&["ana", "bo b"]));

    bo.say("ops", "hello").await;
    let message = ana.recv_type("message").await;
    assert_eq!(
        (message["name"].as_str(), message["user"].as_str()),
        (Some("bo b"), Some(bo.user.as_str()))
    );

    bo.leave("ops").await;
    assert_eq!(event(&mut ana).await, ("member_left".into(), "bo b".into()));
    drop(bo);
    assert_eq!(names_present(&mut ana, "ops").await, set(&["ana"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_are_validated() {
    let server = Process::ws_server("server-1", None, &[]);
    for bad in ["", "%20%20", &"x".repeat(33), "a%07b"] {
        let url = format!("{}?name={bad}", server.ws_url());
        let refused = tokio_tungstenite::connect_async(&url).await;
        match refused {
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                assert_eq!(response.status(), 400, "{bad:?}")
            }
            other => panic!("name {bad:?} was not refused: {other:?}"),
        }
    }
    let mut ok = named(&server.ws_url(), "%C3%A9l%C3%A9onore").await;
    ok.join("r").await;
    assert_eq!(names_present(&mut ok, "r").await, set(&["éléonore"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_spans_replicas_and_heals_when_one_dies() {
    let redis = Redis::start();
    let a = Process::ws_server("server-1", Some(&redis), &[]);
    let mut b = Process::ws_server("server-2", Some(&redis), &[]);
    let mut ana = named(&a.ws_url(), "ana").await;
    join_with_events(&mut ana, "ops").await;
    assert_eq!(event(&mut ana).await.1, "ana");
    let mut bob = named(&b.ws_url(), "bob").await;
    join_with_events(&mut bob, "ops").await;
    assert_eq!(event(&mut bob).await.1, "bob");
    assert_eq!(
        event(&mut ana).await,
        ("member_joined".into(), "bob".into())
    );
    assert_eq!(names_present(&mut ana, "ops").await, set(&["ana", "bob"]));
    assert_eq!(names_present(&mut bob, "ops").await, set(&["ana", "bob"]));

    // A replica killed without a goodbye: its members drop out of presence
    // once its heartbeat expires (10 s) and a sweep runs (every 2 s).
    b.kill();
    let mut events = wait_for_presence(
        &mut ana,
        "ops",
        set(&["ana"]),
        std::time::Duration::from_secs(20),
    )
    .await;
    if events.is_empty() {
        // The expiry was noticed by this very request: its event follows.
        events.push(event(&mut ana).await);
    }
    assert_eq!(events, [("member_left".to_owned(), "bob".to_owned())]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_and_delivery_recover_after_redis_loses_everything() {
    let mut redis = Redis::start();
    let a = Process::ws_server("server-1", Some(&redis), &[]);
    let b = Process::ws_server("server-2", Some(&redis), &[]);
    let mut ana = named(&a.ws_url(), "ana").await;
    ana.join("ops").await;
    let mut bob = named(&b.ws_url(), "bob").await;
    bob.join("ops").await;
    assert_eq!(names_present(&mut ana, "ops").await, set(&["ana", "bob"]));

    redis.restart();
    let ready = [a.http_url("/readyz"), b.http_url("/readyz")];
    for url in &ready {
        wait_for("ready again", DEADLINE, async || {
            (http_get(url).await.0 == 200).then_some(())
        })
        .await;
    }
    // Each replica puts its own members back.
    wait_for_presence(&mut ana, "ops", set(&["ana", "bob"]), DEADLINE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_published_while_a_replica_was_cut_off_are_delivered_once_in_order() {
    let redis = Redis::start();
    let a = Process::ws_server("server-1", Some(&redis), &[]);
    let b = Process::ws_server("server-2", Some(&redis), &[]);
    let mut member = Client::connect(&a.ws_url()).await;
    member.join("r").await;
    let mut sender = Client::connect(&b.ws_url()).await;
    sender.say("r", "before").await;
    assert_eq!(member.recv_type("message").await["message"], "before");

    // Cut every subscriber connection: Redis keeps its data, but pub/sub
    // messages sent until replica A resubscribes never reach it live.
    redis.kill_subscribers();
    let mut sent = Vec::new();
    for n in 0..30 {
        sent.push(format!("during {n}"));
        sender.say("r", &sent[n]).await;
    }
    sender.say("r", "end").await;
    assert_eq!(
        member.texts_until("end").await,
        sent,
        "nothing lost, nothing twice, in order"
    );
}

/// A leave that never reached Redis (the replica was cut off when its
/// member left, and the connection was then reset, losing the call) is
/// made good once the replica reaches Redis again: the member does not
/// stay in presence for as long as its replica lives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leave_lost_in_a_partition_is_made_good_when_the_link_heals() {
    use common::faults::{Fault, FaultyLink};
    let redis = Redis::start();
    let link = FaultyLink::to_redis(redis.port).await;
    let cut = Process::ws_server("server-cut", Some(&link), &["--redis-timeout", "1s"]);
    let other = Process::ws_server("server-other", Some(&redis), &[]);
    let mut ana = named(&other.ws_url(), "ana").await;
    join_with_events(&mut ana, "ops").await;
    assert_eq!(event(&mut ana).await.1, "ana");
    let mut bob = named(&cut.ws_url(), "bob").await;
    join_with_events(&mut bob, "ops").await;
    // Its join event first: presence may list bob before the event
    // reaches ana's replica, and it must not be taken for a later one.
    assert_eq!(
        event(&mut ana).await,
        ("member_joined".into(), "bob".into())
    );
    wait_for_presence(&mut ana, "ops", set(&["ana", "bob"]), DEADLINE).await;

    link.set(Fault::Blackhole);
    drop(bob);
    wait_for("the cut replica's leave to fail", DEADLINE, async || {
        cut.logged("could not announce leaving").then_some(())
    })
    .await;
    link.reset();
    link.heal();
    let events = wait_for_presence(&mut ana, "ops", set(&["ana"]), DEADLINE).await;
    assert!(
        events
            .iter()
            .all(|(kind, name)| kind == "member_left" && name == "bob"),
        "{events:?}"
    );
}

/// A removal that a failover lost (presence writes are not waited for, so
/// the promoted replica may never have got it) comes back as an entry of
/// a live replica that no sweep would ever drop. The replica checks the
/// rooms it removed members from lately once it has reconnected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removal_lost_in_a_failover_is_made_good_after_the_reconnect() {
    let redis = Redis::start();
    let server = Process::ws_server("server-1", Some(&redis), &[]);
    let mut ana = named(&server.ws_url(), "ana").await;
    join_with_events(&mut ana, "ops").await;
    let mut bob = named(&server.ws_url(), "bob").await;
    join_with_events(&mut bob, "ops").await;
    wait_for_presence(&mut ana, "ops", set(&["ana", "bob"]), DEADLINE).await;
    let key = "rtchat:presence:{room:ops}";
    let entry = redis.cli(&["HGET", key, &bob.user]);
    let bob_user = bob.user.clone();
    drop(bob);
    wait_for_presence(&mut ana, "ops", set(&["ana"]), DEADLINE).await;

    // What a promoted replica without the removal holds, and the
    // reconnect a failover brings.
    redis.cli(&["HSET", key, &bob_user, &entry]);
    wait_for_presence(&mut ana, "ops", set(&["ana", "bob"]), DEADLINE).await;
    redis.kill_subscribers();
    wait_for_presence(&mut ana, "ops", set(&["ana"]), DEADLINE).await;
}

/// One user on two replicas (two tabs, or a client that reconnected
/// elsewhere before its old replica noticed it left): the old replica's
/// removal must not take away the entry the other replica holds now.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_removal_leaves_the_entry_another_replica_holds() {
    let redis = Redis::start();
    let (a, b, mut ana) = two_replicas_and_ana(&redis).await;
    let bob_on_a = bob_in_ops(&a).await;
    let _bob_on_b = bob_in_ops(&b).await;
    wait_for_presence(&mut ana, "ops", set(&["ana", "bob"]), DEADLINE).await;

    // Whatever the order of events, bob stays while his socket on
    // server-2 is in the room.
    bob_stays_after_leaving(&a, bob_on_a, &mut ana).await;
}

/// One user on two replicas whose newer session leaves first (a Socket.IO
/// client that recovered on one replica while a retry of it opened and
/// closed a session on another): the replica still holding it keeps it
/// present, and the room hears of its leaving once, with the last one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_held_by_two_replicas_leaves_with_the_last() {
    let redis = Redis::start();
    let (a, b, mut ana) = two_replicas_and_ana(&redis).await;
    let bob_on_a = bob_in_ops(&a).await;
    assert_eq!(
        event(&mut ana).await,
        ("member_joined".into(), "bob".into())
    );
    let bob_on_b = bob_in_ops(&b).await;

    bob_stays_after_leaving(&b, bob_on_b, &mut ana).await;
    drop(bob_on_a);
    let mut events = wait_for_presence(&mut ana, "ops", set(&["ana"]), DEADLINE).await;
    if events.is_empty() {
        // The list was read before the event came through Redis.
        events.push(event(&mut ana).await);
    }
    assert_eq!(events, vec![("member_left".into(), "bob".into())]);
}

/// One user in a room through two sessions of one replica (two tabs, or a
/// Socket.IO session recovered on the replica before its old one timed
/// out): the entry stays until the last of them leaves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_stays_present_while_one_of_its_sessions_remains() {
    let redis = Redis::start();
    let (server, _other, mut ana) = two_replicas_and_ana(&redis).await;
    let first = bob_in_ops(&server).await;
    let second = bob_in_ops(&server).await;
    wait_for_presence(&mut ana, "ops", set(&["ana", "bob"]), DEADLINE).await;
    bob_stays_after_leaving(&server, first, &mut ana).await;
    drop(second);
    wait_for_presence(&mut ana, "ops", set(&["ana"]), DEADLINE).await;
}

/// Two replicas taking tokens on one Redis, and ana in room ops on the
/// first with presence events (her own `member_joined` read).
async fn two_replicas_and_ana(redis: &Redis) -> (Process, Process, Client) {
    let flags = ["--auth", "optional", "--jwt-secret", SECRET];
    let a = Process::ws_server("server-1", Some(redis), &flags);
    let b = Process::ws_server("server-2", Some(redis), &flags);
    let mut ana = named(&a.ws_url(), "ana").await;
    join_with_events(&mut ana, "ops").await;
    assert_eq!(
        event(&mut ana).await,
        ("member_joined".into(), "ana".into())
    );
    (a, b, ana)
}

/// Ends one of bob's sessions on `server`; once the server saw it go, bob
/// is still listed (another session holds him).
async fn bob_stays_after_leaving(server: &Process, session: Client, ana: &mut Client) {
    drop(session);
    wait_for("the server to see bob's session go", DEADLINE, async || {
        server.logged("disconnected").then_some(())
    })
    .await;
    for _ in 0..3 {
        assert_eq!(names_present(ana, "ops").await, set(&["ana", "bob"]));
    }
}

/// A session of bob (the same user each time) in room ops on `server`.
async fn bob_in_ops(server: &Process) -> Client {
    let mut bob = Client::connect(&format!("{}?token={}", server.ws_url(), bob_token())).await;
    join_with_events(&mut bob, "ops").await;
    bob
}

const SECRET: &str = "presence secret, do-not-log, 32 bytes";

/// A token for user bob, named bob.
fn bob_token() -> String {
    let exp = rtchat::auth::expiry_in(std::time::Duration::from_secs(600));
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({"sub": "bob", "name": "bob", "exp": exp}),
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}
