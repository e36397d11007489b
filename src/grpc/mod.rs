//! The gRPC server: UserService (store, update stream, every change also
//! posted to room `users`) and rtchat.v1.ChatService (the server API's
//! room operations), with health, reflection, auth, logging, timeouts and
//! graceful shutdown.
//!
//! [`run`] takes a bound listener and a shutdown token, like the ws-server.
//! On shutdown, health turns NOT_SERVING first so balancers stop sending,
//! update streams end cleanly, and in-flight calls get until
//! `--shutdown-timeout` to finish.

pub(crate) mod auth;
pub(crate) mod chat;
pub mod client;
pub mod pb;
pub(crate) mod service;
pub(crate) mod store;
pub(crate) mod updates;
pub(crate) mod users_room;
pub(crate) mod validate;
pub(crate) mod web;

use crate::broadcast::{self, Broadcast, Histories, HistoryPolicy};
use crate::hub::{Backend, RoomSettings};
use anyhow::Context;
use pb::user_service_server::UserServiceServer;
use service::UserService;
use std::sync::Arc;
use std::time::Duration;
use store::UserStore;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::service::interceptor::InterceptedService;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;
use updates::UpdateFeed;

/// How often store reachability is reflected in the health service.
const HEALTH_POLL: Duration = Duration::from_millis(250);

/// Largest request message decoded: a user is a name (100 characters) and
/// an email (254 bytes); anything far larger is refused before decoding.
pub const MAX_REQUEST_BYTES: usize = 16 * 1024;

/// The service name health checks ask about.
pub const SERVICE_NAME: &str = "userservice.UserService";

/// Updates kept in the broadcast log: what a replica reads back after an
/// outage. Longer outages end the update streams instead.
const UPDATE_HISTORY: HistoryPolicy = HistoryPolicy {
    max_len: 100,
    max_age: Duration::from_secs(3600),
};

/// What the server runs on, built from the flags by the `config` module.
#[derive(Debug, Clone)]
pub struct Settings {
    /// This replica's name, for logs and on what it posts to rooms.
    pub id: String,
    /// The rooms' rules, for what the chat service and the user service
    /// post (no sessions: grpc-server has no chat clients).
    pub rooms: RoomSettings,
    /// Pages that may call over gRPC-Web.
    pub origins: crate::gate::origins::AllowedOrigins,
    /// `None`: standalone, users in memory.
    pub redis: Option<crate::redis::RedisSettings>,
    /// Who may call with a JWT.
    pub verifier: crate::auth::Verifier,
    /// Bounds before a connection is served, and per client address.
    pub gate: crate::gate::GateSettings,
    /// The static bearer token services call with.
    pub auth_token: Option<String>,
    /// Longest a unary call may take.
    pub request_timeout: Duration,
    /// Calls served at once per client connection.
    pub concurrency_limit: usize,
    /// HTTP/2 ping interval to detect dead peers.
    pub keepalive_interval: Duration,
    /// How long shutdown waits for in-flight calls.
    pub shutdown_timeout: Duration,
    /// `None`: no webhooks.
    pub webhooks: Option<crate::webhooks::WebhookSettings>,
}

