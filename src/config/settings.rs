//! Every setting, declared once: its flag, the variables read for it (a `VAULT_*` one with its
//! `BAO_*` twin, or a `VAULT_LOGIN_*` one), its default, its parser, where its value goes in the
//! [`Config`], its field in the startup summary and its help line.
//!
//! `--help`, README's configuration table, the startup summary and the error messages are all
//! made from these declarations, so they cannot drift apart; the config module reads them in a
//! loop, each declaration's `apply` putting its value into the settings of the module that uses
//! it. Adding a setting is one declaration here, a line in [`ALL`], and its field in that
//! module's settings.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::Url;

use super::summary::{self, none, opt, path, shown};
use super::Config;
use crate::duration::{human, parse_duration, DURATION_HINT};
use crate::exec::{parse_restart, Restart};
use crate::files::token_file::{parse_mode, parse_owner, Owner, TokenSink, DEFAULT_TOKEN_FILE};
use crate::hooks::command::split_command;
use crate::hooks::{parse_signal, AppSignal};
use crate::jwt::{JwtSource, DEFAULT_JWT_FILE, JWT_ENV};
use crate::machine::events::REVOKE_GRACE;
use crate::secrets::{SECRETS_DIR_ENV, SECRETS_REFRESH_ENV};
use crate::sensitive::Secret;
use crate::telemetry::{parse_filter, parse_log_format, LogFormat};
use crate::vault::login::{parse_mount, parse_role};
use crate::vault::proxy::parse_proxy_url;
use crate::vault::server_name::parse_server_name;
use crate::vault::tls::count_pem_certificates;
use crate::vault::{parse_headers, parse_namespace, parse_vault_addr};

/// What a setting is, without its parser: enough for `--help`, the README table and errors.
#[derive(Debug)]
pub struct About {
    /// The flag, e.g. `--mount`; `None` when the setting is read from the environment only.
    pub flag: Option<&'static str>,
    /// The variables read when the flag is not given, in order; the first one names the setting.
    pub env: &'static [&'static str],
    /// Placeholder of the flag's value in `--help`; `None` for a switch (a flag without a value).
    pub value: Option<&'static str>,
    /// The default, written as a user would write it (and parsed like one); `None` for none.
    pub default: Option<&'static str>,
    /// Whether there is no default and the setting must be given.
    pub required: bool,
    /// What the setting does: one line for `--help` and README, in which each `{name}` of
    /// `help_values` stands for the constant it names; read it with [`About::help`].
    pub help: &'static str,
    /// Read only by `vault-login exec`, and not even parsed otherwise.
    pub exec_only: bool,
}

impl About {
    /// The flag if there is one, else the main variable: how to name the setting to a user.
    pub fn flag_or_name(&self) -> &'static str {
        self.flag.unwrap_or(self.env[0])
    }

    /// The main variable's name, used when no value was given at all.
    pub fn name(&self) -> &'static str {
        self.env[0]
    }

    /// What the setting does, with the values of the constants it states.
    pub fn help(&self) -> String {
        (help_values().iter()).fold(self.help.to_string(), |help, (name, value)| {
            help.replace(name, value)
        })
    }

    /// The help line with the variables and the default, as `--help` shows it.
    pub fn help_line(&self) -> String {
        let mut line = format!("{} [env: {}]", self.help(), self.env.join(", "));
        if let Some(default) = self.default {
            line.push_str(&format!(" [default: {default}]"));
        }
        if self.required {
            line.push_str(" (required)");
        }
        line
    }

    /// The setting's row in README's configuration table.
    pub fn readme_row(&self) -> String {
        let code = |s: &str| format!("`{s}`");
        let env: Vec<String> = self.env.iter().map(|e| code(e)).collect();
        let default = match (self.default, self.required) {
            (Some(d), _) => code(d),
            (None, true) => "required".to_string(),
            (None, false) => "unset".to_string(),
        };
        format!(
            "| {} | {} | {} | {} |",
            env.join(" "),
            self.flag.map_or_else(|| "(env only)".to_string(), code),
            default,
            self.help()
        )
    }
}

/// One setting: what it is, how its value is read, and where it goes.
pub struct Setting<T: 'static> {
    /// Flag, variables, default and help.
    pub about: About,
    /// Turns a given value (or the default) into the setting, or says what is wrong and what to do.
    pub parse: fn(&str) -> Result<T, String>,
    /// Puts the parsed value into the configuration being built, given the flag or variable it
    /// came from (the main variable for the default), which some settings keep for later errors.
    pub apply: fn(&mut Config, T, &'static str),
    /// The setting's fields in the startup summary, shown from the checked configuration
    /// (never a secret); none when another setting's field shows it.
    pub summary: &'static [SummaryField],
}

/// A field of the startup summary: its key and how to show it from the checked configuration.
pub type SummaryField = (&'static str, fn(&Config) -> String);

/// A declared setting of any type: what the loop over [`ALL`] needs.
pub trait Declared: Sync {
    /// Flag, variables, default and help.
    fn about(&self) -> &About;
    /// Parses `value` (which came from `from`) and applies it to `config`; the problem if the
    /// value is bad.
    fn read(&self, value: &str, from: &'static str, config: &mut Config) -> Result<(), String>;
    /// The setting's fields in the startup summary.
    fn summary(&self) -> &'static [SummaryField];
}

impl<T> Declared for Setting<T> {
    fn about(&self) -> &About {
        &self.about
    }

    fn read(&self, value: &str, from: &'static str, config: &mut Config) -> Result<(), String> {
        (self.apply)(config, (self.parse)(value)?, from);
        Ok(())
    }

    fn summary(&self) -> &'static [SummaryField] {
        self.summary
    }
}

/// Every setting, in the order of `--help` and README's table.
pub static ALL: &[&dyn Declared] = &[
    &VAULT_ADDR,
    &ROLE,
    &MOUNT,
    &JWT_FILE,
    &JWT,
    &TOKEN_FILE,
    &TOKEN_FILE_MODE,
    &TOKEN_FILE_OWNER,
    &ONCE,
    &TIMEOUT,
    &MIN_BACKOFF,
    &MAX_BACKOFF,
    &RECOVERY_BACKOFF,
    &RENEW_INCREMENT,
    &REVOKE_ON_EXIT,
    &LISTEN,
    &LOG,
    &LOG_FORMAT,
    &NAMESPACE,
    &HEADERS,
    &CA_CERT,
    &CA_CERT_BYTES,
    &CA_PATH,
    &CLIENT_CERT,
    &CLIENT_KEY,
    &TLS_SERVER_NAME,
    &SKIP_VERIFY,
    &CLIENT_TIMEOUT,
    &DISABLE_REDIRECTS,
    &PROXY_ADDR,
    &HTTPS_PROXY,
    &HTTP_PROXY,
    &NO_PROXY,
    &ON_CHANGE,
    &ON_CHANGE_TIMEOUT,
    &SIGNAL_PID_FILE,
    &SIGNAL,
    &TOKEN_INFO_FILE,
    &SECRETS_DIR,
    &SECRETS_REFRESH,
    &CERT_RENEW_BEFORE,
    &ANNOTATIONS_FILE,
    &EXEC_RESTART,
    &EXEC_STOP_SIGNAL,
    &EXEC_STOP_TIMEOUT,
    &EXEC_TOKEN,
];

/// The values help texts state, each made from the constant it describes so that the two
/// cannot drift apart: `{name}` in a declaration's help stands for the value.
fn help_values() -> [(&'static str, String); 2] {
    [
        ("{revoke_grace}", human(REVOKE_GRACE)),
        ("{shortest_period}", human(SHORTEST_PERIOD)),
    ]
}

/// A setting read from a flag and its variables.
const fn flag(
    flag: &'static str,
    env: &'static [&'static str],
    value: Option<&'static str>,
    default: Option<&'static str>,
    help: &'static str,
) -> About {
    About {
        flag: Some(flag),
        env,
        value,
        default,
        required: false,
        help,
        exec_only: false,
    }
}

/// A setting read from the environment only.
const fn env_only(
    env: &'static [&'static str],
    default: Option<&'static str>,
    help: &'static str,
) -> About {
    About {
        flag: None,
        env,
        value: None,
        default,
        required: false,
        help,
        exec_only: false,
    }
}

/// A setting of `vault-login exec`, read from the environment only.
const fn exec_env(
    env: &'static [&'static str],
    default: Option<&'static str>,
    help: &'static str,
) -> About {
    About {
        exec_only: true,
        ..env_only(env, default, help)
    }
}

