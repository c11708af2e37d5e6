//! Templates to files: the `VAULT_LOGIN_TEMPLATE_<NAME>` specs (text, or `@file`), their file
//! name, mode and strictness, and [`TemplateBook`], which keeps the answers of the reads the
//! templates make and renders each template once everything it reads is answered.
//!
//! # The contract
//! - `VAULT_LOGIN_TEMPLATE_<NAME>=<text>` renders `<text>` (Vault Agent's template language, see
//!   [`crate::secrets::template`]) to `<dir>/<name>`, `<name>` being NAME lower-cased, written like a
//!   `VAULT_LOGIN_SECRET_<NAME>` file (same directory, owner, atomic write). A value starting
//!   with `@` names a file holding the text (`@/etc/templates/app.conf.tmpl`, a ConfigMap), read
//!   once at startup: a regular file (symlinks followed, as a ConfigMap's `..data` links need),
//!   at most [`MAX_TEMPLATE_BYTES`].
//! - Three settings per template, the variable naming the template after the setting's word:
//!   `VAULT_LOGIN_TEMPLATE_FILE_<NAME>=app.conf` (the file name, Agent's `agent-inject-file`),
//!   `VAULT_LOGIN_TEMPLATE_MODE_<NAME>=0640` (Agent's `agent-inject-perms`; default the token
//!   file's mode) and `VAULT_LOGIN_TEMPLATE_LENIENT_<NAME>=true` (Agent's
//!   `error_on_missing_key = false`: a missing key prints `<no value>` instead of failing).
//!   So no template can be named `FILE_…`, `MODE_…` or `LENIENT_…`: such a variable is always
//!   read as a setting, and one whose template is not set is a configuration error.
//! - Parse errors (syntax, unknown or refused functions) are configuration errors naming the
//!   variable, the line and the column, found before any network call.

use std::collections::hash_map::DefaultHasher;
use std::collections::BTreeSet;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use zeroize::Zeroizing;

use super::{spec_error, SpecError};
use crate::files::safe_fs::{self, Links};
use crate::files::token_file::parse_mode;
use crate::secrets::template::{Funcs, PemEncoded, Read, Reads, Secret, Source, Template};

/// The prefix of the variables that name templates: `VAULT_LOGIN_TEMPLATE_<NAME>=<text>`.
pub const TEMPLATE_ENV_PREFIX: &str = "VAULT_LOGIN_TEMPLATE_";
/// After [`TEMPLATE_ENV_PREFIX`]: the file name of template NAME (`…_FILE_<NAME>`).
pub const FILE_WORD: &str = "FILE_";
/// After [`TEMPLATE_ENV_PREFIX`]: the file mode of template NAME (`…_MODE_<NAME>`).
pub const MODE_WORD: &str = "MODE_";
/// After [`TEMPLATE_ENV_PREFIX`]: Agent's lenient missing keys for template NAME.
pub const LENIENT_WORD: &str = "LENIENT_";
/// The largest template file read with `@path`.
pub const MAX_TEMPLATE_BYTES: u64 = 1024 * 1024;

/// One `VAULT_LOGIN_TEMPLATE_<NAME>` with its settings, parsed.
#[derive(Clone)]
pub struct TemplateSpec {
    /// NAME lower-cased: the template's name in errors, logs and metrics.
    pub name: String,
    /// The variable it came from, for messages.
    pub variable: String,
    /// The file it renders to, inside the secrets directory.
    pub file: String,
    /// The file's mode (`None`: the token file's).
    pub mode: Option<u32>,
    /// Agent's `error_on_missing_key = false`: print `<no value>` instead of failing.
    pub lenient: bool,
    /// Program and arguments to run after this file changes (Agent's per-template `command`,
    /// vault-k8s's `agent-inject-command-<name>`), if any.
    pub command: Option<Vec<String>>,
    /// The file the text was read from (`@path`), if any.
    pub origin: Option<PathBuf>,
    /// The parsed template.
    pub template: Arc<Template>,
    /// The reads a first render makes before anything is answered (those that do not depend
    /// on another read's answer): read from the start.
    pub first_reads: BTreeSet<Read>,
}

