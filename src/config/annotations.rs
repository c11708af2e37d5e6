//! The pod's vault-k8s annotations (`vault.hashicorp.com/*`, `openbao.org/*`) as a settings
//! layer below flags and environment, read from the downward-API file named by
//! `VAULT_LOGIN_ANNOTATIONS_FILE`.
//!
//! The kubelet writes that file as one `key="value"` line per annotation, sorted, the value
//! quoted as Go's `strconv.Quote` does, and swaps it atomically when annotations change. Each
//! mapped annotation stands for one setting's main variable ([`MAPPED`]); the per-secret
//! annotations (`agent-inject-secret-<name>`, `agent-inject-template-<name>`, ...) become
//! templates exactly as vault-k8s builds Agent's `template` stanzas ([`PER_SECRET`]). README's
//! annotation table is made from the same lists. Annotations that only concern the injector
//! are ignored; those asking for what vault-login does not do are a configuration error naming
//! them. An annotation with an empty value counts as unset, as an empty variable does.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::files::safe_fs::{read_regular, Links};
use crate::files::token_file::parse_mode;
use crate::secrets::template::Funcs;
use crate::secrets::templates::{read_template_file, template_spec, valid_file_name};
use crate::secrets::{SpecError, TemplateSpec};

/// The variable naming the annotations file.
pub const ANNOTATIONS_FILE_ENV: &str = "VAULT_LOGIN_ANNOTATIONS_FILE";
/// The prefixes read, vault-k8s's first.
pub const PREFIXES: [&str; 2] = ["vault.hashicorp.com/", "openbao.org/"];
/// Annotations total at most 256 KiB; Go's quoting can grow a byte to `\u00XX` (6 bytes).
const MAX_FILE: u64 = 6 * 256 * 1024 + 64 * 1024;
/// Where Agent writes secrets unless `secret-volume-path` says otherwise.
const DEFAULT_SECRETS_PATH: &str = "/vault/secrets";
/// Agent's default template for a secret without one, `map` form (vault-k8s's
/// `DefaultMapTemplate`, `%s` being the secret's path).
pub const DEFAULT_MAP_TEMPLATE: &str =
    "{{ with secret \"%s\" }}{{ range $k, $v := .Data }}{{ $k }}: {{ $v }}\n{{ end }}{{ end }}";
/// Agent's default template, `json` form (vault-k8s's `DefaultJSONTemplate`).
pub const DEFAULT_JSON_TEMPLATE: &str = "{{ with secret \"%s\" }}{{ .Data | toJSON }}\n{{ end }}";
/// The mode of a template's file when `agent-inject-perms-<name>` is not given: consul-template's
/// default, so app containers running as another user can read the files, as with Agent.
pub const DEFAULT_TEMPLATE_MODE: u32 = 0o644;

