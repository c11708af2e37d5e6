//! The PKI secret engine: a root CA made when the mount is enabled, roles, and `issue/<role>`
//! answering with real X.509 certificates signed by that CA (`openssl verify` accepts them),
//! plus `LIST certs` and `LIST roles`.
//!
//! # What is emulated (checked against OpenBao 2.7.2 by `tests/differential.rs`)
//! - `PUT|POST <mount>/issue/<role>` with `common_name`, `alt_names` and `ip_sans` (comma
//!   strings or lists), `ttl`, `exclude_cn_from_sans`, `private_key_format` and `format`. The
//!   checks come in OpenBao's order, each its own bare 400: the `ttl` field's validation
//!   (`Field validation failed: …`), `unknown role: <role>`, the `format` (`pem`, `der`,
//!   `pem_bundle`), `the common_name field is required, …`, `common name <cn> not allowed by
//!   this role`, `subject alternate name <n> not allowed by this role`, `the value "<ip>" is not
//!   a valid IP address`, `IP Subject Alternative Names are not allowed in this role, but was
//!   provided via the API`. Names are matched case-sensitively against `allowed_domains`
//!   (`allow_subdomains`, also for `*.` wildcards; `allow_bare_domains`), `localhost` and
//!   `localdomain` pass with `allow_localhost`, anything with `allow_any_name`.
//! - The TTL: the request's, else the role's, else the mount default (768 h), capped by the
//!   role's `max_ttl`, else the mount's maximum, with the warning `TTL "<go duration>" is longer
//!   than permitted maxTTL "<go duration>", so maxTTL is being used`. NotBefore is 30 s before
//!   now (the role's `not_before_duration` default), NotAfter now plus the TTL, in whole seconds.
//! - The answer's `data`: `certificate`, `issuing_ca`, `ca_chain` (`[issuing_ca]` under a root
//!   CA), `private_key` (SEC1 `EC PRIVATE KEY`, or `PRIVATE KEY` with
//!   `private_key_format=pkcs8`), `private_key_type`, `serial_number` (20 bytes, colon hex),
//!   `expiration` (NotAfter) and `not_before`, in Unix seconds. PEM as Go writes it: 64-column
//!   lines, LF, no trailing newline. Parameters the endpoint does not know are ignored with
//!   the warning `Endpoint ignored these unrecognized parameters: [a b]`.
//! - `generate_lease=true`: a lease `<mount>/issue/<role>/<24 base62>` (`.<nsid>` in a
//!   namespace), not renewable, `lease_duration` the time to NotAfter in whole seconds.
//! - The certificate: subject `CN=<common_name>`, SANs the common name (unless
//!   `exclude_cn_from_sans`) and `alt_names` as DNS names and `ip_sans`, key usage
//!   DigitalSignature, KeyEncipherment, KeyAgreement, extended key usage server and client
//!   auth, subject and authority key identifiers.
//!
//! # Differences
//! - Keys are ECDSA only (`ec`, 256 or 384 bits): ring, the emulator's crypto, cannot generate
//!   RSA keys, and OpenBao's default `key_type` is `rsa` 2048 (configure the real role with
//!   `key_type=ec` to compare). The CA's key is P-256.
//! - The CA lives 87600 h and the mount's maximum TTL is 87600 h (as after `bao secrets tune
//!   -max-lease-ttl=87600h`); a certificate that would outlive the CA is not refused.
//! - `format=der` and `format=pem_bundle` are not emulated (a 400 saying so).

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::time::SystemTime;

use base64::Engine as _;
use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SerialNumber, SignatureAlgorithm,
};
use serde_json::{json, Map, Value};

use crate::reply::ReadContext;
use crate::reply::{envelope, Envelope, Reply};
use crate::tokens::{go_duration, parse_duration_field, random_base62, random_bytes_vec};
use crate::{PkiKeyType, PkiRole};

