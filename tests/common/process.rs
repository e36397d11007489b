//! `rtchat` servers and the gRPC client as real processes.

use super::{DEADLINE, Endpoint, RedisUrl, wait_for};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};

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
        Self::start(args, "warn,rtchat=debug", true)
    }

    /// [`Self::spawn_server`] with its own `RUST_LOG` (which must show the
    /// "listening" line).
    pub fn spawn_server_logging(args: &[&str], filter: &str) -> Self {
        Self::start(args, filter, true)
    }

    /// [`Self::spawn_server`] whose log nobody reads once it is listening:
    /// the read end of its stderr pipe is closed then, as when the process
    /// reading it exits.
    pub fn spawn_server_unread(args: &[&str]) -> Self {
        Self::start(args, "warn,rtchat=debug", false)
    }

    fn start(args: &[&str], filter: &str, read_on: bool) -> Self {
        let listen: &[&str] = if args.contains(&"--listen") {
            &[]
        } else {
            &["--listen", "127.0.0.1:0"]
        };
        let mut child = rtchat()
            .env("RUST_LOG", filter)
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
            let mut run_log = super::logs::file("process").map(|(_, file)| file);
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    if let Some(file) = &mut run_log {
                        use std::io::Write;
                        let _ = writeln!(file, "{line}");
                    }
                    let addr = line
                        .contains("listening")
                        .then(|| line.split("addr=").nth(1)?.split_whitespace().next())
                        .flatten()
                        .map(|addr| addr.parse::<SocketAddr>().unwrap());
                    log.lock().unwrap().push(line);
                    if let Some(addr) = addr {
                        let _ = tx.send(addr);
                        if !read_on {
                            break;
                        }
                    }
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
    fn server(subcommand: &str, id: &str, redis: Option<&dyn RedisUrl>, extra: &[&str]) -> Self {
        let mut args = vec![subcommand, "--id", id];
        let url = redis.map(RedisUrl::url);
        if let Some(url) = &url {
            args.extend(["--redis-url", url]);
        }
        args.extend(extra);
        Self::spawn_server(&args)
    }

    pub fn ws_server(id: &str, redis: Option<&dyn RedisUrl>, extra: &[&str]) -> Self {
        Self::server("ws-server", id, redis, extra)
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
        self.wait_exit_within(DEADLINE).await
    }

    /// The same, for a process given longer to finish (a default drain).
    pub async fn wait_exit_within(&mut self, deadline: std::time::Duration) -> ExitStatus {
        let child = self.child.as_mut().unwrap();
        let status = wait_for("process exit", deadline, async || child.try_wait().unwrap()).await;
        self.child = None;
        status
    }

    /// When (Unix ms) each line of its log so far that contains `needle`
    /// was written.
    pub fn logged_at(&self, needle: &str) -> Vec<u64> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|line| line.contains(needle))
            .filter_map(|line| humantime::parse_rfc3339(line.split_whitespace().next()?).ok())
            .map(|at| {
                at.duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_millis() as u64
            })
            .collect()
    }

    /// Whether a line of its log so far contains `needle`.
    pub fn logged(&self, needle: &str) -> bool {
        self.log
            .lock()
            .unwrap()
            .iter()
            .any(|line| line.contains(needle))
    }

    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().unwrap().is_none())
    }
}

impl Endpoint for Process {
    fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

impl Process {
    pub fn grpc_server(id: &str, redis: Option<&dyn RedisUrl>, extra: &[&str]) -> Self {
        Self::server("grpc-server", id, redis, extra)
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
