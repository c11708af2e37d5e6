//! Go's `time.Format` for `timestamp`, in UTC (consul-template formats `time.Now().UTC()`).

use std::fmt::Write as _;
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
    let mut out = String::new();
    let mut rest = layout;
    while !rest.is_empty() {
        if let Some(frac) = fraction(rest, nanos) {
            out.push_str(&frac.0);
            rest = &rest[frac.1..];
            continue;
        }
        let Some(i) = TOKENS.iter().position(|tok| rest.starts_with(tok)) else {
            let c = rest.chars().next().unwrap_or(' ');
            super::value::push(&mut out, c);
            rest = &rest[c.len_utf8()..];
            continue;
        };
        rest = &rest[TOKENS[i].len()..];
        // Each value is written only when its token is met (a table of every value, formatted
        // up front, cost several KB of binary); writing to a String cannot fail.
        let _ = match i {
            0 => write!(out, "{month}"),
            1 => write!(out, "{}", &month[..3]),
            2 => write!(out, "{}", DAYS[wd]),
            3 => write!(out, "{}", &DAYS[wd][..3]),
            4 => write!(out, "UTC"),
            5 => write!(out, "{y:04}"),
            6 | 8 | 10 | 12 => write!(out, "Z"),
            7 => write!(out, "+00:00:00"),
            9 => write!(out, "+00:00"),
            11 => write!(out, "+0000"),
            13 => write!(out, "+00"),
            14 => write!(out, "{yday:03}"),
            15 => write!(out, "{yday:>3}"),
            16 => write!(out, "{mo:02}"),
            17 => write!(out, "{d:02}"),
            18 => write!(out, "{d:>2}"),
            19 => write!(out, "{h12:02}"),
            20 => write!(out, "{mi:02}"),
            21 => write!(out, "{s:02}"),
            22 => write!(out, "{:02}", y.rem_euclid(100)),
            23 => write!(out, "{h:02}"),
            24 => write!(out, "{}", if h >= 12 { "PM" } else { "AM" }),
            25 => write!(out, "{}", if h >= 12 { "pm" } else { "am" }),
            26 => write!(out, "{mo}"),
            27 => write!(out, "{d}"),
            28 => write!(out, "{h12}"),
            29 => write!(out, "{mi}"),
            _ => write!(out, "{s}"),
        };
    }
    out
}

/// Go's layout tokens, longest first where one is a prefix of another (the order they are
/// tried in); [`format`] writes each one's value by its index.
const TOKENS: [&str; 31] = [
    "January",
    "Jan",
    "Monday",
    "Mon",
    "MST",
    "2006",
    "Z07:00:00",
    "-07:00:00",
    "Z07:00",
    "-07:00",
    "Z0700",
    "-0700",
    "Z07",
    "-07",
    "002",
    "__2",
    "01",
    "02",
    "_2",
    "03",
    "04",
    "05",
    "06",
    "15",
    "PM",
    "pm",
    "1",
    "2",
    "3",
    "4",
    "5",
];

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
