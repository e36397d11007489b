//! One Socket.IO client: a single task that owns its hub session, reads
//! its packets from whichever transport carries them, writes what the hub
//! queues, pings, and closes on shutdown, like the native connection.
//!
//! Polling sessions start with [`Link::Polling`]; when the client probes a
//! WebSocket with the session's id, the probe is answered there, the
//! pending poll is ended with a noop, and once the client sends `upgrade`
//! the task carries on over the WebSocket with the same session.

use super::answers::open_packet;
use super::packet::{Engine, engine, message_packet};
use super::polling::Upgrade;
use super::socket::{Connected, save, touch};
use super::state::SioState;
use super::transport::{End, Link, Wake, incoming};
use crate::door::admission::Admission;
use crate::door::close;
use crate::door::heartbeat::Heartbeat;
use crate::door::limits::ANSWERED_BEFORE_CLOSE;
use crate::door::socket::expired;
use crate::gate::bucket::TokenBucket;
use crate::hub::Outbound;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures_util::{SinkExt, StreamExt};
use std::net::SocketAddr;
use std::time::Duration;
use tokio_util::sync::WaitForCancellationFutureOwned;
use tracing::Instrument;

/// Frames written per flush when the queue has a backlog.
const WRITE_BATCH: usize = 64;

/// How long a close frame may take to go out.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// The session's task. `sid` is its Engine.IO id; a polling session keeps
/// it in its [`Polling`], a WebSocket one needs it only for the open packet.
pub(super) fn run(
    state: SioState,
    peer: SocketAddr,
    sid: String,
    link: Link,
    admission: Admission,
) -> impl Future<Output = ()> + Send + 'static {
    let span = tracing::info_span!("sio", %sid, %peer);
    let open = match link {
        Link::Ws(_) => Some(sid),
        Link::Polling { .. } => None,
    };
    let mut connection = Connection {
        bucket: TokenBucket::new(state.door.limits.rate_limit, state.door.limits.rate_burst),
        state,
        link,
        socket: None,
        pinged: false,
        expiry: None,
    };
    async move {
        connection.state.door.metrics.connections.inc();
        connection.state.door.metrics.socketio.inc();
        tracing::debug!("connected");
        let opened = match open {
            Some(sid) => connection.open(sid).await,
            None => Ok(()),
        };
        let end = match opened {
            Ok(()) => connection.serve().await,
            Err(end) => end,
        };
        Box::pin(connection.finish(&end)).await;
        drop(admission);
        connection.state.door.metrics.connections.dec();
        connection.state.door.metrics.socketio.dec();
        tracing::debug!(?end, "disconnected");
    }
    .instrument(span)
}

pub(super) struct Connection {
    pub(super) state: SioState,
    link: Link,
    /// After the client's Socket.IO CONNECT: its hub session and more.
    pub(super) socket: Option<Box<Connected>>,
    pub(super) bucket: TokenBucket,
    /// A heartbeat went out: a client still not connected at the next one
    /// has had a whole ping interval to send its CONNECT.
    pinged: bool,
    /// When the client's token expires; boxed, so anonymous sessions pay a
    /// pointer for it.
    expiry: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
}

impl Connection {
    /// A WebSocket session's open packet. Sent before `serve`, not in it:
    /// a session's task is sized for its largest state, and room for this
    /// one send in `serve` made every idle Socket.IO session's task one
    /// allocator size class larger (1,408 bytes where the native door's is
    /// 1,280; 256 bytes more per socket).
    async fn open(&mut self, sid: String) -> Result<(), End> {
        let open = open_packet(&self.state.door.limits, &sid, false);
        self.send(open).await
    }

    async fn serve(&mut self) -> End {
        let shutdown = self.state.door.shutdown.clone().cancelled_owned();
        tokio::pin!(shutdown);
        let ping_interval = self.state.door.limits.ping_interval;
        let heartbeat = tokio::time::sleep(ping_interval);
        tokio::pin!(heartbeat);
        let mut beat = Heartbeat::default();
        // Pinned once the client connected: a cancellation future registers
        // with its token on first poll, and one made anew at every wake-up
        // would register (and unregister) again each time.
        let mut too_slow = std::pin::pin!(None::<WaitForCancellationFutureOwned>);
        loop {
            if too_slow.is_none()
                && let Some(socket) = &self.socket
            {
                let token = socket.session.too_slow().clone();
                too_slow.set(Some(token.cancelled_owned()));
            }
            let mut wake = tokio::select! {
                biased;
                _ = &mut shutdown => Wake::Shutdown,
                _ = slow(too_slow.as_mut()) => Wake::TooSlow,
                _ = expired(&mut self.expiry) => Wake::Expired,
                Some(item) = queued(&self.socket) => Wake::Queued(item),
                wake = incoming(&mut self.link) => wake,
                _ = &mut heartbeat => Wake::Heartbeat { unanswered: false },
            };
            let limits = &self.state.door.limits;
            match &mut wake {
                // Anything from the client proves it is alive.
                Wake::Packet(_) => beat.heard(heartbeat.as_mut(), limits),
                Wake::Heartbeat { unanswered } => {
                    *unanswered = beat.fired(heartbeat.as_mut(), limits);
                }
                _ => {}
            }
            if let Err(end) = Box::pin(self.handle(wake)).await {
                return end;
            }
        }
    }

