//! The chat protocol: JSON text frames told apart by `type`.
//!
//! Client frames are parsed leniently (unknown fields ignored) but strictly
//! typed; anything else is answered with an [`ErrorCode`] whose string is
//! part of the public contract and must never change.

use axum::extract::ws::Utf8Bytes;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fmt::Write;

/// Longest `ack` token echoed back, so a client cannot make the server
/// store or send arbitrary amounts of data through it.
pub const MAX_ACK_BYTES: usize = 128;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// Not JSON, not an object, a binary frame, or a field of the wrong type.
    BadFrame,
    /// `type` missing or not one the server knows.
    UnknownType,
    /// Room name empty, too long or with characters outside [A-Za-z0-9_.:-].
    InvalidRoom,
    /// `since` is not a message id.
    InvalidSince,
    /// `ack` is not a string or number, or is too long.
    InvalidAck,
    /// Message text empty or over the size limit.
    MessageTooLong,
    /// Frame over the size limit; the socket is closed with 1009 after it.
    FrameTooLarge,
    /// Over the per-connection frame rate; the frame was dropped.
    RateLimited,
    /// Over the per-connection room limit.
    TooManyRooms,
    /// The shared backend (Redis) is unreachable; try again.
    Unavailable,
    /// `history` is not a count.
    InvalidHistory,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BadFrame => "bad_frame",
            Self::UnknownType => "unknown_type",
            Self::InvalidRoom => "invalid_room",
            Self::InvalidSince => "invalid_since",
            Self::InvalidAck => "invalid_ack",
            Self::MessageTooLong => "message_too_long",
            Self::FrameTooLarge => "frame_too_large",
            Self::RateLimited => "rate_limited",
            Self::TooManyRooms => "too_many_rooms",
            Self::Unavailable => "unavailable",
            Self::InvalidHistory => "invalid_history",
        }
    }
}

/// A frame refused, with the text the client sees.
#[derive(Debug)]
pub struct Reject {
    pub code: ErrorCode,
    pub message: String,
    /// Echoed so a client can match the error to the frame it sent.
    pub ack: Option<Value>,
    pub room: Option<String>,
}

impl Reject {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            ack: None,
            room: None,
        }
    }

    pub fn with_room(mut self, room: &str) -> Self {
        self.room = Some(room.to_owned());
        self
    }
}

#[derive(Debug, PartialEq)]
pub enum ClientFrame {
    JoinRoom {
        room: String,
        since: Option<u64>,
        /// Replay the newest messages kept, when no `since` is given.
        history: Option<usize>,
        /// Receive member_joined / member_left events of the room.
        presence: bool,
    },
    Presence {
        room: String,
    },
    LeaveRoom {
        room: String,
    },
    Message {
        room: String,
        message: String,
        ack: Option<Value>,
    },
}

#[derive(Deserialize)]
struct RawFrame {
    #[serde(rename = "type")]
    kind: Option<String>,
    room: Option<String>,
    message: Option<String>,
    since: Option<Value>,
    history: Option<Value>,
    presence: Option<bool>,
    ack: Option<Value>,
}

impl ClientFrame {
    pub fn parse(text: &str) -> Result<Self, Reject> {
        let raw: RawFrame = serde_json::from_str(text)
            .map_err(|e| Reject::new(ErrorCode::BadFrame, format!("invalid frame: {e}")))?;
        let room = |raw: &RawFrame| {
            raw.room
                .clone()
                .ok_or_else(|| Reject::new(ErrorCode::InvalidRoom, "missing field `room`"))
        };
        match raw.kind.as_deref() {
            Some("join_room") => Ok(Self::JoinRoom {
                room: room(&raw)?,
                since: parse_since(raw.since.as_ref())?,
                history: parse_history(raw.history.as_ref())?,
                presence: raw.presence.unwrap_or(false),
            }),
            Some("presence") => Ok(Self::Presence { room: room(&raw)? }),
            Some("leave_room") => Ok(Self::LeaveRoom { room: room(&raw)? }),
            Some("message") => {
                let ack = check_ack(raw.ack.clone())?;
                let room = room(&raw).map_err(|mut r| {
                    r.ack = ack.clone();
                    r
                })?;
                let message = raw.message.ok_or_else(|| Reject {
                    ack: ack.clone(),
                    ..Reject::new(ErrorCode::BadFrame, "missing field `message`")
                })?;
                Ok(Self::Message { room, message, ack })
            }
            Some(other) => Err(Reject::new(
                ErrorCode::UnknownType,
                format!("unknown frame type {other:?}"),
            )),
            None => Err(Reject::new(ErrorCode::UnknownType, "missing field `type`")),
        }
    }
}

fn parse_since(since: Option<&Value>) -> Result<Option<u64>, Reject> {
    let bad = || Reject::new(ErrorCode::InvalidSince, "`since` must be a message id");
    match since {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => s.parse().map(Some).map_err(|_| bad()),
        Some(Value::Number(n)) => n.as_u64().map(Some).ok_or_else(bad),
        Some(_) => Err(bad()),
    }
}

fn parse_history(history: Option<&Value>) -> Result<Option<usize>, Reject> {
    match history {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n.as_u64().map(|n| Some(n as usize)).ok_or_else(|| {
            Reject::new(
                ErrorCode::InvalidHistory,
                "`history` must be a count of messages",
            )
        }),
        Some(_) => Err(Reject::new(
            ErrorCode::InvalidHistory,
            "`history` must be a count of messages",
        )),
    }
}

