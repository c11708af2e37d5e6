//! Just enough X.509 to decide whether a published certificate can be kept: PEM blocks, a
//! minimal DER reader for a certificate's validity, names and public key, and whether a private
//! key belongs to that public key (checked by `ring`, already linked for TLS, which refuses an
//! inconsistent key). Nothing here verifies signatures: the server issued the certificate, and
//! what is decided is only "keep it or ask for a new one".

use crate::duration::days_from_civil;
use std::net::IpAddr;

use base64::Engine as _;
use zeroize::Zeroizing;

/// One PEM block: its label (`CERTIFICATE`, `RSA PRIVATE KEY`, ...) and its DER bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct PemBlock {
    /// The word(s) after `BEGIN`.
    pub label: String,
    /// The decoded bytes, wiped when dropped (a block may be a private key).
    pub der: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for PemBlock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A private key's bytes never reach a log.
        write!(f, "PemBlock({}, {} bytes)", self.label, self.der.len())
    }
}

/// The PEM blocks in `text`, in order; `None` if a block is unterminated or not base64.
pub fn pem_blocks(text: &str) -> Option<Vec<PemBlock>> {
    let mut blocks = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("-----BEGIN ") {
        let after = &rest[start + 11..];
        let label_end = after.find("-----")?;
        let label = after[..label_end].to_string();
        let body = &after[label_end + 5..];
        let end_marker = format!("-----END {label}-----");
        let end = body.find(&end_marker)?;
        let b64: Zeroizing<String> = Zeroizing::new(
            body[..end]
                .chars()
                .filter(|c| !c.is_ascii_whitespace())
                .collect(),
        );
        let der = base64::engine::general_purpose::STANDARD
            .decode(b64.as_bytes())
            .ok()?;
        blocks.push(PemBlock {
            label,
            der: Zeroizing::new(der),
        });
        rest = &body[end + end_marker.len()..];
    }
    Some(blocks)
}

/// `der` as PEM the way Go's `pem.EncodeToMemory` writes it (what consul-template's
/// `pkiCert` fields hold): 64 base64 characters a line, each line and the END line ending in
/// a newline.
pub fn pem_encode(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::with_capacity(b64.len() + b64.len() / 64 + 2 * label.len() + 40);
    out.push_str("-----BEGIN ");
    out.push_str(label);
    out.push_str("-----\n");
    // Base64 is ASCII, so every 64-byte chunk is a whole str.
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END ");
    out.push_str(label);
    out.push_str("-----\n");
    out
}

/// What a certificate says that matters for keeping it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertInfo {
    /// NotBefore, in Unix seconds.
    pub not_before: i64,
    /// NotAfter, in Unix seconds.
    pub not_after: i64,
    /// The subject's common name, if any.
    pub common_name: Option<String>,
    /// The DNS names of the subjectAltName extension.
    pub dns_names: Vec<String>,
    /// The IP addresses of the subjectAltName extension.
    pub ips: Vec<IpAddr>,
    /// The subjectPublicKey bits (RSA: the `RSAPublicKey` DER; EC: the point).
    pub public_key: Vec<u8>,
    /// Whether the subject and issuer names are the same (a self-signed root).
    pub self_issued: bool,
    /// Whether its basicConstraints say it is a CA (Go's `IsCA`).
    pub is_ca: bool,
}

impl CertInfo {
    /// Whether the certificate names `dns` (its SANs or, as Vault adds it, its common name;
    /// compared without case) and every address in `ips`.
    pub fn covers(&self, dns: &[String], ips: &[IpAddr]) -> bool {
        let named = |n: &String| {
            self.dns_names.iter().any(|d| d.eq_ignore_ascii_case(n))
                || self
                    .common_name
                    .as_ref()
                    .is_some_and(|c| c.eq_ignore_ascii_case(n))
        };
        dns.iter().all(named) && ips.iter().all(|ip| self.ips.contains(ip))
    }
}

/// Why a certificate or key cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum X509Error {
    /// Not the DER a certificate must be.
    #[error("not a well-formed X.509 certificate ({0})")]
    Malformed(&'static str),
    /// The key is not one this build can read, or is inconsistent.
    #[error("the private key cannot be read ({0})")]
    BadKey(&'static str),
}

type Res<T> = Result<T, X509Error>;

/// A forward-only DER reader over one level of TLVs.
struct Der<'a> {
    rest: &'a [u8],
}

