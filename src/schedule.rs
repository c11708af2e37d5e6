//! When to renew, when to log in again, and how long to wait after a failure: pure functions
//! of durations and a random number, so every edge case is unit-tested without a clock.

use std::time::Duration;

/// The smallest wait we schedule before a token's expiry; below it the token counts as gone.
pub const EXPIRY_MARGIN: Duration = Duration::from_millis(100);

/// What to do next with the token we hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Renew it with renew-self after this long.
    Renew(Duration),
    /// Replace it with a fresh login after this long.
    Relogin(Duration),
    /// Nothing: the token never expires (TTL 0).
    Hold,
}

impl Next {
    /// The wait, if any.
    pub fn delay(&self) -> Option<Duration> {
        match self {
            Next::Renew(d) | Next::Relogin(d) => Some(*d),
            Next::Hold => None,
        }
    }
}

/// About two thirds of `ttl`, spread by ±10 % using `unit` in `[0, 1)` so a fleet that logged
/// in together does not renew together.
pub fn two_thirds(ttl: Duration, unit: f64) -> Duration {
    // NaN would make `mul_f64` panic; treat it like any out-of-range unit.
    let unit = if unit.is_nan() {
        0.5
    } else {
        unit.clamp(0.0, 1.0)
    };
    let factor = (2.0 / 3.0) * (0.9 + 0.2 * unit);
    ttl.mul_f64(factor)
}

/// The plan right after a login. Unlike Vault Agent we do not renew at once: the fresh token
/// already has its full TTL.
pub fn after_login(ttl: Duration, renewable: bool, unit: f64) -> Next {
    if ttl.is_zero() {
        return Next::Hold;
    }
    let wait = two_thirds(ttl, unit);
    if renewable {
        Next::Renew(wait)
    } else {
        Next::Relogin(wait)
    }
}

/// Whether a renewal hit the max-TTL cap: Vault granted less than we could expect (`expected`
/// is the login TTL, or the requested increment when smaller), or said so in a warning.
pub fn is_capped(granted: Duration, expected: Duration, warnings: &[String]) -> bool {
    // Without a cap Vault grants exactly the role's TTL (or the increment): any shortfall is
    // the cap. Vault's TTLs are whole seconds, so no rounding slack is needed.
    granted < expected
        || warnings
            .iter()
            .any(|w| w.contains("capped") || w.contains("max_ttl") || w.contains("max TTL"))
}

/// The plan after a renewal that granted `granted`: keep renewing, or, once capped, log in again
/// while a third of the remaining life is left.
pub fn after_renewal(granted: Duration, capped: bool, renewable: bool, unit: f64) -> Next {
    if granted.is_zero() {
        return if capped {
            Next::Relogin(Duration::ZERO)
        } else {
            Next::Hold
        };
    }
    let wait = two_thirds(granted, unit);
    if capped || !renewable {
        Next::Relogin(wait)
    } else {
        Next::Renew(wait)
    }
}

/// The wait before retrying a failed renewal or re-login while the current token is still valid
/// for `remaining`: the backoff, pulled in so the retry still lands before expiry. `None` means
/// the token is (about to be) expired: stop retrying it and log in with backoff instead.
pub fn retry_before_expiry(backoff: Duration, remaining: Duration) -> Option<Duration> {
    if remaining <= EXPIRY_MARGIN {
        return None;
    }
    let latest = remaining - EXPIRY_MARGIN;
    if backoff <= latest / 2 {
        Some(backoff)
    } else {
        // Halve the remaining time instead: several more tries before expiry, none after it.
        Some((latest / 2).max(EXPIRY_MARGIN.min(latest)))
    }
}