/// The mount default TTL (OpenBao's system default, 768 h).
const DEFAULT_TTL_SECS: i64 = 768 * 3600;
/// The mount's maximum TTL and the CA's life: 87600 h, as the README's `secrets tune` sets.
const MAX_TTL_SECS: i64 = 87600 * 3600;
/// How far NotBefore is back-dated (the role's `not_before_duration` default).
const NOT_BEFORE_SECS: i64 = 30;

/// The parameters `issue/<role>` knows (OpenBao's `pathIssue` fields); others are ignored
/// with a warning.
const KNOWN_PARAMS: [&str; 16] = [
    "common_name",
    "alt_names",
    "ip_sans",
    "uri_sans",
    "other_sans",
    "ttl",
    "format",
    "private_key_format",
    "exclude_cn_from_sans",
    "not_after",
    "remove_roots_from_chain",
    "user_ids",
    "serial_number",
    "issuer_ref",
    "cert_metadata",
    "role",
];

/// A PKI mount: its root CA, roles and the serials of every certificate it made.
pub(crate) struct Pki {
    issuer: Issuer<'static, KeyPair>,
    ca_pem: String,
    roles: HashMap<String, PkiRole>,
    /// Every certificate's serial (the CA's too), as `LIST certs` answers them: sorted.
    serials: BTreeSet<String>,
    /// Leaf certificates issued.
    issued: usize,
}

impl Pki {
    /// A mount with a fresh root CA named `common_name`, valid from `now`.
    ///
    /// # Panics
    /// When rcgen cannot make the CA (test support: it only fails on bad parameters).
    pub fn new(common_name: &str, now: SystemTime) -> Pki {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .unwrap_or_else(|e| panic!("vault-emulator: cannot make the PKI CA key: {e}"));
        let (serial, serial_text) = new_serial();
        let mut params = CertificateParams::new(vec![common_name.to_string()])
            .unwrap_or_else(|e| panic!("vault-emulator: bad PKI CA name {common_name:?}: {e}"));
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.serial_number = Some(serial);
        params.use_authority_key_identifier_extension = true;
        let now_s = crate::tokens::unix_secs(now);
        params.not_before = offset_time(now_s - NOT_BEFORE_SECS);
        params.not_after = offset_time(now_s + MAX_TTL_SECS);
        let cert = params
            .self_signed(&key)
            .unwrap_or_else(|e| panic!("vault-emulator: cannot sign the PKI CA: {e}"));
        Pki {
            ca_pem: pem("CERTIFICATE", cert.der()),
            issuer: Issuer::new(params, key),
            roles: HashMap::new(),
            serials: BTreeSet::from([serial_text]),
            issued: 0,
        }
    }

    /// The CA certificate (PEM).
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// Creates or replaces a role.
    pub fn put_role(&mut self, name: &str, role: PkiRole) {
        self.roles.insert(name.to_string(), role);
    }

    /// Leaf certificates issued so far.
    pub fn issued(&self) -> usize {
        self.issued
    }

    /// `LIST certs` / `LIST roles`; `None` for any other path.
    pub fn list(&self, rest: &str) -> Option<Vec<String>> {
        match rest.trim_end_matches('/') {
            "certs" => Some(self.serials.iter().cloned().collect()),
            "roles" => {
                let mut names: Vec<String> = self.roles.keys().cloned().collect();
                names.sort();
                Some(names)
            }
            _ => None,
        }
    }
}

/// What an issue needs to know to answer with a lease.
pub(crate) struct Issued {
    pub data: Map<String, Value>,
    pub warnings: Vec<String>,
    /// NotAfter, Unix seconds (a lease lasts until then).
    pub not_after: i64,
    pub generate_lease: bool,
}

