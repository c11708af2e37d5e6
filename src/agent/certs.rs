//! The driver's side of certificates: at start, check what a previous run published (kept if
//! valid for the names and its key matches, so a restart issues nothing); issue a certificate
//! with the held token and publish it as one unit; say what a refusal means for the role.
//!
//! The certificates' lane holds the `VAULT_LOGIN_CERT_*` directories first, then the
//! templates' `pkiCert` certificates (the book's `certs`): one certificate per distinct call,
//! shared by every template making it (so a template printing `.Cert` and another printing
//! `.Key` get a matching pair), kept at start from the templates' destination files as
//! consul-template keeps it, and handed to the templates when issued.

use std::time::SystemTime;

use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::secrets::TemplateReport;
use super::Agent;
use crate::files::atomic_dir::AtomicDir;
use crate::files::safe_fs::{self, Links};
use crate::machine::events::{CertGrant, Event};
use crate::machine::failure::{Failure, FailureKind};
use crate::secrets::certs;
use crate::secrets::certs::pki_cert::{self, Cached};
use crate::secrets::template::{PemEncoded, Read};
use crate::secrets::templates::MAX_TEMPLATE_BYTES;
use crate::sensitive::Secret;
use crate::vault::VaultError;

/// A published certificate's validity, in Unix seconds.
pub(super) struct Issued {
    not_before: i64,
    not_after: i64,
}

/// A finished issue of certificate `index`, sent at `sent`; for a template's `pkiCert`, what
/// the templates made of it.
pub(super) struct CertAnswer {
    index: usize,
    sent: Instant,
    result: Result<Issued, Failure>,
    report: TemplateReport,
}