/// Vault's address.
pub const VAULT_ADDR: Setting<Url> = Setting {
    about: About {
        required: true,
        ..flag(
            "--vault-addr",
            &["VAULT_ADDR", "BAO_ADDR"],
            Some("URL"),
            None,
            "your Vault's URL, e.g. https://vault.example:8200",
        )
    },
    parse: parse_vault_addr,
    apply: |c, v, _| c.vault.addr = v,
    summary: &[("vault_addr", |c| {
        shown(c.vault.addr.as_str().trim_end_matches('/'))
    })],
};

/// The kubernetes auth role.
pub const ROLE: Setting<String> = Setting {
    about: About {
        required: true,
        ..flag(
            "--role",
            &["VAULT_LOGIN_ROLE"],
            Some("ROLE"),
            None,
            "the kubernetes auth role to log in as",
        )
    },
    parse: parse_role,
    apply: |c, v, _| c.role = v,
    summary: &[("role", |c| shown(&c.role))],
};

/// The kubernetes auth mount.
pub const MOUNT: Setting<String> = Setting {
    about: flag(
        "--mount",
        &["VAULT_LOGIN_MOUNT"],
        Some("PATH"),
        Some("kubernetes"),
        "path the kubernetes auth method is mounted at (may contain /)",
    ),
    parse: parse_mount,
    apply: |c, v, _| c.mount = v,
    summary: &[("mount", |c| shown(&c.mount))],
};

/// The service-account JWT file.
pub const JWT_FILE: Setting<PathBuf> = Setting {
    about: flag(
        "--jwt-file",
        &["VAULT_LOGIN_JWT_FILE"],
        Some("FILE"),
        Some(DEFAULT_JWT_FILE),
        "projected service-account token file, re-read at every login",
    ),
    parse: |s| parse_file_path(s, "the service-account token"),
    apply: |c, v, _| {
        // VAULT_LOGIN_JWT, read after this, wins.
        if !matches!(c.jwt, JwtSource::Env(_)) {
            c.jwt = JwtSource::File(v);
        }
    },
    summary: &[("jwt", summary::jwt)],
};

/// The JWT itself.
pub const JWT: Setting<Secret> = Setting {
    about: env_only(&[JWT_ENV], None,
        "the JWT itself, for local debugging (never a flag: process arguments are visible to others); wins over the file"),
    parse: |s| Ok(Secret::new(s.to_string())),
    apply: |c, v, _| c.jwt = JwtSource::Env(v),
    // Shown in JWT_FILE's jwt field.
    summary: &[],
};

/// Where the token goes.
pub const TOKEN_FILE: Setting<TokenSink> = Setting {
    about: flag(
        "--token-file",
        &["VAULT_LOGIN_TOKEN_FILE"],
        Some("FILE"),
        Some(DEFAULT_TOKEN_FILE),
        "file to write the Vault token to; - prints it (once mode only)",
    ),
    parse: |s| match s {
        "-" => Ok(TokenSink::Stdout),
        _ => parse_file_path(s, "the vault token").map(TokenSink::File),
    },
    apply: |c, v, from| {
        c.token_sink = v;
        c.token_file_setting = from;
    },
    summary: &[("token_sink", summary::token_sink)],
};

/// The token file's mode.
pub const TOKEN_FILE_MODE: Setting<u32> = Setting {
    about: flag(
        "--token-file-mode",
        &["VAULT_LOGIN_TOKEN_FILE_MODE"],
        Some("MODE"),
        Some("0600"),
        "octal permission bits of the token file, exact on every write (umask ignored)",
    ),
    parse: parse_mode,
    apply: |c, v, _| {
        c.token_file_mode = v;
        c.hooks.file_mode = v;
    },
    summary: &[("token_file_mode", |c| format!("{:04o}", c.token_file_mode))],
};

/// The token file's owner.
pub const TOKEN_FILE_OWNER: Setting<Owner> = Setting {
    about: flag(
        "--token-file-owner",
        &["VAULT_LOGIN_TOKEN_FILE_OWNER"],
        Some("UID[:GID]"),
        None,
        "numeric owner to chown the token file to at every write, UID or UID:GID",
    ),
    parse: parse_owner,
    apply: |c, v, _| {
        c.token_file_owner = Some(v);
        c.hooks.file_owner = Some(v);
    },
    summary: &[("token_file_owner", summary::owner)],
};

/// Once (init container) mode.
pub const ONCE: Setting<bool> = Setting {
    about: flag(
        "--once",
        &["VAULT_LOGIN_ONCE"],
        None,
        Some("false"),
        "init-container mode: log in, write the token and exit 0",
    ),
    parse: parse_bool,
    apply: |c, v, _| c.once = v,
    summary: &[("once", |c| c.once.to_string())],
};
/// The once-mode deadline.
pub const TIMEOUT: Setting<Duration> = Setting {
    about: flag(
        "--timeout",
        &["VAULT_LOGIN_TIMEOUT"],
        Some("DURATION"),
        Some("5m"),
        "in once mode, give up (exit 1) after this long",
    ),
    parse: positive,
    apply: |c, v, _| c.timeout = v,
    summary: &[("timeout", |c| human(c.timeout))],
};

/// The shortest retry wait.
pub const MIN_BACKOFF: Setting<Duration> = Setting {
    about: flag(
        "--min-backoff",
        &["VAULT_LOGIN_MIN_BACKOFF"],
        Some("DURATION"),
        Some("1s"),
        "shortest wait between retries",
    ),
    parse: positive,
    apply: |c, v, _| c.min_backoff = v,
    summary: &[("min_backoff", |c| human(c.min_backoff))],
};
/// The longest retry wait.
pub const MAX_BACKOFF: Setting<Duration> = Setting {
    about: flag(
        "--max-backoff",
        &["VAULT_LOGIN_MAX_BACKOFF"],
        Some("DURATION"),
        Some("5m"),
        "longest wait between retries",
    ),
    parse: positive,
    apply: |c, v, _| c.max_backoff = v,
    summary: &[("max_backoff", |c| human(c.max_backoff))],
};
/// The longest retry wait without a valid token.
pub const RECOVERY_BACKOFF: Setting<Duration> = Setting {
    about: flag(
        "--recovery-backoff",
        &["VAULT_LOGIN_RECOVERY_BACKOFF"],
        Some("DURATION"),
        Some("20s"),
        "longest wait between logins while no valid token is held (Vault busy or sealed: max backoff)",
    ),
    parse: positive,
    apply: |c, v, _| c.recovery_backoff = v,
    summary: &[("recovery_backoff", |c| human(c.recovery_backoff))],
};
/// The renewal increment.
pub const RENEW_INCREMENT: Setting<Duration> = Setting {
    about: flag(
        "--renew-increment",
        &["VAULT_LOGIN_RENEW_INCREMENT"],
        Some("DURATION"),
        None,
        "increment to ask for when renewing the token, at least {shortest_period} (unset: Vault decides)",
    ),
    parse: at_least_a_second,
    apply: |c, v, _| c.renew_increment = Some(v),
    summary: &[("renew_increment", |c| {
        c.renew_increment.map_or_else(none, human)
    })],
};
/// Revoke on exit.
pub const REVOKE_ON_EXIT: Setting<bool> = Setting {
    about: flag(
        "--revoke-on-exit",
        &["VAULT_LOGIN_REVOKE_ON_EXIT"],
        None,
        Some("false"),
        "on SIGTERM/SIGINT, revoke the token ({revoke_grace} bound) and remove the file",
    ),
    parse: parse_bool,
    apply: |c, v, _| c.revoke_on_exit = v,
    summary: &[("revoke_on_exit", |c| c.revoke_on_exit.to_string())],
};
/// The health/metrics address.
pub const LISTEN: Setting<SocketAddr> = Setting {
    about: flag(
        "--listen",
        &["VAULT_LOGIN_LISTEN"],
        Some("ADDR"),
        None,
        "address of the /healthz, /readyz and /metrics server, e.g. 0.0.0.0:9102 or :9102",
    ),
    parse: parse_listen,
    apply: |c, v, _| c.listen = Some(v),
    summary: &[("listen", |c| c.listen.map_or_else(none, |a| a.to_string()))],
};