/// Answers `issue/<role_name>` with the request `body`, or the 400 OpenBao gives.
pub(crate) fn issue(
    pki: &mut Pki,
    cx: &ReadContext,
    role_name: &str,
    body: &Map<String, Value>,
) -> Result<Issued, Reply> {
    let requested_ttl = match body.get("ttl") {
        None => 0,
        Some(v) => parse_duration_field("ttl", v).map_err(|m| Reply::error(400, &m))?,
    };
    let Some(role) = pki.roles.get(role_name).cloned() else {
        return Err(Reply::error(400, &format!("unknown role: {role_name}")));
    };
    match text(body.get("format")).as_str() {
        "" | "pem" => {}
        f @ ("der" | "pem_bundle") => {
            return Err(Reply::error(
                400,
                &format!("vault-emulator: format {f:?} is not emulated; use pem"),
            ))
        }
        _ => {
            return Err(Reply::error(
                400,
                "the \"format\" path parameter must be \"pem\", \"der\", or \"pem_bundle\"",
            ))
        }
    }
    let cn = text(body.get("common_name"));
    if cn.is_empty() {
        return Err(Reply::error(400, "the common_name field is required, or must be provided in a CSR with \"use_csr_common_name\" set to true, unless \"require_cn\" is set to false"));
    }
    if !name_allowed(&role, &cn) {
        return Err(Reply::error(
            400,
            &format!("common name {cn} not allowed by this role"),
        ));
    }
    let alt_names = list(body.get("alt_names"));
    if let Some(bad) = alt_names.iter().find(|n| !name_allowed(&role, n)) {
        return Err(Reply::error(
            400,
            &format!("subject alternate name {bad} not allowed by this role"),
        ));
    }
    let mut ips = Vec::new();
    for raw in list(body.get("ip_sans")) {
        match raw.parse::<IpAddr>() {
            Ok(ip) => ips.push(ip),
            Err(_) => {
                return Err(Reply::error(
                    400,
                    &format!("the value {raw:?} is not a valid IP address"),
                ))
            }
        }
    }
    if !ips.is_empty() && !role.allow_ip_sans {
        return Err(Reply::error(
            400,
            "IP Subject Alternative Names are not allowed in this role, but was provided via the API",
        ));
    }
    let mut warnings = Vec::new();
    let ttl = ttl_for(&role, requested_ttl, &mut warnings);
    let mut unknown: Vec<&str> = body
        .keys()
        .map(String::as_str)
        .filter(|k| !KNOWN_PARAMS.contains(k))
        .collect();
    if !unknown.is_empty() {
        unknown.sort_unstable();
        warnings.push(format!(
            "Endpoint ignored these unrecognized parameters: [{}]",
            unknown.join(" ")
        ));
    }
    let mut dns = Vec::new();
    if !flag(body.get("exclude_cn_from_sans")) {
        dns.push(cn.clone());
    }
    for n in alt_names {
        if !dns.contains(&n) {
            dns.push(n);
        }
    }
    let pkcs8 = text(body.get("private_key_format")) == "pkcs8";
    let now_s = crate::tokens::unix_secs(cx.now);
    let leaf = Leaf {
        cn: &cn,
        dns: &dns,
        ips: &ips,
        not_before: now_s - NOT_BEFORE_SECS,
        not_after: now_s + ttl,
    };
    let (cert_pem, key_pem, serial) = sign(pki, &leaf, role.key_type, pkcs8)
        .map_err(|e| Reply::error(500, &format!("vault-emulator: cannot sign: {e}")))?;
    pki.serials.insert(serial.clone());
    pki.issued += 1;
    let mut data = Map::new();
    data.insert("certificate".into(), json!(cert_pem));
    data.insert("issuing_ca".into(), json!(pki.ca_pem));
    data.insert("ca_chain".into(), json!([pki.ca_pem]));
    data.insert("private_key".into(), json!(key_pem));
    data.insert("private_key_type".into(), json!("ec"));
    data.insert("serial_number".into(), json!(serial));
    data.insert("expiration".into(), json!(leaf.not_after));
    data.insert("not_before".into(), json!(leaf.not_before));
    Ok(Issued {
        data,
        warnings,
        not_after: leaf.not_after,
        generate_lease: role.generate_lease,
    })
}

