//! One WebSocket connection: a single task that reads client frames, drains
//! the connection's send queue, pings, and closes on shutdown.
//!
//! Replies to the client's own frames are written directly; room messages
//! arrive through the session's queue and go out if the hub's session
//! admits them (see [`crate::hub::session`]). What each frame does is in
//! [`super::cmd`].

use super::protocol::{ErrorCode, Reject, ServerFrame, event_frame, message_frame};
use crate::door::DoorState;
use crate::door::admission::Admission;
use crate::door::close;
use crate::door::heartbeat::Heartbeat;
use crate::door::limits::ANSWERED_BEFORE_CLOSE;
use crate::door::socket::{expired, is_capacity_error};
use crate::gate::bucket::TokenBucket;
use crate::hub::{DisplayName, Outbound, Session};
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures_util::{SinkExt, StreamExt};
use std::net::SocketAddr;
use std::time::Duration;
use tracing::Instrument;

/// Frames written per flush when the queue has a backlog: large enough to
/// batch a burst into few syscalls, small enough to keep reading in between.
const WRITE_BATCH: usize = 64;

/// How long a close frame may take to go out before the socket is dropped.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// How long a socket closed for an oversized frame stays open so the
/// client can read why before the connection is reset.
const OVERSIZE_LINGER: Duration = Duration::from_millis(500);

/// How long the close frame of a client closed as too slow may take: its
/// socket is full, so the close code only arrives if it starts reading
/// again soon. Its queue is released first, so waiting costs no memory.
const SLOW_CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// The connection's task. Set-up happens here, outside the future, so the
/// future holds only what an idle connection needs between frames: with
/// 10,000s of sockets per replica its size is most of their memory.
pub fn run(
    socket: WebSocket,
    state: DoorState,
    peer: SocketAddr,
    name: Option<DisplayName>,
    identity: Option<crate::auth::Identity>,
    admission: Admission,
) -> impl Future<Output = ()> + Send + 'static {
    // With a token the user is its `sub`; anonymous clients get a random id.
    let user: String = match &identity {
        Some(identity) => identity.user.clone(),
        None => std::iter::repeat_with(fastrand::alphanumeric)
            .take(16)
            .collect(),
    };
    let span = tracing::info_span!("conn", %user, %peer);
    let (mut session, rx) = state.hub.open(user, name);
    let mut expiry = None;
    if let Some(identity) = identity {
        expiry = Some(Box::pin(tokio::time::sleep(identity.remaining())));
        if let Some(rule) = identity.rooms {
            session.restrict(rule);
        }
    }
    let mut connection = Connection {
        bucket: TokenBucket::new(state.limits.rate_limit, state.limits.rate_burst),
        state,
        session,
        socket,
        expiry,
    };
    async move {
        connection.state.metrics.connections.inc();
        tracing::debug!("connected");
        let reason = connection.serve(rx).await;
        let hub = connection.state.hub.clone();
        Box::pin(hub.leave_all(&mut connection.session)).await;
        // The permit first: once the gauge says a socket is gone, its
        // slot is free for the next one.
        drop(admission);
        connection.state.metrics.connections.dec();
        match reason {
            End::Io(err) => tracing::debug!(%err, "disconnected on a socket error"),
            reason => tracing::debug!(?reason, "disconnected"),
        }
    }
    .instrument(span)
}

pub(super) struct Connection {
    pub(super) state: DoorState,
    /// Who this client is to the hub, and the rooms it is in.
    pub(super) session: Session,
    pub(super) bucket: TokenBucket,
    /// When its token expires; boxed, so anonymous connections pay a
    /// pointer for it.
    expiry: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
    socket: WebSocket,
}

/// What woke a connection waiting for work.
enum Wake {
    Shutdown,
    Expired,
    TooSlow,
    Queued(Outbound),
    Frame(Option<Result<Message, axum::Error>>),
    /// The ping timer fired; `unanswered` if the last ping got no reply.
    Heartbeat {
        unanswered: bool,
    },
}

/// Why a connection ended, for the log.
#[derive(Debug)]
pub(super) enum End {
    ClientClosed,
    Shutdown,
    /// Sent elsewhere: this replica drains or sheds load.
    Moved,
    TokenExpired,
    Disconnected,
    Flood,
    TooSlow,
    PingTimeout,
    FrameTooLarge,
    Io(String),
}

