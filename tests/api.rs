//! The server API (`/api/`) against real replicas on a private Redis and
//! real clients: a backend's publish reaches native and Socket.IO members
//! on every replica once, retries with an idempotency key are stored once,
//! the key is checked on every call, and presence and history answer what
//! the clients did.

mod common;

use common::*;
use serde_json::{Value, json};

const KEY: &str = "test-api-key-0123";

fn base(replica: &Process) -> String {
    replica.http_url("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_on_one_replica_reaches_every_member_once() {
    let d = ChatDeployment::start_with(&["--api-key", KEY]);
    let room = "announcements";
    let mut natives = Vec::new();
    for replica in &d.replicas[1..] {
        let mut c = Client::connect(&replica.ws_url()).await;
        c.join(room).await;
        natives.push(c);
    }
    let mut sio = SioClient::node(&base(&d.replicas[2]), json!({"transports": ["websocket"]}));
    sio.next("connect").await;
    sio.emit_with_ack("join_room", json!([room]));
    sio.next("ack").await;
    // A native message first: the API's id must come after it.
    let mut sender = Client::connect(&d.replicas[0].ws_url()).await;
    let before = sender.say(room, "before").await;

    let api = base(&d.replicas[0]);
    let id = api_publish(
        &api,
        KEY,
        json!({"room": room, "message": "hello", "name": "Ops"}),
    )
    .await;
    assert!(id.parse::<u64>().unwrap() > before.parse::<u64>().unwrap());
    // A retry with the same idempotency key is the same publish.
    let body = json!({"room": room, "message": "once", "idempotency_key": "deploy-42"});
    let first = api_publish(&api, KEY, body.clone()).await;
    let again = api_publish(&api, KEY, body).await;
    assert_eq!(first, again, "the retry answers the first publish's id");
    api_publish(&api, KEY, json!({"room": room, "message": "end"})).await;

    for native in &mut natives {
        let frames = native.messages(3).await;
        let mut texts = Vec::new();
        for frame in &frames {
            texts.push(frame["message"].as_str().unwrap().to_owned());
        }
        assert_eq!(texts, ["before", "hello", "once"]);
        assert_eq!(frames[1]["id"], id.as_str());
        assert_eq!(frames[1]["user"], "api");
        assert_eq!(frames[1]["name"], "Ops");
        assert_eq!(frames[1]["server"], "server-1");
        assert_eq!(native.texts_until("end").await, Vec::<String>::new());
    }
    assert_eq!(sio.texts_until("end").await, ["before", "hello", "once"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_without_the_right_key_is_refused_and_changes_nothing() {
    let server = Process::ws_server("server-1", None, &["--api-key", KEY]);
    let mut member = Client::connect(&server.ws_url()).await;
    member.join("general").await;
    let url = server.http_url("/api/publish");
    let body = json!({"room": "general", "message": "sneaky"}).to_string();
    for key in [
        Key::None,
        Key::Header("wrong"),
        Key::Header(&KEY[..KEY.len() - 1]),
        Key::Authorization("wrong"),
    ] {
        let (status, answer) = api_post(&url, key, &body).await;
        assert_eq!(status, 401, "{key:?}: {answer}");
        assert_eq!(answer["code"], "unauthorized");
    }
    for path in ["/api/history", "/api/presence", "/api/rooms", "/api/stats"] {
        let (status, _) = api_post(&server.http_url(path), Key::None, "{}").await;
        assert_eq!(status, 401, "{path}");
    }
    let ok = json!({"room": "general", "message": "allowed"}).to_string();
    let (status, answer) = api_post(&url, Key::Authorization(KEY), &ok).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(member.texts_until("allowed").await, Vec::<String>::new());
    let (_, history) = api_post(
        &server.http_url("/api/history"),
        Key::Header(KEY),
        r#"{"room":"general"}"#,
    )
    .await;
    let texts: Vec<&str> = history["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["message"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["allowed"], "nothing refused was stored");

    // Bad input: the native codes, nothing stored.
    for (body, status, code) in [
        ("not json", 400, "bad_frame"),
        (r#"{"room":"general"}"#, 400, "bad_frame"),
        (r#"{"room":"bad room","message":"x"}"#, 400, "invalid_room"),
        (
            r#"{"room":"general","message":""}"#,
            400,
            "message_too_long",
        ),
        (
            r#"{"room":"general","message":"x","extra":1}"#,
            400,
            "bad_frame",
        ),
    ] {
        let (got, answer) = api_post(&url, Key::Header(KEY), body).await;
        assert_eq!(
            (got, answer["code"].as_str()),
            (status, Some(code)),
            "{body}"
        );
    }
    let huge = json!({"room": "general", "message": "x".repeat(100_000)}).to_string();
    let (got, answer) = api_post(&url, Key::Header(KEY), &huge).await;
    assert_eq!(
        (got, answer["code"].as_str()),
        (413, Some("frame_too_large"))
    );
    let (_, after) = api_post(
        &server.http_url("/api/history"),
        Key::Header(KEY),
        r#"{"room":"general"}"#,
    )
    .await;
    assert_eq!(after["messages"], history["messages"]);

    // Without a key configured the API does not exist.
    let off = Process::ws_server("server-2", None, &[]);
    let (status, _) = api_post(&off.http_url("/api/publish"), Key::Header(KEY), &ok).await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_history_rooms_and_stats_answer_what_clients_did() {
    let redis = Redis::start();
    let a = Process::ws_server("server-1", Some(&redis), &["--api-key", KEY]);
    let b = Process::ws_server("server-2", Some(&redis), &["--api-key", KEY]);
    let mut ana = Client::connect(&a.ws_url()).await;
    ana.join("team").await;
    let mut bo = Client::connect(&b.ws_url()).await;
    bo.join("team").await;
    let mut ids = Vec::new();
    for k in 0..5 {
        ids.push(ana.say("team", &format!("m{k}")).await);
    }
    let call = async |server: &Process, path: &str, body: Value| -> Value {
        let (status, answer) =
            api_post(&server.http_url(path), Key::Header(KEY), &body.to_string()).await;
        assert_eq!(status, 200, "{path} {body}: {answer}");
        answer
    };

    let presence = call(&b, "/api/presence", json!({"room": "team"})).await;
    let mut users: Vec<&str> = presence["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["user"].as_str().unwrap())
        .collect();
    users.sort();
    let mut expected = vec![ana.user.as_str(), bo.user.as_str()];
    expected.sort();
    assert_eq!(users, expected, "{presence}");

    let texts = |answer: &Value| -> Vec<String> {
        answer["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["message"].as_str().unwrap().to_owned())
            .collect()
    };
    let newest = call(&b, "/api/history", json!({"room": "team", "limit": 2})).await;
    assert_eq!(texts(&newest), ["m3", "m4"]);
    assert_eq!(newest["position"], ids[4].as_str());
    let after = call(
        &b,
        "/api/history",
        json!({"room": "team", "since": ids[1], "limit": 2}),
    )
    .await;
    assert_eq!(texts(&after), ["m2", "m3"]);
    assert_eq!(after["recovered"], true);
    assert_eq!(after["messages"][0]["id"], ids[2].as_str());

    let rooms = call(&a, "/api/rooms", json!({})).await;
    assert_eq!(
        rooms["rooms"],
        json!([{"room": "team", "local_members": 1, "total_members": 2}]),
        "{rooms}"
    );
    let stats = call(&a, "/api/stats", json!({})).await;
    assert_eq!(stats["server"], "server-1");
    assert_eq!(stats["ready"], true);
    assert_eq!(stats["connections"], 1);
    assert_eq!(stats["messages_in"], 5);

    // Presence follows a member leaving.
    bo.messages(5).await;
    bo.leave("team").await;
    wait_for("presence without bo", DEADLINE, async || {
        let presence = call(&a, "/api/presence", json!({"room": "team"})).await;
        (presence["members"].as_array().unwrap().len() == 1).then_some(())
    })
    .await;
}

/// Schemathesis (PyPI, installed by the test command into
/// target/tools/schemathesis) generates calls from `/api/openapi.json`,
/// valid and not, and checks every answer against the document: status
/// codes, content types, schemas, and no server error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_matches_the_routes() {
    let server = Process::ws_server("server-1", None, &["--api-key", KEY]);
    let (status, document) = http_get(&server.http_url("/api/openapi.json")).await;
    assert_eq!(status, 200);
    let document: Value = serde_json::from_str(&document).unwrap();
    assert_eq!(document["openapi"], "3.0.3");
    let tools = concat!(env!("CARGO_MANIFEST_DIR"), "/target/tools/schemathesis");
    let mut command = std::process::Command::new("timeout");
    command
        .args(["300", "python3", "-m", "schemathesis.cli", "run"])
        .arg(server.http_url("/api/openapi.json"))
        .args(["--url", &server.http_url("")])
        .args(["--header", &format!("X-API-Key: {KEY}")])
        .args(["--checks", "all", "--max-examples", "100", "--no-color"])
        // A drain ends the server under test: tests/deploys.rs drives it.
        .args(["--exclude-operation-id", "drain"])
        .env("PYTHONPATH", tools)
        .env("SCHEMATHESIS_HOOKS", "")
        .current_dir(std::env::temp_dir());
    let output = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "schemathesis found problems:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // Every operation of the document was exercised.
    assert!(
        stdout.contains("Tested: 7"),
        "not every operation was tested:\n{stdout}"
    );
}

/// `disconnect` closes every connection of one user on every replica: a
/// native client gets close code 4002, a Socket.IO client a DISCONNECT
/// ("io server disconnect", so it does not reconnect by itself); everyone
/// else stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_closes_a_users_connections_on_every_replica() {
    let redis = Redis::start();
    let a = Process::ws_server("server-1", Some(&redis), &["--api-key", KEY]);
    let b = Process::ws_server("server-2", Some(&redis), &[]);
    let mut victim = Client::connect(&b.ws_url()).await;
    victim.join("general").await;
    let mut other = Client::connect(&b.ws_url()).await;
    other.join("general").await;
    let mut sio = SioClient::node(&b.http_url(""), json!({"transports": ["websocket"]}));
    sio.next("connect").await;
    sio.emit_with_ack("join_room", json!(["general"]));
    sio.next("ack").await;
    sio.emit(
        "message",
        json!([{"room": "general", "message": "who am I"}]),
    );
    let sio_user = other.messages(1).await[0]["user"]
        .as_str()
        .unwrap()
        .to_owned();

    let disconnect = async |user: &str| {
        let body = json!({"user": user}).to_string();
        let (status, answer) =
            api_post(&a.http_url("/api/disconnect"), Key::Header(KEY), &body).await;
        assert_eq!(status, 200, "{answer}");
    };
    disconnect(&victim.user).await;
    assert_eq!(victim.recv_close().await, Some(4002));
    disconnect(&sio_user).await;
    assert_eq!(sio.next("disconnect").await, "io server disconnect");
    // The others stay, and nobody else was closed.
    other.say("general", "still here").await;
    let presence = call_presence(&a, "general").await;
    assert_eq!(
        presence,
        [other.user.clone()],
        "only the one left is present"
    );
}

async fn call_presence(server: &Process, room: &str) -> Vec<String> {
    let body = json!({"room": room}).to_string();
    let (_, answer) = api_post(&server.http_url("/api/presence"), Key::Header(KEY), &body).await;
    answer["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["user"].as_str().unwrap().to_owned())
        .collect()
}