/// The log filter.
pub const LOG: Setting<String> = Setting {
    about: flag(
        "--log",
        &["VAULT_LOGIN_LOG"],
        Some("FILTER"),
        Some("info"),
        "log filter: levels and target=level directives (RUST_LOG syntax without span or field filters), e.g. info or vault_login=debug",
    ),
    parse: parse_filter,
    apply: |c, v, _| c.log = v,
    summary: &[("log", |c| shown(&c.log))],
};
/// The log format.
pub const LOG_FORMAT: Setting<LogFormat> = Setting {
    about: flag(
        "--log-format",
        &["VAULT_LOGIN_LOG_FORMAT"],
        Some("FORMAT"),
        Some("text"),
        "log format on stderr: text, or json (one object per line)",
    ),
    parse: parse_log_format,
    apply: |c, v, _| c.log_format = v,
    summary: &[("log_format", summary::log_format)],
};

/// The Vault namespace; "/" (the root namespace) parses to none.
pub const NAMESPACE: Setting<Option<String>> = Setting {
    about: flag(
        "--namespace",
        &["VAULT_NAMESPACE", "BAO_NAMESPACE"],
        Some("NAMESPACE"),
        None,
        "Enterprise/OpenBao namespace, sent as X-Vault-Namespace",
    ),
    parse: parse_namespace,
    apply: |c, v, _| c.vault.namespace = v,
    summary: &[("namespace", |c| opt(c.vault.namespace.as_deref()))],
};

/// Extra request headers.
pub const HEADERS: Setting<Vec<(String, Secret)>> = Setting {
    about: env_only(&["VAULT_HEADERS", "BAO_HEADERS"], None,
        "extra headers for every request, a JSON object of names to string values (e.g. an API gateway's key); X-Vault-* refused as in the vault CLI; values never logged"),
    parse: parse_headers,
    apply: |c, v, _| c.vault.headers = v,
    summary: &[("headers", summary::headers)],
};
/// The CA file.
pub const CA_CERT: Setting<PathBuf> = Setting {
    about: flag(
        "--ca-cert",
        &["VAULT_CACERT", "BAO_CACERT"],
        Some("FILE"),
        None,
        "PEM file of CA certificates to trust instead of the built-in public roots",
    ),
    parse: |s| readable(s, false, "give the path of a PEM file of CA certificates"),
    apply: |c, v, from| {
        c.vault.tls.ca_cert = Some(v);
        c.vault.tls.names.ca_cert = from;
    },
    summary: &[("ca_cert", |c| path(&c.vault.tls.ca_cert))],
};
/// The CA certificates' PEM text.
pub const CA_CERT_BYTES: Setting<String> = Setting {
    about: env_only(
        &["VAULT_CACERT_BYTES", "BAO_CACERT_BYTES"],
        None,
        "the CA certificates' PEM text itself",
    ),
    parse: |s| count_pem_certificates(s).map(|_| s.to_string()),
    apply: |c, v, from| {
        c.vault.tls.ca_cert_bytes = Some(v);
        c.vault.tls.names.ca_cert_bytes = from;
    },
    summary: &[("ca_cert_bytes", summary::ca_cert_bytes)],
};
/// The CA directory.
pub const CA_PATH: Setting<PathBuf> = Setting {
    about: flag("--ca-path", &["VAULT_CAPATH", "BAO_CAPATH"], Some("DIR"), None,
        "directory of PEM CA certificates to trust; as in the vault CLI the first CA setting given (file, text, directory) decides"),
    parse: |s| readable(s, true, "give a directory of PEM CA certificates"),
    apply: |c, v, from| {
        c.vault.tls.ca_path = Some(v);
        c.vault.tls.names.ca_path = from;
    },
    summary: &[("ca_path", |c| path(&c.vault.tls.ca_path))],
};

/// The mTLS client certificate.
pub const CLIENT_CERT: Setting<PathBuf> = Setting {
    about: flag(
        "--client-cert",
        &["VAULT_CLIENT_CERT", "BAO_CLIENT_CERT"],
        Some("FILE"),
        None,
        "PEM client certificate for mTLS (needs the client key)",
    ),
    parse: |s| readable(s, false, "give the path of the PEM client certificate"),
    apply: |c, v, from| {
        c.vault.tls.client_cert = Some(v);
        c.vault.tls.names.client_cert = from;
    },
    summary: &[("client_cert", |c| path(&c.vault.tls.client_cert))],
};
/// The mTLS client key.
pub const CLIENT_KEY: Setting<PathBuf> = Setting {
    about: flag(
        "--client-key",
        &["VAULT_CLIENT_KEY", "BAO_CLIENT_KEY"],
        Some("FILE"),
        None,
        "PEM client key for mTLS (needs the client certificate)",
    ),
    parse: |s| readable(s, false, "give the path of the PEM client key"),
    apply: |c, v, from| {
        c.vault.tls.client_key = Some(v);
        c.vault.tls.names.client_key = from;
    },
    summary: &[("client_key", |c| path(&c.vault.tls.client_key))],
};

/// The TLS server name.
pub const TLS_SERVER_NAME: Setting<String> = Setting {
    about: flag("--tls-server-name", &["VAULT_TLS_SERVER_NAME", "BAO_TLS_SERVER_NAME"], Some("NAME"), None,
        "name sent as SNI and checked in Vault's certificate, while connecting to VAULT_ADDR's host (an IP address, or through a proxy: only checked)"),
    parse: parse_server_name,
    apply: |c, v, from| {
        c.vault.tls.server_name = Some(v);
        c.vault.tls.names.server_name = from;
    },
    summary: &[("tls_server_name", |c| opt(c.vault.tls.server_name.as_deref()))],
};

/// Skip certificate verification.
pub const SKIP_VERIFY: Setting<bool> = Setting {
    about: flag(
        "--tls-skip-verify",
        &["VAULT_SKIP_VERIFY", "BAO_SKIP_VERIFY"],
        None,
        Some("false"),
        "do not verify Vault's certificate (dangerous; warns at every start)",
    ),
    parse: parse_bool,
    apply: |c, v, _| c.vault.tls.skip_verify = v,
    summary: &[("tls_skip_verify", |c| c.vault.tls.skip_verify.to_string())],
};
/// The per-request timeout.
pub const CLIENT_TIMEOUT: Setting<Duration> = Setting {
    about: flag(
        "--client-timeout",
        &["VAULT_CLIENT_TIMEOUT", "BAO_CLIENT_TIMEOUT"],
        Some("DURATION"),
        Some("60s"),
        "timeout of each request to Vault",
    ),
    parse: positive,
    apply: |c, v, _| c.vault.timeout = v,
    summary: &[("client_timeout", |c| human(c.vault.timeout))],
};
/// Do not follow redirects.
pub const DISABLE_REDIRECTS: Setting<bool> = Setting {
    about: flag("--disable-redirects", &["VAULT_DISABLE_REDIRECTS", "BAO_DISABLE_REDIRECTS"], None, Some("false"),
        "do not follow a standby's redirect to the active node (one hop is followed otherwise, never from https to http)"),
    parse: parse_bool,
    apply: |c, v, _| c.vault.disable_redirects = v,
    summary: &[("disable_redirects", |c| c.vault.disable_redirects.to_string())],
};
/// The proxy for every request.
pub const PROXY_ADDR: Setting<Url> = Setting {
    about: flag("--proxy-addr", &["VAULT_PROXY_ADDR", "BAO_PROXY_ADDR", "VAULT_HTTP_PROXY", "BAO_HTTP_PROXY"], Some("URL"), None,
        "HTTP proxy for every request to Vault, NO_PROXY notwithstanding; without it HTTPS_PROXY, HTTP_PROXY and NO_PROXY apply"),
    parse: parse_proxy_url,
    apply: |c, v, _| c.vault.proxy.all = Some(v),
    summary: &[("proxy", |c| summary::proxy(&c.vault.proxy))],
};

// The usual proxy variables, upper case first as in Go; they have no flags.
/// The proxy for an https Vault.
pub const HTTPS_PROXY: Setting<Url> = Setting {
    about: env_only(&["HTTPS_PROXY", "https_proxy"], None,
        "without VAULT_PROXY_ADDR, the proxy for an https Vault (tunnelled with CONNECT; user:password@ is sent as Proxy-Authorization, never logged)"),
    parse: parse_proxy_url,
    apply: |c, v, _| c.vault.proxy.https = Some(v),
    // Shown in PROXY_ADDR's proxy field.
    summary: &[],
};

/// The proxy for an http Vault.
pub const HTTP_PROXY: Setting<Url> = Setting {
    about: env_only(
        &["HTTP_PROXY", "http_proxy"],
        None,
        "without VAULT_PROXY_ADDR, the proxy for an http Vault",
    ),
    parse: parse_proxy_url,
    apply: |c, v, _| c.vault.proxy.http = Some(v),
    // Shown in PROXY_ADDR's proxy field.
    summary: &[],
};
/// Hosts reached directly.
pub const NO_PROXY: Setting<String> = Setting {
    about: env_only(&["NO_PROXY", "no_proxy"], None,
        "hosts, .domain suffixes and networks reached without HTTPS_PROXY/HTTP_PROXY; loopback and localhost are always direct"),
    parse: |s| Ok(s.to_string()),
    apply: |c, v, _| c.vault.proxy.no_proxy = Some(v),
    // Shown in PROXY_ADDR's proxy field.
    summary: &[],
};

