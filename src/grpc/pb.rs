//! Code generated from proto/service.proto.

#![allow(clippy::all, missing_docs)]

tonic::include_proto!("userservice");

/// Encoded descriptors of the API, served by reflection.
pub const DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("userservice_descriptor");
