//! Go `text/template`, the language of consul-template and Vault Agent templates, over JSON data.
//!
//! [`Template::parse`] turns source into a tree (errors carry line:column); [`Template::render`]
//! executes it over a [`serde_json::Value`] with a [`Funcs`] table. Strict mode makes printing a
//! missing key an error naming the key path (never a value); lenient mode prints Go's `<no value>`.
//! Not yet: `define`/`template`/`block`, `break`/`continue`, printf's width/precision flags.

mod exec;
mod parse;
mod print;

use base64::Engine as _;
use serde_json::Value;
use std::collections::HashMap;

/// A template function: arguments in, a value or an error message out. Messages must not
/// contain argument values (they may be secrets).
pub type Func = Box<dyn Fn(&[Value]) -> Result<Value, String> + Send + Sync>;

/// The function table a template is rendered with, beyond Go's built-ins.
#[derive(Default)]
pub struct Funcs {
    map: HashMap<String, Func>,
}

impl Funcs {
    /// An empty table (only Go's built-ins).
    pub fn new() -> Self {
        Self::default()
    }

    /// The helpers: `toJSON`, `toJSONPretty`, `trimSpace`, `toUpper`, `toLower`,
    /// `base64Encode`, `base64Decode`.
    pub fn with_helpers() -> Self {
        let mut f = Self::new();
        f.insert("toJSON", |a| one(a).and_then(|v| to_json(v, false)));
        f.insert("toJSONPretty", |a| one(a).and_then(|v| to_json(v, true)));
        f.insert("trimSpace", |a| string(a).map(|s| s.trim().into()));
        f.insert("toUpper", |a| {
            string(a).map(|s| map_chars(s, char::to_uppercase))
        });
        f.insert("toLower", |a| {
            string(a).map(|s| map_chars(s, char::to_lowercase))
        });
        f.insert("base64Encode", |a| {
            string(a).map(|s| base64::engine::general_purpose::STANDARD.encode(s).into())
        });
        f.insert("base64Decode", |a| {
            let s = string(a)?;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(s)
                .map_err(|_| "illegal base64 data".to_string())?;
            String::from_utf8(bytes)
                .map(Value::String)
                .map_err(|_| "decoded bytes are not UTF-8 text".into())
        });
        f
    }

    /// Adds or replaces the function `name`.
    pub fn insert<F>(&mut self, name: &str, f: F)
    where
        F: Fn(&[Value]) -> Result<Value, String> + Send + Sync + 'static,
    {
        self.map.insert(name.to_string(), Box::new(f));
    }

    fn get(&self, name: &str) -> Option<&Func> {
        self.map.get(name)
    }
}

fn one(a: &[Value]) -> Result<&Value, String> {
    match a {
        [v] => Ok(v),
        _ => Err(format!("wrong number of args: want 1 got {}", a.len())),
    }
}

fn string(a: &[Value]) -> Result<&str, String> {
    match one(a)? {
        Value::String(s) => Ok(s),
        _ => Err("expected a string".into()),
    }
}

/// Go's `strings.ToUpper`/`ToLower` map each rune to one rune (no `ß` -> `SS`).
fn map_chars<I: Iterator<Item = char>>(s: &str, f: impl Fn(char) -> I) -> Value {
    s.chars()
        .map(|c| {
            let mut it = f(c);
            match (it.next(), it.next()) {
                (Some(u), None) => u,
                _ => c,
            }
        })
        .collect::<String>()
        .into()
}

/// Go's `json.Marshal` (HTML-escaped `<>&`) or `json.MarshalIndent(v, "", "  ")`; keys sorted.
fn to_json(v: &Value, pretty: bool) -> Result<Value, String> {
    let s = if pretty {
        serde_json::to_string_pretty(v)
    } else {
        serde_json::to_string(v)
    };
    let s = s.map_err(|_| "cannot encode as JSON".to_string())?;
    Ok(s.replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
        .into())
}

/// A parse error: `template: NAME:LINE:COL: message`, the column a byte offset in the line.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("template: {name}:{line}:{col}: {message}")]
pub struct ParseError {
    /// The template's name.
    pub name: String,
    /// 1-based line.
    pub line: usize,
    /// Byte offset in the line (as Go's error context).
    pub col: usize,
    /// What is wrong.
    pub message: String,
}

