//! The gRPC UserService against real `rtchat grpc-server` processes, through
//! the generated client and through `rtchat grpc-client`.

#[macro_use]
mod common;

use common::*;
use futures_util::StreamExt;
use rtchat::grpc::pb::user_service_client::UserServiceClient;
use rtchat::grpc::pb::{
    CreateUserRequest, Empty, UpdateUserRequest, UserRequest, UserResponse, UserUpdate,
};
use std::time::Duration;
use tonic::Code;
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

async fn client(server: &Process) -> UserServiceClient<Channel> {
    UserServiceClient::connect(server.grpc_url())
        .await
        .expect("connect")
}

fn create(name: &str, email: &str) -> CreateUserRequest {
    CreateUserRequest {
        name: name.into(),
        email: email.into(),
    }
}

async fn list(c: &mut UserServiceClient<Channel>) -> Vec<UserResponse> {
    let stream = c.list_users(Empty {}).await.unwrap().into_inner();
    stream.map(Result::unwrap).collect().await
}

async fn health(server: &Process) -> Result<ServingStatus, tonic::Status> {
    let channel = Channel::from_shared(server.grpc_url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut h = HealthClient::new(channel);
    let mut request = tonic::Request::new(HealthCheckRequest {
        service: "userservice.UserService".into(),
    });
    request.set_timeout(Duration::from_secs(2));
    Ok(h.check(request).await?.into_inner().status())
}

async fn next_update(stream: &mut tonic::Streaming<UserUpdate>) -> UserUpdate {
    tokio::time::timeout(DEADLINE, stream.next())
        .await
        .expect("an update in time")
        .expect("stream open")
        .unwrap()
}

async fn every_rpc_and_error(with_redis: bool) {
    let redis = with_redis.then(Redis::start);
    let server = Process::grpc_server("grpc-1", redis.as_ref(), &[]);
    let mut c = client(&server).await;

    let alice = c
        .get_user(UserRequest { id: 1 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (alice.id, alice.name.as_str(), alice.email.as_str()),
        (1, "Alice", "alice@example.com")
    );
    assert!(
        humantime::parse_rfc3339(&alice.created_at).is_ok(),
        "{}",
        alice.created_at
    );
    let again = c
        .get_user(UserRequest { id: 1 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        again.created_at, alice.created_at,
        "created_at is fixed at creation"
    );

    let missing = c.get_user(UserRequest { id: 999 }).await.unwrap_err();
    assert_eq!(
        (missing.code(), missing.message()),
        (Code::NotFound, "User not found")
    );

    let mut updates = c.subscribe_to_updates(Empty {}).await.unwrap().into_inner();

    for (name, email) in [
        ("", "a@b.co"),
        ("  ", "a@b.co"),
        ("X", "not-an-email"),
        ("X", ""),
        (&*"n".repeat(101), "a@b.co"),
    ] {
        let err = c.create_user(create(name, email)).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{name:?} {email:?}");
        assert!(!err.message().is_empty());
    }
    let dup = c
        .create_user(create("Alias", "ALICE@example.com"))
        .await
        .unwrap_err();
    assert_eq!(dup.code(), Code::AlreadyExists);

    let carol = c
        .create_user(create("Carol", "carol@example.com"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(carol.id, 3);
    let update = next_update(&mut updates).await;
    assert_eq!(
        (update.action.as_str(), update.user.unwrap()),
        ("created", carol.clone())
    );

    let renamed = c
        .update_user(UpdateUserRequest {
            id: 3,
            name: "Caro".into(),
            email: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (renamed.name.as_str(), renamed.email.as_str()),
        ("Caro", "carol@example.com")
    );
    assert_eq!(next_update(&mut updates).await.action, "updated");
    let taken = c
        .update_user(UpdateUserRequest {
            id: 3,
            name: String::new(),
            email: "bob@example.com".into(),
        })
        .await;
    assert_eq!(taken.unwrap_err().code(), Code::AlreadyExists);
    let unknown = c
        .update_user(UpdateUserRequest {
            id: 77,
            name: "X".into(),
            email: String::new(),
        })
        .await;
    assert_eq!(unknown.unwrap_err().code(), Code::NotFound);

    assert_eq!(
        list(&mut c).await.iter().map(|u| u.id).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    let deleted = c
        .delete_user(UserRequest { id: 2 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(deleted.name, "Bob");
    let update = next_update(&mut updates).await;
    assert_eq!(
        (update.action.as_str(), update.user.unwrap().name.as_str()),
        ("deleted", "Bob")
    );
    assert_eq!(
        c.delete_user(UserRequest { id: 2 })
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
    assert_eq!(
        list(&mut c)
            .await
            .iter()
            .map(|u| u.name.as_str())
            .collect::<Vec<_>>(),
        ["Alice", "Caro"]
    );
    assert_eq!(health(&server).await.unwrap(), ServingStatus::Serving);
}

async fn list_streams_many_users_in_order(with_redis: bool) {
    let redis = with_redis.then(Redis::start);
    let server = Process::grpc_server("grpc-1", redis.as_ref(), &[]);
    let mut c = client(&server).await;
    // More than one store page (256), created concurrently.
    let creates = (0..600).map(|i| {
        let mut c = c.clone();
        async move {
            c.create_user(create(&format!("U{i}"), &format!("u{i}@example.com")))
                .await
                .unwrap()
        }
    });
    futures_util::future::join_all(creates).await;
    let ids: Vec<i32> = list(&mut c).await.iter().map(|u| u.id).collect();
    assert_eq!(ids, (1..=602).collect::<Vec<_>>());
}

async fn cli_prints_the_fixed_lines(with_redis: bool) {
    let redis = with_redis.then(Redis::start);
    let server = Process::grpc_server("grpc-1", redis.as_ref(), &[]);
    let addr = server.grpc_url();
    assert_eq!(
        grpc_client(&addr, &["get", "1"]),
        (
            true,
            "User: Alice (alice@example.com)\n".into(),
            String::new()
        )
    );
    assert_eq!(
        grpc_client(&addr, &["list"]).1,
        "- Alice (alice@example.com)\n- Bob (bob@example.com)\n"
    );
    assert_eq!(
        grpc_client(&addr, &["create", "Dan", "dan@example.com"]).1,
        "Created: Dan with ID 3\n"
    );
    let (ok, out, err) = grpc_client(&addr, &["get", "42"]);
    assert!(!ok && out.is_empty(), "a failed call exits non-zero");
    assert_eq!(err, "error: NOT_FOUND: User not found\n");
    let (ok, _, err) = grpc_client(&addr, &["create", "Eve", "nope"]);
    assert!(!ok && err.starts_with("error: INVALID_ARGUMENT: "), "{err}");
    let (ok, out, _) = grpc_client(&addr, &["--json", "get", "3"]);
    let user: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(ok && user["name"] == "Dan" && user["id"] == 3);
    let (ok, out, _) = grpc_client(&addr, &["list", "--json"]);
    assert!(
        ok && out
            .lines()
            .all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok())
            && out.lines().count() == 3
    );
    assert_eq!(grpc_client(&addr, &["health"]).1, "SERVING\n");

    // The walk-through ends by itself, and again on the same store.
    let (ok, first, err) = grpc_client(&addr, &["demo"]);
    assert!(ok, "{err}");
    assert!(
        first.contains("User: Alice (alice@example.com)")
            && first.contains("Created: Charlie with ID 4"),
        "{first}"
    );
    assert!(
        first.contains("created: Charlie") && first.contains("updated: Charlie"),
        "{first}"
    );
    let (ok, second, err) = grpc_client(&addr, &["demo"]);
    assert!(ok, "{err}");
    assert!(
        second.contains("Charlie already exists with ID 4") && second.contains("updated: Charlie"),
        "{second}"
    );

    // Subscribe prints what happens elsewhere, and stops at --count.
    let mut subscriber = rtchat()
        .args(["grpc-client", "--addr", &addr, "subscribe", "--count", "2"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut c = client(&server).await;
    let mut seen = false;
    // The subscription opens in the background: keep changing Dan until the
    // subscriber has printed two updates and exited.
    let status = wait_for(
        "the subscriber to print two updates",
        DEADLINE,
        async || {
            seen = !seen;
            let name = if seen { "Dan" } else { "Daniel" };
            c.update_user(UpdateUserRequest {
                id: 3,
                name: name.into(),
                email: String::new(),
            })
            .await
            .unwrap();
            subscriber.try_wait().unwrap()
        },
    )
    .await;
    assert!(status.success());
    let mut out = String::new();
    std::io::Read::read_to_string(&mut subscriber.stdout.take().unwrap(), &mut out).unwrap();
    assert_eq!(out.lines().count(), 2, "{out}");
    assert!(out.lines().all(|l| l.starts_with("updated: Dan")), "{out}");
}

async fn bearer_token_guards_the_service(with_redis: bool) {
    let redis = with_redis.then(Redis::start);
    let dir = std::env::temp_dir().join(format!("rtchat-token-{}", free_port()));
    std::fs::write(&dir, "s3cret\n").unwrap();
    let server = Process::grpc_server(
        "grpc-1",
        redis.as_ref(),
        &["--auth-token-file", dir.to_str().unwrap()],
    );
    let addr = server.grpc_url();
    let (ok, _, err) = grpc_client(&addr, &["get", "1"]);
    assert!(!ok && err.starts_with("error: UNAUTHENTICATED"), "{err}");
    let (ok, _, err) = grpc_client(&addr, &["--token", "wrong", "get", "1"]);
    assert!(!ok && err.starts_with("error: UNAUTHENTICATED"), "{err}");
    assert!(grpc_client(&addr, &["--token", "s3cret", "get", "1"]).0);
    assert_eq!(
        health(&server).await.unwrap(),
        ServingStatus::Serving,
        "health needs no token"
    );
    let log = server.log.lock().unwrap().join("\n");
    assert!(!log.contains("s3cret"), "the token never reaches the log");
    let _ = std::fs::remove_file(dir);
}

async fn sigterm_ends_streams_and_exits_cleanly(with_redis: bool) {
    let redis = with_redis.then(Redis::start);
    let mut server = Process::grpc_server("grpc-1", redis.as_ref(), &[]);
    let mut c = client(&server).await;
    let mut updates = c.subscribe_to_updates(Empty {}).await.unwrap().into_inner();
    c.create_user(create("Zed", "zed@example.com"))
        .await
        .unwrap();
    assert_eq!(next_update(&mut updates).await.action, "created");
    server.signal("TERM");
    let end = tokio::time::timeout(DEADLINE, updates.next())
        .await
        .expect("stream ended in time");
    assert!(
        end.is_none(),
        "the stream ends cleanly, not with an error: {end:?}"
    );
    assert!(server.wait_exit().await.success());
}

in_both_modes!(
    every_rpc_and_error,
    list_streams_many_users_in_order,
    cli_prints_the_fixed_lines,
    bearer_token_guards_the_service,
    sigterm_ends_streams_and_exits_cleanly,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_on_one_redis_agree() {
    let redis = Redis::start();
    let a = Process::grpc_server("grpc-a", Some(&redis), &[]);
    let b = Process::grpc_server("grpc-b", Some(&redis), &[]);
    let (mut ca, mut cb) = (client(&a).await, client(&b).await);
    assert_eq!(
        list(&mut ca).await.len(),
        2,
        "seeded once, not once per replica"
    );

    let made = ca
        .create_user(create("Ann", "ann@example.com"))
        .await
        .unwrap()
        .into_inner();
    let read = cb
        .get_user(UserRequest { id: made.id })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(made, read, "same id and created_at on the other replica");

    let mut updates = ca
        .subscribe_to_updates(Empty {})
        .await
        .unwrap()
        .into_inner();
    let creates = (0..50).map(|i| {
        let mut c = if i % 2 == 0 { ca.clone() } else { cb.clone() };
        async move {
            c.create_user(create(&format!("P{i}"), &format!("p{i}@example.com")))
                .await
                .unwrap()
                .into_inner()
                .id
        }
    });
    let mut ids = futures_util::future::join_all(creates).await;
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 50, "50 distinct ids");

    // Every creation, on either replica, reaches the subscriber on A.
    let mut seen = std::collections::HashSet::new();
    while seen.len() < 50 {
        let update = next_update(&mut updates).await;
        assert_eq!(update.action, "created");
        seen.insert(update.user.unwrap().id);
    }
    assert_eq!(
        seen.into_iter().collect::<std::collections::BTreeSet<_>>(),
        ids.into_iter().collect()
    );
    assert_eq!(list(&mut cb).await.len(), 53);
}

/// Gap: a subscriber used to miss, silently, every update made while its
/// replica's pub/sub connection was down. Now the replica reads them back
/// from the update log and sends them in order (or, had the log lost some,
/// would end the stream with UNAVAILABLE).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_made_while_a_replica_was_cut_off_still_reach_its_subscribers() {
    let redis = Redis::start();
    let a = Process::grpc_server("grpc-a", Some(&redis), &[]);
    let b = Process::grpc_server("grpc-b", Some(&redis), &[]);
    let (mut ca, mut cb) = (client(&a).await, client(&b).await);
    let mut updates = ca
        .subscribe_to_updates(Empty {})
        .await
        .unwrap()
        .into_inner();
    // Proves the subscription is live before the cuts.
    let first = cb
        .create_user(create("First", "first@example.com"))
        .await
        .unwrap();
    assert_eq!(
        next_update(&mut updates).await.user.unwrap(),
        first.into_inner()
    );

    // Each cut is followed at once by a change through B, well inside the
    // time A's subscriber takes to reconnect.
    let mut made = Vec::new();
    for i in 0..5 {
        redis.kill_subscribers();
        let user = cb
            .create_user(create(&format!("Cut{i}"), &format!("cut{i}@example.com")))
            .await
            .unwrap()
            .into_inner();
        made.push(user);
    }
    let mut seen = Vec::new();
    while seen.len() < made.len() {
        match tokio::time::timeout(DEADLINE, updates.next()).await {
            Ok(Some(Ok(update))) => seen.push(update.user.unwrap()),
            Ok(Some(Err(status))) => {
                panic!("the log holds every missed update, yet the stream ended: {status:?}")
            }
            Ok(None) => panic!("stream ended without an error"),
            Err(_) => panic!("missed updates never arrived: got {seen:?} of {made:?}"),
        }
    }
    assert_eq!(seen, made, "every update once, in order");
    // And live updates flow again afterwards.
    let after = ca
        .create_user(create("After", "after@example.com"))
        .await
        .unwrap();
    assert_eq!(
        next_update(&mut updates).await.user.unwrap(),
        after.into_inner()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_is_unavailable_then_recovers() {
    let mut redis = Redis::start();
    let a = Process::grpc_server("grpc-a", Some(&redis), &["--redis-timeout", "1s"]);
    let b = Process::grpc_server("grpc-b", Some(&redis), &["--redis-timeout", "1s"]);
    let (mut ca, mut cb) = (client(&a).await, client(&b).await);
    ca.get_user(UserRequest { id: 1 }).await.unwrap();

    redis.stop();
    for server in [&a, &b] {
        wait_for("health NOT_SERVING", DEADLINE, async || {
            (health(server).await.ok() == Some(ServingStatus::NotServing)).then_some(())
        })
        .await;
    }
    for c in [&mut ca, &mut cb] {
        let started = std::time::Instant::now();
        let err = c.get_user(UserRequest { id: 1 }).await.unwrap_err();
        assert_eq!(err.code(), Code::Unavailable, "{err:?}");
        assert!(started.elapsed() < DEADLINE, "no hang");
        assert_eq!(
            c.create_user(create("Q", "q@example.com"))
                .await
                .unwrap_err()
                .code(),
            Code::Unavailable
        );
    }

    redis.restart();
    for server in [&a, &b] {
        wait_for("health SERVING", DEADLINE, async || {
            (health(server).await.ok() == Some(ServingStatus::Serving)).then_some(())
        })
        .await;
    }
    // Redis came back empty: a new store, seeded again.
    for c in [&mut ca, &mut cb] {
        let alice = wait_for("Alice after the restart", DEADLINE, async || {
            c.get_user(UserRequest { id: 1 }).await.ok()
        })
        .await;
        assert_eq!(alice.into_inner().name, "Alice");
    }
    let made = ca
        .create_user(create("R", "r@example.com"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        cb.get_user(UserRequest { id: made.id })
            .await
            .unwrap()
            .into_inner(),
        made
    );
}
