//! `--once` (init container) against the Vault emulator: through the real binary, and in
//! virtual time (the real agent in-process, `common::virtual_time`) where retries and deadlines
//! would otherwise make the test wait for them.

mod common;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use common::virtual_time::Virtual;
use common::*;

#[test]
fn once_writes_the_token_with_mode_and_sends_the_right_request() {
    let s = Setup::new();
    let run = s.once(&[]);
    run.assert_code(0);
    let token = s.token().expect("token file");
    assert!(token.starts_with("s."), "{token}");
    assert!(!token.ends_with('\n'));
    assert!(s.emu.is_valid(&token));
    let meta = fs::metadata(&s.token_path).unwrap();
    assert_eq!(meta.mode() & 0o7777, 0o600);
    // Nothing but the token in the directory: no temp files left behind.
    let names: Vec<_> = fs::read_dir(s.token_path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");

    let reqs = s.emu.requests();
    assert_eq!(reqs.len(), 1, "exactly one request: {reqs:?}");
    let r = &reqs[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, "/v1/auth/kubernetes/login");
    assert_eq!(r.header("x-vault-request"), Some("true"));
    assert_eq!(r.header("x-vault-token"), None);
    assert_eq!(r.header("x-vault-namespace"), None);
    let body = r.json();
    assert_eq!(body["role"], "default");
    assert_eq!(body["jwt"], fs::read_to_string(&s.jwt_path).unwrap().trim());
    // The token and JWT never reach the logs.
    assert!(!run.stderr.contains(&token));
    assert!(!run.stderr.contains(body["jwt"].as_str().unwrap()));
    assert!(run.stderr.contains("login succeeded"), "{}", run.stderr);
    assert!(run.stdout.is_empty());
}

#[test]
fn namespace_and_nested_mount() {
    let mut s = Setup::new();
    s.emu.enable_mount_in("team-a", "k8s/prod");
    s.emu.put_role_in(
        "team-a",
        "k8s/prod",
        "app",
        Role {
            audience: Some("vault".into()),
            ..Role::default()
        },
    );
    s.set("VAULT_NAMESPACE", "team-a")
        .set("VAULT_LOGIN_MOUNT", "/k8s/prod/")
        .set("VAULT_LOGIN_ROLE", "app");
    s.once(&[]).assert_code(0);
    let reqs = s.emu.requests();
    let r = reqs.last().unwrap();
    assert_eq!(r.path, "/v1/auth/k8s/prod/login");
    assert_eq!(r.header("x-vault-namespace"), Some("team-a"));
    assert!(s.emu.is_valid(&s.token().unwrap()));
}

#[test]
fn openbao_variables_are_accepted() {
    let mut s = Setup::new();
    let addr = s.env.remove("VAULT_ADDR").unwrap();
    s.set("BAO_ADDR", addr);
    s.once(&[]).assert_code(0);
    assert!(s.emu.is_valid(&s.token().unwrap()));
}

#[test]
fn flags_work_like_env() {
    let mut s = Setup::new();
    let addr = s.env.remove("VAULT_ADDR").unwrap();
    let path = s.token_path.display().to_string();
    s.unset("VAULT_LOGIN_TOKEN_FILE");
    s.once(&[
        "--vault-addr",
        &addr,
        "--token-file",
        &path,
        "--token-file-mode",
        "0640",
    ])
    .assert_code(0);
    assert_eq!(fs::metadata(&s.token_path).unwrap().mode() & 0o7777, 0o640);
}

#[tokio::test(start_paused = true)]
async fn transient_faults_are_retried_until_success() {
    let faults = vec![
        Fault::Sealed,
        Fault::Internal,
        Fault::RateLimited {
            retry_after: Some(1),
        },
        Fault::RateLimited { retry_after: None },
        Fault::PreconditionFailed,
        Fault::Html { status: 502 },
        Fault::HtmlOk,
        Fault::Oversized,
        Fault::Reset,
        Fault::Refuse,
        Fault::Status {
            status: 473,
            errors: vec!["performance standby".into()],
        },
    ];
    for fault in faults {
        let s = Virtual::new();
        let name = format!("{fault:?}");
        s.emu.set_fault_for(fault, 2);
        let run = s.once(&[]).await;
        run.assert_code(0);
        assert!(
            s.emu.is_valid(&s.token().unwrap()),
            "{name}: token valid after recovery"
        );
        if name != "Refuse" {
            // A refused connection never reaches the request log.
            assert!(logins(&s.emu) >= 3, "{name}: retried");
        }
        assert!(
            run.stderr.contains("login failed"),
            "{name}: {}",
            run.stderr
        );
    }
}

#[test]
fn vault_down_then_up() {
    let s = Setup::new();
    s.emu.set_fault(Fault::Down);
    let mut r = s.spawn(&["--once"]);
    std::thread::sleep(Duration::from_millis(1200));
    assert!(r.wait(Duration::ZERO).is_none(), "still retrying");
    s.emu.clear_fault();
    let status = r.wait(Duration::from_secs(10)).expect("finished");
    assert!(status.success(), "{}", r.stderr());
    assert!(r.stderr().contains("connection refused"), "{}", r.stderr());
    assert!(s.emu.is_valid(&s.token().unwrap()));
}

#[test]
fn sealed_message_is_carried_verbatim() {
    let s = Setup::new();
    s.emu.set_fault_for(Fault::Sealed, 1);
    let run = s.once(&[]);
    run.assert_code(0);
    assert!(run.stderr.contains("Vault is sealed"), "{}", run.stderr);
    assert!(run.stderr.contains("503"), "{}", run.stderr);
}

#[tokio::test(start_paused = true)]
async fn retry_after_is_honoured() {
    let s = Virtual::new();
    s.emu.set_fault_for(
        Fault::RateLimited {
            retry_after: Some(2),
        },
        1,
    );
    let run = s.once(&[]).await;
    run.assert_code(0);
    let reqs = s.emu.requests();
    let gap = reqs[1].at.duration_since(reqs[0].at).unwrap();
    assert!(gap >= Duration::from_secs(2), "waited {gap:?}");
    assert!(run.stderr.contains("rate limit quota exceeded"));
}

#[tokio::test(start_paused = true)]
async fn oversized_body_is_an_error_not_an_oom() {
    let mut s = Virtual::new();
    s.set("VAULT_LOGIN_TIMEOUT", "1500ms");
    s.emu.set_fault(Fault::Oversized);
    let run = s.once(&[]).await;
    run.assert_code(1);
    assert!(run.stderr.contains("byte limit"), "{}", run.stderr);
}

#[tokio::test(start_paused = true)]
async fn slow_vault_hits_client_timeout_and_retries() {
    let mut s = Virtual::new();
    s.set("VAULT_CLIENT_TIMEOUT", "500ms");
    s.emu.set_fault_for(Fault::Slow(Duration::from_secs(3)), 1);
    let run = s.once(&[]).await;
    run.assert_code(0);
    assert!(run.stderr.contains("timed out"), "{}", run.stderr);
    // Virtual time: the client timeout and one backoff step, not the 3 s answer.
    assert!(run.elapsed < Duration::from_secs(3), "{:?}", run.elapsed);
}

#[tokio::test(start_paused = true)]
async fn permission_denied_gives_up_at_the_deadline_with_vaults_message_and_hints() {
    let mut s = Virtual::with_role(Role {
        bound_service_account_names: vec!["other".into()],
        ..Role::default()
    });
    s.set("VAULT_LOGIN_TIMEOUT", "1500ms");
    let run = s.once(&[]).await;
    run.assert_code(1);
    let last = run.stderr.lines().last().unwrap();
    assert!(last.starts_with("vault-login: gave up after"), "{last}");
    assert!(
        last.contains("service account name not authorized"),
        "{last}"
    );
    assert!(
        last.contains("system:serviceaccount:default:default"),
        "{last}"
    );
    // Virtual time: exactly the deadline.
    assert_eq!(run.elapsed, Duration::from_millis(1500));
    assert!(s.token().is_none());
}

#[tokio::test(start_paused = true)]
async fn audience_mismatch_hint_lists_the_jwt_audiences() {
    let mut s = Virtual::new();
    fs::write(&s.jwt_path, s.emu.jwt("default", "default", &["k3s"], 3600)).unwrap();
    s.set("VAULT_LOGIN_TIMEOUT", "2s");
    let run = s.once(&[]).await;
    run.assert_code(1);
    assert!(
        run.stderr.contains("invalid audience (aud) claim"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("[\"k3s\"]"), "{}", run.stderr);
}

#[tokio::test(start_paused = true)]
async fn expired_jwt_hint() {
    let mut s = Virtual::new();
    fs::write(
        &s.jwt_path,
        s.emu.jwt("default", "default", &["vault"], -600),
    )
    .unwrap();
    s.set("VAULT_LOGIN_TIMEOUT", "2s");
    let run = s.once(&[]).await;
    run.assert_code(1);
    assert!(run.stderr.contains("token is expired"), "{}", run.stderr);
    assert!(run.stderr.contains("the JWT expired"), "{}", run.stderr);
}

#[test]
fn jwt_file_appearing_late_is_awaited() {
    let s = Setup::new();
    let jwt = fs::read_to_string(&s.jwt_path).unwrap();
    fs::remove_file(&s.jwt_path).unwrap();
    let mut r = s.spawn(&["--once"]);
    r.wait_log(
        "waiting for the service-account JWT file",
        Duration::from_secs(5),
    );
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(logins(&s.emu), 0, "no login without a JWT");
    fs::write(&s.jwt_path, jwt).unwrap();
    let status = r.wait(Duration::from_secs(5)).expect("finished");
    assert!(status.success(), "{}", r.stderr());
    assert!(s.emu.is_valid(&s.token().unwrap()));
}

#[test]
fn jwt_directory_appearing_late_is_awaited() {
    let mut s = Setup::new();
    let jwt = fs::read_to_string(&s.jwt_path).unwrap();
    let late = s.dir.path().join("late/sa/token");
    s.set("VAULT_LOGIN_JWT_FILE", late.display().to_string());
    let mut r = s.spawn(&["--once"]);
    r.wait_log(
        "waiting for the service-account JWT file",
        Duration::from_secs(5),
    );
    fs::create_dir_all(late.parent().unwrap()).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    fs::write(&late, jwt).unwrap();
    let status = r.wait(Duration::from_secs(5)).expect("finished");
    assert!(status.success(), "{}", r.stderr());
}

#[tokio::test(start_paused = true)]
async fn empty_and_garbage_jwt_are_named() {
    for (content, needle) in [
        ("", "is empty"),
        ("not-a-jwt", "malformed"),
        ("a.b", "three base64url parts"),
    ] {
        let mut s = Virtual::new();
        fs::write(&s.jwt_path, content).unwrap();
        s.set("VAULT_LOGIN_TIMEOUT", "700ms");
        let run = s.once(&[]).await;
        run.assert_code(1);
        assert!(run.stderr.contains(needle), "{content:?}: {}", run.stderr);
        assert!(run.stderr.contains(&s.jwt_path.display().to_string()));
        assert_eq!(logins(&s.emu), 0, "a bad JWT is not sent");
    }
}

#[test]
fn jwt_from_env_wins_over_file() {
    let mut s = Setup::new();
    fs::write(&s.jwt_path, "garbage").unwrap();
    let jwt = s.emu.jwt("default", "default", &["vault"], 3600);
    s.set("VAULT_LOGIN_JWT", jwt.clone());
    let run = s.once(&[]);
    run.assert_code(0);
    assert_eq!(s.emu.requests()[0].json()["jwt"], jwt.as_str());
    assert!(!run.stderr.contains(&jwt));
}

#[test]
fn token_to_stdout_for_local_use() {
    let s = Setup::new();
    let run = s.once(&["--token-file", "-"]);
    run.assert_code(0);
    let token = run.stdout.trim();
    assert!(s.emu.is_valid(token), "{:?}", run.stdout);
    assert_eq!(run.stdout.lines().count(), 1);
    assert!(!run.stderr.contains(token));
}

#[test]
fn planted_symlink_is_replaced_not_followed() {
    let s = Setup::new();
    let victim = s.dir.path().join("victim");
    fs::write(&victim, "precious").unwrap();
    std::os::unix::fs::symlink(&victim, &s.token_path).unwrap();
    s.once(&[]).assert_code(0);
    assert_eq!(fs::read_to_string(&victim).unwrap(), "precious");
    assert!(fs::symlink_metadata(&s.token_path).unwrap().is_file());
}

#[test]
fn mode_is_exact_whatever_the_umask() {
    let mut s = Setup::new();
    s.set("VAULT_LOGIN_TOKEN_FILE_MODE", "0644");
    let mut cmd = std::process::Command::new("sh");
    cmd.env_clear()
        .envs(&s.env)
        .args(["-c", &format!("umask 077; exec {} --once", bin())]);
    run(cmd, Duration::from_secs(20)).assert_code(0);
    assert_eq!(fs::metadata(&s.token_path).unwrap().mode() & 0o7777, 0o644);
}

#[tokio::test(start_paused = true)]
async fn previous_token_survives_a_failed_run() {
    let mut s = Virtual::new();
    fs::write(&s.token_path, "hvs.previous").unwrap();
    s.emu.set_fault(Fault::Sealed);
    s.set("VAULT_LOGIN_TIMEOUT", "500ms");
    s.once(&[]).await.assert_code(1);
    assert_eq!(s.token().unwrap(), "hvs.previous");
}

#[test]
fn json_logs_are_one_object_per_line() {
    let mut s = Setup::new();
    s.set("VAULT_LOGIN_LOG_FORMAT", "json");
    s.emu.set_fault_for(Fault::Sealed, 1);
    let run = s.once(&[]);
    run.assert_code(0);
    let mut n = 0;
    for line in run.stderr.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|_| panic!("{line}"));
        assert!(v["level"].is_string() && v["message"].is_string(), "{line}");
        n += 1;
    }
    assert!(n >= 3);
}

