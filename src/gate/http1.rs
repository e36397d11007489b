//! The chat server's accept loop: HTTP/1.1 with upgrades, as `axum::serve`
//! would run it, plus the gate. The first request head must arrive within
//! the handshake timeout of the accept; hyper bounds every later one (from
//! the end of the previous response) once it has a timer, which axum's own
//! loop does not give it.

use super::Gate;
use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_service::Service;

/// Serves `router` on `listener` until `shutdown`; then waits up to
/// `drain` for requests in progress (upgraded sockets are not among them).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    gate: Gate,
    shutdown: CancellationToken,
    drain: Duration,
) {
    let mut http = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new()).http1_only();
    http.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(gate.handshake_timeout());
    let graceful = GracefulShutdown::new();
    // Started with the first connection: a replica nobody has used yet is
    // not woken a hundred times a second.
    let mut monitor: Option<tokio_util::sync::DropGuard> = None;
    while let Some((tcp, peer)) = super::accept(&listener, shutdown.cancelled()).await {
        let Some(arrival) = gate.arrive(peer.ip()) else {
            continue;
        };
        monitor.get_or_insert_with(super::nagle::watch);
        let tcp = super::nagle::Socket::new(tcp);
        // Given back when the first request head has arrived; the sender
        // goes with it, which ends the wait below.
        let (first, arrived) = tokio::sync::oneshot::channel::<()>();
        let waiting = Arc::new(Mutex::new(Some((arrival, first))));
        let router = router.clone();
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            if let Ok(mut waiting) = waiting.lock() {
                waiting.take();
            }
            request.extensions_mut().insert(ConnectInfo(peer));
            router.clone().call(request)
        });
        let connection = http
            .serve_connection_with_upgrades(TokioIo::new(tcp), service)
            .into_owned();
        let connection = graceful.watch(connection);
        let timeout = gate.handshake_timeout();
        tokio::spawn(async move {
            let mut connection = std::pin::pin!(connection);
            // hyper's own header timer starts only once the first bytes
            // are in: a silent connection is bounded here.
            tokio::select! {
                ended = connection.as_mut() => return ended_with(peer, ended),
                waited = tokio::time::timeout(timeout, arrived) => if waited.is_err() {
                    tracing::debug!(%peer, "no request in time; closed");
                    return;
                },
            }
            ended_with(peer, connection.await);
        });
    }
    drop(listener);
    if tokio::time::timeout(drain, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("requests still in progress at shutdown");
    }
}

fn ended_with<E: std::fmt::Display>(peer: std::net::SocketAddr, ended: Result<(), E>) {
    if let Err(err) = ended {
        tracing::trace!(%peer, %err, "connection ended");
    }
}