impl<'a> Der<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Der { rest: bytes }
    }

    fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    fn peek_tag(&self) -> Option<u8> {
        self.rest.first().copied()
    }

    /// The next TLV: its tag and content.
    fn next(&mut self) -> Res<(u8, &'a [u8])> {
        let bad = X509Error::Malformed("truncated DER");
        let (&tag, rest) = self.rest.split_first().ok_or(bad.clone())?;
        let (&first, mut rest) = rest.split_first().ok_or(bad.clone())?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 4 || rest.len() < n {
                return Err(X509Error::Malformed("bad DER length"));
            }
            let len = rest[..n]
                .iter()
                .fold(0usize, |a, b| (a << 8) | usize::from(*b));
            rest = &rest[n..];
            len
        };
        if rest.len() < len {
            return Err(bad);
        }
        let (content, after) = rest.split_at(len);
        self.rest = after;
        Ok((tag, content))
    }

    /// The next TLV, which must have `tag`.
    fn expect(&mut self, tag: u8, what: &'static str) -> Res<&'a [u8]> {
        match self.next()? {
            (t, c) if t == tag => Ok(c),
            _ => Err(X509Error::Malformed(what)),
        }
    }
}

const SEQUENCE: u8 = 0x30;
const OID_COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];
const OID_SUBJECT_ALT_NAME: &[u8] = &[0x55, 0x1d, 0x11];
const OID_BASIC_CONSTRAINTS: &[u8] = &[0x55, 0x1d, 0x13];

/// Parses a DER certificate.
pub fn parse_cert(der: &[u8]) -> Res<CertInfo> {
    let cert = Der::new(der).expect(SEQUENCE, "not a SEQUENCE")?;
    let tbs = Der::new(cert).expect(SEQUENCE, "no tbsCertificate")?;
    let mut t = Der::new(tbs);
    if t.peek_tag() == Some(0xa0) {
        t.next()?; // version
    }
    t.expect(0x02, "no serial number")?;
    t.expect(SEQUENCE, "no signature algorithm")?;
    let issuer = t.expect(SEQUENCE, "no issuer")?;
    let mut validity = Der::new(t.expect(SEQUENCE, "no validity")?);
    let not_before = parse_time(validity.next()?)?;
    let not_after = parse_time(validity.next()?)?;
    let subject = t.expect(SEQUENCE, "no subject")?;
    let mut spki = Der::new(t.expect(SEQUENCE, "no public key")?);
    spki.expect(SEQUENCE, "no public key algorithm")?;
    let bits = spki.expect(0x03, "no public key bits")?;
    let public_key = bits.get(1..).unwrap_or_default().to_vec();
    let mut info = CertInfo {
        not_before,
        not_after,
        common_name: common_name(subject)?,
        dns_names: Vec::new(),
        ips: Vec::new(),
        public_key,
        self_issued: issuer == subject,
        is_ca: false,
    };
    while !t.is_empty() {
        let (tag, content) = t.next()?;
        if tag == 0xa3 {
            read_extensions(content, &mut info)?;
        }
    }
    Ok(info)
}

fn common_name(name: &[u8]) -> Res<Option<String>> {
    let mut rdns = Der::new(name);
    while !rdns.is_empty() {
        let mut set = Der::new(rdns.expect(0x31, "bad name")?);
        while !set.is_empty() {
            let mut atv = Der::new(set.expect(SEQUENCE, "bad name attribute")?);
            let oid = atv.expect(0x06, "bad name attribute type")?;
            let (_, value) = atv.next()?;
            if oid == OID_COMMON_NAME {
                return Ok(Some(String::from_utf8_lossy(value).into_owned()));
            }
        }
    }
    Ok(None)
}

fn read_extensions(content: &[u8], info: &mut CertInfo) -> Res<()> {
    let mut exts = Der::new(Der::new(content).expect(SEQUENCE, "bad extensions")?);
    while !exts.is_empty() {
        let mut ext = Der::new(exts.expect(SEQUENCE, "bad extension")?);
        let oid = ext.expect(0x06, "bad extension id")?;
        if ext.peek_tag() == Some(0x01) {
            ext.next()?; // critical
        }
        let value = ext.expect(0x04, "bad extension value")?;
        if oid == OID_BASIC_CONSTRAINTS {
            // SEQUENCE { cA BOOLEAN DEFAULT FALSE, pathLen INTEGER OPTIONAL }
            let mut bc = Der::new(Der::new(value).expect(SEQUENCE, "bad basicConstraints")?);
            if bc.peek_tag() == Some(0x01) {
                info.is_ca = bc.next()?.1.first().is_some_and(|b| *b != 0);
            }
            continue;
        }
        if oid != OID_SUBJECT_ALT_NAME {
            continue;
        }
        let mut names = Der::new(Der::new(value).expect(SEQUENCE, "bad subjectAltName")?);
        while !names.is_empty() {
            match names.next()? {
                (0x82, dns) => info
                    .dns_names
                    .push(String::from_utf8_lossy(dns).into_owned()),
                (0x87, ip) => {
                    if let Ok(v4) = <[u8; 4]>::try_from(ip) {
                        info.ips.push(IpAddr::from(v4));
                    } else if let Ok(v6) = <[u8; 16]>::try_from(ip) {
                        info.ips.push(IpAddr::from(v6));
                    }
                }
                _ => {}
            }
        }
    }
    Ok(())
}