/// Mounts a tmpfs with `opts` at a fresh dir; None when this machine does not allow it.
fn tmpfs(s: &Setup, opts: &str) -> Option<Mounted> {
    let dir = s
        .dir
        .path()
        .join(format!("mnt-{}", opts.replace([',', '='], "-")));
    fs::create_dir_all(&dir).unwrap();
    let ok = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", opts, "tmpfs"])
        .arg(&dir)
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    ok.then_some(Mounted(dir))
}

struct Mounted(std::path::PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn read_only_token_directory_is_reported() {
    let mut s = Setup::new();
    let Some(m) = tmpfs(&s, "ro,size=64k") else {
        eprintln!("skipped: cannot mount tmpfs here (needs root)");
        return;
    };
    s.set(
        "VAULT_LOGIN_TOKEN_FILE",
        m.0.join("token").display().to_string(),
    );
    let run = s.once(&[]);
    run.assert_code(64);
    assert!(run.stderr.contains("read-only"), "{}", run.stderr);
    assert_eq!(s.emu.requests().len(), 0);
}

#[test]
fn token_file_owner_is_applied_on_every_write() {
    let mut s = Setup::new();
    if is_root() {
        s.set("VAULT_LOGIN_TOKEN_FILE_OWNER", "4242:4343");
        s.once(&[]).assert_code(0);
        let meta = fs::metadata(&s.token_path).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (4242, 4343));
        assert_eq!(meta.mode() & 0o7777, 0o600);
    } else {
        // Without CAP_CHOWN the write fails and says so, leaving no file behind.
        s.set("VAULT_LOGIN_TOKEN_FILE_OWNER", "0:0")
            .set("VAULT_LOGIN_TIMEOUT", "500ms");
        let run = s.once(&[]);
        run.assert_code(1);
        assert!(run.stderr.contains("chown"), "{}", run.stderr);
        assert!(s.token().is_none());
    }
}

