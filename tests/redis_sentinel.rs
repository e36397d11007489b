//! rtchat behind Redis Sentinel (one primary, one replica, three
//! sentinels), with fred's `redis-sentinel://` URL: both servers work on
//! it, follow a failover without a restart, and with
//! `--redis-wait-replicas 1` every acknowledged message and user change
//! is still there after it.

mod common;

use common::grpc::*;
use common::*;
use rtchat::grpc::pb::UserRequest;
use tonic_health::pb::health_check_response::ServingStatus;

async fn start_sentinels() -> SentinelSet {
    tokio::task::spawn_blocking(SentinelSet::start)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_servers_follow_a_sentinel_failover() {
    let set = start_sentinels().await;
    let wait = ["--redis-wait-replicas", "1"];
    let mut a = Process::ws_server("server-1", Some(&set), &wait);
    let mut b = Process::ws_server("server-2", Some(&set), &wait);
    let grpc = Process::grpc_server("grpc-1", Some(&set), &wait);
    let room = "sentinel";
    let Traffic {
        mut member,
        position,
        mut sender,
        mut acked,
    } = Traffic::start(&a.ws_url(), &b.ws_url(), room, 20).await;
    let mut users = client(&grpc).await;
    let ann = users
        .create_user(create("Ann", "ann@example.com"))
        .await
        .unwrap()
        .into_inner();

    // The old primary comes back as the new one's replica, so that
    // writes can be acknowledged by a replica again.
    let mut set = set;
    let set = tokio::task::spawn_blocking(move || {
        set.fail_over();
        set.primary.restart_as_replica_of(set.replica.port);
        set
    })
    .await
    .unwrap();
    wait_for("gRPC health SERVING again", 3 * DEADLINE, async || {
        (health(&grpc).await.ok() == Some(ServingStatus::Serving)).then_some(())
    })
    .await;
    wait_for("/readyz 200 again", 3 * DEADLINE, async || {
        (http_get(&a.http_url("/readyz")).await.0 == 200).then_some(())
    })
    .await;
    // Publishing works on the promoted replica (a post refused while the
    // new primary had no replica in sync is retried).
    let mut n = 0;
    wait_for(
        "a publish acknowledged after the failover",
        3 * DEADLINE,
        async || {
            n += 1;
            let text = format!("after {n}");
            sender
                .try_say(room, &text)
                .await
                .ok()
                .map(|_| acked.push(text))
        },
    )
    .await;
    sender.say(room, "end").await;

    let stayed = member.texts_until("end").await;
    let tail: Vec<&String> = stayed.iter().filter(|t| t.starts_with("before")).collect();
    assert_eq!(tail, acked[..20].iter().collect::<Vec<_>>());
    assert_eq!(
        stayed.last(),
        acked.last(),
        "live delivery after the failover"
    );
    let mut back = Client::connect(&b.ws_url()).await;
    let resumed = back.join_since(room, &position).await;
    assert_eq!(resumed["recovered"], true, "{resumed}");
    let replayed = back.texts_until("end").await;
    for text in &acked {
        assert!(replayed.contains(text), "{text} lost in the failover");
    }

    // The user acknowledged before is on the new primary, and writes work.
    let read = users
        .get_user(UserRequest { id: ann.id })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(read, ann);
    let cid = users
        .create_user(create("Cid", "cid@example.com"))
        .await
        .unwrap()
        .into_inner();
    assert!(cid.id > ann.id, "ids keep increasing");
    assert!(a.is_running() && b.is_running(), "no server restarted");
    drop(set);
}
