//! rtchat servers run inside the test's own runtime through the same
//! `run(listener, settings, shutdown)` entry points `main` uses, on a port-0
//! listener: for protocol behaviour that needs no process boundary. Tests
//! that send signals, SIGKILL a replica or read its log use
//! [`super::Process`] instead.

use super::{DEADLINE, Endpoint, Redis};
use clap::Parser;
use rtchat::config::{Cli, Command};
use std::net::SocketAddr;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub struct Server {
    addr: SocketAddr,
    shutdown: CancellationToken,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

/// The subcommand's flags as `rtchat` would parse them; the Redis URL comes
/// only from `redis`, never from the environment.
fn parse(subcommand: &str, id: &str, redis: Option<&Redis>, extra: &[&str]) -> Command {
    let args = ["rtchat", subcommand, "--id", id]
        .into_iter()
        .chain(extra.iter().copied());
    let mut command = Cli::try_parse_from(args).expect("valid flags").command;
    let url = redis.map(Redis::url);
    match &mut command {
        Command::WsServer(args) => args.redis.redis_url = url,
        Command::GrpcServer(args) => args.redis.redis_url = url,
        _ => unreachable!("a server subcommand"),
    }
    command
}

impl Server {
    /// `rtchat ws-server --id <id> <extra>`, on `redis` when given.
    pub async fn ws(id: &str, redis: Option<&Redis>, extra: &[&str]) -> Self {
        let Command::WsServer(args) = parse("ws-server", id, redis, extra) else {
            unreachable!()
        };
        Self::start(|listener, shutdown| {
            tokio::spawn(rtchat::chat_server::run(
                listener,
                args.settings().unwrap(),
                shutdown,
            ))
        })
        .await
    }

    /// `rtchat grpc-server --id <id> <extra>`, on `redis` when given.
    pub async fn grpc(id: &str, redis: Option<&Redis>, extra: &[&str]) -> Self {
        let Command::GrpcServer(args) = parse("grpc-server", id, redis, extra) else {
            unreachable!()
        };
        Self::start(|listener, shutdown| {
            tokio::spawn(rtchat::grpc::run(
                listener,
                args.settings().unwrap(),
                shutdown,
            ))
        })
        .await
    }

    async fn start(
        spawn: impl FnOnce(tokio::net::TcpListener, CancellationToken) -> JoinHandle<anyhow::Result<()>>,
    ) -> Self {
        super::logs::capture_in_process();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let task = spawn(listener, shutdown.clone());
        Self {
            addr,
            shutdown,
            task: Some(task),
        }
    }

    /// Shuts down as SIGTERM would and waits for `run` to return.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        let task = self.task.take().unwrap();
        tokio::time::timeout(DEADLINE, task)
            .await
            .expect("the server stopped in time")
            .expect("the server task did not panic")
    }
}

impl Endpoint for Server {
    fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// A ws-server replica with its own Redis when `with_redis`, in the test's
/// own runtime.
pub async fn replica(with_redis: bool, extra: &[&str]) -> (Option<Redis>, Server) {
    let redis = with_redis.then(Redis::start);
    let server = Server::ws("server-1", redis.as_ref(), extra).await;
    (redis, server)
}

/// The broadcast the servers use, on the Redis at `url`, with no one
/// listening: for tests of the room log itself.
pub async fn redis_log(
    url: String,
    policy: rtchat::broadcast::HistoryPolicy,
) -> std::sync::Arc<dyn rtchat::broadcast::Broadcast> {
    let settings = rtchat::redis::RedisSettings {
        url,
        timeout: std::time::Duration::from_secs(5),
        wait_replicas: 0,
    };
    rtchat::broadcast::connect(Some(&settings), policy, std::sync::Arc::new(|_| {}))
        .await
        .expect("connects")
}
