//! What the original's events do, as hub calls: the Socket.IO CONNECT
//! (display name, recovery), `join_room`, `leave_room` and `message`.
//!
//! A refused event is answered through its ack callback when it has one
//! (`{"error":{"code","message"}}`), else with an `error` event, with the
//! native error codes.

use super::answers::random_id;
use super::connection::Connection;
use super::packet::{self, Packet, PacketError};
use super::socket::{Connected, save};
use super::transport::End;
use crate::hub::{DisplayName, ErrorCode, HubError, JoinRequest, RoomMessage, RoomName};
use serde_json::{Value, json};
use std::time::Instant;

/// A refusal as the client sees it.
struct Refusal {
    code: ErrorCode,
    message: String,
}

impl Refusal {
    fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    fn to_json(&self) -> Value {
        json!({"code": self.code.as_str(), "message": self.message})
    }
}

impl From<HubError> for Refusal {
    fn from(err: HubError) -> Self {
        Self::new(err.code(), err.to_string())
    }
}

impl Connection {
    /// A Socket.IO packet (the data of an Engine.IO `message`).
    pub(super) async fn on_message(&mut self, data: &str) -> Result<(), End> {
        if !self.bucket.try_take(Instant::now()) {
            let limit = self.state.door.limits.rate_limit;
            let refusal = Refusal::new(
                ErrorCode::RateLimited,
                format!("more than {limit} packets per second; packet dropped"),
            );
            return self.refuse(None, refusal).await;
        }
        let packet = match Packet::parse(data) {
            Ok(packet) => packet,
            Err(PacketError::Binary) => {
                let refusal = Refusal::new(ErrorCode::BadFrame, PacketError::Binary.to_string());
                return self.refuse(None, refusal).await;
            }
            Err(PacketError::Malformed) => return Err(End::Protocol("malformed Socket.IO packet")),
        };
        match packet {
            Packet::Connect { namespace, auth } => self.connect(&namespace, auth).await,
            Packet::Disconnect { namespace } if namespace == "/" => Err(End::Goodbye),
            Packet::Disconnect { .. } | Packet::Ack => Ok(()),
            Packet::Event { namespace, .. } if namespace != "/" => Ok(()),
            Packet::Event { .. } if self.socket.is_none() => {
                Err(End::Protocol("event before CONNECT"))
            }
            Packet::Event {
                name, args, ack, ..
            } => {
                let outcome = match name.as_str() {
                    "join_room" => self.join(args).await,
                    "leave_room" => self.leave(args).await,
                    "message" => self.publish(args).await,
                    other => Err(Refusal::new(
                        ErrorCode::UnknownType,
                        format!("unknown event {other:?}"),
                    )),
                };
                match (outcome, ack) {
                    (Ok(reply), Some(id)) => self.send(packet::ack(id, &reply)).await,
                    (Ok(_), None) => Ok(()),
                    (Err(refusal), ack) => self.refuse(ack, refusal).await,
                }
            }
        }
    }

    async fn refuse(&mut self, ack: Option<u64>, refusal: Refusal) -> Result<(), End> {
        self.state.door.metrics.error(refusal.code);
        tracing::debug!(code = refusal.code.as_str(), message = %refusal.message, "event refused");
        let packet = match ack {
            Some(id) => packet::ack(id, &json!({"error": refusal.to_json()})),
            None => packet::event("error", &refusal.to_json()),
        };
        self.send(packet).await
    }

    /// The Socket.IO CONNECT: the main namespace only; `auth` may carry a
    /// display name and, on a reconnect, the `pid` and `offset` recovery
    /// needs.
    async fn connect(&mut self, namespace: &str, auth: Value) -> Result<(), End> {
        if namespace != "/" {
            return self
                .send(packet::connect_error(namespace, "Invalid namespace"))
                .await;
        }
        if self.socket.is_some() {
            return Ok(());
        }
        let token = auth.get("token").and_then(Value::as_str);
        let identity = match self.state.door.verifier.verify(token) {
            Ok(identity) => identity,
            Err(why) => {
                return self
                    .send(packet::connect_error("/", &why.to_string()))
                    .await;
            }
        };
        // With a token the name is the token's, never the client's choice.
        let asked = match &identity {
            Some(identity) => identity.name.as_deref(),
            None => auth.get("name").and_then(Value::as_str),
        };
        let name = match asked.map(DisplayName::parse) {
            None => None,
            Some(Ok(name)) => Some(name),
            Some(Err(why)) => return self.send(packet::connect_error("/", &why.0)).await,
        };
        let window = self.state.settings.recovery_window;
        if window.is_some()
            && let Some(pid) = auth.get("pid").and_then(Value::as_str)
            && let Some((socket, missed)) = self.recover(pid, &auth, identity.as_ref()).await
        {
            self.expire_with(identity.as_ref());
            let reply = packet::connect_reply(socket.sid(), socket.pid.as_deref());
            save(&self.state, &socket).await;
            self.socket = Some(socket);
            self.feed(reply.into()).await?;
            for message in &missed {
                self.feed(super::packet::message_packet(message, true).clone())
                    .await?;
            }
            self.flush().await?;
            tracing::debug!(missed = missed.len(), "session recovered");
            return Ok(());
        }
        // Anonymous: the Socket.IO id is the member's user. With a token the
        // user is its `sub`, and the Socket.IO id a random one of its own.
        let (user, sid) = match &identity {
            Some(identity) => (identity.user.clone(), Some(random_id().into())),
            None => (random_id(), None),
        };
        let (mut session, queue) = self.state.door.hub.open(user, name);
        if let Some(rule) = identity.as_ref().and_then(|i| i.rooms.clone()) {
            session.restrict(rule);
        }
        self.expire_with(identity.as_ref());
        let pid = window.map(|_| random_id().into_boxed_str());
        let socket = Box::new(Connected {
            session,
            queue,
            pid,
            sid,
        });
        // Not saved until it joins a room: a session saved with no rooms,
        // whose save after a join then failed (Redis away), would later
        // be recovered as one in no room, and the client would never
        // join again. Unsaved, it is not recovered and joins afresh.
        let reply = packet::connect_reply(socket.sid(), socket.pid.as_deref());
        self.socket = Some(socket);
        self.send(reply).await
    }

