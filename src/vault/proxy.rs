//! HTTP proxies between vault-login and Vault, read like the `vault` CLI reads them:
//! `VAULT_PROXY_ADDR` for every request, else `HTTPS_PROXY` / `HTTP_PROXY` with `NO_PROXY`, and
//! never for loopback addresses or `localhost` (Go's `ProxyFromEnvironment`).

use std::fmt;

use reqwest::{NoProxy, Url};

/// The proxies of `p` (see [`ProxySettings`]), replacing reqwest's own reading of the
/// environment, which would also proxy loopback addresses (Go never does).
pub fn apply(
    builder: reqwest::ClientBuilder,
    p: &ProxySettings,
) -> Result<reqwest::ClientBuilder, reqwest::Error> {
    let mut builder = builder.no_proxy();
    if let Some(all) = &p.all {
        return Ok(builder.proxy(reqwest::Proxy::all(all.as_str())?));
    }
    let direct = NoProxy::from_string(&direct_hosts(p));
    if let Some(https) = &p.https {
        builder = builder.proxy(reqwest::Proxy::https(https.as_str())?.no_proxy(direct.clone()));
    }
    if let Some(http) = &p.http {
        builder = builder.proxy(reqwest::Proxy::http(http.as_str())?.no_proxy(direct));
    }
    Ok(builder)
}

/// `NO_PROXY`, plus the loopback names and networks Go never proxies.
fn direct_hosts(p: &ProxySettings) -> String {
    format!(
        "localhost,127.0.0.0/8,::1,[::1],{}",
        p.no_proxy.as_deref().unwrap_or("")
    )
}

/// Whether requests to `url` go through a proxy under `p` (the rules of [`apply`]).
pub fn proxied(url: &Url, p: &ProxySettings) -> bool {
    if p.all.is_some() {
        return true;
    }
    let mut m = hyper_util::client::proxy::matcher::Matcher::builder().no(direct_hosts(p));
    if let Some(https) = &p.https {
        m = m.https(https.as_str());
    }
    if let Some(http) = &p.http {
        m = m.http(http.as_str());
    }
    url.as_str()
        .parse::<hyper::Uri>()
        .is_ok_and(|uri| m.build().intercept(&uri).is_some())
}

/// The proxy requests to `url` go through, for messages: scheme, host and port, never the
/// credentials. `None` when they go direct.
pub fn via(url: &Url, p: &ProxySettings) -> Option<String> {
    if !proxied(url, p) {
        return None;
    }
    let proxy = p.all.as_ref().or(match url.scheme() {
        "https" => p.https.as_ref(),
        _ => p.http.as_ref(),
    })?;
    Some(redacted(proxy))
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

/// A proxy URL as Go reads one: `http://` assumed without a scheme; `http` or `https` only.
/// It may carry `user:password@` (sent as Proxy-Authorization), so it is never quoted whole.
pub fn parse_proxy_url(s: &str) -> Result<Url, String> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxied_follows_the_proxy_rules() {
        let url = |s: &str| Url::parse(s).unwrap();
        let https = ProxySettings {
            https: Some(url("http://proxy:3128")),
            no_proxy: Some(".svc,10.0.0.0/8".into()),
            ..ProxySettings::default()
        };
        assert!(proxied(&url("https://vault.example:8200"), &https));
        assert!(
            !proxied(&url("http://vault.example:8200"), &https),
            "no HTTP_PROXY"
        );
        assert!(!proxied(&url("https://vault.vault.svc:8200"), &https));
        assert!(!proxied(&url("https://10.1.2.3:8200"), &https));
        assert!(!proxied(&url("https://127.0.0.1:8200"), &https));
        assert!(!proxied(&url("https://localhost:8200"), &https));
        assert!(!proxied(&url("https://[::1]:8200"), &https));
        let all = ProxySettings {
            all: Some(url("http://proxy:3128")),
            ..https
        };
        assert!(proxied(&url("https://127.0.0.1:8200"), &all));
        assert!(!proxied(
            &url("https://vault:8200"),
            &ProxySettings::default()
        ));
        assert_eq!(
            via(&url("https://vault:8200"), &all).as_deref(),
            Some("http://proxy:3128")
        );
        let secret = ProxySettings {
            https: Some(url("http://u:pw@proxy:3128")),
            ..ProxySettings::default()
        };
        assert_eq!(
            via(&url("https://vault:8200"), &secret).as_deref(),
            Some("http://***@proxy:3128")
        );
        assert_eq!(via(&url("http://vault:8200"), &secret), None);
    }
}
