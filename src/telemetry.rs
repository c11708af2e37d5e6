//! Logging: text or JSON lines on stderr (stdout is reserved for `--token-file -`).

use tracing_subscriber::EnvFilter;

/// How log lines are formatted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Parses `text` or `json`, in any case.
pub fn parse_log_format(s: &str) -> Result<LogFormat, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "text" => Ok(LogFormat::Text),
        "json" => Ok(LogFormat::Json),
        _ => Err(format!("{s:?} is not a log format; use text or json")),
    }
}

/// Checks a log filter (RUST_LOG syntax) when the configuration is loaded, so that a bad one is
/// reported like any other bad setting, naming the flag or variable it came from.
pub fn parse_filter(s: &str) -> Result<String, String> {
    match EnvFilter::builder().parse(s) {
        Ok(_) => Ok(s.to_string()),
        Err(e) => Err(format!(
            "{s:?} is not a log filter ({e}); use e.g. info, debug or vault_login=debug"
        )),
    }
}

/// Installs the global subscriber with `filter` (checked by [`parse_filter`]) and `format`.
pub fn init(filter: &str, format: LogFormat) {
    // Checked when the configuration was loaded; the fallback is only for callers that did not.
    let filter = EnvFilter::builder()
        .parse(filter)
        .unwrap_or_else(|_| EnvFilter::new("info"));
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
}
