//! The command line: the flags made from the declarations in [`crate::config::settings`], and clap's
//! messages folded onto one line.

use clap::error::ErrorKind;
use clap::{Arg, ArgAction, Command};

use crate::config::settings as s;

/// What clap answered instead of flags.
#[derive(Debug)]
pub enum CliError {
    /// --help or --version was asked for: the text to print.
    Help(String),
    /// Unknown flag, missing value, etc.: one line ending in "; see --help".
    Usage(String),
}

const ABOUT: &str = "Log in to Vault or OpenBao with the pod's Kubernetes service-account JWT and keep the token file fresh";
const RULES: &str = "A flag wins over its variable; an empty variable counts as unset; a BAO_* variable is read when its VAULT_* twin is unset.\n\
    Secrets to files: VAULT_LOGIN_SECRET_<NAME>=<path>, <path>#<field> or dotenv:<path> writes <dir>/<name>.\n\
    vault-login exec [flags --] <program> [args...] runs the program with VAULT_LOGIN_ENV_<VAR>=<path>#<field> (or a template) as VAR; vault-login install <dir> copies this binary to <dir>.\n\
    Templates: VAULT_LOGIN_TEMPLATE_<NAME>=<Vault Agent template> or @<file> renders <dir>/<name>; VAULT_LOGIN_TEMPLATE_FILE_<NAME>, _MODE_<NAME>, _LENIENT_<NAME> set its file name, mode, Agent's lenient missing keys.\n\
    Durations: 500ms, 30s, 5m, 1h, 1h30m or a number of seconds. Booleans: true/false, 1/0, yes/no, on/off.";

/// The command line, made from the declarations: a flag for each setting that has one, and
/// the environment-only settings after the flags.
pub fn command() -> Command {
    let mut env_only = String::from("Environment only:\n");
    let mut cmd = Command::new("vault-login")
        .bin_name("vault-login")
        .version(env!("CARGO_PKG_VERSION"))
        .about(ABOUT);
    for about in s::ALL.iter().map(|setting| setting.about()) {
        let Some(flag) = about.flag else {
            let default = about.default.map(|d| format!(" [default: {d}]"));
            let (names, help) = (about.env.join(", "), about.help());
            let default = default.unwrap_or_default();
            env_only.push_str(&format!("  {names}: {help}{default}\n"));
            continue;
        };
        let id = flag.trim_start_matches('-');
        let arg = Arg::new(id).long(id).help(about.help_line());
        cmd = cmd.arg(match about.value {
            // Values that may start with '-': a negative duration or owner (reported as such),
            // a command's arguments.
            Some(value) => arg
                .value_name(value)
                .action(ArgAction::Set)
                .allow_hyphen_values(matches!(value, "DURATION" | "UID[:GID]" | "COMMAND")),
            None => arg.action(ArgAction::SetTrue),
        });
    }
    cmd.after_help(format!("{env_only}\n{RULES}"))
}

/// Turns a clap error into help text, or a one-line usage error.
pub fn fold_error(err: clap::Error) -> CliError {
    let text = err.render().to_string();
    match err.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => CliError::Help(text),
        _ => CliError::Usage(format!("{}; see --help", redact_jwts(&fold(&text)))),
    }
}

/// Folds clap's multi-line message onto one line, dropping the usage and "try --help" lines.
fn fold(text: &str) -> String {
    let mut parts = Vec::new();
    let mut in_usage = false;
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.is_empty() {
            in_usage = false;
            continue;
        }
        if trimmed.starts_with("Usage:") {
            in_usage = true;
            continue;
        }
        if in_usage || trimmed.starts_with("For more information") {
            continue;
        }
        parts.push(
            trimmed
                .strip_prefix("error: ")
                .unwrap_or(trimmed)
                .to_string(),
        );
    }
    if parts.is_empty() {
        "invalid command line".to_string()
    } else {
        parts.join("; ")
    }
}

/// Hides quoted arguments that look like a JWT, in case one was passed on the command line by mistake.
fn redact_jwts(text: &str) -> String {
    text.split('\'')
        .enumerate()
        .map(|(i, part)| {
            if i % 2 == 1 && part.contains("eyJ") {
                "***"
            } else {
                part
            }
        })
        .collect::<Vec<_>>()
        .join("'")
}
/// The prefix of vault-login's own variables.
pub const OWN_PREFIX: &str = "VAULT_LOGIN_";

