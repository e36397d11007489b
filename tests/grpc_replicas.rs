//! Several grpc-server replicas on one private Redis, as real processes:
//! they agree on users, every change reaches every subscriber, and an
//! outage is reported, survived and caught up on. The first two scenarios
//! run on a Redis Cluster too.

#[macro_use]
mod common;

use common::grpc::*;
use common::*;
use futures_util::StreamExt;
use rtchat::grpc::pb::{Empty, UserRequest};
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;

on_one_redis_and_a_cluster!(
    replicas_on_one_redis_agree,
    updates_made_while_a_replica_was_cut_off_still_reach_its_subscribers,
);

async fn replicas_on_one_redis_agree(redis: Shared) {
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
async fn updates_made_while_a_replica_was_cut_off_still_reach_its_subscribers(redis: Shared) {
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

/// A store written before its keys shared the `{users}` hash tag is moved
/// to the tagged names at start-up, once: every user, the email index and
/// the id counter are kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_from_before_hash_tags_is_kept() {
    let redis = Redis::start();
    for (id, name, email) in [
        (1, "Alice", "alice@example.com"),
        (7, "Old", "Old@example.com"),
    ] {
        let key = format!("rtchat:user:{id}");
        let created = "2026-01-01T00:00:00Z";
        redis.cli(&[
            "HSET",
            &key,
            "name",
            name,
            "email",
            email,
            "created_at",
            created,
        ]);
        redis.cli(&["ZADD", "rtchat:users:ids", &id.to_string(), &id.to_string()]);
        let lower = email.to_lowercase();
        redis.cli(&["HSET", "rtchat:users:emails", &lower, &id.to_string()]);
    }
    redis.cli(&["SET", "rtchat:users:next_id", "7"]);

    let a = Process::grpc_server("grpc-a", Some(&redis), &[]);
    let mut c = client(&a).await;
    let old = c
        .get_user(UserRequest { id: 7 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (old.name.as_str(), old.email.as_str()),
        ("Old", "Old@example.com")
    );
    assert_eq!(list(&mut c).await.len(), 2, "kept, not seeded again");
    let taken = c.create_user(create("Again", "old@example.com")).await;
    assert_eq!(taken.unwrap_err().code(), Code::AlreadyExists);
    let next = c
        .create_user(create("New", "new@example.com"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(next.id, 8, "the counter went on");
    assert_eq!(
        redis.cli(&["EXISTS", "rtchat:users:next_id", "rtchat:user:7"]),
        "0"
    );
}
