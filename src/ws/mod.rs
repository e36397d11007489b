//! The native door: `GET /ws` upgrades to the chat protocol's JSON frames,
//! which it turns into hub calls and back. It owns sockets and frames,
//! never the rules of a room (the hub's) nor the server it is mounted in
//! (`crate::chat_server`).
//!
//! - [`connection`]: one socket's loop and write path.
//! - [`cmd`]: what each client frame does, as hub calls.
//! - [`protocol`]: the frames and their validation.

pub(crate) mod cmd;
pub(crate) mod connection;
pub mod protocol;

use crate::door::DoorState;
use crate::door::admission::admit;
use crate::hub::DisplayName;
use axum::extract::{ConnectInfo, Query, State, WebSocketUpgrade};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::net::SocketAddr;

/// Query parameters of `/ws`.
#[derive(serde::Deserialize)]
pub(crate) struct Connect {
    /// Display name shown beside the connection id (anonymous clients).
    name: Option<String>,
    /// A JWT, for clients that cannot set `Authorization` (browsers).
    token: Option<String>,
}

/// The bearer token of a request: `Authorization: Bearer ...`, else the
/// given query parameter.
fn bearer<'a>(headers: &'a axum::http::HeaderMap, query: Option<&'a str>) -> Option<&'a str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .or(query)
}

/// `GET /ws`.
pub(crate) async fn upgrade(
    ws: WebSocketUpgrade,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    State(state): State<DoorState>,
    Query(connect): Query<Connect>,
    headers: axum::http::HeaderMap,
) -> Response {
    // Admitted first: the per-address bounds are cheap, a signature is not.
    let admission = match admit(&state, peer, &headers) {
        Ok(admission) => admission,
        Err(refused) => return refused.into_response(),
    };
    let identity = match state
        .verifier
        .verify(bearer(&headers, connect.token.as_deref()))
    {
        Ok(identity) => identity,
        Err(why) => return (StatusCode::UNAUTHORIZED, why.to_string()).into_response(),
    };
    // With a token the name is the token's: never the client's choice.
    let asked = match &identity {
        Some(identity) => identity.name.as_deref(),
        None => connect.name.as_deref(),
    };
    let name = match asked.map(DisplayName::parse) {
        None => None,
        Some(Ok(name)) => Some(name),
        Some(Err(why)) => return (StatusCode::BAD_REQUEST, why.0).into_response(),
    };
    let token = state.connections.token();
    crate::door::socket::configure(ws, &state.limits).on_upgrade(move |socket| {
        // A task of its own rather than axum's upgrade task, which
        // would keep the upgrade's state beside ours for the
        // connection's whole life.
        let connections = state.connections.clone();
        connections.spawn(connection::run(
            socket, state, peer, name, identity, admission,
        ));
        drop(token);
        std::future::ready(())
    })
}