/// One annotation that sets one of vault-login's settings.
#[derive(Debug)]
pub struct Mapped {
    /// The annotation's name without prefix, e.g. `role`.
    pub name: &'static str,
    /// The full keys, one per prefix (the error and the README name them).
    pub keys: [&'static str; 2],
    /// The main variable of the setting it stands for.
    pub env: &'static str,
    /// From the annotation's value to the setting's, as the variable would be written.
    pub convert: fn(&str) -> Result<String, String>,
    /// How the value carries over, for README.
    pub note: &'static str,
}

macro_rules! mapped {
    ($name:literal, $env:literal, $convert:expr, $note:literal) => {
        Mapped {
            name: $name,
            keys: [
                concat!("vault.hashicorp.com/", $name),
                concat!("openbao.org/", $name),
            ],
            env: $env,
            convert: $convert,
            note: $note,
        }
    };
}

/// Every annotation mapped onto a setting.
pub static MAPPED: &[Mapped] = &[
    mapped!("role", "VAULT_LOGIN_ROLE", as_is, "as is"),
    mapped!(
        "auth-path",
        "VAULT_LOGIN_MOUNT",
        auth_path,
        "`auth/kubernetes` → `kubernetes`"
    ),
    mapped!("namespace", "VAULT_NAMESPACE", as_is, "as is"),
    mapped!("service", "VAULT_ADDR", as_is, "as is"),
    mapped!(
        "tls-skip-verify",
        "VAULT_SKIP_VERIFY",
        go_bool,
        "Go boolean"
    ),
    mapped!("ca-cert", "VAULT_CACERT", as_is, "a path in the container"),
    mapped!("tls-server-name", "VAULT_TLS_SERVER_NAME", as_is, "as is"),
    mapped!(
        "client-cert",
        "VAULT_CLIENT_CERT",
        as_is,
        "a path in the container"
    ),
    mapped!(
        "client-key",
        "VAULT_CLIENT_KEY",
        as_is,
        "a path in the container"
    ),
    mapped!(
        "log-level",
        "VAULT_LOGIN_LOG",
        log_level,
        "`warning` → `warn`"
    ),
    mapped!(
        "log-format",
        "VAULT_LOGIN_LOG_FORMAT",
        log_format,
        "`standard` → `text`"
    ),
    mapped!(
        "agent-revoke-on-shutdown",
        "VAULT_LOGIN_REVOKE_ON_EXIT",
        go_bool,
        "Go boolean"
    ),
    mapped!(
        "agent-pre-populate-only",
        "VAULT_LOGIN_ONCE",
        go_bool,
        "Go boolean"
    ),
    mapped!(
        "secret-volume-path",
        "VAULT_LOGIN_SECRETS_DIR",
        as_is,
        "default `/vault/secrets`"
    ),
    mapped!(
        "template-static-secret-render-interval",
        "VAULT_LOGIN_SECRETS_REFRESH",
        as_is,
        "a duration"
    ),
    mapped!(
        "agent-inject-token",
        "VAULT_LOGIN_TOKEN_FILE",
        go_bool,
        "`true`: the token at `<secret-volume-path>/token`"
    ),
];

/// One per-secret annotation (or one that shapes them), as README's table shows it.
#[derive(Debug)]
pub struct PerSecret {
    /// The annotation's name without prefix; a trailing `-` is followed by the secret's name.
    pub name: &'static str,
    /// What it sets, in vault-login's terms.
    pub setting: &'static str,
    /// How the value carries over.
    pub note: &'static str,
}

/// `agent-inject-secret-<name>`: the path Agent's default template reads.
pub const SECRET: &str = "agent-inject-secret-";
/// `agent-inject-template-<name>`: the template's text.
pub const TEMPLATE: &str = "agent-inject-template-";
/// `agent-inject-template-file-<name>`: a template file in the container.
pub const TEMPLATE_FILE: &str = "agent-inject-template-file-";
/// `agent-inject-default-template`: `map` or `json`.
pub const DEFAULT_TEMPLATE: &str = "agent-inject-default-template";
/// `agent-inject-file-<name>`: the file's name.
pub const FILE: &str = "agent-inject-file-";
/// `agent-inject-perms-<name>`: the file's mode.
pub const PERMS: &str = "agent-inject-perms-";
/// `agent-inject-command-<name>`: run after the file changes.
pub const COMMAND: &str = "agent-inject-command-";
/// `error-on-missing-key-<name>`: strict missing keys.
pub const MISSING_KEY: &str = "error-on-missing-key-";
/// `preserve-secret-case` (and `-<name>`): keep the name's case.
pub const PRESERVE_CASE: &str = "preserve-secret-case";
/// `secret-volume-path-<name>`: the secret's own directory.
pub const VOLUME_PATH: &str = "secret-volume-path-";
/// `agent-template-left-delim-<name>`.
pub const LEFT_DELIM: &str = "agent-template-left-delim-";
/// `agent-template-right-delim-<name>`.
pub const RIGHT_DELIM: &str = "agent-template-right-delim-";

/// The per-secret annotations, read as vault-k8s reads them to write Agent's templates.
pub static PER_SECRET: &[PerSecret] = &[
    PerSecret { name: SECRET, setting: "template `<name>`", note: "the path Agent's default template reads (below); the file is `<secret-volume-path>/<name>`" },
    PerSecret { name: TEMPLATE, setting: "`VAULT_LOGIN_TEMPLATE_<NAME>`", note: "the template's text, instead of the default template" },
    PerSecret { name: TEMPLATE_FILE, setting: "`VAULT_LOGIN_TEMPLATE_<NAME>=@<path>`", note: "a template file in vault-login's container, used when there is no template text" },
    PerSecret { name: DEFAULT_TEMPLATE, setting: "the default template", note: "`map` (default): `{{ with secret \"<path>\" }}{{ range $k, $v := .Data }}{{ $k }}: {{ $v }}\\n{{ end }}{{ end }}`; `json`: `{{ with secret \"<path>\" }}{{ .Data \\| toJSON }}\\n{{ end }}`" },
    PerSecret { name: FILE, setting: "`VAULT_LOGIN_TEMPLATE_FILE_<NAME>`", note: "the file's name in the secrets directory (default `<name>`); no `/`" },
    PerSecret { name: PERMS, setting: "`VAULT_LOGIN_TEMPLATE_MODE_<NAME>`", note: "octal; default 0644, as with Agent" },
    PerSecret { name: COMMAND, setting: "the template's command", note: "run after that file changes, split like `VAULT_LOGIN_ON_CHANGE` (no shell runs)" },
    PerSecret { name: MISSING_KEY, setting: "`VAULT_LOGIN_TEMPLATE_LENIENT_<NAME>`", note: "Go boolean, default false: a missing key prints `<no value>`, as with Agent" },
    PerSecret { name: PRESERVE_CASE, setting: "the name's case", note: "Go boolean, also per secret (`-<name>`); otherwise `<name>` is lower-cased, as vault-k8s does" },
    PerSecret { name: VOLUME_PATH, setting: "`VAULT_LOGIN_SECRETS_DIR`", note: "only the same directory as `secret-volume-path`: one secrets directory per pod" },
    PerSecret { name: LEFT_DELIM, setting: "—", note: "only `{{`: the template language has the standard delimiters" },
    PerSecret { name: RIGHT_DELIM, setting: "—", note: "only `}}`" },
];

/// Annotations accepted with nothing to set: vault-login does what they ask already.
pub static ACCEPTED: &[(&str, &str)] = &[
    ("agent-cache-enable", "vault-login always keeps its token (and the leases made with it) across container restarts: a restarted sidecar adopts the token in its file once Vault confirms it is this pod's"),
];

/// Annotations refused: what they ask for is not done by vault-login.
pub static REFUSED: &[(&str, &str)] = &[
    (
        "agent-configmap",
        "vault-login has no Agent configuration file; use the annotations or its variables",
    ),
    (
        "agent-json-patch",
        "vault-login does not apply patches to its container; use its variables",
    ),
];

/// A secret the annotations ask for, before its template is parsed.
#[derive(Clone, Debug)]
struct Annotated {
    /// Its name: the raw name, lower-cased unless `preserve-secret-case`.
    name: String,
    /// The annotation the text comes from (or that declared it), for errors.
    key: String,
    /// The template's text, or the file holding it.
    text: Text,
    /// `(annotation, value)` of the file name, mode and command, when given.
    file: Option<(String, String)>,
    perms: Option<(String, String)>,
    command: Option<(String, String)>,
    /// Not `error-on-missing-key`.
    lenient: bool,
}

#[derive(Clone, Debug)]
enum Text {
    Inline(String),
    File(PathBuf),
}

/// The settings the annotations give: (main variable, annotation key, value), and the templates
/// the per-secret annotations ask for.
#[derive(Debug, Default)]
pub struct Layer {
    values: Vec<(&'static str, &'static str, String)>,
    secrets: Vec<Annotated>,
}

/// The annotations by name without prefix: (full key, value). Under both prefixes, the one that
/// asked for injection wins (vault-k8s's when both or neither did); empty values are left out.
fn by_name(pairs: &[(String, String)]) -> BTreeMap<&str, (&str, &str)> {
    let asked = |p: &str| {
        pairs.iter().any(|(k, v)| {
            k.strip_prefix(p) == Some("agent-inject") && go_bool(v).as_deref() == Ok("true")
        })
    };
    let mut order = PREFIXES;
    if !asked(PREFIXES[0]) && asked(PREFIXES[1]) {
        order.reverse();
    }
    let mut out = BTreeMap::new();
    // The preferred prefix goes last, so it overwrites.
    for prefix in order.iter().rev() {
        for (k, v) in pairs {
            if let Some(name) = k.strip_prefix(prefix).filter(|_| !v.is_empty()) {
                out.insert(name, (k.as_str(), v.as_str()));
            }
        }
    }
    out
}

impl Layer {
    /// The value for a setting's main variable and the annotation it came from.
    pub fn get(&self, env: &str) -> Option<(&'static str, &str)> {
        self.values
            .iter()
            .find(|(e, _, _)| *e == env)
            .map(|(_, key, value)| (*key, value.as_str()))
    }

