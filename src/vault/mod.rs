//! The Vault HTTP client: login, renew-self, lookup-self and revoke-self, secret reads and
//! their leases (`sys/leases/renew`, `sys/leases/revoke`), with bounded response reading and
//! errors that carry Vault's own messages verbatim.

pub mod hints;
pub mod login;
pub mod proxy;
pub mod response;
pub mod server_name;
pub mod tls;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER};
use reqwest::{Method, StatusCode, Url};
use serde_json::Value;

use crate::sensitive::Secret;
pub use crate::vault::response::{
    check_status, parse_auth_response, parse_lease_renewal, parse_secret_response, Auth,
    LeaseRenewal, Renewal, SecretData, SecretRead, VaultError, MAX_LEASE,
};
use crate::vault::response::{excerpt, unquoted_excerpt};
use crate::vault::server_name::Dial;
use crate::vault::tls::TlsSettings;
use proxy::ProxySettings;

/// The most of a response body we read; Vault's answers are a few KiB.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// A 2xx answer's raw body, as [`VaultClient::request_raw`] returns it.
pub struct RawAnswer {
    /// The request, for messages (`GET http://…/v1/path`).
    pub op: String,
    /// The status.
    pub status: StatusCode,
    /// The body; it holds secret values, so it is wiped when dropped.
    pub body: zeroize::Zeroizing<Vec<u8>>,
}

impl fmt::Debug for RawAnswer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawAnswer")
            .field("op", &self.op)
            .field("status", &self.status)
            .field("bytes", &self.body.len())
            .finish()
    }
}

/// How to reach Vault: the settings of [`VaultClient::new`].
#[derive(Clone, Debug)]
pub struct VaultSettings {
    /// Vault base URL, http or https; no query or fragment; its path has no trailing '/' (except the root "/").
    pub addr: Url,
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
    pub timeout: Duration,
    /// Do not follow a standby's redirect to the active node (`VAULT_DISABLE_REDIRECTS`).
    pub disable_redirects: bool,
}

/// A client for one Vault server (and namespace).
#[derive(Clone)]
pub struct VaultClient {
    http: reqwest::Client,
    base: Url,
    namespace: Option<String>,
    /// Set when `VAULT_TLS_SERVER_NAME` reroutes requests (see [`crate::vault::server_name`]).
    dial: Option<Dial>,
    /// The proxy requests go through, named in every error (without credentials).
    via: Option<String>,
    /// `VAULT_DISABLE_REDIRECTS`: a redirect is an error, not followed.
    no_redirects: bool,
}

impl fmt::Debug for VaultClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VaultClient")
            .field("base", &self.base.as_str())
            .field("namespace", &self.namespace)
            .finish()
    }
}

impl VaultClient {
    /// The namespace every request goes to (`X-Vault-Namespace`), if any.
    pub fn namespace(&self) -> Option<&str> {
        self.namespace.as_deref()
    }

