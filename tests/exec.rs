//! `vault-login exec -- <program>` through the real binary against the emulator: the program
//! sees its values (and nothing of vault-login's own), its exit code and death by signal are
//! vault-login's, every forwarded signal reaches it, a changed value restarts it once per
//! batch (and an unchanged one never), the `never` and `signal` policies, new dynamic
//! credentials before the old ones expire, a denied path starts nothing, PID 1 reaps orphans;
//! and `vault-login install <dir>`.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;
use serde_json::json;
use vault_emulator::DynamicRole;

const SEC: Duration = Duration::from_secs(1);

/// The tutorial's secret readable by the role; the token stays in memory (no token file), as
/// on a developer's machine.
fn setup() -> Setup {
    let mut s = with_tutorial_secret(role(3600, 0));
    s.unset("VAULT_LOGIN_TOKEN_FILE");
    s.set(
        "VAULT_LOGIN_ENV_DB_PASSWORD",
        "internal/data/database/config#password",
    );
    s
}

/// A file in the test's temp dir, for the program to write to.
fn file(s: &Setup, name: &str) -> PathBuf {
    s.dir.path().join(name)
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(String::from)
        .collect()
}

/// `vault-login exec -- sh -c <script> sh <args...>` in the background.
fn spawn_sh(s: &Setup, script: &str, args: &[&Path]) -> Running {
    let mut all: Vec<String> = ["exec", "--", "sh", "-c", script, "sh"]
        .map(String::from)
        .to_vec();
    all.extend(args.iter().map(|p| p.display().to_string()));
    let refs: Vec<&str> = all.iter().map(String::as_str).collect();
    s.spawn(&refs)
}

fn run_args(s: &Setup, args: &[&str]) -> Run {
    run(s.command(args), 30 * SEC)
}

fn run_sh(s: &Setup, script: &str, args: &[&Path]) -> Run {
    let mut r = spawn_sh(s, script, args);
    let Some(status) = r.wait(30 * SEC) else {
        panic!("vault-login did not exit; stderr:\n{}", r.stderr());
    };
    std::thread::sleep(Duration::from_millis(50));
    Run {
        status,
        stdout: r.stdout(),
        stderr: r.stderr(),
        elapsed: r.started.elapsed(),
    }
}

