//! Whether a new connection may be served, on either door: the replica's
//! bound, the client address's bounds, and not while draining or shutting
//! down (a 503, which a balancer retries on another replica).

use super::DoorState;
use crate::gate::clients::{Refused, Slot};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use std::net::SocketAddr;

/// A connection's places: in its client address's count and in the
/// replica's; both given back when it is dropped.
pub(crate) struct Admission {
    _client: Slot,
    _slot: tokio::sync::OwnedSemaphorePermit,
}

/// Why a connection was not admitted.
#[derive(Debug)]
pub(crate) enum NotAdmitted {
    ShuttingDown,
    Draining,
    Full,
    Client(Refused),
}

/// Admits a new connection: 503 while shutting down or at
/// `--max-connections`, 429 over the client address's bounds.
pub(crate) fn admit(
    state: &DoorState,
    peer: SocketAddr,
    headers: &axum::http::HeaderMap,
) -> Result<Admission, NotAdmitted> {
    if state.shutdown.is_cancelled() {
        return Err(NotAdmitted::ShuttingDown);
    }
    if state.draining.is_cancelled() {
        return Err(NotAdmitted::Draining);
    }
    let clients = state.gate.clients();
    let ip = clients.address(peer.ip(), headers);
    let client = clients.admit(ip).map_err(NotAdmitted::Client)?;
    let Ok(slot) = state.slots.clone().try_acquire_owned() else {
        return Err(NotAdmitted::Full);
    };
    Ok(Admission {
        _client: client,
        _slot: slot,
    })
}

impl IntoResponse for NotAdmitted {
    fn into_response(self) -> Response {
        match self {
            Self::ShuttingDown => {
                (StatusCode::SERVICE_UNAVAILABLE, "shutting down").into_response()
            }
            Self::Draining => (
                StatusCode::SERVICE_UNAVAILABLE,
                "draining: connect to another replica",
            )
                .into_response(),
            Self::Full => (StatusCode::SERVICE_UNAVAILABLE, "too many connections").into_response(),
            Self::Client(why) => (StatusCode::TOO_MANY_REQUESTS, why.to_string()).into_response(),
        }
    }
}