    /// Boxed by its caller at every wake, so the rare arms box what they
    /// wait on: a polling session's relay calls and the upgrade made this
    /// future 5.6 KB, allocated for each delivery and held by each join.
    async fn handle(&mut self, wake: Wake) -> Result<(), End> {
        match wake {
            Wake::Shutdown => {
                Box::pin(self.answer_received()).await?;
                Err(End::Shutdown)
            }
            Wake::TooSlow => Err(End::TooSlow),
            Wake::Expired => {
                // Socket.IO's DISCONNECT: the client does not reconnect by
                // itself with the same, expired token.
                let _ = self.send("41".into()).await;
                Err(End::TokenExpired)
            }
            Wake::Closed(end) => Err(end),
            Wake::Control if self.bucket.try_take(std::time::Instant::now()) => Ok(()),
            Wake::Control => Err(End::Flood),
            Wake::Queued(item) => self.forward(item).await,
            Wake::Heartbeat { unanswered: true } => Err(End::PingTimeout),
            // No CONNECT by the first heartbeat: a client that opened a
            // transport and nothing else.
            Wake::Heartbeat { .. } if self.socket.is_none() && self.pinged => {
                Err(End::ConnectTimeout)
            }
            Wake::Heartbeat { unanswered: false } => {
                self.pinged = true;
                if let (Link::Polling { polling, .. }, Some(relay)) =
                    (&self.link, &self.state.relay)
                {
                    Box::pin(relay.claim(&polling.sid)).await;
                }
                if let Some(socket) = &self.socket {
                    touch(&self.state, socket).await;
                }
                self.send(engine::PING.into()).await
            }
            Wake::Upgrade(Upgrade::Probed) => self.send(engine::NOOP.into()).await,
            Wake::Upgrade(Upgrade::Done(socket)) => Box::pin(self.upgraded(*socket)).await,
            Wake::Packet(text) => self.on_packet(&text).await,
        }
    }

    /// Carries on over the WebSocket; what was queued for polling goes out
    /// on it first.
    async fn upgraded(&mut self, socket: WebSocket) -> Result<(), End> {
        let old = std::mem::replace(&mut self.link, Link::Ws(socket));
        if let Link::Polling { polling, .. } = old {
            self.state.polling.remove(&polling.sid);
            if let Some(relay) = &self.state.relay {
                relay.release(&polling.sid).await;
            }
            polling.closed.cancel();
            for packet in polling.take() {
                if packet != engine::NOOP {
                    self.feed(packet.into()).await?;
                }
            }
            self.flush().await?;
        }
        tracing::debug!("upgraded to WebSocket");
        Ok(())
    }

    async fn on_packet(&mut self, text: &str) -> Result<(), End> {
        match Engine::parse(text) {
            Some(Engine::Message(data)) => self.on_message(data).await,
            Some(Engine::Ping(data)) => self.send(format!("3{data}")).await,
            Some(Engine::Pong | Engine::Noop | Engine::Upgrade) => Ok(()),
            Some(Engine::Close) => Err(End::Goodbye),
            None => Err(End::Protocol("not an Engine.IO packet")),
        }
    }

    /// Writes one queued item and whatever else is already queued.
    async fn forward(&mut self, first: Outbound) -> Result<(), End> {
        let recovery = self.state.settings.recovery_window.is_some();
        let mut next = Some(first);
        let mut written = 0;
        while let Some(item) = next.take() {
            match item {
                Outbound::Disconnect => {
                    // Socket.IO's DISCONNECT: the client does not reconnect
                    // by itself.
                    self.feed("41".into()).await?;
                    self.flush().await?;
                    return Err(End::Disconnected);
                }
                Outbound::Reconnect => {
                    // Never a DISCONNECT: the transport closes, the session
                    // is saved, and the client reconnects and recovers.
                    self.flush().await?;
                    Box::pin(self.answer_received()).await?;
                    return Err(End::Moved);
                }
                _ => {}
            }
            let socket = self.socket.as_mut().expect("queued only once connected");
            if socket.session.admit(&item)
                && let Outbound::Room(message) = &item
            {
                crate::gate::nagle::writing(message.arrived);
                let frame = message_packet(message, recovery).clone();
                self.feed(frame).await?;
                written += 1;
            }
            if written < WRITE_BATCH {
                next = self.socket.as_ref().and_then(|s| s.queue.try_recv().ok());
            }
        }
        self.flush().await
    }

