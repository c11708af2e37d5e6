//! The driver's side of certificates: at start, check what a previous run published (kept if
//! valid for the names and its key matches, so a restart issues nothing); issue a certificate
//! with the held token and publish it as one unit; say what a refusal means for the role.

use std::time::SystemTime;

use tokio::time::Instant;
use tracing::{info, warn};

use super::Agent;
use crate::files::atomic_dir::AtomicDir;
use crate::machine::events::{CertGrant, Event};
use crate::machine::failure::{Failure, FailureKind};
use crate::secrets::certs::{self, CertSpec};
use crate::sensitive::Secret;
use crate::vault::VaultError;

/// A published certificate's validity, in Unix seconds.
pub(super) struct Issued {
    not_before: i64,
    not_after: i64,
}

/// A finished issue of certificate `index`, sent at `sent`.
pub(super) struct CertAnswer {
    index: usize,
    sent: Instant,
    result: Result<Issued, Failure>,
}

/// The instant on the machine's clock of `unix` seconds on the wall clock.
fn instant_of(unix: i64, now: std::time::Instant, wall: SystemTime) -> std::time::Instant {
    let wall_secs = wall
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    let offset = unix as f64 - wall_secs;
    let d = std::time::Duration::from_secs_f64(offset.abs().min(1e9));
    if offset >= 0.0 {
        now + d
    } else {
        now.checked_sub(d).unwrap_or(now)
    }
}

/// What Vault's refusal of an issue means, in one line naming the variable and the role's
/// settings to check.
fn describe(spec: &CertSpec, e: &VaultError) -> String {
    let path = &spec.path;
    let hint = match e.status().map(|s| s.as_u16()) {
        Some(403) => format!("; the token's policy needs `update` on {path} (path \"{path}\" {{ capabilities = [\"update\"] }}); a token from before a policy change keeps its old policies: send SIGHUP to log in again"),
        Some(400) => format!("; check the role's allowed_domains, allow_subdomains, allow_ip_sans and max_ttl (bao read {})", path.replacen("/issue/", "/roles/", 1)),
        _ => String::new(),
    };
    format!("{}: {e}{hint}", spec.variable)
}

impl Agent {
    /// The directory of certificate `index`.
    pub(super) fn cert_dir(&self, index: usize) -> AtomicDir {
        let spec = &self.cfg.certs.specs[index];
        AtomicDir::new(
            self.cfg.certs.dir.join(&spec.name),
            self.cfg.token_file_owner,
        )
    }

    /// Checks certificate `index` as a previous run left it: its life on the machine's clock
    /// (issued at, NotAfter) if it can be kept; logged either way.
    pub(super) fn published_cert(
        &self,
        index: usize,
    ) -> Option<(std::time::Instant, std::time::Instant)> {
        let spec = &self.cfg.certs.specs[index];
        let dir = self.cert_dir(index);
        let (now, wall) = (Instant::now().into_std(), SystemTime::now());
        match certs::check_published(&dir, spec, wall) {
            Ok(p) => {
                let at =
                    p.at.duration_since(SystemTime::UNIX_EPOCH)
                        .unwrap_or_default();
                let start = instant_of(at.as_secs() as i64, now, wall);
                let start = start.max(instant_of(p.info.not_before, now, wall));
                let end = instant_of(p.info.not_after, now, wall);
                info!(cert = %spec.name, not_after = %crate::hooks::rfc3339(p.info.not_after), "published certificate kept: valid for its names, key matches");
                self.status
                    .cert_published(index, p.info.not_before, p.info.not_after, false);
                Some((start, end))
            }
            Err(why) if dir.current().is_none() => {
                tracing::debug!(cert = %spec.name, reason = %why, "no certificate published yet");
                None
            }
            Err(why) => {
                info!(cert = %spec.name, reason = %why, "published certificate will be replaced");
                None
            }
        }
    }

    /// Issues certificate `index` with `token` and publishes it (on a blocking thread).
    pub(super) async fn issue_cert(&self, index: usize, token: Option<Secret>) -> CertAnswer {
        let sent = Instant::now();
        let result = self.issue_and_publish(index, token).await;
        if let Err(f) = &result {
            self.status.cert_failed(index, &f.message);
        }
        CertAnswer {
            index,
            sent,
            result,
        }
    }

