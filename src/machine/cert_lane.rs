//! The certificates' lane of the machine: each `VAULT_LOGIN_CERT_<NAME>` is issued once per
//! lifetime, not per login. A certificate already published and still good (checked by the
//! driver at start) is adopted with its life; a new token, a SIGHUP or a restart changes
//! nothing. It is renewed at 2/3 of its life with ±10 % jitter, or a fixed time before its end
//! ([`schedule::cert_renew_in`]), and a failed issue is retried on the backoff, pulled in so
//! the last retries land before the published certificate expires (the token's rule). One issue
//! is in flight at a time, beside the token's and the secrets' requests. No I/O, no clock.

use std::time::{Duration, Instant};

use tracing::warn;

use crate::duration::brief;
use crate::machine::backoff::{Backoff, Jitter};
use crate::machine::events::{Action, CertGrant, Goal, Settings};
use crate::machine::failure::Failure;
use crate::machine::lane::Timing;
use crate::machine::schedule;
use crate::machine::secret_lane::Outcome;

/// The certificates the machine keeps, and when they are renewed.
#[derive(Clone, Debug, Default)]
pub struct CertSettings {
    /// How many certificates (`VAULT_LOGIN_CERT_<NAME>`).
    pub count: usize,
    /// Renew this long before NotAfter at the latest (`VAULT_LOGIN_CERT_RENEW_BEFORE`).
    pub renew_before: Option<Duration>,
}

/// A certificate's life as the machine counts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Life {
    /// When it was issued (or NotBefore, if later).
    start: Instant,
    /// NotAfter.
    end: Instant,
}

/// One certificate: its published life (the lane's [`Timing`] says when it is next issued).
#[derive(Clone, Debug)]
struct CertState {
    /// The published certificate's life (None: nothing good is published).
    life: Option<Life>,
    backoff: Backoff,
}

/// Every certificate's state, and the one issue in flight.
#[derive(Debug)]
pub struct CertLane {
    certs: Vec<CertState>,
    /// When each certificate is next issued (None: not until a token is there), and the one
    /// in flight.
    timing: Timing,
    /// A new certificate's state.
    fresh: CertState,
    renew_before: Option<Duration>,
    max_backoff: Duration,
    once: bool,
}

impl CertLane {
    /// The lane for `certs`, nothing due until a token is written.
    pub fn new(settings: &Settings, certs: &CertSettings) -> CertLane {
        let state = CertState {
            life: None,
            backoff: Backoff::new(settings.min_backoff, settings.max_backoff),
        };
        CertLane {
            certs: vec![state.clone(); certs.count],
            timing: Timing::new(certs.count),
            fresh: state,
            renew_before: certs.renew_before,
            max_backoff: settings.max_backoff,
            once: matches!(settings.goal, Goal::Once { .. }),
        }
    }

    /// A certificate found while running (a template's `pkiCert` that depends on another
    /// read's answer): issued as soon as a token is there; its index is the next one.
    pub fn add(&mut self, now: Instant) -> usize {
        self.certs.push(self.fresh.clone());
        self.timing.push((!self.timing.parked()).then_some(now))
    }

    /// How many certificates.
    pub fn len(&self) -> usize {
        self.certs.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.certs.is_empty()
    }

    /// When certificate `index`'s published life ends, if one is published.
    pub fn expiry(&self, index: usize) -> Option<Instant> {
        self.certs.get(index)?.life.map(|l| l.end)
    }

    /// When certificate `index` is next issued, if planned.
    pub fn due(&self, index: usize) -> Option<Instant> {
        self.timing.due(index)
    }

    /// Keeps the certificate a previous run published (the driver checked its names and key),
    /// issued at `start`, ending at `end`: renewed on its schedule, not now.
    pub fn adopt(&mut self, index: usize, start: Instant, end: Instant, jitter: &mut Jitter) {
        let renew_before = self.renew_before;
        let once = self.once;
        let Some(c) = self.certs.get_mut(index) else {
            return;
        };
        let life = Life { start, end };
        c.life = Some(life);
        let due = (!once).then(|| renew_at(life, renew_before, jitter.unit()));
        self.timing.set(index, due);
    }

    /// Whether an issue is in flight.
    pub fn busy(&self) -> bool {
        self.timing.busy()
    }

    /// When the lane next has work, if it is idle.
    pub fn next_due(&self) -> Option<Instant> {
        self.timing.next_due()
    }

    /// Whether some certificate's issue is due at `now`.
    pub fn due_at(&self, now: Instant) -> bool {
        self.timing.due_at(now)
    }

    /// Whether every certificate has one published.
    pub fn all_published(&self) -> bool {
        self.certs.iter().all(|c| c.life.is_some())
    }

