//! What every chat door shares: the state a connection of either door
//! carries, admission, socket set-up, the limits a door enforces itself,
//! ping timing and close codes.
//!
//! A door (`crate::ws`, `crate::socketio`) builds on this and the hub; it
//! never reaches into another door, nor into the server that mounts it.
//!
//! - [`admission`]: whether a new connection may be served.
//! - [`socket`]: buffers, frame bounds, socket errors, token expiry.
//! - [`limits`]: the bounds a door enforces on its sockets.
//! - [`heartbeat`]: ping timing.
//! - [`close`]: close codes.

pub(crate) mod admission;
pub(crate) mod close;
pub(crate) mod heartbeat;
pub(crate) mod limits;
pub(crate) mod socket;

use crate::hub::Hub;
use crate::hub::metrics::Metrics;
use serde_json::Value;
use std::sync::Arc;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// What a door's handlers and connections may touch; cheap to clone (one
/// pointer, which every idle connection holds).
#[derive(Clone)]
pub struct DoorState(Arc<DoorShared>);

pub struct DoorShared {
    pub(crate) hub: Arc<Hub>,
    pub(crate) verifier: crate::auth::Verifier,
    /// The per-address counts and the request time bound.
    pub(crate) gate: crate::gate::Gate,
    pub(crate) limits: limits::Limits,
    pub(crate) metrics: Arc<Metrics>,
    /// Cancelled when the server stops: connections close with 1001.
    pub(crate) shutdown: CancellationToken,
    /// Cancelled when a drain starts: not ready, no new sockets, the ones
    /// held sent elsewhere at the drain's pace.
    pub(crate) draining: CancellationToken,
    /// Upgraded sockets, so shutdown can wait for their close frames.
    pub(crate) connections: TaskTracker,
    /// One permit per open socket, taken before the upgrade and held by
    /// the connection's task: `--max-connections` is a hard bound, however
    /// many upgrades race.
    pub(crate) slots: Arc<Semaphore>,
}

impl DoorState {
    pub(crate) fn new(
        hub: Arc<Hub>,
        verifier: crate::auth::Verifier,
        gate: crate::gate::Gate,
        limits: limits::Limits,
        shutdown: CancellationToken,
        draining: CancellationToken,
    ) -> Self {
        Self(Arc::new(DoorShared {
            metrics: hub.metrics().clone(),
            slots: Arc::new(Semaphore::new(limits.max_connections)),
            hub,
            verifier,
            gate,
            limits,
            shutdown,
            draining,
            connections: TaskTracker::new(),
        }))
    }

    /// Open sockets of both doors.
    pub(crate) fn sockets(&self) -> i64 {
        self.metrics.connections.get()
    }
}

impl std::ops::Deref for DoorState {
    type Target = DoorShared;
    fn deref(&self) -> &DoorShared {
        &self.0
    }
}

/// A post's optional `idempotency_key`, as both doors read it: absent or
/// null is none; anything but a string is refused with this text.
pub(crate) fn idempotency_key(value: Option<&Value>) -> Result<Option<&str>, &'static str> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(key)) => Ok(Some(key)),
        Some(_) => Err("`idempotency_key` must be a string"),
    }
}
