//! The health and metrics server: `/healthz`, `/readyz` and `/metrics` over plain HTTP/1.1.
//!
//! It runs as tasks on the token loop's runtime, so it must never starve or crash that loop:
//! connections are capped at [`MAX_CONNECTIONS`] (beyond that the listener is not polled and the
//! kernel backlog holds new ones), each connection gets [`HEADER_READ_TIMEOUT`] to send its request
//! head and [`CONNECTION_TIMEOUT`] in total, keep-alive is off, request heads are small and request
//! bodies are never read. While idle it only waits on `accept()`: no interval timers, no wake-ups.

pub mod status;

use std::convert::Infallible;
use std::fmt::Write as _;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

use crate::health::status::{Now, Snapshot, Status};

/// Connections served at once; further clients wait in the listen backlog.
pub const MAX_CONNECTIONS: usize = 16;
/// Time a client has to send its request line and headers (kubelet probes give up after 1 s).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(2);
/// Time a connection may stay open, request and response included.
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest request head accepted (request line and headers), in bytes.
pub const MAX_HEADER_BYTES: usize = 8 * 1024;
/// Most header lines accepted in one request.
const MAX_HEADERS: usize = 32;
/// hyper's smallest allowed read buffer; our requests are a few hundred bytes.
const READ_BUFFER_BYTES: usize = 8 * 1024;
/// First pause after `accept()` fails for lack of resources (e.g. EMFILE); doubles per failure.
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(5);
/// Longest pause between failing `accept()` calls.
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// The `Content-Type` of `/metrics`: the Prometheus text exposition format.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
const TEXT_CONTENT_TYPE: &str = "text/plain; charset=utf-8";

/// Why the health server cannot start.
#[derive(Debug, thiserror::Error)]
pub enum HealthError {
    /// The listen address cannot be bound.
    #[error("VAULT_LOGIN_LISTEN: cannot listen on {addr}: {source}; choose a free port or address, or unset VAULT_LOGIN_LISTEN")]
    Bind {
        /// The address from the configuration.
        addr: SocketAddr,
        /// The operating system's error.
        source: io::Error,
    },
}

/// Binds the address (error names VAULT_LOGIN_LISTEN and the OS error, one line).
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, HealthError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| HealthError::Bind { addr, source })
}

/// Serves /healthz, /readyz and /metrics on `listener` until `shutdown` completes.
pub async fn serve(listener: TcpListener, status: Arc<Status>, shutdown: impl Future<Output = ()>) {
    if let Ok(addr) = listener.local_addr() {
        info!(%addr, "health and metrics server listening");
    }
    tokio::pin!(shutdown);
    let mut conns = JoinSet::new();
    let mut backoff = ACCEPT_BACKOFF_MIN;
    loop {
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            Some(done) = conns.join_next(), if !conns.is_empty() => {
                if let Err(e) = done {
                    warn!(error = %e, "health connection task failed");
                }
            }
            accepted = listener.accept(), if conns.len() < MAX_CONNECTIONS => match accepted {
                Ok((stream, peer)) => {
                    backoff = ACCEPT_BACKOFF_MIN;
                    conns.spawn(connection(stream, peer, Arc::clone(&status)));
                }
                Err(e) if is_connection_error(&e) => {
                    debug!(error = %e, "health connection failed before accept");
                }
                Err(e) => {
                    // Out of file descriptors or memory: retrying at once would spin the
                    // runtime the token loop shares, so pause (and keep honouring shutdown).
                    warn!(error = %e, retry_in = %crate::duration::brief(backoff), "health server cannot accept connections");
                    tokio::select! {
                        biased;
                        () = &mut shutdown => break,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                }
            },
        }
    }
    conns.shutdown().await;
    debug!("health and metrics server stopped");
}

/// Errors that concern one would-be connection, not the listener.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
    )
}

