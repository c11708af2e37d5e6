//! Templates through the real binary against the emulator: `VAULT_LOGIN_TEMPLATE_<NAME>` (text
//! or `@file`) rendered to files with their own name and mode, parse errors refused before any
//! request (exit 64), render errors leaving the file as it was (`--once` exits 1 naming the
//! template, line:column and key or path), one read per distinct path shared by every template
//! and secret file, readiness and metrics, no refetch on a new token, and a render error
//! repeated at every refresh said in full once.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;
use vault_emulator::DynamicRole;

const SEC: Duration = Duration::from_secs(1);
const PASSWORD: &str = TUTORIAL_PASSWORD;
const DB: &str = "internal/data/database/config";

fn setup() -> Setup {
    let s = with_tutorial_secret(role(3600, 7200));
    s.emu
        .put_kv1("kv", "app", json!({"api_key": "k-1", "env": "prod"}));
    s.emu.put_kv1("kv", "prod", json!({"host": "db.prod"}));
    s.emu
        .put_policy("app", &[(DB, &["read"]), ("kv/*", &["read"])]);
    s
}

fn out(s: &Setup, name: &str) -> PathBuf {
    s.token_path.parent().unwrap().join(name)
}

fn read(s: &Setup, name: &str) -> Option<String> {
    std::fs::read_to_string(out(s, name)).ok()
}

fn reads_of(s: &Setup, path: &str) -> usize {
    let want = format!("/v1/{path}");
    s.emu.count_requests(|r| r.path == want)
}

#[test]
fn once_renders_templates_from_text_and_file_with_their_name_and_mode() {
    let mut s = setup();
    let tmpl = s.dir.path().join("app.conf.tmpl");
    std::fs::write(
        &tmpl,
        "{{ with secret \"kv/app\" }}key={{ .Data.api_key }}\n{{ with secret (printf \"kv/%s\" .Data.env) }}host={{ .Data.host }}\n{{ end }}{{ end }}",
    )
    .unwrap();
    s.set(
        "VAULT_LOGIN_TEMPLATE_DB_URL",
        format!("{{{{ with secret \"{DB}\" }}}}postgres://{{{{ .Data.data.username }}}}:{{{{ .Data.data.password }}}}@db/app{{{{ end }}}}"),
    )
    .set("VAULT_LOGIN_TEMPLATE_APP", format!("@{}", tmpl.display()))
    .set("VAULT_LOGIN_TEMPLATE_FILE_APP", "app.conf")
    .set("VAULT_LOGIN_TEMPLATE_MODE_APP", "0640")
    .set("VAULT_LOGIN_SECRET_DB", DB);
    let run = s.once(&[]);
    run.assert_code(0);
    assert_eq!(
        read(&s, "db_url").unwrap(),
        format!("postgres://db-readonly-username:{PASSWORD}@db/app")
    );
    assert_eq!(read(&s, "app.conf").unwrap(), "key=k-1\nhost=db.prod\n");
    let mode = |n: &str| std::fs::metadata(out(&s, n)).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode("app.conf"), 0o640);
    assert_eq!(mode("db_url"), 0o600, "the token file's mode by default");
    // The secret file and the template share one read; the computed path is read once too.
    assert_eq!(reads_of(&s, DB), 1, "{}", run.stderr);
    assert_eq!(reads_of(&s, "kv/app"), 1);
    assert_eq!(reads_of(&s, "kv/prod"), 1);
    assert!(!run.stderr.contains(PASSWORD), "{}", run.stderr);
}

