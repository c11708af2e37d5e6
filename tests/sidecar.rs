//! Sidecar mode against the Vault emulator with TTLs of a few seconds, through the real binary.

mod common;

use std::fs;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use common::*;

const SEC: Duration = Duration::from_secs(1);

/// Watches the token file from another thread and records every moment it held a token Vault
/// would refuse (expired, revoked, unknown) or an empty or partial one.
struct Checker {
    stop: Arc<AtomicBool>,
    handle: Option<thread::JoinHandle<(usize, Vec<String>)>>,
}

impl Checker {
    fn start(s: &Setup) -> Checker {
        let stop = Arc::new(AtomicBool::new(false));
        let path = s.token_path.clone();
        let emu = s.emu.clone_handle();
        let st = stop.clone();
        let handle = thread::spawn(move || {
            let mut reads = 0;
            let mut bad = Vec::new();
            while !st.load(Ordering::Relaxed) {
                if let Ok(t) = fs::read_to_string(&path) {
                    reads += 1;
                    if !emu.is_valid(&t) {
                        bad.push(
                            t.chars().take(6).collect::<String>() + &format!("… len {}", t.len()),
                        );
                    }
                }
                thread::sleep(Duration::from_millis(5));
            }
            (reads, bad)
        });
        Checker {
            stop,
            handle: Some(handle),
        }
    }

    fn finish(mut self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        let (reads, bad) = self.handle.take().unwrap().join().unwrap();
        assert!(
            bad.is_empty(),
            "file held an unusable token {} times: {bad:?}",
            bad.len()
        );
        reads
    }
}

#[test]
fn renews_several_times_without_logging_in_again() {
    let s = Setup::with_role(role(2, 600));
    let r = s.spawn(&[]);
    let token = wait_token(&s);
    let checker = Checker::start(&s);
    assert!(
        wait_until(10 * SEC, || renewals(&s.emu) >= 3),
        "{}",
        r.stderr()
    );
    checker.finish();
    assert_eq!(logins(&s.emu), 1, "no re-login");
    assert_eq!(s.token().unwrap(), token);
    assert!(s.emu.lookup(&token).unwrap().renewals >= 3);
    // Not renewed immediately after login (Vault Agent does; we do not).
    let reqs = s.emu.requests();
    let gap = reqs[1].at.duration_since(reqs[0].at).unwrap();
    assert!(
        gap >= Duration::from_millis(1100),
        "first renewal after {gap:?}"
    );
    assert!(r.stderr().contains("token renewed"));
}

#[test]
fn logs_in_again_before_max_ttl_and_never_leaves_an_expired_token() {
    let s = Setup::with_role(role(2, 5));
    let r = s.spawn(&[]);
    let first = wait_token(&s);
    let checker = Checker::start(&s);
    assert!(
        wait_until(15 * SEC, || logins(&s.emu) >= 3),
        "{}",
        r.stderr()
    );
    let reads = checker.finish();
    assert!(reads > 100);
    assert_ne!(s.token().unwrap(), first);
    assert!(r.stderr().contains("max TTL reached"), "{}", r.stderr());
}

#[test]
fn non_renewable_tokens_are_replaced_by_login() {
    let s = Setup::with_role(Role {
        renewable: false,
        ..role(2, 600)
    });
    let r = s.spawn(&[]);
    wait_token(&s);
    let checker = Checker::start(&s);
    assert!(
        wait_until(10 * SEC, || logins(&s.emu) >= 3),
        "{}",
        r.stderr()
    );
    checker.finish();
    assert_eq!(renewals(&s.emu), 0);
}

#[test]
fn batch_tokens_are_replaced_by_login() {
    let s = Setup::with_role(Role {
        token_type: TokenType::Batch,
        ..role(2, 600)
    });
    let r = s.spawn(&[]);
    let t = wait_token(&s);
    assert!(t.starts_with("hvb."), "{t}");
    let checker = Checker::start(&s);
    assert!(
        wait_until(10 * SEC, || logins(&s.emu) >= 3),
        "{}",
        r.stderr()
    );
    checker.finish();
    assert_eq!(renewals(&s.emu), 0);
}