impl Connection {
    /// Waits for work and hands each wake-up to [`Self::handle`]. Only this
    /// wait is in the connection's future; handling is boxed, so its much
    /// larger state (writes, Redis round trips) exists only while it runs.
    async fn serve(&mut self, mut rx: flume::Receiver<Outbound>) -> End {
        let welcome = ServerFrame::Welcome {
            user: self.session.user(),
            server: &self.state.hub.settings().server_id,
        }
        .to_text();
        if let Err(end) = Box::pin(self.send(welcome)).await {
            return end;
        }
        // Pinned once: a cancellation future registers with its token on
        // first poll, and re-creating it every iteration would re-register.
        let shutdown = self.state.shutdown.clone().cancelled_owned();
        let too_slow = self.session.too_slow().clone().cancelled_owned();
        tokio::pin!(shutdown, too_slow);
        let ping_interval = self.state.limits.ping_interval;
        let heartbeat = tokio::time::sleep(ping_interval);
        tokio::pin!(heartbeat);
        let mut beat = Heartbeat::default();

        let end = loop {
            let mut wake = tokio::select! {
                biased;
                _ = &mut shutdown => Wake::Shutdown,
                _ = &mut too_slow => Wake::TooSlow,
                _ = expired(&mut self.expiry) => Wake::Expired,
                Ok(item) = rx.recv_async() => Wake::Queued(item),
                frame = self.socket.next() => Wake::Frame(frame),
                _ = &mut heartbeat => Wake::Heartbeat { unanswered: false },
            };
            let limits = &self.state.limits;
            match &mut wake {
                // Anything from the client proves it is alive.
                Wake::Frame(Some(_)) => beat.heard(heartbeat.as_mut(), limits),
                Wake::Heartbeat { unanswered } => {
                    *unanswered = beat.fired(heartbeat.as_mut(), limits);
                }
                _ => {}
            }
            if let Err(end) = Box::pin(self.handle(wake, &mut rx)).await {
                break end;
            }
        };
        match end {
            End::TooSlow => Box::pin(self.close_slow(&mut rx)).await,
            end => end,
        }
    }

    async fn handle(&mut self, wake: Wake, rx: &mut flume::Receiver<Outbound>) -> Result<(), End> {
        let frame = match wake {
            Wake::Shutdown => {
                return Err(self.go_away("server shutting down", End::Shutdown).await);
            }
            Wake::TooSlow => return Err(End::TooSlow),
            Wake::Expired => {
                return Err(self
                    .close(close::TOKEN_EXPIRED, "token expired", End::TokenExpired)
                    .await);
            }
            Wake::Queued(item) => return self.forward(item, rx).await,
            Wake::Heartbeat { unanswered: true } => {
                return Err(self
                    .close(close::PING_TIMEOUT, "ping timeout", End::PingTimeout)
                    .await);
            }
            Wake::Heartbeat { unanswered: false } => {
                return self.write(Message::Ping(Default::default())).await;
            }
            Wake::Frame(None) => return Err(End::ClientClosed),
            Wake::Frame(Some(frame)) => frame,
        };
        match frame {
            Ok(Message::Text(text)) => self.on_text(&text).await,
            Ok(Message::Binary(_)) => {
                self.reject(Reject::new(
                    ErrorCode::BadFrame,
                    "binary frames are not supported; send JSON text",
                ))
                .await
            }
            Ok(Message::Close(_)) => Err(End::ClientClosed),
            // Control frames count against the rate like any other: a
            // flood of them (each ping costs a pong) closes the connection.
            Ok(Message::Ping(_) | Message::Pong(_)) => {
                if self.bucket.try_take(std::time::Instant::now()) {
                    Ok(())
                } else {
                    self.state.metrics.error(ErrorCode::RateLimited);
                    let end = self
                        .close(close::FLOOD, "too many control frames", End::Flood)
                        .await;
                    // What the flood already sent is unread; dropping the
                    // socket now would reset it and could take the close
                    // frame with it. Read and discard, for a bounded time.
                    let drain = async { while let Some(Ok(_)) = self.socket.next().await {} };
                    let _ = tokio::time::timeout(CLOSE_TIMEOUT, drain).await;
                    Err(end)
                }
            }
            Err(err) if is_capacity_error(&err) => {
                let limit = self.state.limits.max_frame_bytes;
                let _ = self
                    .reject(Reject::new(
                        ErrorCode::FrameTooLarge,
                        format!("frame larger than {limit} bytes"),
                    ))
                    .await;
                let end = self
                    .close(close::TOO_BIG, "frame too large", End::FrameTooLarge)
                    .await;
                // The refused payload is still unread in the socket, so
                // closing now would reset the connection and could take
                // the close frame with it. Reading it is not an option
                // (that is the buffering the limit refuses), so give the
                // client a moment to read the close and hang up first.
                tokio::time::sleep(OVERSIZE_LINGER).await;
                Err(end)
            }
            Err(err) => Err(End::Io(err.to_string())),
        }
    }

