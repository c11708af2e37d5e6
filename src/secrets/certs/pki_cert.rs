//! consul-template's `pkiCert` over the certificates' lifecycle: what Vault's issue answer and
//! a template's destination file give as `.Cert`, `.Key` and `.CA` (consul-template's reading of
//! PEM blocks: the last private key, the last CA certificate, the last other certificate, each
//! re-encoded as Go's `pem.EncodeToMemory` writes it), and whether the certificate the
//! destination files already hold can be kept instead of issuing one (valid now, naming what is
//! asked for, and any key there matching it). When it is renewed is the machine's.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use zeroize::Zeroizing;

use super::x509::{self, CertInfo};
use crate::secrets::template::PemEncoded;

/// A certificate `pkiCert` returns, with what its leaf says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found {
    /// `.Cert`, `.Key`, `.CA`.
    pub pems: PemEncoded,
    /// The leaf (`.Cert`).
    pub info: CertInfo,
}

/// The blocks of one text, read as consul-template's `pemsCert` reads them.
struct Blocks {
    pems: PemEncoded,
    leaf: Option<CertInfo>,
    /// The public key of `.Key` (an error when the key cannot be read), if there is one.
    key_public: Option<Result<Vec<u8>, x509::X509Error>>,
}

/// Reads the PEM blocks of `text`: a block whose label ends in `PRIVATE KEY` is the key;
/// every other block must be a certificate, a CA (basicConstraints) or the leaf. Later
/// blocks of a kind replace earlier ones, as in consul-template.
fn blocks(text: &str) -> Result<Blocks, String> {
    let all = x509::pem_blocks(text).ok_or("a PEM block is unterminated or not base64")?;
    let mut out = Blocks {
        pems: PemEncoded::default(),
        leaf: None,
        key_public: None,
    };
    for b in all {
        if b.label.ends_with("PRIVATE KEY") {
            out.key_public = Some(x509::public_key_of(&b));
            out.pems.key = x509::pem_encode(&b.label, &b.der);
            continue;
        }
        let info = x509::parse_cert(&b.der).map_err(|e| format!("a {} block: {e}", b.label))?;
        let pem = x509::pem_encode(&b.label, &b.der);
        match info.is_ca {
            true => out.pems.ca = pem,
            false => {
                out.pems.cert = pem;
                out.leaf = Some(info);
            }
        }
    }
    Ok(out)
}

/// What `pkiCert` returns for Vault's issue answer `body`: consul-template joins the answer's
/// string fields (`certificate`, `issuing_ca`, `private_key`, ...; not the `ca_chain` list)
/// and reads their blocks. The key must match the certificate.
pub fn from_answer(body: &[u8]) -> Result<Found, String> {
    let answer: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("the answer is not JSON: {e}"))?;
    let data = answer["data"]
        .as_object()
        .ok_or("the answer has no data (is the path <mount>/issue/<role>?)")?;
    // Go's map order is random; the PEM fields are of distinct kinds, so any order reads the
    // same. Sorted keys keep ours stable.
    let sorted: BTreeMap<&String, &serde_json::Value> = data.iter().collect();
    let mut text = Zeroizing::new(String::new());
    for s in sorted.values().filter_map(|v| v.as_str()) {
        text.push_str(s);
        text.push('\n');
    }
    let read = blocks(&text)?;
    let info = read.leaf.ok_or("the answer holds no certificate")?;
    match read.key_public {
        Some(Ok(k)) if k == info.public_key => {}
        Some(Ok(_)) => return Err("the answer's key does not match its certificate".into()),
        Some(Err(e)) => return Err(format!("the answer's key: {e}")),
        None => {
            return Err("the answer holds no private key (sign/ answers are not supported)".into())
        }
    }
    Ok(Found {
        pems: read.pems,
        info,
    })
}

/// The names a `pkiCert` request asks for: `common_name` and `alt_names` (DNS, compared
/// without case) and `ip_sans`. Values that are not addresses are left to Vault to refuse.
pub fn wanted(params: &BTreeMap<String, String>) -> (Vec<String>, Vec<IpAddr>) {
    let list = |k: &str| -> Vec<String> {
        (params.get(k).into_iter())
            .flat_map(|v| v.split(','))
            .map(|n| n.trim().to_ascii_lowercase())
            .filter(|n| !n.is_empty())
            .collect()
    };
    let mut dns = list("common_name");
    // A common name that is not a host name (`exclude_cn_from_sans`, an e-mail) is not a SAN.
    dns.retain(|n| !n.contains('@'));
    dns.extend(list("alt_names"));
    let ips = (list("ip_sans").iter())
        .filter_map(|ip| ip.parse().ok())
        .collect();
    (dns, ips)
}

