//! The driver's side of secrets and templates: make one read (a source: one request shared by
//! every `VAULT_LOGIN_SECRET_*` file and template using it), write the files whose content
//! changed, render the templates that use it, renew its lease, and report to the machine and
//! the status.

use std::collections::HashMap;
use std::sync::{MutexGuard, PoisonError};

use tokio::time::Instant;
use tracing::{debug, info, warn};
use zeroize::Zeroizing;

use super::requests::until;
use super::Agent;
use crate::exec::Environment;
use crate::machine::events::{Event, Grant, SecretGrant};
use crate::machine::failure::Failure;
use crate::machine::said::Said;
use crate::secrets::template::{self, Read};
use crate::secrets::templates::{kv2_read_path, Rendering};
use crate::secrets::{
    self, Fingerprint, SecretError, SecretSpec, Source, TemplateBook, TemplateSpec,
};
use crate::sensitive::Secret;
use crate::vault::{LeaseRenewal, RawAnswer, VaultError};

/// A rendered template's file to write: its index, its spec, the bytes and their fingerprint.
type RenderJob = (usize, TemplateSpec, Zeroizing<Vec<u8>>, u64);

/// The reads and the templates. The driver has one read in flight at a time, so the lock is
/// never waited for; it is never held across an `.await`.
pub(super) struct Book {
    /// One per distinct read; grows when a template's read depends on another's answer.
    pub(super) sources: Vec<Source>,
    /// The sources nothing uses any more ([`Book::sweep`]); they keep their index. A few at
    /// most, so a `Vec` scanned linearly: a set type instantiated only for this cost ~4 KB.
    retired: Vec<usize>,
    pub(super) templates: TemplateBook,
    /// The path read for a template's `GET`, once the mount was looked up (KV v2: `data/`).
    read_paths: HashMap<String, String>,
    /// `exec`'s environment values, rendered.
    pub(super) env: Environment,
    /// The templates' `pkiCert` certificates, in the certificates' lane's order after the
    /// `VAULT_LOGIN_CERT_*` ones; grows like `sources`.
    pub(super) certs: Vec<Read>,
    /// Per template, its render error as last logged: a template failing at every refresh
    /// logs its error in full once, then a short line with a count, until it renders again.
    said: Vec<Said>,
}

impl Book {
    /// The book of `specs` and `templates` (files and environment values) and the values.
    pub(super) fn new(specs: &[SecretSpec], templates: TemplateBook, env: Environment) -> Self {
        Book {
            sources: secrets::sources(specs, templates.templates()),
            certs: templates.first_certs(),
            said: vec![Said::default(); templates.templates().len()],
            templates,
            retired: Vec::new(),
            read_paths: HashMap::new(),
            env,
        }
    }

    /// After a render: the sources nothing uses any more (no `VAULT_LOGIN_SECRET_*` file or
    /// value, no template's last render, no file's current content), newly so, with `false`,
    /// and the retired ones a template reads again, with `true`, in index order. A retired
    /// source's answer is forgotten (again after a read of it that was in flight), so a
    /// template coming back to it waits for a fresh read instead of rendering a stale answer.
    pub(super) fn sweep(&mut self) -> Vec<(usize, bool)> {
        let mut changes = Vec::new();
        for (index, source) in self.sources.iter().enumerate() {
            let used = !source.specs.is_empty() || self.templates.in_use(&source.read);
            let was_retired = self.retired.contains(&index);
            if used == was_retired {
                // One log call site for both changes: each `info!` with fields expands to ~1 KB.
                let said = if used {
                    "a template reads this path again"
                } else {
                    "no template reads this path any more: no more reads or renewals (a lease is left to expire)"
                };
                info!(path = source.path(), "{said}");
                changes.push((index, used));
            }
            if !used {
                self.templates.forget(&source.read);
            }
        }
        for &(index, used) in &changes {
            if used {
                self.retired.retain(|i| *i != index);
            } else {
                self.retired.push(index);
            }
        }
        changes
    }
}

/// A finished read: the lease it holds and, for each spec file, the fingerprint of what it now
/// holds and whether it was rewritten (None: unchanged, not looked at).
pub(super) struct ReadDone {
    lease_id: String,
    lease: Option<Grant>,
    written: Vec<Option<(Fingerprint, bool)>>,
}

