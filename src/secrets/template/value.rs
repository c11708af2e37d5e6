//! The values a template sees, typed as consul-template's Go values are: Vault's JSON decoded with
//! `UseNumber` (numbers stay the server's text, a `json.Number`), `int` and `float64` from literals
//! and functions, and the `*dependency.Secret` that `secret` returns.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

/// A map as Go's `map[string]interface{}`; `BTreeMap` iterates in Go's sorted key order.
pub type Map = BTreeMap<String, Value>;

/// A Go value as a template meets it.
#[derive(PartialEq)]
pub enum Value {
    /// A nil `interface{}` (JSON `null`).
    Nil,
    /// `bool`.
    Bool(bool),
    /// `int`: literals, `len`, `.LeaseDuration`.
    Int(i64),
    /// `float64`: float literals and `parseJSON` numbers.
    Float(f64),
    /// `json.Number`: a number from Vault, kept as the text the server sent (a string to Go).
    Number(String),
    /// `string`.
    Str(String),
    /// `[]interface{}` (also `[]string` results such as `split`).
    List(Arc<Vec<Value>>),
    /// `map[string]interface{}`.
    Map(Arc<Map>),
    /// The `*dependency.Secret` of `secret`.
    Secret(Arc<Secret>),
    /// The `dependency.PemEncoded` of `pkiCert`.
    Pem(Arc<PemEncoded>),
    /// consul-template's `scratch` (its state lives in the render).
    Scratch,
}

/// What `secret` returns: consul-template's `dependency.Secret`.
#[derive(Clone, PartialEq, Default)]
pub struct Secret {
    /// `.RequestID`.
    pub request_id: String,
    /// `.LeaseID`.
    pub lease_id: String,
    /// `.LeaseDuration` in seconds.
    pub lease_duration: i64,
    /// `.Renewable`.
    pub renewable: bool,
    /// `.Data`; `None` when Vault's `data` was null or empty (Go's nil map).
    pub data: Option<Arc<Map>>,
    /// `.Warnings`; `None` when Vault sent none (Go's nil slice).
    pub warnings: Option<Vec<String>>,
}

/// The fields of a [`Secret`], in Go's declaration order (printing `&{...}` follows it).
pub(crate) const SECRET_FIELDS: [&str; 8] = [
    "RequestID",
    "LeaseID",
    "LeaseDuration",
    "Renewable",
    "Data",
    "Warnings",
    "Auth",
    "WrapInfo",
];

/// What `pkiCert` returns: consul-template's `dependency.PemEncoded`, each field one PEM block
/// as Go's `pem.EncodeToMemory` writes it (empty when the block was not had).
#[derive(Clone, PartialEq, Eq, Default)]
pub struct PemEncoded {
    /// `.Cert`: the leaf certificate.
    pub cert: String,
    /// `.Key`: its private key.
    pub key: String,
    /// `.CA`: the issuing CA.
    pub ca: String,
}

/// The fields of a [`PemEncoded`], in Go's declaration order.
pub(crate) const PEM_FIELDS: [&str; 3] = ["Cert", "Key", "CA"];

impl PemEncoded {
    /// The field `name` as a value (`.Data` is the struct itself, as consul-template's method
    /// mimicking a secret's `.Data` returns it), or `None` when it has no such field.
    pub(crate) fn field(self: &Arc<Self>, name: &str) -> Option<Value> {
        Some(match name {
            "Cert" => Value::Str(self.cert.clone()),
            "Key" => Value::Str(self.key.clone()),
            "CA" => Value::Str(self.ca.clone()),
            "Data" => Value::Pem(self.clone()),
            _ => return None,
        })
    }
}

impl std::fmt::Debug for PemEncoded {
    /// Never prints the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PemEncoded(...)")
    }
}

