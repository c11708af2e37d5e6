//! The function table: consul-template's helpers as users write them, the Vault functions
//! (`secret`, `secrets`) over the render's [`Source`](super::Source), and the functions refused
//! at parse time because they reach outside Vault.

use super::exec::Ctx;
use super::source::Read;
use super::value::push;
use super::value::{to_json, Value};
use super::{clock, toml, yaml};
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;
use std::sync::Arc;
use std::time::SystemTime;

/// A template function: arguments in, a value or an error message out. Messages must not
/// contain argument values (they may be secrets). `Ctx` gives access to Vault's answers.
pub type Func = Box<dyn Fn(&mut Ctx<'_>, &[Value]) -> Result<Value, String> + Send + Sync>;

/// A built-in helper: a plain function, so all helpers share one `Func` vtable (a closure per
/// helper would bring its own vtable and call shim: about 10 KB of binary for the table).
type Builtin = fn(&mut Ctx<'_>, &[Value]) -> Result<Value, String>;

/// Where `env` looks variables up (the process environment, or a test's map).
pub type Env = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// What `timestamp` reads as "now".
pub type Clock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

/// Functions refused at parse time, with the reason given to the user.
const REFUSED: &[(&[&str], &str)] = &[
    (
        &["file"],
        "it reads a file on this host, and vault-login templates read only Vault",
    ),
    (&["plugin"], "it runs a program on this host"),
    (
        &["writeToFile"],
        "it writes a file as a side effect; give each file its own VAULT_LOGIN_TEMPLATE_<NAME>",
    ),
    (&["sockaddr"], "it reads this host's network interfaces"),
    (
        &[
            "key",
            "keyExists",
            "keyOrDefault",
            "ls",
            "safeLs",
            "tree",
            "safeTree",
            "service",
            "services",
            "connect",
            "node",
            "nodes",
            "datacenters",
            "caRoots",
            "caLeaf",
            "partitions",
            "peerings",
            "exportedServices",
            "importedServices",
        ],
        "it is a Consul lookup, and vault-login talks only to Vault",
    ),
    (
        &[
            "nomadServices",
            "nomadService",
            "nomadVarList",
            "nomadVarListSafe",
            "nomadVar",
            "nomadVarExists",
        ],
        "it is a Nomad lookup, and vault-login talks only to Vault",
    ),
];

/// consul-template functions not (yet) here: named so the error says so instead of "not defined".
const NOT_YET: &[&str] = &[
    "regexReplaceAll",
    "regexMatch",
    "mustEnv",
    "envOrDefault",
    "executeTemplate",
    "explode",
    "explodeMap",
    "mergeMap",
    "mergeMapWithOverride",
    "in",
    "indent",
    "loop",
    "trim",
    "trimPrefix",
    "trimSuffix",
    "parseBool",
    "parseFloat",
    "parseInt",
    "parseUint",
    "parseYAML",
    "md5sum",
    "hmacSHA256Hex",
    "toUnescapedJSON",
    "toUnescapedJSONPretty",
    "splitToMap",
    "containsAll",
    "containsNone",
    "containsNotAll",
    "byKey",
    "byTag",
    "byPort",
    "byMeta",
    "add",
    "subtract",
    "multiply",
    "divide",
    "modulo",
    "minimum",
    "maximum",
];

/// The function table a template is parsed and rendered with, beyond Go's built-ins. Adding a
/// function is one [`Funcs::insert`].
#[derive(Default)]
pub struct Funcs {
    // A list, not a hash map: about 25 names, looked up by a short scan, and no hash table
    // code in the binary for it.
    map: Vec<(String, Func)>,
}

impl Funcs {
    /// An empty table (only Go's built-ins).
    pub fn new() -> Self {
        Self::default()
    }

    /// The helpers, `secret`/`secrets` and `scratch`, with the process environment and clock.
    pub fn standard() -> Self {
        Self::standard_with(
            Arc::new(|k| std::env::var(k).ok()),
            Arc::new(SystemTime::now),
        )
    }

    /// [`Funcs::standard`] with `env` and `now` given (tests, and the sidecar's own view).
    pub fn standard_with(env: Env, now: Clock) -> Self {
        let mut f = Self::new();
        f.add("secret", secret);
        // consul-template's pkiCert; its certificate's life (issue once, renew at 2/3, reuse
        // the destination's after a restart) is the sidecar's certificate lane's business.
        f.add("pkiCert", |ctx, a| {
            if a.is_empty() {
                return Ok(Value::Nil);
            }
            ctx.read(Read::pki_cert(&strs(a)?)?)
        });
        f.add("secrets", |ctx, a| {
            let path = strings(a, 1, "secrets")?.remove(0);
            if path.is_empty() {
                return Ok(Value::list(Vec::new()));
            }
            ctx.read(Read::List(path))
        });
        f.add("scratch", |_, a| {
            arity(a, 0)?;
            Ok(Value::Scratch)
        });
        f.insert("env", move |_, a| {
            let k = strings(a, 1, "env")?.remove(0);
            Ok(Value::Str(env(&k).unwrap_or_default()))
        });
        f.insert("timestamp", move |_, a| {
            let args = strs(a)?;
            let t = now();
            match args.as_slice() {
                [] => Ok(clock::format(t, clock::RFC3339).into()),
                [u] if u == "unix" => Ok(clock::unix(t).to_string().into()),
                [layout] => Ok(clock::format(t, layout).into()),
                _ => Err(format!(
                    "timestamp: wrong number of arguments, expected 0 or 1, but got {}",
                    a.len()
                )),
            }
        });
        f.helpers();
        f
    }

    fn helpers(&mut self) {
        self.add("toJSON", |_, a| Ok(to_json(one(a)?, None, true).into()));
        self.add("toJSONPretty", |_, a| {
            Ok(to_json(one(a)?, Some("  "), true).into())
        });
        self.add("toYAML", |_, a| yaml::to_yaml(one(a)?).map(Value::Str));
        self.add("toTOML", |_, a| toml::to_toml(one(a)?).map(Value::Str));
        self.add("parseJSON", |_, a| {
            let s = strings(a, 1, "parseJSON")?.remove(0);
            if s.is_empty() {
                return Ok(Value::map(Default::default()));
            }
            Value::from_json(&s, true)
        });
        self.add("base64Encode", |_, a| {
            let s = strings(a, 1, "base64Encode")?.remove(0);
            Ok(STD.encode(s).into())
        });
        self.add("base64URLEncode", |_, a| {
            let s = strings(a, 1, "base64URLEncode")?.remove(0);
            Ok(URL.encode(s).into())
        });
        self.add("base64Decode", |_, a| {
            decode(&STD, &strings(a, 1, "base64Decode")?[0], "base64Decode")
        });
        self.add("base64URLDecode", |_, a| {
            decode(
                &URL,
                &strings(a, 1, "base64URLDecode")?[0],
                "base64URLDecode",
            )
        });
        self.add("trimSpace", |_, a| {
            Ok(go_trim_space(&strings(a, 1, "trimSpace")?[0]).into())
        });
        self.add("toUpper", |_, a| {
            Ok(map_case(&strings(a, 1, "toUpper")?[0], true))
        });
        self.add("toLower", |_, a| {
            Ok(map_case(&strings(a, 1, "toLower")?[0], false))
        });
        self.add("toTitle", |_, a| {
            Ok(title(&strings(a, 1, "toTitle")?[0]).into())
        });
        self.add("replaceAll", |_, a| {
            let s = strings(a, 3, "replaceAll")?;
            Ok(replace_all(&s[2], &s[0], &s[1]).into())
        });
        self.add("split", |_, a| {
            let s = strings(a, 2, "split")?;
            Ok(split(&s[0], &s[1]))
        });
        self.add("join", |_, a| {
            let [Value::Str(sep), Value::List(l)] = a else {
                return Err("join takes a separator and a list of strings".into());
            };
            let mut parts = Vec::with_capacity(l.len());
            for (i, x) in l.iter().enumerate() {
                match x {
                    Value::Str(s) => parts.push(s.as_str()),
                    other => {
                        return Err(format!(
                            "element {i} is a {}, not a string",
                            other.type_name()
                        ))
                    }
                }
            }
            Ok(parts.join(sep).into())
        });
        self.add("contains", |_, a| match a {
            [v, l] => Ok(Value::Bool(contained(l, v))),
            _ => Err(format!("wrong number of args: want 2 got {}", a.len())),
        });
        self.add("containsAny", |_, a| match a {
            [Value::List(v), l] => Ok(Value::Bool(v.iter().any(|x| contained(l, x)))),
            [_, _] => Err("the first argument must be a list".into()),
            _ => Err(format!("wrong number of args: want 2 got {}", a.len())),
        });
        self.add("sha256Hex", |_, a| {
            let s = strings(a, 1, "sha256Hex")?.remove(0);
            let d = ring::digest::digest(&ring::digest::SHA256, s.as_bytes());
            Ok(super::print::hex(d.as_ref(), false).into())
        });
    }

    /// Adds or replaces the function `name`.
    pub fn insert<F>(&mut self, name: &str, f: F)
    where
        F: Fn(&mut Ctx<'_>, &[Value]) -> Result<Value, String> + Send + Sync + 'static,
    {
        self.put(name, Box::new(f));
    }

    /// Adds a built-in helper (a plain function, see [`Builtin`]).
    fn add(&mut self, name: &str, f: Builtin) {
        self.put(name, Box::new(f));
    }

    fn put(&mut self, name: &str, f: Func) {
        match self.map.iter_mut().find(|(n, _)| n == name) {
            Some(slot) => slot.1 = f,
            None => self.map.push((name.to_string(), f)),
        }
    }

    pub(crate) fn get(&self, name: &str) -> Option<&Func> {
        self.map.iter().find(|(n, _)| n == name).map(|(_, f)| f)
    }

    /// Whether a template may call `name`: Go's built-ins and this table's functions; refused
    /// and not-yet-supported consul-template functions get a message saying so.
    pub fn check(&self, name: &str) -> Result<(), String> {
        if super::exec::BUILTINS.contains(&name) || self.get(name).is_some() {
            return Ok(());
        }
        if let Some((_, why)) = REFUSED.iter().find(|(names, _)| names.contains(&name)) {
            return Err(format!("function {name:?} is refused: {why}"));
        }
        if NOT_YET.contains(&name) {
            return Err(format!(
                "function {name:?} is not supported by vault-login yet"
            ));
        }
        Err(format!("function {name:?} not defined"))
    }
}

/// `secret "path"` reads; `secret "path" "k=v" ...` writes (consul-template's rule).
fn secret(ctx: &mut Ctx<'_>, a: &[Value]) -> Result<Value, String> {
    if a.is_empty() {
        return Ok(Value::Nil);
    }
    let args = strs(a)?;
    ctx.read(Read::secret(&args)?)
}

/// Go's `StdEncoding`/`URLEncoding`: padded, lenient about trailing bits; line breaks skipped.
const STD: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(DecodePaddingMode::RequireCanonical),
);
const URL: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(DecodePaddingMode::RequireCanonical),
);

fn decode(engine: &GeneralPurpose, s: &str, name: &str) -> Result<Value, String> {
    // line breaks are ASCII, so bytes will do (no UTF-8 decoding and re-encoding)
    let clean: Vec<u8> = s.bytes().filter(|c| *c != b'\r' && *c != b'\n').collect();
    let bytes = engine
        .decode(clean)
        .map_err(|_| format!("{name}: illegal base64 data"))?;
    String::from_utf8(bytes).map(Value::Str).map_err(|_| {
        format!("{name}: the decoded bytes are not UTF-8 text (binary output is not supported)")
    })
}

fn arity(a: &[Value], n: usize) -> Result<(), String> {
    if a.len() == n {
        Ok(())
    } else {
        Err(format!("wrong number of args: want {n} got {}", a.len()))
    }
}

fn one(a: &[Value]) -> Result<&Value, String> {
    arity(a, 1)?;
    Ok(&a[0])
}

/// Every argument as a Go `string` (a `json.Number` is not one, as in Go).
fn strs(a: &[Value]) -> Result<Vec<String>, String> {
    // a loop, not `collect::<Result<..>>` (its adapter instances cost more than this)
    let mut out = Vec::with_capacity(a.len());
    for (i, v) in a.iter().enumerate() {
        match v {
            Value::Str(s) => out.push(s.clone()),
            other => {
                return Err(format!(
                    "wrong type for value; expected string; got {} (argument {})",
                    other.type_name(),
                    i + 1
                ))
            }
        }
    }
    Ok(out)
}

fn strings(a: &[Value], n: usize, _name: &str) -> Result<Vec<String>, String> {
    arity(a, n)?;
    strs(a)
}

/// Go's `strings.TrimSpace`: Unicode white space at both ends. Go's `unicode.IsSpace` is the
/// White_Space property (U+0085 and U+00A0 included), which is what `str::trim` strips too.
fn go_trim_space(s: &str) -> String {
    s.trim().to_string()
}

/// Go's `strings.ToUpper`/`ToLower` map each rune to one rune (no `ß` -> `SS`). One function
/// for both, not one generic instance per case.
fn map_case(s: &str, upper: bool) -> Value {
    s.chars()
        .map(|c| {
            let (a, b) = if upper {
                let mut it = c.to_uppercase();
                (it.next(), it.next())
            } else {
                let mut it = c.to_lowercase();
                (it.next(), it.next())
            };
            match (a, b) {
                (Some(u), None) => u,
                _ => c,
            }
        })
        .collect::<String>()
        .into()
}

/// `cases.Title(language.Und, cases.NoLower)`: the first letter of each word upper-cased, the
/// rest untouched. Words are runs of letters, digits, `_` and inner apostrophes or periods
/// (an approximation of Unicode word breaks that agrees on the usual ASCII text).
fn title(s: &str) -> String {
    let cs: Vec<char> = s.chars().collect();
    let mut out = String::with_capacity(s.len());
    let mut in_word = false;
    for (i, &c) in cs.iter().enumerate() {
        let word_char = c.is_alphanumeric() || c == '_';
        let joiner = matches!(c, '\'' | '.' | ':' | '\u{2019}')
            && in_word
            && cs.get(i + 1).is_some_and(|n| n.is_alphabetic())
            && cs[i - 1].is_alphabetic();
        if word_char && !in_word {
            let mut up = c.to_uppercase();
            match (up.next(), up.next()) {
                (Some(u), None) => push(&mut out, u),
                _ => push(&mut out, c),
            }
        } else {
            push(&mut out, c);
        }
        in_word = word_char || joiner;
    }
    out
}

/// Go's `strings.ReplaceAll(s, from, to)`: an empty `from` inserts `to` around every rune.
fn replace_all(s: &str, from: &str, to: &str) -> String {
    if !from.is_empty() {
        return s.replace(from, to);
    }
    let mut out = String::from(to);
    for c in s.chars() {
        push(&mut out, c);
        out.push_str(to);
    }
    out
}

/// consul-template's `split sep s`: trims spaces first; an empty string gives an empty list.
fn split(sep: &str, s: &str) -> Value {
    let s = go_trim_space(s);
    if s.is_empty() {
        return Value::list(Vec::new());
    }
    // pushes, not two `collect` instances
    let mut parts = Vec::new();
    if sep.is_empty() {
        for c in s.chars() {
            parts.push(Value::Str(c.to_string()));
        }
    } else {
        for p in s.split(sep) {
            parts.push(Value::Str(p.to_string()));
        }
    }
    Value::list(parts)
}

/// consul-template's `in(l, v)`: an element of the same kind and value, or a substring.
fn contained(l: &Value, v: &Value) -> bool {
    match l {
        Value::List(items) => items.iter().any(|x| match (x, v) {
            (Value::Int(a), Value::Int(b)) => a == b,
            (Value::Float(a), Value::Float(b)) => a == b,
            (Value::Str(a), Value::Str(b)) | (Value::Number(a), Value::Number(b)) => a == b,
            _ => false,
        }),
        Value::Str(s) => matches!(v, Value::Str(x) if s.contains(x.as_str())),
        _ => false,
    }
}
