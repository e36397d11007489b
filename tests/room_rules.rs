//! One rule for room names, whichever front end a room is named through:
//! a replica started with a name bound applies that bound on the native
//! door, the Socket.IO door, the server API and the gRPC ChatService.

mod common;

use common::*;
use serde_json::json;

const KEY: &str = "test-api-key-room-rules";
/// The bound every front end is started with: "abcde" is a room,
/// "abcdef" is not.
const MAX: &str = "5";
const FITS: &str = "abcde";
const TOO_LONG: &str = "abcdef";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_name_bound_holds_at_every_front_end() {
    let redis = Redis::start();
    let ws = Process::ws_server(
        "server-1",
        Some(&redis),
        &["--max-room-len", MAX, "--api-key", KEY],
    );
    let grpc = Process::grpc_server("grpc-1", Some(&redis), &["--max-room-len", MAX]);

    // The native door: an error frame for the long name, a join for the other.
    let mut native = Client::connect(&ws.ws_url()).await;
    native
        .send(json!({"type": "join_room", "room": TOO_LONG}))
        .await;
    let refused = native.recv_type("error").await;
    assert_eq!(refused["code"], "invalid_room", "{refused}");
    assert_eq!(native.join(FITS).await["type"], "joined");

    // The Socket.IO door: the ack carries the same code.
    let mut sio = SioClient::node(&ws.http_url(""), json!({"transports": ["websocket"]}));
    sio.next("connect").await;
    let code_of = |line: &serde_json::Value| line["reply"]["error"]["code"].clone();
    sio.emit_with_ack("join_room", json!([TOO_LONG]));
    assert_eq!(
        code_of(&sio.next_where(|l| l["ack"] == "join_room").await),
        "invalid_room"
    );
    sio.emit_with_ack("join_room", json!([FITS]));
    assert_eq!(
        sio.next_where(|l| l["ack"] == "join_room").await["reply"]["room"],
        FITS
    );

    // The server API: 400 invalid_room, and a publish to the room that fits.
    let (status, answer) = api_post(
        &ws.http_url("/api/publish"),
        Key::Header(KEY),
        &json!({"room": TOO_LONG, "message": "x"}).to_string(),
    )
    .await;
    assert_eq!((status, &answer["code"]), (400, &json!("invalid_room")));
    api_publish(&ws.http_url(""), KEY, json!({"room": FITS, "message": "x"})).await;

    // The gRPC ChatService: INVALID_ARGUMENT, and a history of the other.
    use rtchat::grpc::pb::chat::HistoryRequest;
    use rtchat::grpc::pb::chat::chat_service_client::ChatServiceClient;
    let mut chat = ChatServiceClient::connect(grpc.grpc_url()).await.unwrap();
    let history = |room: &str| HistoryRequest {
        room: room.into(),
        since: None,
        limit: None,
    };
    let refused = chat.history(history(TOO_LONG)).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
    let kept = chat.history(history(FITS)).await.unwrap().into_inner();
    assert_eq!(kept.messages.len(), 1, "the API's publish is in the log");
}
