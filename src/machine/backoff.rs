//! Retry waits: exponential backoff with full jitter, and the small random source behind it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

static STATE: AtomicU64 = AtomicU64::new(0);

const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// splitmix64's output function: a well-mixed number from a state that advances by `GAMMA`.
fn mix(state: u64) -> u64 {
    let mut z = state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A number in `[0, 1)` from 64 random bits.
fn unit_of(bits: u64) -> f64 {
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

/// A random 64-bit number (splitmix64): good enough for jitter and temp names, not for secrets.
pub fn random_u64() -> u64 {
    let mut s = STATE.fetch_add(GAMMA, Ordering::Relaxed);
    if s == 0 {
        // First use: seed from the clock and pid so a fleet started together still diverges.
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let seed = nanos ^ (u64::from(std::process::id()) << 32) ^ GAMMA;
        let _ = STATE.compare_exchange(GAMMA, seed, Ordering::Relaxed, Ordering::Relaxed);
        s = STATE.fetch_add(GAMMA, Ordering::Relaxed);
    }
    mix(s.wrapping_add(GAMMA))
}

/// A seeded, reproducible source of jitter (splitmix64): the state machine draws from it so a
/// run with the same seed makes the same decisions.
#[derive(Clone, Debug)]
pub struct Jitter(u64);

impl Jitter {
    /// A source started from `seed`.
    pub fn new(seed: u64) -> Jitter {
        Jitter(seed)
    }

    /// The next number in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(GAMMA);
        unit_of(mix(self.0))
    }
}

/// A uniform random number in `[0, 1)`.
pub fn random_unit() -> f64 {
    unit_of(random_u64())
}

/// The wait before retry number `attempt` (1 = first retry): uniform between `min` and
/// `min * 2^attempt` capped at `max` ("full jitter", never below `min`; already the first retry
/// is spread over min..2·min, so a fleet that failed together does not retry together). `unit`
/// is a random number in `[0, 1)`.
pub fn delay(attempt: u32, min: Duration, max: Duration, unit: f64) -> Duration {
    let max = max.max(min);
    let exp = attempt.min(63);
    let ceiling = min
        .checked_mul(1u32.checked_shl(exp.min(31)).unwrap_or(u32::MAX))
        .unwrap_or(max)
        .min(max);
    // NaN would make `mul_f64` panic.
    let unit = if unit.is_nan() {
        0.0
    } else {
        unit.clamp(0.0, 1.0)
    };
    min + (ceiling - min).mul_f64(unit)
}

/// Tracks consecutive failures and hands out the next wait.
#[derive(Clone, Debug)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    /// A backoff between `min` and `max`.
    pub fn new(min: Duration, max: Duration) -> Self {
        Backoff {
            min,
            max,
            attempt: 0,
        }
    }

    /// Records a failure and returns how long to wait before the next try.
    pub fn next_delay(&mut self) -> Duration {
        self.next_delay_with(random_unit())
    }

    /// Like [`Backoff::next_delay`], with the jitter unit (in `[0, 1)`) given: the state
    /// machine draws its own, reproducibly.
    pub fn next_delay_with(&mut self, unit: f64) -> Duration {
        self.attempt = self.attempt.saturating_add(1);
        delay(self.attempt, self.min, self.max, unit)
    }

    /// Like [`Backoff::next_delay_with`], with the waits capped at `max` instead (when that is
    /// below this backoff's own max): still drawn over the whole window up to it, so a fleet
    /// retrying under the cap is spread over it rather than stacked at it.
    pub fn next_delay_within(&mut self, unit: f64, max: Duration) -> Duration {
        self.attempt = self.attempt.saturating_add(1);
        delay(self.attempt, self.min, self.max.min(max), unit)
    }

    /// Consecutive failures so far.
    pub fn failures(&self) -> u32 {
        self.attempt
    }

    /// Forgets the failures after a success.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// Starts the logins again after the held token expired while requests kept failing. The
    /// retries pulled in before expiry say nothing about how long to wait now (counting them
    /// would park the loop for minutes once Vault is back), so the count restarts; but from the
    /// window of the third retry, `min..8·min`, not the first: the failures have already lasted
    /// the token's last stretch, and a fleet whose tokens ran out in the same outage then
    /// spreads its logins over several seconds instead of retrying within the same one or two.
    pub fn restart_after_expiry(&mut self) {
        self.attempt = AFTER_EXPIRY;
    }
}

