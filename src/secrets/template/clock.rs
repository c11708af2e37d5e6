//! Go's `time.Format` for `timestamp`, in UTC (consul-template formats `time.Now().UTC()`).

use std::time::{SystemTime, UNIX_EPOCH};

/// Go's `time.RFC3339` layout.
pub(crate) const RFC3339: &str = "2006-01-02T15:04:05Z07:00";

/// Seconds since the epoch (negative before it).
pub(crate) fn unix(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs_f64().ceil() as i64),
    }
}

/// Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const DAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];

/// Formats `t` (UTC) with a Go layout (`2006-01-02 15:04:05`, `Jan`, `Mon`, `MST`, `Z07:00`,
/// `.000`/`.999` fractions ...); unknown text is copied.
pub(crate) fn format(t: SystemTime, layout: &str) -> String {
    let (secs, nanos) = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => (d.as_secs() as i64, d.subsec_nanos()),
        Err(_) => (unix(t), 0),
    };
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, mo, d) = civil(days);
    let (h, mi, s) = (sod / 3600, sod % 3600 / 60, sod % 60);
    let wd = (days + 4).rem_euclid(7) as usize;
    let yday = days - days_before_year(y) + 1;
    let month = MONTHS[(mo - 1) as usize];
    let h12 = if h % 12 == 0 { 12 } else { h % 12 };
    let tokens: [(&str, String); 28] = [
        ("January", month.into()),
        ("Jan", month[..3].into()),
        ("Monday", DAYS[wd].into()),
        ("Mon", DAYS[wd][..3].into()),
        ("MST", "UTC".into()),
        ("2006", format!("{y:04}")),
        ("Z07:00:00", "Z".into()),
        ("-07:00:00", "+00:00:00".into()),
        ("Z07:00", "Z".into()),
        ("-07:00", "+00:00".into()),
        ("Z0700", "Z".into()),
        ("-0700", "+0000".into()),
        ("Z07", "Z".into()),
        ("-07", "+00".into()),
        ("002", format!("{yday:03}")),
        ("__2", format!("{yday:>3}")),
        ("01", format!("{mo:02}")),
        ("02", format!("{d:02}")),
        ("_2", format!("{d:>2}")),
        ("03", format!("{h12:02}")),
        ("04", format!("{mi:02}")),
        ("05", format!("{s:02}")),
        ("06", format!("{:02}", y.rem_euclid(100))),
        ("15", format!("{h:02}")),
        ("PM", if h >= 12 { "PM" } else { "AM" }.into()),
        ("pm", if h >= 12 { "pm" } else { "am" }.into()),
        ("1", mo.to_string()),
        ("2", d.to_string()),
    ];
    let mut out = String::new();
    let mut rest = layout;
    'outer: while !rest.is_empty() {
        if let Some(frac) = fraction(rest, nanos) {
            out.push_str(&frac.0);
            rest = &rest[frac.1..];
            continue;
        }
        for (tok, val) in &tokens {
            if rest.starts_with(tok) {
                out.push_str(val);
                rest = &rest[tok.len()..];
                continue 'outer;
            }
        }
        for (tok, val) in [
            ("3", h12.to_string()),
            ("4", mi.to_string()),
            ("5", s.to_string()),
        ] {
            if rest.starts_with(tok) {
                out.push_str(&val);
                rest = &rest[tok.len()..];
                continue 'outer;
            }
        }
        let c = rest.chars().next().unwrap_or(' ');
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

fn days_before_year(y: i64) -> i64 {
    // days from 1970-01-01 to y-01-01
    let y1 = y - 1;
    let leaps = |x: i64| x.div_euclid(4) - x.div_euclid(100) + x.div_euclid(400);
    (y - 1970) * 365 + leaps(y1) - leaps(1969)
}

/// `.000` (fixed) or `.999` (trailing zeros dropped) after a seconds field; (text, layout bytes).
fn fraction(rest: &str, nanos: u32) -> Option<(String, usize)> {
    let b = rest.as_bytes();
    if !matches!(b.first(), Some(b'.' | b',')) {
        return None;
    }
    let digit = *b.get(1)?;
    if digit != b'0' && digit != b'9' {
        return None;
    }
    let n = b[1..].iter().take_while(|&&c| c == digit).count();
    let digits = format!("{nanos:09}");
    let mut f = digits[..n.min(9)].to_string();
    if digit == b'9' {
        f = f.trim_end_matches('0').to_string();
        if f.is_empty() {
            return Some((String::new(), n + 1));
        }
    }
    Some((format!("{}{f}", b[0] as char), n + 1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn go_layouts_in_utc() {
        let t = UNIX_EPOCH + Duration::new(1_709_251_199, 120_000_000); // 2024-02-29T23:59:59.12Z
        assert_eq!(format(t, RFC3339), "2024-02-29T23:59:59Z");
        assert_eq!(
            format(t, "Mon Jan _2 03:04:05.000 PM MST 2006 (002) .999 -0700"),
            "Thu Feb 29 11:59:59.120 PM UTC 2024 (060) .12 +0000"
        );
        assert_eq!(format(UNIX_EPOCH, "2006-01-02 15:04"), "1970-01-01 00:00");
        assert_eq!(unix(t), 1_709_251_199);
    }
}
