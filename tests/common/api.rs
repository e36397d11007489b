//! The server API from a backend's side: JSON POSTs with or without the
//! key, over a raw socket like `http_get`.

use super::DEADLINE;
use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpStream;

/// How a call carries the key.
#[derive(Debug, Clone, Copy)]
pub enum Key<'a> {
    None,
    Header(&'a str),
    Authorization(&'a str),
}

/// POSTs `body` to `url` (`http://host:port/api/...`): status and the
/// answer as JSON (`Null` when it is not JSON).
pub async fn api_post(url: &str, key: Key<'_>, body: &str) -> (u16, Value) {
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_at(rest.find('/').unwrap());
    let auth = match key {
        Key::None => String::new(),
        Key::Header(key) => format!("X-API-Key: {key}\r\n"),
        Key::Authorization(key) => format!("Authorization: apikey {key}\r\n"),
    };
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n{auth}\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let host = host.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut stream = TcpStream::connect(&host).unwrap();
        stream.set_read_timeout(Some(DEADLINE)).unwrap();
        stream.write_all(request.as_bytes()).unwrap();
        let mut response = String::new();
        let _ = stream.read_to_string(&mut response);
        let status = response
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        (status, serde_json::from_str(body).unwrap_or(Value::Null))
    })
    .await
    .unwrap()
}

/// Publishes with the right key and returns the id; panics on a refusal.
pub async fn api_publish(base: &str, key: &str, body: Value) -> String {
    let (status, answer) = api_post(
        &format!("{base}/api/publish"),
        Key::Header(key),
        &body.to_string(),
    )
    .await;
    assert_eq!(status, 200, "publish refused: {answer}");
    answer["id"].as_str().unwrap().to_owned()
}

/// Runs `rtchat api --url <base> <args>` with `API_KEY` set to `key`:
/// (exit ok, stdout, stderr).
pub fn api_cli(base: &str, key: Option<&str>, args: &[&str]) -> (bool, String, String) {
    let mut command = super::rtchat();
    command
        .args(["api", "--url", base, "--timeout", "3s"])
        .args(args)
        .env_remove("API_KEY");
    if let Some(key) = key {
        command.env("API_KEY", key);
    }
    let output = command.output().expect("rtchat binary");
    (
        output.status.success(),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}
