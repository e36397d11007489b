//! A post refused as `unavailable` because Redis did not answer in time may
//! still be run by Redis later (it was already on the wire): a client that
//! retries it with the same idempotency key, on either door, gets the first
//! post's id and the room gets the message once.

mod common;

use common::faults::{Fault, FaultyLink};
use common::*;
use serde_json::{Value, json};

const ROOM: &str = "retries";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_post_retried_with_its_key_is_stored_once() {
    let redis = Redis::start();
    let link = FaultyLink::to_redis(redis.port).await;
    let cut = Process::ws_server("server-cut", Some(&link), &["--redis-timeout", "1s"]);
    let other = Process::ws_server("server-other", Some(&redis), &[]);

    let mut watcher = Client::connect(&other.ws_url()).await;
    watcher.join(ROOM).await;
    let mut native = Client::connect(&cut.ws_url()).await;
    native.join(ROOM).await;
    let mut sio = SioClient::node(&cut.http_url(""), json!({"transports": ["websocket"]}));
    sio.emit_with_ack("join_room", json!([ROOM]));
    sio.next_where(|l| l["ack"] == "join_room").await;

    let native_post = json!({"type": "message", "room": ROOM, "message": "native-1",
        "ack": "a1", "idempotency_key": "native-key"});
    let sio_post = json!([{"room": ROOM, "message": "sio-1", "idempotency_key": "sio-key"}]);

    // Redis knows the publish script before the cut, as in a running
    // deployment (else a held call fails NOSCRIPT and is never retried).
    native.say(ROOM, "before").await;

    // A partition that leaves the sockets open: both posts time out.
    link.set(Fault::Blackhole);
    native.send(native_post.clone()).await;
    let refused = native.recv_type("error").await;
    assert_eq!(refused["code"], "unavailable", "{refused}");
    assert_eq!(refused["ack"], "a1");
    sio.emit_with_ack("message", sio_post.clone());
    let refused = sio.next_where(|l| l["ack"] == "message").await;
    assert_eq!(
        refused["reply"]["error"]["code"], "unavailable",
        "{refused}"
    );

    link.heal();
    wait_for("the cut replica to be ready again", DEADLINE, async || {
        (http_get(&cut.http_url("/readyz")).await.0 == 200).then_some(())
    })
    .await;

    // The retries, as the README tells a client to make them.
    native.send(native_post).await;
    let native_ack = wait_for("the native retry's ack", DEADLINE, async || {
        let frame = native.recv().await;
        (frame["type"] == "ack").then_some(frame)
    })
    .await;
    sio.emit_with_ack("message", sio_post);
    let sio_ack = sio.next_where(|l| l["ack"] == "message").await;
    let sio_id = sio_ack["reply"]["id"].clone();
    assert!(sio_id.is_string(), "{sio_ack}");

    watcher
        .send(json!({"type": "message", "room": ROOM, "message": "end"}))
        .await;
    let mut seen = Vec::new();
    loop {
        let frame = watcher.recv().await;
        if frame["type"] != "message" {
            continue;
        }
        if frame["message"] == "end" {
            break;
        }
        if frame["message"] == "before" {
            continue;
        }
        seen.push((frame["message"].clone(), frame["id"].clone()));
    }
    seen.sort_by_key(|(text, _)| text.to_string());
    eprintln!("SEEN {seen:?}");
    let expected: Vec<(Value, Value)> = vec![
        (json!("native-1"), native_ack["id"].clone()),
        (json!("sio-1"), sio_id),
    ];
    assert_eq!(
        seen, expected,
        "each refused post reaches the room once, with the id its retry answered"
    );
}
