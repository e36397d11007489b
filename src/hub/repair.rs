//! After every Redis outage (or a pub/sub overflow), reads back from the
//! log what this replica's rooms missed and delivers it in order, before
//! the live traffic held meanwhile.

use super::Hub;
use super::backend::topic;
use crate::broadcast::From;
use std::sync::Arc;

/// Runs until the hub is dropped.
pub(super) fn spawn(hub: &Arc<Hub>) {
    let mut resumed = hub.log.resumed();
    let hub = Arc::downgrade(hub);
    tokio::spawn(async move {
        while resumed.changed().await.is_ok() {
            let Some(hub) = hub.upgrade() else { break };
            repair(&hub).await;
        }
    });
}

pub(super) async fn repair(hub: &Hub) {
    for (room, after) in hub.local.rooms.begin_repair() {
        let missed = match hub.log.replay(&topic(&room), From::Since(after)).await {
            Ok(replay) if replay.recovered => replay.messages,
            Ok(_) => {
                tracing::warn!(%room, "history lost with Redis; members resume with `since`");
                Vec::new()
            }
            Err(err) => {
                tracing::warn!(%err, %room, "could not read back missed messages");
                Vec::new()
            }
        };
        if !missed.is_empty() {
            tracing::info!(%room, count = missed.len(), "delivering messages missed during an outage");
        }
        hub.local.rooms.finish_repair(&room, missed);
    }
}