impl Secret {
    /// Builds the secret from a Vault answer's JSON body (numbers kept as sent).
    pub fn from_vault_json(body: &str) -> Result<Secret, String> {
        let v = Value::from_json(body, false)?;
        let Value::Map(m) = v else {
            return Err("the answer is not a JSON object".into());
        };
        let text = |k: &str| match m.get(k) {
            Some(Value::Str(s)) => s.clone(),
            _ => String::new(),
        };
        let data = match m.get("data") {
            Some(Value::Map(d)) if !d.is_empty() => Some(d.clone()),
            _ => None,
        };
        let warnings = match m.get("warnings") {
            Some(Value::List(l)) if !l.is_empty() => {
                let mut ws = Vec::with_capacity(l.len());
                for w in l.iter() {
                    ws.push(match w {
                        Value::Str(s) => s.clone(),
                        other => other.to_string(),
                    });
                }
                Some(ws)
            }
            _ => None,
        };
        Ok(Secret {
            request_id: text("request_id"),
            lease_id: text("lease_id"),
            lease_duration: match m.get("lease_duration") {
                Some(Value::Number(n)) => n.parse().unwrap_or(0),
                _ => 0,
            },
            renewable: matches!(m.get("renewable"), Some(Value::Bool(true))),
            data,
            warnings,
        })
    }

    /// The field `name` as a value, or `None` when the struct has no such field.
    pub(crate) fn field(&self, name: &str) -> Option<Value> {
        Some(match name {
            "RequestID" => Value::Str(self.request_id.clone()),
            "LeaseID" => Value::Str(self.lease_id.clone()),
            "LeaseDuration" => Value::Int(self.lease_duration),
            "Renewable" => Value::Bool(self.renewable),
            "Data" => Value::Map(self.data.clone().unwrap_or_default()),
            "Warnings" => {
                let mut l = Vec::new();
                for w in self.warnings.iter().flatten() {
                    l.push(Value::Str(w.clone()));
                }
                Value::list(l)
            }
            "Auth" | "WrapInfo" => Value::Nil,
            _ => return None,
        })
    }
}

impl Clone for Value {
    /// Out of line: the derived clone was inlined at each of the engine's many clones.
    #[inline(never)]
    fn clone(&self) -> Value {
        match self {
            Value::Nil => Value::Nil,
            Value::Bool(b) => Value::Bool(*b),
            Value::Int(i) => Value::Int(*i),
            Value::Float(f) => Value::Float(*f),
            Value::Number(s) => Value::Number(s.clone()),
            Value::Str(s) => Value::Str(s.clone()),
            Value::List(l) => Value::List(l.clone()),
            Value::Map(m) => Value::Map(m.clone()),
            Value::Secret(s) => Value::Secret(s.clone()),
            Value::Pem(p) => Value::Pem(p.clone()),
            Value::Scratch => Value::Scratch,
        }
    }
}

impl std::fmt::Debug for Value {
    /// Names the type only: values may be secrets.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Value({})", self.type_name())
    }
}

impl std::fmt::Debug for Secret {
    /// Never prints the data.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(...)")
    }
}

impl std::fmt::Display for Value {
    /// Go's `%v`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&super::print::value(self))
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Value {
        Value::Str(s.into())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Value {
        Value::Str(s)
    }
}

impl Value {
    /// A list value.
    pub fn list(v: Vec<Value>) -> Value {
        Value::List(Arc::new(v))
    }

    /// A map value.
    pub fn map(m: Map) -> Value {
        Value::Map(Arc::new(m))
    }

