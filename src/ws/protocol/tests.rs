use super::*;
use crate::hub::wire::MessageBody;

fn room(name: &str) -> RoomName {
    RoomName::parse(name, 128).unwrap()
}

#[test]
fn parses_client_frames() {
    assert_eq!(
        ClientFrame::parse(
            r#"{"type":"join_room","room":"general","extra":1}"#,
            &RoomRules::new(128)
        )
        .unwrap(),
        ClientFrame::JoinRoom {
            room: room("general"),
            since: None,
            history: None,
            presence: false
        }
    );
    assert_eq!(
        ClientFrame::parse(
            r#"{"type":"join_room","room":"g","since":"42"}"#,
            &RoomRules::new(128)
        )
        .unwrap(),
        ClientFrame::JoinRoom {
            room: room("g"),
            since: Some(42),
            history: None,
            presence: false
        }
    );
    assert_eq!(
        ClientFrame::parse(
            r#"{"type":"message","room":"g","message":"hi","ack":"a1"}"#,
            &RoomRules::new(128)
        )
        .unwrap(),
        ClientFrame::Message {
            room: room("g"),
            message: "hi".into(),
            ack: Some(Value::from("a1")),
            idempotency_key: None,
        }
    );
    assert_eq!(
        ClientFrame::parse(
            r#"{"type":"message","room":"g","message":"hi","idempotency_key":"k1"}"#,
            &RoomRules::new(128)
        )
        .unwrap(),
        ClientFrame::Message {
            room: room("g"),
            message: "hi".into(),
            ack: None,
            idempotency_key: Some("k1".into()),
        }
    );
    let refused = ClientFrame::parse(
        r#"{"type":"message","room":"g","message":"hi","ack":1,"idempotency_key":7}"#,
        &RoomRules::new(128),
    )
    .unwrap_err();
    assert_eq!(refused.code, ErrorCode::BadFrame);
    assert_eq!(refused.ack, Some(Value::from(1)));
}

#[test]
fn rejects_with_stable_codes() {
    let code = |text: &str| {
        ClientFrame::parse(text, &RoomRules::new(128))
            .unwrap_err()
            .code
    };
    assert_eq!(code("not json"), ErrorCode::BadFrame);
    assert_eq!(code("[1,2]"), ErrorCode::BadFrame);
    assert_eq!(code(r#"{"type":"dance"}"#), ErrorCode::UnknownType);
    assert_eq!(code(r#"{"room":"g"}"#), ErrorCode::UnknownType);
    assert_eq!(code(r#"{"type":"join_room"}"#), ErrorCode::InvalidRoom);
    assert_eq!(
        code(r#"{"type":"join_room","room":"g","since":"x"}"#),
        ErrorCode::InvalidSince
    );
    assert_eq!(
        code(r#"{"type":"message","room":"g"}"#),
        ErrorCode::BadFrame
    );
    assert_eq!(
        code(r#"{"type":"message","room":"g","message":"m","ack":{}}"#),
        ErrorCode::InvalidAck
    );
    assert_eq!(
        code(r#"{"type":"leave_room","room":"a\"b"}"#),
        ErrorCode::InvalidRoom
    );
    let long =
        ClientFrame::parse(r#"{"type":"presence","room":"abcd"}"#, &RoomRules::new(3)).unwrap_err();
    assert_eq!(
        (long.code, long.room.as_deref()),
        (ErrorCode::InvalidRoom, Some("abcd"))
    );
    let with_ack = ClientFrame::parse(
        r#"{"type":"message","room":"","message":"m","ack":"k"}"#,
        &RoomRules::new(9),
    )
    .unwrap_err();
    assert_eq!(
        with_ack.ack,
        Some(Value::from("k")),
        "refusal keeps the ack"
    );
}

#[test]
fn message_frame_splices_id() {
    let body = serde_json::to_vec(&MessageBody {
        room: "g",
        user: "u",
        name: None,
        message: "hi \"there\"",
        server: "s",
        timestamp: "t",
    })
    .unwrap();
    let message = RoomMessage::new(room("g"), 17, body.into()).unwrap();
    let v: Value = serde_json::from_str(message_frame(&message)).unwrap();
    assert_eq!(v["type"], "message");
    assert_eq!(v["id"], "17");
    assert_eq!(v["message"], "hi \"there\"");
    assert_eq!(v["room"], "g");
}
