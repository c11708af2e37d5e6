//! `toYAML` as consul-template runs it: `gopkg.in/yaml.v2` v2.4.0 `Marshal`, trimmed. That means
//! its quirks: keys in "natural" order (`k2` before `k10`), YAML 1.1 words (`yes`, `on`, `y`)
//! and number-like strings double-quoted, `': '` and edge spaces single-quoted, multi-line text
//! as `|-` blocks, sequences not indented under their key, plain text folded past column 80,
//! and a `json.Number` written as the int or float it parses as.

use super::print::float;
use super::value::push;
use super::value::Value;

/// Marshals `v` as yaml.v2 does, without the trailing newline.
pub(crate) fn to_yaml(v: &Value) -> Result<String, String> {
    let mut e = Emitter { out: String::new() };
    e.node(v, 0, Ctx::Top);
    Ok(e.out.trim().to_string())
}

/// Where a node sits: decides the separator before it and whether a block follows a newline.
#[derive(Clone, Copy, PartialEq)]
enum Ctx {
    Top,
    MapValue,
    SeqItem,
}

struct Emitter {
    out: String,
}

fn column(out: &str) -> usize {
    out.len() - out.rfind('\n').map_or(0, |p| p + 1)
}

impl Emitter {
    fn indent(&mut self, n: usize) {
        self.out.push('\n');
        self.out.push_str(&" ".repeat(n));
    }

    /// Writes `v` whose key or dash is already written; `ind` is the indent of that line.
    fn node(&mut self, v: &Value, ind: usize, ctx: Ctx) {
        match v {
            Value::Map(m) if !m.is_empty() => {
                // A stable insertion in natural order (the map gives byte order): smaller in
                // the binary than a `sort_by` instance, and maps are small.
                let mut entries: Vec<(String, &Value)> = Vec::with_capacity(m.len());
                for (k, v) in m.iter() {
                    let at = entries.partition_point(|(e, _)| natural(e, k).is_le());
                    entries.insert(at, (k.clone(), v));
                }
                self.mapping(&entries, ind, ctx);
            }
            Value::Pem(_) | Value::Secret(_) => {
                // yaml.v2 lower-cases Go's field names (ASCII here)
                let fields: Vec<(String, Value)> = v
                    .struct_fields()
                    .iter()
                    .map(|f| (f.to_ascii_lowercase(), v.struct_field(f)))
                    .collect();
                let entries: Vec<(String, &Value)> =
                    fields.iter().map(|(k, v)| (k.clone(), v)).collect();
                self.mapping(&entries, ind, ctx);
            }
            Value::List(l) if !l.is_empty() => {
                // yaml.v2 writes a sequence under a key at the key's own indent
                let (first, item_ind) = match ctx {
                    Ctx::Top => (false, 0),
                    Ctx::MapValue => (true, ind),
                    Ctx::SeqItem => (false, ind + 2),
                };
                for (i, x) in l.iter().enumerate() {
                    if i > 0 || first {
                        self.indent(item_ind);
                    } else if ctx == Ctx::SeqItem {
                        self.out.push(' ');
                    }
                    self.out.push('-');
                    self.node(x, item_ind, Ctx::SeqItem);
                }
            }
            Value::Map(_) => self.scalar_after(ctx, "{}"),
            Value::List(_) => self.scalar_after(ctx, "[]"),
            scalar => {
                if ctx != Ctx::Top {
                    self.out.push(' ');
                }
                self.scalar(scalar, ind);
            }
        }
    }

    fn scalar_after(&mut self, ctx: Ctx, s: &str) {
        if ctx != Ctx::Top {
            self.out.push(' ');
        }
        self.out.push_str(s);
    }

    fn mapping(&mut self, entries: &[(String, &Value)], ind: usize, ctx: Ctx) {
        let key_ind = match ctx {
            Ctx::Top => 0,
            Ctx::MapValue => ind + 2,
            Ctx::SeqItem => ind + 2,
        };
        for (i, (k, v)) in entries.iter().enumerate() {
            match (ctx, i) {
                (Ctx::Top, 0) => {}
                (Ctx::SeqItem, 0) => self.out.push(' '),
                _ => self.indent(key_ind),
            }
            self.string(k, key_ind, true);
            self.out.push(':');
            self.node(v, key_ind, Ctx::MapValue);
        }
    }