/// The on-change command.
pub const ON_CHANGE: Setting<Vec<String>> = Setting {
    about: flag("--on-change", &["VAULT_LOGIN_ON_CHANGE"], Some("COMMAND"), None,
        "program and arguments to run after each new token, split like a shell would (no shell runs)"),
    parse: parse_on_change,
    apply: |c, v, _| c.hooks.on_change = Some(v),
    summary: &[("on_change", summary::on_change)],
};

/// The on-change command's time limit.
pub const ON_CHANGE_TIMEOUT: Setting<Duration> = Setting {
    about: flag(
        "--on-change-timeout",
        &["VAULT_LOGIN_ON_CHANGE_TIMEOUT"],
        Some("DURATION"),
        Some("30s"),
        "kill the on-change command (and its children) after this long",
    ),
    parse: positive,
    apply: |c, v, _| c.hooks.on_change_timeout = v,
    summary: &[("on_change_timeout", |c| human(c.hooks.on_change_timeout))],
};
/// The app's pid file.
pub const SIGNAL_PID_FILE: Setting<PathBuf> = Setting {
    about: flag(
        "--signal-pid-file",
        &["VAULT_LOGIN_SIGNAL_PID_FILE"],
        Some("FILE"),
        None,
        "file holding the pid of the app to signal after each new token",
    ),
    parse: |s| parse_file_path(s, "the app's process id"),
    apply: |c, v, _| c.hooks.signal_pid_file = Some(v),
    summary: &[("signal_pid_file", |c| path(&c.hooks.signal_pid_file))],
};
/// The signal for the app.
pub const SIGNAL: Setting<AppSignal> = Setting {
    about: flag("--signal", &["VAULT_LOGIN_SIGNAL"], Some("SIGNAL"), Some("HUP"),
        "signal to send to that app: a name with or without SIG (HUP, USR1, USR2, TERM, INT, QUIT, WINCH, ...) or its number"),
    parse: parse_signal,
    apply: |c, v, _| c.hooks.signal = v,
    summary: &[("signal", summary::signal)],
};

/// The token info file.
pub const TOKEN_INFO_FILE: Setting<PathBuf> = Setting {
    about: flag("--token-info-file", &["VAULT_LOGIN_TOKEN_INFO_FILE"], Some("FILE"), None,
        "file for the token's JSON metadata (never the token), rewritten at every login and renewal"),
    parse: parse_info_file,
    apply: |c, v, _| c.hooks.token_info_file = Some(v),
    summary: &[("token_info_file", |c| path(&c.hooks.token_info_file))],
};

/// Where secret files go; checked only when there are secrets.
pub const SECRETS_DIR: Setting<PathBuf> = Setting {
    about: env_only(&[SECRETS_DIR_ENV], None,
        "where the VAULT_LOGIN_SECRET_<NAME> files go (unset: the token file's directory), written like the token file"),
    parse: |s| Ok(PathBuf::from(s)),
    apply: |c, v, _| c.secrets.dir = v,
    summary: &[("secrets", summary::secrets), ("templates", summary::templates)],
};
/// How often secrets are read again.
pub const SECRETS_REFRESH: Setting<Duration> = Setting {
    about: env_only(&[SECRETS_REFRESH_ENV], Some("5m"),
        "how often the sidecar reads each secret again; a file is rewritten only when its content (KV v2: version) changes"),
    parse: at_least_a_second,
    apply: |c, v, _| c.secrets.refresh = v,
    // Shown in SECRETS_DIR's secrets field.
    summary: &[],
};

/// How long before NotAfter a certificate is renewed at the latest.
pub const CERT_RENEW_BEFORE: Setting<Duration> = Setting {
    about: env_only(&[crate::secrets::certs::CERT_RENEW_BEFORE_ENV], None,
        "renew each VAULT_LOGIN_CERT_<NAME> certificate this long before it expires, if that is earlier than 2/3 of its life (±10 % jitter)"),
    parse: positive,
    apply: |c, v, _| c.certs.renew_before = Some(v),
    summary: &[("certs", summary::certs)],
};

/// The pod's annotations file (downward API), read as a layer below flags and environment.
pub const ANNOTATIONS_FILE: Setting<PathBuf> = Setting {
    about: env_only(&[crate::config::annotations::ANNOTATIONS_FILE_ENV], None,
        "the pod's annotations (downward API, fieldRef metadata.annotations): vault.hashicorp.com/* and openbao.org/* set what flags and variables leave unset"),
    parse: |s| Ok(PathBuf::from(s)),
    // Read before every other setting, as the layer below them: nothing left to apply.
    apply: |_, _, _| {},
    // What the annotations set is shown in each setting's field.
    summary: &[],
};

/// `vault-login exec`: what a changed environment does to the program.
pub const EXEC_RESTART: Setting<Restart> = Setting {
    about: exec_env(&["VAULT_LOGIN_EXEC_RESTART"], Some("always"),
        "exec: when a value changes, always (stop the program, start it again), never (keep it running, stale) or signal (send the stop signal only)"),
    parse: parse_restart,
    apply: |c, v, _| {
        if let Some(exec) = &mut c.exec {
            exec.restart = v;
        }
    },
    summary: &[("exec", summary::exec)],
};

/// `vault-login exec`: the signal that stops the program.
pub const EXEC_STOP_SIGNAL: Setting<AppSignal> = Setting {
    about: exec_env(
        &["VAULT_LOGIN_EXEC_STOP_SIGNAL"],
        Some("TERM"),
        "exec: the signal that stops the program for a restart (or, with signal, tells it to reload)",
    ),
    parse: parse_signal,
    apply: |c, v, _| {
        if let Some(exec) = &mut c.exec {
            exec.stop_signal = v;
        }
    },
    // Shown in EXEC_RESTART's exec field.
    summary: &[],
};

/// `vault-login exec`: how long a stopped program may take.
pub const EXEC_STOP_TIMEOUT: Setting<Duration> = Setting {
    about: exec_env(
        &["VAULT_LOGIN_EXEC_STOP_TIMEOUT"],
        Some("30s"),
        "exec: how long the program may take to stop before it is killed (SIGKILL)",
    ),
    parse: positive,
    apply: |c, v, _| {
        if let Some(exec) = &mut c.exec {
            exec.stop_timeout = v;
        }
    },
    // Shown in EXEC_RESTART's exec field.
    summary: &[],
};

/// `vault-login exec`: pass the token to the program.
pub const EXEC_TOKEN: Setting<bool> = Setting {
    about: exec_env(&["VAULT_LOGIN_EXEC_TOKEN"], Some("false"),
        "exec: also give the program VAULT_TOKEN (and VAULT_ADDR, VAULT_NAMESPACE), for apps that use a Vault SDK"),
    parse: parse_bool,
    apply: |c, v, _| {
        if let Some(exec) = &mut c.exec {
            exec.pass_token = v;
        }
    },
    // Shown in EXEC_RESTART's exec field.
    summary: &[],
};

/// A duration of more than zero.
fn positive(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d.is_zero() {
        return Err(format!("{s:?} must be more than zero; {DURATION_HINT}"));
    }
    Ok(d)
}

/// The shortest renewal increment or secrets refresh period: shorter would only load Vault.
const SHORTEST_PERIOD: Duration = Duration::from_secs(1);

/// A duration of at least [`SHORTEST_PERIOD`].
fn at_least_a_second(s: &str) -> Result<Duration, String> {
    let d = positive(s)?;
    if d < SHORTEST_PERIOD {
        return Err(format!(
            "{s:?} is less than {}; {DURATION_HINT}",
            human(SHORTEST_PERIOD)
        ));
    }
    Ok(d)
}

/// A path that names a file (not ending in '/').
fn parse_file_path(s: &str, what: &str) -> Result<PathBuf, String> {
    let path = PathBuf::from(s);
    if s.ends_with('/') || path.file_name().is_none() {
        return Err(format!(
            "{s:?} is not a file path; give the path of the file for {what}"
        ));
    }
    Ok(path)
}

