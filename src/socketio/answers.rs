//! Engine.IO's answers outside the packet stream: refusals with their
//! codes, the open packet, and session ids.

use crate::door::limits::Limits;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

/// Engine.IO's error body for a refused request.
pub(super) fn refuse(status: StatusCode, code: u8, message: &str) -> Response {
    let body = serde_json::json!({"code": code, "message": message}).to_string();
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

pub(super) fn unknown_transport() -> Response {
    refuse(StatusCode::BAD_REQUEST, 0, "Transport unknown")
}

pub(super) fn unknown_session() -> Response {
    refuse(StatusCode::BAD_REQUEST, 1, "Session ID unknown")
}

pub(super) fn bad_request() -> Response {
    refuse(StatusCode::BAD_REQUEST, 3, "Bad request")
}

/// The Engine.IO open packet: the session id, the upgrade on offer and
/// the heartbeat and payload bounds the client must keep to.
pub(super) fn open_packet(limits: &Limits, sid: &str, upgrades: bool) -> String {
    let open = serde_json::json!({
        "sid": sid,
        "upgrades": if upgrades { vec!["websocket"] } else { vec![] },
        "pingInterval": limits.ping_interval.as_millis() as u64,
        "pingTimeout": limits.ping_timeout.as_millis() as u64,
        "maxPayload": limits.max_frame_bytes,
    });
    format!("0{open}")
}

/// A random id as Engine.IO makes them: 20 URL-safe characters.
pub(super) fn random_id() -> String {
    std::iter::repeat_with(fastrand::alphanumeric)
        .take(20)
        .collect()
}
