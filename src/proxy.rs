//! HTTP proxies between vault-login and Vault, read like the `vault` CLI reads them:
//! `VAULT_PROXY_ADDR` for every request, else `HTTPS_PROXY` / `HTTP_PROXY` with `NO_PROXY`, and
//! never for loopback addresses or `localhost` (Go's `ProxyFromEnvironment`).

use reqwest::{NoProxy, Url};

use crate::config::ProxySettings;

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
    Some(crate::config::redacted(proxy))
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
