//! A private `redis-server` per test, on a free port (retried when another
//! process takes the port first).

use super::{DEADLINE, free_port};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// A private `redis-server` on a free port, without persistence.
pub struct Redis {
    pub port: u16,
    child: Option<Child>,
    dir: std::path::PathBuf,
    /// More `--option value` arguments, or with `sentinel` lines of its
    /// configuration file.
    extra: Vec<String>,
    sentinel: bool,
}

impl Redis {
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// With more command-line options (`["--cluster-enabled", "yes"]`).
    pub fn start_with(extra: &[&str]) -> Self {
        Self::launch(extra, false)
    }

    /// A Sentinel whose configuration file holds these lines.
    pub fn start_sentinel(lines: &[&str]) -> Self {
        Self::launch(lines, true)
    }

    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    fn launch(extra: &[&str], sentinel: bool) -> Self {
        let dir = super::unique_dir("redis");
        let mut redis = Self {
            port: 0,
            child: None,
            dir,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            sentinel,
        };
        for _ in 0..5 {
            redis.port = free_port();
            // A cluster node's bus port may be taken first too: a fresh
            // one each try, kept for restarts.
            if let Some(i) = redis.extra.iter().position(|a| a == "--cluster-port") {
                redis.extra[i + 1] = free_port().to_string();
            }
            if redis.try_launch() {
                return redis;
            }
        }
        let log = std::fs::read_to_string(redis.dir.join("redis.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(5).collect();
        panic!(
            "could not start redis-server (is it installed? the test command installs it); \
             its last words: {tail:?}"
        );
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn command(&self) -> Command {
        let mut command = Command::new("redis-server");
        if self.sentinel {
            // Sentinel rewrites its file, so each gets its own.
            let conf = self.dir.join("sentinel.conf");
            let mut text = format!("port {}\nbind 127.0.0.1\n", self.port);
            for line in &self.extra {
                text.push_str(line);
                text.push('\n');
            }
            std::fs::write(&conf, text).unwrap();
            command.arg(conf).arg("--sentinel");
            return command;
        }
        command
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
            .args(&self.extra);
        command
    }

    fn try_launch(&mut self) -> bool {
        // Its output, for the panic above: why a launch failed.
        let log = std::fs::File::create(self.dir.join("redis.log")).unwrap();
        let child = self
            .command()
            .stdout(log.try_clone().unwrap())
            .stderr(log)
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
        self.try_cli(args)
            .unwrap_or_else(|| panic!("redis-cli {args:?} failed"))
    }

    /// The same, `None` when the server does not answer.
    pub fn try_cli(&self, args: &[&str]) -> Option<String> {
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli comes with redis-server");
        let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        (out.status.success() && !text.starts_with("Could not connect")).then_some(text)
    }

    /// Cuts every pub/sub connection: Redis keeps its data, but what is
    /// published until a subscriber reconnects never reaches it live.
    pub fn kill_subscribers(&self) {
        self.cli(&["CLIENT", "KILL", "TYPE", "pubsub"]);
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills Redis (SIGKILL: its memory, and so all history, is gone).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts Redis again on the same port, empty, as a replica of `port`:
    /// how a failed primary rejoins once another took its place (started
    /// as a primary, empty, it would be written to until Sentinel demotes it).
    pub fn restart_as_replica_of(&mut self, port: u16) {
        self.extra
            .extend(["--replicaof".into(), "127.0.0.1".into(), port.to_string()]);
        self.restart();
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