    async fn issue_and_publish(
        &self,
        index: usize,
        token: Option<Secret>,
    ) -> Result<Issued, Failure> {
        let spec = &self.cfg.certs.specs[index];
        let op = format!("PUT /v1/{}", spec.path);
        let token = token.ok_or_else(|| {
            Failure::new(
                FailureKind::Transient,
                describe(spec, &VaultError::no_token(&op)),
            )
        })?;
        let raw = (self.client)
            .request_raw(&token, "PUT", &spec.path, Some(spec.body()))
            .await
            .map_err(|e| e.failure(describe(spec, &e)))?;
        let warnings = serde_json::from_slice::<serde_json::Value>(&raw.body)
            .ok()
            .and_then(|v| v["warnings"].as_array().cloned())
            .unwrap_or_default();
        for w in warnings.iter().filter_map(|w| w.as_str()) {
            info!(cert = %spec.name, warning = %w, "Vault warning on issue");
        }
        let bundle = certs::bundle_from_answer(&raw.body).map_err(|m| {
            Failure::new(FailureKind::Other, format!("{}: {op}: {m}", spec.variable))
        })?;
        if !bundle.info.covers(&spec.dns, &spec.ips) {
            warn!(cert = %spec.name, "the issued certificate does not name every requested name (exclude_cn_from_sans?); a restart will issue a new one");
        }
        let dir = self.cert_dir(index);
        let mode = self.cfg.token_file_mode;
        let (not_before, not_after) = (bundle.info.not_before, bundle.info.not_after);
        let serial = bundle.serial.clone();
        let lease = bundle.lease_id.is_some();
        let publish = tokio::task::spawn_blocking(move || {
            certs::publish(&dir, &bundle, mode, SystemTime::now())
        });
        let published = publish
            .await
            .unwrap_or_else(|_| Err("the publication did not finish".into()));
        published
            .map_err(|m| Failure::new(FailureKind::Other, format!("{}: {m}", spec.variable)))?;
        info!(cert = %spec.name, serial = %serial, not_after = %crate::hooks::rfc3339(not_after), lease, "certificate issued and published");
        self.status
            .cert_published(index, not_before, not_after, true);
        Ok(Issued {
            not_before,
            not_after,
        })
    }

    /// Turns a finished issue into the machine's event.
    pub(super) fn cert_answered(&self, answer: CertAnswer) -> Event {
        let (now, wall) = (Instant::now().into_std(), SystemTime::now());
        let result = answer.result.map(|i| CertGrant {
            not_before: instant_of(i.not_before, now, wall),
            not_after: instant_of(i.not_after, now, wall),
        });
        Event::CertIssued {
            index: answer.index,
            sent: answer.sent.into_std(),
            result,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wall_clock_seconds_map_onto_the_monotonic_clock() {
        let now = std::time::Instant::now();
        let wall = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
        assert_eq!(
            instant_of(1_000_060, now, wall),
            now + std::time::Duration::from_secs(60)
        );
        let past = instant_of(999_990, now, wall);
        assert!(past <= now);
        // Absurd values do not overflow.
        let _ = instant_of(i64::MAX, now, wall);
        let _ = instant_of(i64::MIN, now, wall);
    }

    #[test]
    fn refusals_name_the_role_settings_or_the_policy() {
        let spec =
            CertSpec::parse("VAULT_LOGIN_CERT_WEB", "pki/issue/web?common_name=a.svc").unwrap();
        let status = |code: u16, msg: &str| VaultError::Status {
            op: "PUT /v1/pki/issue/web".into(),
            status: reqwest::StatusCode::from_u16(code).unwrap(),
            errors: vec![msg.into()],
            retry_after: None,
        };
        let denied = describe(
            &spec,
            &status(403, "1 error occurred:\n\t* permission denied\n\n"),
        );
        assert!(denied.starts_with("VAULT_LOGIN_CERT_WEB: "), "{denied}");
        assert!(denied.contains("`update` on pki/issue/web"), "{denied}");
        let bad = describe(
            &spec,
            &status(400, "common name evil.com not allowed by this role"),
        );
        assert!(
            bad.contains("common name evil.com not allowed by this role"),
            "{bad}"
        );
        assert!(
            bad.contains("allowed_domains") && bad.contains("bao read pki/roles/web"),
            "{bad}"
        );
        assert!(!bad.contains('\n') && !denied.contains('\n'));
    }
}
