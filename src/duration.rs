//! Durations as people write them (`500ms`, `1h30m`, a number of seconds) and as Vault prints
//! them (`1h2m3s`): parsing for settings, formatting for logs.

use std::time::Duration;

/// How to write a duration, for error messages.
pub const DURATION_HINT: &str = "use e.g. 500ms, 30s, 5m, 1h or a number of seconds";

/// The longest duration a setting may take (10 years): larger values would overflow deadlines.
pub const MAX_DURATION: Duration = Duration::from_secs(10 * 365 * 24 * 60 * 60);

/// Parses `500ms`, `30s`, `5m`, `1h`, Go-style combinations like `1h30m` or `1.5s`, or a number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    const NANOS: [(&str, u128); 4] = [
        ("ms", 1_000_000),
        ("s", 1_000_000_000),
        ("m", 60_000_000_000),
        ("h", 3_600_000_000_000),
    ];
    let t = s.trim();
    let junk = || format!("{s:?} is not a duration ({DURATION_HINT})");
    let too_long = || {
        format!(
            "{s:?} is too long; the most is 10 years ({})",
            human(MAX_DURATION)
        )
    };
    if t.is_empty() {
        return Err(format!("the duration is empty; {DURATION_HINT}"));
    }
    if t.starts_with('-') {
        return Err(format!("{s:?} is negative; {DURATION_HINT}"));
    }
    let max = MAX_DURATION.as_nanos();
    let mut total: u128 = 0;
    if t.bytes().all(|b| b.is_ascii_digit()) {
        total = digits_value(t)
            .and_then(|secs| secs.checked_mul(1_000_000_000))
            .ok_or_else(too_long)?;
    } else {
        let mut rest = t;
        while !rest.is_empty() {
            let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
            let (int, after) = rest.split_at(int_len);
            let (frac, after) = match after.strip_prefix('.') {
                Some(after) => {
                    let frac_len = after.bytes().take_while(u8::is_ascii_digit).count();
                    after.split_at(frac_len)
                }
                None => ("", after),
            };
            if int.is_empty() && frac.is_empty() {
                return Err(junk());
            }
            let unit_len = after.bytes().take_while(u8::is_ascii_alphabetic).count();
            let (unit, after) = after.split_at(unit_len);
            let scale = NANOS
                .iter()
                .find(|(name, _)| *name == unit)
                .map(|(_, n)| *n)
                .ok_or_else(junk)?;
            let whole = digits_value(int)
                .and_then(|v| v.checked_mul(scale))
                .ok_or_else(too_long)?;
            // Past 18 digits a fraction cannot change the result by a nanosecond, even in hours.
            let frac = &frac[..frac.len().min(18)];
            let part = match digits_value(frac) {
                Some(f) if !frac.is_empty() => f * scale / 10u128.pow(frac.len() as u32),
                _ => 0,
            };
            total = total
                .checked_add(whole)
                .and_then(|v| v.checked_add(part))
                .ok_or_else(too_long)?;
            if total > max {
                return Err(too_long());
            }
            rest = after;
        }
    }
    if total > max {
        return Err(too_long());
    }
    // The cap keeps the value far inside u64 seconds.
    let secs = (total / 1_000_000_000) as u64;
    let nanos = (total % 1_000_000_000) as u32;
    Ok(Duration::new(secs, nanos))
}

/// The value of a string of ASCII digits; `None` on overflow; 0 for "".
fn digits_value(digits: &str) -> Option<u128> {
    digits.bytes().try_fold(0u128, |acc, b| {
        acc.checked_mul(10)?.checked_add(u128::from(b - b'0'))
    })
}

/// Go-style exact duration, for settings: 1h2m3s, 4m0s, 1.5s, 250ms, 0s
pub fn human(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".to_string();
    }
    if nanos < 1_000 {
        return format!("{nanos}ns");
    }
    if nanos < 1_000_000 {
        return format!("{}µs", decimal(nanos, 3));
    }
    if nanos < 1_000_000_000 {
        return format!("{}ms", decimal(nanos, 6));
    }
    let secs = decimal(nanos % 60_000_000_000, 9);
    let minutes = nanos / 60_000_000_000;
    if minutes == 0 {
        return format!("{secs}s");
    }
    let hours = minutes / 60;
    if hours == 0 {
        return format!("{minutes}m{secs}s");
    }
    format!("{hours}h{}m{secs}s", minutes % 60)
}

/// A duration as a person reads it in a log line: rounded to whole milliseconds below a second,
/// to a tenth of a second below a minute, and to whole seconds above (`250ms`, `1.7s`, `3m0s`).
/// Settings keep [`human`]'s exact form; waits and elapsed times do not need nanoseconds.
pub fn brief(d: Duration) -> String {
    let nanos = d.as_nanos();
    let unit: u128 = match nanos {
        0..=999_999 => return human(d),
        1_000_000..=999_999_999 => 1_000_000,
        1_000_000_000..=59_999_999_999 => 100_000_000,
        _ => 1_000_000_000,
    };
    let rounded = (nanos + unit / 2) / unit * unit;
    let clamped = u64::try_from(rounded / 1_000_000_000).unwrap_or(u64::MAX);
    human(Duration::new(clamped, (rounded % 1_000_000_000) as u32))
}

