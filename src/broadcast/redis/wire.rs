//! Parsing what Redis hands back: pub/sub messages and the log scripts'
//! replies. Anything unexpected is a [`BroadcastError::Protocol`] or a
//! `None`, never a panic: the other side may be another rtchat version.

use super::keys;
use crate::broadcast::{BroadcastError, Envelope, Kind, Replay};
use bytes::Bytes;
use fred::types::Value;
use std::sync::Arc;

/// A pub/sub message: `<id> <payload>` for a logged payload, `+ <info>` /
/// `- <info>` for presence changes.
pub fn parse_message(channel: &str, raw: Bytes) -> Option<Envelope> {
    let topic = keys::topic_of(channel)?;
    let space = raw.iter().position(|&b| b == b' ')?;
    let kind = match &raw[..space] {
        b"+" => Kind::Joined,
        b"-" => Kind::Left,
        id => Kind::Message {
            id: std::str::from_utf8(id).ok()?.parse().ok()?,
        },
    };
    Some(Envelope {
        topic: Arc::from(topic),
        kind,
        payload: raw.slice(space + 1..),
    })
}

/// A message id as the scripts return it: decimal digits.
pub fn parse_id(value: &Value) -> Result<u64, BroadcastError> {
    let text = value.as_str().unwrap_or_default();
    text.parse()
        .map_err(|_| BroadcastError::Protocol(format!("bad message id {text:?}")))
}

/// One entry of publish.lua's answer: the message's id, or `!` and the
/// Redis error that stopped that message alone.
pub fn parse_group_entry(value: &Value) -> Result<u64, BroadcastError> {
    match value.as_str() {
        Some(text) if text.starts_with('!') => {
            Err(BroadcastError::Unavailable(text[1..].to_owned()))
        }
        _ => parse_id(value),
    }
}

/// replay.lua's `{recovered, position, id1, payload1, ...}`.
pub fn parse_replay(reply: Vec<Value>) -> Result<Replay, BroadcastError> {
    let mut items = reply.into_iter();
    let recovered = match items.next().and_then(|v| v.as_i64()) {
        Some(flag) => flag == 1,
        None => return Err(BroadcastError::Protocol("empty replay reply".into())),
    };
    let position = match items.next() {
        Some(v) => parse_id(&v)?,
        None => {
            return Err(BroadcastError::Protocol(
                "replay reply without a position".into(),
            ));
        }
    };
    let mut messages = Vec::with_capacity(items.len() / 2);
    while let Some(id) = items.next() {
        let id = parse_id(&id)?;
        let payload = items.next().and_then(Value::into_bytes).ok_or_else(|| {
            BroadcastError::Protocol(format!("replayed entry {id} without payload"))
        })?;
        messages.push((id, payload));
    }
    Ok(Replay {
        recovered,
        position,
        messages,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_and_presence_changes() {
        let m = parse_message("rtchat:chan:{room:g}", Bytes::from("17 {\"a\":1}")).unwrap();
        assert_eq!(&*m.topic, "room:g");
        assert_eq!(m.kind, Kind::Message { id: 17 });
        assert_eq!(m.payload, Bytes::from("{\"a\":1}"));
        let joined = parse_message("rtchat:chan:{t}", Bytes::from("+ {}")).unwrap();
        assert_eq!(
            (joined.kind, joined.payload),
            (Kind::Joined, Bytes::from("{}"))
        );
        let left = parse_message("rtchat:chan:{t}", Bytes::from("- {}")).unwrap();
        assert_eq!(left.kind, Kind::Left);
        // A payload may contain spaces: only the first one separates.
        let spaced = parse_message("rtchat:chan:{t}", Bytes::from("5 a b")).unwrap();
        assert_eq!(spaced.payload, Bytes::from("a b"));
    }

    #[test]
    fn malformed_messages_are_ignored() {
        assert!(parse_message("other:chan", Bytes::from("1 x")).is_none());
        assert!(parse_message("rtchat:chan:{t}", Bytes::from("no-space")).is_none());
        assert!(parse_message("rtchat:chan:{t}", Bytes::from("x1 y")).is_none());
        assert!(parse_message("rtchat:chan:{t}", Bytes::from("-5 y")).is_none());
        assert!(parse_message("rtchat:chan:{t}", Bytes::from(" y")).is_none());
    }

    #[test]
    fn group_entries() {
        assert_eq!(parse_group_entry(&Value::from("42")).unwrap(), 42);
        let failed = parse_group_entry(&Value::from("!WRONGTYPE no")).unwrap_err();
        assert!(matches!(failed, BroadcastError::Unavailable(why) if why == "WRONGTYPE no"));
        assert!(matches!(
            parse_group_entry(&Value::from("x")),
            Err(BroadcastError::Protocol(_))
        ));
    }

    #[test]
    fn replay_replies() {
        let reply = vec![
            Value::Integer(1),
            Value::from("100"),
            Value::from("99"),
            Value::Bytes(Bytes::from("a")),
            Value::from("100"),
            Value::Bytes(Bytes::from("b")),
        ];
        let r = parse_replay(reply).unwrap();
        assert!(r.recovered);
        assert_eq!(r.position, 100);
        assert_eq!(
            r.messages,
            [(99, Bytes::from("a")), (100, Bytes::from("b"))]
        );

        let lost = parse_replay(vec![Value::Integer(0), Value::from("7")]).unwrap();
        assert!(!lost.recovered && lost.position == 7 && lost.messages.is_empty());
    }

    #[test]
    fn malformed_replay_replies_are_errors() {
        assert!(parse_replay(vec![]).is_err());
        assert!(parse_replay(vec![Value::Integer(1)]).is_err());
        assert!(parse_replay(vec![Value::Integer(1), Value::from("")]).is_err());
        assert!(parse_replay(vec![Value::Integer(1), Value::from("x")]).is_err());
        let odd = vec![Value::Integer(1), Value::from("5"), Value::from("5")];
        assert!(parse_replay(odd).is_err(), "an id without its payload");
    }
}
