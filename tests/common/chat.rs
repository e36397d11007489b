//! A chat client speaking the native JSON protocol, with helpers that read
//! like a user's steps.

use super::{DEADLINE, wait_for};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub type Socket = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

/// A chat client speaking the JSON protocol.
pub struct Client {
    pub ws: Socket,
    pub user: String,
    pub server: String,
    /// Frames read ahead while waiting for something else, in order.
    pending: std::collections::VecDeque<Value>,
    /// Rooms joined through the helpers, so `say` knows to expect its echo.
    rooms: std::collections::HashSet<String>,
}

impl Client {
    /// Connects to a URL, or a request with headers of its own.
    pub async fn connect(
        request: impl tokio_tungstenite::tungstenite::client::IntoClientRequest + Unpin,
    ) -> Self {
        let (ws, _) = tokio::time::timeout(DEADLINE, tokio_tungstenite::connect_async(request))
            .await
            .expect("connect timed out")
            .expect("connect");
        let mut client = Self {
            ws,
            user: String::new(),
            server: String::new(),
            pending: Default::default(),
            rooms: Default::default(),
        };
        let welcome = client.recv_type("welcome").await;
        client.user = welcome["user"].as_str().unwrap().to_owned();
        client.server = welcome["server"].as_str().unwrap().to_owned();
        client
    }

    pub async fn send(&mut self, frame: Value) {
        self.ws
            .send(Message::text(frame.to_string()))
            .await
            .unwrap();
    }

    pub async fn send_raw(&mut self, text: impl Into<String>) {
        self.ws.send(Message::text(text.into())).await.unwrap();
    }

    /// The next JSON frame, or `None` if the socket closed.
    pub async fn try_recv(&mut self) -> Option<Value> {
        if let Some(frame) = self.pending.pop_front() {
            return Some(frame);
        }
        self.read_socket().await
    }

    async fn read_socket(&mut self) -> Option<Value> {
        loop {
            let next = tokio::time::timeout(DEADLINE, self.ws.next())
                .await
                .expect("no frame before the deadline");
            match next? {
                Ok(Message::Text(text)) => return Some(serde_json::from_str(&text).unwrap()),
                Ok(Message::Close(_)) | Err(_) => return None,
                Ok(_) => continue,
            }
        }
    }

    pub async fn recv(&mut self) -> Value {
        self.try_recv()
            .await
            .expect("socket closed while a frame was expected")
    }

    /// The next frame, which must be of type `kind`.
    pub async fn recv_type(&mut self, kind: &str) -> Value {
        let frame = self.recv().await;
        assert_eq!(frame["type"], kind, "expected a {kind} frame, got {frame}");
        frame
    }

    /// Waits for the close frame and returns its code.
    pub async fn recv_close(&mut self) -> Option<u16> {
        loop {
            let next = tokio::time::timeout(DEADLINE, self.ws.next())
                .await
                .expect("no close before the deadline");
            match next {
                Some(Ok(Message::Close(frame))) => return frame.map(|f| f.code.into()),
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return None,
            }
        }
    }

    pub async fn join(&mut self, room: &str) -> Value {
        self.send(json!({"type": "join_room", "room": room})).await;
        self.rooms.insert(room.to_owned());
        self.recv_type("joined").await
    }

    pub async fn join_since(&mut self, room: &str, since: &str) -> Value {
        self.send(json!({"type": "join_room", "room": room, "since": since}))
            .await;
        self.rooms.insert(room.to_owned());
        self.recv_type("joined").await
    }

    pub async fn leave(&mut self, room: &str) -> Value {
        self.send(json!({"type": "leave_room", "room": room})).await;
        self.rooms.remove(room);
        self.recv_type("left").await
    }