/// The 200 answer for an issue (`lease_id` empty unless the role generates leases).
pub(crate) fn answer(cx: &ReadContext, issued: &Issued, lease_id: &str) -> Reply {
    let now_f = cx
        .now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default();
    let lease_duration = match lease_id.is_empty() {
        true => 0,
        false => (issued.not_after as f64 - now_f).floor().max(0.0) as i64,
    };
    let parts = Envelope {
        lease_id,
        renewable: false,
        lease_duration,
        warnings: &issued.warnings,
        ..Envelope::data(Value::Object(issued.data.clone()), "pki")
    };
    Reply::json(200, envelope(cx.flavour, parts))
}

/// The lease id of an issue at `path` (`<mount>/issue/<role>`).
pub(crate) fn lease_id(path: &str, nsid: Option<&str>) -> String {
    let suffix = nsid.map(|id| format!(".{id}")).unwrap_or_default();
    format!("{path}/{}{suffix}", random_base62(24))
}

/// The effective TTL: requested, role's, mount default; capped by the role's or the mount's
/// maximum with OpenBao's warning.
fn ttl_for(role: &PkiRole, requested: i64, warnings: &mut Vec<String>) -> i64 {
    let secs = |d: std::time::Duration| i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
    let mut ttl = match (requested, secs(role.ttl)) {
        (r, _) if r > 0 => r,
        (_, t) if t > 0 => t,
        _ => DEFAULT_TTL_SECS,
    };
    let max = match secs(role.max_ttl) {
        0 => MAX_TTL_SECS,
        m => m,
    };
    if ttl > max {
        warnings.push(format!(
            "TTL {:?} is longer than permitted maxTTL {:?}, so maxTTL is being used",
            go_duration(ttl),
            go_duration(max)
        ));
        ttl = max;
    }
    ttl
}

/// A string field (numbers and booleans as their text); `""` when absent.
fn text(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

/// A comma-separated string or a list of strings, trimmed, empty items dropped.
fn list(v: Option<&Value>) -> Vec<String> {
    let items: Vec<String> = match v {
        Some(Value::Array(a)) => a.iter().map(|x| text(Some(x))).collect(),
        other => text(other).split(',').map(str::to_string).collect(),
    };
    items
        .into_iter()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// A boolean field: `true`, or a string Go's `strconv.ParseBool` reads as true.
fn flag(v: Option<&Value>) -> bool {
    match v {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => matches!(s.as_str(), "1" | "t" | "T" | "true" | "TRUE" | "True"),
        Some(Value::Number(n)) => n.as_i64().is_some_and(|n| n != 0),
        _ => false,
    }
}

/// A DNS name as `enforce_hostnames` accepts it: labels of letters, digits and inner hyphens,
/// the first label possibly `*`.
fn is_hostname(name: &str) -> bool {
    let labels: Vec<&str> = name.split('.').collect();
    labels.iter().enumerate().all(|(i, l)| {
        (i == 0 && *l == "*" && labels.len() > 1)
            || (!l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
    })
}

/// Whether the role allows `name` as the common name or a DNS SAN.
fn name_allowed(role: &PkiRole, name: &str) -> bool {
    if role.allow_localhost && (name == "localhost" || name == "localdomain") {
        return true;
    }
    if role.allow_any_name {
        return true;
    }
    if !is_hostname(name) {
        return false;
    }
    role.allowed_domains.iter().any(|d| {
        (role.allow_bare_domains && name == d)
            || (role.allow_subdomains
                && name.len() > d.len() + 1
                && name.ends_with(&format!(".{d}")))
    })
}

/// The names and validity of a leaf certificate.
struct Leaf<'a> {
    cn: &'a str,
    dns: &'a [String],
    ips: &'a [IpAddr],
    not_before: i64,
    not_after: i64,
}

type SignResult = Result<(String, String, String), Box<dyn std::error::Error + Send + Sync>>;

/// Makes a key of `key_type` and a certificate for it signed by the mount's CA: (certificate
/// PEM, key PEM, serial).
fn sign(pki: &Pki, leaf: &Leaf, key_type: PkiKeyType, pkcs8: bool) -> SignResult {
    let (alg, curve_oid): (&'static SignatureAlgorithm, &[u8]) = match key_type {
        PkiKeyType::EcP256 => (&rcgen::PKCS_ECDSA_P256_SHA256, &OID_P256),
        PkiKeyType::EcP384 => (&rcgen::PKCS_ECDSA_P384_SHA384, &OID_P384),
    };
    let key = KeyPair::generate_for(alg)?;
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, leaf.cn);
    // The SANs go last, as OpenBao (Go) writes them; rcgen would put its own first.
    if !leaf.dns.is_empty() || !leaf.ips.is_empty() {
        params.custom_extensions = vec![CustomExtension::from_oid_content(
            &[2, 5, 29, 17],
            general_names(leaf.dns, leaf.ips),
        )];
    }
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
        KeyUsagePurpose::KeyAgreement,
    ];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    let (serial, serial_text) = new_serial();
    params.serial_number = Some(serial);
    params.not_before = offset_time(leaf.not_before);
    params.not_after = offset_time(leaf.not_after);
    let cert = params.signed_by(&key, &pki.issuer)?;
    let key_pem = match pkcs8 {
        true => pem("PRIVATE KEY", key.serialized_der()),
        false => pem(
            "EC PRIVATE KEY",
            &sec1_from_pkcs8(key.serialized_der(), curve_oid)?,
        ),
    };
    Ok((pem("CERTIFICATE", cert.der()), key_pem, serial_text))
}

