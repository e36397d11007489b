//! The rules of a room both servers apply: ws-server to its clients,
//! grpc-server to what its chat service and the user service post.

use clap::Args;
use std::time::Duration;

#[derive(Debug, Clone, Args)]
pub struct RoomArgs {
    /// Longest room name, in characters of [A-Za-z0-9_.:-].
    #[arg(long, env = "MAX_ROOM_LEN", default_value_t = 128)]
    pub max_room_len: usize,

    /// Largest message text, in bytes.
    #[arg(long, env = "MAX_MESSAGE_BYTES", default_value_t = 4096)]
    pub max_message_bytes: usize,

    /// Messages kept per room for `since` recovery and history.
    #[arg(long, env = "HISTORY_SIZE", default_value_t = 1000)]
    pub history_size: usize,

    /// How long a message is kept for `since` recovery and history.
    #[arg(long, env = "HISTORY_TTL", default_value = "24h", value_parser = humantime::parse_duration)]
    pub history_ttl: Duration,
}

impl RoomArgs {
    /// The rooms' settings of the replica named `server_id`.
    pub fn settings(&self, server_id: &str) -> crate::hub::RoomSettings {
        crate::hub::RoomSettings {
            server_id: server_id.to_owned(),
            rules: crate::hub::RoomRules::new(self.max_room_len),
            max_message_bytes: self.max_message_bytes,
            history: crate::broadcast::HistoryPolicy {
                max_len: self.history_size,
                max_age: self.history_ttl,
            },
        }
    }
}
