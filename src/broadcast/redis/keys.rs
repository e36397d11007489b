//! Every Redis key and channel name the broadcast uses, in one place, so
//! the Lua scripts' KEYS and the Rust side cannot drift apart.
//!
//! On Redis Cluster a script may only touch keys of one hash slot, and a
//! sharded channel lives on the shard of its slot. So every key and the
//! channel of one topic carry the topic as their hash tag (`{topic}`):
//! a topic's log, presence and channel share a slot, and topics
//! spread over all shards. Topics never contain braces (room names are
//! validated), so the tag is always the whole topic.

/// Pub/sub channel of a topic.
pub fn channel(topic: &str) -> String {
    format!("{CHANNEL_PREFIX}{topic}}}")
}

/// The topic a channel belongs to; `None` for a channel not ours.
pub fn topic_of(channel: &str) -> Option<&str> {
    channel.strip_prefix(CHANNEL_PREFIX)?.strip_suffix('}')
}

const CHANNEL_PREFIX: &str = "rtchat:chan:{";

/// A topic's log: one stream, its only key (see log.lua).
pub fn log(topic: &str) -> String {
    format!("rtchat:log:{{{topic}}}")
}

/// What a publish with an idempotency key left behind: its id. The topic
/// comes first, so it is the hash tag whatever the key holds.
pub fn idempotency(topic: &str, key: &str) -> String {
    format!("rtchat:idem:{{{topic}}}:{key}")
}

/// Hash of a topic's present members.
pub fn presence(topic: &str) -> String {
    format!("rtchat:presence:{{{topic}}}")
}

/// Heartbeat key of one replica instance.
pub fn alive(instance: &str) -> String {
    format!("rtchat:alive:{instance}")
}

/// Sorted set of replica instances by their last heartbeat (Unix ms): how a
/// replica learns another has died without looking at every topic.
pub const INSTANCES: &str = "rtchat:instances";

/// Hash of every replica instance's own report (Unix ms, a newline, its
/// JSON), refreshed beside its heartbeat.
pub const REPLICAS: &str = "rtchat:replicas";

/// A readiness probe key; `tag` picks its slot (and so its shard).
pub fn probe(client: &str, tag: usize) -> String {
    format!("rtchat:probe:{{{client}:{tag}}}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use fred::util::redis_keyslot;

    #[test]
    fn a_topic_and_its_channel_share_one_slot() {
        let topic = "room:general";
        let slot = redis_keyslot(channel(topic).as_bytes());
        for key in [log(topic), presence(topic), idempotency(topic, "{x}")] {
            assert_eq!(redis_keyslot(key.as_bytes()), slot, "{key}");
        }
        assert_eq!(slot, redis_keyslot(topic.as_bytes()));
        assert_eq!(topic_of(&channel(topic)), Some(topic));
        assert_eq!(topic_of("other:channel"), None);
    }
}
