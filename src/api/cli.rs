//! `rtchat api`: the server API from the command line. Results go to
//! stdout as text, or as the API's JSON answer on one line with `--json`;
//! a refused call prints its code and message to stderr and exits
//! non-zero, as `rtchat grpc-client` does.

use anyhow::{Context, anyhow, bail};
use axum::body::Body;
use clap::{Args, Subcommand};
use hyper::Request;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use std::time::Duration;

/// A history of 1000 messages of 4 KiB fits.
const MAX_ANSWER_BYTES: usize = 16 * 1024 * 1024;

#[derive(Debug, Clone, Args)]
pub struct ApiArgs {
    /// The chat server's base URL.
    #[arg(
        long,
        env = "API_URL",
        default_value = "http://127.0.0.1:3000",
        global = true
    )]
    pub url: String,

    /// The server's API key.
    #[arg(long, env = "API_KEY", hide_env_values = true, global = true)]
    pub api_key: Option<String>,

    /// Print the answer as one JSON object instead of text.
    #[arg(long, global = true)]
    pub json: bool,

    /// Deadline for the whole call.
    #[arg(long, env = "API_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration, global = true)]
    pub timeout: Duration,

    #[command(subcommand)]
    pub call: ApiCall,
}

#[derive(Debug, Clone, Subcommand)]
pub enum ApiCall {
    /// Post a message to a room; prints its id.
    Publish {
        room: String,
        message: String,
        /// Display name the message shows.
        #[arg(long)]
        name: Option<String>,
        /// Post once per room and key, however often this is retried.
        #[arg(long)]
        idempotency_key: Option<String>,
    },
    /// Print a room's messages: the newest, or those after `--since`.
    History {
        room: String,
        #[arg(long)]
        since: Option<u64>,
        #[arg(long)]
        limit: Option<usize>,
    },
    /// Print who is in a room, on every replica.
    Presence { room: String },
    /// Disconnect every connection of a user, on every replica.
    Disconnect { user: String },
    /// Print every live replica and the busiest rooms of the cluster.
    Cluster,
    /// Drain a replica (the one answering, or `--server`): it stops taking
    /// sockets, sends those it holds to the others at the drain's pace,
    /// and exits.
    Drain {
        /// The replica's id (SERVER_ID); any live replica can be named
        /// through any other.
        #[arg(long)]
        server: Option<String>,
    },
}

pub async fn run(args: ApiArgs) -> anyhow::Result<()> {
    let (path, body) = match &args.call {
        ApiCall::Publish {
            room,
            message,
            name,
            idempotency_key,
        } => (
            "publish",
            json!({"room": room, "message": message, "name": name, "idempotency_key": idempotency_key}),
        ),
        ApiCall::History { room, since, limit } => (
            "history",
            json!({"room": room, "since": since.map(|s| s.to_string()), "limit": limit}),
        ),
        ApiCall::Presence { room } => ("presence", json!({"room": room})),
        ApiCall::Disconnect { user } => ("disconnect", json!({"user": user})),
        ApiCall::Cluster => ("cluster", json!({})),
        ApiCall::Drain { server: None } => ("drain", json!({})),
        ApiCall::Drain {
            server: Some(server),
        } => ("drain", json!({"server": server})),
    };
    let answer = tokio::time::timeout(args.timeout, call(&args, path, &body))
        .await
        .map_err(|_| anyhow!("no answer from {} within {:?}", args.url, args.timeout))??;
    if args.json {
        println!("{answer}");
        return Ok(());
    }
    match args.call {
        ApiCall::Publish { .. } => println!("Published: {}", text(&answer["id"])),
        ApiCall::History { .. } => {
            for m in answer["messages"].as_array().into_iter().flatten() {
                println!("[{}] {}: {}", text(&m["id"]), who(m), text(&m["message"]));
            }
        }
        ApiCall::Presence { .. } => {
            for m in answer["members"].as_array().into_iter().flatten() {
                println!("{} on {}", who(m), text(&m["server"]));
            }
        }
        ApiCall::Drain { .. } => println!("Draining: {}", text(&answer["server"])),
        ApiCall::Disconnect { .. } => println!("Disconnected: {}", text(&answer["user"])),
        ApiCall::Cluster => print_cluster(&answer),
    }
    Ok(())
}

/// One line per replica, then one per busy room.
fn print_cluster(answer: &Value) {
    for r in answer["replicas"].as_array().into_iter().flatten() {
        let state = match (r["draining"].as_bool(), r["ready"].as_bool()) {
            (Some(true), _) => "draining",
            (_, Some(false)) => "not ready",
            _ => "ready",
        };
        println!(
            "{} {state}: {} sockets ({} native, {} Socket.IO), {} rooms, up {} s, {} messages in, {} out",
            text(&r["server"]),
            r["sockets"],
            r["native"],
            r["socketio"],
            r["rooms"],
            r["uptime_seconds"],
            r["messages_in"],
            r["messages_out"],
        );
    }
    for room in answer["rooms"].as_array().into_iter().flatten() {
        println!("room {}: {} members", text(&room["room"]), room["members"]);
    }
}

fn text(value: &Value) -> &str {
    value.as_str().unwrap_or_default()
}

/// `name (user)`, or the user alone.
fn who(member: &Value) -> String {
    match member["name"].as_str() {
        Some(name) => format!("{name} ({})", text(&member["user"])),
        None => text(&member["user"]).to_owned(),
    }
}

/// One POST to `/api/<path>`: the answer, or the refusal as an error.
async fn call(args: &ApiArgs, path: &str, body: &Value) -> anyhow::Result<Value> {
    let base: hyper::Uri = args
        .url
        .parse()
        .with_context(|| format!("invalid --url {:?}", args.url))?;
    if base.scheme_str() != Some("http") {
        bail!("--url must be http://host:port (put TLS in front of rtchat, not in it)");
    }
    let authority = base.authority().context("--url has no host")?.clone();
    let prefix = base.path().trim_end_matches('/');
    let stream = tokio::net::TcpStream::connect(authority.as_str())
        .await
        .with_context(|| format!("cannot connect to {}", args.url))?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let mut request = Request::post(format!("{prefix}/api/{path}"))
        .header(hyper::header::HOST, authority.as_str())
        .header(hyper::header::CONTENT_TYPE, "application/json");
    if let Some(key) = &args.api_key {
        request = request.header("x-api-key", key);
    }
    let request = request.body(Body::from(body.to_string()))?;
    let response = sender.send_request(request).await?;
    let status = response.status();
    let bytes = axum::body::to_bytes(Body::new(response.into_body()), MAX_ANSWER_BYTES).await?;
    let answer: Value = serde_json::from_slice(&bytes)
        .with_context(|| format!("{status} from the server, not a JSON answer"))?;
    if !status.is_success() {
        bail!(
            "{}: {} ({status})",
            text(&answer["code"]),
            text(&answer["message"])
        );
    }
    Ok(answer)
}
