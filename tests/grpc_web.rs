//! gRPC from the browser: the users page (served by ws-server at /users)
//! in headless Chromium calls GetUser (unary), ListUsers and
//! SubscribeToUpdates (server streaming) over gRPC-Web, straight to
//! grpc-server (tonic-web, CORS from --allowed-origins) and through the
//! repository's Envoy config (its grpc_web and cors filters), and shows a
//! user created meanwhile as it happens.

mod common;

use common::grpc::*;
use common::*;

async fn items(page: &Browser, list: &str) -> Vec<String> {
    let mut out = Vec::new();
    for li in page
        .find_all(Locator::Css(&format!("#{list} li")))
        .await
        .unwrap()
    {
        out.push(li.text().await.unwrap());
    }
    out
}

/// Opens the users page of `chat` pointed at `grpc_web`, checks the unary
/// and streaming calls, creates a user through `users` and waits for the
/// page to show the update.
async fn the_page_follows_users(chat: &Process, grpc_web: &str, users: &impl Endpoint) {
    let driver = Driver::start();
    let page = driver.browser(1).await;
    page.goto(&chat.http_url(&format!("/users?grpc={grpc_web}")))
        .await
        .unwrap();
    wait_for("the page to subscribe", DEADLINE, async || {
        let state = attr(&page, "#status", "data-state").await;
        let status = text(&page, "#status").await;
        assert!(
            !["status", "fetch", "error"]
                .iter()
                .any(|w| status.contains(w)),
            "the page says: {status}"
        );
        (state.as_deref() == Some("subscribed")).then_some(())
    })
    .await;
    assert_eq!(
        text(&page, "#first").await,
        "1 Alice <alice@example.com>",
        "GetUser"
    );
    let listed = items(&page, "users").await;
    assert_eq!(listed.len(), 2, "ListUsers: {listed:?}");

    let made = client(users)
        .await
        .create_user(create("Chromium", "chromium@example.com"))
        .await
        .unwrap()
        .into_inner();
    let expected = format!("created {} Chromium", made.id);
    wait_for("the update on the page", DEADLINE, async || {
        items(&page, "updates")
            .await
            .contains(&expected)
            .then_some(())
    })
    .await;
    page.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_users_page_calls_grpc_server_over_grpc_web() {
    let chat = Process::ws_server("server-1", None, &[]);
    let origin = chat.http_url("");
    let grpc = Process::grpc_server("grpc-1", None, &["--allowed-origins", &origin]);
    the_page_follows_users(&chat, &grpc.http_url(""), &grpc).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_users_page_calls_through_envoys_grpc_web_filter() {
    let redis = Redis::start();
    let chat = Process::ws_server("server-1", None, &[]);
    let origin = chat.http_url("");
    let replicas: Vec<Process> = (1..=2)
        .map(|i| Process::grpc_server(&format!("grpc-server-{i}"), Some(&redis), &[]))
        .collect();
    let ports: Vec<u16> = replicas.iter().map(|r| r.addr.port()).collect();
    let envoy = Envoy::start(|port, admin| {
        let config = deploy_envoy_config(&ports, port, admin);
        let page = r#"exact: "http://localhost""#;
        assert!(
            config.contains(page),
            "the deploy config allows the chat page"
        );
        config.replace(page, &format!("exact: \"{origin}\""))
    })
    .await;
    let envoy_url = envoy.url();
    // Until the first health checks pass Envoy has no healthy host.
    wait_for("a call through Envoy", DEADLINE, async || {
        let mut c =
            rtchat::grpc::pb::user_service_client::UserServiceClient::connect(envoy_url.clone())
                .await
                .ok()?;
        c.get_user(rtchat::grpc::pb::UserRequest { id: 1 })
            .await
            .ok()
    })
    .await;
    the_page_follows_users(&chat, &envoy_url, &replicas[0]).await;
}
