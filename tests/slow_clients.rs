//! Connections that never finish a request, tried as an attacker would:
//! half-sent headers and silent sockets on the chat server, silent sockets
//! and half a preface on the gRPC server. Both close them within the
//! handshake timeout, bound how many may wait at once overall and per
//! client address, and keep serving ordinary clients meanwhile.

#[macro_use]
mod common;

use common::*;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// The bound these tests run servers with (the default is 10 s).
const HANDSHAKE: Duration = Duration::from_secs(2);

/// A TCP connection to `server` from the loopback address `from`, with
/// `first` sent and nothing more.
async fn open_from(from: &str, server: SocketAddr, first: &[u8]) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::new(from.parse().unwrap(), 0))
        .unwrap();
    let mut stream = socket.connect(server).await.unwrap();
    stream.write_all(first).await.unwrap();
    stream
}

/// Reads until the server closes; how long that took from `since`. Panics
/// if it stays open past `within`.
async fn closed_by_server(mut stream: TcpStream, since: Instant, within: Duration) -> Duration {
    let mut buf = [0u8; 512];
    let end = since + within;
    loop {
        let left = end.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Err(_) => panic!("still open {within:?} after it was opened"),
            Ok(Ok(0) | Err(_)) => return since.elapsed(),
            Ok(Ok(_)) => {}
        }
    }
}

/// Whether the server closes `stream` promptly, before any request could
/// have timed out (the servers here run with a long handshake timeout).
async fn refused(stream: TcpStream) -> bool {
    let mut stream = stream;
    let mut buf = [0u8; 64];
    matches!(
        tokio::time::timeout(Duration::from_secs(3), stream.read(&mut buf)).await,
        Ok(Ok(0) | Err(_))
    )
}