/// The subjectAltName extension's value: `GeneralNames` with each DNS name (`[2]`) and IP
/// address (`[7]`).
fn general_names(dns: &[String], ips: &[IpAddr]) -> Vec<u8> {
    let mut names = Vec::new();
    for n in dns {
        names.extend(der(0x82, n.as_bytes()));
    }
    for ip in ips {
        match ip {
            IpAddr::V4(v4) => names.extend(der(0x87, &v4.octets())),
            IpAddr::V6(v6) => names.extend(der(0x87, &v6.octets())),
        }
    }
    der(0x30, &names)
}

/// A random positive 20-byte serial and its colon-separated hex form.
fn new_serial() -> (SerialNumber, String) {
    let mut bytes = random_bytes_vec(20);
    // Positive, and 20 bytes long in DER: no leading zero byte to strip.
    bytes[0] = (bytes[0] & 0x7f).max(1);
    let text = bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":");
    (SerialNumber::from_slice(&bytes), text)
}

fn offset_time(unix: i64) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp(unix).unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

/// PEM as Go's `pem.EncodeToMemory` writes it, trimmed as OpenBao returns it: 64-column base64
/// lines, LF, no newline after the END line.
pub(crate) fn pem(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----"));
    out
}

/// prime256v1 (1.2.840.10045.3.1.7), DER.
const OID_P256: [u8; 10] = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
/// secp384r1 (1.3.132.0.34), DER.
const OID_P384: [u8; 7] = [0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];

/// One DER element: (tag, contents, the rest of the input).
fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = match first {
        n if n < 0x80 => (usize::from(n), rest),
        0x81 => (usize::from(*rest.first()?), &rest[1..]),
        0x82 => (
            usize::from(*rest.first()?) << 8 | usize::from(*rest.get(1)?),
            rest.get(2..)?,
        ),
        _ => return None,
    };
    let body = rest.get(..len)?;
    Some((tag, body, &rest[len..]))
}

/// A DER element from its tag and contents.
fn der(tag: u8, contents: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    match contents.len() {
        n if n < 0x80 => out.push(n as u8),
        n if n < 0x100 => out.extend([0x81, n as u8]),
        n => out.extend([0x82, (n >> 8) as u8, n as u8]),
    }
    out.extend_from_slice(contents);
    out
}

