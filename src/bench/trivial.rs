//! A trivial broadcast server, the yardstick for `bench ws`: it speaks just
//! enough of the chat protocol for the load generator (welcome, joined) and
//! forwards every message frame it receives, as is, to every connection
//! that joined anything. No Redis, no rooms, no ids, no history, no limits:
//! what is left is the cost of WebSockets on this machine.

use axum::extract::ws::{Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::{Router, routing::get};
use clap::Args;
use futures_util::{SinkExt, StreamExt};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

#[derive(Debug, Clone, Args)]
pub struct TrivialArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:3900")]
    pub listen: std::net::SocketAddr,
}

/// Frames queued per connection; a connection that falls further behind
/// misses frames (this yardstick does not protect anyone).
const QUEUE: usize = 4096;

#[derive(Default)]
struct Members {
    next: AtomicU64,
    /// A std mutex, never held across an await.
    queues: Mutex<HashMap<u64, mpsc::Sender<Utf8Bytes>>>,
}

pub async fn run(args: TrivialArgs) -> anyhow::Result<()> {
    let members = Arc::new(Members::default());
    let app = Router::new().route(
        "/ws",
        get(move |ws: WebSocketUpgrade| {
            let members = members.clone();
            async move {
                ws.read_buffer_size(1024)
                    .write_buffer_size(1024)
                    .on_upgrade(move |socket| connection(socket, members))
            }
        }),
    );
    let listener = crate::process::listen(args.listen).await?;
    tracing::info!(addr = %listener.local_addr()?, "trivial broadcast server listening");
    axum::serve(crate::process::without_nagle(listener), app)
        .with_graceful_shutdown(crate::shutdown::on_signal().cancelled_owned())
        .await?;
    Ok(())
}

async fn connection(socket: WebSocket, members: Arc<Members>) {
    let id = members.next.fetch_add(1, Ordering::Relaxed);
    let (mut sink, mut stream) = socket.split();
    let (tx, mut rx) = mpsc::channel::<Utf8Bytes>(QUEUE);
    if sink
        .send(Message::text(
            r#"{"type":"welcome","user":"u","server":"trivial"}"#,
        ))
        .await
        .is_err()
    {
        return;
    }
    loop {
        tokio::select! {
            Some(frame) = rx.recv() => {
                if sink.feed(Message::Text(frame)).await.is_err() {
                    break;
                }
                while let Ok(frame) = rx.try_recv() {
                    if sink.feed(Message::Text(frame)).await.is_err() {
                        break;
                    }
                }
                if sink.flush().await.is_err() {
                    break;
                }
            }
            frame = stream.next() => {
                let Some(Ok(Message::Text(text))) = frame else {
                    if matches!(frame, Some(Ok(_))) {
                        continue;
                    }
                    break;
                };
                if text.contains(r#""type":"join_room""#) {
                    members.queues.lock().expect("lock").insert(id, tx.clone());
                    let _ = sink.send(Message::text(r#"{"type":"joined","room":"bench"}"#)).await;
                } else {
                    let queues = members.queues.lock().expect("lock");
                    for queue in queues.values() {
                        let _ = queue.try_send(text.clone());
                    }
                }
            }
        }
    }
    members.queues.lock().expect("lock").remove(&id);
}
