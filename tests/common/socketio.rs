//! The official Socket.IO clients as real processes (socket.io-client in
//! Node, python-socketio), driven by tests/js/client.cjs and
//! tests/python/sio_client.py: a JSON command per line in, a JSON line per
//! event out.

use super::DEADLINE;
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

pub struct SioClient {
    child: Child,
    stdin: ChildStdin,
    lines: tokio::sync::mpsc::UnboundedReceiver<Value>,
    /// Lines read ahead while waiting for another, in order.
    pending: VecDeque<Value>,
}

impl SioClient {
    /// socket.io-client 4.x with `options` (as `io(url, options)` takes them).
    pub fn node(url: &str, options: Value) -> Self {
        let modules = format!("{ROOT}/target/tools/node/node_modules");
        assert!(
            std::path::Path::new(&modules)
                .join("socket.io-client")
                .exists(),
            "socket.io-client not installed in {modules}; run the README's test command"
        );
        let mut command = Command::new("node");
        command
            .arg(format!("{ROOT}/tests/js/client.cjs"))
            .arg(url)
            .arg(options.to_string())
            .env("NODE_PATH", modules);
        Self::spawn(command)
    }

    /// python-socketio 5.x, with `auth` in its CONNECT.
    pub fn python(url: &str, auth: Value) -> Self {
        Self::spawn(Self::python_command(url, auth))
    }

    /// python-socketio with a `message` handler written for the original:
    /// `def on_message(data)`, one argument.
    pub fn python_original_handler(url: &str) -> Self {
        let mut command = Self::python_command(url, json!({}));
        command.env("ORIGINAL_HANDLER", "1");
        Self::spawn(command)
    }

    fn python_command(url: &str, auth: Value) -> Command {
        let mut command = Command::new("python3");
        command
            .arg(format!("{ROOT}/tests/python/sio_client.py"))
            .arg(url)
            .arg(auth.to_string());
        command
    }

    fn spawn(mut command: Command) -> Self {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the client's interpreter (node, python3)");
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = tokio::sync::mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                match serde_json::from_str(&line) {
                    Ok(value) => {
                        if tx.send(value).is_err() {
                            break;
                        }
                    }
                    Err(_) => eprintln!("client printed: {line}"),
                }
            }
        });
        Self {
            child,
            stdin,
            lines,
            pending: VecDeque::new(),
        }
    }

    fn command(&mut self, command: Value) {
        writeln!(self.stdin, "{command}").expect("client alive");
        self.stdin.flush().unwrap();
    }

    pub fn emit(&mut self, event: &str, args: Value) {
        self.command(json!({"emit": event, "args": args}));
    }

    pub fn emit_with_ack(&mut self, event: &str, args: Value) {
        self.command(json!({"emit": event, "args": args, "ack": true}));
    }

    /// Where the client's next reconnect goes.
    pub fn reconnect_to(&mut self, url: &str) {
        self.command(json!({"uri": url}));
    }

    async fn read(&mut self) -> Value {
        tokio::time::timeout(DEADLINE, self.lines.recv())
            .await
            .expect("a client event in time")
            .expect("the client is still running")
    }

    /// The next line that `wanted` accepts; the lines before it are kept,
    /// in order, for later reads.
    pub async fn next_where(&mut self, wanted: impl Fn(&Value) -> bool) -> Value {
        let mut skipped = VecDeque::new();
        let mut queued = std::mem::take(&mut self.pending);
        let found = loop {
            let line = match queued.pop_front() {
                Some(line) => line,
                None => self.read().await,
            };
            if wanted(&line) {
                break line;
            }
            skipped.push_back(line);
        };
        skipped.extend(queued);
        self.pending = skipped;
        found
    }

    /// The value of the next line with `key`.
    pub async fn next(&mut self, key: &str) -> Value {
        self.next_where(|line| line.get(key).is_some()).await[key].clone()
    }

    /// The next `message` event's arguments: the message, then the offset
    /// when recovery is on.
    pub async fn message(&mut self) -> Vec<Value> {
        let line = self.next_where(|line| line["event"] == "message").await;
        line["args"].as_array().unwrap().clone()
    }

    /// Messages' texts until `marker`.
    pub async fn texts_until(&mut self, marker: &str) -> Vec<String> {
        let mut texts = Vec::new();
        loop {
            let args = self.message().await;
            let text = args[0]["message"].as_str().unwrap().to_owned();
            if text == marker {
                return texts;
            }
            texts.push(text);
        }
    }
}

impl Drop for SioClient {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
