//! What comes back from Redis, which may be another rtchat version or a
//! damaged value: pub/sub messages and the log scripts' replies. Parsed or
//! refused, never a panic.
#![no_main]

use bytes::Bytes;
use fred::types::Value;
use libfuzzer_sys::fuzz_target;
use rtchat::broadcast::redis::wire::{parse_id, parse_message, parse_replay};

/// A reply array from bytes: each item a tag byte, then (for strings) a
/// length byte and that many bytes.
fn values(mut data: &[u8]) -> Vec<Value> {
    let mut out = Vec::new();
    while let Some((&tag, rest)) = data.split_first() {
        data = rest;
        let value = match tag % 5 {
            0 => Value::Null,
            1 => {
                let Some((&n, rest)) = data.split_first() else {
                    break;
                };
                data = rest;
                Value::Integer(i64::from(n as i8))
            }
            kind => {
                let Some((&len, rest)) = data.split_first() else {
                    break;
                };
                let len = usize::from(len).min(rest.len());
                let (bytes, rest) = rest.split_at(len);
                data = rest;
                match kind {
                    2 => Value::Bytes(Bytes::copy_from_slice(bytes)),
                    3 => match std::str::from_utf8(bytes) {
                        Ok(text) => Value::String(text.into()),
                        Err(_) => Value::Null,
                    },
                    _ => Value::Double(f64::from(len as u8)),
                }
            }
        };
        out.push(value);
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    let split = usize::from(split).min(rest.len());
    let (channel, payload) = rest.split_at(split);
    if let Ok(channel) = std::str::from_utf8(channel) {
        let _ = parse_message(channel, Bytes::copy_from_slice(payload));
        let _ = parse_message(&format!("rtchat:chan:{channel}"), Bytes::copy_from_slice(payload));
    }
    let reply = values(rest);
    for value in &reply {
        let _ = parse_id(value);
    }
    let _ = parse_replay(reply);
});