    /// Reads the file named by `VAULT_LOGIN_ANNOTATIONS_FILE` (through `env`); an empty layer
    /// when it is unset. Errors are (the variable or annotation at fault, the problem).
    pub fn load(env: &dyn Fn(&str) -> Option<String>) -> Result<Layer, (String, String)> {
        let Some(path) = env(ANNOTATIONS_FILE_ENV).filter(|p| !p.is_empty()) else {
            return Ok(Layer::default());
        };
        let bad = |problem: String| (ANNOTATIONS_FILE_ENV.to_string(), problem);
        // The kubelet publishes the file as `annotations -> ..data/annotations`.
        let bytes = read_regular(Path::new(&path), Links::Follow, MAX_FILE).map_err(|e| {
            bad(format!("cannot read {path} ({e}); mount the pod's annotations there (downward API, fieldRef metadata.annotations)"))
        })?;
        let text = String::from_utf8(bytes).map_err(|_| bad(format!("{path} is not UTF-8")))?;
        let pairs = parse_file(&text).map_err(|p| bad(format!("{path}: {p}")))?;
        Layer::from_annotations(&pairs)
    }

    /// Maps annotations (key, value) onto settings and templates.
    pub fn from_annotations(pairs: &[(String, String)]) -> Result<Layer, (String, String)> {
        let named = by_name(pairs);
        for (name, (key, _)) in &named {
            if let Some((_, why)) = REFUSED.iter().find(|(r, _)| name.starts_with(r)) {
                return Err((key.to_string(), format!("not supported: {why}")));
            }
        }
        if let Some((key, t)) = named.get("auth-type").filter(|(_, t)| *t != "kubernetes") {
            return Err((key.to_string(), format!("{t:?}: vault-login logs in with the kubernetes auth method only; remove it or write kubernetes")));
        }
        let mut layer = Layer::default();
        for m in MAPPED {
            let Some((key, value)) = named.get(m.name) else {
                continue;
            };
            let static_key = if *key == m.keys[0] {
                m.keys[0]
            } else {
                m.keys[1]
            };
            let mut converted = (m.convert)(value).map_err(|p| (key.to_string(), p))?;
            if m.name == "agent-inject-token" {
                if converted != "true" {
                    continue;
                }
                let dir = named
                    .get("secret-volume-path")
                    .map_or(DEFAULT_SECRETS_PATH, |(_, v)| v);
                converted = format!("{}/token", dir.trim_end_matches('/'));
            }
            layer.values.push((m.env, static_key, converted));
        }
        layer.secrets = secrets(&named)?;
        Ok(layer)
    }

    /// The templates the per-secret annotations ask for, parsed with `funcs`, in name order.
    pub fn templates(&self, funcs: &Funcs) -> Result<Vec<TemplateSpec>, SpecError> {
        self.build_templates(funcs, true)
    }

    /// Checks what can be checked outside the pod (the injector, at admission): the inline
    /// templates' syntax and functions, file names, modes; not template files or command paths,
    /// which are paths in vault-login's container.
    pub fn check_templates(&self, funcs: &Funcs) -> Result<(), SpecError> {
        self.build_templates(funcs, false).map(|_| ())
    }

