//! Settings: command-line flags, then `VAULT_*`/`VAULT_LOGIN_*` variables, then `BAO_*` twins, then defaults.
//!
//! The environment is read through an injectable lookup so tests never touch the process
//! environment. An empty variable counts as unset. Every value is checked here, once, so the rest
//! of the program can trust a [`Config`]; a bad value becomes a [`ConfigError::Invalid`] that names
//! the flag or variable it came from and says what to do.

use std::ffi::OsString;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::error::ErrorKind;
use clap::Parser;
use reqwest::Url;

use crate::hooks::{self, AppSignal};
use crate::secret::Secret;
use crate::secrets::{self, SecretsSettings};

/// Where Kubernetes projects the pod's service-account token by default.
pub const DEFAULT_JWT_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";
/// Where the Vault token is written unless told otherwise.
pub const DEFAULT_TOKEN_FILE: &str = "/var/run/secrets/vaultproject.io/token";

const DEFAULT_MOUNT: &str = "kubernetes";
const DEFAULT_TOKEN_FILE_MODE: u32 = 0o600;
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5 * 60);
const DEFAULT_MIN_BACKOFF: Duration = Duration::from_secs(1);
const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(5 * 60);
const DEFAULT_CLIENT_TIMEOUT: Duration = Duration::from_secs(60);
const DEFAULT_ON_CHANGE_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_LOG: &str = "info";
pub use crate::duration::{human, parse_duration, DURATION_HINT, MAX_DURATION};
/// The only variable for the JWT itself: never a flag, since process arguments are visible to others.
const JWT_ENV: &str = "VAULT_LOGIN_JWT";

/// Where the service-account JWT comes from.
#[derive(Clone, Debug)]
pub enum JwtSource {
    /// Read from this file at every login (the kubelet rotates it).
    File(PathBuf),
    /// Given in `VAULT_LOGIN_JWT`.
    Env(Secret),
}

/// Numeric owner to give the token file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Owner {
    /// User id.
    pub uid: u32,
    /// Group id; `None` leaves the group as it is.
    pub gid: Option<u32>,
}

/// How log lines are formatted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Where the Vault token is written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenSink {
    /// Written atomically to this file.
    File(PathBuf),
    /// Printed to standard output (once mode only).
    Stdout,
}

/// How to reach Vault over TLS; paths were checked to be readable when the config was loaded.
#[derive(Clone, Debug, Default)]
pub struct TlsSettings {
    /// PEM file of CA certificates to trust. Like the `vault` CLI, the first of `ca_cert`,
    /// `ca_cert_bytes` and `ca_path` that is set decides; the others are ignored.
    pub ca_cert: Option<PathBuf>,
    /// PEM text of CA certificates to trust (`VAULT_CACERT_BYTES`), checked to hold at least one.
    pub ca_cert_bytes: Option<String>,
    /// Directory of PEM files of CA certificates to trust.
    pub ca_path: Option<PathBuf>,
    /// PEM client certificate for mTLS (set exactly when `client_key` is).
    pub client_cert: Option<PathBuf>,
    /// PEM private key for mTLS (set exactly when `client_cert` is).
    pub client_key: Option<PathBuf>,
    /// Name sent as SNI and checked in the server certificate instead of the URL's host.
    pub server_name: Option<String>,
    /// Skip verifying the server certificate (dangerous).
    pub skip_verify: bool,
}

/// How requests reach Vault: directly, or through an HTTP proxy, read like the `vault` CLI reads
/// them (Go's `ProxyFromEnvironment`, overridden by `VAULT_PROXY_ADDR`).
// Debug is written by hand below: a proxy URL may carry `user:password@`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ProxySettings {
    /// `VAULT_PROXY_ADDR` (or the older `VAULT_HTTP_PROXY`): every request goes through it,
    /// whatever `NO_PROXY` says.
    pub all: Option<Url>,
    /// `HTTP_PROXY`: for an `http://` Vault.
    pub http: Option<Url>,
    /// `HTTPS_PROXY`: for an `https://` Vault (tunnelled with CONNECT).
    pub https: Option<Url>,
    /// `NO_PROXY`, verbatim: hosts, domain suffixes, IP addresses and networks reached directly.
    /// Loopback addresses and `localhost` are always reached directly, as in Go.
    pub no_proxy: Option<String>,
}

impl fmt::Debug for ProxySettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = |u: &Option<Url>| u.as_ref().map(redacted);
        f.debug_struct("ProxySettings")
            .field("all", &shown(&self.all))
            .field("http", &shown(&self.http))
            .field("https", &shown(&self.https))
            .field("no_proxy", &self.no_proxy)
            .finish()
    }
}

/// The checked, effective configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// Vault base URL, http or https; no query or fragment; its path has no trailing '/' (except the root "/").
    pub vault_addr: Url,
    /// Kubernetes auth role to log in as.
    pub role: String,
    /// Auth mount path without leading or trailing '/', e.g. `kubernetes` or `k8s/cluster-1`.
    pub mount: String,
    /// Where the service-account JWT comes from.
    pub jwt: JwtSource,
    /// Where the Vault token goes.
    pub token_sink: TokenSink,
    /// Permission bits of the token file (at most 0o777).
    pub token_file_mode: u32,
    /// Owner to give the token file, if any.
    pub token_file_owner: Option<Owner>,
    /// Init-container mode: log in, write the token, exit.
    pub once: bool,
    /// In once mode, give up after this long (> 0).
    pub timeout: Duration,
    /// Shortest wait between retries (> 0).
    pub min_backoff: Duration,
    /// Longest wait between retries (>= `min_backoff`).
    pub max_backoff: Duration,
    /// Increment to ask for when renewing (>= 1s), if any.
    pub renew_increment: Option<Duration>,
    /// Revoke the token when exiting.
    pub revoke_on_exit: bool,
    /// Address for the health/metrics server, if any.
    pub listen: Option<SocketAddr>,
    /// Tracing filter, validated by the telemetry module.
    pub log: String,
    /// Log line format.
    pub log_format: LogFormat,
    /// Vault namespace sent as `X-Vault-Namespace`, without surrounding '/'.
    pub namespace: Option<String>,
    /// Extra headers for every request (`VAULT_HEADERS`): valid names and values, none of
    /// Vault's own `X-Vault-*`; values may be secrets (a gateway's key).
    pub headers: Vec<(String, Secret)>,
    /// TLS settings for talking to Vault.
    pub tls: TlsSettings,
    /// Proxies between us and Vault.
    pub proxy: ProxySettings,
    /// Timeout of each HTTP request to Vault (> 0).
    pub client_timeout: Duration,
    /// Do not follow a standby's redirect to the active node (`VAULT_DISABLE_REDIRECTS`).
    pub disable_redirects: bool,
    /// Program and arguments to run after each new token, if any (never empty).
    pub on_change: Option<Vec<String>>,
    /// Kill the on-change command after this long (> 0).
    pub on_change_timeout: Duration,
    /// File holding the pid of the app to signal after each new token, if any.
    pub signal_pid_file: Option<PathBuf>,
    /// Signal to send to the app.
    pub signal: AppSignal,
    /// Where to write the token's metadata as JSON, if anywhere (never the token file).
    pub token_info_file: Option<PathBuf>,
    /// Secrets to write to files (`VAULT_LOGIN_SECRET_<NAME>`; environment only).
    pub secrets: SecretsSettings,
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// --help or --version was asked for: print the text to stdout and exit 0.
    #[error("{0}")]
    Help(String),
    /// Unknown flag, missing flag value, etc. (clap's message, folded onto ONE line, plus "; see --help").
    #[error("{0}")]
    Usage(String),
    /// A value is wrong: names the source and what to do.
    #[error("{source_name}: {problem}")]
    Invalid {
        /// The flag (`--mount`) or variable (`VAULT_LOGIN_MOUNT`, `BAO_ADDR`) the value came from.
        source_name: String,
        /// What is wrong and what to do, lowercase, one line.
        problem: String,
    },
}