    /// Builds a client from its settings (address, TLS, proxies, timeout, namespace).
    pub fn new(cfg: &VaultSettings) -> Result<Self, crate::vault::tls::TlsError> {
        let tls = crate::vault::tls::client_config(&cfg.tls)?;
        let mut headers = HeaderMap::new();
        headers.insert("X-Vault-Request", HeaderValue::from_static("true"));
        for (name, value) in &cfg.headers {
            // Checked when the configuration was loaded; marked sensitive so no log shows it.
            if let (Ok(name), Ok(mut value)) = (
                reqwest::header::HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value.expose()),
            ) {
                value.set_sensitive(true);
                headers.insert(name, value);
            }
        }
        let via = proxy::via(&cfg.addr, &cfg.proxy);
        // Through a proxy, the proxy connects to the name in the request, so the server name
        // cannot be rerouted: it is then only checked in the certificate (tls.rs).
        let dial =
            Dial::for_addr(&cfg.addr, cfg.tls.server_name.as_deref()).filter(|_| via.is_none());
        let mut builder = proxy::apply(reqwest::Client::builder(), &cfg.proxy)
            .map_err(|e| crate::vault::tls::TlsError::Setup(format!("proxy: {e}")))?;
        if let Some(d) = &dial {
            builder = builder.dns_resolver(Arc::new(d.clone()));
        }
        let http = builder
            .use_preconfigured_tls(tls)
            .timeout(cfg.timeout)
            .connect_timeout(cfg.timeout.min(Duration::from_secs(30)))
            .default_headers(headers)
            .user_agent(concat!("vault-login/", env!("CARGO_PKG_VERSION")))
            .redirect(if cfg.disable_redirects {
                reqwest::redirect::Policy::none()
            } else {
                redirect_policy()
            })
            .http1_only()
            // No idle connections: requests are minutes apart, and a pooled connection keeps
            // an idle-expiry timer that would wake the process while it should sleep.
            .pool_max_idle_per_host(0)
            .build()
            .map_err(|e| crate::vault::tls::TlsError::Setup(e.to_string()))?;
        let mut client = Self::with_http(http, cfg.addr.clone(), cfg.namespace.clone());
        client.dial = dial;
        client.via = via;
        client.no_redirects = cfg.disable_redirects;
        Ok(client)
    }

    /// A client over an existing `reqwest::Client` (tests).
    pub fn with_http(http: reqwest::Client, base: Url, namespace: Option<String>) -> Self {
        VaultClient {
            http,
            base,
            namespace,
            dial: None,
            via: None,
            no_redirects: false,
        }
    }

    fn url(&self, path: &str) -> Url {
        let mut url = self.base.clone();
        let joined = format!("{}/v1/{}", self.base.path().trim_end_matches('/'), path);
        url.set_path(&joined);
        url
    }

    /// `POST /v1/auth/<mount>/login` with the role and JWT.
    pub async fn login(&self, mount: &str, role: &str, jwt: &Secret) -> Result<Auth, VaultError> {
        let path = format!("auth/{mount}/login");
        let body = serde_json::json!({ "role": role, "jwt": jwt.expose() });
        let (op, status, bytes) = self.send(Method::POST, &path, None, Some(body)).await?;
        parse_auth_response(&op, status, None, &bytes).map(|r| r.auth)
    }

    /// `POST /v1/auth/token/renew-self`, asking for `increment` (or letting Vault decide).
    pub async fn renew_self(
        &self,
        token: &Secret,
        increment: Option<Duration>,
    ) -> Result<Renewal, VaultError> {
        let body = match increment {
            Some(i) => serde_json::json!({ "increment": i.as_secs() }),
            None => serde_json::json!({}),
        };
        let (op, status, bytes) = self
            .send(
                Method::POST,
                "auth/token/renew-self",
                Some(token),
                Some(body),
            )
            .await?;
        parse_auth_response(&op, status, None, &bytes)
    }

    /// `GET /v1/auth/token/lookup-self`: the token's `data` block.
    pub async fn lookup_self(&self, token: &Secret) -> Result<Value, VaultError> {
        let (op, status, bytes) = self
            .send(Method::GET, "auth/token/lookup-self", Some(token), None)
            .await?;
        let v: Value = serde_json::from_slice(&bytes).map_err(|e| VaultError::BadResponse {
            op: op.clone(),
            status,
            problem: format!("body is not JSON: {}", unquoted_excerpt(&bytes, &e)),
        })?;
        Ok(v.get("data").cloned().unwrap_or(Value::Null))
    }

    /// `POST /v1/auth/token/revoke-self`.
    pub async fn revoke_self(&self, token: &Secret) -> Result<(), VaultError> {
        self.send(Method::POST, "auth/token/revoke-self", Some(token), None)
            .await
            .map(|_| ())
    }

    /// `GET /v1/<path>`: a secret (KV v2, KV v1, or a dynamic secret with a lease).
    ///
    /// `path` is the API path without `/v1/`, e.g. `internal/data/database/config`.
    pub async fn read_secret(&self, token: &Secret, path: &str) -> Result<SecretRead, VaultError> {
        let (op, status, mut bytes) = self.send(Method::GET, path, Some(token), None).await?;
        let read = parse_secret_response(&op, status, path, &bytes);
        // The raw answer holds the secret's values too.
        zeroize::Zeroize::zeroize(&mut bytes);
        read
    }

    /// One request as a template makes it: `GET` (`secret "path"`), `PUT` with a JSON body of
    /// strings (`secret "path" "k=v"`) or `LIST` (`secrets "path"`). The raw body, wiped when
    /// dropped, so numbers keep the server's text (consul-template decodes with `UseNumber`).
    pub async fn request_raw(
        &self,
        token: &Secret,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<RawAnswer, VaultError> {
        let method = Method::from_bytes(method.as_bytes()).map_err(|_| VaultError::Transport {
            op: format!("{method} {path}"),
            message: "not an HTTP method".into(),
        })?;
        let (op, status, bytes) = self.send(method, path, Some(token), body).await?;
        Ok(RawAnswer {
            op,
            status,
            body: zeroize::Zeroizing::new(bytes),
        })
    }

    /// `PUT /v1/sys/leases/renew`: extends a dynamic secret's lease by `increment` (or the
    /// role's default TTL).
    pub async fn renew_lease(
        &self,
        token: &Secret,
        lease_id: &str,
        increment: Option<Duration>,
    ) -> Result<LeaseRenewal, VaultError> {
        let mut body = serde_json::json!({ "lease_id": lease_id });
        if let Some(i) = increment {
            body["increment"] = serde_json::json!(i.as_secs());
        }
        let (op, status, bytes) = self
            .send(Method::PUT, "sys/leases/renew", Some(token), Some(body))
            .await?;
        parse_lease_renewal(&op, status, &bytes)
    }

    /// `PUT /v1/sys/leases/revoke`: ends a dynamic secret's lease now (Vault answers 204, also
    /// for an unknown lease).
    pub async fn revoke_lease(&self, token: &Secret, lease_id: &str) -> Result<(), VaultError> {
        let body = serde_json::json!({ "lease_id": lease_id });
        self.send(Method::PUT, "sys/leases/revoke", Some(token), Some(body))
            .await
            .map(|_| ())
    }

    /// Sends one request and returns the body of a 2xx answer, or the classified failure.
    async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&Secret>,
        body: Option<Value>,
    ) -> Result<(String, StatusCode, Vec<u8>), VaultError> {
        let url = self.url(path);
        // Errors show VAULT_ADDR's URL, whatever name the request is addressed to, and the
        // proxy in between: "connection refused" may be the proxy's doing.
        let op = match &self.via {
            Some(proxy) => format!("{method} {url} (via proxy {proxy})"),
            None => format!("{method} {url}"),
        };
        let to = match &self.dial {
            Some(d) => d.address(&url),
            None => url,
        };
        let req = self.request(method, to, token, body, &op)?;
        let mut resp = req.send().await.map_err(|e| {
            let message = crate::vault::tls::describe_error(&e);
            let message = if message == "connection refused" {
                refused(&self.base, self.via.as_deref())
            } else {
                message
            };
            VaultError::Transport {
                op: op.clone(),
                message,
            }
        })?;
        let status = resp.status();
        if status.is_redirection() {
            return Err(self.not_followed(op, status, resp.headers()));
        }
        let retry_after = resp
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let declared = resp
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
            return Err(VaultError::BadResponse {
                op,
                status,
                problem: format!(
                    "body of {} bytes exceeds the {MAX_BODY_BYTES}-byte limit",
                    declared.unwrap_or(0)
                ),
            });
        }
        let bytes = read_body(&mut resp, &op, status).await?;
        check_status(&op, status, retry_after, &bytes)?;
        Ok((op, status, bytes))
    }
}

