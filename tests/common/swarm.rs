//! Crowds for the deploy tests: hundreds of native members that reconnect
//! through the balancer and resume with `since`, official socket.io-client
//! members in one Node process (tests/js/swarm.cjs) that recover, and
//! publishers that post with acks throughout. Each keeps its history for
//! the checks at the end.

mod sio;

pub use sio::SioSwarm;

use super::DEADLINE;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// What one member saw.
#[derive(Debug, Default)]
pub struct History {
    /// Message ids in the order received.
    pub ids: Vec<u64>,
    /// Joins (after a reconnect) answered `recovered: false`.
    pub recovered_false: usize,
    /// When the server closed it (Unix ms), and the close codes.
    pub closes: Vec<u64>,
    pub codes: Vec<u16>,
    /// Socket.IO's reason for each close.
    pub reasons: Vec<String>,
    /// From each close to the member being back in its room, in ms.
    pub reconnect_ms: Vec<u64>,
}

/// Native members of one room, each on its own task.
pub struct NativeSwarm {
    tasks: Vec<JoinHandle<History>>,
    /// Each member's newest id, for waiting without stopping them.
    last: Vec<Arc<AtomicU64>>,
    stop: CancellationToken,
}

impl NativeSwarm {
    /// `count` members of `room` through `url`, all joined on return.
    pub async fn start(url: &str, room: &str, count: usize) -> Self {
        let stop = CancellationToken::new();
        let mut tasks = Vec::new();
        let mut last = Vec::new();
        let (joined_tx, mut joined) = tokio::sync::mpsc::channel(count);
        for _ in 0..count {
            let newest = Arc::new(AtomicU64::new(0));
            last.push(newest.clone());
            tasks.push(tokio::spawn(member(
                url.to_owned(),
                room.to_owned(),
                newest,
                stop.clone(),
                joined_tx.clone(),
            )));
        }
        for _ in 0..count {
            tokio::time::timeout(DEADLINE * 3, joined.recv())
                .await
                .expect("every native member joined in time");
        }
        Self { tasks, last, stop }
    }

    /// Whether every member has seen `id`.
    pub fn all_reached(&self, id: u64) -> bool {
        self.last.iter().all(|l| l.load(Ordering::Relaxed) >= id)
    }

    pub async fn finish(self) -> Vec<History> {
        self.stop.cancel();
        let mut all = Vec::new();
        for task in self.tasks {
            all.push(task.await.unwrap());
        }
        all
    }
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(url: &str) -> Ws {
    let mut delay = Duration::from_millis(20);
    loop {
        if let Ok(Ok((ws, _))) =
            tokio::time::timeout(DEADLINE, tokio_tungstenite::connect_async(url)).await
        {
            return ws;
        }
        // Refused (a replica draining answers 503, nginx may pass it on
        // when every replica it tried refused): again, a little later.
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_millis(500));
    }
}

async fn member(
    url: String,
    room: String,
    newest: Arc<AtomicU64>,
    stop: CancellationToken,
    joined: tokio::sync::mpsc::Sender<()>,
) -> History {
    let mut history = History::default();
    let mut since: Option<u64> = None;
    let mut closed_at: Option<u64> = None;
    loop {
        let mut ws = connect(&url).await;
        let mut join = json!({"type": "join_room", "room": room});
        if let Some(since) = since {
            join["since"] = json!(since.to_string());
        }
        if ws.send(Message::text(join.to_string())).await.is_err() {
            continue;
        }
        loop {
            let frame = tokio::select! {
                frame = ws.next() => frame,
                _ = stop.cancelled() => return history,
            };
            match frame {
                Some(Ok(Message::Text(text))) => {
                    let frame: Value = serde_json::from_str(&text).unwrap();
                    match frame["type"].as_str() {
                        Some("joined") => {
                            if frame["recovered"] == json!(false) {
                                history.recovered_false += 1;
                            }
                            if let Some(at) = closed_at.take() {
                                history.reconnect_ms.push(unix_ms().saturating_sub(at));
                            }
                            if since.is_none() {
                                since = frame["last_id"].as_str().and_then(|s| s.parse().ok());
                                let _ = joined.send(()).await;
                            }
                        }
                        Some("message") => {
                            let id: u64 = frame["id"].as_str().unwrap().parse().unwrap();
                            history.ids.push(id);
                            since = Some(id);
                            newest.store(id, Ordering::Relaxed);
                        }
                        _ => {}
                    }
                }
                Some(Ok(Message::Close(close))) => {
                    closed_at = Some(unix_ms());
                    history.closes.push(unix_ms());
                    history.codes.push(close.map_or(1005, |c| c.code.into()));
                    break;
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => {
                    closed_at = Some(unix_ms());
                    history.closes.push(unix_ms());
                    history.codes.push(1006);
                    break;
                }
            }
        }
    }
}

/// What a publisher sent.
#[derive(Debug, Default)]
pub struct Posts {
    /// Ids acknowledged, in order.
    pub acked: Vec<u64>,
    /// Texts sent whose socket closed before their answer.
    pub unanswered: Vec<String>,
}

/// Posts to `room` through `url` with acks, `rate` a second, until stopped;
/// reconnects when its socket is closed under it.
pub fn publisher(
    url: &str,
    room: &str,
    name: &str,
    rate: u32,
    stop: CancellationToken,
) -> JoinHandle<Posts> {
    let (url, room, name) = (url.to_owned(), room.to_owned(), name.to_owned());
    tokio::spawn(async move {
        let mut posts = Posts::default();
        let mut ticks = tokio::time::interval(Duration::from_secs(1) / rate);
        let mut seq = 0u64;
        'connect: while !stop.is_cancelled() {
            let mut ws = connect(&url).await;
            loop {
                tokio::select! {
                    _ = ticks.tick() => {}
                    _ = stop.cancelled() => break 'connect,
                }
                seq += 1;
                let text = format!("{name}-{seq}");
                let frame = json!({"type": "message", "room": room, "message": text, "ack": seq});
                if ws.send(Message::text(frame.to_string())).await.is_err() {
                    posts.unanswered.push(text);
                    continue 'connect;
                }
                loop {
                    match ws.next().await {
                        Some(Ok(Message::Text(reply))) => {
                            let reply: Value = serde_json::from_str(&reply).unwrap();
                            if reply["type"] == "ack" && reply["ack"] == json!(seq) {
                                posts
                                    .acked
                                    .push(reply["id"].as_str().unwrap().parse().unwrap());
                                break;
                            }
                            assert_ne!(reply["type"], "error", "a post was refused: {reply}");
                        }
                        Some(Ok(Message::Close(_))) | Some(Err(_)) | None => {
                            posts.unanswered.push(text);
                            continue 'connect;
                        }
                        Some(Ok(_)) => {}
                    }
                }
            }
        }
        posts
    })
}
