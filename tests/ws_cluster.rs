//! Three ws-server replicas sharing one private Redis, as users spread over
//! them by a load balancer would see them; the scenarios that do not
//! restart Redis run on a Redis Cluster too.

#[macro_use]
mod common;

use common::*;

struct Cluster {
    redis: Shared,
    replicas: Vec<Process>,
}

impl Cluster {
    fn start(n: usize) -> Self {
        Self::on(Shared::One(Redis::start()), n)
    }

    fn on(redis: Shared, n: usize) -> Self {
        let replicas = (1..=n)
            .map(|i| Process::ws_server(&format!("server-{i}"), Some(&redis), &[]))
            .collect();
        Self { redis, replicas }
    }

    fn url(&self, i: usize) -> String {
        self.replicas[i].ws_url()
    }
}

async fn a_message_reaches_every_replica_exactly_once(redis: Shared) {
    let cluster = Cluster::on(redis, 3);
    let mut members = Vec::new();
    for i in 0..6 {
        let mut c = Client::connect(&cluster.url(i % 3)).await;
        c.join("general").await;
        members.push(c);
    }
    let mut sender = Client::connect(&cluster.url(0)).await;
    sender.say("general", "hello all").await;
    sender.say("general", "end").await;
    for (i, member) in members.iter_mut().enumerate() {
        assert_eq!(member.server, format!("server-{}", i % 3 + 1));
        let frame = member.recv_type("message").await;
        assert_eq!(frame["message"], "hello all");
        assert_eq!(frame["server"], "server-1", "the replica that accepted it");
        assert_eq!(
            member.texts_until("end").await,
            Vec::<String>::new(),
            "exactly once"
        );
    }
}

async fn rooms_are_isolated_across_replicas(redis: Shared) {
    let cluster = Cluster::on(redis, 3);
    let mut red = Client::connect(&cluster.url(0)).await;
    red.join("red").await;
    let mut blue = Client::connect(&cluster.url(1)).await;
    blue.join("blue").await;
    let mut sender = Client::connect(&cluster.url(2)).await;
    sender.say("blue", "for blue").await;
    sender.say("red", "for red").await;
    sender.say("red", "end").await;
    sender.say("blue", "end").await;
    assert_eq!(red.texts_until("end").await, vec!["for red"]);
    assert_eq!(blue.texts_until("end").await, vec!["for blue"]);
}

