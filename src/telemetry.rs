//! Logging: text or JSON lines on stderr (stdout is reserved for `--token-file -`).

use tracing_subscriber::EnvFilter;

use crate::config::{ConfigError, LogFormat};

/// Installs the global subscriber with `filter` (RUST_LOG syntax) and `format`.
pub fn init(filter: &str, format: LogFormat) -> Result<(), ConfigError> {
    let filter = EnvFilter::builder()
        .parse(filter)
        .map_err(|e| ConfigError::Invalid {
            source_name: "VAULT_LOGIN_LOG".into(),
            problem: format!(
                "{filter:?} is not a log filter ({e}); use e.g. info, debug or vault_login=debug"
            ),
        })?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    let result = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
        LogFormat::Text => builder.with_ansi(false).try_init(),
    };
    // A second init (tests) keeps the first subscriber; that is fine.
    let _ = result;
    Ok(())
}
