//! `rtchat api`: publish, history, presence, cluster and disconnect from
//! the command line
//! against a real server, as text and `--json`, and the exit codes.

mod common;

use common::*;
use serde_json::Value;

const KEY: &str = "cli-api-key-0123";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_history_and_presence_from_the_command_line() {
    let server = Process::ws_server("server-1", None, &["--api-key", KEY]);
    let base = server.http_url("");
    let mut member = Client::connect(&server.ws_url()).await;
    member.join("general").await;

    let (ok, out, err) = api_cli(
        &base,
        Some(KEY),
        &["publish", "general", "hi there", "--name", "CLI"],
    );
    assert!(ok, "{err}");
    let id = out
        .trim()
        .strip_prefix("Published: ")
        .expect(&out)
        .to_owned();
    let frame = member.messages(1).await.remove(0);
    assert_eq!(frame["id"], id.as_str());
    assert_eq!(frame["message"], "hi there");

    let (ok, out, err) = api_cli(&base, Some(KEY), &["history", "general", "--limit", "5"]);
    assert!(ok, "{err}");
    assert_eq!(out, format!("[{id}] CLI (api): hi there\n"));
    let (ok, out, _) = api_cli(&base, Some(KEY), &["--json", "presence", "general"]);
    assert!(ok);
    let answer: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(answer["members"][0]["user"], member.user.as_str());
    let (ok, out, _) = api_cli(&base, Some(KEY), &["presence", "general"]);
    assert!(ok);
    assert_eq!(out, format!("{} on server-1\n", member.user));

    // The cluster view: this one replica, with its one socket and room
    // (once its report, written every second, has them).
    wait_for("the replica's report", DEADLINE, async || {
        let (ok, out, err) = api_cli(&base, Some(KEY), &["cluster"]);
        assert!(ok, "{err}");
        (out.starts_with("server-1 ready: 1 sockets (1 native, 0 Socket.IO), 1 rooms")
            && out.contains("room general: 1 members"))
        .then_some(())
    })
    .await;
    let (ok, out, err) = api_cli(&base, Some(KEY), &["disconnect", &member.user]);
    assert!(ok, "{err}");
    assert_eq!(out, format!("Disconnected: {}\n", member.user));
    assert_eq!(member.recv_close().await, Some(4002));

    // Refusals: exit non-zero, the code on stderr, nothing on stdout.
    for (key, args, code) in [
        (None, vec!["publish", "general", "x"], "unauthorized"),
        (Some("wrong"), vec!["history", "general"], "unauthorized"),
        (Some(KEY), vec!["publish", "bad room", "x"], "invalid_room"),
    ] {
        let (ok, out, err) = api_cli(&base, key, &args);
        assert!(!ok && out.is_empty(), "{args:?}: {out}");
        assert!(err.contains(code), "{args:?}: {err}");
    }
    let (ok, _, err) = api_cli("http://127.0.0.1:1", Some(KEY), &["presence", "general"]);
    assert!(!ok && err.contains("cannot connect"), "{err}");
}