    fn scalar(&mut self, v: &Value, ind: usize) {
        match v {
            Value::Nil | Value::Scratch => self.out.push_str("null"),
            Value::Bool(b) => self.out.push_str(if *b { "true" } else { "false" }),
            Value::Int(i) => self.out.push_str(&i.to_string()),
            Value::Float(f) => self.out.push_str(&yaml_float(*f)),
            Value::Number(n) => {
                if let Ok(i) = n.parse::<i64>() {
                    self.out.push_str(&i.to_string());
                } else if let Some(f) = go_parse_float(n) {
                    self.out.push_str(&yaml_float(f));
                } else {
                    self.string(n, ind, false);
                }
            }
            Value::Str(s) => self.string(s, ind, false),
            Value::List(_) | Value::Map(_) | Value::Secret(_) | Value::Pem(_) => {}
        }
    }

    /// A string scalar: the style yaml.v2 picks, then libyaml's writer for it.
    fn string(&mut self, s: &str, ind: usize, key: bool) {
        let plain_ok = !resolves_to_non_string(s);
        let a = analyze(s);
        let style = if s.contains('\n') {
            if a.block_allowed && !key {
                Style::Literal
            } else {
                Style::Double
            }
        } else if plain_ok {
            if !a.plain_allowed || (s.is_empty() && key) {
                if a.single_allowed {
                    Style::Single
                } else {
                    Style::Double
                }
            } else {
                Style::Plain
            }
        } else {
            Style::Double
        };
        match style {
            Style::Plain => self.folded(s, ind, false),
            Style::Single => {
                self.out.push('\'');
                self.folded(&s.replace('\'', "''"), ind, true);
                self.out.push('\'');
            }
            Style::Double => self.double(s),
            Style::Literal => self.literal(s, ind),
        }
    }

    /// Plain or single-quoted text: a space past column 80 between two non-spaces breaks the line.
    fn folded(&mut self, s: &str, ind: usize, _quoted: bool) {
        let cs: Vec<char> = s.chars().collect();
        let mut prev_space = false;
        for (i, &c) in cs.iter().enumerate() {
            if c == ' '
                && !prev_space
                && column(&self.out) > 80
                && i + 1 < cs.len()
                && cs[i + 1] != ' '
                && i != 0
            {
                self.indent(ind + 2);
                prev_space = true;
                continue;
            }
            prev_space = c == ' ';
            push(&mut self.out, c);
        }
    }

    fn double(&mut self, s: &str) {
        self.out.push('"');
        for c in s.chars() {
            match c {
                '\0' => self.out.push_str("\\0"),
                '\u{7}' => self.out.push_str("\\a"),
                '\u{8}' => self.out.push_str("\\b"),
                '\t' => self.out.push_str("\\t"),
                '\n' => self.out.push_str("\\n"),
                '\u{b}' => self.out.push_str("\\v"),
                '\u{c}' => self.out.push_str("\\f"),
                '\r' => self.out.push_str("\\r"),
                '\u{1b}' => self.out.push_str("\\e"),
                '"' => self.out.push_str("\\\""),
                '\\' => self.out.push_str("\\\\"),
                '\u{85}' => self.out.push_str("\\N"),
                '\u{a0}' => self.out.push_str("\\_"),
                '\u{2028}' => self.out.push_str("\\L"),
                '\u{2029}' => self.out.push_str("\\P"),
                c if !printable(c) || c == '\u{feff}' => {
                    let u = c as u32;
                    if u <= 0xff {
                        self.out.push_str(&format!("\\x{u:02X}"));
                    } else if u <= 0xffff {
                        self.out.push_str(&format!("\\u{u:04X}"));
                    } else {
                        self.out.push_str(&format!("\\U{u:08X}"));
                    }
                }
                c => push(&mut self.out, c),
            }
        }
        self.out.push('"');
    }

    /// `|` block: chomping `-` (no final newline), none (one), `+` (more); `|2` when it starts
    /// with a space.
    fn literal(&mut self, s: &str, ind: usize) {
        self.out.push('|');
        if s.starts_with(' ') {
            self.out.push('2');
        }
        let trailing = s.len() - s.trim_end_matches('\n').len();
        match trailing {
            0 => self.out.push('-'),
            1 => {}
            _ => self.out.push('+'),
        }
        let body = if trailing == 1 { &s[..s.len() - 1] } else { s };
        for line in body.split('\n') {
            self.out.push('\n');
            if !line.is_empty() {
                self.out.push_str(&" ".repeat(ind + 2));
                self.out.push_str(line);
            }
        }
    }
}

enum Style {
    Plain,
    Single,
    Double,
    Literal,
}

