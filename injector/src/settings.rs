//! The injector's settings: `VAULT_LOGIN_INJECTOR_*` variables, each declared once in [`ALL`]
//! (name, default, help), read through an injectable lookup so tests never touch the process
//! environment. `--help` and README's table are made from [`ALL`].

use std::net::SocketAddr;
use std::path::PathBuf;

use vault_login::telemetry::{parse_filter, parse_log_format, LogFormat};

use crate::quantity::check_quantity;
use crate::Error;

/// One setting: its variable, its default and what it does.
#[derive(Debug)]
pub struct Decl {
    /// The environment variable.
    pub env: &'static str,
    /// The default as a user would write it; `None` when there is none.
    pub default: Option<&'static str>,
    /// One line for `--help` and README.
    pub help: &'static str,
}

const fn decl(env: &'static str, default: Option<&'static str>, help: &'static str) -> Decl {
    Decl { env, default, help }
}

/// The HTTPS address the webhook listens on.
pub const LISTEN: Decl = decl(
    "VAULT_LOGIN_INJECTOR_LISTEN",
    Some("0.0.0.0:8443"),
    "HTTPS address of the webhook (/mutate), /healthz and /metrics",
);
/// The serving certificate chain (PEM).
pub const TLS_CERT: Decl = decl(
    "VAULT_LOGIN_INJECTOR_TLS_CERT_FILE",
    Some("/etc/vault-login-injector/tls/tls.crt"),
    "serving certificate chain (PEM); read again when it changes (cert-manager renewals)",
);
/// The serving key (PEM).
pub const TLS_KEY: Decl = decl(
    "VAULT_LOGIN_INJECTOR_TLS_KEY_FILE",
    Some("/etc/vault-login-injector/tls/tls.key"),
    "serving private key (PEM, PKCS#8, PKCS#1 or SEC1); read again when it changes",
);
/// The vault-login image put into pods.
pub const IMAGE: Decl = decl(
    "VAULT_LOGIN_INJECTOR_IMAGE",
    None,
    "vault-login image to inject, e.g. ghcr.io/example/vault-login:0.1.0 (pin a digest)",
);
/// The Vault address used when a pod has no `service` annotation.
pub const VAULT_ADDR: Decl = decl(
    "VAULT_LOGIN_INJECTOR_VAULT_ADDR",
    None,
    "Vault address for pods without a service annotation (unset: such pods are refused)",
);
/// Native sidecars (Kubernetes >= 1.29) or init container + classic sidecar.
pub const NATIVE_SIDECAR: Decl = decl(
    "VAULT_LOGIN_INJECTOR_NATIVE_SIDECAR",
    Some("true"),
    "inject a native sidecar (Kubernetes >= 1.29); false: an init container and a classic sidecar",
);
/// The projected token's audience.
pub const AUDIENCE: Decl = decl("VAULT_LOGIN_INJECTOR_AUDIENCE", None,
    "audience of the projected service-account token, e.g. vault (unset: the API server's, as vault-k8s)");
/// The projected token's lifetime.
pub const TOKEN_EXPIRATION: Decl = decl(
    "VAULT_LOGIN_INJECTOR_TOKEN_EXPIRATION_SECONDS",
    Some("3600"),
    "lifetime asked for the projected service-account token, 600 or more",
);
/// The sidecar's health port.
pub const SIDECAR_PORT: Decl = decl(
    "VAULT_LOGIN_INJECTOR_SIDECAR_PORT",
    Some("9102"),
    "port of the injected container's /healthz, /readyz and /metrics (its probes use it)",
);
/// The in-memory secrets volume's size limit.
pub const VOLUME_SIZE: Decl = decl(
    "VAULT_LOGIN_INJECTOR_VOLUME_SIZE_LIMIT",
    Some("8Mi"),
    "sizeLimit of the in-memory secrets volume (counted in the pod's memory)",
);
/// Default CPU request.
pub const REQUESTS_CPU: Decl = decl(
    "VAULT_LOGIN_INJECTOR_REQUESTS_CPU",
    Some("5m"),
    "CPU request of the injected container (annotation agent-requests-cpu overrides)",
);
/// Default memory request.
pub const REQUESTS_MEM: Decl = decl(
    "VAULT_LOGIN_INJECTOR_REQUESTS_MEM",
    Some("16Mi"),
    "memory request of the injected container (agent-requests-mem overrides)",
);
/// Default CPU limit.
pub const LIMITS_CPU: Decl = decl(
    "VAULT_LOGIN_INJECTOR_LIMITS_CPU",
    Some("100m"),
    "CPU limit of the injected container (agent-limits-cpu overrides; empty annotation: none)",
);
/// Default memory limit.
pub const LIMITS_MEM: Decl = decl(
    "VAULT_LOGIN_INJECTOR_LIMITS_MEM",
    Some("64Mi"),
    "memory limit of the injected container (agent-limits-mem overrides; empty annotation: none)",
);
/// Default user.
pub const RUN_AS_USER: Decl = decl(
    "VAULT_LOGIN_INJECTOR_RUN_AS_USER",
    Some("65532"),
    "UID of the injected container, not 0 (agent-run-as-user overrides)",
);
/// Default group.
pub const RUN_AS_GROUP: Decl = decl(
    "VAULT_LOGIN_INJECTOR_RUN_AS_GROUP",
    Some("65532"),
    "GID of the injected container (agent-run-as-group overrides)",
);
/// The log filter.
pub const LOG: Decl = decl(
    "VAULT_LOGIN_INJECTOR_LOG",
    Some("info"),
    "log filter, as vault-login's VAULT_LOGIN_LOG",
);
/// The log format.
pub const LOG_FORMAT: Decl = decl(
    "VAULT_LOGIN_INJECTOR_LOG_FORMAT",
    Some("text"),
    "log format on stderr: text or json",
);

