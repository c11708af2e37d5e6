//! The crate's error type and the process exit codes it maps to.

use crate::config::ConfigError;
use crate::duration::brief;
use crate::files::token_file::FileError;
use crate::health::HealthError;
use crate::machine::events::Exit;
use crate::vault::tls::TlsError;

/// Exit code for a clean run: token written (`--once`) or shutdown on a signal.
pub const EXIT_OK: i32 = 0;
/// Exit code when the loop gave up or hit a fatal runtime error.
pub const EXIT_FAILURE: i32 = 1;
/// Exit code for a configuration error (BSD `EX_USAGE`).
pub const EXIT_USAGE: i32 = 64;

/// Everything that ends a vault-login run early.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Flags or environment are wrong.
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),
    /// The TLS settings cannot be used.
    #[error("invalid configuration: {0}")]
    Tls(#[from] TlsError),
    /// The token file's location is unusable at startup.
    #[error("invalid configuration: {setting}: {source}")]
    TokenFile {
        /// The flag or variable that named the file.
        setting: &'static str,
        /// What is wrong with it.
        #[source]
        source: FileError,
    },
    /// The secrets directory is unusable at startup.
    #[error("invalid configuration: {0}")]
    Secrets(#[from] crate::secrets::SecretError),
    /// The health/metrics address cannot be bound.
    #[error("invalid configuration: {0}")]
    Health(#[from] HealthError),
    /// `--once` ran out of time.
    #[error("gave up after {attempts} login attempt(s) in {elapsed}: {last}")]
    GaveUp {
        /// Login attempts made.
        attempts: u32,
        /// Time spent, human readable.
        elapsed: String,
        /// The last failure.
        last: String,
    },
    /// Something the process cannot continue without (runtime, signal handlers, stdout).
    #[error("{0}")]
    Fatal(String),
    /// `vault-login exec`'s program cannot be started: 127 (not found) or 126.
    #[error("{}", .0.message)]
    Program(crate::exec::NotRunnable),
    /// `vault-login install` failed.
    #[error("{0}")]
    Install(#[from] crate::exec::install::InstallError),
}

impl Error {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Config(ConfigError::Help(_)) => EXIT_OK,
            Error::Config(_)
            | Error::Tls(_)
            | Error::TokenFile { .. }
            | Error::Secrets(_)
            | Error::Health(_) => EXIT_USAGE,
            Error::GaveUp { .. } | Error::Fatal(_) => EXIT_FAILURE,
            Error::Program(p) => p.code,
            Error::Install(crate::exec::install::InstallError::Usage(_)) => EXIT_USAGE,
            Error::Install(crate::exec::install::InstallError::Io { .. }) => EXIT_FAILURE,
        }
    }
}

/// `Result` with the crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What a run that ended with `exit` returns (`once`: it was a `--once` run).
pub fn of_exit(exit: Exit, once: bool) -> Result<()> {
    match exit {
        Exit::Done => Ok(()),
        Exit::Interrupted => Err(Error::Fatal(if once {
            "interrupted before a token was written".into()
        } else {
            "interrupted".into()
        })),
        Exit::GaveUp {
            attempts,
            elapsed,
            last,
        } => Err(Error::GaveUp {
            attempts,
            elapsed: brief(elapsed),
            last,
        }),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn exits_map_to_results_and_exit_codes() {
        assert!(of_exit(Exit::Done, true).is_ok());
        let e = of_exit(Exit::Interrupted, true).unwrap_err();
        assert_eq!(e.to_string(), "interrupted before a token was written");
        assert_eq!(e.exit_code(), EXIT_FAILURE);
        let gave_up = Exit::GaveUp {
            attempts: 3,
            elapsed: Duration::from_secs(90),
            last: "login: permission denied".into(),
        };
        let e = of_exit(gave_up, true).unwrap_err();
        assert!(
            matches!(&e, Error::GaveUp { attempts: 3, elapsed, .. } if elapsed == "1m30s"),
            "{e:?}"
        );
        assert_eq!(
            e.to_string(),
            "gave up after 3 login attempt(s) in 1m30s: login: permission denied"
        );
        assert_eq!(e.exit_code(), EXIT_FAILURE);
    }
}
