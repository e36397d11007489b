//! Opening the generator's connections: members joined to the room (from
//! several source addresses when asked) and publishers.

use super::wire::{Protocol, expect_frame};
use super::{Socket, WsBenchArgs};
use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpSocket;
use tokio::sync::Semaphore;
use tokio_tungstenite::client_async_with_config;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// Small socket buffers, as on the server: tungstenite zeroes a whole read
/// buffer chunk (128 KiB by default) on every read, which would make the
/// load generator spend most of its time in memset.
fn client_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(4096)
}

/// Opens one WebSocket, from `source` when given, and reads the greeting.
pub(super) async fn connect(
    url: &str,
    source: Option<IpAddr>,
    protocol: Protocol,
) -> anyhow::Result<Socket> {
    let uri: tokio_tungstenite::tungstenite::http::Uri = url.parse().context("invalid --url")?;
    let host = uri.host().context("--url has no host")?;
    let port = uri.port_u16().unwrap_or(80);
    let addr: SocketAddr = tokio::net::lookup_host((host, port))
        .await?
        .find(|a| source.is_none_or(|s| s.is_ipv4() == a.is_ipv4()))
        .context("cannot resolve --url host")?;
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(ip) = source {
        socket
            .bind(SocketAddr::new(ip, 0))
            .with_context(|| format!("cannot bind {ip}"))?;
    }
    let stream = socket
        .connect(addr)
        .await
        .with_context(|| format!("cannot connect to {addr}"))?;
    stream.set_nodelay(true)?;
    let (mut ws, _) = client_async_with_config(url, stream, Some(client_config()))
        .await
        .context("WebSocket handshake failed")?;
    protocol.handshake(&mut ws).await?;
    Ok(ws)
}

/// Socket.IO does not confirm a join: sends marker messages to the room
/// until every member has received one, so that no member is still joining
/// when the measurement starts.
async fn confirm_joined(
    args: &WsBenchArgs,
    members: Vec<(usize, Socket)>,
) -> anyhow::Result<Vec<Socket>> {
    let mut sender = connect(&args.urls[0], None, args.protocol).await?;
    let (mut pending, mut ready) = (members, Vec::new());
    for round in 0..30 {
        let marker = format!("warm-up {round}");
        for k in 0..args.rooms.max(1) {
            sender
                .send(Message::text(
                    args.protocol.message(&args.room_name(k), &marker),
                ))
                .await?;
        }
        let checks = pending.into_iter().map(|(i, mut ws)| async move {
            let seen = saw_warm_up(&mut ws, args.protocol).await;
            (i, ws, seen)
        });
        pending = Vec::new();
        for (i, ws, seen) in futures_util::future::join_all(checks).await {
            if seen {
                ready.push((i, ws))
            } else {
                pending.push((i, ws))
            }
        }
        if pending.is_empty() {
            ready.sort_by_key(|(i, _)| *i);
            return Ok(ready.into_iter().map(|(_, ws)| ws).collect());
        }
    }
    bail!(
        "{} members never received the room's messages",
        pending.len()
    )
}

/// Reads for up to a second until a warm-up marker arrives.
async fn saw_warm_up(ws: &mut Socket, protocol: Protocol) -> bool {
    let wait = async {
        while let Some(Ok(frame)) = ws.next().await {
            let Message::Text(text) = frame else { continue };
            if let Some(reply) = protocol.reply(&text) {
                let _ = ws.send(Message::text(reply)).await;
            } else if text.contains(r#""message":"warm-up "#) {
                return true;
            }
        }
        false
    };
    tokio::time::timeout(Duration::from_secs(1), wait)
        .await
        .unwrap_or(false)
}

/// Opens `args.members` joined members, `connect_concurrency` at a time.
pub(super) async fn open_members(args: &WsBenchArgs) -> anyhow::Result<Vec<Socket>> {
    let gate = Arc::new(Semaphore::new(args.connect_concurrency.max(1)));
    let protocol = args.protocol;
    let mut tasks = Vec::with_capacity(args.members);
    for i in 0..args.members {
        let (room, url) = args.placement(i);
        let url = url.to_owned();
        let source =
            (!args.source_ips.is_empty()).then(|| args.source_ips[i % args.source_ips.len()]);
        let gate = gate.clone();
        let join = protocol.join(&args.room_name(room));
        tasks.push(tokio::spawn(async move {
            let _permit = gate.acquire().await?;
            let mut ws = connect(&url, source, protocol).await?;
            ws.send(Message::text(join)).await?;
            if protocol == Protocol::Rtchat {
                expect_frame(&mut ws, "joined", |t| t.contains(r#""type":"joined""#)).await?;
            }
            anyhow::Ok(ws)
        }));
    }
    let mut members = Vec::with_capacity(args.members);
    for (i, task) in tasks.into_iter().enumerate() {
        members.push((i, task.await?.with_context(|| format!("member {i}"))?));
        if (i + 1) % 1000 == 0 {
            eprintln!("  {} members connected", i + 1);
        }
    }
    match args.protocol {
        Protocol::Rtchat => Ok(members.into_iter().map(|(_, ws)| ws).collect()),
        Protocol::SocketIo => confirm_joined(args, members).await,
    }
}
