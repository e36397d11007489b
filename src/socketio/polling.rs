//! HTTP long-polling: a session's packets wait in its outbox until a GET
//! takes them all; a POST hands the client's packets to the session's task.
//! The official clients start here and upgrade to WebSocket.
//!
//! Polling needs every request of a session to reach the replica that
//! holds it (the session lives in this registry); WebSocket does not.

use super::connection;
use super::packet::SEPARATOR;
use super::transport::Link;
use super::{bad_request, random_id, unknown_session};
use crate::ws::AppState;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Packets a POST may carry, beyond which it is refused.
const MAX_PACKETS_PER_POST: usize = 256;

/// Open polling sessions of this replica, by Engine.IO id.
#[derive(Default)]
pub struct Registry {
    /// A std mutex: lookups and inserts only, never held across an await.
    sessions: Mutex<HashMap<String, Arc<Polling>>>,
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Polling>>> {
        self.sessions
            .lock()
            .expect("polling registry lock poisoned")
    }

    pub fn get(&self, sid: &str) -> Option<Arc<Polling>> {
        self.lock().get(sid).cloned()
    }

    pub fn remove(&self, sid: &str) {
        self.lock().remove(sid);
    }
}

/// One polling session's side of the transport, shared by its task and
/// the requests that carry its packets.
pub struct Polling {
    /// The session's Engine.IO id.
    pub sid: String,
    /// Server packets not yet taken by a GET. A std mutex, never awaited.
    outbox: Mutex<VecDeque<String>>,
    ready: Notify,
    /// The client's packets, for the session's task.
    inbound: flume::Sender<String>,
    /// A WebSocket probing or completing the upgrade, for the task.
    pub upgrade: flume::Sender<super::websocket::Upgrade>,
    /// Set while a GET waits: a second one at once is a protocol error.
    polling: std::sync::atomic::AtomicBool,
    /// Cancelled when the session ends or moved to WebSocket; a waiting GET
    /// then answers at once.
    pub closed: CancellationToken,
}

impl Polling {
    /// Queues one packet for the next GET; false when the client has let
    /// more than `max` pile up (it stopped polling).
    pub fn push(&self, packet: String, max: usize) -> bool {
        let mut outbox = self.outbox.lock().expect("outbox lock poisoned");
        if outbox.len() >= max {
            return false;
        }
        outbox.push_back(packet);
        drop(outbox);
        self.ready.notify_one();
        true
    }

    /// Everything queued, oldest first.
    pub fn take(&self) -> Vec<String> {
        self.outbox
            .lock()
            .expect("outbox lock poisoned")
            .drain(..)
            .collect()
    }
}

/// The handshake: a new session, its task, and the open packet.
pub async fn handshake(
    state: AppState,
    peer: SocketAddr,
    headers: &axum::http::HeaderMap,
) -> Response {
    let admission = match crate::ws::admit(&state, peer, headers) {
        Ok(admission) => admission,
        Err(refused) => return axum::response::IntoResponse::into_response(refused),
    };
    let sid = random_id();
    let (inbound, inbound_rx) = flume::bounded(MAX_PACKETS_PER_POST);
    let (upgrade, upgrade_rx) = flume::bounded(1);
    let polling = Arc::new(Polling {
        sid: sid.clone(),
        outbox: Mutex::new(VecDeque::new()),
        ready: Notify::new(),
        inbound,
        upgrade,
        polling: Default::default(),
        closed: CancellationToken::new(),
    });
    state
        .sio
        .polling
        .lock()
        .insert(sid.clone(), polling.clone());
    if let Some(relay) = &state.sio.relay {
        relay.claim(&sid).await;
    }
    let open = super::open_packet(&state, &sid, true);
    let link = Link::Polling {
        polling,
        inbound: inbound_rx,
        upgrade: upgrade_rx,
    };
    let connections = state.connections.clone();
    connections.spawn(connection::run(state, peer, sid, link, admission));
    text(open)
}

/// A GET: waits for packets (the task pings every interval, so it never
/// waits longer), then hands over all of them.
pub async fn poll(state: AppState, sid: &str, request: axum::extract::Request) -> Response {
    let Some(polling) = state.sio.polling.get(sid) else {
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
pub async fn receive(state: AppState, sid: &str, request: axum::extract::Request) -> Response {
    let Some(polling) = state.sio.polling.get(sid) else {
        return elsewhere(&state, sid, request).await;
    };
    let body = request.into_body();
    let limit = state.limits.max_frame_bytes;
    let read = axum::body::to_bytes(body, limit);
    let bytes = match tokio::time::timeout(state.gate.handshake_timeout(), read).await {
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
async fn elsewhere(state: &AppState, sid: &str, request: axum::extract::Request) -> Response {
    match &state.sio.relay {
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
