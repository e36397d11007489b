//! rtchat on a real Redis Cluster (three primaries, a replica each): rooms
//! spread over every shard with sharded pub/sub, a primary SIGKILLed under
//! traffic is followed without restarting anything, and with
//! `--redis-wait-replicas 1` every acknowledged message survives it.

#[macro_use]
mod common;

use common::*;
use std::collections::BTreeMap;
use std::time::Duration;
use tonic_health::pb::health_check_response::ServingStatus;

async fn start_cluster() -> RedisCluster {
    tokio::task::spawn_blocking(RedisCluster::start)
        .await
        .unwrap()
}

/// One room name per primary, found by asking Redis where each lands.
fn a_room_on_every_shard(cluster: &RedisCluster) -> BTreeMap<usize, String> {
    let mut rooms = BTreeMap::new();
    for n in 0.. {
        let room = format!("shard-{n}");
        let slot = cluster.keyslot(&format!("room:{room}"));
        rooms.entry(cluster.primary_of(slot)).or_insert(room);
        if rooms.len() == 3 {
            return rooms;
        }
    }
    unreachable!()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_on_every_shard_use_sharded_pubsub() {
    let cluster = start_cluster().await;
    let a = Process::ws_server("server-1", Some(&cluster), &[]);
    let b = Process::ws_server("server-2", Some(&cluster), &[]);
    let rooms = a_room_on_every_shard(&cluster);
    for (primary, room) in &rooms {
        let mut member = Client::connect(&a.ws_url()).await;
        member.join(room).await;
        let mut sender = Client::connect(&b.ws_url()).await;
        sender.join(room).await;
        sender.say(room, "hello").await;
        assert_eq!(member.recv_type("message").await["message"], "hello");

        // The room's log and channel live on the shard that owns its slot,
        // and both replicas subscribed there, sharded.
        let owner = &cluster.nodes[*primary];
        let topic = format!("{{room:{room}}}");
        assert_eq!(owner.cli(&["EXISTS", &format!("rtchat:log:{topic}")]), "1");
        let channel = format!("rtchat:chan:{topic}");
        let shard_subs = owner.cli(&["PUBSUB", "SHARDNUMSUB", &channel]);
        assert_eq!(shard_subs.lines().nth(1), Some("2"), "{room}: {shard_subs}");
    }
    // No classic pub/sub anywhere: no node relays every room.
    for node in &cluster.nodes {
        assert_eq!(node.cli(&["PUBSUB", "NUMPAT"]), "0");
        assert_eq!(node.cli(&["PUBSUB", "CHANNELS"]), "");
    }
}

/// Readiness is every shard: with one shard gone for good (its primary
/// and its replica), ws-server and grpc-server say not ready, though two
/// thirds of the slots still work; when it is back, ready again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shard_down_is_not_ready_until_it_is_back() {
    let mut cluster = start_cluster().await;
    let ws = Process::ws_server("server-1", Some(&cluster), &[]);
    let grpc = Process::grpc_server("grpc-1", Some(&cluster), &[]);
    let ready = async |ws: &Process, grpc: &Process| {
        let ws_ready = http_get(&ws.http_url("/readyz")).await.0 == 200;
        let grpc_ready = matches!(grpc::health(grpc).await, Ok(ServingStatus::Serving));
        (ws_ready, grpc_ready)
    };
    wait_for("both ready", DEADLINE, async || {
        (ready(&ws, &grpc).await == (true, true)).then_some(())
    })
    .await;

    let primary = cluster.primaries()[1];
    let port = cluster.nodes[primary].port;
    let replica = cluster
        .nodes
        .iter()
        .position(|n| {
            n.try_cli(&["INFO", "replication"])
                .is_some_and(|i| i.contains(&format!("master_port:{port}")))
        })
        .expect("the primary's replica");
    cluster.nodes[replica].stop();
    cluster.nodes[primary].stop();
    wait_for("both not ready", 2 * DEADLINE, async || {
        (ready(&ws, &grpc).await == (false, false)).then_some(())
    })
    .await;

    // The primary comes back with its cluster configuration: the shard
    // serves again (empty: no persistence here).
    tokio::task::spawn_blocking(move || {
        cluster.nodes[primary].restart();
        cluster.nodes[replica].restart();
        cluster.wait_healthy();
        cluster
    })
    .await
    .unwrap();
    wait_for("both ready again", 2 * DEADLINE, async || {
        (ready(&ws, &grpc).await == (true, true)).then_some(())
    })
    .await;
}

