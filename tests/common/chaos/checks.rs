//! Every history of a run against what rtchat promises.

use super::actors::{Acked, MemberLog};
use crate::common::swarm::History;
use std::collections::{HashMap, HashSet};

/// What the checks found, all of it, so that a failing run says every
/// broken promise at once.
#[derive(Debug, Default)]
pub struct Verdict {
    pub broken: Vec<String>,
    pub checked: Vec<String>,
}

impl Verdict {
    pub fn check(&mut self, promise: &str, broken: Vec<String>) {
        if broken.is_empty() {
            self.checked.push(promise.to_owned());
        } else {
            let shown: Vec<&String> = broken.iter().take(5).collect();
            self.broken.push(format!(
                "{promise}: {} times, first {shown:?}",
                broken.len()
            ));
        }
    }
}

/// Every promise about messages, over every native history, every
/// Socket.IO history (`sio`: room, histories; joined before any post)
/// and every acknowledged post.
pub fn check_messages(
    verdict: &mut Verdict,
    members: &[MemberLog],
    sio: &[(String, Vec<History>)],
    posts: &[Acked],
) {
    let mut by_room: HashMap<&str, Vec<u64>> = HashMap::new();
    let mut key_ids: HashMap<&str, HashSet<u64>> = HashMap::new();
    for post in posts {
        by_room.entry(&post.room).or_default().push(post.id);
        key_ids.entry(&post.key).or_default().insert(post.id);
    }
    let all_acked: HashSet<u64> = posts.iter().map(|p| p.id).collect();

    let mut broken = Vec::new();
    for (key, ids) in &key_ids {
        if ids.len() > 1 {
            broken.push(format!("{key} acknowledged as {ids:?}"));
        }
    }
    verdict.check("every try of a key answers one id", broken);

    // Bodies: one per id, one id per key, across every client.
    let mut body_of: HashMap<u64, &str> = HashMap::new();
    let mut id_of: HashMap<&str, u64> = HashMap::new();
    let (mut two_bodies, mut twice_stored) = (Vec::new(), Vec::new());
    for (id, text) in members.iter().flat_map(|m| m.seen.iter()) {
        if let Some(other) = body_of.insert(*id, text)
            && other != text
        {
            two_bodies.push(format!("{id}: {other:?} and {text:?}"));
        }
        if let Some(other) = id_of.insert(text, *id)
            && other != *id
        {
            twice_stored.push(format!("{text:?} as {other} and {id}"));
        }
    }
    verdict.check("no id is seen with two bodies", two_bodies);
    verdict.check("every idempotency key is stored once", twice_stored);

    let (mut disorder, mut twice, mut missed, mut unacked) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (i, member) in members.iter().enumerate() {
        let ids: Vec<u64> = member.seen.iter().map(|(id, _)| *id).collect();
        if let Some(at) = ids.windows(2).position(|w| w[0] >= w[1]) {
            disorder.push(format!(
                "native {i}: {} on {:?} then {} on {:?}",
                ids[at],
                member.carried_by[at],
                ids[at + 1],
                member.carried_by[at + 1]
            ));
        }
        let set: HashSet<u64> = ids.iter().copied().collect();
        if set.len() != ids.len() {
            twice.push(format!("native {i}"));
        }
        for id in by_room.get(member.room.as_str()).into_iter().flatten() {
            let excused = member.gaps.iter().any(|(from, to)| from < id && id < to);
            if *id > member.position && !set.contains(id) && !excused {
                missed.push(format!("native {i} ({}) missed {id}", member.room));
            }
        }
        unacked.extend(
            set.difference(&all_acked)
                .map(|id| format!("native {i} got {id}, which no publisher had acknowledged")),
        );
    }
    for (room, histories) in sio {
        for (i, member) in histories.iter().enumerate() {
            if let Some(w) = member.ids.windows(2).find(|w| w[0] >= w[1]) {
                disorder.push(format!("socket.io {room}/{i}: {} then {}", w[0], w[1]));
            }
            let set: HashSet<u64> = member.ids.iter().copied().collect();
            if set.len() != member.ids.len() {
                twice.push(format!("socket.io {room}/{i}"));
            }
            if member.recovered_false == 0 {
                for id in by_room.get(room.as_str()).into_iter().flatten() {
                    if !set.contains(id) {
                        missed.push(format!("socket.io {room}/{i} missed {id}"));
                    }
                }
            }
            unacked.extend(
                set.difference(&all_acked)
                    .map(|id| format!("socket.io {room}/{i} got unacknowledged {id}")),
            );
        }
    }
    verdict.check("ids strictly increase in every history", disorder);
    verdict.check("no member gets a message twice", twice);
    verdict.check(
        "every acknowledged message reaches every member, or the member was told recovered: false",
        missed,
    );
    verdict.check(
        "nothing is delivered that no publisher got an id for",
        unacked,
    );
    let wrong: Vec<String> = members.iter().flat_map(|m| m.wrong.clone()).collect();
    verdict.check("no refusal other than unavailable", wrong);
}