async fn ids_increase_strictly_across_replicas(redis: Shared) {
    let cluster = Cluster::on(redis, 3);
    let mut observer = Client::connect(&cluster.url(1)).await;
    observer.join("seq").await;
    let mut senders = Vec::new();
    for i in 0..3 {
        senders.push(Client::connect(&cluster.url(i)).await);
    }
    let mut acked = Vec::new();
    for n in 0..30 {
        acked.push(senders[n % 3].say("seq", &format!("m{n}")).await);
    }
    let seen = observer.messages(30).await;
    let ids: Vec<u64> = seen.iter().map(id_of).collect();
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "ids not increasing: {ids:?}"
    );
    assert_eq!(
        seen.iter()
            .map(|m| m["id"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>(),
        acked
    );
    let texts: Vec<_> = seen
        .iter()
        .map(|m| m["message"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(texts, (0..30).map(|n| format!("m{n}")).collect::<Vec<_>>());
}

async fn reconnecting_elsewhere_with_since_misses_nothing(redis: Shared) {
    let cluster = Cluster::on(redis, 3);
    let mut member = Client::connect(&cluster.url(0)).await;
    member.join("r").await;
    let mut sender = Client::connect(&cluster.url(1)).await;
    sender.say("r", "seen").await;
    let last = member.recv_type("message").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    drop(member);

    let mut missed = Vec::new();
    for n in 0..20 {
        missed.push(sender.say("r", &format!("missed {n}")).await);
    }
    let mut back = Client::connect(&cluster.url(2)).await;
    let joined = back.join_since("r", &last).await;
    assert_eq!(joined["recovered"], true);
    let replayed = back.messages(20).await;
    assert_eq!(
        replayed
            .iter()
            .map(|m| m["id"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>(),
        missed
    );
    sender.say("r", "live").await;
    assert_eq!(
        back.texts_until("live").await,
        Vec::<String>::new(),
        "live after replay, no duplicates"
    );
}

async fn a_killed_replica_loses_nothing_for_clients_that_resume(redis: Shared) {
    let mut cluster = Cluster::on(redis, 3);
    let mut member = Client::connect(&cluster.url(1)).await;
    member.join("r").await;
    let mut sender = Client::connect(&cluster.url(0)).await;
    sender.say("r", "before").await;
    let last = member.recv_type("message").await["id"]
        .as_str()
        .unwrap()
        .to_owned();

    cluster.replicas[1].kill();
    assert_eq!(member.recv_close().await, None, "SIGKILL: no close frame");
    let mut sent = Vec::new();
    for n in 0..10 {
        sent.push(format!("during {n}"));
        sender.say("r", &sent[n]).await;
    }
    let mut back = Client::connect(&cluster.url(2)).await;
    assert_eq!(back.join_since("r", &last).await["recovered"], true);
    sender.say("r", "after").await;
    assert_eq!(back.texts_until("after").await, sent);
}

on_one_redis_and_a_cluster!(
    a_message_reaches_every_replica_exactly_once,
    rooms_are_isolated_across_replicas,
    ids_increase_strictly_across_replicas,
    reconnecting_elsewhere_with_since_misses_nothing,
    a_killed_replica_loses_nothing_for_clients_that_resume,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restart_is_survived() {
    let mut cluster = Cluster::start(2);
    let mut member = Client::connect(&cluster.url(1)).await;
    member.join("r").await;
    let mut sender = Client::connect(&cluster.url(0)).await;
    sender.say("r", "before").await;
    assert_eq!(member.recv_type("message").await["message"], "before");

    let ready = |i: usize| cluster.replicas[i].http_url("/readyz");
    let (ready0, ready1) = (ready(0), ready(1));
    cluster.redis.one().stop();
    for url in [&ready0, &ready1] {
        wait_for("/readyz to report 503", DEADLINE, async || {
            (http_get(url).await.0 == 503).then_some(())
        })
        .await;
    }
    // Liveness holds and publishing fails loudly instead of hanging.
    assert_eq!(
        http_get(&cluster.replicas[0].http_url("/healthz")).await.0,
        200
    );
    sender
        .send(serde_json::json!({"type":"message","room":"r","message":"lost","ack":"x"}))
        .await;
    let error = sender.recv_type("error").await;
    assert_eq!(
        (error["code"].as_str(), error["ack"].as_str()),
        (Some("unavailable"), Some("x"))
    );

    cluster.redis.one().restart();
    for url in [&ready0, &ready1] {
        wait_for("/readyz to report 200", DEADLINE, async || {
            (http_get(url).await.0 == 200).then_some(())
        })
        .await;
    }
    for replica in &mut cluster.replicas {
        assert!(replica.is_running(), "no replica exited");
    }
    // The member never reconnected; delivery across replicas resumes.
    member.until_delivered_from(&mut sender, "r").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_started_before_redis_waits_for_it() {
    let mut redis = Redis::start();
    redis.stop();
    let server = Process::ws_server("server-1", Some(&redis), &[]);
    let ready = server.http_url("/readyz");
    assert_eq!(http_get(&ready).await.0, 503);
    assert_eq!(http_get(&server.http_url("/healthz")).await.0, 200);
    redis.restart();
    wait_for("/readyz to report 200", DEADLINE, async || {
        (http_get(&ready).await.0 == 200).then_some(())
    })
    .await;
    let mut c = Client::connect(&server.ws_url()).await;
    c.join("r").await;
    c.say("r", "works").await;
}

/// Gap: a member of a room without messages got no position in `joined`,
/// so after a drop it could not resume (`since: "0"` was answered
/// "not recovered" with nothing replayed). Now every join hands one out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_of_an_empty_room_resumes_on_another_replica() {
    let mut cluster = Cluster::start(3);
    let mut member = Client::connect(&cluster.url(0)).await;
    let joined = member.join("quiet").await;
    let position = joined["last_id"].as_str().expect("a position").to_owned();
    drop(member);

    let mut sender = Client::connect(&cluster.url(1)).await;
    let sent = ["one", "two", "three"];
    for text in sent {
        sender.say("quiet", text).await;
    }
    let mut back = Client::connect(&cluster.url(2)).await;
    let resumed = back.join_since("quiet", &position).await;
    assert_eq!(resumed["recovered"], true, "nothing was lost: {resumed}");
    sender.say("quiet", "end").await;
    assert_eq!(
        back.texts_until("end").await,
        sent,
        "replayed once, in order"
    );

    // Redis restarted empty: whatever a position pointed into is gone, and
    // the resume says so instead of pretending; the new join's position
    // then resumes truthfully again.
    let mut member = Client::connect(&cluster.url(0)).await;
    let before = member.join("fresh").await["last_id"]
        .as_str()
        .unwrap()
        .to_owned();
    drop(member);
    cluster.redis.one().restart();
    for i in 0..3 {
        let ready = cluster.replicas[i].http_url("/readyz");
        wait_for("/readyz after the restart", DEADLINE, async || {
            (http_get(&ready).await.0 == 200).then_some(())
        })
        .await;
    }
    // Pub/sub is back everywhere before the resume is tried (a replica's
    // subscriber may come back a moment after /readyz turns 200).
    let mut probe = Client::connect(&cluster.url(0)).await;
    probe.join("probe").await;
    let mut prober = Client::connect(&cluster.url(2)).await;
    probe.until_delivered_from(&mut prober, "probe").await;
    let mut again = Client::connect(&cluster.url(1)).await;
    let lost = again.join_since("fresh", &before).await;
    assert_eq!(lost["recovered"], false, "{lost}");
    let position = lost["last_id"].as_str().expect("a new position").to_owned();
    again.leave("fresh").await;
    let mut sender = Client::connect(&cluster.url(2)).await;
    sender.say("fresh", "after").await;
    let mut last = Client::connect(&cluster.url(0)).await;
    let resumed = last.join_since("fresh", &position).await;
    assert_eq!(resumed["recovered"], true, "{resumed}");
    sender.say("fresh", "end").await;
    assert_eq!(last.texts_until("end").await, ["after"]);
}
