//! Every user change as a chat message in room `users`, so people watching
//! the chat see who was created, renamed or removed. The room is read-only
//! to chat clients (`crate::hub::USERS_ROOM`).

use super::pb::UserResponse;
use crate::hub::backend::Author;
use crate::hub::{Backend, HubError, RoomRules};

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

/// Posts one change to room `users` on every replica.
pub async fn post(rooms: &Backend, action: &str, user: &UserResponse) -> Result<u64, HubError> {
    let room = RoomRules::users_room();
    let author = Author {
        user: AUTHOR,
        name: None,
        backend: true,
    };
    rooms
        .publish_as(author, &room, &text(action, user), None)
        .await
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
    }
}
