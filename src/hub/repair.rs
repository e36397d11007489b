//! After every Redis outage (or a pub/sub overflow), reads back from the
//! log what this replica's rooms missed and delivers it in order, before
//! the live traffic held meanwhile. A read-back that keeps failing (Redis
//! went away again, a failover is not over) must not leave a silent gap:
//! the room's members are then sent to reconnect, and they resume from
//! what they have (native `since`, Socket.IO recovery).

use super::Hub;
use super::backend::topic;
use crate::broadcast::From;
use std::sync::Arc;
use std::time::Duration;

/// Read-back attempts per room before its members are sent to resume:
/// about three seconds in all.
const ATTEMPTS: u32 = 5;
const FIRST_RETRY: Duration = Duration::from_millis(100);

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
    let mut pending = hub.local.rooms.begin_repair();
    let mut delay = FIRST_RETRY;
    for attempt in 1..=ATTEMPTS {
        let mut failed = Vec::new();
        for (room, after) in pending {
            let missed = match hub.log.replay(&topic(&room), From::Since(after)).await {
                Ok(replay) if replay.recovered => replay.messages,
                Ok(_) => {
                    tracing::warn!(%room, "history lost with Redis; members resume with `since`");
                    Vec::new()
                }
                Err(err) if attempt < ATTEMPTS => {
                    tracing::debug!(%err, %room, attempt, "could not read back missed messages yet");
                    failed.push((room, after));
                    continue;
                }
                Err(err) => {
                    let sent = hub.local.rooms.finish_repair_elsewhere(&room);
                    tracing::warn!(%err, %room, sent, "could not read back missed messages; members sent to resume");
                    continue;
                }
            };
            if !missed.is_empty() {
                tracing::info!(%room, count = missed.len(), "delivering messages missed during an outage");
            }
            hub.local.rooms.finish_repair(&room, missed);
        }
        if failed.is_empty() {
            return;
        }
        pending = failed;
        tokio::time::sleep(delay).await;
        delay *= 2;
    }
}
