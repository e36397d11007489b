//! The operator's page in headless Chromium, three replicas behind the
//! deploy nginx config: the key prompt, a refusal, the cluster as the test
//! made it, a room, plots that move, and the actions (publish, disconnect,
//! drain) reaching clients on every replica.

#[macro_use]
mod common;

use common::*;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::json;
use std::time::Duration;

const KEY: &str = "admin-do-not-log-key";
const JWT_SECRET: &str = "admin-jwt-do-not-log";

fn token(sub: &str) -> String {
    let exp = rtchat::auth::expiry_in(Duration::from_secs(3600));
    encode(
        &Header::new(Algorithm::HS256),
        &json!({"sub": sub, "exp": exp}),
        &EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .unwrap()
}

async fn named_on(replica: &Process, name: &str) -> Client {
    Client::connect(&format!("{}?name={name}", replica.ws_url())).await
}

async fn fill(page: &Browser, css: &str, text: &str) {
    let input = page.find(Locator::Css(css)).await.unwrap();
    input.clear().await.unwrap();
    input.send_keys(text).await.unwrap();
}

async fn click(page: &Browser, css: &str) {
    page.find(Locator::Css(css))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

async fn visible(page: &Browser, css: &str) -> bool {
    page.find(Locator::Css(css))
        .await
        .unwrap()
        .is_displayed()
        .await
        .unwrap()
}

/// Runs a script in the page: the table is drawn anew on every refresh,
/// so elements found in one WebDriver call may be gone by the next.
async fn js(page: &Browser, script: &str) -> serde_json::Value {
    page.execute(script, vec![]).await.unwrap()
}

/// The replicas table as (server, sockets) pairs.
async fn replica_rows(page: &Browser) -> Vec<(String, String)> {
    let rows = js(
        page,
        "return [...document.querySelectorAll('#replicas tbody tr')]\
           .map((tr) => [tr.cells[0].textContent, tr.cells[2].textContent]);",
    )
    .await;
    serde_json::from_value(rows).unwrap()
}

/// The points of a plot's line.
async fn plot_points(page: &Browser, id: &str) -> String {
    let script = format!(
        "const l = document.querySelector('#{id} polyline'); return l ? l.getAttribute('points') : '';"
    );
    js(page, &script)
        .await
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// Confirms the action the page asks about.
async fn confirm(page: &Browser) {
    wait_for("the confirmation", DEADLINE, async || {
        visible(page, "#confirm").await.then_some(())
    })
    .await;
    click(page, "#confirm-yes").await;
}

async fn screenshot(page: &Browser, name: &str) {
    // Run with RTCHAT_SCREENSHOTS=docs to refresh the README's pictures.
    if let Ok(dir) = std::env::var("RTCHAT_SCREENSHOTS") {
        let png = page.screenshot().await.unwrap();
        std::fs::write(std::path::Path::new(&dir).join(name), png).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operators_page_shows_and_acts_on_the_whole_cluster() {
    let d = ChatDeployment::start_with(&[
        "--api-key",
        KEY,
        "--auth",
        "optional",
        "--jwt-secret",
        JWT_SECRET,
        "--drain-delay",
        "1s",
        "--drain-duration",
        "2s",
    ]);
    let [one, two, three] = [&d.replicas[0], &d.replicas[1], &d.replicas[2]];
    // server-1: a native member and a Socket.IO one; server-2: two
    // natives; server-3: three, two of them mallory's (one on server-2).
    let mut ana = named_on(one, "ana").await;
    ana.join("ops").await;
    let mut sio = SioClient::node(&one.http_url(""), json!({"transports": ["websocket"]}));
    sio.next("connect").await;
    sio.emit_with_ack("join_room", json!(["ops"]));
    sio.next("ack").await;
    let mut bo = named_on(two, "bo").await;
    bo.join("ops").await;
    let mal_url = |r: &Process| format!("{}?token={}&name=mallory", r.ws_url(), token("mallory"));
    let mut mallory_two = Client::connect(&mal_url(two)).await;
    let mut mallory_three = Client::connect(&mal_url(three)).await;
    mallory_three.join("ops").await;
    let mut cy = named_on(three, "cy").await;
    cy.join("quiet").await;
    let _dee = named_on(three, "dee").await;
    ana.say("ops", "first words").await;

    let driver = Driver::start();
    let page = driver.browser(0).await;
    page.set_window_size(1280, 800).await.unwrap();
    page.goto(&d.nginx.url("/admin")).await.unwrap();

    // No key: the prompt alone, no data.
    assert!(visible(&page, "#login").await);
    assert!(!visible(&page, "#dash").await);
    assert_eq!(replica_rows(&page).await, Vec::<(String, String)>::new());

    // A wrong key: the refusal, still no data.
    fill(&page, "#key", "wrong-key").await;
    click(&page, "#key-form button").await;
    let refusal = wait_for("the refusal", DEADLINE, async || {
        let text = text(&page, "#refusal").await;
        (!text.is_empty()).then_some(text)
    })
    .await;
    assert!(refusal.contains("wrong API key"), "{refusal}");
    assert!(!visible(&page, "#dash").await);

    // The key: three replicas, each with the sockets the test opened.
    fill(&page, "#key", KEY).await;
    click(&page, "#key-form button").await;
    let expected: Vec<(String, String)> = [("server-1", "2"), ("server-2", "2"), ("server-3", "3")]
        .map(|(s, n)| (s.to_owned(), n.to_owned()))
        .to_vec();
    wait_for("the replicas and their sockets", DEADLINE, async || {
        (replica_rows(&page).await == expected).then_some(())
    })
    .await;
    assert!(
        text(&page, "#served-by")
            .await
            .starts_with("served by server-")
    );
    assert!(
        page.current_url().await.unwrap().query().is_none(),
        "the key never goes in a URL"
    );

    // Plots move while messages flow.
    let before = plot_points(&page, "p-in").await;
    for i in 0..15 {
        bo.say("ops", &format!("traffic {i}")).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    wait_for("the message rate to show", DEADLINE, async || {
        let rate: f64 = text(&page, "#t-in").await.parse().unwrap_or(0.0);
        let points = plot_points(&page, "p-in").await;
        let max = text(&page, "#m-in").await;
        (rate > 0.0 && points != before && !max.starts_with("max 0.0")).then_some(())
    })
    .await;
    screenshot(&page, "admin-cluster.png").await;

    // One room: its members across replicas and its last messages.
    fill(&page, "#room-name", "ops").await;
    click(&page, "#room-form button").await;
    wait_for("the room's members and history", DEADLINE, async || {
        let members = text(&page, "#members").await;
        let history = text(&page, "#history").await;
        (["ana", "bo", "mallory"].iter().all(|n| members.contains(n))
            && history.contains("first words")
            && history.contains("traffic 14"))
        .then_some(())
    })
    .await;
    js(
        &page,
        "document.getElementById('room-view').scrollIntoView(); return null;",
    )
    .await;
    screenshot(&page, "admin-room.png").await;

    // On a phone-width screen the plots and the page fit the width (the
    // replicas table scrolls inside its own box).
    page.set_window_size(390, 844).await.unwrap();
    let fits = js(
        &page,
        "return document.documentElement.scrollWidth <= window.innerWidth + 1\
           && [...document.querySelectorAll('#plots svg')].every((s) => s.getBoundingClientRect().width > 200);",
    )
    .await;
    assert_eq!(fits, true, "the page is wider than a phone's screen");
    screenshot(&page, "admin-phone.png").await;
    page.set_window_size(1280, 800).await.unwrap();

    // Publish from the page: a native and a Socket.IO member get it.
    fill(&page, "#pub-room", "ops").await;
    fill(&page, "#pub-text", "from the operator").await;
    click(&page, "#publish-form button").await;
    confirm(&page).await;
    let got = ana.texts_until("from the operator").await;
    assert!(got.iter().all(|t| t.starts_with("traffic ")), "{got:?}");
    sio.texts_until("from the operator").await;
    // The members can have the message before the page has the answer.
    let answer = wait_for("the publish's answer on the page", DEADLINE, async || {
        let answer = text(&page, "#answer").await;
        answer.starts_with("post to ops: HTTP").then_some(answer)
    })
    .await;
    assert!(answer.starts_with("post to ops: HTTP 200"), "{answer}");

    // Disconnect mallory: both her sockets close, on two replicas.
    fill(&page, "#dc-user", "mallory").await;
    click(&page, "#disconnect-form button").await;
    confirm(&page).await;
    assert_eq!(mallory_two.recv_close().await, Some(4002));
    assert_eq!(mallory_three.recv_close().await, Some(4002));

    // Drain server-3 from the page: it empties and exits, the others serve.
    let mut d = d;
    let clicked = js(
        &page,
        "const b = document.querySelector(\"#replicas tr[data-server='server-3'] button.drain\");\
         if (b) b.click(); return !!b;",
    )
    .await;
    assert_eq!(clicked, true);
    confirm(&page).await;
    assert!(cy.recv_close().await.is_some());
    d.replicas[2].wait_exit().await;
    wait_for(
        "two replicas left on the page",
        Duration::from_secs(20),
        async || {
            let rows = replica_rows(&page).await;
            (rows.len() == 2 && rows.iter().all(|(s, _)| s != "server-3")).then_some(())
        },
    )
    .await;
    bo.say("ops", "still served").await;
    assert!(ana.texts_until("still served").await.is_empty());
}

/// Without the server API the page does not exist.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_page_without_the_api() {
    let server = Process::ws_server("server-1", None, &[]);
    assert_eq!(http_get(&server.http_url("/admin")).await.0, 404);
    let with = Process::ws_server("server-2", None, &["--api-key", KEY]);
    let (status, _) = http_get(&with.http_url("/admin")).await;
    assert_eq!(status, 200);
}
