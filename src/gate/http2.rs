//! The gRPC server's incoming connections: a connection reaches tonic only
//! once its first 24 bytes (the HTTP/2 preface) have arrived within the
//! handshake timeout; it then counts as open against its address until it
//! closes. After the preface, HTTP/2 keep-alive pings find silent peers.

use super::Gate;
use super::clients::Slot;
use std::io::Cursor;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, Chain, Join, ReadBuf};
use tokio::net::TcpListener;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

/// `PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n`: what every HTTP/2 client sends first.
const PREFACE_BYTES: usize = 24;

/// Connections handed to the server that it has not taken yet.
const HANDOFF_QUEUE: usize = 64;

/// A connection past the gate: the bytes read while waiting are replayed
/// ahead of the socket's.
pub struct Admitted {
    io: Join<Chain<Cursor<[u8; PREFACE_BYTES]>, OwnedReadHalf>, OwnedWriteHalf>,
    local: Option<SocketAddr>,
    remote: SocketAddr,
    _slot: Option<Slot>,
    coalesce: super::nagle::Coalesce,
}

/// The connections that passed the gate, for `serve_with_incoming`; ends
/// when the listener task does (the stream is dropped at shutdown).
pub fn incoming(listener: TcpListener, gate: Gate) -> ReceiverStream<std::io::Result<Admitted>> {
    let (tx, rx) = mpsc::channel(HANDOFF_QUEUE);
    tokio::spawn(async move {
        // The load monitor: written responses wait a turn while overloaded.
        let mut monitor = None;
        while let Some((tcp, peer)) = super::accept(&listener, tx.closed()).await {
            monitor.get_or_insert_with(super::nagle::watch);
            let Some(arrival) = gate.arrive(peer.ip()) else {
                continue;
            };
            let (gate, tx) = (gate.clone(), tx.clone());
            tokio::spawn(async move {
                if let Some(admitted) = pass(tcp, peer, &gate, arrival).await {
                    let _ = tx.send(Ok(admitted)).await;
                }
            });
        }
    });
    ReceiverStream::new(rx)
}

/// Waits for the preface, then counts the connection as open; `None` if it
/// was too slow, closed, or its address is over its bounds.
async fn pass(
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    gate: &Gate,
    arrival: super::Arrival,
) -> Option<Admitted> {
    crate::process::no_delay(&tcp);
    let local = tcp.local_addr().ok();
    let (mut read, write) = tcp.into_split();
    let mut preface = [0u8; PREFACE_BYTES];
    match tokio::time::timeout(gate.handshake_timeout(), read.read_exact(&mut preface)).await {
        Ok(Ok(_)) => {}
        Ok(Err(err)) => {
            tracing::trace!(%peer, %err, "closed before its preface");
            return None;
        }
        Err(_) => {
            tracing::debug!(%peer, "no HTTP/2 preface in time; closed");
            return None;
        }
    }
    // No longer pending: not to be counted twice as it is counted open.
    drop(arrival);
    let clients = gate.clients();
    let slot = if clients.is_trusted(peer.ip()) {
        None
    } else {
        match clients.admit(peer.ip()) {
            Ok(slot) => Some(slot),
            Err(why) => {
                tracing::debug!(%peer, %why, "connection closed");
                return None;
            }
        }
    };
    Some(Admitted {
        io: tokio::io::join(Cursor::new(preface).chain(read), write),
        local,
        remote: peer,
        _slot: slot,
        coalesce: Default::default(),
    })
}

impl tonic::transport::server::Connected for Admitted {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        tonic::transport::server::TcpConnectInfo {
            local_addr: self.local,
            remote_addr: Some(self.remote),
        }
    }
}

impl AsyncRead for Admitted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Admitted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if self.coalesce.hold(cx) {
            return Poll::Pending;
        }
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let flushed = Pin::new(&mut self.io).poll_flush(cx);
        if flushed.is_ready() {
            self.coalesce.flushed();
        }
        flushed
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        if self.coalesce.hold(cx) {
            return Poll::Pending;
        }
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}
