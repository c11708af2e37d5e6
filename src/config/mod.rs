//! Settings: command-line flags, then `VAULT_*`/`VAULT_LOGIN_*` variables, then `BAO_*` twins, then defaults.
//!
//! Each setting is declared once in [`crate::config::settings`]; this module reads them through an
//! injectable lookup (so tests never touch the process environment) and assembles each module's
//! settings into a [`Config`]. An empty variable counts as unset. Every value is checked here,
//! once, so the rest of the program can trust a [`Config`]; a bad value becomes a
//! [`ConfigError::Invalid`] that names the flag or variable it came from and says what to do.

pub mod annotations;
mod build;
pub mod cli;
pub mod settings;
mod summary;

use std::ffi::OsString;
use std::net::SocketAddr;
use std::time::Duration;

use clap::ArgMatches;
use cli::CliError;

use crate::config::settings::{About, Setting};
use crate::exec::{ExecSettings, ENV_PREFIX};
use crate::hooks::HookSettings;
use crate::machine::cert_lane::CertSettings;
use crate::machine::events::{Goal, Settings};
use crate::secrets::certs::CertsSettings;
use crate::secrets::{self, SecretsSettings};
use crate::vault::VaultSettings;

pub use crate::duration::{human, parse_duration, DURATION_HINT, MAX_DURATION};
pub use crate::files::token_file::{Owner, TokenSink, DEFAULT_TOKEN_FILE};
pub use crate::jwt::{JwtSource, DEFAULT_JWT_FILE, JWT_ENV};
pub use crate::telemetry::LogFormat;

/// The checked, effective configuration: each module's settings, and the token loop's.
#[derive(Clone, Debug)]
pub struct Config {
    /// How to reach Vault: address, namespace, headers, TLS, proxies, timeout, redirects.
    pub vault: VaultSettings,
    /// Kubernetes auth role to log in as.
    pub role: String,
    /// Auth mount path without leading or trailing '/', e.g. `kubernetes` or `k8s/cluster-1`.
    pub mount: String,
    /// Where the service-account JWT comes from.
    pub jwt: JwtSource,
    /// Where the Vault token goes.
    pub token_sink: TokenSink,
    /// The flag or variable the token file came from (for its errors).
    pub token_file_setting: &'static str,
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
    /// Longest wait between logins while no valid token is held (> 0).
    pub recovery_backoff: Duration,
    /// Increment to ask for when renewing (>= 1s), if any.
    pub renew_increment: Option<Duration>,
    /// Revoke the token when exiting.
    pub revoke_on_exit: bool,
    /// Address for the health/metrics server, if any.
    pub listen: Option<SocketAddr>,
    /// Tracing filter, checked by [`crate::telemetry::parse_filter`].
    pub log: String,
    /// Log line format.
    pub log_format: LogFormat,
    /// What to do after each new token: command, signal, token info file.
    pub hooks: HookSettings,
    /// Secrets to write to files (`VAULT_LOGIN_SECRET_<NAME>`; environment only).
    pub secrets: SecretsSettings,
    /// Certificates to keep issued (`VAULT_LOGIN_CERT_<NAME>`; environment only).
    pub certs: CertsSettings,
    /// `VAULT_LOGIN_*` variables no setting reads, each with the one it resembles: warned of.
    pub unknown_variables: Vec<(String, Option<&'static str>)>,
    /// `vault-login exec -- <program>`: the program and its environment values.
    pub exec: Option<ExecSettings>,
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

/// A value that was given, and the flag or variable it came from.
struct Given {
    value: String,
    source: &'static str,
}

impl Given {
    fn invalid(&self, problem: impl Into<String>) -> ConfigError {
        invalid(self.source, problem)
    }
}

fn invalid(source_name: &str, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        source_name: source_name.to_string(),
        problem: problem.into(),
    }
}

/// Reads settings: a flag's value first, then each variable in turn, then the pod's annotations
/// (`VAULT_LOGIN_ANNOTATIONS_FILE`), then the default.
struct Lookup<'a> {
    flags: ArgMatches,
    env: &'a dyn Fn(&str) -> Option<String>,
    annotations: &'a annotations::Layer,
    /// The names of the environment's `VAULT_LOGIN_*` variables: the `VAULT_LOGIN_SECRET_<NAME>`
    /// family, and misspelt settings.
    names: &'a [String],
    /// `vault-login exec`: the program and its arguments.
    program: Option<Vec<OsString>>,
}

