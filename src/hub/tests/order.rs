//! Messages reach a session once each, in id order, across joins,
//! replays, repairs and presence events.

use super::*;
use std::sync::atomic::Ordering;
use std::time::Duration;

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
    assert_eq!(f.hub.presence(&bob, &general).await.unwrap().len(), 1);

    // Posting does not require membership, as in the Socket.IO original.
    let id = f.hub.publish(&bob, &general, "hi", None).await.unwrap();
    assert!(id > joined.position);
    assert_eq!(drain(&mut ana, &ana_rx), [id]);

    assert!(f.hub.leave(&mut ana, "general").await);
    assert!(
        !f.hub.leave(&mut ana, "general").await,
        "a second leave is a no-op"
    );
    assert_left_nothing(&f, &ana, "general");
    assert!(f.hub.presence(&bob, &general).await.unwrap().is_empty());
    f.hub.publish(&bob, &general, "after", None).await.unwrap();
    assert!(drain(&mut ana, &ana_rx).is_empty());
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
        f.hub.publish(&bob, &quiet, "one", None).await.unwrap(),
        f.hub.publish(&bob, &quiet, "two", None).await.unwrap(),
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
    let first = f.hub.publish(&bob, &general, "m1", None).await.unwrap();
    let second = f.hub.publish(&bob, &general, "m2", None).await.unwrap();
    let since = JoinRequest {
        since: Some(first),
        ..Default::default()
    };
    let joined = f.hub.join(&mut ana, &general, since).await.unwrap();
    assert_eq!(
        joined.replay.iter().map(|m| m.id).collect::<Vec<_>>(),
        [second]
    );
    let third = f.hub.publish(&bob, &general, "m3", None).await.unwrap();
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
    let (mut ana, ana_rx, bob, general) = ana_in_general_and_bob(&f).await;
    let before = f.hub.publish(&bob, &general, "before", None).await.unwrap();
    assert_eq!(drain(&mut ana, &ana_rx), [before]);

    // Pub/sub cut: these reach the log but no replica.
    let missed = missed_by_the_replica(&f, &bob, &general, &["m1", "m2"]).await;
    assert!(drain(&mut ana, &ana_rx).is_empty());

    // Deliveries resume; the read-back is held at its replay while a live
    // message arrives.
    repair_waiting_at_its_read_back(&f).await;
    let live = f.hub.publish(&bob, &general, "live", None).await.unwrap();
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

/// A member that resumes on a replica while the replica repairs the room
/// (it missed what the member already saw elsewhere) gets nothing older
/// than where it resumed: the repair's read-back is not for it.
#[tokio::test]
async fn a_resume_during_a_repair_gets_nothing_twice() {
    let f = fixture();
    let (mut ana, ana_rx, bob, general) = ana_in_general_and_bob(&f).await;
    let missed = missed_by_the_replica(&f, &bob, &general, &["m1", "m2"]).await;

    repair_waiting_at_its_read_back(&f).await;
    // The repair waits at its read-back; cy, who saw m1 and m2 on another
    // replica, resumes here meanwhile.
    f.log.gated.store(false, Ordering::SeqCst);
    let (mut cy, cy_rx) = f.hub.open("cy".into(), None);
    let resume = JoinRequest {
        since: Some(missed[1]),
        ..Default::default()
    };
    let joined = f.hub.join(&mut cy, &general, resume).await.unwrap();
    assert!(joined.replay.is_empty());
    f.log.gate.add_permits(1);
    assert_eq!(recv_ids(&mut ana, &ana_rx, 2).await, missed);
    let live = f.hub.publish(&bob, &general, "live", None).await.unwrap();
    assert_eq!(recv_ids(&mut cy, &cy_rx, 1).await, [live]);
}

/// A read-back that keeps failing leaves no silent gap: the room's
/// members are sent to reconnect and resume from what they have.
#[tokio::test]
async fn a_repair_that_cannot_read_back_sends_members_to_resume() {
    let f = fixture();
    let (mut ana, ana_rx, bob, general) = ana_in_general_and_bob(&f).await;
    missed_by_the_replica(&f, &bob, &general, &["missed"]).await;
    f.log.switches.fail_replay.store(true, Ordering::SeqCst);
    f.log.resumed.send_modify(|n| *n += 1);
    let told = tokio::time::timeout(Duration::from_secs(10), ana_rx.recv_async())
        .await
        .expect("told within the read-back's retries")
        .unwrap();
    assert!(matches!(told, Outbound::Reconnect), "{told:?}");
    // Live delivery goes on for whoever stays.
    f.log.switches.fail_replay.store(false, Ordering::SeqCst);
    let live = f.hub.publish(&bob, &general, "live", None).await.unwrap();
    assert_eq!(recv_ids(&mut ana, &ana_rx, 1).await, [live]);
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

/// Publishes while pub/sub is cut: the texts reach the log, not the
/// replica's rooms. Their ids.
/// Ana, a member of `general`, and bob, who posts there without joining.
async fn ana_in_general_and_bob(
    f: &Fixture,
) -> (Session, flume::Receiver<Outbound>, Session, RoomName) {
    let (mut ana, ana_rx) = f.hub.open("ana".into(), None);
    let (bob, _) = f.hub.open("bob".into(), None);
    let general = room("general");
    f.hub
        .join(&mut ana, &general, JoinRequest::default())
        .await
        .unwrap();
    (ana, ana_rx, bob, general)
}

async fn missed_by_the_replica(
    f: &Fixture,
    by: &Session,
    room: &RoomName,
    texts: &[&str],
) -> Vec<u64> {
    f.log.switches.cut.store(true, Ordering::SeqCst);
    let mut ids = Vec::new();
    for text in texts {
        ids.push(f.hub.publish(by, room, text, None).await.unwrap());
    }
    f.log.switches.cut.store(false, Ordering::SeqCst);
    ids
}

/// Deliveries resume and the repair starts, held at its read-back until
/// the test gives the gate a permit.
async fn repair_waiting_at_its_read_back(f: &Fixture) {
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
}

/// A live message that arrives after the broadcast announced a gap (its
/// subscriber is back, or fell behind) and before the repair reads back
/// does not move where the repair reads from: what the gap held still
/// arrives, in order, before it.
#[tokio::test]
async fn a_message_after_an_announced_gap_waits_for_the_repair() {
    let f = fixture();
    let (mut ana, ana_rx, bob, general) = ana_in_general_and_bob(&f).await;
    let missed = missed_by_the_replica(&f, &bob, &general, &["in the gap"]).await;
    (f.hub.local.deliverer())(crate::broadcast::Envelope::interrupted());
    let after = f.hub.publish(&bob, &general, "after", None).await.unwrap();
    f.log.resumed.send_modify(|n| *n += 1);
    assert_eq!(recv_ids(&mut ana, &ana_rx, 2).await, [missed[0], after]);
}