fn check_ack(ack: Option<Value>) -> Result<Option<Value>, Reject> {
    match ack {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.len() <= MAX_ACK_BYTES => Ok(Some(Value::String(s))),
        Some(Value::Number(n)) => Ok(Some(Value::Number(n))),
        Some(_) => Err(Reject::new(
            ErrorCode::InvalidAck,
            format!("`ack` must be a string of at most {MAX_ACK_BYTES} bytes or a number"),
        )),
    }
}

/// Frames the server sends, other than room messages.
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame<'a> {
    Welcome {
        user: &'a str,
        server: &'a str,
    },
    Joined {
        room: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        recovered: Option<bool>,
        /// Id of the newest message of the room when joined: a client that
        /// receives nothing can still resume from here with `since`.
        #[serde(skip_serializing_if = "Option::is_none")]
        last_id: Option<String>,
    },
    Left {
        room: &'a str,
    },
    Ack {
        ack: &'a Value,
        id: String,
    },
    Error {
        code: &'static str,
        message: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        room: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        ack: Option<&'a Value>,
    },
}

impl ServerFrame<'_> {
    pub fn to_text(&self) -> Utf8Bytes {
        serde_json::to_string(self)
            .expect("server frames always serialise")
            .into()
    }
}

impl Reject {
    pub fn to_text(&self) -> Utf8Bytes {
        ServerFrame::Error {
            code: self.code.as_str(),
            message: &self.message,
            room: self.room.as_deref(),
            ack: self.ack.as_ref(),
        }
        .to_text()
    }
}

/// The body of a room message as it travels between replicas and sits in
/// history: everything but `type` and `id`, which are only known or fixed
/// on delivery.
#[derive(Serialize)]
pub struct MessageBody<'a> {
    pub room: &'a str,
    pub user: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<&'a str>,
    pub message: &'a str,
    pub server: &'a str,
    pub timestamp: &'a str,
}

const MESSAGE_PREFIX: &str = r#"{"type":"message","id":""#;

/// Builds the frame a client receives from a stored body, once per message
/// per replica; every local recipient shares the result.
pub fn message_frame(id: u64, body: &[u8]) -> Option<Utf8Bytes> {
    let rest = std::str::from_utf8(body.strip_prefix(b"{")?).ok()?;
    let mut frame = String::with_capacity(MESSAGE_PREFIX.len() + 24 + rest.len());
    frame.push_str(MESSAGE_PREFIX);
    let _ = write!(frame, "{id}\",");
    frame.push_str(rest);
    Some(frame.into())
}

/// Who a member is, as presence lists and events show it.
#[derive(Serialize)]
pub struct MemberInfo<'a> {
    pub user: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<&'a str>,
    pub server: &'a str,
}

/// `member_joined` / `member_left` for a room, from a stored [`MemberInfo`].
pub fn event_frame(joined: bool, room: &str, info: &[u8]) -> Option<Utf8Bytes> {
    let rest = std::str::from_utf8(info.strip_prefix(b"{")?).ok()?;
    let kind = if joined {
        "member_joined"
    } else {
        "member_left"
    };
    // Room names are limited to [A-Za-z0-9_.:-]: nothing to escape.
    Some(format!(r#"{{"type":"{kind}","room":"{room}",{rest}"#).into())
}

/// Display names given with `/ws?name=`: trimmed, 1 to this many
/// characters, no control characters.
pub const MAX_NAME_CHARS: usize = 32;

pub fn check_name(name: &str) -> Result<&str, String> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
        return Err(format!("name must be 1 to {MAX_NAME_CHARS} characters"));
    }
    if name.chars().any(char::is_control) {
        return Err("name must not contain control characters".into());
    }
    Ok(name)
}

/// `{"type":"presence","room":...,"members":[...]}` from stored infos.
pub fn presence_frame(room: &str, members: &[bytes::Bytes]) -> Utf8Bytes {
    let mut frame = format!(r#"{{"type":"presence","room":"{room}","members":["#);
    for (i, info) in members.iter().enumerate() {
        if i > 0 {
            frame.push(',');
        }
        frame.push_str(&String::from_utf8_lossy(info));
    }
    frame.push_str("]}");
    frame.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_client_frames() {
        assert_eq!(
            ClientFrame::parse(r#"{"type":"join_room","room":"general","extra":1}"#).unwrap(),
            ClientFrame::JoinRoom {
                room: "general".into(),
                since: None,
                history: None,
                presence: false
            }
        );
        assert_eq!(
            ClientFrame::parse(r#"{"type":"join_room","room":"g","since":"42"}"#).unwrap(),
            ClientFrame::JoinRoom {
                room: "g".into(),
                since: Some(42),
                history: None,
                presence: false
            }
        );
        assert_eq!(
            ClientFrame::parse(r#"{"type":"message","room":"g","message":"hi","ack":"a1"}"#)
                .unwrap(),
            ClientFrame::Message {
                room: "g".into(),
                message: "hi".into(),
                ack: Some(Value::from("a1"))
            }
        );
    }

    #[test]
    fn rejects_with_stable_codes() {
        let code = |text: &str| ClientFrame::parse(text).unwrap_err().code;
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
        let frame = message_frame(17, &body).unwrap();
        let v: Value = serde_json::from_str(&frame).unwrap();
        assert_eq!(v["type"], "message");
        assert_eq!(v["id"], "17");
        assert_eq!(v["message"], "hi \"there\"");
        assert_eq!(v["room"], "g");
    }
}
