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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_clients_and_native_ones_share_a_room_across_replicas() {
    let d = ChatDeployment::start();
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
