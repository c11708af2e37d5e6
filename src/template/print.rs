//! Values printed as Go's `fmt` prints them (`%v`), and Go's `fmt.Sprint`/`Sprintln`.

use serde_json::{Number, Value};

/// Go's `%v` of a float64 (strconv `g`, shortest): `%e` form when the exponent is < -4 or >= 6.
pub(crate) fn float(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "+Inf" } else { "-Inf" }.into();
    }
    let e = format!("{f:e}");
    let (mant, exp) = e.split_once('e').unwrap_or((&e, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if (-4..6).contains(&exp) {
        return format!("{f}");
    }
    let sign = if exp < 0 { '-' } else { '+' };
    format!("{mant}e{sign}{:02}", exp.abs())
}

fn number(n: &Number) -> String {
    match n.as_f64() {
        Some(f) if !n.is_i64() && !n.is_u64() => float(f),
        _ => n.to_string(),
    }
}

/// Go's `%v` of a JSON value: `<nil>`, `[a b]`, `map[k:v]` with sorted keys.
pub(crate) fn value(v: &Value) -> String {
    match v {
        Value::Null => "<nil>".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => number(n),
        Value::String(s) => s.clone(),
        Value::Array(a) => {
            let parts: Vec<String> = a.iter().map(value).collect();
            format!("[{}]", parts.join(" "))
        }
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let parts: Vec<String> = keys
                .iter()
                .map(|k| format!("{k}:{}", value(&m[*k])))
                .collect();
            format!("map[{}]", parts.join(" "))
        }
    }
}

/// Go's `fmt.Sprint`: a space between operands when neither is a string.
pub(crate) fn sprint(args: &[Value]) -> String {
    let mut out = String::new();
    for (i, a) in args.iter().enumerate() {
        if i > 0 && !a.is_string() && !args[i - 1].is_string() {
            out.push(' ');
        }
        out.push_str(&value(a));
    }
    out
}

/// Go's `fmt.Sprintln`: spaces always, and a newline.
pub(crate) fn sprintln(args: &[Value]) -> String {
    let parts: Vec<String> = args.iter().map(value).collect();
    format!("{}\n", parts.join(" "))
}

/// Go's `fmt.Sprintf` for the verbs `%v %s %d %q %t %%` without flags (others print `%!c(BADVERB)`;
/// extra arguments are not yet reported as Go's `%!(EXTRA ...)`).
pub(crate) fn sprintf(format: &str, args: &[Value]) -> String {
    let mut out = String::new();
    let mut it = args.iter();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let Some(verb) = chars.next() else {
            out.push_str("%!(NOVERB)");
            break;
        };
        if verb == '%' {
            out.push('%');
            continue;
        }
        let Some(a) = it.next() else {
            out.push_str(&format!("%!{verb}(MISSING)"));
            continue;
        };
        match verb {
            'v' | 's' | 'd' | 't' => out.push_str(&value(a)),
            'q' => out.push_str(&serde_json::to_string(&value(a)).unwrap_or_default()),
            _ => out.push_str(&format!("%!{verb}(BADVERB)")),
        }
    }
    out
}
