//! Secrets to files: which secrets to read (`VAULT_LOGIN_SECRET_<NAME>`), how each file is
//! rendered (JSON, one raw field, or dotenv), when a file needs rewriting, the errors a read
//! can end in, and the writer that publishes a file the way the token file is published.
//!
//! Everything here is pure or file I/O; reading from Vault is [`crate::vault::VaultClient::read_secret`],
//! and when to read, renew and revoke is the loop's business.
//!
//! # The contract
//! - `VAULT_LOGIN_SECRET_<NAME>=<path>` reads `GET /v1/<path>` and writes the secret's data as a
//!   JSON object to `<dir>/<name>`, `<name>` being NAME lower-cased (`VAULT_LOGIN_SECRET_DB` →
//!   `db`). For KV v2 the data is the inner `data.data`, without the metadata.
//! - `<path>#<field>` writes one field's value raw, like `vault kv get -field=`: a string as it
//!   is, anything else as JSON.
//! - `dotenv:<path>` writes every field as a line `export KEY='value'` for `. file` in a shell:
//!   single-quoted, a `'` written as `'\''`, so nothing in a value is ever expanded or run.
//!   Field names must be shell variable names (`[A-Za-z_][A-Za-z0-9_]*`). The prefix, not a
//!   second variable, selects the form, so a secret named `DB_FORMAT` can never be mistaken for
//!   a setting of a secret named `DB`.
//! - `VAULT_LOGIN_SECRETS_DIR` is the directory (default: the token file's), and
//!   `VAULT_LOGIN_SECRETS_REFRESH` how often the sidecar reads each secret again (default 5m,
//!   Vault Agent's `static_secret_render_interval`).
//! - A file is rewritten only when it would change: a KV v2 secret when its version changes,
//!   any other secret when its rendered content changes ([`Fingerprint`]).
//! - Secrets that read the same path share one read ([`Source`]): the files of one dynamic
//!   secret hold the same credentials.

use std::collections::hash_map::DefaultHasher;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use tracing::{info, warn};
use zeroize::Zeroizing;

use crate::files::safe_fs::{self, Links};
use crate::files::token_file::{FileError, Owner, TokenFile};
use crate::machine::failure::FailureKind;
use crate::secrets::template::Read;
use crate::sensitive::Secret;
use crate::vault::{RawAnswer, SecretRead, VaultError};

pub mod certs;
pub mod template;
pub mod templates;

pub use templates::{TemplateBook, TemplateSpec};

/// The prefix of the variables that name secrets: `VAULT_LOGIN_SECRET_<NAME>=<path>`.
pub const SECRET_ENV_PREFIX: &str = "VAULT_LOGIN_SECRET_";
/// The variable naming the directory the secret files go to.
pub const SECRETS_DIR_ENV: &str = "VAULT_LOGIN_SECRETS_DIR";
/// The variable setting how often each secret is read again.
pub const SECRETS_REFRESH_ENV: &str = "VAULT_LOGIN_SECRETS_REFRESH";
/// How often each secret is read again by default: Vault Agent's static-secret render interval.
pub const DEFAULT_REFRESH: Duration = Duration::from_secs(5 * 60);
/// The value prefix that selects the dotenv form.
pub const DOTENV_PREFIX: &str = "dotenv:";

/// How a secret's file is rendered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Format {
    /// The data as one JSON object.
    Json,
    /// One field's value, raw (`<path>#<field>`).
    Field(String),
    /// `export KEY='value'` lines (`dotenv:<path>`).
    Dotenv,
}

/// One `VAULT_LOGIN_SECRET_<NAME>` setting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretSpec {
    /// The file name: NAME lower-cased, only `[a-z0-9_]`.
    pub name: String,
    /// The variable it came from, for messages.
    pub variable: String,
    /// The API path after `/v1/`, e.g. `internal/data/database/config`.
    pub path: String,
    /// How the file is rendered.
    pub format: Format,
}

/// The secrets settings assembled by `config`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretsSettings {
    /// Where the files go.
    pub dir: PathBuf,
    /// How often the sidecar reads each secret again.
    pub refresh: Duration,
    /// The secrets, sorted by name; empty when none is configured.
    pub specs: Vec<SecretSpec>,
    /// The templates (`VAULT_LOGIN_TEMPLATE_<NAME>`), sorted by name.
    pub templates: Vec<TemplateSpec>,
}

/// A bad `VAULT_LOGIN_SECRET*` setting: the variable and what is wrong (config turns it into
/// its one-line error, exit 64).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpecError {
    /// The variable at fault.
    pub variable: String,
    /// What is wrong and what to do, lowercase, one line.
    pub problem: String,
}

fn spec_error(variable: &str, problem: impl Into<String>) -> SpecError {
    SpecError {
        variable: variable.to_string(),
        problem: problem.into(),
    }
}

/// Whether `name` is a file name the writer accepts: `[a-z0-9_]+`, so it can never climb out
/// of the directory, name a hidden file or collide with a temp file.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