impl VaultClient {
    /// The request with Vault's headers: namespace, token (marked sensitive) and JSON body.
    fn request(
        &self,
        method: Method,
        to: Url,
        token: Option<&Secret>,
        body: Option<Value>,
        op: &str,
    ) -> Result<reqwest::RequestBuilder, VaultError> {
        let mut req = self.http.request(method, to);
        if let Some(ns) = &self.namespace {
            req = req.header("X-Vault-Namespace", ns.as_str());
        }
        if let Some(token) = token {
            let mut value =
                HeaderValue::from_str(token.expose()).map_err(|_| VaultError::Transport {
                    op: op.to_string(),
                    message: "the token contains characters not allowed in a header".into(),
                })?;
            value.set_sensitive(true);
            req = req.header("X-Vault-Token", value);
        }
        if let Some(body) = body {
            req = req
                .header(CONTENT_TYPE, "application/json")
                .body(body.to_string());
        }
        Ok(req)
    }

    /// The error for a redirect the policy did not follow, saying where it pointed and why.
    fn not_followed(
        &self,
        op: String,
        status: StatusCode,
        headers: &reqwest::header::HeaderMap,
    ) -> VaultError {
        let to = headers
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map_or_else(
                || "nowhere (no Location header)".to_string(),
                |l| excerpt(l.as_bytes()),
            );
        let why = if self.no_redirects {
            "VAULT_DISABLE_REDIRECTS is set; point VAULT_ADDR at the active node or unset it"
        } else {
            "only one redirect is followed, and never from https to http"
        };
        VaultError::Status {
            op,
            status,
            errors: vec![format!("redirected to {to}, not followed: {why}")],
            retry_after: None,
        }
    }
}

