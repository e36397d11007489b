//! Test helpers: real `redis-server` and `rtchat` processes on free loopback
//! ports, WebSocket clients, and waiting for conditions with deadlines.
//! Every process is killed when its handle drops, so a failing test leaves
//! nothing behind.

#![allow(dead_code)]

pub mod dns;

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

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

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

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A private `redis-server` on a free port, without persistence.
pub struct Redis {
    pub port: u16,
    child: Option<Child>,
    dir: std::path::PathBuf,
}

impl Redis {
    pub fn start() -> Self {
        let dir = std::env::temp_dir().join(format!(
            "rtchat-redis-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let mut redis = Self {
            port: 0,
            child: None,
            dir,
        };
        for _ in 0..5 {
            redis.port = free_port();
            if redis.try_launch() {
                return redis;
            }
        }
        panic!("could not start redis-server (is it installed? the test command installs it)");
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn try_launch(&mut self) -> bool {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect(
                "redis-server not found; run the test command from the README, which installs it",
            );
        self.child = Some(child);
        let end = Instant::now() + DEADLINE;
        while Instant::now() < end {
            if self.ping() {
                return true;
            }
            if let Some(child) = self.child.as_mut()
                && child.try_wait().unwrap().is_some()
            {
                self.child = None;
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    pub fn ping(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        stream
            .set_read_timeout(Some(Duration::from_secs(1)))
            .unwrap();
        let mut buf = [0u8; 7];
        stream.write_all(b"PING\r\n").is_ok()
            && stream.read_exact(&mut buf).is_ok()
            && &buf == b"+PONG\r\n"
    }

    /// Runs one command through `redis-cli`; its reply.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli comes with redis-server");
        assert!(out.status.success(), "redis-cli {args:?} failed");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Cuts every pub/sub connection: Redis keeps its data, but what is
    /// published until a subscriber reconnects never reaches it live.
    pub fn kill_subscribers(&self) {
        self.cli(&["CLIENT", "KILL", "TYPE", "pubsub"]);
    }

    /// Kills Redis (SIGKILL: its memory, and so all history, is gone).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts Redis again on the same port, empty.
    pub fn restart(&mut self) {
        self.stop();
        assert!(
            self.try_launch(),
            "redis-server did not come back on port {}",
            self.port
        );
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A running `rtchat` subcommand whose stderr is collected for assertions.
pub struct Process {
    child: Option<Child>,
    pub log: Arc<Mutex<Vec<String>>>,
    pub addr: SocketAddr,
}

pub fn rtchat() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rtchat"));
    cmd.env_remove("REDIS_URL")
        .env("RUST_LOG", "warn,rtchat=debug")
        .env("NO_COLOR", "1");
    cmd
}

impl Process {
    /// Starts `rtchat <args> --listen 127.0.0.1:0` and waits for its
    /// "listening" log line to learn the port.
    pub fn spawn_server(args: &[&str]) -> Self {
        let listen: &[&str] = if args.contains(&"--listen") {
            &[]
        } else {
            &["--listen", "127.0.0.1:0"]
        };
        let mut child = rtchat()
            .args(args)
            .args(listen)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("rtchat binary");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    if line.contains("listening")
                        && let Some(addr) = line
                            .split("addr=")
                            .nth(1)
                            .and_then(|s| s.split_whitespace().next())
                    {
                        let _ = tx.send(addr.parse::<SocketAddr>().unwrap());
                    }
                    log.lock().unwrap().push(line);
                }
            });
        }
        let mut process = Self {
            child: Some(child),
            log,
            addr: "0.0.0.0:0".parse().unwrap(),
        };
        match rx.recv_timeout(DEADLINE) {
            Ok(addr) => process.addr = addr,
            Err(_) => panic!("server did not start: {:#?}", process.log.lock().unwrap()),
        }
        process
    }

    /// `rtchat <subcommand> --id <id>`, on `redis` when given.
    fn server(subcommand: &str, id: &str, redis: Option<&Redis>, extra: &[&str]) -> Self {
        let mut args = vec![subcommand, "--id", id];
        let url = redis.map(Redis::url);
        if let Some(url) = &url {
            args.extend(["--redis-url", url]);
        }
        args.extend(extra);
        Self::spawn_server(&args)
    }

    pub fn ws_server(id: &str, redis: Option<&Redis>, extra: &[&str]) -> Self {
        Self::server("ws-server", id, redis, extra)
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    pub fn http_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args(["-s", signal, &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Waits for the process to exit by itself.
    pub async fn wait_exit(&mut self) -> ExitStatus {
        let child = self.child.as_mut().unwrap();
        let status = wait_for("process exit", DEADLINE, async || child.try_wait().unwrap()).await;
        self.child = None;
        status
    }

    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().unwrap().is_none())
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A minimal HTTP/1.1 GET over a raw socket: status and body.
pub async fn http_get(url: &str) -> (u16, String) {
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path = if path.is_empty() { "/" } else { path };
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
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

pub type Socket = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

/// A chat client speaking the JSON protocol.
pub struct Client {
    pub ws: Socket,
    pub user: String,
    pub server: String,
    /// Frames read ahead while waiting for something else, in order.
    pending: std::collections::VecDeque<Value>,
    /// Rooms joined through the helpers, so `say` knows to expect its echo.
    rooms: std::collections::HashSet<String>,
}

impl Client {
    pub async fn connect(url: &str) -> Self {
        let (ws, _) = tokio::time::timeout(DEADLINE, tokio_tungstenite::connect_async(url))
            .await
            .expect("connect timed out")
            .expect("connect");
        let mut client = Self {
            ws,
            user: String::new(),
            server: String::new(),
            pending: Default::default(),
            rooms: Default::default(),
        };
        let welcome = client.recv_type("welcome").await;
        client.user = welcome["user"].as_str().unwrap().to_owned();
        client.server = welcome["server"].as_str().unwrap().to_owned();
        client
    }

    pub async fn send(&mut self, frame: Value) {
        self.ws
            .send(Message::text(frame.to_string()))
            .await
            .unwrap();
    }

    pub async fn send_raw(&mut self, text: impl Into<String>) {
        self.ws.send(Message::text(text.into())).await.unwrap();
    }

    /// The next JSON frame, or `None` if the socket closed.
    pub async fn try_recv(&mut self) -> Option<Value> {
        if let Some(frame) = self.pending.pop_front() {
            return Some(frame);
        }
        self.read_socket().await
    }

    async fn read_socket(&mut self) -> Option<Value> {
        loop {
            let next = tokio::time::timeout(DEADLINE, self.ws.next())
                .await
                .expect("no frame before the deadline");
            match next? {
                Ok(Message::Text(text)) => return Some(serde_json::from_str(&text).unwrap()),
                Ok(Message::Close(_)) | Err(_) => return None,
                Ok(_) => continue,
            }
        }
    }

    pub async fn recv(&mut self) -> Value {
        self.try_recv()
            .await
            .expect("socket closed while a frame was expected")
    }

    /// The next frame, which must be of type `kind`.
    pub async fn recv_type(&mut self, kind: &str) -> Value {
        let frame = self.recv().await;
        assert_eq!(frame["type"], kind, "expected a {kind} frame, got {frame}");
        frame
    }

    /// Waits for the close frame and returns its code.
    pub async fn recv_close(&mut self) -> Option<u16> {
        loop {
            let next = tokio::time::timeout(DEADLINE, self.ws.next())
                .await
                .expect("no close before the deadline");
            match next {
                Some(Ok(Message::Close(frame))) => return frame.map(|f| f.code.into()),
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return None,
            }
        }
    }

    pub async fn join(&mut self, room: &str) -> Value {
        self.send(json!({"type": "join_room", "room": room})).await;
        self.rooms.insert(room.to_owned());
        self.recv_type("joined").await
    }

    pub async fn join_since(&mut self, room: &str, since: &str) -> Value {
        self.send(json!({"type": "join_room", "room": room, "since": since}))
            .await;
        self.rooms.insert(room.to_owned());
        self.recv_type("joined").await
    }

    pub async fn leave(&mut self, room: &str) -> Value {
        self.send(json!({"type": "leave_room", "room": room})).await;
        self.rooms.remove(room);
        self.recv_type("left").await
    }

    /// Sends a message with an ack token and returns its id once acked and,
    /// in a joined room, echoed back. Other frames read meanwhile stay
    /// pending for the next `recv`.
    pub async fn say(&mut self, room: &str, text: &str) -> String {
        let token = format!("ack-{text}");
        self.send(json!({"type": "message", "room": room, "message": text, "ack": token}))
            .await;
        let mut id: Option<String> = None;
        let mut echoed = !self.rooms.contains(room);
        let mut stash = Vec::new();
        while id.is_none() || !echoed {
            let frame = self.recv().await;
            if frame["type"] == "ack" && frame["ack"] == token.as_str() {
                id = Some(frame["id"].as_str().unwrap().to_owned());
            } else if frame["type"] == "message"
                && frame["user"] == self.user.as_str()
                && frame["message"] == text
            {
                echoed = true;
            } else {
                assert_ne!(frame["type"], "error", "message refused: {frame}");
                stash.push(frame);
            }
        }
        for frame in stash.into_iter().rev() {
            self.pending.push_front(frame);
        }
        id.unwrap()
    }

    /// Receives `n` room messages, failing on anything else.
    pub async fn messages(&mut self, n: usize) -> Vec<Value> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let frame = self.recv().await;
            if frame["type"] == "ack" {
                continue;
            }
            assert_eq!(frame["type"], "message", "expected a message, got {frame}");
            out.push(frame);
        }
        out
    }

    /// Receives messages up to and including the one whose text is `marker`,
    /// returning the texts before it: proves nothing extra arrived in between.
    pub async fn texts_until(&mut self, marker: &str) -> Vec<String> {
        let mut texts = Vec::new();
        loop {
            let frame = self.recv().await;
            if frame["type"] == "ack" {
                continue;
            }
            assert_eq!(frame["type"], "message", "expected a message, got {frame}");
            let text = frame["message"].as_str().unwrap().to_owned();
            if text == marker {
                return texts;
            }
            texts.push(text);
        }
    }
}

pub fn id_of(frame: &Value) -> u64 {
    frame["id"].as_str().unwrap().parse().unwrap()
}

impl Process {
    pub fn grpc_server(id: &str, redis: Option<&Redis>, extra: &[&str]) -> Self {
        Self::server("grpc-server", id, redis, extra)
    }

    pub fn grpc_url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// Runs `rtchat grpc-client --addr <addr> <args>`: (exit ok, stdout, stderr).
pub fn grpc_client(addr: &str, args: &[&str]) -> (bool, String, String) {
    let output = rtchat()
        .args(["grpc-client", "--addr", addr, "--timeout", "3s"])
        .args(args)
        .output()
        .expect("rtchat binary");
    (
        output.status.success(),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
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

/// Real nginx running a config file, on a private prefix directory.
pub struct Nginx {
    pub port: u16,
    child: Option<Child>,
    dir: std::path::PathBuf,
}

impl Nginx {
    /// Starts `nginx` with `config` (the text of a full nginx.conf).
    pub fn start(config: &str, port: u16) -> Self {
        let dir = std::env::temp_dir().join(format!("rtchat-nginx-{}", free_port()));
        std::fs::create_dir_all(&dir).unwrap();
        let conf = dir.join("nginx.conf");
        std::fs::write(&conf, config).unwrap();
        let child = Command::new("nginx")
            .arg("-p")
            .arg(&dir)
            .arg("-e")
            .arg("stderr")
            .arg("-c")
            .arg(&conf)
            .arg("-g")
            .arg(format!(
                "daemon off; pid {};",
                dir.join("nginx.pid").display()
            ))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("nginx not found; run the test command from the README, which installs it");
        let nginx = Self {
            port,
            child: Some(child),
            dir,
        };
        let end = Instant::now() + DEADLINE;
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < end, "nginx did not start listening");
            std::thread::sleep(Duration::from_millis(20));
        }
        nginx
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn ws_url(&self) -> String {
        format!("ws://127.0.0.1:{}/ws", self.port)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGTERM, so the master stops its workers too; SIGKILL would
            // orphan them, still holding the port.
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let end = Instant::now() + DEADLINE;
            while child.try_wait().ok().flatten().is_none() && Instant::now() < end {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The repository's deploy/nginx/nginx.conf with its Docker names and ports
/// mapped to this test's processes.
pub fn deploy_nginx_config(dns_port: u16, ws_port: u16, listen_port: u16) -> String {
    let original = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/nginx/nginx.conf"
    ))
    .unwrap();
    let mapped = original
        .replace(
            "resolver 127.0.0.11 ",
            &format!("resolver 127.0.0.1:{dns_port} "),
        )
        .replace("ws-server:3000", &format!("ws-server:{ws_port}"))
        .replace("listen 80;", &format!("listen 127.0.0.1:{listen_port};"))
        .replace("worker_connections 10240;", "worker_connections 1024;")
        .replace("access_log /dev/stdout;", "access_log off;");
    for (from, what) in [
        ("resolver 127.0.0.11 ", "resolver"),
        ("ws-server:3000", "upstream"),
        ("listen 80;", "listen"),
    ] {
        assert!(
            original.contains(from) && !mapped.contains(from),
            "deploy config's {what} was not mapped"
        );
    }
    mapped
}

/// Envoy versions the test command installs (oldest and newest validated);
/// docker-compose.yml pins the first.
pub const ENVOY_VERSIONS: [&str; 2] = ["1.36.4", "1.40.0"];

/// The Envoy binary of a version installed by the test command.
pub fn envoy_binary(version: &str) -> std::path::PathBuf {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target/tools")
        .join(format!("envoy-{version}"))
        .join("envoy/_bin/envoy");
    assert!(
        path.exists(),
        "Envoy {version} not installed at {}; run the README's test command",
        path.display()
    );
    path
}

/// The repository's deploy/envoy/envoy.yaml with the grpc-server names and
/// the listener and admin ports mapped to this test's processes.
pub fn deploy_envoy_config(upstreams: &[u16], listen: u16, admin: u16) -> String {
    let original = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/envoy/envoy.yaml"
    ))
    .unwrap();
    let mut mapped = original
        .replace("port_value: 9000", &format!("port_value: {listen}"))
        .replace("port_value: 9901", &format!("port_value: {admin}"))
        .replace("address: 0.0.0.0", "address: 127.0.0.1");
    for (i, port) in upstreams.iter().enumerate() {
        let from = format!("address: grpc-server-{}, port_value: 50051", i + 1);
        assert!(mapped.contains(&from), "deploy config has no {from}");
        mapped = mapped.replace(&from, &format!("address: 127.0.0.1, port_value: {port}"));
    }
    assert!(
        !mapped.contains("grpc-server-"),
        "an upstream was left unmapped"
    );
    mapped
}

/// Real Envoy running a config.
pub struct Envoy {
    pub port: u16,
    pub admin: u16,
    child: Option<Child>,
    dir: std::path::PathBuf,
}

impl Envoy {
    pub async fn start(config: &str, port: u16, admin: u16) -> Self {
        let dir = std::env::temp_dir().join(format!("rtchat-envoy-{}", free_port()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("envoy.yaml");
        std::fs::write(&file, config).unwrap();
        let child = Command::new(envoy_binary(ENVOY_VERSIONS[1]))
            .arg("-c")
            .arg(&file)
            .args(["--use-dynamic-base-id", "--log-level", "warn"])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let envoy = Self {
            port,
            admin,
            child: Some(child),
            dir,
        };
        let ready = format!("http://127.0.0.1:{admin}/ready");
        wait_for("Envoy to be ready", DEADLINE, async || {
            (http_get_maybe(&ready).await == Some(200)).then_some(())
        })
        .await;
        envoy
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Requests Envoy sent to each upstream port, from its admin /clusters.
    pub async fn requests_per_upstream(&self) -> std::collections::HashMap<u16, u64> {
        let (_, body) = http_get(&format!("http://127.0.0.1:{}/clusters", self.admin)).await;
        body.lines()
            .filter_map(|line| {
                let rest = line.strip_prefix("grpc_servers::127.0.0.1:")?;
                let (port, rest) = rest.split_once("::")?;
                let count = rest.strip_prefix("rq_total::")?;
                Some((port.parse().ok()?, count.trim().parse().ok()?))
            })
            .collect()
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
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

/// Three ws-server replicas behind the repository's nginx config, found
/// through a DNS stand-in as in compose, and a private Redis.
pub struct ChatDeployment {
    pub redis: Redis,
    pub dns: dns::Dns,
    pub ws_port: u16,
    pub replicas: Vec<Process>,
    pub nginx: Nginx,
}

/// Loopback addresses standing in for replica containers.
pub const CHAT_IPS: [&str; 4] = ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"];

impl ChatDeployment {
    pub fn start() -> Self {
        let redis = Redis::start();
        let ws_port = free_port_on(&CHAT_IPS);
        let replicas = (0..3).map(|i| chat_replica(&redis, i, ws_port)).collect();
        let dns = dns::Dns::start();
        dns.set(
            "ws-server",
            &CHAT_IPS[..3]
                .iter()
                .map(|ip| ip.parse().unwrap())
                .collect::<Vec<std::net::Ipv4Addr>>(),
        );
        let nginx_port = free_port();
        let nginx = Nginx::start(
            &deploy_nginx_config(dns.port, ws_port, nginx_port),
            nginx_port,
        );
        Self {
            redis,
            dns,
            ws_port,
            replicas,
            nginx,
        }
    }

    /// Connects through nginx until landing on the given replica.
    pub async fn through_nginx_to(&self, server: &str) -> Client {
        wait_for("nginx to route to the replica", DEADLINE, async || {
            let c = Client::connect(&self.nginx.ws_url()).await;
            (c.server == server).then_some(c)
        })
        .await
    }
}

/// Replica `i` (server-<i+1>) on its stand-in address.
pub fn chat_replica(redis: &Redis, i: usize, port: u16) -> Process {
    let listen = format!("{}:{port}", CHAT_IPS[i]);
    Process::ws_server(
        &format!("server-{}", i + 1),
        Some(redis),
        &["--listen", &listen],
    )
}

/// Runs the Python grpcio walk-through (tests/python/client.py, stubs
/// generated from proto/ by grpcio-tools) against `addr`, changing Bob until
/// its subscription has printed one update: (exit ok, stdout, stderr).
pub async fn python_walk_through(addr: &str) -> (bool, String, String) {
    let root = env!("CARGO_MANIFEST_DIR");
    let stubs = std::env::temp_dir().join(format!("rtchat-pystubs-{}", free_port()));
    std::fs::create_dir_all(&stubs).unwrap();
    let generated = std::process::Command::new("python3")
        .args(["-m", "grpc_tools.protoc", "-I", &format!("{root}/proto")])
        .arg(format!("--python_out={}", stubs.display()))
        .arg(format!("--grpc_python_out={}", stubs.display()))
        .arg(format!("{root}/proto/service.proto"))
        .status()
        .unwrap();
    assert!(generated.success());
    let mut python = std::process::Command::new("python3")
        .arg(format!("{root}/tests/python/client.py"))
        .arg(addr.trim_start_matches("http://"))
        .env("PYTHONPATH", &stubs)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut c = rtchat::grpc::pb::user_service_client::UserServiceClient::connect(addr.to_owned())
        .await
        .unwrap();
    let status = wait_for("the Python client to finish", DEADLINE, async || {
        let touch = rtchat::grpc::pb::UpdateUserRequest {
            id: 2,
            name: "Bob".into(),
            email: String::new(),
        };
        let _ = c.update_user(touch).await;
        python.try_wait().unwrap()
    })
    .await;
    let output = python.wait_with_output().unwrap();
    let _ = std::fs::remove_dir_all(&stubs);
    (
        status.success(),
        String::from_utf8_lossy(&output.stdout).into(),
        String::from_utf8_lossy(&output.stderr).into(),
    )
}
