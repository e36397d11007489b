//! Room `users`: every UserService change, made on grpc-server, is a chat
//! message on every ws-server replica sharing its Redis, for native and
//! Socket.IO members alike; chat clients may read the room, not post to it.

mod common;

use common::grpc::*;
use common::*;
use rtchat::grpc::pb::{UpdateUserRequest, UserRequest};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_changes_show_up_in_room_users_on_every_replica() {
    let redis = Redis::start();
    let grpc = Process::grpc_server("grpc-1", Some(&redis), &[]);
    let replicas: Vec<Process> = (1..=2)
        .map(|i| Process::ws_server(&format!("server-{i}"), Some(&redis), &[]))
        .collect();
    let mut members = Vec::new();
    for replica in &replicas {
        let mut c = Client::connect(&replica.ws_url()).await;
        c.join("users").await;
        members.push(c);
    }
    let mut sio = SioClient::node(
        &replicas[1].http_url(""),
        json!({"transports": ["websocket"]}),
    );
    sio.next("connect").await;
    sio.emit_with_ack("join_room", json!(["users"]));
    sio.next("ack").await;

    let mut users = client(&grpc).await;
    let made = users
        .create_user(create("Ana", "ana@example.com"))
        .await
        .unwrap()
        .into_inner();
    let update = UpdateUserRequest {
        id: made.id,
        name: "Ana B".into(),
        email: String::new(),
    };
    users.update_user(update).await.unwrap();
    users
        .delete_user(UserRequest { id: made.id })
        .await
        .unwrap();
    let expected = [
        format!("user {} created: Ana", made.id),
        format!("user {} updated: Ana B", made.id),
        format!("user {} deleted", made.id),
    ];

    for member in &mut members {
        let frames = member.messages(3).await;
        let texts: Vec<&str> = frames
            .iter()
            .map(|f| f["message"].as_str().unwrap())
            .collect();
        assert_eq!(texts, expected);
        for frame in &frames {
            assert_eq!(frame["user"], "user-service");
            assert_eq!(frame["server"], "grpc-1");
            assert_eq!(frame["room"], "users");
        }
        assert!(
            id_of(&frames[0]) < id_of(&frames[1]) && id_of(&frames[1]) < id_of(&frames[2]),
            "ids in order"
        );
    }
    for text in &expected {
        assert_eq!(sio.message().await[0]["message"], text.as_str());
    }

    // A chat client may read the room, not post to it.
    let member = &mut members[0];
    let refused = member.try_say("users", "I am the user service").await;
    let refused = refused.expect_err("a client post to room users");
    assert_eq!(refused["code"], "forbidden", "{refused}");
    let mut late = Client::connect(&replicas[0].ws_url()).await;
    late.send(json!({"type": "join_room", "room": "users", "history": 10}))
        .await;
    late.recv_type("joined").await;
    let replayed: Vec<String> = late
        .messages(3)
        .await
        .iter()
        .map(|f| f["message"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(replayed, expected, "the room keeps its history");
}