/// libyaml's printable test (tab is not printable).
fn printable(c: char) -> bool {
    let u = c as u32;
    u == 0x0A
        || (0x20..=0x7E).contains(&u)
        || u == 0x85
        || (0xA0..=0xD7FF).contains(&u)
        || ((0xE000..=0xFFFD).contains(&u) && u != 0xFEFF)
        || (0x10000..=0x10FFFF).contains(&u)
}

struct Analysis {
    plain_allowed: bool,
    single_allowed: bool,
    block_allowed: bool,
}

/// libyaml's `yaml_emitter_analyze_scalar`, for the block context.
fn analyze(s: &str) -> Analysis {
    if s.is_empty() {
        return Analysis {
            plain_allowed: true,
            single_allowed: true,
            block_allowed: false,
        };
    }
    let cs: Vec<char> = s.chars().collect();
    let mut block_ind = s.starts_with("---") || s.starts_with("...");
    let (mut special, mut line_breaks) = (false, false);
    let (mut lead_space, mut lead_break, mut trail_space, mut trail_break) =
        (false, false, false, false);
    let (mut break_space, mut space_break) = (false, false);
    let (mut prev_space, mut prev_break) = (false, false);
    let blank = |i: usize| {
        cs.get(i)
            .is_none_or(|c| matches!(c, ' ' | '\t' | '\n' | '\r'))
    };
    for (i, &c) in cs.iter().enumerate() {
        if i == 0 {
            match c {
                '#' | ',' | '[' | ']' | '{' | '}' | '&' | '*' | '!' | '|' | '>' | '\'' | '"'
                | '%' | '@' | '`' => block_ind = true,
                '?' | ':' | '-' if blank(1) => block_ind = true,
                _ => {}
            }
        } else {
            match c {
                ':' if blank(i + 1) => block_ind = true,
                '#' if matches!(cs[i - 1], ' ' | '\t' | '\n' | '\r') => block_ind = true,
                _ => {}
            }
        }
        if !printable(c) || c == '\u{feff}' {
            special = true;
        }
        if c == ' ' {
            lead_space |= i == 0;
            trail_space |= i + 1 == cs.len();
            break_space |= prev_break;
            prev_space = true;
            prev_break = false;
        } else if c == '\n' || c == '\r' || c == '\u{85}' || c == '\u{2028}' || c == '\u{2029}' {
            line_breaks = true;
            lead_break |= i == 0;
            trail_break |= i + 1 == cs.len();
            space_break |= prev_space;
            prev_space = false;
            prev_break = true;
        } else {
            prev_space = false;
            prev_break = false;
        }
    }
    let mut a = Analysis {
        plain_allowed: !(lead_space || lead_break || trail_space || trail_break),
        single_allowed: true,
        block_allowed: !trail_space,
    };
    if break_space {
        a.plain_allowed = false;
        a.single_allowed = false;
    }
    if space_break || special {
        a.plain_allowed = false;
        a.single_allowed = false;
        a.block_allowed = false;
    }
    if line_breaks || block_ind {
        a.plain_allowed = false;
    }
    a
}

/// strconv's `ParseFloat` on text that is not an int (`1.5`, `1e3`); `None` otherwise.
fn go_parse_float(s: &str) -> Option<f64> {
    super::float::parse(s).filter(|f| f.is_finite())
}

fn yaml_float(f: f64) -> String {
    if f.is_nan() {
        ".nan".into()
    } else if f.is_infinite() {
        if f > 0.0 { ".inf" } else { "-.inf" }.into()
    } else {
        float(f)
    }
}