/// A plain GET from the loopback address `from`: its status.
async fn status_from(from: &str, server: SocketAddr, path: &str) -> u16 {
    let request = format!("GET {path} HTTP/1.1\r\nHost: {server}\r\nConnection: close\r\n\r\n");
    let mut stream = open_from(from, server, request.as_bytes()).await;
    let mut response = Vec::new();
    let _ = tokio::time::timeout(DEADLINE, stream.read_to_end(&mut response)).await;
    String::from_utf8_lossy(&response)
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

async fn many(n: usize, server: SocketAddr, first: &[u8]) -> Vec<(TcpStream, Instant)> {
    let mut streams = Vec::with_capacity(n);
    for _ in 0..n {
        streams.push((open_from("127.0.0.1", server, first).await, Instant::now()));
    }
    streams
}

/// Every stream is closed by the server within the bound (plus slack for a
/// loaded machine), and none before most of it has passed.
async fn all_closed_within_the_bound(streams: Vec<(TcpStream, Instant)>) {
    let waits = streams
        .into_iter()
        .map(|(stream, since)| closed_by_server(stream, since, HANDSHAKE + DEADLINE));
    for took in futures_util::future::join_all(waits).await {
        assert!(
            took >= HANDSHAKE - Duration::from_millis(500),
            "closed after {took:?}: sooner than the bound, so not by it"
        );
    }
}

#[tokio::test]
async fn chat_server_closes_half_sent_requests_and_silent_sockets() {
    let server = Server::ws("server-1", None, &["--handshake-timeout", "2s"]).await;
    let addr = server.addr();
    // 220 from one address: under its default bound of 256 pending.
    let half = many(
        120,
        addr,
        b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n",
    )
    .await;
    let silent = many(80, addr, b"").await;
    let body = many(
        20,
        addr,
        b"POST /socket.io/?EIO=4&transport=polling&sid=x HTTP/1.1\r\nHost: x\r\n",
    )
    .await;

    // Served while they wait: the page, and a chat between two members.
    assert_eq!(http_get(&server.http_url("/")).await.0, 200);
    let mut alice = Client::connect(&server.ws_url()).await;
    let mut bob = Client::connect(&server.ws_url()).await;
    alice.join("lobby").await;
    bob.join("lobby").await;
    alice.say("lobby", "still here").await;
    assert_eq!(bob.recv_type("message").await["message"], "still here");

    all_closed_within_the_bound(half).await;
    all_closed_within_the_bound(silent).await;
    all_closed_within_the_bound(body).await;
    // An idle member is no pending request: it stays.
    alice.say("lobby", "after").await;
    assert_eq!(bob.recv_type("message").await["message"], "after");
}

#[tokio::test]
async fn chat_server_bounds_pending_connections_overall_and_per_address() {
    let server = Server::ws(
        "server-1",
        None,
        &[
            "--handshake-timeout",
            "60s",
            "--max-pending-per-ip",
            "10",
            "--max-pending-connections",
            "15",
            "--max-connections-per-ip",
            "12",
        ],
    )
    .await;
    let addr = server.addr();
    let mut first = Vec::new();
    for _ in 0..10 {
        first.push(open_from("127.0.0.1", addr, b"GET / HTTP/1.1\r\n").await);
    }
    let extra = open_from("127.0.0.1", addr, b"GET / HTTP/1.1\r\n").await;
    assert!(refused(extra).await, "the 11th pending from one address");
    // Another address is counted apart; pending ones count as open for
    // the address that holds them (10 pending + 2 open = 12).
    assert_eq!(status_from("127.0.0.2", addr, "/healthz").await, 200);
    let upgrade = b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
        Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
    first.truncate(9);
    let (mut heads, mut sockets) = (Vec::new(), Vec::new());
    for _ in 0..4 {
        let mut socket = open_from("127.0.0.1", addr, upgrade).await;
        let mut head = [0u8; 12];
        tokio::time::timeout(DEADLINE, socket.read_exact(&mut head))
            .await
            .unwrap()
            .unwrap();
        heads.push(String::from_utf8_lossy(&head[9..12]).into_owned());
        sockets.push(socket);
    }
    assert_eq!(
        heads,
        ["101", "101", "101", "429"],
        "9 pending + 3 open = 12"
    );

    // Overall: 9 + 6 more from a third address fill the 15.
    let mut third = Vec::new();
    for _ in 0..6 {
        third.push(open_from("127.0.0.3", addr, b"").await);
    }
    let late = open_from("127.0.0.2", addr, b"").await;
    assert!(refused(late).await, "over the overall bound");
    drop(third);
    wait_for("the freed places", DEADLINE, async || {
        (status_from("127.0.0.2", addr, "/healthz").await == 200).then_some(())
    })
    .await;
    drop((first, sockets));
}

#[tokio::test]
async fn grpc_server_closes_silent_sockets_and_half_prefaces() {
    let server = Server::grpc("grpc-1", None, &["--handshake-timeout", "2s"]).await;
    let addr = server.addr();
    let silent = many(140, addr, b"").await;
    let half = many(100, addr, b"PRI * HTTP/2.0\r\n").await;

    let mut users = grpc::client(&server).await;
    let before = grpc::list(&mut users).await.len();
    users
        .create_user(grpc::create("ana", "ana@example.com"))
        .await
        .unwrap();
    assert_eq!(grpc::list(&mut users).await.len(), before + 1);

    all_closed_within_the_bound(silent).await;
    all_closed_within_the_bound(half).await;
    // A client's idle channel is past its preface: it stays usable.
    assert_eq!(grpc::list(&mut users).await.len(), before + 1);
}

#[tokio::test]
async fn grpc_server_bounds_connections_per_address() {
    let server = Server::grpc(
        "grpc-1",
        None,
        &[
            "--handshake-timeout",
            "60s",
            "--max-connections-per-ip",
            "2",
            "--max-pending-per-ip",
            "3",
        ],
    )
    .await;
    let addr = server.addr();
    let mut one = grpc::client(&server).await;
    let mut two = grpc::client(&server).await;
    let known = grpc::list(&mut one).await.len();
    assert_eq!(grpc::list(&mut two).await.len(), known);
    let url = server.grpc_url();
    let third = async {
        let mut client =
            rtchat::grpc::pb::user_service_client::UserServiceClient::connect(url).await?;
        client.list_users(rtchat::grpc::pb::Empty {}).await?;
        anyhow::Ok(())
    };
    assert!(
        tokio::time::timeout(DEADLINE, third)
            .await
            .unwrap()
            .is_err(),
        "a third connection from the address"
    );
    // Pending ones: three wait, the fourth is closed at once.
    let mut waiting = Vec::new();
    for _ in 0..3 {
        waiting.push(open_from("127.0.0.1", addr, b"").await);
    }
    assert!(refused(open_from("127.0.0.1", addr, b"").await).await);
    // Another address is counted apart.
    let other = open_from("127.0.0.2", addr, b"").await;
    assert!(!refused(other).await, "another address waits its turn");
    drop(waiting);
    assert_eq!(
        grpc::list(&mut one).await.len(),
        known,
        "the first still served"
    );
}
