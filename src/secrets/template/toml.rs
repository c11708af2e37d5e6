//! `toTOML` as consul-template runs it: BurntSushi/toml v1.5 `Encoder` (two-space indent per
//! table level), trimmed. Plain keys before tables, each group sorted; nulls skipped; a
//! `json.Number` written as the int or float it parses as, floats in `%f` form with `.0`; lists
//! of only maps become `[[arrays of tables]]`, other maps in lists inline tables.

use super::value::push;
use super::value::{Map, Value};
use std::fmt::Write as _;

/// Encodes a map as BurntSushi/toml does, without surrounding white space.
pub(crate) fn to_toml(v: &Value) -> Result<String, String> {
    let Value::Map(m) = v else {
        return Err(format!(
            "toml: top-level values must be maps, not {}",
            v.type_name()
        ));
    };
    let mut e = Enc { out: String::new() };
    e.table(&[], m)?;
    Ok(e.out.trim().to_string())
}

struct Enc {
    out: String,
}

fn is_table(v: &Value) -> bool {
    matches!(v, Value::Map(_)) || is_table_array(v)
}

fn is_table_array(v: &Value) -> bool {
    matches!(v, Value::List(l) if !l.is_empty() && l.iter().all(|x| matches!(x, Value::Map(_))))
}

fn key_part(k: &str) -> String {
    if !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        k.to_string()
    } else {
        quote(k)
    }
}

fn quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\u{c}' => out.push_str("\\f"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => push(&mut out, c),
        }
    }
    out.push('"');
    out
}

type Entries<'a> = Vec<(&'a String, &'a Value)>;

/// A map's non-null entries: plain values first, then tables (BurntSushi/toml's order). One
/// function for both callers, not one `partition` instance each.
fn entries(m: &Map) -> (Entries<'_>, Entries<'_>) {
    let (mut direct, mut sub) = (Vec::new(), Vec::new());
    for (k, v) in m.iter() {
        if matches!(v, Value::Nil) {
            continue;
        }
        if is_table(v) {
            sub.push((k, v));
        } else {
            direct.push((k, v));
        }
    }
    (direct, sub)
}

fn float(f: f64) -> String {
    if f.is_nan() {
        return "nan".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "inf" } else { "-inf" }.into();
    }
    let s = format!("{f}");
    if s.contains('.') {
        s
    } else {
        format!("{s}.0")
    }
}

impl Enc {
    fn newline(&mut self) {
        if !self.out.is_empty() {
            self.out.push('\n');
        }
    }

    fn indent(path: &[String]) -> String {
        "  ".repeat(path.len().saturating_sub(1))
    }

    fn header(path: &[String]) -> String {
        path.iter()
            .map(|k| key_part(k))
            .collect::<Vec<_>>()
            .join(".")
    }

    fn table(&mut self, path: &[String], m: &Map) -> Result<(), String> {
        let (direct, sub) = entries(m);
        for (k, v) in direct {
            let mut p = path.to_vec();
            p.push(k.clone());
            let _ = write!(self.out, "{}{} = ", Self::indent(&p), key_part(k));
            self.element(v)?;
            self.newline();
        }
        for (k, v) in sub {
            let mut p = path.to_vec();
            p.push(k.clone());
            match v {
                Value::Map(sm) => {
                    if p.len() == 1 {
                        self.newline();
                    }
                    let _ = write!(self.out, "{}[{}]", Self::indent(&p), Self::header(&p));
                    self.newline();
                    self.table(&p, sm)?;
                }
                Value::List(l) => {
                    for x in l.iter() {
                        if let Value::Map(sm) = x {
                            self.newline();
                            let _ =
                                write!(self.out, "{}[[{}]]", Self::indent(&p), Self::header(&p));
                            self.newline();
                            self.table(&p, sm)?;
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn element(&mut self, v: &Value) -> Result<(), String> {
        match v {
            Value::Nil | Value::Scratch => return Err("toml: cannot encode a null".into()),
            Value::Bool(b) => self.out.push_str(if *b { "true" } else { "false" }),
            Value::Int(i) => {
                let _ = write!(self.out, "{i}");
            }
            Value::Float(f) => self.out.push_str(&float(*f)),
            Value::Number(n) => {
                if n.is_empty() {
                    self.out.push('0');
                } else if let Ok(i) = n.parse::<i64>() {
                    let _ = write!(self.out, "{i}");
                } else if let Some(f) = super::float::parse(n) {
                    self.out.push_str(&float(f));
                } else {
                    return Err("toml: a number is neither an int nor a float".into());
                }
            }
            Value::Str(s) => self.out.push_str(&quote(s)),
            Value::List(l) => {
                self.out.push('[');
                for (i, x) in l.iter().enumerate() {
                    if i > 0 {
                        self.out.push_str(", ");
                    }
                    if matches!(x, Value::Nil) {
                        return Err("toml: cannot encode a list with a null element".into());
                    }
                    self.element(x)?;
                }
                self.out.push(']');
            }
            Value::Map(m) => {
                self.out.push('{');
                let (direct, sub) = entries(m);
                for (i, (k, x)) in direct.iter().chain(&sub).enumerate() {
                    if i > 0 {
                        self.out.push_str(", ");
                    }
                    let _ = write!(self.out, "{} = ", key_part(k));
                    self.element(x)?;
                }
                self.out.push('}');
            }
            Value::Secret(_) => return Err("toml: cannot encode a secret; use .Data".into()),
            Value::Pem(_) => {
                return Err("toml: cannot encode a certificate; use .Cert, .Key or .CA".into())
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_what_the_real_agent_wrote() {
        // the expected text comes from `bao agent` 2.7.2 rendering toTOML of this body
        let v = Value::from_json(
            r#"{"big":12345678901234567000,"e":1000,"flag":true,"list":[1,"a",{"x":2}],
            "neg":-0,"nested":{"a":1,"b":{"c":"d"}},"nul":null,"pi":3.1,"s":"a\"b"}"#,
            false,
        )
        .unwrap();
        assert_eq!(
            to_toml(&v).unwrap(),
            "big = 12345678901234567000.0\ne = 1000\nflag = true\nlist = [1, \"a\", {x = 2}]\n\
             neg = 0\npi = 3.1\ns = \"a\\\"b\"\n\n[nested]\n  a = 1\n  [nested.b]\n    c = \"d\""
        );
    }
}
