//! Hooks through the real binary: the on-change command, the app's signal and the token info
//! file, in sidecar and `--once` mode. The on-change command is a real child process and the
//! token info file carries wall-clock times, so those tests run in real time with TTLs of
//! seconds; the app's signal, retried on tokio timers, is tested in virtual time
//! (`common::virtual_time`).

mod common;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::virtual_time::{hold_still, settle, wait_for, Virtual};
use common::*;

const SEC: Duration = Duration::from_secs(1);

/// A file in the setup's temp dir (outside the token directory).
fn path(s: &Setup, name: &str) -> PathBuf {
    s.dir.path().join(name)
}

/// The lines of a file, none if it does not exist.
fn lines(path: &Path) -> Vec<String> {
    fs::read_to_string(path)
        .map(|t| t.lines().map(str::to_string).collect())
        .unwrap_or_default()
}

/// An on-change command that appends the token file's path to `out` (run by sh, as a user would).
fn append_token_path(out: &Path) -> String {
    format!(
        "/bin/sh -c \"echo \\$VAULT_LOGIN_TOKEN_FILE >> '{}'\"",
        out.display()
    )
}

/// A process the test started; killed on drop.
struct Kid(Child);

impl Drop for Kid {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A shell that appends "got" to `got` on `signal` and writes "ready" to `ready` once its trap is set.
fn trapper(signal: &str, got: &Path, ready: &Path) -> Kid {
    let script = format!(
        "trap 'echo got >> \"{}\"' {signal}; echo ready > \"{}\"; while :; do sleep 0.1; done",
        got.display(),
        ready.display()
    );
    let child = Command::new("/bin/sh")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    assert!(wait_until(5 * SEC, || ready.exists()), "trap set");
    Kid(child)
}

/// The pid of a process that has exited and been reaped: (almost certainly) nobody's now.
fn dead_pid() -> u32 {
    let mut child = Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}

const HOUR: Duration = Duration::from_secs(3600);

/// A role with a TTL of an hour and a max TTL of `max_hours`.
fn hourly(max_hours: u64) -> Role {
    role(3600, max_hours * 3600)
}

// The on-change tests below run the token loop in virtual time and the command in real time:
// after each new token the test waits for the command with `settle`, which holds the virtual
// clock still, so the command's timeout (virtual) cannot fire while the real process runs.

#[tokio::test(start_paused = true)]
async fn on_change_runs_after_each_new_token_and_not_after_renewals() {
    let mut s = Virtual::with_role(hourly(3));
    let out = s.dir.path().join("runs.txt");
    s.set("VAULT_LOGIN_ON_CHANGE", append_token_path(&out))
        .set("VAULT_LOGIN_ON_CHANGE_TIMEOUT", "24h");
    let r = s.spawn(&[]);
    let token = s.wait_token().await;
    assert!(
        settle(5 * SEC, || lines(&out).len() == 1).await,
        "first run; stderr:\n{}",
        r.stderr()
    );
    // Renewals keep the token: no run.
    assert!(
        wait_for(3 * HOUR, || renewals(&s.emu) >= 2).await,
        "{}",
        r.stderr()
    );
    assert_eq!(logins(&s.emu), 1, "{}", r.stderr());
    // A run started by a renewal would have written its line by now.
    hold_still(SEC / 5).await;
    assert_eq!(lines(&out).len(), 1, "{}", r.stderr());
    // Each login that replaces the token: one more run.
    for n in 2..=3 {
        assert!(
            wait_for(24 * HOUR, || logins(&s.emu) >= n).await,
            "{}",
            r.stderr()
        );
        assert!(
            settle(5 * SEC, || lines(&out).len() == logins(&s.emu)).await,
            "{} runs for {} logins; stderr:\n{}",
            lines(&out).len(),
            logins(&s.emu),
            r.stderr()
        );
    }
    let token_path = s.token_path.display().to_string();
    assert!(
        lines(&out).iter().all(|l| *l == token_path),
        "{:?}",
        lines(&out)
    );
    let stderr = r.stderr();
    assert!(stderr.contains("on-change command succeeded"), "{stderr}");
    assert!(!stderr.contains(&token), "token in the log");
    assert!(!stderr.contains(&s.token().unwrap()), "token in the log");
}

#[tokio::test(start_paused = true)]
async fn tokens_during_a_run_coalesce_into_one_more_run_without_overlap() {
    let mut s = Virtual::new();
    let out = s.dir.path().join("runs.txt");
    let out_q = out.display();
    s.set(
        "VAULT_LOGIN_ON_CHANGE",
        format!("/bin/sh -c \"echo start >> '{out_q}'; sleep 0.5; echo end >> '{out_q}'\""),
    )
    .set("VAULT_LOGIN_ON_CHANGE_TIMEOUT", "24h");
    let r = s.spawn(&[]);
    s.wait_token().await;
    assert!(settle(5 * SEC, || lines(&out) == ["start"]).await);
    // Three new tokens while the first run sleeps (what SIGHUP does).
    for n in 2..=4 {
        r.relogin();
        assert!(
            settle(5 * SEC, || logins(&s.emu) == n && s.token().is_some()).await,
            "{}",
            r.stderr()
        );
    }
    assert_eq!(
        lines(&out),
        ["start"],
        "the tokens came during the first run"
    );
    assert!(
        settle(5 * SEC, || lines(&out).len() == 4).await,
        "{:?}; stderr:\n{}",
        lines(&out),
        r.stderr()
    );
    // A third run would start as soon as the second ended.
    hold_still(SEC / 2).await;
    assert_eq!(lines(&out), ["start", "end", "start", "end"]);
}

#[tokio::test(start_paused = true)]
async fn a_hanging_command_is_killed_with_its_children_and_the_loop_keeps_renewing() {
    let mut s = Virtual::with_role(hourly(720));
    let out = s.dir.path().join("runs.txt");
    let out_q = out.display();
    s.set(
        "VAULT_LOGIN_ON_CHANGE",
        format!(
            "/bin/sh -c \"echo started >> '{out_q}'; (sleep 1.5; echo orphan >> '{out_q}'); echo finished >> '{out_q}'\""
        ),
    )
    // Longer than the first renewal (at about 42 min), virtual.
    .set("VAULT_LOGIN_ON_CHANGE_TIMEOUT", "50m");
    // The login, and so the command's start, happens at this virtual instant: it needs no timer.
    let spawned = tokio::time::Instant::now();
    let r = s.spawn(&[]);
    s.wait_token().await;
    assert!(settle(5 * SEC, || lines(&out) == ["started"]).await);
    let started = std::time::Instant::now();
    // The loop does not wait for the command.
    assert!(
        wait_for(HOUR, || renewals(&s.emu) >= 1).await,
        "{}",
        r.stderr()
    );
    assert!(
        !r.stderr().contains("timed out"),
        "renewed while the command ran: {}",
        r.stderr()
    );
    // Just past the timeout, then hold virtual time still: the killed group exits in real time,
    // and the agent's grace for reaping it (virtual) must not run out meanwhile.
    tokio::time::sleep_until(spawned + 50 * 60 * SEC + 2 * SEC).await;
    assert!(
        settle(5 * SEC, || r
            .stderr()
            .contains("on-change command timed out and was killed"))
        .await,
        "{}",
        r.stderr()
    );
    let renewed = renewals(&s.emu);
    assert!(
        wait_for(HOUR, || renewals(&s.emu) > renewed).await,
        "{}",
        r.stderr()
    );
    // The whole process group was killed: the subshell never wrote its line, due 1.5 s (real)
    // after the first.
    hold_still((2 * SEC).saturating_sub(started.elapsed())).await;
    assert_eq!(lines(&out), ["started"]);
    assert_eq!(logins(&s.emu), 1);
}

#[test]
fn a_failing_command_is_logged_with_its_status_and_last_stderr_line() {
    let mut s = Setup::new();
    s.set(
        "VAULT_LOGIN_ON_CHANGE",
        "/bin/sh -c \"echo first >&2; echo boom >&2; exit 3\"",
    );
    // --once: the command runs before the process exits, and does not change the exit code.
    let run = s.once(&[]);
    run.assert_code(0);
    let line = run
        .stderr
        .lines()
        .find(|l| l.contains("on-change command failed"))
        .unwrap_or_else(|| panic!("no failure line: {}", run.stderr));
    assert!(line.contains("exit status: 3"), "{line}");
    assert!(line.contains("boom"), "{line}");
    assert!(!line.contains("first"), "{line}");
    assert!(s.emu.is_valid(&s.token().unwrap()));
}

/// The sidecar part of [`a_failing_command_is_logged_with_its_status_and_last_stderr_line`]:
/// the loop goes on (token loop in virtual time, the command in real time).
#[tokio::test(start_paused = true)]
async fn after_a_failing_command_the_loop_goes_on() {
    let mut s = Virtual::with_role(hourly(720));
    s.set(
        "VAULT_LOGIN_ON_CHANGE",
        "/bin/sh -c \"echo boom >&2; exit 3\"",
    )
    .set("VAULT_LOGIN_ON_CHANGE_TIMEOUT", "24h");
    let r = s.spawn(&[]);
    s.wait_token().await;
    assert!(
        settle(5 * SEC, || r.stderr().contains("on-change command failed")).await,
        "{}",
        r.stderr()
    );
    assert!(
        wait_for(HOUR, || renewals(&s.emu) >= 1).await,
        "{}",
        r.stderr()
    );
    assert!(r.is_running(), "still running");
}

#[test]
fn a_program_that_cannot_start_is_a_warning() {
    let mut s = Setup::new();
    s.set("VAULT_LOGIN_ON_CHANGE", "no-such-program-vault-login --x");
    let run = s.once(&[]);
    run.assert_code(0);
    assert!(
        run.stderr.contains("on-change command could not start"),
        "{}",
        run.stderr
    );
}

#[test]
fn the_command_gets_the_token_file_path_and_never_the_token() {
    let mut s = Setup::new();
    let out = path(&s, "env");
    let info = s.token_path.with_file_name("token.json");
    let jwt = fs::read_to_string(&s.jwt_path).unwrap();
    s.set(
        "VAULT_LOGIN_ON_CHANGE",
        format!("/bin/sh -c \"env > '{}'\"", out.display()),
    )
    .set("VAULT_LOGIN_TOKEN_INFO_FILE", info.display().to_string())
    // A JWT given in the environment is not passed on either.
    .set("VAULT_LOGIN_JWT", jwt.trim());
    let run = s.once(&[]);
    run.assert_code(0);
    let token = s.token().unwrap();
    let env = fs::read_to_string(&out).unwrap();
    let vars: Vec<&str> = env.lines().collect();
    assert!(
        vars.contains(&format!("VAULT_LOGIN_TOKEN_FILE={}", s.token_path.display()).as_str()),
        "{env}"
    );
    assert!(
        vars.contains(&format!("VAULT_LOGIN_TOKEN_INFO_FILE={}", info.display()).as_str()),
        "{env}"
    );
    assert!(!env.contains(&token), "the token reached the command");
    assert!(!env.contains(jwt.trim()), "the JWT reached the command");
    assert!(!env.contains("VAULT_LOGIN_JWT="), "{env}");
    assert!(!run.stderr.contains(&token));
}

#[test]
fn stdout_holds_only_the_token_even_when_the_command_prints() {
    let mut s = Setup::new();
    s.unset("VAULT_LOGIN_TOKEN_FILE").set(
        "VAULT_LOGIN_ON_CHANGE",
        "/bin/sh -c \"echo hello-from-hook; echo file=\\${VAULT_LOGIN_TOKEN_FILE-unset}\"",
    );
    let run = s.once(&["--token-file", "-"]);
    run.assert_code(0);
    let token = run.stdout.trim_end_matches('\n');
    assert!(token.starts_with("s."), "{}", run.stdout);
    assert_eq!(run.stdout, format!("{token}\n"));
    assert!(s.emu.is_valid(token));
    // The command's output goes to the log stream instead.
    assert!(run.stderr.contains("hello-from-hook"), "{}", run.stderr);
    assert!(run.stderr.contains("file=unset"), "{}", run.stderr);
    assert!(!run.stderr.contains(token));
}

#[test]
fn signal_reaches_the_app_after_a_new_token() {
    let mut s = Setup::new();
    let (got, ready, pid_file) = (path(&s, "got"), path(&s, "ready"), path(&s, "app.pid"));
    let app = trapper("HUP", &got, &ready);
    fs::write(&pid_file, format!("{}\n", app.0.id())).unwrap();
    s.set(
        "VAULT_LOGIN_SIGNAL_PID_FILE",
        pid_file.display().to_string(),
    );
    let run = s.once(&[]);
    run.assert_code(0);
    assert!(
        wait_until(5 * SEC, || lines(&got) == ["got"]),
        "{:?}; stderr:\n{}",
        lines(&got),
        run.stderr
    );
    assert!(run.stderr.contains("signalled the app"), "{}", run.stderr);
    assert!(run.stderr.contains("SIGHUP"), "{}", run.stderr);
}

#[test]
fn signal_by_name_after_every_new_token_in_the_sidecar() {
    let mut s = Setup::new();
    let (got, ready, pid_file) = (path(&s, "got"), path(&s, "ready"), path(&s, "app.pid"));
    let app = trapper("USR1", &got, &ready);
    fs::write(&pid_file, app.0.id().to_string()).unwrap();
    s.set(
        "VAULT_LOGIN_SIGNAL_PID_FILE",
        pid_file.display().to_string(),
    )
    .set("VAULT_LOGIN_SIGNAL", "sigusr1");
    let r = s.spawn(&[]);
    wait_token(&s);
    assert!(
        wait_until(5 * SEC, || lines(&got).len() == 1),
        "{}",
        r.stderr()
    );
    // SIGHUP makes vault-login log in again: a new token, a new signal.
    r.signal("HUP");
    assert!(
        wait_until(5 * SEC, || logins(&s.emu) == 2 && lines(&got).len() == 2),
        "{:?}; stderr:\n{}",
        lines(&got),
        r.stderr()
    );
    assert!(r.stderr().contains("SIGUSR1"), "{}", r.stderr());
}

#[tokio::test(start_paused = true)]
async fn a_stale_or_missing_pid_file_is_a_warning_and_the_loop_goes_on() {
    // Stale: the process is gone. Tried a few times, then left for the next token.
    let mut s = Virtual::with_role(role(3600, 30 * 86_400));
    let pid_file = s.dir.path().join("app.pid");
    fs::write(&pid_file, dead_pid().to_string()).unwrap();
    s.set(
        "VAULT_LOGIN_SIGNAL_PID_FILE",
        pid_file.display().to_string(),
    );
    let r = s.spawn(&[]);
    r.wait_log("cannot signal the app yet", 5 * SEC).await;
    r.wait_log("giving up until the next token", 5 * SEC).await;
    assert!(r.stderr().contains("no such process"), "{}", r.stderr());
    assert!(
        wait_for(2 * 3600 * SEC, || renewals(&s.emu) >= 2).await,
        "{}",
        r.stderr()
    );
    assert!(r.is_running(), "still running");
    drop(r);

    // Missing, in --once mode: the token is still written, and the exit code is 0.
    let mut s = Virtual::new();
    let pid_file = s.dir.path().join("missing.pid");
    s.set(
        "VAULT_LOGIN_SIGNAL_PID_FILE",
        pid_file.display().to_string(),
    );
    let run = s.once(&[]).await;
    run.assert_code(0);
    assert!(s.emu.is_valid(&s.token().unwrap()));
    let warnings = run
        .stderr
        .lines()
        .filter(|l| l.contains("cannot signal the app"))
        .count();
    assert_eq!(warnings, 3, "{}", run.stderr);
    assert!(run.stderr.contains("missing.pid"), "{}", run.stderr);
    assert!(
        run.elapsed >= 2 * SEC,
        "retried 1 s apart: {:?}",
        run.elapsed
    );
}

/// The token info file as JSON, if it exists and parses.
fn info(path: &Path) -> Option<serde_json::Value> {
    serde_json::from_str(&fs::read_to_string(path).ok()?).ok()
}

#[test]
fn token_info_file_follows_logins_and_renewals() {
    let mut s = Setup::with_role(role(2, 600));
    let info_path = s.token_path.with_file_name("token.json");
    s.set(
        "VAULT_LOGIN_TOKEN_INFO_FILE",
        info_path.display().to_string(),
    )
    .set("VAULT_LOGIN_TOKEN_FILE_MODE", "0640");
    let r = s.spawn(&[]);
    let token = wait_token(&s);
    assert!(wait_until(5 * SEC, || info(&info_path).is_some()));
    let first = info(&info_path).unwrap();
    let text = fs::read_to_string(&info_path).unwrap();
    assert!(!text.contains(&token), "the token is in the info file");
    let looked_up = s.emu.lookup(&token).unwrap();
    assert_eq!(first["accessor"], looked_up.accessor.as_str());
    assert_eq!(first["policies"], serde_json::json!(looked_up.policies));
    assert_eq!(first["renewable"], true);
    assert_eq!(first["token_type"], "service");
    assert_eq!(first["lease_duration"], 2);
    assert!(first["entity_id"].is_string(), "{first}");
    assert_eq!(first["metadata"]["role"], "default", "{first}");
    let issued = first["issued_at"].as_str().unwrap().to_string();
    let expires = first["expires_at"].as_str().unwrap().to_string();
    for t in [&issued, &expires] {
        assert_eq!(t.len(), 20, "{t}");
        assert!(t.ends_with('Z') && t.as_bytes()[10] == b'T', "{t}");
    }
    assert!(expires > issued, "{first}");
    assert_eq!(
        fs::metadata(&info_path).unwrap().mode() & 0o7777,
        0o640,
        "the token file's mode"
    );

    // A renewal moves the expiry, not the issue time.
    assert!(
        wait_until(5 * SEC, || {
            info(&info_path).is_some_and(|v| v["expires_at"].as_str() > Some(expires.as_str()))
        }),
        "{:?}; stderr:\n{}",
        info(&info_path),
        r.stderr()
    );
    let renewed = info(&info_path).unwrap();
    assert_eq!(renewed["issued_at"], issued.as_str());
    assert_eq!(renewed["accessor"], first["accessor"]);

    // A new login (SIGHUP, more than a second after the first): a new issue time and accessor.
    r.signal("HUP");
    assert!(
        wait_until(15 * SEC, || {
            info(&info_path).is_some_and(|v| v["issued_at"].as_str() != Some(issued.as_str()))
        }),
        "{}",
        r.stderr()
    );
    let relogged = info(&info_path).unwrap();
    assert_ne!(relogged["accessor"], first["accessor"]);
    assert!(relogged["issued_at"].as_str().unwrap() > issued.as_str());
    let text = fs::read_to_string(&info_path).unwrap();
    assert!(
        !text.contains(&s.token().unwrap()),
        "the token is in the info file"
    );
    // Nothing left behind but the two files.
    let mut names: Vec<_> = fs::read_dir(s.token_path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["token", "token.json"]);
}

/// Runs `--once` with a bad setting: exit 64, one line naming the input, no request to Vault.
fn expect_usage(s: &Setup, needles: &[&str]) {
    let run = s.once(&[]);
    run.assert_code(64);
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "exactly one line: {:?}", run.stderr);
    for n in needles {
        assert!(lines[0].contains(n), "{n:?} not in {:?}", lines[0]);
    }
    assert_eq!(s.emu.requests().len(), 0, "no network call");
}

#[test]
fn bad_hook_settings_exit_64_naming_the_variable() {
    let mut s = Setup::new();
    s.set("VAULT_LOGIN_SIGNAL_PID_FILE", "/run/app.pid")
        .set("VAULT_LOGIN_SIGNAL", "SIGBOGUS");
    expect_usage(&s, &["VAULT_LOGIN_SIGNAL:", "SIGBOGUS"]);

    let mut s = Setup::new();
    s.set("VAULT_LOGIN_ON_CHANGE", "/bin/sh -c 'echo unclosed");
    expect_usage(&s, &["VAULT_LOGIN_ON_CHANGE:", "unclosed single quote"]);

    let mut s = Setup::new();
    s.set("VAULT_LOGIN_ON_CHANGE_TIMEOUT", "0");
    expect_usage(&s, &["VAULT_LOGIN_ON_CHANGE_TIMEOUT:", "more than zero"]);

    let mut s = Setup::new();
    let missing = s.dir.path().join("nowhere").join("token.json");
    s.set("VAULT_LOGIN_TOKEN_INFO_FILE", missing.display().to_string());
    expect_usage(&s, &["VAULT_LOGIN_TOKEN_INFO_FILE:", "does not exist"]);
}