/// What the templates made of a read: each rendered template's result (`Ok(true)`: its file
/// was rewritten; `Err`: the render or write error) and the reads they make that no source
/// makes yet (added to the book's sources, in order).
#[derive(Default)]
pub(super) struct TemplateReport {
    pub(super) results: Vec<(usize, Result<bool, String>)>,
    pub(super) added: usize,
}

/// A finished read of a source or lease renewal.
pub(super) enum SecretAnswer {
    /// The read, with what the templates made of it.
    Read(
        usize,
        Instant,
        std::result::Result<ReadDone, SecretError>,
        TemplateReport,
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
    /// The book, even if a panicking thread left the lock poisoned (its data stays consistent:
    /// every change under the lock is a single assignment or push).
    pub(super) fn book(&self) -> MutexGuard<'_, Book> {
        self.book.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The API paths of the last `n` sources (those a template just added), for the lane's logs.
    pub(super) fn last_source_paths(&self, n: usize) -> Vec<String> {
        let book = self.book();
        let from = book.sources.len().saturating_sub(n);
        (book.sources[from..].iter())
            .map(|s| s.path().to_string())
            .collect()
    }

    /// The variables that use source `index`, for messages.
    fn users_of(&self, index: usize) -> String {
        let book = self.book();
        let source = &book.sources[index];
        let mut names: Vec<String> = (source.specs.iter())
            .map(|i| self.secrets[*i].variable.clone())
            .collect();
        let templates = book.templates.templates();
        for i in book.templates.users(&source.read) {
            names.push(templates[i].variable.clone());
        }
        if names.is_empty() {
            return source.read.to_string();
        }
        names.join(", ")
    }

    /// Turns a finished read into the machine's event, and how many sources the templates
    /// added: remembers what the files now hold and the lease, updates the status.
    pub(super) fn secret_answered(
        &self,
        answer: SecretAnswer,
        memos: &mut [SecretMemo],
    ) -> (Event, usize) {
        match answer {
            SecretAnswer::Read(index, sent, result, report) => {
                let specs = self.book().sources[index].specs.clone();
                for (i, r) in &report.results {
                    self.status
                        .template_rendered(*i, r.as_ref().map(|_| ()).map_err(String::as_str));
                }
                let problem = (report.results.iter()).find_map(|(_, r)| r.as_ref().err().cloned());
                let rewritten = (report.results.iter()).any(|(_, r)| matches!(r, Ok(true)));
                let result = match result {
                    Ok(done) => {
                        let memo = &mut memos[index];
                        let changed =
                            rewritten || done.written.iter().any(|w| matches!(w, Some((_, true))));
                        let files = specs.iter().zip(done.written).zip(&mut memo.written);
                        for ((spec, written), last) in files {
                            self.status
                                .secret_read(*spec, matches!(written, Some((_, true))));
                            *last = written.map(|(fingerprint, _)| fingerprint).or(*last);
                        }
                        memo.lease_id = done.lease.map(|_| done.lease_id);
                        Ok(SecretGrant {
                            changed,
                            lease: done.lease,
                            problem,
                        })
                    }
                    Err(e) => {
                        let message = format!("{}: {e}", self.users_of(index));
                        (specs.iter()).for_each(|s| self.status.secret_failed(*s, &message));
                        Err(Failure::new(e.kind(), message))
                    }
                };
                let event = Event::SecretRead {
                    index,
                    sent: sent.into_std(),
                    result,
                };
                (event, report.added)
            }
            SecretAnswer::Renewed(index, sent, result) => {
                let result = match result {
                    Ok(r) => Ok(r.grant()),
                    Err(e) => {
                        let message = format!("{}: lease renewal: {e}", self.users_of(index));
                        let specs = self.book().sources[index].specs.clone();
                        (specs.iter()).for_each(|s| self.status.secret_failed(*s, &message));
                        Err(e.failure(message))
                    }
                };
                let event = Event::LeaseRenewed {
                    index,
                    sent: sent.into_std(),
                    result,
                };
                (event, 0)
            }
        }
    }

    /// Makes source `index`'s read once with `token`, writes each of its spec files whose
    /// rendering differs from `last` (the fingerprints of what they hold) and each template
    /// using it whose output changed, on a blocking thread: a slow volume never stalls the
    /// runtime. A failed read or rendering leaves every file as it was.
    pub(super) async fn read_secret(
        &self,
        index: usize,
        token: Option<Secret>,
        last: Vec<Option<Fingerprint>>,
    ) -> SecretAnswer {
        let sent = Instant::now();
        let source = self.book().sources[index].clone();
        let specs: Vec<SecretSpec> = (source.specs.iter())
            .map(|i| self.secrets[*i].clone())
            .collect();
        let mut report = TemplateReport::default();
        let Some(token) = token else {
            let e = secrets::read_error(source.path(), VaultError::no_token("read"));
            return SecretAnswer::Read(index, sent, Err(e), report);
        };
        let path = self.read_path(&token, &source).await;
        let (method, body) = match &source.read {
            Read::Get(_) => ("GET", None),
            // (A `pkiCert` never becomes a source: the certificates' lane issues it.)
            Read::Write(_, pairs) | Read::Cert(_, pairs) => ("PUT", Some(serde_json::json!(pairs))),
            Read::List(_) => ("LIST", None),
        };
        let answer = self.client.request_raw(&token, method, &path, body).await;
        let result = match answer {
            // Vault answers an empty list with 404; consul-template then has no keys.
            Err(VaultError::Status { status, .. })
                if status.as_u16() == 404 && matches!(source.read, Read::List(_)) =>
            {
                self.book().templates.list(&source.read, Vec::new());
                Ok(ReadDone {
                    lease_id: String::new(),
                    lease: None,
                    written: Vec::new(),
                })
            }
            Err(e) => {
                let e = secrets::read_error(&path, e);
                self.book().templates.failed(&source.read, e.to_string());
                Err(e)
            }
            Ok(raw) => self.take_answer(&source, &path, &specs, last, raw).await,
        };
        self.render_users(&source.read, &mut report).await;
        if let Err(e) = &result {
            self.env_failed(&source, e);
        }
        SecretAnswer::Read(index, sent, result, report)
    }

    /// Records why the environment values made from `source` are not had: the child is never
    /// started without them. An outage is retried, so it is not recorded.
    fn env_failed(&self, source: &Source, e: &SecretError) {
        let mut book = self.book();
        let mut users: Vec<String> = (source.specs.iter())
            .filter(|i| **i >= self.outputs.env_specs)
            .map(|i| self.secrets[*i].name.clone())
            .collect();
        let templates = book.templates.templates();
        for i in book.templates.users(&source.read) {
            if i >= self.outputs.env_templates {
                users.push(templates[i].name.clone());
            }
        }
        for var in users {
            match e.is_transient() {
                true => book.env.clear_failure(&var),
                false => book
                    .env
                    .failed(&var, format!("{}{var}: {e}", crate::exec::ENV_PREFIX)),
            }
        }
    }

    /// The path a source's request goes to: as written, except a template's `GET` on a KV v2
    /// mount, which consul-template moves under `data/` (looked up once per path with
    /// `sys/internal/ui/mounts/<path>`; if that fails, the path as written, as Agent does).
    async fn read_path(&self, token: &Secret, source: &Source) -> String {
        let raw = source.path();
        if !source.templated || !matches!(source.read, Read::Get(_)) {
            return raw.to_string();
        }
        if let Some(p) = self.book().read_paths.get(raw) {
            return p.clone();
        }
        let lookup = format!("sys/internal/ui/mounts/{raw}");
        let mount = match self.client.request_raw(token, "GET", &lookup, None).await {
            Ok(answer) => serde_json::from_slice::<serde_json::Value>(&answer.body).ok(),
            // Vault answered (no such mount, or the token may not see it): the path as written,
            // for good, as Agent does.
            Err(VaultError::Status { .. }) => None,
            // No answer: try the lookup again next time.
            Err(e) => {
                debug!(path = raw, error = %e, "mount lookup failed; reading the path as written");
                return raw.to_string();
            }
        };
        let data = mount.as_ref().map(|m| &m["data"]);
        let kv2 = data.is_some_and(|d| d["options"]["version"] == "2");
        let mount_path = data.and_then(|d| d["path"].as_str()).unwrap_or_default();
        let path = match kv2 && !mount_path.is_empty() {
            true => kv2_read_path(raw, mount_path),
            false => raw.to_string(),
        };
        if path != raw {
            info!(template_path = raw, path = %path, "KV v2 mount: reading under data/ as Vault Agent does");
        }
        self.book().read_paths.insert(raw.to_string(), path.clone());
        path
    }

    /// Takes a successful answer in: renders and writes the spec files, records it for the
    /// templates.
    async fn take_answer(
        &self,
        source: &Source,
        path: &str,
        specs: &[SecretSpec],
        last: Vec<Option<Fingerprint>>,
        raw: RawAnswer,
    ) -> Result<ReadDone, SecretError> {
        let parsed = match source.read {
            Read::List(_) => None,
            _ => Some(secrets::parse_read(&raw, path)),
        };
        self.record_for_templates(source, path, &raw);
        let read = match parsed {
            Some(Ok(read)) => Some(read),
            // Only the spec files need the answer's shape; a template's write may answer
            // without data.
            Some(Err(e)) if !specs.is_empty() => return Err(e),
            _ => None,
        };
        let Some(read) = read else {
            return Ok(ReadDone {
                lease_id: String::new(),
                lease: None,
                written: Vec::new(),
            });
        };
        let rendered: Vec<_> = (specs.iter())
            .map(|spec| secrets::render(spec, &read))
            .collect::<Result<_, _>>()?;
        // Environment values are set here; only files go to the writer.
        let mut values = vec![None; specs.len()];
        let mut jobs = Vec::with_capacity(specs.len());
        for (k, ((spec, r), last)) in specs.iter().zip(rendered).zip(last).enumerate() {
            if !r.changed_since(last) {
                jobs.push(None);
                continue;
            }
            if source.specs[k] < self.outputs.env_specs {
                jobs.push(Some((spec.clone(), r)));
                continue;
            }
            let set = self.book().env.set(&spec.name, r.expose());
            set.map_err(|problem| SecretError::NotRenderable {
                path: path.to_string(),
                problem,
            })?;
            values[k] = Some((r.fingerprint(), true));
            jobs.push(None);
        }
        let mut written = self.writer.write_changed(jobs, read.kv2_version).await?;
        for (w, v) in written.iter_mut().zip(values) {
            *w = w.or(v);
        }
        Ok(ReadDone {
            lease_id: read.lease_id.clone(),
            lease: read.lease(),
            written,
        })
    }

    /// Records the answer as the templates see it (numbers as the server wrote them).
    fn record_for_templates(&self, source: &Source, path: &str, raw: &RawAnswer) {
        let mut book = self.book();
        if book.templates.templates().is_empty() {
            return;
        }
        let text = std::str::from_utf8(&raw.body).unwrap_or_default();
        match &source.read {
            Read::List(_) => {
                let value: Zeroizing<String> = Zeroizing::new(text.to_string());
                let keys = serde_json::from_str::<serde_json::Value>(&value)
                    .ok()
                    .and_then(|v| v["data"]["keys"].as_array().cloned())
                    .unwrap_or_default();
                let keys = (keys.iter().filter_map(|k| k.as_str().map(String::from))).collect();
                book.templates.list(&source.read, keys);
            }
            // A write answered 204 has no body: a secret without data.
            _ if text.trim().is_empty() => book
                .templates
                .secret(&source.read, template::Secret::default()),
            _ => match template::Secret::from_vault_json(text) {
                Ok(secret) => book.templates.secret(&source.read, secret),
                Err(e) => book.templates.failed(
                    &source.read,
                    format!("{}: {path}: the answer is not Vault's JSON: {e}", raw.op),
                ),
            },
        }
    }

    /// Renders the templates that read nothing from Vault (`env`, text), once at the start:
    /// no read would ever render them. The first error, if any.
    pub(super) async fn render_readless(&self) -> Option<String> {
        let readless: Vec<usize> = {
            let book = self.book();
            let templates = book.templates.templates();
            (0..templates.len())
                .filter(|i| templates[*i].first_reads.is_empty())
                .collect()
        };
        if readless.is_empty() {
            return None;
        }
        let mut report = TemplateReport::default();
        self.render(readless, &mut report).await;
        let mut first = None;
        for (i, r) in &report.results {
            self.status
                .template_rendered(*i, r.as_ref().map(|_| ()).map_err(String::as_str));
            first = first.or(r.as_ref().err().cloned());
        }
        first
    }

    /// Renders every template that uses `read` and writes the files that changed; reads the
    /// templates make that no source makes yet become new sources.
    pub(super) async fn render_users(&self, read: &Read, report: &mut TemplateReport) {
        let users = self.book().templates.users(read);
        self.render(users, report).await;
    }

    /// Renders template `i` and takes in the result: new reads it waits for, an environment
    /// value set, a file to write (pushed to `jobs`), or its error said.
    fn take_rendering(
        &self,
        book: &mut Book,
        i: usize,
        report: &mut TemplateReport,
        jobs: &mut Vec<RenderJob>,
    ) {
        match book.templates.render(i) {
            Rendering::Waiting(missing) => {
                for r in missing {
                    // The driver gives the certificates' lane the new ones.
                    let cert = matches!(r, Read::Cert(..));
                    let new = if cert {
                        !book.certs.contains(&r)
                    } else {
                        !book.sources.iter().any(|s| s.read == r)
                    };
                    if !new {
                        continue;
                    }
                    // One log call site for both (each `debug!` with fields expands to ~1 KB).
                    let what = if cert {
                        "a template asks for a new certificate"
                    } else {
                        "a template reads a new path"
                    };
                    debug!(read = %r, "{what}");
                    if cert {
                        book.certs.push(r);
                    } else {
                        book.sources.push(Source::new(r, true));
                        report.added += 1;
                    }
                }
            }
            Rendering::Changed(bytes, fp) if i >= self.outputs.env_templates => {
                book.said[i].clear();
                let var = book.templates.templates()[i].name.clone();
                let set = book.env.set(&var, &bytes);
                if set.is_ok() {
                    book.templates.wrote(i, fp);
                }
                report.results.push((i, set.map(|()| true)));
            }
            Rendering::Changed(bytes, fp) => {
                book.said[i].clear();
                let spec = book.templates.templates()[i].clone();
                jobs.push((i, spec, bytes, fp));
            }
            Rendering::Same => {
                book.said[i].clear();
                report.results.push((i, Ok(false)));
            }
            Rendering::Failed(e) => {
                let env = i >= self.outputs.env_templates;
                // One log call site for both kinds (each `warn!` with fields expands to ~1 KB).
                let what = if env {
                    "environment value not rendered; the program keeps the value it has"
                } else {
                    "template not rendered; its file keeps its last good content"
                };
                warn!(error = %book.said[i].say(&e), "{what}");
                if env {
                    let var = book.templates.templates()[i].name.clone();
                    book.env.failed(&var, e.clone());
                }
                report.results.push((i, Err(e)));
            }
        }
    }

    /// Renders templates `which` and writes the files that changed; reads they make that no
    /// source makes yet become new sources.
    async fn render(&self, which: Vec<usize>, report: &mut TemplateReport) {
        let mut jobs = Vec::new();
        {
            let mut book = self.book();
            for i in which {
                self.take_rendering(&mut book, i, report, &mut jobs);
            }
        }
        if jobs.is_empty() {
            return;
        }
        let writer = self.writer.clone();
        let write =
            tokio::task::spawn_blocking(move || {
                (jobs.into_iter())
                .map(|(i, spec, bytes, fp)| {
                    let written = writer.write_template(&spec, &bytes);
                    if let Ok(Some(path)) = &written {
                        info!(template = %spec.name, path = %path.display(), "template rendered");
                    }
                    (i, fp, written.map_err(|e| format!("{}: {e}", spec.variable)))
                })
                .collect::<Vec<_>>()
            });
        let Ok(results) = write.await else {
            warn!("the template file writes did not finish");
            return;
        };
        let mut commands = Vec::new();
        {
            let mut book = self.book();
            for (i, fp, result) in results {
                match result {
                    // the file already held these bytes (a restart): nothing changed, no command
                    Ok(None) => {
                        book.templates.wrote(i, fp);
                        report.results.push((i, Ok(false)));
                    }
                    Ok(Some(_)) => {
                        book.templates.wrote(i, fp);
                        report.results.push((i, Ok(true)));
                        let spec = &book.templates.templates()[i];
                        if let Some(argv) = &spec.command {
                            commands.push((spec.name.clone(), argv.clone()));
                        }
                    }
                    Err(e) => report.results.push((i, Err(e))),
                }
            }
        }
        // Agent's per-template command runs after its own file changed; in once mode before
        // the process exits, as the init container's Agent does.
        for (name, argv) in commands {
            if self.cfg.once {
                self.hooks.template_changed_and_wait(&argv).await;
            } else {
                self.hooks.template_changed(&name, &argv);
            }
        }
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
