//! `rtchat grpc-client`.

use clap::Args;

#[derive(Debug, Clone, Args)]
pub struct ClientArgs {
    /// Server address.
    #[arg(long, env = "GRPC_ADDR", default_value = "http://127.0.0.1:50051")]
    pub addr: String,
}

pub async fn run(_args: ClientArgs) -> anyhow::Result<()> {
    anyhow::bail!("grpc-client is not built yet")
}
