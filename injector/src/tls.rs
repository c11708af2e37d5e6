//! The serving certificate, read from mounted files and read again when they change
//! (cert-manager renews the Secret; the kubelet swaps the mounted files atomically).
//!
//! Each handshake looks at the files' metadata (two `stat`s); when it differs from what was
//! loaded, the pair is read again. A pair that does not load (half-renewed, mismatched) keeps the
//! old certificate in service and is logged once per change.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use rustls::crypto::ring::sign::any_supported_type;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use tracing::{info, warn};

use crate::Error;

/// What identifies a version of the two files.
type Stamp = [(u64, u64, i64, i64, u64); 2];

/// Resolves every handshake to the current certificate, reloading it when the files change.
#[derive(Debug)]
pub struct ReloadingCert {
    cert: PathBuf,
    key: PathBuf,
    current: Mutex<(Option<Stamp>, Arc<CertifiedKey>)>,
    failed: AtomicU64,
}

impl ReloadingCert {
    /// Loads the pair once; an error names the file and what is wrong.
    pub fn new(cert: &Path, key: &Path) -> Result<ReloadingCert, Error> {
        let stamp = stamp(cert, key);
        let loaded = load(cert, key)?;
        Ok(ReloadingCert {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            current: Mutex::new((stamp, Arc::new(loaded))),
            failed: AtomicU64::new(0),
        })
    }

    /// The certificate to serve now.
    pub fn current(&self) -> Arc<CertifiedKey> {
        let stamp = stamp(&self.cert, &self.key);
        // A poisoned lock only means another handshake panicked mid-reload; the pair in it is
        // still a whole one.
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if stamp.is_some() && stamp != current.0 {
            current.0 = stamp;
            match load(&self.cert, &self.key) {
                Ok(loaded) => {
                    current.1 = Arc::new(loaded);
                    info!(cert = %self.cert.display(), "serving certificate reloaded");
                }
                Err(e) => {
                    self.failed.fetch_add(1, Relaxed);
                    warn!(error = %e, "keeping the previous serving certificate");
                }
            }
        }
        Arc::clone(&current.1)
    }

    /// How many changes of the files did not load.
    pub fn failed_reloads(&self) -> u64 {
        self.failed.load(Relaxed)
    }

    /// A rustls server configuration serving through this resolver (HTTP/1.1).
    pub fn server_config(self: Arc<Self>) -> Arc<ServerConfig> {
        let mut config =
            ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                // The ring provider supports the safe defaults, so this cannot fail.
                .unwrap_or_else(|_| unreachable!("ring supports TLS 1.2 and 1.3"))
                .with_no_client_auth()
                .with_cert_resolver(self);
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(config)
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

fn stamp(cert: &Path, key: &Path) -> Option<Stamp> {
    let one = |p: &Path| {
        std::fs::metadata(p)
            .ok()
            .map(|m| (m.dev(), m.ino(), m.mtime(), m.mtime_nsec(), m.len()))
    };
    Some([one(cert)?, one(key)?])
}

fn load(cert: &Path, key: &Path) -> Result<CertifiedKey, Error> {
    let tls = |path: &Path, problem: String| Error::Tls(format!("{}: {problem}", path.display()));
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| {
            tls(
                cert,
                format!("cannot read it ({e}); mount the webhook's certificate there"),
            )
        })?
        .collect::<Result<_, _>>()
        .map_err(|e| tls(cert, format!("not PEM certificates ({e})")))?;
    if chain.is_empty() {
        return Err(tls(
            cert,
            "holds no CERTIFICATE block; give the PEM certificate chain".into(),
        ));
    }
    let der = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| tls(key, format!("no PEM private key in it ({e}); give tls.key")))?;
    let signing = any_supported_type(&der).map_err(|e| {
        tls(
            key,
            format!("unsupported private key ({e}); use RSA, ECDSA or Ed25519"),
        )
    })?;
    let certified = CertifiedKey::new(chain, signing);
    certified
        .keys_match()
        .map_err(|e| tls(key, format!("does not match {} ({e})", cert.display())))?;
    Ok(certified)
}