impl fmt::Debug for TemplateSpec {
    /// The settings and the size of the text (the text is configuration, not a secret, but
    /// long; the reads name paths only).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TemplateSpec")
            .field("name", &self.name)
            .field("file", &self.file)
            .field("mode", &self.mode.map(|m| format!("{m:04o}")))
            .field("lenient", &self.lenient)
            .field("command", &self.command.as_ref().map(|c| c.len()))
            .field("origin", &self.origin)
            .field("bytes", &self.template.text().len())
            .finish_non_exhaustive()
    }
}

impl PartialEq for TemplateSpec {
    fn eq(&self, other: &Self) -> bool {
        (
            &self.variable,
            &self.file,
            self.mode,
            self.lenient,
            &self.command,
            &self.origin,
        ) == (
            &other.variable,
            &other.file,
            other.mode,
            other.lenient,
            &other.command,
            &other.origin,
        ) && self.template.text() == other.template.text()
    }
}

impl Eq for TemplateSpec {}

/// Whether `file` may be a template's file name: letters, digits, `.`, `_`, `-`, not starting
/// with `.` (hidden files and the writer's `.name.tmp.*` temp files), no `/`.
pub fn valid_file_name(file: &str) -> bool {
    !file.is_empty()
        && file.len() <= 255
        && !file.starts_with('.')
        && file
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// What a `VAULT_LOGIN_TEMPLATE_*` variable sets.
enum Kind<'a> {
    Text(&'a str),
    File(&'a str),
    Mode(&'a str),
    Lenient(&'a str),
}

fn kind(variable: &str) -> Kind<'_> {
    let tail = variable
        .strip_prefix(TEMPLATE_ENV_PREFIX)
        .unwrap_or_default();
    if let Some(name) = tail.strip_prefix(FILE_WORD) {
        Kind::File(name)
    } else if let Some(name) = tail.strip_prefix(MODE_WORD) {
        Kind::Mode(name)
    } else if let Some(name) = tail.strip_prefix(LENIENT_WORD) {
        Kind::Lenient(name)
    } else {
        Kind::Text(tail)
    }
}

/// Reads an `@path` template file, bounded; the problem on one line.
pub fn read_template_file(path: &Path) -> Result<String, String> {
    let bytes = safe_fs::read_regular(path, Links::Follow, MAX_TEMPLATE_BYTES)
        .map_err(|e| format!("cannot read the template file {}: {e}", path.display()))?;
    String::from_utf8(bytes)
        .map_err(|_| format!("the template file {} is not UTF-8 text", path.display()))
}

/// Every `VAULT_LOGIN_TEMPLATE_<NAME>` among `names` with its settings, read through `env`,
/// parsed with `funcs` (its functions decide what is refused), sorted by name. An empty value
/// counts as unset.
pub fn templates_from_env(
    names: &[String],
    env: &dyn Fn(&str) -> Option<String>,
    funcs: &Funcs,
) -> Result<Vec<TemplateSpec>, SpecError> {
    let mut variables: Vec<&String> = names
        .iter()
        .filter(|n| n.starts_with(TEMPLATE_ENV_PREFIX))
        .collect();
    variables.sort();
    variables.dedup();
    let value = |v: &str| env(v).filter(|x| !x.is_empty());
    let mut specs: Vec<TemplateSpec> = Vec::new();
    for variable in &variables {
        if let Kind::Text(raw) = kind(variable) {
            let Some(text) = value(variable) else {
                continue;
            };
            specs.push(parse_one(variable, raw, &text, funcs)?);
        }
    }
    for variable in &variables {
        let (raw, word) = match kind(variable) {
            Kind::Text(_) => continue,
            Kind::File(n) => (n, FILE_WORD),
            Kind::Mode(n) => (n, MODE_WORD),
            Kind::Lenient(n) => (n, LENIENT_WORD),
        };
        let Some(given) = value(variable) else {
            continue;
        };
        let Some(spec) = specs
            .iter_mut()
            .find(|s| s.name == raw.to_ascii_lowercase())
        else {
            return Err(spec_error(
                variable,
                format!(
                    "sets the {} of template {raw:?}, but {TEMPLATE_ENV_PREFIX}{raw} is not set; set it, or remove this variable (a template cannot be named {word}…)",
                    word.trim_end_matches('_').to_ascii_lowercase()
                ),
            ));
        };
        match kind(variable) {
            Kind::File(_) => {
                if !valid_file_name(&given) {
                    return Err(spec_error(
                        variable,
                        format!("{given:?} is not a file name vault-login writes: use letters, digits, '.', '_' and '-', not starting with '.', without '/' (the file goes to the secrets directory)"),
                    ));
                }
                spec.file = given;
            }
            Kind::Mode(_) => {
                spec.mode = Some(parse_mode(&given).map_err(|p| spec_error(variable, p))?);
            }
            Kind::Lenient(_) => {
                spec.lenient = match given.trim() {
                    "true" | "1" => true,
                    "false" | "0" => false,
                    _ => {
                        return Err(spec_error(
                            variable,
                            format!("{given:?} is not true or false"),
                        ))
                    }
                }
            }
            Kind::Text(_) => {}
        }
    }
    for (i, spec) in specs.iter().enumerate() {
        if let Some(other) = specs[..i].iter().find(|o| o.file == spec.file) {
            return Err(spec_error(
                &spec.variable,
                format!(
                    "{} also writes the file {:?}; give each template its own file ({TEMPLATE_ENV_PREFIX}{FILE_WORD}<NAME>)",
                    other.variable, spec.file
                ),
            ));
        }
    }
    sort_by_name(&mut specs);
    Ok(specs)
}

/// Sorts templates by name, stably. An insertion sort rather than `sort_by`: each `sort_by`
/// instance adds about 5 KB of binary, and there are a handful of templates.
pub fn sort_by_name(specs: &mut [TemplateSpec]) {
    for i in 1..specs.len() {
        let at = specs[..i].partition_point(|s| s.name <= specs[i].name);
        specs[at..=i].rotate_right(1);
    }
}

/// Parses `variable=value` (`raw` is NAME as written).
fn parse_one(
    variable: &str,
    raw: &str,
    value: &str,
    funcs: &Funcs,
) -> Result<TemplateSpec, SpecError> {
    if raw.is_empty() || !raw.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(spec_error(
            variable,
            format!("the name after {TEMPLATE_ENV_PREFIX} must be letters, digits and '_' (it becomes the file name), e.g. {TEMPLATE_ENV_PREFIX}APP_CONF"),
        ));
    }
    let name = raw.to_ascii_lowercase();
    let (text, origin) = match value.strip_prefix('@') {
        Some(path) => {
            let path = PathBuf::from(path);
            if !path.is_absolute() {
                return Err(spec_error(
                    variable,
                    format!("@{} is not an absolute path; give the template file as @/path/to/file.tmpl", path.display()),
                ));
            }
            let text = read_template_file(&path).map_err(|p| spec_error(variable, p))?;
            (text, Some(path))
        }
        None => (value.to_string(), None),
    };
    template_spec(&name, variable, &text, origin, funcs)
}

/// A template named `name` (also its file name until told otherwise) from its text, parsed with
/// `funcs`; errors name `variable` (the variable or annotation it came from) and, for a text
/// read from `origin`, that file.
pub fn template_spec(
    name: &str,
    variable: &str,
    text: &str,
    origin: Option<PathBuf>,
    funcs: &Funcs,
) -> Result<TemplateSpec, SpecError> {
    let template = Template::parse(name, text, funcs).map_err(|e| {
        let place = match &origin {
            Some(p) => format!("{}:{}:{}", p.display(), e.line, e.col),
            None => format!("line {}, column {}", e.line, e.col),
        };
        spec_error(variable, format!("{place}: {}", e.message))
    })?;
    let first_reads = template.discover(&Reads::new(), funcs);
    Ok(TemplateSpec {
        file: name.to_string(),
        name: name.to_string(),
        variable: variable.to_string(),
        mode: None,
        lenient: false,
        command: None,
        origin,
        template: Arc::new(template),
        first_reads,
    })
}

/// consul-template's KV v2 path rewrite: on a KV v2 engine mounted at `mount` (`secret/`),
/// `secret "secret/foo"` reads `secret/data/foo`; a path already under `data/` or `metadata/`,
/// or any path on another engine, is read as written.
pub fn kv2_read_path(raw: &str, mount: &str) -> String {
    let mount_dir = mount.trim_end_matches('/');
    if raw == mount_dir || raw == mount {
        return format!("{mount_dir}/data");
    }
    let Some(rest) = raw
        .strip_prefix(mount_dir)
        .and_then(|r| r.strip_prefix('/'))
    else {
        return raw.to_string();
    };
    if rest.starts_with("data/") || rest.starts_with("metadata/") {
        return raw.to_string();
    }
    format!("{mount_dir}/data/{rest}")
}

/// What rendering one template came to.
pub enum Rendering {
    /// Some reads it makes are not answered yet: these (the caller reads them).
    Waiting(Vec<Read>),
    /// New content, and its fingerprint to record once written.
    Changed(Zeroizing<Vec<u8>>, u64),
    /// The same bytes as the file holds.
    Same,
    /// A render error: the template's name, line:column, the key or path (never a value).
    Failed(String),
}

impl fmt::Debug for Rendering {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rendering::Waiting(r) => write!(f, "Waiting({r:?})"),
            Rendering::Changed(b, _) => write!(f, "Changed({} bytes)", b.len()),
            Rendering::Same => f.write_str("Same"),
            Rendering::Failed(e) => write!(f, "Failed({e:?})"),
        }
    }
}