/// The longest `Retry-After` we obey when it exceeds the configured max backoff.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// The wait before the next attempt when Vault asked for one with `Retry-After`: at least that
/// long, but no more than the larger of `max` and [`MAX_RETRY_AFTER`] (a broken header must not
/// park the loop for hours).
pub fn honour_retry_after(
    backoff: Duration,
    retry_after: Option<Duration>,
    max: Duration,
) -> Duration {
    match retry_after {
        Some(ra) => backoff.max(ra.min(max.max(MAX_RETRY_AFTER))),
        None => backoff,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;
    const MS: fn(u64) -> Duration = Duration::from_millis;
    const TTLS: [u64; 8] = [1, 2, 3, 60, 3600, 86_400, 32 * 86_400, 10 * 365 * 86_400];
    const UNITS: [f64; 5] = [0.0, 0.25, 0.5, 0.75, 0.999_999];

    #[test]
    fn two_thirds_stays_within_jitter_bounds() {
        for ttl in TTLS {
            for unit in UNITS {
                let d = two_thirds(S(ttl), unit);
                let lo = S(ttl).mul_f64(0.6) - MS(1);
                let hi = S(ttl).mul_f64(0.7334);
                assert!(d >= lo && d <= hi, "ttl {ttl} unit {unit}: {d:?}");
                // Always at least a quarter of the TTL left when we act.
                assert!(S(ttl) - d >= S(ttl) / 4);
            }
        }
    }

    #[test]
    fn jitter_is_centred_on_two_thirds() {
        let mid = two_thirds(S(3600), 0.5);
        assert_eq!(mid.as_secs(), 2400);
        assert!(two_thirds(S(3600), 0.0) < mid && mid < two_thirds(S(3600), 0.99));
    }

    #[test]
    fn after_login_renews_renewable_tokens_later_not_now() {
        for ttl in TTLS {
            match after_login(S(ttl), true, 0.5) {
                Next::Renew(d) => assert!(d > Duration::ZERO && d < S(ttl)),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn after_login_relogins_non_renewable_and_batch() {
        for ttl in TTLS {
            match after_login(S(ttl), false, 0.5) {
                Next::Relogin(d) => assert!(d > Duration::ZERO && d < S(ttl)),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn ttl_zero_never_expires() {
        assert_eq!(after_login(Duration::ZERO, true, 0.5), Next::Hold);
        assert_eq!(after_login(Duration::ZERO, false, 0.5), Next::Hold);
        assert_eq!(after_renewal(Duration::ZERO, false, true, 0.5), Next::Hold);
        assert_eq!(
            after_renewal(Duration::ZERO, true, true, 0.5),
            Next::Relogin(Duration::ZERO)
        );
        assert_eq!(Next::Hold.delay(), None);
    }

    #[test]
    fn capped_detection() {
        assert!(!is_capped(S(3600), S(3600), &[]));
        assert!(is_capped(S(3599), S(3600), &[]));
        assert!(is_capped(S(570), S(3600), &[]));
        assert!(is_capped(S(1), S(2), &[]));
        let warn = vec![
            "TTL of \"1h0m0s\" exceeded the effective max_ttl of \"9m30s\"; TTL value is capped accordingly"
                .to_string(),
        ];
        assert!(is_capped(S(3600), S(3600), &warn));
        assert!(
            !is_capped(S(7200), S(3600), &[]),
            "more than expected is fine"
        );
    }

    #[test]
    fn capped_renewal_relogins_with_a_third_left() {
        for ttl in TTLS {
            for unit in UNITS {
                match after_renewal(S(ttl), true, true, unit) {
                    Next::Relogin(d) => assert!(S(ttl) - d >= S(ttl) / 4, "{ttl}"),
                    other => panic!("{other:?}"),
                }
            }
        }
        assert!(matches!(
            after_renewal(S(60), false, false, 0.5),
            Next::Relogin(_)
        ));
        assert!(matches!(
            after_renewal(S(60), false, true, 0.5),
            Next::Renew(_)
        ));
    }

    #[test]
    fn retries_land_before_expiry() {
        for remaining_ms in [0u64, 50, 100, 101, 150, 500, 1000, 2000, 10_000, 3_600_000] {
            for backoff_ms in [1u64, 500, 1000, 4000, 300_000] {
                let remaining = MS(remaining_ms);
                match retry_before_expiry(MS(backoff_ms), remaining) {
                    None => assert!(remaining <= EXPIRY_MARGIN),
                    Some(d) => {
                        assert!(d < remaining, "{remaining_ms} {backoff_ms}: {d:?}");
                        assert!(d <= MS(backoff_ms).max(EXPIRY_MARGIN));
                        assert!(!d.is_zero());
                    }
                }
            }
        }
    }

    #[test]
    fn repeated_retries_converge_without_passing_expiry() {
        // Simulate an outage: retry with a growing backoff until the token is gone.
        let mut remaining = S(10);
        let mut backoff = S(1);
        let mut tries = 0;
        while let Some(d) = retry_before_expiry(backoff, remaining) {
            assert!(d < remaining);
            remaining -= d;
            backoff = (backoff * 2).min(S(300));
            tries += 1;
            assert!(tries < 100);
        }
        assert!(tries >= 4, "several tries before expiry, got {tries}");
        assert!(remaining <= EXPIRY_MARGIN);
    }

    #[test]
    fn retry_after_is_honoured_within_max() {
        assert_eq!(honour_retry_after(S(1), Some(S(7)), S(300)), S(7));
        assert_eq!(honour_retry_after(S(9), Some(S(7)), S(300)), S(9));
        assert_eq!(honour_retry_after(S(1), Some(S(9999)), S(300)), S(300));
        assert_eq!(honour_retry_after(S(1), Some(S(9999)), S(600)), S(600));
        assert_eq!(
            honour_retry_after(S(1), Some(S(7)), S(2)),
            S(7),
            "above a small max"
        );
        assert_eq!(honour_retry_after(S(2), None, S(300)), S(2));
    }
}
