//! rtchat: real-time chat over WebSockets and a gRPC user service, one
//! binary that scales out through Redis.
//!
//! From the top down; each layer imports only layers below it:
//!
//! - [`config`]: every subcommand's flags and environment variables, turned
//!   into plain settings; every secret file is read here. Only `main` uses it.
//! - [`chat_server`]: the ws-server assembled above its front ends.
//! - [`grpc`]: the gRPC server (UserService, ChatService) on a hub
//!   backend, its stores, and the command-line client.
//! - [`ws`], [`socketio`]: the chat doors, each turning its protocol into
//!   hub calls and back; [`api`]: the server API, for backends.
//! - [`door`]: what every chat door shares.
//! - [`hub`]: a replica's rooms: sessions over a backend (publish, history,
//!   presence, commands), and the rules of a room for every front end.
//! - [`webhooks`]: events (joins, leaves, sessions, messages, user
//!   changes) queued and POSTed to the application's backend.
//! - [`gate`]: what a connection must do before any server serves it; rate
//!   bounds; origins.
//! - [`broadcast`]: the ordered publish/subscribe log and presence both
//!   servers share, in-process or through Redis.
//! - [`auth`]: JWT verification and token room patterns.
//! - [`redis`]: Redis connection settings both servers share.
//! - [`probe`]: the container health check; [`bench`]: load generators.
//! - [`shutdown`], [`logging`], [`process`]: process plumbing.

#![forbid(unsafe_code)]

pub mod api;
pub mod auth;
pub mod bench;
pub mod broadcast;
pub mod chat_server;
pub mod config;
pub mod door;
pub mod gate;
pub mod grpc;
pub mod hub;
pub mod logging;
pub mod probe;
pub mod process;
pub mod redis;
pub mod shutdown;
pub mod socketio;
pub mod webhooks;
pub mod ws;
