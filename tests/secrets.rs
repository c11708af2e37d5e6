//! Secrets to files through the real binary and its loop: `--once` writes the token and every
//! secret before exiting, the sidecar refreshes static secrets on their interval (rewriting only
//! on a new KV v2 version or new content), renews dynamic leases and reads new credentials before
//! their max TTL, runs hooks once per batch, gates readiness, and revokes on exit.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::PathBuf;
use std::time::Duration;

use common::*;
use serde_json::json;
use vault_emulator::DynamicRole;

const SEC: Duration = Duration::from_secs(1);
const PASSWORD: &str = TUTORIAL_PASSWORD;

/// The tutorial's secret, a KV v1 secret and a dynamic role, with a policy granting read on
/// them to the role's tokens.
/// Tokens live at most 600 s: OpenBao refuses `token_ttl > token_max_ttl` on a role, so the
/// cap is the token's explicit max TTL.
fn setup(ttl: u64) -> Setup {
    let mut s = with_tutorial_secret(Role {
        token_explicit_max_ttl: Some(Duration::from_secs(600)),
        ..role(ttl, 0)
    });
    s.emu.put_kv1("kv", "app", json!({"api_key": "k-1"}));
    s.set("VAULT_LOGIN_LOG", "debug");
    s
}

fn out(s: &Setup, name: &str) -> PathBuf {
    s.token_path.parent().unwrap().join(name)
}

fn read(s: &Setup, name: &str) -> Option<String> {
    std::fs::read_to_string(out(s, name)).ok()
}

fn reads_of(s: &Setup, path: &str) -> usize {
    s.emu
        .requests()
        .iter()
        .filter(|r| r.path == format!("/v1/{path}"))
        .count()
}

