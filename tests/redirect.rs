//! A standby node answers 307 with the active node's address, as Vault does without request
//! forwarding: vault-login follows one hop (like the vault CLI), never from https down to http,
//! and not at all with VAULT_DISABLE_REDIRECTS.

mod common;

use common::*;

/// A standby whose every request is redirected to `active`.
fn standby_of(active: &Setup) -> Setup {
    let s = Setup::new();
    s.emu.set_fault(Fault::Redirect {
        to: active.emu.url(),
    });
    s
}

fn logins_at(s: &Setup) -> usize {
    s.emu
        .requests()
        .iter()
        .filter(|r| r.path == "/v1/auth/kubernetes/login")
        .count()
}

#[test]
fn a_standby_redirect_is_followed_to_the_active_node() {
    let active = Setup::new();
    let standby = standby_of(&active);
    standby.once(&[]).assert_code(0);
    let token = standby.token().unwrap();
    assert!(
        active.emu.is_valid(&token),
        "the token is the active node's"
    );
    assert_eq!(logins_at(&standby), 1);
    assert_eq!(logins_at(&active), 1);
    let login = active.emu.requests().pop().unwrap();
    assert_eq!(login.header("x-vault-request"), Some("true"));
    assert!(login.body.contains("\"jwt\""), "the body went along");
}

#[test]
fn a_second_hop_is_not_followed() {
    let active = Setup::new();
    let middle = standby_of(&active);
    let mut first = standby_of(&middle);
    first.set("VAULT_LOGIN_TIMEOUT", "2s");
    let run = first.once(&[]);
    run.assert_code(1);
    assert!(
        run.stderr.contains("only one redirect is followed"),
        "{}",
        run.stderr
    );
    assert_eq!(logins_at(&active), 0);
    assert!(first.token().is_none());
}

#[test]
fn disable_redirects_turns_a_redirect_into_a_clear_error() {
    let active = Setup::new();
    let mut standby = standby_of(&active);
    standby
        .set("VAULT_DISABLE_REDIRECTS", "true")
        .set("VAULT_LOGIN_TIMEOUT", "2s");
    let run = standby.once(&[]);
    run.assert_code(1);
    let last = run.stderr.lines().last().unwrap_or("");
    assert!(last.contains("307"), "{last}");
    assert!(last.contains(&active.emu.url()), "{last}");
    assert!(last.contains("VAULT_DISABLE_REDIRECTS"), "{last}");
    assert_eq!(logins_at(&active), 0);
}

#[test]
fn an_https_standby_never_sends_us_to_http() {
    let active = Setup::new();
    let mut standby = Setup::tls_trusted();
    standby.emu.set_fault(Fault::Redirect {
        to: active.emu.url(),
    });
    standby.set("VAULT_LOGIN_TIMEOUT", "2s");
    let run = standby.once(&[]);
    run.assert_code(1);
    assert!(
        run.stderr.contains("never from https to http"),
        "{}",
        run.stderr
    );
    assert_eq!(
        active.emu.requests().len(),
        0,
        "the JWT never went out in clear"
    );
}