    /// Writes one queued item and whatever else is already queued, then
    /// flushes once.
    async fn forward(
        &mut self,
        first: Outbound,
        rx: &mut flume::Receiver<Outbound>,
    ) -> Result<(), End> {
        let mut next = Some(first);
        let mut written = 0;
        while let Some(item) = next.take() {
            if self.session.admit(&item) {
                let frame = match &item {
                    Outbound::Room(message) => {
                        crate::gate::nagle::writing(message.arrived);
                        message_frame(message)
                    }
                    Outbound::Event(event) => event_frame(event),
                    Outbound::Disconnect => {
                        self.flush().await?;
                        let reason = "disconnected by the server";
                        return Err(self
                            .close(close::DISCONNECTED, reason, End::Disconnected)
                            .await);
                    }
                    Outbound::Reconnect => {
                        self.flush().await?;
                        let reason = "server draining; reconnect";
                        return Err(Box::pin(self.go_away(reason, End::Moved)).await);
                    }
                };
                self.feed(Message::Text(frame.clone())).await?;
                written += 1;
            }
            if written < WRITE_BATCH {
                next = rx.try_recv().ok();
            }
        }
        self.flush().await
    }

    pub(super) async fn reject(&mut self, reject: Reject) -> Result<(), End> {
        self.state.metrics.error(reject.code);
        tracing::debug!(code = reject.code.as_str(), message = %reject.message, "frame rejected");
        self.send(reject.to_text()).await
    }

    pub(super) async fn send(&mut self, text: Utf8Bytes) -> Result<(), End> {
        self.write(Message::Text(text)).await
    }

    /// Writes and flushes, giving up when the client is cancelled as too slow.
    async fn write(&mut self, message: Message) -> Result<(), End> {
        self.feed(message).await?;
        self.flush().await
    }

    // Writes are polled first: a write that completes at once (the usual
    // case) never registers with the cancellation token.

    pub(super) async fn feed(&mut self, message: Message) -> Result<(), End> {
        tokio::select! {
            biased;
            result = self.socket.feed(message) => result.map_err(|e| End::Io(e.to_string())),
            _ = self.session.too_slow().cancelled() => Err(End::TooSlow),
        }
    }

    pub(super) async fn flush(&mut self) -> Result<(), End> {
        tokio::select! {
            biased;
            result = self.socket.flush() => result.map_err(|e| End::Io(e.to_string())),
            _ = self.session.too_slow().cancelled() => Err(End::TooSlow),
        }
    }

    /// Answers every frame the client already sent (those read without
    /// waiting), then closes with 1001 so that it reconnects to another
    /// replica: a frame it got no answer to was never acted on, and may be
    /// sent again there.
    async fn go_away(&mut self, reason: &'static str, end: End) -> End {
        use futures_util::FutureExt;
        for _ in 0..ANSWERED_BEFORE_CLOSE {
            let Some(Some(Ok(Message::Text(text)))) = self.socket.next().now_or_never() else {
                break;
            };
            if let Err(end) = self.on_text(&text).await {
                return end;
            }
        }
        self.close(close::GOING_AWAY, reason, end).await
    }

    async fn close(&mut self, code: u16, reason: &'static str, end: End) -> End {
        let frame = Message::Close(Some(CloseFrame {
            code,
            reason: reason.into(),
        }));
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, self.socket.send(frame)).await;
        end
    }

    async fn close_slow(&mut self, rx: &mut flume::Receiver<Outbound>) -> End {
        self.state.metrics.slow_consumers.inc();
        tracing::info!("closing a client that does not keep up with its messages");
        // Frees the backlog now; the fan-out stops adding once it has left
        // its rooms below, so what arrives meanwhile stays bounded.
        rx.drain();
        let hub = self.state.hub.clone();
        hub.leave_all(&mut self.session).await;
        let frame = Message::Close(Some(CloseFrame {
            code: close::TRY_AGAIN_LATER,
            reason: "too slow: send queue full".into(),
        }));
        let _ = tokio::time::timeout(SLOW_CLOSE_TIMEOUT, self.socket.send(frame)).await;
        End::TooSlow
    }
}
