//! Bounds per client address on both doors of one replica: open
//! connections and new connections per second, with X-Forwarded-For
//! believed only from trusted proxies. Every scenario runs standalone and
//! with a private Redis. (Behind the real nginx: `deploy_nginx.rs`.)

#[macro_use]
mod common;

use common::*;

/// Opens an upgrade to `path` that stays open while the stream is kept,
/// as if from the client `forwarded` (an X-Forwarded-For header) when
/// given; the HTTP status.
async fn upgrade_as(
    server: &Server,
    path: &str,
    forwarded: Option<&str>,
) -> (u16, tokio::net::TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = server.addr();
    let mut request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    );
    if let Some(forwarded) = forwarded {
        request.push_str(&format!("X-Forwarded-For: {forwarded}\r\n"));
    }
    request.push_str("\r\n");
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    socket.write_all(request.as_bytes()).await.unwrap();
    let mut head = [0u8; 12];
    tokio::time::timeout(DEADLINE, socket.read_exact(&mut head))
        .await
        .unwrap()
        .unwrap();
    let status = String::from_utf8_lossy(&head[9..12]).parse().unwrap();
    (status, socket)
}

/// Open connections per client address: X-Forwarded-For counts clients
/// apart behind a trusted proxy, and is not believed from anyone else.
async fn connections_per_client_address_are_bounded(with_redis: bool) {
    let (_redis, plain) = replica(with_redis, &["--max-connections-per-ip", "2"]).await;
    let _a = upgrade_as(&plain, "/ws", None).await;
    let _b = upgrade_as(&plain, "/socket.io/?EIO=4&transport=websocket", None).await;
    assert_eq!((_a.0, _b.0), (101, 101));
    assert_eq!(
        upgrade_as(&plain, "/ws", Some("203.0.113.9")).await.0,
        429,
        "a claimed address is not believed"
    );
    drop(_a);
    wait_for("the closed connection's place", DEADLINE, async || {
        (upgrade_as(&plain, "/ws", None).await.0 == 101).then_some(())
    })
    .await;

    let (_redis, proxied) = replica(
        with_redis,
        &[
            "--max-connections-per-ip",
            "2",
            "--trusted-proxies",
            "127.0.0.1",
        ],
    )
    .await;
    let _c = upgrade_as(&proxied, "/ws", Some("203.0.113.1")).await;
    let _d = upgrade_as(&proxied, "/ws", Some("203.0.113.1")).await;
    assert_eq!(
        upgrade_as(&proxied, "/ws", Some("203.0.113.1")).await.0,
        429
    );
    assert_eq!(
        upgrade_as(&proxied, "/ws", Some("203.0.113.2")).await.0,
        101,
        "another client behind the proxy"
    );
    // What the client itself put in the header is left of what the proxy added.
    assert_eq!(
        upgrade_as(&proxied, "/ws", Some("198.51.100.7, 203.0.113.1"))
            .await
            .0,
        429
    );
}

/// New connections per second per client address, on both doors.
async fn new_connections_per_client_address_are_rate_limited(with_redis: bool) {
    let (_redis, server) = replica(
        with_redis,
        &[
            "--new-connections-per-ip",
            "0.01",
            "--new-connections-burst",
            "3",
        ],
    )
    .await;
    let mut statuses = Vec::new();
    for path in ["/ws", "/socket.io/?EIO=4&transport=websocket", "/ws", "/ws"] {
        statuses.push(upgrade_as(&server, path, None).await.0);
    }
    assert_eq!(statuses, [101, 101, 101, 429]);
    let (status, _) = http_get(&server.http_url("/socket.io/?EIO=4&transport=polling")).await;
    assert_eq!(status, 429, "a polling handshake counts too");
}

in_both_modes!(
    connections_per_client_address_are_bounded,
    new_connections_per_client_address_are_rate_limited,
);