/// `value / 10^places` with trailing fractional zeros (and a bare '.') removed.
fn decimal(value: u128, places: u32) -> String {
    let scale = 10u128.pow(places);
    let (int, frac) = (value / scale, value % scale);
    if frac == 0 {
        return int.to_string();
    }
    let frac = format!("{frac:0width$}", width = places as usize);
    format!("{int}.{}", frac.trim_end_matches('0'))
}

// Civil dates, for timestamps that name a day (a certificate's validity, a published
// generation's directory name).

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date (year, month, day) of `days` since 1970-01-01.
pub fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn brief_durations_round_for_reading() {
        let ms = Duration::from_millis;
        for (d, want) in [
            (Duration::ZERO, "0s"),
            (Duration::from_micros(1500), "2ms"),
            (ms(250), "250ms"),
            (Duration::from_nanos(250_400_000), "250ms"),
            (Duration::from_nanos(1_690_066_929), "1.7s"),
            (Duration::from_nanos(3_001_187_645), "3s"),
            (Duration::from_nanos(59_960_000_000), "1m0s"),
            (Duration::from_secs(180), "3m0s"),
            (ms(185_600), "3m6s"),
            (Duration::from_secs(3723), "1h2m3s"),
            (Duration::from_nanos(800), "800ns"),
        ] {
            assert_eq!(brief(d), want, "{d:?}");
        }
        // Never panics at the extremes.
        assert!(brief(Duration::MAX).ends_with('s'));
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// A problem reads as one lowercase line without a trailing period.
    fn check_problem(problem: &str) {
        assert!(!problem.contains('\n'), "multi-line problem: {problem}");
        assert!(!problem.ends_with('.'), "trailing period: {problem}");
    }

    #[test]
    fn durations() {
        for (input, want) in [
            ("500ms", ms(500)),
            ("30s", secs(30)),
            ("5m", secs(300)),
            ("1h", secs(3600)),
            ("1h30m", secs(5400)),
            ("1m30s", secs(90)),
            ("1h2m3s", secs(3723)),
            ("1s500ms", ms(1500)),
            ("1.5s", ms(1500)),
            ("1.5h", secs(5400)),
            (".5s", ms(500)),
            ("90", secs(90)),
            ("0", secs(0)),
            ("0s", secs(0)),
            ("007", secs(7)),
            (" 30s ", secs(30)),
            ("4m0s", secs(240)),
            ("87600h", MAX_DURATION),
            ("315360000", MAX_DURATION),
            ("0.0000000001s", secs(0)),
        ] {
            assert_eq!(parse_duration(input), Ok(want), "{input}");
        }
    }

    #[test]
    fn bad_durations() {
        for input in [
            "5x", "1d", "abc", "s", "1h30", "30 s", "1.s.", "5ns", "1e3s", "+5s", ".", "1hh", "ms",
            "٣s",
        ] {
            let e = parse_duration(input).unwrap_err();
            assert_eq!(
                e,
                format!("{input:?} is not a duration ({DURATION_HINT})"),
                "{input}"
            );
            check_problem(&e);
        }
        assert!(parse_duration("5x")
            .unwrap_err()
            .starts_with("\"5x\" is not a duration (use e.g. 500ms"));
        for input in ["-1s", "-5", " -1m"] {
            let e = parse_duration(input).unwrap_err();
            assert!(e.contains("negative"), "{input}: {e}");
        }
        for input in ["", "  "] {
            assert!(parse_duration(input).unwrap_err().contains("empty"));
        }
        for input in [
            "87601h",
            "315360001",
            "87600h1ms",
            "999999999999999999999999999999999999999999999",
            "99999999999999999999999999999h",
            "5256000m1s",
        ] {
            let e = parse_duration(input).unwrap_err();
            assert!(e.contains("too long"), "{input}: {e}");
        }
    }

    #[test]
    fn human_durations() {
        for (d, want) in [
            (Duration::ZERO, "0s"),
            (Duration::from_nanos(1), "1ns"),
            (Duration::from_nanos(1500), "1.5µs"),
            (ms(250), "250ms"),
            (Duration::from_micros(1500), "1.5ms"),
            (secs(1), "1s"),
            (ms(1500), "1.5s"),
            (secs(59), "59s"),
            (secs(60), "1m0s"),
            (secs(90), "1m30s"),
            (secs(240), "4m0s"),
            (secs(3600), "1h0m0s"),
            (secs(3723), "1h2m3s"),
            (ms(3_723_500), "1h2m3.5s"),
            (secs(100 * 3600), "100h0m0s"),
            (Duration::new(1, 1), "1.000000001s"),
        ] {
            assert_eq!(human(d), want, "{d:?}");
        }
        // Round trip through the parser.
        for text in ["1h2m3s", "4m0s", "1.5s", "250ms", "0s", "87600h0m0s"] {
            assert_eq!(human(parse_duration(text).unwrap()), text);
        }
        // Durations beyond what the parser accepts still format.
        assert_eq!(human(Duration::MAX), "5124095576030431h0m15.999999999s");
    }
}