pub async fn run(
    listener: TcpListener,
    settings: Settings,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let redis = settings.redis.clone();
    let store: Arc<dyn UserStore> = match &redis {
        Some(redis) => Arc::new(store::redis::RedisStore::connect(redis).await?),
        None => Arc::new(store::memory::MemoryStore::default()),
    };
    // One log for the user updates and the rooms it posts to, each topic
    // trimmed by its own bounds; presence is only read (no members here,
    // so no heartbeat).
    let updates = UpdateFeed::new();
    let histories =
        Histories::from(settings.rooms.history).with(updates::UPDATES_TOPIC, UPDATE_HISTORY);
    let (broker, presence) =
        broadcast::connect_presence_reader(redis.as_ref(), histories, updates.deliverer()).await?;
    let webhooks =
        crate::webhooks::Webhooks::start(settings.webhooks.clone(), redis.as_ref(), &settings.id)
            .await?;
    let rooms = Arc::new(Backend::new(
        settings.rooms.clone(),
        broker.clone(),
        presence,
        Arc::new(crate::hub::metrics::Metrics::new()),
        webhooks.clone(),
    ));
    // One subscription serves every local stream.
    updates.spawn(broker.clone(), shutdown.clone());

    let (reporter, health) = tonic_health::server::health_reporter();
    spawn_health(
        reporter.clone(),
        store.clone(),
        broker.clone(),
        shutdown.clone(),
    );
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .context("building the reflection service")?;
    let users = UserServiceServer::new(UserService::new(
        store,
        broker,
        updates,
        shutdown.clone(),
        rooms.clone(),
    ))
    .max_decoding_message_size(MAX_REQUEST_BYTES);
    let bearer = auth::BearerAuth::new(settings.auth_token.clone(), settings.verifier.clone());
    let users = InterceptedService::new(users, bearer.clone());
    let chat = pb::chat::chat_service_server::ChatServiceServer::new(chat::ChatService::new(rooms))
        .max_decoding_message_size(MAX_REQUEST_BYTES);
    let chat = InterceptedService::new(chat, bearer);

    let addr = listener.local_addr()?;
    let mode = crate::redis::mode(redis.as_ref());
    tracing::info!(%addr, id = %settings.id, mode, "grpc-server listening");

    // Nagle off (in the gate), as tonic does for the addresses it binds
    // itself: a response written while the previous one is unacknowledged
    // would otherwise wait for that ACK.
    let incoming =
        crate::gate::http2::incoming(listener, crate::gate::Gate::new(settings.gate.clone()));
    let stopping = shutdown.clone();
    let access_log = tracing::enabled!(target: "rtchat::grpc", tracing::Level::DEBUG);
    let server = tonic::transport::Server::builder()
        // gRPC-Web from browsers arrives over HTTP/1.1.
        .accept_http1(true)
        .timeout(settings.request_timeout)
        .concurrency_limit_per_connection(settings.concurrency_limit)
        .http2_keepalive_interval(Some(settings.keepalive_interval))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)))
        // One line per call only when asked for, and the layer only then:
        // at tens of thousands of calls a second an access log on stderr
        // adds a quarter to the CPU of each call, and timing and
        // classifying each call without logging it another 6%.
        .layer(tower::util::option_layer(access_log.then(|| {
            tower::ServiceBuilder::new()
                .map_response(|r: axum::http::Response<_>| r.map(tonic::body::Body::new))
                .layer(tower_http::trace::TraceLayer::new_for_grpc()
                    .make_span_with(|request: &axum::http::Request<_>| {
                        tracing::debug_span!("rpc", method = %request.uri().path())
                    })
                    .on_request(())
                    .on_response(|response: &axum::http::Response<_>, latency: Duration, _: &tracing::Span| {
                        let code = response.headers().get("grpc-status").and_then(|v| v.to_str().ok()).unwrap_or("0");
                        tracing::debug!(status = code, latency_ms = latency.as_secs_f64() * 1000.0, "rpc");
                    })
                    .on_failure(|failure, latency: Duration, _: &tracing::Span| {
                        tracing::debug!(status = %failure, latency_ms = latency.as_secs_f64() * 1000.0, "rpc failed");
                    }))
                .into_inner()
        })))
        .layer(web::cors(settings.origins.clone()))
        .layer(tonic_web::GrpcWebLayer::new())
        .add_service(health)
        .add_service(reflection)
        .add_service(users)
        .add_service(chat)
        .serve_with_incoming_shutdown(incoming, async move {
            stopping.cancelled().await;
            set_health(&reporter, ServingStatus::NotServing).await;
        });
    tokio::pin!(server);
    tokio::select! {
        result = &mut server => result.context("gRPC server failed")?,
        _ = async {
            shutdown.cancelled().await;
            tokio::time::sleep(settings.shutdown_timeout).await;
        } => tracing::warn!("shutdown timeout; dropping remaining calls"),
    }
    webhooks.close(Duration::from_secs(2)).await;
    tracing::info!("grpc-server stopped");
    Ok(())
}

async fn set_health(reporter: &HealthReporter, status: ServingStatus) {
    reporter.set_service_status("", status).await;
    reporter.set_service_status(SERVICE_NAME, status).await;
}

/// Keeps health in step with the store: NOT_SERVING while it is
/// unreachable, and from shutdown on.
fn spawn_health(
    reporter: HealthReporter,
    store: Arc<dyn UserStore>,
    broker: Arc<dyn Broadcast>,
    shutdown: CancellationToken,
) {
    tokio::spawn(async move {
        let mut current = None;
        let mut ticks = tokio::time::interval(HEALTH_POLL);
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                _ = shutdown.cancelled() => break,
            }
            let status = if store.is_ready() && broker.is_ready() {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            };
            if current != Some(status) {
                if current.is_some() {
                    tracing::info!(?status, "health changed");
                }
                set_health(&reporter, status).await;
                current = Some(status);
            }
        }
        set_health(&reporter, ServingStatus::NotServing).await;
    });
}