#[test]
fn vault_headers_go_with_every_request_and_stay_out_of_logs() {
    let mut s = Setup::new();
    s.set(
        "VAULT_HEADERS",
        r#"{"X-Gateway-Key":"g4t3w4y-s3cret","X-Team":"payments"}"#,
    )
    .set("VAULT_LOGIN_LOG", "trace");
    let run = s.once(&[]);
    run.assert_code(0);
    let login = s.emu.requests().pop().unwrap();
    assert_eq!(login.header("x-gateway-key"), Some("g4t3w4y-s3cret"));
    assert_eq!(login.header("x-team"), Some("payments"));
    assert_eq!(login.header("x-vault-request"), Some("true"));
    assert!(!run.stderr.contains("g4t3w4y-s3cret"), "{}", run.stderr);
    assert!(
        run.stderr.contains("headers=X-Gateway-Key,X-Team"),
        "{}",
        run.stderr
    );
}

#[test]
fn bad_vault_headers_are_configuration_errors() {
    for (value, needle) in [
        (r#"{"X-Vault-Token":"s3cret-tok"}"#, "X-Vault-"),
        (r#"{"X-Key": 42}"#, "not a string"),
        (r#"{"Host":"vault.internal"}"#, "set by the HTTP client"),
        (r#"{"bad name":"x"}"#, "not a valid header name"),
        (
            r#"{"X-Key":"line\nbreak-s3cret"}"#,
            "not allowed in a header",
        ),
        (r#"["s3cret-list"]"#, "JSON object"),
    ] {
        let mut s = Setup::new();
        s.set("VAULT_HEADERS", value);
        let run = s.once(&[]);
        run.assert_code(64);
        assert!(run.stderr.contains("VAULT_HEADERS"), "{}", run.stderr);
        assert!(run.stderr.contains(needle), "{value}: {}", run.stderr);
        assert!(!run.stderr.contains("s3cret"), "{}", run.stderr);
        assert_eq!(s.emu.requests().len(), 0);
    }
}