/// Every setting, in the order `--help` and README list them.
pub static ALL: &[&Decl] = &[
    &LISTEN,
    &TLS_CERT,
    &TLS_KEY,
    &IMAGE,
    &VAULT_ADDR,
    &NATIVE_SIDECAR,
    &AUDIENCE,
    &TOKEN_EXPIRATION,
    &SIDECAR_PORT,
    &VOLUME_SIZE,
    &REQUESTS_CPU,
    &REQUESTS_MEM,
    &LIMITS_CPU,
    &LIMITS_MEM,
    &RUN_AS_USER,
    &RUN_AS_GROUP,
    &LOG,
    &LOG_FORMAT,
];

/// What the mutation needs to know about the cluster and the defaults.
#[derive(Clone, Debug)]
pub struct InjectSettings {
    /// The vault-login image.
    pub image: String,
    /// Vault address for pods without a `service` annotation.
    pub vault_addr: Option<String>,
    /// Native sidecar (true) or init container + classic sidecar.
    pub native_sidecar: bool,
    /// The projected token's audience; `None`: the API server's.
    pub audience: Option<String>,
    /// The projected token's lifetime in seconds.
    pub token_expiration: i64,
    /// The injected container's health port.
    pub sidecar_port: u16,
    /// sizeLimit of the secrets volume.
    pub volume_size: String,
    /// Default requests and limits: (cpu, memory); `None` for none.
    pub requests: (Option<String>, Option<String>),
    /// Default limits: (cpu, memory).
    pub limits: (Option<String>, Option<String>),
    /// Default UID.
    pub run_as_user: i64,
    /// Default GID.
    pub run_as_group: i64,
}

/// The whole configuration of the binary.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The webhook's address.
    pub listen: SocketAddr,
    /// The serving certificate chain.
    pub tls_cert: PathBuf,
    /// The serving key.
    pub tls_key: PathBuf,
    /// The mutation's settings.
    pub inject: InjectSettings,
    /// Log filter.
    pub log: String,
    /// Log format.
    pub log_format: LogFormat,
}

/// Reads the settings; `env` answers a variable's value (an empty value counts as unset).
pub fn load(env: &dyn Fn(&str) -> Option<String>) -> Result<Settings, Error> {
    let get = |d: &Decl| -> Option<String> {
        env(d.env)
            .filter(|v| !v.is_empty())
            .or(d.default.map(str::to_string))
    };
    let bad = |d: &Decl, problem: String| Error::Config(format!("{}: {problem}", d.env));
    let required = |d: &Decl| {
        get(d).ok_or_else(|| bad(d, format!("required but not set; set it to the {}", d.help)))
    };
    let parsed = |d: &Decl, what: &str| -> Result<i64, Error> {
        let v = required(d)?;
        v.trim()
            .parse::<i64>()
            .map_err(|_| bad(d, format!("{v:?} is not {what}")))
    };
    let quantity = |d: &Decl| -> Result<Option<String>, Error> {
        get(d)
            .map(|v| {
                check_quantity(&v)
                    .map(|()| v.clone())
                    .map_err(|p| bad(d, p))
            })
            .transpose()
    };

    let listen_text = required(&LISTEN)?;
    let listen = listen_text.parse().map_err(|_| {
        bad(
            &LISTEN,
            format!("{listen_text:?} is not an address; write IP:PORT, e.g. 0.0.0.0:8443"),
        )
    })?;
    let native_text = required(&NATIVE_SIDECAR)?;
    let native_sidecar =
        crate::annotations::parse_bool(&native_text).map_err(|p| bad(&NATIVE_SIDECAR, p))?;
    let token_expiration = parsed(&TOKEN_EXPIRATION, "a number of seconds")?;
    if token_expiration < 600 {
        // The API server refuses projected tokens shorter than 10 minutes.
        return Err(bad(
            &TOKEN_EXPIRATION,
            format!("{token_expiration} is under 600; give 600 or more"),
        ));
    }
    let port = parsed(&SIDECAR_PORT, "a port number")?;
    let sidecar_port = u16::try_from(port).ok().filter(|p| *p > 0).ok_or_else(|| {
        bad(
            &SIDECAR_PORT,
            format!("{port} is not a port; give 1 to 65535"),
        )
    })?;
    let run_as_user = parsed(&RUN_AS_USER, "a UID")?;
    if run_as_user <= 0 {
        return Err(bad(
            &RUN_AS_USER,
            format!("{run_as_user} is root or negative; give a non-root UID"),
        ));
    }
    let run_as_group = parsed(&RUN_AS_GROUP, "a GID")?;
    if run_as_group < 0 {
        return Err(bad(
            &RUN_AS_GROUP,
            format!("{run_as_group} is negative; give a GID"),
        ));
    }
    let volume_size = required(&VOLUME_SIZE)?;
    check_quantity(&volume_size).map_err(|p| bad(&VOLUME_SIZE, p))?;
    let log = required(&LOG)?;
    parse_filter(&log).map_err(|p| bad(&LOG, p))?;
    let log_format = parse_log_format(&required(&LOG_FORMAT)?).map_err(|p| bad(&LOG_FORMAT, p))?;
    Ok(Settings {
        listen,
        tls_cert: PathBuf::from(required(&TLS_CERT)?),
        tls_key: PathBuf::from(required(&TLS_KEY)?),
        inject: InjectSettings {
            image: required(&IMAGE)?,
            vault_addr: get(&VAULT_ADDR),
            native_sidecar,
            audience: get(&AUDIENCE),
            token_expiration,
            sidecar_port,
            volume_size,
            requests: (quantity(&REQUESTS_CPU)?, quantity(&REQUESTS_MEM)?),
            limits: (quantity(&LIMITS_CPU)?, quantity(&LIMITS_MEM)?),
            run_as_user,
            run_as_group,
        },
        log,
        log_format,
    })
}

