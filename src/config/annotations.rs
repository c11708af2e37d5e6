//! The pod's vault-k8s annotations (`vault.hashicorp.com/*`, `openbao.org/*`) as a settings
//! layer below flags and environment, read from the downward-API file named by
//! `VAULT_LOGIN_ANNOTATIONS_FILE`.
//!
//! The kubelet writes that file as one `key="value"` line per annotation, sorted, the value
//! quoted as Go's `strconv.Quote` does, and swaps it atomically when annotations change. Each
//! mapped annotation stands for one setting's main variable ([`MAPPED`]); README's annotation
//! table is made from the same list. Annotations that only concern the injector are ignored;
//! those asking for what vault-login does not do are a configuration error naming them.

use std::path::Path;

use crate::files::safe_fs::{read_regular, Links};

/// The variable naming the annotations file.
pub const ANNOTATIONS_FILE_ENV: &str = "VAULT_LOGIN_ANNOTATIONS_FILE";
/// The prefixes read, vault-k8s's first.
pub const PREFIXES: [&str; 2] = ["vault.hashicorp.com/", "openbao.org/"];
/// Annotations total at most 256 KiB; Go's quoting can grow a byte to `\u00XX` (6 bytes).
const MAX_FILE: u64 = 6 * 256 * 1024 + 64 * 1024;
/// Where Agent writes secrets unless `secret-volume-path` says otherwise.
const DEFAULT_SECRETS_PATH: &str = "/vault/secrets";

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

/// Annotations refused: what they ask for is not done by vault-login (or not yet).
pub static REFUSED: &[(&str, &str)] = &[
    ("agent-configmap", "vault-login has no Agent configuration file; use the annotations or its variables"),
    ("agent-json-patch", "vault-login does not apply patches to its container; use its variables"),
    ("agent-inject-template-", "templates in annotations are not yet supported by vault-login; remove it (see README, Coming from the vault-k8s injector)"),
    ("agent-inject-secret-", "secrets from annotations need Agent's templates, not yet supported by vault-login; use VAULT_LOGIN_SECRET_<NAME> meanwhile"),
    ("agent-inject-command-", "not yet supported; use VAULT_LOGIN_ON_CHANGE"),
];

/// The settings the annotations give: (main variable, annotation key, value).
#[derive(Debug, Default)]
pub struct Layer {
    values: Vec<(&'static str, &'static str, String)>,
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

    /// Maps annotations (key, value) onto settings.
    pub fn from_annotations(pairs: &[(String, String)]) -> Result<Layer, (String, String)> {
        let get = |name: &str| {
            let mut prefixes = PREFIXES;
            let asked = |p: &str| {
                pairs.iter().any(|(k, v)| {
                    *k == format!("{p}agent-inject") && go_bool(v).as_deref() == Ok("true")
                })
            };
            if !asked(PREFIXES[0]) && asked(PREFIXES[1]) {
                prefixes.reverse();
            }
            prefixes.iter().find_map(|p| {
                let key = format!("{p}{name}");
                pairs
                    .iter()
                    .find(|(k, _)| *k == key)
                    .map(|(k, v)| (k.clone(), v.as_str()))
            })
        };
        for (key, _) in pairs {
            let Some(name) = PREFIXES.iter().find_map(|p| key.strip_prefix(p)) else {
                continue;
            };
            if let Some((_, why)) = REFUSED.iter().find(|(r, _)| name.starts_with(r)) {
                return Err((key.clone(), format!("not supported: {why}")));
            }
        }
        if let Some((key, t)) = get("auth-type").filter(|(_, t)| *t != "kubernetes") {
            return Err((key, format!("{t:?}: vault-login logs in with the kubernetes auth method only; remove it or write kubernetes")));
        }
        let mut layer = Layer::default();
        for m in MAPPED {
            let Some((key, value)) = get(m.name) else {
                continue;
            };
            let static_key = if key == m.keys[0] {
                m.keys[0]
            } else {
                m.keys[1]
            };
            let mut converted = (m.convert)(value).map_err(|p| (key.clone(), p))?;
            if m.name == "agent-inject-token" {
                if converted != "true" {
                    continue;
                }
                let dir = get("secret-volume-path").map_or(DEFAULT_SECRETS_PATH, |(_, v)| v);
                converted = format!("{}/token", dir.trim_end_matches('/'));
            }
            layer.values.push((m.env, static_key, converted));
        }
        Ok(layer)
    }
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

/// README's table of the annotations read, made from [`MAPPED`] and [`REFUSED`].
pub fn markdown_table() -> String {
    let mut out = String::from("| Annotation (`vault.hashicorp.com/` or `openbao.org/`) | Setting | Value |\n| --- | --- | --- |\n");
    for m in MAPPED {
        out.push_str(&format!("| `{}` | `{}` | {} |\n", m.name, m.env, m.note));
    }
    for (name, why) in REFUSED {
        let name = if name.ends_with('-') {
            format!("{name}<name>")
        } else {
            name.to_string()
        };
        out.push_str(&format!("| `{name}` | refused (exit 64) | {why} |\n"));
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
                ("vault.hashicorp.com/agent-inject-template-db", "{{ . }}"),
                "vault.hashicorp.com/agent-inject-template-db",
                "not supported: templates in annotations are not yet supported",
            ),
            (
                ("vault.hashicorp.com/agent-inject-secret-db", "kv/db"),
                "vault.hashicorp.com/agent-inject-secret-db",
                "not supported: secrets from annotations need Agent's templates",
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
        let lookup = move |name: &str| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        crate::config::Config::load(["vault-login"], &lookup)
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

    #[test]
    fn readme_has_the_annotation_table() {
        let readme =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
        let table = markdown_table();
        assert!(readme.contains(&table), "README's annotation table differs from src/config/annotations.rs; it should be:\n{table}");
    }
}
