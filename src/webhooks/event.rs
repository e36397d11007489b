//! What an event is on the wire: `{"id","type","time","data"}`, written
//! once when it happens and POSTed byte for byte on every try, so its
//! signature and id are the same each time.

use bytes::Bytes;
use serde::Serialize;

/// Every event type, by its name on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    MemberJoined,
    MemberLeft,
    UserConnected,
    UserDisconnected,
    Message,
    UserCreated,
    UserUpdated,
    UserDeleted,
}

impl EventType {
    pub const ALL: [EventType; 8] = [
        Self::MemberJoined,
        Self::MemberLeft,
        Self::UserConnected,
        Self::UserDisconnected,
        Self::Message,
        Self::UserCreated,
        Self::UserUpdated,
        Self::UserDeleted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::MemberJoined => "member_joined",
            Self::MemberLeft => "member_left",
            Self::UserConnected => "user_connected",
            Self::UserDisconnected => "user_disconnected",
            Self::Message => "message",
            Self::UserCreated => "user_created",
            Self::UserUpdated => "user_updated",
            Self::UserDeleted => "user_deleted",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|kind| kind.as_str() == name.trim())
    }

    pub(super) fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

/// A new event's id: 128 random bits in hex, the same on every try.
pub fn new_id() -> String {
    format!("{:032x}", fastrand::u128(..))
}

/// The event's JSON body around `data`, which must be one JSON value.
pub fn body(id: &str, kind: EventType, data: &[u8]) -> Bytes {
    let time = humantime::format_rfc3339_millis(std::time::SystemTime::now());
    let mut out = Vec::with_capacity(data.len() + 110);
    out.extend_from_slice(b"{\"id\":\"");
    out.extend_from_slice(id.as_bytes());
    out.extend_from_slice(b"\",\"type\":\"");
    out.extend_from_slice(kind.as_str().as_bytes());
    out.extend_from_slice(b"\",\"time\":\"");
    out.extend_from_slice(time.to_string().as_bytes());
    out.extend_from_slice(b"\",\"data\":");
    out.extend_from_slice(data);
    out.push(b'}');
    out.into()
}

/// `object` (a JSON object) with `fields` put first: the room of a member
/// info, the id of a message body. Falls back to nesting when `object` is
/// not an object.
pub fn with_fields(fields: &impl Serialize, object: &[u8]) -> Vec<u8> {
    let head = serde_json::to_vec(fields).expect("event fields always serialise");
    let rest = object.strip_prefix(b"{").filter(|r| r.len() > 1);
    match (head.strip_suffix(b"}"), rest) {
        (Some(head), Some(rest)) => {
            let mut out = Vec::with_capacity(head.len() + rest.len() + 1);
            out.extend_from_slice(head);
            out.push(b',');
            out.extend_from_slice(rest);
            out
        }
        _ => head,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for kind in EventType::ALL {
            assert_eq!(EventType::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(EventType::parse("nope"), None);
    }

    #[test]
    fn a_body_is_one_json_object() {
        #[derive(Serialize)]
        struct Room<'a> {
            room: &'a str,
        }
        let data = with_fields(&Room { room: "a\"b" }, br#"{"user":"ana"}"#);
        let body = body(&new_id(), EventType::MemberJoined, &data);
        let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(value["type"], "member_joined");
        assert_eq!(value["data"]["room"], "a\"b");
        assert_eq!(value["data"]["user"], "ana");
        assert_eq!(value["id"].as_str().unwrap().len(), 32);
        let empty = with_fields(&Room { room: "r" }, b"{}");
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&empty).unwrap()["room"],
            "r"
        );
    }
}
