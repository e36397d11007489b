//! Command-line and environment configuration for every subcommand.
//!
//! Every option has an environment variable (shown by `--help`) so the same
//! image runs unchanged under docker compose, systemd or a shell.

use crate::logging::LogFormat;
use clap::{Args, Parser, Subcommand};
use std::net::SocketAddr;
use std::time::Duration;

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
    /// Measure a running deployment (see docs/BENCHMARKS.md).
    Bench(crate::bench::BenchArgs),
    /// Health check for containers: exit 0 when an HTTP or gRPC target is ready.
    Probe(crate::probe::ProbeArgs),
    /// Mint an HS256 token from the configured secret (for development).
    Token(TokenArgs),
}

#[derive(Debug, Clone, Args)]
pub struct TokenArgs {
    /// The member's user id (`sub`).
    #[arg(long)]
    pub sub: String,

    /// Display name (`name`).
    #[arg(long)]
    pub name: Option<String>,

    /// Room patterns the token allows (`rooms`; `*` matches any run of
    /// characters), comma-separated. Any room when absent.
    #[arg(long, value_delimiter = ',')]
    pub rooms: Option<Vec<String>>,

    /// Space-separated scopes (`scope`), e.g. `users:write` for the gRPC
    /// write methods.
    #[arg(long)]
    pub scope: Option<String>,

    /// How long the token is valid.
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    pub ttl: Duration,

    /// The HS256 secret the servers verify with.
    #[arg(long, env = "JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: String,
}

/// Options shared by both servers.
#[derive(Debug, Clone, Args)]
pub struct RedisArgs {
    /// Redis to share state with other replicas; without it the server runs
    /// standalone with in-memory state.
    /// (Its value is hidden in --help: the URL may carry a password.)
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,

    /// How long a Redis command may take before it fails (and the caller gets
    /// an "unavailable" error instead of waiting for Redis to come back).
    #[arg(long, env = "REDIS_TIMEOUT", default_value = "2s", value_parser = humantime::parse_duration)]
    pub redis_timeout: Duration,
}

impl RedisArgs {
    /// `None`: standalone.
    pub fn settings(&self) -> Option<crate::redis::RedisSettings> {
        self.redis_url
            .as_ref()
            .map(|url| crate::redis::RedisSettings {
                url: url.clone(),
                timeout: self.redis_timeout,
            })
    }
}

/// Who may connect, for both servers.
#[derive(Debug, Clone, Args)]
pub struct AuthArgs {
    /// `off` (anyone), `optional` (anonymous allowed; a token given must be
    /// valid) or `required` (a valid JWT for every connection).
    #[arg(long, env = "AUTH", default_value = "off", value_parser = clap::value_parser!(crate::auth::Mode))]
    pub auth: crate::auth::Mode,

    /// HS256 secret that tokens are signed with (at least 16 bytes).
    #[arg(long, env = "JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,

    /// PEM public key (RSA for RS256, EC P-256 for ES256) that tokens are
    /// signed with, instead of a secret.
    #[arg(long, env = "JWT_PUBLIC_KEY_FILE", conflicts_with = "jwt_secret")]
    pub jwt_public_key_file: Option<std::path::PathBuf>,
}

impl AuthArgs {
    /// The verifier these flags describe; reads the key file.
    pub fn verifier(&self) -> anyhow::Result<crate::auth::Verifier> {
        use anyhow::Context;
        let key = match (&self.jwt_secret, &self.jwt_public_key_file) {
            (Some(secret), _) => Some(crate::auth::KeySource::Secret(secret.as_bytes().to_vec())),
            (None, Some(path)) => Some(crate::auth::KeySource::PublicKeyPem(
                std::fs::read(path).with_context(|| {
                    format!("cannot read --jwt-public-key-file {}", path.display())
                })?,
            )),
            (None, None) => None,
        };
        crate::auth::Verifier::new(self.auth, key.as_ref()).map_err(anyhow::Error::msg)
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
    pub auth: AuthArgs,

    /// Messages kept per room for `since` recovery.
    #[arg(long, env = "HISTORY_SIZE", default_value_t = 1000)]
    pub history_size: usize,

    /// How long a message is kept for `since` recovery.
    #[arg(long, env = "HISTORY_TTL", default_value = "24h", value_parser = humantime::parse_duration)]
    pub history_ttl: Duration,

    /// How long shutdown waits for clients to be closed before exiting anyway.
    #[arg(long, env = "SHUTDOWN_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub shutdown_timeout: Duration,

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
    pub allowed_origins: crate::ws::origins::AllowedOrigins,
}

/// A feature switch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Switch {
    On,
    Off,
}

/// Every bound a chat client can run into, with its default.
#[derive(Debug, Clone, Args)]
pub struct LimitArgs {
    /// Longest room name, in characters of [A-Za-z0-9_.:-].
    #[arg(long, env = "MAX_ROOM_LEN", default_value_t = 128)]
    pub max_room_len: usize,

    /// Largest message text, in bytes.
    #[arg(long, env = "MAX_MESSAGE_BYTES", default_value_t = 4096)]
    pub max_message_bytes: usize,

