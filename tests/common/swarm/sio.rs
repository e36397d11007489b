//! socket.io-client members in one Node process (tests/js/swarm.cjs) that
//! join, recover after drops and report what they saw.

use super::{DEADLINE, History, ROOT};
use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};

/// socket.io-client members in one Node process.
pub struct SioSwarm {
    child: Child,
    /// `None` only while `wait_for` reads it on another thread.
    stdout: Option<BufReader<std::process::ChildStdout>>,
}

impl SioSwarm {
    /// `count` members of `room` through `url`, all joined on return.
    pub fn start(url: &str, room: &str, count: usize) -> Self {
        Self::start_with(url, room, count, &[])
    }

    /// The same with the options of tests/js/swarm.cjs in `env`.
    pub fn start_with(url: &str, room: &str, count: usize, env: &[(&str, &str)]) -> Self {
        let modules = format!("{ROOT}/target/tools/node/node_modules");
        let mut child = Command::new("node")
            .arg(format!("{ROOT}/tests/js/swarm.cjs"))
            .args([url, &count.to_string(), room])
            .env("NODE_PATH", modules)
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("node");
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        assert!(line.contains("ready"), "swarm: {line:?}");
        Self {
            child,
            stdout: Some(stdout),
        }
    }

    /// Waits until every member has message `id` (or a later one).
    pub async fn wait_for(&mut self, id: u64) {
        let line = self
            .ask(
                &format!("until {id}"),
                DEADLINE * 3,
                "every member has the last message",
            )
            .await;
        assert!(line.contains("reached"), "swarm: {line:?}");
    }

    /// Whether every member has message `id` (or a later one) within
    /// `within`; if not, the swarm's answer.
    pub async fn reached(&mut self, id: u64, within: std::time::Duration) -> Result<(), String> {
        let ms = within.as_millis();
        let line = self
            .ask(&format!("until {id} {ms}"), within + DEADLINE, "an answer")
            .await;
        // Otherwise the swarm's word on who is behind, and how it got there.
        if line.contains("reached") {
            Ok(())
        } else {
            Err(line)
        }
    }

    /// Sends a command line and reads the answer line, off the runtime.
    async fn ask(&mut self, command: &str, within: std::time::Duration, what: &str) -> String {
        let stdin = self.child.stdin.as_mut().unwrap();
        stdin.write_all(format!("{command}\n").as_bytes()).unwrap();
        let mut stdout = self.stdout.take().unwrap();
        let read = tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            stdout.read_line(&mut line).unwrap();
            (stdout, line)
        });
        let (stdout, line) = tokio::time::timeout(within, read)
            .await
            .unwrap_or_else(|_| panic!("Socket.IO swarm: {what} in time"))
            .unwrap();
        self.stdout = Some(stdout);
        line
    }

    /// One more socket posts to the room, `rate` messages a second, with
    /// an ack callback, until the report.
    pub fn publish(&mut self, rate: u32) {
        let stdin = self.child.stdin.as_mut().unwrap();
        stdin
            .write_all(format!("publish {rate}\n").as_bytes())
            .unwrap();
    }

    /// The publisher stops posting.
    pub fn quiet(&mut self) {
        let stdin = self.child.stdin.as_mut().unwrap();
        stdin.write_all(b"quiet\n").unwrap();
    }

    pub fn finish(self) -> Vec<History> {
        self.report().members
    }

    /// Waits until the keyed publisher has no post in flight.
    pub async fn idle(&mut self) {
        let line = self
            .ask(
                "idle",
                DEADLINE * 6,
                "the publisher's last post acknowledged",
            )
            .await;
        assert!(line.contains("idle"), "swarm: {line:?}");
    }

    /// Every member's history, and what the publisher sent and had
    /// acknowledged.
    pub fn report(mut self) -> SioReport {
        let stdin = self.child.stdin.as_mut().unwrap();
        stdin.write_all(b"report\n").unwrap();
        let mut line = String::new();
        self.stdout.as_mut().unwrap().read_line(&mut line).unwrap();
        let _ = self.child.wait();
        let report: Value = serde_json::from_str(&line).unwrap();
        let numbers = |v: &Value| -> Vec<u64> {
            v.as_array()
                .unwrap()
                .iter()
                .map(|n| match n {
                    Value::String(s) => s.parse().unwrap(),
                    n => n.as_u64().unwrap(),
                })
                .collect()
        };
        let members = report["clients"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| History {
                ids: c["ids"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|id| id.as_str().unwrap().parse().unwrap())
                    .collect(),
                recovered_false: c["recovered_false"].as_u64().unwrap() as usize,
                closes: c["closes"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|t| t.as_u64().unwrap())
                    .collect(),
                codes: Vec::new(),
                reasons: c["reasons"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| r.as_str().unwrap().to_owned())
                    .collect(),
                reconnect_ms: numbers(&c["reconnects"]),
            })
            .collect();
        let pairs = report["pairs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                let id = p[1].as_str().unwrap().parse().unwrap();
                (
                    p[0].as_str().unwrap().to_owned(),
                    id,
                    p[2].as_u64().unwrap() as u32,
                )
            })
            .collect();
        SioReport {
            members,
            sent: report["sent"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s.as_str().unwrap().to_owned())
                .collect(),
            acked: numbers(&report["acked"]),
            pairs,
        }
    }
}

/// What a Socket.IO swarm saw and posted.
pub struct SioReport {
    pub members: Vec<History>,
    /// The publisher's message texts.
    pub sent: Vec<String>,
    /// Ids acknowledged, in order.
    pub acked: Vec<u64>,
    /// With SWARM_KEYED: each post's key, id and number of tries.
    pub pairs: Vec<(String, u64, u32)>,
}

impl Drop for SioSwarm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
