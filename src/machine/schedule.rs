//! When to renew, when to log in again, and how long to wait after a failure: pure functions
//! of durations and a random number, so every edge case is unit-tested without a clock.

use std::time::{Duration, Instant};

/// The smallest wait we schedule before a token's expiry; below it the token counts as gone.
pub const EXPIRY_MARGIN: Duration = Duration::from_millis(100);

/// The lifetime of a credential we hold: the token, or a dynamic secret's lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lifetime {
    /// When Vault stops accepting it (None: never).
    pub expires_at: Option<Instant>,
    /// Whether Vault said it may be renewed.
    pub renewable: bool,
    /// The TTL an uncapped renewal gives back: the TTL first granted.
    pub expected: Duration,
}

impl Lifetime {
    /// A lifetime of `ttl` (zero: forever) counted from `sent`, when its request was sent.
    pub fn granted(sent: Instant, ttl: Duration, renewable: bool) -> Lifetime {
        Lifetime {
            expires_at: (!ttl.is_zero()).then(|| sent + ttl),
            renewable,
            expected: ttl,
        }
    }

    /// How long it is still accepted at `now` (`Duration::MAX`: forever).
    pub fn remaining(&self, now: Instant) -> Duration {
        self.expires_at
            .map_or(Duration::MAX, |at| at.saturating_duration_since(now))
    }

    /// Whether Vault still accepts it at `now`.
    pub fn live(&self, now: Instant) -> bool {
        self.expires_at.is_none_or(|at| at > now)
    }
}

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

/// The share of a renewable token's TTL that elapses before we renew it: about two thirds, a
/// little later (70 %) so that, without Vault Agent's wasted renewal after each login, we also
/// send fewer renewals than its `2/3·R + grace/3` (70–73 %). ±10 % jitter puts renewals between
/// 63 % and 77 % of the TTL, always leaving at least 23 % for retries through an outage.
pub const RENEW_AT: f64 = 0.7;

/// A usable jitter unit: NaN would make `mul_f64` panic; treat it like any out-of-range unit.
fn unit_or_mid(unit: f64) -> f64 {
    if unit.is_nan() {
        0.5
    } else {
        unit.clamp(0.0, 1.0)
    }
}

/// `fraction` of `ttl`, spread by ±10 % using `unit` in `[0, 1)` so a fleet that logged in
/// together does not act together.
fn jittered(ttl: Duration, fraction: f64, unit: f64) -> Duration {
    ttl.mul_f64(fraction * (0.9 + 0.2 * unit_or_mid(unit)))
}

/// About two thirds of `ttl`, spread by ±10 % using `unit` in `[0, 1)`: when to replace a token
/// that cannot be renewed, so the new one is written while a third of the old one's life is left.
pub fn two_thirds(ttl: Duration, unit: f64) -> Duration {
    jittered(ttl, 2.0 / 3.0, unit)
}

/// When to read a static secret again: the refresh `interval`, ±10 % using `unit` in `[0, 1)`,
/// as Vault Agent spreads its static-secret renders, so a fleet's reads do not march in lockstep.
pub fn refresh_in(interval: Duration, unit: f64) -> Duration {
    jittered(interval, 1.0, unit)
}

/// When to renew a token that was granted `ttl`: [`RENEW_AT`] of it, ±10 %.
pub fn renew_point(ttl: Duration, unit: f64) -> Duration {
    jittered(ttl, RENEW_AT, unit)
}

/// The plan right after a login. Unlike Vault Agent we do not renew at once: the fresh token
/// already has its full TTL.
pub fn after_login(ttl: Duration, renewable: bool, unit: f64) -> Next {
    if ttl.is_zero() {
        return Next::Hold;
    }
    if renewable {
        Next::Renew(renew_point(ttl, unit))
    } else {
        Next::Relogin(two_thirds(ttl, unit))
    }
}

