//! Code generated from proto/service.proto and proto/chat.proto.

#![allow(clippy::all, missing_docs)]

tonic::include_proto!("userservice");

/// The chat service (proto/chat.proto).
pub mod chat {
    tonic::include_proto!("rtchat.v1");
}

/// Encoded descriptors of the API, served by reflection.
pub const DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("userservice_descriptor");
