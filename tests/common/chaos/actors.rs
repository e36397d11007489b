//! The lane's clients: native members that post with idempotency keys,
//! retry every post until it is acknowledged and reconnect at random
//! (resuming with `since`), and backends that publish through the server
//! API and retry the same way.

use crate::common::{Key, api_post};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

/// A post and the id it was acknowledged with (every try answered it).
#[derive(Debug, Clone)]
pub struct Acked {
    pub room: String,
    pub key: String,
    pub id: u64,
    pub tries: u32,
}

/// What one native member saw and posted.
#[derive(Debug, Default)]
pub struct MemberLog {
    pub room: String,
    /// Messages in the order received: id and text.
    pub seen: Vec<(u64, String)>,
    /// For each message received, the connection (1, 2, ...) and the
    /// replica that carried it: where a broken promise happened.
    pub carried_by: Vec<(usize, String)>,
    /// Where its first join put it: it is owed every message after this.
    pub position: u64,
    /// Joins answered `recovered: false`: the id it asked to resume
    /// after, and the first id it received after that join (`u64::MAX`
    /// while none came): what lies between may be missing.
    pub gaps: Vec<(u64, u64)>,
    pub connects: usize,
    pub posts: Vec<Acked>,
    /// Answers that are not in the contract (a refusal other than
    /// `unavailable`, an ack with two ids for one key).
    pub wrong: Vec<String>,
}

/// A native member's task and how far it got, readable while it runs.
pub struct Member {
    pub task: JoinHandle<MemberLog>,
    /// The newest message id it received.
    pub newest: Arc<AtomicU64>,
    /// True while a post of its awaits its ack.
    pub posting: Arc<AtomicBool>,
}

/// A native member of `room` through the balancer at `url`, posting a
/// keyed message every 0.3-1 s and reconnecting every 2-10 s. At `quiet`
/// it posts nothing new (finishing its last post, retried until
/// acknowledged) and stays connected; at `stop` it returns. Its choices
/// come from `seed`.
pub fn native_member(
    url: &str,
    room: &str,
    name: &str,
    seed: u64,
    quiet: CancellationToken,
    stop: CancellationToken,
) -> Member {
    let (url, room, name) = (url.to_owned(), room.to_owned(), name.to_owned());
    let newest = Arc::new(AtomicU64::new(0));
    let posting = Arc::new(AtomicBool::new(false));
    let (newest_seen, posting_now) = (newest.clone(), posting.clone());
    let task = tokio::spawn(async move {
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut log = MemberLog {
            room: room.clone(),
            ..Default::default()
        };
        let mut since: Option<u64> = None;
        let mut open_gap = false;
        let mut seq = 0u32;
        // The post awaiting its ack: key, tries.
        let mut pending: Option<(String, u32)> = None;
        loop {
            if stop.is_cancelled() {
                return log;
            }
            let Some(mut ws) = connect(&url).await else {
                continue;
            };
            log.connects += 1;
            let mut server = String::new();
            let mut join = json!({"type": "join_room", "room": room});
            if let Some(since) = since {
                join["since"] = json!(since.to_string());
            }
            if ws.send(Message::text(join.to_string())).await.is_err() {
                continue;
            }
            let lifetime = Instant::now() + Duration::from_millis(rng.u64(2_000..10_000));
            let mut next_post = Instant::now() + Duration::from_millis(rng.u64(300..1_000));
            let mut sent_at: Option<Instant> = None;
            let mut joined = false;
            loop {
                posting_now.store(pending.is_some(), Ordering::Relaxed);
                // Once quiet, no more random reconnects and no new posts.
                let far = Instant::now() + Duration::from_secs(3600);
                let lifetime = if quiet.is_cancelled() { far } else { lifetime };
                let resend = sent_at.map(|at| at + Duration::from_secs(3));
                let wake = match (&pending, joined) {
                    (_, false) => lifetime,
                    (Some(_), true) => resend.unwrap_or_else(Instant::now).min(lifetime),
                    (None, true) if quiet.is_cancelled() => far,
                    (None, true) => next_post.min(lifetime),
                };
                let frame = tokio::select! {
                    frame = ws.next() => frame,
                    _ = stop.cancelled() => return log,
                    _ = quiet.cancelled(), if !quiet.is_cancelled() => continue,
                    _ = tokio::time::sleep_until(wake) => {
                        if Instant::now() >= lifetime {
                            let _ = ws.close(None).await;
                            break;
                        }
                        if pending.is_none() {
                            seq += 1;
                            pending = Some((format!("{name}-{seq}"), 0));
                        }
                        let (key, tries) = pending.as_mut().unwrap();
                        *tries += 1;
                        let post = json!({"type": "message", "room": room, "message": key,
                            "ack": key, "idempotency_key": key});
                        if ws.send(Message::text(post.to_string())).await.is_err() {
                            break;
                        }
                        sent_at = Some(Instant::now());
                        continue;
                    }
                };
                let Some(Ok(Message::Text(text))) = frame else {
                    match frame {
                        Some(Ok(_)) => continue,
                        _ => break,
                    }
                };
                let frame: Value = serde_json::from_str(&text).unwrap();
                match frame["type"].as_str() {
                    Some("welcome") => {
                        server = frame["server"].as_str().unwrap_or_default().to_owned();
                    }
                    Some("joined") => {
                        joined = true;
                        match since {
                            None => {
                                log.position = parse_id(&frame["last_id"]).unwrap_or(0);
                                since = Some(log.position);
                            }
                            Some(asked) if frame["recovered"] == json!(false) => {
                                log.gaps.push((asked, u64::MAX));
                                open_gap = true;
                            }
                            Some(_) => {}
                        }
                    }
                    Some("message") => {
                        let id = parse_id(&frame["id"]).unwrap();
                        let text = frame["message"].as_str().unwrap_or_default().to_owned();
                        log.seen.push((id, text));
                        log.carried_by.push((log.connects, server.clone()));
                        since = Some(id);
                        newest_seen.store(id, Ordering::Relaxed);
                        if open_gap {
                            log.gaps.last_mut().unwrap().1 = id;
                            open_gap = false;
                        }
                    }
                    Some("ack") => {
                        let Some((key, tries)) = pending.clone() else {
                            continue;
                        };
                        if frame["ack"] != key.as_str() {
                            continue;
                        }
                        let id = parse_id(&frame["id"]).unwrap();
                        log.posts.push(Acked {
                            room: room.clone(),
                            key,
                            id,
                            tries,
                        });
                        pending = None;
                        sent_at = None;
                        next_post = Instant::now() + Duration::from_millis(rng.u64(300..1_000));
                    }
                    Some("error") => {
                        if frame["code"] != "unavailable" {
                            log.wrong.push(frame.to_string());
                        }
                        // A join refused: again, on a new connection.
                        if !joined {
                            tokio::time::sleep(Duration::from_millis(200)).await;
                            break;
                        }
                        // Retried a little later, with the same key.
                        if pending.is_some() && frame["ack"].is_string() {
                            sent_at = Some(Instant::now() - Duration::from_millis(2_800));
                        }
                    }
                    _ => {}
                }
            }
        }
    });
    Member {
        task,
        newest,
        posting,
    }
}

