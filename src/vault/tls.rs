//! TLS client configuration for talking to Vault, and plain-language descriptions of transport errors.
//!
//! The settings mirror the `vault` CLI: `VAULT_CACERT`, `VAULT_CAPATH`, `VAULT_CLIENT_CERT`,
//! `VAULT_CLIENT_KEY`, `VAULT_TLS_SERVER_NAME` and `VAULT_SKIP_VERIFY`. The result is a
//! [`rustls::ClientConfig`] built on the ring provider, for `reqwest::ClientBuilder::use_preconfigured_tls`.
//!
//! `VAULT_TLS_SERVER_NAME` is the name Vault's certificate is checked against, here, and the SNI,
//! through [`crate::vault::server_name`], which addresses requests to it while connecting to `VAULT_ADDR`'s
//! host — as the `vault` CLI does. An IP address given as the server name cannot be SNI: then only
//! the certificate check uses it. The check here also covers redirects to other nodes.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    AlertDescription, CertificateError, ClientConfig, DigitallySignedStruct, DistinguishedName,
    RootCertStore, SignatureScheme,
};

use tracing::warn;

/// A TLS setting that cannot be turned into a client configuration.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A configured file or directory could not be read.
    #[error("{setting}: cannot read {path:?}: {source}; check the path and its permissions")]
    Read {
        /// The environment variable that named the path.
        setting: &'static str,
        /// The file or directory that could not be read.
        path: PathBuf,
        /// Why reading failed.
        #[source]
        source: io::Error,
    },

    /// A file is not well-formed PEM.
    #[error("{setting}: {path:?} is not valid PEM ({source}); expected -----BEGIN ...----- / -----END ...----- blocks")]
    Pem {
        /// The environment variable that named the file.
        setting: &'static str,
        /// The malformed file.
        path: PathBuf,
        /// What the PEM parser rejected.
        #[source]
        source: rustls::pki_types::pem::Error,
    },

    /// A file that must hold certificates holds none.
    #[error(
        "{setting}: {path:?} contains no PEM certificate (expected -----BEGIN CERTIFICATE-----)"
    )]
    NoCertificate {
        /// The environment variable that named the file.
        setting: &'static str,
        /// The file without certificates.
        path: PathBuf,
    },

    /// A certificate in a CA file cannot be used as a trust anchor.
    #[error("{setting}: certificate #{index} in {path:?} is not a usable CA certificate ({source}); replace it with the PEM of the CA that signed Vault's certificate")]
    BadCaCertificate {
        /// The environment variable that named the file or its directory.
        setting: &'static str,
        /// The file holding the bad certificate.
        path: PathBuf,
        /// Position of the certificate in the file, counting from 1.
        index: usize,
        /// Why the certificate was rejected.
        #[source]
        source: rustls::Error,
    },

    /// The CA directory holds no certificate in any of its files.
    #[error("{setting}: directory {path:?} holds no PEM certificate file; put the CA certificates there or leave out {setting}")]
    EmptyCaPath {
        /// The flag or variable that named the directory.
        setting: &'static str,
        /// The directory without certificates.
        path: PathBuf,
    },

    /// The client key file holds no private key that we understand.
    #[error("{setting}: {path:?} contains no private key (expected -----BEGIN PRIVATE KEY-----, RSA PRIVATE KEY or EC PRIVATE KEY; encrypted keys are not supported)")]
    NoPrivateKey {
        /// The flag or variable that named the key file.
        setting: &'static str,
        /// The key file.
        path: PathBuf,
    },

    /// The client certificate and key were read but rustls refused them as a pair.
    #[error("{pair} ({source}); check that the key belongs to the certificate")]
    ClientIdentity {
        /// The settings and files, e.g. `VAULT_CLIENT_CERT/BAO_CLIENT_KEY: cannot use "c.pem"
        /// with "k.pem"` (one boxed string keeps the error small).
        pair: Box<str>,
        /// Why rustls refused them.
        #[source]
        source: rustls::Error,
    },

    /// Only one half of the client certificate pair is set.
    #[error("{set} is set but {missing} is not; set both for client-certificate authentication, or neither")]
    IncompleteClientIdentity {
        /// The variable that is set.
        set: &'static str,
        /// The variable that is missing.
        missing: &'static str,
    },

    /// The server-name override is neither a DNS name nor an IP address.
    #[error("{setting}: {name:?} is not a valid DNS name or IP address")]
    ServerName {
        /// The flag or variable that gave the name.
        setting: &'static str,
        /// The rejected name.
        name: String,
    },

    /// rustls refused the provider or verifier setup (not expected with the ring provider).
    #[error("tls: cannot build the client configuration: {0}")]
    Setup(String),
}

/// Tells whether the settings turn certificate verification off (`VAULT_SKIP_VERIFY`).
pub fn is_insecure(settings: &TlsSettings) -> bool {
    settings.skip_verify
}

/// Builds the rustls client configuration for talking to Vault.
pub fn client_config(settings: &TlsSettings) -> Result<ClientConfig, TlsError> {
    let identity = client_identity(settings)?;
    let server_name = settings
        .server_name
        .as_deref()
        .map(|name| {
            ServerName::try_from(name.to_owned()).map_err(|_| TlsError::ServerName {
                setting: settings.names.server_name,
                name: name.to_owned(),
            })
        })
        .transpose()?;
    // Loaded even when verification is off, like the vault CLI: a broken CA setting is reported, not hidden.
    let roots = Arc::new(root_store(settings)?);

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Setup(e.to_string()))?;

    let builder = if settings.skip_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate {
                algorithms: provider.signature_verification_algorithms,
            }))
    } else {
        let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
            .build()
            .map_err(|e| TlsError::Setup(e.to_string()))?;
        match server_name {
            Some(name) => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(OverrideServerName {
                    inner: webpki,
                    name,
                })),
            None => builder.with_webpki_verifier(webpki),
        }
    };

    let mut config = match identity {
        Some(identity) => builder
            .with_client_auth_cert(identity.chain, identity.key)
            .map_err(|source| TlsError::ClientIdentity {
                pair: format!(
                    "{}/{}: cannot use {:?} with {:?}",
                    settings.names.client_cert,
                    settings.names.client_key,
                    identity.cert_path,
                    identity.key_path
                )
                .into(),
                source,
            })?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Every `CERTIFICATE` block of PEM text; other blocks and text around them are ignored.
fn pem_certificates(
    pem: &[u8],
) -> Result<Vec<CertificateDer<'static>>, rustls::pki_types::pem::Error> {
    CertificateDer::pem_slice_iter(pem).collect()
}

