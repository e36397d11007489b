//! rtchat.v1.ChatService on grpc-server: the server API's operations over
//! gRPC, behind grpc-server's bearer token, reaching ws-server replicas
//! through the shared Redis.

mod common;

use common::*;
use serde_json::json;

const KEY: &str = "test-service-token-0123";

/// rtchat.v1.ChatService on grpc-server: the same operations over gRPC,
/// behind grpc-server's bearer token; what it publishes reaches the
/// ws-server replicas through the shared Redis.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chat_service_on_grpc_server_posts_to_every_replica() {
    use rtchat::grpc::pb::chat::chat_service_client::ChatServiceClient;
    use rtchat::grpc::pb::chat::{HistoryRequest, PresenceRequest, PublishRequest};
    let redis = Redis::start();
    let grpc = Process::grpc_server("grpc-1", Some(&redis), &["--auth-token", KEY]);
    let replicas: Vec<Process> = (1..=2)
        .map(|i| Process::ws_server(&format!("server-{i}"), Some(&redis), &[]))
        .collect();
    let room = "ops";
    let mut native = Client::connect(&replicas[0].ws_url()).await;
    native.join(room).await;
    let mut sio = SioClient::node(
        &replicas[1].http_url(""),
        json!({"transports": ["websocket"]}),
    );
    sio.next("connect").await;
    sio.emit_with_ack("join_room", json!([room]));
    sio.next("ack").await;

    let channel = tonic::transport::Endpoint::new(grpc.grpc_url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let token: tonic::metadata::MetadataValue<_> = format!("Bearer {KEY}").parse().unwrap();
    let mut chat =
        ChatServiceClient::with_interceptor(channel.clone(), move |mut r: tonic::Request<()>| {
            r.metadata_mut().insert("authorization", token.clone());
            Ok(r)
        });
    let publish = |message: &str, key: &str| PublishRequest {
        room: room.into(),
        message: message.into(),
        name: "Ops".into(),
        idempotency_key: key.into(),
    };
    // Without the token: refused, nothing posted.
    let mut anonymous = ChatServiceClient::new(channel);
    let refused = anonymous.publish(publish("sneaky", "")).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);

    let first = chat
        .publish(publish("hello", "k-1"))
        .await
        .unwrap()
        .into_inner()
        .id;
    let again = chat
        .publish(publish("hello", "k-1"))
        .await
        .unwrap()
        .into_inner()
        .id;
    assert_eq!(first, again, "the retry is the same publish");
    chat.publish(publish("end", "")).await.unwrap();
    let frames = native.messages(2).await;
    assert_eq!(frames[0]["message"], "hello");
    assert_eq!(id_of(&frames[0]), first);
    assert_eq!(
        (&frames[0]["user"], &frames[0]["name"]),
        (&json!("api"), &json!("Ops"))
    );
    assert_eq!(frames[0]["server"], "grpc-1");
    assert_eq!(frames[1]["message"], "end");
    assert_eq!(sio.texts_until("end").await, ["hello"]);

    let history = chat
        .history(HistoryRequest {
            room: room.into(),
            since: None,
            limit: Some(10),
        })
        .await
        .unwrap()
        .into_inner();
    let texts: Vec<&str> = history
        .messages
        .iter()
        .map(|m| m.message.as_str())
        .collect();
    assert_eq!(texts, ["hello", "end"]);
    assert_eq!(history.messages[0].id, first);
    let presence = chat
        .presence(PresenceRequest { room: room.into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(presence.members.len(), 2, "{presence:?}");
    let bad = chat
        .publish(PublishRequest {
            room: "bad room".into(),
            ..publish("x", "")
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
}
