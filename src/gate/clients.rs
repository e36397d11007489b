//! Per-client-address bounds: open connections, connections still sending
//! their first request, and new connections per second from one address
//! (HTTP 429 beyond them on the chat doors).
//!
//! The address is the peer's, or, when the peer is a trusted proxy, the
//! last address it appended to `X-Forwarded-For` that is not itself a
//! trusted proxy: a proxy does not make every client one address, and a
//! client cannot claim another address past one.

use super::bucket::TokenBucket;
use axum::http::HeaderMap;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Addresses tracked at most; beyond, idle entries are dropped first.
const MAX_TRACKED: usize = 100_000;

/// A network a proxy's address may be in: `10.0.0.0/8`, `::1/128`, or a
/// plain address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Network {
    base: IpAddr,
    bits: u8,
}

impl std::str::FromStr for Network {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let bad = || format!("{text:?} is not an address or network like 10.0.0.0/8");
        let (addr, bits) = match text.split_once('/') {
            Some((addr, bits)) => (addr, Some(bits.parse::<u8>().map_err(|_| bad())?)),
            None => (text, None),
        };
        let base: IpAddr = addr.trim().parse().map_err(|_| bad())?;
        let max = if base.is_ipv4() { 32 } else { 128 };
        let bits = bits.unwrap_or(max);
        if bits > max {
            return Err(bad());
        }
        Ok(Self { base, bits })
    }
}

impl Network {
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        let (base, ip, width) = match (self.base, ip) {
            (IpAddr::V4(b), IpAddr::V4(i)) => (u32::from(b) as u128, u32::from(i) as u128, 32),
            (IpAddr::V6(b), IpAddr::V6(i)) => (u128::from(b), u128::from(i), 128),
            _ => return false,
        };
        let shift = width - u32::from(self.bits);
        shift >= width || (base >> shift) == (ip >> shift)
    }
}

/// The bounds, from the flags.
#[derive(Debug, Clone)]
pub struct ClientLimits {
    /// Open connections per address, counting those still pending.
    pub max_per_ip: usize,
    /// Connections per address that have not finished their first request.
    pub max_pending_per_ip: usize,
    /// New connections per second per address, and the burst above it.
    pub new_per_second: f64,
    pub new_burst: f64,
    /// Proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<Network>,
}

#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error("too many connections from your address")]
    ManyOpen,
    #[error("too many new connections from your address; slow down")]
    NewTooFast,
    #[error("too many unfinished requests from your address")]
    ManyPending,
}

struct Entry {
    open: usize,
    /// Connections accepted whose first request has not arrived yet.
    pending: usize,
    bucket: TokenBucket,
}

/// The per-address counts of one replica. Cheap to clone.
#[derive(Clone)]
pub struct Clients {
    limits: Arc<ClientLimits>,
    /// A std mutex: one map update per connect and per close.
    entries: Arc<Mutex<HashMap<IpAddr, Entry>>>,
}

/// One connection's share of its address's count, given back when dropped.
pub struct Slot {
    clients: Clients,
    ip: IpAddr,
    pending: bool,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut entries = self.clients.lock();
        if let Some(entry) = entries.get_mut(&self.ip) {
            let count = if self.pending {
                &mut entry.pending
            } else {
                &mut entry.open
            };
            *count = count.saturating_sub(1);
        }
    }
}

impl Clients {
    pub fn new(limits: ClientLimits) -> Self {
        Self {
            limits: Arc::new(limits),
            entries: Arc::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Entry>> {
        self.entries.lock().expect("client table lock poisoned")
    }

    /// Whether `ip` is a proxy whose `X-Forwarded-For` is believed.
    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        self.limits.trusted_proxies.iter().any(|n| n.contains(ip))
    }

    /// The client's address: `peer`, or what a trusted proxy forwarded.
    pub fn address(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let trusted = |ip: IpAddr| self.is_trusted(ip);
        if !trusted(peer) {
            return peer;
        }
        let forwarded = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|ip| ip.trim().parse::<IpAddr>().ok())
            .collect::<Vec<_>>();
        // From the right: the first hop not a trusted proxy is the client.
        forwarded
            .into_iter()
            .rev()
            .find(|ip| !trusted(*ip))
            .unwrap_or(peer)
    }

    /// Counts a new connection from `ip`, or refuses it.
    pub fn admit(&self, ip: IpAddr) -> Result<Slot, Refused> {
        self.count(ip, false)
    }

    /// Counts a connection from `ip` just accepted, until its first request
    /// arrives, or refuses it. A trusted proxy's are not counted here: it
    /// carries many clients, each counted when its request names it.
    pub fn arrive(&self, ip: IpAddr) -> Result<Option<Slot>, Refused> {
        if self.is_trusted(ip) {
            return Ok(None);
        }
        self.count(ip, true).map(Some)
    }