/// The failures [`Backoff::restart_after_expiry`] counts as already made.
pub const AFTER_EXPIRY: u32 = 2;

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn jitter_is_reproducible_and_in_range() {
        let mut a = Jitter::new(42);
        let mut b = Jitter::new(42);
        let xs: Vec<f64> = (0..1000).map(|_| a.unit()).collect();
        assert!(xs.iter().all(|x| (0.0..1.0).contains(x)));
        assert_eq!(xs, (0..1000).map(|_| b.unit()).collect::<Vec<_>>());
        let mut c = Jitter::new(43);
        assert_ne!(xs[..8], (0..8).map(|_| c.unit()).collect::<Vec<_>>()[..]);
        // Spread over the range, not stuck in one part of it.
        let low = xs.iter().filter(|x| **x < 0.5).count();
        assert!((400..600).contains(&low), "{low} of 1000 below 0.5");
    }

    #[test]
    fn grows_exponentially_and_caps() {
        assert_eq!(delay(1, S(1), S(300), 0.0), S(1));
        assert!(delay(1, S(1), S(300), 0.999_999) > Duration::from_millis(1990));
        assert!(delay(1, S(1), S(300), 0.999_999) <= S(2));
        assert!(delay(3, S(1), S(300), 0.999_999) <= S(8));
        assert!(delay(3, S(1), S(300), 0.999_999) > Duration::from_millis(7990));
        assert!(delay(20, S(1), S(300), 0.999_999) <= S(300));
        assert!(delay(20, S(1), S(300), 0.999_999) > S(299));
        assert!(delay(u32::MAX, S(1), S(300), 0.5) <= S(300));
    }

    #[test]
    fn restart_after_expiry_continues_from_the_third_window() {
        let mut b = Backoff::new(S(1), S(300));
        for _ in 0..20 {
            b.next_delay();
        }
        b.restart_after_expiry();
        for _ in 0..50 {
            let mut c = b.clone();
            let d = c.next_delay();
            assert!(d >= S(1) && d <= S(8), "{d:?}");
            assert_eq!(c.failures(), 3);
        }
        // Never above max, even when max is below the window.
        let mut small = Backoff::new(Duration::from_millis(100), Duration::from_millis(300));
        small.restart_after_expiry();
        assert!(small.next_delay() <= Duration::from_millis(300));
    }

    #[test]
    fn a_lower_cap_spreads_over_its_window_not_at_its_edge() {
        let mut b = Backoff::new(S(1), S(300));
        for _ in 0..10 {
            b.next_delay();
        }
        let mut at_cap = 0;
        for i in 0..100 {
            let d = b.clone().next_delay_within(f64::from(i) / 100.0, S(30));
            assert!(d >= S(1) && d <= S(30), "{d:?}");
            at_cap += usize::from(d > S(29));
        }
        assert!(at_cap <= 5, "{at_cap} of 100 at the cap");
        // A cap above the backoff's own max changes nothing.
        assert_eq!(
            b.clone().next_delay_within(0.999, S(3000)),
            b.clone().next_delay_with(0.999)
        );
        assert_eq!(b.failures(), 10);
    }

    #[test]
    fn never_below_min_nor_above_max() {
        for attempt in [0, 1, 2, 5, 10, 40, 100, u32::MAX] {
            for unit in [0.0, 0.25, 0.5, 0.999, 1.0, -3.0, 7.0] {
                let d = delay(attempt, Duration::from_millis(500), S(5), unit);
                assert!(
                    d >= Duration::from_millis(500) && d <= S(5),
                    "{attempt} {unit} {d:?}"
                );
            }
        }
    }

    #[test]
    fn min_above_max_is_clamped() {
        assert_eq!(delay(3, S(10), S(1), 0.5), S(10));
    }

    #[test]
    fn jitter_spreads_values() {
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..100 {
            seen.insert(delay(6, S(1), S(60), random_unit()).as_millis() / 1000);
        }
        assert!(seen.len() > 10, "{seen:?}");
    }

    #[test]
    fn random_unit_is_in_range() {
        for _ in 0..10_000 {
            let u = random_unit();
            assert!((0.0..1.0).contains(&u));
        }
    }

    #[test]
    fn backoff_counts_and_resets() {
        let mut b = Backoff::new(S(1), S(4));
        for _ in 0..5 {
            let d = b.next_delay();
            assert!(d >= S(1) && d <= S(4));
        }
        assert_eq!(b.failures(), 5);
        b.reset();
        assert_eq!(b.failures(), 0);
        let first = b.next_delay();
        assert!(first >= S(1) && first <= S(2), "{first:?}");
    }
}