/// The plan after a renewal that granted `granted` (`expected` is what an uncapped renewal
/// grants): keep renewing, or, once capped or not renewable, log in again while a third of the
/// remaining life is left — earlier still when that third would be shorter than the margin a
/// normal renewal keeps, so an outage at the max TTL is ridden out like any other.
pub fn after_renewal(
    granted: Duration,
    expected: Duration,
    capped: bool,
    renewable: bool,
    unit: f64,
) -> Next {
    if granted.is_zero() {
        return if capped {
            Next::Relogin(Duration::ZERO)
        } else {
            Next::Hold
        };
    }
    if capped || !renewable {
        let usual_margin = expected.mul_f64(1.0 - RENEW_AT);
        let by_margin = granted
            .saturating_sub(usual_margin)
            .mul_f64(0.9 + 0.1 * unit_or_mid(unit));
        Next::Relogin(two_thirds(granted, unit).min(by_margin))
    } else {
        Next::Renew(renew_point(granted, unit))
    }
}

/// An answer that took longer than this share of the TTL it grants is late: Vault issued (or
/// renewed) the token somewhere between the request's sending and the answer, so counting its
/// life from the sending, the safe lower bound, may throw away most of it, or all of it.
pub const LATE_SHARE: f64 = 0.1;

/// Whether an answer granting `ttl` that took `elapsed` is late (see [`LATE_SHARE`]); a token
/// that never expires (TTL 0) is never late.
pub fn answered_late(elapsed: Duration, ttl: Duration) -> bool {
    !ttl.is_zero() && elapsed > ttl.mul_f64(LATE_SHARE)
}

/// Failed requests are retried on the backoff while it is at most this share of the time the
/// current token has left.
pub const BACKOFF_SHARE: f64 = 0.2;