/// The answer's body, refused past [`MAX_BODY_BYTES`] while it streams in.
async fn read_body(
    resp: &mut reqwest::Response,
    op: &str,
    status: StatusCode,
) -> Result<Vec<u8>, VaultError> {
    let mut bytes = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                if bytes.len() + chunk.len() > MAX_BODY_BYTES {
                    return Err(VaultError::BadResponse {
                        op: op.to_string(),
                        status,
                        problem: format!("body exceeds the {MAX_BODY_BYTES}-byte limit"),
                    });
                }
                bytes.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(bytes),
            Err(e) => {
                return Err(VaultError::Transport {
                    op: op.to_string(),
                    message: format!(
                        "reading the answer failed: {}",
                        crate::vault::tls::describe_error(&e)
                    ),
                })
            }
        }
    }
}

/// "connection refused", with where to look: nothing listens at VAULT_ADDR's host and port.
fn refused(base: &Url, via: Option<&str>) -> String {
    let at = match (base.host_str(), base.port_or_known_default()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_string(),
        _ => base.to_string(),
    };
    match via {
        Some(proxy) => format!(
            "connection refused: the proxy {proxy} or, through it, {at} refused the connection; check the proxy settings (VAULT_PROXY_ADDR, HTTPS_PROXY, NO_PROXY) and VAULT_ADDR"
        ),
        None => format!(
            "connection refused: nothing accepts connections at {at}; check VAULT_ADDR's host and port, and in Kubernetes that the Service it names exists in that namespace with ready endpoints on that port (kubectl get service,endpoints), or that a Vault outside the cluster listens on an address the pod can reach"
        ),
    }
}

fn redirect_policy() -> reqwest::redirect::Policy {
    // A standby answers 307 to the active node: follow one hop, never from https down to http.
    reqwest::redirect::Policy::custom(|attempt| {
        let downgrade = attempt.url().scheme() == "http"
            && attempt.previous().iter().any(|u| u.scheme() == "https");
        if attempt.previous().len() > 1 || downgrade {
            attempt.stop()
        } else {
            attempt.follow()
        }
    })
}

