//! The server API from a backend's side: JSON POSTs with or without the
//! key, over a raw socket like `http_get`.

use serde_json::Value;

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
    let (status, body) = super::http_exchange(host, request).await;
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
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
