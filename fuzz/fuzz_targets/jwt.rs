//! Tokens as an attacker sends them: any string to each kind of verifier,
//! and any claims signed with the right secret (what a leaked secret or a
//! careless issuer could produce). Accepted or refused, never a panic; a
//! token accepted always has a subject.
#![no_main]

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use libfuzzer_sys::fuzz_target;
use rtchat::auth::{KeySource, Mode, Verifier};
use std::sync::LazyLock;

const SECRET: &[u8] = b"a fuzzing secret, 32 bytes long!";

static VERIFIERS: LazyLock<Vec<Verifier>> = LazyLock::new(|| {
    let keys = [
        KeySource::Secret(SECRET.to_vec()),
        KeySource::PublicKeyPem(include_bytes!("../../src/auth/testdata/rsa-public.pem").to_vec()),
        KeySource::PublicKeyPem(include_bytes!("../../src/auth/testdata/ec-public.pem").to_vec()),
    ];
    keys.iter()
        .flat_map(|key| {
            [Mode::Optional, Mode::Required].map(|mode| Verifier::new(mode, Some(key)).unwrap())
        })
        .collect()
});

fuzz_target!(|data: &[u8]| {
    let Some((&choice, rest)) = data.split_first() else {
        return;
    };
    let token = if choice & 1 == 0 {
        match std::str::from_utf8(rest) {
            Ok(text) => text.to_owned(),
            Err(_) => return,
        }
    } else {
        // Claims of any shape, properly signed.
        let Ok(claims) = serde_json::from_slice::<serde_json::Value>(rest) else {
            return;
        };
        let key = EncodingKey::from_secret(SECRET);
        match jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &key) {
            Ok(token) => token,
            Err(_) => return,
        }
    };
    for verifier in VERIFIERS.iter() {
        if let Ok(Some(identity)) = verifier.verify(Some(&token)) {
            assert!(!identity.user.is_empty(), "an identity without a subject");
            if let Some(rule) = &identity.rooms {
                let _ = rule.allows("lobby");
                let _ = rule.allows(&"a".repeat(128));
            }
        }
    }
});
