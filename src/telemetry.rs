//! Logging: text or JSON lines on stderr (stdout is reserved for `--token-file -`).
//!
//! The filter is a comma-separated list of `level` and `target=level` directives, the part of
//! `RUST_LOG`'s syntax a program of one crate needs. tracing-subscriber's `Targets` reads it;
//! its `EnvFilter` would also take span and field filters, at the price of a regex engine
//! (about a tenth of the binary).

use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

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

const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];

/// Checks a log filter when the configuration is loaded, so that a bad one is reported like any
/// other bad setting, naming the flag or variable it came from.
pub fn parse_filter(s: &str) -> Result<String, String> {
    targets(s).map(|_| s.to_string())
}

/// The filter's directives: each a level, or a Rust module path, `=` and a level.
fn targets(s: &str) -> Result<Targets, String> {
    let bad = |why: String| {
        format!("{s:?} is not a log filter ({why}); use e.g. info, debug or vault_login=debug")
    };
    for directive in s.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        let (target, level) = match directive.split_once('=') {
            Some((target, level)) => (Some(target.trim()), level.trim()),
            None => (None, directive),
        };
        if let Some(target) = target {
            let path_char = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
            if target.is_empty() || !target.chars().all(path_char) {
                return Err(bad(format!("{target:?} is not a module path")));
            }
        }
        if !LEVELS.contains(&level.to_ascii_lowercase().as_str()) {
            return Err(bad(format!(
                "{level:?} is not a level: trace, debug, info, warn, error or off"
            )));
        }
    }
    s.parse::<Targets>().map_err(|e| bad(e.to_string()))
}

/// Installs the global subscriber with `filter` (checked by [`parse_filter`]) and `format`.
pub fn init(filter: &str, format: LogFormat) {
    // Checked when the configuration was loaded; the fallback is only for callers that did not.
    let targets =
        targets(filter).unwrap_or_else(|_| Targets::new().with_default(tracing::Level::INFO));
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(false);
    let result = match format {
        LogFormat::Json => tracing_subscriber::registry()
            .with(
                layer
                    .json()
                    .flatten_event(true)
                    .with_current_span(false)
                    .with_filter(targets),
            )
            .try_init(),
        LogFormat::Text => tracing_subscriber::registry()
            .with(layer.with_ansi(false).with_filter(targets))
            .try_init(),
    };
    // A second init (tests) keeps the first subscriber; that is fine.
    let _ = result;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_are_levels_and_module_paths() {
        for good in [
            "info",
            "DEBUG",
            "warn,vault_login=trace",
            "vault_login::agent=debug, off",
        ] {
            assert_eq!(parse_filter(good).as_deref(), Ok(good), "{good}");
        }
        for bad in [
            "info,[[[",
            "loud",
            "vault_login=loud",
            "=debug",
            "a b=info",
            "x[y]=info",
        ] {
            let e = parse_filter(bad).unwrap_err();
            assert!(e.contains("is not a log filter"), "{bad}: {e}");
        }
    }
}
