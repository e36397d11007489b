//! Test helpers: real `redis-server`, `rtchat`, nginx and Envoy processes on
//! free loopback ports, chat clients, and waiting for conditions with
//! deadlines; one module per helper, all re-exported here.
//! Every process is killed when its handle drops, so a failing test leaves
//! nothing behind.

#![allow(dead_code)]

pub mod api;
pub mod browser;
pub mod chaos;
pub mod chat;
pub mod compose;
pub mod crowd;
pub mod deployment;
pub mod dns;
pub mod envoy;
pub mod faults;
pub mod grpc;
pub mod in_process;
pub mod logs;
pub mod nginx;
pub mod original;
pub mod process;
pub mod python;
pub mod receiver;
pub mod redis;
pub mod socketio;
pub mod swarm;
#[macro_use]
pub mod topology;

#[allow(unused_imports)]
pub use api::*;
#[allow(unused_imports)]
pub use browser::*;
#[allow(unused_imports)]
pub use chat::*;
#[allow(unused_imports)]
pub use deployment::*;
#[allow(unused_imports)]
pub use envoy::*;
#[allow(unused_imports)]
pub use in_process::*;
#[allow(unused_imports)]
pub use nginx::*;
#[allow(unused_imports)]
pub use process::*;
#[allow(unused_imports)]
pub use python::*;
#[allow(unused_imports)]
pub use redis::*;
#[allow(unused_imports)]
pub use socketio::*;
#[allow(unused_imports)]
pub use topology::*;

/// Runs each scenario `fn(with_redis: bool)` twice, as `standalone::name`
/// (no Redis anywhere) and `with_redis::name` (a private Redis).
#[allow(unused_macros)]
macro_rules! in_both_modes {
    ($($scenario:ident),* $(,)?) => {
        mod standalone {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $scenario() { super::$scenario(false).await })*
        }
        mod with_redis {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $scenario() { super::$scenario(true).await })*
        }
    };
}

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// Where a server listens, whether it runs as a process or in the test.
pub trait Endpoint {
    fn addr(&self) -> std::net::SocketAddr;

    fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.addr())
    }

    fn http_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr())
    }

    fn grpc_url(&self) -> String {
        format!("http://{}", self.addr())
    }
}

/// The longest any single wait in a test may take.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// Polls `check` until it returns `Some`, or panics with `what` at the deadline.
pub async fn wait_for<T>(
    what: &str,
    deadline: Duration,
    mut check: impl AsyncFnMut() -> Option<T>,
) -> T {
    let end = Instant::now() + deadline;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < end, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A fresh, empty temporary directory for one process a test starts. Named
/// by process id and a counter, not by a free port: a port number comes
/// back once freed, and two servers sharing a directory share their files
/// (a cluster node whose nodes.conf another holds exits at once).
pub fn unique_dir(kind: &str) -> std::path::PathBuf {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("rtchat-{kind}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A minimal HTTP/1.1 GET over a raw socket: status and body.
pub async fn http_get(url: &str) -> (u16, String) {
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path = if path.is_empty() { "/" } else { path };
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    http_exchange(host, request).await
}

/// Writes a whole HTTP/1.1 request (with `Connection: close`) to `host`
/// and reads the answer to its end: status and body.
pub async fn http_exchange(host: &str, request: String) -> (u16, String) {
    let host = host.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut stream = TcpStream::connect(&host).unwrap();
        stream.set_read_timeout(Some(DEADLINE)).unwrap();
        stream.write_all(request.as_bytes()).unwrap();
        let mut response = String::new();
        let _ = stream.read_to_string(&mut response);
        let status = response
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let body = response
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default();
        (status, body)
    })
    .await
    .unwrap()
}

/// Like `http_get`, but `None` instead of a panic when nothing listens yet.
pub async fn http_get_maybe(url: &str) -> Option<u16> {
    let rest = url.strip_prefix("http://")?;
    let host = rest.split('/').next()?.to_owned();
    if TcpStream::connect(&host).is_err() {
        return None;
    }
    Some(http_get(url).await.0)
}

/// A port that is free on several loopback addresses at once.
pub fn free_port_on(ips: &[&str]) -> u16 {
    loop {
        let port = free_port();
        if ips.iter().all(|ip| TcpListener::bind((*ip, port)).is_ok()) {
            return port;
        }
    }
}
