//! Room and display names, validated once where they enter (a frame, a
//! query string, a Socket.IO event), so that everything past the edge may
//! splice them into JSON unescaped: the types cannot hold a quote, a
//! backslash or a control character.

use std::borrow::Borrow;
use std::fmt;
use std::sync::Arc;

/// Longest display name, in characters.
pub const MAX_NAME_CHARS: usize = 32;

/// A name refused, with the reason the client is told.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NameError(pub String);

/// A room name: 1 to `max_len` characters of `[A-Za-z0-9_.:-]`. Cheap to
/// clone; the room map and every joined connection share one allocation.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RoomName(Arc<str>);

impl RoomName {
    pub fn parse(name: &str, max_len: usize) -> Result<Self, NameError> {
        if name.is_empty() || name.len() > max_len {
            return Err(NameError(format!(
                "room name must be 1 to {max_len} characters"
            )));
        }
        if !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'))
        {
            return Err(NameError(
                "room name may only contain A-Z a-z 0-9 _ . : -".into(),
            ));
        }
        Ok(Self(Arc::from(name)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Same allocation: the fast test a delivery makes per recipient.
    pub fn same(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl fmt::Display for RoomName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Borrow<str> for RoomName {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for RoomName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// A display name: trimmed, 1 to [`MAX_NAME_CHARS`] characters, no control
/// characters. Serialised through serde, never spliced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisplayName(Box<str>);

impl DisplayName {
    pub fn parse(name: &str) -> Result<Self, NameError> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
            return Err(NameError(format!(
                "name must be 1 to {MAX_NAME_CHARS} characters"
            )));
        }
        if name.chars().any(char::is_control) {
            return Err(NameError("name must not contain control characters".into()));
        }
        Ok(Self(name.into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_names() {
        assert!(RoomName::parse("general", 128).is_ok());
        assert!(RoomName::parse("team-a:ops_1.x", 128).is_ok());
        assert!(RoomName::parse("", 128).is_err());
        assert!(RoomName::parse(&"a".repeat(129), 128).is_err());
        assert!(RoomName::parse(&"a".repeat(128), 128).is_ok());
        assert!(RoomName::parse("with space", 128).is_err());
        assert!(RoomName::parse("ünï", 128).is_err());
        for spliced in ["a\"b", "a\\b", "a\nb", "a}b"] {
            assert!(RoomName::parse(spliced, 128).is_err(), "{spliced:?}");
        }
    }

    #[test]
    fn display_names() {
        assert_eq!(DisplayName::parse("  ana ").unwrap().as_str(), "ana");
        assert!(DisplayName::parse("").is_err());
        assert!(DisplayName::parse("   ").is_err());
        assert!(DisplayName::parse("a\u{7}b").is_err());
        assert!(DisplayName::parse(&"é".repeat(32)).is_ok());
        assert!(DisplayName::parse(&"é".repeat(33)).is_err());
    }
}