    /// The saved session `pid`, rejoined from where the client stopped:
    /// every room back, with what it missed, or `None` (a fresh session
    /// then) when any room's history no longer covers the gap.
    async fn recover(
        &mut self,
        pid: &str,
        auth: &Value,
        identity: Option<&crate::auth::Identity>,
    ) -> Option<(Box<Connected>, Vec<RoomMessage>)> {
        let saved = match self.state.store.load(pid).await {
            Ok(saved) => saved?,
            Err(err) => {
                tracing::warn!(%err, "could not load a session to recover");
                return None;
            }
        };
        // A session is only ever resumed by the user it belongs to.
        if saved.user.as_deref() != identity.map(|i| i.user.as_str()) {
            return None;
        }
        let offset: u64 = auth
            .get("offset")
            .and_then(Value::as_str)
            .and_then(|o| o.parse().ok())
            .unwrap_or(0);
        let name = saved
            .name
            .as_deref()
            .and_then(|n| DisplayName::parse(n).ok());
        let hub = self.state.door.hub.clone();
        let (user, sid) = match saved.user {
            Some(user) => (user, Some(saved.sid.into())),
            None => (saved.sid, None),
        };
        let (mut session, queue) = hub.open(user, name);
        if let Some(rule) = identity.and_then(|i| i.rooms.clone()) {
            session.restrict(rule);
        }
        let rules = *hub.rules();
        let mut missed = Vec::new();
        for (room, position) in &saved.rooms {
            let Ok(name) = rules.room(room) else {
                continue;
            };
            // A message id the client had, or the point it joined at.
            let since = offset.max(*position);
            let request = JoinRequest {
                since: Some(since),
                ..JoinRequest::default()
            };
            match hub.join(&mut session, &name, request).await {
                Ok(joined) if joined.recovered == Some(true) => {
                    missed.extend(joined.replay);
                    session.set_joined_at(&name, *position);
                }
                _ => {
                    hub.leave_all(&mut session).await;
                    return None;
                }
            }
        }
        missed.sort_by_key(|m| m.id);
        let socket = Box::new(Connected {
            session,
            queue,
            pid: Some(pid.into()),
            sid,
        });
        Some((socket, missed))
    }

    fn room_arg(&self, args: &[Value]) -> Result<RoomName, Refusal> {
        let Some(Value::String(room)) = args.first() else {
            return Err(Refusal::new(
                ErrorCode::InvalidRoom,
                "the room must be a string",
            ));
        };
        self.state
            .door
            .hub
            .rules()
            .room(room)
            .map_err(|why| Refusal::new(ErrorCode::InvalidRoom, why.0))
    }

    async fn join(&mut self, args: Vec<Value>) -> Result<Value, Refusal> {
        let room = self.room_arg(&args)?;
        let hub = self.state.door.hub.clone();
        let socket = self.socket.as_mut().expect("connected");
        let already = socket.session.is_in(room.as_str());
        hub.join(&mut socket.session, &room, JoinRequest::default())
            .await?;
        if !already {
            self.saved().await;
        }
        Ok(json!({"room": room.as_str()}))
    }

    async fn leave(&mut self, args: Vec<Value>) -> Result<Value, Refusal> {
        let room = self.room_arg(&args)?;
        let hub = self.state.door.hub.clone();
        let socket = self.socket.as_mut().expect("connected");
        if hub.leave(&mut socket.session, room.as_str()).await {
            self.saved().await;
        }
        Ok(json!({"room": room.as_str()}))
    }

    async fn publish(&mut self, args: Vec<Value>) -> Result<Value, Refusal> {
        let Some(Value::Object(data)) = args.first() else {
            return Err(Refusal::new(
                ErrorCode::BadFrame,
                "message takes {\"room\", \"message\"}",
            ));
        };
        let room = self.room_arg(&[data.get("room").cloned().unwrap_or(Value::Null)])?;
        let Some(Value::String(text)) = data.get("message") else {
            return Err(Refusal::new(ErrorCode::BadFrame, "missing field `message`"));
        };
        let key = crate::door::idempotency_key(data.get("idempotency_key"))
            .map_err(|why| Refusal::new(ErrorCode::BadFrame, why))?;
        let socket = self.socket.as_ref().expect("connected");
        let id = self
            .state
            .door
            .hub
            .publish(&socket.session, &room, text, key)
            .await?;
        Ok(json!({"id": id.to_string()}))
    }

    /// Saves the session after a change of rooms, when recovery is on.
    async fn saved(&mut self) {
        if let Some(socket) = &self.socket {
            save(&self.state, socket).await;
        }
    }
}
