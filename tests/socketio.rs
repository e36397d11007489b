//! The Socket.IO door with the official clients only (socket.io-client in
//! Node, python-socketio), against three replicas and a private Redis
//! behind the repository's nginx config: the original's users connect
//! unchanged and share rooms with native clients.

mod common;

use common::*;
use serde_json::json;
use std::collections::BTreeSet;

fn base(d: &ChatDeployment) -> String {
    d.nginx.url("")
}

/// A native client on each replica, so messages are seen from all three.
async fn natives(d: &ChatDeployment, room: &str) -> Vec<Client> {
    let mut all = Vec::new();
    for replica in &d.replicas {
        let mut c = Client::connect(&replica.ws_url()).await;
        c.join(room).await;
        all.push(c);
    }
    all
}

/// Each scenario twice: behind the deploy nginx config and behind the
/// original's own (ip_hash, `Host $host`, `Connection "upgrade"` always).
macro_rules! behind_both_fronts {
    ($($scenario:ident),* $(,)?) => {
        mod deploy_nginx {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $scenario() { super::$scenario(super::Front::Deploy).await })*
        }
        mod originals_nginx {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $scenario() { super::$scenario(super::Front::Original).await })*
        }
    };
}

behind_both_fronts!(
    official_clients_and_native_ones_share_a_room_across_replicas,
    a_session_survives_the_death_of_its_replica,
    limits_are_answered_with_native_codes,
);

async fn official_clients_and_native_ones_share_a_room_across_replicas(front: Front) {
    let d = ChatDeployment::start_behind(front, &[]);
    // Node starts on polling (its default) and upgrades to WebSocket.
    let mut node = SioClient::node(&base(&d), json!({"auth": {"name": "ana"}}));
    assert_eq!(node.next("open").await, "polling");
    assert_eq!(node.next("upgrade").await, "websocket");
    node.next("connect").await;
    node.emit_with_ack("join_room", json!(["general"]));
    assert_eq!(node.next("ack").await, "join_room");
    let mut python = SioClient::python(&base(&d), json!({"name": "py"}));
    python.next("connect").await;
    python.emit_with_ack("join_room", json!(["general"]));
    python.next("ack").await;
    let mut natives = natives(&d, "general").await;

    // One message from each kind of client; every one sees all three, with
    // the same ids, exactly once.
    node.emit_with_ack(
        "message",
        json!([{"room": "general", "message": "from node"}]),
    );
    let node_ack = node.next_where(|l| l["ack"] == "message").await;
    let node_id = node_ack["reply"]["id"].as_str().unwrap().to_owned();
    python.emit_with_ack(
        "message",
        json!([{"room": "general", "message": "from python"}]),
    );
    let python_ack = python.next_where(|l| l["ack"] == "message").await;
    let python_id = python_ack["reply"]["id"].as_str().unwrap().to_owned();
    // Sent from a native client outside the room, so every member's stream
    // holds all four.
    let mut sender = Client::connect(&d.replicas[1].ws_url()).await;
    let native_id = sender.say("general", "from native").await;
    sender.say("general", "end").await;
    let expected = ["from node", "from python", "from native"];
    let ids = BTreeSet::from([node_id.clone(), python_id.clone(), native_id.clone()]);
    assert_eq!(ids.len(), 3);

    for native in &mut natives {
        let seen = native.messages(4).await;
        let texts: Vec<_> = seen
            .iter()
            .map(|m| m["message"].as_str().unwrap())
            .collect();
        assert_eq!(texts, [&expected[..], &["end"]].concat());
        assert_eq!(seen[0]["id"], node_id.as_str());
        assert_eq!(seen[0]["name"], "ana");
        assert_eq!(seen[1]["id"], python_id.as_str());
    }
    for client in [&mut node, &mut python] {
        let mut seen = Vec::new();
        for _ in 0..4 {
            seen.push(client.message().await);
        }
        let texts: Vec<_> = seen
            .iter()
            .map(|a| a[0]["message"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(texts, [&expected[..], &["end"]].concat());
        assert_eq!(
            seen[2][0]["id"],
            native_id.as_str(),
            "the native client's id"
        );
        // The recovery offset rides last: the message's own id.
        assert_eq!(seen[0][1], seen[0][0]["id"]);
    }
}

/// The replica a Socket.IO client is on: the `server` of its own message.
async fn replica_of(client: &mut SioClient, room: &str) -> String {
    client.emit_with_ack("message", json!([{"room": room, "message": "where am I"}]));
    client.next_where(|l| l["ack"] == "message").await;
    loop {
        let args = client.message().await;
        if args[0]["message"] == "where am I" {
            return args[0]["server"].as_str().unwrap().to_owned();
        }
    }
}

/// The index in `d.replicas` of the replica a client's room message went
/// through (`server-N` is replica N - 1).
async fn replica_index(client: &mut SioClient, room: &str) -> usize {
    let server = replica_of(client, room).await;
    server
        .trim_start_matches("server-")
        .parse::<usize>()
        .unwrap()
        - 1
}

/// Connection state recovery across replicas: the client's replica is
/// SIGKILLed (it never sees its sockets close); the client reconnects
/// through nginx to another one and gets its session, its room and every
/// message it missed, once and in order, then live traffic.
async fn a_session_survives_the_death_of_its_replica(front: Front) {
    a_session_survives_the_death_of_its_replica_on(ChatDeployment::start_behind(front, &[])).await
}

/// The same with every replica on a Redis Cluster.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_survives_the_death_of_its_replica_on_a_redis_cluster() {
    let cluster = tokio::task::spawn_blocking(RedisCluster::start)
        .await
        .unwrap();
    let d = ChatDeployment::start_on(Shared::Cluster(cluster), Front::Deploy, &[]);
    a_session_survives_the_death_of_its_replica_on(d).await
}

async fn a_session_survives_the_death_of_its_replica_on(mut d: ChatDeployment) {
    let mut node = SioClient::node(&base(&d), json!({}));
    assert_eq!(node.next("upgrade").await, "websocket");
    let first = node.next("connect").await;
    assert_eq!(first["recovered"], false);
    node.emit_with_ack("join_room", json!(["general"]));
    node.next("ack").await;
    let victim = replica_index(&mut node, "general").await;

    d.replicas[victim].kill();
    let mut sender = Client::connect(&d.replicas[(victim + 1) % 3].ws_url()).await;
    let sent: Vec<String> = (0..10).map(|n| format!("missed {n}")).collect();
    for text in &sent {
        sender.say("general", text).await;
    }

    let again = node.next("connect").await;
    assert_eq!(again["recovered"], true, "{again}");
    assert_eq!(again["id"], first["id"], "the same Socket.IO id");
    sender.say("general", "live").await;
    assert_eq!(
        node.texts_until("live").await,
        sent,
        "the 10 missed, once, in order"
    );
}

/// A session whose join could not be saved (Redis refused the write) is
/// not recovered as one in no room: the client is told `recovered:
/// false`, so that it joins again, instead of staying silently outside
/// its room.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_whose_join_was_not_saved_is_not_recovered_without_it() {
    let mut d = ChatDeployment::start_behind(Front::Deploy, &[]);
    let mut node = SioClient::node(&base(&d), json!({}));
    assert_eq!(node.next("upgrade").await, "websocket");
    assert_eq!(node.next("connect").await["recovered"], false);
    // Saves are SETs; the join's log and presence are scripts.
    d.redis.one().cli(&["ACL", "SETUSER", "default", "-set"]);
    node.emit_with_ack("join_room", json!(["general"]));
    node.next("ack").await;
    let victim = replica_index(&mut node, "general").await;
    d.replicas[victim].kill();
    d.redis.one().cli(&["ACL", "SETUSER", "default", "+set"]);

    let again = node.next("connect").await;
    assert_eq!(again["recovered"], false, "{again}");
}