/// The command line. Values stay strings: they are parsed together with the environment so that
/// errors name the flag or variable the value came from.
// No Debug: the raw flags may hold a proxy's password.
#[derive(Parser)]
#[command(
    name = "vault-login",
    bin_name = "vault-login",
    version,
    about = "Log in to Vault or OpenBao with the pod's Kubernetes service-account JWT and keep the token file fresh",
    after_help = "The JWT itself may be given in VAULT_LOGIN_JWT (environment only; it wins over --jwt-file).\n\
                  Environment only, as in the vault CLI: VAULT_CACERT_BYTES (CA certificates' PEM text; VAULT_CACERT wins over it, it over VAULT_CAPATH), \
                  VAULT_HEADERS (JSON object of extra headers), HTTPS_PROXY, HTTP_PROXY and NO_PROXY.\n\
                  Secrets to files, environment only: VAULT_LOGIN_SECRET_<NAME>=<path>, <path>#<field> or dotenv:<path> writes <dir>/<name>; \
                  VAULT_LOGIN_SECRETS_DIR (default: the token file's directory), VAULT_LOGIN_SECRETS_REFRESH (default 5m).\n\
                  A flag wins over its variable; an empty variable counts as unset; a BAO_* variable is read when its VAULT_* twin is unset.\n\
                  Durations: 500ms, 30s, 5m, 1h, 1h30m or a number of seconds. Booleans: true/false, 1/0, yes/no, on/off."
)]
struct Cli {
    /// Vault base URL, http or https, e.g. https://vault.example:8200 [env: VAULT_ADDR, BAO_ADDR] (required)
    #[arg(long, value_name = "URL")]
    vault_addr: Option<String>,
    /// Kubernetes auth role to log in as [env: VAULT_LOGIN_ROLE] (required)
    #[arg(long, value_name = "ROLE")]
    role: Option<String>,
    /// Path the kubernetes auth method is mounted at [env: VAULT_LOGIN_MOUNT] [default: kubernetes]
    #[arg(long, value_name = "PATH")]
    mount: Option<String>,
    /// Service-account token file, re-read at every login [env: VAULT_LOGIN_JWT_FILE] [default: /var/run/secrets/kubernetes.io/serviceaccount/token]
    #[arg(long, value_name = "FILE")]
    jwt_file: Option<String>,
    /// File to write the Vault token to; "-" prints it (once mode only) [env: VAULT_LOGIN_TOKEN_FILE] [default: /var/run/secrets/vaultproject.io/token]
    #[arg(long, value_name = "FILE")]
    token_file: Option<String>,
    /// Octal permission bits of the token file [env: VAULT_LOGIN_TOKEN_FILE_MODE] [default: 0600]
    #[arg(long, value_name = "MODE")]
    token_file_mode: Option<String>,
    /// Numeric owner of the token file, UID or UID:GID [env: VAULT_LOGIN_TOKEN_FILE_OWNER]
    #[arg(long, value_name = "UID[:GID]", allow_hyphen_values = true)]
    token_file_owner: Option<String>,
    /// Log in once, write the token and exit (init container) [env: VAULT_LOGIN_ONCE]
    #[arg(long)]
    once: bool,
    /// In once mode, give up after this long [env: VAULT_LOGIN_TIMEOUT] [default: 5m]
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true)]
    timeout: Option<String>,
    /// Shortest wait between retries [env: VAULT_LOGIN_MIN_BACKOFF] [default: 1s]
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true)]
    min_backoff: Option<String>,
    /// Longest wait between retries [env: VAULT_LOGIN_MAX_BACKOFF] [default: 5m]
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true)]
    max_backoff: Option<String>,
    /// Increment to ask for when renewing the token, at least 1s [env: VAULT_LOGIN_RENEW_INCREMENT]
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true)]
    renew_increment: Option<String>,
    /// Revoke the token when exiting [env: VAULT_LOGIN_REVOKE_ON_EXIT]
    #[arg(long)]
    revoke_on_exit: bool,
    /// Address of the health/metrics server, e.g. 0.0.0.0:9102 or :9102 [env: VAULT_LOGIN_LISTEN]
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// Log filter, e.g. info or vault_login=debug [env: VAULT_LOGIN_LOG] [default: info]
    #[arg(long, value_name = "FILTER")]
    log: Option<String>,
    /// Log format, text or json [env: VAULT_LOGIN_LOG_FORMAT] [default: text]
    #[arg(long, value_name = "FORMAT")]
    log_format: Option<String>,
    /// Vault namespace, sent as X-Vault-Namespace [env: VAULT_NAMESPACE, BAO_NAMESPACE]
    #[arg(long, value_name = "NAMESPACE")]
    namespace: Option<String>,
    /// PEM file of CA certificates to trust [env: VAULT_CACERT, BAO_CACERT]
    #[arg(long, value_name = "FILE")]
    ca_cert: Option<String>,
    /// Directory of PEM CA certificates to trust [env: VAULT_CAPATH, BAO_CAPATH]
    #[arg(long, value_name = "DIR")]
    ca_path: Option<String>,
    /// PEM client certificate for mTLS (needs --client-key) [env: VAULT_CLIENT_CERT, BAO_CLIENT_CERT]
    #[arg(long, value_name = "FILE")]
    client_cert: Option<String>,
    /// PEM client key for mTLS (needs --client-cert) [env: VAULT_CLIENT_KEY, BAO_CLIENT_KEY]
    #[arg(long, value_name = "FILE")]
    client_key: Option<String>,
    /// Name sent as SNI and checked in Vault's certificate [env: VAULT_TLS_SERVER_NAME, BAO_TLS_SERVER_NAME]
    #[arg(long, value_name = "NAME")]
    tls_server_name: Option<String>,
    /// Do not verify Vault's certificate (dangerous) [env: VAULT_SKIP_VERIFY, BAO_SKIP_VERIFY]
    #[arg(long)]
    tls_skip_verify: bool,
    /// Do not follow redirects (a standby's 307 to the active node) [env: VAULT_DISABLE_REDIRECTS, BAO_DISABLE_REDIRECTS]
    #[arg(long)]
    disable_redirects: bool,
    /// Timeout of each request to Vault [env: VAULT_CLIENT_TIMEOUT, BAO_CLIENT_TIMEOUT] [default: 60s]
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true)]
    client_timeout: Option<String>,
    /// HTTP proxy for every request to Vault, NO_PROXY notwithstanding [env: VAULT_PROXY_ADDR, BAO_PROXY_ADDR, VAULT_HTTP_PROXY, BAO_HTTP_PROXY]; without it HTTPS_PROXY, HTTP_PROXY and NO_PROXY apply
    #[arg(long, value_name = "URL")]
    proxy_addr: Option<String>,
    /// Program and arguments to run after each new token, split like a shell would (no shell runs) [env: VAULT_LOGIN_ON_CHANGE]
    #[arg(long, value_name = "COMMAND", allow_hyphen_values = true)]
    on_change: Option<String>,
    /// Kill the on-change command after this long [env: VAULT_LOGIN_ON_CHANGE_TIMEOUT] [default: 30s]
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true)]
    on_change_timeout: Option<String>,
    /// File holding the pid of the process to signal after each new token [env: VAULT_LOGIN_SIGNAL_PID_FILE]
    #[arg(long, value_name = "FILE")]
    signal_pid_file: Option<String>,
    /// Signal to send to that process, e.g. HUP, SIGUSR1 or 10 [env: VAULT_LOGIN_SIGNAL] [default: HUP]
    #[arg(long, value_name = "SIGNAL")]
    signal: Option<String>,
    /// File to write the token's metadata to as JSON, never the token [env: VAULT_LOGIN_TOKEN_INFO_FILE]
    #[arg(long, value_name = "FILE")]
    token_info_file: Option<String>,
}

/// One setting's flag and the variables read for it, in order of precedence.
struct Setting {
    flag: &'static str,
    env: &'static [&'static str],
}

impl Setting {
    /// The main variable's name, used when no value was given at all.
    fn name(&self) -> &'static str {
        self.env[0]
    }
}

const VAULT_ADDR: Setting = Setting {
    flag: "--vault-addr",
    env: &["VAULT_ADDR", "BAO_ADDR"],
};
const ROLE: Setting = Setting {
    flag: "--role",
    env: &["VAULT_LOGIN_ROLE"],
};
const MOUNT: Setting = Setting {
    flag: "--mount",
    env: &["VAULT_LOGIN_MOUNT"],
};
const JWT_FILE: Setting = Setting {
    flag: "--jwt-file",
    env: &["VAULT_LOGIN_JWT_FILE"],
};
const TOKEN_FILE: Setting = Setting {
    flag: "--token-file",
    env: &["VAULT_LOGIN_TOKEN_FILE"],
};
const TOKEN_FILE_MODE: Setting = Setting {
    flag: "--token-file-mode",
    env: &["VAULT_LOGIN_TOKEN_FILE_MODE"],
};
const TOKEN_FILE_OWNER: Setting = Setting {
    flag: "--token-file-owner",
    env: &["VAULT_LOGIN_TOKEN_FILE_OWNER"],
};
const ONCE: Setting = Setting {
    flag: "--once",
    env: &["VAULT_LOGIN_ONCE"],
};
const TIMEOUT: Setting = Setting {
    flag: "--timeout",
    env: &["VAULT_LOGIN_TIMEOUT"],
};
const MIN_BACKOFF: Setting = Setting {
    flag: "--min-backoff",
    env: &["VAULT_LOGIN_MIN_BACKOFF"],
};
const MAX_BACKOFF: Setting = Setting {
    flag: "--max-backoff",
    env: &["VAULT_LOGIN_MAX_BACKOFF"],
};
const RENEW_INCREMENT: Setting = Setting {
    flag: "--renew-increment",
    env: &["VAULT_LOGIN_RENEW_INCREMENT"],
};
const REVOKE_ON_EXIT: Setting = Setting {
    flag: "--revoke-on-exit",
    env: &["VAULT_LOGIN_REVOKE_ON_EXIT"],
};
const LISTEN: Setting = Setting {
    flag: "--listen",
    env: &["VAULT_LOGIN_LISTEN"],
};
const LOG: Setting = Setting {
    flag: "--log",
    env: &["VAULT_LOGIN_LOG"],
};
const LOG_FORMAT: Setting = Setting {
    flag: "--log-format",
    env: &["VAULT_LOGIN_LOG_FORMAT"],
};
const NAMESPACE: Setting = Setting {
    flag: "--namespace",
    env: &["VAULT_NAMESPACE", "BAO_NAMESPACE"],
};
const HEADERS: Setting = Setting {
    flag: "VAULT_HEADERS",
    env: &["VAULT_HEADERS", "BAO_HEADERS"],
};
const CA_CERT: Setting = Setting {
    flag: "--ca-cert",
    env: &["VAULT_CACERT", "BAO_CACERT"],
};
const CA_PATH: Setting = Setting {
    flag: "--ca-path",
    env: &["VAULT_CAPATH", "BAO_CAPATH"],
};
const CA_CERT_BYTES: Setting = Setting {
    flag: "VAULT_CACERT_BYTES",
    env: &["VAULT_CACERT_BYTES", "BAO_CACERT_BYTES"],
};
const CLIENT_CERT: Setting = Setting {
    flag: "--client-cert",
    env: &["VAULT_CLIENT_CERT", "BAO_CLIENT_CERT"],
};
const CLIENT_KEY: Setting = Setting {
    flag: "--client-key",
    env: &["VAULT_CLIENT_KEY", "BAO_CLIENT_KEY"],
};
const TLS_SERVER_NAME: Setting = Setting {
    flag: "--tls-server-name",
    env: &["VAULT_TLS_SERVER_NAME", "BAO_TLS_SERVER_NAME"],
};
const SKIP_VERIFY: Setting = Setting {
    flag: "--tls-skip-verify",
    env: &["VAULT_SKIP_VERIFY", "BAO_SKIP_VERIFY"],
};
const DISABLE_REDIRECTS: Setting = Setting {
    flag: "--disable-redirects",
    env: &["VAULT_DISABLE_REDIRECTS", "BAO_DISABLE_REDIRECTS"],
};
const CLIENT_TIMEOUT: Setting = Setting {
    flag: "--client-timeout",
    env: &["VAULT_CLIENT_TIMEOUT", "BAO_CLIENT_TIMEOUT"],
};
const PROXY_ADDR: Setting = Setting {
    flag: "--proxy-addr",
    env: &[
        "VAULT_PROXY_ADDR",
        "BAO_PROXY_ADDR",
        "VAULT_HTTP_PROXY",
        "BAO_HTTP_PROXY",
    ],
};
// The usual proxy variables, upper case first as in Go; they have no flags.
const HTTP_PROXY: Setting = Setting {
    flag: "HTTP_PROXY",
    env: &["HTTP_PROXY", "http_proxy"],
};
const HTTPS_PROXY: Setting = Setting {
    flag: "HTTPS_PROXY",
    env: &["HTTPS_PROXY", "https_proxy"],
};
const NO_PROXY: Setting = Setting {
    flag: "NO_PROXY",
    env: &["NO_PROXY", "no_proxy"],
};
const ON_CHANGE: Setting = Setting {
    flag: "--on-change",
    env: &["VAULT_LOGIN_ON_CHANGE"],
};
const ON_CHANGE_TIMEOUT: Setting = Setting {
    flag: "--on-change-timeout",
    env: &["VAULT_LOGIN_ON_CHANGE_TIMEOUT"],
};
const SIGNAL_PID_FILE: Setting = Setting {
    flag: "--signal-pid-file",
    env: &["VAULT_LOGIN_SIGNAL_PID_FILE"],
};
const SIGNAL: Setting = Setting {
    flag: "--signal",
    env: &["VAULT_LOGIN_SIGNAL"],
};
const TOKEN_INFO_FILE: Setting = Setting {
    flag: "--token-info-file",
    env: &["VAULT_LOGIN_TOKEN_INFO_FILE"],
};
// Environment only: there are no flags for secrets, so the "flag" is the variable itself.
const SECRETS_DIR: Setting = Setting {
    flag: secrets::SECRETS_DIR_ENV,
    env: &[secrets::SECRETS_DIR_ENV],
};
const SECRETS_REFRESH: Setting = Setting {
    flag: secrets::SECRETS_REFRESH_ENV,
    env: &[secrets::SECRETS_REFRESH_ENV],
};