#[test]
fn the_program_sees_its_values_and_nothing_of_vault_login() {
    let mut s = setup();
    let jwt = std::fs::read_to_string(&s.jwt_path).unwrap();
    s.unset("VAULT_LOGIN_JWT_FILE")
        .set("VAULT_LOGIN_JWT", jwt.trim())
        .set(
            "VAULT_LOGIN_ENV_dsn",
            r#"postgres://{{ with secret "internal/data/database/config" }}{{ .Data.data.username }}:{{ .Data.data.password }}{{ end }}@db"#,
        )
        .set("VAULT_LOGIN_EXEC_TOKEN", "true")
        .set("UNRELATED", "kept");
    let env = file(&s, "env");
    let run = run_sh(&s, r#"env > "$1"; echo hello"#, &[&env]);
    run.assert_code(0);
    // stdout is the program's, byte for byte.
    assert_eq!(run.stdout, "hello\n");
    let seen = std::fs::read_to_string(&env).unwrap();
    assert!(
        seen.contains(&format!("DB_PASSWORD={TUTORIAL_PASSWORD}\n")),
        "{seen}"
    );
    assert!(
        seen.contains(&format!(
            "dsn=postgres://db-readonly-username:{TUTORIAL_PASSWORD}@db\n"
        )),
        "{seen}"
    );
    assert!(seen.contains("UNRELATED=kept\n"), "{seen}");
    assert!(
        seen.contains(&format!(
            "VAULT_ADDR={}\n",
            s.emu.url().trim_end_matches('/')
        )),
        "{seen}"
    );
    let token = (seen.lines())
        .find_map(|l| l.strip_prefix("VAULT_TOKEN="))
        .expect("VAULT_TOKEN given");
    assert!(s.emu.is_valid(token), "a live token");
    assert!(!seen.contains("VAULT_LOGIN_"), "{seen}");
    assert!(!seen.contains(jwt.trim()), "the JWT is not passed on");
    // One read for the field and the template.
    let reads = s
        .emu
        .count_requests(|r| r.path == "/v1/internal/data/database/config");
    assert_eq!(reads, 1, "{}", run.stderr);
    assert!(!run.stderr.contains(TUTORIAL_PASSWORD), "{}", run.stderr);
    assert!(!run.stderr.contains(token), "{}", run.stderr);
}

#[test]
fn exit_codes_and_death_by_signal_are_vault_login_s() {
    let s = setup();
    run_sh(&s, "exit 7", &[]).assert_code(7);
    run_sh(&s, "exit 0", &[]).assert_code(0);
    // Killed by SIGTERM: 128 + 15, as a shell reports it.
    run_sh(&s, "kill -TERM $$", &[]).assert_code(143);
    run_sh(&s, "kill -KILL $$", &[]).assert_code(137);
}

#[test]
fn a_program_that_cannot_start_is_127_or_126_before_any_login() {
    let s = setup();
    let run = run_args(&s, &["exec", "--", "no-such-program-anywhere"]);
    run.assert_code(127);
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("no-such-program-anywhere: not found in PATH"),
        "{}",
        run.stderr
    );
    let plain = file(&s, "plain");
    std::fs::write(&plain, "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(&plain, std::fs::Permissions::from_mode(0o644)).unwrap();
    let run = run_args(&s, &["exec", "--", plain.to_str().unwrap()]);
    run.assert_code(126);
    assert!(
        run.stderr.contains("not an executable file"),
        "{}",
        run.stderr
    );
    assert_eq!(logins(&s.emu), 0);
}

#[test]
fn bad_env_names_and_usage_are_configuration_errors() {
    let mut s = setup();
    s.set("VAULT_LOGIN_ENV_1BAD", "kv/app#x");
    let run = run_args(&s, &["exec", "--", "true"]);
    run.assert_code(64);
    assert!(
        run.stderr.contains("VAULT_LOGIN_ENV_1BAD"),
        "{}",
        run.stderr
    );
    let s = setup();
    run_args(&s, &["exec"]).assert_code(64);
    run_args(&s, &["exec", "--once", "true"]).assert_code(64);
}

#[test]
fn a_denied_path_starts_nothing_and_names_the_variable_and_path() {
    let mut s = setup();
    s.set("VAULT_LOGIN_ENV_API_KEY", "secret/data/other#key");
    let marker = file(&s, "started");
    let run = run_sh(&s, r#"touch "$1""#, &[&marker]);
    run.assert_code(1);
    assert!(!marker.exists(), "the program never ran");
    let last = run.stderr.lines().last().unwrap_or_default().to_string();
    assert!(
        last.contains("VAULT_LOGIN_ENV_API_KEY") && last.contains("secret/data/other"),
        "{}",
        run.stderr
    );
}

#[test]
fn each_forwarded_signal_reaches_the_program() {
    let s = setup();
    let got = file(&s, "signals");
    let stop = file(&s, "stop");
    let script = r#"for sig in TERM INT HUP QUIT USR1 USR2 WINCH; do trap "echo $sig >> $1" $sig; done
echo ready >> "$1"
while [ ! -e "$2" ]; do sleep 0.02; done
exit 3"#;
    let mut r = spawn_sh(&s, script, &[&got, &stop]);
    assert!(
        wait_until(10 * SEC, || lines(&got).contains(&"ready".into())),
        "{}",
        r.stderr()
    );
    for sig in ["TERM", "INT", "HUP", "QUIT", "USR1", "USR2", "WINCH"] {
        r.signal(sig);
        assert!(
            wait_until(5 * SEC, || lines(&got).contains(&sig.to_string())),
            "{sig} not seen: {:?}\n{}",
            lines(&got),
            r.stderr()
        );
    }
    std::fs::write(&stop, "").unwrap();
    let status = r.wait(10 * SEC).expect("exited with the program");
    assert_eq!(status.code(), Some(3), "{}", r.stderr());
    // SIGHUP was the program's: no second login.
    assert_eq!(logins(&s.emu), 1);
}

/// The program records each start's DB_PASSWORD, then sleeps (TERM ends it).
const RECORD_AND_WAIT: &str =
    r#"echo "$DB_PASSWORD" >> "$1"; trap 'echo reload >> "$1"' USR1; while :; do sleep 0.05; done"#;

fn rotate(s: &Setup, password: &str) {
    s.emu.put_kv2(
        "internal",
        "database/config",
        json!({"username": "db-readonly-username", "password": password}),
    );
}

fn config_reads(s: &Setup) -> usize {
    s.emu
        .count_requests(|r| r.path == "/v1/internal/data/database/config")
}

#[test]
fn a_new_kv_version_restarts_the_program_once_and_an_unchanged_refresh_never() {
    let mut s = setup();
    s.set("VAULT_LOGIN_SECRETS_REFRESH", "1s")
        .set("VAULT_LOGIN_EXEC_STOP_TIMEOUT", "5s");
    let starts = file(&s, "starts");
    let r = spawn_sh(&s, RECORD_AND_WAIT, &[&starts]);
    assert!(
        wait_until(10 * SEC, || lines(&starts).len() == 1),
        "{}",
        r.stderr()
    );
    // Several refreshes of the same version: nothing restarts.
    let before = config_reads(&s);
    assert!(
        wait_until(10 * SEC, || config_reads(&s) >= before + 3),
        "{}",
        r.stderr()
    );
    assert_eq!(lines(&starts), vec![TUTORIAL_PASSWORD], "{}", r.stderr());
    rotate(&s, "rotated-1");
    assert!(
        wait_until(10 * SEC, || lines(&starts).len() >= 2),
        "{}",
        r.stderr()
    );
    let now = config_reads(&s);
    assert!(
        wait_until(10 * SEC, || config_reads(&s) >= now + 3),
        "{}",
        r.stderr()
    );
    assert_eq!(
        lines(&starts),
        vec![TUTORIAL_PASSWORD, "rotated-1"],
        "{}",
        r.stderr()
    );
    assert!(r
        .stderr()
        .contains("environment changed; restarting the program"));
    assert!(!r.stderr().contains("rotated-1"), "no value in the log");
}

#[test]
fn never_keeps_the_program_and_signal_only_signals_it() {
    for (policy, expected, log) in [
        (
            "never",
            vec![TUTORIAL_PASSWORD],
            "keeps running with the old values",
        ),
        (
            "signal",
            vec![TUTORIAL_PASSWORD, "reload"],
            "signalling the program",
        ),
    ] {
        let mut s = setup();
        s.set("VAULT_LOGIN_SECRETS_REFRESH", "1s")
            .set("VAULT_LOGIN_EXEC_RESTART", policy)
            .set("VAULT_LOGIN_EXEC_STOP_SIGNAL", "USR1");
        let starts = file(&s, "starts");
        let r = spawn_sh(&s, RECORD_AND_WAIT, &[&starts]);
        assert!(
            wait_until(10 * SEC, || lines(&starts).len() == 1),
            "{}",
            r.stderr()
        );
        rotate(&s, "rotated-2");
        r.wait_log(log, 10 * SEC);
        let now = config_reads(&s);
        assert!(
            wait_until(10 * SEC, || config_reads(&s) >= now + 3),
            "{}",
            r.stderr()
        );
        assert_eq!(lines(&starts), expected, "{policy}: {}", r.stderr());
    }
}

#[test]
fn new_dynamic_credentials_restart_the_program_before_the_old_ones_expire() {
    let mut s = setup();
    s.unset("VAULT_LOGIN_ENV_DB_PASSWORD");
    s.emu.put_dynamic_role(
        "database",
        "app",
        DynamicRole {
            default_ttl: Duration::from_secs(3),
            max_ttl: Duration::from_secs(8),
            renewable: true,
        },
    );
    s.set("VAULT_LOGIN_ENV_DB_USER", "database/creds/app#username")
        .set("VAULT_LOGIN_ENV_DB_PASS", "database/creds/app#password")
        .set("VAULT_LOGIN_EXEC_STOP_TIMEOUT", "5s");
    let starts = file(&s, "starts");
    let script = r#"echo "$DB_USER $DB_PASS" >> "$1"; while :; do sleep 0.05; done"#;
    let r = spawn_sh(&s, script, &[&starts]);
    assert!(
        wait_until(10 * SEC, || lines(&starts).len() == 1),
        "{}",
        r.stderr()
    );
    let first_user = lines(&starts)[0].split(' ').next().unwrap().to_string();
    let lease = (s.emu.leases().into_iter())
        .find(|l| l.data["username"] == first_user.as_str())
        .expect("the first credentials' lease");
    let expires = lease.max_expire_time.unwrap_or(lease.expire_time);
    assert!(
        wait_until(15 * SEC, || lines(&starts).len() >= 2),
        "{}",
        r.stderr()
    );
    // When vault-login started the program again (its own log line), not when this test got
    // to look: on a loaded machine the shell itself may take a while to write its line.
    let log = r.stderr();
    let restarted = (log.lines())
        .filter(|l| l.contains("program started"))
        .nth(1)
        .and_then(|l| l.split_whitespace().next())
        .and_then(|ts| humantime::parse_rfc3339(ts).ok())
        .expect("a second 'program started' line with its timestamp");
    assert!(
        restarted < expires,
        "restarted after the old credentials expired; {log}"
    );
    let second = lines(&starts)[1].clone();
    assert_ne!(second.split(' ').next().unwrap(), first_user);
    // The new user and password came from one read: both new, one start for the pair.
    assert!(s.emu.leases().iter().any(|l| second
        == format!(
            "{} {}",
            l.data["username"].as_str().unwrap(),
            l.data["password"].as_str().unwrap()
        )));
}

#[test]
fn as_pid_1_orphans_are_reaped() {
    if !is_root() || Command::new("unshare").arg("--version").output().is_err() {
        eprintln!("skipped: needs root and unshare");
        return;
    }
    let s = setup();
    let zombies = file(&s, "zombies");
    // An orphan: the inner shell exits at once, its sleep is re-parented to PID 1.
    let script = r#"sh -c 'sleep 0.2 &'; sleep 3
grep -l '^State:[[:space:]]*Z' /proc/[0-9]*/status > "$1" 2>/dev/null; exit 0"#;
    let mut cmd = Command::new("unshare");
    cmd.env_clear()
        .envs(&s.env)
        .args([
            "--pid",
            "--fork",
            "--mount-proc",
            &bin(),
            "exec",
            "--",
            "sh",
            "-c",
            script,
            "sh",
        ])
        .arg(&zombies);
    let run = run(cmd, 30 * SEC);
    run.assert_code(0);
    assert!(zombies.exists(), "{}", run.stderr);
    assert_eq!(
        std::fs::read_to_string(&zombies).unwrap(),
        "",
        "zombies left: {}",
        run.stderr
    );
}

#[test]
fn install_copies_the_binary_into_a_volume_owned_by_another_user() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("bin");
    std::fs::create_dir(&target).unwrap();
    let mut cmd = Command::new(bin());
    // As root: install as UID 4242 into its own directory, as an init container with a
    // read-only root and an emptyDir would.
    let as_other = is_root() && Command::new("setpriv").arg("--version").output().is_ok();
    if as_other {
        std::os::unix::fs::chown(&target, Some(4242), Some(4242)).unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let exe = dir.path().join("src-vault-login");
        std::fs::copy(bin(), &exe).unwrap();
        cmd = Command::new("setpriv");
        cmd.args(["--reuid", "4242", "--regid", "4242", "--clear-groups"])
            .arg(&exe);
    }
    cmd.env_clear().arg("install").arg(&target);
    run(cmd, 30 * SEC).assert_code(0);
    let installed = target.join("vault-login");
    let meta = std::fs::metadata(&installed).unwrap();
    assert_eq!(meta.permissions().mode() & 0o7777, 0o755);
    assert_eq!(
        std::fs::read(&installed).unwrap(),
        std::fs::read(bin()).unwrap()
    );
    if as_other {
        use std::os::unix::fs::MetadataExt;
        assert_eq!(meta.uid(), 4242);
    }
    let names: Vec<_> = std::fs::read_dir(&target)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(names.len(), 1, "no temp file left: {names:?}");
    let version = Command::new(&installed).arg("--version").output().unwrap();
    assert!(String::from_utf8_lossy(&version.stdout).starts_with("vault-login "));
    // Into a directory that is not there: a usage error.
    let mut cmd = Command::new(bin());
    cmd.arg("install").arg(dir.path().join("missing"));
    run(cmd, 30 * SEC).assert_code(64);
}

#[test]
fn the_k8s_example_installs_then_runs_the_app_with_its_value() {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("k8s/deployment-exec.yaml"),
    )
    .unwrap();
    let doc: serde_json::Value = serde_yaml::from_str(&text).unwrap();
    let spec = &doc["spec"]["template"]["spec"];
    let init = &spec["initContainers"][0];
    let app = &spec["containers"][0];
    assert_eq!(init["args"], json!(["install", "/vault/bin"]));
    let command: Vec<String> = (app["command"].as_array().unwrap().iter())
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert_eq!(command[..3], ["/vault/bin/vault-login", "exec", "--"]);
    let mounts = |c: &serde_json::Value| c["volumeMounts"].to_string();
    assert!(mounts(init).contains("vault-bin") && mounts(app).contains("\"/vault/bin\""));

    // The init container's step, then the app container's command with its environment
    // (pointed at the emulator, its role and this JWT).
    let mut s = setup();
    let bin_dir = file(&s, "vault-bin");
    std::fs::create_dir(&bin_dir).unwrap();
    let mut install = Command::new(bin());
    install.arg("install").arg(&bin_dir);
    run(install, 30 * SEC).assert_code(0);
    for e in app["env"].as_array().unwrap() {
        let (name, value) = (e["name"].as_str().unwrap(), e["value"].as_str().unwrap());
        if !matches!(
            name,
            "VAULT_ADDR" | "VAULT_LOGIN_ROLE" | "VAULT_LOGIN_JWT_FILE"
        ) {
            s.set(name, value);
        }
    }
    let mut cmd = Command::new(bin_dir.join("vault-login"));
    cmd.env_clear().envs(&s.env).args(&command[1..]);
    let mut r = Running::start(cmd);
    let line = format!("DB_PASSWORD has {} characters", TUTORIAL_PASSWORD.len());
    assert!(
        wait_until(10 * SEC, || r.stdout().contains(&line)),
        "{}",
        r.stderr()
    );
    r.signal("TERM");
    let status = r.wait(10 * SEC).expect("exits with the app");
    assert_eq!(status.code(), Some(143), "{}", r.stderr());
}