    /// Largest incoming WebSocket frame, in bytes; a larger frame is refused
    /// from its header, before its payload is read, and closes the socket.
    #[arg(long, env = "MAX_FRAME_BYTES", default_value_t = 16 * 1024)]
    pub max_frame_bytes: usize,

    /// Frames per second a connection may send, sustained.
    #[arg(long, env = "RATE_LIMIT", default_value_t = 50.0)]
    pub rate_limit: f64,

    /// Frames a connection may send in a burst above the sustained rate.
    #[arg(long, env = "RATE_BURST", default_value_t = 100.0)]
    pub rate_burst: f64,

    /// Rooms one connection may be in at once.
    #[arg(long, env = "MAX_ROOMS", default_value_t = 64)]
    pub max_rooms: usize,

    /// Frames queued for a client before it is considered too slow and
    /// closed (code 1013), so memory never grows with a stalled reader.
    #[arg(long, env = "SEND_QUEUE", default_value_t = 1024)]
    pub send_queue: usize,

    /// Open WebSocket connections per replica; more get HTTP 503.
    #[arg(long, env = "MAX_CONNECTIONS", default_value_t = 100_000)]
    pub max_connections: usize,

    /// Open connections per client address; more get HTTP 429.
    #[arg(long, env = "MAX_CONNECTIONS_PER_IP", default_value_t = 2000)]
    pub max_connections_per_ip: usize,

    /// New connections per second per client address, sustained; more get
    /// HTTP 429.
    #[arg(long, env = "NEW_CONNECTIONS_PER_IP", default_value_t = 200.0)]
    pub new_connections_per_ip: f64,

    /// New connections per client address in a burst above that rate.
    #[arg(long, env = "NEW_CONNECTIONS_BURST", default_value_t = 1000.0)]
    pub new_connections_burst: f64,

    /// Comma-separated proxies (addresses or networks like 10.0.0.0/8)
    /// whose X-Forwarded-For names the client; from anyone else it is
    /// ignored.
    #[arg(long, env = "TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Vec<crate::ws::clients::Network>,

    /// How often idle clients are pinged. Keep it well below the proxy's
    /// read timeout (nginx: 60 s by default).
    #[arg(long, env = "PING_INTERVAL", default_value = "25s", value_parser = humantime::parse_duration)]
    pub ping_interval: Duration,

    /// How long a client may stay silent after a ping before it is closed.
    #[arg(long, env = "PING_TIMEOUT", default_value = "20s", value_parser = humantime::parse_duration)]
    pub ping_timeout: Duration,
}

impl WsServerArgs {
    /// The plain settings the server runs on (reads the JWT key file).
    pub fn settings(&self) -> anyhow::Result<crate::ws::Settings> {
        let limits = &self.limits;
        Ok(crate::ws::Settings {
            verifier: self.auth.verifier()?,
            hub: crate::hub::HubSettings {
                server_id: self.id.clone(),
                max_rooms: limits.max_rooms,
                max_message_bytes: limits.max_message_bytes,
                send_queue: limits.send_queue,
                history: crate::broadcast::HistoryPolicy {
                    max_len: self.history_size,
                    max_age: self.history_ttl,
                },
            },
            limits: crate::ws::limits::Limits {
                max_room_len: limits.max_room_len,
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
            clients: crate::ws::clients::ClientLimits {
                max_per_ip: limits.max_connections_per_ip,
                new_per_second: limits.new_connections_per_ip,
                new_burst: limits.new_connections_burst,
                trusted_proxies: limits.trusted_proxies.clone(),
            },
            redis: self.redis.settings(),
            shutdown_timeout: self.shutdown_timeout,
        })
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

    /// Require `authorization: Bearer <token>` on UserService calls
    /// (health and reflection stay open).
    #[arg(long, env = "AUTH_TOKEN", hide_env_values = true)]
    pub auth_token: Option<String>,

    /// Read the bearer token from this file instead (e.g. a mounted secret).
    #[arg(long, env = "AUTH_TOKEN_FILE", conflicts_with = "auth_token")]
    pub auth_token_file: Option<std::path::PathBuf>,

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
    /// The plain settings the server runs on (reads the JWT key file).
    pub fn settings(&self) -> anyhow::Result<crate::grpc::Settings> {
        Ok(crate::grpc::Settings {
            verifier: self.jwt.verifier()?,
            id: self.id.clone(),
            redis: self.redis.settings(),
            auth_token: self.auth_token.clone(),
            auth_token_file: self.auth_token_file.clone(),
            request_timeout: self.request_timeout,
            concurrency_limit: self.concurrency_limit,
            keepalive_interval: self.keepalive_interval,
            shutdown_timeout: self.shutdown_timeout,
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
mod tests {
    use super::*;

    #[test]
    fn replica_id_expands_hostname() {
        assert_eq!(replica_id("server-1").unwrap(), "server-1");
        let expanded = replica_id("ws-{hostname}").unwrap();
        assert!(expanded.starts_with("ws-") && !expanded.contains('{') && expanded.len() > 3);
    }

    #[test]
    fn every_subcommand_parses_its_defaults() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        for args in [
            &["rtchat", "ws-server"][..],
            &["rtchat", "grpc-server"],
            &["rtchat", "grpc-client", "list"],
        ] {
            Cli::try_parse_from(args).unwrap();
        }
    }
}
