//! rtchat.v1.ChatService: the server API's room operations over gRPC,
//! each one backend call. grpc-server has no sessions; what it posts
//! reaches ws-server replicas through the shared broadcast.

use super::auth::{Caller, caller};
use super::pb::chat::{
    ChatMessage, DisconnectRequest, DisconnectResponse, HistoryRequest, HistoryResponse, Member,
    PresenceRequest, PresenceResponse, PublishRequest, PublishResponse, chat_service_server,
};
use crate::hub::backend::Author;
use crate::hub::{Backend, DisplayName, HubError, RoomName, RoomRules};
use serde::Deserialize;
use std::sync::Arc;
use tonic::{Request, Response, Status};

pub struct ChatService {
    rooms: Arc<Backend>,
}

impl ChatService {
    pub fn new(rooms: Arc<Backend>) -> Self {
        Self { rooms }
    }

    /// The room, if its name is valid and the caller may read it.
    fn room<T>(&self, request: &Request<T>, name: &str) -> Result<RoomName, Status> {
        let room = (self.rooms.rules().room(name)).map_err(|e| Status::invalid_argument(e.0))?;
        if let Caller::User(identity) = caller(request) {
            RoomRules::check_token(identity.rooms.as_ref(), &room).map_err(status)?;
        }
        Ok(room)
    }
}

/// Publish and Disconnect act as the server: the service token only.
fn as_server<T>(request: &Request<T>) -> Result<(), Status> {
    match caller(request) {
        Caller::Open | Caller::Service => Ok(()),
        Caller::User(_) | Caller::Anonymous => Err(Status::permission_denied(
            "this method acts as the server: it needs the service token",
        )),
    }
}

fn status(err: HubError) -> Status {
    match err {
        HubError::MessageTooLong(_)
        | HubError::TooManyRooms(_)
        | HubError::InvalidIdempotencyKey(_) => Status::invalid_argument(err.to_string()),
        HubError::Forbidden | HubError::ReadOnly => Status::permission_denied(err.to_string()),
        HubError::Unavailable(_) => Status::unavailable(err.to_string()),
    }
}

/// A stored message body, as the doors read it.
#[derive(Deserialize)]
struct Body {
    room: String,
    user: String,
    #[serde(default)]
    name: Option<String>,
    message: String,
    server: String,
    timestamp: String,
}

fn chat_message(id: u64, raw: &[u8]) -> Option<ChatMessage> {
    let body: Body = serde_json::from_slice(raw).ok()?;
    Some(ChatMessage {
        id,
        room: body.room,
        user: body.user,
        name: body.name.unwrap_or_default(),
        message: body.message,
        server: body.server,
        timestamp: body.timestamp,
    })
}

#[derive(Deserialize)]
struct Info {
    user: String,
    #[serde(default)]
    name: Option<String>,
    server: String,
}

#[tonic::async_trait]
impl chat_service_server::ChatService for ChatService {
    async fn publish(
        &self,
        request: Request<PublishRequest>,
    ) -> Result<Response<PublishResponse>, Status> {
        as_server(&request)?;
        let room = self.room(&request, &request.get_ref().room)?;
        let request = request.into_inner();
        let name = match request.name.as_str() {
            "" => None,
            name => Some(DisplayName::parse(name).map_err(|e| Status::invalid_argument(e.0))?),
        };
        // proto3: an empty key is no key.
        let key = Some(request.idempotency_key.as_str()).filter(|k| !k.is_empty());
        let author = Author::backend(name.as_ref());
        let id = self
            .rooms
            .publish_as(author, &room, &request.message, key)
            .await
            .map_err(status)?;
        Ok(Response::new(PublishResponse { id }))
    }

    async fn history(
        &self,
        request: Request<HistoryRequest>,
    ) -> Result<Response<HistoryResponse>, Status> {
        let room = self.room(&request, &request.get_ref().room)?;
        let request = request.into_inner();
        let limit = request.limit.map(|limit| limit as usize);
        let history = self
            .rooms
            .history(&room, request.since, limit)
            .await
            .map_err(status)?;
        Ok(Response::new(HistoryResponse {
            room: room.as_str().to_owned(),
            position: history.position,
            recovered: history.recovered,
            messages: history
                .messages
                .iter()
                .filter_map(|(id, body)| chat_message(*id, body))
                .collect(),
        }))
    }

    async fn presence(
        &self,
        request: Request<PresenceRequest>,
    ) -> Result<Response<PresenceResponse>, Status> {
        let room = self.room(&request, &request.get_ref().room)?;
        let infos = self.rooms.room_presence(&room).await.map_err(status)?;
        let members = infos
            .iter()
            .filter_map(|info| serde_json::from_slice::<Info>(info).ok())
            .map(|info| Member {
                user: info.user,
                name: info.name.unwrap_or_default(),
                server: info.server,
            })
            .collect();
        Ok(Response::new(PresenceResponse {
            room: room.as_str().to_owned(),
            members,
        }))
    }

    async fn disconnect(
        &self,
        request: Request<DisconnectRequest>,
    ) -> Result<Response<DisconnectResponse>, Status> {
        as_server(&request)?;
        let user = request.into_inner().user;
        if user.is_empty() {
            return Err(Status::invalid_argument("user must not be empty"));
        }
        self.rooms.disconnect(&user).await.map_err(status)?;
        Ok(Response::new(DisconnectResponse {}))
    }
}