    fn build_templates(&self, funcs: &Funcs, in_pod: bool) -> Result<Vec<TemplateSpec>, SpecError> {
        let bad = |key: &str, problem: String| SpecError {
            variable: key.to_string(),
            problem,
        };
        let mut specs = Vec::new();
        for a in &self.secrets {
            let (text, origin) = match &a.text {
                Text::Inline(t) => (t.clone(), None),
                Text::File(_) if !in_pod => (String::new(), None),
                Text::File(path) => {
                    if !path.is_absolute() {
                        let p = path.display();
                        return Err(bad(&a.key, format!("{p:?} is not an absolute path; give the template file's path in vault-login's container")));
                    }
                    let text = read_template_file(path).map_err(|p| bad(&a.key, p))?;
                    (text, Some(path.clone()))
                }
            };
            let mut spec = template_spec(&a.name, &a.key, &text, origin, funcs)?;
            spec.file = a.name.clone();
            if let Some((key, file)) = &a.file {
                spec.file = file.clone();
                // Agent joins the name to the volume path; a name that only points into it is kept.
                let plain = file.trim_start_matches("./").trim_start_matches('/');
                if !valid_file_name(plain) {
                    return Err(bad(key, format!("{file:?} is not a file name vault-login writes: use letters, digits, '.', '_' and '-', without '/' (vault-login writes every file directly in the secrets directory)")));
                }
                spec.file = plain.to_string();
            } else if !valid_file_name(&a.name) {
                return Err(bad(&a.key, format!("the secret's name {:?} is not a file name vault-login writes: use letters, digits, '.', '_' and '-', or give the file's name with {FILE}<name>", a.name)));
            }
            spec.mode = Some(match &a.perms {
                Some((key, perms)) => parse_mode(perms).map_err(|p| bad(key, p))?,
                None => DEFAULT_TEMPLATE_MODE,
            });
            if let Some((key, command)) = a.command.as_ref().filter(|_| in_pod) {
                let argv = (super::settings::ON_CHANGE.parse)(command).map_err(|p| bad(key, p))?;
                spec.command = Some(argv);
            }
            spec.lenient = a.lenient;
            if let Some(other) = specs.iter().find(|o: &&TemplateSpec| o.file == spec.file) {
                return Err(bad(&a.key, format!("{} also writes the file {:?}; give each secret its own file ({FILE}<name>)", other.variable, spec.file)));
            }
            specs.push(spec);
        }
        crate::secrets::templates::sort_by_name(&mut specs);
        Ok(specs)
    }
}

/// The secrets the annotations declare, read as vault-k8s reads them: any non-empty
/// `agent-inject-secret-<name>`, `agent-inject-template-file-<name>` or
/// `agent-inject-template-<name>` declares `<name>`; the template's text wins over its file,
/// which wins over the default template of the secret's path.
fn secrets(named: &BTreeMap<&str, (&str, &str)>) -> Result<Vec<Annotated>, (String, String)> {
    let err = |key: &str, problem: String| (key.to_string(), problem);
    let bool_of = |key: &str, v: &str| go_bool(v).map(|b| b == "true").map_err(|p| err(key, p));
    let default = match named.get(DEFAULT_TEMPLATE) {
        None => "map".to_string(),
        Some((key, v)) => match v.to_ascii_lowercase().as_str() {
            t @ ("map" | "json") => t.to_string(),
            _ => {
                return Err(err(
                    key,
                    format!("{v:?} is not a default template type; write map or json"),
                ))
            }
        },
    };
    let global_dir = named
        .get("secret-volume-path")
        .map_or(DEFAULT_SECRETS_PATH, |(_, v)| v);
    let mut raws: Vec<&str> = Vec::new();
    for name in named.keys() {
        // In vault-k8s's order, so that `template-file-x` is `x`'s file, not a template `file-x`.
        let raw = [SECRET, TEMPLATE_FILE, TEMPLATE]
            .iter()
            .find_map(|p| name.strip_prefix(p));
        if let Some(raw) = raw.filter(|r| !r.is_empty()) {
            if named[name].1.trim().is_empty() || raws.contains(&raw) {
                continue;
            }
            raws.push(raw);
        }
    }
    let mut out = Vec::new();
    for raw in raws {
        let get = |prefix: &str| named.get(format!("{prefix}{raw}").as_str()).copied();
        let preserve = match get(&format!("{PRESERVE_CASE}-")).or(named.get(PRESERVE_CASE).copied())
        {
            Some((key, v)) => bool_of(key, v)?,
            None => false,
        };
        let name = if preserve {
            raw.to_string()
        } else {
            raw.to_lowercase()
        };
        let (key, text) = if let Some((key, t)) = get(TEMPLATE) {
            (key, Text::Inline(t.to_string()))
        } else if let Some((key, f)) = get(TEMPLATE_FILE) {
            (key, Text::File(PathBuf::from(f)))
        } else {
            let (key, path) = get(SECRET).ok_or_else(|| err(raw, "no path".into()))?;
            let form = if default == "json" {
                DEFAULT_JSON_TEMPLATE
            } else {
                DEFAULT_MAP_TEMPLATE
            };
            (key, Text::Inline(form.replacen("%s", path, 1)))
        };
        if let Some((k, dir)) = get(VOLUME_PATH) {
            if dir.trim_end_matches('/') != global_dir.trim_end_matches('/') {
                return Err(err(k, format!("{dir:?} is not the secrets directory ({global_dir}); vault-login writes every secret to one directory: remove it, or give the same path as secret-volume-path")));
            }
        }
        for (prefix, standard) in [(LEFT_DELIM, "{{"), (RIGHT_DELIM, "}}")] {
            if let Some((k, d)) = get(prefix).filter(|(_, d)| *d != standard) {
                return Err(err(k, format!("{d:?}: vault-login's templates use {standard} only; remove it and write the template with the standard delimiters")));
            }
        }
        let owned = |v: Option<(&str, &str)>| v.map(|(k, v)| (k.to_string(), v.to_string()));
        let lenient = match get(MISSING_KEY) {
            Some((k, v)) => !bool_of(k, v)?,
            None => true,
        };
        out.push(Annotated {
            name,
            key: key.to_string(),
            text,
            file: owned(get(FILE)),
            perms: owned(get(PERMS)),
            command: owned(get(COMMAND)),
            lenient,
        });
    }
    Ok(out)
}

/// Parses the kubelet's downward-API file: `key="value"` lines, values quoted as Go's `%q`.
pub fn parse_file(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut pairs = Vec::new();
    for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.is_empty()) {
        let line_no = n + 1;
        let (key, quoted) = line
            .split_once('=')
            .ok_or_else(|| format!("line {line_no} is not key=\"value\""))?;
        let value = unquote_go(quoted).map_err(|p| format!("line {line_no} ({key}): {p}"))?;
        pairs.push((key.to_string(), value));
    }
    Ok(pairs)
}

