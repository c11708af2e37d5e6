//! Any text through the JWT claim decoder, and any decoded claims (at any "now") through the
//! log line and the permission-denied hints: no panic, no overflow.
//!
//! Input: eight bytes of "now" (big-endian i64), then the JWT text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vault_login::jwt::{unix_now, Claims, JwtError};

fuzz_target!(|data: &[u8]| {
    if data.len() < 8 {
        return;
    }
    let mut now = [0u8; 8];
    now.copy_from_slice(&data[..8]);
    let fuzzed_now = i64::from_be_bytes(now);
    let Ok(text) = std::str::from_utf8(&data[8..]) else {
        return;
    };
    match Claims::decode(text, "/var/run/secrets/kubernetes.io/serviceaccount/token") {
        Ok(claims) => {
            for now in [unix_now(), fuzzed_now, 0, i64::MIN, i64::MAX] {
                let line = claims.describe(now);
                assert!(line.starts_with("sub="), "{line}");
                let hints = claims.hints(now);
                assert!(!hints.is_empty(), "there is always an audience hint");
            }
        }
        Err(e) => {
            // The JWT itself is a credential: an error is the template, the origin and a fixed
            // problem, never any of the content.
            let msg = e.to_string();
            match e {
                JwtError::Malformed { origin, problem } => assert_eq!(
                    msg,
                    format!("service-account JWT in {origin} is malformed: {problem}")
                ),
                other => panic!("decode returned {other:?}"),
            }
        }
    }
});
