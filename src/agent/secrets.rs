//! The driver's side of secrets: read one with the held token, write its file when its content
//! (or KV v2 version) changed, renew its lease, and report to the machine and the status.

use tokio::time::{timeout_at, Instant};
use tracing::info;

use super::requests::no_token;
use super::Agent;
use crate::login::kind_of;
use crate::machine::{self, Event, Failure, FailureKind, Grant};
use crate::secret::Secret;
use crate::secrets::{self, Fingerprint, Rendered, SecretError};
use crate::vault::{LeaseRenewal, SecretRead, VaultError};

/// A finished secret read or lease renewal.
pub(super) enum SecretAnswer {
    Read(
        usize,
        Instant,
        std::result::Result<(SecretRead, Rendered), SecretError>,
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
    written: Option<Fingerprint>,
    pub(super) lease_id: Option<String>,
}

impl Agent {
    /// Turns a finished secret read into the machine's event: writes the file when its content
    /// (or KV v2 version) changed, remembers the lease, updates the status.
    pub(super) fn secret_answered(&self, answer: SecretAnswer, memos: &mut [SecretMemo]) -> Event {
        match answer {
            SecretAnswer::Read(index, sent, result) => {
                let spec = &self.secrets[index];
                let result = result.and_then(|(read, rendered)| {
                    let changed = rendered.changed_since(memos[index].written);
                    if changed {
                        let path = self.writer.write(spec, &rendered)?;
                        memos[index].written = Some(rendered.fingerprint());
                        info!(secret = %spec.name, path = %path.display(), version = ?read.kv2_version, "secret written");
                    }
                    let leased = !read.lease_id.is_empty() && !read.lease_duration.is_zero();
                    memos[index].lease_id = leased.then(|| read.lease_id.clone());
                    Ok(machine::SecretGrant {
                        changed,
                        lease: leased.then_some(Grant {
                            ttl: read.lease_duration,
                            renewable: read.renewable,
                            capped_warning: false,
                        }),
                    })
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
                    Ok(r) => Ok(Grant {
                        ttl: r.lease_duration,
                        renewable: r.renewable,
                        capped_warning: machine::warns_of_cap(&r.warnings),
                    }),
                    Err(e) => {
                        let message =
                            format!("{}: lease renewal: {e}", self.secrets[index].variable);
                        self.status.secret_failed(index, &message);
                        Err(Failure {
                            kind: kind_of(&e),
                            retry_after: e.retry_after(),
                            message,
                        })
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

    /// Reads secret `index` with `token`.
    pub(super) async fn read_secret(&self, index: usize, token: Option<Secret>) -> SecretAnswer {
        let sent = Instant::now();
        let spec = &self.secrets[index];
        let result = match token {
            Some(token) => secrets::fetch(&self.client, &token, spec).await,
            None => Err(secrets::read_error(&spec.path, no_token())),
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
