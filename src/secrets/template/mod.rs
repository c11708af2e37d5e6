//! Go `text/template` as consul-template (Vault Agent's template engine) runs it.
//!
//! [`Template::parse`] turns source into a tree (errors carry line:column; unknown and refused
//! functions fail here, before any network call); [`Template::render`] executes it with a
//! [`Funcs`] table over a [`Source`] of Vault answers already fetched, so rendering is pure and
//! one read can serve many templates. [`Template::static_reads`] lists the reads visible in the
//! text (`secret "literal"`); [`Template::discover`] finds the rest (`secret (printf "x/%s" .)`)
//! by rendering leniently against what is known, as consul-template's first pass does: the
//! caller fetches what it names and asks again until nothing new appears.
//!
//! Values are typed as consul-template's Go values ([`Value`]): a number from Vault is a
//! `json.Number` holding the server's text (consul-template decodes Vault JSON with
//! `UseNumber`), so `8080` prints `8080`, `printf "%d"` of it prints Go's `%!d(json.Number=8080)`
//! and `eq .port "8080"` is true, exactly as under Vault Agent. We keep that text in our own
//! value type rather than serde_json's `arbitrary_precision`, a crate-wide feature that would
//! change every `serde_json::Number` in the binary.
//!
//! Strict mode (vault-login's default) makes printing a missing or null key an error naming the
//! key path (never a value); tests (`if`, `with`, `or`, `and`, `eq`) keep Go's meaning. Lenient
//! mode prints Go's `<no value>` (Agent's `error_on_missing_key = false`).
//!
//! Why our own engine: `gotmpl` 0.6.1 (phsym/gotmpl-rs, the maintained crate; `gtmpl` is
//! unmaintained) was checked: about 7,600 lines, faithful for Go's own types, but its value model
//! has no `json.Number` (a string kind that prints its text), no struct pointer such as
//! `*dependency.Secret`, and no hook for a parse-time function policy; bending it would mean
//! wrapping every value. This engine is about 4,500 lines with its tests and adds no crate (`sha256Hex` uses
//! `ring`, already linked for TLS). `regexReplaceAll` is left out: the `regex` crate would add
//! several hundred KB, past the issue's 250 KB budget for all of templates.
//! Not supported: Go's `html`, `js`, `urlquery`, `slice`, `call`; binary (non-UTF-8) output.

mod clock;
mod exec;
mod float;
mod funcs;
mod parse;
mod print;
mod source;
mod toml;
mod value;
mod yaml;

pub use exec::Ctx;
pub use funcs::{Clock, Env, Func, Funcs};
pub use source::{Read, Reads, Source};
pub use value::{Map, PemEncoded, Secret, Value};

use std::collections::BTreeSet;

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
/// Names keys, paths and types, never values.
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
    tree: parse::Tree,
}