/// The templates, the answers to their reads (shared by all of them) and what each file holds.
/// Pure: the driver reads, records the answers here, renders, and writes what changed.
pub struct TemplateBook {
    funcs: Funcs,
    templates: Vec<TemplateSpec>,
    reads: Reads,
    /// What each template's last render read (its dependencies).
    needs: Vec<BTreeSet<Read>>,
    /// What each file's (or value's) current content was rendered from: kept in use while a
    /// later render waits or fails, so the credentials the app holds stay renewed until
    /// content from the new reads replaces them.
    shown: Vec<BTreeSet<Read>>,
    /// The fingerprint of what each file holds (None: not written by this run).
    written: Vec<Option<u64>>,
}

impl fmt::Debug for TemplateBook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TemplateBook")
            .field("templates", &self.templates)
            .field("reads", &self.reads)
            .finish_non_exhaustive()
    }
}

impl TemplateBook {
    /// A book for `templates`, rendered with `funcs`.
    pub fn new(templates: Vec<TemplateSpec>, funcs: Funcs) -> Self {
        let needs = templates.iter().map(|t| t.first_reads.clone()).collect();
        let written = vec![None; templates.len()];
        TemplateBook {
            funcs,
            shown: vec![BTreeSet::new(); templates.len()],
            templates,
            reads: Reads::new(),
            needs,
            written,
        }
    }

