//! Values printed as Go's `fmt` prints them: `%v`, `Sprint`, `Sprintln`, and `Sprintf` with
//! flags, width, precision and Go's `%!verb(type=value)` forms for mismatches.

use super::value::push;
use super::value::Value;

/// Digits and the decimal point position of `f` (`0.d1d2... x 10^dp`), rounded to `sig`
/// significant digits (`None`: shortest), trailing zeros removed, as strconv's decimal.
fn digits(f: f64, sig: Option<usize>) -> (String, i32) {
    let s = match sig {
        Some(p) => format!("{:.*e}", p.max(1) - 1, f.abs()),
        None => format!("{:e}", f.abs()),
    };
    let (m, e) = split_exp(&s);
    // `m` is the digits and maybe a point (of `f.abs()`: no sign)
    let d = m.replace('.', "");
    let d = d.trim_end_matches('0').to_string();
    if d.is_empty() {
        return ("0".into(), 1);
    }
    (d, e + 1)
}

/// Rust's `{:e}` text split into mantissa and exponent (`1.5e-7` -> `("1.5", -7)`); one copy
/// of the `i32` parsing for both callers.
#[inline(never)]
pub(crate) fn split_exp(s: &str) -> (&str, i32) {
    let (m, e) = s.split_once('e').unwrap_or((s, "0"));
    (m, e.parse().unwrap_or(0))
}

fn exp_suffix(out: &mut String, e: i32, upper: bool) {
    out.push(if upper { 'E' } else { 'e' });
    out.push(if e < 0 { '-' } else { '+' });
    out.push_str(&format!("{:02}", e.abs()));
}

/// strconv's `%e` with `prec` digits after the point from (digits, dp).
fn fmt_e(d: &str, dp: i32, prec: usize, upper: bool) -> String {
    let mut out = String::new();
    // `d` is ASCII digits
    out.push_str(d.get(..1).unwrap_or("0"));
    if prec > 0 {
        out.push('.');
        let rest = d.get(1..).unwrap_or("");
        out.push_str(&format!("{rest:0<prec$}"));
    }
    let e = if d == "0" { 0 } else { dp - 1 };
    exp_suffix(&mut out, e, upper);
    out
}

/// strconv's `%f` with `prec` digits after the point from (digits, dp).
fn fmt_f(d: &str, dp: i32, prec: usize) -> String {
    let mut out = String::new();
    if dp > 0 {
        let n = dp as usize;
        out.push_str(&format!("{:0<n$}", &d[..n.min(d.len())]));
    } else {
        out.push('0');
    }
    if prec > 0 {
        out.push('.');
        for i in 0..prec {
            let k = dp + i as i32;
            let c = if k >= 0 && (k as usize) < d.len() {
                d.as_bytes()[k as usize] as char
            } else {
                '0'
            };
            push(&mut out, c);
        }
    }
    out
}

/// Go's float formatting for verb `e E f F g G` (`prec` None = default/shortest), no sign.
fn float_abs(f: f64, verb: char, prec: Option<usize>) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return "Inf".into();
    }
    let upper = verb.is_ascii_uppercase();
    match verb {
        'e' | 'E' => {
            let p = prec.unwrap_or(6);
            let (d, dp) = digits(f, Some(p + 1));
            fmt_e(&d, dp, p, upper)
        }
        'f' | 'F' => format!("{:.*}", prec.unwrap_or(6), f.abs()),
        _ => {
            let (d, dp) = digits(f, prec.map(|p| p.max(1)));
            let shortest = prec.is_none();
            let mut eprec = prec.map_or(6, |p| p.max(1)) as i32;
            if !shortest && eprec > d.len() as i32 && d.len() as i32 >= dp {
                eprec = d.len() as i32;
            }
            if shortest {
                eprec = 6;
            }
            let exp = dp - 1;
            if exp < -4 || exp >= eprec {
                return fmt_e(&d, dp, d.len() - 1, upper);
            }
            fmt_f(&d, dp, (d.len() as i32 - dp).max(0) as usize)
        }
    }
}

/// Go's `%v` of a float64.
pub(crate) fn float(f: f64) -> String {
    let s = float_abs(f, 'g', None);
    if f.is_sign_negative() && !f.is_nan() {
        format!("-{s}")
    } else if f.is_infinite() {
        format!("+{s}")
    } else {
        s
    }
}

