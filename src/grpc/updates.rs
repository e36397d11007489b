//! One replica's feed of user changes: every change made through any
//! replica, in log order, fanned out to this replica's SubscribeToUpdates
//! streams through one bounded channel.
//!
//! Redis pub/sub drops what is published while a replica is cut off, so
//! after every outage the feed reads back from the update log what it
//! missed and sends it before the live changes held meanwhile. When the log
//! no longer has all of it, every open stream is ended with UNAVAILABLE so
//! its client subscribes again: a subscriber never sees a silent gap.

use super::pb::UserUpdate;
use crate::broadcast::{Broadcast, Deliver, Envelope, From, Kind};
use bytes::Bytes;
use prost::Message;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

/// Broadcast topic of user changes.
pub const UPDATES_TOPIC: &str = "users";

/// Updates buffered per replica for its subscribers; a subscriber further
/// behind than this is ended.
pub const UPDATE_BUFFER: usize = 1024;

/// Live changes held while the feed reads back an outage; beyond this the
/// read-back gives up and ends the streams.
const HELD_LIMIT: usize = 10_000;

/// What a stream receives.
#[derive(Debug, Clone)]
pub enum FeedItem {
    Update(UserUpdate),
    /// Changes were lost: the stream must end with UNAVAILABLE.
    Gap,
}

pub struct UpdateFeed {
    tx: broadcast::Sender<FeedItem>,
    /// A std mutex: held for one non-blocking send or a map update, never
    /// across an await.
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Newest id sent to the streams; older or equal ones are repeats.
    last: u64,
    /// The log's position once subscribed: where a read-back starts when
    /// nothing was delivered yet. `None` until the subscription is made.
    subscribed_at: Option<u64>,
    /// Some while reading back: live changes wait here.
    held: Option<Vec<(u64, Bytes)>>,
}

impl UpdateFeed {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            tx: broadcast::Sender::new(UPDATE_BUFFER),
            state: Mutex::new(State::default()),
        })
    }

    pub fn subscribe(&self) -> broadcast::Receiver<FeedItem> {
        self.tx.subscribe()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("update feed lock poisoned")
    }

    /// What the broadcast calls for every change made on any replica.
    pub fn deliverer(self: &Arc<Self>) -> Deliver {
        let feed = self.clone();
        Arc::new(move |envelope: Envelope| {
            let id = match envelope.kind {
                Kind::Message { id } => id,
                // Held from the gap on, so that nothing after it moves
                // where the read-back starts (see `Rooms::hold`).
                Kind::Interrupted => {
                    feed.lock().held.get_or_insert_with(Vec::new);
                    return;
                }
                Kind::Joined | Kind::Left => return,
            };
            if &*envelope.topic != UPDATES_TOPIC {
                return;
            }
            let mut state = feed.lock();
            match &mut state.held {
                Some(held) if held.len() < HELD_LIMIT => held.push((id, envelope.payload)),
                Some(_) => tracing::warn!("update read-back buffer full; dropping a live update"),
                None => feed.emit(&mut state, id, envelope.payload),
            }
        })
    }

    fn emit(&self, state: &mut State, id: u64, payload: Bytes) {
        if id <= state.last {
            return;
        }
        state.last = id;
        match UserUpdate::decode(payload) {
            // No receivers is fine: nobody is subscribed on this replica.
            Ok(update) => drop(self.tx.send(FeedItem::Update(update))),
            Err(err) => tracing::warn!(%err, "ignoring an undecodable user update"),
        }
    }

    /// Subscribes for the process's lifetime (retrying while Redis is not
    /// up yet), then reads back after every outage until shutdown.
    pub fn spawn(self: &Arc<Self>, broker: Arc<dyn Broadcast>, shutdown: CancellationToken) {
        let feed = self.clone();
        tokio::spawn(async move {
            let mut resumed = broker.resumed();
            let mut delay = Duration::from_millis(100);
            loop {
                if shutdown.is_cancelled() {
                    return;
                }
                match feed.start(&*broker).await {
                    Ok(()) => break,
                    Err(err) => tracing::debug!(%err, "subscribing to user updates; retrying"),
                }
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = shutdown.cancelled() => return,
                }
                delay = (delay * 2).min(Duration::from_secs(2));
            }
            loop {
                tokio::select! {
                    changed = resumed.changed() => if changed.is_err() { return },
                    _ = shutdown.cancelled() => return,
                }
                feed.read_back(&*broker).await;
            }
        });
    }

    async fn start(&self, broker: &dyn Broadcast) -> Result<(), crate::broadcast::BroadcastError> {
        broker.subscribe(UPDATES_TOPIC).await?;
        match broker.replay(UPDATES_TOPIC, From::Position).await {
            Ok(replay) => {
                self.lock().subscribed_at = Some(replay.position);
                Ok(())
            }
            Err(err) => {
                broker.unsubscribe(UPDATES_TOPIC).await;
                Err(err)
            }
        }
    }

    /// Sends what the log holds after the last change sent, then what was
    /// held; or, when the log lost some of it, a [`FeedItem::Gap`].
    pub async fn read_back(&self, broker: &dyn Broadcast) {
        let after = {
            let mut state = self.lock();
            state.held.get_or_insert_with(Vec::new);
            state.subscribed_at.map(|at| at.max(state.last))
        };
        let missed = match after {
            Some(after) => match broker.replay(UPDATES_TOPIC, From::Since(after)).await {
                Ok(replay) if replay.recovered => Some(replay.messages),
                Ok(_) => None,
                Err(err) => {
                    tracing::warn!(%err, "could not read back missed user updates");
                    None
                }
            },
            None => None,
        };
        let mut state = self.lock();
        let held = state.held.take().unwrap_or_default();
        match missed {
            Some(missed) => {
                if !missed.is_empty() {
                    tracing::info!(
                        count = missed.len(),
                        "sending user updates missed during an outage"
                    );
                }
                for (id, payload) in missed {
                    self.emit(&mut state, id, payload);
                }
            }
            None => {
                tracing::warn!("user updates lost during an outage; ending update streams");
                let _ = self.tx.send(FeedItem::Gap);
            }
        }
        for (id, payload) in held {
            self.emit(&mut state, id, payload);
        }
    }
}
