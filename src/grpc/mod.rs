//! The gRPC UserService.

pub mod client;

use crate::config::GrpcServerArgs;

pub async fn serve(_args: GrpcServerArgs) -> anyhow::Result<()> {
    anyhow::bail!("grpc-server is not built yet")
}