/// A value that was given, and the flag or variable it came from.
struct Given {
    value: String,
    source: String,
}

impl Given {
    fn invalid(&self, problem: impl Into<String>) -> ConfigError {
        invalid(&self.source, problem)
    }

    fn parse<T>(&self, parse: impl FnOnce(&str) -> Result<T, String>) -> Result<T, ConfigError> {
        parse(&self.value).map_err(|problem| self.invalid(problem))
    }

    /// The value as a path to a file (or, with `dir`, a directory) that must be readable now.
    fn readable(&self, dir: bool, todo: &str) -> Result<PathBuf, ConfigError> {
        let path = PathBuf::from(&self.value);
        check_readable(&path, dir).map_err(|problem| self.invalid(format!("{problem}; {todo}")))?;
        Ok(path)
    }
}

fn invalid(source_name: &str, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        source_name: source_name.to_string(),
        problem: problem.into(),
    }
}

/// Reads settings: a flag's value first, then each variable in turn.
struct Lookup<'a> {
    env: &'a dyn Fn(&str) -> Option<String>,
    /// Every variable's name, for the `VAULT_LOGIN_SECRET_<NAME>` family.
    names: &'a [String],
}

impl Lookup<'_> {
    /// The value given for `setting`, if any; an empty variable counts as unset.
    fn given(&self, flag: Option<String>, setting: &Setting) -> Result<Option<Given>, ConfigError> {
        if let Some(value) = flag {
            if value.is_empty() {
                return Err(invalid(
                    setting.flag,
                    format!(
                        "the value is empty; give a value or leave out {}",
                        setting.flag
                    ),
                ));
            }
            return Ok(Some(Given {
                value,
                source: setting.flag.to_string(),
            }));
        }
        Ok(setting.env.iter().find_map(|name| {
            (self.env)(name)
                .filter(|value| !value.is_empty())
                .map(|value| Given {
                    value,
                    source: (*name).to_string(),
                })
        }))
    }

    /// The value given for `setting` through `parse`, or `None` when none is given.
    fn parsed<T>(
        &self,
        flag: Option<String>,
        setting: &Setting,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<Option<T>, ConfigError> {
        self.given(flag, setting)?
            .map(|given| given.parse(parse))
            .transpose()
    }

    /// Like [`Lookup::given`], for a setting without a default.
    fn required(
        &self,
        flag: Option<String>,
        setting: &Setting,
        what: &str,
    ) -> Result<Given, ConfigError> {
        self.given(flag, setting)?.ok_or_else(|| {
            invalid(
                setting.name(),
                format!(
                    "required but not set (set {} or {} to {what})",
                    setting.name(),
                    setting.flag
                ),
            )
        })
    }

    /// A boolean that is true when its presence flag is given, else read from the environment.
    fn boolean(&self, flag: bool, setting: &Setting) -> Result<bool, ConfigError> {
        if flag {
            return Ok(true);
        }
        match self.given(None, setting)? {
            Some(given) => given.parse(parse_bool),
            None => Ok(false),
        }
    }

    /// A duration of at least `min` (which must be > 0), or `None` when none is given.
    fn duration(
        &self,
        flag: Option<String>,
        setting: &Setting,
        min: Duration,
        example: &str,
    ) -> Result<Option<(Duration, Given)>, ConfigError> {
        let Some(given) = self.given(flag, setting)? else {
            return Ok(None);
        };
        let value = given.parse(|s| {
            let d = parse_duration(s)?;
            if d.is_zero() {
                Err(format!("{s:?} must be more than zero; use e.g. {example}"))
            } else if d < min {
                Err(format!(
                    "{s:?} is less than {}; use e.g. {example}",
                    human(min)
                ))
            } else {
                Ok(d)
            }
        })?;
        Ok(Some((value, given)))
    }
}

impl Config {
    /// Parses flags (args[0] is the program name) and the environment seen through `env`.
    /// Sees no `VAULT_LOGIN_SECRET_<NAME>` variables (it cannot list names); see
    /// [`Config::load_with_names`].
    pub fn load<I, T>(args: I, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        Config::load_with_names(args, env, &[])
    }

