//! The renewal spread of a fleet whose pods all got a 24 h certificate in the same second (a
//! rollout, a node drain): when each pod asks Vault for the next one.
//!
//! - vault-login: the library's own [`cert_renew_in`] (2/3 of the life with ±10 % jitter), fed
//!   one random unit per pod as each pod's machine draws it from its own random seed.
//! - `bao agent`'s `pkiCert` (OpenBao 2.7.2 vendors openbao-template v1.0.1, whose rule is
//!   consul-template's): it sleeps 90 % of the time left, in whole seconds, and when that is
//!   over 100 s adds a jitter of `sleep / 100` (integer) times a whole number drawn from -3..=2.
//!   So a fleet renews at six instants at most. (The issue quotes an older form whose term
//!   rounds to zero: one instant.)

use std::collections::BTreeMap;
use std::time::Duration;

use vault_login::machine::backoff::Jitter;
use vault_login::machine::schedule::cert_renew_in;

use super::SECTION;
use crate::report::{Report, Verdict};
use crate::stats::Rng;

/// Pods in the fleet.
pub const PODS: usize = 1000;
/// The certificates' life.
const LIFE: Duration = Duration::from_secs(86_400);

/// Seconds after the common issue at which each of `pods` vault-login sidecars renews.
fn vault_login_offsets(pods: usize, life: Duration, rng: &mut Rng) -> Vec<u64> {
    (0..pods)
        .map(|_| {
            let mut jitter = Jitter::new(rng.next_u64());
            cert_renew_in(life, None, jitter.unit()).as_secs()
        })
        .collect()
}

/// The agent's `pkiCert` sleep for a certificate with `left` seconds to live (the rule in the
/// module's doc), with `step` the drawn whole number in -3..=2.
fn pki_cert_sleep(left: i64, step: i64) -> i64 {
    let sleep = left * 9 / 10;
    if sleep > 100 {
        sleep + sleep / 100 * step
    } else {
        sleep
    }
}

/// Seconds after the common issue at which each of `pods` agents renews.
fn agent_offsets(pods: usize, life: Duration, rng: &mut Rng) -> Vec<u64> {
    (0..pods)
        .map(|_| {
            let step = (rng.next_u64() % 6) as i64 - 3;
            pki_cert_sleep(life.as_secs() as i64, step).max(0) as u64
        })
        .collect()
}

/// How a fleet's renewals fall.
#[derive(Debug, PartialEq, Eq)]
struct Spread {
    /// The first and the last renewal, in seconds after the issue.
    first: u64,
    last: u64,
    /// How many different seconds they fall in.
    distinct: usize,
    /// The most renewals in one second, and in one minute.
    peak_second: usize,
    peak_minute: usize,
}

fn spread(offsets: &[u64]) -> Spread {
    let mut seconds: BTreeMap<u64, usize> = BTreeMap::new();
    for s in offsets {
        *seconds.entry(*s).or_default() += 1;
    }
    // The busiest 60 s window starting at some renewal.
    let peak_minute = seconds
        .keys()
        .map(|start| seconds.range(*start..start + 60).map(|(_, n)| n).sum())
        .max()
        .unwrap_or(0);
    Spread {
        first: seconds.keys().next().copied().unwrap_or(0),
        last: seconds.keys().next_back().copied().unwrap_or(0),
        distinct: seconds.len(),
        peak_second: seconds.values().copied().max().unwrap_or(0),
        peak_minute,
    }
}

fn describe(s: &Spread, life: Duration) -> String {
    let pct = |x: u64| 100.0 * x as f64 / life.as_secs() as f64;
    format!(
        "{:.1}–{:.1} % of the life ({} s apart), {} distinct seconds; peak {}/s, {}/min",
        pct(s.first),
        pct(s.last),
        s.last - s.first,
        s.distinct,
        s.peak_second,
        s.peak_minute
    )
}

/// Adds the spread rows for a fleet of `pods`.
pub fn run(report: &mut Report, pods: usize) {
    let mut rng = Rng::new(0xCE27);
    let ours = spread(&vault_login_offsets(pods, LIFE, &mut rng));
    let agent = spread(&agent_offsets(pods, LIFE, &mut rng));
    report.add(
        SECTION,
        &format!(
            "renewals of {pods} pods issued 24 h certificates in the same second (simulated with each program's rule; agent: `pkiCert`)"
        ),
        describe(&ours, LIFE),
        describe(&agent, LIFE),
        "no second with over 1 % of the fleet",
        Verdict::of(ours.peak_second * 100 <= pods),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_agent_lands_on_six_instants_at_most_and_none_under_100_s() {
        let mut rng = Rng::new(1);
        let s = spread(&agent_offsets(600, LIFE, &mut rng));
        assert_eq!(s.distinct, 6, "{s:?}");
        // 90 % of 86,400 s is 77,760 s; steps of 777 s from -3 to +2.
        assert_eq!((s.first, s.last), (77_760 - 3 * 777, 77_760 + 2 * 777));
        assert_eq!(pki_cert_sleep(100, 2), 90);
        assert_eq!(pki_cert_sleep(112, -3), 100);
        assert_eq!(pki_cert_sleep(1000, -3), 900 - 27);
    }

    #[test]
    fn vault_login_spreads_over_a_fifth_of_two_thirds_of_the_life() {
        let mut rng = Rng::new(2);
        let s = spread(&vault_login_offsets(1000, LIFE, &mut rng));
        assert!(s.first >= 51_840 && s.last <= 63_360, "{s:?}");
        assert!(s.last - s.first > 10_000, "{s:?}");
        assert!(s.peak_second <= 3 && s.distinct > 900, "{s:?}");
    }

    #[test]
    fn the_spread_counts_seconds_and_the_busiest_minute() {
        let s = spread(&[10, 10, 11, 69, 70, 200]);
        assert_eq!(
            s,
            Spread {
                first: 10,
                last: 200,
                distinct: 5,
                peak_second: 2,
                peak_minute: 4,
            }
        );
    }
}
