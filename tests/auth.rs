//! Who may connect, with tokens: the native door refuses every kind of bad
//! token before the upgrade, takes the member's user and name from a good
//! one, holds it to its rooms, and closes it when the token expires.

mod common;

use base64::Engine;
use common::*;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};

/// Every secret of the tests carries `do-not-log`: the test command fails
/// if any log of the run holds it.
const SECRET: &str = "test secret, do-not-log, 32 bytes";

fn now() -> u64 {
    rtchat::auth::expiry_in(std::time::Duration::ZERO)
}

fn token(claims: Value) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

async fn server(mode: &str) -> Server {
    Server::ws("server-1", None, &["--auth", mode, "--jwt-secret", SECRET]).await
}

/// The HTTP status of an upgrade to `url`.
async fn status(url: &str) -> u16 {
    match tokio_tungstenite::connect_async(url).await {
        Ok(_) => 101,
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(other) => panic!("{other}"),
    }
}

/// Every kind of bad token, each named, all for the subject "ana" with
/// scope `users:write`: the same list for the three doors.
fn bad_tokens() -> Vec<(&'static str, String)> {
    let claims = json!({"sub": "ana", "exp": now() + 60, "scope": "users:write"});
    let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let signed = |algorithm, claims: &Value, secret: &[u8]| {
        encode(
            &Header::new(algorithm),
            claims,
            &EncodingKey::from_secret(secret),
        )
        .unwrap()
    };
    vec![
        ("garbage", "garbage".into()),
        (
            "bad signature",
            signed(
                Algorithm::HS256,
                &claims,
                b"some other secret, long enough..",
            ),
        ),
        (
            "another algorithm",
            signed(Algorithm::HS512, &claims, SECRET.as_bytes()),
        ),
        (
            "alg none",
            format!(
                "{}.{}.",
                b64(&json!({"alg": "none", "typ": "JWT"})),
                b64(&claims)
            ),
        ),
        (
            "expired",
            token(json!({"sub": "ana", "exp": now() - 60, "scope": "users:write"})),
        ),
        (
            "not yet valid",
            token(
                json!({"sub": "ana", "exp": now() + 600, "nbf": now() + 300, "scope": "users:write"}),
            ),
        ),
        (
            "no exp",
            token(json!({"sub": "ana", "scope": "users:write"})),
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tokens_are_refused_before_the_upgrade() {
    let server = server("required").await;
    let url = |token: &str| format!("{}?token={token}", server.ws_url());
    let claims = json!({"sub": "ana", "exp": now() + 60});
    let mut cases = vec![("no token", server.ws_url())];
    cases.extend(bad_tokens().into_iter().map(|(what, t)| (what, url(&t))));
    for (what, url) in cases {
        assert_eq!(status(&url).await, 401, "{what}");
    }
    assert_eq!(status(&url(&token(claims))).await, 101, "a good token");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_says_who_the_member_is() {
    let server = server("required").await;
    let good = token(json!({"sub": "ana", "name": "Ana", "exp": now() + 60}));
    // The Authorization header works as well as the query parameter, and a
    // name in the query cannot override the token's.
    let mut request =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(format!(
            "{}?name=Mallory",
            server.ws_url()
        ))
        .unwrap();
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {good}").parse().unwrap());
    let mut ana = Client::connect(request).await;
    assert_eq!(ana.user, "ana");
    ana.join("r").await;
    ana.send(json!({"type": "message", "room": "r", "message": "hi"}))
        .await;
    let message = ana.recv_type("message").await;
    assert_eq!(
        (message["user"].as_str(), message["name"].as_str()),
        (Some("ana"), Some("Ana"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_in_the_token_bound_join_post_and_presence() {
    let server = server("required").await;
    let scoped = token(json!({"sub": "bo", "exp": now() + 60, "rooms": ["team-*"]}));
    let mut bo = Client::connect(&format!("{}?token={scoped}", server.ws_url())).await;
    assert_eq!(bo.join("team-a").await["type"], "joined");
    for frame in [
        json!({"type": "join_room", "room": "general"}),
        json!({"type": "message", "room": "general", "message": "sneaky"}),
        json!({"type": "presence", "room": "general"}),
    ] {
        bo.send(frame.clone()).await;
        let error = bo.recv_type("error").await;
        assert_eq!(
            (error["code"].as_str(), error["room"].as_str()),
            (Some("forbidden"), Some("general")),
            "{frame}"
        );
    }
    bo.say("team-a", "allowed").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_that_expires_closes_its_connection_with_4001() {
    let server = server("required").await;
    let short = token(json!({"sub": "cy", "exp": now() + 2}));
    let mut cy = Client::connect(&format!("{}?token={short}", server.ws_url())).await;
    let long = token(json!({"sub": "di", "exp": now() + 600}));
    let mut di = Client::connect(&format!("{}?token={long}", server.ws_url())).await;
    assert_eq!(cy.recv_close().await, Some(4001));
    di.join("r").await;
    di.say("r", "still here").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn optional_mode_lets_anonymous_clients_in_but_checks_given_tokens() {
    let server = server("optional").await;
    let anonymous = Client::connect(&server.ws_url()).await;
    assert_eq!(anonymous.user.len(), 16, "a random id");
    assert_eq!(
        status(&format!("{}?token=garbage", server.ws_url())).await,
        401
    );
    let good = token(json!({"sub": "ed", "exp": now() + 60}));
    let ed = Client::connect(&format!("{}?token={good}", server.ws_url())).await;
    assert_eq!(ed.user, "ed");
}

#[test]
fn the_token_command_mints_what_the_server_accepts() {
    let out = rtchat()
        .args(["token", "--sub", "fay", "--rooms", "a,b*", "--ttl", "5m"])
        .env("JWT_SECRET", SECRET)
        .output()
        .unwrap();
    assert!(out.status.success());
    let minted = String::from_utf8(out.stdout).unwrap();
    let verifier = rtchat::auth::Verifier::new(
        rtchat::auth::Mode::Required,
        Some(&rtchat::auth::KeySource::Secret(SECRET.as_bytes().to_vec())),
    )
    .unwrap();
    let id = verifier.verify(Some(minted.trim())).unwrap().unwrap();
    assert_eq!(id.user, "fay");
    assert!(id.rooms.unwrap().allows("bee"));
}

/// A secret mounted as a file (with the newline `echo` adds) is the same
/// secret, for the servers and for `rtchat token`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_secret_can_come_from_a_file() {
    let path = std::env::temp_dir().join(format!("rtchat-jwt-secret-{}", free_port()));
    std::fs::write(&path, format!("{SECRET}\n")).unwrap();
    let file = path.to_str().unwrap();
    let out = rtchat()
        .args(["token", "--sub", "gil", "--jwt-secret-file", file])
        .env_remove("JWT_SECRET")
        .output()
        .unwrap();
    assert!(out.status.success());
    let minted = String::from_utf8(out.stdout).unwrap();
    let server = Server::ws(
        "server-1",
        None,
        &["--auth", "required", "--jwt-secret-file", file],
    )
    .await;
    let member = Client::connect(&format!("{}?token={}", server.ws_url(), minted.trim())).await;
    assert_eq!(member.user, "gil");
    let signed_elsewhere = token(json!({"sub": "gil", "exp": now() + 60}));
    assert_eq!(
        status(&format!("{}?token={signed_elsewhere}", server.ws_url())).await,
        101,
        "the file's secret is SECRET, newline aside"
    );
    std::fs::remove_file(&path).unwrap();
}

/// The Redis URL (which may carry a password) mounted as a file is the
/// same URL; an empty file is refused at start, and said so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redis_url_can_come_from_a_file() {
    let redis = Redis::start();
    let path = std::env::temp_dir().join(format!("rtchat-redis-url-{}", free_port()));
    std::fs::write(&path, format!("{}\n", redis.url())).unwrap();
    let file = path.to_str().unwrap().to_owned();
    let server = Process::ws_server("server-1", None, &["--redis-url-file", &file]);
    let ready = server.http_url("/readyz");
    wait_for("the replica to be ready on Redis", DEADLINE, async || {
        (http_get(&ready).await.0 == 200).then_some(())
    })
    .await;
    assert!(server.logged("mode=\"redis\""), "on Redis, not standalone");
    std::fs::write(&path, "").unwrap();
    let out = rtchat()
        .args([
            "ws-server",
            "--listen",
            "127.0.0.1:0",
            "--redis-url-file",
            &file,
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("--redis-url-file") && said.contains("is empty"),
        "{said}"
    );
    std::fs::remove_file(&path).unwrap();
}

/// The same rules through the Socket.IO door, with the official client:
/// `auth: {token}` in its CONNECT.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_io_clients_present_tokens_in_their_connect() {
    let server = server("required").await;
    let url = format!("http://{}", server.addr());
    let options = |token: Option<String>| match token {
        Some(token) => json!({"auth": {"token": token}, "reconnection": false}),
        None => json!({"reconnection": false}),
    };
    let mut nobody = SioClient::node(&url, options(None));
    assert_eq!(nobody.next("connect_error").await, "a token is required");
    for (what, bad) in bad_tokens() {
        let mut client = SioClient::node(&url, options(Some(bad)));
        let reason = client.next("connect_error").await;
        assert!(
            reason.as_str().is_some_and(|r| r.contains("token")),
            "{what}: {reason}"
        );
    }
    let expired = token(json!({"sub": "ana", "exp": now() - 60}));
    let mut late = SioClient::node(&url, options(Some(expired)));
    assert_eq!(late.next("connect_error").await, "token expired");

    let good = token(json!({"sub": "ana", "name": "Ana", "exp": now() + 60, "rooms": ["team-*"]}));
    let mut ana = SioClient::node(&url, options(Some(good)));
    ana.next("connect").await;
    ana.emit_with_ack("join_room", json!(["general"]));
    let refused = ana.next_where(|l| l["ack"] == "join_room").await;
    assert_eq!(refused["reply"]["error"]["code"], "forbidden");
    ana.emit_with_ack("join_room", json!(["team-a"]));
    ana.next_where(|l| l["ack"] == "join_room").await;
    ana.emit("message", json!([{"room": "team-a", "message": "hi"}]));
    let message = ana.message().await;
    assert_eq!(
        (message[0]["user"].as_str(), message[0]["name"].as_str()),
        (Some("ana"), Some("Ana"))
    );

    let short = token(json!({"sub": "bo", "exp": now() + 2}));
    let mut bo = SioClient::node(&url, options(Some(short)));
    bo.next("connect").await;
    assert_eq!(bo.next("disconnect").await, "io server disconnect");
}

/// gRPC: the same JWTs as bearer tokens; reads for any valid token, the
/// write methods for tokens with scope `users:write` or the static
/// service token; health open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_takes_jwts_with_a_scope_for_writes() {
    let server = Server::grpc(
        "grpc-1",
        None,
        &[
            "--auth",
            "required",
            "--jwt-secret",
            SECRET,
            "--auth-token",
            "service-token-do-not-log",
        ],
    )
    .await;
    let addr = server.grpc_url();
    let call = |token: Option<String>, args: &[&str]| {
        let mut full: Vec<String> = Vec::new();
        if let Some(token) = token {
            full.extend(["--token".into(), token]);
        }
        full.extend(args.iter().map(|a| a.to_string()));
        let refs: Vec<&str> = full.iter().map(String::as_str).collect();
        grpc_client(&addr, &refs)
    };
    let reader = token(json!({"sub": "ana", "exp": now() + 60}));
    let writer = token(json!({"sub": "bo", "exp": now() + 60, "scope": "users:write"}));
    let mut cases = vec![("none", None)];
    cases.extend(bad_tokens().into_iter().map(|(what, t)| (what, Some(t))));
    for (what, token) in cases {
        let (ok, _, err) = call(token, &["get", "1"]);
        assert!(
            !ok && err.starts_with("error: UNAUTHENTICATED"),
            "{what}: {err}"
        );
    }
    let (ok, out, _) = call(Some(reader.clone()), &["get", "1"]);
    assert!(ok && out.contains("Alice"), "reads with any valid token");
    let (ok, _, err) = call(Some(reader), &["create", "Eve", "eve@example.com"]);
    assert!(!ok && err.starts_with("error: PERMISSION_DENIED"), "{err}");
    assert!(call(Some(writer), &["create", "Fay", "fay@example.com"]).0);
    assert!(
        call(
            Some("service-token-do-not-log".into()),
            &["create", "Gus", "gus@example.com"]
        )
        .0
    );
    let (ok, out, _) = grpc_client(&addr, &["health"]);
    assert!(
        ok && out.contains("SERVING"),
        "health needs no token: {out}"
    );
}
