//! The driver's side of secrets: read one with the held token, write its file when its content
//! (or KV v2 version) changed, renew its lease, and report to the machine and the status.

use tokio::time::{timeout_at, Instant};
use tracing::info;

use super::requests::no_token;
use super::Agent;
use crate::events::{Event, SecretGrant};
use crate::failure::{Failure, FailureKind};
use crate::secret::Secret;
use crate::secrets::{self, Fingerprint, SecretError};
use crate::vault::{LeaseRenewal, SecretRead, VaultError};

/// A finished secret read or lease renewal.
pub(super) enum SecretAnswer {
    /// The read, and the fingerprint of the file written for it (None: unchanged, not written).
    Read(
        usize,
        Instant,
        std::result::Result<(SecretRead, Option<Fingerprint>), SecretError>,
    ),
    Renewed(
        usize,
        Instant,
        std::result::Result<LeaseRenewal, VaultError>,
    ),
}

/// What the driver remembers of each secret: the fingerprint of its file and its lease.
#[derive(Clone, Debug, Default)]
pub(super) struct SecretMemo {
    pub(super) written: Option<Fingerprint>,
    pub(super) lease_id: Option<String>,
}

impl Agent {
    /// Turns a finished secret read into the machine's event: remembers what the file now holds
    /// and the lease, updates the status.
    pub(super) fn secret_answered(&self, answer: SecretAnswer, memos: &mut [SecretMemo]) -> Event {
        match answer {
            SecretAnswer::Read(index, sent, result) => {
                let spec = &self.secrets[index];
                let result = result.map(|(read, written)| {
                    let changed = written.is_some();
                    if changed {
                        memos[index].written = written;
                    }
                    let lease = read.lease();
                    memos[index].lease_id = lease.map(|_| read.lease_id.clone());
                    SecretGrant { changed, lease }
                });
                let result = match result {
                    Ok(grant) => {
                        self.status.secret_read(index, grant.changed);
                        Ok(grant)
                    }
                    Err(e) => {
                        let message = format!("{}: {e}", spec.variable);
                        self.status.secret_failed(index, &message);
                        let kind = if e.is_transient() {
                            FailureKind::Transient
                        } else {
                            FailureKind::Other
                        };
                        Err(Failure::new(kind, message))
                    }
                };
                Event::SecretRead {
                    index,
                    sent: sent.into_std(),
                    result,
                }
            }
            SecretAnswer::Renewed(index, sent, result) => {
                let result = match result {
                    Ok(r) => Ok(r.grant()),
                    Err(e) => {
                        let message =
                            format!("{}: lease renewal: {e}", self.secrets[index].variable);
                        self.status.secret_failed(index, &message);
                        Err(e.failure(message))
                    }
                };
                Event::LeaseRenewed {
                    index,
                    sent: sent.into_std(),
                    result,
                }
            }
        }
    }

    /// Reads secret `index` with `token` and, when it differs from `last` (the fingerprint of what
    /// its file holds), writes its file on a blocking thread: a slow volume never stalls the
    /// runtime. A failed read or write leaves the previous file.
    pub(super) async fn read_secret(
        &self,
        index: usize,
        token: Option<Secret>,
        last: Option<Fingerprint>,
    ) -> SecretAnswer {
        let sent = Instant::now();
        let spec = &self.secrets[index];
        let read = match token {
            Some(token) => secrets::fetch(&self.client, &token, spec).await,
            None => Err(secrets::read_error(&spec.path, no_token())),
        };
        let result = match read {
            Ok((read, rendered)) if rendered.changed_since(last) => {
                let (writer, spec) = (self.writer.clone(), spec.clone());
                let version = read.kv2_version;
                let write = tokio::task::spawn_blocking(move || {
                    let path = writer.write(&spec, &rendered)?;
                    info!(secret = %spec.name, path = %path.display(), version = ?version, "secret written");
                    Ok(rendered.fingerprint())
                });
                match write.await {
                    Ok(Ok(fingerprint)) => Ok((read, Some(fingerprint))),
                    Ok(Err(e)) => Err(e),
                    Err(e) => Err(SecretError::Dir {
                        problem: format!("the secret file write did not finish: {e}"),
                    }),
                }
            }
            Ok((read, _)) => Ok((read, None)),
            Err(e) => Err(e),
        };
        SecretAnswer::Read(index, sent, result)
    }

    /// Renews the lease of secret `index`; abandoned at the lease's expiry.
    pub(super) async fn renew_lease(
        &self,
        index: usize,
        token: Option<Secret>,
        lease: String,
        deadline: Option<Instant>,
    ) -> SecretAnswer {
        let sent = Instant::now();
        let result = match token {
            Some(token) => {
                let attempt = self.client.renew_lease(&token, &lease, None);
                match deadline {
                    Some(d) => timeout_at(d, attempt).await.unwrap_or_else(|_| {
                        Err(VaultError::Transport {
                            op: "PUT /v1/sys/leases/renew".into(),
                            message: "no answer before the lease expired".into(),
                        })
                    }),
                    None => attempt.await,
                }
            }
            None => Err(no_token()),
        };
        SecretAnswer::Renewed(index, sent, result)
    }
}