/// A path to a file (or, with `dir`, a directory) that must be readable now.
fn readable(s: &str, dir: bool, todo: &str) -> Result<PathBuf, String> {
    let path = PathBuf::from(s);
    check_readable(&path, dir).map_err(|problem| format!("{problem}; {todo}"))?;
    Ok(path)
}

pub fn check_readable(path: &Path, dir: bool) -> Result<(), String> {
    let q = format!("{:?}", path.display().to_string());
    let meta = std::fs::metadata(path).map_err(|e| format!("{q} {}", io_problem(&e)))?;
    if dir {
        if !meta.is_dir() {
            return Err(format!("{q} is not a directory"));
        }
        std::fs::read_dir(path).map_err(|e| format!("{q} cannot be listed: {}", io_problem(&e)))?;
    } else {
        if meta.is_dir() {
            return Err(format!("{q} is a directory, not a file"));
        }
        std::fs::File::open(path).map_err(|e| format!("{q} cannot be read: {}", io_problem(&e)))?;
    }
    Ok(())
}

fn io_problem(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "does not exist".to_string(),
        std::io::ErrorKind::PermissionDenied => "is not readable (permission denied)".to_string(),
        _ => {
            let text = e.to_string();
            let mut chars = text.chars();
            match chars.next() {
                Some(first) => format!(
                    "cannot be read ({}{})",
                    first.to_lowercase(),
                    chars.as_str()
                ),
                None => "cannot be read".to_string(),
            }
        }
    }
}

fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    let t = s.trim();
    let addr = match t.strip_prefix(':') {
        // Go's ":9102": every IPv4 interface.
        Some(port) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => port
            .parse::<u16>()
            .ok()
            .map(|port| SocketAddr::from((Ipv4Addr::UNSPECIFIED, port))),
        Some(_) => None,
        None => t.parse::<SocketAddr>().ok(),
    };
    addr.ok_or_else(|| {
        format!("{s:?} is not an address; use IP:PORT such as 0.0.0.0:9102, [::]:9102 or :9102")
    })
}

/// Splits the on-change command and checks that a program given by path exists.
fn parse_on_change(s: &str) -> Result<Vec<String>, String> {
    let argv = split_command(s)?;
    // split_command returns at least the program.
    let program = argv.first().map_or("", String::as_str);
    // A bare name is looked up in PATH when it runs; a path can be checked now.
    if program.contains('/') {
        match std::fs::metadata(program) {
            Ok(meta) if meta.is_dir() => {
                return Err(format!(
                    "program {program:?} is a directory; give the path of an executable"
                ))
            }
            Ok(_) => {}
            Err(e) => {
                return Err(format!(
                "program {program:?} {}; give the path of an executable in this container's image",
                io_problem(&e)
            ))
            }
        }
    }
    Ok(argv)
}

/// A path for the token info file, in a directory that exists now (like the token file's).
fn parse_info_file(s: &str) -> Result<PathBuf, String> {
    let path = parse_file_path(s, "the token's metadata")?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    match std::fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => Ok(path),
        Ok(_) => Err(format!(
            "{s:?} is in {:?}, which is not a directory; give a path in an existing directory",
            dir.display().to_string()
        )),
        Err(e) => Err(format!(
            "the directory of {s:?} {}; mount the shared volume there or give a path in an existing directory",
            io_problem(&e)
        )),
    }
}