impl SecretSpec {
    /// Parses `variable=value` (`variable` starting with [`SECRET_ENV_PREFIX`]).
    pub fn parse(variable: &str, value: &str) -> Result<SecretSpec, SpecError> {
        let raw_name = variable.strip_prefix(SECRET_ENV_PREFIX).unwrap_or_default();
        if raw_name.is_empty()
            || !raw_name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            return Err(spec_error(
                variable,
                format!("the name after {SECRET_ENV_PREFIX} must be letters, digits and '_' (it becomes the file name), e.g. {SECRET_ENV_PREFIX}DB"),
            ));
        }
        let name = raw_name.to_ascii_lowercase();
        let (dotenv, rest) = match value.strip_prefix(DOTENV_PREFIX) {
            Some(rest) => (true, rest),
            None => (false, value),
        };
        let (path, field) = match rest.split_once('#') {
            Some((path, field)) => (path, Some(field)),
            None => (rest, None),
        };
        let path = check_path(variable, path)?;
        let format = match (dotenv, field) {
            (false, None) => Format::Json,
            (true, None) => Format::Dotenv,
            (_, Some("")) => {
                return Err(spec_error(
                    variable,
                    "nothing after '#'; give a field name, e.g. internal/data/database/config#password, or leave out '#'",
                ))
            }
            (_, Some(field)) if field.contains('#') => {
                return Err(spec_error(
                    variable,
                    "more than one '#'; give <path>#<field> with one field",
                ))
            }
            (true, Some(_)) => {
                return Err(spec_error(
                    variable,
                    "dotenv: writes every field; leave out #<field>, or leave out dotenv: to write one field",
                ))
            }
            (false, Some(field)) => Format::Field(field.to_string()),
        };
        Ok(SecretSpec {
            name,
            variable: variable.to_string(),
            path,
            format,
        })
    }
}

/// Checks an API path: no `/v1/`, no empty, `.` or `..` segments, no spaces, `?` or control
/// characters (it is put in a URL as it is).
fn check_path(variable: &str, path: &str) -> Result<String, SpecError> {
    let example = "e.g. internal/data/database/config";
    let trimmed = path.strip_prefix('/').unwrap_or(path);
    if trimmed.is_empty() {
        return Err(spec_error(
            variable,
            format!("no path; give the secret's API path, {example}"),
        ));
    }
    if trimmed.starts_with("v1/") {
        return Err(spec_error(
            variable,
            format!("{path:?} starts with v1/; give the API path without /v1/, {example}"),
        ));
    }
    if trimmed
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '?' | '%' | '\\'))
    {
        return Err(spec_error(
            variable,
            format!("{path:?} contains spaces, control characters, '?', '%' or '\\'; give the API path, {example}"),
        ));
    }
    if trimmed
        .split('/')
        .any(|s| s.is_empty() || s == "." || s == "..")
    {
        return Err(spec_error(
            variable,
            format!("{path:?} has an empty, '.' or '..' segment; give the API path, {example}"),
        ));
    }
    Ok(trimmed.to_string())
}

/// Every `VAULT_LOGIN_SECRET_<NAME>` among `names` (all the environment's variable names),
/// read through `env`, sorted by file name. An empty value counts as unset.
pub fn specs_from_env(
    names: &[String],
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<SecretSpec>, SpecError> {
    let mut specs: Vec<SecretSpec> = Vec::new();
    let mut variables: Vec<&String> = names
        .iter()
        .filter(|n| n.starts_with(SECRET_ENV_PREFIX))
        .collect();
    variables.sort();
    variables.dedup();
    for variable in variables {
        let Some(value) = env(variable).filter(|v| !v.is_empty()) else {
            continue;
        };
        let spec = SecretSpec::parse(variable, &value)?;
        if let Some(other) = specs.iter().find(|s| s.name == spec.name) {
            return Err(spec_error(
                variable,
                format!(
                    "{} also writes the file {:?}; give each secret its own name",
                    other.variable, spec.name
                ),
            ));
        }
        specs.push(spec);
    }
    specs.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(specs)
}

impl SecretsSettings {
    /// Refuses secret files that would overwrite another file vault-login writes (the token
    /// file, the token info file).
    pub fn check_reserved(&self, reserved: &[&Path]) -> Result<(), SpecError> {
        let files = (self.specs.iter().map(|s| (&s.variable, &s.name)))
            .chain(self.templates.iter().map(|t| (&t.variable, &t.file)));
        let mut seen: Vec<(&String, PathBuf)> = Vec::new();
        for (variable, file) in files {
            let target = self.dir.join(file);
            if let Some(path) = reserved.iter().find(|p| **p == target) {
                return Err(spec_error(
                    variable,
                    format!(
                        "{} is already written by vault-login; give the file another name",
                        path.display()
                    ),
                ));
            }
            if let Some((other, _)) = seen.iter().find(|(_, p)| *p == target) {
                return Err(spec_error(
                    variable,
                    format!(
                        "{other} also writes {}; give each file its own name",
                        target.display()
                    ),
                ));
            }
            seen.push((variable, target));
        }
        Ok(())
    }

    /// Whether there is anything to read and write.
    pub fn is_empty(&self) -> bool {
        self.specs.is_empty() && self.templates.is_empty()
    }
}

/// What a secret file's content is identified by, to rewrite it only when it changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fingerprint {
    /// A KV v2 secret: its version.
    Version(u64),
    /// Anything else: a hash of the rendered bytes (SipHash with fixed keys, kept in memory
    /// only; a 64-bit collision between two successive contents is not a practical concern).
    Content(u64),
}

/// A rendered secret file.
pub struct Rendered {
    bytes: Zeroizing<Vec<u8>>,
    fingerprint: Fingerprint,
}

impl fmt::Debug for Rendered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rendered")
            .field("len", &self.bytes.len())
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

impl Rendered {
    /// The file's bytes; call only to write the file.
    pub fn expose(&self) -> &[u8] {
        &self.bytes
    }

    /// What identifies this content.
    pub fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }

    /// Whether the file must be written, given the fingerprint of what was last written.
    pub fn changed_since(&self, written: Option<Fingerprint>) -> bool {
        written != Some(self.fingerprint)
    }
}