/// The name a template's `pkiCert` certificate `k` (of `reads`) is tracked by in logs, health
/// and metrics: its path, with `#2`, `#3`... when an earlier call names the same path.
pub(super) fn template_cert_name(reads: &[Read], k: usize) -> String {
    let path = reads[k].path();
    match reads[..k].iter().filter(|r| r.path() == path).count() {
        0 => path.to_string(),
        n => format!("{path}#{}", n + 1),
    }
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

/// What Vault's refusal of an issue at `path` means, in one line naming `who` asked (the
/// variables) and the role's settings to check.
fn describe(who: &str, path: &str, e: &VaultError) -> String {
    let hint = match e.status().map(|s| s.as_u16()) {
        Some(403) => format!("; the token's policy needs `update` on {path} (path \"{path}\" {{ capabilities = [\"update\"] }}); a token from before a policy change keeps its old policies: send SIGHUP to log in again"),
        Some(400) => format!("; check the role's allowed_domains, allow_subdomains, allow_ip_sans and max_ttl (bao read {})", path.replacen("/issue/", "/roles/", 1)),
        _ => String::new(),
    };
    format!("{who}: {e}{hint}")
}

/// Logs the warnings of Vault's issue answer `body`; its serial number, for the log line.
fn answer_notes(cert: &str, body: &[u8]) -> String {
    let v = serde_json::from_slice::<serde_json::Value>(body).unwrap_or_default();
    for w in (v["warnings"].as_array().into_iter().flatten()).filter_map(|w| w.as_str()) {
        info!(cert, warning = %w, "Vault warning on issue");
    }
    v["data"]["serial_number"]
        .as_str()
        .unwrap_or_default()
        .to_string()
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

    /// Issues certificate `index` with `token` and publishes it (on a blocking thread), or
    /// hands it to the templates making that `pkiCert` call.
    pub(super) async fn issue_cert(&self, index: usize, token: Option<Secret>) -> CertAnswer {
        let sent = Instant::now();
        let mut report = TemplateReport::default();
        let result = match self.template_cert(index) {
            None => self.issue_and_publish(index, token).await,
            Some(read) => (self.issue_for_templates(index, &read, token, &mut report)).await,
        };
        if let Err(f) = &result {
            self.status.cert_failed(index, &f.message);
        }
        CertAnswer {
            index,
            sent,
            result,
            report,
        }
    }

    /// The `pkiCert` call certificate `index` is, if it is a template's.
    fn template_cert(&self, index: usize) -> Option<Read> {
        let k = index.checked_sub(self.cfg.certs.specs.len())?;
        self.book().certs.get(k).cloned()
    }

    /// The variables of the templates making `read`, for messages.
    fn template_users(&self, read: &Read) -> String {
        let book = self.book();
        let templates = book.templates.templates();
        let names: Vec<&str> = (book.templates.users(read).into_iter())
            .map(|i| templates[i].variable.as_str())
            .collect();
        match names.is_empty() {
            true => read.to_string(),
            false => names.join(", "),
        }
    }

    /// The name certificate `index` is tracked by.
    fn cert_name(&self, index: usize) -> String {
        let dirs = &self.cfg.certs.specs;
        match dirs.get(index) {
            Some(spec) => spec.name.clone(),
            None => template_cert_name(&self.book().certs, index - dirs.len()),
        }
    }

    /// Issues template certificate `index` (the `pkiCert` call `read`) with `token` and
    /// renders the templates making it. A failure is recorded for them too: those that had
    /// a certificate keep it, the others say why they are not rendered.
    async fn issue_for_templates(
        &self,
        index: usize,
        read: &Read,
        token: Option<Secret>,
        report: &mut TemplateReport,
    ) -> Result<Issued, Failure> {
        let issued = self.issue_pki_cert(index, read, token).await;
        match &issued {
            Ok((found, _)) => self.book().templates.cert(read, found.pems.clone()),
            Err(f) => self.book().templates.failed(read, f.message.clone()),
        }
        self.render_users(read, report).await;
        let (found, serial) = issued?;
        let name = self.cert_name(index);
        let not_after = found.info.not_after;
        info!(cert = %name, serial = %serial, not_after = %crate::hooks::rfc3339(not_after), "pkiCert certificate issued for the templates");
        self.status
            .cert_published(index, found.info.not_before, not_after, true);
        Ok(Issued {
            not_before: found.info.not_before,
            not_after,
        })
    }

    /// One `PUT` for the `pkiCert` call `read`: the certificate and its serial number.
    async fn issue_pki_cert(
        &self,
        index: usize,
        read: &Read,
        token: Option<Secret>,
    ) -> Result<(pki_cert::Found, String), Failure> {
        let Read::Cert(path, params) = read else {
            // `template_cert` hands only the book's certificates, which are all `pkiCert`s.
            return Err(Failure::new(
                FailureKind::Other,
                format!("{read} is not a pkiCert"),
            ));
        };
        let who = self.template_users(read);
        let op = format!("PUT /v1/{path}");
        let token = token.ok_or_else(|| {
            let e = VaultError::no_token(&op);
            Failure::new(FailureKind::Transient, describe(&who, path, &e))
        })?;
        let body = serde_json::json!(params);
        let raw = (self.client.request_raw(&token, "PUT", path, Some(body)))
            .await
            .map_err(|e| e.failure(describe(&who, path, &e)))?;
        let serial = answer_notes(&self.cert_name(index), &raw.body);
        let found = pki_cert::from_answer(&raw.body)
            .map_err(|m| Failure::new(FailureKind::Other, format!("{who}: {op}: {m}")))?;
        Ok((found, serial))
    }

    /// The certificate template certificate `index`'s destination files hold, if it can be
    /// kept (as consul-template keeps it, and valid for the names asked for, its key matching):
    /// its life on the machine's clock (written at, NotAfter) and what `pkiCert` returns.
    pub(super) fn cached_template_cert(
        &self,
        index: usize,
    ) -> Option<(std::time::Instant, std::time::Instant, PemEncoded)> {
        let read = self.template_cert(index)?;
        let Read::Cert(_, params) = &read else {
            return None;
        };
        let name = self.cert_name(index);
        let files: Vec<Cached> = {
            let book = self.book();
            let templates = book.templates.templates();
            (book.templates.users(&read).into_iter())
                .filter(|i| *i < self.outputs.env_templates)
                .filter_map(|i| self.destination(&templates[i].file))
                .collect()
        };
        if files.is_empty() {
            debug!(cert = %name, "no template destination holds a certificate yet");
            return None;
        }
        let (dns, ips) = pki_cert::wanted(params);
        let (now, wall) = (Instant::now().into_std(), SystemTime::now());
        match pki_cert::cached(&files, &dns, &ips, wall) {
            Ok((found, written)) => {
                let written = written.duration_since(SystemTime::UNIX_EPOCH);
                let written = written.unwrap_or_default().as_secs() as i64;
                let start = instant_of(written.max(found.info.not_before), now, wall);
                let end = instant_of(found.info.not_after, now, wall);
                info!(cert = %name, not_after = %crate::hooks::rfc3339(found.info.not_after), "pkiCert certificate kept from the template's destination: valid for its names, key matches");
                self.status.cert_published(
                    index,
                    found.info.not_before,
                    found.info.not_after,
                    false,
                );
                Some((start, end, found.pems))
            }
            Err(why) => {
                info!(cert = %name, reason = %why, "pkiCert certificate in the template's destination will be replaced");
                None
            }
        }
    }

    /// A template's destination file as a previous run left it (`None`: not there).
    fn destination(&self, file: &str) -> Option<Cached> {
        let path = self.cfg.secrets.dir.join(file);
        let modified = std::fs::symlink_metadata(&path).ok()?.modified().ok()?;
        let bytes = safe_fs::read_regular(&path, Links::Refuse, MAX_TEMPLATE_BYTES).ok()?;
        Some(Cached {
            bytes: zeroize::Zeroizing::new(bytes),
            modified,
        })
    }

    /// Hands the certificate kept for template certificate `index` to its templates and
    /// renders them.
    pub(super) async fn keep_template_cert(&self, index: usize, pems: PemEncoded) {
        let Some(read) = self.template_cert(index) else {
            return;
        };
        self.book().templates.cert(&read, pems);
        let mut report = TemplateReport::default();
        self.render_users(&read, &mut report).await;
        self.templates_reported(&report);
    }

    /// Records what the templates made of a certificate in the status.
    fn templates_reported(&self, report: &TemplateReport) {
        for (i, r) in &report.results {
            (self.status).template_rendered(*i, r.as_ref().map(|_| ()).map_err(String::as_str));
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
                describe(&spec.variable, &spec.path, &VaultError::no_token(&op)),
            )
        })?;
        let raw = (self.client)
            .request_raw(&token, "PUT", &spec.path, Some(spec.body()))
            .await
            .map_err(|e| e.failure(describe(&spec.variable, &spec.path, &e)))?;
        answer_notes(&spec.name, &raw.body);
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

    /// Turns a finished issue into the machine's event, and how many reads the templates
    /// added (as [`Agent::secret_answered`] counts them).
    pub(super) fn cert_answered(&self, answer: CertAnswer) -> (Event, usize) {
        self.templates_reported(&answer.report);
        let (now, wall) = (Instant::now().into_std(), SystemTime::now());
        let result = answer.result.map(|i| CertGrant {
            not_before: instant_of(i.not_before, now, wall),
            not_after: instant_of(i.not_after, now, wall),
        });
        let event = Event::CertIssued {
            index: answer.index,
            sent: answer.sent.into_std(),
            result,
        };
        (event, answer.report.added)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secrets::certs::CertSpec;

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
        let describe = |spec: &CertSpec, e: &VaultError| describe(&spec.variable, &spec.path, e);
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
