//! Certificates from Vault's PKI engine: the `VAULT_LOGIN_CERT_<NAME>` specs
//! (`<mount>/issue/<role>?common_name=…&alt_names=…`), what Vault's issue answer becomes (the
//! directory `<dir>/<name>/` with `tls.crt`, `tls.key` and `ca.crt`, published as one unit by
//! [`crate::files::atomic_dir`]), and whether a certificate already published can be kept
//! (valid for the requested names, its key matching). When to issue is the machine's
//! (`machine::cert_lane`); issuing is the driver's.
//!
//! - `x509`: PEM, a minimal DER reader (validity, names, public key) and the key match.
//! - `pki_cert`: consul-template's `pkiCert` in templates: its `.Cert`/`.Key`/`.CA` from an
//!   issue answer, and the certificate a template's destination already holds, kept if good.

pub mod pki_cert;
pub mod x509;

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use zeroize::Zeroizing;

use crate::files::atomic_dir::{AtomicDir, Entry};
use crate::sensitive::Secret;
use x509::{CertInfo, PemBlock};

/// The prefix of the variables naming certificates.
pub const CERT_ENV_PREFIX: &str = "VAULT_LOGIN_CERT_";
/// The variable setting how long before NotAfter a certificate is renewed at the latest.
pub const CERT_RENEW_BEFORE_ENV: &str = "VAULT_LOGIN_CERT_RENEW_BEFORE";
/// The certificate (leaf, then intermediates).
pub const CERT_FILE: &str = "tls.crt";
/// The private key.
pub const KEY_FILE: &str = "tls.key";
/// The issuing CA (the chain Vault gives).
pub const CA_FILE: &str = "ca.crt";
/// The largest published file read back at start.
const MAX_FILE: u64 = 256 * 1024;

/// One `VAULT_LOGIN_CERT_<NAME>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertSpec {
    /// The variable, for messages.
    pub variable: String,
    /// The directory's name under the secrets directory (`<NAME>` in lower case).
    pub name: String,
    /// The API path of the issue endpoint, e.g. `pki/issue/web`.
    pub path: String,
    /// The role (for hints).
    pub role: String,
    /// The issue request's parameters, in the order given.
    pub params: Vec<(String, String)>,
    /// The DNS names asked for (common name, then `alt_names`).
    pub dns: Vec<String>,
    /// The IP addresses asked for (`ip_sans`).
    pub ips: Vec<IpAddr>,
}

/// The certificates' settings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CertsSettings {
    /// Where each certificate's directory goes (the secrets directory).
    pub dir: PathBuf,
    /// Renew this long before NotAfter at the latest.
    pub renew_before: Option<Duration>,
    /// The certificates, by name.
    pub specs: Vec<CertSpec>,
}

/// A `VAULT_LOGIN_CERT_*` variable that cannot be used: which, and what to do.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{variable}: {problem}")]
pub struct CertSpecError {
    /// The variable.
    pub variable: String,
    /// What is wrong and what to do.
    pub problem: String,
}

fn spec_error(variable: &str, problem: impl Into<String>) -> CertSpecError {
    CertSpecError {
        variable: variable.to_string(),
        problem: problem.into(),
    }
}

const EXAMPLE: &str = "e.g. pki/issue/web?common_name=app.shop.svc&alt_names=app,app.shop";

