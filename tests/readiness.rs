//! Readiness means a command works: a Redis that keeps its connections but
//! refuses writes (here: out of memory) turns ws-server's `/readyz` to 503
//! and grpc-server's health to NOT_SERVING, and keeps them there, not
//! flapping back between failures, until writes work again.

mod common;

use common::*;
use std::time::Duration;
use tonic_health::pb::health_check_response::ServingStatus;

async fn ready(ws: &Server, grpc: &Server) -> (bool, bool) {
    let ws_ready = http_get(&ws.http_url("/readyz")).await.0 == 200;
    let grpc_ready = matches!(grpc::health(grpc).await, Ok(ServingStatus::Serving));
    (ws_ready, grpc_ready)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_a_command_that_works() {
    let redis = Redis::start();
    let ws = Server::ws("server-1", Some(&redis), &[]).await;
    let grpc = Server::grpc("grpc-1", Some(&redis), &[]).await;
    wait_for("both ready", DEADLINE, async || {
        (ready(&ws, &grpc).await == (true, true)).then_some(())
    })
    .await;

    redis.cli(&["config", "set", "maxmemory-policy", "noeviction"]);
    redis.cli(&["config", "set", "maxmemory", "1"]);
    wait_for("both not ready", DEADLINE, async || {
        (ready(&ws, &grpc).await == (false, false)).then_some(())
    })
    .await;
    // Steadily so: across several of the one-second probes.
    let mut checks = tokio::time::interval(Duration::from_millis(250));
    for _ in 0..12 {
        checks.tick().await;
        assert_eq!(ready(&ws, &grpc).await, (false, false), "flapped back");
    }
    // And a member sees why: the post is refused as unavailable.
    let mut ana = Client::connect(&ws.ws_url()).await;
    ana.send(serde_json::json!({"type": "join_room", "room": "r"}))
        .await;
    let refused = ana.recv_type("error").await;
    assert_eq!(refused["code"], "unavailable", "{refused}");

    redis.cli(&["config", "set", "maxmemory", "0"]);
    wait_for("both ready again", DEADLINE, async || {
        (ready(&ws, &grpc).await == (true, true)).then_some(())
    })
    .await;
}
