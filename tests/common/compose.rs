//! The stack of deploy/ under a real Docker engine: started when none
//! answers (and stopped again only then), Compose v2 as a CLI plugin, the
//! public images replaced by local stand-ins (tests/compose/standins.sh),
//! and the real compose file brought up and down.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const FILE: &str = "deploy/docker-compose.yml";

/// A Docker engine this test started, stopped when dropped.
pub struct Engine {
    started: Option<Child>,
}

fn docker_answers() -> bool {
    Command::new("docker")
        .arg("info")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

impl Engine {
    pub fn ensure() -> Self {
        if docker_answers() {
            return Self { started: None };
        }
        let log = std::fs::File::create(Path::new(ROOT).join("target/dockerd.log")).unwrap();
        let child = Command::new("dockerd")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("dockerd not found; the README's test command installs docker.io");
        super::topology::wait_until("the Docker engine", Duration::from_secs(60), docker_answers);
        Self {
            started: Some(child),
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        if let Some(mut child) = self.started.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }
}

/// Runs a command from the repository root; its stdout, or a panic with
/// everything it printed.
pub fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .current_dir(ROOT)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{program} {args:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// `docker compose -f deploy/docker-compose.yml ...`, bounded: a cold
/// build takes minutes, nothing takes half an hour.
pub fn compose(args: &[&str]) -> String {
    let mut all = vec!["1800", "docker", "compose", "-f", FILE];
    all.extend(args);
    run("timeout", &all)
}

/// The stack, up; `down -v` when dropped, whatever happened.
pub struct Stack;

impl Stack {
    pub fn up() -> Self {
        run("timeout", &["1800", "bash", "tests/compose/standins.sh"]);
        let stack = Stack;
        compose(&["up", "--build", "--wait", "--wait-timeout", "300"]);
        stack
    }

    /// Container ids of a service's running containers.
    pub fn containers(&self, service: &str) -> Vec<String> {
        compose(&["ps", "-q", service])
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// The host name a container's replica names itself by (`ws-<host>`).
    pub fn hostname(&self, container: &str) -> String {
        run(
            "docker",
            &["inspect", "-f", "{{.Config.Hostname}}", container],
        )
        .trim()
        .to_owned()
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["compose", "-f", FILE, "down", "-v", "--timeout", "20"])
            .current_dir(ROOT)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}
