//! A TCP link a test can break: a proxy on a free loopback port between a
//! process and its upstream (a replica and its Redis), passing bytes,
//! delaying them, holding them (a partition that leaves both sockets
//! open, as a dead switch or a paused VM does), or resetting every
//! connection, until the test heals it.

use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// What the link does to the bytes crossing it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    Pass,
    /// Every chunk waits this long before it is passed on.
    Latency(Duration),
    /// Accepts connections, then reads and writes nothing until healed;
    /// bytes already read are held and passed on at the heal, in order.
    Blackhole,
}

pub struct FaultyLink {
    pub port: u16,
    fault: watch::Sender<Fault>,
    resets: watch::Sender<u64>,
    accept: tokio::task::JoinHandle<()>,
}

impl FaultyLink {
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (fault, _) = watch::channel(Fault::Pass);
        let (resets, _) = watch::channel(0);
        let (faults, reset_seen) = (fault.subscribe(), resets.subscribe());
        let accept = tokio::spawn(async move {
            // Dropped with this task: every connection ends with the link.
            let mut connections = JoinSet::new();
            while let Ok((client, _)) = listener.accept().await {
                let (faults, resets) = (faults.clone(), reset_seen.clone());
                connections.spawn(serve(client, upstream, faults, resets));
                while connections.try_join_next().is_some() {}
            }
        });
        Self {
            port,
            fault,
            resets,
            accept,
        }
    }

    /// A link in front of a Redis on loopback.
    pub async fn to_redis(redis_port: u16) -> Self {
        Self::start(SocketAddr::from(([127, 0, 0, 1], redis_port))).await
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn set(&self, fault: Fault) {
        self.fault.send_replace(fault);
    }

    pub fn heal(&self) {
        self.set(Fault::Pass);
    }

    /// Resets every open connection (RST to both ends); new ones pass.
    pub fn reset(&self) {
        self.resets.send_modify(|n| *n += 1);
    }
}

impl Drop for FaultyLink {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl super::RedisUrl for FaultyLink {
    fn url(&self) -> String {
        FaultyLink::url(self)
    }
}

async fn serve(
    client: TcpStream,
    upstream: SocketAddr,
    mut faults: watch::Receiver<Fault>,
    mut resets: watch::Receiver<u64>,
) {
    resets.mark_unchanged();
    if passable(&mut faults).await.is_none() {
        return;
    }
    let Ok(server) = TcpStream::connect(upstream).await else {
        let _ = client.set_zero_linger();
        return;
    };
    let _ = (client.set_nodelay(true), server.set_nodelay(true));
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    tokio::select! {
        _ = pump(&mut client_read, &mut server_write, faults.clone()) => {}
        _ = pump(&mut server_read, &mut client_write, faults.clone()) => {}
        _ = resets.changed() => {
            let _ = client_read.as_ref().set_zero_linger();
            let _ = server_read.as_ref().set_zero_linger();
        }
    }
}

/// Copies one direction, chunk by chunk, as the link's fault allows.
async fn pump(
    from: &mut OwnedReadHalf,
    to: &mut OwnedWriteHalf,
    mut faults: watch::Receiver<Fault>,
) {
    let mut buf = vec![0; 16 * 1024];
    loop {
        if passable(&mut faults).await.is_none() {
            return;
        }
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => {
                let _ = to.shutdown().await;
                return;
            }
            Ok(n) => n,
        };
        match passable(&mut faults).await {
            None => return,
            Some(Fault::Latency(delay)) => tokio::time::sleep(delay).await,
            Some(_) => {}
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// Waits while the link is a blackhole; the fault then in force, or
/// `None` once the link is gone.
async fn passable(faults: &mut watch::Receiver<Fault>) -> Option<Fault> {
    faults
        .wait_for(|fault| *fault != Fault::Blackhole)
        .await
        .ok()
        .map(|fault| *fault)
}
