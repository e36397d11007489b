//! Real Envoy (the release builds the test command installs) running the
//! repository's config.

use super::{DEADLINE, free_port, http_get, http_get_maybe, wait_for};
use std::process::{Child, Command, Stdio};

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
    /// Starts Envoy with the config `config(listen, admin)` returns, on
    /// free ports, retried when another process took one meanwhile.
    pub async fn start(config: impl Fn(u16, u16) -> String) -> Self {
        for _ in 0..5 {
            let (port, admin) = (free_port(), free_port());
            if let Some(envoy) = Self::try_start(config(port, admin), port, admin).await {
                return envoy;
            }
        }
        panic!("Envoy did not start");
    }

    async fn try_start(config: String, port: u16, admin: u16) -> Option<Self> {
        let dir = super::unique_dir("envoy");
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
        let mut envoy = Self {
            port,
            admin,
            child: Some(child),
            dir,
        };
        let ready = format!("http://127.0.0.1:{admin}/ready");
        let up = wait_for("Envoy to be ready or gone", DEADLINE, async || {
            if envoy.child.as_mut()?.try_wait().ok().flatten().is_some() {
                return Some(false); // exited: a port was taken
            }
            (http_get_maybe(&ready).await == Some(200)).then_some(true)
        })
        .await;
        up.then_some(envoy)
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