/// The README's local walkthrough against the real OpenBao (`bao server -dev`, fetched on first
/// use; skipped with a line when it cannot run here, unless `VAULT_LOGIN_REQUIRE_REAL=1`): the
/// JWT in `VAULT_LOGIN_JWT`, a KV v2 field in `DB_PASSWORD`, the token in `VAULT_TOKEN` alive on
/// the server, and a new version restarting the program once.
#[test]
fn the_walkthrough_against_the_real_openbao() {
    use vault_emulator::real::Bao;
    let Some(bao) = Bao::start() else { return };
    bao.cli(&["secrets", "enable", "-path=internal", "kv-v2"]);
    bao.cli(&["kv", "put", "internal/database/config", "password=first"]);
    let policy = "path \"internal/data/database/config\" { capabilities = [\"read\"] }\n";
    bao.api(
        "PUT",
        "/v1/sys/policies/acl/app",
        Some(json!({"policy": policy})),
    );
    bao.cli(&[
        "write",
        "auth/kubernetes/role/default",
        "bound_service_account_names=default",
        "bound_service_account_namespaces=default",
        "audience=k3s",
        "token_policies=app",
        "token_ttl=3600",
    ]);
    let dir = tempfile::tempdir().unwrap();
    let starts = dir.path().join("starts");
    let mut cmd = Command::new(bin());
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("VAULT_ADDR", bao.addr())
        .env("VAULT_LOGIN_ROLE", "default")
        .env(
            "VAULT_LOGIN_JWT",
            bao.jwt("default", "default", &["k3s"], 3600),
        )
        .env(
            "VAULT_LOGIN_ENV_DB_PASSWORD",
            "internal/data/database/config#password",
        )
        .env("VAULT_LOGIN_EXEC_TOKEN", "true")
        .env("VAULT_LOGIN_SECRETS_REFRESH", "1s")
        .args(["exec", "--", "sh", "-c"])
        .arg(r#"echo "$DB_PASSWORD $VAULT_TOKEN" >> "$1"; while :; do sleep 0.05; done"#)
        .arg("sh")
        .arg(&starts);
    if let Some(ca) = bao.ca_cert() {
        cmd.env("VAULT_CACERT", ca);
    }
    let r = Running::start(cmd);
    assert!(
        wait_until(20 * SEC, || lines(&starts).len() == 1),
        "{}",
        r.stderr()
    );
    let first = lines(&starts)[0].clone();
    let (password, token) = first.split_once(' ').unwrap();
    assert_eq!(password, "first");
    assert!(bao.token_alive(token), "VAULT_TOKEN is alive on the server");
    bao.cli(&["kv", "put", "internal/database/config", "password=second"]);
    assert!(
        wait_until(20 * SEC, || lines(&starts).len() >= 2),
        "{}",
        r.stderr()
    );
    std::thread::sleep(3 * SEC);
    let all = lines(&starts);
    assert_eq!(all.len(), 2, "one restart: {all:?}");
    assert!(all[1].starts_with("second "), "{all:?}");
    println!("real OpenBao: exec started the program, restarted it once on a new KV version");
}