#[test]
fn once_writes_the_token_and_every_secret_then_exits() {
    let mut s = setup(3600);
    s.set("VAULT_LOGIN_SECRET_DB", "internal/data/database/config")
        .set(
            "VAULT_LOGIN_SECRET_DB_PASSWORD",
            "internal/data/database/config#password",
        )
        .set("VAULT_LOGIN_SECRET_API", "kv/app")
        .set(
            "VAULT_LOGIN_SECRET_DB_ENV",
            "dotenv:internal/data/database/config",
        );
    let run = s.once(&[]);
    run.assert_code(0);
    assert!(s.emu.is_valid(&s.token().unwrap()));
    let db: serde_json::Value = serde_json::from_str(&read(&s, "db").unwrap()).unwrap();
    // KV v2: the inner data, not the metadata.
    assert_eq!(
        db,
        json!({"username": "db-readonly-username", "password": PASSWORD})
    );
    assert_eq!(read(&s, "db_password").unwrap(), PASSWORD);
    assert_eq!(read(&s, "api").unwrap(), r#"{"api_key":"k-1"}"#);
    let env = read(&s, "db_env").unwrap();
    assert!(
        env.contains(&format!("export password='{PASSWORD}'")),
        "{env}"
    );
    for name in ["db", "db_password", "api", "db_env"] {
        let mode = std::fs::metadata(out(&s, name))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{name}");
    }
    assert!(!run.stderr.contains(PASSWORD), "{}", run.stderr);
    // Three files from one path: one read.
    assert_eq!(reads_of(&s, "internal/data/database/config"), 1);
}

#[test]
fn files_split_from_one_dynamic_secret_hold_the_same_credentials() {
    let mut s = setup(3600);
    s.emu
        .put_dynamic_role("database", "app", DynamicRole::default());
    s.set("VAULT_LOGIN_SECRET_DB_USER", "database/creds/app#username")
        .set("VAULT_LOGIN_SECRET_DB_PASS", "database/creds/app#password")
        .set("VAULT_LOGIN_SECRET_DB_CREDS", "database/creds/app");
    let run = s.once(&[]);
    run.assert_code(0);
    // One read, one lease: a username and a password from two reads would not match.
    assert_eq!(reads_of(&s, "database/creds/app"), 1, "{}", run.stderr);
    assert_eq!(s.emu.lease_count(), 1);
    let creds: serde_json::Value = serde_json::from_str(&read(&s, "db_creds").unwrap()).unwrap();
    assert_eq!(
        read(&s, "db_user").unwrap(),
        creds["username"].as_str().unwrap()
    );
    assert_eq!(
        read(&s, "db_pass").unwrap(),
        creds["password"].as_str().unwrap()
    );
}

#[test]
fn once_names_the_path_it_could_not_read_and_fails() {
    let mut s = setup(3600);
    s.set("VAULT_LOGIN_SECRET_DB", "internal/database/config")
        .set("VAULT_LOGIN_TIMEOUT", "2s");
    let run = s.once(&[]);
    run.assert_code(1);
    // A 403 names the path, the policy to grant, and the KV v2 data/ hint.
    assert!(
        run.stderr.contains("internal/database/config"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("must grant"), "{}", run.stderr);
    assert!(
        run.stderr.contains("internal/data/database/config"),
        "{}",
        run.stderr
    );
    assert!(read(&s, "db").is_none(), "no file for a secret never read");

    let mut s = setup(3600);
    s.emu.put_policy("app", &[("internal/data/*", &["read"])]);
    s.set("VAULT_LOGIN_SECRET_DB", "internal/data/missing")
        .set("VAULT_LOGIN_TIMEOUT", "2s");
    let run = s.once(&[]);
    run.assert_code(1);
    assert!(
        run.stderr.contains("no secret at internal/data/missing"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_new_kv2_version_reaches_the_file_within_the_refresh_and_the_same_version_is_not_rewritten() {
    let mut s = setup(3600);
    let runs = s.dir.path().join("runs");
    s.set("VAULT_LOGIN_SECRET_DB", "internal/data/database/config")
        .set("VAULT_LOGIN_SECRET_API", "kv/app")
        .set("VAULT_LOGIN_SECRETS_REFRESH", "1s")
        .set(
            "VAULT_LOGIN_ON_CHANGE",
            format!("/bin/sh -c 'echo run >> {}'", runs.display()),
        );
    let r = s.spawn(&[]);
    assert!(
        wait_until(10 * SEC, || read(&s, "db").is_some()
            && read(&s, "api").is_some()),
        "{}",
        r.stderr()
    );
    let count = || {
        std::fs::read_to_string(&runs)
            .map(|t| t.lines().count())
            .unwrap_or(0)
    };
    // The token and both secrets: one batch, one run of the command.
    assert!(wait_until(5 * SEC, || count() == 1), "{}", r.stderr());
    let inode = std::fs::metadata(out(&s, "db")).unwrap().ino();
    let before = reads_of(&s, "internal/data/database/config");
    assert!(
        wait_until(10 * SEC, || reads_of(&s, "internal/data/database/config")
            > before),
        "read again every refresh interval"
    );
    assert_eq!(
        std::fs::metadata(out(&s, "db")).unwrap().ino(),
        inode,
        "same version: not rewritten"
    );
    assert_eq!(count(), 1, "no change, no hook");

    s.emu.put_kv2(
        "internal",
        "database/config",
        json!({"username": "db-readonly-username", "password": "rotated"}),
    );
    assert!(
        wait_until(5 * SEC, || read(&s, "db")
            .is_some_and(|t| t.contains("rotated"))),
        "a new version within one refresh; {}",
        r.stderr()
    );
    assert!(
        wait_until(5 * SEC, || count() == 2),
        "one hook run per change"
    );
    assert!(!r.stderr().contains(PASSWORD) && !r.stderr().contains("rotated"));
}

#[test]
fn a_kv1_secret_is_rewritten_only_when_its_content_changes() {
    let mut s = setup(3600);
    let runs = s.dir.path().join("runs");
    s.set("VAULT_LOGIN_SECRET_API", "kv/app")
        .set("VAULT_LOGIN_SECRETS_REFRESH", "1s")
        .set(
            "VAULT_LOGIN_ON_CHANGE",
            format!("/bin/sh -c 'echo run >> {}'", runs.display()),
        );
    let r = s.spawn(&[]);
    let count = || {
        std::fs::read_to_string(&runs)
            .map(|t| t.lines().count())
            .unwrap_or(0)
    };
    assert!(wait_until(10 * SEC, || count() == 1), "{}", r.stderr());
    let inode = std::fs::metadata(out(&s, "api")).unwrap().ino();
    let before = reads_of(&s, "kv/app");
    assert!(wait_until(10 * SEC, || reads_of(&s, "kv/app") > before));
    assert_eq!(
        std::fs::metadata(out(&s, "api")).unwrap().ino(),
        inode,
        "same content: not rewritten"
    );
    assert_eq!(count(), 1, "no change, no hook");
    s.emu.put_kv1("kv", "app", json!({"api_key": "k-2"}));
    assert!(
        wait_until(5 * SEC, || read(&s, "api")
            .is_some_and(|t| t.contains("k-2"))),
        "{}",
        r.stderr()
    );
    assert!(
        wait_until(5 * SEC, || count() == 2),
        "one hook run per change"
    );
    assert!(!r.stderr().contains("k-1") && !r.stderr().contains("k-2"));
}

/// In virtual time, with a realistic lease: 1 h, max 24 h, over two days.
#[tokio::test(start_paused = true)]
async fn dynamic_leases_are_renewed_and_replaced_before_their_max_ttl() {
    use common::virtual_time::{wait_for, Virtual};
    const HOUR: Duration = Duration::from_secs(3600);
    let v = Virtual::with_hourly_db_creds(30 * 24 * HOUR);
    let creds = v.token_path.parent().unwrap().join("creds");
    let r = v.spawn(&[]);
    assert!(wait_for(HOUR, || creds.is_file()).await, "{}", r.stderr());
    let first = std::fs::read_to_string(&creds).unwrap();
    let renewals = |v: &Virtual| {
        v.emu
            .requests()
            .iter()
            .filter(|r| r.path == "/v1/sys/leases/renew")
            .count()
    };
    // No renewal right after the read: the first comes at about 70 % of the hour.
    tokio::time::sleep(HOUR / 2).await;
    assert_eq!(renewals(&v), 0, "{}", r.stderr());
    assert!(
        wait_for(HOUR / 2, || renewals(&v) == 1).await,
        "{}",
        r.stderr()
    );
    // The file always holds credentials of a live lease, renewed (not re-read) until the lease
    // nears its max TTL, then replaced by new ones before it.
    let mut changes = 0;
    let mut last = first;
    for _ in 0..(2 * 24 * 6) {
        tokio::time::sleep(Duration::from_secs(600)).await;
        assert!(v.emu.lease_count() >= 1, "no live lease; {}", r.stderr());
        let now = std::fs::read_to_string(&creds).unwrap();
        if now != last {
            changes += 1;
            last = now;
        }
    }
    assert!(
        (1..=3).contains(&changes),
        "{changes} new credentials in two days"
    );
    let renewed = renewals(&v);
    assert!(
        (50..=80).contains(&renewed),
        "{renewed} lease renewals in two days"
    );
    assert!(
        !r.stderr().contains("password"),
        "no secret field in the log"
    );
}

#[test]
fn readiness_waits_for_every_secret_and_metrics_count_reads() {
    let mut s = setup(3600);
    let port = free_port();
    s.emu.put_policy("app", &[("kv/app", &["read"])]);
    s.set("VAULT_LOGIN_SECRET_DB", "internal/data/database/config")
        .set("VAULT_LOGIN_SECRET_API", "kv/app")
        .set("VAULT_LOGIN_MIN_BACKOFF", "200ms")
        .set("VAULT_LOGIN_MAX_BACKOFF", "500ms")
        .set("VAULT_LOGIN_LISTEN", format!("127.0.0.1:{port}"));
    let r = s.spawn(&[]);
    assert!(wait_until(10 * SEC, || s.token().is_some()
        && read(&s, "api").is_some()));
    assert!(
        wait_until(5 * SEC, || http_get(port, "/readyz").is_some_and(
            |(c, b)| c == 503 && b.contains("secret db not written yet")
        )),
        "{:?}\n{}",
        http_get(port, "/readyz"),
        r.stderr()
    );
    let (_, metrics) = http_get(port, "/metrics").unwrap();
    assert!(
        metrics.contains(r#"vault_login_secret_reads_total{secret="db",result="failure"}"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"vault_login_secret_last_change_timestamp_seconds{secret="api"}"#),
        "{metrics}"
    );
    // The operator grants read: the next retry writes it and the pod becomes ready.
    s.emu.put_policy(
        "app",
        &[
            ("kv/app", &["read"]),
            ("internal/data/database/config", &["read"]),
        ],
    );
    assert!(
        wait_until(10 * SEC, || http_get(port, "/readyz")
            .is_some_and(|(c, _)| c == 200)),
        "{:?}\n{}",
        http_get(port, "/readyz"),
        r.stderr()
    );
    let (_, metrics) = http_get(port, "/metrics").unwrap();
    assert!(!metrics.contains(PASSWORD) && !metrics.contains("k-1"));
}

#[test]
fn revoke_on_exit_revokes_leases_and_removes_the_secret_files() {
    let mut s = setup(3600);
    s.emu
        .put_dynamic_role("database", "app", DynamicRole::default());
    s.set("VAULT_LOGIN_SECRET_CREDS", "database/creds/app")
        .set("VAULT_LOGIN_SECRET_DB", "internal/data/database/config")
        .set("VAULT_LOGIN_REVOKE_ON_EXIT", "true");
    let mut r = s.spawn(&[]);
    assert!(wait_until(10 * SEC, || read(&s, "creds").is_some()
        && read(&s, "db").is_some()));
    assert_eq!(s.emu.lease_count(), 1);
    r.signal("TERM");
    let status = r.wait(10 * SEC).expect("exits");
    assert!(status.success(), "{}", r.stderr());
    assert!(read(&s, "creds").is_none() && read(&s, "db").is_none());
    assert!(s.token().is_none());
    assert_eq!(s.emu.lease_count(), 0, "{}", r.stderr());
}