/// `--help`: a line per setting, made from [`ALL`].
pub fn help() -> String {
    let mut text = String::from(
        "vault-login-injector: a mutating admission webhook that injects vault-login into pods\n\
         annotated vault.hashicorp.com/agent-inject: \"true\" (or openbao.org/agent-inject).\n\
         Configured by environment variables only:\n",
    );
    for d in ALL {
        let default = d
            .default
            .map_or_else(String::new, |v| format!(" [default: {v}]"));
        text.push_str(&format!("  {}\n      {}{default}\n", d.env, d.help));
    }
    text
}

/// README's table of the settings, made from [`ALL`].
pub fn markdown_table() -> String {
    let mut text = String::from("| Variable | Default | What it does |\n| --- | --- | --- |\n");
    for d in ALL {
        let default = d
            .default
            .map_or_else(|| "—".to_string(), |v| format!("`{v}`"));
        text.push_str(&format!("| `{}` | {default} | {} |\n", d.env, d.help));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn load_from(vars: &[(&str, &str)]) -> Result<Settings, Error> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        load(&|name| map.get(name).cloned())
    }

    #[test]
    fn defaults_need_only_the_image() {
        let s = load_from(&[(IMAGE.env, "img:1")]).unwrap();
        assert_eq!(s.listen, "0.0.0.0:8443".parse().unwrap());
        assert!(s.inject.native_sidecar);
        assert_eq!(s.inject.requests, (Some("5m".into()), Some("16Mi".into())));
        assert_eq!(s.inject.audience, None);
        let err = load_from(&[]).unwrap_err().to_string();
        assert!(
            err.starts_with("VAULT_LOGIN_INJECTOR_IMAGE: required but not set"),
            "{err}"
        );
    }

    #[test]
    fn bad_values_name_their_variable() {
        let cases = [
            (
                NATIVE_SIDECAR.env,
                "maybe",
                "VAULT_LOGIN_INJECTOR_NATIVE_SIDECAR: ",
            ),
            (
                REQUESTS_CPU.env,
                "lots",
                "VAULT_LOGIN_INJECTOR_REQUESTS_CPU: ",
            ),
            (
                RUN_AS_USER.env,
                "0",
                "VAULT_LOGIN_INJECTOR_RUN_AS_USER: 0 is root",
            ),
            (
                TOKEN_EXPIRATION.env,
                "60",
                "VAULT_LOGIN_INJECTOR_TOKEN_EXPIRATION_SECONDS: 60 is under 600",
            ),
            (
                SIDECAR_PORT.env,
                "70000",
                "VAULT_LOGIN_INJECTOR_SIDECAR_PORT: 70000 is not a port",
            ),
            (
                LISTEN.env,
                "8443",
                "VAULT_LOGIN_INJECTOR_LISTEN: \"8443\" is not an address",
            ),
        ];
        for (var, value, expected) in cases {
            let err = load_from(&[(IMAGE.env, "img"), (var, value)])
                .unwrap_err()
                .to_string();
            assert!(err.starts_with(expected), "{var}={value}: {err}");
            assert!(!err.contains('\n'));
        }
    }

    #[test]
    fn readme_has_the_settings_table() {
        let readme = concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md");
        let readme = std::fs::read_to_string(readme).unwrap();
        let table = markdown_table();
        assert!(
            readme.contains(&table),
            "README's injector table differs from injector/src/settings.rs; it should be:\n{table}"
        );
    }

    #[test]
    fn help_and_table_list_every_setting() {
        let (help, table) = (help(), markdown_table());
        for d in ALL {
            assert!(help.contains(d.env) && table.contains(d.env), "{}", d.env);
        }
    }
}