#[test]
fn parse_errors_exit_64_naming_the_variable_and_place_before_any_request() {
    for (vars, needle) in [
        (
            vec![("VAULT_LOGIN_TEMPLATE_APP", "ok\n  {{ .Data.x")],
            "VAULT_LOGIN_TEMPLATE_APP: line 2, column",
        ),
        (
            vec![("VAULT_LOGIN_TEMPLATE_APP", "{{ file \"/etc/passwd\" }}")],
            "VAULT_LOGIN_TEMPLATE_APP: line 1, column 3: function \"file\" is refused",
        ),
        (
            vec![("VAULT_LOGIN_TEMPLATE_APP", "{{ nosuch 1 }}")],
            "function \"nosuch\" not defined",
        ),
        (
            vec![("VAULT_LOGIN_TEMPLATE_FILE_APP", "app.conf")],
            "VAULT_LOGIN_TEMPLATE_FILE_APP: sets the file of template \"APP\", but VAULT_LOGIN_TEMPLATE_APP is not set",
        ),
        (
            vec![("VAULT_LOGIN_TEMPLATE_APP", "@/nonexistent/app.tmpl")],
            "VAULT_LOGIN_TEMPLATE_APP: cannot read the template file /nonexistent/app.tmpl",
        ),
        (
            vec![
                ("VAULT_LOGIN_TEMPLATE_APP", "x"),
                ("VAULT_LOGIN_SECRET_APP", "kv/app"),
            ],
            "also writes",
        ),
    ] {
        let mut s = setup();
        for (k, v) in &vars {
            s.set(k, *v);
        }
        let run = s.once(&[]);
        run.assert_code(64);
        assert!(run.stderr.contains(needle), "{needle}: {}", run.stderr);
        assert_eq!(
            run.stderr.trim_end().lines().count(),
            1,
            "one line: {}",
            run.stderr
        );
        assert_eq!(s.emu.requests().len(), 0, "no request before the check");
    }
}

#[test]
fn render_errors_keep_the_file_and_once_exits_1_naming_template_place_and_key() {
    for (template, needles) in [
        (
            format!("user={{{{ with secret \"{DB}\" }}}}{{{{ .Data.data.username }}}}\nport={{{{ .Data.data.port }}}}{{{{ end }}}}"),
            vec!["template: app:2:", "map has no entry for key \".Data.data.port\""],
        ),
        (
            format!("{{{{ with secret \"{DB}\" }}}}{{{{ .Data.data.password.x }}}}{{{{ end }}}}"),
            vec!["template: app:1:", "can't evaluate field x in type string"],
        ),
        (
            "{{ with secret \"internal/data/other\" }}{{ .Data.data.x }}{{ end }}".to_string(),
            vec!["internal/data/other", "permission denied"],
        ),
    ] {
        let mut s = setup();
        std::fs::write(out(&s, "app"), "last good\n").unwrap();
        s.set("VAULT_LOGIN_TEMPLATE_APP", &template)
            .set("VAULT_LOGIN_TIMEOUT", "2s");
        let run = s.once(&[]);
        run.assert_code(1);
        let last = run.stderr.trim_end().lines().last().unwrap_or_default();
        for needle in &needles {
            assert!(last.contains(needle), "{needle}: {}", run.stderr);
        }
        assert!(last.contains("VAULT_LOGIN_TEMPLATE_APP"), "{}", run.stderr);
        assert_eq!(read(&s, "app").unwrap(), "last good\n", "file untouched");
        assert!(!run.stderr.contains(PASSWORD), "{}", run.stderr);
        assert!(!run.stderr.contains("<no value>"));
    }
}

#[test]
fn lenient_templates_print_no_value_as_agent_does() {
    let mut s = setup();
    s.set(
        "VAULT_LOGIN_TEMPLATE_APP",
        format!("{{{{ with secret \"{DB}\" }}}}port={{{{ .Data.data.port }}}}{{{{ end }}}}"),
    )
    .set("VAULT_LOGIN_TEMPLATE_LENIENT_APP", "true");
    s.once(&[]).assert_code(0);
    assert_eq!(read(&s, "app").unwrap(), "port=<no value>");
}