impl Template {
    /// Parses `text`; `name` appears in errors. Functions are checked against `funcs`.
    pub fn parse(name: &str, text: &str, funcs: &Funcs) -> Result<Template, ParseError> {
        match parse::parse(text, &|f| funcs.check(f)) {
            Ok(tree) => Ok(Template {
                name: name.into(),
                text: text.into(),
                tree,
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

    /// The template's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The source text it was parsed from.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Renders with `.` = nil (as consul-template does); every read must be in `source`.
    pub fn render(
        &self,
        source: &dyn Source,
        funcs: &Funcs,
        strict: bool,
    ) -> Result<String, RenderError> {
        self.render_with(&Value::Nil, source, funcs, strict)
    }

    /// Renders with `dot` as `.` and `$`.
    pub fn render_with(
        &self,
        dot: &Value,
        source: &dyn Source,
        funcs: &Funcs,
        strict: bool,
    ) -> Result<String, RenderError> {
        self.run(dot, source, funcs, strict, false).0
    }

    /// Every read a render makes against `source`, unanswered ones included (they answer nil
    /// in this pass, so reads that depend on them show up once they are answered).
    pub fn discover(&self, source: &dyn Source, funcs: &Funcs) -> BTreeSet<Read> {
        self.run(&Value::Nil, source, funcs, false, true).1
    }

    /// The reads named with literal arguments (`secret "a/b"`, `secret "pki/issue/x" "k=v"`,
    /// `secrets "a/"`): known without rendering. Computed paths need [`Template::discover`].
    pub fn static_reads(&self) -> BTreeSet<Read> {
        let mut out = BTreeSet::new();
        parse::literal_calls(&self.tree, &mut |name, args| {
            let read = match name {
                "secret" => Read::secret(args).ok(),
                "secrets" if args.len() == 1 && !args[0].is_empty() => {
                    Some(Read::List(args[0].clone()))
                }
                _ => None,
            };
            out.extend(read);
        });
        out
    }

    fn run(
        &self,
        dot: &Value,
        source: &dyn Source,
        funcs: &Funcs,
        strict: bool,
        discover: bool,
    ) -> (Result<String, RenderError>, BTreeSet<Read>) {
        let root = exec::Val::V(dot.clone());
        let mut st = exec::State {
            tree: &self.tree,
            funcs,
            ctx: exec::Ctx::new(source, discover),
            strict,
            vars: vec![("$".into(), root.clone())],
            out: String::new(),
            scratch: Map::new(),
            depth: 0,
        };
        let r = st.walk(&self.tree.root, &root);
        let used = std::mem::take(&mut st.ctx.used);
        let r = match r {
            Ok(_) => Ok(st.out),
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
        };
        (r, used)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::Arc;

    fn funcs() -> Funcs {
        Funcs::standard_with(
            Arc::new(|k| (k == "HOME").then(|| "/root".to_string())),
            Arc::new(|| std::time::UNIX_EPOCH + std::time::Duration::from_secs(86_400)),
        )
    }

    fn data(d: serde_json::Value) -> Value {
        Value::from_json(&d.to_string(), false).unwrap()
    }

    fn r(t: &str, d: serde_json::Value) -> Result<String, String> {
        let f = funcs();
        let t = Template::parse("t", t, &f).map_err(|e| e.to_string())?;
        t.render_with(&data(d), &Reads::new(), &f, true)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn text_fields_trimming_and_comments() {
        let d = json!({"a": {"b": "x"}, "n": 3});
        assert_eq!(r("hi {{ .a.b }}!", d.clone()).unwrap(), "hi x!");
        assert_eq!(r("a  {{- .n -}}  \n b", d.clone()).unwrap(), "a3b");
        assert_eq!(r("a {{-3}}", d.clone()).unwrap(), "a -3");
        assert_eq!(r("x {{- /* c */ -}} y", d.clone()).unwrap(), "xy");
        assert_eq!(r("{{/* c */}}z", d.clone()).unwrap(), "z");
        assert_eq!(r(r#"{{ "\x41\u00e9\101\t" }}"#, d).unwrap(), "AéA\t");
    }

    #[test]
    fn control_flow_and_variables() {
        let d = json!({"m": {"b": 2, "a": 1}, "l": ["x", "y", "z"], "e": []});
        for (text, want) in [
            ("{{range $k, $v := .m}}{{$k}}={{$v}};{{end}}", "a=1;b=2;"),
            ("{{range $i, $v := .l}}{{$i}}{{$v}}{{end}}", "0x1y2z"),
            ("{{range .e}}x{{else}}empty{{end}}", "empty"),
            ("{{if .nope}}a{{else if .l}}b{{else}}c{{end}}", "b"),
            ("{{with .m.a}}{{.}}{{else}}none{{end}}", "1"),
            ("{{with .zz}}{{.}}{{else with .m.b}}b{{.}}{{else}}none{{end}}", "b2"),
            ("{{$x := .m.a}}{{$x = 5}}{{$x}} {{$.m.b}}", "5 2"),
            ("{{ or .nope \"dflt\" }}", "dflt"),
            ("{{ .l | len }} {{ index .l 1 }} {{ index .m \"b\" }}", "3 y 2"),
            ("{{range .l}}{{if eq . \"y\"}}{{break}}{{end}}{{.}}{{end}}", "x"),
            ("{{range .l}}{{if eq . \"y\"}}{{continue}}{{end}}{{.}}{{end}}", "xz"),
            (
                "{{define \"kv\"}}{{range $k, $v := .}}{{$k}}={{$v}}\n{{end}}{{end}}{{template \"kv\" .m}}",
                "a=1\nb=2\n",
            ),
            (
                "{{define \"in\"}}[{{.}}]{{end}}{{define \"out\"}}{{template \"in\" .}}{{end}}{{template \"out\" .m.a}}",
                "[1]",
            ),
            ("{{block \"b\" .m.b}}<{{.}}>{{end}}", "<2>"),
            ("{{ (index .l 0) }}{{ with $x := .m }}{{ $x.a }}{{ end }}", "x1"),
        ] {
            assert_eq!(r(text, d.clone()).unwrap(), want, "{text}");
        }
    }

    #[test]
    fn vault_numbers_behave_as_json_number() {
        let d = json!({"p": 8080, "z": 0});
        let f = funcs();
        let t = Template::parse("t", "{{.f}} {{.f | toJSON}}", &f).unwrap();
        let raw = Value::from_json(r#"{"f": 1.50}"#, false).unwrap();
        assert_eq!(
            t.render_with(&raw, &Reads::new(), &f, true).unwrap(),
            "1.50 1.50"
        );
        assert_eq!(r("{{if .z}}t{{end}}", d.clone()).unwrap(), "t");
        assert_eq!(r("{{eq .p \"8080\"}}", d.clone()).unwrap(), "true");
        assert!(r("{{eq .p 8080}}", d.clone())
            .unwrap_err()
            .contains("incompatible types for comparison"));
        assert_eq!(
            r("{{printf \"%d\" .p}}", d).unwrap(),
            "%!d(json.Number=8080)"
        );
    }

    #[test]
    fn values_print_like_go_fmt() {
        let d = json!({"m": {"b": [1, "s", null], "a": 1.5}});
        assert_eq!(r("{{.m}}", d.clone()).unwrap(), "map[a:1.5 b:[1 s <nil>]]");
        assert_eq!(
            r("{{1e21}} {{1234567.0}} {{1e-5}}", d.clone()).unwrap(),
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
        let d = json!({"s": "a"});
        assert_eq!(
            r("{{eq 1 1 2}} {{ne .s \"a\"}} {{lt 1 2}} {{ge .s \"b\"}} {{not 0}} {{and 1 0}} {{eq .nope \"x\"}}", d.clone()).unwrap(),
            "true false true false true 0 false"
        );
        assert!(r("{{lt true false}}", d)
            .unwrap_err()
            .contains("invalid type"));
    }

    #[test]
    fn missing_keys_strict_and_lenient() {
        let secret = json!({"Data": {"data": {"password": "hunter2", "n": null}}});
        let e = r("a\n{{ .Data.data.port }}", secret.clone()).unwrap_err();
        assert_eq!(e, "template: t:2:3: executing \"t\" at <.Data.data.port>: map has no entry for key \".Data.data.port\"");
        assert!(!e.contains("hunter2"));
        assert!(r("{{ .Data.data.n }}", secret.clone())
            .unwrap_err()
            .contains("key \".Data.data.n\" is null"));
        assert!(r("{{ toJSON .Data.nope }}", secret.clone())
            .unwrap_err()
            .contains("passed to toJSON"));
        assert_eq!(
            r(
                "{{ if .Data.data.port }}x{{ else }}none{{ end }}",
                secret.clone()
            )
            .unwrap(),
            "none"
        );
        let f = funcs();
        let t = Template::parse("t", "{{.Data.nope}}|{{.Data.data.n}}", &f).unwrap();
        assert_eq!(
            t.render_with(&data(secret.clone()), &Reads::new(), &f, false)
                .unwrap(),
            "<no value>|<no value>"
        );
        let e = r("{{ if .Data.nope.x }}{{ end }}", secret.clone()).unwrap_err();
        assert!(
            e.contains("nil pointer evaluating interface {}.x: key \".Data.nope\" is missing"),
            "{e}"
        );
        assert!(r("{{ .Data.data.password.x }}", secret)
            .unwrap_err()
            .contains("can't evaluate field x in type string"));
    }

    #[test]
    fn helpers() {
        let d = json!({"k": {"b": "<&>", "a": [1]}, "e": "aGVsbG8=", "w": "  x \n", "l": "a,b"});
        assert_eq!(
            r("{{ toJSON .k }}", d.clone()).unwrap(),
            r#"{"a":[1],"b":"\u003c\u0026\u003e"}"#
        );
        assert_eq!(
            r("{{ .k | toJSONPretty }}", d.clone()).unwrap(),
            "{\n  \"a\": [\n    1\n  ],\n  \"b\": \"\\u003c\\u0026\\u003e\"\n}"
        );
        for (t, want) in [
            ("{{ base64Decode .e }} {{ base64Encode \"hello\" }} [{{ trimSpace .w }}]", "hello aGVsbG8= [x]"),
            ("{{ base64URLEncode \"ÿþ?\" }} {{ base64URLDecode \"w7_Dvj8=\" }}", "w7_Dvj8= ÿþ?"),
            ("{{ \"aB\" | toUpper }}{{ toLower \"Q\" }} {{ toTitle \"hello wide-world o'neil\" }}", "ABq Hello Wide-World O'neil"),
            ("{{ .l | split \",\" | join \";\" }} {{ replaceAll \"a\" \"x\" \"banana\" }}", "a;b bxnxnx"),
            ("{{ if .l | contains \"a,\" }}y{{ end }}{{ if split \",\" .l | contains \"b\" }}y{{ end }}", "yy"),
            ("{{ containsAny (split \",\" \"x,b\") (split \",\" .l) }}", "true"),
            ("{{ sha256Hex \"abc\" }}", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
            ("{{ env \"HOME\" }}|{{ env \"NOPE\" }}|{{ timestamp }}|{{ timestamp \"unix\" }}", "/root||1970-01-02T00:00:00Z|86400"),
            ("{{ (parseJSON \"{\\\"a\\\":[1e3,true]}\").a }}", "[1000 true]"),
            ("{{ scratch.Set \"k\" \"v\" }}{{ scratch.Get \"k\" }}{{ scratch.MapSet \"m\" \"b\" 2 }}{{ scratch.MapSet \"m\" \"a\" 1 }}{{ scratch.MapValues \"m\" }}{{ scratch.Key \"m\" }}", "v[1 2]true"),
        ] {
            assert_eq!(r(t, d.clone()).unwrap(), want, "{t}");
        }
        assert!(r("{{ base64Decode \"%%%\" }}", d)
            .unwrap_err()
            .contains("illegal base64 data"));
    }

    #[test]
    fn functions_are_checked_at_parse_time() {
        let f = funcs();
        let e = Template::parse("app", "x\n {{ file \"/etc/passwd\" }}", &f).unwrap_err();
        assert_eq!((e.line, e.col), (2, 4));
        assert!(e.message.contains("function \"file\" is refused"), "{e}");
        for name in [
            "key",
            "service",
            "plugin",
            "sockaddr",
            "writeToFile",
            "nomadVar",
        ] {
            let e = Template::parse("t", &format!("{{{{ {name} \"x\" }}}}"), &f).unwrap_err();
            assert!(e.message.contains("is refused"), "{name}: {e}");
        }
        let e = Template::parse("t", "{{ regexMatch \"x\" }}", &f).unwrap_err();
        assert!(e.message.contains("not supported by vault-login yet"));
        let e = Template::parse("t", "{{ nosuch 1 }}", &f).unwrap_err();
        assert!(e.message.contains("function \"nosuch\" not defined"));
        let e = Template::parse("t", "{{ template \"missing\" }}", &f).unwrap_err();
        assert!(e.message.contains("no such template"));
    }

    #[test]
    fn reads_are_listed_and_answered_from_the_source() {
        let f = funcs();
        let t = Template::parse(
            "t",
            "{{ with secret \"kv/app\" }}{{ .Data.env }}{{ end }}{{ with secret (printf \"kv/%s\" (secret \"kv/app\").Data.env) }}{{ .Data.k }}{{ end }}{{ range secrets \"kv/\" }}{{ . }}{{ end }}{{ (secret \"pki/issue/x\" \"common_name=a.b\" \" ttl = 1h \").LeaseID }}",
            &f,
        )
        .unwrap();
        let write = Read::secret(&[
            "pki/issue/x".into(),
            "common_name=a.b".into(),
            " ttl = 1h ".into(),
        ])
        .unwrap();
        let stat: Vec<Read> = t.static_reads().into_iter().collect();
        assert_eq!(
            stat,
            vec![
                Read::Get("kv/app".into()),
                write.clone(),
                Read::List("kv/".into())
            ]
        );
        let mut reads = Reads::new();
        // the nested read's answer is needed to go on: one read per pass, as consul-template
        let first: Vec<Read> = t.discover(&reads, &f).into_iter().collect();
        assert_eq!(first, vec![Read::Get("kv/app".into())]);
        let sec = |body: &str| Secret::from_vault_json(body).unwrap();
        reads.secret(
            Read::Get("kv/app".into()),
            sec(r#"{"data":{"env":"prod"}}"#),
        );
        reads.list(Read::List("kv/".into()), vec!["b".into(), "a".into()]);
        reads.secret(write.clone(), sec(r#"{"lease_id":"L1","data":{"c":"x"}}"#));
        let found = t.discover(&reads, &f);
        assert!(found.contains(&Read::Get("kv/prod".into())), "{found:?}");
        let e = t.render(&reads, &f, true).unwrap_err();
        assert!(e.message.contains("secret \"kv/prod\" was not read"), "{e}");
        reads.secret(Read::Get("kv/prod".into()), sec(r#"{"data":{"k":"v"}}"#));
        assert_eq!(t.render(&reads, &f, true).unwrap(), "prodvabL1");
        reads.failed(
            Read::Get("kv/prod".into()),
            "kv/prod: permission denied".into(),
        );
        let e = t.render(&reads, &f, true).unwrap_err();
        assert!(
            e.to_string()
                .contains("error calling secret: kv/prod: permission denied"),
            "{e}"
        );
    }

    #[test]
    fn malformed_templates_are_errors_not_panics() {
        let f = funcs();
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
            "{{ define \"x\" }}",
            "{{ if 1 }}{{ define \"x\" }}{{ end }}{{ end }}",
            "{{ @ }}",
            "{{ \"\\q\" }}",
            "{{ with .a }}{{ else }}{{ else }}{{ end }}",
            "{{}}",
            "{{ - }}",
            "{{ := }}",
            "{{ if .a }}{{ else if }}{{ end }}",
            "}}{{ é }}",
            "{{ 0x }}",
            "{{ break }}",
            "{{ range .a }}{{ continue 1 }}{{ end }}",
            "{{ template }}",
            "{{ template \"x\" }}",
            "{{ 99999999999999999999 }}",
            "{{ \"\\xff\" }}",
        ];
        for t in bad {
            assert!(Template::parse("t", t, &f).is_err(), "{t:?} parsed");
        }
        let d = data(json!({"a": "s", "l": [1]}));
        for t in [
            "{{ .a 1 }}",
            "{{ 1 | 2 }}",
            "{{ index .l 5 }}",
            "{{ range .a }}{{ end }}",
            "{{ len 3 }}",
            "{{ printf 1 }}",
            "{{ not 1 2 }}",
            "{{ index nil 1 }}",
            "{{ join \",\" .l }}",
            "{{ define \"r\" }}{{ template \"r\" . }}{{ end }}{{ template \"r\" . }}",
            "{{ secret \"a\" \"novalue\" }}",
            "{{ toTOML .l }}",
            "{{ scratch.Nope 1 }}",
        ] {
            let tpl = Template::parse("t", t, &f).unwrap();
            assert!(
                tpl.render_with(&d, &Reads::new(), &f, true).is_err(),
                "{t:?} rendered"
            );
        }
    }
}