impl Lookup<'_> {
    /// The value given for a setting, if any; an empty variable counts as unset.
    fn given(&self, about: &About) -> Result<Option<Given>, ConfigError> {
        if let Some(flag) = about.flag {
            let id = flag.trim_start_matches('-');
            if about.value.is_none() {
                if self.flags.get_flag(id) {
                    let value = "true".to_string();
                    return Ok(Some(Given {
                        value,
                        source: flag,
                    }));
                }
            } else if let Some(value) = self.flags.get_one::<String>(id) {
                if value.is_empty() {
                    let problem = format!("the value is empty; give a value or leave out {flag}");
                    return Err(invalid(flag, problem));
                }
                let value = value.clone();
                return Ok(Some(Given {
                    value,
                    source: flag,
                }));
            }
        }
        let from_env = about.env.iter().find_map(|name| {
            let value = (self.env)(name).filter(|value| !value.is_empty())?;
            Some(Given {
                value,
                source: name,
            })
        });
        Ok(from_env.or_else(|| {
            let (key, value) = self.annotations.get(about.name())?;
            Some(Given {
                value: value.to_string(),
                source: key,
            })
        }))
    }

    /// The given value or else the default, parsed, for a setting that must have one.
    fn value<T>(&self, setting: &Setting<T>) -> Result<T, ConfigError> {
        let about = &setting.about;
        let (value, source) = match self.given(about)? {
            Some(given) => (given.value, given.source),
            None => match about.default {
                Some(default) => (default.to_string(), about.name()),
                None => return Err(self.missing(about)),
            },
        };
        (setting.parse)(&value).map_err(|problem| invalid(source, problem))
    }

    /// The error for a required setting that has no value: what to set, and a misspelt
    /// variable that may have been meant.
    fn missing(&self, about: &About) -> ConfigError {
        let (name, flag) = (about.name(), about.flag_or_name());
        let typo = cli::unknown_variables(self.names)
            .into_iter()
            .find(|(_, closest)| *closest == Some(name))
            .map_or_else(String::new, |(typo, _)| format!("; {typo} is set: a typo?"));
        let help = about.help;
        invalid(
            name,
            format!("required but not set (set {name} or {flag} to {help}){typo}"),
        )
    }
}

impl Config {
    /// Parses flags (`args[0]` is the program name) and the environment seen through `env`.
    /// Sees no `VAULT_LOGIN_SECRET_<NAME>` variables (it cannot list names); see
    /// [`Config::load_with_names`].
    pub fn load<I, T>(args: I, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        Config::load_with_names(args, env, &[])
    }