    /// Sends a message with an ack token and returns its id once acked and,
    /// in a joined room, echoed back. Other frames read meanwhile stay
    /// pending for the next `recv`.
    pub async fn say(&mut self, room: &str, text: &str) -> String {
        let token = format!("ack-{text}");
        self.send(json!({"type": "message", "room": room, "message": text, "ack": token}))
            .await;
        let mut id: Option<String> = None;
        let mut echoed = !self.rooms.contains(room);
        let mut stash = Vec::new();
        while id.is_none() || !echoed {
            let frame = self.recv().await;
            if frame["type"] == "ack" && frame["ack"] == token.as_str() {
                id = Some(frame["id"].as_str().unwrap().to_owned());
            } else if frame["type"] == "message"
                && frame["user"] == self.user.as_str()
                && frame["message"] == text
            {
                echoed = true;
            } else {
                assert_ne!(frame["type"], "error", "message refused: {frame}");
                stash.push(frame);
            }
        }
        for frame in stash.into_iter().rev() {
            self.pending.push_front(frame);
        }
        id.unwrap()
    }

    /// Posts to a room this client is not in: the message's id, or the
    /// error frame it was refused with.
    pub async fn try_say(&mut self, room: &str, text: &str) -> Result<String, Value> {
        let token = format!("ack-{text}");
        self.send(json!({"type": "message", "room": room, "message": text, "ack": token}))
            .await;
        loop {
            let frame = self.recv().await;
            if frame["ack"] == token.as_str() {
                return match frame["type"].as_str() {
                    Some("ack") => Ok(frame["id"].as_str().unwrap().to_owned()),
                    _ => Err(frame),
                };
            }
        }
    }

    /// Receives `n` room messages, failing on anything else.
    pub async fn messages(&mut self, n: usize) -> Vec<Value> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let frame = self.recv().await;
            if frame["type"] == "ack" {
                continue;
            }
            assert_eq!(frame["type"], "message", "expected a message, got {frame}");
            out.push(frame);
        }
        out
    }

    /// Receives messages up to and including the one whose text is `marker`,
    /// returning the texts before it: proves nothing extra arrived in between.
    pub async fn texts_until(&mut self, marker: &str) -> Vec<String> {
        let mut texts = Vec::new();
        loop {
            let frame = self.recv().await;
            if frame["type"] == "ack" {
                continue;
            }
            assert_eq!(frame["type"], "message", "expected a message, got {frame}");
            let text = frame["message"].as_str().unwrap().to_owned();
            if text == marker {
                return texts;
            }
            texts.push(text);
        }
    }

    /// Waits until a message `sender` posts to `room` reaches this
    /// client, which is in it: cross-replica delivery works again (after
    /// an outage, say). Probes are sent until one arrives.
    pub async fn until_delivered_from(&mut self, sender: &mut Client, room: &str) {
        let mut n = 0;
        wait_for("cross-replica delivery", DEADLINE, async || {
            n += 1;
            sender.say(room, &format!("probe {n}")).await;
            let got = tokio::time::timeout(std::time::Duration::from_millis(200), self.recv())
                .await
                .ok()?;
            (got["type"] == "message").then_some(())
        })
        .await;
    }
}

/// A member of a room on one replica, with the position it can resume
/// from, and a sender on another that has posted `before 0`, `before 1` ...
pub struct Traffic {
    pub member: Client,
    pub position: String,
    pub sender: Client,
    /// The texts posted and acknowledged, in order.
    pub acked: Vec<String>,
}

impl Traffic {
    pub async fn start(member_url: &str, sender_url: &str, room: &str, n: usize) -> Self {
        let mut member = Client::connect(member_url).await;
        let position = member.join(room).await["last_id"]
            .as_str()
            .unwrap()
            .to_owned();
        let mut sender = Client::connect(sender_url).await;
        let mut acked = Vec::new();
        for k in 0..n {
            let text = format!("before {k}");
            sender.say(room, &text).await;
            acked.push(text);
        }
        Self {
            member,
            position,
            sender,
            acked,
        }
    }
}

pub fn id_of(frame: &Value) -> u64 {
    frame["id"].as_str().unwrap().parse().unwrap()
}