/// A backend publishing to the rooms through the server API at `base`
/// every 0.2-0.8 s, each publish with its own key and retried (after an
/// error or no answer) until acknowledged, until `stop`.
pub fn backend(
    base: &str,
    api_key: &str,
    rooms: &[String],
    name: &str,
    seed: u64,
    stop: CancellationToken,
) -> JoinHandle<Vec<Acked>> {
    let (base, api_key, rooms, name) = (
        base.to_owned(),
        api_key.to_owned(),
        rooms.to_vec(),
        name.to_owned(),
    );
    tokio::spawn(async move {
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut posts = Vec::new();
        let mut seq = 0;
        while !stop.is_cancelled() {
            seq += 1;
            let room = rooms[rng.usize(..rooms.len())].clone();
            let key = format!("{name}-{seq}");
            let body = json!({"room": room, "message": key, "name": name,
                "idempotency_key": key})
            .to_string();
            let mut tries = 0;
            let id = loop {
                tries += 1;
                let url = format!("{base}/api/publish");
                let call = api_post(&url, Key::Header(&api_key), &body);
                match tokio::time::timeout(Duration::from_secs(5), call).await {
                    Ok((200, answer)) => break parse_id(&answer["id"]).unwrap(),
                    Ok((status, answer)) => assert!(
                        status == 503 || status == 502 || status == 504 || status == 0,
                        "a publish was refused for something other than an outage: \
                         {status} {answer}"
                    ),
                    Err(_) => {}
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            };
            posts.push(Acked {
                room,
                key,
                id,
                tries,
            });
            tokio::time::sleep(Duration::from_millis(rng.u64(200..800))).await;
        }
        posts
    })
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// One try, bounded: a refused upgrade or a replica that does not answer
/// is tried again by the caller after a pause.
async fn connect(url: &str) -> Option<Ws> {
    let attempt = tokio::time::timeout(
        Duration::from_secs(5),
        tokio_tungstenite::connect_async(url),
    );
    match attempt.await {
        Ok(Ok((ws, _))) => Some(ws),
        _ => {
            tokio::time::sleep(Duration::from_millis(200)).await;
            None
        }
    }
}

fn parse_id(value: &Value) -> Option<u64> {
    value.as_str()?.parse().ok()
}