/// A render error, as Go prints one: `template: NAME:L:C: executing "NAME" at <cmd>: message`.
/// Names keys and types, never values.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("template: {name}:{line}:{col}: executing {name:?} at <{at}>: {message}")]
pub struct RenderError {
    /// The template's name.
    pub name: String,
    /// 1-based line.
    pub line: usize,
    /// Byte offset in the line.
    pub col: usize,
    /// The command's source text.
    pub at: String,
    /// What went wrong.
    pub message: String,
}

/// A parsed template.
#[derive(Debug, Clone)]
pub struct Template {
    name: String,
    text: String,
    root: Vec<parse::Node>,
}

impl Template {
    /// Parses `text`; `name` appears in errors.
    pub fn parse(name: &str, text: &str) -> Result<Template, ParseError> {
        match parse::parse(text) {
            Ok(root) => Ok(Template {
                name: name.into(),
                text: text.into(),
                root,
            }),
            Err((off, message)) => {
                let (line, col) = parse::line_col(text, off);
                Err(ParseError {
                    name: name.into(),
                    line,
                    col,
                    message,
                })
            }
        }
    }

    /// Renders over `data` with `funcs`; `strict` makes printing a missing key an error.
    pub fn render(&self, data: &Value, funcs: &Funcs, strict: bool) -> Result<String, RenderError> {
        let root = exec::Val::V(data.clone());
        let mut st = exec::State {
            funcs,
            strict,
            vars: vec![("$".into(), root.clone())],
            out: String::new(),
        };
        match st.walk(&self.root, &root) {
            Ok(()) => Ok(st.out),
            Err((off, at, message)) => {
                let (line, col) = parse::line_col(&self.text, off);
                Err(RenderError {
                    name: self.name.clone(),
                    line,
                    col,
                    at,
                    message,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn r(t: &str, d: Value) -> Result<String, String> {
        let t = Template::parse("t", t).map_err(|e| e.to_string())?;
        t.render(&d, &Funcs::with_helpers(), true)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn text_fields_trimming_and_comments() {
        let d = json!({"a": {"b": "x"}, "n": 3});
        assert_eq!(r("hi {{ .a.b }}!", d.clone()).unwrap(), "hi x!");
        assert_eq!(r("a  {{- .n -}}  \n b", d.clone()).unwrap(), "a3b");
        assert_eq!(r("a {{-3}}", d.clone()).unwrap(), "a -3");
        assert_eq!(r("x {{- /* c */ -}} y", d.clone()).unwrap(), "xy");
        assert_eq!(r("{{/* c */}}z", d).unwrap(), "z");
    }

    #[test]
    fn control_flow_and_variables() {
        let d = json!({"m": {"b": 2, "a": 1}, "l": ["x", "y"], "e": []});
        for (text, want) in [
            ("{{range $k, $v := .m}}{{$k}}={{$v}};{{end}}", "a=1;b=2;"),
            ("{{range $i, $v := .l}}{{$i}}{{$v}}{{end}}", "0x1y"),
            ("{{range .e}}x{{else}}empty{{end}}", "empty"),
            ("{{if .nope}}a{{else if .l}}b{{else}}c{{end}}", "b"),
            ("{{with .m.a}}{{.}}{{else}}none{{end}}", "1"),
            ("{{with .zz}}{{.}}{{else}}none{{end}}", "none"),
            ("{{$x := .m.a}}{{$x = 5}}{{$x}} {{$.m.b}}", "5 2"),
            ("{{ or .nope \"dflt\" }}", "dflt"),
            (
                "{{ .l | len }} {{ index .l 1 }} {{ index .m \"b\" }}",
                "2 y 2",
            ),
        ] {
            assert_eq!(r(text, d.clone()).unwrap(), want, "{text}");
        }
    }

    #[test]
    fn values_print_like_go_fmt() {
        let d =
            json!({"m": {"b": [1, "s", null], "a": 1.5}, "big": 1e21, "f": 1234567.0, "s": 1e-5});
        assert_eq!(r("{{.m}}", d.clone()).unwrap(), "map[a:1.5 b:[1 s <nil>]]");
        assert_eq!(
            r("{{.big}} {{.f}} {{.s}}", d.clone()).unwrap(),
            "1e+21 1.234567e+06 1e-05"
        );
        assert_eq!(
            r(
                "{{print 1 2 \"a\" 3}}|{{println 1 \"a\"}}|{{printf \"%s-%d%%\" \"x\" 4}}",
                d
            )
            .unwrap(),
            "1 2a3|1 a\n|x-4%"
        );
    }

    #[test]
    fn comparisons_and_logic() {
        let d = json!({"p": 8080, "s": "a"});
        assert_eq!(
            r(
                "{{eq .p 8080}} {{ne .s \"a\"}} {{lt 1 2}} {{ge .s \"b\"}} {{not 0}} {{and 1 0}}",
                d.clone()
            )
            .unwrap(),
            "true false true false true 0"
        );
        assert!(r("{{eq .p \"x\"}}", d)
            .unwrap_err()
            .contains("incompatible types"));
    }

    #[test]
    fn missing_keys_strict_and_lenient() {
        let secret = json!({"Data": {"data": {"password": "hunter2"}}});
        let e = r("a\n{{ .Data.data.port }}", secret.clone()).unwrap_err();
        assert_eq!(e, "template: t:2:3: executing \"t\" at <.Data.data.port>: map has no entry for key \".Data.data.port\"");
        assert!(!e.contains("hunter2"));
        let t = Template::parse("t", "{{.Data.nope}}").unwrap();
        assert_eq!(
            t.render(&secret, &Funcs::new(), false).unwrap(),
            "<no value>"
        );
        assert!(r("{{ .Data.data.password.x }}", secret)
            .unwrap_err()
            .contains("can't evaluate field x in type string"));
    }

    #[test]
    fn helpers() {
        let d = json!({"k": {"b": "<&>", "a": [1]}, "e": "aGVsbG8=", "w": "  x \n"});
        assert_eq!(
            r("{{ toJSON .k }}", d.clone()).unwrap(),
            r#"{"a":[1],"b":"\u003c\u0026\u003e"}"#
        );
        assert_eq!(
            r("{{ .k | toJSONPretty }}", d.clone()).unwrap(),
            "{\n  \"a\": [\n    1\n  ],\n  \"b\": \"\\u003c\\u0026\\u003e\"\n}"
        );
        assert_eq!(
            r(
                "{{ base64Decode .e }} {{ base64Encode \"hello\" }} [{{ trimSpace .w }}]",
                d.clone()
            )
            .unwrap(),
            "hello aGVsbG8= [x]"
        );
        assert_eq!(
            r("{{ \"aB\" | toUpper }}{{ toLower \"Q\" }}", d.clone()).unwrap(),
            "ABq"
        );
        assert!(r("{{ nosuch 1 }}", d)
            .unwrap_err()
            .contains("function \"nosuch\" not defined"));
    }

    #[test]
    fn parse_errors_carry_line_and_column() {
        let e = Template::parse("app", "ok\n  {{ if .x }}").unwrap_err();
        assert_eq!((e.line, e.col), (2, 2));
        assert!(e.to_string().starts_with("template: app:2:2: "));
        let e = Template::parse("app", "{{ $y }}").unwrap_err();
        assert!(e.message.contains("undefined variable"));
    }

    #[test]
    fn malformed_templates_are_errors_not_panics() {
        let bad = [
            "{{",
            "{{ .a",
            "{{ end }}",
            "{{ else }}",
            "{{ if }}{{ end }}",
            "{{ if .a }}",
            "{{/* x",
            "{{/* x */ }}",
            "{{ \"abc }}",
            "{{ `abc }}",
            "{{ ( .a }}",
            "{{ .a ) }}",
            "{{ | }}",
            "{{ .a | }}",
            "{{ 1.2.3 }}",
            "{{ $ := }}",
            "{{ range $a, }}{{end}}",
            "{{ define \"x\" }}{{ end }}",
            "{{ @ }}",
            "{{ \"\\q\" }}",
            "{{ with .a }}{{ else }}{{ else }}{{ end }}",
            "{{}}",
            "{{ - }}",
            "{{ := }}",
            "{{ if .a }}{{ else if }}{{ end }}",
            "}}{{ é }}",
            "{{ 0x }}",
        ];
        for t in bad {
            assert!(Template::parse("t", t).is_err(), "{t:?} parsed");
        }
        let d = json!({"a": "s", "l": [1]});
        for t in [
            "{{ .a 1 }}",
            "{{ 1 | 2 }}",
            "{{ index .l 5 }}",
            "{{ range .a }}{{ end }}",
            "{{ len 3 }}",
            "{{ printf 1 }}",
            "{{ not 1 2 }}",
            "{{ index nil 1 }}",
        ] {
            let tpl = Template::parse("t", t).unwrap();
            assert!(
                tpl.render(&d, &Funcs::with_helpers(), true).is_err(),
                "{t:?} rendered"
            );
        }
    }
}
