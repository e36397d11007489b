//! The original's Python gRPC client, run against rtchat.

use super::{DEADLINE, wait_for};

/// Runs the Python grpcio walk-through (tests/python/client.py, stubs
/// generated from proto/ by grpcio-tools) against `addr`, changing Bob until
/// its subscription has printed one update: (exit ok, stdout, stderr).
pub async fn python_walk_through(addr: &str) -> (bool, String, String) {
    let root = env!("CARGO_MANIFEST_DIR");
    let stubs = super::unique_dir("pystubs");
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
