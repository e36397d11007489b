//! deploy/ brought up for real: `docker compose up --build --wait` of the
//! repository's own compose file and Dockerfile on a real Docker engine,
//! then used as its users would, from the host, only through the ports it
//! publishes on 127.0.0.1 (nginx on 80, Envoy on 9000).

mod common;

use common::compose::*;
use common::grpc::create;
use common::*;
use rtchat::grpc::pb::UserRequest;
use rtchat::grpc::pb::user_service_client::UserServiceClient;
use std::collections::BTreeSet;

const CHAT: &str = "ws://127.0.0.1/ws";
const GRPC: &str = "http://127.0.0.1:9000";

/// Connects through nginx until `n` distinct replicas have answered.
async fn clients_on_replicas(n: usize) -> Vec<Client> {
    let mut clients: Vec<Client> = Vec::new();
    wait_for(
        "nginx to spread clients over the replicas",
        6 * DEADLINE,
        async || {
            clients.push(Client::connect(CHAT).await);
            let servers: BTreeSet<&str> = clients.iter().map(|c| c.server.as_str()).collect();
            (servers.len() >= n).then_some(())
        },
    )
    .await;
    clients
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_compose_stack_runs_and_survives_its_faults() {
    let _engine = Engine::ensure();
    let stack = tokio::task::spawn_blocking(Stack::up).await.unwrap();

    // Chat through nginx reaches several replicas; every member gets every
    // message.
    let mut members = clients_on_replicas(3).await;
    for m in &mut members {
        m.join("compose").await;
    }
    let mut sender = Client::connect(CHAT).await;
    sender.say("compose", "hello").await;
    for m in &mut members {
        assert_eq!(m.recv_type("message").await["message"], "hello");
    }
    drop(members);

    // The gRPC walk-through, through Envoy, as the client profile runs it.
    let demo = tokio::task::spawn_blocking(|| {
        compose(&["--profile", "client", "run", "--rm", "grpc-client"])
    })
    .await
    .unwrap();
    assert!(!demo.is_empty(), "the walk-through printed nothing");

    // Five replicas, nginx untouched: traffic reaches the new ones.
    tokio::task::spawn_blocking(|| compose(&["up", "-d", "--wait", "--scale", "ws-server=5"]))
        .await
        .unwrap();
    let spread = clients_on_replicas(5).await;
    drop(spread);

    // A replica killed with a client on it: the client comes back through
    // nginx and resumes with nothing lost.
    let mut member = Client::connect(CHAT).await;
    let position = member.join("resume").await["last_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let victim = stack
        .containers("ws-server")
        .into_iter()
        .find(|c| member.server == format!("ws-{}", stack.hostname(c)))
        .expect("the member's replica");
    run("docker", &["kill", &victim]);
    assert_eq!(member.recv_close().await, None, "killed: no close frame");
    let sent: Vec<String> = (0..10).map(|n| format!("while away {n}")).collect();
    let mut sender = wait_for("a replica that is alive", DEADLINE, async || {
        let c = Client::connect(CHAT).await;
        Some(c)
    })
    .await;
    for text in &sent {
        sender.say("resume", text).await;
    }
    let mut back = Client::connect(CHAT).await;
    assert_eq!(
        back.join_since("resume", &position).await["recovered"],
        true
    );
    sender.say("resume", "end").await;
    assert_eq!(back.texts_until("end").await, sent);

    // A grpc-server killed: Envoy keeps answering from the other.
    let mut users = UserServiceClient::connect(GRPC).await.unwrap();
    let ann = users
        .create_user(create("Ann", "ann@example.com"))
        .await
        .unwrap()
        .into_inner();
    let grpc_victim = stack.containers("grpc-server-1").remove(0);
    run("docker", &["kill", &grpc_victim]);
    for _ in 0..10 {
        let got = users.get_user(UserRequest { id: ann.id }).await;
        assert_eq!(
            got.unwrap().into_inner(),
            ann,
            "Envoy answers from grpc-server-2"
        );
    }

    // Redis restarted: users and history survive (append-only file on the
    // volume).
    tokio::task::spawn_blocking(|| compose(&["restart", "redis"]))
        .await
        .unwrap();
    wait_for("Ann after the Redis restart", 3 * DEADLINE, async || {
        users.get_user(UserRequest { id: ann.id }).await.ok()
    })
    .await;
    let mut later = wait_for("chat after the Redis restart", 3 * DEADLINE, async || {
        let mut c = Client::connect(CHAT).await;
        let joined = c.join_since("resume", &position).await;
        (joined["recovered"] == true).then_some(c)
    })
    .await;
    let replayed = later.texts_until("end").await;
    assert_eq!(replayed, sent, "history kept across the restart");

    // Stopped: every rtchat container still running exits 0 within its
    // grace period (the two killed above exited 137).
    let killed = [victim, grpc_victim];
    let running = compose(&["ps", "-q"]);
    tokio::task::spawn_blocking(|| compose(&["stop"]))
        .await
        .unwrap();
    for container in running.lines() {
        let state = run(
            "docker",
            &[
                "inspect",
                "-f",
                "{{.Config.Image}} {{.State.ExitCode}} {{.Name}}",
                container,
            ],
        );
        let fields: Vec<&str> = state.split_whitespace().collect();
        if fields[0] == "rtchat:latest" && !killed.iter().any(|k| k.starts_with(container)) {
            assert_eq!(fields[1], "0", "{state}");
        }
    }
    drop(stack);
}
