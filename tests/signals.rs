//! SIGTERM and SIGINT end the real binary within a second in every state, in both modes:
//! during a request to a hung Vault, during a backoff, during a write retry, while the on-change
//! command hangs (which is killed with its process group), and while the app is being signalled.
//!
//! Each test first waits until vault-login is provably in the state (a request recorded by the
//! emulator, a log line, a file the hook wrote), then sends the signal and measures from there.
//! The only timing assert is that bound: one second, against waits of 30 s and more.

mod common;

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;

/// How long the test waits for vault-login to reach a state (a loaded 2-core CI machine).
const LIMIT: Duration = Duration::from_secs(20);
/// The promise: a pod's deletion does not wait out a backoff, a hung Vault or a hook.
const STOP_WITHIN: Duration = Duration::from_secs(1);
/// Long enough that finishing the state's own wait cannot pass for reacting to the signal.
const LONG: &str = "60s";

/// Sends `sig` and asserts that the process exits on its own (not killed by the signal's
/// default action) within [`STOP_WITHIN`]; returns its stderr.
#[track_caller]
fn stops_within_a_second(r: &mut Running, sig: &str) -> String {
    if let Some(status) = r.child.try_wait().unwrap() {
        panic!(
            "exited ({status}) before the signal; stderr:\n{}",
            r.stderr()
        );
    }
    let sent = Instant::now();
    r.signal(sig);
    let status = r.wait(Duration::from_secs(40));
    let took = sent.elapsed();
    let stderr = r.stderr();
    let status =
        status.unwrap_or_else(|| panic!("still running 40 s after SIG{sig}; stderr:\n{stderr}"));
    assert!(
        took < STOP_WITHIN,
        "took {took:?} to stop after SIG{sig}; stderr:\n{stderr}"
    );
    assert!(
        status.code().is_some(),
        "ended by the signal's default action ({status}), not by vault-login; stderr:\n{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

/// A setup whose retries and write retries wait [`LONG`].
fn slow_retries() -> Setup {
    let mut s = Setup::new();
    s.set("VAULT_LOGIN_MIN_BACKOFF", LONG)
        .set("VAULT_LOGIN_MAX_BACKOFF", LONG)
        .set("VAULT_LOGIN_TIMEOUT", "5m")
        .set("VAULT_LOGIN_LOG", "info");
    s
}

fn start(s: &Setup, once: bool) -> Running {
    s.spawn(if once { &["--once"] } else { &[] })
}

/// Whether a process exists and is not a zombie.
fn alive(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z') && !rest.starts_with('X')),
        Err(_) => false,
    }
}

#[track_caller]
fn read_pid(path: &Path) -> i32 {
    let mut pid = None;
    let ok = wait_until(LIMIT, || {
        pid = fs::read_to_string(path)
            .ok()
            .and_then(|t| t.trim().parse().ok());
        pid.is_some()
    });
    assert!(ok, "{} never written", path.display());
    pid.unwrap()
}

// ----- during a request to a hung Vault -----

fn during_a_hung_request(once: bool, sig: &str) {
    let s = slow_retries();
    s.emu.set_fault(Fault::Slow(Duration::from_secs(120)));
    let mut r = start(&s, once);
    // The emulator records a request when it arrives, before the fault holds it.
    assert!(wait_until(LIMIT, || logins(&s.emu) >= 1), "{}", r.stderr());
    stops_within_a_second(&mut r, sig);
    assert!(s.token().is_none());
}

#[test]
fn sigterm_while_a_restarted_sidecar_looks_up_the_token_in_the_file_at_a_hung_vault() {
    let s = slow_retries();
    s.once(&[]).assert_code(0);
    let token = s.token().unwrap();
    s.emu.set_fault(Fault::Slow(Duration::from_secs(120)));
    let mut r = start(&s, false);
    let looked_up = || {
        s.emu
            .requests()
            .iter()
            .any(|q| q.path == "/v1/auth/token/lookup-self")
    };
    assert!(wait_until(LIMIT, looked_up), "{}", r.stderr());
    stops_within_a_second(&mut r, "TERM");
    assert_eq!(
        s.token().as_deref(),
        Some(token.as_str()),
        "the file is left alone"
    );
}

#[test]
fn sigterm_during_a_request_to_a_hung_vault_sidecar() {
    during_a_hung_request(false, "TERM");
}

#[test]
fn sigterm_during_a_request_to_a_hung_vault_once() {
    during_a_hung_request(true, "TERM");
}

#[test]
fn sigint_during_a_request_to_a_hung_vault_sidecar() {
    during_a_hung_request(false, "INT");
}

#[test]
fn sigterm_during_a_renewal_to_a_hung_vault() {
    let mut s = slow_retries();
    s.set("VAULT_LOGIN_MIN_BACKOFF", "100ms");
    s.emu.put_role(
        "kubernetes",
        "default",
        Role {
            audience: Some("vault".into()),
            ..role(2, 600)
        },
    );
    let mut r = start(&s, false);
    wait_token(&s);
    s.emu.set_fault(Fault::Slow(Duration::from_secs(120)));
    let before = renewals(&s.emu);
    assert!(
        wait_until(LIMIT, || renewals(&s.emu) > before),
        "{}",
        r.stderr()
    );
    stops_within_a_second(&mut r, "TERM");
}

// ----- during a backoff -----

fn during_a_backoff(once: bool) {
    let s = slow_retries();
    s.emu.set_fault(Fault::Status {
        status: 503,
        errors: vec!["Vault is sealed".into()],
    });
    let mut r = start(&s, once);
    r.wait_log("login failed", LIMIT);
    stops_within_a_second(&mut r, "TERM");
    assert_eq!(
        logins(&s.emu),
        1,
        "no second attempt: the backoff is {LONG}"
    );
}

#[test]
fn sigterm_during_a_backoff_sidecar() {
    during_a_backoff(false);
}

#[test]
fn sigterm_during_a_backoff_once() {
    during_a_backoff(true);
}

// ----- during a write retry -----

fn during_a_write_retry(once: bool) {
    let s = slow_retries();
    // Hold the first login until a directory is planted where the token file goes (after the
    // start-up check, which would refuse it): every write then fails until it is gone.
    s.emu.set_fault_for(Fault::Slow(Duration::from_secs(1)), 1);
    let mut r = start(&s, once);
    assert!(wait_until(LIMIT, || logins(&s.emu) >= 1), "{}", r.stderr());
    fs::create_dir(&s.token_path).unwrap();
    r.wait_log("is a directory", LIMIT);
    stops_within_a_second(&mut r, "TERM");
    assert!(s.token_path.is_dir());
}

#[test]
fn sigterm_during_a_write_retry_sidecar() {
    during_a_write_retry(false);
}

#[test]
fn sigterm_during_a_write_retry_once() {
    during_a_write_retry(true);
}

// ----- while the on-change command hangs -----

/// Starts vault-login with an on-change command that records its own pid and its child's, then
/// hangs; returns both pids once written.
fn with_a_hanging_hook(once: bool) -> (Setup, Running, i32, i32) {
    let mut s = slow_retries();
    let (shell, child) = (
        s.dir.path().join("shell.pid"),
        s.dir.path().join("child.pid"),
    );
    s.set(
        "VAULT_LOGIN_ON_CHANGE",
        format!(
            "/bin/sh -c 'sleep 300 & echo $! > {}; echo $$ > {}; wait'",
            child.display(),
            shell.display()
        ),
    )
    .set("VAULT_LOGIN_ON_CHANGE_TIMEOUT", "5m");
    let r = start(&s, once);
    let (shell, child) = (read_pid(&shell), read_pid(&child));
    assert!(alive(shell) && alive(child));
    (s, r, shell, child)
}

/// Kills leftover hook processes if a test fails before vault-login killed them.
struct Reap(Vec<i32>);

impl Drop for Reap {
    fn drop(&mut self) {
        for pid in &self.0 {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .stderr(std::process::Stdio::null())
                .status();
        }
    }
}

#[track_caller]
fn hook_group_is_gone(shell: i32, child: i32) {
    // SIGKILL reaches the group at exit; the kernel and init need a moment to clean up.
    assert!(
        wait_until(Duration::from_secs(5), || !alive(shell) && !alive(child)),
        "the on-change command (pid {shell}) or its child (pid {child}) outlived vault-login"
    );
}

#[test]
fn sigterm_while_the_on_change_command_hangs_sidecar() {
    let (s, mut r, shell, child) = with_a_hanging_hook(false);
    let _reap = Reap(vec![shell, child]);
    stops_within_a_second(&mut r, "TERM");
    hook_group_is_gone(shell, child);
    drop(s);
}

#[test]
fn sigterm_while_the_on_change_command_hangs_once() {
    let (s, mut r, shell, child) = with_a_hanging_hook(true);
    let _reap = Reap(vec![shell, child]);
    stops_within_a_second(&mut r, "TERM");
    hook_group_is_gone(shell, child);
    // The token was written before the hook ran, and stays.
    assert!(s.token().is_some_and(|t| s.emu.is_valid(&t)));
}

// ----- while the app is being signalled -----

/// vault-login retries signalling the app while its pid file is missing; the signal arrives
/// during those retries.
fn while_signalling_the_app(once: bool, pid_file_is_fifo: bool) {
    let mut s = slow_retries();
    let pid_file = s.dir.path().join("app.pid");
    if pid_file_is_fifo {
        let ok = std::process::Command::new("mkfifo")
            .arg(&pid_file)
            .status()
            .unwrap()
            .success();
        assert!(ok);
    }
    s.set(
        "VAULT_LOGIN_SIGNAL_PID_FILE",
        pid_file.display().to_string(),
    );
    let mut r = start(&s, once);
    r.wait_log("cannot signal the app yet", LIMIT);
    stops_within_a_second(&mut r, "TERM");
}

#[test]
fn sigterm_while_signalling_the_app_sidecar() {
    while_signalling_the_app(false, false);
}

#[test]
fn sigterm_while_the_pid_file_is_a_fifo_sidecar() {
    while_signalling_the_app(false, true);
}

#[test]
fn sigterm_while_signalling_the_app_once() {
    while_signalling_the_app(true, false);
}

#[test]
fn sigterm_while_the_pid_file_is_a_fifo_once() {
    while_signalling_the_app(true, true);
}

// ----- idle -----

#[test]
fn sigterm_while_idle_between_renewals() {
    let s = slow_retries();
    let mut r = start(&s, false);
    wait_token(&s);
    r.wait_log("login succeeded", LIMIT);
    stops_within_a_second(&mut r, "TERM");
}
