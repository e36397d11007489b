//! The server API's operations: parse, one hub call, the answer.

use super::ApiState;
use super::MAX_BODY_BYTES;
use super::error::ApiError;
use crate::hub::backend::Author;
use crate::hub::{DisplayName, ErrorCode, RoomName};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request, State};
use axum::http::StatusCode;
use futures_util::StreamExt;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

/// Longest user id a disconnect names (JWT subjects included).
const MAX_USER_LEN: usize = 256;
/// Largest `limit` a history call may name (the log keeps fewer anyway).
const MAX_LIMIT: usize = 1_000_000;
const MAX_SINCE_DIGITS: usize = 19;
/// Presence reads in flight while counting every room's members.
const PRESENCE_READS: usize = 16;

pub(super) type Answer = Result<Json<Value>, ApiError>;

/// A request body, up to [`MAX_BODY_BYTES`] (`frame_too_large`, 413,
/// above).
pub struct Body(pub(super) Bytes);

impl<S: Send + Sync> FromRequest<S> for Body {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        Bytes::from_request(request, state)
            .await
            .map(Body)
            .map_err(|err| match err.status() {
                StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    ErrorCode::FrameTooLarge,
                    format!("request body over {MAX_BODY_BYTES} bytes"),
                ),
                _ => ApiError::bad_request(err.body_text()),
            })
    }
}

/// The operation's JSON object, or `bad_frame`.
fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|err| ApiError::bad_request(err.to_string()))
}

fn room(state: &ApiState, name: &str) -> Result<RoomName, ApiError> {
    state.hub.rules().room(name).map_err(ApiError::invalid_room)
}

/// Parses a stored body and adds its id, as the doors deliver it.
fn message(id: u64, body: &[u8]) -> Value {
    let mut value: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    if let Value::Object(fields) = &mut value {
        fields.insert("id".into(), Value::String(id.to_string()));
    }
    value
}

/// A display name exactly as given: unlike a client's, an API name that
/// starts or ends with a space is refused rather than trimmed, so the
/// document's pattern and the server agree on every string.
fn display_name(name: &str) -> Result<DisplayName, ApiError> {
    let blank = |c: char| c.is_whitespace() || c.is_control() || c == '\u{feff}';
    let refused = |why: String| ApiError::new(StatusCode::BAD_REQUEST, ErrorCode::BadFrame, why);
    if name.starts_with(blank) || name.ends_with(blank) {
        return Err(refused("name must not start or end with a space".into()));
    }
    DisplayName::parse(name).map_err(|e| refused(e.0))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Publish {
    room: String,
    message: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    idempotency_key: Option<String>,
}

pub(super) async fn publish(State(state): State<ApiState>, Body(body): Body) -> Answer {
    let request: Publish = parse(&body)?;
    let room = room(&state, &request.room)?;
    let name = request.name.as_deref().map(display_name).transpose()?;
    let key = request.idempotency_key.as_deref();
    let author = Author::backend(name.as_ref());
    let id = state
        .hub
        .publish_as(author, &room, &request.message, key)
        .await?;
    Ok(Json(json!({"id": id.to_string()})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct History {
    room: String,
    #[serde(default)]
    since: Option<String>,
    #[serde(default)]
    limit: Option<usize>,
}

pub(super) async fn history(State(state): State<ApiState>, Body(body): Body) -> Answer {
    let request: History = parse(&body)?;
    let room = room(&state, &request.room)?;
    let since = match request.since.as_deref() {
        None | Some("") => None,
        // Ids have 16 digits; the document allows up to 19, all of which fit.
        Some(since) if since.len() > MAX_SINCE_DIGITS => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                ErrorCode::InvalidSince,
                "`since` must be a message id",
            ));
        }
        Some(since) => Some(since.parse::<u64>().map_err(|_| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                ErrorCode::InvalidSince,
                "`since` must be a message id",
            )
        })?),
    };
    if request.limit.is_some_and(|limit| limit > MAX_LIMIT) {
        return Err(ApiError::bad_request(format!(
            "limit must be at most {MAX_LIMIT}"
        )));
    }
    let history = state.hub.history(&room, since, request.limit).await?;
    let messages: Vec<Value> = history
        .messages
        .iter()
        .map(|(id, body)| message(*id, body))
        .collect();
    let mut answer = json!({
        "room": room.as_str(),
        "position": history.position.to_string(),
        "messages": messages,
    });
    if let Some(recovered) = history.recovered {
        answer["recovered"] = Value::Bool(recovered);
    }
    Ok(Json(answer))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RoomOnly {
    room: String,
}

