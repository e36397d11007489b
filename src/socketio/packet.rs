//! Engine.IO 4 and Socket.IO 5 packets, text only (the original's events
//! carry JSON; binary attachments are refused).
//!
//! An Engine.IO packet is one type digit and its data; polling joins
//! several with the record separator. A Socket.IO packet rides inside an
//! Engine.IO `message` (`4`): a type digit, an optional namespace
//! (`/admin,`), an optional ack id, then JSON.

use crate::hub::RoomMessage;
use axum::extract::ws::Utf8Bytes;
use serde_json::Value;

/// Separates Engine.IO packets in one polling body.
pub const SEPARATOR: char = '\u{1e}';

/// Engine.IO packets the server sends as they are.
pub mod engine {
    pub const PING: &str = "2";
    pub const NOOP: &str = "6";
    pub const CLOSE: &str = "1";
    pub const PROBE: &str = "2probe";
    pub const PROBE_REPLY: &str = "3probe";
    pub const UPGRADE: &str = "5";
}

/// What a client's Engine.IO packet is.
#[derive(Debug, PartialEq)]
pub enum Engine<'a> {
    Close,
    Ping(&'a str),
    Pong,
    /// A Socket.IO packet.
    Message(&'a str),
    Upgrade,
    Noop,
}

impl<'a> Engine<'a> {
    pub fn parse(text: &'a str) -> Option<Self> {
        let (kind, data) = text.split_at_checked(1)?;
        Some(match kind {
            "1" => Self::Close,
            "2" => Self::Ping(data),
            "3" => Self::Pong,
            "4" => Self::Message(data),
            "5" => Self::Upgrade,
            "6" => Self::Noop,
            _ => return None,
        })
    }
}

/// A client's Socket.IO packet.
#[derive(Debug, PartialEq)]
pub enum Packet {
    /// CONNECT to a namespace, with the client's auth data.
    Connect {
        namespace: String,
        auth: Value,
    },
    Disconnect {
        namespace: String,
    },
    /// An event: its name, its arguments, and the ack id if the client
    /// waits for an answer.
    Event {
        namespace: String,
        name: String,
        args: Vec<Value>,
        ack: Option<u64>,
    },
    /// An answer to an event the server sent with an ack id (never, here).
    Ack,
}

/// Why a packet was refused.
#[derive(Debug, PartialEq, thiserror::Error)]
pub enum PacketError {
    #[error("not a Socket.IO packet")]
    Malformed,
    #[error("binary attachments are not supported; send JSON")]
    Binary,
}

impl Packet {
    pub fn parse(text: &str) -> Result<Self, PacketError> {
        let (kind, mut rest) = text.split_at_checked(1).ok_or(PacketError::Malformed)?;
        if matches!(kind, "5" | "6") {
            return Err(PacketError::Binary);
        }
        let mut namespace = "/".to_owned();
        if rest.starts_with('/') {
            let end = rest.find(',').unwrap_or(rest.len());
            namespace = rest[..end].to_owned();
            rest = rest.get(end + 1..).unwrap_or("");
        }
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let ack = match digits {
            0 => None,
            // An ack id over u64 is not one a client made.
            _ => Some(rest[..digits].parse().map_err(|_| PacketError::Malformed)?),
        };
        let json = &rest[digits..];
        let data = |json: &str| -> Result<Value, PacketError> {
            if json.is_empty() {
                Ok(Value::Null)
            } else {
                serde_json::from_str(json).map_err(|_| PacketError::Malformed)
            }
        };
        match kind {
            "0" => Ok(Self::Connect {
                namespace,
                auth: data(json)?,
            }),
            "1" => Ok(Self::Disconnect { namespace }),
            "2" => {
                let Value::Array(mut args) = data(json)? else {
                    return Err(PacketError::Malformed);
                };
                if args.is_empty() {
                    return Err(PacketError::Malformed);
                }
                let Value::String(name) = args.remove(0) else {
                    return Err(PacketError::Malformed);
                };
                Ok(Self::Event {
                    namespace,
                    name,
                    args,
                    ack,
                })
            }
            "3" => Ok(Self::Ack),
            _ => Err(PacketError::Malformed),
        }
    }
}

/// `40{"sid":...,"pid":...}`: the CONNECT reply, in an Engine.IO message.
pub fn connect_reply(sid: &str, pid: Option<&str>) -> String {
    let reply = match pid {
        Some(pid) => serde_json::json!({"sid": sid, "pid": pid}),
        None => serde_json::json!({"sid": sid}),
    };
    format!("40{reply}")
}

/// `44/ns,{"message":...}`: a refused CONNECT.
pub fn connect_error(namespace: &str, message: &str) -> String {
    let data = serde_json::json!({ "message": message });
    if namespace == "/" {
        format!("44{data}")
    } else {
        format!("44{namespace},{data}")
    }
}

/// `43<id>[data]`: the answer to an event the client sent with an ack id.
pub fn ack(id: u64, data: &Value) -> String {
    format!("43{id}[{data}]")
}

/// `42["name",data]`: an event to the client.
pub fn event(name: &str, data: &Value) -> String {
    format!("42{}", serde_json::json!([name, data]))
}

/// `42["message",{"id":"<id>",...},"<offset>"]`, built by the first
/// Socket.IO recipient on this replica and shared by the others. The offset
/// (the id again) is what socket.io-client presents on recovery.
pub fn message_packet(message: &RoomMessage, recovery: bool) -> &Utf8Bytes {
    message.socketio.get_or_init(|| {
        let id = message.id;
        let rest = message.body.strip_prefix('{').unwrap_or(&message.body);
        let mut frame = format!(r#"42["message",{{"id":"{id}","#);
        frame.push_str(rest);
        if recovery {
            use std::fmt::Write;
            let _ = write!(frame, r#","{id}""#);
        }
        frame.push(']');
        frame.into()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn engine_packets() {
        assert_eq!(Engine::parse("2probe"), Some(Engine::Ping("probe")));
        assert_eq!(Engine::parse("3"), Some(Engine::Pong));
        assert_eq!(
            Engine::parse("42[\"x\"]"),
            Some(Engine::Message("2[\"x\"]"))
        );
        assert_eq!(Engine::parse("5"), Some(Engine::Upgrade));
        assert_eq!(Engine::parse(""), None);
        assert_eq!(Engine::parse("9"), None);
        assert_eq!(Engine::parse("é"), None);
    }

    #[test]
    fn socket_io_packets() {
        assert_eq!(
            Packet::parse("0").unwrap(),
            Packet::Connect {
                namespace: "/".into(),
                auth: Value::Null
            }
        );
        assert_eq!(
            Packet::parse(r#"0{"name":"ana"}"#).unwrap(),
            Packet::Connect {
                namespace: "/".into(),
                auth: json!({"name": "ana"})
            }
        );
        assert_eq!(
            Packet::parse("0/admin,").unwrap(),
            Packet::Connect {
                namespace: "/admin".into(),
                auth: Value::Null
            }
        );
        assert_eq!(
            Packet::parse(r#"2["join_room","general"]"#).unwrap(),
            Packet::Event {
                namespace: "/".into(),
                name: "join_room".into(),
                args: vec![json!("general")],
                ack: None
            }
        );
        assert_eq!(
            Packet::parse(r#"212["message",{"room":"g","message":"hi"}]"#).unwrap(),
            Packet::Event {
                namespace: "/".into(),
                name: "message".into(),
                args: vec![json!({"room": "g", "message": "hi"})],
                ack: Some(12)
            }
        );
        assert_eq!(
            Packet::parse(r#"2/chat,3["x"]"#).unwrap(),
            Packet::Event {
                namespace: "/chat".into(),
                name: "x".into(),
                args: vec![],
                ack: Some(3)
            }
        );
    }

    #[test]
    fn bad_packets_are_refused() {
        for bad in [
            "",
            "2",
            "2{}",
            "2[]",
            "2[1]",
            "2[\"x\"",
            "9",
            "299999999999999999999[\"x\"]",
        ] {
            assert_eq!(Packet::parse(bad), Err(PacketError::Malformed), "{bad:?}");
        }
        assert_eq!(
            Packet::parse(r#"51-["x",{"_placeholder":true,"num":0}]"#),
            Err(PacketError::Binary)
        );
    }

    #[test]
    fn replies() {
        assert_eq!(connect_reply("s1", None), r#"40{"sid":"s1"}"#);
        assert_eq!(
            connect_reply("s1", Some("p1")),
            r#"40{"pid":"p1","sid":"s1"}"#
        );
        assert_eq!(
            connect_error("/admin", "Invalid namespace"),
            r#"44/admin,{"message":"Invalid namespace"}"#
        );
        assert_eq!(ack(7, &json!({"id": "1"})), r#"437[{"id":"1"}]"#);
        assert_eq!(
            event("error", &json!({"code": "x"})),
            r#"42["error",{"code":"x"}]"#
        );
    }
}