/// The SEC1 `ECPrivateKey` Go's `x509.MarshalECPrivateKey` writes (with the curve in `[0]`)
/// from ring's PKCS#8 (whose inner key has no `[0]`).
fn sec1_from_pkcs8(pkcs8: &[u8], curve_oid: &[u8]) -> Result<Vec<u8>, String> {
    let bad = || "unexpected PKCS#8 layout from ring".to_string();
    let (_, outer, _) = tlv(pkcs8).ok_or_else(bad)?;
    let (_, _version, rest) = tlv(outer).ok_or_else(bad)?;
    let (_, _algorithm, rest) = tlv(rest).ok_or_else(bad)?;
    let (_, inner, _) = tlv(rest).ok_or_else(bad)?;
    let (_, ec, _) = tlv(inner).ok_or_else(bad)?;
    let (_, _one, rest) = tlv(ec).ok_or_else(bad)?;
    let (_, private, rest) = tlv(rest).ok_or_else(bad)?;
    // What follows is `[0]` (absent from ring's) and `[1]` with the public key.
    let mut rest = rest;
    let mut public = None;
    while let Some((tag, body, next)) = tlv(rest) {
        if tag == 0xa1 {
            public = Some(body);
        }
        rest = next;
    }
    let public = public.ok_or_else(bad)?;
    let mut body = der(0x02, &[1]);
    body.extend(der(0x04, private));
    body.extend(der(0xa0, curve_oid));
    body.extend(der(0xa1, public));
    Ok(der(0x30, &body))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn role() -> PkiRole {
        PkiRole {
            allowed_domains: vec!["shop.svc".into()],
            allow_subdomains: true,
            ..PkiRole::default()
        }
    }

    #[test]
    fn names_are_allowed_as_openbao_allows_them() {
        let r = role();
        assert!(name_allowed(&r, "a.shop.svc"));
        assert!(name_allowed(&r, "*.shop.svc"));
        assert!(name_allowed(&r, "localhost"));
        assert!(!name_allowed(&r, "shop.svc"), "bare domain");
        assert!(!name_allowed(&r, "A.Shop.svc"), "case-sensitive");
        assert!(!name_allowed(&r, "a b.shop.svc"));
        assert!(!name_allowed(&r, "ashop.svc"));
        let bare = PkiRole {
            allow_bare_domains: true,
            ..role()
        };
        assert!(name_allowed(&bare, "shop.svc"));
    }

    #[test]
    fn the_ttl_is_capped_with_openbaos_warning() {
        let mut w = Vec::new();
        let r = PkiRole {
            max_ttl: std::time::Duration::from_secs(72 * 3600),
            ..role()
        };
        assert_eq!(ttl_for(&r, 0, &mut w), 72 * 3600);
        assert_eq!(
            w,
            ["TTL \"768h0m0s\" is longer than permitted maxTTL \"72h0m0s\", so maxTTL is being used"]
        );
        w.clear();
        assert_eq!(ttl_for(&r, 20, &mut w), 20);
        assert!(w.is_empty());
    }

    #[test]
    fn a_sec1_key_carries_its_curve_and_public_key() {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let sec1 = sec1_from_pkcs8(key.serialized_der(), &OID_P256).unwrap();
        // 0x30 0x77: the 119-byte ECPrivateKey OpenBao's P-256 keys are.
        assert_eq!(&sec1[..2], &[0x30, 0x77]);
        assert!(sec1.windows(OID_P256.len()).any(|w| w == OID_P256));
        assert!(sec1.ends_with(key.public_key_raw()));
        let text = pem("EC PRIVATE KEY", &sec1);
        assert!(text.starts_with("-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEI"));
        assert!(text.ends_with("-----END EC PRIVATE KEY-----"));
    }
}