    /// The templates.
    pub fn templates(&self) -> &[TemplateSpec] {
        &self.templates
    }

    /// Records the answer to a `secret` read or write.
    pub fn secret(&mut self, read: &Read, secret: Secret) {
        self.reads.secret(read.clone(), secret);
    }

    /// Records the certificate a `pkiCert` returns (issued, or kept from its destination).
    pub fn cert(&mut self, read: &Read, pems: PemEncoded) {
        self.reads.cert(read.clone(), pems);
    }

    /// The `pkiCert` certificates the templates ask for before anything is answered, each
    /// once, in the templates' order: the certificates' lane keeps them from the start.
    pub fn first_certs(&self) -> Vec<Read> {
        let mut out: Vec<Read> = Vec::new();
        for r in self.templates.iter().flat_map(|t| &t.first_reads) {
            if matches!(r, Read::Cert(..)) && !out.contains(r) {
                out.push(r.clone());
            }
        }
        out
    }

    /// Records the answer to a `secrets` list.
    pub fn list(&mut self, read: &Read, keys: Vec<String>) {
        self.reads.list(read.clone(), keys);
    }

    /// Records a failed read, unless an earlier answer is kept: templates go on rendering the
    /// last good answer through an outage, as Agent's do.
    pub fn failed(&mut self, read: &Read, message: String) {
        if self.reads.answer(read).is_none_or(|a| a.is_err()) {
            self.reads.failed(read.clone(), message);
        }
    }