/// A UTCTime (`YYMMDDHHMMSSZ`) or GeneralizedTime (`YYYYMMDDHHMMSSZ`) as Unix seconds.
fn parse_time((tag, v): (u8, &[u8])) -> Res<i64> {
    let bad = X509Error::Malformed("bad time");
    let digits = |s: &[u8]| -> Res<i64> {
        if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
            return Err(bad.clone());
        }
        Ok(s.iter().fold(0i64, |a, d| a * 10 + i64::from(d - b'0')))
    };
    let (year, rest) = match (tag, v.len()) {
        (0x17, 13) => {
            let yy = digits(&v[..2])?;
            // RFC 5280: UTCTime years 50-99 are 19xx.
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, &v[2..])
        }
        (0x18, 15) => (digits(&v[..4])?, &v[4..]),
        _ => return Err(bad),
    };
    if rest.last() != Some(&b'Z') {
        return Err(bad);
    }
    let field = |i: usize| digits(&rest[i..i + 2]);
    let (month, day) = (field(0)?, field(2)?);
    let (h, m, s) = (field(4)?, field(6)?, field(8)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || h > 23 || m > 59 || s > 60 {
        return Err(bad);
    }
    Ok(days_from_civil(year, month, day) * 86_400 + h * 3600 + m * 60 + s)
}

/// The public key (as in a certificate's subjectPublicKey bits) of a PEM private key: PKCS#1
/// (`RSA PRIVATE KEY`), SEC1 (`EC PRIVATE KEY`, P-256/P-384) or PKCS#8 (`PRIVATE KEY`: RSA,
/// ECDSA, Ed25519), the forms Vault's `private_key_format` gives. `ring` checks the key's
/// consistency, so a damaged key is refused, not compared.
pub fn public_key_of(key: &PemBlock) -> Res<Vec<u8>> {
    use ring::signature::{self, KeyPair};
    match key.label.as_str() {
        "RSA PRIVATE KEY" => signature::RsaKeyPair::from_der(&key.der)
            .map(|k| k.public().as_ref().to_vec())
            .map_err(|_| X509Error::BadKey("RSA key rejected")),
        "EC PRIVATE KEY" => {
            let pkcs8 = sec1_to_pkcs8(&key.der)?;
            ecdsa_public(&pkcs8)
        }
        "PRIVATE KEY" => {
            if let Ok(k) = signature::RsaKeyPair::from_pkcs8(&key.der) {
                return Ok(k.public().as_ref().to_vec());
            }
            if let Ok(k) = signature::Ed25519KeyPair::from_pkcs8_maybe_unchecked(&key.der) {
                return Ok(k.public_key().as_ref().to_vec());
            }
            ecdsa_public(&key.der)
        }
        _ => Err(X509Error::BadKey("not a PEM private key")),
    }
}

fn ecdsa_public(pkcs8: &[u8]) -> Res<Vec<u8>> {
    use ring::signature::{self, KeyPair};
    let rng = ring::rand::SystemRandom::new();
    for alg in [
        &signature::ECDSA_P256_SHA256_ASN1_SIGNING,
        &signature::ECDSA_P384_SHA384_ASN1_SIGNING,
    ] {
        if let Ok(k) = signature::EcdsaKeyPair::from_pkcs8(alg, pkcs8, &rng) {
            return Ok(k.public_key().as_ref().to_vec());
        }
    }
    Err(X509Error::BadKey("unsupported or damaged key"))
}

/// Wraps a SEC1 `ECPrivateKey` in PKCS#8 (the only form `ring` reads), taking the curve from
/// its parameters.
fn sec1_to_pkcs8(sec1: &[u8]) -> Res<Zeroizing<Vec<u8>>> {
    const EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
    let bad = X509Error::BadKey("damaged EC key");
    let mut k = Der::new(
        Der::new(sec1)
            .expect(SEQUENCE, "")
            .map_err(|_| bad.clone())?,
    );
    k.expect(0x02, "").map_err(|_| bad.clone())?;
    k.expect(0x04, "").map_err(|_| bad.clone())?;
    let mut curve = None;
    while !k.is_empty() {
        if let (0xa0, params) = k.next().map_err(|_| bad.clone())? {
            curve = Some(Der::new(params).expect(0x06, "").map_err(|_| bad.clone())?);
        }
    }
    let curve = curve.ok_or(X509Error::BadKey("EC key without its curve"))?;
    let mut alg = tlv(0x06, EC_PUBLIC_KEY);
    alg.extend(tlv(0x06, curve));
    let mut body = tlv(0x02, &[0]);
    body.extend(tlv(SEQUENCE, &alg));
    body.extend(tlv(0x04, sec1));
    Ok(Zeroizing::new(tlv(SEQUENCE, &body)))
}

