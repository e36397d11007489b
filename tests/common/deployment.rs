//! The chat deployment of `deploy/` on loopback: replicas on stand-in
//! addresses, found by nginx through a DNS stand-in, as under compose.

use super::{
    Client, DEADLINE, Nginx, Process, Redis, RedisUrl, Shared, deploy_nginx_config, dns,
    free_port_on, wait_for,
};

/// Three ws-server replicas behind the repository's nginx config, found
/// through a DNS stand-in as in compose, and a private Redis.
pub struct ChatDeployment {
    pub redis: Shared,
    pub dns: dns::Dns,
    pub ws_port: u16,
    pub replicas: Vec<Process>,
    pub nginx: Nginx,
}

/// Which nginx config stands in front.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Front {
    /// `deploy/nginx/nginx.conf`: round robin, replicas found through DNS.
    Deploy,
    /// The original's own: ip_hash over three named servers, `Host $host`,
    /// `Connection "upgrade"` on every request.
    Original,
}

/// Loopback addresses standing in for replica containers.
pub const CHAT_IPS: [&str; 5] = [
    "127.0.0.2",
    "127.0.0.3",
    "127.0.0.4",
    "127.0.0.5",
    "127.0.0.6",
];

impl ChatDeployment {
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// With `extra` flags on every replica.
    pub fn start_with(extra: &[&str]) -> Self {
        Self::start_behind(Front::Deploy, extra)
    }

    /// Behind the given nginx config, with `extra` flags on every replica.
    pub fn start_behind(front: Front, extra: &[&str]) -> Self {
        Self::start_on(Shared::One(Redis::start()), front, extra)
    }

    /// The same on the given Redis topology.
    pub fn start_on(redis: Shared, front: Front, extra: &[&str]) -> Self {
        let ws_port = free_port_on(&CHAT_IPS);
        let replicas = (0..3)
            .map(|i| chat_replica(&redis, i, ws_port, extra))
            .collect();
        let dns = dns::Dns::start();
        dns.set(
            "ws-server",
            &CHAT_IPS[..3]
                .iter()
                .map(|ip| ip.parse().unwrap())
                .collect::<Vec<std::net::Ipv4Addr>>(),
        );
        let nginx = match front {
            Front::Deploy => Nginx::start(|port| deploy_nginx_config(dns.port, ws_port, port)),
            Front::Original => {
                let upstreams: Vec<String> = (0..3)
                    .map(|i| format!("{}:{ws_port}", CHAT_IPS[i]))
                    .collect();
                Nginx::start(|port| super::original::nginx_config(&upstreams, port))
            }
        };
        Self {
            redis,
            dns,
            ws_port,
            replicas,
            nginx,
        }
    }

    /// Connects through nginx until landing on the given replica.
    pub async fn through_nginx_to(&self, server: &str) -> Client {
        wait_for("nginx to route to the replica", DEADLINE, async || {
            let c = Client::connect(&self.nginx.ws_url()).await;
            (c.server == server).then_some(c)
        })
        .await
    }
}

/// Replica `i` (server-<i+1>) on its stand-in address.
pub fn chat_replica(redis: &dyn RedisUrl, i: usize, port: u16, extra: &[&str]) -> Process {
    let listen = format!("{}:{port}", CHAT_IPS[i]);
    let mut args = vec!["--listen", &listen];
    args.extend(extra);
    Process::ws_server(&format!("server-{}", i + 1), Some(redis), &args)
}
