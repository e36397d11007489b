//! A webhook receiver as an application would run one: a real HTTP server
//! on a free loopback port that verifies each event's signature with its
//! own copy of the secret and records what it got.

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

/// One request as the receiver saw it.
#[derive(Debug, Clone)]
pub struct Request {
    /// `X-Rtchat-Event-Id`.
    pub id: String,
    pub event: Value,
    /// Whether the signature verified with the receiver's secret.
    pub verified: bool,
    /// What the receiver answered.
    pub status: u16,
}

#[derive(Default)]
struct Shared {
    requests: Vec<Request>,
    /// Answers for the next requests, before 200 again.
    plan: VecDeque<u16>,
}

pub struct Receiver {
    pub addr: SocketAddr,
    secret: Vec<u8>,
    shared: Arc<Mutex<Shared>>,
    server: tokio::task::JoinHandle<()>,
}

/// Whether `signature` (`sha256=<hex>`) is the HMAC-SHA256 of `body`.
pub fn verify(secret: &[u8], body: &[u8], signature: &str) -> bool {
    let Some(hex) = signature.strip_prefix("sha256=") else {
        return false;
    };
    let Some(expected) = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()
    else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
    mac.update(body);
    mac.verify_slice(&expected).is_ok()
}

/// Serves the receiver on `port` (0: a free one).
async fn serve(
    port: u16,
    secret: Vec<u8>,
    shared: Arc<Mutex<Shared>>,
) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let (shared, secret) = (shared.clone(), secret.clone());
            async move { receive(&shared, &secret, &headers, &body) }
        }),
    );
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (addr, server)
}

impl Receiver {
    /// Listens on a free port.
    pub async fn start(secret: &str) -> Self {
        let secret = secret.as_bytes().to_vec();
        let shared = Arc::<Mutex<Shared>>::default();
        let (addr, server) = serve(0, secret.clone(), shared.clone()).await;
        Self {
            addr,
            secret,
            shared,
            server,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    /// ws-server and grpc-server flags sending every event type here.
    pub fn flags(&self, secret: &str) -> Vec<String> {
        ["--webhook-url", &self.url(), "--webhook-secret", secret]
            .into_iter()
            .chain(["--webhook-events", "all"])
            .map(str::to_owned)
            .collect()
    }

    /// The next requests are answered with these statuses, then 200 again.
    pub fn answer_next(&self, statuses: &[u16]) {
        self.shared.lock().unwrap().plan.extend(statuses);
    }

    /// Stops listening (connections are refused) until [`Receiver::restart`].
    pub fn stop(&self) {
        self.server.abort();
    }

    /// Listens again on the same port, keeping what was received.
    pub async fn restart(&mut self) {
        self.server.abort();
        let addr = self.addr;
        super::wait_for("the port to be free", super::DEADLINE, async || {
            std::net::TcpListener::bind(addr).ok().map(drop)
        })
        .await;
        let (_, server) = serve(addr.port(), self.secret.clone(), self.shared.clone()).await;
        self.server = server;
    }

    pub fn requests(&self) -> Vec<Request> {
        self.shared.lock().unwrap().requests.clone()
    }

    /// Events acknowledged (answered 2xx), in the order they arrived.
    pub fn acknowledged(&self) -> Vec<Value> {
        self.requests()
            .into_iter()
            .filter(|r| r.status == 200)
            .map(|r| r.event)
            .collect()
    }

    /// Waits until `check` finds what it wants among the acknowledged
    /// events.
    pub async fn wait_until<T>(
        &self,
        what: &str,
        within: std::time::Duration,
        check: impl Fn(&[Value]) -> Option<T>,
    ) -> T {
        super::wait_for(what, within, async || check(&self.acknowledged())).await
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn receive(shared: &Mutex<Shared>, secret: &[u8], headers: &HeaderMap, body: &[u8]) -> StatusCode {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let verified = verify(secret, body, &header("x-rtchat-signature"));
    let event: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let mut shared = shared.lock().unwrap();
    let status = if !verified {
        401
    } else {
        shared.plan.pop_front().unwrap_or(200)
    };
    shared.requests.push(Request {
        id: header("x-rtchat-event-id"),
        event,
        verified,
        status,
    });
    StatusCode::from_u16(status).unwrap()
}

/// The events of `kind` among `events`.
pub fn of_type<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["type"] == kind).collect()
}

/// The acknowledged events about `room`, as (type, user, reason) lines.
pub fn room_story(events: &[Value], room: &str) -> Vec<String> {
    events
        .iter()
        .filter(|e| e["data"]["room"] == room)
        .map(|e| {
            let data = &e["data"];
            match e["type"].as_str().unwrap() {
                "message" => format!("message {}", data["message"].as_str().unwrap()),
                kind => format!(
                    "{kind} {}{}",
                    data["name"].as_str().unwrap_or_default(),
                    data["reason"]
                        .as_str()
                        .map(|r| format!(" ({r})"))
                        .unwrap_or_default()
                ),
            }
        })
        .collect()
}