/// `%XX` escapes and `+` as in a URL's query string.
fn unescape(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

impl CertSpec {
    /// Parses `value` of `variable` (`VAULT_LOGIN_CERT_<NAME>`).
    pub fn parse(variable: &str, value: &str) -> Result<CertSpec, CertSpecError> {
        let raw = variable.strip_prefix(CERT_ENV_PREFIX).unwrap_or_default();
        if raw.is_empty() || !raw.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(spec_error(variable, format!("the name after {CERT_ENV_PREFIX} must be letters, digits and '_' (it becomes the directory's name), e.g. {CERT_ENV_PREFIX}WEB")));
        }
        let (path, query) = value.split_once('?').unwrap_or((value, ""));
        let path = path.trim_start_matches('/');
        let Some((mount, role)) = path.rsplit_once("/issue/") else {
            let problem = match path.rsplit_once("/sign/") {
                Some(_) => format!("{path:?}: sign/<role> (a key made in the pod) is not supported yet; use <mount>/issue/<role>, {EXAMPLE}"),
                None => format!("{path:?} is not <mount>/issue/<role>; {EXAMPLE}"),
            };
            return Err(spec_error(variable, problem));
        };
        let segment_ok = |s: &str| {
            !s.is_empty()
                && s != "."
                && s != ".."
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        };
        if !mount.split('/').all(segment_ok) || !segment_ok(role) {
            return Err(spec_error(variable, format!("{path:?}: the mount and role must be path segments of letters, digits, '-', '_' or '.'; {EXAMPLE}")));
        }
        let mut spec = CertSpec {
            variable: variable.to_string(),
            name: raw.to_ascii_lowercase(),
            path: path.to_string(),
            role: role.to_string(),
            params: Vec::new(),
            dns: Vec::new(),
            ips: Vec::new(),
        };
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            spec.param(pair)?;
        }
        spec.check_names()?;
        Ok(spec)
    }

    /// Takes one `key=value` of the query string in.
    fn param(&mut self, pair: &str) -> Result<(), CertSpecError> {
        let v = &self.variable;
        let (k, val) = pair.split_once('=').ok_or_else(|| {
            spec_error(
                v,
                format!("{pair:?} has no '='; give key=value pairs, {EXAMPLE}"),
            )
        })?;
        let (Some(k), Some(val)) = (unescape(k), unescape(val)) else {
            return Err(spec_error(v, format!("{pair:?} has a bad %-escape")));
        };
        if k.is_empty() || !k.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
            return Err(spec_error(v, format!("{k:?} is not a parameter name (lower case and '_', as in `bao write pki/issue/<role> common_name=…`)")));
        }
        if val.is_empty() {
            return Err(spec_error(
                v,
                format!("{k} is empty; give a value or leave it out"),
            ));
        }
        if self.params.iter().any(|(p, _)| *p == k) {
            return Err(spec_error(
                v,
                format!("{k} is given twice; give it once (lists are comma-separated)"),
            ));
        }
        match k.as_str() {
            "common_name" => self.dns.insert(0, val.to_ascii_lowercase()),
            "alt_names" => (self.dns).extend(val.split(',').map(|n| n.trim().to_ascii_lowercase())),
            "ip_sans" => {
                for ip in val.split(',') {
                    let parsed = ip.trim().parse().map_err(|_| {
                        spec_error(v, format!("ip_sans: {ip:?} is not an IP address"))
                    })?;
                    self.ips.push(parsed);
                }
            }
            "ttl" => {
                crate::duration::parse_duration(&val)
                    .map_err(|e| spec_error(v, format!("ttl: {e}")))?;
            }
            "format" if val != "pem" => {
                return Err(spec_error(v, format!("format={val}: vault-login publishes PEM files; leave format out or give format=pem")));
            }
            "private_key_format" if val != "der" && val != "pkcs8" => {
                return Err(spec_error(
                    v,
                    format!(
                        "private_key_format={val}: give der (the key type's own PEM form) or pkcs8"
                    ),
                ));
            }
            _ => {}
        }
        self.params.push((k, val));
        Ok(())
    }

    fn check_names(&self) -> Result<(), CertSpecError> {
        let v = &self.variable;
        if !self.params.iter().any(|(k, _)| k == "common_name") {
            return Err(spec_error(
                v,
                format!("no common_name; the role needs one, {EXAMPLE}"),
            ));
        }
        for n in &self.dns {
            let ok = !n.is_empty()
                && n.split('.').all(|l| {
                    !l.is_empty()
                        && l.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"-_*".contains(&b))
                });
            if !ok {
                return Err(spec_error(v, format!("{n:?} is not a DNS name")));
            }
        }
        Ok(())
    }

    /// The issue request's JSON body.
    pub fn body(&self) -> serde_json::Value {
        let map = (self.params.iter())
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
            .collect();
        serde_json::Value::Object(map)
    }
}

/// The `VAULT_LOGIN_CERT_<NAME>` specs among the environment's variable `names`, by name.
pub fn specs_from_env(
    names: &[String],
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<CertSpec>, CertSpecError> {
    let mut variables: Vec<&String> = (names.iter())
        .filter(|n| n.starts_with(CERT_ENV_PREFIX) && *n != CERT_RENEW_BEFORE_ENV)
        .collect();
    variables.sort();
    variables.dedup();
    let mut specs: Vec<CertSpec> = Vec::new();
    for variable in variables {
        let Some(value) = env(variable).filter(|v| !v.is_empty()) else {
            continue;
        };
        specs.push(CertSpec::parse(variable, &value)?);
    }
    Ok(specs)
}

/// A certificate as Vault issued it, ready to publish.
pub struct Bundle {
    /// `tls.crt`: the leaf, then the intermediates of the chain.
    pub cert: String,
    /// `tls.key`.
    pub key: Secret,
    /// `ca.crt`: the chain Vault gives (`ca_chain`, else `issuing_ca`).
    pub ca: String,
    /// What the leaf says.
    pub info: CertInfo,
    /// Its serial number, for logs.
    pub serial: String,
    /// The lease (`generate_lease=true`), which is not renewable.
    pub lease_id: Option<String>,
}

impl std::fmt::Debug for Bundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bundle")
            .field("serial", &self.serial)
            .field("key", &"...")
            .finish_non_exhaustive()
    }
}