/// Every limit is answered with the native error codes; nothing else
/// changes for the client.
async fn limits_are_answered_with_native_codes(front: Front) {
    let d = ChatDeployment::start_behind(front, &[]);
    let mut node = SioClient::node(&base(&d), json!({}));
    node.next("connect").await;
    let code_of = |line: &serde_json::Value| line["reply"]["error"]["code"].clone();

    node.emit_with_ack(
        "message",
        json!([{"room": "general", "message": "x".repeat(5000)}]),
    );
    assert_eq!(
        code_of(&node.next_where(|l| l["ack"] == "message").await),
        "message_too_long"
    );
    node.emit_with_ack("join_room", json!(["no spaces"]));
    assert_eq!(
        code_of(&node.next_where(|l| l["ack"] == "join_room").await),
        "invalid_room"
    );
    node.emit("join_room", json!([42]));
    let error = node.next_where(|l| l["event"] == "error").await;
    assert_eq!(
        error["args"][0]["code"], "invalid_room",
        "no ack: an error event"
    );
    node.emit("dance", json!([]));
    let error = node.next_where(|l| l["event"] == "error").await;
    assert_eq!(error["args"][0]["code"], "unknown_type");

    // Still connected and served after all of that.
    node.emit_with_ack("join_room", json!(["general"]));
    assert_eq!(
        node.next_where(|l| l["ack"] == "join_room").await["reply"]["room"],
        "general"
    );

    // Namespaces other than the main one are refused.
    let mut admin = SioClient::node(
        &format!("{}/admin", base(&d)),
        json!({"reconnection": false}),
    );
    assert_eq!(admin.next("connect_error").await, "Invalid namespace");

    // Over maxPayload: the transport is closed, as for a native frame.
    node.emit(
        "message",
        json!([{"room": "general", "message": "y".repeat(20_000)}]),
    );
    let reason = node.next("disconnect").await;
    assert!(
        reason == "transport close" || reason == "transport error",
        "{reason}"
    );
}

/// A python-socketio handler written for the original takes one argument;
/// with recovery off no offset is added and it works unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_off_serves_handlers_written_for_the_original() {
    let d = ChatDeployment::start_with(&["--socketio-recovery", "off"]);
    let mut python = SioClient::python_original_handler(&base(&d));
    python.next("connect").await;
    python.emit_with_ack("join_room", json!(["general"]));
    python.next("ack").await;
    let mut native = Client::connect(&d.replicas[0].ws_url()).await;
    let id = native.say("general", "hola").await;
    let args = python.message().await;
    assert_eq!(args.len(), 1, "no offset argument: {args:?}");
    assert_eq!(
        (args[0]["message"].as_str(), args[0]["id"].as_str()),
        (Some("hola"), Some(id.as_str()))
    );
}
