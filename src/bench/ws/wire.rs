//! What the generator puts on the wire and recognises in what comes back,
//! for rtchat's JSON frames and for the Socket.IO original's events.

use super::Socket;
use anyhow::{Context, bail};
use clap::ValueEnum;
use futures_util::{SinkExt, StreamExt};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio_tungstenite::tungstenite::Message;

/// The wire protocol of the servers under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Protocol {
    /// rtchat's JSON frames.
    Rtchat,
    /// Socket.IO 4 over its WebSocket transport with the original chat's
    /// events (`join_room`, `message`), to measure the original with the
    /// same generator; URLs like
    /// ws://host:port/socket.io/?EIO=4&transport=websocket.
    SocketIo,
}

impl Protocol {
    /// Reads the server's greeting (and answers it, for Socket.IO).
    pub(super) async fn handshake(self, ws: &mut Socket) -> anyhow::Result<()> {
        match self {
            Self::Rtchat => {
                expect_frame(ws, "welcome", |t| t.contains(r#""type":"welcome""#)).await
            }
            Self::SocketIo => {
                expect_frame(ws, "an Engine.IO open packet", |t| t.starts_with('0')).await?;
                ws.send(Message::text("40")).await?;
                expect_frame(ws, "a Socket.IO connect packet", |t| t.starts_with("40")).await
            }
        }
    }

    pub(super) fn join(self, room: &str) -> String {
        match self {
            Self::Rtchat => serde_json::json!({"type": "join_room", "room": room}).to_string(),
            Self::SocketIo => format!("42{}", serde_json::json!(["join_room", room])),
        }
    }

    pub(super) fn message(self, room: &str, text: &str) -> String {
        let body = serde_json::json!({"type": "message", "room": room, "message": text});
        match self {
            Self::Rtchat => body.to_string(),
            Self::SocketIo => format!("42{}", serde_json::json!(["message", body])),
        }
    }

    /// The answer a frame needs at once: Engine.IO's ping wants a pong.
    pub(super) fn reply(self, text: &str) -> Option<&'static str> {
        (self == Self::SocketIo && text == "2").then_some("3")
    }
}

pub(super) fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or_default()
}

/// Finds "b<seq> <micros>" in a message frame without a full JSON parse.
pub(super) fn parse_bench_text(frame: &str) -> Option<(u64, u64)> {
    let start = frame.find("\"message\":\"b")? + "\"message\":\"b".len();
    let mut parts = frame[start..].split([' ', '"']);
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// Waits for the frame `matches` accepts, answering Engine.IO pings meanwhile.
pub(super) async fn expect_frame(
    ws: &mut Socket,
    what: &str,
    matches: impl Fn(&str) -> bool,
) -> anyhow::Result<()> {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(30), ws.next())
            .await
            .with_context(|| format!("no {what} in time"))?;
        match frame {
            Some(Ok(Message::Text(text))) if matches(&text) => return Ok(()),
            // An Engine.IO ping may come first (socketioxide sends one
            // before its CONNECT answer): answered, and the wait goes on.
            Some(Ok(Message::Text(text))) if text.as_str() == "2" => {
                ws.send(Message::text("3")).await?;
            }
            Some(Ok(other)) => bail!("expected {what}, got {other:?}"),
            Some(Err(err)) => return Err(err.into()),
            None => bail!("closed before {what}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn speaks_the_original_socket_io_events() {
        let p = Protocol::SocketIo;
        assert_eq!(p.join("bench"), r#"42["join_room","bench"]"#);
        let sent = p.message("bench", "b7 1700000000000000");
        assert!(sent.starts_with(r#"42["message",{"#), "{sent}");
        // What the original broadcasts back carries the text unchanged.
        let echo = r#"42["message",{"user":"x","message":"b7 1700000000000000","server":"s","timestamp":"t"}]"#;
        assert_eq!(parse_bench_text(echo), Some((7, 1_700_000_000_000_000)));
        assert_eq!(p.reply("2"), Some("3"));
        assert_eq!(Protocol::Rtchat.reply("2"), None);
    }

    #[test]
    fn parses_bench_payload_from_frame() {
        let frame = r#"{"type":"message","id":"1","room":"bench","user":"u","message":"b42 1700000000000000 xxxx","server":"s"}"#;
        assert_eq!(parse_bench_text(frame), Some((42, 1_700_000_000_000_000)));
        assert_eq!(
            parse_bench_text(r#"{"type":"message","message":"hello"}"#),
            None
        );
    }
}