    fn count(&self, ip: IpAddr, pending: bool) -> Result<Slot, Refused> {
        let limits = &self.limits;
        let mut entries = self.lock();
        if entries.len() >= MAX_TRACKED {
            entries.retain(|_, entry| entry.open + entry.pending > 0);
        }
        let entry = entries.entry(ip).or_insert_with(|| Entry {
            open: 0,
            pending: 0,
            bucket: TokenBucket::new(limits.new_per_second, limits.new_burst),
        });
        // A pending connection is refused only over the pending bound, so
        // a client at its open bound still gets its 429 as an answer; an
        // upgrade counts the address's pending connections as open.
        if !pending && entry.open + entry.pending >= limits.max_per_ip {
            return Err(Refused::ManyOpen);
        }
        if pending {
            if entry.pending >= limits.max_pending_per_ip {
                return Err(Refused::ManyPending);
            }
            entry.pending += 1;
        } else {
            if !entry.bucket.try_take(Instant::now()) {
                return Err(Refused::NewTooFast);
            }
            entry.open += 1;
        }
        drop(entries);
        Ok(Slot {
            clients: self.clone(),
            ip,
            pending,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(trusted: &[&str]) -> ClientLimits {
        ClientLimits {
            max_per_ip: 2,
            max_pending_per_ip: 1,
            new_per_second: 1000.0,
            new_burst: 1000.0,
            trusted_proxies: trusted.iter().map(|t| t.parse().unwrap()).collect(),
        }
    }

    fn xff(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", value.parse().unwrap());
        h
    }

    #[test]
    fn networks() {
        let n: Network = "10.0.0.0/8".parse().unwrap();
        assert!(n.contains("10.1.2.3".parse().unwrap()));
        assert!(!n.contains("11.0.0.1".parse().unwrap()));
        assert!(
            n.contains("::ffff:10.0.0.1".parse().unwrap()),
            "IPv4-mapped"
        );
        let one: Network = "127.0.0.1".parse().unwrap();
        assert!(one.contains("127.0.0.1".parse().unwrap()));
        assert!(!one.contains("127.0.0.2".parse().unwrap()));
        let all: Network = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("8.8.8.8".parse().unwrap()));
        assert!("10.0.0.0/33".parse::<Network>().is_err());
        assert!("nope".parse::<Network>().is_err());
    }

    #[test]
    fn forwarded_for_is_believed_from_trusted_proxies_only() {
        let clients = Clients::new(limits(&["127.0.0.1", "10.0.0.0/8"]));
        let proxy: IpAddr = "127.0.0.1".parse().unwrap();
        let stranger: IpAddr = "192.0.2.9".parse().unwrap();
        assert_eq!(
            clients.address(proxy, &xff("203.0.113.5")),
            "203.0.113.5".parse::<IpAddr>().unwrap()
        );
        // The client's own claim is to the left of what the proxies added.
        assert_eq!(
            clients.address(proxy, &xff("1.2.3.4, 203.0.113.5, 10.0.0.7")),
            "203.0.113.5".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            clients.address(stranger, &xff("203.0.113.5")),
            stranger,
            "not a proxy"
        );
        assert_eq!(clients.address(proxy, &HeaderMap::new()), proxy);
    }

    #[test]
    fn open_connections_are_bounded_per_address() {
        let clients = Clients::new(limits(&[]));
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let first = clients.admit(a).unwrap();
        let _second = clients.admit(a).unwrap();
        assert!(matches!(clients.admit(a), Err(Refused::ManyOpen)));
        assert!(clients.admit(b).is_ok(), "another address is counted apart");
        drop(first);
        assert!(clients.admit(a).is_ok(), "a closed one frees its place");
        let mut slow = limits(&[]);
        slow.max_per_ip = 100;
        slow.new_per_second = 0.001;
        slow.new_burst = 2.0;
        let clients = Clients::new(slow);
        let _x = clients.admit(a).unwrap();
        let _y = clients.admit(a).unwrap();
        assert!(matches!(clients.admit(a), Err(Refused::NewTooFast)));
    }

    #[test]
    fn pending_connections_count_in_the_address_bound() {
        let clients = Clients::new(limits(&["127.0.0.1"]));
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let pending = clients.arrive(a).unwrap().expect("counted");
        assert!(
            matches!(clients.arrive(a), Err(Refused::ManyPending)),
            "one pending per address here"
        );
        let open = clients.admit(a).unwrap();
        assert!(
            matches!(clients.admit(a), Err(Refused::ManyOpen)),
            "pending and open share the address's bound"
        );
        drop(pending);
        let _pending = clients.arrive(a).unwrap();
        drop(open);
        assert!(
            clients.arrive(a).is_err() && clients.admit(a).is_ok(),
            "an address at its bound may still be answered"
        );
        let proxy: IpAddr = "127.0.0.1".parse().unwrap();
        for _ in 0..10 {
            assert!(clients.arrive(proxy).unwrap().is_none(), "a proxy is not");
        }
    }
}
