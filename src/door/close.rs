//! WebSocket close codes, the same on both doors and part of the contract:
//! clients decide from them whether to reconnect.

/// The server is shutting down; reconnect (to another replica).
pub const GOING_AWAY: u16 = 1001;
/// Control frames (pings, pongs) beyond the frame rate.
pub const FLOOD: u16 = 1008;
/// A frame over `--max-frame-bytes`.
pub const TOO_BIG: u16 = 1009;
/// The client did not keep up with its messages; reconnect and resume.
pub const TRY_AGAIN_LATER: u16 = 1013;
/// No answer to the server's ping in time.
pub const PING_TIMEOUT: u16 = 4000;
/// The connection's token expired; reconnect with a fresh one.
pub const TOKEN_EXPIRED: u16 = 4001;
/// A backend disconnected this user (server API); do not reconnect by
/// yourself.
pub const DISCONNECTED: u16 = 4002;