/// The wait before retrying a failed renewal or re-login while the current token is still valid
/// for `remaining`. `None` means the token is (about to be) expired: stop retrying it and log in
/// instead.
///
/// While the backoff is small next to the time left (at most [`BACKOFF_SHARE`] of it), the
/// backoff decides. Once it is not, the token's remaining life is the scarce thing and the
/// backoff's absolute jitter (a second or two at first) is too narrow to keep a fleet apart:
/// the retry is drawn late in the time left, at 80–90 % of it (`unit` in `[0, 1)`), so each
/// retry leaves the next one 10–20 %, and sidecars whose tokens run out together during an
/// outage come back spread over the life their tokens have left instead of within the same
/// second (BENCHMARKS.md, section 5). The last retries still land before expiry.
pub fn retry_before_expiry(backoff: Duration, remaining: Duration, unit: f64) -> Option<Duration> {
    if remaining <= EXPIRY_MARGIN {
        return None;
    }
    let latest = remaining - EXPIRY_MARGIN;
    if backoff <= latest.mul_f64(BACKOFF_SHARE) {
        Some(backoff)
    } else {
        let share = latest.mul_f64(0.8 + 0.1 * unit_or_mid(unit));
        Some(share.max(EXPIRY_MARGIN.min(latest)))
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

/// The share of a certificate's life after which it is renewed, before jitter (cert-manager's
/// default).
pub const CERT_RENEW_AT: f64 = 2.0 / 3.0;

/// When a certificate whose life is `lifetime` is renewed, counted from the start of that life:
/// at [`CERT_RENEW_AT`] of it with ±10 % jitter (`unit` in `[0, 1)`: pods issued together renew
/// apart: consul-template's `pkiCert` jitter term rounds to zero, and OpenBao 2.7.2's
/// bundled template library's takes six values, so its fleet renews at six instants), or
/// `renew_before` before its end, whichever is earlier. A `renew_before` as long as the whole
/// life would renew at once, forever: the share alone decides then.
pub fn cert_renew_in(lifetime: Duration, renew_before: Option<Duration>, unit: f64) -> Duration {
    let share = lifetime.mul_f64(CERT_RENEW_AT * (0.9 + 0.2 * unit_or_mid(unit)));
    match renew_before.map(|b| lifetime.saturating_sub(b)) {
        Some(before) if !before.is_zero() => share.min(before),
        _ => share,
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
    fn a_lifetime_counts_from_the_sent_instant_and_zero_is_forever() {
        let sent = Instant::now();
        let l = Lifetime::granted(sent, S(60), true);
        assert_eq!(l.expires_at, Some(sent + S(60)));
        assert_eq!(l.expected, S(60));
        assert_eq!(l.remaining(sent + S(20)), S(40));
        assert!(l.live(sent + S(59)));
        assert!(!l.live(sent + S(60)), "Vault refuses it at its expiry");
        assert_eq!(l.remaining(sent + S(90)), Duration::ZERO);
        let forever = Lifetime::granted(sent, Duration::ZERO, false);
        assert_eq!(forever.expires_at, None);
        assert!(forever.live(sent + S(10 * 365 * 86_400)));
        assert_eq!(forever.remaining(sent + S(1)), Duration::MAX);
    }

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
    fn static_refreshes_are_spread_ten_percent_either_way() {
        let interval = S(300);
        assert_eq!(refresh_in(interval, 0.0), S(270));
        assert_eq!(refresh_in(interval, 0.5), S(300));
        assert!(refresh_in(interval, 0.999_999) > S(329));
        assert!(refresh_in(interval, 0.999_999) <= S(330));
        // Out-of-range and NaN units never leave the band (NaN would panic in mul_f64).
        assert_eq!(refresh_in(interval, f64::NAN), S(300));
        assert_eq!(refresh_in(interval, 7.0), S(330));
        assert_eq!(refresh_in(Duration::ZERO, 0.3), Duration::ZERO);
    }

    #[test]
    fn ttl_zero_never_expires() {
        assert_eq!(after_login(Duration::ZERO, true, 0.5), Next::Hold);
        assert_eq!(after_login(Duration::ZERO, false, 0.5), Next::Hold);
        assert_eq!(
            after_renewal(Duration::ZERO, S(60), false, true, 0.5),
            Next::Hold
        );
        assert_eq!(
            after_renewal(Duration::ZERO, S(60), true, true, 0.5),
            Next::Relogin(Duration::ZERO)
        );
        assert_eq!(Next::Hold.delay(), None);
    }

    #[test]
    fn capped_renewal_relogins_with_a_third_left() {
        for ttl in TTLS {
            for unit in UNITS {
                match after_renewal(S(ttl), S(ttl), true, true, unit) {
                    Next::Relogin(d) => assert!(S(ttl) - d >= S(ttl) / 4, "{ttl}"),
                    other => panic!("{other:?}"),
                }
            }
        }
        assert!(matches!(
            after_renewal(S(60), S(60), false, false, 0.5),
            Next::Relogin(_)
        ));
        assert!(matches!(
            after_renewal(S(60), S(60), false, true, 0.5),
            Next::Renew(_)
        ));
    }

    #[test]
    fn retries_land_before_expiry() {
        for remaining_ms in [0u64, 50, 100, 101, 150, 500, 1000, 2000, 10_000, 3_600_000] {
            for backoff_ms in [1u64, 500, 1000, 4000, 300_000] {
                let remaining = MS(remaining_ms);
                match retry_before_expiry(MS(backoff_ms), remaining, 0.999) {
                    None => assert!(remaining <= EXPIRY_MARGIN),
                    Some(d) => {
                        assert!(d < remaining, "{remaining_ms} {backoff_ms}: {d:?}");
                        // Never closer to expiry than the margin.
                        assert!(
                            remaining - d >= EXPIRY_MARGIN,
                            "{remaining_ms} {backoff_ms}: {d:?}"
                        );
                        if MS(backoff_ms) <= (remaining - EXPIRY_MARGIN) / 5 {
                            assert_eq!(d, MS(backoff_ms));
                        }
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
        while let Some(d) = retry_before_expiry(backoff, remaining, random_unit_for_test(tries)) {
            assert!(d < remaining);
            remaining -= d;
            backoff = (backoff * 2).min(S(300));
            tries += 1;
            assert!(tries < 100);
        }
        assert!(tries >= 3, "several tries before expiry, got {tries}");
        assert!(remaining <= EXPIRY_MARGIN);
    }

    fn random_unit_for_test(i: u32) -> f64 {
        f64::from(i % 7) / 7.0
    }

    #[test]
    fn renew_point_is_seventy_percent_with_jitter() {
        for ttl in TTLS {
            for unit in UNITS {
                let d = renew_point(S(ttl), unit);
                assert!(
                    d >= S(ttl).mul_f64(0.63) - MS(1) && d <= S(ttl).mul_f64(0.7701),
                    "{ttl} {unit} {d:?}"
                );
            }
        }
        assert_eq!(renew_point(S(3600), 0.5).as_secs(), 2520);
        match after_login(S(3600), true, 0.5) {
            Next::Renew(d) => assert_eq!(d.as_secs(), 2520),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn capped_relogin_keeps_the_usual_renewal_margin() {
        // TTL 1 h, max 24 h: the capped renewal grants 25 minutes. Two thirds of that would
        // leave only ~8 minutes; we keep the 18 minutes a normal renewal keeps.
        let expected = S(3600);
        for unit in UNITS {
            match after_renewal(S(25 * 60), expected, true, true, unit) {
                Next::Relogin(d) => {
                    assert!(S(25 * 60) - d >= S(18 * 60), "{unit}: {d:?}");
                }
                other => panic!("{other:?}"),
            }
        }
        // Less left than the usual margin: log in again at once.
        assert_eq!(
            after_renewal(S(600), expected, true, true, 0.5),
            Next::Relogin(Duration::ZERO)
        );
        // A cap close to the full TTL: two thirds is the earlier bound.
        match after_renewal(S(3000), expected, true, true, 0.5) {
            Next::Relogin(d) => assert!(d <= S(3000 - 1080)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn pulled_in_retries_are_spread_late_in_the_time_left() {
        let a = retry_before_expiry(S(60), S(10), 0.0).unwrap();
        let b = retry_before_expiry(S(60), S(10), 0.999).unwrap();
        assert!(a < b, "{a:?} {b:?}");
        assert!(a >= MS(7900) && b <= MS(8910), "{a:?} {b:?}");
    }

    #[test]
    fn the_backoff_decides_while_it_is_small_next_to_the_time_left() {
        // 18 minutes left (a 1 h token renewed at 70 %): seconds-long backoffs are used as is.
        for backoff in [S(1), S(2), S(60), S(215)] {
            assert_eq!(retry_before_expiry(backoff, S(18 * 60), 0.5), Some(backoff));
        }
        // A backoff above a fifth of the time left gives way to the share of it.
        let d = retry_before_expiry(S(2), S(6), 0.5).unwrap();
        assert!(d > MS(4600) && d < MS(5200), "{d:?}");
    }

    #[test]
    fn an_answer_is_late_after_a_tenth_of_its_ttl() {
        assert!(!answered_late(MS(100), S(20)));
        assert!(!answered_late(S(2), S(20)), "exactly a tenth is on time");
        assert!(answered_late(MS(2001), S(20)));
        assert!(answered_late(S(25), S(20)), "past the whole TTL");
        assert!(
            !answered_late(S(3600), Duration::ZERO),
            "TTL 0 never expires"
        );
        assert!(answered_late(MS(101), S(1)));
        assert!(!answered_late(Duration::ZERO, S(1)));
        assert!(answered_late(Duration::MAX, S(10 * 365 * 86_400)));
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
    #[test]
    fn certificates_renew_at_two_thirds_with_jitter_or_before_their_end() {
        let h = Duration::from_secs(3600);
        let day = 24 * h;
        // ±10 % around 2/3 of the life.
        assert_eq!(cert_renew_in(day, None, 0.5), day.mul_f64(2.0 / 3.0));
        assert_eq!(cert_renew_in(day, None, 0.0), day.mul_f64(0.6));
        assert!(cert_renew_in(day, None, 0.999_999) <= day.mul_f64(0.733_334));
        assert!(cert_renew_in(day, None, 0.999_999) >= day.mul_f64(0.733));
        // A fixed time before the end wins when it is earlier...
        assert_eq!(cert_renew_in(day, Some(12 * h), 0.5), 12 * h);
        // ...not when it is later.
        assert_eq!(cert_renew_in(day, Some(h), 0.5), day.mul_f64(2.0 / 3.0));
        // Longer than the life: the share decides, never "renew at once, forever".
        assert_eq!(cert_renew_in(h, Some(day), 0.5), h.mul_f64(2.0 / 3.0));
        assert_eq!(cert_renew_in(h, Some(h), 0.5), h.mul_f64(2.0 / 3.0));
        // Edge lives.
        assert_eq!(cert_renew_in(Duration::ZERO, Some(h), 0.5), Duration::ZERO);
        let s = Duration::from_secs(1);
        assert!(cert_renew_in(s, None, 0.3) < s);
        let huge = Duration::from_secs(u64::MAX / 4);
        assert!(cert_renew_in(huge, None, 0.5) < huge);
        assert_eq!(cert_renew_in(day, None, f64::NAN), day.mul_f64(2.0 / 3.0));
    }
}
