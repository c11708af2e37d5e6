//! Assembling a [`Config`]: one loop over the declared settings, each put in place by its own
//! `apply`; then the variable families no declaration lists (`VAULT_LOGIN_SECRET_<NAME>`,
//! `_TEMPLATE_<NAME>`, `_CERT_<NAME>`, `_ENV_<VAR>`) and the rules that tie settings together,
//! each a named function.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::Url;

use super::settings::{self as s, check_readable, Setting};
use super::{cli, invalid, Config, ConfigError, Given, Lookup};
use crate::duration::human;
use crate::exec::{ExecSettings, Restart, ENV_PREFIX};
use crate::files::token_file::TokenSink;
use crate::hooks::{AppSignal, HookSettings};
use crate::jwt::JwtSource;
use crate::secrets::certs::CertsSettings;
use crate::secrets::{self, SecretsSettings};
use crate::telemetry::LogFormat;
use crate::vault::proxy::ProxySettings;
use crate::vault::tls::TlsSettings;
use crate::vault::VaultSettings;

/// Checks every setting and builds the config: the declared settings in declaration order,
/// then the rules that tie them together, then the variable families.
pub(super) fn build(lookup: &Lookup<'_>) -> Result<Config, ConfigError> {
    // Vault's address is required and has no placeholder, so the configuration starts from it
    // (the loop reads it again, like every other setting).
    let addr = lookup.value(&s::VAULT_ADDR)?;
    let mut config = blank(addr, lookup.program.as_deref());
    let givens = read_declared(lookup, &mut config)?;

    exec_keeps_the_token_in_memory(&mut config, &givens);
    min_backoff_within_max(&config, &givens)?;
    client_cert_and_key_together(&givens)?;
    signal_needs_a_pid_file(&config, &givens)?;
    info_file_is_not_the_token_file(&config, &givens)?;
    config.hooks.token_file = match &config.token_sink {
        TokenSink::File(path) => Some(path.clone()),
        TokenSink::Stdout | TokenSink::Memory => None,
    };
    read_secrets(lookup, &mut config, &givens)?;
    read_certs(lookup, &mut config)?;
    read_exec(lookup, &mut config)?;
    stdout_only_in_once_mode(&config)?;
    config.unknown_variables = unknown_variables(lookup.names, config.exec.is_some());
    Ok(config)
}