    /// Go's type name, as `%T` and error messages print it.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Nil => "<nil>",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float64",
            Value::Number(_) => "json.Number",
            Value::Str(_) => "string",
            Value::List(_) => "[]interface {}",
            Value::Map(_) => "map[string]interface {}",
            Value::Secret(_) => "*dependency.Secret",
            Value::Pem(_) => "dependency.PemEncoded",
            Value::Scratch => "*template.Scratch",
        }
    }

    /// Go's truth: zero values and empty collections are false (a `json.Number` is a non-empty
    /// string, so `"0"` from Vault is true, as in Vault Agent).
    pub fn truth(&self) -> bool {
        match self {
            Value::Nil => false,
            Value::Bool(b) => *b,
            Value::Int(i) => *i != 0,
            Value::Float(f) => *f != 0.0,
            Value::Number(s) | Value::Str(s) => !s.is_empty(),
            Value::List(l) => !l.is_empty(),
            Value::Map(m) => !m.is_empty(),
            Value::Secret(_) | Value::Pem(_) | Value::Scratch => true,
        }
    }

    /// The Go field names of a `*dependency.Secret` or `dependency.PemEncoded`, in declaration
    /// order (none for other values).
    pub(crate) fn struct_fields(&self) -> &'static [&'static str] {
        match self {
            Value::Secret(_) => &SECRET_FIELDS,
            Value::Pem(_) => &PEM_FIELDS,
            _ => &[],
        }
    }

    /// The field `name` of a `*dependency.Secret` or `dependency.PemEncoded` (nil otherwise).
    pub(crate) fn struct_field(&self, name: &str) -> Value {
        match self {
            Value::Secret(s) => s.field(name),
            Value::Pem(p) => p.field(name),
            _ => None,
        }
        .unwrap_or(Value::Nil)
    }

    /// The string inside a `string` or `json.Number` (Go's string kind).
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) | Value::Number(s) => Some(s),
            _ => None,
        }
    }

    /// Parses JSON; numbers stay text (`json.Number`) unless `floats` (Go's plain `Unmarshal`).
    pub fn from_json(text: &str, floats: bool) -> Result<Value, String> {
        let mut p = Json {
            b: text.as_bytes(),
            i: 0,
            floats,
            depth: 0,
        };
        let v = p.value()?;
        p.ws();
        if p.i != p.b.len() {
            return Err(format!(
                "invalid character after top-level value at offset {}",
                p.i
            ));
        }
        Ok(v)
    }
}

/// `out.push(c)`, out of line: `String::push` inlined is its UTF-8 encoding and growth code,
/// about 200 bytes at each of the engine's many character loops.
#[inline(never)]
pub(crate) fn push(out: &mut String, c: char) {
    out.push(c);
}

/// A JSON reader that keeps numbers' text.
struct Json<'a> {
    b: &'a [u8],
    i: usize,
    floats: bool,
    depth: usize,
}