/// A room's primary SIGKILLed while messages are posted to it through
/// another replica: publishing fails for the seconds of the failover (and,
/// waiting for a replica, until the old primary is back as the new one's
/// replica), then works again without restarting rtchat. Every
/// message acknowledged (with `--redis-wait-replicas 1`) reaches the
/// member that stayed, once and in order, and a client resuming with
/// `since` from before the failover.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_killed_under_traffic_loses_nothing_acknowledged() {
    let cluster = start_cluster().await;
    let wait = ["--redis-wait-replicas", "1"];
    let a = Process::ws_server("server-1", Some(&cluster), &wait);
    let b = Process::ws_server("server-2", Some(&cluster), &wait);
    let room = "failover";
    let slot = cluster.keyslot(&format!("room:{room}"));
    let Traffic {
        mut member,
        position,
        mut sender,
        mut acked,
    } = Traffic::start(&a.ws_url(), &b.ws_url(), room, 20).await;

    let mut cluster = cluster;
    // The promoted replica has no replica of its own until the old
    // primary comes back as one: till then no write there can be
    // acknowledged by a replica, and the shard refuses them.
    let killing = tokio::task::spawn_blocking(move || {
        let old = cluster.kill_primary_of(slot);
        cluster.nodes[old].restart();
        cluster.wait_healthy();
        cluster
    });
    let (mut n, mut refused) = (0, Vec::new());
    // Traffic at 40 posts a second: under the per-connection rate limit
    // (50 a second), which is not what this test is about.
    let mut pace = tokio::time::interval(Duration::from_millis(25));
    pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !killing.is_finished() {
        pace.tick().await;
        let text = format!("during {n}");
        match sender.try_say(room, &text).await {
            Ok(_) => acked.push(text),
            Err(_) => refused.push(text),
        }
        n += 1;
    }
    let _cluster = killing.await.unwrap();
    // Publishing works again on the promoted replica.
    wait_for(
        "a publish to be acknowledged again",
        3 * DEADLINE,
        async || {
            let text = format!("during {n}");
            n += 1;
            match sender.try_say(room, &text).await {
                Ok(_) => {
                    acked.push(text);
                    Some(())
                }
                Err(_) => {
                    refused.push(text);
                    None
                }
            }
        },
    )
    .await;
    for k in 0..20 {
        let text = format!("after {k}");
        sender.say(room, &text).await;
        acked.push(text);
    }
    sender.say(room, "end").await;

    // What a client saw of the acknowledged messages (a refused one may
    // have been stored and delivered too).
    let acked_of = |texts: Vec<String>| -> Vec<String> {
        texts.into_iter().filter(|t| !refused.contains(t)).collect()
    };
    assert_eq!(
        acked_of(member.texts_until("end").await),
        acked,
        "the member that stayed: every acknowledged message, once, in order \
         ({} refused during the failover)",
        refused.len()
    );
    let mut back = Client::connect(&a.ws_url()).await;
    let resumed = back.join_since(room, &position).await;
    assert_eq!(resumed["recovered"], true, "{resumed}");
    assert_eq!(
        acked_of(back.texts_until("end").await),
        acked,
        "a client resuming from before the failover"
    );
}

/// Without waiting for replicas a shard serves again as soon as its replica
/// is promoted: members on every replica get new messages again, through
/// subscriptions re-made on the new primary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_resumes_once_a_replica_is_promoted() {
    let mut cluster = start_cluster().await;
    let mut a = Process::ws_server("server-1", Some(&cluster), &[]);
    let mut b = Process::ws_server("server-2", Some(&cluster), &[]);
    let room = "promoted";
    let slot = cluster.keyslot(&format!("room:{room}"));
    let mut member = Client::connect(&a.ws_url()).await;
    member.join(room).await;
    let mut sender = Client::connect(&b.ws_url()).await;
    sender.join(room).await;
    member.until_delivered_from(&mut sender, room).await;

    let cluster = tokio::task::spawn_blocking(move || {
        cluster.kill_primary_of(slot);
        cluster
    })
    .await
    .unwrap();
    wait_for("/readyz to report 200 again", 2 * DEADLINE, async || {
        (http_get(&a.http_url("/readyz")).await.0 == 200).then_some(())
    })
    .await;
    member.until_delivered_from(&mut sender, room).await;
    assert!(a.is_running() && b.is_running(), "no replica restarted");
    drop(cluster);
}

/// A room's slot moved to another primary (as resharding does) while its
/// members stay connected: Redis drops the sharded subscriptions there
/// without closing any connection; every replica subscribes again where
/// the room now lives, and the members get every message, including those
/// posted before they had.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_whose_slot_moves_keeps_its_members() {
    let cluster = start_cluster().await;
    let a = Process::ws_server("server-1", Some(&cluster), &[]);
    let b = Process::ws_server("server-2", Some(&cluster), &[]);
    let room = "moving";
    let slot = cluster.keyslot(&format!("room:{room}"));
    let Traffic {
        mut member,
        mut sender,
        ..
    } = Traffic::start(&a.ws_url(), &b.ws_url(), room, 0).await;
    sender.say(room, "before").await;
    assert_eq!(member.recv_type("message").await["message"], "before");

    let to = cluster
        .primaries()
        .into_iter()
        .find(|p| *p != cluster.primary_of(slot))
        .unwrap();
    let cluster = tokio::task::spawn_blocking(move || {
        cluster.move_slot(slot, to);
        cluster
    })
    .await
    .unwrap();
    let sent: Vec<String> = (0..10).map(|n| format!("moved {n}")).collect();
    for text in &sent {
        sender.say(room, text).await;
    }
    sender.say(room, "end").await;
    assert_eq!(member.texts_until("end").await, sent, "once, in order");
    let channel = format!("rtchat:chan:{{room:{room}}}");
    let subs = cluster.nodes[to].cli(&["PUBSUB", "SHARDNUMSUB", &channel]);
    assert_eq!(
        subs.lines().nth(1),
        Some("1"),
        "subscribed on the new owner"
    );
}