    /// Whether some template's last render read `read`, or its file still holds content
    /// rendered from it.
    pub fn in_use(&self, read: &Read) -> bool {
        (self.needs.iter().chain(&self.shown)).any(|n| n.contains(read))
    }

    /// Forgets `read`'s answer (no template uses it any more): a template that reads it again
    /// waits for a fresh answer instead of rendering a stale one.
    pub fn forget(&mut self, read: &Read) {
        self.reads.forget(read);
    }

    /// The templates whose last render read `read`, in order.
    pub fn users(&self, read: &Read) -> Vec<usize> {
        (0..self.templates.len())
            .filter(|i| self.needs[*i].contains(read))
            .collect()
    }

    /// Renders template `index` if every read it makes is answered.
    pub fn render(&mut self, index: usize) -> Rendering {
        let spec = &self.templates[index];
        let needs = spec.template.discover(&self.reads, &self.funcs);
        let missing: Vec<Read> = needs
            .iter()
            .filter(|r| self.reads.answer(r).is_none())
            .cloned()
            .collect();
        self.needs[index] = needs;
        if !missing.is_empty() {
            return Rendering::Waiting(missing);
        }
        match spec
            .template
            .render(&self.reads, &self.funcs, !spec.lenient)
        {
            Ok(text) => {
                let bytes = Zeroizing::new(text.into_bytes());
                let fingerprint = hash(&bytes);
                if self.written[index] == Some(fingerprint) {
                    self.shown[index] = self.needs[index].clone();
                    Rendering::Same
                } else {
                    Rendering::Changed(bytes, fingerprint)
                }
            }
            Err(e) => Rendering::Failed(format!("{}: {e}", spec.variable)),
        }
    }

    /// Template `index`'s file now holds the content with `fingerprint`.
    pub fn wrote(&mut self, index: usize, fingerprint: u64) {
        self.written[index] = Some(fingerprint);
        self.shown[index] = self.needs[index].clone();
    }
}

