//! The command line: the flags made from the declarations in [`crate::settings`], and clap's
//! messages folded onto one line.

use clap::error::ErrorKind;
use clap::{Arg, ArgAction, Command};

use crate::settings as s;

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
    Durations: 500ms, 30s, 5m, 1h, 1h30m or a number of seconds. Booleans: true/false, 1/0, yes/no, on/off.";

/// The command line, made from the declarations: a flag for each setting that has one, and
/// the environment-only settings after the flags.
pub fn command() -> Command {
    let mut env_only = String::from("Environment only:\n");
    let mut cmd = Command::new("vault-login")
        .bin_name("vault-login")
        .version(env!("CARGO_PKG_VERSION"))
        .about(ABOUT);
    for about in s::ALL {
        let Some(flag) = about.flag else {
            let default = about.default.map(|d| format!(" [default: {d}]"));
            let (names, help) = (about.env.join(", "), about.help);
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