    /// A token is in the file: certificates with nothing published are issued now; published
    /// ones keep their renewal (a new token is no reason to issue a certificate again).
    pub fn token_ready(&mut self, now: Instant) {
        self.timing.unpark();
        for (index, c) in self.certs.iter().enumerate() {
            if c.life.is_none() && self.timing.due(index).is_none() {
                self.timing.set(index, Some(now));
            }
        }
    }

    /// No live token: nothing is due until the next one.
    pub fn park(&mut self) {
        self.timing.park();
    }

    /// Starts the earliest due issue, if the lane is idle and a token is there.
    pub fn start(&mut self, now: Instant) -> Option<Action> {
        let index = self.timing.start(now)?;
        Some(Action::IssueCert { index })
    }

    /// Whether `index`'s issue is the one in flight; it no longer is afterwards.
    pub fn finish(&mut self, index: usize) -> bool {
        self.timing.finish(index)
    }

    /// Certificate `index`'s issue (sent at `sent`) finished: published, or failed.
    pub fn issued(
        &mut self,
        now: Instant,
        index: usize,
        sent: Instant,
        result: Result<CertGrant, Failure>,
        jitter: &mut Jitter,
    ) -> Outcome {
        let grant = match result {
            Ok(g) => g,
            Err(f) => return self.failed(now, index, f, jitter),
        };
        let (renew_before, once) = (self.renew_before, self.once);
        let c = &mut self.certs[index];
        c.backoff.reset();
        // Vault back-dates NotBefore (30 s by default): the life counts from the issue.
        let life = Life {
            start: grant.not_before.max(sent),
            end: grant.not_after,
        };
        c.life = Some(life);
        let due = (!once).then(|| renew_at(life, renew_before, jitter.unit()));
        self.timing.set(index, due);
        Outcome::Changed
    }

    fn failed(&mut self, now: Instant, index: usize, f: Failure, jitter: &mut Jitter) -> Outcome {
        let (u1, u2) = (jitter.unit(), jitter.unit());
        let max_backoff = self.max_backoff;
        let c = &mut self.certs[index];
        let delay = c.backoff.next_delay_with(u1);
        let delay = schedule::honour_retry_after(delay, f.retry_after, max_backoff);
        let left = c.life.map(|l| l.end.saturating_duration_since(now));
        // Before the published one expires, the retries are pulled in to land before its end;
        // after, the plain backoff.
        let delay = left
            .and_then(|left| schedule::retry_before_expiry(delay, left, u2))
            .unwrap_or(delay);
        warn!(error = %f.message, retry_in = %brief(delay), "certificate not issued; the published one (if any) stays");
        self.timing.set(index, Some(now + delay));
        Outcome::Failed(f.message)
    }
}

