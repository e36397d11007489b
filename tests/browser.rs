//! The chat page in a real headless Chromium (Debian's, driven through
//! chromedriver), against three replicas and a private Redis behind the
//! repository's nginx config: what a person sees.

mod common;

use common::*;
use fantoccini::Locator;

async fn wait_live(page: &Browser) {
    wait_for("the page to be live", DEADLINE, async || {
        (attr(page, "#state", "data-state").await.as_deref() == Some("live")).then_some(())
    })
    .await;
}

async fn say(page: &Browser, message: &str) {
    let input = page.find(Locator::Id("text")).await.unwrap();
    input
        .send_keys(&format!("{message}\u{E007}"))
        .await
        .unwrap(); // Enter
}

async fn wait_line(page: &Browser, needle: &str) {
    wait_for(&format!("a line with {needle:?}"), DEADLINE, async || {
        message_lines(page)
            .await
            .iter()
            .any(|l| l.contains(needle))
            .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_people_chat_across_replicas_through_nginx() {
    let mut d = ChatDeployment::start();
    let driver = Driver::start();
    let (ana, bob) = (driver.browser(1).await, driver.browser(2).await);
    let url = |name: &str| d.nginx.url(&format!("/?room=lobby&name={name}"));

    ana.goto(&url("ana")).await.unwrap();
    wait_live(&ana).await;
    let ana_server = text(&ana, "#server").await;
    // nginx round-robins: reload bob until he is on another replica.
    let bob_server = wait_for("bob on another replica", DEADLINE, async || {
        bob.goto(&url("bob")).await.unwrap();
        wait_live(&bob).await;
        let server = text(&bob, "#server").await;
        (server != ana_server).then_some(server)
    })
    .await;
    assert!(ana_server.starts_with("on server-") && bob_server.starts_with("on server-"));

    say(&ana, "hello from ana").await;
    wait_line(&bob, "ana: hello from ana").await;
    say(&bob, "hi ana").await;
    wait_line(&ana, "bob: hi ana").await;
    assert!(
        message_lines(&ana)
            .await
            .iter()
            .any(|l| l.contains(&format!("[{}] ana: hello", &ana_server[3..])))
    );

    for page in [&ana, &bob] {
        wait_for("both people listed as present", DEADLINE, async || {
            let members = text(page, "#members").await;
            (members.contains("ana") && members.contains("bob")).then_some(())
        })
        .await;
    }

    // Markup in a message is shown as text, never rendered.
    let payload = r#"<b id="pwned">bold</b><img src=x onerror="document.title='pwned'">"#;
    say(&bob, payload).await;
    wait_line(&ana, payload).await;
    assert!(
        ana.find(Locator::Id("pwned")).await.is_err(),
        "the payload became markup"
    );
    assert_ne!(ana.title().await.unwrap(), "pwned");

    let png = ana.screenshot().await.unwrap();
    let shots = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    std::fs::write(shots.join("chat.png"), png).unwrap();

    // Kill the replica ana reached through nginx: her page reconnects
    // through nginx to another one and shows what bob said meanwhile, once.
    let index: usize = ana_server["on server-".len()..].parse::<usize>().unwrap() - 1;
    d.replicas[index].kill();
    let sent: Vec<String> = (0..5).map(|i| format!("while you were away {i}")).collect();
    for message in &sent {
        say(&bob, message).await;
    }
    wait_for("ana's page to reconnect", DEADLINE, async || {
        let reconnects = attr(&ana, "#state", "data-reconnects").await;
        (reconnects.is_some()
            && attr(&ana, "#state", "data-state").await.as_deref() == Some("live"))
        .then_some(())
    })
    .await;
    assert_ne!(
        text(&ana, "#server").await,
        ana_server,
        "reconnected to another replica"
    );
    say(&bob, "all caught up").await;
    wait_line(&ana, "all caught up").await;
    let lines = message_lines(&ana).await;
    for message in &sent {
        let count = lines
            .iter()
            .filter(|l| l.ends_with(message.as_str()))
            .count();
        assert_eq!(count, 1, "{message:?} shown {count} times: {lines:#?}");
    }

    ana.close().await.unwrap();
    bob.close().await.unwrap();
}