    /// Like [`Config::load`], given the names of the environment's variables, among which the
    /// `VAULT_LOGIN_SECRET_<NAME>` ones are found (their values are read through `env`) and
    /// the misspelt `VAULT_LOGIN_*` ones.
    pub fn load_with_names<I, T>(
        args: I,
        env: &dyn Fn(&str) -> Option<String>,
        names: &[String],
    ) -> Result<Config, ConfigError>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let (args, program) = split_exec(args.into_iter().map(Into::into).collect())?;
        let flags =
            cli::command()
                .try_get_matches_from(args)
                .map_err(|e| match cli::fold_error(e) {
                    CliError::Help(text) => ConfigError::Help(text),
                    CliError::Usage(text) => ConfigError::Usage(text),
                })?;
        let annotations =
            annotations::Layer::load(env).map_err(|(source, problem)| invalid(&source, problem))?;
        build::build(&Lookup {
            flags,
            env,
            annotations: &annotations,
            names,
            program,
        })
    }

    /// Parses flags and the real process environment.
    pub fn from_process() -> Result<Config, ConfigError> {
        // Lossy so a non-UTF-8 value is reported as bad rather than silently ignored.
        let env = |name: &str| std::env::var_os(name).map(|v| v.to_string_lossy().into_owned());
        let names: Vec<String> = std::env::vars_os()
            .map(|(name, _)| name.to_string_lossy().into_owned())
            .filter(|name| name.starts_with(cli::OWN_PREFIX))
            .collect();
        Config::load_with_names(std::env::args_os(), &env, &names)
    }

    /// Warnings about the configuration, a line each: variables no setting reads.
    pub fn warnings(&self) -> Vec<String> {
        let ignored = "is not a vault-login setting and is ignored";
        let line = |(name, closest): &(String, Option<&str>)| match closest {
            Some(k) if name.starts_with(ENV_PREFIX) => {
                format!(
                    "{name} is read only by `vault-login exec` and is ignored; did you mean {k}?"
                )
            }
            Some(k) => format!("{name} {ignored}; did you mean {k}?"),
            None if name.starts_with(ENV_PREFIX) => {
                format!("{name} is read only by `vault-login exec -- <program>` and is ignored")
            }
            None => format!("{name} {ignored}; see --help"),
        };
        self.unknown_variables.iter().map(line).collect()
    }

    /// The state machine's settings.
    pub fn machine_settings(&self) -> Settings {
        Settings {
            goal: if self.once {
                Goal::Once {
                    timeout: self.timeout,
                }
            } else {
                Goal::Sidecar
            },
            min_backoff: self.min_backoff,
            max_backoff: self.max_backoff,
            recovery_backoff: self.recovery_backoff,
            renew_increment: self.renew_increment,
            revoke_on_exit: self.revoke_on_exit,
            adopt: !self.once && matches!(self.token_sink, TokenSink::File(_)),
            secrets: {
                let (specs, templates) = self.reads();
                (secrets::sources(&specs, &templates).iter())
                    .map(|s| s.path().to_string())
                    .collect()
            },
            refresh: self.secrets.refresh,
        }
    }

    /// The machine's certificate settings.
    pub fn cert_settings(&self) -> CertSettings {
        CertSettings {
            count: self.certs.specs.len(),
            renew_before: self.certs.renew_before,
        }
    }

    /// Everything the shared reads serve: the secret files' specs then `exec`'s field values,
    /// the templates then `exec`'s template values.
    pub fn reads(&self) -> (Vec<secrets::SecretSpec>, Vec<secrets::TemplateSpec>) {
        let mut specs = self.secrets.specs.clone();
        let mut templates = self.secrets.templates.clone();
        for value in self.exec.iter().flat_map(|e| &e.values) {
            match value {
                crate::exec::EnvSpec::Field(s) => specs.push(s.clone()),
                crate::exec::EnvSpec::Template(t) => templates.push(t.clone()),
            }
        }
        (specs, templates)
    }

    /// One line describing the effective configuration, without secrets (never the JWT; say
    /// "jwt=env:VAULT_LOGIN_JWT" or "jwt=file:/path").
    pub fn summary(&self) -> String {
        summary::line(self)
    }
}

