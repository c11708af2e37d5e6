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
        let help = about.help();
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
mod testing;

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;
    use std::path::{Path, PathBuf};

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
                ("VAULT_LOGIN_JWT", A_JWT),
            ],
        );
        let shown = format!("{cfg:?}");
        for secret in [
            "hunter2",
            "proxyuser",
            "pw-two",
            "pw-three",
            "gateway-sekrit",
            A_JWT,
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

    #[test]
    fn errors_display_source_then_problem() {
        let e = load(&[], &[("VAULT_LOGIN_TOKEN_FILE_MODE", "0778")]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "VAULT_LOGIN_TOKEN_FILE_MODE: \"0778\" is not an octal file mode; use e.g. 0600 or 0640"
        );
    }
}
