//! Command-line and environment configuration for every subcommand.
//!
//! Every option has an environment variable (shown by `--help`) so the same
//! image runs unchanged under docker compose, systemd or a shell.
//!
//! - [`limits`]: the chat server's client-facing bounds.
//! - [`auth`]: who may connect (both servers) and `rtchat token`.
//! - [`gate`]: what a connection must do before it is served (both servers).

use crate::logging::LogFormat;
use clap::{Args, Parser, Subcommand};
use std::net::SocketAddr;
use std::time::Duration;

pub(crate) mod auth;
pub(crate) mod gate;
pub(crate) mod limits;
pub(crate) mod rooms;
pub(crate) mod webhooks;

pub use auth::{AuthArgs, TokenArgs};
pub use gate::GateArgs;
pub use limits::LimitArgs;
pub use rooms::RoomArgs;
pub use webhooks::WebhookArgs;

#[derive(Debug, Parser)]
#[command(
    name = "rtchat",
    version,
    about = "Real-time chat and a user service that scale out through Redis"
)]
pub struct Cli {
    /// Log line format on stderr (filter with RUST_LOG).
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the WebSocket chat server (chat page at /, protocol at /ws).
    WsServer(WsServerArgs),
    /// Run the gRPC UserService.
    GrpcServer(GrpcServerArgs),
    /// Call the gRPC UserService from the command line.
    GrpcClient(crate::grpc::client::ClientArgs),
    /// Call the chat server's API (`--api-key`) from the command line.
    Api(crate::api::cli::ApiArgs),
    /// Measure a running deployment (see docs/BENCHMARKS.md).
    Bench(crate::bench::BenchArgs),
    /// Health check for containers: exit 0 when an HTTP or gRPC target is ready.
    Probe(crate::probe::ProbeArgs),
    /// Mint an HS256 token from the configured secret (for development).
    Token(TokenArgs),
}

/// Options shared by both servers.
#[derive(Debug, Clone, Args)]
pub struct RedisArgs {
    /// Redis to share state with other replicas; without it the server runs
    /// standalone with in-memory state.
    /// (Its value is hidden in --help: the URL may carry a password.)
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,

    /// The same URL read from a file (a mounted secret), so that a password
    /// in it is never an environment value.
    #[arg(long, env = "REDIS_URL_FILE", conflicts_with = "redis_url")]
    pub redis_url_file: Option<std::path::PathBuf>,

    /// How long a Redis command may take before it fails (and the caller gets
    /// an "unavailable" error instead of waiting for Redis to come back).
    #[arg(long, env = "REDIS_TIMEOUT", default_value = "2s", value_parser = humantime::parse_duration)]
    pub redis_timeout: Duration,

    /// Acknowledge a message (and a user change) only once this many Redis
    /// replicas hold it too (Redis `WAIT`), so a failover that promotes a
    /// replica cannot lose it. 0 (the default) acknowledges once the
    /// primary has it; see the README for what each promises and costs.
    #[arg(long, env = "REDIS_WAIT_REPLICAS", default_value_t = 0)]
    pub redis_wait_replicas: u32,
}

impl RedisArgs {
    /// `None`: standalone. Reads the URL's file.
    pub fn settings(&self) -> anyhow::Result<Option<crate::redis::RedisSettings>> {
        let url = match (&self.redis_url, &self.redis_url_file) {
            (Some(url), _) => url.clone(),
            (None, Some(path)) => {
                String::from_utf8(auth::read_secret(path, "--redis-url-file")?)
                    .map_err(|_| anyhow::anyhow!("--redis-url-file must hold UTF-8 text"))?
            }
            (None, None) => return Ok(None),
        };
        Ok(Some(crate::redis::RedisSettings {
            url,
            timeout: self.redis_timeout,
            wait_replicas: self.redis_wait_replicas,
        }))
    }
}

#[derive(Debug, Clone, Args)]
pub struct WsServerArgs {
    /// Name of this replica, shown to clients in every message it accepts.
    /// `{hostname}` in it becomes the host name (under Docker, the
    /// container's), so replicas of one scaled service get distinct names.
    #[arg(long, env = "SERVER_ID", default_value = "server-1", value_parser = replica_id)]
    pub id: String,

    /// Address to listen on for HTTP and WebSocket.
    #[arg(long, env = "LISTEN", default_value = "0.0.0.0:3000")]
    pub listen: SocketAddr,

    #[command(flatten)]
    pub redis: RedisArgs,

    #[command(flatten)]
    pub limits: LimitArgs,

    #[command(flatten)]
    pub gate: GateArgs,

    #[command(flatten)]
    pub auth: AuthArgs,

    #[command(flatten)]
    pub rooms: RoomArgs,

    #[command(flatten)]
    pub webhooks: WebhookArgs,