/// Serves one connection, bounded in time; its errors are the client's problem, logged at debug.
async fn connection(stream: TcpStream, peer: SocketAddr, status: Arc<Status>) {
    let service = service_fn(move |req: Request<Incoming>| {
        let res = respond(&req, &status.snapshot(), status.now());
        debug!(
            %peer,
            method = %req.method(),
            path = req.uri().path(),
            status = res.status().as_u16(),
            "health request"
        );
        async move { Ok::<_, Infallible>(res) }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .keep_alive(false)
        .max_buf_size(READ_BUFFER_BYTES)
        .max_header_size(MAX_HEADER_BYTES)
        .max_headers(MAX_HEADERS)
        .serve_connection(TokioIo::new(stream), service);
    match tokio::time::timeout(CONNECTION_TIMEOUT, conn).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => debug!(%peer, error = %e, "health connection error"),
        Err(_) => debug!(%peer, timeout = ?CONNECTION_TIMEOUT, "health connection timed out"),
    }
}

/// The response to one request; the request body is never read.
fn respond<B>(req: &Request<B>, s: &Snapshot, now: Now) -> Response<String> {
    let path = req.uri().path();
    if !matches!(path, "/healthz" | "/readyz" | "/metrics") {
        return response(
            StatusCode::NOT_FOUND,
            TEXT_CONTENT_TYPE,
            "not found\n".into(),
        );
    }
    if !matches!(*req.method(), Method::GET | Method::HEAD) {
        let mut res = response(
            StatusCode::METHOD_NOT_ALLOWED,
            TEXT_CONTENT_TYPE,
            "method not allowed\n".into(),
        );
        res.headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return res;
    }
    match path {
        "/metrics" => response(StatusCode::OK, METRICS_CONTENT_TYPE, render_metrics(s, now)),
        "/readyz" => match readiness(s, now) {
            Ok(()) => response(StatusCode::OK, TEXT_CONTENT_TYPE, "ok\n".into()),
            Err(why) => response(
                StatusCode::SERVICE_UNAVAILABLE,
                TEXT_CONTENT_TYPE,
                why + "\n",
            ),
        },
        _ => response(StatusCode::OK, TEXT_CONTENT_TYPE, "ok\n".into()),
    }
}

fn response(code: StatusCode, content_type: &'static str, body: String) -> Response<String> {
    let mut res = Response::new(body);
    *res.status_mut() = code;
    res.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    res
}

/// The longest `/readyz` body line, in characters: probes and dashboards show it as is.
pub const MAX_REASON_CHARS: usize = 200;

/// Readiness decision (pure), on the monotonic clock: Ok(()) or Err(one bounded line saying why).
///
/// The endpoint is unauthenticated, so the line names what failed, and Vault's status when it
/// answered, but not Vault's messages or the JWT's claims: those are in the log.
pub fn readiness(s: &Snapshot, now: Now) -> Result<(), String> {
    let problem = if !s.token_written {
        if s.logins_ok == 0 {
            "no token written yet".to_string()
        } else {
            "token file does not hold the current token".to_string()
        }
    } else if let Some(problem) = token_problem(s, now) {
        problem
    } else {
        // Ready only once every secret's file is written and every template rendered too.
        let line = if let Some(secret) = s.secrets.iter().find(|x| !x.written) {
            match &secret.last_error {
                Some(e) => format!("secret {} not written yet: {}", secret.name, summary(e)),
                None => format!("secret {} not written yet", secret.name),
            }
        } else if let Some(c) = cert_problem(s, now) {
            c
        } else if let Some(t) = s.templates.iter().find(|x| !x.rendered) {
            match &t.last_error {
                Some(e) => format!("template {} not rendered yet: {}", t.name, summary(e)),
                None => format!("template {} not rendered yet", t.name),
            }
        } else {
            return Ok(());
        };
        return Err(bounded(&line, MAX_REASON_CHARS));
    };
    let line = match &s.last_error {
        Some(e) => format!("{problem}: {} (details in vault-login's log)", summary(e)),
        None => problem,
    };
    Err(bounded(&line, MAX_REASON_CHARS))
}

/// The first certificate not published yet, or expired at `now`, and why.
fn cert_problem(s: &Snapshot, now: Now) -> Option<String> {
    let wall = unix_seconds(now.wall) as i64;
    s.certs
        .iter()
        .find_map(|c| match (c.not_after, &c.last_error) {
            (Some(end), _) if end > wall => None,
            (Some(end), _) => Some(format!(
                "certificate {} expired {}s ago",
                c.name,
                wall - end
            )),
            (None, Some(e)) => Some(format!(
                "certificate {} not issued yet: {}",
                c.name,
                summary(e)
            )),
            (None, None) => Some(format!("certificate {} not issued yet", c.name)),
        })
}

/// Why the token in the file is not usable at `now`, if it is not.
fn token_problem(s: &Snapshot, now: Now) -> Option<String> {
    if s.never_expires {
        return None;
    }
    match s.expires_at {
        Some(at) if at > now.mono => None,
        Some(at) => Some(format!("token expired {}s ago", (now.mono - at).as_secs())),
        None => Some("token expiry unknown".to_string()),
    }
}

/// The public part of an error: up to Vault's status when Vault answered (its messages and the
/// JWT hints that follow are for the log), on one line.
fn summary(error: &str) -> String {
    const ANSWERED: &str = ": Vault answered ";
    let public = match error.find(ANSWERED) {
        Some(i) => {
            let rest = &error[i + ANSWERED.len()..];
            let status_len = rest.find(':').unwrap_or(rest.len());
            &error[..i + ANSWERED.len() + status_len]
        }
        None => error,
    };
    public
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// `s` cut to `max` characters, marked with `…` when cut.
fn bounded(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut cut: String = s.chars().take(max - 1).collect();
    cut.push('…');
    cut
}

/// The wall-clock time of a monotonic instant, as the wall clock reads now.
fn wall_time_of(at: Instant, now: Now) -> SystemTime {
    if at >= now.mono {
        now.wall.checked_add(at - now.mono).unwrap_or(now.wall)
    } else {
        now.wall.checked_sub(now.mono - at).unwrap_or(UNIX_EPOCH)
    }
}

/// Renders the Prometheus text exposition for a snapshot (pure, unit-tested).
pub fn render_metrics(s: &Snapshot, now: Now) -> String {
    let mut m = Exposition(String::with_capacity(2048));
    m.family(
        "vault_login_build_info",
        "gauge",
        "Build information about vault-login; the value is always 1.",
    );
    m.sample(
        "vault_login_build_info",
        concat!("{version=\"", env!("CARGO_PKG_VERSION"), "\"}"),
        "1",
    );

    token_metrics(&mut m, s, now);
    request_metrics(&mut m, s);
    secret_metrics(&mut m, s);
    cert_metrics(&mut m, s);
    template_metrics(&mut m, s);
    m.0
}

/// The token in the file: ready, expiry, remaining life.
fn token_metrics(m: &mut Exposition, s: &Snapshot, now: Now) {
    m.family(
        "vault_login_token_ready",
        "gauge",
        "1 while the token file holds a token that has not expired, else 0.",
    );
    let ready = if readiness(s, now).is_ok() { "1" } else { "0" };
    m.sample("vault_login_token_ready", "", ready);

    // Lifetimes describe the token in the file, so they are absent while there is none.
    let expires_at = s.expires_at.filter(|_| s.token_written);
    m.family(
        "vault_login_token_expiry_timestamp_seconds",
        "gauge",
        "When the token in the file expires, in seconds since the Unix epoch (absent while there is no token or it never expires).",
    );
    if let Some(at) = expires_at {
        m.sample(
            "vault_login_token_expiry_timestamp_seconds",
            "",
            &float(unix_seconds(wall_time_of(at, now))),
        );
    }
    m.family(
        "vault_login_token_ttl_seconds",
        "gauge",
        "Seconds until the token in the file expires: 0 once expired, +Inf if it never expires (absent while there is no token).",
    );
    let ttl = match expires_at {
        Some(at) => Some(at.saturating_duration_since(now.mono).as_secs_f64()),
        None if s.token_written && s.never_expires => Some(f64::INFINITY),
        None => None,
    };
    if let Some(ttl) = ttl {
        m.sample("vault_login_token_ttl_seconds", "", &float(ttl));
    }
}

/// Logins and renewals: counts by result, failures in a row, the last success.
fn request_metrics(m: &mut Exposition, s: &Snapshot) {
    m.by_result(
        "vault_login_logins_total",
        "Logins to Vault with the service-account JWT, by result.",
        s.logins_ok,
        s.logins_failed,
    );
    m.by_result(
        "vault_login_renewals_total",
        "Renewals of the Vault token, by result.",
        s.renewals_ok,
        s.renewals_failed,
    );
    m.family(
        "vault_login_consecutive_failures",
        "gauge",
        "Logins and renewals that failed since the last success.",
    );
    m.sample(
        "vault_login_consecutive_failures",
        "",
        &s.consecutive_failures.to_string(),
    );
    m.family(
        "vault_login_last_success_timestamp_seconds",
        "gauge",
        "When a login or renewal last succeeded, in seconds since the Unix epoch (absent before the first).",
    );
    if let Some(at) = s.last_success {
        m.sample(
            "vault_login_last_success_timestamp_seconds",
            "",
            &float(unix_seconds(at)),
        );
    }
}

/// Each secret's reads by result and its file's last change (absent without secrets).
fn secret_metrics(m: &mut Exposition, s: &Snapshot) {
    if s.secrets.is_empty() {
        return;
    }
    m.family(
        "vault_login_secret_reads_total",
        "counter",
        "Reads (and lease renewals) of each secret written next to the token, by result.",
    );
    for x in &s.secrets {
        let name = &x.name;
        m.sample(
            "vault_login_secret_reads_total",
            &format!("{{secret=\"{name}\",result=\"success\"}}"),
            &x.reads_ok.to_string(),
        );
        m.sample(
            "vault_login_secret_reads_total",
            &format!("{{secret=\"{name}\",result=\"failure\"}}"),
            &x.reads_failed.to_string(),
        );
    }
    m.family(
            "vault_login_secret_last_change_timestamp_seconds",
            "gauge",
            "When each secret's file last changed, in seconds since the Unix epoch (absent before it is written).",
        );
    for x in &s.secrets {
        if let Some(at) = x.last_change {
            m.sample(
                "vault_login_secret_last_change_timestamp_seconds",
                &format!("{{secret=\"{}\"}}", x.name),
                &float(unix_seconds(at)),
            );
        }
    }
}

/// Each certificate's validity (NotBefore, NotAfter) and issues by result (absent without
/// certificates).
fn cert_metrics(m: &mut Exposition, s: &Snapshot) {
    if s.certs.is_empty() {
        return;
    }
    m.family(
        "vault_login_certificate_expiry_timestamp_seconds",
        "gauge",
        "NotAfter of each published certificate, in seconds since the Unix epoch (absent before one is published).",
    );
    for c in &s.certs {
        if let Some(end) = c.not_after {
            let labels = format!("{{cert=\"{}\"}}", c.name);
            m.sample(
                "vault_login_certificate_expiry_timestamp_seconds",
                &labels,
                &end.to_string(),
            );
        }
    }
    m.family(
        "vault_login_certificate_not_before_timestamp_seconds",
        "gauge",
        "NotBefore of each published certificate, in seconds since the Unix epoch (Vault back-dates it by the role's not_before_duration, 30s by default); expiry minus this is the lifetime.",
    );
    for c in &s.certs {
        if let Some(start) = c.not_before {
            let labels = format!("{{cert=\"{}\"}}", c.name);
            m.sample(
                "vault_login_certificate_not_before_timestamp_seconds",
                &labels,
                &start.to_string(),
            );
        }
    }
    m.family(
        "vault_login_certificate_issues_total",
        "counter",
        "Certificates issued by Vault for each VAULT_LOGIN_CERT_<NAME>, by result.",
    );
    for c in &s.certs {
        for (result, n) in [("success", c.issues_ok), ("failure", c.issues_failed)] {
            let labels = format!("{{cert=\"{}\",result=\"{result}\"}}", c.name);
            m.sample(
                "vault_login_certificate_issues_total",
                &labels,
                &n.to_string(),
            );
        }
    }
}

/// Each template's renders by result (absent without templates).
fn template_metrics(m: &mut Exposition, s: &Snapshot) {
    if s.templates.is_empty() {
        return;
    }
    m.family(
        "vault_login_template_renders_total",
        "counter",
        "Renders of each template, by result (failure: a missing key, a failed read, a wrong type; the file keeps its last good content).",
    );
    for x in &s.templates {
        for (result, n) in [("success", x.renders_ok), ("failure", x.renders_failed)] {
            m.sample(
                "vault_login_template_renders_total",
                &format!("{{template=\"{}\",result=\"{result}\"}}", x.name),
                &n.to_string(),
            );
        }
    }
}

/// A Prometheus text exposition being written.
struct Exposition(String);

impl Exposition {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        // Writing to a String cannot fail.
        let _ = write!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}\n");
    }

    /// A counter family with one sample per `result` label: `success` and `failure`.
    fn by_result(&mut self, name: &str, help: &str, ok: u64, failed: u64) {
        self.family(name, "counter", help);
        self.sample(name, "{result=\"success\"}", &ok.to_string());
        self.sample(name, "{result=\"failure\"}", &failed.to_string());
    }

    fn sample(&mut self, name: &str, labels: &str, value: &str) {
        let _ = writeln!(self.0, "{name}{labels} {value}");
    }
}

fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// A float in the exposition format's spelling (Rust writes infinity as `inf`).
fn float(v: f64) -> String {
    if v == f64::INFINITY {
        "+Inf".to_string()
    } else if v == f64::NEG_INFINITY {
        "-Inf".to_string()
    } else if v.is_nan() {
        "NaN".to_string()
    } else {
        v.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeMap, HashSet};

    /// Both clocks `secs` seconds after the epoch; the monotonic one counted from a fixed base.
    fn at(secs: u64) -> Now {
        static BASE: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        let base = *BASE.get_or_init(Instant::now);
        Now {
            mono: base + Duration::from_secs(secs),
            wall: UNIX_EPOCH + Duration::from_secs(secs),
        }
    }

    const NOW: u64 = 1_700_000_000;

    fn fresh() -> Snapshot {
        Snapshot::default()
    }

    fn valid(ttl: u64) -> Snapshot {
        Snapshot {
            token_written: true,
            expires_at: Some(at(NOW + ttl).mono),
            logins_ok: 1,
            last_success: Some(at(NOW - 5).wall),
            ..Snapshot::default()
        }
    }

    /// Parses an exposition, checking that every sample's family has HELP and TYPE lines
    /// before it; returns samples keyed by `name{labels}` and the TYPE of each family.
    fn parse(text: &str) -> (BTreeMap<String, f64>, BTreeMap<String, String>) {
        assert!(text.ends_with('\n'), "exposition must end with a newline");
        let mut help = HashSet::new();
        let mut types = BTreeMap::new();
        let mut samples = BTreeMap::new();
        for line in text.lines() {
            assert!(!line.is_empty(), "blank line in {text}");
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, doc) = rest.split_once(' ').expect("HELP has text");
                assert!(!doc.is_empty());
                assert!(help.insert(name.to_string()), "HELP twice for {name}");
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').expect("TYPE has a kind");
                assert!(help.contains(name), "TYPE before HELP for {name}");
                assert!(["gauge", "counter"].contains(&kind), "{line}");
                if kind == "counter" {
                    assert!(
                        name.ends_with("_total"),
                        "counter {name} must end in _total"
                    );
                }
                assert!(types.insert(name.to_string(), kind.to_string()).is_none());
            } else {
                assert!(!line.starts_with('#'), "{line}");
                let (series, value) = line.rsplit_once(' ').expect("sample has a value");
                let name = series.split('{').next().unwrap();
                assert!(name.starts_with("vault_login_"), "{name}");
                assert!(
                    name.chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
                    "{name}"
                );
                assert!(types.contains_key(name), "sample {name} before its TYPE");
                if series.contains('{') {
                    assert!(series.ends_with("\"}"), "{series}");
                }
                let v = match value {
                    "+Inf" => f64::INFINITY,
                    v => v.parse::<f64>().unwrap_or_else(|_| panic!("bad value {v}")),
                };
                assert!(
                    samples.insert(series.to_string(), v).is_none(),
                    "{series} twice"
                );
            }
        }
        (samples, types)
    }

    fn samples(s: &Snapshot, now: u64) -> BTreeMap<String, f64> {
        parse(&render_metrics(s, at(now))).0
    }

    #[test]
    fn metrics_before_the_first_token() {
        let s = Snapshot {
            logins_failed: 3,
            consecutive_failures: 3,
            last_error: Some("permission denied".into()),
            ..fresh()
        };
        let (m, types) = parse(&render_metrics(&s, at(NOW)));
        assert_eq!(m["vault_login_token_ready"], 0.0);
        assert!(!m.contains_key("vault_login_token_expiry_timestamp_seconds"));
        assert!(!m.contains_key("vault_login_token_ttl_seconds"));
        assert!(!m.contains_key("vault_login_last_success_timestamp_seconds"));
        assert_eq!(m["vault_login_logins_total{result=\"success\"}"], 0.0);
        assert_eq!(m["vault_login_logins_total{result=\"failure\"}"], 3.0);
        assert_eq!(m["vault_login_renewals_total{result=\"success\"}"], 0.0);
        assert_eq!(m["vault_login_renewals_total{result=\"failure\"}"], 0.0);
        assert_eq!(m["vault_login_consecutive_failures"], 3.0);
        let build = format!(
            "vault_login_build_info{{version=\"{}\"}}",
            env!("CARGO_PKG_VERSION")
        );
        assert_eq!(m[&build], 1.0);
        // Families without a sample still say what they are.
        assert_eq!(types["vault_login_token_expiry_timestamp_seconds"], "gauge");
        assert_eq!(types["vault_login_logins_total"], "counter");
        assert_eq!(types.len(), 8);
        // The error text never leaks into metrics.
        assert!(!render_metrics(&s, at(NOW)).contains("permission"));
    }

    #[test]
    fn metrics_follow_the_snapshot() {
        let s = Snapshot {
            renewals_ok: 7,
            renewals_failed: 2,
            logins_ok: 4,
            logins_failed: 1,
            consecutive_failures: 0,
            ..valid(3600)
        };
        let m = samples(&s, NOW);
        assert_eq!(m["vault_login_token_ready"], 1.0);
        assert_eq!(
            m["vault_login_token_expiry_timestamp_seconds"],
            (NOW + 3600) as f64
        );
        assert_eq!(m["vault_login_token_ttl_seconds"], 3600.0);
        assert_eq!(
            m["vault_login_last_success_timestamp_seconds"],
            (NOW - 5) as f64
        );
        assert_eq!(m["vault_login_logins_total{result=\"success\"}"], 4.0);
        assert_eq!(m["vault_login_logins_total{result=\"failure\"}"], 1.0);
        assert_eq!(m["vault_login_renewals_total{result=\"success\"}"], 7.0);
        assert_eq!(m["vault_login_renewals_total{result=\"failure\"}"], 2.0);
        assert_eq!(m["vault_login_consecutive_failures"], 0.0);
    }

    #[test]
    fn certificate_metrics_give_validity_and_issues_but_nothing_before_publication() {
        let s = Snapshot {
            certs: vec![
                status::CertStatus {
                    name: "web".into(),
                    not_before: Some(NOW as i64 - 30),
                    not_after: Some(NOW as i64 + 3600),
                    issues_ok: 2,
                    issues_failed: 1,
                    last_error: None,
                },
                status::CertStatus {
                    name: "db".into(),
                    issues_failed: 4,
                    last_error: Some("permission denied".into()),
                    ..status::CertStatus::default()
                },
            ],
            ..valid(3600)
        };
        let (m, types) = parse(&render_metrics(&s, at(NOW)));
        let web = "{cert=\"web\"}";
        assert_eq!(
            m[&format!("vault_login_certificate_not_before_timestamp_seconds{web}")],
            (NOW - 30) as f64
        );
        assert_eq!(
            m[&format!("vault_login_certificate_expiry_timestamp_seconds{web}")],
            (NOW + 3600) as f64
        );
        assert_eq!(
            m["vault_login_certificate_issues_total{cert=\"web\",result=\"success\"}"],
            2.0
        );
        assert_eq!(
            m["vault_login_certificate_issues_total{cert=\"db\",result=\"failure\"}"],
            4.0
        );
        // Unpublished: no validity samples (the expiry alert cannot fire on a zero).
        assert!(!m
            .keys()
            .any(|k| k.contains("timestamp") && k.contains("db")));
        assert_eq!(
            types["vault_login_certificate_not_before_timestamp_seconds"],
            "gauge"
        );
        // Without certificates, no certificate families at all.
        let none = render_metrics(&valid(3600), at(NOW));
        assert!(!none.contains("certificate"), "{none}");
    }

    #[test]
    fn expiry_moves_with_expires_at_and_ttl_counts_down() {
        let mut s = valid(60);
        assert_eq!(
            samples(&s, NOW)["vault_login_token_expiry_timestamp_seconds"],
            (NOW + 60) as f64
        );
        s.expires_at = Some(at(NOW + 90).mono);
        let m = samples(&s, NOW);
        assert_eq!(
            m["vault_login_token_expiry_timestamp_seconds"],
            (NOW + 90) as f64
        );
        assert_eq!(m["vault_login_token_ttl_seconds"], 90.0);
        assert_eq!(samples(&s, NOW + 30)["vault_login_token_ttl_seconds"], 60.0);
        let half = render_metrics(&s, at(NOW) + Duration::from_millis(500));
        assert_eq!(parse(&half).0["vault_login_token_ttl_seconds"], 89.5);
    }

    #[test]
    fn expired_token_has_zero_ttl_and_is_not_ready() {
        let s = valid(60);
        let m = samples(&s, NOW + 61);
        assert_eq!(m["vault_login_token_ttl_seconds"], 0.0);
        assert_eq!(m["vault_login_token_ready"], 0.0);
        assert_eq!(
            m["vault_login_token_expiry_timestamp_seconds"],
            (NOW + 60) as f64
        );
        // Exactly at expiry the token is no longer usable.
        let m = samples(&s, NOW + 60);
        assert_eq!(m["vault_login_token_ttl_seconds"], 0.0);
        assert_eq!(m["vault_login_token_ready"], 0.0);
    }

    #[test]
    fn never_expiring_token_has_infinite_ttl_and_no_expiry() {
        let s = Snapshot {
            never_expires: true,
            expires_at: None,
            ..valid(0)
        };
        let text = render_metrics(&s, at(NOW));
        assert!(
            text.contains("\nvault_login_token_ttl_seconds +Inf\n"),
            "{text}"
        );
        let m = parse(&text).0;
        assert!(!m.contains_key("vault_login_token_expiry_timestamp_seconds"));
        assert_eq!(m["vault_login_token_ready"], 1.0);
    }

    #[test]
    fn lost_token_file_hides_lifetimes() {
        let s = Snapshot {
            token_written: false,
            ..valid(600)
        };
        let m = samples(&s, NOW);
        assert_eq!(m["vault_login_token_ready"], 0.0);
        assert!(!m.contains_key("vault_login_token_expiry_timestamp_seconds"));
        assert!(!m.contains_key("vault_login_token_ttl_seconds"));
        let s = Snapshot {
            token_written: false,
            never_expires: true,
            expires_at: None,
            ..valid(0)
        };
        assert!(!samples(&s, NOW).contains_key("vault_login_token_ttl_seconds"));
    }

    #[test]
    fn huge_counters_and_times_render() {
        let s = Snapshot {
            logins_ok: u64::MAX,
            consecutive_failures: u64::MAX,
            expires_at: Some(at(u64::MAX / 8).mono),
            ..valid(1)
        };
        let text = render_metrics(&s, at(NOW));
        assert!(text.contains(&format!("{{result=\"success\"}} {}\n", u64::MAX)));
        parse(&text);
    }

    #[test]
    fn floats_use_prometheus_spelling() {
        assert_eq!(float(f64::INFINITY), "+Inf");
        assert_eq!(float(f64::NEG_INFINITY), "-Inf");
        assert_eq!(float(f64::NAN), "NaN");
        assert_eq!(float(0.0), "0");
        assert_eq!(float(1.5), "1.5");
        assert_eq!(float(1_700_000_000.0), "1700000000");
    }

    #[test]
    fn not_ready_before_the_first_token() {
        assert_eq!(
            readiness(&fresh(), at(NOW)),
            Err("no token written yet".to_string())
        );
        let s = Snapshot {
            logins_failed: 1,
            last_error: Some("vault: permission denied".into()),
            ..fresh()
        };
        assert_eq!(
            readiness(&s, at(NOW)),
            Err(
                "no token written yet: vault: permission denied (details in vault-login's log)"
                    .to_string()
            )
        );
    }

    #[test]
    fn ready_while_the_token_is_valid() {
        let s = valid(60);
        assert_eq!(readiness(&s, at(NOW)), Ok(()));
        assert_eq!(readiness(&s, at(NOW + 59)), Ok(()));
        assert_eq!(
            readiness(&s, at(NOW + 60) - Duration::from_nanos(1)),
            Ok(())
        );
        // A renewal failure does not matter while the token still works.
        let s = Snapshot {
            renewals_failed: 1,
            consecutive_failures: 1,
            last_error: Some("connection refused".into()),
            ..valid(60)
        };
        assert_eq!(readiness(&s, at(NOW + 30)), Ok(()));
    }

    #[test]
    fn not_ready_once_expired() {
        let s = valid(60);
        assert_eq!(
            readiness(&s, at(NOW + 60)),
            Err("token expired 0s ago".to_string())
        );
        let s = Snapshot {
            last_error: Some("connection refused".into()),
            ..valid(60)
        };
        assert_eq!(
            readiness(&s, at(NOW + 72) + Duration::from_millis(900)),
            Err(
                "token expired 12s ago: connection refused (details in vault-login's log)"
                    .to_string()
            )
        );
    }

    #[test]
    fn never_expiring_token_stays_ready() {
        let s = Snapshot {
            never_expires: true,
            expires_at: None,
            ..valid(0)
        };
        assert_eq!(readiness(&s, at(NOW)), Ok(()));
        assert_eq!(readiness(&s, at(u64::MAX / 8)), Ok(()));
    }

    #[test]
    fn not_ready_without_the_token_file() {
        let s = Snapshot {
            token_written: false,
            last_error: Some("cannot write token file /x: no space left".into()),
            ..valid(600)
        };
        assert_eq!(
            readiness(&s, at(NOW)),
            Err(
                "token file does not hold the current token: cannot write token file /x: no space left (details in vault-login's log)"
                    .to_string()
            )
        );
        let s = Snapshot {
            expires_at: None,
            ..valid(600)
        };
        assert_eq!(
            readiness(&s, at(NOW)),
            Err("token expiry unknown".to_string())
        );
    }

    #[test]
    fn reasons_are_one_line() {
        let s = Snapshot {
            last_error: Some("line one\nline two\r\n\tthree".into()),
            ..fresh()
        };
        let why = readiness(&s, at(NOW)).unwrap_err();
        assert!(!why.contains(['\n', '\r', '\t']), "{why:?}");
        assert!(
            why.ends_with("line one line two   three (details in vault-login's log)"),
            "{why:?}"
        );
    }

    #[test]
    fn reasons_keep_vaults_messages_and_jwt_claims_for_the_log() {
        let login = "POST /v1/auth/kubernetes/login: Vault answered 403 Forbidden: 2 errors occurred: * permission denied * invalid token (JWT sub=system:serviceaccount:ns1:sa1 aud=[\"k3s\"] exp=1 (expired 5s ago); the role must bind service account \"sa1\" in namespace \"ns1\")";
        let s = Snapshot {
            last_error: Some(login.into()),
            ..fresh()
        };
        let why = readiness(&s, at(NOW)).unwrap_err();
        assert_eq!(
            why,
            "no token written yet: POST /v1/auth/kubernetes/login: Vault answered 403 Forbidden (details in vault-login's log)"
        );
        let renew = "POST /v1/auth/token/renew-self: Vault answered 500 Internal Server Error: 1 error occurred: * past the max TTL, cannot renew";
        let s = Snapshot {
            last_error: Some(renew.into()),
            ..valid(60)
        };
        let why = readiness(&s, at(NOW + 61)).unwrap_err();
        assert!(
            why.ends_with(
                "Vault answered 500 Internal Server Error (details in vault-login's log)"
            ),
            "{why}"
        );
        // Anything else is cut to a bounded line.
        let s = Snapshot {
            last_error: Some("x".repeat(100_000)),
            ..fresh()
        };
        let why = readiness(&s, at(NOW)).unwrap_err();
        assert_eq!(why.chars().count(), MAX_REASON_CHARS);
        assert!(why.ends_with('…'), "{why}");
    }

    fn request(method: Method, path: &str) -> Request<()> {
        Request::builder()
            .method(method)
            .uri(path)
            .body(())
            .unwrap()
    }

    #[test]
    fn routes() {
        let s = valid(60);
        let now = at(NOW);
        let r = respond(&request(Method::GET, "/healthz"), &s, now);
        assert_eq!((r.status(), r.body().as_str()), (StatusCode::OK, "ok\n"));
        let r = respond(&request(Method::HEAD, "/readyz?verbose"), &s, now);
        assert_eq!((r.status(), r.body().as_str()), (StatusCode::OK, "ok\n"));
        let r = respond(&request(Method::GET, "/readyz"), &fresh(), now);
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.body(), "no token written yet\n");
        let r = respond(&request(Method::GET, "/metrics"), &s, now);
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()[CONTENT_TYPE], METRICS_CONTENT_TYPE);
        for method in [Method::POST, Method::PUT, Method::DELETE, Method::OPTIONS] {
            let r = respond(&request(method, "/metrics"), &s, now);
            assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
            assert_eq!(r.headers()[ALLOW], "GET, HEAD");
        }
        for path in ["/", "/nope", "/healthz/", "/metrics/x", "//healthz"] {
            let r = respond(&request(Method::GET, path), &s, now);
            assert_eq!(r.status(), StatusCode::NOT_FOUND, "{path}");
        }
        let r = respond(&request(Method::POST, "/nope"), &s, now);
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
    }
}
