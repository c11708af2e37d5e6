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
