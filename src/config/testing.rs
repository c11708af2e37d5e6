//! Helpers for the configuration's tests: load a configuration from flags and variables given
//! as lists (never the process environment), and check its errors' shape.

use std::collections::HashMap;
use std::time::Duration;

pub(super) use super::{Config, ConfigError};

pub(super) const ADDR: &str = "https://vault.example:8200";
/// A JWT-shaped value, to check it never shows.
pub(super) const A_JWT: &str = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW0ifQ.c2lnbmF0dXJl";

pub(super) fn load_with(args: &[&str], vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
        .collect();
    let names: Vec<String> = map.keys().cloned().collect();
    let env = move |name: &str| map.get(name).cloned();
    let argv = std::iter::once("vault-login").chain(args.iter().copied());
    Config::load_with_names(argv, &env, &names)
}

/// Loads with the two required settings present in the environment.
pub(super) fn load(args: &[&str], vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let mut all = vec![("VAULT_ADDR", ADDR), ("VAULT_LOGIN_ROLE", "app")];
    all.extend_from_slice(vars);
    load_with(args, &all)
}

pub(super) fn ok(args: &[&str], vars: &[(&str, &str)]) -> Config {
    match load(args, vars) {
        Ok(config) => config,
        Err(e) => panic!("expected a config for {args:?} {vars:?}, got {e}"),
    }
}

/// The source name and problem of an `Invalid` error, after checking the message's shape.
pub(super) fn bad(args: &[&str], vars: &[(&str, &str)]) -> (String, String) {
    match load(args, vars) {
        Err(ConfigError::Invalid {
            source_name,
            problem,
        }) => {
            check_problem(&problem);
            (source_name, problem)
        }
        other => panic!("expected Invalid for {args:?} {vars:?}, got {other:?}"),
    }
}

pub(super) fn check_problem(problem: &str) {
    assert!(!problem.contains('\n'), "multi-line problem: {problem}");
    assert!(!problem.ends_with('.'), "trailing period: {problem}");
    let first = problem.chars().next().unwrap();
    assert!(!first.is_uppercase(), "not lowercase: {problem}");
    assert!(!problem.contains(A_JWT), "leaks the jwt: {problem}");
}

/// Asserts that `value` in env var `name` (and in `flag`) is rejected, naming the source and quoting the value.
pub(super) fn rejects(name: &str, flag: &str, value: &str, needle: &str) {
    let (source, problem) = bad(&[], &[(name, value)]);
    assert_eq!(source, name, "{problem}");
    assert!(
        problem.contains(&format!("{value:?}")),
        "{problem} does not quote {value:?}"
    );
    assert!(
        problem.contains(needle),
        "{problem} does not say {needle:?}"
    );
    let flag_arg = format!("{flag}={value}");
    let (source, problem) = bad(&[&flag_arg], &[]);
    assert_eq!(source, flag, "{problem}");
    assert!(
        problem.contains(needle),
        "{problem} does not say {needle:?}"
    );
}

pub(super) fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

pub(super) fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

pub(super) fn summary_has(c: &Config, part: &str) -> bool {
    c.summary().split(' ').any(|field| field == part)
}