/// 100 templates over 20 KV v1 paths (each template reads three of them, one computed).
fn hundred_templates(s: &mut Setup) {
    for p in 0..20 {
        s.emu.put_kv1(
            "kv",
            &format!("p{p}"),
            json!({"v": format!("value-{p}"), "next": format!("p{}", (p + 1) % 20)}),
        );
    }
    for t in 0..100 {
        let (a, b) = (t % 20, (t * 7) % 20);
        s.set(
            &format!("VAULT_LOGIN_TEMPLATE_T{t}"),
            format!("{{{{ with secret \"kv/p{a}\" }}}}{{{{ .Data.v }}}} {{{{ with secret (printf \"kv/%s\" .Data.next) }}}}{{{{ .Data.v }}}}{{{{ end }}}}{{{{ end }}}} {{{{ (secret \"kv/p{b}\").Data.v }}}}\n"),
        );
    }
}

#[test]
fn a_hundred_templates_over_twenty_paths_cost_one_read_per_path_per_refresh() {
    let mut s = setup();
    hundred_templates(&mut s);
    let run = s.once(&[]);
    run.assert_code(0);
    for p in 0..20 {
        assert_eq!(
            reads_of(&s, &format!("kv/p{p}")),
            1,
            "kv/p{p}: {}",
            run.stderr
        );
    }
    assert_eq!(read(&s, "t21").unwrap(), "value-1 value-2 value-7\n");

    // The sidecar: every path read again each refresh (1 s ± 10 %), files not rewritten.
    s.emu.clear_requests();
    s.set("VAULT_LOGIN_SECRETS_REFRESH", "1s");
    let inode = std::fs::metadata(out(&s, "t0")).unwrap().ino();
    let started = Instant::now();
    let r = s.spawn(&[]);
    assert!(
        wait_until(15 * SEC, || (0..20)
            .all(|p| reads_of(&s, &format!("kv/p{p}")) >= 4)),
        "{}",
        r.stderr()
    );
    let elapsed = started.elapsed().as_secs_f64();
    // At most one read per path per 0.9 s (the shortest jittered interval), plus the first.
    let bound = 2 + (elapsed / 0.9) as usize;
    for p in 0..20 {
        let n = reads_of(&s, &format!("kv/p{p}"));
        assert!(
            n <= bound,
            "kv/p{p} read {n} times in {elapsed:.1}s: {}",
            r.stderr()
        );
    }
    // The --once run's files already hold what this process renders: none is rewritten.
    let writes = r.stderr().matches("template rendered").count();
    assert_eq!(writes, 0, "the files are left alone: {}", r.stderr());
    assert_eq!(std::fs::metadata(out(&s, "t0")).unwrap().ino(), inode);
}

#[test]
fn readiness_and_metrics_follow_template_renders_and_a_fix_in_vault_heals() {
    let mut s = setup();
    let port = free_port();
    s.set("VAULT_LOGIN_LISTEN", format!("127.0.0.1:{port}"))
        .set("VAULT_LOGIN_SECRETS_REFRESH", "1s")
        .set(
            "VAULT_LOGIN_TEMPLATE_APP",
            format!("{{{{ with secret \"{DB}\" }}}}{{{{ .Data.data.password }}}}:{{{{ .Data.data.port }}}}{{{{ end }}}}"),
        );
    let r = s.spawn(&[]);
    assert!(
        wait_until(10 * SEC, || {
            http_get(port, "/readyz")
                .is_some_and(|(_, b)| b.contains("template app not rendered yet: "))
        }),
        "{}",
        r.stderr()
    );
    let (code, body) = http_get(port, "/readyz").unwrap();
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("template: app:1:"), "{body}");
    let (_, metrics) = http_get(port, "/metrics").unwrap();
    assert!(
        metrics.contains("vault_login_template_renders_total{template=\"app\",result=\"failure\"}"),
        "{metrics}"
    );
    assert!(
        !out(&s, "app").exists(),
        "nothing written on a failed render"
    );

    s.emu.put_kv2(
        "internal",
        "database/config",
        json!({"username": "u", "password": PASSWORD, "port": 5432}),
    );
    assert!(
        wait_until(10 * SEC, || read(&s, "app").as_deref()
            == Some(&format!("{PASSWORD}:5432"))),
        "{}",
        r.stderr()
    );
    assert!(
        wait_until(5 * SEC, || http_get(port, "/readyz")
            .is_some_and(|(c, _)| c == 200)),
        "{}",
        r.stderr()
    );
    let (_, metrics) = http_get(port, "/metrics").unwrap();
    assert!(
        metrics.contains("vault_login_template_renders_total{template=\"app\",result=\"success\"}"),
        "{metrics}"
    );
    for text in [metrics, r.stderr()] {
        assert!(!text.contains(PASSWORD), "{text}");
    }
}

