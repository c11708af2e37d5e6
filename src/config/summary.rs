//! The startup summary: one `key=value` field per setting (or group of settings), in a table
//! of small functions so that adding a setting adds one row. Never a secret: the JWT is named by
//! its source, headers by their names, proxies without credentials, the on-change command by its
//! program only.

use std::path::PathBuf;

use super::Config;
use crate::duration::human;
use crate::files::token_file::TokenSink;
use crate::jwt::{JwtSource, JWT_ENV};
use crate::telemetry::LogFormat;
use crate::vault::proxy::{redacted, ProxySettings};
use crate::vault::tls::count_pem_certificates;

/// A summary field: its key and how to show it from the checked configuration.
type Field = (&'static str, fn(&Config) -> String);

/// Every field, in the order the summary line prints them.
const FIELDS: &[Field] = &[
    ("vault_addr", |c| {
        shown(c.vault.addr.as_str().trim_end_matches('/'))
    }),
    ("namespace", |c| opt(c.vault.namespace.as_deref())),
    ("headers", headers),
    ("role", |c| shown(&c.role)),
    ("mount", |c| shown(&c.mount)),
    ("jwt", jwt),
    ("token_sink", token_sink),
    ("token_file_mode", |c| format!("{:04o}", c.token_file_mode)),
    ("token_file_owner", owner),
    ("once", |c| c.once.to_string()),
    ("timeout", |c| human(c.timeout)),
    ("min_backoff", |c| human(c.min_backoff)),
    ("max_backoff", |c| human(c.max_backoff)),
    ("recovery_backoff", |c| human(c.recovery_backoff)),
    ("renew_increment", |c| {
        c.renew_increment.map_or_else(none, human)
    }),
    ("revoke_on_exit", |c| c.revoke_on_exit.to_string()),
    ("listen", |c| c.listen.map_or_else(none, |a| a.to_string())),
    ("log", |c| shown(&c.log)),
    ("log_format", log_format),
    ("ca_cert", |c| path(&c.vault.tls.ca_cert)),
    ("ca_cert_bytes", ca_cert_bytes),
    ("ca_path", |c| path(&c.vault.tls.ca_path)),
    ("client_cert", |c| path(&c.vault.tls.client_cert)),
    ("client_key", |c| path(&c.vault.tls.client_key)),
    ("tls_server_name", |c| {
        opt(c.vault.tls.server_name.as_deref())
    }),
    ("tls_skip_verify", |c| c.vault.tls.skip_verify.to_string()),
    ("disable_redirects", |c| {
        c.vault.disable_redirects.to_string()
    }),
    ("proxy", |c| proxy(&c.vault.proxy)),
    ("client_timeout", |c| human(c.vault.timeout)),
    ("on_change", on_change),
    ("on_change_timeout", |c| human(c.hooks.on_change_timeout)),
    ("signal_pid_file", |c| path(&c.hooks.signal_pid_file)),
    ("signal", signal),
    ("token_info_file", |c| path(&c.hooks.token_info_file)),
    ("secrets", secrets),
    ("certs", certs),
    ("templates", templates),
    ("exec", exec),
];

/// The program (never its arguments: they may hold anything), the policy and the variables
/// it is given (names only).
fn exec(c: &Config) -> String {
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
    let fields: Vec<String> = FIELDS
        .iter()
        .map(|(key, show)| format!("{key}={}", show(c)))
        .collect();
    fields.join(" ")
}

fn none() -> String {
    "none".to_string()
}

fn opt(s: Option<&str>) -> String {
    s.map_or_else(none, shown)
}

fn path(p: &Option<PathBuf>) -> String {
    p.as_deref()
        .map_or_else(none, |p| shown(&p.display().to_string()))
}

/// Header names only: their values may be credentials.
fn headers(c: &Config) -> String {
    if c.vault.headers.is_empty() {
        return none();
    }
    let names: Vec<&str> = c.vault.headers.iter().map(|(n, _)| n.as_str()).collect();
    shown(&names.join(","))
}

fn jwt(c: &Config) -> String {
    match &c.jwt {
        JwtSource::Env(_) => format!("env:{JWT_ENV}"),
        JwtSource::File(p) => format!("file:{}", shown(&p.display().to_string())),
    }
}

fn token_sink(c: &Config) -> String {
    match &c.token_sink {
        TokenSink::Stdout => "stdout".to_string(),
        TokenSink::Memory => "memory".to_string(),
        TokenSink::File(p) => format!("file:{}", shown(&p.display().to_string())),
    }
}

fn owner(c: &Config) -> String {
    c.token_file_owner.map_or_else(none, |o| match o.gid {
        Some(gid) => format!("{}:{gid}", o.uid),
        None => o.uid.to_string(),
    })
}

fn log_format(c: &Config) -> String {
    match c.log_format {
        LogFormat::Text => "text".to_string(),
        LogFormat::Json => "json".to_string(),
    }
}

fn ca_cert_bytes(c: &Config) -> String {
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
fn proxy(p: &ProxySettings) -> String {
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
fn on_change(c: &Config) -> String {
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

fn signal(c: &Config) -> String {
    match &c.hooks.signal_pid_file {
        Some(_) => c.hooks.signal.to_string(),
        None => none(),
    }
}

fn secrets(c: &Config) -> String {
    match c.secrets.specs.len() {
        0 => none(),
        n => format!(
            "{n}(dir={},refresh={})",
            shown(&c.secrets.dir.display().to_string()),
            human(c.secrets.refresh)
        ),
    }
}

fn certs(c: &Config) -> String {
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

fn templates(c: &Config) -> String {
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
