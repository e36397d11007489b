//! The rules of a room, in one place for every front end (native door,
//! Socket.IO, the server API, gRPC): which names are rooms, which rooms a
//! token lets its holder into, and which rooms only the server side posts
//! to. A front end that checks a room any other way has a bug.

use super::{HubError, NameError, RoomName};
use crate::auth::RoomRule;

/// The room the user service posts every user change to: members may
/// read it, only the server side (the user service, the server API) posts.
pub const USERS_ROOM: &str = "users";

/// Which names are rooms; the same for every front end of a replica, and
/// for every replica, since they come from the same flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoomRules {
    /// Longest room name, in characters.
    max_room_len: usize,
}

impl RoomRules {
    pub fn new(max_room_len: usize) -> Self {
        Self { max_room_len }
    }

    pub fn max_room_len(&self) -> usize {
        self.max_room_len
    }

    /// A room name as every front end accepts it.
    pub fn room(&self, name: &str) -> Result<RoomName, NameError> {
        RoomName::parse(name, self.max_room_len)
    }

    /// Refuses a room outside a token's `rooms` patterns (`None`: any room).
    pub fn check_token(allowed: Option<&RoomRule>, room: &RoomName) -> Result<(), HubError> {
        match allowed {
            Some(rule) if !rule.allows(room.as_str()) => Err(HubError::Forbidden),
            _ => Ok(()),
        }
    }

    /// Refuses a client's post to a room only the server side posts to.
    pub fn check_client_post(room: &RoomName) -> Result<(), HubError> {
        if room.as_str() == USERS_ROOM {
            return Err(HubError::ReadOnly);
        }
        Ok(())
    }

    /// Room `users`, whatever the name bound: the server side posts there.
    pub fn users_room() -> RoomName {
        RoomName::parse(USERS_ROOM, USERS_ROOM.len()).expect("a valid room name")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_bound_for_every_name() {
        let rules = RoomRules::new(4);
        assert!(rules.room("abcd").is_ok());
        assert!(rules.room("abcde").is_err());
        assert_eq!(RoomRules::users_room().as_str(), USERS_ROOM);
    }

    #[test]
    fn token_patterns_and_read_only_rooms() {
        let rule = RoomRule::new(vec!["team-*".into()]);
        let room = |name| RoomName::parse(name, 128).unwrap();
        assert!(RoomRules::check_token(Some(&rule), &room("team-a")).is_ok());
        assert!(RoomRules::check_token(Some(&rule), &room("other")).is_err());
        assert!(RoomRules::check_token(None, &room("other")).is_ok());
        assert!(RoomRules::check_client_post(&room("users")).is_err());
        assert!(RoomRules::check_client_post(&room("general")).is_ok());
    }
}
