//! The driver's side of secrets: read one with the held token, write its file when its content
//! (or KV v2 version) changed, renew its lease, and report to the machine and the status.

use tokio::time::Instant;

use super::requests::until;
use super::Agent;
use crate::machine::events::{Event, SecretGrant};
use crate::machine::failure::Failure;
use crate::secrets::{self, Fingerprint, SecretError, SecretSpec};
use crate::sensitive::Secret;
use crate::vault::{LeaseRenewal, SecretRead, VaultError};

/// A finished read of a source (one path, one or more files) or lease renewal.
pub(super) enum SecretAnswer {
    /// The read, and the fingerprint of each file written for it (None: unchanged, not written).
    Read(
        usize,
        Instant,
        std::result::Result<(SecretRead, Vec<Option<Fingerprint>>), SecretError>,
    ),
    Renewed(
        usize,
        Instant,
        std::result::Result<LeaseRenewal, VaultError>,
    ),
}

/// What the driver remembers of each source: the fingerprint of each of its files, its lease.
#[derive(Clone, Debug, Default)]
pub(super) struct SecretMemo {
    pub(super) written: Vec<Option<Fingerprint>>,
    pub(super) lease_id: Option<String>,
}

impl Agent {
    /// Turns a finished secret read into the machine's event: remembers what the file now holds
    /// and the lease, updates the status.
    pub(super) fn secret_answered(&self, answer: SecretAnswer, memos: &mut [SecretMemo]) -> Event {
        match answer {
            SecretAnswer::Read(index, sent, result) => {
                let specs = &self.sources[index].specs;
                let result = match result {
                    Ok((read, written)) => {
                        let memo = &mut memos[index];
                        let changed = written.iter().any(Option::is_some);
                        let files = specs.iter().zip(written).zip(&mut memo.written);
                        for ((spec, fingerprint), last) in files {
                            self.status.secret_read(*spec, fingerprint.is_some());
                            *last = fingerprint.or(*last);
                        }
                        let lease = read.lease();
                        memo.lease_id = lease.map(|_| read.lease_id.clone());
                        Ok(SecretGrant { changed, lease })
                    }
                    Err(e) => {
                        let message =
                            format!("{}: {e}", self.sources[index].variables(&self.secrets));
                        specs
                            .iter()
                            .for_each(|s| self.status.secret_failed(*s, &message));
                        Err(Failure::new(e.kind(), message))
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
                        let message = format!(
                            "{}: lease renewal: {e}",
                            self.sources[index].variables(&self.secrets)
                        );
                        let specs = &self.sources[index].specs;
                        specs
                            .iter()
                            .for_each(|s| self.status.secret_failed(*s, &message));
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

    /// Reads source `index` once with `token` and writes each of its files whose rendering
    /// differs from `last` (the fingerprints of what they hold), on a blocking thread: a slow
    /// volume never stalls the runtime. A failed read or rendering leaves every file as it was.
    pub(super) async fn read_secret(
        &self,
        index: usize,
        token: Option<Secret>,
        last: Vec<Option<Fingerprint>>,
    ) -> SecretAnswer {
        let sent = Instant::now();
        let source = &self.sources[index];
        let specs: Vec<&SecretSpec> = source.specs.iter().map(|i| &self.secrets[*i]).collect();
        let read = match token {
            Some(token) => secrets::fetch_all(&self.client, &token, &source.path, &specs).await,
            None => Err(secrets::read_error(
                &source.path,
                VaultError::no_token("read"),
            )),
        };
        let result = match read {
            Ok((read, rendered)) => {
                let jobs: Vec<_> = specs
                    .iter()
                    .zip(rendered)
                    .zip(last)
                    .map(|((spec, r), last)| r.changed_since(last).then(|| ((*spec).clone(), r)))
                    .collect();
                self.writer
                    .write_changed(jobs, read.kv2_version)
                    .await
                    .map(|written| (read, written))
            }
            Err(e) => Err(e),
        };
        SecretAnswer::Read(index, sent, result)
    }

    /// Renews the lease of source `index`; abandoned at the lease's expiry.
    pub(super) async fn renew_lease(
        &self,
        index: usize,
        token: Option<Secret>,
        lease: String,
        deadline: Option<Instant>,
    ) -> SecretAnswer {
        let sent = Instant::now();
        let op = "PUT /v1/sys/leases/renew";
        let result = match token {
            Some(token) => {
                let attempt = self.client.renew_lease(&token, &lease, None);
                until(deadline, op, "lease", attempt).await
            }
            None => Err(VaultError::no_token(op)),
        };
        SecretAnswer::Renewed(index, sent, result)
    }
}
