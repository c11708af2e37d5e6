//! Every bad configuration exits 64 with one line naming the input, before any network call.

mod common;

use std::fs;

use common::*;

fn expect_usage(s: &Setup, args: &[&str], needles: &[&str]) {
    let run = s.once(args);
    run.assert_code(64);
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "exactly one line: {:?}", run.stderr);
    for n in needles {
        assert!(lines[0].contains(n), "{n:?} not in {:?}", lines[0]);
    }
    assert!(!run.stderr.contains("panicked"));
    assert_eq!(
        s.emu.requests().len(),
        0,
        "no network call for {args:?} {needles:?}"
    );
}

#[test]
fn missing_and_bad_values() {
    let cases: Vec<(&str, Option<&str>, Vec<&str>)> = vec![
        ("VAULT_ADDR", None, vec!["VAULT_ADDR", "required"]),
        ("VAULT_ADDR", Some(""), vec!["VAULT_ADDR", "required"]),
        ("VAULT_ADDR", Some("not a url"), vec!["VAULT_ADDR"]),
        (
            "VAULT_ADDR",
            Some("ftp://vault:8200"),
            vec!["VAULT_ADDR", "ftp"],
        ),
        (
            "VAULT_LOGIN_ROLE",
            None,
            vec!["VAULT_LOGIN_ROLE", "required"],
        ),
        (
            "VAULT_LOGIN_TOKEN_FILE_MODE",
            Some("0999"),
            vec!["VAULT_LOGIN_TOKEN_FILE_MODE", "0999"],
        ),
        (
            "VAULT_LOGIN_TOKEN_FILE_MODE",
            Some("01777"),
            vec!["VAULT_LOGIN_TOKEN_FILE_MODE"],
        ),
        (
            "VAULT_LOGIN_TOKEN_FILE_OWNER",
            Some("root"),
            vec!["VAULT_LOGIN_TOKEN_FILE_OWNER", "root"],
        ),
        (
            "VAULT_LOGIN_TIMEOUT",
            Some("5 minutes"),
            vec!["VAULT_LOGIN_TIMEOUT", "duration"],
        ),
        (
            "VAULT_LOGIN_MIN_BACKOFF",
            Some("-1s"),
            vec!["VAULT_LOGIN_MIN_BACKOFF"],
        ),
        (
            "VAULT_LOGIN_MIN_BACKOFF",
            Some("10m"),
            vec!["VAULT_LOGIN_MIN_BACKOFF", "VAULT_LOGIN_MAX_BACKOFF"],
        ),
        (
            "VAULT_CLIENT_TIMEOUT",
            Some("soon"),
            vec!["VAULT_CLIENT_TIMEOUT"],
        ),
        (
            "VAULT_PROXY_ADDR",
            Some("socks5://proxy:1080"),
            vec!["VAULT_PROXY_ADDR", "socks5", "http://"],
        ),
        (
            "HTTPS_PROXY",
            Some("http://"),
            vec!["HTTPS_PROXY", "proxy url"],
        ),
        (
            "VAULT_SKIP_VERIFY",
            Some("maybe"),
            vec!["VAULT_SKIP_VERIFY", "maybe"],
        ),
        (
            "VAULT_LOGIN_LOG_FORMAT",
            Some("xml"),
            vec!["VAULT_LOGIN_LOG_FORMAT", "xml"],
        ),
        ("VAULT_LOGIN_LOG", Some("info,[[["), vec!["VAULT_LOGIN_LOG"]),
        (
            "VAULT_CACERT",
            Some("/nonexistent/ca.pem"),
            vec!["VAULT_CACERT", "/nonexistent/ca.pem"],
        ),
        (
            "VAULT_CAPATH",
            Some("/nonexistent/dir"),
            vec!["VAULT_CAPATH"],
        ),
        (
            "VAULT_CLIENT_KEY",
            Some("/etc/hostname"),
            vec!["VAULT_CLIENT_KEY", "VAULT_CLIENT_CERT"],
        ),
        (
            "VAULT_LOGIN_TOKEN_FILE",
            Some("/nonexistent/dir/token"),
            vec!["VAULT_LOGIN_TOKEN_FILE", "/nonexistent/dir"],
        ),
    ];
    for (var, value, needles) in cases {
        let mut s = Setup::new();
        match value {
            Some(v) => s.set(var, v),
            None => s.unset(var),
        };
        expect_usage(&s, &[], &needles);
    }
}

