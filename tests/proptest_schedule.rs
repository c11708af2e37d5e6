//! Property tests of the renewal schedule: the pure decisions in `schedule` and `backoff`, alone
//! and driven the way the sidecar loop (`agent::run_sidecar`) drives them, against a model of
//! Vault (TTL, max TTL, increment, renewable or not) and arbitrary outages, in virtual time.

use std::time::Duration;

use proptest::prelude::*;
use vault_login::backoff;
use vault_login::schedule::{self, Next, EXPIRY_MARGIN, MAX_RETRY_AFTER};

const DAY: u64 = 86_400;
const MAX_TTL_SECS: u64 = 40 * DAY;
/// A generous cap on simulated steps; long outages with millisecond backoffs need many.
const MAX_STEPS: usize = 20_000;

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// A unit in `[0, 1)`, the contract of `backoff::random_unit`.
fn unit() -> impl Strategy<Value = f64> {
    0.0..1.0f64
}

/// Any f64 at all, including NaN and infinities.
fn any_f64() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>(),
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        Just(-0.0),
        Just(1.0),
        unit(),
    ]
}

/// A duration of up to `max_secs`, with nanoseconds.
fn duration_upto(max_secs: u64) -> impl Strategy<Value = Duration> {
    (0..=max_secs, 0..1_000_000_000u32).prop_map(|(s, n)| Duration::new(s, n))
}

// ----- the pure functions on their own -----

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn two_thirds_is_within_ten_percent(ttl in duration_upto(MAX_TTL_SECS), u in unit()) {
        let d = schedule::two_thirds(ttl, u);
        let t = ttl.as_secs_f64();
        let lo = t * (2.0 / 3.0) * 0.9;
        let hi = t * (2.0 / 3.0) * 1.1;
        // One nanosecond (plus f64 rounding) of slack either side.
        let slack = 1e-9 + t * 1e-12;
        prop_assert!(d.as_secs_f64() >= lo - slack, "{ttl:?} {u}: {d:?} below {lo}");
        prop_assert!(d.as_secs_f64() <= hi + slack, "{ttl:?} {u}: {d:?} above {hi}");
        prop_assert!(d <= ttl);
    }

    #[test]
    fn two_thirds_takes_any_unit(ttl in duration_upto(MAX_TTL_SECS), u in any_f64()) {
        let d = schedule::two_thirds(ttl, u);
        prop_assert!(d <= ttl.mul_f64(0.7334), "{ttl:?} {u}: {d:?}");
    }

    #[test]
    fn backoff_stays_between_min_and_max(
        attempt in prop_oneof![0..80u32, any::<u32>()],
        min in duration_upto(3_600),
        max in duration_upto(DAY),
        u in any_f64(),
    ) {
        prop_assume!(!min.is_zero());
        let d = backoff::delay(attempt, min, max, u);
        prop_assert!(d >= min, "{attempt} {min:?} {max:?} {u}: {d:?}");
        prop_assert!(d <= max.max(min), "{attempt} {min:?} {max:?} {u}: {d:?}");
    }

    #[test]
    fn backoff_never_shrinks_its_ceiling(
        attempt in 1..80u32,
        min in duration_upto(60),
        max in duration_upto(3_600),
    ) {
        prop_assume!(!min.is_zero());
        // With the top of the jitter range, each attempt waits at least as long as the one before.
        let top = 0.999_999_999;
        prop_assert!(
            backoff::delay(attempt + 1, min, max, top) + Duration::from_micros(1)
                >= backoff::delay(attempt, min, max, top)
        );
    }

    #[test]
    fn retry_before_expiry_never_schedules_past_expiry(
        backoff in duration_upto(DAY),
        remaining in prop_oneof![duration_upto(2), duration_upto(MAX_TTL_SECS)],
        u in any_f64(),
    ) {
        match schedule::retry_before_expiry(backoff, remaining, u) {
            None => prop_assert!(remaining <= EXPIRY_MARGIN),
            Some(d) => {
                prop_assert!(remaining > EXPIRY_MARGIN);
                prop_assert!(d + EXPIRY_MARGIN <= remaining, "{backoff:?} {remaining:?}: {d:?}");
                prop_assert!(!d.is_zero() || backoff.is_zero());
                let latest = remaining - EXPIRY_MARGIN;
                if backoff <= latest.mul_f64(schedule::BACKOFF_SHARE) {
                    // A backoff small next to the time left is used as is...
                    prop_assert_eq!(d, backoff);
                } else {
                    // ...otherwise the retry lands late in the time left, leaving 10-20 % of it.
                    prop_assert!(d >= latest.mul_f64(0.8) - Duration::from_nanos(1), "{backoff:?} {remaining:?}: {d:?}");
                    prop_assert!(d <= latest.mul_f64(0.9).max(EXPIRY_MARGIN.min(latest)) + Duration::from_nanos(1), "{backoff:?} {remaining:?}: {d:?}");
                }
            }
        }
    }

    #[test]
    fn retry_after_is_honoured_within_bounds(
        backoff in duration_upto(3_600),
        retry_after in proptest::option::of(duration_upto(100 * DAY)),
        max in duration_upto(DAY),
    ) {
        let d = schedule::honour_retry_after(backoff, retry_after, max);
        prop_assert!(d >= backoff);
        prop_assert!(d <= backoff.max(max.max(MAX_RETRY_AFTER)));
        if let Some(ra) = retry_after {
            prop_assert!(d >= ra.min(max.max(MAX_RETRY_AFTER)));
        }
    }

    #[test]
    fn every_plan_acts_before_expiry(
        ttl in 0..=MAX_TTL_SECS,
        renewable in any::<bool>(),
        capped in any::<bool>(),
        u in unit(),
    ) {
        let ttl = secs(ttl);
        for next in [
            schedule::after_login(ttl, renewable, u),
            schedule::after_renewal(ttl, ttl, capped, renewable, u),
        ] {
            match next {
                Next::Hold => prop_assert!(ttl.is_zero()),
                Next::Renew(d) if !ttl.is_zero() => {
                    prop_assert!(d < ttl, "{next:?} for {ttl:?}");
                    // Renewals come at 63–77 % of the TTL: at least a fifth is left.
                    prop_assert!(ttl - d >= ttl / 5, "{next:?} for {ttl:?}");
                }
                Next::Relogin(d) if !ttl.is_zero() => {
                    prop_assert!(d < ttl, "{next:?} for {ttl:?}");
                    // Replacements come at most at two thirds (±10 %): a quarter is left.
                    prop_assert!(ttl - d >= ttl / 4, "{next:?} for {ttl:?}");
                }
                Next::Renew(_) => prop_assert!(false, "renewal planned for a TTL-0 token"),
                Next::Relogin(d) => prop_assert!(capped && d.is_zero()),
            }
        }
        if !ttl.is_zero() {
            prop_assert!(matches!(schedule::after_renewal(ttl, ttl, true, true, u), Next::Relogin(_)));
        }
    }
}

