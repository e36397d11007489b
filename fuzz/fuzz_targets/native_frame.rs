//! A client's text frame on the native door: parsed, refused with a reason,
//! never a panic; what parses names a valid room.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rtchat::hub::RoomRules;
use rtchat::ws::protocol::ClientFrame;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for max_room_len in [1, 128] {
        if let Err(reject) = ClientFrame::parse(text, &RoomRules::new(max_room_len)) {
            // The refusal itself is a frame sent back: it must serialise.
            let _ = reject.to_text();
        }
    }
});