    /// Like [`Config::load`], given the names of all environment variables, among which the
    /// `VAULT_LOGIN_SECRET_<NAME>` ones are found (their values are read through `env`).
    pub fn load_with_names<I, T>(
        args: I,
        env: &dyn Fn(&str) -> Option<String>,
        names: &[String],
    ) -> Result<Config, ConfigError>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let cli = Cli::try_parse_from(args).map_err(clap_error)?;
        build(cli, &Lookup { env, names })
    }

    /// Parses flags and the real process environment.
    pub fn from_process() -> Result<Config, ConfigError> {
        // Lossy so a non-UTF-8 value is reported as bad rather than silently ignored.
        let env = |name: &str| std::env::var_os(name).map(|v| v.to_string_lossy().into_owned());
        let names: Vec<String> = std::env::vars_os()
            .map(|(name, _)| name.to_string_lossy().into_owned())
            .filter(|name| name.starts_with(secrets::SECRET_ENV_PREFIX))
            .collect();
        Config::load_with_names(std::env::args_os(), &env, &names)
    }

    /// One line describing the effective configuration, without secrets (never the JWT; say "jwt=env:VAULT_LOGIN_JWT" or "jwt=file:/path").
    pub fn summary(&self) -> String {
        let none = || "none".to_string();
        let path = |p: &Option<PathBuf>| {
            p.as_deref()
                .map_or_else(none, |p| shown(&p.display().to_string()))
        };
        let jwt = match &self.jwt {
            JwtSource::Env(_) => format!("env:{JWT_ENV}"),
            JwtSource::File(p) => format!("file:{}", shown(&p.display().to_string())),
        };
        let sink = match &self.token_sink {
            TokenSink::Stdout => "stdout".to_string(),
            TokenSink::File(p) => format!("file:{}", shown(&p.display().to_string())),
        };
        let owner = self.token_file_owner.map_or_else(none, |o| match o.gid {
            Some(gid) => format!("{}:{gid}", o.uid),
            None => o.uid.to_string(),
        });
        // Only the program: arguments may carry credentials (e.g. a header for curl).
        let on_change = match self.on_change.as_deref().and_then(<[String]>::split_first) {
            Some((program, args)) => shown(&format!("{program} +{} args", args.len())),
            None => none(),
        };
        let signal = match &self.signal_pid_file {
            Some(_) => self.signal.to_string(),
            None => none(),
        };
        let proxy = match &self.proxy {
            ProxySettings { all: Some(all), .. } => format!("{} (all requests)", redacted(all)),
            ProxySettings {
                http: None,
                https: None,
                ..
            } => none(),
            p => {
                let mut parts = Vec::new();
                if let Some(u) = &p.https {
                    parts.push(format!("https={}", redacted(u)));
                }
                if let Some(u) = &p.http {
                    parts.push(format!("http={}", redacted(u)));
                }
                if let Some(n) = &p.no_proxy {
                    parts.push(format!("no_proxy={}", shown(n)));
                }
                format!("env({})", parts.join(","))
            }
        };
        let secrets = match self.secrets.specs.len() {
            0 => none(),
            n => format!(
                "{n}(dir={},refresh={})",
                shown(&self.secrets.dir.display().to_string()),
                human(self.secrets.refresh)
            ),
        };
        let fields: [(&str, String); 34] = [
            (
                "vault_addr",
                shown(self.vault_addr.as_str().trim_end_matches('/')),
            ),
            (
                "namespace",
                self.namespace.as_deref().map_or_else(none, shown),
            ),
            (
                "headers",
                if self.headers.is_empty() {
                    none()
                } else {
                    let names: Vec<&str> = self.headers.iter().map(|(n, _)| n.as_str()).collect();
                    shown(&names.join(","))
                },
            ),
            ("role", shown(&self.role)),
            ("mount", shown(&self.mount)),
            ("jwt", jwt),
            ("token_sink", sink),
            ("token_file_mode", format!("{:04o}", self.token_file_mode)),
            ("token_file_owner", owner),
            ("once", self.once.to_string()),
            ("timeout", human(self.timeout)),
            ("min_backoff", human(self.min_backoff)),
            ("max_backoff", human(self.max_backoff)),
            (
                "renew_increment",
                self.renew_increment.map_or_else(none, human),
            ),
            ("revoke_on_exit", self.revoke_on_exit.to_string()),
            ("listen", self.listen.map_or_else(none, |a| a.to_string())),
            ("log", shown(&self.log)),
            (
                "log_format",
                match self.log_format {
                    LogFormat::Text => "text".to_string(),
                    LogFormat::Json => "json".to_string(),
                },
            ),
            ("ca_cert", path(&self.tls.ca_cert)),
            (
                "ca_cert_bytes",
                self.tls.ca_cert_bytes.as_deref().map_or_else(none, |pem| {
                    let n = crate::tls::count_pem_certificates(pem).unwrap_or(0);
                    format!("{n}_certificates")
                }),
            ),
            ("ca_path", path(&self.tls.ca_path)),
            ("client_cert", path(&self.tls.client_cert)),
            ("client_key", path(&self.tls.client_key)),
            (
                "tls_server_name",
                self.tls.server_name.as_deref().map_or_else(none, shown),
            ),
            ("tls_skip_verify", self.tls.skip_verify.to_string()),
            ("disable_redirects", self.disable_redirects.to_string()),
            ("proxy", proxy),
            ("client_timeout", human(self.client_timeout)),
            ("on_change", on_change),
            ("on_change_timeout", human(self.on_change_timeout)),
            ("signal_pid_file", path(&self.signal_pid_file)),
            ("signal", signal),
            ("token_info_file", path(&self.token_info_file)),
            ("secrets", secrets),
        ];
        fields
            .iter()
            .map(|(key, value)| format!("{key}={value}"))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Checks every setting and builds the config; fields are checked in declaration order, then
/// the rules that tie fields together.
fn build(cli: Cli, lookup: &Lookup<'_>) -> Result<Config, ConfigError> {
    let addr = lookup.required(
        cli.vault_addr,
        &VAULT_ADDR,
        "your Vault's URL, e.g. https://vault.example:8200",
    )?;
    let vault_addr = addr.parse(parse_vault_addr)?;

    let role = lookup.required(cli.role, &ROLE, "the kubernetes auth role to log in as")?;
    let role = role.parse(parse_role)?;

    let mount = lookup
        .parsed(cli.mount, &MOUNT, parse_mount)?
        .unwrap_or_else(|| DEFAULT_MOUNT.to_string());

    let jwt = match (lookup.env)(JWT_ENV).filter(|v| !v.is_empty()) {
        Some(value) => JwtSource::Env(Secret::new(value)),
        None => match lookup.given(cli.jwt_file, &JWT_FILE)? {
            Some(given) => {
                JwtSource::File(given.parse(|s| parse_file_path(s, "the service-account token"))?)
            }
            None => JwtSource::File(PathBuf::from(DEFAULT_JWT_FILE)),
        },
    };

    let token_file = lookup.given(cli.token_file, &TOKEN_FILE)?;
    let token_sink = match &token_file {
        Some(given) if given.value == "-" => TokenSink::Stdout,
        Some(given) => TokenSink::File(given.parse(|s| parse_file_path(s, "the vault token"))?),
        None => TokenSink::File(PathBuf::from(DEFAULT_TOKEN_FILE)),
    };

    let token_file_mode = lookup
        .parsed(cli.token_file_mode, &TOKEN_FILE_MODE, parse_mode)?
        .unwrap_or(DEFAULT_TOKEN_FILE_MODE);
    let token_file_owner = lookup.parsed(cli.token_file_owner, &TOKEN_FILE_OWNER, parse_owner)?;

    let once = lookup.boolean(cli.once, &ONCE)?;
    let timeout = lookup
        .duration(cli.timeout, &TIMEOUT, Duration::from_nanos(1), "5m")?
        .map_or(DEFAULT_TIMEOUT, |(d, _)| d);
    let min_backoff =
        lookup.duration(cli.min_backoff, &MIN_BACKOFF, Duration::from_nanos(1), "1s")?;
    let max_backoff =
        lookup.duration(cli.max_backoff, &MAX_BACKOFF, Duration::from_nanos(1), "5m")?;
    let renew_increment = lookup
        .duration(
            cli.renew_increment,
            &RENEW_INCREMENT,
            Duration::from_secs(1),
            "1h",
        )?
        .map(|(d, _)| d);
    let revoke_on_exit = lookup.boolean(cli.revoke_on_exit, &REVOKE_ON_EXIT)?;

    let listen = lookup.parsed(cli.listen, &LISTEN, parse_listen)?;
    let log = lookup
        .given(cli.log, &LOG)?
        .map_or_else(|| DEFAULT_LOG.to_string(), |g| g.value);
    let log_format = lookup
        .parsed(cli.log_format, &LOG_FORMAT, parse_log_format)?
        .unwrap_or(LogFormat::Text);

    let headers = lookup
        .parsed(None, &HEADERS, parse_headers)?
        .unwrap_or_default();
    // "/" (the root namespace) parses to none.
    let namespace = lookup
        .parsed(cli.namespace, &NAMESPACE, parse_namespace)?
        .flatten();

    let ca_cert = lookup.given(cli.ca_cert, &CA_CERT)?;
    let ca_cert = ca_cert
        .map(|g| g.readable(false, "give the path of a PEM file of CA certificates"))
        .transpose()?;
    let ca_cert_bytes = match lookup.given(None, &CA_CERT_BYTES)? {
        Some(given) => {
            given.parse(crate::tls::count_pem_certificates)?;
            Some(given.value)
        }
        None => None,
    };
    let ca_path = lookup.given(cli.ca_path, &CA_PATH)?;
    let ca_path = ca_path
        .map(|g| g.readable(true, "give a directory of PEM CA certificates"))
        .transpose()?;
    let cert = lookup.given(cli.client_cert, &CLIENT_CERT)?;
    let key = lookup.given(cli.client_key, &CLIENT_KEY)?;
    match (&cert, &key) {
        (Some(cert), None) => {
            return Err(cert.invalid(format!(
                "a client certificate needs a client key; set {} or {} too, or neither",
                CLIENT_KEY.name(),
                CLIENT_KEY.flag
            )));
        }
        (None, Some(key)) => {
            return Err(key.invalid(format!(
                "a client key needs a client certificate; set {} or {} too, or neither",
                CLIENT_CERT.name(),
                CLIENT_CERT.flag
            )));
        }
        _ => {}
    }
    let client_cert = cert
        .map(|g| g.readable(false, "give the path of the PEM client certificate"))
        .transpose()?;
    let client_key = key
        .map(|g| g.readable(false, "give the path of the PEM client key"))
        .transpose()?;
    let server_name = lookup.parsed(cli.tls_server_name, &TLS_SERVER_NAME, parse_server_name)?;
    let skip_verify = lookup.boolean(cli.tls_skip_verify, &SKIP_VERIFY)?;
    let disable_redirects = lookup.boolean(cli.disable_redirects, &DISABLE_REDIRECTS)?;
    let client_timeout = lookup
        .duration(
            cli.client_timeout,
            &CLIENT_TIMEOUT,
            Duration::from_nanos(1),
            "60s",
        )?
        .map_or(DEFAULT_CLIENT_TIMEOUT, |(d, _)| d);

    let proxy = ProxySettings {
        all: lookup.parsed(cli.proxy_addr, &PROXY_ADDR, parse_proxy_url)?,
        http: lookup.parsed(None, &HTTP_PROXY, parse_proxy_url)?,
        https: lookup.parsed(None, &HTTPS_PROXY, parse_proxy_url)?,
        no_proxy: lookup.given(None, &NO_PROXY)?.map(|g| g.value),
    };

    let on_change = lookup.parsed(cli.on_change, &ON_CHANGE, parse_on_change)?;
    let on_change_timeout = lookup
        .duration(
            cli.on_change_timeout,
            &ON_CHANGE_TIMEOUT,
            Duration::from_nanos(1),
            "30s",
        )?
        .map_or(DEFAULT_ON_CHANGE_TIMEOUT, |(d, _)| d);
    let signal_pid_file = lookup.parsed(cli.signal_pid_file, &SIGNAL_PID_FILE, |s| {
        parse_file_path(s, "the app's process id")
    })?;
    let signal = lookup.given(cli.signal, &SIGNAL)?;
    if let (Some(given), None) = (&signal, &signal_pid_file) {
        return Err(given.invalid(format!(
            "a signal needs a process to send it to; set {} or {} too, or neither",
            SIGNAL_PID_FILE.name(),
            SIGNAL_PID_FILE.flag
        )));
    }
    let signal = match signal {
        Some(given) => given.parse(hooks::parse_signal)?,
        None => AppSignal::HUP,
    };
    let token_info_file = match lookup.given(cli.token_info_file, &TOKEN_INFO_FILE)? {
        Some(given) => {
            let path = given.parse(parse_info_file)?;
            if matches!(&token_sink, TokenSink::File(token) if *token == path) {
                return Err(given.invalid(format!(
                    "{:?} is the token file itself; give another path, e.g. next to it",
                    given.value
                )));
            }
            Some(path)
        }
        None => None,
    };

    let secrets = secrets_settings(lookup, &token_sink, token_info_file.as_deref())?;

    // Rules across fields.
    let origin = |backoff: &Option<(Duration, Given)>| match backoff {
        Some((_, given)) => format!("from {}", given.source),
        None => "the default".to_string(),
    };
    let min = min_backoff
        .as_ref()
        .map_or(DEFAULT_MIN_BACKOFF, |(d, _)| *d);
    let max = max_backoff
        .as_ref()
        .map_or(DEFAULT_MAX_BACKOFF, |(d, _)| *d);
    if min > max {
        let source = min_backoff
            .as_ref()
            .map_or(MIN_BACKOFF.name(), |(_, g)| g.source.as_str());
        return Err(invalid(
            source,
            format!(
                "min backoff {} ({}) is more than max backoff {} ({}); lower the min backoff or raise the max backoff",
                human(min),
                origin(&min_backoff),
                human(max),
                origin(&max_backoff),
            ),
        ));
    }
    if let (TokenSink::Stdout, Some(given), false) = (&token_sink, &token_file, once) {
        return Err(given.invalid(format!(
            "\"-\" (standard output) works only in once mode; set {}=true or {} too, or give a file path",
            ONCE.name(),
            ONCE.flag
        )));
    }

    Ok(Config {
        vault_addr,
        role,
        mount,
        jwt,
        token_sink,
        token_file_mode,
        token_file_owner,
        once,
        timeout,
        min_backoff: min,
        max_backoff: max,
        renew_increment,
        revoke_on_exit,
        listen,
        log,
        log_format,
        namespace,
        headers,
        tls: TlsSettings {
            ca_cert,
            ca_cert_bytes,
            ca_path,
            client_cert,
            client_key,
            server_name,
            skip_verify,
        },
        proxy,
        client_timeout,
        disable_redirects,
        on_change,
        on_change_timeout,
        signal_pid_file,
        signal,
        token_info_file,
        secrets,
    })
}

/// The `VAULT_LOGIN_SECRET*` settings; the secret files must not overwrite the token file or
/// the token info file.
fn secrets_settings(
    lookup: &Lookup<'_>,
    token_sink: &TokenSink,
    token_info_file: Option<&Path>,
) -> Result<SecretsSettings, ConfigError> {
    let specs = secrets::specs_from_env(lookup.names, lookup.env)
        .map_err(|e| invalid(&e.variable, e.problem))?;
    let refresh = lookup
        .duration(None, &SECRETS_REFRESH, Duration::from_secs(1), "5m")?
        .map_or(secrets::DEFAULT_REFRESH, |(d, _)| d);
    let dir = match lookup.given(None, &SECRETS_DIR)? {
        Some(given) => {
            let dir = PathBuf::from(&given.value);
            // Checked now only when there is something to write there.
            if !specs.is_empty() {
                check_readable(&dir, true).map_err(|problem| {
                    given.invalid(format!(
                        "{problem}; mount the shared volume there or give an existing directory"
                    ))
                })?;
            }
            dir
        }
        None => match token_sink {
            TokenSink::File(token) => match token.parent() {
                Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
                _ => PathBuf::from("."),
            },
            TokenSink::Stdout => {
                if let Some(first) = specs.first() {
                    return Err(invalid(
                        &first.variable,
                        format!(
                            "the token goes to standard output, so there is no token directory to write secrets next to; set {}",
                            secrets::SECRETS_DIR_ENV
                        ),
                    ));
                }
                PathBuf::from(".")
            }
        },
    };
    let settings = SecretsSettings {
        dir,
        refresh,
        specs,
    };
    let mut reserved: Vec<&Path> = token_info_file.into_iter().collect();
    if let TokenSink::File(token) = token_sink {
        reserved.push(token);
    }
    settings
        .check_reserved(&reserved)
        .map_err(|e| invalid(&e.variable, e.problem))?;
    Ok(settings)
}

/// Turns a clap error into [`ConfigError::Help`] or a one-line [`ConfigError::Usage`].
fn clap_error(err: clap::Error) -> ConfigError {
    let text = err.render().to_string();
    match err.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => ConfigError::Help(text),
        _ => ConfigError::Usage(format!("{}; see --help", redact_jwts(&fold(&text)))),
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

/// Quotes a value for [`Config::summary`] when it would not read as one word.
fn shown(s: &str) -> String {
    if s.is_empty()
        || s.chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '"')
    {
        format!("{s:?}")
    } else {
        s.to_string()
    }
}

fn check_readable(path: &Path, dir: bool) -> Result<(), String> {
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

fn parse_vault_addr(s: &str) -> Result<Url, String> {
    const EXAMPLE: &str = "e.g. https://vault.example:8200";
    let t = s.trim();
    if !t.contains("://") {
        return Err(format!(
            "{s:?} has no scheme; use a url with http:// or https://, {EXAMPLE}"
        ));
    }
    let mut url = Url::parse(t).map_err(|e| {
        // The text may hold a password, so quote only what parsing the url did not need.
        if t.contains('@') {
            format!("not a valid url ({e}); use {EXAMPLE}")
        } else {
            format!("{s:?} is not a valid url ({e}); use {EXAMPLE}")
        }
    })?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!(
            "the url must not contain a user name or password; remove the \"user:password@\" part, {EXAMPLE}"
        ));
    }
    match url.scheme() {
        "http" | "https" => {}
        other => {
            return Err(format!(
                "{s:?} has scheme {other:?}; use http:// or https://, {EXAMPLE}"
            ))
        }
    }
    if url.query().is_some() {
        return Err(format!(
            "{s:?} has a query (?...); give only the base url, {EXAMPLE}"
        ));
    }
    if url.fragment().is_some() {
        return Err(format!(
            "{s:?} has a fragment (#...); give only the base url, {EXAMPLE}"
        ));
    }
    let path = url.path().trim_end_matches('/').to_string();
    url.set_path(&path);
    Ok(url)
}