    /// The longest a drain (SIGTERM, or the server API's drain) may take:
    /// sockets still open then are closed at once. Keep it above
    /// --drain-delay plus --drain-duration, and below the orchestrator's
    /// grace period (compose stop_grace_period, Kubernetes
    /// terminationGracePeriodSeconds).
    #[arg(long, env = "SHUTDOWN_TIMEOUT", default_value = "20s", value_parser = humantime::parse_duration)]
    pub shutdown_timeout: Duration,

    /// How long a draining replica keeps serving its sockets, not ready and
    /// refusing new ones, before it sends them elsewhere: the time a
    /// balancer needs to stop routing to it (Kubernetes: a readiness probe
    /// failure plus endpoint propagation).
    #[arg(long, env = "DRAIN_DELAY", default_value = "3s", value_parser = humantime::parse_duration)]
    pub drain_delay: Duration,

    /// Over how long a draining replica closes its sockets (evenly, oldest
    /// first; at least 20 a second), so that clients reconnect elsewhere as
    /// a trickle rather than all at once.
    #[arg(long, env = "DRAIN_DURATION", default_value = "10s", value_parser = humantime::parse_duration)]
    pub drain_duration: Duration,

    /// Rebalancing (needs Redis): a replica above its fair share of sockets
    /// refuses new ones, and beyond the tolerance sends the excess to
    /// replicas with room (after a scale-out or a rolling restart).
    #[arg(long, env = "REBALANCE", value_enum, default_value_t = Switch::On)]
    pub rebalance: Switch,

    /// How far above its fair share a replica may be before it sheds, as a
    /// fraction (0.1: 10% above the average).
    #[arg(long, env = "REBALANCE_TOLERANCE", default_value_t = 0.1)]
    pub rebalance_tolerance: f64,

    /// Sockets a replica sends elsewhere per second at most when it sheds.
    #[arg(long, env = "REBALANCE_RATE", default_value_t = 20.0)]
    pub rebalance_rate: f64,

    /// Socket.IO connection state recovery: `on` adds an offset as the
    /// last argument of every `message` event (socket.io-client ignores
    /// it; python-socketio handlers must accept it); `off` for clients that
    /// cannot take it.
    #[arg(long, env = "SOCKETIO_RECOVERY", value_enum, default_value_t = Switch::On)]
    pub socketio_recovery: Switch,

    /// How long a disconnected Socket.IO session can be recovered, on any
    /// replica.
    #[arg(long, env = "SOCKETIO_RECOVERY_WINDOW", default_value = "2m", value_parser = humantime::parse_duration)]
    pub socketio_recovery_window: Duration,

    /// `host:port` the other replicas reach this one at, to forward Socket.IO
    /// polling requests a balancer sent to the wrong replica. By default the
    /// listening address, or, listening on all interfaces, the address of
    /// the interface that routes to Redis.
    #[arg(long, env = "ADVERTISE_ADDR")]
    pub advertise_addr: Option<String>,

    /// Comma-separated origins whose pages may connect (WebSocket upgrades
    /// on both doors, Socket.IO polling with CORS), or `*` for any. The
    /// server's own origin is always allowed; requests without an Origin
    /// header (not browsers) are never refused for it.
    #[arg(long, env = "ALLOWED_ORIGINS", default_value = "")]
    pub allowed_origins: crate::gate::origins::AllowedOrigins,

    /// Turns the server API on under `/api/`: every call must carry this
    /// key (`X-API-Key` or `Authorization: apikey`). Off (404) without it.
    #[arg(long, env = "API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,

    /// Read the API key from this file instead (e.g. a mounted secret).
    #[arg(long, env = "API_KEY_FILE", conflicts_with = "api_key")]
    pub api_key_file: Option<std::path::PathBuf>,
}

/// A feature switch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Switch {
    On,
    Off,
}

impl WsServerArgs {
    /// The plain settings the server runs on (reads the JWT key file).
    pub fn settings(&self) -> anyhow::Result<crate::chat_server::Settings> {
        let limits = &self.limits;
        let redis = self.redis.settings()?;
        let with_redis = redis.is_some();
        Ok(crate::chat_server::Settings {
            verifier: self.auth.verifier()?,
            hub: crate::hub::HubSettings {
                rooms: self.rooms.settings(&self.id),
                max_rooms: limits.max_rooms,
                send_queue: limits.send_queue,
            },
            limits: crate::door::limits::Limits {
                max_frame_bytes: limits.max_frame_bytes,
                rate_limit: limits.rate_limit,
                rate_burst: limits.rate_burst,
                max_connections: limits.max_connections,
                ping_interval: limits.ping_interval,
                ping_timeout: limits.ping_timeout,
            },
            socketio: crate::socketio::Settings {
                recovery_window: (self.socketio_recovery == Switch::On)
                    .then_some(self.socketio_recovery_window),
                advertise: self.advertise_addr.clone(),
            },
            origins: self.allowed_origins.clone(),
            gate: self.gate.settings(),
            redis,
            shutdown_timeout: self.shutdown_timeout,
            drain: crate::chat_server::drain::DrainSettings {
                delay: self.drain_delay,
                duration: self.drain_duration,
            },
            rebalance: (self.rebalance == Switch::On && with_redis).then_some(
                crate::chat_server::rebalance::RebalanceSettings {
                    tolerance: self.rebalance_tolerance,
                    rate: self.rebalance_rate,
                },
            ),
            api_key: self.api_key()?,
            webhooks: self.webhooks.settings()?,
        })
    }

