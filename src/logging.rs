//! Logs go to stderr, filtered by `RUST_LOG`; stdout is kept for results.

use clap::ValueEnum;
use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for container log collectors.
    Json,
}

/// Installs the global subscriber. Defaults to `info` for rtchat and `warn`
/// for dependencies so a fresh server is neither silent nor noisy.
pub fn init(format: LogFormat) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn,rtchat=info"));
    // A line that cannot be written is dropped. By default the subscriber
    // reports it with `eprintln!`, which panics when stderr itself is gone
    // (the reader of a pipe exited): every task that logged died, the
    // SIGTERM handler among them, and the server never stopped.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .log_internal_errors(false);
    match format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

/// An error with its sources, `outer: inner: ...`: hyper's and tonic's
/// errors say "client error (Connect)" and leave the why to their sources.
pub fn source_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}