fn parse_role(s: &str) -> Result<String, String> {
    if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "{s:?} contains whitespace; give the role's name exactly as created in vault"
        ));
    }
    Ok(s.to_string())
}

/// Checks a '/'-separated path of Vault names (a mount or a namespace) once its outer '/' are gone.
fn check_vault_path(original: &str, trimmed: &str, example: &str) -> Result<(), String> {
    if trimmed.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "{original:?} contains whitespace; use e.g. {example}"
        ));
    }
    if trimmed.contains(['?', '#', '%', '\\']) {
        return Err(format!(
            "{original:?} contains '?', '#', '%' or '\\'; use e.g. {example}"
        ));
    }
    for segment in trimmed.split('/') {
        if segment.is_empty() {
            return Err(format!(
                "{original:?} has an empty segment (\"//\"); use e.g. {example}"
            ));
        }
        if segment == "." || segment == ".." {
            return Err(format!(
                "{original:?} has a {segment:?} segment; use e.g. {example}"
            ));
        }
    }
    Ok(())
}

fn parse_mount(s: &str) -> Result<String, String> {
    const EXAMPLE: &str = "kubernetes or k8s/cluster-1";
    let trimmed = s.trim_matches('/');
    if trimmed.is_empty() {
        return Err(format!("{s:?} is not a mount path; use e.g. {EXAMPLE}"));
    }
    check_vault_path(s, trimmed, EXAMPLE)?;
    Ok(trimmed.to_string())
}

fn parse_namespace(s: &str) -> Result<Option<String>, String> {
    let trimmed = s.trim_matches('/');
    if trimmed.is_empty() {
        // "/" is the root namespace, the same as none.
        return Ok(None);
    }
    check_vault_path(s, trimmed, "admin or admin/team-a")?;
    Ok(Some(trimmed.to_string()))
}

/// `VAULT_HEADERS` as the `vault` CLI reads it: a JSON object of header names to string values.
/// Never quotes a value (it may be a secret), nor the JSON parser's message (it may quote one).
fn parse_headers(s: &str) -> Result<Vec<(String, Secret)>, String> {
    const EXAMPLE: &str = r#"e.g. {"X-Gateway-Key":"..."}"#;
    // Headers the HTTP client or vault-login set, which a second value would break.
    const RESERVED: [&str; 6] = [
        "host",
        "content-length",
        "content-type",
        "transfer-encoding",
        "connection",
        "user-agent",
    ];
    let map: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(s).map_err(|_| {
            format!("not a JSON object of header names to string values; use {EXAMPLE}")
        })?;
    let mut headers = Vec::with_capacity(map.len());
    for (name, value) in map {
        let lower = name.to_ascii_lowercase();
        if lower.starts_with("x-vault-") {
            return Err(format!(
                "header {name:?}: X-Vault-* headers are vault-login's own (as in the vault CLI); use VAULT_NAMESPACE for the namespace"
            ));
        }
        if RESERVED.contains(&lower.as_str()) {
            return Err(format!(
                "header {name:?} is set by the HTTP client; remove it"
            ));
        }
        if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
            return Err(format!(
                "{name:?} is not a valid header name; use {EXAMPLE}"
            ));
        }
        let serde_json::Value::String(value) = value else {
            return Err(format!(
                "the value of header {name:?} is not a string; use {EXAMPLE}"
            ));
        };
        if reqwest::header::HeaderValue::from_str(&value).is_err() {
            return Err(format!(
                "the value of header {name:?} holds characters not allowed in a header"
            ));
        }
        headers.push((name, Secret::new(value)));
    }
    Ok(headers)
}

fn parse_file_path(s: &str, what: &str) -> Result<PathBuf, String> {
    let path = PathBuf::from(s);
    if s.ends_with('/') || path.file_name().is_none() {
        return Err(format!(
            "{s:?} is not a file path; give the path of the file for {what}"
        ));
    }
    Ok(path)
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

fn parse_log_format(s: &str) -> Result<LogFormat, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "text" => Ok(LogFormat::Text),
        "json" => Ok(LogFormat::Json),
        _ => Err(format!("{s:?} is not a log format; use text or json")),
    }
}

fn parse_server_name(s: &str) -> Result<String, String> {
    if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "{s:?} contains whitespace; give the dns name in vault's certificate, e.g. vault.example"
        ));
    }
    Ok(s.to_string())
}

/// A proxy URL as Go reads one: `http://` assumed without a scheme; `http` or `https` only.
/// It may carry `user:password@` (sent as Proxy-Authorization), so it is never quoted whole.
fn parse_proxy_url(s: &str) -> Result<Url, String> {
    const EXAMPLE: &str = "e.g. http://proxy.example:3128";
    let t = s.trim();
    let with_scheme = if t.contains("://") {
        t.to_string()
    } else {
        format!("http://{t}")
    };
    let url = Url::parse(&with_scheme)
        .map_err(|e| format!("not a valid proxy url ({e}); use {EXAMPLE}"))?;
    match url.scheme() {
        "http" | "https" => {}
        other => {
            return Err(format!(
            "proxy scheme {other:?} is not supported; use an http:// or https:// proxy, {EXAMPLE}"
        ))
        }
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("the proxy url has no host; use {EXAMPLE}"));
    }
    Ok(url)
}

/// A proxy URL for logs: scheme, host and port, never the credentials.
pub fn redacted(url: &Url) -> String {
    let auth = if url.username().is_empty() && url.password().is_none() {
        ""
    } else {
        "***@"
    };
    let host = url.host_str().unwrap_or("");
    match url.port() {
        Some(port) => format!("{}://{auth}{host}:{port}", url.scheme()),
        None => format!("{}://{auth}{host}", url.scheme()),
    }
}

/// Splits the on-change command and checks that a program given by path exists.
fn parse_on_change(s: &str) -> Result<Vec<String>, String> {
    let argv = hooks::split_command(s)?;
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

/// Parses octal permission bits like `0600`, `600` or `0o600`, at most `0777`.
pub fn parse_mode(s: &str) -> Result<u32, String> {
    let t = s.trim();
    let digits = t
        .strip_prefix("0o")
        .or_else(|| t.strip_prefix("0O"))
        .unwrap_or(t);
    if digits.is_empty() || !digits.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return Err(format!(
            "{s:?} is not an octal file mode; use e.g. 0600 or 0640"
        ));
    }
    match u32::from_str_radix(digits, 8) {
        Ok(mode) if mode <= 0o777 => Ok(mode),
        _ => Err(format!(
            "{s:?} is more than 0777 (setuid, setgid and sticky bits are not allowed); use e.g. 0600 or 0640"
        )),
    }
}

