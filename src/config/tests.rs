//! The flags parse, and replica ids expand.

use super::*;

#[test]
fn replica_id_expands_hostname() {
    assert_eq!(replica_id("server-1").unwrap(), "server-1");
    let expanded = replica_id("ws-{hostname}").unwrap();
    assert!(expanded.starts_with("ws-") && !expanded.contains('{') && expanded.len() > 3);
}

#[test]
fn every_subcommand_parses_its_defaults() {
    use clap::CommandFactory;
    Cli::command().debug_assert();
    for args in [
        &["rtchat", "ws-server"][..],
        &["rtchat", "grpc-server"],
        &["rtchat", "grpc-client", "list"],
    ] {
        Cli::try_parse_from(args).unwrap();
    }
}