/// Why a secret could not be read, rendered or written. Never holds a secret value.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// Vault answered 403.
    #[error("reading {path}: Vault answered 403 permission denied: the role's policies must grant \"read\" on {path} (in VAULT_NAMESPACE's namespace where namespaces are used){hint}")]
    Denied {
        /// The API path.
        path: String,
        /// The KV v2 hint, or empty.
        hint: String,
    },
    /// Vault answered 404.
    #[error("reading {path}: there is no secret at {path} (Vault answered 404; a KV v2 secret whose latest version is deleted answers 404 too){hint}")]
    NotFound {
        /// The API path.
        path: String,
        /// The KV v2 hint, or empty.
        hint: String,
    },
    /// Any other failure to read.
    #[error("reading {path}: {source}")]
    Read {
        /// The API path.
        path: String,
        /// What Vault (or the network) said.
        #[source]
        source: VaultError,
    },
    /// `#field` names a field the secret does not have.
    #[error("the secret at {path} has no field {field:?}; its fields are: {}; fix the #field in {variable}", .fields.join(", "))]
    NoField {
        /// The API path.
        path: String,
        /// The field asked for.
        field: String,
        /// The fields it has (names only).
        fields: Vec<String>,
        /// The variable to fix.
        variable: String,
    },
    /// The data cannot be written in the chosen form (dotenv, or JSON in theory).
    #[error("the secret at {path} cannot be written: {problem}")]
    NotRenderable {
        /// The API path.
        path: String,
        /// What is wrong (names a field, never a value).
        problem: String,
    },
    /// The file could not be written.
    #[error("writing secret file {}: {source}", .file.display())]
    File {
        /// The secret file.
        file: PathBuf,
        /// The I/O failure.
        #[source]
        source: FileError,
    },
    /// The secrets directory is unusable.
    #[error("{SECRETS_DIR_ENV}: {problem}")]
    Dir {
        /// What is wrong and what to do.
        problem: String,
    },
}

impl SecretError {
    /// How the machine should treat it: a read's failure as Vault's answer classifies
    /// ([`VaultError::kind`]); a file that could not be written is retried like an outage; a
    /// missing field or a bad rendering needs someone to change Vault or the configuration.
    pub fn kind(&self) -> FailureKind {
        match self {
            SecretError::Read { source, .. } => source.kind(),
            SecretError::File { .. } => FailureKind::Transient,
            _ => FailureKind::Other,
        }
    }

    /// Whether waiting and reading again can help without anyone changing Vault (an outage);
    /// 403, 404, a missing field or a bad file are configuration problems.
    pub fn is_transient(&self) -> bool {
        self.kind().is_transient()
    }

    /// The API path concerned, when there is one.
    pub fn path(&self) -> Option<&str> {
        match self {
            SecretError::Denied { path, .. }
            | SecretError::NotFound { path, .. }
            | SecretError::Read { path, .. }
            | SecretError::NoField { path, .. }
            | SecretError::NotRenderable { path, .. } => Some(path),
            SecretError::File { .. } | SecretError::Dir { .. } => None,
        }
    }
}

/// The hint for a path that looks like a KV v2 path without `data/`: empty when a later
/// segment already is `data` (or the path has a single segment).
pub fn kv2_hint(path: &str) -> String {
    let mut segments = path.split('/');
    let mount = segments.next().unwrap_or_default();
    let rest: Vec<&str> = segments.collect();
    if rest.is_empty() || rest.contains(&"data") {
        return String::new();
    }
    format!(
        "; if {mount} is a KV v2 engine, reads go to {mount}/data/{} (the vault kv CLI adds data/ itself, the API does not)",
        rest.join("/")
    )
}

/// Classifies a failed read of `path`.
pub fn read_error(path: &str, err: VaultError) -> SecretError {
    match err.status().map(|s| s.as_u16()) {
        Some(403) if matches!(err, VaultError::Status { .. }) => SecretError::Denied {
            path: path.to_string(),
            hint: kv2_hint(path),
        },
        Some(404) if matches!(err, VaultError::Status { .. }) => SecretError::NotFound {
            path: path.to_string(),
            hint: kv2_hint(path),
        },
        _ => SecretError::Read {
            path: path.to_string(),
            source: err,
        },
    }
}

fn hash(bytes: &[u8]) -> u64 {
    // DefaultHasher::new() uses fixed keys, so the same content always hashes the same.
    let mut h = DefaultHasher::new();
    bytes.hash(&mut h);
    h.finish()
}

/// A field's value as `vault kv get -field=` prints it: a string raw, anything else as JSON.
fn raw_value(value: &Value) -> Vec<u8> {
    match value {
        Value::String(s) => s.as_bytes().to_vec(),
        other => other.to_string().into_bytes(),
    }
}

