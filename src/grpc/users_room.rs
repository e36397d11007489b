//! Every user change as a chat message in room `users`, so people watching
//! the chat see who was created, renamed or removed. The room is read-only
//! to chat clients (`crate::hub::USERS_ROOM`); its history is the
//! broadcast log's of this server (the last 100 changes of the past hour).

use super::pb::UserResponse;
use crate::hub::wire::MessageBody;
use bytes::Bytes;

/// The broadcast topic of room `users`, as ws-server replicas subscribe it.
pub const TOPIC: &str = "room:users";

/// Who the messages are from, as chat clients show it.
pub const AUTHOR: &str = "user-service";

/// What a chat client shows for one change.
pub fn text(action: &str, user: &UserResponse) -> String {
    match action {
        "deleted" => format!("user {} deleted", user.id),
        // Names only: everyone who may join the room reads it, and an
        // address is not theirs to see.
        action => format!("user {} {action}: {}", user.id, user.name),
    }
}

/// The message body, in the one format every door reads.
pub fn message(text: &str, server: &str) -> Bytes {
    let timestamp = humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string();
    let body = MessageBody {
        room: "users",
        user: AUTHOR,
        name: None,
        message: text,
        server,
        timestamp: &timestamp,
    };
    Bytes::from(serde_json::to_vec(&body).expect("message bodies always serialise"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_reads_as_a_chat_message() {
        let user = UserResponse {
            id: 3,
            name: "Ana".into(),
            email: "ana@example.com".into(),
            created_at: String::new(),
        };
        assert_eq!(text("created", &user), "user 3 created: Ana");
        assert_eq!(text("deleted", &user), "user 3 deleted");
        let body: serde_json::Value =
            serde_json::from_slice(&message("user 3 deleted", "grpc-1")).unwrap();
        assert_eq!(body["room"], "users");
        assert_eq!(body["user"], AUTHOR);
        assert_eq!(body["server"], "grpc-1");
    }
}