    /// Answers every packet the client already sent (those that arrive
    /// without waiting) before the transport is closed under it: a packet
    /// it got no answer to was never acted on.
    async fn answer_received(&mut self) -> Result<(), End> {
        use futures_util::FutureExt;
        for _ in 0..ANSWERED_BEFORE_CLOSE {
            match incoming(&mut self.link).now_or_never() {
                Some(Wake::Packet(text)) => self.on_packet(&text).await?,
                _ => break,
            }
        }
        self.flush().await
    }

    /// Ends the session when its token expires.
    pub(super) fn expire_with(&mut self, identity: Option<&crate::auth::Identity>) {
        self.expiry = identity.map(|i| Box::pin(tokio::time::sleep(i.remaining())));
    }

    pub(super) async fn send(&mut self, packet: String) -> Result<(), End> {
        self.feed(packet.into()).await?;
        self.flush().await
    }

    pub(super) async fn feed(&mut self, packet: Utf8Bytes) -> Result<(), End> {
        let too_slow = self.socket.as_ref().map(|s| s.session.too_slow());
        match &mut self.link {
            // The write is polled first: one that completes at once (the
            // usual case) never registers with the token.
            Link::Ws(ws) => tokio::select! {
                biased;
                result = ws.feed(Message::Text(packet)) => result.map_err(|_| End::Lost),
                _ = cancelled(too_slow) => Err(End::TooSlow),
            },
            Link::Polling { polling, .. } => {
                if polling.push(packet.to_string(), self.state.door.hub.send_queue()) {
                    Ok(())
                } else {
                    Err(End::TooSlow)
                }
            }
        }
    }

    pub(super) async fn flush(&mut self) -> Result<(), End> {
        let too_slow = self.socket.as_ref().map(|s| s.session.too_slow());
        match &mut self.link {
            Link::Ws(ws) => tokio::select! {
                biased;
                result = ws.flush() => result.map_err(|_| End::Lost),
                _ = cancelled(too_slow) => Err(End::TooSlow),
            },
            Link::Polling { .. } => Ok(()),
        }
    }

    /// Leaves the hub, saves (or forgets) the session, closes the transport.
    async fn finish(&mut self, end: &End) {
        if let End::Protocol(why) = end {
            tracing::debug!(why, "closing on a protocol error");
        }
        if let Some(mut socket) = self.socket.take() {
            match (end, &socket.pid) {
                (End::Goodbye | End::Disconnected, Some(pid)) => self.state.store.forget(pid).await,
                (End::Goodbye | End::Disconnected, None) => {}
                // The window starts now. Saved before leaving: leaving
                // empties the session's rooms.
                _ => save(&self.state, &socket).await,
            }
            let hub = self.state.door.hub.clone();
            hub.leave_all(&mut socket.session).await;
        }
        let (code, reason) = match end {
            End::Shutdown => (close::GOING_AWAY, "server shutting down"),
            End::Moved => (close::GOING_AWAY, "server draining; reconnect"),
            End::TooSlow => (close::TRY_AGAIN_LATER, "too slow"),
            End::PingTimeout => (close::PING_TIMEOUT, "ping timeout"),
            End::TooLarge => (close::TOO_BIG, "payload too large"),
            End::TokenExpired => (close::TOKEN_EXPIRED, "token expired"),
            End::Disconnected => (close::DISCONNECTED, "disconnected by the server"),
            End::Flood => (close::FLOOD, "too many control frames"),
            _ => (1000, "closed"),
        };
        match &mut self.link {
            Link::Ws(ws) => {
                let frame = Message::Close(Some(CloseFrame {
                    code,
                    reason: reason.into(),
                }));
                let _ = tokio::time::timeout(CLOSE_TIMEOUT, ws.send(frame)).await;
                if let End::Flood = end {
                    // Unread flood frames would reset the socket and could
                    // take the close frame with them: read and discard.
                    let drain = async { while let Some(Ok(_)) = ws.next().await {} };
                    let _ = tokio::time::timeout(CLOSE_TIMEOUT, drain).await;
                }
            }
            Link::Polling { polling, .. } => {
                polling.push(engine::CLOSE.into(), usize::MAX);
                polling.closed.cancel();
                self.state.polling.remove(&polling.sid);
                if let Some(relay) = &self.state.relay {
                    relay.release(&polling.sid).await;
                }
            }
        }
    }
}

async fn slow(too_slow: std::pin::Pin<&mut Option<WaitForCancellationFutureOwned>>) {
    match too_slow.as_pin_mut() {
        Some(cancelled) => cancelled.await,
        None => std::future::pending().await,
    }
}

async fn queued(socket: &Option<Box<Connected>>) -> Option<Outbound> {
    match socket {
        Some(socket) => socket.queue.recv_async().await.ok(),
        None => std::future::pending().await,
    }
}

async fn cancelled(token: Option<&tokio_util::sync::CancellationToken>) {
    match token {
        Some(token) => token.cancelled().await,
        None => std::future::pending().await,
    }
}
