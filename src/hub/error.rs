//! The error codes every door reports, and the hub's own refusals.
//!
//! A code's string is part of the public contract (native error frames,
//! Socket.IO error acks, metrics labels) and must never change.

use crate::broadcast::BroadcastError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// Not JSON, not an object, a binary frame, or a field of the wrong type.
    BadFrame,
    /// `type` missing or not one the server knows.
    UnknownType,
    /// Room name empty, too long or with characters outside [A-Za-z0-9_.:-].
    InvalidRoom,
    /// `since` is not a message id.
    InvalidSince,
    /// `ack` is not a string or number, or is too long.
    InvalidAck,
    /// Message text empty or over the size limit.
    MessageTooLong,
    /// Frame over the size limit; the socket is closed with 1009 after it.
    FrameTooLarge,
    /// Over the per-connection frame rate; the frame was dropped.
    RateLimited,
    /// Over the per-connection room limit.
    TooManyRooms,
    /// The shared backend (Redis) is unreachable; try again.
    Unavailable,
    /// `history` is not a count.
    InvalidHistory,
    /// The room is outside what the token allows.
    Forbidden,
    /// The token expired; the connection is closed (4001).
    TokenExpired,
    /// A server API call without the right key (HTTP 401).
    Unauthorized,
    /// A server API call naming a replica that is not alive (HTTP 404).
    UnknownServer,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BadFrame => "bad_frame",
            Self::UnknownType => "unknown_type",
            Self::InvalidRoom => "invalid_room",
            Self::InvalidSince => "invalid_since",
            Self::InvalidAck => "invalid_ack",
            Self::MessageTooLong => "message_too_long",
            Self::FrameTooLarge => "frame_too_large",
            Self::RateLimited => "rate_limited",
            Self::TooManyRooms => "too_many_rooms",
            Self::Unavailable => "unavailable",
            Self::InvalidHistory => "invalid_history",
            Self::Forbidden => "forbidden",
            Self::TokenExpired => "token_expired",
            Self::Unauthorized => "unauthorized",
            Self::UnknownServer => "unknown_server",
        }
    }
}

/// Why the hub refused a join or a publish. When a call returns one, it
/// changed nothing: no membership, subscription or presence is left behind.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error("at most {0} rooms per connection")]
    TooManyRooms(usize),
    #[error("message must be 1 to {0} bytes")]
    MessageTooLong(usize),
    #[error("idempotency_key must be 1 to {0} characters")]
    InvalidIdempotencyKey(usize),
    #[error("this room is not allowed by your token")]
    Forbidden,
    #[error("room users is read-only: the user service posts there")]
    ReadOnly,
    #[error(transparent)]
    Unavailable(#[from] BroadcastError),
}

impl HubError {
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::TooManyRooms(_) => ErrorCode::TooManyRooms,
            Self::MessageTooLong(_) => ErrorCode::MessageTooLong,
            Self::InvalidIdempotencyKey(_) => ErrorCode::BadFrame,
            Self::Forbidden | Self::ReadOnly => ErrorCode::Forbidden,
            Self::Unavailable(_) => ErrorCode::Unavailable,
        }
    }
}
