//! grpc-server has no chat clients: on Redis it keeps no presence of its
//! own (no heartbeat, no instance stamp) and holds only the connections
//! its log and its user store need, whatever it posts to rooms.

mod common;

use common::grpc::{client, create};
use common::*;

/// The store's command connection, and the log's command connection and
/// subscriber (user updates and the rooms it posts to share the log).
const CONNECTIONS_NEEDED: usize = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_server_on_redis_writes_no_presence_and_holds_few_connections() {
    use rtchat::grpc::pb::chat::chat_service_client::ChatServiceClient;
    use rtchat::grpc::pb::chat::{PresenceRequest, PublishRequest};
    let redis = Redis::start();
    let grpc = Process::grpc_server("grpc-1", Some(&redis), &[]);

    // Everything that touches rooms: a user change (posted to room
    // `users`), a publish and a presence read through the ChatService.
    let mut users = client(&grpc).await;
    users
        .create_user(create("Ana", "ana@example.com"))
        .await
        .unwrap();
    let mut chat = ChatServiceClient::connect(grpc.grpc_url()).await.unwrap();
    chat.publish(PublishRequest {
        room: "ops".into(),
        message: "hello".into(),
        name: String::new(),
        idempotency_key: String::new(),
    })
    .await
    .unwrap();
    let members = chat
        .presence(PresenceRequest { room: "ops".into() })
        .await
        .unwrap()
        .into_inner()
        .members;
    assert!(members.is_empty(), "{members:?}");

    // The log holds both posts: the calls above went through Redis.
    let logs = redis.cli(&["KEYS", "rtchat:log:*"]);
    assert!(
        logs.contains("room:users") && logs.contains("room:ops"),
        "{logs}"
    );

    let stamps = redis.cli(&["EXISTS", "rtchat:instances"]);
    assert_eq!(stamps.trim(), "0", "no instance stamp of a presence keeper");
    let alive = redis.cli(&["KEYS", "rtchat:alive:*"]);
    assert_eq!(alive.trim(), "", "no presence heartbeat");

    // Every connection but the one asking.
    let list = redis.cli(&["CLIENT", "LIST"]);
    let held: Vec<&str> = list
        .lines()
        .filter(|line| !line.contains("cmd=client|list"))
        .collect();
    assert!(
        held.len() <= CONNECTIONS_NEEDED,
        "{} connections: {held:#?}",
        held.len()
    );
}