#[test]
fn short_outage_keeps_the_same_token() {
    let s = Setup::with_role(role(4, 600));
    let r = s.spawn(&[]);
    let token = wait_token(&s);
    // The renewal is due at about 2.4–2.9 s; be down from 1.5 s to 4.0 s... but the token is
    // valid until 4 s, so the retries must land before that.
    thread::sleep(Duration::from_millis(1500));
    s.emu.set_fault(Fault::Down);
    thread::sleep(Duration::from_millis(2000));
    s.emu.clear_fault();
    assert!(
        wait_until(5 * SEC, || renewals(&s.emu) >= 1),
        "{}",
        r.stderr()
    );
    assert_eq!(
        logins(&s.emu),
        1,
        "no re-login during a short outage: {}",
        r.stderr()
    );
    assert_eq!(s.token().unwrap(), token);
    assert!(s.emu.is_valid(&token));
    assert!(r.stderr().contains("Vault unreachable"), "{}", r.stderr());
}

#[test]
fn long_outage_recovers_with_a_fresh_token() {
    let s = Setup::with_role(role(2, 600));
    let r = s.spawn(&[]);
    let token = wait_token(&s);
    s.emu.set_fault(Fault::Down);
    thread::sleep(Duration::from_secs(4));
    assert!(!s.emu.is_valid(&token), "expired during the outage");
    s.emu.clear_fault();
    assert!(
        wait_until(3 * SEC, || s.token().is_some_and(|t| s.emu.is_valid(&t))),
        "fresh token within a backoff step: {}",
        r.stderr()
    );
}

#[test]
fn revoked_token_is_replaced() {
    let s = Setup::with_role(role(2, 600));
    let r = s.spawn(&[]);
    let token = wait_token(&s);
    s.emu.revoke(&token);
    assert!(
        wait_until(5 * SEC, || s
            .token()
            .is_some_and(|t| t != token && s.emu.is_valid(&t))),
        "{}",
        r.stderr()
    );
    assert!(r.stderr().contains("renewal refused"), "{}", r.stderr());
}

#[test]
fn sigterm_stops_quickly_and_leaves_the_token() {
    let s = Setup::with_role(role(3600, 0));
    let mut r = s.spawn(&[]);
    let token = wait_token(&s);
    let t0 = std::time::Instant::now();
    r.signal("TERM");
    let status = r.wait(2 * SEC).expect("exited");
    assert!(t0.elapsed() < SEC, "{:?}", t0.elapsed());
    assert_eq!(status.code(), Some(0), "{}", r.stderr());
    assert_eq!(s.token().unwrap(), token);
    assert!(s.emu.is_valid(&token));
}

#[test]
fn revoke_on_exit_revokes_and_removes_the_file() {
    let mut s = Setup::with_role(role(3600, 0));
    s.set("VAULT_LOGIN_REVOKE_ON_EXIT", "true");
    let mut r = s.spawn(&[]);
    let token = wait_token(&s);
    r.signal("INT");
    let status = r.wait(3 * SEC).expect("exited");
    assert_eq!(status.code(), Some(0), "{}", r.stderr());
    assert!(!s.emu.is_valid(&token));
    assert!(s.token().is_none());
    assert!(s
        .emu
        .requests()
        .iter()
        .any(|q| q.path == "/v1/auth/token/revoke-self"));
}

#[test]
fn sighup_logs_in_again_now() {
    let s = Setup::with_role(role(3600, 0));
    let r = s.spawn(&[]);
    let token = wait_token(&s);
    r.signal("HUP");
    assert!(
        wait_until(3 * SEC, || logins(&s.emu) == 2),
        "{}",
        r.stderr()
    );
    assert!(wait_until(2 * SEC, || s
        .token()
        .is_some_and(|t| t != token)));
}

/// Lays out a projected-volume directory: `token -> ..data/token`, `..data -> ..<ts>`.
fn projected(dir: &std::path::Path, gen: u32, jwt: &str) {
    let ts = dir.join(format!("..2026_11_29_00_00_0{gen}.000"));
    fs::create_dir_all(&ts).unwrap();
    fs::write(ts.join("token"), jwt).unwrap();
    let tmp = dir.join("..data_tmp");
    let _ = fs::remove_file(&tmp);
    std::os::unix::fs::symlink(ts.file_name().unwrap(), &tmp).unwrap();
    fs::rename(&tmp, dir.join("..data")).unwrap();
    if fs::symlink_metadata(dir.join("token")).is_err() {
        std::os::unix::fs::symlink("..data/token", dir.join("token")).unwrap();
    }
}

