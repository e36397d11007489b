//! rtchat: real-time chat over WebSockets and a gRPC user service, one
//! binary that scales out through Redis.
//!
//! - [`config`]: every subcommand's flags and environment variables.
//! - [`auth`]: JWT verification and room rules, for every server.
//! - [`broadcast`]: the ordered publish/subscribe log both servers share,
//!   in-process or through Redis.
//! - [`redis`]: Redis connection settings both servers share.
//! - [`hub`]: a replica's rooms, behind every protocol door.
//! - [`ws`]: the WebSocket chat server, its native door and its page.
//! - [`socketio`]: the Socket.IO door onto the same hub.
//! - [`api`]: the server API, for backends, on the chat server.
//! - [`grpc`]: the UserService server, its stores and the command-line client.
//! - [`probe`]: the container health check.
//! - [`bench`]: load generators behind `rtchat bench`.
//! - [`shutdown`], [`logging`], [`process`]: process plumbing.

#![forbid(unsafe_code)]

pub mod api;
pub mod auth;
pub mod bench;
pub mod broadcast;
pub mod config;
pub mod gate;
pub mod grpc;
pub mod hub;
pub mod logging;
pub mod probe;
pub mod process;
pub mod redis;
pub mod shutdown;
pub mod socketio;
pub mod ws;
