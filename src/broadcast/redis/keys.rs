//! Every Redis key and channel name the broadcast uses, in one place, so
//! the Lua scripts' KEYS and the Rust side cannot drift apart.

/// Pub/sub channel of a topic.
pub fn channel(topic: &str) -> String {
    format!("{CHANNEL_PREFIX}{topic}")
}

pub const CHANNEL_PREFIX: &str = "rtchat:chan:";

/// The log scripts' KEYS: the stream, then its meta hash (`start`, `last`,
/// `trimmed`, `oldest`, `len`, `renewed`).
pub fn log(topic: &str) -> Vec<String> {
    vec![
        format!("rtchat:log:{topic}"),
        format!("rtchat:meta:{topic}"),
    ]
}

/// Hash of a topic's present members.
pub fn presence(topic: &str) -> String {
    format!("rtchat:presence:{topic}")
}

/// Heartbeat key of one replica instance (presence.lua builds the same name).
pub fn alive(instance: &str) -> String {
    format!("rtchat:alive:{instance}")
}

/// Sorted set of replica instances by their last heartbeat (Unix ms): how a
/// replica learns another has died without looking at every topic.
pub const INSTANCES: &str = "rtchat:instances";

/// A replica's readiness probe, written every second with a short expiry.
pub fn probe(client: &str) -> String {
    format!("rtchat:probe:{client}")
}
