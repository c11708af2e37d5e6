//! The startup summary: one `key=value` field per setting (or group of settings), each declared
//! with its setting in [`super::settings`]; here the loop over them and the fields that take
//! more than a line. Never a secret: the JWT is named by its source, headers by their names,
//! proxies without credentials, the on-change command by its program only.

use std::path::PathBuf;

use super::Config;
use crate::duration::human;
use crate::files::token_file::TokenSink;
use crate::jwt::{JwtSource, JWT_ENV};
use crate::telemetry::LogFormat;
use crate::vault::proxy::{redacted, ProxySettings};
use crate::vault::tls::count_pem_certificates;

/// The program (never its arguments: they may hold anything), the policy and the variables
/// it is given (names only).
pub(super) fn exec(c: &Config) -> String {
    let Some(e) = &c.exec else {
        return none();
    };
    let mut vars: Vec<&str> = e.values.iter().map(|v| v.var()).collect();
    if e.pass_token {
        vars.push("VAULT_TOKEN");
    }
    shown(&format!(
        "{}:restart={:?}:stop={}/{}:env={}",
        std::path::Path::new(&e.program).display(),
        e.restart,
        e.stop_signal,
        human(e.stop_timeout),
        vars.join(",")
    ))
}

/// The summary line: every field as `key=value`, separated by spaces.
pub(super) fn line(c: &Config) -> String {
    let fields: Vec<String> = (super::settings::ALL.iter())
        .flat_map(|setting| setting.summary())
        .map(|(key, show)| format!("{key}={}", show(c)))
        .collect();
    fields.join(" ")
}

pub(super) fn none() -> String {
    "none".to_string()
}

pub(super) fn opt(s: Option<&str>) -> String {
    s.map_or_else(none, shown)
}

pub(super) fn path(p: &Option<PathBuf>) -> String {
    p.as_deref()
        .map_or_else(none, |p| shown(&p.display().to_string()))
}

/// Header names only: their values may be credentials.
pub(super) fn headers(c: &Config) -> String {
    if c.vault.headers.is_empty() {
        return none();
    }
    let names: Vec<&str> = c.vault.headers.iter().map(|(n, _)| n.as_str()).collect();
    shown(&names.join(","))
}

pub(super) fn jwt(c: &Config) -> String {
    match &c.jwt {
        JwtSource::Env(_) => format!("env:{JWT_ENV}"),
        JwtSource::File(p) => format!("file:{}", shown(&p.display().to_string())),
    }
}

pub(super) fn token_sink(c: &Config) -> String {
    match &c.token_sink {
        TokenSink::Stdout => "stdout".to_string(),
        TokenSink::Memory => "memory".to_string(),
        TokenSink::File(p) => format!("file:{}", shown(&p.display().to_string())),
    }
}

pub(super) fn owner(c: &Config) -> String {
    c.token_file_owner.map_or_else(none, |o| match o.gid {
        Some(gid) => format!("{}:{gid}", o.uid),
        None => o.uid.to_string(),
    })
}

pub(super) fn log_format(c: &Config) -> String {
    match c.log_format {
        LogFormat::Text => "text".to_string(),
        LogFormat::Json => "json".to_string(),
    }
}

pub(super) fn ca_cert_bytes(c: &Config) -> String {
    c.vault
        .tls
        .ca_cert_bytes
        .as_deref()
        .map_or_else(none, |pem| {
            let n = count_pem_certificates(pem).unwrap_or(0);
            format!("{n}_certificates")
        })
}

/// Proxies without their credentials.
pub(super) fn proxy(p: &ProxySettings) -> String {
    if let Some(all) = &p.all {
        return format!("{} (all requests)", redacted(all));
    }
    if p.http.is_none() && p.https.is_none() {
        return none();
    }
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

/// Only the program: arguments may carry credentials (e.g. a header for curl).
pub(super) fn on_change(c: &Config) -> String {
    match c
        .hooks
        .on_change
        .as_deref()
        .and_then(<[String]>::split_first)
    {
        Some((program, args)) => shown(&format!("{program} +{} args", args.len())),
        None => none(),
    }
}

pub(super) fn signal(c: &Config) -> String {
    match &c.hooks.signal_pid_file {
        Some(_) => c.hooks.signal.to_string(),
        None => none(),
    }
}

pub(super) fn secrets(c: &Config) -> String {
    match c.secrets.specs.len() {
        0 => none(),
        n => format!(
            "{n}(dir={},refresh={})",
            shown(&c.secrets.dir.display().to_string()),
            human(c.secrets.refresh)
        ),
    }
}

pub(super) fn certs(c: &Config) -> String {
    let names: Vec<&str> = c.certs.specs.iter().map(|s| s.name.as_str()).collect();
    match (names.len(), c.certs.renew_before) {
        (0, _) => none(),
        (_, before) => format!(
            "{}(renew_before={})",
            shown(&names.join(",")),
            before.map_or_else(none, human)
        ),
    }
}

pub(super) fn templates(c: &Config) -> String {
    let names: Vec<&str> = (c.secrets.templates.iter())
        .map(|t| t.file.as_str())
        .collect();
    match names.len() {
        0 => none(),
        _ => shown(&names.join(",")),
    }
}

/// A value as the summary prints it: quoted (Rust's `{:?}`) when it is empty or holds
/// whitespace, control characters or quotes, so fields stay one word each.
pub(super) fn shown(s: &str) -> String {
    if s.is_empty()
        || s.chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '"')
    {
        format!("{s:?}")
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;

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
}