// ----- the loop, simulated -----

/// The Vault side: what the role grants, and when it is unreachable.
#[derive(Clone, Debug)]
struct World {
    /// The role's `token_ttl` (whole seconds, > 0).
    ttl: Duration,
    /// The role's `token_max_ttl` (whole seconds, > 0).
    max_ttl: Duration,
    /// Whether the role issues renewable (service) tokens.
    renewable: bool,
    /// `VAULT_LOGIN_RENEW_INCREMENT`.
    increment: Option<Duration>,
    min_backoff: Duration,
    max_backoff: Duration,
    /// Half-open intervals `[start, end)` of virtual time during which Vault is unreachable.
    outages: Vec<(Duration, Duration)>,
    /// The jitter units the loop draws, in turn.
    units: Vec<f64>,
}

impl World {
    fn down(&self, t: Duration) -> bool {
        self.outages.iter().any(|(a, b)| *a <= t && t < *b)
    }

    /// Whether Vault is unreachable at any time in `[from, to]`.
    fn down_during(&self, from: Duration, to: Duration) -> bool {
        self.outages.iter().any(|(a, b)| *a <= to && from < *b)
    }
}

fn world() -> impl Strategy<Value = World> {
    (
        1..=MAX_TTL_SECS,
        prop_oneof![Just(None), (1..=MAX_TTL_SECS).prop_map(Some)],
        any::<bool>(),
        proptest::option::of(1..=MAX_TTL_SECS),
        1..=5_000u64,
        1..=600u64,
        proptest::collection::vec((0.0..3.0f64, 0.0..1.5f64), 0..6),
        proptest::collection::vec(unit(), 1..16),
    )
        .prop_map(
            |(ttl, max_ttl, renewable, increment, min_ms, max_s, gaps, units)| {
                let ttl = secs(ttl);
                // Unset max TTL: the mount's 32 days (or the TTL when it is longer).
                let max_ttl = secs(max_ttl.unwrap_or(32 * DAY)).max(Duration::from_secs(1));
                let min_backoff = Duration::from_millis(min_ms);
                let max_backoff = secs(max_s).max(min_backoff);
                // Outages are placed on the scale of the token's life, so they hit every phase.
                let scale = ttl.min(max_ttl).as_secs_f64();
                let mut outages = Vec::new();
                let mut at = 0.0;
                for (gap, len) in gaps {
                    let start = at + gap * scale;
                    let end = start + len * scale;
                    outages.push((Duration::from_secs_f64(start), Duration::from_secs_f64(end)));
                    at = end;
                }
                World {
                    ttl,
                    max_ttl,
                    renewable,
                    increment: increment.map(secs),
                    min_backoff,
                    max_backoff,
                    outages,
                    units,
                }
            },
        )
}

