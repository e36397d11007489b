//! The original chat server's two events (`join_room`, `message`) on
//! socketioxide with its Redis adapter, written the way a socketioxide user
//! would: the peer rtchat's fan-out and footprint are compared with.
//! Environment: `PORT` (3000), `REDIS_URL`
//! (redis://127.0.0.1:6379?protocol=resp3: the adapter needs RESP3),
//! `SERVER_ID` (unknown).

use serde::{Deserialize, Serialize};
use socketioxide::SocketIo;
use socketioxide::adapter::Adapter;
use socketioxide::extract::{Data, SocketRef};
use socketioxide_redis::drivers::redis::redis_client as redis;
use socketioxide_redis::{RedisAdapter, RedisAdapterCtr};
use std::sync::OnceLock;
use std::time::SystemTime;

static SERVER_ID: OnceLock<String> = OnceLock::new();

#[derive(Deserialize)]
struct Post {
    room: String,
    message: serde_json::Value,
}

#[derive(Serialize)]
struct Delivery<'a> {
    user: &'a str,
    message: serde_json::Value,
    server: &'a str,
    timestamp: String,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let env = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.into());
    SERVER_ID.set(env("SERVER_ID", "unknown")).ok();
    let client = redis::Client::open(env("REDIS_URL", "redis://127.0.0.1:6379?protocol=resp3"))?;
    let adapter = RedisAdapterCtr::new_with_redis(&client).await?;
    let (layer, io) = SocketIo::builder()
        .with_adapter::<RedisAdapter<_>>(adapter)
        .build_layer();
    io.ns("/", on_connect).await?;
    let app = axum::Router::new().layer(layer);
    let port: u16 = env("PORT", "3000").parse()?;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    axum::serve(listener, app).await?;
    Ok(())
}

async fn on_connect<A: Adapter>(socket: SocketRef<A>) {
    socket.on(
        "join_room",
        async |s: SocketRef<A>, Data::<String>(room)| {
            s.join(room);
        },
    );
    socket.on("message", async |s: SocketRef<A>, Data::<Post>(post)| {
        let delivery = Delivery {
            user: s.id.as_str(),
            message: post.message,
            server: SERVER_ID.get().map_or("unknown", String::as_str),
            timestamp: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
        };
        // `within`, like the original's `io.to(room)`: the sender too.
        s.within(post.room).emit("message", &delivery).await.ok();
    });
}