/// Reads Vault's issue answer (`data.certificate`, `private_key`, `issuing_ca`, `ca_chain`).
pub fn bundle_from_answer(body: &[u8]) -> Result<Bundle, String> {
    let v: Zeroizing<Vec<u8>> = Zeroizing::new(body.to_vec());
    let answer: serde_json::Value =
        serde_json::from_slice(&v).map_err(|e| format!("the answer is not JSON: {e}"))?;
    let data = &answer["data"];
    let field = |k: &str| data[k].as_str().filter(|s| !s.is_empty());
    let leaf = field("certificate").ok_or("the answer has no data.certificate")?;
    let key = field("private_key")
        .ok_or("the answer has no data.private_key (sign/ answers are not supported)")?;
    let leaf_blocks = x509::pem_blocks(leaf).ok_or("data.certificate is not PEM")?;
    let leaf_der = (leaf_blocks.first())
        .filter(|b| b.label == "CERTIFICATE")
        .ok_or("data.certificate holds no certificate")?;
    let info = x509::parse_cert(&leaf_der.der).map_err(|e| format!("data.certificate: {e}"))?;
    let key_blocks = x509::pem_blocks(key).ok_or("data.private_key is not PEM")?;
    let key_block = key_blocks.first().ok_or("data.private_key holds no key")?;
    let public = x509::public_key_of(key_block).map_err(|e| format!("data.private_key: {e}"))?;
    if public != info.public_key {
        return Err("data.private_key does not match data.certificate".into());
    }
    let chain: Vec<&str> = (data["ca_chain"].as_array().into_iter().flatten())
        .filter_map(|c| c.as_str())
        .collect();
    let mut cert = pem_line(leaf);
    for c in &chain {
        // Intermediates only: a root in tls.crt is ignored by clients at best.
        let root = (x509::pem_blocks(c).unwrap_or_default().first())
            .and_then(|b| x509::parse_cert(&b.der).ok())
            .is_none_or(|i| i.self_issued);
        if !root {
            cert.push_str(&pem_line(c));
        }
    }
    let ca = match chain.is_empty() {
        false => chain.iter().map(|c| pem_line(c)).collect(),
        true => {
            pem_line(field("issuing_ca").ok_or("the answer has neither ca_chain nor issuing_ca")?)
        }
    };
    let lease_id = answer["lease_id"]
        .as_str()
        .filter(|s| !s.is_empty())
        .map(String::from);
    Ok(Bundle {
        cert,
        key: Secret::new(pem_line(key)),
        ca,
        info,
        serial: field("serial_number").unwrap_or_default().to_string(),
        lease_id,
    })
}

/// `pem` ending in one newline.
fn pem_line(pem: &str) -> String {
    format!("{}\n", pem.trim_end())
}

/// The modes of the published files for the token file's `mode`: the certificates as the
/// token file; the key never world-readable.
pub fn modes(mode: u32) -> (u32, u32) {
    (mode, mode & !0o007)
}

/// Publishes `bundle` into `dir` as one generation, at `at`.
pub fn publish(dir: &AtomicDir, bundle: &Bundle, mode: u32, at: SystemTime) -> Result<(), String> {
    let (public, key) = modes(mode);
    let entries = [
        Entry {
            name: CERT_FILE,
            bytes: bundle.cert.as_bytes(),
            mode: public,
        },
        Entry {
            name: KEY_FILE,
            bytes: bundle.key.expose().as_bytes(),
            mode: key,
        },
        Entry {
            name: CA_FILE,
            bytes: bundle.ca.as_bytes(),
            mode: public,
        },
    ];
    dir.publish(&entries, at).map_err(|e| e.to_string())
}

/// A certificate a previous run published and that can be kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Published {
    /// When it was published (its generation's name).
    pub at: SystemTime,
    /// What it says.
    pub info: CertInfo,
}