/// One DER TLV.
fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::duration::civil_from_days;

    fn issued(alg: &'static rcgen::SignatureAlgorithm) -> (String, String) {
        let mut params =
            rcgen::CertificateParams::new(vec!["app.shop.svc".into(), "app".into()]).unwrap();
        params
            .subject_alt_names
            .push(rcgen::SanType::IpAddress("10.0.0.1".parse().unwrap()));
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "app.shop.svc");
        params.not_before = rcgen::date_time_ymd(2030, 1, 2);
        params.not_after = rcgen::date_time_ymd(2051, 3, 4);
        let key = rcgen::KeyPair::generate_for(alg).unwrap();
        let cert = params.self_signed(&key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn reads_validity_names_and_key_of_a_certificate() {
        let (cert, key) = issued(&rcgen::PKCS_ECDSA_P256_SHA256);
        let blocks = pem_blocks(&cert).unwrap();
        let info = parse_cert(&blocks[0].der).unwrap();
        assert_eq!(info.not_before, days_from_civil(2030, 1, 2) * 86_400);
        assert_eq!(info.not_after, days_from_civil(2051, 3, 4) * 86_400);
        assert_eq!(info.common_name.as_deref(), Some("app.shop.svc"));
        assert_eq!(info.dns_names, ["app.shop.svc", "app"]);
        assert_eq!(info.ips, ["10.0.0.1".parse::<IpAddr>().unwrap()]);
        assert!(info.self_issued);
        assert!(!info.is_ca);
        let again = pem_encode("CERTIFICATE", &blocks[0].der);
        assert_eq!(again.trim_end(), cert.trim_end().replace("\r\n", "\n"));
        assert_eq!(pem_blocks(&again).unwrap(), blocks);
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(info.covers(&names(&["APP.shop.svc", "app"]), &[]));
        assert!(!info.covers(&names(&["other.shop.svc"]), &[]));
        assert!(!info.covers(&[], &["10.0.0.2".parse().unwrap()]));
        let key = &pem_blocks(&key).unwrap()[0];
        assert_eq!(key.label, "PRIVATE KEY");
        assert_eq!(public_key_of(key).unwrap(), info.public_key);
        // Another key does not match.
        let (_, other) = issued(&rcgen::PKCS_ECDSA_P256_SHA256);
        let other = &pem_blocks(&other).unwrap()[0];
        assert_ne!(public_key_of(other).unwrap(), info.public_key);
    }

    #[test]
    fn a_ca_is_told_from_a_leaf_by_its_basic_constraints() {
        let mut params = rcgen::CertificateParams::new(vec![]).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let ca = params.self_signed(&key).unwrap();
        assert!(parse_cert(ca.der()).unwrap().is_ca);
        params.is_ca = rcgen::IsCa::ExplicitNoCa;
        let leaf = params.self_signed(&key).unwrap();
        assert!(!parse_cert(leaf.der()).unwrap().is_ca);
    }

    #[test]
    fn a_damaged_key_or_certificate_is_refused_not_panicked_on() {
        let (cert, key) = issued(&rcgen::PKCS_ED25519);
        let cert = &pem_blocks(&cert).unwrap()[0];
        for cut in [0, 1, 10, cert.der.len() / 2, cert.der.len() - 1] {
            assert!(parse_cert(&cert.der[..cut]).is_err(), "cut at {cut}");
        }
        let mut key = pem_blocks(&key).unwrap().remove(0);
        let good = public_key_of(&key).unwrap();
        assert_eq!(good, parse_cert(&cert.der).unwrap().public_key);
        let n = key.der.len();
        key.der.truncate(n - 3);
        assert!(public_key_of(&key).is_err());
        assert!(pem_blocks("-----BEGIN CERTIFICATE-----\nAAA").is_none());
        assert!(pem_blocks("-----BEGIN CERTIFICATE-----\n!!\n-----END CERTIFICATE-----").is_none());
        assert_eq!(pem_blocks("no pem here").unwrap(), vec![]);
    }

    #[test]
    fn civil_dates_round_trip() {
        for days in [-1, 0, 1, 59, 365, 10_957, 20_000, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
    }
}