/// Splits `vault-login exec [flags --] <program> [args...]` into the flags clap reads and the
/// program with its arguments. Without `--` everything after `exec` is the program, which
/// then must not look like a flag.
fn split_exec(args: Vec<OsString>) -> Result<(Vec<OsString>, Option<Vec<OsString>>), ConfigError> {
    if args.get(1).is_none_or(|a| a != "exec") {
        return Ok((args, None));
    }
    let mut flags = vec![args[0].clone()];
    let rest = &args[2..];
    let program = match rest.iter().position(|a| a == "--") {
        Some(i) => {
            flags.extend_from_slice(&rest[..i]);
            rest[i + 1..].to_vec()
        }
        None => rest.to_vec(),
    };
    match program.first() {
        None => Err(ConfigError::Usage(
            "exec: no program given; usage: vault-login exec [flags --] <program> [args...]".into(),
        )),
        Some(p) if p.as_encoded_bytes().starts_with(b"-") && !rest.iter().any(|a| a == "--") => {
            Err(ConfigError::Usage(format!(
                "exec: {:?} looks like a flag; put flags before -- and the program after it: vault-login exec [flags --] <program> [args...]",
                p.to_string_lossy()
            )))
        }
        Some(_) => Ok((flags, Some(program))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::settings::parse_bool;
    use crate::files::token_file::{parse_mode, parse_owner};
    use crate::hooks::AppSignal;
    use crate::vault::proxy::ProxySettings;
    use std::collections::HashMap;
    use std::path::{Path, PathBuf};

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
        let proxy = format!("{:?}", cfg.vault.proxy);
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
        assert_eq!(c.vault.addr.as_str(), "https://vault.example:8200/");
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
        assert_eq!(c.recovery_backoff, secs(20));
        assert_eq!(c.renew_increment, None);
        assert!(!c.revoke_on_exit);
        assert_eq!(c.listen, None);
        assert_eq!(c.log, "info");
        assert_eq!(c.log_format, LogFormat::Text);
        assert_eq!(c.vault.namespace, None);
        assert_eq!(c.vault.tls.ca_cert, None);
        assert_eq!(c.vault.tls.ca_path, None);
        assert_eq!(c.vault.tls.client_cert, None);
        assert_eq!(c.vault.tls.client_key, None);
        assert_eq!(c.vault.tls.server_name, None);
        assert!(!c.vault.tls.skip_verify);
        assert_eq!(c.vault.timeout, secs(60));
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
        assert_eq!(c.vault.addr.as_str(), "http://vault:8200/");
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
        assert_eq!(c.vault.namespace.as_deref(), Some("admin/team-a"));
        assert_eq!(c.vault.tls.ca_cert, Some(PathBuf::from(&ca)));
        assert_eq!(c.vault.tls.ca_path, Some(PathBuf::from(&capath)));
        assert_eq!(c.vault.tls.client_cert, Some(PathBuf::from(&cert)));
        assert_eq!(c.vault.tls.client_key, Some(PathBuf::from(&key)));
        assert_eq!(c.vault.tls.server_name.as_deref(), Some("vault.internal"));
        assert!(c.vault.tls.skip_verify);
        assert_eq!(c.vault.timeout, secs(10));
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
        assert_eq!(c.vault.addr.as_str(), "https://flag.example/vault");
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
        assert_eq!(c.vault.namespace.as_deref(), Some("ns1"));
        assert_eq!(c.vault.tls.ca_cert, Some(PathBuf::from(&ca)));
        assert_eq!(c.vault.tls.ca_path, Some(PathBuf::from(&capath)));
        assert_eq!(c.vault.tls.client_cert, Some(PathBuf::from(&cert)));
        assert_eq!(c.vault.tls.client_key, Some(PathBuf::from(&key)));
        assert_eq!(c.vault.tls.server_name.as_deref(), Some("sni.example"));
        assert!(c.vault.tls.skip_verify);
        assert_eq!(c.vault.timeout, ms(1500));
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
        assert_eq!(c.vault.addr.as_str(), "http://flag:8200/");
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
        assert!(c.once && c.revoke_on_exit && c.vault.tls.skip_verify);
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
        assert_eq!(c.vault.addr.as_str(), "https://bao.example:8200/");
        assert_eq!(c.vault.namespace.as_deref(), Some("tenant"));
        assert_eq!(c.vault.tls.ca_cert, Some(PathBuf::from(&pem)));
        assert_eq!(c.vault.tls.ca_path, Some(PathBuf::from(&capath)));
        assert_eq!(c.vault.tls.client_cert, Some(PathBuf::from(&pem)));
        assert_eq!(c.vault.tls.client_key, Some(PathBuf::from(&pem)));
        assert_eq!(c.vault.tls.server_name.as_deref(), Some("bao.internal"));
        assert!(c.vault.tls.skip_verify);
        assert_eq!(c.vault.timeout, secs(5));
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
        assert_eq!(c.vault.addr.host_str(), Some("vault.example"));
        assert_eq!(c.vault.namespace.as_deref(), Some("v"));
        assert_eq!(c.vault.tls.server_name.as_deref(), Some("v.example"));
        assert!(!c.vault.tls.skip_verify);
        assert_eq!(c.vault.timeout, secs(3));
        // A bad BAO twin is ignored when the VAULT variable is set.
        let c = ok(
            &[],
            &[
                ("BAO_CLIENT_TIMEOUT", "junk"),
                ("VAULT_CLIENT_TIMEOUT", "2s"),
            ],
        );
        assert_eq!(c.vault.timeout, secs(2));
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
        assert_eq!(c.vault.addr.as_str(), "http://bao:8200/");
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
            assert_eq!(c.vault.addr.as_str(), want, "{input}");
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
        assert_eq!(ok(&[], &[]).vault.proxy, ProxySettings::default());
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
        let command = cli::command();
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
            "recovery_backoff=20s",
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

    // ----- errors name the setting actually used -----

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
}