#[test]
fn a_new_token_neither_refetches_nor_rewrites_static_secrets() {
    let mut s = setup();
    s.set(
        "VAULT_LOGIN_TEMPLATE_APP",
        "{{ (secret \"kv/app\").Data.api_key }}",
    )
    .set("VAULT_LOGIN_SECRET_DB", DB);
    let mut r = s.spawn(&[]);
    assert!(
        wait_until(10 * SEC, || read(&s, "app").is_some()
            && read(&s, "db").is_some()),
        "{}",
        r.stderr()
    );
    let inode = std::fs::metadata(out(&s, "app")).unwrap().ino();
    r.signal("HUP");
    assert!(
        wait_until(10 * SEC, || logins(&s.emu) >= 2),
        "{}",
        r.stderr()
    );
    let first = wait_token(&s);
    assert!(wait_until(5 * SEC, || s.emu.is_valid(&first)));
    // Give a refetch every chance to happen, then check there was none.
    std::thread::sleep(SEC);
    assert_eq!(reads_of(&s, "kv/app"), 1, "{}", r.stderr());
    assert_eq!(reads_of(&s, DB), 1, "{}", r.stderr());
    assert_eq!(std::fs::metadata(out(&s, "app")).unwrap().ino(), inode);
    r.signal("TERM");
    assert!(r.wait(5 * SEC).is_some());
}

#[test]
fn a_render_error_repeated_at_every_refresh_is_said_in_full_once_then_counted() {
    let mut s = setup();
    s.set("VAULT_LOGIN_SECRETS_REFRESH", "1s").set(
        "VAULT_LOGIN_TEMPLATE_APP",
        format!("{{{{ with secret \"{DB}\" }}}}{{{{ .Data.data.port }}}}{{{{ end }}}}"),
    );
    let r = s.spawn(&[]);
    let failures = |text: &str| -> (usize, usize) {
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("template not rendered"))
            .collect();
        let short = lines
            .iter()
            .filter(|l| l.contains("(the same error as above, "))
            .count();
        (lines.len() - short, short)
    };
    assert!(
        wait_until(30 * SEC, || failures(&r.stderr()).1 >= 3),
        "{}",
        r.stderr()
    );
    let text = r.stderr();
    assert_eq!(failures(&text).0, 1, "said in full once: {text}");
    let full = text
        .lines()
        .find(|l| l.contains("template not rendered"))
        .unwrap();
    assert!(
        full.contains("map has no entry for key \".Data.data.port\""),
        "{full}"
    );
    assert!(
        text.contains("(the same error as above, 3 times in a row)"),
        "{text}"
    );

    // It renders again: the run of repeats ends, and the next failure is said in full.
    s.emu.put_kv2(
        "internal",
        "database/config",
        json!({"username": "u", "password": PASSWORD, "port": 5432}),
    );
    assert!(
        wait_until(10 * SEC, || read(&s, "app").as_deref() == Some("5432")),
        "{}",
        r.stderr()
    );
    s.emu.put_kv2(
        "internal",
        "database/config",
        json!({"username": "u", "password": PASSWORD}),
    );
    assert!(
        wait_until(10 * SEC, || failures(&r.stderr()).0 >= 2),
        "{}",
        r.stderr()
    );
    assert_eq!(
        read(&s, "app").as_deref(),
        Some("5432"),
        "last good content"
    );
    assert!(!r.stderr().contains(PASSWORD));
}

