//! What a connection must do before either server serves it, and how many
//! may be doing it at once.
//!
//! A connection is *pending* from its accept until its first request head
//! (HTTP/1) or HTTP/2 preface has arrived. Pending connections cost memory
//! and a descriptor while promising nothing, so they are bounded three
//! ways: in time (`--handshake-timeout`), in number (`--max-pending-
//! connections`), and per client address (`--max-pending-per-ip`), where
//! they also count as open against `--max-connections-per-ip`. Past the
//! first two a connection is closed at once: a refused client learns it
//! immediately instead of queueing behind the kernel's backlog.
//!
//! - [`clients`]: the per-address counts and trusted proxies.
//! - [`bucket`]: the token bucket behind every rate bound.
//! - [`origins`]: which pages may connect or call (both servers).
//! - [`http1`]: the chat server's accept loop (HTTP/1 with upgrades).
//! - [`http2`]: the gRPC server's incoming connections.
//! - [`nagle`]: chat sockets merge small writes only while the process is
//!   overloaded.

pub(crate) mod bucket;
pub(crate) mod clients;
pub(crate) mod http1;
pub(crate) mod http2;
pub(crate) mod nagle;
pub(crate) mod origins;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The bounds, from the flags.
#[derive(Debug, Clone)]
pub struct GateSettings {
    /// Time to a complete first request head or HTTP/2 preface.
    pub handshake_timeout: Duration,
    /// Pending connections at once, over all addresses.
    pub max_pending: usize,
    /// Per-address bounds, pending and open.
    pub clients: clients::ClientLimits,
}

/// One server's gate. Cheap to clone.
#[derive(Clone)]
pub struct Gate {
    timeout: Duration,
    pending: Arc<Semaphore>,
    clients: clients::Clients,
}

/// A pending connection's places; dropped when its first request arrives
/// or it closes.
pub struct Arrival {
    _permit: OwnedSemaphorePermit,
    _slot: Option<clients::Slot>,
}

impl Gate {
    pub fn new(settings: GateSettings) -> Self {
        Self {
            timeout: settings.handshake_timeout,
            pending: Arc::new(Semaphore::new(settings.max_pending)),
            clients: clients::Clients::new(settings.clients),
        }
    }

    /// The per-address counts, for what a door admits after the request.
    pub fn clients(&self) -> &clients::Clients {
        &self.clients
    }

    pub fn handshake_timeout(&self) -> Duration {
        self.timeout
    }

    /// Counts a connection just accepted from `peer`, or says why not.
    fn arrive(&self, peer: IpAddr) -> Option<Arrival> {
        let Ok(permit) = self.pending.clone().try_acquire_owned() else {
            tracing::debug!(%peer, "too many pending connections; closed");
            return None;
        };
        match self.clients.arrive(peer) {
            Ok(slot) => Some(Arrival {
                _permit: permit,
                _slot: slot,
            }),
            Err(why) => {
                tracing::debug!(%peer, %why, "connection closed");
                None
            }
        }
    }
}

/// The next connection, or `None` once `stop` completes. Accept errors
/// such as running out of descriptors are logged and waited out briefly,
/// since accepting again at once would fail the same way.
async fn accept(
    listener: &tokio::net::TcpListener,
    stop: impl std::future::Future<Output = ()>,
) -> Option<(tokio::net::TcpStream, std::net::SocketAddr)> {
    tokio::pin!(stop);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => return Some(accepted),
                Err(err) => {
                    tracing::warn!(%err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            () = &mut stop => return None,
        }
    }
}
