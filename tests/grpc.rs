//! The gRPC UserService, through the generated client and through `rtchat
//! grpc-client`: in the test's runtime where only the protocol is tested,
//! as a real `rtchat grpc-server` process where a signal or the log is.
//! Several replicas: `grpc_replicas.rs`.

#[macro_use]
mod common;

use common::grpc::*;
use common::*;
use futures_util::StreamExt;
use rtchat::grpc::pb::{Empty, UpdateUserRequest, UserRequest};
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;

async fn every_rpc_and_error(with_redis: bool) {
    let redis = with_redis.then(Redis::start);
    let server = Server::grpc("grpc-1", redis.as_ref(), &[]).await;
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
    let server = Server::grpc("grpc-1", redis.as_ref(), &[]).await;
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
    let server = Server::grpc("grpc-1", redis.as_ref(), &[]).await;
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
    std::fs::write(&dir, "s3cret-do-not-log\n").unwrap();
    let server = Process::grpc_server(
        "grpc-1",
        redis.as_ref().map(|r| r as &dyn RedisUrl),
        &["--auth-token-file", dir.to_str().unwrap()],
    );
    let addr = server.grpc_url();
    let (ok, _, err) = grpc_client(&addr, &["get", "1"]);
    assert!(!ok && err.starts_with("error: UNAUTHENTICATED"), "{err}");
    let (ok, _, err) = grpc_client(&addr, &["--token", "wrong", "get", "1"]);
    assert!(!ok && err.starts_with("error: UNAUTHENTICATED"), "{err}");
    assert!(grpc_client(&addr, &["--token", "s3cret-do-not-log", "get", "1"]).0);
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
    let mut server =
        Process::grpc_server("grpc-1", redis.as_ref().map(|r| r as &dyn RedisUrl), &[]);
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

/// A line per call only when the filter asks for `rtchat::grpc` at debug:
/// by default an access log would cost a quarter of each call's CPU.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_are_logged_only_when_asked() {
    for (filter, logged) in [
        ("warn,rtchat=info", false),
        ("warn,rtchat=info,rtchat::grpc=debug", true),
    ] {
        let mut server = Process::spawn_server_logging(&["grpc-server", "--id", "grpc-1"], filter);
        let mut c = client(&server).await;
        c.get_user(UserRequest { id: 1 }).await.unwrap();
        server.signal("TERM");
        assert!(server.wait_exit().await.success());
        // Lines arrive in order: once the last is read, the call's would be.
        wait_for("the log to end", DEADLINE, async || {
            server.logged("grpc-server stopped").then_some(())
        })
        .await;
        let line = "method=/userservice.UserService/GetUser";
        assert_eq!(server.logged(line), logged, "{filter}: {:#?}", server.log);
    }
}

/// A request far over any real user is refused before it is decoded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_requests_are_refused() {
    let server = Server::grpc("grpc-1", None, &[]).await;
    let mut c = client(&server).await;
    let huge = "x".repeat(100_000);
    let err = c
        .create_user(create(&huge, "huge@example.com"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::OutOfRange, "{err:?}");
    let err = c
        .create_user(create(&"y".repeat(101), "long@example.com"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "over the name limit");
    assert_eq!(list(&mut c).await.len(), 2, "nothing was created");
}