/// Undoes Go's `strconv.Quote`: `\n`, `\"`, `\\`, `\t`, `\xNN`, octal, `\uNNNN`, `\UNNNNNNNN`.
pub fn unquote_go(s: &str) -> Result<String, String> {
    let inner = s
        .strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .filter(|_| s.len() >= 2)
        .ok_or("the value is not in double quotes")?;
    let mut out: Vec<u8> = Vec::with_capacity(inner.len());
    let mut chars = inner.chars();
    let hex = |chars: &mut std::str::Chars<'_>, n: usize| -> Result<u32, String> {
        let digits: String = chars.by_ref().take(n).collect();
        if digits.len() != n {
            return Err(format!("a \\x, \\u or \\U escape needs {n} hex digits"));
        }
        u32::from_str_radix(&digits, 16).map_err(|_| format!("{digits:?} is not hex"))
    };
    while let Some(c) = chars.next() {
        if c == '"' {
            return Err("an unescaped '\"' inside the value".into());
        }
        if c != '\\' {
            let mut buf = [0; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            continue;
        }
        let escaped = chars.next().ok_or("the value ends in a lone backslash")?;
        let byte = |b: u8| vec![b];
        let bytes = match escaped {
            'a' => byte(7),
            'b' => byte(8),
            'f' => byte(12),
            'n' => byte(b'\n'),
            'r' => byte(b'\r'),
            't' => byte(b'\t'),
            'v' => byte(11),
            '\\' => byte(b'\\'),
            '"' => byte(b'"'),
            '\'' => byte(b'\''),
            'x' => byte(hex(&mut chars, 2)? as u8),
            '0'..='7' => {
                let rest: String = chars.by_ref().take(2).collect();
                let code = u32::from_str_radix(&format!("{escaped}{rest}"), 8)
                    .ok()
                    .filter(|c| rest.len() == 2 && *c <= 255)
                    .ok_or("an octal escape needs 3 digits up to \\377")?;
                byte(code as u8)
            }
            'u' | 'U' => {
                let code = hex(&mut chars, if escaped == 'u' { 4 } else { 8 })?;
                let c =
                    char::from_u32(code).ok_or_else(|| format!("U+{code:X} is not a character"))?;
                c.to_string().into_bytes()
            }
            other => return Err(format!("unknown escape \\{other}")),
        };
        out.extend_from_slice(&bytes);
    }
    String::from_utf8(out).map_err(|_| "the value's \\x escapes are not UTF-8".to_string())
}

fn as_is(s: &str) -> Result<String, String> {
    Ok(s.to_string())
}

/// Go's `strconv.ParseBool`, which vault-k8s and Agent use, written back as `true`/`false`.
fn go_bool(s: &str) -> Result<String, String> {
    match s {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok("true".into()),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok("false".into()),
        _ => Err(format!("{s:?} is not a boolean; write true or false")),
    }
}

/// vault-k8s writes the mount as `auth/<mount>`; vault-login wants `<mount>`.
fn auth_path(s: &str) -> Result<String, String> {
    let trimmed = s.trim_matches('/');
    Ok(trimmed.strip_prefix("auth/").unwrap_or(trimmed).to_string())
}

fn log_level(s: &str) -> Result<String, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "warning" => Ok("warn".into()),
        "err" => Ok("error".into()),
        other => Ok(other.to_string()),
    }
}

fn log_format(s: &str) -> Result<String, String> {
    match s.trim() {
        "standard" | "" => Ok("text".into()),
        other => Ok(other.to_string()),
    }
}