#[test]
fn a_restarted_sidecar_leaves_files_that_hold_their_content_and_runs_no_hook() {
    let mut s = setup();
    let hook = s
        .token_path
        .parent()
        .unwrap()
        .with_file_name("hook-runs.txt");
    s.set(
        "VAULT_LOGIN_TEMPLATE_APP",
        "{{ (secret \"kv/app\").Data.api_key }}",
    )
    .set("VAULT_LOGIN_TEMPLATE_MODE_APP", "0640")
    .set("VAULT_LOGIN_SECRET_DB", DB)
    .set(
        "VAULT_LOGIN_ON_CHANGE",
        format!("/bin/sh -c \"echo run >> '{}'\"", hook.display()),
    );
    let runs = || {
        std::fs::read_to_string(&hook)
            .map(|t| t.lines().count())
            .unwrap_or(0)
    };
    let mut first = s.spawn(&[]);
    assert!(
        wait_until(10 * SEC, || read(&s, "app").is_some()
            && read(&s, "db").is_some()
            && runs() >= 1),
        "{}",
        first.stderr()
    );
    // Let the first run's hooks finish before counting them.
    std::thread::sleep(SEC);
    let hooks_before = runs();
    let stamp = |name: &str| {
        let m = std::fs::metadata(out(&s, name)).unwrap();
        (m.ino(), m.mtime(), m.mtime_nsec(), m.mode() & 0o777)
    };
    let (app, db) = (stamp("app"), stamp("db"));
    assert_eq!(app.3, 0o640);

    // A crash: no revocation, no clean-up; the files stay on the volume.
    first.signal("KILL");
    assert!(first.wait(5 * SEC).is_some());
    let second = s.spawn(&[]);
    assert!(
        wait_until(10 * SEC, || reads_of(&s, "kv/app") >= 2
            && reads_of(&s, DB) >= 2),
        "{}",
        second.stderr()
    );
    // Give a rewrite or a hook every chance to happen, then check there was none.
    std::thread::sleep(2 * SEC);
    assert!(
        second.stderr().contains("adopt"),
        "the token is adopted: {}",
        second.stderr()
    );
    assert_eq!(stamp("app"), app, "{}", second.stderr());
    assert_eq!(stamp("db"), db, "{}", second.stderr());
    assert_eq!(runs(), hooks_before, "no hook: {}", second.stderr());
    for line in ["template rendered", "secret written"] {
        assert!(
            !second.stderr().contains(line),
            "{line}: {}",
            second.stderr()
        );
    }

    // A file that no longer holds its content is rewritten (and the hook runs).
    std::fs::write(out(&s, "app"), "stale").unwrap();
    std::fs::set_permissions(out(&s, "app"), std::fs::Permissions::from_mode(0o640)).unwrap();
    drop(second);
    let third = s.spawn(&[]);
    assert!(
        wait_until(10 * SEC, || read(&s, "app").as_deref() == Some("k-1")),
        "{}",
        third.stderr()
    );
    assert!(
        wait_until(10 * SEC, || runs() > hooks_before),
        "{}",
        third.stderr()
    );
    assert_eq!(stamp("db"), db, "{}", third.stderr());
}

/// The lease renewals of leases under `prefix` (`database/creds/prod/`).
fn renewals_of(s: &Setup, prefix: &str) -> usize {
    s.emu.count_requests(|r| {
        r.path == "/v1/sys/leases/renew"
            && r.json()["lease_id"]
                .as_str()
                .is_some_and(|id| id.starts_with(prefix))
    })
}

