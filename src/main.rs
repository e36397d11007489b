//! The `rtchat` binary: parse flags, set up logging and the runtime; per
//! server, build its settings from the flags, bind its listener and hand
//! both to the library with a shutdown on SIGTERM or Ctrl-C.

use clap::Parser;
use rtchat::config::{Cli, Command};
use rtchat::shutdown::on_signal;

/// Profiles showed malloc and free at over 10% of gRPC server time with the
/// system allocator; mimalloc doubles unary throughput and trims the
/// WebSocket fan-out cost, for ~1 KB more per idle socket
/// (docs/BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    rtchat::logging::init(cli.log_format);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return std::process::ExitCode::FAILURE;
        }
    };
    // Boxed: polled in place, the command's future (the largest of them
    // sized for all) would otherwise sit on the main thread's stack, whose
    // pages stay resident once touched.
    let result = runtime.block_on(Box::pin(async move {
        match cli.command {
            Command::WsServer(args) => {
                let settings = args.settings()?;
                let listener = rtchat::process::listen(args.listen).await?;
                rtchat::chat_server::run(listener, settings, on_signal()).await
            }
            Command::GrpcServer(args) => {
                let settings = args.settings()?;
                let listener = rtchat::process::listen(args.listen).await?;
                rtchat::grpc::run(listener, settings, on_signal()).await
            }
            Command::GrpcClient(args) => rtchat::grpc::client::run(args).await,
            Command::Api(args) => rtchat::api::cli::run(args).await,
            Command::Bench(args) => rtchat::bench::run(args).await,
            Command::Probe(args) => rtchat::probe::run(args).await,
            Command::Token(args) => args.mint().map(|token| println!("{token}")),
        }
    }));
    // Background tasks (Redis reconnect loops, lingering sockets) must not
    // hold the exit hostage once the command itself is done.
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