/// A token as Vault sees it.
#[derive(Clone, Debug)]
struct VaultToken {
    id: u64,
    issued: Duration,
    expires: Duration,
}

/// A token as the loop holds it (mirrors `agent::Held`).
#[derive(Clone, Debug)]
struct Held {
    id: u64,
    expires_at: Duration,
    renewable: bool,
    expected: Duration,
    /// When Vault last granted it a life (login or renewal), for the outage check.
    granted_at: Duration,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Action {
    Login,
    Renew,
}

enum RenewError {
    Outage,
    PastMaxTtl,
    Denied,
}

struct Sim<'a> {
    w: &'a World,
    now: Duration,
    next_id: u64,
    vault: Vec<VaultToken>,
    unit_at: usize,
    attempt: u32,
}

impl Sim<'_> {
    fn unit(&mut self) -> f64 {
        let u = self.w.units[self.unit_at % self.w.units.len()];
        self.unit_at += 1;
        u
    }

    /// `Backoff::next_delay` with the simulation's units, checked against its bounds.
    fn next_delay(&mut self) -> Duration {
        self.attempt = self.attempt.saturating_add(1);
        let u = self.unit();
        let d = backoff::delay(self.attempt, self.w.min_backoff, self.w.max_backoff, u);
        assert!(
            d >= self.w.min_backoff && d <= self.w.max_backoff,
            "backoff {d:?} outside {:?}..{:?}",
            self.w.min_backoff,
            self.w.max_backoff
        );
        schedule::honour_retry_after(d, None, self.w.max_backoff)
    }

    fn login(&mut self) -> Option<(u64, Duration, bool)> {
        if self.w.down(self.now) {
            return None;
        }
        let lease = self.w.ttl.min(self.w.max_ttl);
        let id = self.next_id;
        self.next_id += 1;
        self.vault.push(VaultToken {
            id,
            issued: self.now,
            expires: self.now + lease,
        });
        Some((id, lease, self.w.renewable))
    }

    /// Vault's `CalculateTTL` for renew-self: the increment (or the role TTL), capped by max TTL.
    fn renew(&mut self, id: u64) -> Result<(Duration, Vec<String>), RenewError> {
        if self.w.down(self.now) {
            return Err(RenewError::Outage);
        }
        let now = self.now;
        let (w, tok) = (self.w, self.vault.iter_mut().find(|t| t.id == id));
        let Some(tok) = tok.filter(|t| t.expires > now) else {
            return Err(RenewError::Denied);
        };
        let max_expire = tok.issued + w.max_ttl;
        if now >= max_expire {
            return Err(RenewError::PastMaxTtl);
        }
        let want = w.increment.unwrap_or(w.ttl);
        let left = max_expire - now;
        let mut warnings = Vec::new();
        let granted = if want > left {
            warnings.push(format!(
                "TTL of {want:?} exceeded the effective max_ttl of {left:?}; TTL value is capped accordingly"
            ));
            // Vault's TTLs are whole seconds.
            secs(left.as_secs())
        } else {
            want
        };
        tok.expires = now + granted;
        Ok((granted, warnings))
    }
}