/// Go's `%v`: `<nil>`, `[a b]`, `map[k:v]` with sorted keys, `&{...}` for a secret.
pub(crate) fn value(v: &Value) -> String {
    format_one(v, &Spec::default(), 'v')
}

/// Go's `fmt.Sprint`: a space between operands when neither is a string.
pub(crate) fn sprint(args: &[Value]) -> String {
    let mut out = String::new();
    for (i, a) in args.iter().enumerate() {
        if i > 0 && !is_string(a) && !is_string(&args[i - 1]) {
            out.push(' ');
        }
        out.push_str(&value(a));
    }
    out
}

/// Go's test is on the kind: a `json.Number` is a string too.
fn is_string(v: &Value) -> bool {
    matches!(v, Value::Str(_) | Value::Number(_))
}

/// Go's `fmt.Sprintln`: spaces always, and a newline.
pub(crate) fn sprintln(args: &[Value]) -> String {
    let mut out = String::new();
    for (i, a) in args.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(&value(a));
    }
    out.push('\n');
    out
}

/// Flags, width and precision of one verb.
#[derive(Default, Clone)]
struct Spec {
    minus: bool,
    plus: bool,
    sharp: bool,
    space: bool,
    zero: bool,
    width: Option<usize>,
    prec: Option<usize>,
}

impl Spec {
    fn pad(&self, s: String, numeric: bool) -> String {
        let Some(w) = self.width else { return s };
        let n = s.chars().count();
        if n >= w {
            return s;
        }
        let fill = w - n;
        if self.minus {
            return format!("{s}{}", " ".repeat(fill));
        }
        if self.zero && numeric {
            // zeros go after the sign
            let (sign, rest) = match s.chars().next() {
                Some(c @ ('+' | '-' | ' ')) => (c.to_string(), s[1..].to_string()),
                _ => (String::new(), s),
            };
            return format!("{sign}{}{rest}", "0".repeat(fill));
        }
        format!("{}{s}", " ".repeat(fill))
    }

    fn sign(&self, neg: bool, s: String) -> String {
        if neg {
            format!("-{s}")
        } else if self.plus {
            format!("+{s}")
        } else if self.space {
            format!(" {s}")
        } else {
            s
        }
    }
}

/// Go's `strconv.Quote` (ASCII-printable kept, others escaped as Go does for non-printables).
fn quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c if c.is_control() => {
                if (c as u32) < 0x10000 {
                    out.push_str(&format!("\\u{:04x}", c as u32))
                } else {
                    out.push_str(&format!("\\U{:08x}", c as u32))
                }
            }
            c => push(&mut out, c),
        }
    }
    out.push('"');
    out
}

fn int_verb(i: i64, spec: &Spec, verb: char) -> Option<String> {
    let a = i.unsigned_abs();
    let body = match verb {
        'd' | 'v' => a.to_string(),
        'b' => format!("{a:b}"),
        'o' => {
            let s = format!("{a:o}");
            if spec.sharp {
                format!("0{s}")
            } else {
                s
            }
        }
        'O' => format!("0o{a:o}"),
        'x' => {
            let s = format!("{a:x}");
            if spec.sharp {
                format!("0x{s}")
            } else {
                s
            }
        }
        'X' => {
            let s = format!("{a:X}");
            if spec.sharp {
                format!("0X{s}")
            } else {
                s
            }
        }
        'c' => return Some(char_of(i).to_string()),
        'q' => return Some(format!("'{}'", char_of(i))),
        'U' => return Some(format!("U+{:04X}", a)),
        _ => return None,
    };
    let body = match spec.prec {
        Some(p) if body.len() < p => format!("{}{body}", "0".repeat(p - body.len())),
        _ => body,
    };
    Some(spec.sign(i < 0, body))
}

fn char_of(i: i64) -> char {
    u32::try_from(i)
        .ok()
        .and_then(char::from_u32)
        .unwrap_or('\u{FFFD}')
}

/// Two hex digits per byte (`%x` of a string, `sha256Hex`): one loop, not a `format!` per byte.
pub(crate) fn hex(bytes: &[u8], upper: bool) -> String {
    let digits = if upper {
        b"0123456789ABCDEF"
    } else {
        b"0123456789abcdef"
    };
    let mut out = String::with_capacity(2 * bytes.len());
    for b in bytes {
        out.push(char::from(digits[usize::from(b >> 4)]));
        out.push(char::from(digits[usize::from(b & 15)]));
    }
    out
}