/// Whether yaml.v2's resolver reads `s`, unquoted, as something other than a string (null,
/// bool, int, float, YAML 1.1 words, sexagesimal floats), which makes the encoder quote it.
fn resolves_to_non_string(s: &str) -> bool {
    const WORDS: [&str; 39] = [
        "", "~", "null", "Null", "NULL", "y", "Y", "yes", "Yes", "YES", "on", "On", "ON", "n", "N",
        "no", "No", "NO", "off", "Off", "OFF", "true", "True", "TRUE", "false", "False", "FALSE",
        ".nan", ".NaN", ".NAN", ".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF", "-.inf",
        "-.Inf", "-.INF",
    ];
    if WORDS.contains(&s) || s == "<<" {
        return true;
    }
    // ASCII tests on bytes: no UTF-8 decoding loop per test (a non-ASCII char fails them alike)
    let first = s.as_bytes().first().copied().unwrap_or(b' ');
    if !(first.is_ascii_digit() || matches!(first, b'-' | b'+' | b'.')) {
        return false;
    }
    let digits = |t: &str| t.bytes().all(|c| c.is_ascii_digit());
    let plain = s.replace('_', "");
    let body = plain.trim_start_matches(['-', '+']);
    let prefixed = |p: &str, ok: fn(u8) -> bool| {
        body.strip_prefix(p)
            .is_some_and(|b| !b.is_empty() && b.bytes().all(ok))
    };
    // ints: decimal, 0b, 0o/0 octal, 0x hex (yaml.v2 uses strconv.ParseInt with base 0)
    let int = !body.is_empty()
        && (digits(body)
            || prefixed("0b", |c| c == b'0' || c == b'1')
            || prefixed("0x", |c| c.is_ascii_hexdigit())
            || prefixed("0o", |c| (b'0'..=b'7').contains(&c)));
    if int {
        return true;
    }
    // floats: yaml.v2's regexp ^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$
    let float = {
        let (mant, exp) = match body.find(['e', 'E']) {
            Some(p) => (&body[..p], Some(&body[p + 1..])),
            None => (body, None),
        };
        let mant_ok = match mant.split_once('.') {
            Some(("", frac)) => !frac.is_empty() && digits(frac),
            Some((int, frac)) => !int.is_empty() && digits(int) && digits(frac),
            None => !mant.is_empty() && digits(mant),
        };
        let exp_ok = exp.is_none_or(|e| {
            let d = e.trim_start_matches(['-', '+']);
            e.len() - d.len() <= 1 && !d.is_empty() && digits(d)
        });
        mant_ok && exp_ok
    };
    // yaml.v2 also quotes base-60 floats such as 1:20
    let base60 = s.contains(':')
        && s.split(':').enumerate().all(|(i, p)| {
            !p.is_empty()
                && p.trim_start_matches(['-', '+'])
                    .bytes()
                    .all(|c| c.is_ascii_digit() || c == b'_' || (c == b'.' && i > 0))
        });
    float || base60
}

/// yaml.v2's key order: letters after non-letters, digit runs compared as numbers.
fn natural(a: &str, b: &str) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    let (ar, br): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let less = |x: bool| if x { Ordering::Less } else { Ordering::Greater };
    for i in 0..ar.len().min(br.len()) {
        if ar[i] == br[i] {
            continue;
        }
        let (al, bl) = (ar[i].is_alphabetic(), br[i].is_alphabetic());
        if al && bl {
            return ar[i].cmp(&br[i]);
        }
        if al || bl {
            return less(bl);
        }
        let (mut an, mut bn) = (0i64, 0i64);
        if ar[i] == '0' || br[i] == '0' {
            let mut j = i;
            while j > 0 && ar[j - 1].is_ascii_digit() {
                j -= 1;
                if ar[j] != '0' {
                    an = 1;
                    bn = 1;
                    break;
                }
            }
        }
        let mut ai = i;
        while ai < ar.len() && ar[ai].is_ascii_digit() {
            an = an
                .wrapping_mul(10)
                .wrapping_add(i64::from(ar[ai] as u8 - b'0'));
            ai += 1;
        }
        let mut bi = i;
        while bi < br.len() && br[bi].is_ascii_digit() {
            bn = bn
                .wrapping_mul(10)
                .wrapping_add(i64::from(br[bi] as u8 - b'0'));
            bi += 1;
        }
        if an != bn {
            return less(an < bn);
        }
        if ai != bi {
            return less(ai < bi);
        }
        return ar[i].cmp(&br[i]);
    }
    ar.len().cmp(&br.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_what_the_real_agent_wrote() {
        // the body and the expected text come from `bao agent` 2.7.2 rendering toYAML
        let v = Value::from_json(
            r#"{"big":12345678901234567000,"colon":"a: b","e":1000,"empty":"","flag":true,
            "html":"<a&b>","k10":"x","k2":"y","lead":" sp","list":[1,"a",{"x":2}],
            "ml":"line1\nline2","neg":-0,"nested":{"a":1,"b":{"c":"d"}},"nul":null,
            "num_str":"8080","pi":3.1,"port":8080,"s":"yes"}"#,
            false,
        )
        .unwrap();
        assert_eq!(
            to_yaml(&v).unwrap(),
            "big: 1.2345678901234567e+19\ncolon: 'a: b'\ne: 1000\nempty: \"\"\nflag: true\n\
             html: <a&b>\nk2: \"y\"\nk10: x\nlead: ' sp'\nlist:\n- 1\n- a\n- x: 2\nml: |-\n  line1\n  line2\n\
             neg: 0\nnested:\n  a: 1\n  b:\n    c: d\nnul: null\nnum_str: \"8080\"\npi: 3.1\nport: 8080\ns: \"yes\""
        );
    }
}