/// The settings that were given (rather than defaulted), with where each came from: what the
/// rules between settings name in their errors.
#[derive(Default)]
struct Givens(Vec<(&'static str, Given)>);

impl Givens {
    /// The value given for `setting`, if one was.
    fn of<T>(&self, setting: &Setting<T>) -> Option<&Given> {
        let name = setting.about.name();
        self.0.iter().find(|(n, _)| *n == name).map(|(_, g)| g)
    }
}

/// Reads each declared setting (the value given, or else its default), parses it and applies
/// it to `config`; a required setting with no value is an error.
fn read_declared(lookup: &Lookup<'_>, config: &mut Config) -> Result<Givens, ConfigError> {
    let mut givens = Givens::default();
    for setting in s::ALL {
        let about = setting.about();
        if about.exec_only && config.exec.is_none() {
            continue;
        }
        match lookup.given(about)? {
            Some(given) => {
                (setting.read(&given.value, given.source, config))
                    .map_err(|problem| given.invalid(problem))?;
                givens.0.push((about.name(), given));
            }
            None => match about.default {
                Some(default) => (setting.read(default, about.name(), config))
                    .map_err(|p| invalid(about.name(), format!("default: {p}")))?,
                None if about.required => return Err(lookup.missing(about)),
                None => {}
            },
        }
    }
    Ok(givens)
}

/// The configuration before the declarations are read: Vault's address, and placeholders that
/// each declaration's default or given value replaces. A setting without a default keeps what
/// is here: `None`, empty or `false`.
fn blank(addr: Url, program: Option<&[OsString]>) -> Config {
    let zero = Duration::ZERO;
    Config {
        vault: VaultSettings {
            addr,
            namespace: None,
            headers: Vec::new(),
            tls: TlsSettings::default(),
            proxy: ProxySettings::default(),
            timeout: zero,
            disable_redirects: false,
        },
        role: String::new(),
        mount: String::new(),
        jwt: JwtSource::File(PathBuf::new()),
        token_sink: TokenSink::Memory,
        token_file_setting: s::TOKEN_FILE.about.name(),
        token_file_mode: 0,
        token_file_owner: None,
        once: false,
        timeout: zero,
        min_backoff: zero,
        max_backoff: zero,
        recovery_backoff: zero,
        renew_increment: None,
        revoke_on_exit: false,
        listen: None,
        log: String::new(),
        log_format: LogFormat::Text,
        hooks: HookSettings {
            on_change: None,
            on_change_timeout: zero,
            signal_pid_file: None,
            signal: AppSignal::HUP,
            token_info_file: None,
            token_file: None,
            file_mode: 0,
            file_owner: None,
        },
        secrets: SecretsSettings {
            dir: PathBuf::new(),
            refresh: zero,
            specs: Vec::new(),
            templates: Vec::new(),
        },
        certs: CertsSettings::default(),
        unknown_variables: Vec::new(),
        // `vault-login exec`: split_exec gave at least the program.
        exec: (program.and_then(<[OsString]>::split_first)).map(|(program, args)| ExecSettings {
            program: program.clone(),
            args: args.to_vec(),
            restart: Restart::Always,
            stop_signal: AppSignal::HUP,
            stop_timeout: zero,
            pass_token: false,
            values: Vec::new(),
        }),
    }
}

/// `vault-login exec` keeps the token in memory unless a file is asked for: a developer's
/// machine has no /var/run/secrets.
fn exec_keeps_the_token_in_memory(config: &mut Config, givens: &Givens) {
    if config.exec.is_some() && givens.of(&s::TOKEN_FILE).is_none() {
        config.token_sink = TokenSink::Memory;
    }
}

/// The shortest wait between retries may not exceed the longest.
fn min_backoff_within_max(config: &Config, givens: &Givens) -> Result<(), ConfigError> {
    let (min, max) = (config.min_backoff, config.max_backoff);
    if min <= max {
        return Ok(());
    }
    let (min_given, max_given) = (givens.of(&s::MIN_BACKOFF), givens.of(&s::MAX_BACKOFF));
    let origin = |given: Option<&Given>| match given {
        Some(given) => format!("from {}", given.source),
        None => "the default".to_string(),
    };
    let source = min_given.map_or(s::MIN_BACKOFF.about.name(), |g| g.source);
    Err(invalid(
        source,
        format!(
            "min backoff {} ({}) is more than max backoff {} ({}); lower the min backoff or raise the max backoff",
            human(min),
            origin(min_given),
            human(max),
            origin(max_given),
        ),
    ))
}

/// A client certificate needs its key, and a key its certificate.
fn client_cert_and_key_together(givens: &Givens) -> Result<(), ConfigError> {
    let (given, needs, other) = match (givens.of(&s::CLIENT_CERT), givens.of(&s::CLIENT_KEY)) {
        (Some(cert), None) => (cert, "certificate needs a client key", &s::CLIENT_KEY.about),
        (None, Some(key)) => (key, "key needs a client certificate", &s::CLIENT_CERT.about),
        _ => return Ok(()),
    };
    Err(given.invalid(format!(
        "a client {needs}; set {} or {} too, or neither",
        other.name(),
        other.flag_or_name()
    )))
}

/// A signal is sent to the app whose pid file is given; without one it would go nowhere.
fn signal_needs_a_pid_file(config: &Config, givens: &Givens) -> Result<(), ConfigError> {
    let (Some(given), None) = (givens.of(&s::SIGNAL), &config.hooks.signal_pid_file) else {
        return Ok(());
    };
    let about = &s::SIGNAL_PID_FILE.about;
    Err(given.invalid(format!(
        "a signal needs a process to send it to; set {} or {} too, or neither",
        about.name(),
        about.flag_or_name()
    )))
}

/// The token info file may not overwrite the token.
fn info_file_is_not_the_token_file(config: &Config, givens: &Givens) -> Result<(), ConfigError> {
    let (Some(given), TokenSink::File(token)) =
        (givens.of(&s::TOKEN_INFO_FILE), &config.token_sink)
    else {
        return Ok(());
    };
    if config.hooks.token_info_file.as_deref() != Some(token.as_path()) {
        return Ok(());
    }
    Err(given.invalid(format!(
        "{:?} is the token file itself; give another path, e.g. next to it",
        given.value
    )))
}

/// Standard output takes the token only in once mode: a sidecar renews it for hours.
fn stdout_only_in_once_mode(config: &Config) -> Result<(), ConfigError> {
    if config.token_sink != TokenSink::Stdout || config.once {
        return Ok(());
    }
    let about = &s::ONCE.about;
    Err(invalid(
        config.token_file_setting,
        format!(
            "\"-\" (standard output) works only in once mode; set {}=true or {} too, or give a file path",
            about.name(),
            about.flag_or_name()
        ),
    ))
}

/// The `VAULT_LOGIN_SECRET*` and `VAULT_LOGIN_TEMPLATE*` variables and the pod's template
/// annotations; the files go in the secrets directory (by default the token's) and must not
/// overwrite the token file or the token info file.
fn read_secrets(
    lookup: &Lookup<'_>,
    config: &mut Config,
    givens: &Givens,
) -> Result<(), ConfigError> {
    let specs = secrets::specs_from_env(lookup.names, lookup.env)
        .map_err(|e| invalid(&e.variable, e.problem))?;
    // Parsed with the functions the agent renders with, so a refused or unknown function is
    // a configuration error before any network call.
    let funcs = crate::secrets::template::Funcs::standard();
    let mut templates = secrets::templates::templates_from_env(lookup.names, lookup.env, &funcs)
        .map_err(|e| invalid(&e.variable, e.problem))?;
    // The pod's per-secret annotations, below the variables: a variable's template writing the
    // same file wins.
    let annotated =
        (lookup.annotations.templates(&funcs)).map_err(|e| invalid(&e.variable, e.problem))?;
    for spec in annotated {
        if !templates.iter().any(|t| t.file == spec.file) {
            templates.push(spec);
        }
    }
    let first = (specs.iter().map(|s| &s.variable))
        .chain(templates.iter().map(|t| &t.variable))
        .next();
    config.secrets.dir = match (givens.of(&s::SECRETS_DIR), first) {
        // Checked only when there is something to write there.
        (Some(given), Some(_)) => {
            check_readable(&config.secrets.dir, true).map_err(|problem| {
                given.invalid(format!(
                    "{problem}; mount the shared volume there or give an existing directory"
                ))
            })?;
            config.secrets.dir.clone()
        }
        (Some(_), None) => config.secrets.dir.clone(),
        (None, first) => default_secrets_dir(&config.token_sink, first)?,
    };
    config.secrets.specs = specs;
    config.secrets.templates = templates;
    let mut reserved: Vec<&Path> = config.hooks.token_info_file.iter().map(|p| &**p).collect();
    if let TokenSink::File(token) = &config.token_sink {
        reserved.push(token);
    }
    (config.secrets.check_reserved(&reserved)).map_err(|e| invalid(&e.variable, e.problem))
}

/// Where secrets go without `VAULT_LOGIN_SECRETS_DIR`: next to the token file; with no token
/// file, an error naming the `first` secret variable, if there is one.
fn default_secrets_dir(sink: &TokenSink, first: Option<&String>) -> Result<PathBuf, ConfigError> {
    match (sink, first) {
        (TokenSink::File(token), _) => Ok(match token.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        }),
        (TokenSink::Stdout | TokenSink::Memory, Some(first)) => Err(invalid(
            first,
            format!(
                "the token goes to {}, so there is no token directory to write secrets next to; set {}",
                match sink {
                    TokenSink::Memory => "no file (exec without VAULT_LOGIN_TOKEN_FILE)",
                    _ => "standard output",
                },
                secrets::SECRETS_DIR_ENV
            ),
        )),
        (TokenSink::Stdout | TokenSink::Memory, None) => Ok(PathBuf::from(".")),
    }
}

/// The `VAULT_LOGIN_CERT_<NAME>` variables: each certificate's directory goes in the secrets'
/// directory, and must not be a secret file's name.
fn read_certs(lookup: &Lookup<'_>, config: &mut Config) -> Result<(), ConfigError> {
    let specs = crate::secrets::certs::specs_from_env(lookup.names, lookup.env)
        .map_err(|e| invalid(&e.variable, e.problem))?;
    let secrets = &config.secrets;
    let files = (secrets.specs.iter().map(|s| (&s.variable, s.name.as_str())))
        .chain((secrets.templates.iter()).map(|t| (&t.variable, t.file.as_str())));
    for (variable, file) in files {
        if let Some(c) = specs.iter().find(|c| c.name == file) {
            return Err(invalid(
                &c.variable,
                format!("{variable} writes a file named {file:?} where this certificate's directory goes; give one of them another name"),
            ));
        }
    }
    let Some(first) = specs.first() else {
        config.certs = CertsSettings::default();
        return Ok(());
    };
    if !secrets.dir.is_dir() {
        return Err(invalid(
            &first.variable,
            format!(
                "{} does not exist: mount the shared volume there or set {}",
                secrets.dir.display(),
                secrets::SECRETS_DIR_ENV
            ),
        ));
    }
    config.certs.dir = secrets.dir.clone();
    config.certs.specs = specs;
    Ok(())
}

/// `vault-login exec`'s rules and its `VAULT_LOGIN_ENV_<VAR>` values, when the command line
/// asked for it.
fn read_exec(lookup: &Lookup<'_>, config: &mut Config) -> Result<(), ConfigError> {
    if config.exec.is_none() {
        return Ok(());
    }
    if config.once {
        return Err(invalid(
            s::ONCE.about.name(),
            "exec runs the program until it exits; leave out --once (an init container runs vault-login --once, not exec)",
        ));
    }
    if config.token_sink == TokenSink::Stdout {
        return Err(invalid(
            config.token_file_setting,
            "\"-\" (standard output) is the program's in exec mode; give a file path or leave it unset (the token stays in memory)",
        ));
    }
    let funcs = crate::secrets::template::Funcs::standard();
    let values = crate::exec::env::specs_from_env(lookup.names, lookup.env, &funcs)
        .map_err(|e| invalid(&e.variable, e.problem))?;
    if let Some(exec) = &mut config.exec {
        exec.values = values;
    }
    Ok(())
}

/// The `VAULT_LOGIN_*` variables no setting reads, each with the one it resembles; outside
/// `vault-login exec`, its `VAULT_LOGIN_ENV_<VAR>` ones too.
fn unknown_variables(names: &[String], exec: bool) -> Vec<(String, Option<&'static str>)> {
    let mut unknown = cli::unknown_variables(names);
    if !exec {
        let unread = names.iter().filter(|n| n.starts_with(ENV_PREFIX));
        unknown.extend(unread.map(|n| (n.clone(), None)));
    }
    unknown
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    #[test]
    fn token_file_stdout_only_in_once_mode() {
        let (source, problem) = bad(&["--token-file", "-"], &[]);
        assert_eq!(source, "--token-file");
        assert!(problem.contains("once"), "{problem}");
        let (source, _) = bad(&[], &[("VAULT_LOGIN_TOKEN_FILE", "-")]);
        assert_eq!(source, "VAULT_LOGIN_TOKEN_FILE");
        let c = ok(
            &[],
            &[
                ("VAULT_LOGIN_TOKEN_FILE", "-"),
                ("VAULT_LOGIN_ONCE", "true"),
            ],
        );
        assert_eq!(c.token_sink, TokenSink::Stdout);
        assert!(summary_has(&c, "token_sink=stdout"));
        let c = ok(&["--token-file=-", "--once"], &[]);
        assert_eq!(c.token_sink, TokenSink::Stdout);
    }

    #[test]
    fn backoff_min_must_not_exceed_max() {
        let (source, problem) = bad(
            &[],
            &[
                ("VAULT_LOGIN_MIN_BACKOFF", "10s"),
                ("VAULT_LOGIN_MAX_BACKOFF", "5s"),
            ],
        );
        assert_eq!(source, "VAULT_LOGIN_MIN_BACKOFF");
        assert!(
            problem.contains("10s") && problem.contains("5s"),
            "{problem}"
        );
        // A min above the default max.
        let (source, problem) = bad(&[], &[("VAULT_LOGIN_MIN_BACKOFF", "10m")]);
        assert_eq!(source, "VAULT_LOGIN_MIN_BACKOFF");
        assert!(problem.contains("5m0s"), "{problem}");
        // A max below the default min.
        let (source, problem) = bad(&["--max-backoff", "500ms"], &[]);
        assert_eq!(source, "VAULT_LOGIN_MIN_BACKOFF");
        assert!(problem.contains("--max-backoff"), "{problem}");
        let (source, _) = bad(&["--min-backoff", "2m", "--max-backoff", "1m"], &[]);
        assert_eq!(source, "--min-backoff");
        let c = ok(
            &[],
            &[
                ("VAULT_LOGIN_MIN_BACKOFF", "3s"),
                ("VAULT_LOGIN_MAX_BACKOFF", "3s"),
            ],
        );
        assert_eq!((c.min_backoff, c.max_backoff), (secs(3), secs(3)));
    }

    #[test]
    fn client_cert_and_key_come_together() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("x.pem");
        std::fs::write(&file, "pem").unwrap();
        let file = file.display().to_string();
        let (source, problem) = bad(&[], &[("VAULT_CLIENT_KEY", &file)]);
        assert_eq!(source, "VAULT_CLIENT_KEY");
        assert!(problem.contains("needs a client certificate"), "{problem}");
        assert!(problem.contains("VAULT_CLIENT_CERT"), "{problem}");
        let (source, problem) = bad(&["--client-cert", &file], &[]);
        assert_eq!(source, "--client-cert");
        assert!(problem.contains("needs a client key"), "{problem}");
        let (source, _) = bad(&[], &[("BAO_CLIENT_KEY", &file)]);
        assert_eq!(source, "BAO_CLIENT_KEY");
    }

    #[test]
    fn secrets_default_to_the_token_directory_and_five_minutes() {
        let c = ok(
            &["--token-file", "/vault/token"],
            &[
                ("VAULT_LOGIN_SECRET_DB", "internal/data/database/config"),
                (
                    "VAULT_LOGIN_SECRET_DB_PASSWORD",
                    "internal/data/database/config#password",
                ),
            ],
        );
        assert_eq!(c.secrets.dir, PathBuf::from("/vault"));
        assert_eq!(c.secrets.refresh, Duration::from_secs(300));
        let names: Vec<&str> = c.secrets.specs.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, vec!["db", "db_password"]);
        assert!(
            summary_has(&c, "secrets=2(dir=/vault,refresh=5m0s)"),
            "{}",
            c.summary()
        );
        assert!(summary_has(&ok(&[], &[]), "secrets=none"));
        assert!(ok(&[], &[]).secrets.specs.is_empty());
    }

    #[test]
    fn secrets_dir_and_refresh_are_read_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_str().unwrap();
        let c = ok(
            &[],
            &[
                ("VAULT_LOGIN_SECRET_APP", "dotenv:kv/app"),
                ("VAULT_LOGIN_SECRETS_DIR", d),
                ("VAULT_LOGIN_SECRETS_REFRESH", "90s"),
            ],
        );
        assert_eq!(c.secrets.dir, dir.path());
        assert_eq!(c.secrets.refresh, Duration::from_secs(90));
        let (source, problem) = bad(
            &[],
            &[
                ("VAULT_LOGIN_SECRET_APP", "kv/app"),
                ("VAULT_LOGIN_SECRETS_DIR", "/no/such/dir"),
            ],
        );
        assert_eq!(source, "VAULT_LOGIN_SECRETS_DIR");
        assert!(problem.contains("does not exist"), "{problem}");
        // Without secrets the directory is not needed, so not checked.
        assert!(load(&[], &[("VAULT_LOGIN_SECRETS_DIR", "/no/such/dir")]).is_ok());
        for value in ["0", "500ms", "soon"] {
            let (source, _) = bad(&[], &[("VAULT_LOGIN_SECRETS_REFRESH", value)]);
            assert_eq!(source, "VAULT_LOGIN_SECRETS_REFRESH");
        }
    }

    #[test]
    fn bad_secret_settings_are_one_line_errors_naming_the_variable() {
        let (source, problem) = bad(&[], &[("VAULT_LOGIN_SECRET_DB", "internal/data/db#")]);
        assert_eq!(source, "VAULT_LOGIN_SECRET_DB");
        assert!(problem.contains("nothing after '#'"), "{problem}");
        let (source, problem) = bad(
            &["--token-file", "/vault/token"],
            &[("VAULT_LOGIN_SECRET_TOKEN", "kv/app")],
        );
        assert_eq!(source, "VAULT_LOGIN_SECRET_TOKEN");
        assert!(
            problem.contains("/vault/token is already written"),
            "{problem}"
        );
        let (source, problem) = bad(
            &["--once", "--token-file", "-"],
            &[("VAULT_LOGIN_SECRET_DB", "kv/app")],
        );
        assert_eq!(source, "VAULT_LOGIN_SECRET_DB");
        assert!(problem.contains("set VAULT_LOGIN_SECRETS_DIR"), "{problem}");
        let err = load(&[], &[("VAULT_LOGIN_SECRET_DB", "/v1/kv/app")]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "VAULT_LOGIN_SECRET_DB: \"/v1/kv/app\" starts with v1/; give the API path without /v1/, e.g. internal/data/database/config"
        );
    }
}
