//! The original's chat page, unchanged but for its CDN script and server
//! URL, in headless Chromium, against three replicas and a private Redis
//! behind the repository's nginx config: it chats with native clients on
//! other replicas and with the official Node and Python clients, and only
//! from an allowed origin; behind the deploy nginx config and behind the
//! original's own.

mod common;

use common::original::PageServer;
use common::*;
use serde_json::Value;

async fn js(page: &Browser, script: &str) -> Value {
    page.execute(script, vec![]).await.unwrap()
}

async fn lines(page: &Browser) -> Vec<String> {
    let mut out = Vec::new();
    for div in page.find_all(Locator::Css("#messages div")).await.unwrap() {
        out.push(div.text().await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_original_page_chats_from_an_allowed_origin_behind_the_deploy_config() {
    the_original_page_chats_from_an_allowed_origin(Front::Deploy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_original_page_chats_from_an_allowed_origin_behind_the_originals_config() {
    the_original_page_chats_from_an_allowed_origin(Front::Original).await;
}

async fn the_original_page_chats_from_an_allowed_origin(front: Front) {
    let good = PageServer::start().await;
    let bad = PageServer::start().await;
    let d = ChatDeployment::start_behind(front, &["--allowed-origins", &good.origin()]);
    let html = original::page("/socket.io.min.js", &d.nginx.url(""));
    good.show(html.clone());
    bad.show(html);
    // The stranger's page is on another host name: behind `Host $host`
    // (no port) every page of the chat's own host name is same-origin.
    let bad_url = format!("http://localhost:{}/", bad.port);
    let bad_origin = format!("http://localhost:{}", bad.port);
    let driver = Driver::start();
    let (page, stranger) = (driver.browser(1).await, driver.browser(2).await);

    page.goto(&good.url()).await.unwrap();
    wait_for("the page to connect", DEADLINE, async || {
        (js(&page, "return socket.connected;").await == Value::Bool(true)).then_some(())
    })
    .await;
    // Its join was buffered until connected; a message from a native client
    // on each replica shows up once the join has landed.
    let mut native = Client::connect(&d.replicas[1].ws_url()).await;
    native.join("general").await;
    let mut n = 0;
    wait_for("the page to be in the room", DEADLINE, async || {
        n += 1;
        native.say("general", &format!("probe {n}")).await;
        let shown = lines(&page).await;
        shown.iter().any(|l| l.contains("probe")).then_some(())
    })
    .await;

    // The official clients in the same room, through the same nginx.
    let mut node = SioClient::node(&d.nginx.url(""), serde_json::json!({}));
    node.next("connect").await;
    node.emit_with_ack("join_room", serde_json::json!(["general"]));
    node.next("ack").await;
    let mut python = SioClient::python(&d.nginx.url(""), serde_json::json!({}));
    python.next("connect").await;
    python.emit_with_ack("join_room", serde_json::json!(["general"]));
    python.next("ack").await;

    // Typed on the page: every member gets it, from the page's user.
    let input = page.find(Locator::Id("message-input")).await.unwrap();
    input.send_keys("hola desde la página").await.unwrap();
    page.find(Locator::Css("button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let from_page = loop {
        let frame = native.recv_type("message").await;
        if frame["message"] == "hola desde la página" {
            break frame;
        }
        assert!(
            frame["message"].as_str().unwrap().starts_with("probe"),
            "{frame}"
        );
    };
    let page_id = js(&page, "return socket.id;").await;
    assert_eq!(
        from_page["user"], page_id,
        "the page's socket id is its user"
    );

    // And from each of the others: the page shows every one, once.
    node.emit(
        "message",
        serde_json::json!([{"room": "general", "message": "hola desde node"}]),
    );
    python.emit(
        "message",
        serde_json::json!([{"room": "general", "message": "hola desde python"}]),
    );
    native.say("general", "hola desde native").await;
    for text in ["hola desde node", "hola desde python", "hola desde native"] {
        wait_for("the message on the page", DEADLINE, async || {
            lines(&page)
                .await
                .iter()
                .any(|l| l.ends_with(text))
                .then_some(())
        })
        .await;
    }
    native.say("general", "end").await;
    wait_for("the end on the page", DEADLINE, async || {
        lines(&page)
            .await
            .iter()
            .any(|l| l.ends_with(": end"))
            .then_some(())
    })
    .await;
    let shown = lines(&page).await;
    for text in [
        "hola desde la página",
        "hola desde node",
        "hola desde python",
        "hola desde native",
    ] {
        assert_eq!(
            shown.iter().filter(|l| l.ends_with(text)).count(),
            1,
            "{text} once: {shown:?}"
        );
    }
    for client in [&mut node, &mut python] {
        let mut seen: Vec<String> = client
            .texts_until("end")
            .await
            .into_iter()
            .filter(|t| !t.starts_with("probe"))
            .collect();
        seen.sort();
        assert_eq!(
            seen,
            [
                "hola desde la página",
                "hola desde native",
                "hola desde node",
                "hola desde python"
            ]
        );
    }

    // The same page from an origin not allowed never connects.
    stranger.goto(&bad_url).await.unwrap();
    let refused = |r: &Process| {
        r.log
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("origin refused") && l.contains(&bad_origin))
    };
    wait_for("the stranger's page to be refused", DEADLINE, async || {
        d.replicas.iter().any(refused).then_some(())
    })
    .await;
    assert_eq!(
        js(&stranger, "return socket.connected;").await,
        Value::Bool(false)
    );
}
