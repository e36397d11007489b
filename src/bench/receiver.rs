//! A webhook receiver for benchmarks: answers every POST with 204 at once
//! and counts them, so what is measured is rtchat's delivery, not the
//! receiver. It checks no signature (the suite's tests do).

use axum::Router;
use axum::http::StatusCode;
use clap::Args;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Clone, Args)]
pub struct ReceiverArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:3990")]
    pub listen: std::net::SocketAddr,
}

pub async fn run(args: ReceiverArgs) -> anyhow::Result<()> {
    let received = Arc::new(AtomicU64::new(0));
    let app = {
        let received = received.clone();
        Router::new().fallback(move || {
            let received = received.clone();
            async move {
                received.fetch_add(1, Ordering::Relaxed);
                StatusCode::NO_CONTENT
            }
        })
    };
    let listener = crate::process::listen(args.listen).await?;
    tracing::info!(addr = %listener.local_addr()?, "webhook receiver listening");
    axum::serve(crate::process::without_nagle(listener), app)
        .with_graceful_shutdown(crate::shutdown::on_signal().cancelled_owned())
        .await?;
    println!("{}", received.load(Ordering::Relaxed));
    Ok(())
}