    fn api_key(&self) -> anyhow::Result<Option<crate::api::ApiKey>> {
        let key = match (&self.api_key, &self.api_key_file) {
            (Some(key), _) => key.clone(),
            (None, Some(path)) => String::from_utf8(auth::read_secret(path, "--api-key-file")?)
                .map_err(|_| anyhow::anyhow!("--api-key-file must hold UTF-8 text"))?,
            (None, None) => return Ok(None),
        };
        crate::api::ApiKey::new(key)
            .map(Some)
            .map_err(anyhow::Error::msg)
    }
}

#[derive(Debug, Clone, Args)]
pub struct GrpcServerArgs {
    /// Name of this replica, used in logs; `{hostname}` as for ws-server.
    #[arg(long, env = "SERVER_ID", default_value = "grpc-1", value_parser = replica_id)]
    pub id: String,

    /// Address to listen on for gRPC (HTTP/2).
    #[arg(long, env = "LISTEN", default_value = "0.0.0.0:50051")]
    pub listen: SocketAddr,

    #[command(flatten)]
    pub redis: RedisArgs,

    #[command(flatten)]
    pub jwt: AuthArgs,

    /// The rules of the rooms its chat service and the user service post
    /// to: the same flags, and the same values, as ws-server's.
    #[command(flatten)]
    pub rooms: RoomArgs,

    #[command(flatten)]
    pub gate: GateArgs,

    #[command(flatten)]
    pub webhooks: WebhookArgs,

    /// Require `authorization: Bearer <token>` on UserService calls
    /// (health and reflection stay open).
    #[arg(long, env = "AUTH_TOKEN", hide_env_values = true)]
    pub auth_token: Option<String>,

    /// Read the bearer token from this file instead (e.g. a mounted secret;
    /// a trailing newline is not part of it).
    #[arg(long, env = "AUTH_TOKEN_FILE", conflicts_with = "auth_token")]
    pub auth_token_file: Option<std::path::PathBuf>,

    /// Comma-separated origins whose pages may call over gRPC-Web (CORS),
    /// or `*` for any; by default only pages served under grpc-server's
    /// own host and port. Behind Envoy, Envoy's cors filter answers instead.
    #[arg(long, env = "ALLOWED_ORIGINS", default_value = "")]
    pub allowed_origins: crate::gate::origins::AllowedOrigins,

    /// Longest a unary call may take; the client's own deadline applies
    /// when shorter. Streams are not cut by it.
    #[arg(long, env = "REQUEST_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub request_timeout: Duration,

    /// Calls served at once per client connection; more wait.
    #[arg(long, env = "CONCURRENCY_LIMIT", default_value_t = 256)]
    pub concurrency_limit: usize,

    /// HTTP/2 ping interval to detect dead peers (keep proxies' idle
    /// timeouts above it).
    #[arg(long, env = "KEEPALIVE_INTERVAL", default_value = "30s", value_parser = humantime::parse_duration)]
    pub keepalive_interval: Duration,

    /// How long shutdown waits for in-flight calls before exiting anyway.
    #[arg(long, env = "SHUTDOWN_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub shutdown_timeout: Duration,
}

impl GrpcServerArgs {
    /// The plain settings the server runs on (reads the JWT key file and
    /// the token file).
    pub fn settings(&self) -> anyhow::Result<crate::grpc::Settings> {
        let auth_token = match (&self.auth_token, &self.auth_token_file) {
            (Some(token), _) if token.is_empty() => anyhow::bail!("the auth token is empty"),
            (Some(token), _) => Some(token.clone()),
            (None, Some(path)) => Some(
                String::from_utf8(auth::read_secret(path, "--auth-token-file")?)
                    .map_err(|_| anyhow::anyhow!("--auth-token-file must hold UTF-8 text"))?,
            ),
            (None, None) => None,
        };
        Ok(crate::grpc::Settings {
            verifier: self.jwt.verifier()?,
            gate: self.gate.settings(),
            id: self.id.clone(),
            rooms: self.rooms.settings(&self.id),
            origins: self.allowed_origins.clone(),
            redis: self.redis.settings()?,
            auth_token,
            request_timeout: self.request_timeout,
            concurrency_limit: self.concurrency_limit,
            keepalive_interval: self.keepalive_interval,
            shutdown_timeout: self.shutdown_timeout,
            webhooks: self.webhooks.settings()?,
        })
    }
}

/// Expands `{hostname}` in a replica id.
fn replica_id(id: &str) -> Result<String, String> {
    if !id.contains("{hostname}") {
        return Ok(id.to_owned());
    }
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .ok_or("{hostname} used but the host name is unknown")?;
    Ok(id.replace("{hostname}", &host))
}

#[cfg(test)]
mod tests;
