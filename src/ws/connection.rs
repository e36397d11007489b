//! One WebSocket connection: a single task that reads client frames, drains
//! the connection's send queue, pings, and closes on shutdown.
//!
//! Replies to the client's own frames are written directly; room messages
//! arrive through the queue. Per room the connection remembers the last
//! message id it sent and skips anything not newer, which is what makes a
//! `since` replay followed by live traffic free of gaps and duplicates.

use super::AppState;
use super::protocol::{
    ClientFrame, ErrorCode, MemberInfo, MessageBody, Reject, ServerFrame, presence_frame,
};
use super::rooms::{Member, Outbound, topic};
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::limits::{TokenBucket, check_room};
use crate::broadcast::{BroadcastError, From};
use bytes::Bytes;

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

/// Close codes, part of the contract.
pub mod close {
    /// The server is shutting down; reconnect (to another replica).
    pub const GOING_AWAY: u16 = 1001;
    /// A frame over `--max-frame-bytes`.
    pub const TOO_BIG: u16 = 1009;
    /// The client did not keep up with its messages; reconnect and resume.
    pub const TRY_AGAIN_LATER: u16 = 1013;
    /// No answer to the server's ping in time.
    pub const PING_TIMEOUT: u16 = 4000;
}

/// The connection's task. Set-up happens here, outside the future, so the
/// future holds only what an idle connection needs between frames: with
/// 10,000s of sockets per replica its size is most of their memory.
pub fn run(
    socket: WebSocket,
    state: AppState,
    peer: SocketAddr,
    name: Option<String>,
) -> impl Future<Output = ()> + Send + 'static {
    let conn = state.next_connection_id();
    let user: String = std::iter::repeat_with(fastrand::alphanumeric)
        .take(16)
        .collect();
    let span = tracing::info_span!("conn", %user, %peer);
    // flume grows its queue as items arrive; tokio's mpsc allocates a
    // 32-slot block per channel up front, ~0.7 KB per idle connection.
    let (queue, rx) = flume::bounded(state.limits.send_queue);
    let info = MemberInfo {
        user: &user,
        name: name.as_deref(),
        server: &state.server_id,
    };
    // Copied to an exact-size buffer: kept for the connection's lifetime.
    let info =
        Bytes::copy_from_slice(&serde_json::to_vec(&info).expect("member infos always serialise"));
    let mut connection = Connection {
        member: Member {
            queue,
            too_slow: CancellationToken::new(),
        },
        bucket: TokenBucket::new(state.limits.rate_limit, state.limits.rate_burst),
        state,
        conn,
        user,
        name,
        info,
        socket,
        rooms: JoinedRooms::default(),
    };
    async move {
        connection.state.metrics.connections.inc();
        tracing::debug!("connected");
        let reason = connection.serve(rx).await;
        Box::pin(connection.leave_all()).await;
        connection.state.metrics.connections.dec();
        match reason {
            End::Io(err) => tracing::debug!(%err, "disconnected on a socket error"),
            reason => tracing::debug!(?reason, "disconnected"),
        }
    }
    .instrument(span)
}

struct Connection {
    state: AppState,
    conn: u64,
    user: String,
    /// Display name from `/ws?name=`, validated.
    name: Option<String>,
    /// This member as presence shows it, serialised once.
    info: Bytes,
    member: Member,
    bucket: TokenBucket,
    socket: WebSocket,
    /// Joined rooms and the last message id sent to this client in each.
    rooms: JoinedRooms,
}

/// The rooms a connection is in: at most `--max-rooms` and usually one, so
/// a vector rather than a hash map. Every delivered frame looks its room up
/// here; names are the room map's shared `Arc`s, so the lookup is a pointer
/// comparison instead of hashing the name (a few % of fan-out CPU).
#[derive(Default)]
struct JoinedRooms(Vec<(Arc<str>, Joined)>);

impl JoinedRooms {
    fn name(&self, room: &str) -> Option<&Arc<str>> {
        self.0
            .iter()
            .map(|(name, _)| name)
            .find(|name| name.as_ref() == room)
    }

