//! The hub against the in-process broadcast, with failures injected: every
//! refused call leaves nothing behind, and order holds across joins,
//! replays and repairs.

use super::*;
use crate::broadcast::memory::MemoryBroadcast;
use crate::broadcast::{BroadcastError, Deliver, Replay};
use async_trait::async_trait;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::time::Duration;
use tokio::sync::Semaphore;

/// The in-process broadcast with switches: failing calls, deliveries cut
/// (an outage of pub/sub), a gate that holds replays, and its own resume
/// signal.
#[derive(Default)]
struct Switches {
    fail_subscribe: AtomicBool,
    fail_replay: AtomicBool,
    fail_publish: AtomicBool,
    cut: AtomicBool,
    subscriptions: AtomicUsize,
    replays_started: AtomicUsize,
}

struct Faulty {
    inner: MemoryBroadcast,
    switches: Arc<Switches>,
    /// Replays wait for a permit while `gated` is set.
    gate: Semaphore,
    gated: AtomicBool,
    resumed: tokio::sync::watch::Sender<u64>,
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

struct Fixture {
    hub: Arc<Hub>,
    log: Arc<Faulty>,
    presence: Arc<MemoryBroadcast>,
}

fn settings() -> HubSettings {
    HubSettings {
        server_id: "test-1".into(),
        max_rooms: 4,
        max_message_bytes: 64,
        send_queue: 64,
        history: HistoryPolicy {
            max_len: 100,
            max_age: Duration::from_secs(600),
        },
    }
}

fn fixture() -> Fixture {
    let metrics = Arc::new(Metrics::new());
    let rooms = Arc::new(Rooms::new(metrics.clone()));
    let switches = Arc::new(Switches::default());
    let deliver: Deliver = {
        let to_rooms = rooms.deliverer();
        let switches = switches.clone();
        Arc::new(move |envelope| {
            if !switches.cut.load(Ordering::SeqCst) {
                to_rooms(envelope)
            }
        })
    };
    let log = Arc::new(Faulty {
        inner: MemoryBroadcast::new(settings().history, deliver),
        switches,
        gate: Semaphore::new(0),
        gated: AtomicBool::new(false),
        resumed: tokio::sync::watch::Sender::new(0),
    });
    // Presence events go straight to the rooms, like the log's deliveries.
    let presence = Arc::new(MemoryBroadcast::new(settings().history, rooms.deliverer()));
    let hub = Hub::new(settings(), rooms, log.clone(), presence.clone(), metrics);
    Fixture { hub, log, presence }
}

fn room(name: &str) -> RoomName {
    RoomName::parse(name, 64).unwrap()
}

/// Ids of the room messages a session would send now, in order.
fn drain(session: &mut Session, rx: &flume::Receiver<Outbound>) -> Vec<u64> {
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

async fn recv_ids(session: &mut Session, rx: &flume::Receiver<Outbound>, n: usize) -> Vec<u64> {
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

fn assert_left_nothing(f: &Fixture, session: &Session, name: &str) {
    assert_eq!(f.hub.local_members(name), 0, "no local membership");
    assert_eq!(
        f.log.switches.subscriptions.load(Ordering::SeqCst),
        0,
        "no subscription"
    );
    assert!(!session.is_in(name), "not in the session's rooms");
}

#[tokio::test]
async fn join_publish_leave() {
    let f = fixture();
    let (mut ana, ana_rx) = f.hub.open("ana".into(), None);
    let (bob, _) = f.hub.open("bob".into(), None);
    let general = room("general");
    let joined = f
        .hub
        .join(&mut ana, &general, JoinRequest::default())
        .await
        .unwrap();
    assert!(joined.position > 0 && joined.recovered.is_none() && joined.replay.is_empty());
    assert_eq!(f.hub.local_members("general"), 1);
    assert_eq!(f.hub.presence(&general).await.unwrap().len(), 1);

    // Posting does not require membership, as in the Socket.IO original.
    let id = f.hub.publish(&bob, &general, "hi").await.unwrap();
    assert!(id > joined.position);
    assert_eq!(drain(&mut ana, &ana_rx), [id]);

    assert!(f.hub.leave(&mut ana, "general").await);
    assert!(
        !f.hub.leave(&mut ana, "general").await,
        "a second leave is a no-op"
    );
    assert_left_nothing(&f, &ana, "general");
    assert!(f.hub.presence(&general).await.unwrap().is_empty());
    f.hub.publish(&bob, &general, "after").await.unwrap();
    assert!(drain(&mut ana, &ana_rx).is_empty());
}

/// Gap 1: a history read that fails after the member was added and the
/// topic subscribed used to leave both behind.
#[tokio::test]
async fn a_failed_replay_undoes_the_join() {
    let f = fixture();
    let (mut ana, ana_rx) = f.hub.open("ana".into(), None);
    let (bob, _) = f.hub.open("bob".into(), None);
    f.log.switches.fail_replay.store(true, Ordering::SeqCst);
    let err = f
        .hub
        .join(
            &mut ana,
            &room("general"),
            JoinRequest {
                presence: true,
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::Unavailable);
    assert_left_nothing(&f, &ana, "general");
    assert!(
        f.presence
            .presence("room:general")
            .await
            .unwrap()
            .is_empty()
    );
    f.log.switches.fail_replay.store(false, Ordering::SeqCst);
    f.hub
        .publish(&bob, &room("general"), "unseen")
        .await
        .unwrap();
    assert!(
        ana_rx.try_recv().is_err(),
        "nothing queued for a refused join"
    );
    // And the room can be joined normally afterwards.
    f.hub
        .join(&mut ana, &room("general"), JoinRequest::default())
        .await
        .unwrap();
    assert_eq!(f.hub.local_members("general"), 1);
}

#[tokio::test]
async fn a_failed_subscribe_undoes_the_join() {
    let f = fixture();
    let (mut ana, _) = f.hub.open("ana".into(), None);
    f.log.switches.fail_subscribe.store(true, Ordering::SeqCst);
    let err = f
        .hub
        .join(&mut ana, &room("general"), JoinRequest::default())
        .await;
    assert_eq!(err.unwrap_err().code(), ErrorCode::Unavailable);
    assert_left_nothing(&f, &ana, "general");
    assert_eq!(f.log.switches.replays_started.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_failed_rejoin_keeps_the_first_join() {
    let f = fixture();
    let (mut ana, _) = f.hub.open("ana".into(), None);
    f.hub
        .join(&mut ana, &room("general"), JoinRequest::default())
        .await
        .unwrap();
    f.log.switches.fail_replay.store(true, Ordering::SeqCst);
    let since = JoinRequest {
        since: Some(1),
        ..Default::default()
    };
    assert!(f.hub.join(&mut ana, &room("general"), since).await.is_err());
    assert!(ana.is_in("general"));
    assert_eq!(f.hub.local_members("general"), 1);
    assert_eq!(f.log.switches.subscriptions.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_failed_publish_delivers_nothing() {
    let f = fixture();
    let (mut ana, ana_rx) = f.hub.open("ana".into(), None);
    f.hub
        .join(&mut ana, &room("general"), JoinRequest::default())
        .await
        .unwrap();
    f.log.switches.fail_publish.store(true, Ordering::SeqCst);
    let err = f
        .hub
        .publish(&ana, &room("general"), "lost")
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::Unavailable);
    assert!(ana_rx.try_recv().is_err());
}

#[tokio::test]
async fn limits_refuse_and_change_nothing() {
    let f = fixture();
    let (mut ana, _) = f.hub.open("ana".into(), None);
    for i in 0..4 {
        f.hub
            .join(&mut ana, &room(&format!("r{i}")), JoinRequest::default())
            .await
            .unwrap();
    }
    let err = f
        .hub
        .join(&mut ana, &room("r4"), JoinRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::TooManyRooms);
    assert_eq!((ana.rooms(), f.hub.local_members("r4")), (4, 0));
    let long = "x".repeat(65);
    for text in ["", long.as_str()] {
        let err = f.hub.publish(&ana, &room("r0"), text).await.unwrap_err();
        assert_eq!(err.code(), ErrorCode::MessageTooLong);
    }
}

/// Gap 6: every join hands out a position, also for a room that never had
/// a message, and resuming from it replays what came since.
#[tokio::test]
async fn a_join_to_an_empty_room_can_be_resumed() {
    let f = fixture();
    let (mut ana, ana_rx) = f.hub.open("ana".into(), None);
    let (bob, _) = f.hub.open("bob".into(), None);
    let quiet = room("quiet");
    let joined = f
        .hub
        .join(&mut ana, &quiet, JoinRequest::default())
        .await
        .unwrap();
    f.hub.leave(&mut ana, "quiet").await;
    let sent = [
        f.hub.publish(&bob, &quiet, "one").await.unwrap(),
        f.hub.publish(&bob, &quiet, "two").await.unwrap(),
    ];
    let since = JoinRequest {
        since: Some(joined.position),
        ..Default::default()
    };
    let resumed = f.hub.join(&mut ana, &quiet, since).await.unwrap();
    assert_eq!(resumed.recovered, Some(true));
    assert_eq!(
        resumed.replay.iter().map(|m| m.id).collect::<Vec<_>>(),
        sent
    );
    assert_eq!(resumed.position, sent[1]);
    assert!(drain(&mut ana, &ana_rx).is_empty(), "nothing twice");
}

/// A replay and the live traffic queued meanwhile reach the client once
/// each, in id order.
#[tokio::test]
async fn since_then_live_has_no_gap_and_no_duplicate() {
    let f = fixture();
    let (mut ana, ana_rx) = f.hub.open("ana".into(), None);
    let (bob, _) = f.hub.open("bob".into(), None);
    let general = room("general");
    let first = f.hub.publish(&bob, &general, "m1").await.unwrap();
    let second = f.hub.publish(&bob, &general, "m2").await.unwrap();
    let since = JoinRequest {
        since: Some(first),
        ..Default::default()
    };
    let joined = f.hub.join(&mut ana, &general, since).await.unwrap();
    assert_eq!(
        joined.replay.iter().map(|m| m.id).collect::<Vec<_>>(),
        [second]
    );
    let third = f.hub.publish(&bob, &general, "m3").await.unwrap();
    // A second join of the same room replays what the session already has:
    // nothing comes twice, and membership is not doubled.
    let again = JoinRequest {
        since: Some(first),
        ..Default::default()
    };
    let rejoined = f.hub.join(&mut ana, &general, again).await.unwrap();
    assert_eq!(
        rejoined.replay.iter().map(|m| m.id).collect::<Vec<_>>(),
        [third]
    );
    assert_eq!(f.hub.local_members("general"), 1);
    assert!(
        drain(&mut ana, &ana_rx).is_empty(),
        "m3 was replayed, not sent again"
    );
    let history = JoinRequest {
        history: Some(2),
        ..Default::default()
    };
    let (mut cy, _) = f.hub.open("cy".into(), None);
    let recent = f.hub.join(&mut cy, &general, history).await.unwrap();
    assert_eq!(
        recent.replay.iter().map(|m| m.id).collect::<Vec<_>>(),
        [second, third]
    );
}

/// After an outage the hub reads back what its rooms missed and delivers
/// it before the live traffic that arrived during the read-back.
#[tokio::test]
async fn repair_delivers_missed_then_held_in_order() {
    let f = fixture();
    let (mut ana, ana_rx) = f.hub.open("ana".into(), None);
    let (bob, _) = f.hub.open("bob".into(), None);
    let general = room("general");
    f.hub
        .join(&mut ana, &general, JoinRequest::default())
        .await
        .unwrap();
    let before = f.hub.publish(&bob, &general, "before").await.unwrap();
    assert_eq!(drain(&mut ana, &ana_rx), [before]);

    // Pub/sub cut: these reach the log but no replica.
    f.log.switches.cut.store(true, Ordering::SeqCst);
    let mut missed = Vec::new();
    for text in ["m1", "m2"] {
        missed.push(f.hub.publish(&bob, &general, text).await.unwrap());
    }
    assert!(drain(&mut ana, &ana_rx).is_empty());
    f.log.switches.cut.store(false, Ordering::SeqCst);

    // Deliveries resume; the read-back is held at its replay while a live
    // message arrives.
    f.log.gated.store(true, Ordering::SeqCst);
    let replays = f.log.switches.replays_started.load(Ordering::SeqCst);
    f.log.resumed.send_modify(|n| *n += 1);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while f.log.switches.replays_started.load(Ordering::SeqCst) == replays {
        assert!(
            tokio::time::Instant::now() < deadline,
            "repair never started"
        );
        tokio::task::yield_now().await;
    }
    let live = f.hub.publish(&bob, &general, "live").await.unwrap();
    assert!(
        ana_rx.try_recv().is_err(),
        "live traffic waits for the read-back"
    );
    f.log.gated.store(false, Ordering::SeqCst);
    f.log.gate.add_permits(1);
    let got = recv_ids(&mut ana, &ana_rx, 3).await;
    assert_eq!(got, [missed[0], missed[1], live]);
    assert!(drain(&mut ana, &ana_rx).is_empty());
}

#[tokio::test]
async fn presence_events_go_to_watchers_only() {
    let f = fixture();
    let general = room("general");
    let (mut watcher, watcher_rx) = f.hub.open("w".into(), None);
    let (mut plain, plain_rx) = f.hub.open("p".into(), None);
    let watch = JoinRequest {
        presence: true,
        ..Default::default()
    };
    f.hub.join(&mut watcher, &general, watch).await.unwrap();
    f.hub
        .join(&mut plain, &general, JoinRequest::default())
        .await
        .unwrap();
    let (mut late, _) = f.hub.open("late".into(), DisplayName::parse("Late").ok());
    f.hub
        .join(&mut late, &general, JoinRequest::default())
        .await
        .unwrap();
    f.hub.leave(&mut late, "general").await;
    let mut events = Vec::new();
    while let Ok(item) = watcher_rx.try_recv() {
        if watcher.admit(&item)
            && let Outbound::Event(event) = item
        {
            events.push((event.joined, event.info.to_string()));
        }
    }
    let late_info = r#"{"user":"late","name":"Late","server":"test-1"}"#.to_owned();
    assert_eq!(
        events,
        [
            (true, r#"{"user":"w","server":"test-1"}"#.to_owned()),
            (true, r#"{"user":"p","server":"test-1"}"#.to_owned()),
            (true, late_info.clone()),
            (false, late_info)
        ]
    );
    while let Ok(item) = plain_rx.try_recv() {
        assert!(
            !plain.admit(&item),
            "no events for a member that did not ask"
        );
    }
}