impl Json<'_> {
    fn ws(&mut self) {
        while self.i < self.b.len() && matches!(self.b[self.i], b' ' | b'\t' | b'\r' | b'\n') {
            self.i += 1;
        }
    }

    fn err<T>(&self, what: &str) -> Result<T, String> {
        Err(format!("invalid JSON: {what} at offset {}", self.i))
    }

    fn value(&mut self) -> Result<Value, String> {
        self.ws();
        let Some(&c) = self.b.get(self.i) else {
            return self.err("unexpected end");
        };
        match c {
            b'{' | b'[' => {
                self.depth += 1;
                if self.depth > 1000 {
                    return self.err("nesting too deep");
                }
                let v = if c == b'{' {
                    self.object()
                } else {
                    self.array()
                };
                self.depth -= 1;
                v
            }
            b'"' => self.string().map(Value::Str),
            b't' => self.word("true", Value::Bool(true)),
            b'f' => self.word("false", Value::Bool(false)),
            b'n' => self.word("null", Value::Nil),
            b'-' | b'0'..=b'9' => self.number(),
            _ => self.err("unexpected character"),
        }
    }

    fn word(&mut self, w: &str, v: Value) -> Result<Value, String> {
        if self.b[self.i..].starts_with(w.as_bytes()) {
            self.i += w.len();
            Ok(v)
        } else {
            self.err("unexpected literal")
        }
    }

    fn object(&mut self) -> Result<Value, String> {
        self.i += 1;
        let mut m = Map::new();
        self.ws();
        if self.b.get(self.i) == Some(&b'}') {
            self.i += 1;
            return Ok(Value::map(m));
        }
        loop {
            self.ws();
            if self.b.get(self.i) != Some(&b'"') {
                return self.err("expected a key");
            }
            let k = self.string()?;
            self.ws();
            if self.b.get(self.i) != Some(&b':') {
                return self.err("expected ':'");
            }
            self.i += 1;
            let v = self.value()?;
            m.insert(k, v);
            self.ws();
            match self.b.get(self.i) {
                Some(b',') => self.i += 1,
                Some(b'}') => {
                    self.i += 1;
                    return Ok(Value::map(m));
                }
                _ => return self.err("expected ',' or '}'"),
            }
        }
    }

    fn array(&mut self) -> Result<Value, String> {
        self.i += 1;
        let mut l = Vec::new();
        self.ws();
        if self.b.get(self.i) == Some(&b']') {
            self.i += 1;
            return Ok(Value::list(l));
        }
        loop {
            l.push(self.value()?);
            self.ws();
            match self.b.get(self.i) {
                Some(b',') => self.i += 1,
                Some(b']') => {
                    self.i += 1;
                    return Ok(Value::list(l));
                }
                _ => return self.err("expected ',' or ']'"),
            }
        }
    }

    fn number(&mut self) -> Result<Value, String> {
        let s = self.i;
        let digits = |j: &mut usize, b: &[u8]| {
            let st = *j;
            while *j < b.len() && b[*j].is_ascii_digit() {
                *j += 1;
            }
            *j > st
        };
        let mut j = self.i;
        if self.b[j] == b'-' {
            j += 1;
        }
        if self.b.get(j) == Some(&b'0') {
            j += 1;
        } else if !digits(&mut j, self.b) {
            return self.err("bad number");
        }
        if self.b.get(j) == Some(&b'.') {
            j += 1;
            if !digits(&mut j, self.b) {
                return self.err("bad number");
            }
        }
        if matches!(self.b.get(j), Some(b'e' | b'E')) {
            j += 1;
            if matches!(self.b.get(j), Some(b'+' | b'-')) {
                j += 1;
            }
            if !digits(&mut j, self.b) {
                return self.err("bad number");
            }
        }
        self.i = j;
        let text = String::from_utf8_lossy(&self.b[s..j]).into_owned();
        if self.floats {
            match super::float::parse(&text) {
                Some(f) if f.is_finite() => Ok(Value::Float(f)),
                _ => self.err("number out of range"),
            }
        } else {
            Ok(Value::Number(text))
        }
    }

    fn hex4(&mut self) -> Option<u32> {
        let h = self.b.get(self.i..self.i + 4)?;
        let v = u32::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok()?;
        self.i += 4;
        Some(v)
    }

    fn string(&mut self) -> Result<String, String> {
        self.i += 1;
        let mut out = Vec::new();
        loop {
            let Some(&c) = self.b.get(self.i) else {
                return self.err("unterminated string");
            };
            self.i += 1;
            match c {
                b'"' => return Ok(String::from_utf8_lossy(&out).into_owned()),
                b'\\' => {
                    let Some(&e) = self.b.get(self.i) else {
                        return self.err("unterminated string");
                    };
                    self.i += 1;
                    let ch = match e {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => {
                            let Some(u) = self.hex4() else {
                                return self.err("bad \\u escape");
                            };
                            self.surrogate(u)
                        }
                        _ => return self.err("bad escape"),
                    };
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                }
                c if c < 0x20 => return self.err("control character in string"),
                c => out.push(c),
            }
        }
    }

    /// A `\u` escape, joined with a following low surrogate; a lone surrogate is U+FFFD (as Go).
    fn surrogate(&mut self, u: u32) -> char {
        if (0xD800..0xDC00).contains(&u) && self.b[self.i..].starts_with(b"\\u") {
            let save = self.i;
            self.i += 2;
            if let Some(lo) = self.hex4().filter(|l| (0xDC00..0xE000).contains(l)) {
                let c = 0x10000 + ((u - 0xD800) << 10) + (lo - 0xDC00);
                return char::from_u32(c).unwrap_or('\u{FFFD}');
            }
            self.i = save;
        }
        char::from_u32(u).unwrap_or('\u{FFFD}')
    }
}

/// Go's `json.Marshal` (`indent` = `MarshalIndent(v, "", indent)`), HTML-escaping `<>&`.
pub(crate) fn to_json(v: &Value, indent: Option<&str>, escape_html: bool) -> String {
    let mut out = String::new();
    json_into(&mut out, v, indent, 0, escape_html);
    out
}

fn newline(out: &mut String, indent: Option<&str>, depth: usize) {
    if let Some(ind) = indent {
        out.push('\n');
        for _ in 0..depth {
            out.push_str(ind);
        }
    }
}