    fn get_shared(&mut self, room: &Arc<str>) -> Option<&mut Joined> {
        // A name that is not the current `Arc` (the room was left and
        // created anew meanwhile) still matches by value.
        let at = self
            .0
            .iter()
            .position(|(name, _)| Arc::ptr_eq(name, room))
            .or_else(|| self.0.iter().position(|(name, _)| name == room))?;
        Some(&mut self.0[at].1)
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    fn insert(&mut self, name: Arc<str>) {
        // Exact: one room is the common case, and idle sockets are many.
        self.0.reserve_exact(1);
        self.0.push((name, Joined::default()));
    }

    /// True if the connection was in the room.
    fn remove(&mut self, room: &str) -> bool {
        let at = self.0.iter().position(|(name, _)| **name == *room);
        at.map(|at| self.0.swap_remove(at)).is_some()
    }

    fn take_all(&mut self) -> Vec<Arc<str>> {
        std::mem::take(&mut self.0)
            .into_iter()
            .map(|(name, _)| name)
            .collect()
    }
}

/// What a connection remembers of a room it is in.
#[derive(Default)]
struct Joined {
    /// Last message id sent to this client in the room.
    last: u64,
    /// Whether it asked for member_joined / member_left events.
    events: bool,
}

/// What woke a connection waiting for work.
enum Wake {
    Shutdown,
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
enum End {
    ClientClosed,
    Shutdown,
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
            user: &self.user,
            server: &self.state.server_id,
        }
        .to_text();
        if let Err(end) = Box::pin(self.send(welcome)).await {
            return end;
        }
        // Pinned once: a cancellation future registers with its token on
        // first poll, and re-creating it every iteration would re-register.
        let shutdown = self.state.shutdown.clone().cancelled_owned();
        let too_slow = self.member.too_slow.clone().cancelled_owned();
        tokio::pin!(shutdown, too_slow);
        let ping_interval = self.state.limits.ping_interval;
        let heartbeat = tokio::time::sleep(ping_interval);
        tokio::pin!(heartbeat);
        let mut ping_sent = false;

        let end = loop {
            let wake = tokio::select! {
                biased;
                _ = &mut shutdown => Wake::Shutdown,
                _ = &mut too_slow => Wake::TooSlow,
                Ok(item) = rx.recv_async() => Wake::Queued(item),
                frame = self.socket.next() => Wake::Frame(frame),
                _ = &mut heartbeat => Wake::Heartbeat { unanswered: ping_sent },
            };
            match wake {
                // Any frame proves the client is alive.
                Wake::Frame(Some(_)) if ping_sent => {
                    ping_sent = false;
                    heartbeat
                        .as_mut()
                        .reset(tokio::time::Instant::now() + ping_interval);
                }
                Wake::Heartbeat { .. } => {
                    ping_sent = true;
                    heartbeat
                        .as_mut()
                        .reset(tokio::time::Instant::now() + self.state.limits.ping_timeout);
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
                return Err(self
                    .close(close::GOING_AWAY, "server shutting down", End::Shutdown)
                    .await);
            }
            Wake::TooSlow => return Err(End::TooSlow),
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
            Ok(Message::Ping(_) | Message::Pong(_)) => Ok(()),
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
            if let Some(frame) = self.admit(item) {
                self.feed(Message::Text(frame)).await?;
                written += 1;
            }
            if written < WRITE_BATCH {
                next = rx.try_recv().ok();
            }
        }
        self.flush().await
    }

    /// The frame to send for a queued item, or `None` when this client
    /// already has it (replayed) or left the room meanwhile.
    fn admit(&mut self, item: Outbound) -> Option<Utf8Bytes> {
        match item {
            Outbound::Room(message) => {
                let joined = self.rooms.get_shared(&message.room)?;
                if message.id <= joined.last {
                    return None;
                }
                joined.last = message.id;
                Some(message.frame.clone())
            }
            Outbound::Event(event) => self
                .rooms
                .get_shared(&event.room)?
                .events
                .then(|| event.frame.clone()),
        }
    }