/// Whether `key` is a POSIX shell variable name.
fn shell_name(key: &str) -> bool {
    let mut bytes = key.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Renders `read` as `spec` asks.
pub fn render(spec: &SecretSpec, read: &SecretRead) -> Result<Rendered, SecretError> {
    let data = read.data.expose();
    let bytes = match &spec.format {
        Format::Json => serde_json::to_vec(data).map_err(|e| SecretError::NotRenderable {
            path: spec.path.clone(),
            problem: format!("cannot encode the data as JSON: {e}"),
        })?,
        Format::Field(field) => match data.get(field) {
            Some(value) => raw_value(value),
            None => {
                return Err(SecretError::NoField {
                    path: spec.path.clone(),
                    field: field.clone(),
                    fields: read.data.field_names(),
                    variable: spec.variable.clone(),
                })
            }
        },
        Format::Dotenv => {
            let mut out = Vec::new();
            for key in read.data.field_names() {
                let not_renderable = |problem: String| SecretError::NotRenderable {
                    path: spec.path.clone(),
                    problem: format!("as dotenv: {problem}"),
                };
                if !shell_name(&key) {
                    return Err(not_renderable(format!(
                        "field {key:?} is not a shell variable name ([A-Za-z_][A-Za-z0-9_]*); rename it in Vault or write the secret as JSON"
                    )));
                }
                let value = raw_value(&data[&key]);
                if value.contains(&0) {
                    return Err(not_renderable(format!(
                        "the value of field {key:?} contains a NUL byte, which no shell variable can hold"
                    )));
                }
                out.extend_from_slice(b"export ");
                out.extend_from_slice(key.as_bytes());
                out.extend_from_slice(b"='");
                for &b in &value {
                    // Inside single quotes nothing is special except the quote itself, which
                    // closes the quote, adds an escaped quote and opens a new one.
                    if b == b'\'' {
                        out.extend_from_slice(b"'\\''");
                    } else {
                        out.push(b);
                    }
                }
                out.extend_from_slice(b"'\n");
            }
            out
        }
    };
    let fingerprint = match read.kv2_version {
        Some(version) => Fingerprint::Version(version),
        None => Fingerprint::Content(hash(&bytes)),
    };
    Ok(Rendered {
        bytes: Zeroizing::new(bytes),
        fingerprint,
    })
}

/// Reads `path` once with `token` and renders each of `specs` (which all read it) from that one
/// answer, in order. Any spec that cannot be rendered fails them all, so the files of one secret
/// never mix two reads.
pub async fn fetch_all(
    client: &crate::vault::VaultClient,
    token: &Secret,
    path: &str,
    specs: &[&SecretSpec],
) -> Result<(SecretRead, Vec<Rendered>), SecretError> {
    let read = client
        .read_secret(token, path)
        .await
        .map_err(|e| read_error(path, e))?;
    let rendered = specs
        .iter()
        .map(|spec| render(spec, &read))
        .collect::<Result<_, _>>()?;
    Ok((read, rendered))
}

/// Parses a raw answer to a `GET` of `path` (or a template's write) into the secret read.
pub fn parse_read(raw: &RawAnswer, path: &str) -> Result<SecretRead, SecretError> {
    crate::vault::parse_secret_response(&raw.op, raw.status, path, &raw.body)
        .map_err(|e| read_error(path, e))
}

/// One read (a `GET`, a template's write, a list) and the specs that use it. One read serves
/// every file made from it: the files of a dynamic secret (`database/creds/app#username` and
/// `…#password`, or a template printing both) then hold the same credentials, from one lease,
/// and a KV secret used by several files costs one read per refresh.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Source {
    /// The request.
    pub read: Read,
    /// The indexes of the `VAULT_LOGIN_SECRET_*` specs that read it, in the order given.
    pub specs: Vec<usize>,
    /// Whether a template reads it: a `GET` is then made as consul-template makes it, on the
    /// KV v2 path when the mount is KV v2 (`secret/foo` → `secret/data/foo`).
    pub templated: bool,
}

impl Source {
    /// A source for `read`, used by no spec yet.
    pub fn new(read: Read, templated: bool) -> Self {
        Source {
            read,
            specs: Vec::new(),
            templated,
        }
    }

    /// The API path.
    pub fn path(&self) -> &str {
        self.read.path()
    }

    /// The variables of its specs (from `specs`, all of them), for messages.
    pub fn variables(&self, specs: &[SecretSpec]) -> String {
        let names: Vec<&str> = self
            .specs
            .iter()
            .map(|i| specs[*i].variable.as_str())
            .collect();
        names.join(", ")
    }
}

/// The distinct reads of `specs` and of the first render of `templates`: the specs' in the
/// order each path first appears, then the templates' new ones in order.
pub fn sources(specs: &[SecretSpec], templates: &[TemplateSpec]) -> Vec<Source> {
    let mut sources: Vec<Source> = Vec::new();
    for (i, spec) in specs.iter().enumerate() {
        let read = Read::Get(spec.path.clone());
        match sources.iter_mut().find(|s| s.read == read) {
            Some(source) => source.specs.push(i),
            None => sources.push(Source {
                read,
                specs: vec![i],
                templated: false,
            }),
        }
    }
    // A `pkiCert` is a certificate, kept by the certificates' lane, not a read to refresh.
    let reads = templates.iter().flat_map(|t| &t.first_reads);
    for read in reads.filter(|r| !matches!(r, Read::Cert(..))) {
        match sources.iter_mut().find(|s| s.read == *read) {
            Some(source) => source.templated = true,
            None => sources.push(Source::new(read.clone(), true)),
        }
    }
    sources
}

/// Writes secret files into one directory, each exactly like the token file: a fresh temp
/// file, the exact mode, fsync, chown, rename over the target, fsync of the directory. A failed
/// read never reaches the writer, so a file is never emptied or deleted because of one.
#[derive(Clone, Debug)]
pub struct SecretWriter {
    dir: PathBuf,
    mode: u32,
    owner: Option<Owner>,
}

