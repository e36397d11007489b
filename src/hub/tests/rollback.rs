//! Every refused join or publish leaves nothing behind.

use super::*;
use std::sync::atomic::Ordering;

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
        .publish(&bob, &room("general"), "unseen", None)
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
        .publish(&ana, &room("general"), "lost", None)
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
        let err = f
            .hub
            .publish(&ana, &room("r0"), text, None)
            .await
            .unwrap_err();
        assert_eq!(err.code(), ErrorCode::MessageTooLong);
    }
}

#[tokio::test]
async fn rooms_outside_the_token_are_forbidden() {
    let f = fixture();
    let (mut bo, bo_rx) = f.hub.open("bo".into(), None);
    bo.restrict(crate::auth::RoomRule::new(vec!["team-*".into()]));
    let err = f
        .hub
        .join(&mut bo, &room("general"), JoinRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::Forbidden);
    assert_left_nothing(&f, &bo, "general");
    let err = f
        .hub
        .publish(&bo, &room("general"), "x", None)
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::Forbidden);
    assert!(f.hub.presence(&bo, &room("general")).await.is_err());
    f.hub
        .join(&mut bo, &room("team-a"), JoinRequest::default())
        .await
        .unwrap();
    let id = f
        .hub
        .publish(&bo, &room("team-a"), "ok", None)
        .await
        .unwrap();
    assert_eq!(drain(&mut bo, &bo_rx), [id]);
}