/// README's table of the annotations read, made from [`MAPPED`], [`PER_SECRET`], [`ACCEPTED`]
/// and [`REFUSED`].
pub fn markdown_table() -> String {
    let shown = |name: &str| {
        if name.ends_with('-') {
            format!("{name}<name>")
        } else {
            name.to_string()
        }
    };
    let mut out = String::from("| Annotation (`vault.hashicorp.com/` or `openbao.org/`) | Setting | Value |\n| --- | --- | --- |\n");
    for m in MAPPED {
        out.push_str(&format!("| `{}` | `{}` | {} |\n", m.name, m.env, m.note));
    }
    for p in PER_SECRET {
        out.push_str(&format!(
            "| `{}` | {} | {} |\n",
            shown(p.name),
            p.setting,
            p.note
        ));
    }
    for (name, why) in ACCEPTED {
        out.push_str(&format!("| `{name}` | nothing to set | {why} |\n"));
    }
    for (name, why) in REFUSED {
        out.push_str(&format!(
            "| `{}` | refused (exit 64) | {why} |\n",
            shown(name)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn go_quoting_undone() {
        let cases = [
            (r#""plain""#, "plain"),
            (r#""a\nb\tc""#, "a\nb\tc"),
            (r#""say \"hi\" \\ bye""#, "say \"hi\" \\ bye"),
            (r#""\x01\a\b\f\r\v""#, "\u{1}\u{7}\u{8}\u{c}\r\u{b}"),
            (r#""\u00e9t\u00e9 \U0001f600""#, "été 😀"),
            (r#""été""#, "été"),
            (r#""\101""#, "A"),
            (r#""""#, ""),
            (
                r#""{{ with secret \"kv/data/x\" }}{{ .Data.data.k }}{{ end }}""#,
                r#"{{ with secret "kv/data/x" }}{{ .Data.data.k }}{{ end }}"#,
            ),
        ];
        for (quoted, want) in cases {
            assert_eq!(unquote_go(quoted).as_deref(), Ok(want), "{quoted}");
        }
        for bad in [
            r#"plain"#,
            r#"""#,
            r#""a\""#,
            r#""a"b""#,
            r#""\q""#,
            r#""\u12""#,
            r#""\xff""#,
            r#""\777""#,
        ] {
            assert!(unquote_go(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_kubelet_file_parsed() {
        let text = "kubernetes.io/config.seen=\"2024-05-01T10:00:00Z\"\nvault.hashicorp.com/agent-inject=\"true\"\nvault.hashicorp.com/role=\"web\"\n";
        let p = parse_file(text).unwrap();
        assert_eq!(
            p[2],
            ("vault.hashicorp.com/role".to_string(), "web".to_string())
        );
        assert_eq!(
            parse_file("novalue\n").unwrap_err(),
            "line 1 is not key=\"value\""
        );
        assert!(parse_file("k=\"a\\q\"")
            .unwrap_err()
            .starts_with("line 1 (k): unknown escape"));
    }

    #[test]
    fn annotations_map_onto_settings() {
        let layer = Layer::from_annotations(&pairs(&[
            ("vault.hashicorp.com/agent-inject", "true"),
            ("vault.hashicorp.com/role", "web"),
            ("vault.hashicorp.com/auth-path", "auth/k8s-east"),
            ("vault.hashicorp.com/log-level", "warning"),
            ("vault.hashicorp.com/log-format", "standard"),
            ("vault.hashicorp.com/tls-skip-verify", "T"),
            ("vault.hashicorp.com/agent-inject-token", "true"),
            ("vault.hashicorp.com/secret-volume-path", "/etc/secrets/"),
            ("vault.hashicorp.com/agent-image", "hashicorp/vault:1.17"),
            ("vault.hashicorp.com/agent-requests-cpu", "250m"),
            (
                "openbao.org/role",
                "ignored, the vault.hashicorp.com one wins",
            ),
        ]))
        .unwrap();
        assert_eq!(
            layer.get("VAULT_LOGIN_ROLE"),
            Some(("vault.hashicorp.com/role", "web"))
        );
        assert_eq!(layer.get("VAULT_LOGIN_MOUNT").unwrap().1, "k8s-east");
        assert_eq!(layer.get("VAULT_LOGIN_LOG").unwrap().1, "warn");
        assert_eq!(layer.get("VAULT_LOGIN_LOG_FORMAT").unwrap().1, "text");
        assert_eq!(layer.get("VAULT_SKIP_VERIFY").unwrap().1, "true");
        assert_eq!(
            layer.get("VAULT_LOGIN_TOKEN_FILE"),
            Some((
                "vault.hashicorp.com/agent-inject-token",
                "/etc/secrets/token"
            ))
        );
        assert_eq!(layer.get("VAULT_ADDR"), None);

        let bao = Layer::from_annotations(&pairs(&[
            ("openbao.org/agent-inject", "true"),
            ("openbao.org/role", "bao"),
            ("vault.hashicorp.com/role", "vault"),
        ]))
        .unwrap();
        assert_eq!(
            bao.get("VAULT_LOGIN_ROLE"),
            Some(("openbao.org/role", "bao"))
        );
    }

    #[test]
    fn what_vault_login_does_not_do_is_refused_by_name() {
        let cases = [
            (
                ("vault.hashicorp.com/auth-type", "gcp"),
                "vault.hashicorp.com/auth-type",
                "\"gcp\": vault-login logs in with the kubernetes auth method only",
            ),
            (
                ("openbao.org/agent-configmap", "cfg"),
                "openbao.org/agent-configmap",
                "not supported: vault-login has no Agent configuration file",
            ),
            (
                ("vault.hashicorp.com/agent-json-patch", "[]"),
                "vault.hashicorp.com/agent-json-patch",
                "not supported",
            ),
            (
                ("vault.hashicorp.com/agent-inject-default-template", "yaml"),
                "vault.hashicorp.com/agent-inject-default-template",
                "\"yaml\" is not a default template type",
            ),
            (
                ("vault.hashicorp.com/secret-volume-path-db", "/etc/db"),
                "vault.hashicorp.com/secret-volume-path-db",
                "\"/etc/db\" is not the secrets directory (/vault/secrets)",
            ),
            (
                ("vault.hashicorp.com/agent-template-left-delim-db", "[["),
                "vault.hashicorp.com/agent-template-left-delim-db",
                "\"[[\": vault-login's templates use {{ only",
            ),
            (
                ("vault.hashicorp.com/error-on-missing-key-db", "sometimes"),
                "vault.hashicorp.com/error-on-missing-key-db",
                "\"sometimes\" is not a boolean",
            ),
            (
                ("vault.hashicorp.com/agent-revoke-on-shutdown", "maybe"),
                "vault.hashicorp.com/agent-revoke-on-shutdown",
                "\"maybe\" is not a boolean",
            ),
        ];
        for ((k, v), key, problem) in cases {
            let (got_key, got) = Layer::from_annotations(&pairs(&[
                ("vault.hashicorp.com/agent-inject", "true"),
                ("vault.hashicorp.com/agent-inject-secret-db", "kv/db"),
                (k, v),
            ]))
            .unwrap_err();
            assert_eq!(got_key, key);
            assert!(got.starts_with(problem), "{k}: {got}");
        }
        assert!(Layer::from_annotations(&pairs(&[(
            "vault.hashicorp.com/auth-type",
            "kubernetes"
        )]))
        .is_ok());
    }

    /// Loads a configuration the way the sidecar does, with the annotations in a real file.
    fn load(
        file_text: &str,
        env: &[(&str, &str)],
    ) -> Result<crate::config::Config, crate::config::ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("annotations");
        std::fs::write(&file, file_text).unwrap();
        let mut vars: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        vars.push((ANNOTATIONS_FILE_ENV.into(), file.display().to_string()));
        vars.push(("VAULT_LOGIN_JWT".into(), "x.y.z".into()));
        let names: Vec<String> = vars.iter().map(|(k, _)| k.clone()).collect();
        let lookup = move |name: &str| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        crate::config::Config::load_with_names(["vault-login"], &lookup, &names)
    }

    #[test]
    fn annotations_sit_below_flags_and_environment() {
        let file = "kubernetes.io/config.seen=\"x\"\nvault.hashicorp.com/agent-inject=\"true\"\nvault.hashicorp.com/auth-path=\"auth/k8s\"\nvault.hashicorp.com/role=\"from-annotation\"\nvault.hashicorp.com/service=\"https://vault.example:8200\"\n";
        let cfg = load(file, &[]).unwrap();
        assert_eq!(cfg.role, "from-annotation");
        assert_eq!(cfg.mount, "k8s");
        let cfg = load(file, &[("VAULT_LOGIN_ROLE", "from-env")]).unwrap();
        assert_eq!(cfg.role, "from-env");
        let err = load(
            "vault.hashicorp.com/service=\"not a url\"\nvault.hashicorp.com/role=\"r\"\n",
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("vault.hashicorp.com/service: "), "{err}");
        let err = load("vault.hashicorp.com/role=\"r\n", &[])
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("VAULT_LOGIN_ANNOTATIONS_FILE: "), "{err}");
        assert!(!err.contains('\n'), "{err}");
    }

    #[test]
    fn a_missing_or_odd_file_is_one_line_naming_the_variable() {
        let lookup = |name: &str| {
            (name == ANNOTATIONS_FILE_ENV).then(|| "/nonexistent/annotations".to_string())
        };
        let (var, problem) = Layer::load(&lookup).unwrap_err();
        assert_eq!(var, ANNOTATIONS_FILE_ENV);
        assert!(
            problem.starts_with("cannot read /nonexistent/annotations"),
            "{problem}"
        );
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        assert!(std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success());
        let path = fifo.display().to_string();
        let lookup = move |name: &str| (name == ANNOTATIONS_FILE_ENV).then(|| path.clone());
        let (_, problem) = Layer::load(&lookup).unwrap_err();
        assert!(problem.contains("FIFO"), "{problem}");
    }

    /// The templates a pod's annotations give, as (name, file, mode, lenient, command, text).
    fn templates_of(list: &[(&str, &str)]) -> Result<Vec<TemplateSpec>, SpecError> {
        let mut all = vec![("vault.hashicorp.com/agent-inject", "true")];
        all.extend_from_slice(list);
        let layer = Layer::from_annotations(&pairs(&all))
            .map_err(|(variable, problem)| SpecError { variable, problem })?;
        layer.templates(&Funcs::standard())
    }

    #[test]
    fn secrets_get_agents_default_templates() {
        let t = templates_of(&[
            (
                "vault.hashicorp.com/agent-inject-secret-DB-Creds",
                "database/creds/db-app",
            ),
            (
                "vault.hashicorp.com/agent-inject-secret-config.json",
                "secret/data/app",
            ),
        ])
        .unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].name, "config.json");
        assert_eq!(
            t[0].template.text(),
            "{{ with secret \"secret/data/app\" }}{{ range $k, $v := .Data }}{{ $k }}: {{ $v }}\n{{ end }}{{ end }}"
        );
        // vault-k8s lower-cases the name unless told not to; the file is the name.
        assert_eq!(
            (t[1].name.as_str(), t[1].file.as_str()),
            ("db-creds", "db-creds")
        );
        assert_eq!(
            t[1].variable,
            "vault.hashicorp.com/agent-inject-secret-DB-Creds"
        );
        assert_eq!(t[1].mode, Some(0o644));
        assert!(t[1].lenient);
        assert_eq!(t[1].command, None);

        let json = templates_of(&[
            ("vault.hashicorp.com/agent-inject-secret-db", "kv/db"),
            ("vault.hashicorp.com/agent-inject-default-template", "JSON"),
        ])
        .unwrap();
        assert_eq!(
            json[0].template.text(),
            "{{ with secret \"kv/db\" }}{{ .Data | toJSON }}\n{{ end }}"
        );
    }

    #[test]
    fn per_secret_annotations_shape_the_template() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("app.tmpl");
        std::fs::write(
            &file,
            "{{ with secret \"kv/app\" }}{{ .Data.user }}{{ end }}",
        )
        .unwrap();
        let file = file.display().to_string();
        let t = templates_of(&[
            (
                "openbao.org/agent-inject-secret-Web",
                "ignored/when/a/template/is/given",
            ),
            (
                "openbao.org/agent-inject-template-Web",
                "{{ with secret \"kv/web\" }}{{ .Data.k }}{{ end }}",
            ),
            ("openbao.org/agent-inject-file-Web", "web.conf"),
            ("openbao.org/agent-inject-perms-Web", "0400"),
            ("openbao.org/agent-inject-command-Web", "reload-web --now"),
            ("openbao.org/error-on-missing-key-Web", "true"),
            ("openbao.org/preserve-secret-case-Web", "true"),
            ("openbao.org/agent-inject-template-file-app", &file),
            ("openbao.org/agent-inject-template-app", ""),
            ("openbao.org/secret-volume-path-app", "/vault/secrets/"),
            ("openbao.org/agent-template-left-delim-app", "{{"),
        ])
        .unwrap();
        let app = &t[1];
        assert_eq!(
            app.template.text(),
            "{{ with secret \"kv/app\" }}{{ .Data.user }}{{ end }}"
        );
        assert_eq!(app.origin.as_deref(), Some(Path::new(&file)));
        let web = &t[0];
        assert_eq!((web.name.as_str(), web.file.as_str()), ("Web", "web.conf"));
        assert_eq!(
            web.template.text(),
            "{{ with secret \"kv/web\" }}{{ .Data.k }}{{ end }}"
        );
        assert_eq!(web.variable, "openbao.org/agent-inject-template-Web");
        assert_eq!(web.mode, Some(0o400));
        assert!(!web.lenient);
        assert_eq!(
            web.command,
            Some(vec!["reload-web".to_string(), "--now".into()])
        );
        // A template file alone declares a secret; `template-file-x` is never a secret `file-x`.
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn bad_per_secret_annotations_name_themselves() {
        type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, &'a str);
        let cases: &[Case] = &[
            (
                &[
                    ("vault.hashicorp.com/agent-inject-secret-db", "kv/db"),
                    ("vault.hashicorp.com/agent-inject-file-db", "conf/db.env"),
                ],
                "vault.hashicorp.com/agent-inject-file-db",
                "\"conf/db.env\" is not a file name",
            ),
            (
                &[
                    ("vault.hashicorp.com/agent-inject-secret-db", "kv/db"),
                    ("vault.hashicorp.com/agent-inject-perms-db", "rw"),
                ],
                "vault.hashicorp.com/agent-inject-perms-db",
                "\"rw\" is not an octal file mode",
            ),
            (
                &[
                    ("vault.hashicorp.com/agent-inject-secret-db", "kv/db"),
                    (
                        "vault.hashicorp.com/agent-inject-command-db",
                        "/no/such/reload",
                    ),
                ],
                "vault.hashicorp.com/agent-inject-command-db",
                "program \"/no/such/reload\"",
            ),
            (
                &[(
                    "vault.hashicorp.com/agent-inject-template-db",
                    "{{ with secret }}",
                )],
                "vault.hashicorp.com/agent-inject-template-db",
                "line 1, column",
            ),
            (
                &[(
                    "vault.hashicorp.com/agent-inject-template-file-db",
                    "/no/such.tmpl",
                )],
                "vault.hashicorp.com/agent-inject-template-file-db",
                "cannot read the template file /no/such.tmpl",
            ),
            (
                &[(
                    "vault.hashicorp.com/agent-inject-template-file-db",
                    "db.tmpl",
                )],
                "vault.hashicorp.com/agent-inject-template-file-db",
                "\"db.tmpl\" is not an absolute path",
            ),
            (
                &[
                    ("vault.hashicorp.com/agent-inject-secret-a", "kv/a"),
                    ("vault.hashicorp.com/agent-inject-secret-b", "kv/b"),
                    ("vault.hashicorp.com/agent-inject-file-b", "a"),
                ],
                "vault.hashicorp.com/agent-inject-secret-b",
                "vault.hashicorp.com/agent-inject-secret-a also writes the file \"a\"",
            ),
            (
                &[
                    ("vault.hashicorp.com/agent-inject-secret-db", "kv/db"),
                    ("vault.hashicorp.com/preserve-secret-case", "yes"),
                ],
                "vault.hashicorp.com/preserve-secret-case",
                "\"yes\" is not a boolean",
            ),
        ];
        for (list, key, problem) in cases {
            let e = templates_of(list).unwrap_err();
            assert_eq!(e.variable, *key, "{}", e.problem);
            assert!(e.problem.starts_with(problem), "{key}: {}", e.problem);
            assert!(!e.problem.contains('\n'), "{}", e.problem);
        }
    }

    #[test]
    fn annotated_templates_sit_below_template_variables() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display().to_string();
        let file = "vault.hashicorp.com/agent-inject=\"true\"\nvault.hashicorp.com/agent-inject-secret-db=\"kv/db\"\nvault.hashicorp.com/agent-inject-secret-web=\"kv/web\"\nvault.hashicorp.com/role=\"r\"\nvault.hashicorp.com/service=\"http://127.0.0.1:8200\"\n";
        let cfg = load(
            file,
            &[
                ("VAULT_LOGIN_SECRETS_DIR", &d),
                ("VAULT_LOGIN_TEMPLATE_DB", "from the variable"),
            ],
        )
        .unwrap();
        let t = &cfg.secrets.templates;
        assert_eq!(t.len(), 2);
        assert_eq!(
            (t[0].file.as_str(), t[0].template.text()),
            ("db", "from the variable")
        );
        assert_eq!(t[1].variable, "vault.hashicorp.com/agent-inject-secret-web");
        // Errors from annotations are one line naming the annotation.
        let err = load("vault.hashicorp.com/agent-inject-secret-db=\"kv/db\"\nvault.hashicorp.com/agent-inject-perms-db=\"999\"\nvault.hashicorp.com/role=\"r\"\nvault.hashicorp.com/service=\"http://127.0.0.1:8200\"\n", &[]).unwrap_err().to_string();
        assert!(
            err.starts_with("vault.hashicorp.com/agent-inject-perms-db: "),
            "{err}"
        );
    }

    #[test]
    fn readme_has_the_annotation_table() {
        let readme =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
        let table = markdown_table();
        assert!(readme.contains(&table), "README's annotation table differs from src/config/annotations.rs; it should be:\n{table}");
    }
}
