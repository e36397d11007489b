//! The router's state: one sub-state per front end, each extracted by its
//! handlers alone (axum's `FromRef`), so the server API cannot reach the
//! Socket.IO registry and a door cannot reach the API.

use crate::api::ApiState;
use crate::door::DoorState;
use crate::socketio::SioState;
use axum::extract::FromRef;

#[derive(Clone)]
pub struct AppState {
    /// The native door, health and metrics.
    pub(crate) door: DoorState,
    pub(crate) sio: SioState,
    pub(crate) api: ApiState,
}

impl FromRef<AppState> for DoorState {
    fn from_ref(state: &AppState) -> Self {
        state.door.clone()
    }
}

impl FromRef<AppState> for SioState {
    fn from_ref(state: &AppState) -> Self {
        state.sio.clone()
    }
}

impl FromRef<AppState> for ApiState {
    fn from_ref(state: &AppState) -> Self {
        state.api.clone()
    }
}