/// Parses a numeric owner, `UID` or `UID:GID`.
pub fn parse_owner(s: &str) -> Result<Owner, String> {
    let t = s.trim();
    let bad = || {
        format!("{s:?} is not an owner; use a numeric UID or UID:GID such as 1000 or 1000:2000 (names are not looked up)")
    };
    let id = |part: &str| -> Result<u32, String> {
        if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        match part.parse::<u32>() {
            // u32::MAX is (uid_t)-1, which chown reads as "leave unchanged".
            Ok(id) if id != u32::MAX => Ok(id),
            _ => Err(format!(
                "{s:?} has an id out of range; ids go from 0 to 4294967294"
            )),
        }
    };
    match t.split_once(':') {
        Some((uid, gid)) => Ok(Owner {
            uid: id(uid)?,
            gid: Some(id(gid)?),
        }),
        None => Ok(Owner {
            uid: id(t)?,
            gid: None,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const ADDR: &str = "https://vault.example:8200";
    const JWT: &str = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW0ifQ.c2lnbmF0dXJl";

    fn load_with(args: &[&str], vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect();
        let names: Vec<String> = map.keys().cloned().collect();
        let env = move |name: &str| map.get(name).cloned();
        let argv = std::iter::once("vault-login").chain(args.iter().copied());
        Config::load_with_names(argv, &env, &names)
    }

    /// Loads with the two required settings present in the environment.
    fn load(args: &[&str], vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let mut all = vec![("VAULT_ADDR", ADDR), ("VAULT_LOGIN_ROLE", "app")];
        all.extend_from_slice(vars);
        load_with(args, &all)
    }

    fn ok(args: &[&str], vars: &[(&str, &str)]) -> Config {
        match load(args, vars) {
            Ok(config) => config,
            Err(e) => panic!("expected a config for {args:?} {vars:?}, got {e}"),
        }
    }

    #[test]
    fn debug_output_redacts_credentials() {
        let cfg = ok(
            &[],
            &[
                (
                    "VAULT_PROXY_ADDR",
                    "http://proxyuser:hunter2@proxy.example:3128",
                ),
                ("HTTPS_PROXY", "http://u2:pw-two@other.example:8080"),
                ("HTTP_PROXY", "http://u3:pw-three@third.example"),
                ("VAULT_HEADERS", r#"{"X-Api-Key": "gateway-sekrit"}"#),
                ("VAULT_LOGIN_JWT", JWT),
            ],
        );
        let shown = format!("{cfg:?}");
        for secret in [
            "hunter2",
            "proxyuser",
            "pw-two",
            "pw-three",
            "gateway-sekrit",
            JWT,
        ] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        // What is not secret stays, so the output is still useful.
        for public in ["proxy.example:3128", "other.example:8080", "X-Api-Key"] {
            assert!(shown.contains(public), "{public} missing from {shown}");
        }
        let proxy = format!("{:?}", cfg.proxy);
        assert!(proxy.contains("http://***@proxy.example:3128"), "{proxy}");
    }

    /// The source name and problem of an `Invalid` error, after checking the message's shape.
    fn bad(args: &[&str], vars: &[(&str, &str)]) -> (String, String) {
        match load(args, vars) {
            Err(ConfigError::Invalid {
                source_name,
                problem,
            }) => {
                check_problem(&problem);
                (source_name, problem)
            }
            other => panic!("expected Invalid for {args:?} {vars:?}, got {other:?}"),
        }
    }

    fn check_problem(problem: &str) {
        assert!(!problem.contains('\n'), "multi-line problem: {problem}");
        assert!(!problem.ends_with('.'), "trailing period: {problem}");
        let first = problem.chars().next().unwrap();
        assert!(!first.is_uppercase(), "not lowercase: {problem}");
        assert!(!problem.contains(JWT), "leaks the jwt: {problem}");
    }

    /// Asserts that `value` in env var `name` (and in `flag`) is rejected, naming the source and quoting the value.
    fn rejects(name: &str, flag: &str, value: &str, needle: &str) {
        let (source, problem) = bad(&[], &[(name, value)]);
        assert_eq!(source, name, "{problem}");
        assert!(
            problem.contains(&format!("{value:?}")),
            "{problem} does not quote {value:?}"
        );
        assert!(
            problem.contains(needle),
            "{problem} does not say {needle:?}"
        );
        let flag_arg = format!("{flag}={value}");
        let (source, problem) = bad(&[&flag_arg], &[]);
        assert_eq!(source, flag, "{problem}");
        assert!(
            problem.contains(needle),
            "{problem} does not say {needle:?}"
        );
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    // ----- defaults and sources -----

    #[test]
    fn defaults() {
        let c = ok(&[], &[]);
        assert_eq!(c.vault_addr.as_str(), "https://vault.example:8200/");
        assert_eq!(c.role, "app");
        assert_eq!(c.mount, "kubernetes");
        assert!(matches!(&c.jwt, JwtSource::File(p) if p == Path::new(DEFAULT_JWT_FILE)));
        assert_eq!(
            c.token_sink,
            TokenSink::File(PathBuf::from(DEFAULT_TOKEN_FILE))
        );
        assert_eq!(c.token_file_mode, 0o600);
        assert_eq!(c.token_file_owner, None);
        assert!(!c.once);
        assert_eq!(c.timeout, secs(300));
        assert_eq!(c.min_backoff, secs(1));
        assert_eq!(c.max_backoff, secs(300));
        assert_eq!(c.renew_increment, None);
        assert!(!c.revoke_on_exit);
        assert_eq!(c.listen, None);
        assert_eq!(c.log, "info");
        assert_eq!(c.log_format, LogFormat::Text);
        assert_eq!(c.namespace, None);
        assert_eq!(c.tls.ca_cert, None);
        assert_eq!(c.tls.ca_path, None);
        assert_eq!(c.tls.client_cert, None);
        assert_eq!(c.tls.client_key, None);
        assert_eq!(c.tls.server_name, None);
        assert!(!c.tls.skip_verify);
        assert_eq!(c.client_timeout, secs(60));
    }

    #[test]
    fn every_setting_from_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let file = |name: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, "pem").unwrap();
            path.display().to_string()
        };
        let (ca, cert, key) = (file("ca.pem"), file("cert.pem"), file("key.pem"));
        let capath = dir.path().display().to_string();
        let c = load_with(
            &[],
            &[
                ("VAULT_ADDR", "http://vault:8200"),
                ("VAULT_LOGIN_ROLE", "web"),
                ("VAULT_LOGIN_MOUNT", "k8s/prod"),
                ("VAULT_LOGIN_JWT_FILE", "/run/token"),
                ("VAULT_LOGIN_TOKEN_FILE", "/out/token"),
                ("VAULT_LOGIN_TOKEN_FILE_MODE", "0640"),
                ("VAULT_LOGIN_TOKEN_FILE_OWNER", "1000:2000"),
                ("VAULT_LOGIN_ONCE", "yes"),
                ("VAULT_LOGIN_TIMEOUT", "90"),
                ("VAULT_LOGIN_MIN_BACKOFF", "500ms"),
                ("VAULT_LOGIN_MAX_BACKOFF", "1m30s"),
                ("VAULT_LOGIN_RENEW_INCREMENT", "1h"),
                ("VAULT_LOGIN_REVOKE_ON_EXIT", "on"),
                ("VAULT_LOGIN_LISTEN", "127.0.0.1:9102"),
                ("VAULT_LOGIN_LOG", "vault_login=debug"),
                ("VAULT_LOGIN_LOG_FORMAT", "json"),
                ("VAULT_NAMESPACE", "admin/team-a/"),
                ("VAULT_CACERT", &ca),
                ("VAULT_CAPATH", &capath),
                ("VAULT_CLIENT_CERT", &cert),
                ("VAULT_CLIENT_KEY", &key),
                ("VAULT_TLS_SERVER_NAME", "vault.internal"),
                ("VAULT_SKIP_VERIFY", "TRUE"),
                ("VAULT_CLIENT_TIMEOUT", "10s"),
            ],
        )
        .unwrap();
        assert_eq!(c.vault_addr.as_str(), "http://vault:8200/");
        assert_eq!(c.role, "web");
        assert_eq!(c.mount, "k8s/prod");
        assert!(matches!(&c.jwt, JwtSource::File(p) if p == Path::new("/run/token")));
        assert_eq!(c.token_sink, TokenSink::File(PathBuf::from("/out/token")));
        assert_eq!(c.token_file_mode, 0o640);
        assert_eq!(
            c.token_file_owner,
            Some(Owner {
                uid: 1000,
                gid: Some(2000)
            })
        );
        assert!(c.once);
        assert_eq!(c.timeout, secs(90));
        assert_eq!(c.min_backoff, ms(500));
        assert_eq!(c.max_backoff, secs(90));
        assert_eq!(c.renew_increment, Some(secs(3600)));
        assert!(c.revoke_on_exit);
        assert_eq!(c.listen, Some("127.0.0.1:9102".parse().unwrap()));
        assert_eq!(c.log, "vault_login=debug");
        assert_eq!(c.log_format, LogFormat::Json);
        assert_eq!(c.namespace.as_deref(), Some("admin/team-a"));
        assert_eq!(c.tls.ca_cert, Some(PathBuf::from(&ca)));
        assert_eq!(c.tls.ca_path, Some(PathBuf::from(&capath)));
        assert_eq!(c.tls.client_cert, Some(PathBuf::from(&cert)));
        assert_eq!(c.tls.client_key, Some(PathBuf::from(&key)));
        assert_eq!(c.tls.server_name.as_deref(), Some("vault.internal"));
        assert!(c.tls.skip_verify);
        assert_eq!(c.client_timeout, secs(10));
    }

    #[test]
    fn every_setting_from_flags() {
        let dir = tempfile::tempdir().unwrap();
        let file = |name: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, "pem").unwrap();
            path.display().to_string()
        };
        let (ca, cert, key) = (file("ca.pem"), file("cert.pem"), file("key.pem"));
        let capath = dir.path().display().to_string();
        let args = [
            "--vault-addr=https://flag.example/vault/",
            "--role=flag-role",
            "--mount=/flagmount/",
            "--jwt-file=/flag/jwt",
            "--token-file",
            "-",
            "--token-file-mode=0o400",
            "--token-file-owner=65534",
            "--once",
            "--timeout=1m",
            "--min-backoff=2s",
            "--max-backoff=1h",
            "--renew-increment=30m",
            "--revoke-on-exit",
            "--listen=:9102",
            "--log=warn",
            "--log-format=JSON",
            "--namespace=/ns1",
            "--ca-cert",
            &ca,
            "--ca-path",
            &capath,
            "--client-cert",
            &cert,
            "--client-key",
            &key,
            "--tls-server-name=sni.example",
            "--tls-skip-verify",
            "--client-timeout=1.5s",
        ];
        let c = load_with(&args, &[]).unwrap();
        assert_eq!(c.vault_addr.as_str(), "https://flag.example/vault");
        assert_eq!(c.role, "flag-role");
        assert_eq!(c.mount, "flagmount");
        assert!(matches!(&c.jwt, JwtSource::File(p) if p == Path::new("/flag/jwt")));
        assert_eq!(c.token_sink, TokenSink::Stdout);
        assert_eq!(c.token_file_mode, 0o400);
        assert_eq!(
            c.token_file_owner,
            Some(Owner {
                uid: 65534,
                gid: None
            })
        );
        assert!(c.once);
        assert_eq!(c.timeout, secs(60));
        assert_eq!(c.min_backoff, secs(2));
        assert_eq!(c.max_backoff, secs(3600));
        assert_eq!(c.renew_increment, Some(secs(1800)));
        assert!(c.revoke_on_exit);
        assert_eq!(c.listen, Some("0.0.0.0:9102".parse().unwrap()));
        assert_eq!(c.log, "warn");
        assert_eq!(c.log_format, LogFormat::Json);
        assert_eq!(c.namespace.as_deref(), Some("ns1"));
        assert_eq!(c.tls.ca_cert, Some(PathBuf::from(&ca)));
        assert_eq!(c.tls.ca_path, Some(PathBuf::from(&capath)));
        assert_eq!(c.tls.client_cert, Some(PathBuf::from(&cert)));
        assert_eq!(c.tls.client_key, Some(PathBuf::from(&key)));
        assert_eq!(c.tls.server_name.as_deref(), Some("sni.example"));
        assert!(c.tls.skip_verify);
        assert_eq!(c.client_timeout, ms(1500));
    }

    #[test]
    fn flags_override_the_environment() {
        let c = ok(
            &[
                "--vault-addr",
                "http://flag:8200",
                "--role",
                "flag",
                "--mount",
                "m2",
                "--timeout",
                "7s",
            ],
            &[
                ("VAULT_LOGIN_MOUNT", "m1"),
                ("VAULT_LOGIN_TIMEOUT", "9s"),
                ("BAO_ADDR", "http://bao"),
            ],
        );
        assert_eq!(c.vault_addr.as_str(), "http://flag:8200/");
        assert_eq!(c.role, "flag");
        assert_eq!(c.mount, "m2");
        assert_eq!(c.timeout, secs(7));
        // A bad variable does not matter when the flag is given.
        let c = ok(
            &["--token-file-mode", "0644"],
            &[("VAULT_LOGIN_TOKEN_FILE_MODE", "junk")],
        );
        assert_eq!(c.token_file_mode, 0o644);
        // Presence flags win over a false variable.
        let c = ok(
            &["--once", "--revoke-on-exit", "--tls-skip-verify"],
            &[
                ("VAULT_LOGIN_ONCE", "false"),
                ("VAULT_LOGIN_REVOKE_ON_EXIT", "no"),
                ("VAULT_SKIP_VERIFY", "0"),
            ],
        );
        assert!(c.once && c.revoke_on_exit && c.tls.skip_verify);
    }

    #[test]
    fn bao_twins_are_read_when_vault_ones_are_unset() {
        let dir = tempfile::tempdir().unwrap();
        let pem = dir.path().join("x.pem");
        std::fs::write(&pem, "pem").unwrap();
        let pem = pem.display().to_string();
        let capath = dir.path().display().to_string();
        let c = load_with(
            &[],
            &[
                ("BAO_ADDR", "https://bao.example:8200"),
                ("VAULT_LOGIN_ROLE", "app"),
                ("BAO_NAMESPACE", "tenant"),
                ("BAO_CACERT", &pem),
                ("BAO_CAPATH", &capath),
                ("BAO_CLIENT_CERT", &pem),
                ("BAO_CLIENT_KEY", &pem),
                ("BAO_TLS_SERVER_NAME", "bao.internal"),
                ("BAO_SKIP_VERIFY", "1"),
                ("BAO_CLIENT_TIMEOUT", "5s"),
            ],
        )
        .unwrap();
        assert_eq!(c.vault_addr.as_str(), "https://bao.example:8200/");
        assert_eq!(c.namespace.as_deref(), Some("tenant"));
        assert_eq!(c.tls.ca_cert, Some(PathBuf::from(&pem)));
        assert_eq!(c.tls.ca_path, Some(PathBuf::from(&capath)));
        assert_eq!(c.tls.client_cert, Some(PathBuf::from(&pem)));
        assert_eq!(c.tls.client_key, Some(PathBuf::from(&pem)));
        assert_eq!(c.tls.server_name.as_deref(), Some("bao.internal"));
        assert!(c.tls.skip_verify);
        assert_eq!(c.client_timeout, secs(5));
    }

    #[test]
    fn vault_variables_win_over_bao_twins() {
        let c = load_with(
            &[],
            &[
                ("VAULT_ADDR", "https://vault.example"),
                ("BAO_ADDR", "https://bao.example"),
                ("VAULT_LOGIN_ROLE", "app"),
                ("VAULT_NAMESPACE", "v"),
                ("BAO_NAMESPACE", "b"),
                ("VAULT_TLS_SERVER_NAME", "v.example"),
                ("BAO_TLS_SERVER_NAME", "b.example"),
                ("VAULT_SKIP_VERIFY", "false"),
                ("BAO_SKIP_VERIFY", "true"),
                ("VAULT_CLIENT_TIMEOUT", "3s"),
                ("BAO_CLIENT_TIMEOUT", "4s"),
            ],
        )
        .unwrap();
        assert_eq!(c.vault_addr.host_str(), Some("vault.example"));
        assert_eq!(c.namespace.as_deref(), Some("v"));
        assert_eq!(c.tls.server_name.as_deref(), Some("v.example"));
        assert!(!c.tls.skip_verify);
        assert_eq!(c.client_timeout, secs(3));
        // A bad BAO twin is ignored when the VAULT variable is set.
        let c = ok(
            &[],
            &[
                ("BAO_CLIENT_TIMEOUT", "junk"),
                ("VAULT_CLIENT_TIMEOUT", "2s"),
            ],
        );
        assert_eq!(c.client_timeout, secs(2));
    }

    #[test]
    fn bao_twin_errors_name_the_bao_variable() {
        let (source, _) = bad(&[], &[("BAO_CLIENT_TIMEOUT", "5x")]);
        assert_eq!(source, "BAO_CLIENT_TIMEOUT");
        let (source, problem) = load_with(
            &[],
            &[
                ("BAO_ADDR", "ftp://bao.example"),
                ("VAULT_LOGIN_ROLE", "app"),
            ],
        )
        .map(|_| ())
        .map_err(|e| match e {
            ConfigError::Invalid {
                source_name,
                problem,
            } => (source_name, problem),
            other => panic!("{other:?}"),
        })
        .unwrap_err();
        assert_eq!(source, "BAO_ADDR");
        assert!(problem.contains("\"ftp://bao.example\""), "{problem}");
    }

    #[test]
    fn only_vault_names_have_bao_twins() {
        let c = ok(
            &[],
            &[("BAO_LOGIN_MOUNT", "other"), ("BAO_LOGIN_ONCE", "true")],
        );
        assert_eq!(c.mount, "kubernetes");
        assert!(!c.once);
    }

    #[test]
    fn empty_variables_count_as_unset() {
        let vars: Vec<(&str, &str)> = [
            "VAULT_LOGIN_MOUNT",
            "VAULT_LOGIN_JWT_FILE",
            "VAULT_LOGIN_JWT",
            "VAULT_LOGIN_TOKEN_FILE",
            "VAULT_LOGIN_TOKEN_FILE_MODE",
            "VAULT_LOGIN_TOKEN_FILE_OWNER",
            "VAULT_LOGIN_ONCE",
            "VAULT_LOGIN_TIMEOUT",
            "VAULT_LOGIN_MIN_BACKOFF",
            "VAULT_LOGIN_MAX_BACKOFF",
            "VAULT_LOGIN_RENEW_INCREMENT",
            "VAULT_LOGIN_REVOKE_ON_EXIT",
            "VAULT_LOGIN_LISTEN",
            "VAULT_LOGIN_LOG",
            "VAULT_LOGIN_LOG_FORMAT",
            "VAULT_NAMESPACE",
            "VAULT_HEADERS",
            "VAULT_CACERT",
            "VAULT_CACERT_BYTES",
            "VAULT_CAPATH",
            "VAULT_CLIENT_CERT",
            "VAULT_CLIENT_KEY",
            "VAULT_TLS_SERVER_NAME",
            "VAULT_SKIP_VERIFY",
            "VAULT_CLIENT_TIMEOUT",
            "VAULT_DISABLE_REDIRECTS",
            "VAULT_PROXY_ADDR",
            "VAULT_HTTP_PROXY",
            "HTTP_PROXY",
            "HTTPS_PROXY",
            "NO_PROXY",
        ]
        .iter()
        .map(|name| (*name, ""))
        .collect();
        let c = ok(&[], &vars);
        let d = ok(&[], &[]);
        assert_eq!(c.summary(), d.summary());
        assert!(matches!(c.jwt, JwtSource::File(_)));
    }

    #[test]
    fn an_empty_vault_variable_falls_back_to_its_bao_twin() {
        let c = load_with(
            &[],
            &[
                ("VAULT_ADDR", ""),
                ("BAO_ADDR", "http://bao:8200"),
                ("VAULT_LOGIN_ROLE", "r"),
            ],
        )
        .unwrap();
        assert_eq!(c.vault_addr.as_str(), "http://bao:8200/");
    }

    #[test]
    fn required_settings_missing_or_empty() {
        for vars in [
            vec![],
            vec![("VAULT_ADDR", "")],
            vec![("VAULT_ADDR", ""), ("BAO_ADDR", "")],
        ] {
            let mut all = vars.clone();
            all.push(("VAULT_LOGIN_ROLE", "app"));
            match load_with(&[], &all) {
                Err(ConfigError::Invalid {
                    source_name,
                    problem,
                }) => {
                    assert_eq!(source_name, "VAULT_ADDR");
                    assert_eq!(
                        problem,
                        "required but not set (set VAULT_ADDR or --vault-addr to your Vault's URL, e.g. https://vault.example:8200)"
                    );
                    let e = ConfigError::Invalid {
                        source_name,
                        problem,
                    };
                    assert!(e
                        .to_string()
                        .starts_with("VAULT_ADDR: required but not set"));
                }
                other => panic!("{other:?}"),
            }
        }
        for role in [None, Some("")] {
            let mut vars = vec![("VAULT_ADDR", ADDR)];
            if let Some(role) = role {
                vars.push(("VAULT_LOGIN_ROLE", role));
            }
            match load_with(&[], &vars) {
                Err(ConfigError::Invalid {
                    source_name,
                    problem,
                }) => {
                    assert_eq!(source_name, "VAULT_LOGIN_ROLE");
                    assert!(problem.starts_with("required but not set"), "{problem}");
                    assert!(problem.contains("--role"), "{problem}");
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn empty_flag_values_are_rejected() {
        for flag in [
            "--role",
            "--mount",
            "--timeout",
            "--namespace",
            "--log",
            "--token-file",
        ] {
            let arg = format!("{flag}=");
            let (source, problem) = bad(&[&arg], &[]);
            assert_eq!(source, flag);
            assert!(problem.contains("empty"), "{problem}");
        }
    }

    // ----- the JWT -----

    #[test]
    fn jwt_from_the_environment_wins_over_the_file() {
        let c = ok(
            &["--jwt-file", "/x"],
            &[("VAULT_LOGIN_JWT", JWT), ("VAULT_LOGIN_JWT_FILE", "/y")],
        );
        match &c.jwt {
            JwtSource::Env(secret) => assert_eq!(secret.expose(), JWT),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_jwt_is_never_printed() {
        let c = ok(&[], &[("VAULT_LOGIN_JWT", JWT)]);
        let summary = c.summary();
        assert!(summary.contains("jwt=env:VAULT_LOGIN_JWT"), "{summary}");
        assert!(!summary.contains(JWT));
        assert!(!summary.contains("eyJ"));
        let debug = format!("{c:?}");
        assert!(!debug.contains(JWT), "{debug}");
        assert!(!debug.contains("eyJ"), "{debug}");
    }

    #[test]
    fn there_is_no_jwt_flag() {
        for args in [vec!["--jwt", JWT], vec![JWT]] {
            match load(&args, &[]) {
                Err(ConfigError::Usage(message)) => {
                    assert!(!message.contains(JWT), "{message}");
                    assert!(!message.contains("eyJ"), "{message}");
                }
                other => panic!("{other:?}"),
            }
        }
        match load(&[&format!("--jwt={JWT}")], &[]) {
            Err(ConfigError::Usage(message)) => assert!(!message.contains(JWT), "{message}"),
            other => panic!("{other:?}"),
        }
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

    fn summary_has(c: &Config, part: &str) -> bool {
        c.summary().split(' ').any(|field| field == part)
    }

    // ----- token sink -----

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

    // ----- Vault address -----

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
            assert_eq!(c.vault_addr.as_str(), want, "{input}");
        }
        let c = ok(&[], &[("VAULT_ADDR", "https://lb.example/vault/")]);
        assert!(summary_has(&c, "vault_addr=https://lb.example/vault"));
        let c = ok(&[], &[]);
        assert!(summary_has(&c, "vault_addr=https://vault.example:8200"));
    }

    #[test]
    fn vault_addr_rejects_bad_urls() {
        rejects(
            "VAULT_ADDR",
            "--vault-addr",
            "vault.example:8200",
            "no scheme",
        );
        rejects("VAULT_ADDR", "--vault-addr", "localhost", "no scheme");
        rejects(
            "VAULT_ADDR",
            "--vault-addr",
            "ftp://vault.example",
            "http:// or https://",
        );
        rejects(
            "VAULT_ADDR",
            "--vault-addr",
            "unix:///run/vault.sock",
            "http:// or https://",
        );
        rejects(
            "VAULT_ADDR",
            "--vault-addr",
            "https://vault.example/?x=1",
            "query",
        );
        rejects(
            "VAULT_ADDR",
            "--vault-addr",
            "https://vault.example?",
            "query",
        );
        rejects(
            "VAULT_ADDR",
            "--vault-addr",
            "https://vault.example/#top",
            "fragment",
        );
        rejects("VAULT_ADDR", "--vault-addr", "http://", "not a valid url");
        rejects(
            "VAULT_ADDR",
            "--vault-addr",
            "https://vault.example:99999",
            "not a valid url",
        );
    }

    #[test]
    fn vault_addr_with_credentials_is_rejected_without_quoting_them() {
        let (source, problem) = bad(&[], &[("VAULT_ADDR", "https://user:hunter2@vault.example")]);
        assert_eq!(source, "VAULT_ADDR");
        assert!(problem.contains("user name or password"), "{problem}");
        assert!(!problem.contains("hunter2"), "{problem}");
    }

    // ----- role, mount, namespace -----

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
    fn namespace_strips_slashes() {
        let ns = |v: &str| ok(&[], &[("VAULT_NAMESPACE", v)]).namespace;
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

    // ----- token file mode and owner -----

    #[test]
    fn modes() {
        for (input, want) in [
            ("0600", 0o600),
            ("600", 0o600),
            ("0o640", 0o640),
            ("0O640", 0o640),
            ("0777", 0o777),
            ("0", 0),
            ("000400", 0o400),
            (" 0644 ", 0o644),
        ] {
            assert_eq!(parse_mode(input), Ok(want), "{input}");
        }
        for input in [
            "0778",
            "8",
            "rw-r--r--",
            "",
            "0o",
            "0x1ff",
            "+600",
            "-600",
            "6 00",
        ] {
            let e = parse_mode(input).unwrap_err();
            assert!(e.contains("not an octal file mode"), "{input}: {e}");
            check_problem(&e);
        }
        for input in ["1000", "4755", "07777", "777777777777777777777"] {
            let e = parse_mode(input).unwrap_err();
            assert!(e.contains("more than 0777"), "{input}: {e}");
        }
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
    fn owners() {
        assert_eq!(
            parse_owner("1000"),
            Ok(Owner {
                uid: 1000,
                gid: None
            })
        );
        assert_eq!(
            parse_owner("1000:2000"),
            Ok(Owner {
                uid: 1000,
                gid: Some(2000)
            })
        );
        assert_eq!(
            parse_owner("0:0"),
            Ok(Owner {
                uid: 0,
                gid: Some(0)
            })
        );
        assert_eq!(
            parse_owner("4294967294"),
            Ok(Owner {
                uid: 4_294_967_294,
                gid: None
            })
        );
        for input in [
            "1000:",
            ":1000",
            "-1",
            "nobody",
            "1000:staff",
            "1:2:3",
            "",
            "+5",
            "1 000",
        ] {
            let e = parse_owner(input).unwrap_err();
            assert!(e.contains("not an owner"), "{input}: {e}");
            check_problem(&e);
        }
        for input in ["4294967295", "4294967296", "1:99999999999999999999999"] {
            let e = parse_owner(input).unwrap_err();
            assert!(e.contains("out of range"), "{input}: {e}");
        }
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

    // ----- durations -----

    #[test]
    fn durations() {
        for (input, want) in [
            ("500ms", ms(500)),
            ("30s", secs(30)),
            ("5m", secs(300)),
            ("1h", secs(3600)),
            ("1h30m", secs(5400)),
            ("1m30s", secs(90)),
            ("1h2m3s", secs(3723)),
            ("1s500ms", ms(1500)),
            ("1.5s", ms(1500)),
            ("1.5h", secs(5400)),
            (".5s", ms(500)),
            ("90", secs(90)),
            ("0", secs(0)),
            ("0s", secs(0)),
            ("007", secs(7)),
            (" 30s ", secs(30)),
            ("4m0s", secs(240)),
            ("87600h", MAX_DURATION),
            ("315360000", MAX_DURATION),
            ("0.0000000001s", secs(0)),
        ] {
            assert_eq!(parse_duration(input), Ok(want), "{input}");
        }
    }

    #[test]
    fn bad_durations() {
        for input in [
            "5x", "1d", "abc", "s", "1h30", "30 s", "1.s.", "5ns", "1e3s", "+5s", ".", "1hh", "ms",
            "٣s",
        ] {
            let e = parse_duration(input).unwrap_err();
            assert_eq!(
                e,
                format!("{input:?} is not a duration ({DURATION_HINT})"),
                "{input}"
            );
            check_problem(&e);
        }
        assert!(parse_duration("5x")
            .unwrap_err()
            .starts_with("\"5x\" is not a duration (use e.g. 500ms"));
        for input in ["-1s", "-5", " -1m"] {
            let e = parse_duration(input).unwrap_err();
            assert!(e.contains("negative"), "{input}: {e}");
        }
        for input in ["", "  "] {
            assert!(parse_duration(input).unwrap_err().contains("empty"));
        }
        for input in [
            "87601h",
            "315360001",
            "87600h1ms",
            "999999999999999999999999999999999999999999999",
            "99999999999999999999999999999h",
            "5256000m1s",
        ] {
            let e = parse_duration(input).unwrap_err();
            assert!(e.contains("too long"), "{input}: {e}");
        }
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
    fn negative_duration_flag_is_a_value_not_a_flag() {
        let (source, problem) = bad(&["--timeout", "-5s"], &[]);
        assert_eq!(source, "--timeout");
        assert!(problem.contains("negative"), "{problem}");
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

    // ----- booleans -----

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

    // ----- listen, log -----

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

    // ----- TLS -----

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
    fn tls_server_name_rejects_whitespace() {
        rejects(
            "VAULT_TLS_SERVER_NAME",
            "--tls-server-name",
            "vault example",
            "whitespace",
        );
    }

    // ----- proxies -----

    #[test]
    fn proxy_addr_precedence_like_the_vault_cli() {
        let url = |c: &Config| c.proxy.all.as_ref().map(|u| u.as_str().to_string());
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
        assert_eq!(ok(&[], &[]).proxy, ProxySettings::default());
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
        assert_eq!(c.proxy.https.unwrap().as_str(), "http://upper:1/");
        assert_eq!(c.proxy.http.unwrap().as_str(), "http://lower-http:3/");
        assert_eq!(c.proxy.no_proxy.as_deref(), Some(".svc,.cluster.local"));
        assert_eq!(c.proxy.all, None);
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
    fn proxies_are_summarised_without_credentials() {
        let c = ok(
            &[],
            &[
                ("HTTPS_PROXY", "http://agent:pw@proxy:3128"),
                ("NO_PROXY", ".svc"),
            ],
        );
        let line = c.summary();
        assert!(
            line.contains("proxy=env(https=http://***@proxy:3128,no_proxy=.svc)"),
            "{line}"
        );
        assert!(!line.contains("pw"), "{line}");
        let c = ok(&[], &[("VAULT_PROXY_ADDR", "http://p:1")]);
        assert!(c.summary().contains("proxy=http://p:1 (all requests)"));
        assert!(ok(&[], &[]).summary().contains("proxy=none"));
        // NO_PROXY alone changes nothing.
        assert!(ok(&[], &[("NO_PROXY", "*")])
            .summary()
            .contains("proxy=none"));
    }

    // ----- command line -----

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
        use clap::CommandFactory;
        let command = Cli::command();
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

    // ----- summary and human -----

    #[test]
    fn summary_is_one_line_with_every_setting() {
        let c = ok(
            &[],
            &[
                ("VAULT_NAMESPACE", "ns"),
                ("VAULT_LOGIN_RENEW_INCREMENT", "90m"),
            ],
        );
        let s = c.summary();
        assert!(!s.contains('\n'));
        for part in [
            "vault_addr=https://vault.example:8200",
            "namespace=ns",
            "role=app",
            "mount=kubernetes",
            "jwt=file:/var/run/secrets/kubernetes.io/serviceaccount/token",
            "token_sink=file:/var/run/secrets/vaultproject.io/token",
            "token_file_mode=0600",
            "token_file_owner=none",
            "once=false",
            "timeout=5m0s",
            "min_backoff=1s",
            "max_backoff=5m0s",
            "renew_increment=1h30m0s",
            "revoke_on_exit=false",
            "listen=none",
            "log=info",
            "log_format=text",
            "ca_cert=none",
            "tls_skip_verify=false",
            "client_timeout=1m0s",
        ] {
            assert!(summary_has(&c, part), "{part} missing from {s}");
        }
    }

    #[test]
    fn summary_quotes_values_with_spaces() {
        let c = ok(&[], &[("VAULT_LOGIN_JWT_FILE", "/my dir/token")]);
        assert!(
            c.summary().contains("jwt=file:\"/my dir/token\""),
            "{}",
            c.summary()
        );
    }

    #[test]
    fn human_durations() {
        for (d, want) in [
            (Duration::ZERO, "0s"),
            (Duration::from_nanos(1), "1ns"),
            (Duration::from_nanos(1500), "1.5µs"),
            (ms(250), "250ms"),
            (Duration::from_micros(1500), "1.5ms"),
            (secs(1), "1s"),
            (ms(1500), "1.5s"),
            (secs(59), "59s"),
            (secs(60), "1m0s"),
            (secs(90), "1m30s"),
            (secs(240), "4m0s"),
            (secs(3600), "1h0m0s"),
            (secs(3723), "1h2m3s"),
            (ms(3_723_500), "1h2m3.5s"),
            (secs(100 * 3600), "100h0m0s"),
            (Duration::new(1, 1), "1.000000001s"),
        ] {
            assert_eq!(human(d), want, "{d:?}");
        }
        // Round trip through the parser.
        for text in ["1h2m3s", "4m0s", "1.5s", "250ms", "0s", "87600h0m0s"] {
            assert_eq!(human(parse_duration(text).unwrap()), text);
        }
        // Durations beyond what the parser accepts still format.
        assert_eq!(human(Duration::MAX), "5124095576030431h0m15.999999999s");
    }

    #[test]
    fn errors_display_source_then_problem() {
        let e = load(&[], &[("VAULT_LOGIN_TOKEN_FILE_MODE", "0778")]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "VAULT_LOGIN_TOKEN_FILE_MODE: \"0778\" is not an octal file mode; use e.g. 0600 or 0640"
        );
    }

    // ----- hooks: on-change command, signal, token info file -----

    #[test]
    fn hooks_are_off_by_default() {
        let c = ok(&[], &[]);
        assert_eq!(c.on_change, None);
        assert_eq!(c.on_change_timeout, secs(30));
        assert_eq!(c.signal_pid_file, None);
        assert_eq!(c.signal, AppSignal::HUP);
        assert_eq!(c.token_info_file, None);
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
            c.on_change.as_deref(),
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
        assert_eq!(c.on_change_timeout, secs(5));
        assert_eq!(c.signal_pid_file, Some(PathBuf::from("/run/app/app.pid")));
        assert_eq!(c.signal.to_string(), "SIGUSR1");
        assert_eq!(c.token_info_file, Some(PathBuf::from(&info)));
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
            c.on_change.as_deref(),
            Some(
                &[
                    "curl".to_string(),
                    "-X".into(),
                    "POST".into(),
                    "http://127.0.0.1:8080/-/reload".into()
                ][..]
            )
        );
        assert_eq!(c.on_change_timeout, secs(60));
        assert_eq!(c.signal.to_string(), "SIGTERM");
        assert_eq!(c.token_info_file, Some(PathBuf::from(&info)));
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
            ok(&[], &[("VAULT_LOGIN_ON_CHANGE", "reload-app now")]).on_change,
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
            assert_eq!(c.signal.to_string(), want);
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