fn renew_at(life: Life, renew_before: Option<Duration>, unit: f64) -> Instant {
    let lifetime = life.end.saturating_duration_since(life.start);
    life.start + schedule::cert_renew_in(lifetime, renew_before, unit)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::failure::FailureKind;
    use crate::machine::tests::settings;

    const S: fn(u64) -> Duration = Duration::from_secs;

    fn lane(count: usize, renew_before: Option<Duration>) -> CertLane {
        let certs = CertSettings {
            count,
            renew_before,
        };
        CertLane::new(&settings(Goal::Sidecar), &certs)
    }

    fn grant(at: Instant, backdate: u64, ttl: u64) -> CertGrant {
        CertGrant {
            not_before: at.checked_sub(S(backdate)).unwrap_or(at),
            not_after: at + S(ttl),
        }
    }

    fn issue(
        l: &mut CertLane,
        now: Instant,
        r: Result<CertGrant, Failure>,
        j: &mut Jitter,
    ) -> Outcome {
        let Some(Action::IssueCert { index }) = l.start(now) else {
            panic!("no issue due at {now:?}");
        };
        assert!(l.finish(index));
        l.issued(now, index, now, r, j)
    }

    #[test]
    fn issued_once_then_renewed_at_two_thirds_of_the_life_from_the_issue() {
        let t0 = Instant::now() + S(100);
        let mut j = Jitter::new(7);
        let mut l = lane(1, None);
        assert_eq!(l.start(t0), None, "nothing before a token");
        l.token_ready(t0);
        // Back-dated by 30 s: the life still counts from the issue.
        assert_eq!(
            issue(&mut l, t0, Ok(grant(t0, 30, 20)), &mut j),
            Outcome::Changed
        );
        assert!(l.all_published());
        let due = l.next_due().unwrap();
        assert!(due >= t0 + S(12) && due <= t0 + S(15), "{:?}", due - t0);
        // A new token changes nothing.
        l.token_ready(t0 + S(1));
        assert_eq!(l.next_due(), Some(due));
        assert_eq!(l.start(due - S(1)), None);
        assert_eq!(l.start(due), Some(Action::IssueCert { index: 0 }));
    }

    #[test]
    fn renew_before_wins_when_earlier() {
        let t0 = Instant::now();
        let mut j = Jitter::new(1);
        let mut l = lane(1, Some(S(3 * 3600)));
        l.token_ready(t0);
        issue(&mut l, t0, Ok(grant(t0, 0, 4 * 3600)), &mut j);
        assert_eq!(l.next_due(), Some(t0 + S(3600)));
    }

    #[test]
    fn an_adopted_certificate_is_not_issued_until_due() {
        let t0 = Instant::now() + S(1000);
        let mut j = Jitter::new(3);
        let mut l = lane(2, None);
        // Published 100 s ago for 300 s.
        l.adopt(0, t0 - S(100), t0 + S(200), &mut j);
        l.token_ready(t0);
        assert_eq!(
            l.start(t0),
            Some(Action::IssueCert { index: 1 }),
            "only the missing one"
        );
        l.finish(1);
        let due = l.due(0).unwrap();
        assert!(due >= t0 + S(80) && due <= t0 + S(120), "{:?}", due - t0);
        // An adopted one that is already due is issued at once.
        let mut l = lane(1, None);
        l.adopt(0, t0 - S(290), t0 + S(10), &mut j);
        l.token_ready(t0);
        assert_eq!(l.start(t0), Some(Action::IssueCert { index: 0 }));
    }

    #[test]
    fn failures_back_off_and_land_before_the_published_one_expires() {
        let t0 = Instant::now();
        let mut j = Jitter::new(5);
        let mut l = lane(1, None);
        l.token_ready(t0);
        issue(&mut l, t0, Ok(grant(t0, 0, 60)), &mut j);
        let mut now = l.next_due().unwrap();
        let end = t0 + S(60);
        let denied = || Failure::new(FailureKind::Denied, "CERT_WEB: permission denied");
        let mut tries = 0;
        while now < end {
            let out = issue(&mut l, now, Err(denied()), &mut j);
            assert!(matches!(out, Outcome::Failed(_)));
            let next = l.next_due().unwrap();
            assert!(next > now, "retries move forward");
            tries += 1;
            if next >= end {
                break;
            }
            now = next;
        }
        assert!(tries >= 5, "several retries before expiry, got {tries}");
        assert_eq!(l.expiry(0), Some(end), "the published one stays");
        // Past expiry: the plain backoff, capped.
        let after = end + S(1);
        let when = l.next_due().unwrap().max(after);
        let _ = issue(&mut l, when, Err(denied()), &mut j);
        assert!(l.next_due().unwrap() <= after + S(301));
    }

    #[test]
    fn a_fleet_issued_together_renews_spread_out() {
        let t0 = Instant::now();
        let mut dues = Vec::new();
        for seed in 0..100 {
            let mut j = Jitter::new(seed);
            let mut l = lane(1, None);
            l.token_ready(t0);
            issue(&mut l, t0, Ok(grant(t0, 30, 86_400)), &mut j);
            dues.push((l.next_due().unwrap() - t0).as_secs());
        }
        let (min, max) = (dues.iter().min().unwrap(), dues.iter().max().unwrap());
        assert!(*min >= 51_840 && *max <= 63_360, "{min}..{max}");
        assert!(max - min > 8_000, "bunched: {min}..{max}");
        dues.sort_unstable();
        dues.dedup();
        assert!(dues.len() > 90);
    }

    #[test]
    fn a_certificate_added_while_running_is_issued_once_a_token_is_there() {
        let t0 = Instant::now();
        let mut j = Jitter::new(2);
        let mut l = lane(1, None);
        assert_eq!(l.add(t0), 1, "parked: not due yet");
        assert_eq!(l.due(1), None);
        l.token_ready(t0);
        issue(&mut l, t0, Ok(grant(t0, 0, 60)), &mut j);
        issue(&mut l, t0, Ok(grant(t0, 0, 60)), &mut j);
        assert!(l.all_published());
        let t1 = t0 + S(5);
        assert_eq!(l.add(t1), 2);
        assert!(!l.all_published());
        assert_eq!(l.start(t1), Some(Action::IssueCert { index: 2 }));
    }

    #[test]
    fn parked_and_once() {
        let t0 = Instant::now();
        let mut j = Jitter::new(1);
        let mut l = lane(1, None);
        l.token_ready(t0);
        l.park();
        assert_eq!((l.next_due(), l.start(t0)), (None, None));
        let mut once = CertLane::new(
            &settings(Goal::Once { timeout: S(30) }),
            &CertSettings {
                count: 1,
                renew_before: None,
            },
        );
        once.token_ready(t0);
        issue(&mut once, t0, Ok(grant(t0, 0, 60)), &mut j);
        assert!(once.all_published());
        assert_eq!(once.next_due(), None);
        assert!(!once.finish(0), "a stale result is dropped");
    }
}