pub fn parse_vault_addr(s: &str) -> Result<Url, String> {
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

/// Checks a '/'-separated path of Vault names (a mount or a namespace) once its outer '/' are gone.
pub fn check_vault_path(original: &str, trimmed: &str, example: &str) -> Result<(), String> {
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

pub fn parse_namespace(s: &str) -> Result<Option<String>, String> {
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
pub fn parse_headers(s: &str) -> Result<Vec<(String, Secret)>, String> {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Checks a problem's shape: one line, lowercase, no trailing period.
    fn one_lowercase_line(problem: &str) {
        assert!(!problem.contains('\n'), "multi-line problem: {problem}");
        assert!(!problem.ends_with('.'), "trailing period: {problem}");
        assert!(
            problem.starts_with(|c: char| !c.is_uppercase()),
            "{problem}"
        );
    }

    /// Asserts that `value` is refused as Vault's address, quoted, with `needle` in the problem.
    fn bad_addr(value: &str, needle: &str) {
        let problem = parse_vault_addr(value).unwrap_err();
        one_lowercase_line(&problem);
        assert!(
            problem.contains(&format!("{value:?}")),
            "{problem} does not quote {value:?}"
        );
        assert!(
            problem.contains(needle),
            "{problem} does not say {needle:?}"
        );
    }

    #[test]
    fn vault_addr_rejects_bad_urls() {
        bad_addr("vault.example:8200", "no scheme");
        bad_addr("localhost", "no scheme");
        bad_addr("ftp://vault.example", "http:// or https://");
        bad_addr("unix:///run/vault.sock", "http:// or https://");
        bad_addr("https://vault.example/?x=1", "query");
        bad_addr("https://vault.example?", "query");
        bad_addr("https://vault.example/#top", "fragment");
        bad_addr("http://", "not a valid url");
        bad_addr("https://vault.example:99999", "not a valid url");
    }

    #[test]
    fn vault_addr_with_credentials_is_rejected_without_quoting_them() {
        let problem = parse_vault_addr("https://user:hunter2@vault.example").unwrap_err();
        one_lowercase_line(&problem);
        assert!(problem.contains("user name or password"), "{problem}");
        assert!(!problem.contains("hunter2"), "{problem}");
    }

    #[test]
    fn multi_error_strings_are_folded() {
        let e = VaultError::Status {
            op: "POST /v1/auth/token/renew-self".into(),
            status: StatusCode::FORBIDDEN,
            errors: vec!["2 errors occurred:\n\t* permission denied\n\t* invalid token\n\n".into()],
            retry_after: None,
        };
        assert_eq!(
            e.to_string(),
            "POST /v1/auth/token/renew-self: Vault answered 403 Forbidden: 2 errors occurred: * permission denied * invalid token"
        );
        assert!(e.is_permission_denied());
        assert!(e.mentions("permission denied"));
        assert!(!e.is_transient());
    }

    #[test]
    fn transient_classification() {
        let status = |s: u16| VaultError::Status {
            op: String::new(),
            status: StatusCode::from_u16(s).unwrap(),
            errors: vec![],
            retry_after: None,
        };
        for s in [412, 429, 473, 500, 502, 503] {
            assert!(status(s).is_transient(), "{s}");
        }
        for s in [400, 403, 404, 405] {
            assert!(!status(s).is_transient(), "{s}");
        }
    }

    #[test]
    fn excerpt_strips_html_and_bounds_length() {
        let html = b"<html><head><title>502 Bad Gateway</title></head>\n<body>nginx</body></html>";
        assert_eq!(excerpt(html), "\"502 Bad Gateway nginx\"");
        let long = vec![b'x'; 5000];
        assert!(excerpt(&long).chars().count() < 130);
        assert_eq!(excerpt(b""), "(no text)");
    }

    #[test]
    fn huge_lease_is_clamped() {
        let body = br#"{"auth":{"client_token":"hvs.x","lease_duration":18446744073709551615}}"#;
        let r = parse_auth_response("op", StatusCode::OK, None, body).unwrap();
        assert_eq!(r.auth.lease_duration, MAX_LEASE);
        assert!(std::time::Instant::now()
            .checked_add(r.auth.lease_duration)
            .is_some());
    }

    #[test]
    fn unparsable_success_does_not_quote_the_token() {
        for body in [
            &br#"{"auth":{"client_token":"hvs.secretvalue","lease_duration":1.5}}"#[..],
            br#"{"auth":{"client_token":"hvs.secretvalue","lease_duration":-1}}"#,
            br#"  {"auth":{"client_token":"hvs.secretvalue","#,
            b"\xff\xfe junk {\"auth\":{\"client_token\":\"hvs.secretvalue\"}}",
            b"junk \"token\": \"hvs.secretvalue\"",
            br#"{"wrap_info":{"token":"hvs.secretvalue","ttl":"5m"},"auth":7}"#,
        ] {
            let err = parse_auth_response("op", StatusCode::OK, None, body).unwrap_err();
            let text = err.to_string();
            assert!(!text.contains("secretvalue"), "{text}");
            assert!(text.contains("line 1 column"), "{text}");
        }
        // A proxy's HTML page is still quoted.
        let err = parse_auth_response("op", StatusCode::OK, None, b"<h1>Login</h1>").unwrap_err();
        assert!(err.to_string().contains("\"Login\""), "{err}");
    }

    #[test]
    fn refused_names_the_address_and_the_service() {
        let text = refused(&Url::parse("http://dev-vault:8200").unwrap(), None);
        assert!(text.starts_with("connection refused: "), "{text}");
        assert!(text.contains("dev-vault:8200"), "{text}");
        assert!(
            text.contains("VAULT_ADDR") && text.contains("Service"),
            "{text}"
        );
        let text = refused(&Url::parse("https://vault.example").unwrap(), None);
        assert!(text.contains("vault.example:443"), "{text}");
        let text = refused(
            &Url::parse("https://vault.example").unwrap(),
            Some("http://proxy:3128"),
        );
        assert!(text.contains("proxy http://proxy:3128"), "{text}");
    }

    #[test]
    fn kv2_answers_are_unwrapped_to_the_inner_data_and_version() {
        let body = br#"{"request_id":"r","lease_id":"","renewable":false,"lease_duration":0,
            "data":{"data":{"password":"s3cret"},"metadata":{"created_time":"2026-01-01T00:00:00Z",
            "custom_metadata":null,"deletion_time":"","destroyed":false,"version":3}},
            "wrap_info":null,"warnings":null,"auth":null,"mount_type":"kv"}"#;
        let r = parse_secret_response("op", StatusCode::OK, "internal/data/database/config", body)
            .unwrap();
        assert_eq!(r.kv2_version, Some(3));
        assert_eq!(r.data.expose()["password"], "s3cret");
        assert_eq!(r.data.expose().len(), 1);
        assert!(!r.has_renewable_lease());
        let debug = format!("{r:?}");
        assert!(!debug.contains("s3cret"), "{debug}");
        assert!(debug.contains("password"), "{debug}");
        // The same shape on a path without a data segment is taken as it is (KV v1).
        let r = parse_secret_response("op", StatusCode::OK, "kv/app", body).unwrap();
        assert_eq!(r.kv2_version, None);
        assert_eq!(r.data.field_names(), vec!["data", "metadata"]);
    }

    #[test]
    fn dynamic_answers_keep_their_lease() {
        let body = br#"{"lease_id":"database/creds/app/abc","renewable":true,"lease_duration":600,
            "data":{"username":"u","password":"p"},"warnings":["w"]}"#;
        let r = parse_secret_response("op", StatusCode::OK, "database/creds/app", body).unwrap();
        assert_eq!(r.lease_id, "database/creds/app/abc");
        assert_eq!(r.lease_duration, Duration::from_secs(600));
        assert!(r.has_renewable_lease());
        assert_eq!(r.warnings, vec!["w"]);
        let renewed = parse_lease_renewal(
            "op",
            StatusCode::OK,
            br#"{"lease_id":"database/creds/app/abc","renewable":true,"lease_duration":30,"data":null}"#,
        )
        .unwrap();
        assert_eq!(renewed.lease_duration, Duration::from_secs(30));
        assert!(renewed.renewable);
        assert!(!renewed.grant().capped_warning);
        let warned = LeaseRenewal {
            warnings: vec![
                "TTL of \"1h\" exceeded the effective max_ttl of \"30s\"; TTL value is capped accordingly"
                    .into(),
            ],
            ..renewed.clone()
        };
        assert!(warned.grant().capped_warning);
        assert!(parse_lease_renewal("op", StatusCode::OK, br#"{"lease_id":""}"#).is_err());
    }

    #[test]
    fn unparsable_secret_bodies_are_never_quoted() {
        for body in [
            &b"password=hunter2-secret"[..],
            br#"{"data":{"password":"hunter2-secret"}"#,
            br#"{"data":["hunter2-secret"]}"#,
        ] {
            let err = parse_secret_response("op", StatusCode::OK, "kv/app", body).unwrap_err();
            assert!(!err.to_string().contains("hunter2"), "{err}");
        }
        let err =
            parse_secret_response("op", StatusCode::OK, "kv/app", br#"{"data":null}"#).unwrap_err();
        assert!(err.to_string().contains("no data"), "{err}");
    }

    #[test]
    fn url_keeps_a_path_prefix() {
        let c = VaultClient::with_http(
            reqwest::Client::new(),
            Url::parse("https://h:8200/prefix").unwrap(),
            None,
        );
        assert_eq!(
            c.url("auth/k8s/prod/login").as_str(),
            "https://h:8200/prefix/v1/auth/k8s/prod/login"
        );
        let c = VaultClient::with_http(
            reqwest::Client::new(),
            Url::parse("http://h").unwrap(),
            None,
        );
        assert_eq!(
            c.url("auth/token/renew-self").as_str(),
            "http://h/v1/auth/token/renew-self"
        );
    }
}
