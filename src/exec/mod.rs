//! `vault-login exec -- <program>`: the program runs as a child with its secrets in its
//! environment, while the token loop keeps the token and leases valid.
//!
//! The environment values are another output of the shared reads (beside the secret files and
//! the templates): the agent renders them into an [`env::Environment`] instead of files, and
//! hands the [`supervisor::Supervisor`] the whole environment once per batch of changes. Its
//! parts: `env` (the `VAULT_LOGIN_ENV_<VAR>` specs and the rendered values), `supervisor`
//! (starting, signalling, stopping and restarting the child, its exit code), `reaper` (zombies,
//! when vault-login is PID 1) and `install` (`vault-login install <dir>`).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::hooks::AppSignal;

pub mod env;
pub mod install;
pub mod reaper;
pub mod supervisor;

pub use env::{ChildEnv, EnvSpec, Environment, Incomplete, ENV_PREFIX};
pub use supervisor::Supervisor;

/// Exit code when the program's end cannot be learned (the crate's runtime-failure code;
/// repeated because `error` reports this module's errors).
pub const EXIT_UNKNOWN: i32 = 1;
/// Exit code when the program is found but cannot be run (the shells' convention).
pub const EXIT_NOT_EXECUTABLE: i32 = 126;
/// Exit code when the program is not found (the shells' convention).
pub const EXIT_NOT_FOUND: i32 = 127;

/// What to do with a running child when its environment changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Restart {
    /// Stop it with the stop signal (then SIGKILL after the timeout) and start it again.
    Always,
    /// Keep it running on the stale environment, and say so.
    Never,
    /// Send it the stop signal only (an app that re-reads a file itself).
    Signal,
}

/// Parses `always`, `never` or `signal`.
pub fn parse_restart(s: &str) -> Result<Restart, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "always" => Ok(Restart::Always),
        "never" => Ok(Restart::Never),
        "signal" => Ok(Restart::Signal),
        _ => Err(format!("{s:?} is not always, never or signal")),
    }
}

/// `vault-login exec`'s settings, assembled by `config`.
#[derive(Clone, Debug)]
pub struct ExecSettings {
    /// The program, as given (a name looked up in `PATH`, or a path).
    pub program: OsString,
    /// Its arguments.
    pub args: Vec<OsString>,
    /// What a changed environment does to the running child.
    pub restart: Restart,
    /// The signal that stops the child (and, with [`Restart::Signal`], tells it to reload).
    pub stop_signal: AppSignal,
    /// How long a stopped child may take before it is killed.
    pub stop_timeout: Duration,
    /// Whether the child gets `VAULT_TOKEN` (and `VAULT_ADDR`, `VAULT_NAMESPACE`).
    pub pass_token: bool,
    /// The `VAULT_LOGIN_ENV_<VAR>` values.
    pub values: Vec<EnvSpec>,
}

/// Why the program cannot be started: the exit code (126 or 127) and the one line.
#[derive(Debug, PartialEq, Eq)]
pub struct NotRunnable {
    /// [`EXIT_NOT_FOUND`] or [`EXIT_NOT_EXECUTABLE`].
    pub code: i32,
    /// What is wrong and what to do.
    pub message: String,
}

/// Finds `program` as `execvp` would: a name with a `/` as it is, else the first executable
/// file of that name in `path` (the `PATH` value).
pub fn resolve(program: &Path, path: Option<&OsString>) -> Result<PathBuf, NotRunnable> {
    let shown = program.display();
    if program.as_os_str().is_empty() {
        return Err(NotRunnable {
            code: EXIT_NOT_FOUND,
            message: "no program given; usage: vault-login exec [--] <program> [args...]".into(),
        });
    }
    let candidates: Vec<PathBuf> = match program.as_os_str().as_encoded_bytes().contains(&b'/') {
        true => vec![program.to_path_buf()],
        false => std::env::split_paths(path.map_or(&OsString::from("/usr/bin:/bin"), |p| p))
            .map(|d| d.join(program))
            .collect(),
    };
    let mut not_executable = None;
    for c in candidates {
        let Ok(meta) = std::fs::metadata(&c) else {
            continue;
        };
        let executable =
            meta.is_file() && rustix::fs::access(&c, rustix::fs::Access::EXEC_OK).is_ok();
        if executable {
            return Ok(c);
        }
        not_executable.get_or_insert(c);
    }
    match not_executable {
        Some(c) => Err(NotRunnable {
            code: EXIT_NOT_EXECUTABLE,
            message: format!("{}: not an executable file; check its mode (chmod +x) and that it is not a directory", c.display()),
        }),
        None => Err(NotRunnable {
            code: EXIT_NOT_FOUND,
            message: match program.as_os_str().as_encoded_bytes().contains(&b'/') {
                true => format!("{shown}: no such file; give the program's path"),
                false => format!("{shown}: not found in PATH; give its path or fix PATH"),
            },
        }),
    }
}

/// Whether `sig` ends a process that does not handle it and is sent to stop one (TERM, INT,
/// QUIT, HUP): passed on, it means the program's exit is the end, not a restart.
pub fn stops(sig: AppSignal) -> bool {
    matches!(
        sig.to_string().as_str(),
        "SIGTERM" | "SIGINT" | "SIGQUIT" | "SIGHUP"
    )
}

/// The exit code that reports how the child ended: its code, or 128+N for signal N.
pub fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => code,
        (None, Some(sig)) => 128 + sig,
        (None, None) => EXIT_UNKNOWN,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::ExitStatusExt;

    #[test]
    fn restart_policies() {
        assert_eq!(parse_restart("always"), Ok(Restart::Always));
        assert_eq!(parse_restart("Never"), Ok(Restart::Never));
        assert_eq!(parse_restart("signal"), Ok(Restart::Signal));
        assert!(parse_restart("sometimes").unwrap_err().contains("always"));
    }

    #[test]
    fn exit_codes_of_the_child() {
        assert_eq!(exit_code(std::process::ExitStatus::from_raw(3 << 8)), 3);
        // Killed by SIGTERM (15): 143, as a shell reports it.
        assert_eq!(exit_code(std::process::ExitStatus::from_raw(15)), 143);
    }

    #[test]
    fn programs_are_found_like_execvp_finds_them() {
        let dir = tempfile::tempdir().unwrap();
        let exe = dir.path().join("app");
        std::fs::write(&exe, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
        let plain = dir.path().join("data");
        std::fs::write(&plain, "x").unwrap();
        std::fs::set_permissions(&plain, std::fs::Permissions::from_mode(0o644)).unwrap();
        let path = OsString::from(format!("/nonexistent:{}", dir.path().display()));
        assert_eq!(resolve(Path::new("app"), Some(&path)), Ok(exe.clone()));
        assert_eq!(resolve(&exe, None), Ok(exe.clone()));
        let e = resolve(Path::new("nope"), Some(&path)).unwrap_err();
        assert_eq!(e.code, EXIT_NOT_FOUND);
        assert!(e.message.contains("not found in PATH"), "{}", e.message);
        assert_eq!(
            resolve(&dir.path().join("nope"), None).unwrap_err().code,
            127
        );
        // Root may execute any file with an x bit; a file without one is refused to everyone.
        let e = resolve(&plain, None).unwrap_err();
        assert_eq!(e.code, EXIT_NOT_EXECUTABLE, "{}", e.message);
        assert_eq!(resolve(dir.path(), None).unwrap_err().code, 126);
    }
}
