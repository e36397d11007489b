//! What a Socket.IO client sends: an Engine.IO packet (alone, or several in
//! a polling body) carrying a Socket.IO packet. Parsed or refused, never a
//! panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rtchat::socketio::packet::{Engine, Packet};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // A polling body: packets separated by the record separator.
    for part in text.split('\u{1e}') {
        if let Some(Engine::Message(inner)) = Engine::parse(part) {
            let _ = Packet::parse(inner);
        }
        let _ = Packet::parse(part);
    }
});