impl SecretWriter {
    /// A writer into `dir` with the token file's `mode` and `owner`.
    pub fn new(dir: impl Into<PathBuf>, mode: u32, owner: Option<Owner>) -> Self {
        SecretWriter {
            dir: dir.into(),
            mode,
            owner,
        }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where `spec`'s file goes.
    pub fn path_for(&self, spec: &SecretSpec) -> PathBuf {
        self.dir.join(&spec.name)
    }

    /// Checks at startup that the directory exists and accepts new files.
    pub fn check(&self) -> Result<(), SecretError> {
        match std::fs::metadata(&self.dir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(SecretError::Dir {
                    problem: format!("{} is not a directory", self.dir.display()),
                })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(SecretError::Dir {
                    problem: format!(
                        "{} does not exist: mount the shared volume there or point {SECRETS_DIR_ENV} into an existing directory",
                        self.dir.display()
                    ),
                })
            }
            Err(e) => {
                return Err(SecretError::Dir {
                    problem: format!("cannot inspect {}: {e}", self.dir.display()),
                })
            }
        }
        let probe = TokenFile::new(self.dir.join(".vault-login-probe"), self.mode, None);
        probe.check().map_err(|e| SecretError::Dir {
            problem: e.to_string(),
        })
    }

    /// Removes the files of `specs` and `templates` (on exit, with the token revoked): their
    /// credentials are about to die with their leases.
    pub fn remove_all(&self, specs: &[SecretSpec], templates: &[TemplateSpec]) {
        let names = (specs.iter().map(|s| &s.name)).chain(templates.iter().map(|t| &t.file));
        for name in names {
            let path = self.dir.join(name);
            match std::fs::remove_file(&path) {
                Ok(()) => info!(path = %path.display(), "secret file removed"),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    warn!(path = %path.display(), error = %e, "cannot remove the secret file")
                }
            }
        }
    }

    /// Writes the files of the `jobs` that are `Some` on a blocking thread (a slow volume never
    /// stalls the runtime); for each job in order, the fingerprint of what its file now holds
    /// and whether it was rewritten (`false`: it already held exactly that, see
    /// [`SecretWriter::holds`]), None where there was no job. `version` is the KV v2 version
    /// read, for the log.
    pub async fn write_changed(
        &self,
        jobs: Vec<Option<(SecretSpec, Rendered)>>,
        version: Option<u64>,
    ) -> Result<Vec<Option<(Fingerprint, bool)>>, SecretError> {
        if jobs.iter().all(Option::is_none) {
            return Ok(vec![None; jobs.len()]);
        }
        let writer = self.clone();
        let write = tokio::task::spawn_blocking(move || {
            let write_one = |(spec, rendered): (SecretSpec, Rendered)| {
                let path = writer.write(&spec, &rendered)?;
                if let Some(path) = &path {
                    info!(secret = %spec.name, path = %path.display(), version, "secret written");
                }
                Ok((rendered.fingerprint(), path.is_some()))
            };
            jobs.into_iter()
                .map(|job| job.map(write_one).transpose())
                .collect()
        });
        write.await.unwrap_or_else(|e| {
            Err(SecretError::Dir {
                problem: format!("the secret file write did not finish: {e}"),
            })
        })
    }

    /// Atomically replaces template `spec`'s file with `bytes`, with its mode (or the writer's);
    /// returns its path, or None when the file already held exactly that (not rewritten).
    pub fn write_template(
        &self,
        spec: &TemplateSpec,
        bytes: &[u8],
    ) -> Result<Option<PathBuf>, SecretError> {
        let file = self.dir.join(&spec.file);
        if !templates::valid_file_name(&spec.file) {
            // Specs come from `templates_from_env`, which allows only these names.
            return Err(SecretError::Dir {
                problem: format!(
                    "{:?} is not a template file name; nothing was written",
                    spec.file
                ),
            });
        }
        let mode = spec.mode.unwrap_or(self.mode);
        if self.holds(&file, mode, bytes) {
            return Ok(None);
        }
        TokenFile::new(&file, mode, self.owner)
            .write_bytes(bytes)
            .map_err(|source| SecretError::File {
                file: file.clone(),
                source,
            })?;
        Ok(Some(file))
    }

    /// Whether `file` already holds exactly `bytes` as a regular file with `mode` and this
    /// writer's owner (or, without one, this process's user). A restarted sidecar finds the
    /// files it published on the volume: rewriting the same bytes would give them a new inode
    /// and run the change hooks for nothing. Anything else (missing, a symlink, another
    /// mode or owner, other bytes, unreadable) is rewritten.
    pub fn holds(&self, file: &Path, mode: u32, bytes: &[u8]) -> bool {
        use std::os::unix::fs::MetadataExt;
        let Ok(f) = safe_fs::open_regular_nonblocking(file, Links::Refuse) else {
            return false;
        };
        let Ok(meta) = f.metadata() else {
            return false;
        };
        let owner_ok = match self.owner {
            Some(o) => meta.uid() == o.uid && o.gid.is_none_or(|g| meta.gid() == g),
            None => meta.uid() == rustix::process::geteuid().as_raw(),
        };
        if meta.mode() & 0o7777 != mode || !owner_ok || meta.len() != bytes.len() as u64 {
            return false;
        }
        match safe_fs::read_bounded(f, bytes.len() as u64) {
            Ok(held) => Zeroizing::new(held).as_slice() == bytes,
            Err(_) => false,
        }
    }

    /// Atomically replaces `spec`'s file with `rendered`; returns its path, or None when the
    /// file already held exactly that (not rewritten).
    pub fn write(
        &self,
        spec: &SecretSpec,
        rendered: &Rendered,
    ) -> Result<Option<PathBuf>, SecretError> {
        let file = self.path_for(spec);
        if !valid_name(&spec.name) {
            // Specs come from `SecretSpec::parse`, which allows only these names; a hand-made
            // spec must not write outside the directory either.
            return Err(SecretError::Dir {
                problem: format!(
                    "{:?} is not a secret file name (only a-z, 0-9 and '_'); nothing was written",
                    spec.name
                ),
            });
        }
        if self.holds(&file, self.mode, rendered.expose()) {
            return Ok(None);
        }
        TokenFile::new(&file, self.mode, self.owner)
            .write_bytes(rendered.expose())
            .map_err(|source| SecretError::File {
                file: file.clone(),
                source,
            })?;
        Ok(Some(file))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vault::SecretData;
    use serde_json::json;
    use std::collections::HashMap;
    use std::os::unix::fs::MetadataExt;

    fn read(data: Value, version: Option<u64>) -> SecretRead {
        let Value::Object(map) = data else {
            panic!("object")
        };
        SecretRead {
            data: SecretData::new(map),
            lease_id: String::new(),
            lease_duration: Duration::ZERO,
            renewable: false,
            kv2_version: version,
            warnings: Vec::new(),
        }
    }

    fn spec(value: &str) -> SecretSpec {
        SecretSpec::parse("VAULT_LOGIN_SECRET_DB_PASSWORD", value).unwrap()
    }

    fn env_of(vars: &[(&str, &str)]) -> (Vec<String>, impl Fn(&str) -> Option<String>) {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let names = map.keys().cloned().collect();
        (names, move |name: &str| map.get(name).cloned())
    }

    #[test]
    fn specs_reading_one_path_share_a_source_in_order() {
        let spec = |name: &str, value: &str| {
            SecretSpec::parse(&format!("VAULT_LOGIN_SECRET_{name}"), value).unwrap()
        };
        let specs = vec![
            spec("DB_USER", "database/creds/app#username"),
            spec("API", "kv/app"),
            spec("DB_PASS", "database/creds/app#password"),
            spec("DB_ENV", "dotenv:database/creds/app"),
        ];
        let sources = sources(&specs, &[]);
        assert_eq!(
            sources,
            vec![
                Source {
                    read: Read::Get("database/creds/app".into()),
                    specs: vec![0, 2, 3],
                    templated: false,
                },
                Source {
                    read: Read::Get("kv/app".into()),
                    specs: vec![1],
                    templated: false,
                },
            ]
        );
        assert_eq!(
            sources[0].variables(&specs),
            "VAULT_LOGIN_SECRET_DB_USER, VAULT_LOGIN_SECRET_DB_PASS, VAULT_LOGIN_SECRET_DB_ENV"
        );
    }

    #[test]
    fn specs_parse_path_field_and_dotenv() {
        assert_eq!(
            spec("internal/data/database/config#password"),
            SecretSpec {
                name: "db_password".into(),
                variable: "VAULT_LOGIN_SECRET_DB_PASSWORD".into(),
                path: "internal/data/database/config".into(),
                format: Format::Field("password".into()),
            }
        );
        assert_eq!(spec("/kv/app").path, "kv/app");
        assert_eq!(spec("kv/app").format, Format::Json);
        assert_eq!(spec("dotenv:internal/data/app").format, Format::Dotenv);
        assert_eq!(spec("dotenv:internal/data/app").path, "internal/data/app");
    }

    #[test]
    fn bad_specs_name_the_variable_and_the_fix() {
        for (variable, value, needle) in [
            ("VAULT_LOGIN_SECRET_", "kv/a", "the name after"),
            ("VAULT_LOGIN_SECRET_A-B", "kv/a", "letters, digits"),
            ("VAULT_LOGIN_SECRET_A", "kv/a#", "nothing after '#'"),
            ("VAULT_LOGIN_SECRET_A", "kv/a#b#c", "more than one '#'"),
            (
                "VAULT_LOGIN_SECRET_A",
                "dotenv:kv/a#b",
                "dotenv: writes every field",
            ),
            ("VAULT_LOGIN_SECRET_A", "#f", "no path"),
            ("VAULT_LOGIN_SECRET_A", "/v1/kv/a", "without /v1/"),
            ("VAULT_LOGIN_SECRET_A", "kv/../sys", "'..' segment"),
            ("VAULT_LOGIN_SECRET_A", "kv//a", "empty"),
            ("VAULT_LOGIN_SECRET_A", "kv/a/", "empty"),
            ("VAULT_LOGIN_SECRET_A", "kv/a b", "spaces"),
            ("VAULT_LOGIN_SECRET_A", "kv/a?version=1", "'?'"),
        ] {
            let err = SecretSpec::parse(variable, value).unwrap_err();
            assert_eq!(err.variable, variable);
            assert!(err.problem.contains(needle), "{value}: {}", err.problem);
        }
    }

    #[test]
    fn specs_from_env_take_only_secret_variables_sorted_and_unique() {
        let (names, env) = env_of(&[
            ("VAULT_LOGIN_SECRET_DB", "internal/data/database/config"),
            ("VAULT_LOGIN_SECRET_API_KEY", "kv/app#key"),
            ("VAULT_LOGIN_SECRET_EMPTY", ""),
            ("VAULT_LOGIN_SECRETS_DIR", "/x"),
            ("VAULT_LOGIN_SECRETS_REFRESH", "1m"),
            ("VAULT_ADDR", "http://v"),
        ]);
        let specs = specs_from_env(&names, &env).unwrap();
        let got: Vec<(&str, &str)> = specs
            .iter()
            .map(|s| (s.name.as_str(), s.path.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("api_key", "kv/app"),
                ("db", "internal/data/database/config")
            ]
        );
        let (names, env) = env_of(&[
            ("VAULT_LOGIN_SECRET_DB", "kv/a"),
            ("VAULT_LOGIN_SECRET_db", "kv/b"),
        ]);
        let err = specs_from_env(&names, &env).unwrap_err();
        assert!(
            err.problem.contains("also writes the file \"db\""),
            "{err:?}"
        );
    }

    #[test]
    fn reserved_files_are_refused() {
        let settings = SecretsSettings {
            dir: PathBuf::from("/vault"),
            refresh: DEFAULT_REFRESH,
            specs: vec![SecretSpec::parse("VAULT_LOGIN_SECRET_TOKEN", "kv/a").unwrap()],
            templates: Vec::new(),
        };
        let err = settings
            .check_reserved(&[Path::new("/vault/token")])
            .unwrap_err();
        assert_eq!(err.variable, "VAULT_LOGIN_SECRET_TOKEN");
        assert!(settings
            .check_reserved(&[Path::new("/other/token")])
            .is_ok());
    }

    #[test]
    fn json_renders_the_data_and_field_renders_raw() {
        let r = read(
            json!({"username": "u", "password": "p'w", "port": 5432}),
            Some(3),
        );
        let json_file = render(&spec("internal/data/db"), &r).unwrap();
        let parsed: Value = serde_json::from_slice(json_file.expose()).unwrap();
        assert_eq!(
            parsed,
            json!({"username": "u", "password": "p'w", "port": 5432})
        );
        assert_eq!(json_file.fingerprint(), Fingerprint::Version(3));
        assert_eq!(
            render(&spec("internal/data/db#password"), &r)
                .unwrap()
                .expose(),
            b"p'w"
        );
        assert_eq!(
            render(&spec("internal/data/db#port"), &r).unwrap().expose(),
            b"5432"
        );
        let err = render(&spec("internal/data/db#pasword"), &r).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("no field \"pasword\""), "{text}");
        assert!(text.contains("password, port, username"), "{text}");
        assert!(!text.contains("p'w"), "{text}");
        assert!(!format!("{json_file:?}").contains("p'w"));
    }

    #[test]
    fn kv2_changes_by_version_others_by_content() {
        let s = spec("kv/app");
        let a = render(&s, &read(json!({"k": "1"}), None)).unwrap();
        let same = render(&s, &read(json!({"k": "1"}), None)).unwrap();
        let other = render(&s, &read(json!({"k": "2"}), None)).unwrap();
        assert!(a.changed_since(None));
        assert!(!same.changed_since(Some(a.fingerprint())));
        assert!(other.changed_since(Some(a.fingerprint())));
        // KV v2: the same version is not rewritten, even if rendering changed (it cannot, for
        // one version); a new version is.
        let v3 = render(&s, &read(json!({"k": "1"}), Some(3))).unwrap();
        let v3_again = render(&s, &read(json!({"k": "1"}), Some(3))).unwrap();
        let v4 = render(&s, &read(json!({"k": "1"}), Some(4))).unwrap();
        assert!(!v3_again.changed_since(Some(v3.fingerprint())));
        assert!(v4.changed_since(Some(v3.fingerprint())));
    }

    /// Values that would run or expand something if quoted wrongly.
    const HOSTILE: &[&str] = &[
        "plain",
        "it's",
        "'",
        "''\\''",
        "a\"b",
        "line1\nline2\n",
        "$(touch pwned)",
        "`touch pwned`",
        "${HOME}$HOME",
        "\\n\\",
        " leading and trailing ",
        "semi;colon && echo x | cat",
        "*",
        "",
        "ünïcødé",
    ];

    #[test]
    fn dotenv_survives_sh_sourcing_hostile_values() {
        let dir = tempfile::tempdir().unwrap();
        let mut data = serde_json::Map::new();
        for (i, v) in HOSTILE.iter().enumerate() {
            data.insert(format!("V{i}"), json!(v));
        }
        data.insert("NUM".into(), json!(42));
        data.insert("_OBJ".into(), json!({"a": [1, "x'y"]}));
        let r = read(Value::Object(data), None);
        let rendered = render(&spec("dotenv:kv/app"), &r).unwrap();
        let file = dir.path().join("app.env");
        std::fs::write(&file, rendered.expose()).unwrap();
        let check = |name: &str, expected: &str| {
            let out = std::process::Command::new("/bin/sh")
                .arg("-c")
                .arg(format!(". ./app.env && printf '%s' \"${name}\""))
                .current_dir(dir.path())
                .env_clear()
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert_eq!(String::from_utf8(out.stdout).unwrap(), expected, "{name}");
        };
        for (i, v) in HOSTILE.iter().enumerate() {
            check(&format!("V{i}"), v);
        }
        check("NUM", "42");
        check("_OBJ", r#"{"a":[1,"x'y"]}"#);
        // Exported: a child process sees them.
        let out = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(". ./app.env && /bin/sh -c 'printf %s \"$V1\"'")
            .current_dir(dir.path())
            .env_clear()
            .output()
            .unwrap();
        assert_eq!(String::from_utf8(out.stdout).unwrap(), "it's");
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec!["app.env"], "nothing ran");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]

        /// Any value without NUL comes back byte for byte from `. file` in /bin/sh.
        #[test]
        fn dotenv_round_trips_any_value_through_sh(value in "[^\u{0}]{0,40}") {
            let dir = tempfile::tempdir().unwrap();
            let r = read(json!({"V": value}), None);
            let rendered = render(&spec("dotenv:kv/app"), &r).unwrap();
            std::fs::write(dir.path().join("f"), rendered.expose()).unwrap();
            let out = std::process::Command::new("/bin/sh")
                .arg("-c")
                .arg(". ./f && printf '%s' \"$V\"")
                .current_dir(dir.path())
                .env_clear()
                .output()
                .unwrap();
            proptest::prop_assert!(out.status.success());
            proptest::prop_assert_eq!(String::from_utf8(out.stdout).unwrap(), value);
            let entries = std::fs::read_dir(dir.path()).unwrap().count();
            proptest::prop_assert_eq!(entries, 1);
        }
    }

    #[test]
    fn dotenv_refuses_names_and_values_a_shell_cannot_hold() {
        for (data, needle) in [
            (
                json!({"db-pass": "x"}),
                "\"db-pass\" is not a shell variable name",
            ),
            (json!({"1X": "x"}), "\"1X\" is not a shell variable name"),
            (json!({"K": "a\u{0}b"}), "NUL"),
        ] {
            let err = render(&spec("dotenv:kv/app"), &read(data, None)).unwrap_err();
            let text = err.to_string();
            assert!(text.contains(needle), "{text}");
            assert!(!text.contains("a\u{0}b"));
        }
    }

    #[test]
    fn read_errors_explain_403_and_404_with_the_kv2_hint() {
        let status = |s: u16| VaultError::Status {
            op: "GET http://v/v1/internal/database/config".into(),
            status: reqwest::StatusCode::from_u16(s).unwrap(),
            errors: vec!["1 error occurred:\n\t* permission denied\n\n".into()],
            retry_after: None,
        };
        let denied = read_error("internal/database/config", status(403)).to_string();
        assert!(
            denied.contains("the role's policies must grant \"read\" on internal/database/config"),
            "{denied}"
        );
        assert!(
            denied.contains("reads go to internal/data/database/config"),
            "{denied}"
        );
        let missing = read_error("internal/data/database/config", status(404)).to_string();
        assert!(
            missing.contains("there is no secret at internal/data/database/config"),
            "{missing}"
        );
        assert!(!missing.contains("reads go to"), "{missing}");
        let outage = read_error("kv/a", status(503));
        assert!(outage.is_transient());
        assert!(!read_error("kv/a", status(403)).is_transient());
        assert_eq!(kv2_hint("database/creds/app"), "; if database is a KV v2 engine, reads go to database/data/creds/app (the vault kv CLI adds data/ itself, the API does not)");
        assert_eq!(kv2_hint("kv"), "");
    }

    #[test]
    fn a_file_that_already_holds_its_content_is_left_as_it_is() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let writer = SecretWriter::new(dir.path(), 0o640, None);
        let s = spec("kv/app#k");
        let r = render(&s, &read(json!({"k": "v1"}), None)).unwrap();
        let path = writer.write(&s, &r).unwrap().expect("written");
        let ino = || std::fs::metadata(&path).unwrap().ino();
        let first = ino();
        assert_eq!(
            writer.write(&s, &r).unwrap(),
            None,
            "same bytes, mode, owner"
        );
        assert_eq!(ino(), first);
        // another mode, other bytes (same length, longer), a symlink: rewritten
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(writer.write(&s, &r).unwrap().is_some());
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o7777, 0o640);
        for other in [&b"v2"[..], b"v1\n"] {
            std::fs::write(&path, other).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
            assert!(writer.write(&s, &r).unwrap().is_some());
            assert_eq!(std::fs::read(&path).unwrap(), b"v1");
        }
        let elsewhere = dir.path().join("elsewhere");
        std::fs::write(&elsewhere, b"v1").unwrap();
        std::fs::set_permissions(&elsewhere, std::fs::Permissions::from_mode(0o640)).unwrap();
        std::fs::remove_file(&path).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &path).unwrap();
        assert!(writer.write(&s, &r).unwrap().is_some());
        assert!(std::fs::symlink_metadata(&path).unwrap().is_file());
        let not_ours = SecretWriter::new(
            dir.path(),
            0o640,
            Some(Owner {
                uid: rustix::process::geteuid().as_raw() + 1,
                gid: None,
            }),
        );
        assert!(!not_ours.holds(&path, 0o640, b"v1"), "another owner");
        assert!(writer.holds(&path, 0o640, b"v1"));
    }

    #[test]
    fn the_writer_publishes_like_the_token_file_and_never_escapes_the_dir() {
        let dir = tempfile::tempdir().unwrap();
        let writer = SecretWriter::new(dir.path(), 0o640, None);
        writer.check().unwrap();
        let s = spec("kv/app#k");
        let r = render(&s, &read(json!({"k": "v1"}), None)).unwrap();
        let path = writer.write(&s, &r).unwrap().expect("written");
        assert_eq!(path, dir.path().join("db_password"));
        assert_eq!(std::fs::read(&path).unwrap(), b"v1");
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o7777, 0o640);
        let hostile = SecretSpec {
            name: "../escape".into(),
            ..s.clone()
        };
        assert!(writer.write(&hostile, &r).is_err());
        assert!(!dir.path().parent().unwrap().join("escape").exists());
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec!["db_password"]);
        let missing = SecretWriter::new(dir.path().join("nope"), 0o600, None);
        let err = missing.check().unwrap_err().to_string();
        assert!(err.starts_with("VAULT_LOGIN_SECRETS_DIR: "), "{err}");
        assert!(err.contains("does not exist"), "{err}");
    }
}