#[test]
fn rotated_jwt_by_symlink_swap_is_used_at_once_after_a_failure() {
    let mut s = Setup::with_role(role(3600, 0));
    let vol = s.dir.path().join("projected");
    fs::create_dir_all(&vol).unwrap();
    projected(
        &vol,
        1,
        &s.emu.jwt("default", "default", &["wrong-audience"], 3600),
    );
    s.set(
        "VAULT_LOGIN_JWT_FILE",
        vol.join("token").display().to_string(),
    )
    .set("VAULT_LOGIN_MIN_BACKOFF", "20s")
    .set("VAULT_LOGIN_MAX_BACKOFF", "30s");
    let r = s.spawn(&[]);
    r.wait_log("login failed", 5 * SEC);
    let t0 = std::time::Instant::now();
    projected(&vol, 2, &s.emu.jwt("default", "default", &["vault"], 3600));
    assert!(
        wait_until(5 * SEC, || s.token().is_some()),
        "{}",
        r.stderr()
    );
    assert!(
        t0.elapsed() < 3 * SEC,
        "retried at once, not after the 20 s backoff"
    );
    assert!(r.stderr().contains("JWT changed"), "{}", r.stderr());
}

#[test]
fn late_jwt_in_sidecar_mode() {
    let mut s = Setup::with_role(role(3600, 0));
    let jwt = fs::read_to_string(&s.jwt_path).unwrap();
    fs::remove_file(&s.jwt_path).unwrap();
    s.set("VAULT_LOGIN_MIN_BACKOFF", "20s")
        .set("VAULT_LOGIN_MAX_BACKOFF", "30s");
    let r = s.spawn(&[]);
    r.wait_log("login failed", 5 * SEC);
    fs::write(&s.jwt_path, jwt).unwrap();
    assert!(
        wait_until(3 * SEC, || s.token().is_some()),
        "{}",
        r.stderr()
    );
}

#[test]
fn deleted_or_replaced_token_file_is_restored() {
    let s = Setup::with_role(role(3600, 0));
    let r = s.spawn(&[]);
    let token = wait_token(&s);
    fs::remove_file(&s.token_path).unwrap();
    assert!(
        wait_until(SEC, || s.token().as_deref() == Some(token.as_str())),
        "{}",
        r.stderr()
    );
    fs::write(&s.token_path, "tampered").unwrap();
    assert!(
        wait_until(SEC, || s.token().as_deref() == Some(token.as_str())),
        "{}",
        r.stderr()
    );
    assert!(r.stderr().contains("restored"), "{}", r.stderr());
    assert_eq!(logins(&s.emu), 1);
}

#[test]
fn readers_never_see_a_partial_or_empty_file_during_rewrites() {
    let s = Setup::with_role(Role {
        renewable: false,
        ..role(1, 600)
    });
    let r = s.spawn(&[]);
    let first = wait_token(&s);
    let len = first.len();
    let stop = Arc::new(AtomicBool::new(false));
    let mut readers = Vec::new();
    for _ in 0..2 {
        let path = s.token_path.clone();
        let st = stop.clone();
        readers.push(thread::spawn(move || {
            let mut n = 0u64;
            while !st.load(Ordering::Relaxed) {
                let t = fs::read_to_string(&path).expect("file always present");
                assert!(
                    t.starts_with("hvs.") && t.len() == len,
                    "partial read {:?}",
                    t.len()
                );
                n += 1;
            }
            n
        }));
    }
    assert!(
        wait_until(10 * SEC, || logins(&s.emu) >= 6),
        "{}",
        r.stderr()
    );
    stop.store(true, Ordering::Relaxed);
    let reads: u64 = readers.into_iter().map(|h| h.join().unwrap()).sum();
    assert!(reads > 1000, "{reads}");
}

#[test]
fn nothing_secret_in_trace_logs() {
    let mut s = Setup::with_role(role(2, 4));
    s.set("VAULT_LOGIN_LOG", "trace")
        .set("VAULT_LOGIN_REVOKE_ON_EXIT", "1");
    let jwt = fs::read_to_string(&s.jwt_path).unwrap();
    let mut r = s.spawn(&[]);
    wait_token(&s);
    s.emu.set_fault_for(Fault::Internal, 2);
    assert!(wait_until(10 * SEC, || logins(&s.emu) >= 2 && renewals(&s.emu) >= 2));
    r.signal("TERM");
    r.wait(3 * SEC).expect("exited");
    let logs = r.stderr();
    assert!(
        logs.contains("TRACE") || logs.contains("DEBUG"),
        "trace level active"
    );
    // Every token and accessor the emulator ever issued.
    for t in s.emu.issued_tokens() {
        assert!(!logs.contains(&t.0), "token leaked");
        if t.1.len() > 4 {
            assert!(!logs.contains(&t.1), "accessor leaked");
        }
    }
    assert!(!logs.contains(jwt.trim()), "JWT leaked");
    let sig = jwt.trim().rsplit('.').next().unwrap();
    assert!(!logs.contains(sig), "JWT signature leaked");
}

