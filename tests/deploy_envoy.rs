//! The repository's own deploy/envoy/envoy.yaml on real Envoy (installed by
//! the test command from PyPI), in front of grpc-server replicas sharing a
//! private Redis.

mod common;

use common::*;
use futures_util::StreamExt;
use rtchat::grpc::pb::user_service_client::UserServiceClient;
use rtchat::grpc::pb::{CreateUserRequest, Empty, UserRequest};
use std::process::Command;
use std::time::Duration;
use tonic::transport::Channel;

struct Deployment {
    _redis: Redis,
    replicas: Vec<Process>,
    envoy: Envoy,
}

impl Deployment {
    async fn start() -> Self {
        let redis = Redis::start();
        let replicas: Vec<Process> = (1..=2)
            .map(|i| Process::grpc_server(&format!("grpc-server-{i}"), Some(&redis), &[]))
            .collect();
        let ports: Vec<u16> = replicas.iter().map(|r| r.addr.port()).collect();
        let envoy = Envoy::start(|port, admin| deploy_envoy_config(&ports, port, admin)).await;
        Self {
            _redis: redis,
            replicas,
            envoy,
        }
    }

    async fn client(&self) -> UserServiceClient<Channel> {
        let envoy = self.envoy.url();
        // Until the first health checks pass Envoy has no healthy host.
        wait_for("a call through Envoy to succeed", DEADLINE, async || {
            let mut c = UserServiceClient::connect(envoy.clone()).await.ok()?;
            c.get_user(UserRequest { id: 1 }).await.ok()?;
            Some(c)
        })
        .await
    }
}

#[test]
fn config_validates_on_oldest_and_newest_envoy_without_deprecations() {
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/envoy/envoy.yaml");
    for version in ENVOY_VERSIONS {
        let out = Command::new(envoy_binary(version))
            .args(["--mode", "validate", "--use-dynamic-base-id", "-c", config])
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success(),
            "Envoy {version} rejects the config: {text}"
        );
        assert!(
            !text.to_lowercase().contains("deprecated"),
            "Envoy {version} warns: {text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_are_balanced_consistent_and_survive_a_killed_replica() {
    let mut d = Deployment::start().await;
    let mut c = d.client().await;

    let made = c
        .create_user(CreateUserRequest {
            name: "Ann".into(),
            email: "ann@example.com".into(),
        })
        .await
        .unwrap()
        .into_inner();
    for replica in &d.replicas {
        let mut direct = UserServiceClient::connect(replica.grpc_url())
            .await
            .unwrap();
        assert_eq!(
            direct
                .get_user(UserRequest { id: made.id })
                .await
                .unwrap()
                .into_inner(),
            made
        );
    }

    for _ in 0..20 {
        c.get_user(UserRequest { id: 1 }).await.unwrap();
    }
    let spread = d.envoy.requests_per_upstream().await;
    for replica in &d.replicas {
        let n = spread.get(&replica.addr.port()).copied().unwrap_or(0);
        assert!(n >= 5, "round robin reaches every replica: {spread:?}");
    }

    d.replicas[0].kill();
    // Before any health check has noticed: round robin still picks the dead
    // replica for every other stream, and Envoy must try the other one.
    for i in 0..4 {
        let opened = c.subscribe_to_updates(Empty {}).await;
        assert!(
            opened.is_ok(),
            "subscription {i} after the kill: {opened:?}"
        );
    }
    for i in 0..50 {
        let result = c.get_user(UserRequest { id: 1 }).await;
        assert!(result.is_ok(), "call {i} after the kill failed: {result:?}");
    }

    // The original's Python client, unchanged, through Envoy.
    let (ok, out, err) = python_walk_through(&d.envoy.url()).await;
    assert!(ok, "{err}");
    assert!(
        out.contains("User: Alice (alice@example.com)") && out.contains("Created: Charlie with ID"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_through_envoy_outlives_20_seconds() {
    let d = Deployment::start().await;
    let mut c = d.client().await;
    let mut updates = c.subscribe_to_updates(Empty {}).await.unwrap().into_inner();
    c.create_user(CreateUserRequest {
        name: "First".into(),
        email: "first@example.com".into(),
    })
    .await
    .unwrap();
    let first = tokio::time::timeout(DEADLINE, updates.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(first.user.unwrap().name, "First");

    // The scenario itself: a quiet stream, longer than Envoy's 15 s default
    // route timeout would allow.
    tokio::time::sleep(Duration::from_secs(21)).await;

    c.create_user(CreateUserRequest {
        name: "Later".into(),
        email: "later@example.com".into(),
    })
    .await
    .unwrap();
    let later = tokio::time::timeout(DEADLINE, updates.next())
        .await
        .unwrap();
    assert_eq!(
        later
            .expect("stream still open")
            .unwrap()
            .user
            .unwrap()
            .name,
        "Later"
    );
}