/// How many `CERTIFICATE` blocks the PEM text holds (at least one), for `VAULT_CACERT_BYTES`.
pub fn count_pem_certificates(pem: &str) -> Result<usize, String> {
    let certs = pem_certificates(pem.as_bytes())
        .map_err(|e| format!("not valid PEM ({e}); give the CA certificates' PEM text"))?;
    if certs.is_empty() {
        return Err("holds no PEM certificate; give the CA certificates' PEM text, -----BEGIN CERTIFICATE----- included".into());
    }
    Ok(certs.len())
}

/// The trust anchors. As in the `vault` CLI (go-rootcerts), the first CA setting given decides:
/// the CA file, else the PEM text of `VAULT_CACERT_BYTES`, else the CA directory; with none, the
/// public web PKI.
fn root_store(settings: &TlsSettings) -> Result<RootCertStore, TlsError> {
    let n = &settings.names;
    let mut roots = RootCertStore::empty();
    if let Some(file) = &settings.ca_cert {
        for (set, ignored) in [
            (settings.ca_cert_bytes.is_some(), n.ca_cert_bytes),
            (settings.ca_path.is_some(), n.ca_path),
        ] {
            if set {
                warn!(
                    "{ignored} is ignored: {} takes precedence, as in the vault CLI",
                    n.ca_cert
                );
            }
        }
        let certs = read_certificates(n.ca_cert, file)?;
        if certs.is_empty() {
            return Err(TlsError::NoCertificate {
                setting: n.ca_cert,
                path: file.clone(),
            });
        }
        add_anchors(&mut roots, n.ca_cert, file, certs)?;
    } else if let Some(pem) = &settings.ca_cert_bytes {
        if settings.ca_path.is_some() {
            warn!(
                "{} is ignored: {} takes precedence, as in the vault CLI",
                n.ca_path, n.ca_cert_bytes
            );
        }
        let certs = pem_certificates(pem.as_bytes()).map_err(|source| TlsError::Pem {
            setting: n.ca_cert_bytes,
            path: PathBuf::from("(environment)"),
            source,
        })?;
        add_anchors(
            &mut roots,
            n.ca_cert_bytes,
            Path::new("(environment)"),
            certs,
        )?;
    } else if let Some(dir) = &settings.ca_path {
        add_ca_dir(&mut roots, dir, n)?;
    } else {
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    }
    Ok(roots)
}

/// Adds every certificate in the regular files of `dir` (symlinks followed, subdirectories ignored).
fn add_ca_dir(roots: &mut RootCertStore, dir: &Path, n: &TlsNames) -> Result<(), TlsError> {
    let read_err = |source| TlsError::Read {
        setting: n.ca_path,
        path: dir.to_path_buf(),
        source,
    };
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).map_err(read_err)? {
        let path = entry.map_err(read_err)?.path();
        // fs::metadata follows symlinks, so the `..data/...` links of a mounted ConfigMap count as files;
        // a dangling link is not a regular file and is skipped like a subdirectory.
        if fs::metadata(&path).is_ok_and(|m| m.is_file()) {
            files.push(path);
        }
    }
    // Sorted so that an error always names the same file.
    files.sort();

    let mut found = 0;
    for file in files {
        let certs = read_certificates(n.ca_path, &file)?;
        found += certs.len();
        add_anchors(roots, n.ca_path, &file, certs)?;
    }
    if found == 0 {
        return Err(TlsError::EmptyCaPath {
            setting: n.ca_path,
            path: dir.to_path_buf(),
        });
    }
    Ok(())
}

fn add_anchors(
    roots: &mut RootCertStore,
    setting: &'static str,
    path: &Path,
    certs: Vec<CertificateDer<'static>>,
) -> Result<(), TlsError> {
    for (i, cert) in certs.into_iter().enumerate() {
        roots
            .add(cert)
            .map_err(|source| TlsError::BadCaCertificate {
                setting,
                path: path.to_path_buf(),
                index: i + 1,
                source,
            })?;
    }
    Ok(())
}

/// Reads every `CERTIFICATE` block of a PEM file; other blocks and text around them are ignored.
fn read_certificates(
    setting: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = fs::read(path).map_err(|source| TlsError::Read {
        setting,
        path: path.to_path_buf(),
        source,
    })?;
    pem_certificates(&pem).map_err(|source| TlsError::Pem {
        setting,
        path: path.to_path_buf(),
        source,
    })
}

/// A client certificate chain with its key, and the files they came from.
struct ClientIdentity {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    cert_path: PathBuf,
    key_path: PathBuf,
}

fn client_identity(settings: &TlsSettings) -> Result<Option<ClientIdentity>, TlsError> {
    let n = &settings.names;
    let (cert_path, key_path) = match (&settings.client_cert, &settings.client_key) {
        (None, None) => return Ok(None),
        (Some(_), None) => {
            return Err(TlsError::IncompleteClientIdentity {
                set: n.client_cert,
                missing: n.client_key,
            })
        }
        (None, Some(_)) => {
            return Err(TlsError::IncompleteClientIdentity {
                set: n.client_key,
                missing: n.client_cert,
            })
        }
        (Some(cert), Some(key)) => (cert.clone(), key.clone()),
    };

    let chain = read_certificates(n.client_cert, &cert_path)?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            setting: n.client_cert,
            path: cert_path,
        });
    }

    let pem = fs::read(&key_path).map_err(|source| TlsError::Read {
        setting: n.client_key,
        path: key_path.clone(),
        source,
    })?;
    // Accepts PKCS#8, PKCS#1 (RSA) and SEC1 (EC): the first key block of any of those kinds wins.
    let key = match PrivateKeyDer::from_pem_slice(&pem) {
        Ok(key) => key,
        Err(rustls::pki_types::pem::Error::NoItemsFound) => {
            return Err(TlsError::NoPrivateKey {
                setting: n.client_key,
                path: key_path,
            })
        }
        Err(source) => {
            return Err(TlsError::Pem {
                setting: n.client_key,
                path: key_path,
                source,
            })
        }
    };

    Ok(Some(ClientIdentity {
        chain,
        key,
        cert_path,
        key_path,
    }))
}

