//! Publishes reach Redis in groups (group commit): what arrives while a
//! group is in flight goes together in one script call. Each publish still
//! gets its own id and answer, a poster's messages keep their order, an
//! idempotency key still stores once, and a publish that fails inside a
//! group fails alone. On a real Redis and a real Redis Cluster, through
//! the broadcast the servers use.

mod common;

use bytes::Bytes;
use common::faults::{Fault, FaultyLink};
use common::topology::RedisCluster;
use common::*;
use rtchat::broadcast::{Broadcast, BroadcastError, From, HistoryPolicy};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

const POSTERS: usize = 8;
const POSTS_EACH: usize = 50;
const TOPICS: usize = 4;
/// What a test posts first, so that Redis knows the script before the
/// count of script calls starts.
const WARM_UP: &str = "warm-up";

async fn log(url: String) -> Arc<dyn Broadcast> {
    let policy = HistoryPolicy {
        max_len: 1000,
        max_age: Duration::from_secs(3600),
    };
    in_process::redis_log(url, policy).await
}

/// Script calls Redis ran so far, summed over the given servers.
fn script_calls(nodes: &[&Redis]) -> u64 {
    nodes
        .iter()
        .map(|node| {
            let stats = node.cli(&["INFO", "commandstats"]);
            stats
                .lines()
                .find_map(|l| l.strip_prefix("cmdstat_evalsha:calls="))
                .and_then(|rest| rest.split(',').next())
                .map_or(0, |n| n.parse().unwrap())
        })
        .sum()
}

/// Posters each post one message at a time, as a socket does, all at
/// once; every post's answer, by poster.
async fn post_concurrently(log: &Arc<dyn Broadcast>) -> Vec<Vec<(String, u64, Bytes)>> {
    let posters = (0..POSTERS).map(|p| {
        let log = log.clone();
        tokio::spawn(async move {
            let mut answers = Vec::new();
            for n in 0..POSTS_EACH {
                let topic = format!("group-{}", (p + n) % TOPICS);
                let payload = Bytes::from(format!("{p}:{n}"));
                let id = log.publish(&topic, payload.clone()).await.expect("stored");
                answers.push((topic, id, payload));
            }
            answers
        })
    });
    let posters: Vec<_> = posters.collect();
    let mut all = Vec::new();
    for poster in posters {
        all.push(poster.await.unwrap());
    }
    all
}

/// Every answer's id holds that post's payload in its topic's log, every
/// post is there once, and the ids of each poster's posts to one topic
/// rise in the order they were posted.
async fn check_logs(log: &Arc<dyn Broadcast>, answers: &[Vec<(String, u64, Bytes)>]) {
    let mut by_topic: HashMap<String, Vec<(u64, Bytes)>> = HashMap::new();
    for poster in answers {
        let mut last: HashMap<&str, u64> = HashMap::new();
        for (topic, id, payload) in poster {
            let previous = last.insert(topic, *id).unwrap_or(0);
            assert!(*id > previous, "a poster's ids rise in {topic}");
            by_topic
                .entry(topic.clone())
                .or_default()
                .push((*id, payload.clone()));
        }
    }
    for (topic, mut posted) in by_topic {
        posted.sort();
        let mut stored = log.replay(&topic, From::Last(1000)).await.unwrap().messages;
        stored.retain(|(_, payload)| payload != WARM_UP);
        assert_eq!(stored, posted, "{topic}: the log holds what was answered");
    }
}

