//! A sidecar restarted in the same pod keeps the token already in the file when `lookup-self`
//! shows it is this role's and this service account's; anything else in the file is replaced
//! by a login, as before.

mod common;

use std::time::Duration;

use common::*;

const LIMIT: Duration = Duration::from_secs(10);

#[test]
fn a_restarted_sidecar_keeps_its_token_and_goes_on_renewing_it() {
    let mut s = Setup::with_role(role(4, 600));
    let info = s.token_path.with_file_name("token-info.json");
    s.set("VAULT_LOGIN_TOKEN_INFO_FILE", info.display().to_string());
    let issued_at = |text: &str| -> String {
        let v: serde_json::Value = serde_json::from_str(text).unwrap();
        v["issued_at"].as_str().unwrap().to_string()
    };
    let mut first = s.spawn(&[]);
    let token = wait_token(&s);
    assert!(wait_until(LIMIT, || info.exists()));
    let issued = issued_at(&std::fs::read_to_string(&info).unwrap());
    // A crash or an OOM kill: no revocation, the file stays.
    first.signal("KILL");
    assert!(first.wait(LIMIT).is_some());
    let logins_before = logins(&s.emu);
    let second = s.spawn(&[]);
    second.wait_log("adopted the token already in the file", LIMIT);
    let renewed = renewals(&s.emu);
    assert!(
        wait_until(LIMIT, || renewals(&s.emu) > renewed),
        "{}",
        second.stderr()
    );
    assert_eq!(
        logins(&s.emu),
        logins_before,
        "no new login: {}",
        second.stderr()
    );
    assert_eq!(s.token().as_deref(), Some(token.as_str()));
    assert!(s.emu.is_valid(&token));
    // The info file still says when the token was issued (Vault's creation time: the same
    // second as the first run's login, or the one before), not this run's start or 1970.
    let again = issued_at(&std::fs::read_to_string(&info).unwrap());
    let at = |t: &str| humantime::parse_rfc3339(t).unwrap();
    let apart = at(&issued)
        .duration_since(at(&again))
        .unwrap_or_else(|e| e.duration());
    assert!(apart <= Duration::from_secs(1), "{again} vs {issued}");
}

#[test]
fn another_roles_token_in_the_file_is_replaced_by_a_login() {
    let mut s = Setup::with_role(role(60, 600));
    s.emu.put_role("kubernetes", "other", role(60, 600));
    // A neighbour container plants a valid token of another role.
    s.set("VAULT_LOGIN_ROLE", "other");
    s.once(&[]).assert_code(0);
    let planted = s.token().unwrap();
    assert!(s.emu.is_valid(&planted));
    s.set("VAULT_LOGIN_ROLE", "default");
    let r = s.spawn(&[]);
    r.wait_log("not adopted: it was issued for another role", LIMIT);
    assert!(
        wait_until(LIMIT, || s
            .token()
            .is_some_and(|t| t != planted && s.emu.is_valid(&t))),
        "{}",
        r.stderr()
    );
    assert_eq!(logins(&s.emu), 2, "{}", r.stderr());
}

#[test]
fn a_dead_or_garbled_token_in_the_file_is_replaced_by_a_login() {
    for planted in ["hvs.not-a-token", "two\nlines", ""] {
        let s = Setup::with_role(role(60, 600));
        std::fs::write(&s.token_path, planted).unwrap();
        let r = s.spawn(&[]);
        assert!(
            wait_until(LIMIT, || s.token().is_some_and(|t| s.emu.is_valid(&t))),
            "{planted:?}: {}",
            r.stderr()
        );
        assert!(!r.stderr().contains("adopted"), "{}", r.stderr());
        assert!(!r.stderr().contains(planted) || planted.is_empty());
    }
}

#[test]
fn once_always_logs_in() {
    let s = Setup::with_role(role(60, 600));
    s.once(&[]).assert_code(0);
    let first = s.token().unwrap();
    s.once(&[]).assert_code(0);
    assert_eq!(logins(&s.emu), 2);
    assert_ne!(s.token().unwrap(), first);
}
