//! The servers' error texts in both forms, through the real binary: OpenBao (the emulator's
//! default flavour, checked against the real server) answers a bad token with a bare
//! `permission denied` and wraps its 500s (`"1 error occurred:\n\t* past the max TTL, cannot
//! renew\n\n"`); Vault >= 1.17 (the other flavour) folds a bad token's refusal into
//! `"2 errors occurred:\n\t* permission denied\n\t* invalid token\n\n"`. vault-login must
//! react the same way to both, and log either on one line.

mod common;

use std::time::Duration;

use common::*;
use vault_emulator::Flavour;

const LIMIT: Duration = Duration::from_secs(15);

/// A sidecar with 3 s renewable tokens whose retries back off a minute: a reaction within
/// [`LIMIT`] is a decision (log in again now), not a retry.
fn sidecar(flavour: Flavour) -> (Setup, Running, String) {
    let mut s = Setup::with_role(role(3, 600));
    s.emu.set_flavour(flavour);
    s.set("VAULT_LOGIN_MIN_BACKOFF", "60s")
        .set("VAULT_LOGIN_MAX_BACKOFF", "60s")
        .set("VAULT_LOGIN_LOG", "info");
    let r = s.spawn(&[]);
    let token = wait_token(&s);
    (s, r, token)
}

#[track_caller]
fn logs_in_again(s: &Setup, r: &Running, old: &str) -> String {
    let ok = wait_until(LIMIT, || {
        s.token().is_some_and(|t| t != old && s.emu.is_valid(&t))
    });
    assert!(ok, "no new token; stderr:\n{}", r.stderr());
    s.token().unwrap()
}

/// Every log line that carries Vault's error is one line, with the words of every error.
#[track_caller]
fn logged_on_one_line(stderr: &str, words: &[&str]) {
    let line = stderr
        .lines()
        .find(|l| words.iter().all(|w| l.contains(w)))
        .unwrap_or_else(|| panic!("no log line with {words:?}:\n{stderr}"));
    assert!(!line.contains("\\n") && !line.contains("\\t"), "{line}");
    assert!(!stderr.contains("\t*"), "a raw multi-error line:\n{stderr}");
}

fn a_revoked_token_is_replaced_at_the_next_renewal(flavour: Flavour) {
    let (s, r, token) = sidecar(flavour);
    s.emu.revoke(&token);
    logs_in_again(&s, &r, &token);
    if flavour == Flavour::OpenBao {
        logged_on_one_line(&r.stderr(), &["403", "permission denied"]);
    } else {
        logged_on_one_line(
            &r.stderr(),
            &[
                "403",
                "2 errors occurred",
                "permission denied",
                "invalid token",
            ],
        );
    }
}

#[test]
fn a_revoked_token_is_replaced_at_the_next_renewal_vault_1_17() {
    a_revoked_token_is_replaced_at_the_next_renewal(Flavour::Vault);
}

#[test]
fn a_revoked_token_is_replaced_at_the_next_renewal_openbao() {
    a_revoked_token_is_replaced_at_the_next_renewal(Flavour::OpenBao);
}

fn past_the_max_ttl_means_log_in_again_not_retry(error: &str) {
    let (s, r, token) = sidecar(Flavour::OpenBao);
    let renewed = renewals(&s.emu);
    // The next request is the renewal: refused as past the max TTL (a 500, which alone would
    // be an outage, retried after the minute's backoff).
    s.emu.set_fault_for(
        Fault::Status {
            status: 500,
            errors: vec![error.to_string()],
        },
        1,
    );
    logs_in_again(&s, &r, &token);
    assert_eq!(renewals(&s.emu), renewed + 1, "{}", r.stderr());
    logged_on_one_line(&r.stderr(), &["500", "past the max TTL, cannot renew"]);
}

#[test]
fn past_the_max_ttl_means_log_in_again_wrapped() {
    past_the_max_ttl_means_log_in_again_not_retry(
        "1 error occurred:\n\t* past the max TTL, cannot renew\n\n",
    );
}

#[test]
fn past_the_max_ttl_means_log_in_again_bare() {
    past_the_max_ttl_means_log_in_again_not_retry("past the max TTL, cannot renew");
}

#[test]
fn a_login_to_a_mount_that_does_not_exist_says_permission_denied_in_both_forms() {
    for flavour in [Flavour::OpenBao, Flavour::Vault] {
        let mut s = Setup::new();
        s.emu.set_flavour(flavour);
        s.set("VAULT_LOGIN_MOUNT", "nope")
            .set("VAULT_LOGIN_TIMEOUT", "2s");
        let run = s.once(&[]);
        run.assert_code(1);
        assert!(
            run.stderr
                .contains("Vault answered 403 Forbidden: permission denied"),
            "{}",
            run.stderr
        );
        assert!(s.token().is_none());
    }
}
