//! Kubernetes resource quantities (`5m`, `0.5`, `16Mi`, `1e3`), checked so a bad annotation is
//! refused at admission with its name, not by the API server with a schema error.

/// Checks a non-negative quantity as the API server parses one; the error says what to write.
pub fn check_quantity(s: &str) -> Result<(), String> {
    let bad = || format!("{s:?} is not a Kubernetes quantity; write e.g. 5m, 0.5, 16Mi or 1Gi");
    let s = s.strip_prefix('+').unwrap_or(s);
    let digits_end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(digits_end);
    let mut parts = number.split('.');
    let whole = parts.next().unwrap_or("");
    let fraction = parts.next();
    if parts.next().is_some() || (whole.is_empty() && fraction.is_none_or(str::is_empty)) {
        return Err(bad());
    }
    let suffix_ok = match suffix {
        "" | "n" | "u" | "m" | "k" | "M" | "G" | "T" | "P" | "E" => true,
        "Ki" | "Mi" | "Gi" | "Ti" | "Pi" | "Ei" => true,
        _ => match suffix.strip_prefix(['e', 'E']) {
            Some(exp) => {
                let exp = exp.strip_prefix(['+', '-']).unwrap_or(exp);
                !exp.is_empty() && exp.chars().all(|c| c.is_ascii_digit())
            }
            None => false,
        },
    };
    if suffix_ok {
        Ok(())
    } else {
        Err(bad())
    }
}

#[cfg(test)]
mod tests {
    use super::check_quantity;

    #[test]
    fn quantities_as_the_api_server_takes_them() {
        for ok in [
            "5m", "0.5", ".5", "1.", "16Mi", "1Gi", "100", "+1", "1e3", "2E-2", "250u",
        ] {
            assert_eq!(check_quantity(ok), Ok(()), "{ok}");
        }
        for bad in [
            "", "-1", "lots", "5 m", "1.2.3", "16MB", "1e", "Mi", ".", "1ki",
        ] {
            let err = check_quantity(bad).unwrap_err();
            assert!(err.contains("not a Kubernetes quantity"), "{bad}: {err}");
        }
    }
}
