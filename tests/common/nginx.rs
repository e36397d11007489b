//! Real nginx on a private prefix, running the repository's config.

use super::{DEADLINE, free_port};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Real nginx running a config file, on a private prefix directory.
pub struct Nginx {
    pub port: u16,
    child: Option<Child>,
    dir: std::path::PathBuf,
}

/// Attempts at a free port: another process may take the one picked
/// between the pick and nginx's bind.
const PORT_ATTEMPTS: usize = 5;

impl Nginx {
    /// Starts `nginx` with the config `config(port)` returns (the text of a
    /// full nginx.conf listening on `port`), on a free port.
    pub fn start(config: impl Fn(u16) -> String) -> Self {
        for _ in 0..PORT_ATTEMPTS {
            if let Some(nginx) = Self::try_start(&config, free_port()) {
                return nginx;
            }
        }
        panic!("nginx did not start listening");
    }

    /// `None` if nginx exited (its port was taken meanwhile).
    fn try_start(config: &impl Fn(u16) -> String, port: u16) -> Option<Self> {
        let dir = super::unique_dir("nginx");
        let conf = dir.join("nginx.conf");
        std::fs::write(&conf, config(port)).unwrap();
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
        let mut nginx = Self {
            port,
            child: Some(child),
            dir,
        };
        let end = Instant::now() + DEADLINE;
        // Listening, and by this nginx: it is still running.
        while TcpStream::connect(("127.0.0.1", port)).is_err() || !nginx.is_running() {
            if !nginx.is_running() || Instant::now() >= end {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(nginx)
    }

    fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_none())
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
        .replace("access_log /dev/stdout rtchat;", &access_log());
    for (from, what) in [
        ("resolver 127.0.0.11 ", "resolver"),
        ("ws-server:3000", "upstream"),
        ("listen 80;", "listen"),
        ("access_log /dev/stdout rtchat;", "access log"),
    ] {
        assert!(
            original.contains(from) && !mapped.contains(from),
            "deploy config's {what} was not mapped"
        );
    }
    mapped
}

/// Into the run's log folder, for the check for tokens, when there is one.
fn access_log() -> String {
    match super::logs::file("nginx-access") {
        Some((path, _)) => format!("access_log {} rtchat;", path.display()),
        None => "access_log off;".into(),
    }
}
