//! Any status and any body through the pure Vault answer parsers: no panic, a classification that
//! matches the status, a TTL the lifecycle loop can schedule, and no token quoted in an error.
//!
//! Input: two bytes of status (big-endian), one byte of `Retry-After` seconds (0 = none), then
//! the body.
#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use reqwest::StatusCode;
use vault_login::machine::schedule;
use vault_login::vault::{check_status, parse_auth_response, VaultError};

const OP: &str = "POST https://vault.example:8200/v1/auth/kubernetes/login";

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let Ok(status) = StatusCode::from_u16(u16::from_be_bytes([data[0], data[1]])) else {
        return;
    };
    let retry_after = (data[2] != 0).then(|| Duration::from_secs(u64::from(data[2])));
    let body = &data[3..];

    let checked = check_status(OP, status, retry_after, body);
    assert_eq!(checked.is_ok(), status.is_success(), "{status}");
    if let Err(e) = &checked {
        exercise(e);
        assert_eq!(e.status(), Some(status));
        if let VaultError::Status {
            retry_after: got, ..
        } = e
        {
            assert_eq!(*got, retry_after);
        }
    }

    match parse_auth_response(OP, status, retry_after, body) {
        Ok(renewal) => {
            assert!(status.is_success());
            let auth = &renewal.auth;
            assert!(!auth.client_token.expose().is_empty());
            let _ = format!("{auth:?} {renewal:?} {}", auth.is_batch());
            // What the lifecycle loop does with the answer: expiry = now + TTL, then a wait
            // derived from the TTL. Both must be representable instants.
            let ttl = auth.lease_duration;
            let now = Instant::now();
            assert!(
                now.checked_add(ttl).is_some(),
                "TTL {ttl:?} overflows an Instant"
            );
            for unit in [0.0, 0.5, 0.999_999] {
                for next in [
                    schedule::after_login(ttl, auth.renewable, unit),
                    schedule::after_renewal(ttl, ttl, true, auth.renewable, unit),
                    schedule::after_renewal(ttl, ttl, false, auth.renewable, unit),
                ] {
                    if let Some(d) = next.delay() {
                        assert!(d <= ttl, "{next:?} after a TTL of {ttl:?}");
                        assert!(now.checked_add(d).is_some());
                    }
                }
            }
        }
        Err(e) => {
            exercise(&e);
            if status.is_success() {
                // A 2xx body may hold a token (auth.client_token, wrap_info.token): never quote it.
                let text = format!("{e} {e:?}");
                for secret in quoted_values(body, &["client_token", "token", "accessor"]) {
                    assert!(
                        !text.contains(&secret),
                        "error quotes a secret {secret:?}: {text}"
                    );
                }
            }
        }
    }
});

fn exercise(e: &VaultError) {
    let _ = format!("{e} {e:?}");
    let _ = (
        e.is_transient(),
        e.is_permission_denied(),
        e.mentions("permission denied"),
        e.retry_after(),
    );
}

/// String values of `"<key>": "<value>"` pairs found by a crude scan (the body may not be valid
/// JSON), only those that look like real Vault tokens or accessors (long enough that they
/// cannot be a coincidental substring of our own messages).
fn quoted_values(body: &[u8], keys: &[&str]) -> Vec<String> {
    let text = String::from_utf8_lossy(body);
    let mut out = Vec::new();
    for key in keys {
        let pattern = format!("\"{key}\"");
        let mut rest = text.as_ref();
        while let Some(at) = rest.find(&pattern) {
            rest = &rest[at + pattern.len()..];
            let after = rest.trim_start();
            let Some(after) = after.strip_prefix(':') else {
                continue;
            };
            let Some(value) = after.trim_start().strip_prefix('"') else {
                continue;
            };
            let value: String = value.chars().take_while(|c| *c != '"').collect();
            if value.len() >= 12 && value.chars().all(|c| c.is_ascii_alphanumeric() || c == '.') {
                out.push(value);
            }
        }
    }
    out
}
