//! The chat protocol: JSON text frames told apart by `type`.
//!
//! Client frames are parsed leniently (unknown fields ignored) but strictly
//! typed, room names included, so what reaches the hub is valid; anything
//! else is answered with an [`ErrorCode`] whose string is part of the
//! public contract and must never change. Close codes are the doors'
//! (`crate::door::close`).

pub use crate::hub::ErrorCode;
use crate::hub::{HubError, RoomEvent, RoomMessage, RoomName, RoomRules};
use axum::extract::ws::Utf8Bytes;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fmt::Write;

/// Longest `ack` token echoed back, so a client cannot make the server
/// store or send arbitrary amounts of data through it.
pub const MAX_ACK_BYTES: usize = 128;

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

    pub fn with_ack(mut self, ack: Option<Value>) -> Self {
        self.ack = ack;
        self
    }
}

impl From<HubError> for Reject {
    fn from(err: HubError) -> Self {
        Reject::new(err.code(), err.to_string())
    }
}

#[derive(Debug, PartialEq)]
pub enum ClientFrame {
    JoinRoom {
        room: RoomName,
        since: Option<u64>,
        /// Replay the newest messages kept, when no `since` is given.
        history: Option<usize>,
        /// Receive member_joined / member_left events of the room.
        presence: bool,
    },
    Presence {
        room: RoomName,
    },
    LeaveRoom {
        room: RoomName,
    },
    Message {
        room: RoomName,
        message: String,
        ack: Option<Value>,
        /// A retry with the same key answers the first post's id.
        idempotency_key: Option<String>,
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
    idempotency_key: Option<Value>,
}

impl ClientFrame {
    /// Room names are checked by the replica's `rules`, as every front
    /// end checks them.
    pub fn parse(text: &str, rules: &RoomRules) -> Result<Self, Reject> {
        let raw: RawFrame = serde_json::from_str(text)
            .map_err(|e| Reject::new(ErrorCode::BadFrame, format!("invalid frame: {e}")))?;
        let room = |raw: &RawFrame| {
            let name = raw
                .room
                .as_deref()
                .ok_or_else(|| Reject::new(ErrorCode::InvalidRoom, "missing field `room`"))?;
            rules
                .room(name)
                .map_err(|why| Reject::new(ErrorCode::InvalidRoom, why.0).with_room(name))
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
                let room = room(&raw).map_err(|r| r.with_ack(ack.clone()))?;
                let bad = |why: &str| Reject {
                    ack: ack.clone(),
                    ..Reject::new(ErrorCode::BadFrame, why).with_room(room.as_str())
                };
                let message = raw.message.ok_or_else(|| bad("missing field `message`"))?;
                let idempotency_key = crate::door::idempotency_key(raw.idempotency_key.as_ref())
                    .map_err(bad)?
                    .map(str::to_owned);
                Ok(Self::Message {
                    room,
                    message,
                    ack,
                    idempotency_key,
                })
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

const MESSAGE_PREFIX: &str = r#"{"type":"message","id":""#;

/// The frame of a room message, built by its first native recipient on
/// this replica and shared by the others.
pub fn message_frame(message: &RoomMessage) -> &Utf8Bytes {
    message
        .native
        .get_or_init(|| splice_id(message.id, &message.body))
}

/// `{"type":"message","id":"<id>",` then the body's fields.
fn splice_id(id: u64, body: &str) -> Utf8Bytes {
    // The hub only hands out bodies that are JSON objects.
    let rest = body.strip_prefix('{').unwrap_or(body);
    let mut frame = String::with_capacity(MESSAGE_PREFIX.len() + 24 + rest.len());
    frame.push_str(MESSAGE_PREFIX);
    let _ = write!(frame, "{id}\",");
    frame.push_str(rest);
    frame.into()
}

/// `member_joined` / `member_left`, shared like a message frame.
pub fn event_frame(event: &RoomEvent) -> &Utf8Bytes {
    event.native.get_or_init(|| {
        let kind = if event.joined {
            "member_joined"
        } else {
            "member_left"
        };
        let rest = event.info.strip_prefix('{').unwrap_or(&event.info);
        // A RoomName cannot hold anything JSON would escape.
        format!(r#"{{"type":"{kind}","room":"{}",{rest}"#, event.room).into()
    })
}

/// `{"type":"presence","room":...,"members":[...]}` from stored infos.
pub fn presence_frame(room: &RoomName, members: &[bytes::Bytes]) -> Utf8Bytes {
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
mod tests;