fn str_verb(s: &str, spec: &Spec, verb: char) -> Option<String> {
    let s: String = match spec.prec {
        Some(p) => s.chars().take(p).collect(),
        None => s.to_string(),
    };
    Some(match verb {
        'v' | 's' => s,
        'q' => quote(&s),
        'x' | 'X' => hex(s.as_bytes(), verb == 'X'),
        _ => return None,
    })
}

/// One operand under one verb (no padding for composites: Go pads each element).
fn format_one(v: &Value, spec: &Spec, verb: char) -> String {
    if verb == 'T' {
        return spec.pad(v.type_name().to_string(), false);
    }
    let prim = |s: Option<String>, numeric: bool| match s {
        Some(s) => spec.pad(s, numeric),
        None => bad_verb(v, spec, verb),
    };
    match v {
        Value::Nil => match verb {
            'v' => spec.pad("<nil>".into(), false),
            _ => bad_verb(v, spec, verb),
        },
        Value::Bool(b) => prim(matches!(verb, 'v' | 't').then(|| b.to_string()), false),
        Value::Int(i) => prim(int_verb(*i, spec, verb), true),
        Value::Float(f) => {
            let s = match verb {
                'v' | 'g' | 'G' | 'e' | 'E' | 'f' | 'F' => {
                    let vb = if verb == 'v' { 'g' } else { verb };
                    let s = float_abs(*f, vb, spec.prec);
                    let neg = f.is_sign_negative() && !f.is_nan();
                    let s = spec.sign(neg, s);
                    if f.is_infinite() && !neg && !spec.plus && !spec.space {
                        Some(format!("+{s}"))
                    } else {
                        Some(s)
                    }
                }
                _ => None,
            };
            prim(s, true)
        }
        Value::Number(s) | Value::Str(s) => prim(str_verb(s, spec, verb), false),
        // composites written in place: no list of parts per kind, joined after
        Value::List(l) => {
            let mut out = String::from("[");
            for (i, x) in l.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                out.push_str(&format_one(x, spec, verb));
            }
            out.push(']');
            out
        }
        Value::Map(m) => {
            let mut out = String::from("map[");
            for (i, (k, x)) in m.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                out.push_str(&format_one(&Value::Str(k.clone()), spec, verb));
                out.push(':');
                out.push_str(&format_one(x, spec, verb));
            }
            out.push(']');
            out
        }
        // Go prints a struct pointer `&{...}`, a struct `{...}`
        Value::Secret(_) | Value::Pem(_) => {
            let mut out = String::from(if matches!(v, Value::Secret(_)) {
                "&{"
            } else {
                "{"
            });
            for (i, f) in v.struct_fields().iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                out.push_str(&format_one(&v.struct_field(f), spec, verb));
            }
            out.push('}');
            out
        }
        Value::Scratch => "&{{0 0} {0 0} 0 0 {} {}} map[]}".into(),
    }
}

/// Go's `%!verb(type=value)`, the value printed with `%v` under the same flags.
fn bad_verb(v: &Value, spec: &Spec, verb: char) -> String {
    match v {
        Value::Nil => format!("%!{verb}(<nil>)"),
        _ => format!("%!{verb}({}={})", v.type_name(), format_one(v, spec, 'v')),
    }
}

/// Go's `fmt.Sprintf`.
pub(crate) fn sprintf(format: &str, args: &[Value]) -> String {
    let mut out = String::new();
    let mut used = 0;
    let f: Vec<char> = format.chars().collect();
    let mut i = 0;
    while i < f.len() {
        if f[i] != '%' {
            push(&mut out, f[i]);
            i += 1;
            continue;
        }
        i += 1;
        let mut spec = Spec::default();
        while i < f.len() {
            match f[i] {
                '-' => spec.minus = true,
                '+' => spec.plus = true,
                '#' => spec.sharp = true,
                ' ' => spec.space = true,
                '0' => spec.zero = !spec.minus,
                _ => break,
            }
            i += 1;
        }
        spec.width = number(&f, &mut i, args, &mut used, &mut out, "WIDTH");
        if f.get(i) == Some(&'.') {
            i += 1;
            spec.prec = Some(number(&f, &mut i, args, &mut used, &mut out, "PREC").unwrap_or(0));
        }
        let Some(&verb) = f.get(i) else {
            out.push_str("%!(NOVERB)");
            break;
        };
        i += 1;
        if verb == '%' {
            out.push('%');
            continue;
        }
        let Some(a) = args.get(used) else {
            out.push_str(&format!("%!{verb}(MISSING)"));
            continue;
        };
        used += 1;
        out.push_str(&format_one(a, &spec, verb));
    }
    if used < args.len() {
        out.push_str("%!(EXTRA ");
        let extra: Vec<String> = args[used..]
            .iter()
            .map(|a| match a {
                Value::Nil => "<nil>".to_string(),
                _ => format!("{}={}", a.type_name(), value(a)),
            })
            .collect();
        out.push_str(&extra.join(", "));
        out.push(')');
    }
    out
}