/// The `VAULT_LOGIN_*` variables among `names` that no setting reads, each with the declared
/// variable it most resembles, if any: like an unknown flag, a misspelt variable should not
/// be silently ignored. `VAULT_LOGIN_SECRET_<NAME>` variables are secrets, not settings.
pub fn unknown_variables(names: &[String]) -> Vec<(String, Option<&'static str>)> {
    let known: Vec<&'static str> = s::ALL
        .iter()
        .flat_map(|setting| setting.about().env.iter().copied())
        .filter(|e| e.starts_with(OWN_PREFIX))
        .collect();
    names
        .iter()
        .filter(|n| n.starts_with(OWN_PREFIX) && !n.starts_with(crate::secrets::SECRET_ENV_PREFIX))
        .filter(|n| !n.starts_with(crate::secrets::templates::TEMPLATE_ENV_PREFIX))
        .filter(|n| !n.starts_with(crate::secrets::certs::CERT_ENV_PREFIX))
        .filter(|n| !n.starts_with(crate::exec::ENV_PREFIX))
        .filter(|n| !known.contains(&n.as_str()))
        .map(|n| {
            let tail = &n[OWN_PREFIX.len()..];
            let closest = known
                .iter()
                .map(|k| (distance(tail, &k[OWN_PREFIX.len()..]), *k))
                .min()
                .filter(|(d, _)| *d * 2 <= tail.len())
                .map(|(_, k)| k);
            (n.clone(), closest)
        })
        .collect()
}

/// The edit distance between `a` and `b` (insertions, deletions, substitutions).
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = diagonal + usize::from(ca != *cb);
            diagonal = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(diagonal + 1);
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    #[test]
    fn edit_distance() {
        assert_eq!(distance("ROLE", "ROLE"), 0);
        assert_eq!(distance("ROEL", "ROLE"), 2);
        assert_eq!(distance("TOKEN_FIEL", "TOKEN_FILE"), 2);
        assert_eq!(distance("", "LOG"), 3);
        assert_eq!(distance("MOUNTS", "MOUNT"), 1);
        assert_eq!(distance("JWT_PATH", "JWT_FILE"), 4);
    }

    #[test]
    fn unknown_variables_with_their_closest_setting() {
        let names: Vec<String> = [
            "VAULT_LOGIN_ROLE",
            "VAULT_LOGIN_ROEL",
            "VAULT_LOGIN_SECRET_DB",
            "VAULT_LOGIN_SECRETS_REFRESH",
            "VAULT_LOGIN_JWT_PATH",
            "VAULT_LOGIN_MIN_BACKOF",
            "VAULT_LOGIN_XYZ",
            "VAULT_ADDR",
            "VAULT_ROLE",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(
            unknown_variables(&names),
            vec![
                ("VAULT_LOGIN_ROEL".to_string(), Some("VAULT_LOGIN_ROLE")),
                (
                    "VAULT_LOGIN_JWT_PATH".to_string(),
                    Some("VAULT_LOGIN_JWT_FILE")
                ),
                (
                    "VAULT_LOGIN_MIN_BACKOF".to_string(),
                    Some("VAULT_LOGIN_MIN_BACKOFF")
                ),
                ("VAULT_LOGIN_XYZ".to_string(), None),
            ]
        );
    }

    #[test]
    fn help_and_version() {
        match load_with(&["--help"], &[]) {
            Err(ConfigError::Help(text)) => {
                assert!(text.contains("Usage: vault-login"), "{text}");
                for name in [
                    "[env: VAULT_ADDR, BAO_ADDR]",
                    "[env: VAULT_LOGIN_ROLE]",
                    "[env: VAULT_LOGIN_TOKEN_FILE_MODE]",
                    "[env: VAULT_CLIENT_TIMEOUT, BAO_CLIENT_TIMEOUT]",
                    "VAULT_LOGIN_JWT",
                ] {
                    assert!(text.contains(name), "help lacks {name}: {text}");
                }
                assert!(!text.contains("--jwt "), "{text}");
            }
            other => panic!("{other:?}"),
        }
        match load_with(&["-V"], &[]) {
            Err(ConfigError::Help(text)) => {
                assert_eq!(
                    text.trim(),
                    format!("vault-login {}", env!("CARGO_PKG_VERSION"))
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn every_flag_documents_its_variable() {
        let command = command();
        for arg in command.get_arguments() {
            let id = arg.get_id().as_str();
            if id == "help" || id == "version" {
                continue;
            }
            let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
            assert!(
                help.contains("[env: "),
                "--{id} help lacks its variable: {help}"
            );
        }
    }

    #[test]
    fn usage_errors_are_one_line() {
        for args in [
            vec!["--bogus"],
            vec!["--role"],
            vec!["--role", "a", "--role", "b"],
            vec!["--once", "--once"],
            vec!["stray"],
        ] {
            match load(&args, &[]) {
                Err(ConfigError::Usage(message)) => {
                    assert!(!message.contains('\n'), "{message}");
                    assert!(message.ends_with("; see --help"), "{message}");
                    assert!(!message.starts_with("error:"), "{message}");
                    assert!(!message.contains("Usage:"), "{message}");
                }
                other => panic!("{args:?}: {other:?}"),
            }
        }
        match load(&["--bogus"], &[]) {
            Err(ConfigError::Usage(message)) => {
                assert_eq!(message, "unexpected argument '--bogus' found; see --help");
            }
            other => panic!("{other:?}"),
        }
    }
}