/// Parses true/false, 1/0, yes/no, on/off, in any case.
pub fn parse_bool(s: &str) -> Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(format!("{s:?} is not a boolean; use true or false")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::testing::*;

    // The tests of each setting, in the order of the declarations; the rules between settings
    // are tested in config::build.

    #[test]
    fn vault_addr_accepts_http_and_https_with_a_path_prefix() {
        let cases = [
            ("http://127.0.0.1:8200", "http://127.0.0.1:8200/"),
            ("https://vault.example:8200/", "https://vault.example:8200/"),
            ("https://vault.example///", "https://vault.example/"),
            ("https://lb.example/vault/", "https://lb.example/vault"),
            ("https://lb.example/a/b//", "https://lb.example/a/b"),
            ("HTTPS://Vault.Example", "https://vault.example/"),
            ("http://[::1]:8200", "http://[::1]:8200/"),
        ];
        for (input, want) in cases {
            let c = ok(&[], &[("VAULT_ADDR", input)]);
            assert_eq!(c.vault.addr.as_str(), want, "{input}");
        }
        let c = ok(&[], &[("VAULT_ADDR", "https://lb.example/vault/")]);
        assert!(summary_has(&c, "vault_addr=https://lb.example/vault"));
        let c = ok(&[], &[]);
        assert!(summary_has(&c, "vault_addr=https://vault.example:8200"));
    }

    #[test]
    fn role_rejects_whitespace() {
        rejects("VAULT_LOGIN_ROLE", "--role", "my role", "whitespace");
        rejects("VAULT_LOGIN_ROLE", "--role", "app\n", "whitespace");
    }

    #[test]
    fn mount_is_normalised() {
        for (input, want) in [
            ("kubernetes", "kubernetes"),
            ("/kubernetes/", "kubernetes"),
            ("//k8s/cluster-1//", "k8s/cluster-1"),
            ("a/b/c", "a/b/c"),
        ] {
            assert_eq!(
                ok(&[], &[("VAULT_LOGIN_MOUNT", input)]).mount,
                want,
                "{input}"
            );
            assert_eq!(ok(&["--mount", input], &[]).mount, want, "{input}");
        }
    }

    #[test]
    fn mount_rejects_bad_paths() {
        rejects("VAULT_LOGIN_MOUNT", "--mount", "/", "not a mount path");
        rejects("VAULT_LOGIN_MOUNT", "--mount", "///", "not a mount path");
        rejects("VAULT_LOGIN_MOUNT", "--mount", "a//b", "empty segment");
        rejects("VAULT_LOGIN_MOUNT", "--mount", "a/../b", "\"..\" segment");
        rejects("VAULT_LOGIN_MOUNT", "--mount", "..", "\"..\" segment");
        rejects("VAULT_LOGIN_MOUNT", "--mount", "./k8s", "\".\" segment");
        rejects("VAULT_LOGIN_MOUNT", "--mount", "k8s prod", "whitespace");
        rejects("VAULT_LOGIN_MOUNT", "--mount", " kubernetes", "whitespace");
        rejects("VAULT_LOGIN_MOUNT", "--mount", "k8s\t", "whitespace");
        rejects("VAULT_LOGIN_MOUNT", "--mount", "k8s?x", "'?'");
        rejects("VAULT_LOGIN_MOUNT", "--mount", "k8s%2f", "'%'");
    }

    #[test]
    fn jwt_file_path_must_name_a_file() {
        rejects(
            "VAULT_LOGIN_JWT_FILE",
            "--jwt-file",
            "/var/run/",
            "not a file path",
        );
        let c = ok(&[], &[("VAULT_LOGIN_JWT_FILE", "/run/token")]);
        assert!(summary_has(&c, "jwt=file:/run/token"));
    }

    #[test]
    fn jwt_from_the_environment_wins_over_the_file() {
        let c = ok(
            &["--jwt-file", "/x"],
            &[("VAULT_LOGIN_JWT", A_JWT), ("VAULT_LOGIN_JWT_FILE", "/y")],
        );
        match &c.jwt {
            JwtSource::Env(secret) => assert_eq!(secret.expose(), A_JWT),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_jwt_is_never_printed() {
        let c = ok(&[], &[("VAULT_LOGIN_JWT", A_JWT)]);
        let summary = c.summary();
        assert!(summary.contains("jwt=env:VAULT_LOGIN_JWT"), "{summary}");
        assert!(!summary.contains(A_JWT));
        assert!(!summary.contains("eyJ"));
        let debug = format!("{c:?}");
        assert!(!debug.contains(A_JWT), "{debug}");
        assert!(!debug.contains("eyJ"), "{debug}");
    }

    #[test]
    fn there_is_no_jwt_flag() {
        for args in [vec!["--jwt", A_JWT], vec![A_JWT]] {
            match load(&args, &[]) {
                Err(ConfigError::Usage(message)) => {
                    assert!(!message.contains(A_JWT), "{message}");
                    assert!(!message.contains("eyJ"), "{message}");
                }
                other => panic!("{other:?}"),
            }
        }
        match load(&[&format!("--jwt={A_JWT}")], &[]) {
            Err(ConfigError::Usage(message)) => assert!(!message.contains(A_JWT), "{message}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn token_file_path_must_name_a_file() {
        rejects(
            "VAULT_LOGIN_TOKEN_FILE",
            "--token-file",
            "/var/run/secrets/",
            "not a file path",
        );
        rejects(
            "VAULT_LOGIN_TOKEN_FILE",
            "--token-file",
            "/",
            "not a file path",
        );
        rejects(
            "VAULT_LOGIN_TOKEN_FILE",
            "--token-file",
            "/tmp/..",
            "not a file path",
        );
        let c = ok(&[], &[("VAULT_LOGIN_TOKEN_FILE", "token")]);
        assert_eq!(c.token_sink, TokenSink::File(PathBuf::from("token")));
    }

    #[test]
    fn token_file_mode_names_its_source() {
        rejects(
            "VAULT_LOGIN_TOKEN_FILE_MODE",
            "--token-file-mode",
            "0778",
            "octal",
        );
        rejects(
            "VAULT_LOGIN_TOKEN_FILE_MODE",
            "--token-file-mode",
            "1000",
            "0777",
        );
        let c = ok(&[], &[("VAULT_LOGIN_TOKEN_FILE_MODE", "440")]);
        assert!(summary_has(&c, "token_file_mode=0440"));
    }

    #[test]
    fn token_file_owner_names_its_source() {
        rejects(
            "VAULT_LOGIN_TOKEN_FILE_OWNER",
            "--token-file-owner",
            "-1",
            "numeric",
        );
        rejects(
            "VAULT_LOGIN_TOKEN_FILE_OWNER",
            "--token-file-owner",
            "1000:",
            "numeric",
        );
        let (source, _) = bad(&["--token-file-owner", "-1"], &[]);
        assert_eq!(source, "--token-file-owner");
        let c = ok(&[], &[("VAULT_LOGIN_TOKEN_FILE_OWNER", "1000:2000")]);
        assert!(summary_has(&c, "token_file_owner=1000:2000"));
    }

    #[test]
    fn negative_duration_flag_is_a_value_not_a_flag() {
        let (source, problem) = bad(&["--timeout", "-5s"], &[]);
        assert_eq!(source, "--timeout");
        assert!(problem.contains("negative"), "{problem}");
    }

    #[test]
    fn listen_addresses() {
        let listen = |v: &str| ok(&[], &[("VAULT_LOGIN_LISTEN", v)]).listen;
        assert_eq!(
            listen("0.0.0.0:9102"),
            Some("0.0.0.0:9102".parse().unwrap())
        );
        assert_eq!(listen(":9102"), Some("0.0.0.0:9102".parse().unwrap()));
        assert_eq!(listen("127.0.0.1:0"), Some("127.0.0.1:0".parse().unwrap()));
        assert_eq!(listen("[::]:9102"), Some("[::]:9102".parse().unwrap()));
        assert_eq!(listen("[::1]:80"), Some("[::1]:80".parse().unwrap()));
        for input in [
            "9102",
            "localhost:9102",
            ":",
            ":99999",
            ":+80",
            "0.0.0.0",
            "1.2.3.4:x",
            "::1:80",
        ] {
            rejects("VAULT_LOGIN_LISTEN", "--listen", input, "not an address");
        }
        let c = ok(&["--listen", ":9102"], &[]);
        assert!(summary_has(&c, "listen=0.0.0.0:9102"));
    }

    #[test]
    fn log_settings() {
        assert_eq!(
            ok(&[], &[("VAULT_LOGIN_LOG", "debug,hyper=off")]).log,
            "debug,hyper=off"
        );
        assert_eq!(
            ok(&["--log", "trace"], &[("VAULT_LOGIN_LOG", "warn")]).log,
            "trace"
        );
        assert_eq!(
            ok(&[], &[("VAULT_LOGIN_LOG_FORMAT", "Text")]).log_format,
            LogFormat::Text
        );
        assert_eq!(
            ok(&["--log-format", "json"], &[]).log_format,
            LogFormat::Json
        );
        rejects(
            "VAULT_LOGIN_LOG_FORMAT",
            "--log-format",
            "xml",
            "text or json",
        );
    }

    #[test]
    fn log_errors_name_the_flag_or_variable_used() {
        for (args, vars, source) in [
            (vec!["--log", "info,[[["], vec![], "--log"),
            (
                vec![],
                vec![("VAULT_LOGIN_LOG", "info,[[[")],
                "VAULT_LOGIN_LOG",
            ),
            (vec!["--log-format", "xml"], vec![], "--log-format"),
        ] {
            let (name, problem) = bad(&args, &vars);
            assert_eq!(name, source, "{problem}");
        }
    }

    #[test]
    fn namespace_strips_slashes() {
        let ns = |v: &str| ok(&[], &[("VAULT_NAMESPACE", v)]).vault.namespace;
        assert_eq!(ns("admin").as_deref(), Some("admin"));
        assert_eq!(ns("/admin/team-a/").as_deref(), Some("admin/team-a"));
        assert_eq!(ns("/"), None);
        rejects("VAULT_NAMESPACE", "--namespace", "a//b", "empty segment");
        rejects("VAULT_NAMESPACE", "--namespace", "a b", "whitespace");
        rejects(
            "VAULT_NAMESPACE",
            "--namespace",
            "ns\r\nX-Evil: 1",
            "whitespace",
        );
    }

    #[test]
    fn tls_files_must_be_readable() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("ca.pem");
        std::fs::write(&file, "pem").unwrap();
        let missing = dir.path().join("missing.pem").display().to_string();
        let dir_s = dir.path().display().to_string();
        let file_s = file.display().to_string();

        rejects("VAULT_CACERT", "--ca-cert", &missing, "does not exist");
        rejects("VAULT_CACERT", "--ca-cert", &dir_s, "is a directory");
        rejects("VAULT_CAPATH", "--ca-path", &missing, "does not exist");
        rejects("VAULT_CAPATH", "--ca-path", &file_s, "not a directory");
        let (source, _) = bad(&[], &[("BAO_CACERT", &missing)]);
        assert_eq!(source, "BAO_CACERT");

        let (source, problem) = bad(
            &[],
            &[
                ("VAULT_CLIENT_CERT", &missing),
                ("VAULT_CLIENT_KEY", &file_s),
            ],
        );
        assert_eq!(source, "VAULT_CLIENT_CERT");
        assert!(
            problem.contains("does not exist") && problem.contains("client certificate"),
            "{problem}"
        );
        let (source, problem) = bad(&["--client-cert", &file_s, "--client-key", &missing], &[]);
        assert_eq!(source, "--client-key");
        assert!(problem.contains("does not exist"), "{problem}");
    }

    #[test]
    fn tls_errors_name_the_flag_or_variable_used() {
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "no certificate here\n").unwrap();
        let junk = junk.to_str().unwrap();
        let empty_dir = dir.path().join("empty");
        std::fs::create_dir(&empty_dir).unwrap();
        let empty_dir = empty_dir.to_str().unwrap();
        type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
        let cases: [Case; 6] = [
            (&[], &[("VAULT_CACERT", junk)], "VAULT_CACERT: "),
            (&[], &[("BAO_CACERT", junk)], "BAO_CACERT: "),
            (
                &["--ca-cert", junk],
                &[("VAULT_CACERT", junk)],
                "--ca-cert: ",
            ),
            (&[], &[("BAO_CAPATH", empty_dir)], "BAO_CAPATH: "),
            (&["--ca-path", empty_dir], &[], "--ca-path: "),
            (
                &["--client-cert", junk],
                &[("BAO_CLIENT_KEY", junk)],
                "--client-cert: ",
            ),
        ];
        for (args, vars, prefix) in cases {
            let c = ok(args, vars);
            let err = crate::vault::tls::client_config(&c.vault.tls).unwrap_err();
            assert!(err.to_string().starts_with(prefix), "{prefix}: {err}");
        }
        // A key file without a key, named by the twin that gave it.
        let signed = rcgen::generate_simple_self_signed(vec!["client".to_string()]).unwrap();
        let cert = dir.path().join("cert.pem");
        std::fs::write(&cert, signed.cert.pem()).unwrap();
        let cert = cert.to_str().unwrap();
        let c = ok(
            &[],
            &[("VAULT_CLIENT_CERT", cert), ("BAO_CLIENT_KEY", junk)],
        );
        let err = crate::vault::tls::client_config(&c.vault.tls).unwrap_err();
        assert!(err.to_string().starts_with("BAO_CLIENT_KEY: "), "{err}");
    }

    #[test]
    fn tls_server_name_rejects_whitespace() {
        rejects(
            "VAULT_TLS_SERVER_NAME",
            "--tls-server-name",
            "vault example",
            "whitespace",
        );
    }

    #[test]
    fn proxy_addr_precedence_like_the_vault_cli() {
        let url = |c: &Config| c.vault.proxy.all.as_ref().map(|u| u.as_str().to_string());
        let c = ok(
            &[],
            &[
                ("VAULT_HTTP_PROXY", "http://old:3128"),
                ("VAULT_PROXY_ADDR", "http://new:3128"),
            ],
        );
        assert_eq!(url(&c).as_deref(), Some("http://new:3128/"));
        let c = ok(&[], &[("VAULT_HTTP_PROXY", "old:3128")]);
        assert_eq!(
            url(&c).as_deref(),
            Some("http://old:3128/"),
            "http:// assumed"
        );
        let c = ok(&[], &[("BAO_PROXY_ADDR", "https://bao-proxy")]);
        assert_eq!(url(&c).as_deref(), Some("https://bao-proxy/"));
        let c = ok(
            &["--proxy-addr", "http://flag:1"],
            &[("VAULT_PROXY_ADDR", "http://env:2")],
        );
        assert_eq!(url(&c).as_deref(), Some("http://flag:1/"));
        assert_eq!(
            ok(&[], &[]).vault.proxy,
            crate::vault::proxy::ProxySettings::default()
        );
    }

    #[test]
    fn environment_proxies_upper_case_first() {
        let c = ok(
            &[],
            &[
                ("HTTPS_PROXY", "http://upper:1"),
                ("https_proxy", "http://lower:2"),
                ("http_proxy", "lower-http:3"),
                ("no_proxy", ".svc,.cluster.local"),
            ],
        );
        assert_eq!(c.vault.proxy.https.unwrap().as_str(), "http://upper:1/");
        assert_eq!(c.vault.proxy.http.unwrap().as_str(), "http://lower-http:3/");
        assert_eq!(
            c.vault.proxy.no_proxy.as_deref(),
            Some(".svc,.cluster.local")
        );
        assert_eq!(c.vault.proxy.all, None);
    }

    #[test]
    fn bad_proxies_are_named_without_their_credentials() {
        for (name, value, needle) in [
            (
                "HTTPS_PROXY",
                "socks5://u:pw@proxy:1080",
                "http:// or https://",
            ),
            ("HTTP_PROXY", "http://u:pw@", "not a valid proxy url"),
            ("VAULT_PROXY_ADDR", "ftp://proxy", "http:// or https://"),
        ] {
            let (source, problem) = bad(&[], &[(name, value)]);
            assert_eq!(source, name, "{problem}");
            assert!(problem.contains(needle), "{problem}");
            assert!(!problem.contains("pw"), "{problem}");
        }
        let (source, _) = bad(&["--proxy-addr=socks5://x"], &[]);
        assert_eq!(source, "--proxy-addr");
    }

    #[test]
    fn on_change_must_split_and_name_a_program() {
        rejects(
            "VAULT_LOGIN_ON_CHANGE",
            "--on-change",
            "/bin/sh -c 'echo",
            "unclosed single quote",
        );
        rejects(
            "VAULT_LOGIN_ON_CHANGE",
            "--on-change",
            "/bin/sh -c \"echo",
            "unclosed double quote",
        );
        rejects(
            "VAULT_LOGIN_ON_CHANGE",
            "--on-change",
            "nginx -s reload && echo done",
            "no shell",
        );
        let (source, problem) = bad(&[], &[("VAULT_LOGIN_ON_CHANGE", "/no/such/program --flag")]);
        assert_eq!(source, "VAULT_LOGIN_ON_CHANGE");
        assert!(
            problem.contains("\"/no/such/program\" does not exist"),
            "{problem}"
        );
        rejects(
            "VAULT_LOGIN_ON_CHANGE",
            "--on-change",
            "/",
            "is a directory",
        );
        rejects(
            "VAULT_LOGIN_ON_CHANGE",
            "--on-change",
            "''",
            "names no program",
        );
        // A bare name is looked up in PATH at run time.
        assert_eq!(
            ok(&[], &[("VAULT_LOGIN_ON_CHANGE", "reload-app now")])
                .hooks
                .on_change,
            Some(vec!["reload-app".to_string(), "now".into()])
        );
        rejects(
            "VAULT_LOGIN_ON_CHANGE_TIMEOUT",
            "--on-change-timeout",
            "0s",
            "more than zero",
        );
        rejects(
            "VAULT_LOGIN_ON_CHANGE_TIMEOUT",
            "--on-change-timeout",
            "soon",
            "not a duration",
        );
    }

    #[test]
    fn signal_needs_a_known_name_and_a_pid_file() {
        let pid = ("VAULT_LOGIN_SIGNAL_PID_FILE", "/run/app.pid");
        for value in ["FOO", "SIGKILL", "9", "0", "reload"] {
            let (source, problem) = bad(&[], &[pid, ("VAULT_LOGIN_SIGNAL", value)]);
            assert_eq!(source, "VAULT_LOGIN_SIGNAL");
            assert!(problem.contains(&format!("{value:?}")), "{problem}");
            assert!(problem.contains("HUP, USR1"), "{problem}");
        }
        let (source, _) = bad(&["--signal=BOGUS"], &[pid]);
        assert_eq!(source, "--signal");
        let (source, problem) = bad(&[], &[("VAULT_LOGIN_SIGNAL", "HUP")]);
        assert_eq!(source, "VAULT_LOGIN_SIGNAL");
        assert!(problem.contains("VAULT_LOGIN_SIGNAL_PID_FILE"), "{problem}");
        rejects(
            "VAULT_LOGIN_SIGNAL_PID_FILE",
            "--signal-pid-file",
            "/run/",
            "not a file path",
        );
        // Names with or without SIG, any case, and numbers.
        for (value, want) in [("hup", "SIGHUP"), ("SIGQUIT", "SIGQUIT"), ("2", "SIGINT")] {
            let c = ok(&[], &[pid, ("VAULT_LOGIN_SIGNAL", value)]);
            assert_eq!(c.hooks.signal.to_string(), want);
        }
        assert!(summary_has(&ok(&[], &[pid]), "signal=SIGHUP"));
    }

    #[test]
    fn token_info_file_needs_an_existing_directory_and_its_own_path() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("plain");
        std::fs::write(&file, "x").unwrap();
        let missing = dir.path().join("missing").join("info.json");
        let under_file = file.join("info.json");
        rejects(
            "VAULT_LOGIN_TOKEN_INFO_FILE",
            "--token-info-file",
            &missing.display().to_string(),
            "does not exist",
        );
        rejects(
            "VAULT_LOGIN_TOKEN_INFO_FILE",
            "--token-info-file",
            &under_file.display().to_string(),
            "not a directory",
        );
        rejects(
            "VAULT_LOGIN_TOKEN_INFO_FILE",
            "--token-info-file",
            &format!("{}/", dir.path().display()),
            "not a file path",
        );
        let token = dir.path().join("token").display().to_string();
        let (source, problem) = bad(
            &[],
            &[
                ("VAULT_LOGIN_TOKEN_FILE", &token),
                ("VAULT_LOGIN_TOKEN_INFO_FILE", &token),
            ],
        );
        assert_eq!(source, "VAULT_LOGIN_TOKEN_INFO_FILE");
        assert!(problem.contains("the token file itself"), "{problem}");
    }

    #[test]
    fn hooks_are_off_by_default() {
        let c = ok(&[], &[]);
        assert_eq!(c.hooks.on_change, None);
        assert_eq!(c.hooks.on_change_timeout, secs(30));
        assert_eq!(c.hooks.signal_pid_file, None);
        assert_eq!(c.hooks.signal, AppSignal::HUP);
        assert_eq!(c.hooks.token_info_file, None);
        for part in [
            "on_change=none",
            "on_change_timeout=30s",
            "signal_pid_file=none",
            "signal=none",
            "token_info_file=none",
        ] {
            assert!(summary_has(&c, part), "{part} missing from {}", c.summary());
        }
    }

    #[test]
    fn hook_settings_from_the_environment_and_flags() {
        let dir = tempfile::tempdir().unwrap();
        let info = dir.path().join("info.json").display().to_string();
        let c = ok(
            &[],
            &[
                (
                    "VAULT_LOGIN_ON_CHANGE",
                    "/bin/sh -c 'kill -HUP \"$(cat /run/app.pid)\"' --token hunter2",
                ),
                ("VAULT_LOGIN_ON_CHANGE_TIMEOUT", "5s"),
                ("VAULT_LOGIN_SIGNAL_PID_FILE", "/run/app/app.pid"),
                ("VAULT_LOGIN_SIGNAL", "sigusr1"),
                ("VAULT_LOGIN_TOKEN_INFO_FILE", &info),
            ],
        );
        assert_eq!(
            c.hooks.on_change.as_deref(),
            Some(
                &[
                    "/bin/sh".to_string(),
                    "-c".into(),
                    "kill -HUP \"$(cat /run/app.pid)\"".into(),
                    "--token".into(),
                    "hunter2".into(),
                ][..]
            )
        );
        assert_eq!(c.hooks.on_change_timeout, secs(5));
        assert_eq!(
            c.hooks.signal_pid_file,
            Some(PathBuf::from("/run/app/app.pid"))
        );
        assert_eq!(c.hooks.signal.to_string(), "SIGUSR1");
        assert_eq!(c.hooks.token_info_file, Some(PathBuf::from(&info)));
        // The summary names the program, never its arguments.
        assert!(
            c.summary().contains("on_change=\"/bin/sh +4 args\""),
            "{}",
            c.summary()
        );
        assert!(!c.summary().contains("hunter2"), "{}", c.summary());
        assert!(summary_has(&c, "signal=SIGUSR1"));
        assert!(summary_has(&c, "signal_pid_file=/run/app/app.pid"));
        assert!(summary_has(&c, "on_change_timeout=5s"));

        let on_change = "--on-change=curl -X POST 'http://127.0.0.1:8080/-/reload'";
        let info_flag = format!("--token-info-file={info}");
        let c = ok(
            &[
                on_change,
                "--on-change-timeout=1m",
                "--signal-pid-file=/run/app.pid",
                "--signal=15",
                &info_flag,
            ],
            &[
                ("VAULT_LOGIN_ON_CHANGE", "/bin/false"),
                ("VAULT_LOGIN_SIGNAL", "USR2"),
            ],
        );
        assert_eq!(
            c.hooks.on_change.as_deref(),
            Some(
                &[
                    "curl".to_string(),
                    "-X".into(),
                    "POST".into(),
                    "http://127.0.0.1:8080/-/reload".into()
                ][..]
            )
        );
        assert_eq!(c.hooks.on_change_timeout, secs(60));
        assert_eq!(c.hooks.signal.to_string(), "SIGTERM");
        assert_eq!(c.hooks.token_info_file, Some(PathBuf::from(&info)));
    }

    #[test]
    fn duration_settings_check_their_bounds() {
        rejects("VAULT_LOGIN_TIMEOUT", "--timeout", "0", "more than zero");
        rejects("VAULT_LOGIN_TIMEOUT", "--timeout", "0s", "more than zero");
        rejects("VAULT_LOGIN_TIMEOUT", "--timeout", "-5s", "negative");
        rejects("VAULT_LOGIN_TIMEOUT", "--timeout", "5x", "not a duration");
        rejects(
            "VAULT_LOGIN_MIN_BACKOFF",
            "--min-backoff",
            "0ms",
            "more than zero",
        );
        rejects(
            "VAULT_LOGIN_MAX_BACKOFF",
            "--max-backoff",
            "0",
            "more than zero",
        );
        rejects(
            "VAULT_LOGIN_RENEW_INCREMENT",
            "--renew-increment",
            "500ms",
            "less than 1s",
        );
        rejects(
            "VAULT_LOGIN_RENEW_INCREMENT",
            "--renew-increment",
            "0",
            "more than zero",
        );
        rejects(
            "VAULT_CLIENT_TIMEOUT",
            "--client-timeout",
            "0",
            "more than zero",
        );
        rejects(
            "VAULT_CLIENT_TIMEOUT",
            "--client-timeout",
            "11y",
            "not a duration",
        );
        rejects(
            "VAULT_CLIENT_TIMEOUT",
            "--client-timeout",
            "100000h",
            "too long",
        );
        assert_eq!(
            ok(&["--renew-increment", "1s"], &[]).renew_increment,
            Some(secs(1))
        );
    }

    #[test]
    fn booleans() {
        for input in [
            "true", "TRUE", "True", "1", "yes", "YES", "on", "On", " true ",
        ] {
            assert_eq!(parse_bool(input), Ok(true), "{input}");
        }
        for input in ["false", "FALSE", "0", "no", "No", "off", "OFF"] {
            assert_eq!(parse_bool(input), Ok(false), "{input}");
        }
        for input in ["", "maybe", "2", "y", "n", "t", "enable", "-1"] {
            let e = parse_bool(input).unwrap_err();
            assert!(e.contains("not a boolean"), "{input}: {e}");
            check_problem(&e);
        }
        for name in [
            "VAULT_LOGIN_ONCE",
            "VAULT_LOGIN_REVOKE_ON_EXIT",
            "VAULT_SKIP_VERIFY",
        ] {
            let (source, problem) = bad(&[], &[(name, "maybe")]);
            assert_eq!(source, name);
            assert!(
                problem.contains("\"maybe\"") && problem.contains("true or false"),
                "{problem}"
            );
        }
        let (source, _) = bad(&[], &[("BAO_SKIP_VERIFY", "sure")]);
        assert_eq!(source, "BAO_SKIP_VERIFY");
    }

    #[test]
    fn boolean_flags_take_no_value() {
        for arg in ["--once=true", "--revoke-on-exit=yes", "--tls-skip-verify=1"] {
            assert!(
                matches!(load(&[arg], &[]), Err(ConfigError::Usage(_))),
                "{arg}"
            );
        }
    }

    #[test]
    fn revoke_help_states_the_real_bound() {
        let bound = format!("({} bound)", human(REVOKE_GRACE));
        assert!(REVOKE_ON_EXIT.about.help().contains(&bound), "{bound}");
        let least = format!("at least {}", human(SHORTEST_PERIOD));
        assert!(RENEW_INCREMENT.about.help().contains(&least), "{least}");
    }

    #[test]
    fn every_help_value_is_used_and_filled_in() {
        for (name, _) in help_values() {
            let users = ALL.iter().filter(|s| s.about().help.contains(name)).count();
            assert!(users > 0, "{name} is in no help text");
        }
        for about in ALL.iter().map(|s| s.about()) {
            let help = about.help();
            assert!(!help.contains('{') && !help.contains('}'), "{help}");
        }
    }

    #[test]
    fn defaults_are_the_constants_the_code_uses() {
        assert_eq!(
            (SECRETS_REFRESH.parse)(SECRETS_REFRESH.about.default.unwrap()),
            Ok(crate::secrets::DEFAULT_REFRESH)
        );
        assert_eq!(JWT_FILE.about.default, Some(DEFAULT_JWT_FILE));
        assert_eq!(TOKEN_FILE.about.default, Some(DEFAULT_TOKEN_FILE));
        assert_eq!(
            (SIGNAL.parse)(SIGNAL.about.default.unwrap()),
            Ok(AppSignal::HUP)
        );
    }

    /// README's configuration table: the rows between its header and the first line that is
    /// not a row.
    fn readme_rows() -> Vec<String> {
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
            .expect("README.md is readable");
        readme
            .lines()
            .skip_while(|l| *l != "| env | flag | default | meaning |")
            .skip(2)
            .take_while(|l| l.starts_with('|'))
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn readme_table_is_the_declarations() {
        let want: Vec<String> = ALL.iter().map(|s| s.about().readme_row()).collect();
        assert_eq!(
            readme_rows(),
            want,
            "README's configuration table differs from src/config/settings.rs; the table should be:\n{}",
            want.join("\n")
        );
    }

    #[test]
    fn every_default_parses_and_every_name_is_unique() {
        // Parsing each typed default is what Config::load does; here only the names are checked,
        // and config's tests load a configuration that uses every default.
        let mut seen = std::collections::HashSet::new();
        for about in ALL.iter().map(|s| s.about()) {
            for name in about.env.iter().chain(about.flag.iter()) {
                assert!(seen.insert(*name), "{name} is declared twice");
            }
            assert!(!(about.required && about.default.is_some()), "{about:?}");
            assert!(about.flag.is_some() || about.value.is_none(), "{about:?}");
        }
    }

    #[test]
    fn every_summary_key_is_declared_once() {
        let mut seen = std::collections::HashSet::new();
        for (key, _) in ALL.iter().flat_map(|s| s.summary()) {
            assert!(seen.insert(*key), "summary key {key} is declared twice");
        }
        assert!(seen.len() > 30, "{seen:?}");
    }

    #[test]
    fn durations_say_what_is_wrong() {
        assert!(positive("0s").unwrap_err().contains("more than zero"));
        assert!(at_least_a_second("500ms")
            .unwrap_err()
            .contains("is less than 1s"));
        assert_eq!(at_least_a_second("90s"), Ok(Duration::from_secs(90)));
    }
}
