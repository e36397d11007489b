//! `POST /api/cluster`: every live replica as its report shows it, and
//! the busiest rooms of the whole cluster, for the operator's page (and
//! `curl`): whichever replica answers, the view is the cluster's.

use super::ApiState;
use super::handlers::{Answer, Body, parse_empty, with_members};
use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};
use std::collections::HashMap;

/// Rooms the answer names, busiest first.
const BUSIEST: usize = 10;

pub(super) async fn cluster(State(state): State<ApiState>, Body(body): Body) -> Answer {
    parse_empty(&body)?;
    let hub = &state.hub;
    let mut reports = hub.replicas().await?;
    reports.sort_by(|a, b| a.server.cmp(&b.server));
    let now_ms = crate::broadcast::unix_ms();
    // Local member counts summed over the replicas: which rooms are busy.
    let mut local: HashMap<&str, u64> = HashMap::new();
    let replicas: Vec<Value> = reports
        .iter()
        .map(|report| {
            let mut entry = json!({
                "server": report.server,
                "sockets": report.sockets,
                "draining": report.draining,
            });
            if let Some(status) = &report.status {
                for (room, members) in &status.top_rooms {
                    *local.entry(room.as_str()).or_default() += members;
                }
                let fields = json!({
                    "ready": status.ready,
                    "native": status.native,
                    "socketio": status.socketio,
                    "rooms": status.rooms,
                    "uptime_seconds": now_ms.saturating_sub(status.started_ms) / 1000,
                    "version": status.version,
                    "messages_in": status.messages_in,
                    "messages_out": status.messages_out,
                    "redis_rtt_ms": status.redis_rtt_ms,
                });
                if let (Value::Object(entry), Value::Object(fields)) = (&mut entry, fields) {
                    entry.extend(fields);
                }
            }
            entry
        })
        .collect();
    let mut busiest: Vec<(String, u64)> = local
        .into_iter()
        .map(|(room, n)| (room.to_owned(), n))
        .collect();
    busiest.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    busiest.truncate(BUSIEST);
    let rooms: Vec<Value> = with_members(&state, busiest)
        .await
        .into_iter()
        .map(|(name, sessions, members)| {
            json!({"room": name, "members": members, "sessions": sessions})
        })
        .collect();
    Ok(Json(json!({
        "server": hub.settings().server_id,
        "replicas": replicas,
        "rooms": rooms,
    })))
}
