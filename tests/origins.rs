//! Which pages may connect, on both doors: the `Origin` of every WebSocket
//! upgrade and of Socket.IO polling (with CORS), against one replica.

mod common;

use common::*;

/// Status and headers of a raw request to `path` with `origin`, as a
/// browser would send it (`upgrade`: a WebSocket handshake).
async fn ask(server: &Server, path: &str, origin: Option<&str>, upgrade: bool) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = server.addr();
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(origin) = origin {
        request.push_str(&format!("Origin: {origin}\r\n"));
    }
    if upgrade {
        request = request.replace("Connection: close", "Connection: Upgrade");
        request.push_str(
            "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
        );
    }
    request.push_str("\r\n");
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    socket.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(DEADLINE, socket.read(&mut byte))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "closed before the response head");
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap().to_ascii_lowercase();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, head)
}

const POLL: &str = "/socket.io/?EIO=4&transport=polling";
const SIO_WS: &str = "/socket.io/?EIO=4&transport=websocket";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn by_default_only_the_servers_own_pages_connect() {
    let server = Server::ws("server-1", None, &[]).await;
    let own = format!("http://{}", server.addr());
    let evil = "http://evil.example";
    for (path, upgrade) in [("/ws", true), (SIO_WS, true), (POLL, false)] {
        assert_eq!(
            ask(&server, path, Some(evil), upgrade).await.0,
            403,
            "{path} from elsewhere"
        );
        let expected = if upgrade { 101 } else { 200 };
        assert_eq!(
            ask(&server, path, Some(&own), upgrade).await.0,
            expected,
            "{path} from its own page"
        );
        assert_eq!(
            ask(&server, path, None, upgrade).await.0,
            expected,
            "{path} without Origin"
        );
    }
    let (_, head) = ask(&server, POLL, Some(&own), false).await;
    assert!(
        head.contains(&format!("access-control-allow-origin: {own}")),
        "{head}"
    );
    assert!(head.contains("access-control-allow-credentials: true"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listed_origins_and_any() {
    let app = "https://app.example.com";
    let server = Server::ws("server-1", None, &["--allowed-origins", app]).await;
    assert_eq!(ask(&server, "/ws", Some(app), true).await.0, 101);
    assert_eq!(
        ask(&server, "/ws", Some("https://other.example.com"), true)
            .await
            .0,
        403
    );
    let (status, head) = ask(&server, POLL, Some(app), false).await;
    assert_eq!(status, 200);
    assert!(head.contains("access-control-allow-origin: https://app.example.com"));

    let open = Server::ws("server-2", None, &["--allowed-origins", "*"]).await;
    assert_eq!(
        ask(&open, SIO_WS, Some("http://anything.example"), true)
            .await
            .0,
        101
    );
}