/// A hash of a file's bytes (SipHash with fixed keys, kept in memory only).
fn hash(bytes: &[u8]) -> u64 {
    let mut h = DefaultHasher::new();
    bytes.hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeMap, HashMap};

    fn funcs() -> Funcs {
        Funcs::standard_with(Arc::new(|_| None), Arc::new(std::time::SystemTime::now))
    }

    fn parse(vars: &[(&str, &str)]) -> Result<Vec<TemplateSpec>, SpecError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let names: Vec<String> = map.keys().cloned().collect();
        templates_from_env(&names, &|n| map.get(n).cloned(), &funcs())
    }

    #[test]
    fn templates_and_their_settings_are_read_by_name() {
        let specs = parse(&[
            (
                "VAULT_LOGIN_TEMPLATE_APP_CONF",
                "{{ with secret \"kv/app\" }}{{ .Data.k }}{{ end }}",
            ),
            ("VAULT_LOGIN_TEMPLATE_FILE_APP_CONF", "app.conf"),
            ("VAULT_LOGIN_TEMPLATE_MODE_APP_CONF", "0640"),
            ("VAULT_LOGIN_TEMPLATE_LENIENT_APP_CONF", "true"),
            ("VAULT_LOGIN_TEMPLATE_B", "plain"),
            ("VAULT_LOGIN_TEMPLATE_EMPTY", ""),
        ])
        .unwrap();
        assert_eq!(specs.len(), 2);
        let a = &specs[0];
        assert_eq!((a.name.as_str(), a.file.as_str()), ("app_conf", "app.conf"));
        assert_eq!((a.mode, a.lenient), (Some(0o640), true));
        assert_eq!(
            a.first_reads.iter().collect::<Vec<_>>(),
            vec![&Read::Get("kv/app".into())]
        );
        assert_eq!(specs[1].file, "b");
        assert_eq!((specs[1].mode, specs[1].lenient), (None, false));
    }

    #[test]
    fn bad_templates_name_the_variable_and_the_place() {
        for (vars, variable, needle) in [
            (
                vec![(
                    "VAULT_LOGIN_TEMPLATE_APP",
                    "a\nb {{ file \"/etc/passwd\" }}",
                )],
                "VAULT_LOGIN_TEMPLATE_APP",
                "line 2, column 5: function \"file\" is refused",
            ),
            (
                vec![("VAULT_LOGIN_TEMPLATE_APP", "{{ .a ")],
                "VAULT_LOGIN_TEMPLATE_APP",
                "line 1, column ",
            ),
            (
                vec![("VAULT_LOGIN_TEMPLATE_FILE_X", "x.conf")],
                "VAULT_LOGIN_TEMPLATE_FILE_X",
                "VAULT_LOGIN_TEMPLATE_X is not set",
            ),
            (
                vec![
                    ("VAULT_LOGIN_TEMPLATE_X", "x"),
                    ("VAULT_LOGIN_TEMPLATE_FILE_X", "../x"),
                ],
                "VAULT_LOGIN_TEMPLATE_FILE_X",
                "not a file name",
            ),
            (
                vec![
                    ("VAULT_LOGIN_TEMPLATE_X", "x"),
                    ("VAULT_LOGIN_TEMPLATE_MODE_X", "0999"),
                ],
                "VAULT_LOGIN_TEMPLATE_MODE_X",
                "not an octal file mode",
            ),
            (
                vec![
                    ("VAULT_LOGIN_TEMPLATE_X", "x"),
                    ("VAULT_LOGIN_TEMPLATE_LENIENT_X", "yes"),
                ],
                "VAULT_LOGIN_TEMPLATE_LENIENT_X",
                "not true or false",
            ),
            (
                vec![
                    ("VAULT_LOGIN_TEMPLATE_X", "x"),
                    ("VAULT_LOGIN_TEMPLATE_Y", "y"),
                    ("VAULT_LOGIN_TEMPLATE_FILE_Y", "x"),
                ],
                "VAULT_LOGIN_TEMPLATE_Y",
                "also writes the file \"x\"",
            ),
            (
                vec![("VAULT_LOGIN_TEMPLATE_A-B", "x")],
                "VAULT_LOGIN_TEMPLATE_A-B",
                "letters, digits",
            ),
            (
                vec![("VAULT_LOGIN_TEMPLATE_A", "@relative.tmpl")],
                "VAULT_LOGIN_TEMPLATE_A",
                "not an absolute path",
            ),
            (
                vec![("VAULT_LOGIN_TEMPLATE_A", "@/nonexistent/a.tmpl")],
                "VAULT_LOGIN_TEMPLATE_A",
                "cannot read the template file /nonexistent/a.tmpl",
            ),
        ] {
            let e = parse(&vars).unwrap_err();
            assert_eq!(e.variable, variable, "{e:?}");
            assert!(e.problem.contains(needle), "{needle}: {}", e.problem);
        }
    }

    #[test]
    fn template_files_are_read_bounded_and_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.tmpl");
        std::fs::write(&path, "ok\n{{ .x }\n").unwrap();
        let value = format!("@{}", path.display());
        let e = parse(&[("VAULT_LOGIN_TEMPLATE_APP", &value)]).unwrap_err();
        assert!(
            e.problem.starts_with(&format!("{}:2:", path.display())),
            "{}",
            e.problem
        );
        std::fs::write(&path, "{{ env \"HOME\" }}").unwrap();
        let specs = parse(&[("VAULT_LOGIN_TEMPLATE_APP", &value)]).unwrap();
        assert_eq!(specs[0].origin.as_deref(), Some(path.as_path()));
        let big = vec![b'x'; MAX_TEMPLATE_BYTES as usize + 1];
        std::fs::write(&path, big).unwrap();
        let e = parse(&[("VAULT_LOGIN_TEMPLATE_APP", &value)]).unwrap_err();
        assert!(e.problem.contains("larger than"), "{}", e.problem);
        std::fs::write(&path, [0xff, 0xfe]).unwrap();
        let e = parse(&[("VAULT_LOGIN_TEMPLATE_APP", &value)]).unwrap_err();
        assert!(e.problem.contains("not UTF-8"), "{}", e.problem);
    }

    #[test]
    fn file_names_stay_in_the_directory_and_off_temp_names() {
        for ok in ["app.conf", "config.json", "a", "A-b_c.d"] {
            assert!(valid_file_name(ok), "{ok}");
        }
        for bad in ["", ".hidden", ".app.tmp.1", "a/b", "..", "a b", "é"] {
            assert!(!valid_file_name(bad), "{bad}");
        }
    }

    #[test]
    fn kv2_paths_are_rewritten_like_consul_template() {
        for (raw, want) in [
            ("secret/foo", "secret/data/foo"),
            ("secret/a/b", "secret/data/a/b"),
            ("secret/data/foo", "secret/data/foo"),
            ("secret/metadata/foo", "secret/metadata/foo"),
            ("secret", "secret/data"),
            ("secret/", "secret/data"),
            ("other/foo", "other/foo"),
        ] {
            assert_eq!(kv2_read_path(raw, "secret/"), want, "{raw}");
        }
        assert_eq!(kv2_read_path("team/kv/x", "team/kv/"), "team/kv/data/x");
    }

    #[test]
    fn a_pki_cert_is_one_certificate_for_its_templates_not_a_source() {
        let specs = parse(&[
            (
                "VAULT_LOGIN_TEMPLATE_WEB",
                "{{ with pkiCert \" /pki/issue/web/\" \" common_name = a.svc\" \"\" }}{{ .Cert }}|{{ .Data.Key }}|{{ .CA }}|{{ toJSON . }}|{{ . }}{{ end }}",
            ),
            (
                "VAULT_LOGIN_TEMPLATE_KEY",
                "{{ with pkiCert \"pki/issue/web\" \"common_name=a.svc\" }}{{ .Key }}{{ end }}",
            ),
            (
                "VAULT_LOGIN_TEMPLATE_NONE",
                "{{ with pkiCert }}x{{ else }}nil{{ end }}",
            ),
        ])
        .unwrap();
        let mut book = TemplateBook::new(specs, funcs());
        let read = Read::Cert(
            "pki/issue/web".into(),
            [("common_name".to_string(), "a.svc".to_string())].into(),
        );
        assert_eq!(book.first_certs(), vec![read.clone()]);
        assert_eq!(book.users(&read), vec![0, 2]);
        assert!(crate::secrets::sources(&[], book.templates()).is_empty());
        assert!(matches!(book.render(2), Rendering::Waiting(r) if r == vec![read.clone()]));
        let pems = PemEncoded {
            cert: "C\n".into(),
            key: "K<\n".into(),
            ca: "A\n".into(),
        };
        book.cert(&read, pems);
        let Rendering::Changed(bytes, _) = book.render(2) else {
            panic!("not rendered")
        };
        assert_eq!(
            String::from_utf8_lossy(&bytes),
            "C\n|K<\n|A\n|{\"Cert\":\"C\\n\",\"Key\":\"K\\u003c\\n\",\"CA\":\"A\\n\"}|{C\n K<\n A\n}"
        );
        let Rendering::Changed(bytes, _) = book.render(0) else {
            panic!("not rendered")
        };
        assert_eq!(&bytes[..], b"K<\n");
        let Rendering::Changed(bytes, _) = book.render(1) else {
            panic!("not rendered")
        };
        assert_eq!(
            &bytes[..],
            b"nil",
            "pkiCert without arguments is nil, as in consul-template"
        );
        let e = parse(&[(
            "VAULT_LOGIN_TEMPLATE_X",
            "{{ with pkiCert \"pki/issue/web\" }}{{ .Serial }}{{ end }}",
        )])
        .unwrap();
        let mut book = TemplateBook::new(e, funcs());
        book.cert(
            &Read::Cert("pki/issue/web".into(), BTreeMap::new()),
            PemEncoded::default(),
        );
        match book.render(0) {
            Rendering::Failed(e) => assert!(
                e.contains("can't evaluate field Serial in type dependency.PemEncoded"),
                "{e}"
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_read_stays_in_use_until_the_file_no_longer_holds_content_from_it() {
        let specs = parse(&[(
            "VAULT_LOGIN_TEMPLATE_APP",
            "{{ with secret \"kv/app\" }}{{ with secret (printf \"kv/%s\" .Data.next) }}{{ .Data.k }}{{ end }}{{ end }}",
        )])
        .unwrap();
        let mut book = TemplateBook::new(specs, funcs());
        let sec = |b: &str| Secret::from_vault_json(b).unwrap();
        let [app, a, b] = ["kv/app", "kv/a", "kv/b"].map(|p| Read::Get(p.into()));
        book.secret(&app, sec(r#"{"data":{"next":"a"}}"#));
        assert!(matches!(book.render(0), Rendering::Waiting(_)));
        book.secret(&a, sec(r#"{"data":{"k":"from-a"}}"#));
        let Rendering::Changed(_, fp) = book.render(0) else {
            panic!("not rendered")
        };
        book.wrote(0, fp);
        assert!(book.in_use(&app) && book.in_use(&a) && !book.in_use(&b));
        // kv/app now points at kv/b: while kv/b is not read, and while its answer does not
        // render, the file holds kv/a's content, so kv/a stays in use.
        book.secret(&app, sec(r#"{"data":{"next":"b"}}"#));
        assert!(matches!(book.render(0), Rendering::Waiting(r) if r == vec![b.clone()]));
        assert!(book.in_use(&a) && book.in_use(&b));
        book.secret(&b, sec(r#"{"data":{"other":"x"}}"#));
        assert!(matches!(book.render(0), Rendering::Failed(_)));
        assert!(book.in_use(&a), "the file still holds kv/a's content");
        book.secret(&b, sec(r#"{"data":{"k":"from-b"}}"#));
        let Rendering::Changed(bytes, fp) = book.render(0) else {
            panic!("not rendered")
        };
        assert_eq!(&bytes[..], b"from-b");
        book.wrote(0, fp);
        assert!(!book.in_use(&a), "nothing uses kv/a any more");
        assert!(book.in_use(&app) && book.in_use(&b));
        // Forgotten, kv/a is waited for afresh when kv/app points back at it.
        book.forget(&a);
        book.secret(&app, sec(r#"{"data":{"next":"a"}}"#));
        assert!(matches!(book.render(0), Rendering::Waiting(r) if r == vec![a.clone()]));
    }

    #[test]
    fn the_book_waits_for_every_read_then_renders_once_per_change() {
        let specs = parse(&[(
            "VAULT_LOGIN_TEMPLATE_APP",
            "{{ with secret \"kv/app\" }}{{ with secret (printf \"kv/%s\" .Data.env) }}{{ .Data.k }}{{ end }}{{ end }}",
        )])
        .unwrap();
        let mut book = TemplateBook::new(specs, funcs());
        let app = Read::Get("kv/app".into());
        assert_eq!(book.users(&app), vec![0]);
        let sec = |b: &str| Secret::from_vault_json(b).unwrap();
        book.secret(&app, sec(r#"{"data":{"env":"prod"}}"#));
        let prod = Read::Get("kv/prod".into());
        match book.render(0) {
            Rendering::Waiting(r) => assert_eq!(r, vec![prod.clone()]),
            other => panic!("{other:?}"),
        }
        assert_eq!(book.users(&prod), vec![0]);
        book.secret(&prod, sec(r#"{"data":{"k":"v1"}}"#));
        let Rendering::Changed(bytes, fp) = book.render(0) else {
            panic!("not rendered")
        };
        assert_eq!(&bytes[..], b"v1");
        book.wrote(0, fp);
        assert!(matches!(book.render(0), Rendering::Same));
        // An outage keeps the last good answer.
        book.failed(&prod, "kv/prod: 503".into());
        assert!(matches!(book.render(0), Rendering::Same));
        book.secret(&prod, sec(r#"{"data":{"other":"x"}}"#));
        match book.render(0) {
            Rendering::Failed(e) => {
                assert!(
                    e.starts_with("VAULT_LOGIN_TEMPLATE_APP: template: app:1:"),
                    "{e}"
                );
                assert!(e.contains("map has no entry for key \".Data.k\""), "{e}");
            }
            other => panic!("{other:?}"),
        }
    }
}
