//! Headless Chromium (Debian's), driven through chromedriver.

use super::{DEADLINE, free_port};
use fantoccini::ClientBuilder;
pub use fantoccini::{Client as Browser, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A chromedriver process and the headless Chromium it drives.
pub struct Driver {
    child: Child,
    port: u16,
    profiles: std::path::PathBuf,
}

impl Driver {
    pub fn start() -> Self {
        let port = free_port();
        // Its own process group, so that dropping it ends the Chromium
        // processes it started too (they outlive a killed chromedriver).
        let child = Command::new("chromedriver")
            .process_group(0)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver not found; the README's test command installs chromium-driver");
        let end = std::time::Instant::now() + DEADLINE;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < end,
                "chromedriver did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let profiles = std::env::temp_dir().join(format!("rtchat-chromium-{port}"));
        Self {
            child,
            port,
            profiles,
        }
    }

    pub async fn browser(&self, n: usize) -> Browser {
        let profile = self.profiles.join(n.to_string());
        let args = serde_json::json!([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--disable-quic",
            "--window-size=900,640",
            format!("--user-data-dir={}", profile.display()),
        ]);
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({"binary": "/usr/bin/chromium", "args": args}),
        );
        ClientBuilder::new(HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{}", self.port))
            .await
            .expect("a Chromium session")
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profiles);
    }
}

pub async fn text(page: &Browser, css: &str) -> String {
    match page.find(Locator::Css(css)).await {
        Ok(element) => element.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

pub async fn attr(page: &Browser, css: &str, name: &str) -> Option<String> {
    page.find(Locator::Css(css))
        .await
        .ok()?
        .attr(name)
        .await
        .ok()?
}

pub async fn message_lines(page: &Browser) -> Vec<String> {
    let mut lines = Vec::new();
    for li in page
        .find_all(Locator::Css("#messages li.msg"))
        .await
        .unwrap()
    {
        lines.push(li.text().await.unwrap());
    }
    lines
}
