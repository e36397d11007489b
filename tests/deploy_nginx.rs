//! The repository's own deploy/nginx/nginx.conf on real nginx, in front of
//! three ws-server replicas and a private Redis. Docker's DNS is played by
//! a small DNS server that maps the service name to the replicas' loopback
//! addresses, so nginx resolves and re-resolves exactly as in compose.

mod common;

use common::*;
use std::net::Ipv4Addr;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_through_nginx_and_directly_is_one_room() {
    let d = ChatDeployment::start();
    let (status, page) = http_get(&d.nginx.url("/")).await;
    assert!(
        status == 200 && page.contains("<html"),
        "the page loads through nginx"
    );
    assert_eq!(http_get(&d.nginx.url("/healthz")).await.0, 200);

    // One member through nginx on every replica, and one directly on each.
    let mut members = Vec::new();
    for i in 0..3 {
        members.push(d.through_nginx_to(&format!("server-{}", i + 1)).await);
        members.push(Client::connect(&d.replicas[i].ws_url()).await);
    }
    for m in &mut members {
        m.join("lobby").await;
    }
    for i in 0..members.len() {
        let text = format!("from {i}");
        members[i].say("lobby", &text).await;
        for (j, m) in members.iter_mut().enumerate() {
            if j != i {
                assert_eq!(
                    m.recv_type("message").await["message"],
                    text.as_str(),
                    "member {j}"
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_replica_moves_its_clients_without_loss() {
    let mut d = ChatDeployment::start();
    let mut victim = d.through_nginx_to("server-2").await;
    victim.join("r").await;
    let mut sender = Client::connect(&d.replicas[0].ws_url()).await;
    sender.say("r", "before").await;
    let last = victim.recv_type("message").await["id"]
        .as_str()
        .unwrap()
        .to_owned();

    d.replicas[1].kill();
    assert_eq!(victim.recv_close().await, None);
    let mut missed = Vec::new();
    for n in 0..10 {
        missed.push(format!("while away {n}"));
        sender.say("r", &missed[n]).await;
    }
    // Reconnecting through nginx lands on a live replica, whatever the order.
    let mut back = Client::connect(&d.nginx.ws_url()).await;
    assert_ne!(back.server, "server-2");
    assert_eq!(back.join_since("r", &last).await["recovered"], true);
    sender.say("r", "after").await;
    assert_eq!(back.texts_until("after").await, missed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_replica_gets_traffic_without_touching_nginx() {
    let d = ChatDeployment::start();
    let added = chat_replica(&d.redis, 3, d.ws_port, &[]);
    d.dns.set(
        "ws-server",
        &CHAT_IPS[..4]
            .iter()
            .map(|ip| ip.parse().unwrap())
            .collect::<Vec<Ipv4Addr>>(),
    );
    let mut c = d.through_nginx_to("server-4").await;
    c.join("r").await;
    drop(added);
}

/// The status of a WebSocket upgrade to `url` made from the local address
/// `from`, kept open while the returned socket lives.
async fn upgrade_from(from: &str, url: &str) -> (u16, Option<Socket>) {
    let uri: tokio_tungstenite::tungstenite::http::Uri = url.parse().unwrap();
    let target = format!("{}:{}", uri.host().unwrap(), uri.port_u16().unwrap());
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
    let stream = socket.connect(target.parse().unwrap()).await.unwrap();
    match tokio_tungstenite::client_async(url, tokio_tungstenite::MaybeTlsStream::Plain(stream))
        .await
    {
        Ok((ws, _)) => (101, Some(ws)),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            (response.status().as_u16(), None)
        }
        Err(other) => panic!("{other}"),
    }
}

/// Behind the deploy nginx config with nginx trusted: clients from
/// different addresses are counted apart, though all arrive from nginx.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_client_limits_count_clients_behind_nginx() {
    let d = ChatDeployment::start_with(&[
        "--trusted-proxies",
        "127.0.0.1",
        "--max-connections-per-ip",
        "1",
    ]);
    // Six clients, one connection each: were they all counted as nginx's
    // address, three replicas could hold three at most.
    let url = d.nginx.ws_url();
    let mut held = Vec::new();
    for n in 6..12 {
        let from = format!("127.0.0.{n}");
        let (status, ws) = upgrade_from(&from, &url).await;
        assert_eq!(status, 101, "a first connection from {from}");
        held.push(ws);
    }
    // A second connection from one address: refused by whichever replica
    // holds its first, accepted by the others; within three tries one
    // lands there.
    let mut refused = false;
    for _ in 0..6 {
        let (status, ws) = upgrade_from("127.0.0.6", &url).await;
        match status {
            429 => refused = true,
            101 => held.push(ws),
            other => panic!("unexpected {other}"),
        }
        if refused {
            break;
        }
    }
    assert!(refused, "the per-address bound holds behind nginx");
}

/// A browser's token rides in the query string through nginx: it is
/// believed by every replica, and the deploy config's access log keeps the
/// path without it (the test command checks every log of the run for it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_pass_nginx_and_stay_out_of_its_log() {
    const SECRET: &str = "deploy test secret, do-not-log";
    let d = ChatDeployment::start_with(&["--auth", "required", "--jwt-secret", SECRET]);
    let claims = rtchat::auth::NewToken {
        sub: "ana",
        name: Some("Ana"),
        exp: rtchat::auth::expiry_in(std::time::Duration::from_secs(600)),
        rooms: None,
        scope: None,
    };
    let token = rtchat::auth::mint(&claims, SECRET.as_bytes()).unwrap();
    let url = d.nginx.ws_url();
    for _ in 0..3 {
        let member = Client::connect(&format!("{url}?token={token}")).await;
        assert_eq!(
            member.user, "ana",
            "the token's subject, on {}",
            member.server
        );
    }
    let refused = tokio_tungstenite::connect_async(url.as_str()).await;
    assert!(
        matches!(refused, Err(tokio_tungstenite::tungstenite::Error::Http(ref r)) if r.status() == 401),
        "no token: 401 through nginx"
    );
}
