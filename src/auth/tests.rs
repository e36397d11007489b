//! Token verification against tokens made here: valid ones pass; no token,
//! a bad signature, another algorithm, `alg: none`, an expired or
//! not-yet-valid token are refused with a reason. The key pairs in
//! `testdata/` exist for these tests only.

use super::*;
use base64::Engine;
use jsonwebtoken::{EncodingKey, Header, encode};
use serde_json::json;

const SECRET: &[u8] = b"a test secret of 32 bytes.......";
const EC_PRIVATE: &str = include_str!("testdata/ec-private.pem");
const EC_PUBLIC: &str = include_str!("testdata/ec-public.pem");
const RSA_PRIVATE: &str = include_str!("testdata/rsa-private.pem");
const RSA_PUBLIC: &str = include_str!("testdata/rsa-public.pem");

fn hs256(mode: Mode) -> Verifier {
    Verifier::new(mode, Some(&KeySource::Secret(SECRET.to_vec()))).unwrap()
}

fn now() -> u64 {
    expiry_in(Duration::ZERO)
}

fn sign(claims: serde_json::Value, alg: Algorithm, key: &EncodingKey) -> String {
    encode(&Header::new(alg), &claims, key).unwrap()
}

fn secret_token(claims: serde_json::Value) -> String {
    sign(claims, Algorithm::HS256, &EncodingKey::from_secret(SECRET))
}

#[test]
fn a_valid_token_gives_its_claims() {
    let token = secret_token(json!({
        "sub": "ana", "name": "Ana", "exp": now() + 60, "rooms": ["team-*"], "scope": "users:write other"
    }));
    let id = hs256(Mode::Required).verify(Some(&token)).unwrap().unwrap();
    assert_eq!((id.user.as_str(), id.name.as_deref()), ("ana", Some("Ana")));
    assert!(id.rooms.as_ref().unwrap().allows("team-a"));
    assert!(!id.rooms.as_ref().unwrap().allows("general"));
    assert!(id.has_scope("users:write") && !id.has_scope("users"));
    assert!(id.remaining() > Duration::from_secs(50));
}

#[test]
fn modes() {
    let token = secret_token(json!({"sub": "ana", "exp": now() + 60}));
    assert_eq!(hs256(Mode::Required).verify(None), Err(AuthError::Missing));
    assert_eq!(hs256(Mode::Optional).verify(None), Ok(None));
    assert!(
        hs256(Mode::Optional).verify(Some("garbage")).is_err(),
        "given, it must be valid"
    );
    assert_eq!(Verifier::off().verify(Some("garbage")), Ok(None));
    assert!(
        hs256(Mode::Optional)
            .verify(Some(&token))
            .unwrap()
            .is_some()
    );
    assert!(
        Verifier::new(Mode::Required, None).is_err(),
        "a mode without a key"
    );
    assert!(
        Verifier::new(Mode::Required, Some(&KeySource::Secret(b"short".to_vec()))).is_err(),
        "a secret too short to be one"
    );
}

#[test]
fn forged_and_broken_tokens_are_refused() {
    let v = hs256(Mode::Required);
    let claims = json!({"sub": "ana", "exp": now() + 60});
    let other_secret = sign(
        claims.clone(),
        Algorithm::HS256,
        &EncodingKey::from_secret(b"another secret, 32 bytes long..."),
    );
    assert_eq!(
        v.verify(Some(&other_secret)),
        Err(AuthError::Invalid("bad signature".into()))
    );
    let hs384 = sign(
        claims.clone(),
        Algorithm::HS384,
        &EncodingKey::from_secret(SECRET),
    );
    assert_eq!(
        v.verify(Some(&hs384)),
        Err(AuthError::Invalid("algorithm not accepted".into()))
    );
    // `alg: none`, unsigned.
    let b64 = |v: &serde_json::Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT"})),
        b64(&claims)
    );
    assert!(v.verify(Some(&none)).is_err());
    assert!(v.verify(Some("not.a.token")).is_err());
    assert!(v.verify(Some("")).is_err());
}

#[test]
fn time_claims_are_enforced() {
    let v = hs256(Mode::Required);
    let expired = secret_token(json!({"sub": "ana", "exp": now() - 60}));
    assert_eq!(v.verify(Some(&expired)), Err(AuthError::Expired));
    let within_leeway = secret_token(json!({"sub": "ana", "exp": now() - 1}));
    assert!(
        v.verify(Some(&within_leeway)).is_ok(),
        "a second of skew is tolerated"
    );
    let early = secret_token(json!({"sub": "ana", "exp": now() + 600, "nbf": now() + 300}));
    assert_eq!(v.verify(Some(&early)), Err(AuthError::NotYetValid));
    let no_exp = secret_token(json!({"sub": "ana"}));
    assert_eq!(
        v.verify(Some(&no_exp)),
        Err(AuthError::Invalid("missing claim `exp`".into()))
    );
    let no_sub = secret_token(json!({"exp": now() + 60}));
    assert!(v.verify(Some(&no_sub)).is_err());
}

#[test]
fn public_keys_accept_their_own_algorithm_only() {
    let claims = json!({"sub": "ana", "exp": now() + 60});
    let ec = Verifier::new(
        Mode::Required,
        Some(&KeySource::PublicKeyPem(EC_PUBLIC.into())),
    )
    .unwrap();
    let es256 = sign(
        claims.clone(),
        Algorithm::ES256,
        &EncodingKey::from_ec_pem(EC_PRIVATE.as_bytes()).unwrap(),
    );
    assert!(ec.verify(Some(&es256)).unwrap().is_some());
    let rsa = Verifier::new(
        Mode::Required,
        Some(&KeySource::PublicKeyPem(RSA_PUBLIC.into())),
    )
    .unwrap();
    let rs256 = sign(
        claims.clone(),
        Algorithm::RS256,
        &EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap(),
    );
    assert!(rsa.verify(Some(&rs256)).unwrap().is_some());
    assert!(rsa.verify(Some(&es256)).is_err() && ec.verify(Some(&rs256)).is_err());
    // Algorithm confusion: the public key's bytes used as an HMAC secret.
    let confused = sign(
        claims,
        Algorithm::HS256,
        &EncodingKey::from_secret(RSA_PUBLIC.as_bytes()),
    );
    assert_eq!(
        rsa.verify(Some(&confused)),
        Err(AuthError::Invalid("algorithm not accepted".into()))
    );
    assert!(
        Verifier::new(
            Mode::Required,
            Some(&KeySource::PublicKeyPem(b"not a key".to_vec()))
        )
        .is_err()
    );
}

#[test]
fn minted_tokens_verify() {
    let token = mint(
        &NewToken {
            sub: "bo",
            name: Some("Bo"),
            exp: expiry_in(Duration::from_secs(60)),
            rooms: None,
            scope: None,
        },
        SECRET,
    )
    .unwrap();
    let id = hs256(Mode::Required).verify(Some(&token)).unwrap().unwrap();
    assert_eq!(id.user, "bo");
    assert!(id.rooms.is_none());
}
