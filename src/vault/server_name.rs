//! `VAULT_TLS_SERVER_NAME` as the `vault` CLI applies it: the name is sent as SNI and Vault's
//! certificate is checked against it, while the connection still goes to `VAULT_ADDR`'s host.
//!
//! rustls takes both the SNI and the verification name from the URL's host, so requests are
//! addressed to the server name and a resolver maps that name back to `VAULT_ADDR`'s host (an IP
//! address as is, a DNS name looked up at every connection, so DNS changes are followed). The
//! URLs shown in logs and errors stay `VAULT_ADDR`'s. A server name that is an IP address cannot
//! be sent as SNI, and through a proxy the proxy connects to whatever name the request carries;
//! in both cases only verification uses the name (see `tls::client_config`).

use std::io;
use std::net::{IpAddr, SocketAddr};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::Url;

/// Where requests go when `VAULT_TLS_SERVER_NAME` names a host other than `VAULT_ADDR`'s.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dial {
    /// The name requests are addressed to: SNI and certificate name.
    pub server_name: String,
    /// `VAULT_ADDR`'s host, where the connection really goes.
    pub host: Target,
}

/// `VAULT_ADDR`'s host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// An IP address: used as is.
    Ip(IpAddr),
    /// A DNS name: looked up when a connection is made.
    Name(String),
}

impl Dial {
    /// The rerouting `server_name` needs for `vault_addr`, if any: only for `https` addresses,
    /// a DNS server name (SNI carries no IP addresses), and a host that differs from it.
    pub fn for_addr(vault_addr: &Url, server_name: Option<&str>) -> Option<Dial> {
        let name = server_name?;
        if vault_addr.scheme() != "https" || name.parse::<IpAddr>().is_ok() {
            return None;
        }
        let host = vault_addr.host_str()?;
        // IPv6 hosts come bracketed.
        let host = match host.trim_start_matches('[').trim_end_matches(']').parse() {
            Ok(ip) => Target::Ip(ip),
            Err(_) if host.eq_ignore_ascii_case(name) => return None,
            Err(_) => Target::Name(host.to_owned()),
        };
        Some(Dial {
            server_name: name.to_owned(),
            host,
        })
    }

    /// `url` (built from `VAULT_ADDR`) addressed to the server name instead.
    pub fn address(&self, url: &Url) -> Url {
        let mut to = url.clone();
        // Cannot fail: an https URL has a host, and the name was validated at startup.
        let _ = to.set_host(Some(&self.server_name));
        to
    }
}

impl Resolve for Dial {
    fn resolve(&self, name: Name) -> Resolving {
        // The server name goes to VAULT_ADDR's host; any other name (a redirect to another
        // node) is looked up as usual.
        let lookup = if name.as_str().eq_ignore_ascii_case(&self.server_name) {
            self.host.clone()
        } else {
            Target::Name(name.as_str().to_owned())
        };
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = match lookup {
                // Port 0: the connector puts in the URL's port.
                Target::Ip(ip) => vec![SocketAddr::new(ip, 0)],
                Target::Name(host) => tokio::net::lookup_host((host.as_str(), 0))
                    .await
                    .map_err(|e| io::Error::new(e.kind(), format!("cannot resolve {host}: {e}")))?
                    .collect(),
            };
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// A server name without whitespace; whether it is a DNS name or an IP address is checked
/// when the TLS configuration is built.
pub fn parse_server_name(s: &str) -> Result<String, String> {
    if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "{s:?} contains whitespace; give the dns name in vault's certificate, e.g. vault.example"
        ));
    }
    Ok(s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn only_https_with_a_different_dns_name_is_rerouted() {
        let ip = Dial::for_addr(&url("https://10.0.0.5:8200"), Some("vault.internal")).unwrap();
        assert_eq!(ip.host, Target::Ip("10.0.0.5".parse().unwrap()));
        let v6 = Dial::for_addr(&url("https://[::1]:8200"), Some("vault.internal")).unwrap();
        assert_eq!(v6.host, Target::Ip("::1".parse().unwrap()));
        let name = Dial::for_addr(&url("https://vault-0.vault:8200"), Some("vault.internal"));
        assert_eq!(name.unwrap().host, Target::Name("vault-0.vault".into()));
        assert_eq!(Dial::for_addr(&url("https://10.0.0.5:8200"), None), None);
        assert_eq!(
            Dial::for_addr(&url("http://10.0.0.5:8200"), Some("vault.internal")),
            None
        );
        assert_eq!(
            Dial::for_addr(&url("https://Vault.Internal:8200"), Some("vault.internal")),
            None
        );
        assert_eq!(
            Dial::for_addr(&url("https://vault:8200"), Some("10.0.0.5")),
            None,
            "an IP server name cannot be SNI"
        );
    }

    #[test]
    fn addresses_keep_port_and_path() {
        let d = Dial::for_addr(&url("https://10.0.0.5:8200/prefix"), Some("vault.test")).unwrap();
        assert_eq!(
            d.address(&url("https://10.0.0.5:8200/prefix/v1/sys/health"))
                .as_str(),
            "https://vault.test:8200/prefix/v1/sys/health"
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn the_server_name_resolves_to_the_real_host() {
        let d = Dial::for_addr(&url("https://127.0.0.1:8200"), Some("vault.test")).unwrap();
        let addrs: Vec<_> = d
            .resolve("vault.test".parse().unwrap())
            .await
            .unwrap()
            .collect();
        assert_eq!(addrs, vec!["127.0.0.1:0".parse().unwrap()]);
        let by_name = Dial::for_addr(&url("https://localhost:8200"), Some("vault.test")).unwrap();
        let addrs: Vec<_> = by_name
            .resolve("VAULT.test".parse().unwrap())
            .await
            .unwrap()
            .collect();
        assert!(addrs.iter().all(|a| a.ip().is_loopback()), "{addrs:?}");
        assert!(!addrs.is_empty());
        // Other names resolve as themselves.
        let other: Vec<_> = d
            .resolve("localhost".parse().unwrap())
            .await
            .unwrap()
            .collect();
        assert!(other.iter().all(|a| a.ip().is_loopback()), "{other:?}");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn an_unresolvable_host_is_named() {
        let d = Dial::for_addr(
            &url("https://no-such-host.invalid:8200"),
            Some("vault.test"),
        )
        .unwrap();
        let err = match d.resolve("vault.test".parse().unwrap()).await {
            Ok(_) => panic!("resolved"),
            Err(e) => e.to_string(),
        };
        assert!(err.contains("no-such-host.invalid"), "{err}");
    }
}