/// One destination file as found at start: its bytes and when it was last written.
pub struct Cached {
    /// The file's content.
    pub bytes: Zeroizing<Vec<u8>>,
    /// Its modification time.
    pub modified: SystemTime,
}

/// The certificate the destination `files` of the templates calling one `pkiCert` already
/// hold, if it can be kept: a leaf (the first file's that has one) valid at `now` and naming
/// `dns` and `ips`, any key found in the files matching it. `.Key` and `.CA` are empty when no
/// file holds them, as in consul-template (a template that prints them always holds them).
/// Also when the leaf's file was written (the certificate's life counts from then at the
/// latest). Why not, otherwise.
pub fn cached(
    files: &[Cached],
    dns: &[String],
    ips: &[IpAddr],
    now: SystemTime,
) -> Result<(Found, SystemTime), String> {
    let mut leaf: Option<(PemEncoded, CertInfo, SystemTime)> = None;
    let mut keys = Vec::new();
    let mut ca = String::new();
    for file in files {
        let text = std::str::from_utf8(&file.bytes).map_err(|_| "not text".to_string())?;
        let read = blocks(text)?;
        if let Some(k) = read.key_public {
            keys.push((k, read.pems.key.clone()));
        }
        if ca.is_empty() {
            ca = read.pems.ca.clone();
        }
        if let (None, Some(info)) = (&leaf, read.leaf) {
            leaf = Some((read.pems, info, file.modified));
        }
    }
    let (mut pems, info, modified) = leaf.ok_or("no certificate in the destination")?;
    let mut key = None;
    for (public, pem) in keys {
        match public {
            Ok(p) if p == info.public_key => key = Some(pem),
            Ok(_) => return Err("a key in the destination does not match its certificate".into()),
            Err(e) => return Err(format!("a key in the destination: {e}")),
        }
    }
    if !info.covers(dns, ips) {
        return Err("the certificate does not name every requested name".into());
    }
    let now_secs = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() as i64;
    if info.not_after <= now_secs {
        return Err("the certificate has expired".into());
    }
    pems.key = key.unwrap_or_default();
    pems.ca = ca;
    Ok((Found { pems, info }, modified))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A CA and a leaf it signs for `names`, valid from 2020 to 2050: (ca pem, leaf pem, key
    /// pem in PKCS#8, key pem in SEC1 form).
    fn chain(names: &[&str]) -> (String, String, String) {
        let ca_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut ca = rcgen::CertificateParams::new(vec![]).unwrap();
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(rcgen::DnType::CommonName, "shop.svc");
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca, ca_key);
        let mut leaf =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        leaf.distinguished_name
            .push(rcgen::DnType::CommonName, names[0]);
        leaf.not_before = rcgen::date_time_ymd(2020, 1, 1);
        leaf.not_after = rcgen::date_time_ymd(2050, 1, 1);
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let cert = leaf.signed_by(&key, &issuer).unwrap();
        (ca_cert.pem(), cert.pem(), key.serialize_pem())
    }

    fn answer(ca: &str, cert: &str, key: &str) -> Vec<u8> {
        serde_json::json!({"data": {
            "certificate": cert.trim_end(), "issuing_ca": ca.trim_end(), "private_key": key.trim_end(),
            "private_key_type": "ec", "serial_number": "01:02", "expiration": 2524608000u64,
            "ca_chain": [ca.trim_end()],
        }})
        .to_string()
        .into_bytes()
    }

    fn at(year_secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(year_secs)
    }

    fn file(text: &str) -> Cached {
        Cached {
            bytes: Zeroizing::new(text.as_bytes().to_vec()),
            modified: at(1_700_000_000),
        }
    }

    #[test]
    fn an_answer_gives_the_leaf_its_key_and_the_issuing_ca_as_go_encodes_them() {
        let (ca, cert, key) = chain(&["app.shop.svc"]);
        let found = from_answer(&answer(&ca, &cert, &key)).unwrap();
        assert_eq!(found.pems.cert, cert.replace("\r\n", "\n"));
        assert_eq!(found.pems.key, key.replace("\r\n", "\n"));
        assert_eq!(found.pems.ca, ca.replace("\r\n", "\n"));
        assert!(found.pems.cert.ends_with("-----END CERTIFICATE-----\n"));
        assert_eq!(found.info.common_name.as_deref(), Some("app.shop.svc"));
        // Another certificate's key is refused, as is an answer without a key or data.
        let (_, _, other) = chain(&["app.shop.svc"]);
        let e = from_answer(&answer(&ca, &cert, &other)).unwrap_err();
        assert!(e.contains("does not match"), "{e}");
        let e = from_answer(br#"{"data":{"certificate":""}}"#).unwrap_err();
        assert!(e.contains("no certificate"), "{e}");
        assert!(from_answer(b"{}").unwrap_err().contains("no data"));
        assert!(from_answer(b"<html>").unwrap_err().contains("not JSON"));
    }

    #[test]
    fn a_destination_holding_a_good_certificate_is_kept_with_what_it_holds() {
        let (ca, cert, key) = chain(&["app.shop.svc", "api.shop.svc"]);
        let now = at(1_800_000_000);
        let dns = |n: &[&str]| n.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let want = dns(&["app.shop.svc", "api.shop.svc"]);
        // A file laid out as a template would: text around the blocks.
        let whole = format!("# app\ncert:\n{cert}key:\n{key}ca: {ca}\n");
        let (found, modified) = cached(&[file(&whole)], &want, &[], now).unwrap();
        assert_eq!(modified, at(1_700_000_000));
        assert_eq!(
            (
                found.pems.cert.as_str(),
                found.pems.key.as_str(),
                found.pems.ca.as_str()
            ),
            (cert.as_str(), key.as_str(), ca.as_str())
        );
        // Split over two templates' files (the cert and the key apart): one certificate.
        let split = [file(&cert), file(&format!("{key}{ca}"))];
        let (found, _) = cached(&split, &want, &[], now).unwrap();
        assert_eq!(found.pems.key, key);
        // Only the certificate: kept, the missing fields empty (consul-template's behaviour).
        let (found, _) = cached(&[file(&cert)], &want, &[], now).unwrap();
        assert_eq!((found.pems.key.as_str(), found.pems.ca.as_str()), ("", ""));
    }

    #[test]
    fn a_destination_that_cannot_be_kept_says_why() {
        let (ca, cert, key) = chain(&["app.shop.svc"]);
        let (_, _, other_key) = chain(&["app.shop.svc"]);
        let now = at(1_800_000_000);
        let want = vec!["app.shop.svc".to_string()];
        for (files, why) in [
            (vec![], "no certificate"),
            (vec![file("not pem at all")], "no certificate"),
            (vec![file(&format!("{key}{ca}"))], "no certificate"),
            (vec![file(&format!("{cert}{other_key}"))], "does not match"),
            (
                vec![file("-----BEGIN CERTIFICATE-----\nAAAA")],
                "unterminated",
            ),
            (
                vec![file(
                    "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
                )],
                "CERTIFICATE block",
            ),
        ] {
            let e = cached(&files, &want, &[], now).unwrap_err();
            assert!(e.contains(why), "{why}: {e}");
        }
        let other_names = vec!["other.shop.svc".to_string()];
        let e = cached(&[file(&cert)], &other_names, &[], now).unwrap_err();
        assert!(e.contains("requested name"), "{e}");
        let ip = ["10.0.0.1".parse().unwrap()];
        assert!(cached(&[file(&cert)], &want, &ip, now).is_err());
        let e = cached(&[file(&cert)], &want, &[], at(2_600_000_000)).unwrap_err();
        assert!(e.contains("expired"), "{e}");
    }

    #[test]
    fn the_names_asked_for_come_from_the_request() {
        let params: BTreeMap<String, String> = [
            ("common_name", "App.shop.svc"),
            ("alt_names", "a.shop.svc, b.shop.svc"),
            ("ip_sans", "10.0.0.1,nonsense"),
            ("ttl", "1h"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let (dns, ips) = wanted(&params);
        assert_eq!(dns, ["app.shop.svc", "a.shop.svc", "b.shop.svc"]);
        assert_eq!(ips, ["10.0.0.1".parse::<IpAddr>().unwrap()]);
        assert_eq!(wanted(&BTreeMap::new()), (vec![], vec![]));
    }
}