/// Verifies the server's certificate as usual, but against `VAULT_TLS_SERVER_NAME` instead of the URL's host.
#[derive(Debug)]
struct OverrideServerName {
    inner: Arc<WebPkiServerVerifier>,
    name: ServerName<'static>,
}

impl ServerCertVerifier for OverrideServerName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.inner
            .verify_server_cert(end_entity, intermediates, &self.name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }

    fn root_hint_subjects(&self) -> Option<&[DistinguishedName]> {
        self.inner.root_hint_subjects()
    }
}

/// `VAULT_SKIP_VERIFY`: accepts any certificate, but still checks that the server holds its key.
#[derive(Debug)]
struct AcceptAnyCertificate {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// Describes a failed request in one line, naming the innermost cause and, where we know it, the fix.
pub fn describe_error(err: &reqwest::Error) -> String {
    describe(err, err.is_timeout())
}

fn describe(err: &(dyn std::error::Error + 'static), timed_out: bool) -> String {
    let chain = causes(err);

    if let Some(tls) = chain
        .iter()
        .rev()
        .find_map(|e| e.downcast_ref::<rustls::Error>())
    {
        return describe_rustls(tls);
    }
    if timed_out {
        return "timed out".to_owned();
    }
    for e in chain.iter().rev() {
        if let Some(io) = e.downcast_ref::<io::Error>() {
            match io.kind() {
                io::ErrorKind::ConnectionRefused => return "connection refused".to_owned(),
                io::ErrorKind::TimedOut => return "timed out".to_owned(),
                io::ErrorKind::ConnectionReset => return "connection reset by peer".to_owned(),
                _ => {}
            }
        }
    }

    let messages = messages(&chain);
    let innermost = messages.last().cloned().unwrap_or_default();
    let all = messages.join(": ");
    // Fallbacks on the rendered text, for causes that arrive without their typed error.
    if all.contains("UnknownIssuer") {
        return format!("tls: certificate not trusted (UnknownIssuer): {HINT_CA}");
    }
    if all.contains("NotValidForName") || all.contains("not valid for name") {
        return format!("tls: certificate not valid for this host ({innermost}): {HINT_NAME}");
    }
    if all.contains("onnection refused") {
        return "connection refused".to_owned();
    }
    if all.contains("timed out") {
        return "timed out".to_owned();
    }
    if all.contains("dns error") {
        return format!("dns lookup failed ({innermost}): check the host in VAULT_ADDR");
    }
    all
}

const HINT_CA: &str = "set VAULT_CACERT to the CA that signed Vault's certificate";
const HINT_NAME: &str =
    "put a name from Vault's certificate in VAULT_ADDR, or set VAULT_TLS_SERVER_NAME to one";
const HINT_CLIENT: &str = "Vault may require a client certificate: set VAULT_CLIENT_CERT and VAULT_CLIENT_KEY to one it trusts";

fn describe_rustls(err: &rustls::Error) -> String {
    match err {
        rustls::Error::InvalidCertificate(cert) => {
            let detail = cert_detail(cert);
            match cert {
                CertificateError::UnknownIssuer => {
                    format!("tls: certificate not trusted ({detail}): {HINT_CA}")
                }
                CertificateError::BadSignature => {
                    format!("tls: certificate signature does not match the trusted CA ({detail}): {HINT_CA}")
                }
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                    format!("tls: certificate not valid for this host ({detail}): {HINT_NAME}")
                }
                CertificateError::Expired
                | CertificateError::ExpiredContext { .. }
                | CertificateError::NotValidYet
                | CertificateError::NotValidYetContext { .. } => format!(
                    "tls: certificate expired or not yet valid ({detail}): renew Vault's certificate or check this machine's clock"
                ),
                _ => format!("tls: invalid server certificate ({detail})"),
            }
        }
        rustls::Error::AlertReceived(alert) => match alert {
            AlertDescription::CertificateRequired
            | AlertDescription::BadCertificate
            | AlertDescription::UnknownCA
            | AlertDescription::CertificateUnknown
            | AlertDescription::CertificateExpired
            | AlertDescription::CertificateRevoked
            | AlertDescription::UnsupportedCertificate
            | AlertDescription::AccessDenied
            | AlertDescription::HandshakeFailure => {
                format!("tls: Vault rejected the handshake (alert {alert:?}): {HINT_CLIENT}")
            }
            _ => format!("tls: Vault sent alert {alert:?}"),
        },
        rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateMessage { .. } => format!(
            "tls: the server did not answer with TLS ({err}): if Vault listens without TLS, use http:// in VAULT_ADDR"
        ),
        _ => format!("tls: {err}"),
    }
}

/// The certificate error as rustls renders it, without the "invalid peer certificate: " prefix.
fn cert_detail(err: &CertificateError) -> String {
    let rendered = rustls::Error::InvalidCertificate(err.clone()).to_string();
    match rendered.strip_prefix("invalid peer certificate: ") {
        Some(rest) => rest.to_owned(),
        None => rendered,
    }
}

/// The error and its causes, outermost first.
///
/// `io::Error::source` skips the error it wraps and jumps to that error's own source, so the chain steps
/// into `get_ref` instead: otherwise the `rustls::Error` inside an I/O error would never be seen.
fn causes<'a>(
    err: &'a (dyn std::error::Error + 'static),
) -> Vec<&'a (dyn std::error::Error + 'static)> {
    let mut chain = vec![err];
    let mut current = err;
    // Bounded in case some error type reports itself as its own source.
    while chain.len() < 32 {
        let next = match current.downcast_ref::<io::Error>() {
            Some(io) => io
                .get_ref()
                .map(|inner| inner as &(dyn std::error::Error + 'static)),
            None => current.source(),
        };
        match next {
            Some(next) => {
                chain.push(next);
                current = next;
            }
            None => break,
        }
    }
    chain
}

/// The rendered messages of a chain, dropping each one that merely repeats the message of its cause.
fn messages(chain: &[&(dyn std::error::Error + 'static)]) -> Vec<String> {
    let rendered: Vec<String> = chain.iter().map(|e| e.to_string()).collect();
    let mut out: Vec<String> = Vec::new();
    for (i, message) in rendered.iter().enumerate() {
        let repeated_below = rendered.get(i + 1).is_some_and(|next| message == next);
        if !message.is_empty() && !repeated_below {
            out.push(message.clone());
        }
    }
    out
}

/// How to reach Vault over TLS; paths were checked to be readable when the config was loaded.
#[derive(Clone, Debug, Default)]
pub struct TlsSettings {
    /// PEM file of CA certificates to trust. Like the `vault` CLI, the first of `ca_cert`,
    /// `ca_cert_bytes` and `ca_path` that is set decides; the others are ignored.
    pub ca_cert: Option<PathBuf>,
    /// PEM text of CA certificates to trust (`VAULT_CACERT_BYTES`), checked to hold at least one.
    pub ca_cert_bytes: Option<String>,
    /// Directory of PEM files of CA certificates to trust.
    pub ca_path: Option<PathBuf>,
    /// PEM client certificate for mTLS (set exactly when `client_key` is).
    pub client_cert: Option<PathBuf>,
    /// PEM private key for mTLS (set exactly when `client_cert` is).
    pub client_key: Option<PathBuf>,
    /// Name sent as SNI and checked in the server certificate instead of the URL's host.
    pub server_name: Option<String>,
    /// Skip verifying the server certificate (dangerous).
    pub skip_verify: bool,
    /// The flag or variable each setting came from, for errors.
    pub names: TlsNames,
}

/// The flag or variable each TLS setting came from, so that errors name the one the user set
/// (`BAO_CACERT`, `--ca-cert`); `VAULT_*` by default.
#[derive(Clone, Debug)]
pub struct TlsNames {
    /// Of [`TlsSettings::ca_cert`].
    pub ca_cert: &'static str,
    /// Of [`TlsSettings::ca_cert_bytes`].
    pub ca_cert_bytes: &'static str,
    /// Of [`TlsSettings::ca_path`].
    pub ca_path: &'static str,
    /// Of [`TlsSettings::client_cert`].
    pub client_cert: &'static str,
    /// Of [`TlsSettings::client_key`].
    pub client_key: &'static str,
    /// Of [`TlsSettings::server_name`].
    pub server_name: &'static str,
}

impl Default for TlsNames {
    fn default() -> Self {
        TlsNames {
            ca_cert: "VAULT_CACERT",
            ca_cert_bytes: "VAULT_CACERT_BYTES",
            ca_path: "VAULT_CAPATH",
            client_cert: "VAULT_CLIENT_CERT",
            client_key: "VAULT_CLIENT_KEY",
            server_name: "VAULT_TLS_SERVER_NAME",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose,
    };
    use rustls::server::WebPkiClientVerifier;
    use std::net::SocketAddr;
    use std::time::Duration;
    use tempfile::TempDir;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;
    use tokio_rustls::TlsAcceptor;

    const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";

    struct Ca {
        pem: String,
        issuer: Issuer<'static, KeyPair>,
    }

    struct Leaf {
        cert_pem: String,
        key_pem: String,
    }

    fn ca(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().unwrap();
        let pem = params.self_signed(&key).unwrap().pem();
        Ca {
            pem,
            issuer: Issuer::new(params, key),
        }
    }

    fn leaf(ca: &Ca, name: &str, sans: &[&str], purpose: ExtendedKeyUsagePurpose) -> Leaf {
        let sans: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(sans).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![purpose];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &ca.issuer).unwrap();
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }

    /// A CA, a server certificate for localhost and vault.test (no IP SAN), and a client certificate.
    struct Pki {
        dir: TempDir,
        ca: Ca,
        server: Leaf,
        client: Leaf,
    }

    impl Pki {
        fn new() -> Self {
            let ca = ca("vault-login test ca");
            let server = leaf(
                &ca,
                "vault server",
                &["localhost", "vault.test"],
                ExtendedKeyUsagePurpose::ServerAuth,
            );
            let client = leaf(
                &ca,
                "vault client",
                &[],
                ExtendedKeyUsagePurpose::ClientAuth,
            );
            Pki {
                dir: tempfile::tempdir().unwrap(),
                ca,
                server,
                client,
            }
        }

        fn write(&self, name: &str, contents: &str) -> PathBuf {
            let path = self.dir.path().join(name);
            if let Some(parent) = path.parent() {
                fs::create_dir_all(parent).unwrap();
            }
            fs::write(&path, contents).unwrap();
            path
        }

        fn ca_file(&self) -> PathBuf {
            self.write("ca.pem", &self.ca.pem)
        }
    }

    /// Serves the fixed response over TLS on 127.0.0.1:0, optionally demanding a client certificate.
    async fn serve(server: &Leaf, client_ca: Option<&str>) -> SocketAddr {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let chain = CertificateDer::pem_slice_iter(server.cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_slice(server.key_pem.as_bytes()).unwrap();
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap();
        let builder = match client_ca {
            Some(pem) => {
                let mut roots = RootCertStore::empty();
                for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
                    roots.add(cert.unwrap()).unwrap();
                }
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                        .build()
                        .unwrap();
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let config = builder.with_single_cert(chain, key).unwrap();
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let mut request = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                        match tls.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.extend_from_slice(&buf[..n]),
                        }
                    }
                    let _ = tls.write_all(RESPONSE).await;
                    let _ = tls.shutdown().await;
                });
            }
        });
        addr
    }

    /// GETs `https://{host}:{port}/`, with `host` resolved to the test server.
    async fn get(
        settings: &TlsSettings,
        host: &str,
        addr: SocketAddr,
    ) -> Result<String, reqwest::Error> {
        let config = client_config(settings).unwrap();
        let client = reqwest::Client::builder()
            .use_preconfigured_tls(config)
            .resolve(host, addr)
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        let url = format!("https://{host}:{}/", addr.port());
        client
            .get(url)
            .send()
            .await?
            .error_for_status()?
            .text()
            .await
    }

    #[tokio::test]
    async fn ca_file_is_trusted() {
        let pki = Pki::new();
        let addr = serve(&pki.server, None).await;
        let settings = TlsSettings {
            ca_cert: Some(pki.ca_file()),
            ..Default::default()
        };
        assert_eq!(get(&settings, "vault.test", addr).await.unwrap(), "ok");
        assert_eq!(get(&settings, "localhost", addr).await.unwrap(), "ok");
    }

    #[tokio::test]
    async fn ca_file_with_several_certificates() {
        let pki = Pki::new();
        let other = ca("another ca");
        let addr = serve(&pki.server, None).await;
        let bundle = format!("# bundle\n{}\n{}", other.pem, pki.ca.pem);
        let settings = TlsSettings {
            ca_cert: Some(pki.write("bundle.pem", &bundle)),
            ..Default::default()
        };
        assert_eq!(get(&settings, "vault.test", addr).await.unwrap(), "ok");
    }

    #[tokio::test]
    async fn ca_dir_is_trusted() {
        let pki = Pki::new();
        let addr = serve(&pki.server, None).await;
        pki.write("cas/README", "not a certificate\n");
        pki.write("cas/other.pem", &ca("another ca").pem);
        pki.write("cas/ours.crt", &pki.ca.pem);
        fs::create_dir_all(pki.dir.path().join("cas/subdir")).unwrap();
        let settings = TlsSettings {
            ca_path: Some(pki.dir.path().join("cas")),
            ..Default::default()
        };
        assert_eq!(get(&settings, "vault.test", addr).await.unwrap(), "ok");
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn ca_dir_follows_symlinks_like_a_mounted_configmap() {
        let pki = Pki::new();
        let addr = serve(&pki.server, None).await;
        pki.write("cas/..2026_01_01/ca.crt", &pki.ca.pem);
        let dir = pki.dir.path().join("cas");
        std::os::unix::fs::symlink("..2026_01_01", dir.join("..data")).unwrap();
        std::os::unix::fs::symlink("..data/ca.crt", dir.join("ca.crt")).unwrap();
        std::os::unix::fs::symlink("missing.pem", dir.join("dangling.pem")).unwrap();
        let settings = TlsSettings {
            ca_path: Some(dir),
            ..Default::default()
        };
        assert_eq!(get(&settings, "vault.test", addr).await.unwrap(), "ok");
    }

    #[tokio::test]
    async fn the_first_ca_setting_decides_like_the_vault_cli() {
        // VAULT_CACERT wins over VAULT_CAPATH: a directory holding the right CA does not help
        // when the file holds another one.
        let pki = Pki::new();
        let addr = serve(&pki.server, None).await;
        pki.write("cas/ours.pem", &pki.ca.pem);
        let other = ca("another ca").pem;
        let file_wins = TlsSettings {
            ca_cert: Some(pki.write("other.pem", &other)),
            ca_path: Some(pki.dir.path().join("cas")),
            ..Default::default()
        };
        let err = get(&file_wins, "vault.test", addr).await.unwrap_err();
        assert!(describe_error(&err).contains("not trusted"));
        let file_right = TlsSettings {
            ca_cert: Some(pki.ca_file()),
            ca_cert_bytes: Some(other.clone()),
            ca_path: Some(pki.dir.path().join("cas")),
            ..Default::default()
        };
        assert_eq!(get(&file_right, "vault.test", addr).await.unwrap(), "ok");
        // VAULT_CACERT_BYTES comes next, before the directory.
        let bytes_win = TlsSettings {
            ca_cert_bytes: Some(other.clone()),
            ca_path: Some(pki.dir.path().join("cas")),
            ..Default::default()
        };
        let err = get(&bytes_win, "vault.test", addr).await.unwrap_err();
        assert!(describe_error(&err).contains("not trusted"));
        let bytes_right = TlsSettings {
            ca_cert_bytes: Some(format!("{other}{}", pki.ca.pem)),
            ..Default::default()
        };
        assert_eq!(get(&bytes_right, "vault.test", addr).await.unwrap(), "ok");
    }

    #[test]
    fn pem_text_is_counted_and_checked() {
        let one = ca("one").pem;
        let two = format!("some text\n{one}{}", ca("two").pem);
        assert_eq!(count_pem_certificates(&one), Ok(1));
        assert_eq!(count_pem_certificates(&two), Ok(2));
        for bad in [
            "",
            "just text",
            "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
        ] {
            let problem = count_pem_certificates(bad).unwrap_err();
            assert!(problem.contains("PEM"), "{problem}");
        }
    }

    #[tokio::test]
    async fn wrong_ca_is_not_trusted() {
        let pki = Pki::new();
        let addr = serve(&pki.server, None).await;
        let settings = TlsSettings {
            ca_cert: Some(pki.write("other.pem", &ca("another ca").pem)),
            ..Default::default()
        };
        let err = get(&settings, "vault.test", addr).await.unwrap_err();
        let message = describe_error(&err);
        assert!(message.contains("not trusted"), "{message}");
        assert!(message.contains("UnknownIssuer"), "{message}");
        assert!(message.contains("VAULT_CACERT"), "{message}");
    }

    #[tokio::test]
    async fn public_roots_do_not_trust_a_private_ca() {
        let pki = Pki::new();
        let addr = serve(&pki.server, None).await;
        let err = get(&TlsSettings::default(), "vault.test", addr)
            .await
            .unwrap_err();
        let message = describe_error(&err);
        assert!(message.contains("not trusted"), "{message}");
    }

    #[tokio::test]
    async fn server_name_override() {
        let pki = Pki::new();
        let addr = serve(&pki.server, None).await;
        let mut settings = TlsSettings {
            ca_cert: Some(pki.ca_file()),
            ..Default::default()
        };
        let err = get(&settings, "127.0.0.1", addr).await.unwrap_err();
        let message = describe_error(&err);
        assert!(message.contains("not valid for this host"), "{message}");
        assert!(message.contains("VAULT_TLS_SERVER_NAME"), "{message}");

        settings.server_name = Some("vault.test".to_owned());
        assert_eq!(get(&settings, "127.0.0.1", addr).await.unwrap(), "ok");

        // The override replaces the URL's host, it does not add to it.
        settings.server_name = Some("elsewhere.test".to_owned());
        let err = get(&settings, "vault.test", addr).await.unwrap_err();
        assert!(describe_error(&err).contains("not valid for this host"));
    }

    #[tokio::test]
    async fn server_name_override_still_checks_the_ca() {
        let pki = Pki::new();
        let addr = serve(&pki.server, None).await;
        let settings = TlsSettings {
            ca_cert: Some(pki.write("other.pem", &ca("another ca").pem)),
            server_name: Some("vault.test".to_owned()),
            ..Default::default()
        };
        let err = get(&settings, "127.0.0.1", addr).await.unwrap_err();
        assert!(describe_error(&err).contains("not trusted"));
    }

    #[tokio::test]
    async fn mutual_tls() {
        let pki = Pki::new();
        let addr = serve(&pki.server, Some(&pki.ca.pem)).await;
        let mut settings = TlsSettings {
            ca_cert: Some(pki.ca_file()),
            ..Default::default()
        };
        let err = get(&settings, "vault.test", addr).await.unwrap_err();
        let message = describe_error(&err);
        assert!(message.contains("VAULT_CLIENT_CERT"), "{message}");

        settings.client_cert = Some(pki.write("client.pem", &pki.client.cert_pem));
        settings.client_key = Some(pki.write("client-key.pem", &pki.client.key_pem));
        assert_eq!(get(&settings, "vault.test", addr).await.unwrap(), "ok");
    }

    #[tokio::test]
    async fn mutual_tls_with_an_untrusted_client_certificate() {
        let pki = Pki::new();
        let addr = serve(&pki.server, Some(&pki.ca.pem)).await;
        let stranger = leaf(
            &ca("another ca"),
            "stranger",
            &[],
            ExtendedKeyUsagePurpose::ClientAuth,
        );
        let settings = TlsSettings {
            ca_cert: Some(pki.ca_file()),
            client_cert: Some(pki.write("client.pem", &stranger.cert_pem)),
            client_key: Some(pki.write("client-key.pem", &stranger.key_pem)),
            ..Default::default()
        };
        let err = get(&settings, "vault.test", addr).await.unwrap_err();
        let message = describe_error(&err);
        assert!(message.contains("rejected"), "{message}");
    }

    #[tokio::test]
    async fn skip_verify_accepts_an_untrusted_certificate() {
        let pki = Pki::new();
        let addr = serve(&pki.server, None).await;
        let settings = TlsSettings {
            skip_verify: true,
            ..Default::default()
        };
        assert!(is_insecure(&settings));
        assert!(!is_insecure(&TlsSettings::default()));
        assert_eq!(get(&settings, "127.0.0.1", addr).await.unwrap(), "ok");
        assert_eq!(get(&settings, "wrong.name", addr).await.unwrap(), "ok");
    }

    #[tokio::test]
    async fn plain_http_server_is_described() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut tcp, _)) = listener.accept().await {
                let mut buf = [0u8; 1024];
                let _ = tcp.read(&mut buf).await;
                let _ = tcp
                    .write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                    .await;
            }
        });
        let pki = Pki::new();
        let settings = TlsSettings {
            ca_cert: Some(pki.ca_file()),
            ..Default::default()
        };
        let err = get(&settings, "vault.test", addr).await.unwrap_err();
        let message = describe_error(&err);
        assert!(message.contains("http://"), "{message}");
    }

    #[tokio::test]
    async fn connection_refused_is_described() {
        // Bound but not listening: refused, and no other test can take the port meanwhile.
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = socket.local_addr().unwrap();
        let err = get(&TlsSettings::default(), "vault.test", addr)
            .await
            .unwrap_err();
        assert_eq!(describe_error(&err), "connection refused");
    }

    #[tokio::test]
    async fn timeout_is_described() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // Accepts and then says nothing, so the handshake never completes.
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((tcp, _)) = listener.accept().await {
                held.push(tcp);
            }
        });
        let client = reqwest::Client::builder()
            .use_preconfigured_tls(client_config(&TlsSettings::default()).unwrap())
            .resolve("vault.test", addr)
            .timeout(Duration::from_millis(200))
            .build()
            .unwrap();
        let err = client
            .get(format!("https://vault.test:{}/", addr.port()))
            .send()
            .await
            .unwrap_err();
        assert_eq!(describe_error(&err), "timed out");
    }

    #[test]
    fn config_speaks_http1_only() {
        let config = client_config(&TlsSettings::default()).unwrap();
        assert_eq!(config.alpn_protocols, vec![b"http/1.1".to_vec()]);
    }

    fn config_err(settings: &TlsSettings) -> TlsError {
        match client_config(settings) {
            Ok(_) => panic!("expected an error for {settings:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn unreadable_ca_file() {
        let pki = Pki::new();
        let missing = pki.dir.path().join("missing.pem");
        let err = config_err(&TlsSettings {
            ca_cert: Some(missing.clone()),
            ..Default::default()
        });
        assert!(
            matches!(
                err,
                TlsError::Read {
                    setting: "VAULT_CACERT",
                    ..
                }
            ),
            "{err:?}"
        );
        let message = err.to_string();
        assert!(
            message.starts_with("VAULT_CACERT: cannot read "),
            "{message}"
        );
        assert!(message.contains(&format!("{missing:?}")), "{message}");

        // A directory given as the CA file is unreadable as a file too.
        let err = config_err(&TlsSettings {
            ca_cert: Some(pki.dir.path().to_path_buf()),
            ..Default::default()
        });
        assert!(matches!(err, TlsError::Read { .. }), "{err:?}");
    }

    #[test]
    fn empty_ca_file() {
        let pki = Pki::new();
        let path = pki.write("empty.pem", "");
        let err = config_err(&TlsSettings {
            ca_cert: Some(path.clone()),
            ..Default::default()
        });
        assert_eq!(
            err.to_string(),
            format!("VAULT_CACERT: {path:?} contains no PEM certificate (expected -----BEGIN CERTIFICATE-----)")
        );

        // A key alone is not a certificate either.
        let path = pki.write("key.pem", &pki.client.key_pem);
        let err = config_err(&TlsSettings {
            ca_cert: Some(path),
            ..Default::default()
        });
        assert!(matches!(err, TlsError::NoCertificate { .. }), "{err:?}");
    }

    #[test]
    fn malformed_ca_file() {
        let pki = Pki::new();
        let path = pki.write(
            "bad.pem",
            "-----BEGIN CERTIFICATE-----\n!!!not base64!!!\n-----END CERTIFICATE-----\n",
        );
        let err = config_err(&TlsSettings {
            ca_cert: Some(path),
            ..Default::default()
        });
        assert!(
            matches!(
                err,
                TlsError::Pem {
                    setting: "VAULT_CACERT",
                    ..
                }
            ),
            "{err:?}"
        );

        let truncated = &pki.ca.pem[..pki.ca.pem.len() / 2];
        let err = config_err(&TlsSettings {
            ca_cert: Some(pki.write("truncated.pem", truncated)),
            ..Default::default()
        });
        assert!(matches!(err, TlsError::Pem { .. }), "{err:?}");

        // Valid PEM around bytes that are no certificate.
        let garbage = "-----BEGIN CERTIFICATE-----\naGVsbG8gd29ybGQ=\n-----END CERTIFICATE-----\n";
        let err = config_err(&TlsSettings {
            ca_cert: Some(pki.write("garbage.pem", garbage)),
            ..Default::default()
        });
        assert!(
            matches!(err, TlsError::BadCaCertificate { index: 1, .. }),
            "{err:?}"
        );
    }

    #[test]
    fn ca_dir_without_certificates() {
        let pki = Pki::new();
        pki.write("cas/README", "nothing here\n");
        pki.write("cas/key.pem", &pki.client.key_pem);
        let dir = pki.dir.path().join("cas");
        let err = config_err(&TlsSettings {
            ca_path: Some(dir.clone()),
            ..Default::default()
        });
        assert!(matches!(err, TlsError::EmptyCaPath { .. }), "{err:?}");
        assert!(err.to_string().starts_with("VAULT_CAPATH: "), "{err}");
        assert!(err.to_string().contains(&format!("{dir:?}")), "{err}");

        let empty = pki.dir.path().join("empty");
        fs::create_dir(&empty).unwrap();
        let err = config_err(&TlsSettings {
            ca_path: Some(empty),
            ..Default::default()
        });
        assert!(matches!(err, TlsError::EmptyCaPath { .. }), "{err:?}");

        let err = config_err(&TlsSettings {
            ca_path: Some(pki.dir.path().join("missing")),
            ..Default::default()
        });
        assert!(
            matches!(
                err,
                TlsError::Read {
                    setting: "VAULT_CAPATH",
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn ca_dir_with_a_malformed_file_names_it() {
        let pki = Pki::new();
        pki.write("cas/good.pem", &pki.ca.pem);
        let bad = pki.write(
            "cas/bad.pem",
            "-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n",
        );
        let err = config_err(&TlsSettings {
            ca_path: Some(pki.dir.path().join("cas")),
            ..Default::default()
        });
        match err {
            TlsError::Pem { setting, path, .. } => {
                assert_eq!(setting, "VAULT_CAPATH");
                assert_eq!(path, bad);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn debug_output_never_shows_the_client_key() {
        let pki = Pki::new();
        let settings = TlsSettings {
            client_cert: Some(pki.write("cert.pem", &pki.client.cert_pem)),
            client_key: Some(pki.write("key.pem", &pki.client.key_pem)),
            ..Default::default()
        };
        let config = client_config(&settings).unwrap();
        let der = rustls::pki_types::PrivateKeyDer::from_pem_slice(pki.client.key_pem.as_bytes())
            .unwrap();
        // The key as Debug would print its bytes, and a line of its PEM body.
        let bytes = format!("{:?}", &der.secret_der()[..16]);
        let bytes = bytes
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let pem_line = pki.client.key_pem.lines().nth(1).unwrap().to_string();
        for shown in [format!("{config:?}"), format!("{settings:?}")] {
            assert!(!shown.contains(&bytes), "{shown}");
            assert!(!shown.contains(&pem_line), "{shown}");
        }
    }

    #[test]
    fn client_cert_and_key_must_come_together() {
        let pki = Pki::new();
        let err = config_err(&TlsSettings {
            client_key: Some(pki.write("key.pem", &pki.client.key_pem)),
            ..Default::default()
        });
        assert_eq!(
            err.to_string(),
            "VAULT_CLIENT_KEY is set but VAULT_CLIENT_CERT is not; set both for client-certificate authentication, or neither"
        );
        let err = config_err(&TlsSettings {
            client_cert: Some(pki.write("cert.pem", &pki.client.cert_pem)),
            ..Default::default()
        });
        assert!(
            matches!(
                err,
                TlsError::IncompleteClientIdentity {
                    set: "VAULT_CLIENT_CERT",
                    missing: "VAULT_CLIENT_KEY"
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn client_identity_problems_name_the_file() {
        let pki = Pki::new();
        let cert = pki.write("cert.pem", &pki.client.cert_pem);
        let key = pki.write("key.pem", &pki.client.key_pem);
        let empty = pki.write("empty.pem", "");

        let err = config_err(&TlsSettings {
            client_cert: Some(empty.clone()),
            client_key: Some(key.clone()),
            ..Default::default()
        });
        assert!(
            matches!(
                err,
                TlsError::NoCertificate {
                    setting: "VAULT_CLIENT_CERT",
                    ..
                }
            ),
            "{err:?}"
        );

        let err = config_err(&TlsSettings {
            client_cert: Some(cert.clone()),
            client_key: Some(cert.clone()),
            ..Default::default()
        });
        assert!(matches!(err, TlsError::NoPrivateKey { .. }), "{err:?}");
        assert!(err.to_string().contains(&format!("{cert:?}")), "{err}");

        let err = config_err(&TlsSettings {
            client_cert: Some(cert.clone()),
            client_key: Some(pki.dir.path().join("missing-key.pem")),
            ..Default::default()
        });
        assert!(
            matches!(
                err,
                TlsError::Read {
                    setting: "VAULT_CLIENT_KEY",
                    ..
                }
            ),
            "{err:?}"
        );

        let err = config_err(&TlsSettings {
            client_cert: Some(cert.clone()),
            client_key: Some(pki.write(
                "bad-key.pem",
                "-----BEGIN PRIVATE KEY-----\n!!!\n-----END PRIVATE KEY-----\n",
            )),
            ..Default::default()
        });
        assert!(
            matches!(
                err,
                TlsError::Pem {
                    setting: "VAULT_CLIENT_KEY",
                    ..
                }
            ),
            "{err:?}"
        );

        // A key that belongs to another certificate.
        let err = config_err(&TlsSettings {
            client_cert: Some(cert),
            client_key: Some(pki.write("server-key.pem", &pki.server.key_pem)),
            ..Default::default()
        });
        assert!(matches!(err, TlsError::ClientIdentity { .. }), "{err:?}");
    }

    #[test]
    fn client_cert_and_key_in_one_file() {
        let pki = Pki::new();
        let both = pki.write(
            "both.pem",
            &format!("{}{}", pki.client.key_pem, pki.client.cert_pem),
        );
        client_config(&TlsSettings {
            client_cert: Some(both.clone()),
            client_key: Some(both),
            ..Default::default()
        })
        .unwrap();
    }

    #[test]
    fn invalid_server_name() {
        let err = config_err(&TlsSettings {
            server_name: Some("not a name!".to_owned()),
            ..Default::default()
        });
        assert!(matches!(err, TlsError::ServerName { .. }), "{err:?}");
        client_config(&TlsSettings {
            server_name: Some("10.0.0.1".to_owned()),
            ..Default::default()
        })
        .unwrap();
    }

    #[test]
    fn error_messages_are_one_lowercase_line() {
        let pki = Pki::new();
        let errors = [
            config_err(&TlsSettings {
                ca_cert: Some(pki.write("empty.pem", "")),
                ..Default::default()
            }),
            config_err(&TlsSettings {
                server_name: Some("a b".to_owned()),
                ..Default::default()
            }),
        ];
        for err in errors {
            let message = err.to_string();
            assert!(!message.contains('\n'), "{message}");
            assert!(!message.ends_with('.'), "{message}");
        }
    }

    /// An error with a message and an optional cause, to build chains like hyper's.
    #[derive(Debug)]
    struct Wrap(
        &'static str,
        Option<Box<dyn std::error::Error + Send + Sync>>,
    );

    impl std::fmt::Display for Wrap {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for Wrap {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1
                .as_deref()
                .map(|e| e as &(dyn std::error::Error + 'static))
        }
    }

    #[test]
    fn describe_finds_rustls_errors_inside_io_errors() {
        let inner = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer),
        );
        let outer = io::Error::other(inner);
        let err = Wrap(
            "error sending request",
            Some(Box::new(Wrap(
                "client error (Connect)",
                Some(Box::new(outer)),
            ))),
        );
        assert_eq!(
            describe(&err, false),
            "tls: certificate not trusted (UnknownIssuer): set VAULT_CACERT to the CA that signed Vault's certificate"
        );

        let expired = rustls::Error::InvalidCertificate(CertificateError::Expired);
        let message = describe(&Wrap("request", Some(Box::new(expired))), false);
        assert!(message.contains("expired"), "{message}");
        assert!(message.contains("clock"), "{message}");
    }

    #[test]
    fn describe_io_errors() {
        let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
        assert_eq!(
            describe(&Wrap("request", Some(Box::new(refused))), false),
            "connection refused"
        );
        let reset = io::Error::from(io::ErrorKind::ConnectionReset);
        assert_eq!(
            describe(&Wrap("request", Some(Box::new(reset))), false),
            "connection reset by peer"
        );
        assert_eq!(describe(&Wrap("request", None), true), "timed out");
    }

    #[test]
    fn describe_falls_back_to_rendered_text() {
        let dns = io::Error::other(Wrap(
            "failed to lookup address information: Name or service not known",
            None,
        ));
        let err = Wrap(
            "error sending request",
            Some(Box::new(Wrap("dns error", Some(Box::new(dns))))),
        );
        assert_eq!(
            describe(&err, false),
            "dns lookup failed (failed to lookup address information: Name or service not known): check the host in VAULT_ADDR"
        );

        let err = Wrap(
            "error sending request",
            Some(Box::new(Wrap(
                "invalid peer certificate: UnknownIssuer",
                None,
            ))),
        );
        assert!(describe(&err, false).contains("not trusted"));

        // Unknown causes: the whole chain, with repeats of a cause's own message dropped.
        let same = io::Error::other(Wrap("broken pipe somewhere", None));
        let err = Wrap(
            "error sending request",
            Some(Box::new(Wrap(
                "client error (SendRequest)",
                Some(Box::new(same)),
            ))),
        );
        assert_eq!(
            describe(&err, false),
            "error sending request: client error (SendRequest): broken pipe somewhere"
        );
    }
}
