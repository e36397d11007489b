//! The hub against the in-process broadcast, with failures injected: every
//! refused call leaves nothing behind ([`rollback`]), and order holds
//! across joins, replays and repairs ([`order`]); joins take turns at the
//! log ([`turns`]).

mod order;
mod rollback;
mod turns;

use super::*;
use crate::broadcast::memory::MemoryBroadcast;
use crate::broadcast::{BroadcastError, Deliver, HistoryPolicy, Replay};
use async_trait::async_trait;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::time::Duration;
use tokio::sync::Semaphore;

/// The in-process broadcast with switches: failing calls, deliveries cut
/// (an outage of pub/sub), a gate that holds replays, and its own resume
/// signal.
#[derive(Default)]
pub(super) struct Switches {
    pub fail_subscribe: AtomicBool,
    pub fail_replay: AtomicBool,
    pub fail_publish: AtomicBool,
    pub cut: AtomicBool,
    pub subscriptions: AtomicUsize,
    pub replays_started: AtomicUsize,
}

pub(super) struct Faulty {
    inner: MemoryBroadcast,
    pub switches: Arc<Switches>,
    /// Replays wait for a permit while `gated` is set.
    pub gate: Semaphore,
    pub gated: AtomicBool,
    pub resumed: tokio::sync::watch::Sender<u64>,
}

fn failure() -> BroadcastError {
    BroadcastError::Unavailable("injected".into())
}

#[async_trait]
impl Broadcast for Faulty {
    async fn publish(&self, topic: &str, payload: Bytes) -> Result<u64, BroadcastError> {
        if self.switches.fail_publish.load(Ordering::SeqCst) {
            return Err(failure());
        }
        self.inner.publish(topic, payload).await
    }

    async fn publish_once(
        &self,
        topic: &str,
        key: &str,
        payload: Bytes,
    ) -> Result<u64, BroadcastError> {
        if self.switches.fail_publish.load(Ordering::SeqCst) {
            return Err(failure());
        }
        self.inner.publish_once(topic, key, payload).await
    }

    async fn subscribe(&self, topic: &str) -> Result<(), BroadcastError> {
        if self.switches.fail_subscribe.load(Ordering::SeqCst) {
            return Err(failure());
        }
        self.switches.subscriptions.fetch_add(1, Ordering::SeqCst);
        self.inner.subscribe(topic).await
    }

    async fn unsubscribe(&self, topic: &str) {
        self.switches.subscriptions.fetch_sub(1, Ordering::SeqCst);
        self.inner.unsubscribe(topic).await
    }

    async fn replay(&self, topic: &str, from: From) -> Result<Replay, BroadcastError> {
        self.switches.replays_started.fetch_add(1, Ordering::SeqCst);
        if self.gated.load(Ordering::SeqCst) {
            self.gate.acquire().await.expect("gate open").forget();
        }
        if self.switches.fail_replay.load(Ordering::SeqCst) {
            return Err(failure());
        }
        self.inner.replay(topic, from).await
    }

    fn is_ready(&self) -> bool {
        true
    }

    fn resumed(&self) -> tokio::sync::watch::Receiver<u64> {
        self.resumed.subscribe()
    }
}

pub(super) struct Fixture {
    pub hub: Arc<Hub>,
    pub log: Arc<Faulty>,
    pub presence: Arc<MemoryBroadcast>,
}

pub(super) fn settings() -> HubSettings {
    HubSettings {
        rooms: RoomSettings {
            server_id: "test-1".into(),
            rules: RoomRules::new(64),
            max_message_bytes: 64,
            history: HistoryPolicy {
                max_len: 100,
                max_age: Duration::from_secs(600),
            },
        },
        max_rooms: 4,
        send_queue: 64,
    }
}

pub(super) fn fixture() -> Fixture {
    let metrics = Arc::new(Metrics::new());
    let local = Local::new(metrics.clone(), settings().rooms.server_id);
    let switches = Arc::new(Switches::default());
    let deliver: Deliver = {
        let to_rooms = local.deliverer();
        let switches = switches.clone();
        Arc::new(move |envelope| {
            if !switches.cut.load(Ordering::SeqCst) {
                to_rooms(envelope)
            }
        })
    };
    let log = Arc::new(Faulty {
        inner: MemoryBroadcast::new(settings().rooms.history, deliver),
        switches,
        gate: Semaphore::new(0),
        gated: AtomicBool::new(false),
        resumed: tokio::sync::watch::Sender::new(0),
    });
    // Presence events go straight to the rooms, like the log's deliveries.
    let presence = Arc::new(MemoryBroadcast::new(
        settings().rooms.history,
        local.deliverer(),
    ));
    let webhooks = crate::webhooks::Webhooks::off();
    let hub = Hub::new(
        settings(),
        local,
        log.clone(),
        presence.clone(),
        metrics,
        webhooks,
    );
    Fixture { hub, log, presence }
}

pub(super) fn room(name: &str) -> RoomName {
    RoomName::parse(name, 64).unwrap()
}

/// Ids of the room messages a session would send now, in order.
pub(super) fn drain(session: &mut Session, rx: &flume::Receiver<Outbound>) -> Vec<u64> {
    let mut ids = Vec::new();
    while let Ok(item) = rx.try_recv() {
        if session.admit(&item)
            && let Outbound::Room(message) = item
        {
            ids.push(message.id);
        }
    }
    ids
}

pub(super) async fn recv_ids(
    session: &mut Session,
    rx: &flume::Receiver<Outbound>,
    n: usize,
) -> Vec<u64> {
    let mut ids = Vec::new();
    while ids.len() < n {
        let item = tokio::time::timeout(Duration::from_secs(5), rx.recv_async())
            .await
            .expect("a delivery within 5 s")
            .unwrap();
        if session.admit(&item)
            && let Outbound::Room(message) = item
        {
            ids.push(message.id);
        }
    }
    ids
}

pub(super) fn assert_left_nothing(f: &Fixture, session: &Session, name: &str) {
    assert_eq!(f.hub.local_members(name), 0, "no local membership");
    assert_eq!(
        f.log.switches.subscriptions.load(Ordering::SeqCst),
        0,
        "no subscription"
    );
    assert!(!session.is_in(name), "not in the session's rooms");
}