/// Sums voluntary and involuntary context switches over all threads of `pid`.
fn context_switches(pid: u32) -> u64 {
    let mut total = 0;
    for task in fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let status = fs::read_to_string(task.unwrap().path().join("status")).unwrap_or_default();
        for line in status.lines() {
            if line.starts_with("voluntary_ctxt_switches")
                || line.starts_with("nonvoluntary_ctxt_switches")
            {
                total += line
                    .split_whitespace()
                    .last()
                    .unwrap()
                    .parse::<u64>()
                    .unwrap();
            }
        }
    }
    total
}

#[test]
fn idle_between_deadlines() {
    let mut s = Setup::with_role(role(3600, 0));
    s.set("VAULT_LOGIN_LOG", "info");
    let r = s.spawn(&[]);
    wait_token(&s);
    thread::sleep(Duration::from_millis(500));
    let before = context_switches(r.pid());
    thread::sleep(Duration::from_secs(3));
    let after = context_switches(r.pid());
    assert_eq!(after - before, 0, "woke up while idle");
}

#[test]
fn sigterm_is_not_delayed_by_a_hung_vault() {
    let s = Setup::with_role(role(2, 600));
    let mut r = s.spawn(&[]);
    wait_token(&s);
    // The next renewal hangs for 30 s (the client timeout is 60 s).
    s.emu.set_fault(Fault::Slow(Duration::from_secs(30)));
    assert!(
        wait_until(5 * SEC, || renewals(&s.emu) >= 1),
        "{}",
        r.stderr()
    );
    thread::sleep(Duration::from_millis(200));
    let t0 = std::time::Instant::now();
    r.signal("TERM");
    let status = r.wait(3 * SEC).expect("exited");
    assert!(t0.elapsed() < SEC, "{:?}", t0.elapsed());
    assert_eq!(status.code(), Some(0), "{}", r.stderr());
    assert!(s.token().is_some());
}

#[test]
fn sighup_abandons_a_hung_request_and_logs_in_again() {
    let s = Setup::with_role(role(2, 600));
    let r = s.spawn(&[]);
    let token = wait_token(&s);
    s.emu.set_fault_for(Fault::Slow(Duration::from_secs(30)), 1);
    assert!(
        wait_until(5 * SEC, || renewals(&s.emu) >= 1),
        "{}",
        r.stderr()
    );
    r.signal("HUP");
    assert!(
        wait_until(3 * SEC, || s
            .token()
            .is_some_and(|t| t != token && s.emu.is_valid(&t))),
        "{}",
        r.stderr()
    );
}

#[test]
fn renew_increment_is_requested_and_honoured() {
    // Login grants the role's 6 s; each renewal asks for (and gets) 2 s, which is less than the
    // login TTL but is what was asked for, so it must not be mistaken for the max-TTL cap.
    let mut s = Setup::with_role(role(6, 600));
    s.set("VAULT_LOGIN_RENEW_INCREMENT", "2s");
    let r = s.spawn(&[]);
    let token = wait_token(&s);
    assert!(
        wait_until(15 * SEC, || renewals(&s.emu) >= 3),
        "{}",
        r.stderr()
    );
    let reqs: Vec<_> = s
        .emu
        .requests()
        .into_iter()
        .filter(|q| q.path.ends_with("/renew-self"))
        .collect();
    for q in &reqs {
        assert_eq!(q.json()["increment"], 2, "{:?}", q.body);
    }
    let gap = reqs[2].at.duration_since(reqs[1].at).unwrap();
    assert!(
        gap < Duration::from_secs(2),
        "renewed within the 2 s granted: {gap:?}"
    );
    assert_eq!(logins(&s.emu), 1, "{}", r.stderr());
    assert_eq!(s.token().unwrap(), token);
}
