//! The deploy tests' load and its checks: a crowd of members of both
//! kinds and publishers, the check of every member's history, and the
//! pace of a replica's sends elsewhere.

use super::swarm::{History, NativeSwarm, Posts, SioSwarm, publisher};
use super::{DEADLINE, Endpoint};
use std::collections::HashSet;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Every acknowledged id reached every member once, in order; nothing
/// unacknowledged was delivered; no member was told it lost messages.
pub fn check_histories(members: &[History], posts: &[Posts], last: u64) {
    let mut acked: HashSet<u64> = posts.iter().flat_map(|p| p.acked.iter().copied()).collect();
    acked.insert(last);
    assert!(acked.len() > 5, "traffic flowed: {} acked", acked.len());
    for (i, member) in members.iter().enumerate() {
        assert_eq!(
            member.recovered_false, 0,
            "member {i} was told it lost messages: {member:?}"
        );
        let seen: HashSet<u64> = member.ids.iter().copied().collect();
        if seen.len() != member.ids.len() {
            let mut sorted = member.ids.clone();
            sorted.sort_unstable();
            let twice: Vec<u64> = sorted
                .windows(2)
                .filter(|w| w[0] == w[1])
                .map(|w| w[0])
                .collect();
            let at: Vec<usize> = member
                .ids
                .iter()
                .enumerate()
                .filter(|(_, id)| twice.contains(id))
                .map(|(n, _)| n)
                .collect();
            panic!(
                "member {i} got {twice:?} twice, at {at:?} of {}: {member:?}",
                member.ids.len()
            );
        }
        assert!(
            member.ids.windows(2).all(|w| w[0] < w[1]),
            "member {i} got messages out of order"
        );
        let missing: Vec<_> = acked.difference(&seen).collect();
        assert!(missing.is_empty(), "member {i} missed {missing:?}");
        let unacked: Vec<_> = seen.difference(&acked).collect();
        assert!(
            unacked.is_empty(),
            "member {i} got unacknowledged {unacked:?}"
        );
    }
}

/// Posts a last message and waits until every native member has it; the
/// Socket.IO members are given the same time by the report that follows.
pub async fn settle(natives: &NativeSwarm, url: &str, room: &str) -> u64 {
    let last = super::Client::connect(url).await.say(room, "settle").await;
    let last: u64 = last.parse().unwrap();
    super::wait_for(
        "every member to have the last message",
        DEADLINE * 3,
        async || natives.all_reached(last).then_some(()),
    )
    .await;
    last
}

/// Native and Socket.IO members of one room and two publishers posting
/// with acks, all through one balancer: the load of the deploy tests.
pub struct Crowd {
    pub natives: NativeSwarm,
    sio: SioSwarm,
    publishers: Vec<JoinHandle<Posts>>,
    stop: CancellationToken,
    url: String,
    room: String,
}

impl Crowd {
    /// `natives` and `sio` members through the balancer at `ws_url` (its
    /// `/ws`) and `http_url` (its root), publishers at `rate` each.
    pub async fn start(
        ws_url: &str,
        http_url: &str,
        room: &str,
        (natives, sio): (usize, usize),
        rate: u32,
    ) -> Self {
        let stop = CancellationToken::new();
        Self {
            natives: NativeSwarm::start(ws_url, room, natives).await,
            sio: SioSwarm::start(http_url, room, sio),
            publishers: ["a", "b"]
                .iter()
                .map(|name| publisher(ws_url, room, name, rate, stop.clone()))
                .collect(),
            stop,
            url: ws_url.to_owned(),
            room: room.to_owned(),
        }
    }

    /// Stops posting, waits until every member has a last message, and
    /// checks every member's history ([`check_histories`]).
    pub async fn finish(self) -> Vec<History> {
        self.stop.cancel();
        let mut posts = Vec::new();
        for p in self.publishers {
            posts.push(p.await.unwrap());
        }
        let last = settle(&self.natives, &self.url, &self.room).await;
        let mut sio = self.sio;
        sio.wait_for(last).await;
        let mut members = self.natives.finish().await;
        members.extend(sio.finish());
        check_histories(&members, &posts, last);
        let acked: usize = posts.iter().map(|p| p.acked.len()).sum();
        eprintln!(
            "crowd: {acked} messages acknowledged, each delivered once to {} members",
            members.len()
        );
        members
    }
}

/// When (Unix ms) a replica sent each socket elsewhere, from its own log
/// (native and Socket.IO): the line its hub writes as it tells each one,
/// not `disconnected`, which follows the Redis calls of leaving its rooms
/// and would add their latency to the pace.
pub fn sent_off(replica: &super::Process) -> Vec<u64> {
    replica.logged_at("sent elsewhere")
}

/// A counter or gauge of a replica's metrics.
pub async fn metric(replica: &super::Process, name: &str) -> u64 {
    let (_, metrics) = super::http_get(&replica.http_url("/metrics")).await;
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .map_or(0, |n| n.trim().parse().unwrap())
}

/// A replica's open sockets.
pub async fn sockets(replica: &super::Process) -> u64 {
    metric(replica, "rtchat_connections").await
}

/// The most close events in any window of `window_ms`, and when that
/// window began (Unix ms).
pub fn peak(mut times: Vec<u64>, window_ms: u64) -> (usize, u64) {
    times.sort_unstable();
    let mut best = (0, 0);
    let mut start = 0;
    for end in 0..times.len() {
        while times[end] - times[start] >= window_ms {
            start += 1;
        }
        if end - start + 1 > best.0 {
            best = (end - start + 1, times[start]);
        }
    }
    best
}