/// Runs the loop against the world; panics (with context) when a property fails.
fn simulate(w: &World) {
    let mut sim = Sim {
        w,
        now: Duration::ZERO,
        next_id: 1,
        vault: Vec::new(),
        unit_at: 0,
        attempt: 0,
    };
    let mut held: Option<Held> = None;
    let mut action = Action::Login;
    let mut wake = Duration::ZERO;
    let horizon = w.ttl.min(w.max_ttl) * 4 + w.max_ttl;

    for _ in 0..MAX_STEPS {
        if wake > horizon {
            return;
        }
        assert!(wake >= sim.now, "time goes forward");
        sim.now = wake;
        let now = sim.now;

        // The token the file holds: if its life ran out, Vault must have been unreachable
        // at some point since it was last granted (otherwise the loop acted too late).
        // A renewal that granted 0s (less than a second left before max TTL) is answered by an
        // immediate re-login: nothing to check for that token.
        if let Some(h) = held.as_ref().filter(|h| h.expires_at > h.granted_at) {
            if now >= h.expires_at {
                assert!(
                    w.down_during(h.granted_at, h.expires_at),
                    "token expired at {:?} with Vault reachable since {:?}; now {now:?}",
                    h.expires_at,
                    h.granted_at
                );
            }
        }

        match action {
            Action::Login => match sim.login() {
                Some((id, ttl, renewable)) => {
                    sim.attempt = 0;
                    let u = sim.unit();
                    let next = schedule::after_login(ttl, renewable, u);
                    held = Some(Held {
                        id,
                        expires_at: now + ttl,
                        renewable,
                        expected: ttl,
                        granted_at: now,
                    });
                    (action, wake) = plan(next, now, now + ttl);
                }
                None => {
                    let delay = sim.next_delay();
                    let remaining = held.as_ref().map(|h| h.expires_at.saturating_sub(now));
                    let u = sim.unit();
                    wake = match remaining.map(|r| schedule::retry_before_expiry(delay, r, u)) {
                        Some(Some(d)) => {
                            let h = held.as_ref().unwrap();
                            assert!(now + d < h.expires_at, "login retry after expiry");
                            now + d
                        }
                        Some(None) => {
                            held = None;
                            // As agent.rs: the token is gone, Backoff::restart_after_expiry.
                            sim.attempt = backoff::AFTER_EXPIRY;
                            now + sim.next_delay()
                        }
                        None => now + delay,
                    };
                }
            },
            Action::Renew => {
                let h = held.as_mut().expect("renew without a token");
                match sim.renew(h.id) {
                    Ok((granted, warnings)) => {
                        sim.attempt = 0;
                        let expected = match w.increment {
                            Some(inc) => inc.min(h.expected),
                            None => h.expected,
                        };
                        let capped = schedule::is_capped(granted, expected, &warnings);
                        if !warnings.is_empty() {
                            assert!(capped, "a max-TTL warning means capped");
                        }
                        h.expires_at = now + granted;
                        h.granted_at = now;
                        let u = sim.unit();
                        let next =
                            schedule::after_renewal(granted, expected, capped, h.renewable, u);
                        if capped && !granted.is_zero() {
                            match next {
                                Next::Relogin(d) => assert!(
                                    granted - d >= granted / 4,
                                    "capped at {granted:?}, relogin in {d:?}"
                                ),
                                other => panic!("capped renewal planned {other:?}"),
                            }
                        }
                        let expires = h.expires_at;
                        (action, wake) = plan(next, now, expires);
                    }
                    Err(RenewError::Outage) => {
                        let delay = sim.next_delay();
                        let remaining = h.expires_at.saturating_sub(now);
                        let u = sim.unit();
                        match schedule::retry_before_expiry(delay, remaining, u) {
                            Some(d) => {
                                assert!(now + d + EXPIRY_MARGIN <= h.expires_at);
                                wake = now + d;
                            }
                            None => {
                                sim.attempt = backoff::AFTER_EXPIRY;
                                action = Action::Login;
                                wake = now;
                            }
                        }
                    }
                    Err(RenewError::PastMaxTtl | RenewError::Denied) => {
                        action = Action::Login;
                        wake = now;
                    }
                }
            }
        }
        // Never a renewal of a token we no longer hold.
        assert!(action != Action::Renew || held.is_some());
    }
}

/// `agent::plan`, checking that the next action comes before the token expires.
fn plan(next: Next, now: Duration, expires: Duration) -> (Action, Duration) {
    match next {
        Next::Renew(d) => {
            assert!(now + d < expires, "renewal at {d:?} after expiry");
            (Action::Renew, now + d)
        }
        Next::Relogin(d) => {
            assert!(
                now + d < expires || expires == now,
                "relogin in {d:?} after expiry"
            );
            (Action::Login, now + d)
        }
        Next::Hold => panic!("Vault never grants TTL 0 in this model"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn the_loop_acts_before_expiry_whatever_the_outages(w in world()) {
        simulate(&w);
    }
}

#[test]
fn simulation_covers_the_edges() {
    let base = World {
        ttl: secs(1),
        max_ttl: secs(1),
        renewable: true,
        increment: None,
        min_backoff: Duration::from_millis(1),
        max_backoff: secs(1),
        outages: Vec::new(),
        units: vec![0.0, 0.999_999],
    };
    for (ttl, max, renewable, increment) in [
        (1, 1, true, None),
        (1, 2, true, None),
        (3600, 570, true, None),
        (3600, 32 * DAY, true, Some(1)),
        (3600, 7200, true, Some(5400)),
        (MAX_TTL_SECS, MAX_TTL_SECS, true, None),
        (MAX_TTL_SECS, MAX_TTL_SECS, false, None),
        (2, 600, false, None),
    ] {
        let mut w = World {
            ttl: secs(ttl),
            max_ttl: secs(max),
            renewable,
            increment: increment.map(secs),
            ..base.clone()
        };
        simulate(&w);
        // An outage that starts just before the first renewal and outlives the token.
        let start = secs(ttl.min(max)).mul_f64(0.5);
        w.outages = vec![(start, start + secs(ttl.min(max)) * 2)];
        simulate(&w);
    }
}
