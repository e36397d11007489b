//! What a connection must do before it is served, as flags (both servers).

use clap::Args;
use std::time::Duration;

/// Bounds on connections before and beside their requests, with defaults.
#[derive(Debug, Clone, Args)]
pub struct GateArgs {
    /// Time a new connection has to send its first complete request head
    /// (HTTP/1, and again between keep-alive requests) or the HTTP/2
    /// preface (gRPC); slower or silent connections are closed.
    #[arg(long, env = "HANDSHAKE_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub handshake_timeout: Duration,

    /// Connections that have not finished their first request, at once;
    /// beyond, new connections are closed at once.
    #[arg(long, env = "MAX_PENDING_CONNECTIONS", default_value_t = 4096)]
    pub max_pending_connections: usize,

    /// Of those, from one client address (trusted proxies are not counted).
    #[arg(long, env = "MAX_PENDING_PER_IP", default_value_t = 256)]
    pub max_pending_per_ip: usize,

    /// Open connections per client address, its pending ones counted as
    /// open; more get HTTP 429 (gRPC: the connection is closed).
    #[arg(long, env = "MAX_CONNECTIONS_PER_IP", default_value_t = 2000)]
    pub max_connections_per_ip: usize,

    /// New connections per second per client address, sustained; more get
    /// HTTP 429 (gRPC: the connection is closed).
    #[arg(long, env = "NEW_CONNECTIONS_PER_IP", default_value_t = 200.0)]
    pub new_connections_per_ip: f64,

    /// New connections per client address in a burst above that rate.
    #[arg(long, env = "NEW_CONNECTIONS_BURST", default_value_t = 1000.0)]
    pub new_connections_burst: f64,

    /// Comma-separated proxies (addresses or networks like 10.0.0.0/8)
    /// whose X-Forwarded-For names the client; from anyone else it is
    /// ignored. Their own connections are not counted per address.
    #[arg(long, env = "TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Vec<crate::gate::clients::Network>,
}

impl GateArgs {
    pub fn settings(&self) -> crate::gate::GateSettings {
        crate::gate::GateSettings {
            handshake_timeout: self.handshake_timeout,
            max_pending: self.max_pending_connections,
            clients: crate::gate::clients::ClientLimits {
                max_per_ip: self.max_connections_per_ip,
                max_pending_per_ip: self.max_pending_per_ip,
                new_per_second: self.new_connections_per_ip,
                new_burst: self.new_connections_burst,
                trusted_proxies: self.trusted_proxies.clone(),
            },
        }
    }
}
