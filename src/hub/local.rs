//! What this replica holds: its rooms' local members and its sessions by
//! user. The broadcast's deliveries land here: room topics go to the
//! fan-out, the control topic's commands to the sessions they name.

use super::backend::CONTROL_TOPIC;
use super::connected::Connected;
use super::metrics::Metrics;
use super::rooms::Rooms;
use crate::broadcast::{Deliver, Kind};
use std::sync::Arc;

pub struct Local {
    pub(super) rooms: Rooms,
    /// Every session of this replica by user, in rooms or not.
    pub(super) connected: Connected,
}

impl Local {
    /// `server_id`: this replica's, which drain commands name.
    pub fn new(metrics: Arc<Metrics>, server_id: String) -> Arc<Self> {
        Arc::new(Self {
            rooms: Rooms::new(metrics),
            connected: Connected::new(server_id),
        })
    }

    /// What the broadcast calls for each delivery to this replica.
    pub fn deliverer(self: &Arc<Self>) -> Deliver {
        let local = self.clone();
        Arc::new(move |envelope| {
            if envelope.kind == Kind::Interrupted {
                local.rooms.hold();
            } else if &*envelope.topic == CONTROL_TOPIC {
                local.connected.on_control(&envelope.payload);
            } else {
                local.rooms.deliver(envelope);
            }
        })
    }
}

/// This replica's own counts.
#[derive(Debug, Clone, Copy)]
pub struct Stats {
    pub connections: i64,
    pub rooms: i64,
    pub messages_in: u64,
    pub messages_out: u64,
}
