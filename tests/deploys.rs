//! Deploys and scale-outs under load, behind the deploy nginx config with
//! three replicas on one Redis: native members that resume with `since`,
//! official socket.io-client members that recover, and publishers posting
//! with acks throughout. A rolling restart drains each replica at a pace
//! (no wave of reconnects), an API drain empties one replica while the
//! others serve, and a fourth replica gets its share by rebalancing.

mod common;

use common::crowd::{Crowd, check_histories, metric, peak, sent_off, settle, sockets};
use common::swarm::{NativeSwarm, publisher};
use common::*;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const ROOM: &str = "deploy";
const NATIVE: usize = 400;
const SOCKETIO: usize = 100;
/// Per publisher, acknowledged messages a second.
const RATE: u32 = 5;
const DRAIN_DELAY: &str = "1s";
const DRAIN_SECONDS: f64 = 3.0;
/// Fast enough to finish in a test, slow enough to be seen pacing. The
/// Engine.IO heartbeat is shortened so that a long-polling client whose
/// upgrade was cut by a drain (seen: connected, polling, hearing nothing,
/// until its heartbeat timed out and it reconnected and recovered) is
/// found out within the wait rather than after the default 45 s.
const FLAGS: &[&str] = &[
    "--drain-delay",
    DRAIN_DELAY,
    "--drain-duration",
    "3s",
    "--ping-interval",
    "5s",
    "--ping-timeout",
    "5s",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_moves_clients_at_a_pace_and_loses_nothing() {
    let mut d = ChatDeployment::start_with(FLAGS);
    let url = d.nginx.ws_url();
    let crowd = Crowd::start(&url, &d.nginx.url(""), ROOM, (NATIVE, SOCKETIO), RATE).await;

    let mut held = Vec::new();
    let mut drains = Vec::new();
    let mut retired = Vec::new();
    for i in 0..d.replicas.len() {
        held.push(sockets(&d.replicas[i]).await);
        let replica = &mut d.replicas[i];
        let started = common::swarm::unix_ms();
        replica.signal("TERM");
        let status = replica.wait_exit_within(Duration::from_secs(30)).await;
        assert!(status.success(), "exit 0 after a drain");
        drains.push((started, common::swarm::unix_ms()));
        assert!(
            !replica.logged("shutdown timeout"),
            "drained before the hard timeout"
        );
        let restarted = chat_replica(&d.redis, i, d.ws_port, FLAGS);
        retired.push(std::mem::replace(&mut d.replicas[i], restarted));
        let ready = d.replicas[i].http_url("/readyz");
        wait_for("the new replica to be ready", DEADLINE, async || {
            (http_get(&ready).await.0 == 200).then_some(())
        })
        .await;
    }
    let members = crowd.finish().await;

    // Each drain sends its sockets off evenly: no 100 ms with more than
    // twice its average rate (sockets held / duration), read from the
    // drained replicas' own log of each socket sent elsewhere. (Where the
    // reconnects arrive is reported too; on two cores shared with the
    // 500 clients, the clients' own scheduling bunches them.)
    let most_held = *held.iter().max().unwrap() as f64;
    let bound = (2.0 * most_held / DRAIN_SECONDS * 0.1).ceil() as usize;
    for (i, r) in retired.iter().enumerate() {
        let sent = sent_off(r);
        let (worst, at) = peak(sent.clone(), 100);
        assert!(
            worst <= bound,
            "drain {i}: {worst} sent off within 100 ms at {at} (bound {bound}, held {held:?}, {} in all)",
            sent.len()
        );
    }
    let arrivals: Vec<u64> = retired
        .iter()
        .chain(&d.replicas)
        .flat_map(|r| r.logged_at("connection: connected"))
        .filter(|at| {
            drains
                .iter()
                .any(|(from, to)| at >= from && *at <= to + 2000)
        })
        .collect();
    eprintln!(
        "reconnects arriving: peak {:?} within 100 ms, {} in all, held {held:?}",
        peak(arrivals.clone(), 100),
        arrivals.len()
    );
    let moved: usize = members.iter().map(|m| m.closes.len()).sum();
    assert!(
        arrivals.len() >= moved * 9 / 10,
        "{} arrivals for {moved} moves",
        arrivals.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_drain_empties_one_replica_while_the_others_serve() {
    const KEY: &str = "test-api-key-drain-0123";
    let mut flags = FLAGS.to_vec();
    flags.extend(["--api-key", KEY]);
    let mut d = ChatDeployment::start_with(&flags);
    let url = d.nginx.ws_url();
    let natives = NativeSwarm::start(&url, ROOM, 150).await;
    let stop = CancellationToken::new();
    let posting = publisher(&url, ROOM, "p", RATE, stop.clone());
    let before = sockets(&d.replicas[0]).await;
    assert!(before > 0, "the replica holds sockets");

    // Asked through another replica: the command reaches server-1.
    let (status, answer) = api_post(
        &d.replicas[1].http_url("/api/drain"),
        Key::Header(KEY),
        r#"{"server": "server-1"}"#,
    )
    .await;
    assert_eq!(
        (status, &answer["server"]),
        (200, &serde_json::json!("server-1"))
    );
    let ready = d.replicas[0].http_url("/readyz");
    wait_for("server-1 to leave readiness", DEADLINE, async || {
        (http_get(&ready).await.0 == 503).then_some(())
    })
    .await;
    assert_eq!(
        metric(&d.replicas[0], "rtchat_drained_sockets_total").await,
        0,
        "not ready before the first socket is closed"
    );
    let (status, answer) = api_post(
        &d.replicas[1].http_url("/api/drain"),
        Key::Header(KEY),
        r#"{"server": "server-9"}"#,
    )
    .await;
    assert_eq!(
        (status, &answer["code"]),
        (404, &serde_json::json!("unknown_server"))
    );

    let status = d.replicas[0]
        .wait_exit_within(Duration::from_secs(30))
        .await;
    assert!(status.success());
    stop.cancel();
    let posts = vec![posting.await.unwrap()];
    let last = settle(&natives, &url, ROOM).await;
    let members = natives.finish().await;
    check_histories(&members, &posts, last);
    // Every socket it held was sent elsewhere, by its own log: the
    // members' moves alone may be one short (the publisher's socket).
    let sent = sent_off(&d.replicas[0]).len() as u64;
    let moved: usize = members.iter().map(|m| m.closes.len()).sum();
    assert!(sent >= before, "{sent} sent elsewhere, {before} held");
    assert!(moved as u64 + 1 >= before, "{moved} moves, {before} held");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fourth_replica_gets_its_share_and_shedding_stops_there() {
    let mut d = ChatDeployment::start_with(FLAGS);
    let url = d.nginx.ws_url();
    let natives = NativeSwarm::start(&url, ROOM, NATIVE).await;
    let stop = CancellationToken::new();
    let posting = publisher(&url, ROOM, "p", RATE, stop.clone());

    // Scale out: a fourth replica, which nginx finds through DNS.
    d.replicas.push(chat_replica(&d.redis, 3, d.ws_port, FLAGS));
    let addrs: Vec<std::net::Ipv4Addr> =
        CHAT_IPS[..4].iter().map(|ip| ip.parse().unwrap()).collect();
    d.dns.set("ws-server", &addrs);
    let total = NATIVE as u64 + 1;
    let fair = total.div_ceil(4) as f64;
    // The tolerance (10%) either way, and two sockets for the rounding and
    // the reports' half-second age.
    let within = |n: u64| (n as f64) <= fair * 1.1 + 2.0 && (n as f64) >= fair * 0.9 - 2.0;
    const SHED: &str = "rtchat_rebalanced_sockets_total";
    let shed_so_far = async || {
        let mut shed = 0;
        for r in &d.replicas {
            shed += metric(r, SHED).await;
        }
        shed
    };
    // Even, and settled: nothing shed between two looks a second apart.
    let mut looks = tokio::time::interval(Duration::from_secs(1));
    let mut last_shed = u64::MAX;
    let mut waited = 0;
    let moved = loop {
        looks.tick().await;
        let mut counts = Vec::new();
        for r in &d.replicas {
            counts.push(sockets(r).await);
        }
        let shed = shed_so_far().await;
        if counts.iter().all(|n| within(*n)) && shed == last_shed {
            break shed;
        }
        last_shed = shed;
        waited += 1;
        assert!(
            waited < 60,
            "not even within a minute: {counts:?}, {shed} shed"
        );
    };
    // No oscillation: over the next 20 s at most a few stragglers move (a
    // client that landed on a replica above its share as the last ones
    // reconnected), 5% of the sockets, and the shares stay even.
    let stragglers = total * 5 / 100;
    for _ in 0..20 {
        looks.tick().await;
        let shed = shed_so_far().await;
        assert!(
            shed <= moved + stragglers,
            "shedding went on: {moved} then {shed}"
        );
    }
    let mut counts = Vec::new();
    for r in &d.replicas {
        counts.push(sockets(r).await);
    }
    assert!(counts.iter().all(|n| within(*n)), "still even: {counts:?}");
    stop.cancel();
    let posts = vec![posting.await.unwrap()];
    let last = settle(&natives, &url, ROOM).await;
    let members = natives.finish().await;
    check_histories(&members, &posts, last);
}