    async fn on_text(&mut self, text: &str) -> Result<(), End> {
        if !self.bucket.try_take(Instant::now()) {
            let limit = self.state.limits.rate_limit;
            return self
                .reject(Reject::new(
                    ErrorCode::RateLimited,
                    format!("more than {limit} frames per second; frame dropped"),
                ))
                .await;
        }
        let frame = match ClientFrame::parse(text) {
            Ok(frame) => frame,
            Err(reject) => return self.reject(reject).await,
        };
        let result = match frame {
            ClientFrame::JoinRoom {
                room,
                since,
                history,
                presence,
            } => self.join(&room, since, history, presence).await,
            ClientFrame::Presence { room } => self.presence(&room).await,
            ClientFrame::LeaveRoom { room } => self.leave(&room).await,
            ClientFrame::Message { room, message, ack } => self.message(&room, &message, ack).await,
        };
        match result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(reject)) => self.reject(reject).await,
            Err(end) => Err(end),
        }
    }

    /// Outer error: the connection is over. Inner error: the frame is refused.
    async fn join(
        &mut self,
        room: &str,
        since: Option<u64>,
        history: Option<usize>,
        events: bool,
    ) -> Result<Result<(), Reject>, End> {
        if let Err(why) = check_room(room, self.state.limits.max_room_len) {
            return Ok(Err(Reject::new(ErrorCode::InvalidRoom, why).with_room(room)));
        }
        let topic = topic(room);
        let existing = self.rooms.name(room).cloned();
        let is_new = existing.is_none();
        let name = match existing {
            Some(name) => name,
            None => {
                let max = self.state.limits.max_rooms;
                if self.rooms.len() >= max {
                    return Ok(Err(Reject::new(
                        ErrorCode::TooManyRooms,
                        format!("at most {max} rooms per connection"),
                    )
                    .with_room(room)));
                }
                // Member first, then subscribe, then read history: anything
                // published after the history read is already on its way to
                // the queue, so nothing falls in between.
                let name = self.state.rooms.join(room, self.conn, self.member.clone());
                if let Err(err) = self.state.broker.subscribe(&topic).await {
                    self.state.rooms.leave(room, self.conn);
                    return Ok(Err(unavailable(err).with_room(room)));
                }
                self.rooms.insert(name.clone());
                name
            }
        };
        let from = match (since, history) {
            (Some(since), _) => From::Since(since),
            (None, Some(n)) if n > 0 => From::Last(n.min(self.state.history_size)),
            _ => From::Position,
        };
        let replay = match self.state.broker.replay(&topic, from).await {
            Ok(replay) => replay,
            Err(err) => return Ok(Err(unavailable(err).with_room(room))),
        };
        if is_new {
            self.state
                .rooms
                .note_position(room, replay.last_id.unwrap_or_default());
        }
        if events {
            self.state.rooms.watch(room, self.conn, self.member.clone());
        }
        if is_new {
            // Before `joined`: once a client is told it joined, everyone
            // asking for the room's presence sees it.
            if let Err(err) = self
                .state
                .broker
                .presence_add(&topic, &self.user, self.info.clone())
                .await
            {
                tracing::warn!(%err, room, "could not announce presence");
            }
        }
        let joined = ServerFrame::Joined {
            room,
            recovered: since.map(|_| replay.recovered),
            last_id: replay.last_id.map(|id| id.to_string()),
        };
        self.feed(Message::Text(joined.to_text())).await?;
        let joined = self.rooms.get_shared(&name).expect("joined above");
        joined.events |= events;
        let mut frames = Vec::with_capacity(replay.messages.len());
        for (id, body) in &replay.messages {
            if *id > joined.last
                && let Some(frame) = super::protocol::message_frame(*id, body)
            {
                frames.push(frame);
                joined.last = *id;
            }
        }
        for frame in frames {
            self.feed(Message::Text(frame)).await?;
        }
        self.flush().await?;
        Ok(Ok(()))
    }

    async fn presence(&mut self, room: &str) -> Result<Result<(), Reject>, End> {
        if let Err(why) = check_room(room, self.state.limits.max_room_len) {
            return Ok(Err(Reject::new(ErrorCode::InvalidRoom, why).with_room(room)));
        }
        match self.state.broker.presence(&topic(room)).await {
            Ok(members) => {
                self.send(presence_frame(room, &members)).await?;
                Ok(Ok(()))
            }
            Err(err) => Ok(Err(unavailable(err).with_room(room))),
        }
    }

    async fn leave(&mut self, room: &str) -> Result<Result<(), Reject>, End> {
        if self.rooms.remove(room) {
            self.forget(room).await;
        }
        self.send(ServerFrame::Left { room }.to_text()).await?;
        Ok(Ok(()))
    }

    async fn message(
        &mut self,
        room: &str,
        text: &str,
        ack: Option<Value>,
    ) -> Result<Result<(), Reject>, End> {
        let with_ack = |mut reject: Reject| {
            reject.ack = ack.clone();
            Ok(Err(reject.with_room(room)))
        };
        if let Err(why) = check_room(room, self.state.limits.max_room_len) {
            return with_ack(Reject::new(ErrorCode::InvalidRoom, why));
        }
        let max = self.state.limits.max_message_bytes;
        if text.is_empty() || text.len() > max {
            return with_ack(Reject::new(
                ErrorCode::MessageTooLong,
                format!("message must be 1 to {max} bytes"),
            ));
        }
        let timestamp = humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string();
        let body = MessageBody {
            room,
            user: &self.user,
            name: self.name.as_deref(),
            message: text,
            server: &self.state.server_id,
            timestamp: &timestamp,
        };
        let payload = serde_json::to_vec(&body).expect("message bodies always serialise");
        let started = Instant::now();
        let id = match self
            .state
            .broker
            .publish(&topic(room), payload.into())
            .await
        {
            Ok(id) => id,
            Err(err) => return with_ack(unavailable(err)),
        };
        self.state
            .metrics
            .publish_seconds
            .observe(started.elapsed().as_secs_f64());
        self.state.metrics.messages_in.inc();
        if let Some(ack) = &ack {
            self.send(
                ServerFrame::Ack {
                    ack,
                    id: id.to_string(),
                }
                .to_text(),
            )
            .await?;
        }
        Ok(Ok(()))
    }

    async fn reject(&mut self, reject: Reject) -> Result<(), End> {
        self.state.metrics.error(reject.code);
        tracing::debug!(code = reject.code.as_str(), message = %reject.message, "frame rejected");
        self.send(reject.to_text()).await
    }

    async fn leave_all(&mut self) {
        let rooms = self.rooms.take_all();
        for room in rooms {
            self.forget(&room).await;
        }
    }

    /// Undoes a join: local membership, subscription and presence.
    async fn forget(&mut self, room: &str) {
        let topic = topic(room);
        self.state.rooms.leave(room, self.conn);
        if let Err(err) = self.state.broker.presence_remove(&topic, &self.user).await {
            tracing::debug!(%err, room, "could not announce leaving");
        }
        self.state.broker.unsubscribe(&topic).await;
    }

    async fn send(&mut self, text: Utf8Bytes) -> Result<(), End> {
        self.write(Message::Text(text)).await
    }

    /// Writes and flushes, giving up when the client is cancelled as too slow.
    async fn write(&mut self, message: Message) -> Result<(), End> {
        self.feed(message).await?;
        self.flush().await
    }

    // Writes are polled first: a write that completes at once (the usual
    // case) never registers with the cancellation token.

    async fn feed(&mut self, message: Message) -> Result<(), End> {
        tokio::select! {
            biased;
            result = self.socket.feed(message) => result.map_err(|e| End::Io(e.to_string())),
            _ = self.member.too_slow.cancelled() => Err(End::TooSlow),
        }
    }

    async fn flush(&mut self) -> Result<(), End> {
        tokio::select! {
            biased;
            result = self.socket.flush() => result.map_err(|e| End::Io(e.to_string())),
            _ = self.member.too_slow.cancelled() => Err(End::TooSlow),
        }
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
        self.leave_all().await;
        let frame = Message::Close(Some(CloseFrame {
            code: close::TRY_AGAIN_LATER,
            reason: "too slow: send queue full".into(),
        }));
        let _ = tokio::time::timeout(SLOW_CLOSE_TIMEOUT, self.socket.send(frame)).await;
        End::TooSlow
    }
}

fn unavailable(err: BroadcastError) -> Reject {
    Reject::new(ErrorCode::Unavailable, err.to_string())
}

/// True for tungstenite's "frame or message over the configured size".
fn is_capacity_error(err: &axum::Error) -> bool {
    use std::error::Error as _;
    let mut source = err.source();
    while let Some(inner) = source {
        if let Some(tungstenite::Error::Capacity(_)) = inner.downcast_ref::<tungstenite::Error>() {
            return true;
        }
        source = inner.source();
    }
    false
}

use tokio_tungstenite::tungstenite;
