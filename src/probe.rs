//! `rtchat probe`: a container health check that needs no curl. Exits 0
//! when the target is ready, 1 otherwise.
//!
//! - `http://host:port/path`: a GET that must answer 2xx (e.g. /readyz).
//! - `grpc://host:port`: the standard gRPC health service must say SERVING.

use anyhow::{Context, bail};
use clap::Args;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Debug, Clone, Args)]
pub struct ProbeArgs {
    /// What to probe: http://host:port/path or grpc://host:port.
    pub target: String,

    /// Give up after this long.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

/// Enough of a response to hold its status line.
const STATUS_LINE_BYTES: usize = 64;

pub async fn run(args: ProbeArgs) -> anyhow::Result<()> {
    tokio::time::timeout(args.timeout, probe(&args.target, args.timeout))
        .await
        .with_context(|| format!("{} did not answer within {:?}", args.target, args.timeout))?
}

async fn probe(target: &str, timeout: Duration) -> anyhow::Result<()> {
    if let Some(rest) = target.strip_prefix("http://") {
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let path = if path.is_empty() { "/" } else { path };
        let mut stream = tokio::net::TcpStream::connect(authority)
            .await
            .with_context(|| format!("cannot connect to {authority}"))?;
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut head = vec![0; STATUS_LINE_BYTES];
        let n = stream.read(&mut head).await?;
        let line = String::from_utf8_lossy(&head[..n]);
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .context("not an HTTP response")?;
        if !(200..300).contains(&status) {
            bail!("{target} answered {status}");
        }
        println!("{status}");
        Ok(())
    } else if let Some(rest) = target.strip_prefix("grpc://") {
        let args = crate::grpc::client::ClientArgs {
            addr: format!("http://{rest}"),
            json: false,
            timeout,
            token: None,
            call: crate::grpc::client::Call::Health {
                service: String::new(),
            },
        };
        crate::grpc::client::run(args).await
    } else {
        bail!("probe target must start with http:// or grpc://")
    }
}