pub(super) async fn presence(State(state): State<ApiState>, Body(body): Body) -> Answer {
    let request: RoomOnly = parse(&body)?;
    let room = room(&state, &request.room)?;
    let members: Vec<Value> = state
        .hub
        .room_presence(&room)
        .await?
        .iter()
        .filter_map(|info| serde_json::from_slice(info).ok())
        .collect();
    Ok(Json(json!({"room": room.as_str(), "members": members})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Disconnect {
    user: String,
}

/// Closes every connection of a user, on every replica.
pub(super) async fn disconnect(State(state): State<ApiState>, Body(body): Body) -> Answer {
    let request: Disconnect = parse(&body)?;
    if request.user.is_empty() || request.user.chars().count() > MAX_USER_LEN {
        return Err(ApiError::bad_request(format!(
            "user must be 1 to {MAX_USER_LEN} characters"
        )));
    }
    state.hub.disconnect(&request.user).await?;
    Ok(Json(json!({"user": request.user})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Drain {
    /// The replica to drain; this one when absent.
    #[serde(default)]
    server: Option<String>,
}

/// Drains a replica (the one answering, unless `server` names another
/// live one) as SIGTERM does: not ready at once, its sockets sent to the
/// other replicas at the drain's pace, then it exits.
pub(super) async fn drain(State(state): State<ApiState>, Body(body): Body) -> Answer {
    let request: Drain = match body.is_empty() {
        true => Drain { server: None },
        false => parse(&body)?,
    };
    let own = &state.hub.settings().server_id;
    let server = request.server.unwrap_or_else(|| own.clone());
    if server == *own {
        state.hub.drain_requested().cancel();
    } else {
        let replicas = state.hub.replicas().await?;
        if !replicas.iter().any(|r| r.server == server) {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                ErrorCode::UnknownServer,
                format!("no live replica is named {server}"),
            ));
        }
        state.hub.drain_replica(&server).await?;
    }
    Ok(Json(json!({"server": server, "draining": true})))
}

/// No body or `{}`; not `[]`, which serde would take for an empty
/// struct, nor blank text, which is not JSON.
pub(super) fn parse_empty(body: &[u8]) -> Result<(), ApiError> {
    if body.is_empty() {
        return Ok(());
    }
    let fields: serde_json::Map<String, Value> = parse(body)?;
    match fields.keys().next() {
        None => Ok(()),
        Some(field) => Err(ApiError::bad_request(format!("unknown field `{field}`"))),
    }
}

/// The rooms this replica has members in, with its own member count and
/// the count on every replica (from presence).
pub(super) async fn rooms(State(state): State<ApiState>, Body(body): Body) -> Answer {
    parse_empty(&body)?;
    let hub = &state.hub;
    let rooms: Vec<Value> = with_members(&state, hub.local_rooms())
        .await
        .into_iter()
        .map(|(name, local, total)| {
            json!({"room": name, "local_members": local, "total_members": total})
        })
        .collect();
    Ok(Json(json!({
        "server": hub.settings().server_id,
        "rooms": rooms,
    })))
}

/// Each room with its member count on every replica (from presence, a
/// few reads at a time; `None` where presence could not be read), in the
/// order given; names that are not rooms are left out.
pub(super) async fn with_members<T>(
    state: &ApiState,
    rooms: Vec<(String, T)>,
) -> Vec<(String, T, Option<usize>)> {
    let hub = &state.hub;
    futures_util::stream::iter(rooms)
        .map(|(name, extra)| async move {
            let room = hub.rules().room(&name).ok()?;
            let members = hub.room_presence(&room).await.ok().map(|m| m.len());
            Some((name, extra, members))
        })
        .buffered(PRESENCE_READS)
        .filter_map(|room| async move { room })
        .collect()
        .await
}

pub(super) async fn stats(State(state): State<ApiState>, Body(body): Body) -> Answer {
    parse_empty(&body)?;
    let stats = state.hub.stats();
    Ok(Json(json!({
        "server": state.hub.settings().server_id,
        "ready": state.hub.is_ready(),
        "connections": stats.connections,
        "rooms": stats.rooms,
        "messages_in": stats.messages_in,
        "messages_out": stats.messages_out,
    })))
}