#[test]
fn a_misspelt_required_variable_is_named_in_the_error() {
    let mut s = Setup::new();
    let role = s.env["VAULT_LOGIN_ROLE"].clone();
    s.unset("VAULT_LOGIN_ROLE").set("VAULT_LOGIN_ROEL", role);
    expect_usage(
        &s,
        &[],
        &[
            "VAULT_LOGIN_ROLE: required",
            "VAULT_LOGIN_ROEL is set: a typo?",
        ],
    );
}

#[test]
fn misspelt_variables_are_warned_of_and_the_run_goes_on() {
    let mut s = Setup::new();
    s.set("VAULT_LOGIN_TOKEN_FIEL", "/tmp/elsewhere")
        .set("VAULT_LOGIN_FROBNICATE", "1")
        .set("VAULT_LOGIN_SECRETS_DRI", "/tmp");
    let run = s.once(&[]);
    run.assert_code(0);
    for line in [
        "VAULT_LOGIN_TOKEN_FIEL is not a vault-login setting and is ignored; did you mean VAULT_LOGIN_TOKEN_FILE?",
        "VAULT_LOGIN_SECRETS_DRI is not a vault-login setting and is ignored; did you mean VAULT_LOGIN_SECRETS_DIR?",
        "VAULT_LOGIN_FROBNICATE is not a vault-login setting and is ignored; see --help",
    ] {
        assert!(run.stderr.contains(line), "{line:?} not in {}", run.stderr);
    }
    assert!(s.token().is_some(), "{}", run.stderr);
}

#[test]
fn unknown_flag_is_a_usage_error() {
    let s = Setup::new();
    expect_usage(&s, &["--frobnicate"], &["--frobnicate"]);
}

#[test]
fn token_path_that_is_a_directory() {
    let s = Setup::new();
    fs::create_dir(&s.token_path).unwrap();
    expect_usage(&s, &[], &["VAULT_LOGIN_TOKEN_FILE: ", "is a directory"]);
    // Given as a flag, the error names the flag.
    let mut s = Setup::new();
    s.unset("VAULT_LOGIN_TOKEN_FILE");
    fs::create_dir(&s.token_path).unwrap();
    let path = s.token_path.display().to_string();
    let run = s.once(&["--token-file", &path]);
    run.assert_code(64);
    assert!(run.stderr.contains("--token-file: "), "{}", run.stderr);
    assert!(
        !run.stderr.contains("configuration: VAULT_LOGIN_TOKEN_FILE"),
        "{}",
        run.stderr
    );
}

#[test]
fn ca_file_without_certificates() {
    let mut s = Setup::new();
    let ca = s.dir.path().join("ca.pem");
    fs::write(&ca, "hello").unwrap();
    s.set("VAULT_CACERT", ca.display().to_string());
    expect_usage(&s, &[], &["VAULT_CACERT"]);
}

#[test]
fn help_and_version_exit_zero() {
    let s = Setup::new();
    let run = run(s.command(&["--help"]), std::time::Duration::from_secs(10));
    run.assert_code(0);
    assert!(run.stdout.contains("VAULT_LOGIN_ROLE"));
    let run = common::run(
        s.command(&["--version"]),
        std::time::Duration::from_secs(10),
    );
    run.assert_code(0);
    assert!(run.stdout.contains(env!("CARGO_PKG_VERSION")));
}
