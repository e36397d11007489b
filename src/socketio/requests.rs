//! The HTTP requests of a long-polling session: the handshake that starts
//! its task, a GET that takes what waits for the client, a POST that hands
//! the client's packets over, and any of them for a session another
//! replica holds.

use super::answers::{bad_request, open_packet, random_id, unknown_session};
use super::connection;
use super::packet::SEPARATOR;
use super::polling::Polling;
use super::state::SioState;
use super::transport::Link;
use crate::door::admission::admit;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::net::SocketAddr;

/// The handshake: a new session, its task, and the open packet.
pub(super) async fn handshake(
    state: SioState,
    peer: SocketAddr,
    headers: &axum::http::HeaderMap,
) -> Response {
    let admission = match admit(&state.door, peer, headers) {
        Ok(admission) => admission,
        Err(refused) => return refused.into_response(),
    };
    let sid = random_id();
    let (polling, inbound, upgrade) = Polling::open(sid.clone());
    state.polling.insert(polling.clone());
    if let Some(relay) = &state.relay {
        relay.claim(&sid).await;
    }
    let open = open_packet(&state.door.limits, &sid, true);
    let link = Link::Polling {
        polling,
        inbound,
        upgrade,
    };
    let connections = state.door.connections.clone();
    connections.spawn(connection::run(state, peer, sid, link, admission));
    text(open)
}

/// A GET: waits for packets (the task pings every interval, so it never
/// waits longer), then hands over all of them.
pub(super) async fn poll(state: SioState, sid: &str, request: axum::extract::Request) -> Response {
    let Some(polling) = state.polling.get(sid) else {
        return elsewhere(&state, sid, request).await;
    };
    use std::sync::atomic::Ordering;
    if polling.polling.swap(true, Ordering::SeqCst) {
        // Two GETs at once: the session is broken (Engine.IO closes it).
        polling.closed.cancel();
        return bad_request();
    }
    let packets = loop {
        let waiting = polling.ready.notified();
        let packets = polling.take();
        if !packets.is_empty() {
            break packets;
        }
        tokio::select! {
            _ = waiting => {}
            _ = polling.closed.cancelled() => break polling.take(),
        }
    };
    polling.polling.store(false, Ordering::SeqCst);
    if packets.is_empty() {
        // Closed: moved to WebSocket (a noop ends this poll) or ended.
        return text(super::packet::engine::NOOP.to_owned());
    }
    let mut body = String::with_capacity(packets.iter().map(|p| p.len() + 1).sum());
    for (i, packet) in packets.iter().enumerate() {
        if i > 0 {
            body.push(SEPARATOR);
        }
        body.push_str(packet);
    }
    text(body)
}

/// A POST: the client's packets, at most `maxPayload` bytes in all, within
/// the handshake timeout (a body trickled in byte by byte is cut off).
pub(super) async fn receive(
    state: SioState,
    sid: &str,
    request: axum::extract::Request,
) -> Response {
    let Some(polling) = state.polling.get(sid) else {
        return elsewhere(&state, sid, request).await;
    };
    let body = request.into_body();
    let limit = state.door.limits.max_frame_bytes;
    let read = axum::body::to_bytes(body, limit);
    let bytes = match tokio::time::timeout(state.door.gate.handshake_timeout(), read).await {
        Ok(Ok(bytes)) => bytes,
        Err(_) => {
            polling.closed.cancel();
            return (StatusCode::REQUEST_TIMEOUT, "request body too slow").into_response();
        }
        Ok(Err(_)) => {
            // Over maxPayload (or a broken body): Engine.IO closes the
            // session, as it does for a WebSocket frame over the limit.
            polling.closed.cancel();
            return (StatusCode::PAYLOAD_TOO_LARGE, "payload over maxPayload").into_response();
        }
    };
    let Ok(body) = std::str::from_utf8(&bytes) else {
        return bad_request();
    };
    for packet in body.split(SEPARATOR) {
        if polling.inbound.try_send(packet.to_owned()).is_err() {
            return (StatusCode::TOO_MANY_REQUESTS, "too many packets").into_response();
        }
    }
    ([(header::CONTENT_TYPE, "text/html")], "ok").into_response()
}

/// A request for a session another replica holds: forwarded there, or
/// "Session ID unknown" when no replica holds it.
async fn elsewhere(state: &SioState, sid: &str, request: axum::extract::Request) -> Response {
    match &state.relay {
        Some(relay) => match relay.forward(sid, request).await {
            Some(response) => response,
            None => unknown_session(),
        },
        None => unknown_session(),
    }
}

fn text(body: String) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/plain; charset=UTF-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}