/// Posts concurrently, then checks that the posts shared script calls on
/// `nodes` and that ids, order and logs hold.
async fn post_in_groups_and_check(
    log: &Arc<dyn Broadcast>,
    nodes: &[&Redis],
) -> Vec<Vec<(String, u64, Bytes)>> {
    let before = script_calls(nodes);
    let answers = post_concurrently(log).await;
    let calls = script_calls(nodes) - before;
    let posts = (POSTERS * POSTS_EACH) as u64;
    assert!(calls < posts, "{calls} script calls for {posts} publishes");
    check_logs(log, &answers).await;
    answers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_publishes_share_script_calls_and_keep_ids_and_order() {
    let redis = Redis::start();
    let log = log(redis.url()).await;
    log.publish("warm-up", Bytes::from(WARM_UP)).await.unwrap();
    let answers = post_in_groups_and_check(&log, &[&redis]).await;
    // Ids only rise within a room, but on one Redis no two messages share
    // one even across rooms, grouped or not (clients key messages by id).
    let ids: std::collections::HashSet<u64> =
        answers.iter().flatten().map(|(_, id, _)| *id).collect();
    assert_eq!(ids.len(), POSTERS * POSTS_EACH, "an id given twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_cluster_groups_split_by_slot_and_keep_ids_and_order() {
    let cluster = RedisCluster::start();
    let log = log(cluster.url()).await;
    for t in 0..TOPICS {
        log.publish(&format!("group-{t}"), Bytes::from(WARM_UP))
            .await
            .unwrap();
    }
    let nodes: Vec<&Redis> = cluster.nodes.iter().collect();
    post_in_groups_and_check(&log, &nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_key_posted_many_times_in_one_group_is_stored_once() {
    let redis = Redis::start();
    let log = log(redis.url()).await;
    log.publish("warm-up", Bytes::from(WARM_UP)).await.unwrap();
    let posts = (0..20).map(|n| {
        let log = log.clone();
        tokio::spawn(async move {
            let body = Bytes::from(format!("try {n}"));
            log.publish_once("keyed", "client:k1", body).await.unwrap()
        })
    });
    let posts: Vec<_> = posts.collect();
    let mut ids = Vec::new();
    for post in posts {
        ids.push(post.await.unwrap());
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "every try answers the first one's id");
    let stored = log.replay("keyed", From::Last(100)).await.unwrap().messages;
    assert_eq!(stored.len(), 1, "stored once: {stored:?}");
    assert_eq!(stored[0].0, ids[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_that_fails_inside_a_group_fails_alone() {
    let redis = Redis::start();
    let log = log(redis.url()).await;
    log.publish("warm-up", Bytes::from(WARM_UP)).await.unwrap();
    // A key of the wrong type where a room's log belongs: its appends fail.
    redis.cli(&["SET", "rtchat:log:{broken}", "not a stream"]);
    let before = script_calls(&[&redis]);
    let posts = (0..40).map(|n| {
        let log = log.clone();
        tokio::spawn(async move {
            let topic = if n % 2 == 0 { "healthy" } else { "broken" };
            let result = log.publish(topic, Bytes::from(format!("m{n}"))).await;
            (n, result)
        })
    });
    let posts: Vec<_> = posts.collect();
    let mut stored = Vec::new();
    for post in posts {
        match post.await.unwrap() {
            (n, Ok(id)) => {
                assert_eq!(n % 2, 0, "post {n} to the broken room was stored");
                stored.push((id, Bytes::from(format!("m{n}"))));
            }
            (n, Err(BroadcastError::Unavailable(why))) => {
                assert_eq!(n % 2, 1, "post {n} to the healthy room failed: {why}");
                assert!(why.contains("WRONGTYPE"), "the cause is told: {why}");
            }
            (n, Err(other)) => panic!("post {n}: {other}"),
        }
    }
    let calls = script_calls(&[&redis]) - before;
    assert!(
        calls < 40,
        "{calls} script calls for 40 concurrent publishes"
    );
    assert_eq!(stored.len(), 20, "every healthy post was stored");
    stored.sort();
    let log_entries = log
        .replay("healthy", From::Last(100))
        .await
        .unwrap()
        .messages;
    assert_eq!(log_entries, stored);
}

/// A poster that goes away while its publish is on its way (a server API
/// client hanging up) does not take its call slot with it: publishes after
/// it still go through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn posters_that_go_away_mid_publish_leave_nothing_stuck() {
    let redis = Redis::start();
    let link = FaultyLink::to_redis(redis.port).await;
    let log = log(link.url()).await;
    log.publish("warm-up", Bytes::from(WARM_UP)).await.unwrap();
    // Redis out of reach: the first posts take every call slot and hang
    // there, the others wait behind them; then every poster gives up.
    link.set(Fault::Blackhole);
    let posts = (0..6).map(|n| {
        let log = log.clone();
        async move {
            let body = Bytes::from(format!("given up {n}"));
            tokio::time::timeout(Duration::from_millis(300), log.publish("gone", body)).await
        }
    });
    let given_up = futures_util::future::join_all(posts).await;
    assert!(given_up.iter().all(Result::is_err), "{given_up:?}");
    link.heal();
    let after = tokio::time::timeout(
        Duration::from_secs(10),
        log.publish("gone", Bytes::from("after")),
    )
    .await
    .expect("a publish after abandoned ones is answered");
    assert!(after.is_ok(), "{after:?}");
}