fn json_into(out: &mut String, v: &Value, indent: Option<&str>, depth: usize, html: bool) {
    let colon = if indent.is_some() { ": " } else { ":" };
    match v {
        Value::Nil | Value::Scratch => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Int(i) => {
            let _ = write!(out, "{i}");
        }
        Value::Float(f) => out.push_str(&json_float(*f)),
        Value::Number(n) => out.push_str(if n.is_empty() { "0" } else { n }),
        Value::Str(s) => json_string(out, s, html),
        Value::List(l) if l.is_empty() => out.push_str("[]"),
        Value::List(l) => {
            out.push('[');
            for (i, x) in l.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                newline(out, indent, depth + 1);
                json_into(out, x, indent, depth + 1, html);
            }
            newline(out, indent, depth);
            out.push(']');
        }
        Value::Map(m) if m.is_empty() => out.push_str("{}"),
        Value::Map(m) => {
            out.push('{');
            for (i, (k, x)) in m.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                newline(out, indent, depth + 1);
                json_string(out, k, html);
                out.push_str(colon);
                json_into(out, x, indent, depth + 1, html);
            }
            newline(out, indent, depth);
            out.push('}');
        }
        Value::Pem(_) | Value::Secret(_) => {
            out.push('{');
            for (i, f) in v.struct_fields().iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                newline(out, indent, depth + 1);
                json_string(out, f, html);
                out.push_str(colon);
                // Go marshals a nil map or slice as null
                let x = match (v, *f) {
                    (Value::Secret(s), "Data") if s.data.is_none() => Value::Nil,
                    (Value::Secret(s), "Warnings") if s.warnings.is_none() => Value::Nil,
                    _ => v.struct_field(f),
                };
                json_into(out, &x, indent, depth + 1, html);
            }
            newline(out, indent, depth);
            out.push('}');
        }
    }
}

/// encoding/json's float64: `%f` form, `%e` when the exponent is < -6 or >= 21 (`e-07` -> `e-7`).
fn json_float(f: f64) -> String {
    let a = f.abs();
    if a != 0.0 && !(1e-6..1e21).contains(&a) {
        let s = format!("{f:e}");
        let (m, e) = super::print::split_exp(&s);
        let sign = if e < 0 { '-' } else { '+' };
        format!("{m}e{sign}{:02}", e.abs())
            .replace("e-0", "e-")
            .to_string()
    } else {
        format!("{f}")
    }
}

fn json_string(out: &mut String, s: &str, html: bool) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' if html => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            '\u{2028}' | '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => push(out, c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_numbers_keep_the_servers_text() {
        let v = Value::from_json(r#"{"b":1.50,"a":[12345678901234567890,-0,1e3]}"#, false).unwrap();
        assert_eq!(
            to_json(&v, None, true),
            r#"{"a":[12345678901234567890,-0,1e3],"b":1.50}"#
        );
        let f = Value::from_json("[1e21, 0.000001, 1e-7, 3.0]", true).unwrap();
        assert_eq!(to_json(&f, None, true), "[1e+21,0.000001,1e-7,3]");
    }

    #[test]
    fn json_strings_and_indent_as_go() {
        let v = Value::from_json(
            r#"{"s":"<a&b>\u2028\u0001\ud83d\ude00","e":{},"l":[]}"#,
            false,
        )
        .unwrap();
        assert_eq!(
            to_json(&v, Some("  "), true),
            "{\n  \"e\": {},\n  \"l\": [],\n  \"s\": \"\\u003ca\\u0026b\\u003e\\u2028\\u0001😀\"\n}"
        );
        assert!(Value::from_json("{\"a\":}", false).is_err());
        assert!(Value::from_json("[1,]", false).is_err());
        assert!(Value::from_json("01", false).is_err());
    }

    #[test]
    fn secret_from_a_vault_answer() {
        let s = Secret::from_vault_json(
            r#"{"request_id":"r","lease_id":"","renewable":false,"lease_duration":2764800,"data":{"k":"v"},"warnings":null}"#,
        )
        .unwrap();
        assert_eq!(s.lease_duration, 2764800);
        assert_eq!(s.field("LeaseDuration"), Some(Value::Int(2764800)));
        assert!(s.warnings.is_none());
        assert_eq!(format!("{:?}", s), "Secret(...)");
    }
}
