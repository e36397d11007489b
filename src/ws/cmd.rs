//! What each client frame does: parse, one hub call, the reply frames.
//!
//! Outer error: the connection is over. Inner error: the frame is refused
//! with an error frame and the connection goes on.

use super::connection::{Connection, End};
use super::protocol::{ClientFrame, ErrorCode, Reject, ServerFrame, message_frame, presence_frame};
use crate::hub::{JoinRequest, RoomName};
use axum::extract::ws::Message;
use serde_json::Value;
use std::time::Instant;

type Outcome = Result<Result<(), Reject>, End>;

impl Connection {
    pub(super) async fn on_text(&mut self, text: &str) -> Result<(), End> {
        if !self.bucket.try_take(Instant::now()) {
            let limit = self.state.limits.rate_limit;
            return self
                .reject(Reject::new(
                    ErrorCode::RateLimited,
                    format!("more than {limit} frames per second; frame dropped"),
                ))
                .await;
        }
        let frame = match ClientFrame::parse(text, self.state.hub.rules()) {
            Ok(frame) => frame,
            Err(reject) => return self.reject(reject).await,
        };
        let result = match frame {
            ClientFrame::JoinRoom {
                room,
                since,
                history,
                presence,
            } => {
                let request = JoinRequest {
                    since,
                    history,
                    presence,
                };
                self.join(&room, request).await
            }
            ClientFrame::Presence { room } => self.presence(&room).await,
            ClientFrame::LeaveRoom { room } => self.leave(&room).await,
            ClientFrame::Message {
                room,
                message,
                ack,
                idempotency_key,
            } => {
                self.message(&room, &message, ack, idempotency_key.as_deref())
                    .await
            }
        };
        match result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(reject)) => self.reject(reject).await,
            Err(end) => Err(end),
        }
    }

    async fn join(&mut self, room: &RoomName, request: JoinRequest) -> Outcome {
        let hub = self.state.hub.clone();
        let joined = match hub.join(&mut self.session, room, request).await {
            Ok(joined) => joined,
            Err(err) => return Ok(Err(Reject::from(err).with_room(room.as_str()))),
        };
        let reply = ServerFrame::Joined {
            room: room.as_str(),
            recovered: joined.recovered,
            last_id: Some(joined.position.to_string()),
        };
        self.feed(Message::Text(reply.to_text())).await?;
        for message in &joined.replay {
            self.feed(Message::Text(message_frame(message).clone()))
                .await?;
        }
        self.flush().await?;
        Ok(Ok(()))
    }

    async fn presence(&mut self, room: &RoomName) -> Outcome {
        match self.state.hub.presence(&self.session, room).await {
            Ok(members) => {
                self.send(presence_frame(room, &members)).await?;
                Ok(Ok(()))
            }
            Err(err) => Ok(Err(Reject::from(err).with_room(room.as_str()))),
        }
    }

    async fn leave(&mut self, room: &RoomName) -> Outcome {
        let hub = self.state.hub.clone();
        hub.leave(&mut self.session, room.as_str()).await;
        self.send(
            ServerFrame::Left {
                room: room.as_str(),
            }
            .to_text(),
        )
        .await?;
        Ok(Ok(()))
    }

    async fn message(
        &mut self,
        room: &RoomName,
        text: &str,
        ack: Option<Value>,
        key: Option<&str>,
    ) -> Outcome {
        let id = match self.state.hub.publish(&self.session, room, text, key).await {
            Ok(id) => id,
            Err(err) => {
                let reject = Reject::from(err).with_room(room.as_str());
                return Ok(Err(reject.with_ack(ack)));
            }
        };
        if let Some(ack) = &ack {
            let reply = ServerFrame::Ack {
                ack,
                id: id.to_string(),
            };
            self.send(reply.to_text()).await?;
        }
        Ok(Ok(()))
    }
}
