//! Polling without sticky sessions: a polling session lives on the replica
//! that answered its handshake, and a balancer may send its next request
//! anywhere. Each session's owner is recorded in Redis; a replica that gets
//! a request for a session it does not hold forwards it, once, to the
//! owner's advertised address and passes the answer back. Replicas can be
//! added or die without touching the balancer: a dead owner's sessions are
//! answered "Session ID unknown", and the client reconnects (and recovers).
//!
//! A WebSocket that upgrades such a session is forwarded the same way and
//! spliced to the owner. WebSocket sessions from the start need none of
//! this: one connection carries them.

use crate::redis::RedisSettings;
use axum::extract::Request;
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use fred::prelude::*;
use hyper_util::rt::TokioIo;
use std::time::Duration;

/// Set on a forwarded request, so it is never forwarded again.
const RELAYED: &str = "x-rtchat-relayed";

/// How long the owner of a session is remembered without a refresh: a
/// live session refreshes it at every heartbeat.
const OWNER_TTL_SLACK: Duration = Duration::from_secs(30);

pub struct Relay {
    client: Client,
    /// `host:port` other replicas reach this one at.
    advertised: String,
    ttl: Duration,
}

fn key(sid: &str) -> String {
    format!("rtchat:sio:owner:{sid}")
}

impl Relay {
    /// On the door's Redis client, shared with the recovery store.
    pub fn new(client: Client, advertised: String, ping_interval: Duration) -> Self {
        Self {
            client,
            advertised,
            ttl: ping_interval + OWNER_TTL_SLACK,
        }
    }

    /// Records this replica as the session's owner (and refreshes it).
    pub async fn claim(&self, sid: &str) {
        let ttl = Expiration::PX(self.ttl.as_millis() as i64);
        let result: Result<(), Error> = self
            .client
            .set(key(sid), self.advertised.as_str(), Some(ttl), None, false)
            .await;
        if let Err(err) = result {
            tracing::debug!(%err, "could not record a polling session's owner");
        }
    }

    pub async fn release(&self, sid: &str) {
        let _: Result<(), Error> = self.client.del(key(sid)).await;
    }

    /// Forwards a request for a session this replica does not hold to its
    /// owner; `None` when there is none (unknown, expired, or this request
    /// was forwarded already).
    pub async fn forward(&self, sid: &str, request: Request) -> Option<Response> {
        let response = self.send(sid, request).await?;
        Some(response.map(axum::body::Body::new).into_response())
    }

    /// The same for the WebSocket that upgrades a polling session: once the
    /// owner switched protocols, the two connections are spliced.
    pub async fn forward_upgrade(&self, sid: &str, mut request: Request) -> Option<Response> {
        let from_client = hyper::upgrade::on(&mut request);
        let mut response = self.send(sid, request).await?;
        if response.status() == axum::http::StatusCode::SWITCHING_PROTOCOLS {
            let from_owner = hyper::upgrade::on(&mut response);
            tokio::spawn(async move {
                if let (Ok(client), Ok(owner)) = (from_client.await, from_owner.await) {
                    let (mut client, mut owner) = (TokioIo::new(client), TokioIo::new(owner));
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut owner).await;
                }
            });
        }
        Some(response.map(axum::body::Body::new).into_response())
    }

    async fn send(
        &self,
        sid: &str,
        mut request: Request,
    ) -> Option<axum::http::Response<hyper::body::Incoming>> {
        if request.headers().contains_key(RELAYED) {
            return None;
        }
        let owner: Option<String> = self.client.get(key(sid)).await.ok()?;
        let owner = owner.filter(|owner| *owner != self.advertised)?;
        let stream = tokio::net::TcpStream::connect(&owner).await.ok()?;
        let _ = stream.set_nodelay(true);
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .ok()?;
        tokio::spawn(connection.with_upgrades());
        request
            .headers_mut()
            .insert(RELAYED, HeaderValue::from_static("1"));
        sender.send_request(request).await.ok()
    }
}

/// The address other replicas reach this one at: the listening address
/// when it names one, else the address of the interface that routes to
/// Redis (under compose: the container's address on the shared network).
/// No packet is sent: connecting a UDP socket only picks the route.
pub fn advertised_address(listen: std::net::SocketAddr, redis: &RedisSettings) -> String {
    if !listen.ip().is_unspecified() {
        return listen.to_string();
    }
    let route = || -> Option<std::net::IpAddr> {
        let config = fred::types::config::Config::from_url(&redis.url).ok()?;
        let server = config.server.hosts().into_iter().next()?;
        let socket = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
        socket.connect((&*server.host, server.port)).ok()?;
        Some(socket.local_addr().ok()?.ip())
    };
    match route() {
        Some(ip) => std::net::SocketAddr::new(ip, listen.port()).to_string(),
        None => listen.to_string(),
    }
}