#[test]
fn a_path_no_template_reads_any_more_is_neither_read_nor_renewed_and_comes_back_fresh() {
    let mut s = setup();
    s.emu.put_policy(
        "app",
        &[("kv/*", &["read"]), ("database/creds/*", &["read"])],
    );
    s.emu
        .put_kv1("kv", "staging", json!({"host": "db.staging"}));
    // Short leases, so renewals come every two seconds or so.
    let leases = DynamicRole {
        default_ttl: Duration::from_secs(3),
        max_ttl: Duration::from_secs(3600),
        renewable: true,
    };
    for env in ["prod", "staging"] {
        s.emu.put_dynamic_role("database", env, leases.clone());
    }
    // Both templates' second read is computed from kv/app's answer.
    s.set("VAULT_LOGIN_SECRETS_REFRESH", "1s")
        .set(
            "VAULT_LOGIN_TEMPLATE_APP",
            "{{ with secret \"kv/app\" }}{{ with secret (printf \"kv/%s\" .Data.env) }}host={{ .Data.host }}{{ end }}{{ end }}",
        )
        .set(
            "VAULT_LOGIN_TEMPLATE_CREDS",
            "{{ with secret \"kv/app\" }}{{ with secret (printf \"database/creds/%s\" .Data.env) }}{{ .LeaseID }}{{ end }}{{ end }}",
        );
    let r = s.spawn(&[]);
    let lease_of = |s: &Setup| read(s, "creds").unwrap_or_default();
    assert!(
        wait_until(10 * SEC, || read(&s, "app").as_deref()
            == Some("host=db.prod")
            && lease_of(&s).starts_with("database/creds/prod/")),
        "{}",
        r.stderr()
    );
    assert!(
        wait_until(10 * SEC, || renewals_of(&s, "database/creds/prod/") >= 1),
        "the prod lease is renewed while used: {}",
        r.stderr()
    );

    // kv/app now names staging: both templates move to the staging paths.
    s.emu
        .put_kv1("kv", "app", json!({"api_key": "k-1", "env": "staging"}));
    assert!(
        wait_until(10 * SEC, || read(&s, "app").as_deref()
            == Some("host=db.staging")
            && lease_of(&s).starts_with("database/creds/staging/")),
        "{}",
        r.stderr()
    );
    let retired = |path: &str| {
        r.stderr()
            .lines()
            .any(|l| l.contains("no template reads this path any more") && l.contains(path))
    };
    assert!(
        wait_until(5 * SEC, || retired("kv/prod")
            && retired("database/creds/prod")),
        "{}",
        r.stderr()
    );
    let (kv_prod, creds_prod) = (reads_of(&s, "kv/prod"), reads_of(&s, "database/creds/prod"));
    let prod_renewals = renewals_of(&s, "database/creds/prod/");
    let (app_reads, staging_renewals) = (
        reads_of(&s, "kv/app"),
        renewals_of(&s, "database/creds/staging/"),
    );
    // Two refreshes of kv/app, and a renewal of the lease in use, later...
    assert!(
        wait_until(15 * SEC, || reads_of(&s, "kv/app") >= app_reads + 2
            && renewals_of(&s, "database/creds/staging/") > staging_renewals),
        "{}",
        r.stderr()
    );
    // ...the retired paths were not read again, nor the old lease renewed or revoked.
    assert_eq!(reads_of(&s, "kv/prod"), kv_prod, "{}", r.stderr());
    assert_eq!(reads_of(&s, "database/creds/prod"), creds_prod);
    assert_eq!(renewals_of(&s, "database/creds/prod/"), prod_renewals);
    let revokes = s
        .emu
        .count_requests(|r| r.path.starts_with("/v1/sys/leases/revoke"));
    assert_eq!(revokes, 0, "a dropped lease is left to expire");

    // Back to prod, whose secret changed meanwhile: read afresh, not the forgotten answer.
    s.emu.put_kv1("kv", "prod", json!({"host": "db.prod2"}));
    s.emu
        .put_kv1("kv", "app", json!({"api_key": "k-1", "env": "prod"}));
    assert!(
        wait_until(10 * SEC, || read(&s, "app").as_deref()
            == Some("host=db.prod2")),
        "{}",
        r.stderr()
    );
    assert!(reads_of(&s, "kv/prod") > kv_prod);
    assert!(r.stderr().contains("a template reads this path again"));
    assert!(
        wait_until(10 * SEC, || lease_of(&s)
            .starts_with("database/creds/prod/")
            && renewals_of(&s, "database/creds/prod/") > prod_renewals),
        "new prod credentials, renewed again: {}",
        r.stderr()
    );
}