/// A width or precision: digits, or `*` taking an int argument.
fn number(
    f: &[char],
    i: &mut usize,
    args: &[Value],
    used: &mut usize,
    out: &mut String,
    what: &str,
) -> Option<usize> {
    if f.get(*i) == Some(&'*') {
        *i += 1;
        let a = args.get(*used);
        *used += 1;
        return match a {
            Some(Value::Int(n)) if *n >= 0 => usize::try_from(*n).ok(),
            _ => {
                out.push_str(&format!("%!(BAD{what})"));
                None
            }
        };
    }
    let start = *i;
    while f.get(*i).is_some_and(char::is_ascii_digit) {
        *i += 1;
    }
    if *i == start {
        return None;
    }
    // as `str::parse::<usize>`: None on overflow
    f[start..*i].iter().try_fold(0usize, |n, c| {
        n.checked_mul(10)?.checked_add(c.to_digit(10)? as usize)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(f: &str, a: &[Value]) -> String {
        sprintf(f, a)
    }

    #[test]
    fn verbs_flags_width_precision() {
        let n = Value::Number("8080".into());
        assert_eq!(p("%d", std::slice::from_ref(&n)), "%!d(json.Number=8080)");
        assert_eq!(
            p("%5.1f", &[Value::Number("3.1".into())]),
            "%!f(json.Number=    3)"
        );
        assert_eq!(
            p("%x|%q|%T", &["yes".into(), "yes".into(), n]),
            "796573|\"yes\"|json.Number"
        );
        assert_eq!(p("%s %s", &[Value::Int(1)]), "%!s(int=1) %!s(MISSING)");
        assert_eq!(
            p("%d", &[Value::Int(1), Value::Int(2), "x".into()]),
            "1%!(EXTRA int=2, string=x)"
        );
        assert_eq!(
            p(
                "%05d|%-4d|%+d|%x|%#o",
                &[
                    Value::Int(-42),
                    Value::Int(7),
                    Value::Int(3),
                    Value::Int(255),
                    Value::Int(8)
                ]
            ),
            "-0042|7   |+3|ff|010"
        );
        assert_eq!(
            p(
                "%.2f|%8.3e|%g|%G",
                &[
                    Value::Float(2.71628),
                    Value::Float(1234.5),
                    Value::Float(1e21),
                    Value::Float(1e-7)
                ]
            ),
            "2.72|1.234e+03|1e+21|1E-07"
        );
        assert_eq!(
            p(
                "%.3g|%g|%v",
                &[
                    Value::Float(1234.5678),
                    Value::Float(100000.0),
                    Value::Float(1e6)
                ]
            ),
            "1.23e+03|100000|1e+06"
        );
        assert_eq!(
            p("%6.2s|%-3s|", &["abcdef".into(), "a".into()]),
            "    ab|a  |"
        );
        assert_eq!(
            p("%s|%d|%v", &[Value::Nil, Value::Nil, Value::Nil]),
            "%!s(<nil>)|%!d(<nil>)|<nil>"
        );
        assert_eq!(
            p("%d", &[Value::list(vec![Value::Int(1), "a".into()])]),
            "[1 %!d(string=a)]"
        );
        assert_eq!(
            p(
                "%*d|%t|100%%",
                &[Value::Int(4), Value::Int(7), Value::Bool(true)]
            ),
            "   7|true|100%"
        );
        assert_eq!(p("%z", &[Value::Bool(true)]), "%!z(bool=true)");
        assert_eq!(p("%", &[]), "%!(NOVERB)");
    }

    #[test]
    fn floats_print_as_go_v() {
        for (f, s) in [
            (1e21, "1e+21"),
            (1234567.0, "1.234567e+06"),
            (123456.0, "123456"),
            (1e-5, "1e-05"),
            (0.0001, "0.0001"),
            (-2.5, "-2.5"),
            (0.0, "0"),
            (3.0, "3"),
        ] {
            assert_eq!(float(f), s, "{f}");
        }
    }
}