/// Whether the certificate published in `dir` can be kept for `spec`: readable, valid now,
/// naming every requested name, and its key matching. Why not, otherwise.
pub fn check_published(
    dir: &AtomicDir,
    spec: &CertSpec,
    now: SystemTime,
) -> Result<Published, String> {
    let (cert, at) = dir.read(CERT_FILE, MAX_FILE)?;
    let (key, _) = dir.read(KEY_FILE, MAX_FILE)?;
    let key = Zeroizing::new(key);
    let cert = String::from_utf8(cert).map_err(|_| "tls.crt is not text".to_string())?;
    let first = (x509::pem_blocks(&cert).unwrap_or_default().into_iter())
        .find(|b| b.label == "CERTIFICATE")
        .ok_or("tls.crt holds no certificate")?;
    let info = x509::parse_cert(&first.der).map_err(|e| format!("tls.crt: {e}"))?;
    let key_text = std::str::from_utf8(&key).map_err(|_| "tls.key is not text".to_string())?;
    let key_block: PemBlock = (x509::pem_blocks(key_text).unwrap_or_default().into_iter())
        .next()
        .ok_or("tls.key holds no key")?;
    let public = x509::public_key_of(&key_block).map_err(|e| format!("tls.key: {e}"))?;
    if public != info.public_key {
        return Err("tls.key does not match tls.crt".into());
    }
    if !info.covers(&spec.dns, &spec.ips) {
        return Err("the certificate does not name every requested name".into());
    }
    let now_secs = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() as i64;
    if info.not_after <= now_secs {
        return Err("the certificate has expired".into());
    }
    Ok(Published { at, info })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(value: &str) -> Result<CertSpec, String> {
        CertSpec::parse("VAULT_LOGIN_CERT_WEB", value).map_err(|e| e.to_string())
    }

    #[test]
    fn the_contract_parses_into_the_issue_request() {
        let s = parse("pki/issue/web?common_name=App.shop.svc&alt_names=app,app.shop&ip_sans=10.0.0.1,::1&ttl=24h&exclude_cn_from_sans=false").unwrap();
        assert_eq!(
            (s.name.as_str(), s.path.as_str(), s.role.as_str()),
            ("web", "pki/issue/web", "web")
        );
        assert_eq!(s.dns, ["app.shop.svc", "app", "app.shop"]);
        assert_eq!(
            s.ips,
            [
                "10.0.0.1".parse::<IpAddr>().unwrap(),
                "::1".parse().unwrap()
            ]
        );
        assert_eq!(
            s.body(),
            serde_json::json!({"common_name": "App.shop.svc", "alt_names": "app,app.shop",
                "ip_sans": "10.0.0.1,::1", "ttl": "24h", "exclude_cn_from_sans": "false"})
        );
        let nested = parse("/teams/pki_int/issue/web.v2?common_name=a%2Eb.svc").unwrap();
        assert_eq!(nested.path, "teams/pki_int/issue/web.v2");
        assert_eq!(nested.dns, ["a.b.svc"]);
    }

    #[test]
    fn bad_parameters_are_one_line_errors_naming_the_variable() {
        for (value, needle) in [
            ("pki/issue/web", "no common_name"),
            ("pki/sign/web?common_name=a", "sign/<role>"),
            ("pki/roles/web?common_name=a", "not <mount>/issue/<role>"),
            ("pki/issue/?common_name=a", "path segments"),
            ("pki/../issue/web?common_name=a", "path segments"),
            ("pki/issue/web?common_name=a&ttl=soon", "ttl:"),
            (
                "pki/issue/web?common_name=a&ip_sans=10.0.0",
                "not an IP address",
            ),
            ("pki/issue/web?common_name=a&common_name=b", "given twice"),
            ("pki/issue/web?common_name=", "empty"),
            ("pki/issue/web?common_name", "no '='"),
            ("pki/issue/web?common_name=a&format=der", "format=der"),
            (
                "pki/issue/web?common_name=a&private_key_format=raw",
                "private_key_format",
            ),
            ("pki/issue/web?common_name=a%zz", "%-escape"),
            ("pki/issue/web?Common=a", "not a parameter name"),
            ("pki/issue/web?common_name=a b", "not a DNS name"),
        ] {
            let e = parse(value).unwrap_err();
            assert!(
                e.starts_with("VAULT_LOGIN_CERT_WEB: ") && e.contains(needle),
                "{value}: {e}"
            );
            assert!(!e.contains('\n'), "{e}");
        }
        let e = CertSpec::parse("VAULT_LOGIN_CERT_", "pki/issue/web?common_name=a").unwrap_err();
        assert!(e.problem.contains("letters, digits"));
    }

    #[test]
    fn the_renew_before_setting_is_not_a_certificate() {
        let names = vec![
            "VAULT_LOGIN_CERT_RENEW_BEFORE".to_string(),
            "VAULT_LOGIN_CERT_WEB".to_string(),
            "VAULT_LOGIN_CERT_API".to_string(),
        ];
        let env = |n: &str| match n {
            "VAULT_LOGIN_CERT_RENEW_BEFORE" => Some("1h".to_string()),
            _ => Some("pki/issue/web?common_name=a.svc".to_string()),
        };
        let specs = specs_from_env(&names, &env).unwrap();
        let names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["api", "web"]);
    }

    #[test]
    fn modes_never_make_the_key_world_readable() {
        assert_eq!(modes(0o644), (0o644, 0o640));
        assert_eq!(modes(0o600), (0o600, 0o600));
        assert_eq!(modes(0o777), (0o777, 0o770));
    }
}
