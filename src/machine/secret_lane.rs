//! The secrets' lane of the machine: each `VAULT_LOGIN_SECRET_<NAME>` is one more thing with a
//! lifetime. Static secrets are read again every refresh interval; a dynamic secret's lease is
//! renewed like the token (about 2/3 of it, never right after the read) and replaced by new
//! credentials before its max TTL. One read or renewal is in flight at a time, beside the
//! token's request. Like the machine that owns it, the lane does no I/O and never reads the clock.

use std::time::{Duration, Instant};

use tracing::{info, warn};

use crate::duration::brief;
use crate::machine::backoff::{Backoff, Jitter};
use crate::machine::events::{Action, Goal, Grant, SecretGrant, Settings};
use crate::machine::failure::{Failure, FailureKind};
use crate::machine::lane::Timing;
use crate::machine::said::Said;
use crate::machine::schedule::{self, Lifetime, Next};

/// One secret: what to do next with it (the lane's [`Timing`] says when).
#[derive(Clone, Debug)]
struct SecretState {
    /// Renew the lease (true) or read the secret (false).
    renew: bool,
    /// Whether its file has been written since the start.
    written: bool,
    /// The lease of a dynamic secret.
    lease: Option<Lifetime>,
    backoff: Backoff,
    /// Its failures as the log says them: a repeat is counted, not said in full again.
    said: Said,
    /// No consumer uses it any more ([`SecretLane::retire`]): never planned again.
    retired: bool,
}

/// What a finished read or lease renewal means for the rest of the machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The secret's file changed: the change hooks are owed.
    Changed,
    /// Nothing the app sees changed.
    Same,
    /// It failed, saying this (the file keeps its last good content).
    Failed(String),
    /// The read succeeded but a file could not be rendered from it, saying this; `changed`:
    /// other files changed (their hooks are owed).
    Unrendered {
        /// What is wrong.
        message: String,
        /// Whether other files changed.
        changed: bool,
    },
}

/// Every secret's state, and the one read or renewal in flight.
#[derive(Debug)]
pub struct SecretLane {
    secrets: Vec<SecretState>,
    /// When each secret is due, and the one in flight.
    timing: Timing,
    /// How often a secret without a lease is read again.
    refresh: Duration,
    max_backoff: Duration,
    /// `--once`: read each secret once, plan nothing after.
    once: bool,
    /// The state a secret added later starts from.
    fresh: SecretState,
    /// Each secret's API path, for logs.
    names: Vec<String>,
}

impl SecretLane {
    /// The lane of the machine with `settings`: its secrets, none due until a token is written.
    pub fn new(settings: &Settings) -> SecretLane {
        let state = SecretState {
            renew: false,
            written: false,
            lease: None,
            backoff: Backoff::new(settings.min_backoff, settings.max_backoff),
            said: Said::default(),
            retired: false,
        };
        SecretLane {
            secrets: vec![state.clone(); settings.secrets.len()],
            names: settings.secrets.clone(),
            timing: Timing::new(settings.secrets.len()),
            refresh: settings.refresh,
            max_backoff: settings.max_backoff,
            once: matches!(settings.goal, Goal::Once { .. }),
            fresh: state,
        }
    }

    /// A secret found while running (a template's read that depends on another read's
    /// answer): due at `now` unless the lane is parked. Its index is the next one.
    pub fn add(&mut self, now: Instant, name: String) -> usize {
        self.secrets.push(self.fresh.clone());
        self.names.push(name);
        self.timing.push(Some(now))
    }

    /// Secret `index` is used by no template, file or value any more: it is neither read nor
    /// renewed again, and counts as written. Its index stays (the others keep theirs). A lease
    /// it holds is left to expire, not revoked: the app may still hold credentials rendered
    /// from it until it reloads (consul-template and Agent stop watching a dependency their
    /// templates dropped; they do not revoke it). A read of it in flight still finishes; its
    /// answer plans nothing.
    pub fn retire(&mut self, index: usize) {
        if let Some(s) = self.secrets.get_mut(index) {
            s.retired = true;
            self.timing.set(index, None);
        }
    }

    /// A retired secret `index` is used again: read afresh at `now` (unless the lane is parked).
    pub fn revive(&mut self, now: Instant, index: usize) {
        if let Some(s) = self.secrets.get_mut(index) {
            *s = self.fresh.clone();
            self.timing.set(index, Some(now));
        }
    }

    /// Plans secret `index` for `due`, unless it is retired.
    fn set_due(&mut self, index: usize, due: Option<Instant>) {
        let due = due.filter(|_| !self.secrets[index].retired);
        self.timing.set(index, due);
    }

    /// Whether a read or renewal is in flight.
    pub fn busy(&self) -> bool {
        self.timing.busy()
    }

    /// When the lane next has work, if it is idle.
    pub fn next_due(&self) -> Option<Instant> {
        self.timing.next_due()
    }

    /// Whether some secret's read or renewal is due at `now` (a batch is still being read).
    pub fn due_at(&self, now: Instant) -> bool {
        self.timing.due_at(now)
    }

    /// Whether every secret's file has been written.
    pub fn all_written(&self) -> bool {
        self.secrets.iter().all(|s| s.written || s.retired)
    }

    /// A new token is in the file. Secrets not read yet, and dynamic secrets (their leases are
    /// the old token's children and die with it), are read now; static secrets keep their
    /// refresh: a new token changes nothing in them, so nothing is read or rewritten (no churn).
    pub fn read_all(&mut self, now: Instant) {
        self.timing.unpark();
        for (index, s) in self.secrets.iter_mut().enumerate() {
            if !s.retired && (!s.written || s.lease.is_some()) {
                self.timing.set(index, Some(now));
                s.renew = false;
                s.lease = None;
            }
        }
    }

    /// The token is gone: nothing is due until the next one is written ([`SecretLane::read_all`]);
    /// each secret keeps its plan.
    pub fn park(&mut self) {
        self.timing.park();
    }

    /// Starts the earliest due read or lease renewal, if the lane is idle. The caller checks
    /// that a live token is in the file to read with.
    pub fn start(&mut self, now: Instant) -> Option<Action> {
        let index = self.timing.start(now)?;
        let s = &self.secrets[index];
        Some(match s.lease.filter(|l| s.renew && l.live(now)) {
            Some(lease) => Action::RenewLease {
                index,
                deadline: lease.expires_at,
            },
            None => Action::ReadSecret { index },
        })
    }

    /// Whether `index`'s request is the one in flight; it no longer is afterwards. A result of
    /// an abandoned request must be dropped.
    pub fn finish(&mut self, index: usize) -> bool {
        self.timing.finish(index)
    }

    /// Plans secret `index`'s next step from a plan relative to `base`.
    fn plan(&mut self, index: usize, base: Instant, next: Next, now: Instant, jitter: &mut Jitter) {
        let s = &mut self.secrets[index];
        let due = match next {
            _ if self.once => None,
            Next::Renew(d) => {
                s.renew = true;
                Some(base + d)
            }
            Next::Relogin(d) => {
                s.renew = false;
                Some(base + d)
            }
            Next::Hold => {
                s.renew = false;
                // Spread ±10 % so a fleet started together does not read every secret in the
                // same second forever (the token's renewals are spread the same way).
                Some(now + schedule::refresh_in(self.refresh, jitter.unit()))
            }
        };
        self.set_due(index, due);
    }

    /// Secret `index`'s read (sent at `sent`) finished.
    pub fn read(
        &mut self,
        now: Instant,
        index: usize,
        sent: Instant,
        result: Result<SecretGrant, Failure>,
        jitter: &mut Jitter,
    ) -> Outcome {
        let grant = match result {
            Ok(grant) => grant,
            Err(f) => return self.failed(now, index, f, false, jitter),
        };
        let s = &mut self.secrets[index];
        s.written |= grant.problem.is_none();
        s.backoff.reset();
        s.said.clear();
        match grant.lease.filter(|l| !l.ttl.is_zero()) {
            Some(lease) => {
                s.lease = Some(Lifetime::granted(sent, lease.ttl, lease.renewable));
                // As for a token: no renewal right after the read.
                let next = schedule::after_login(lease.ttl, lease.renewable, jitter.unit());
                self.plan(index, sent, next, now, jitter);
            }
            None => {
                s.lease = None;
                self.plan(index, sent, Next::Hold, now, jitter);
            }
        }
        match grant.problem {
            Some(message) => Outcome::Unrendered {
                message,
                changed: grant.changed,
            },
            None if grant.changed => Outcome::Changed,
            None => Outcome::Same,
        }
    }

    /// Secret `index`'s lease renewal (sent at `sent`) finished.
    pub fn lease_renewed(
        &mut self,
        now: Instant,
        index: usize,
        sent: Instant,
        result: Result<Grant, Failure>,
        jitter: &mut Jitter,
    ) -> Outcome {
        let Some(lease) = self.secrets[index].lease.as_mut() else {
            self.plan(index, now, Next::Relogin(Duration::ZERO), now, jitter);
            return Outcome::Same;
        };
        match result {
            Ok(g) => {
                let capped = g.ttl < lease.expected || g.capped_warning;
                // Vault's max-TTL deadline is the issue *second* plus the max TTL, and the TTL
                // it reports up to it is rounded: a capped grant can overstate what is left by
                // up to a second, which matters for short-lived credentials.
                let ttl = match capped && g.ttl > Duration::from_secs(1) {
                    true => g.ttl - Duration::from_secs(1),
                    false => g.ttl,
                };
                lease.expires_at = (!ttl.is_zero()).then(|| sent + ttl);
                lease.renewable = g.renewable;
                let expected = lease.expected;
                self.secrets[index].backoff.reset();
                // Capped or not renewable: new credentials before the lease's max TTL.
                let next =
                    schedule::after_renewal(ttl, expected, capped, g.renewable, jitter.unit());
                if capped {
                    info!(secret = %self.names[index], ttl = %brief(g.ttl), "lease at its max TTL; new credentials will be read before it expires");
                }
                self.plan(index, sent, next, now, jitter);
                Outcome::Same
            }
            Err(f) => match f.kind {
                FailureKind::Transient | FailureKind::Busy => {
                    self.failed(now, index, f, true, jitter)
                }
                // The lease is gone (expired, revoked, not renewable, not found) or the token
                // may no longer renew it: new credentials now.
                FailureKind::Denied
                | FailureKind::NotRenewable
                | FailureKind::Expired
                | FailureKind::JwtMissing
                | FailureKind::Other => {
                    warn!(error = %f.message, "lease not renewed; reading new credentials");
                    let s = &mut self.secrets[index];
                    s.lease = None;
                    s.renew = false;
                    self.set_due(index, Some(now));
                    Outcome::Same
                }
            },
        }
    }

    /// A read or renewal of secret `index` failed: retry (the renewal, while the lease lasts
    /// and the failure is transient; otherwise a read) on the backoff, before the lease expires.
    fn failed(
        &mut self,
        now: Instant,
        index: usize,
        f: Failure,
        renew_again: bool,
        jitter: &mut Jitter,
    ) -> Outcome {
        let u1 = jitter.unit();
        let u2 = jitter.unit();
        let s = &mut self.secrets[index];
        let delay = s.backoff.next_delay_with(u1);
        let delay = schedule::honour_retry_after(delay, f.retry_after, self.max_backoff);
        let remaining = s.lease.map(|l| l.remaining(now));
        let (renew, delay) = match remaining.map(|r| schedule::retry_before_expiry(delay, r, u2)) {
            Some(Some(d)) => (renew_again, d),
            Some(None) => {
                s.lease = None;
                (false, delay)
            }
            None => (false, delay),
        };
        let error = s.said.say(&f.message);
        warn!(error = %error, retry_in = %brief(delay), "secret not read; its file keeps the last good content");
        s.renew = renew;
        self.set_due(index, Some(now + delay));
        Outcome::Failed(f.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    fn lane(goal: Goal, count: usize) -> SecretLane {
        SecretLane::new(&Settings {
            goal,
            min_backoff: S(1),
            max_backoff: S(300),
            recovery_backoff: S(20),
            renew_increment: None,
            revoke_on_exit: false,
            adopt: false,
            secrets: (0..count).map(|i| format!("secret/{i}")).collect(),
            refresh: S(300),
        })
    }

    fn lease(ttl: u64) -> Option<Grant> {
        Some(Grant {
            ttl: S(ttl),
            renewable: true,
            capped_warning: false,
        })
    }

    /// Starts the next due request at `now` and feeds back `result` as its read.
    fn read_next(
        l: &mut SecretLane,
        now: Instant,
        result: Result<SecretGrant, Failure>,
        j: &mut Jitter,
    ) -> Outcome {
        let Some(Action::ReadSecret { index }) = l.start(now) else {
            panic!("no read due at {now:?}");
        };
        assert!(l.finish(index));
        l.read(now, index, now, result, j)
    }

    fn grant(changed: bool, lease_ttl: Option<u64>) -> Result<SecretGrant, Failure> {
        Ok(SecretGrant {
            changed,
            lease: lease_ttl.and_then(lease),
            problem: None,
        })
    }

    #[test]
    fn a_capped_lease_is_counted_a_second_short() {
        // Vault's max-TTL deadline is the issue second plus the max TTL: a capped renewal's
        // rounded TTL can overstate what is left by up to a second.
        let t0 = Instant::now();
        let mut j = Jitter::new(1);
        let mut l = lane(Goal::Sidecar, 1);
        l.read_all(t0);
        read_next(&mut l, t0, grant(false, Some(6)), &mut j);
        let due = l.next_due().expect("a renewal is planned");
        let Some(Action::RenewLease { index, .. }) = l.start(due) else {
            panic!("a lease renewal at {due:?}");
        };
        assert!(l.finish(index));
        l.lease_renewed(due, index, due, Ok(lease(3).unwrap()), &mut j);
        let expires = l.secrets[index].lease.and_then(|s| s.expires_at);
        assert_eq!(expires, Some(due + S(2)), "3 s capped counts as 2 s");
        let next = l.next_due().expect("new credentials are planned");
        assert!(
            next < due + S(2),
            "new credentials before the counted expiry"
        );
    }

    #[test]
    fn nothing_is_due_until_a_token_is_written_then_one_at_a_time() {
        let t0 = Instant::now();
        let mut l = lane(Goal::Sidecar, 2);
        assert_eq!(l.next_due(), None);
        assert_eq!(l.start(t0), None);
        l.read_all(t0);
        assert!(l.due_at(t0));
        assert_eq!(l.start(t0), Some(Action::ReadSecret { index: 0 }));
        assert!(l.busy());
        assert_eq!(l.next_due(), None, "busy: no wake-up for the lane");
        assert_eq!(l.start(t0), None, "one request at a time");
        assert!(!l.finish(1), "not the one in flight: its result is dropped");
        assert!(l.finish(0));
        assert_eq!(l.start(t0), Some(Action::ReadSecret { index: 1 }));
    }

    #[test]
    fn a_static_secret_is_read_again_after_the_refresh_and_a_lease_renewed_later() {
        let t0 = Instant::now();
        let mut j = Jitter::new(1);
        let mut l = lane(Goal::Sidecar, 2);
        l.read_all(t0);
        assert_eq!(
            read_next(&mut l, t0, grant(true, None), &mut j),
            Outcome::Changed
        );
        assert_eq!(
            read_next(&mut l, t0, grant(false, Some(600)), &mut j),
            Outcome::Same
        );
        assert!(l.all_written());
        // The static secret is read again after the refresh interval (±10 %)...
        let refresh = l.next_due().unwrap();
        assert!(
            refresh >= t0 + S(270) && refresh <= t0 + S(330),
            "{refresh:?}"
        );
        let unchanged = read_next(&mut l, refresh, grant(false, None), &mut j);
        assert_eq!(unchanged, Outcome::Same);
        // ...and the lease is renewed: not right after the read, well before its end.
        let due = l.next_due().unwrap();
        assert!(due >= t0 + S(360) && due <= t0 + S(480), "{due:?}");
        assert_eq!(
            l.start(due),
            Some(Action::RenewLease {
                index: 1,
                deadline: Some(t0 + S(600))
            })
        );
    }

    #[test]
    fn static_refreshes_are_spread_across_a_fleet() {
        // 50 sidecars started in the same instant, each with its own seed: their next reads of
        // a static secret fall within ±10 % of the interval, and not in one second.
        let t0 = Instant::now();
        let mut dues = Vec::new();
        for seed in 0..50 {
            let mut j = Jitter::new(seed);
            let mut l = lane(Goal::Sidecar, 1);
            l.read_all(t0);
            read_next(&mut l, t0, grant(true, None), &mut j);
            let due = l.next_due().unwrap() - t0;
            assert!(due >= S(270) && due <= S(330), "{due:?}");
            dues.push(due.as_secs());
        }
        dues.sort_unstable();
        dues.dedup();
        assert!(dues.len() >= 20, "refreshes bunched into {dues:?}");
    }

    #[test]
    fn a_failed_read_keeps_the_file_and_retries_on_the_backoff() {
        let t0 = Instant::now();
        let mut j = Jitter::new(1);
        let mut l = lane(Goal::Sidecar, 1);
        l.read_all(t0);
        let denied = Failure::new(FailureKind::Denied, "SECRET_DB: permission denied");
        assert_eq!(
            read_next(&mut l, t0, Err(denied), &mut j),
            Outcome::Failed("SECRET_DB: permission denied".into())
        );
        assert!(!l.all_written());
        let due = l.next_due().unwrap();
        assert!(due >= t0 + S(1) && due <= t0 + S(2), "{due:?}");
    }

    #[test]
    fn a_refused_lease_renewal_reads_new_credentials_now() {
        let t0 = Instant::now();
        let mut j = Jitter::new(1);
        let mut l = lane(Goal::Sidecar, 1);
        l.read_all(t0);
        read_next(&mut l, t0, grant(true, Some(600)), &mut j);
        let due = l.next_due().unwrap();
        l.start(due);
        l.finish(0);
        let gone = Failure::new(FailureKind::Expired, "lease expired");
        assert_eq!(
            l.lease_renewed(due, 0, due, Err(gone), &mut j),
            Outcome::Same
        );
        assert_eq!(l.next_due(), Some(due));
        assert_eq!(l.start(due), Some(Action::ReadSecret { index: 0 }));
    }

    #[test]
    fn a_new_token_rereads_leased_and_unread_secrets_only() {
        let t0 = Instant::now();
        let mut j = Jitter::new(1);
        let mut l = lane(Goal::Sidecar, 3);
        l.read_all(t0);
        read_next(&mut l, t0, grant(true, None), &mut j);
        read_next(&mut l, t0, grant(true, Some(600)), &mut j);
        let denied = Failure::new(FailureKind::Denied, "denied");
        read_next(&mut l, t0, Err(denied), &mut j);
        let refresh = l.timing.due(0);
        // A new token a minute later: the lease (the old token's child) and the unread secret
        // are read now; the static secret keeps its refresh.
        let t1 = t0 + S(60);
        l.read_all(t1);
        assert_eq!(l.timing.due(0), refresh);
        assert_eq!(l.start(t1), Some(Action::ReadSecret { index: 1 }));
        assert!(l.finish(1));
        assert_eq!(l.start(t1), Some(Action::ReadSecret { index: 2 }));
        // Parked without a token, nothing is due; each keeps its plan for the next token.
        assert!(l.finish(2));
        l.park();
        assert_eq!((l.next_due(), l.start(t1)), (None, None));
        l.read_all(t1);
        assert_eq!(l.timing.due(0), refresh);
    }

    #[test]
    fn secrets_added_later_are_due_at_once_when_a_token_is_there() {
        let t0 = Instant::now();
        let mut l = lane(Goal::Sidecar, 0);
        assert_eq!(l.add(t0, "kv/added".into()), 0);
        assert_eq!(l.next_due(), None, "parked until a token");
        l.read_all(t0);
        assert_eq!(l.start(t0), Some(Action::ReadSecret { index: 0 }));
        assert!(l.finish(0));
        assert_eq!(l.add(t0, "kv/added".into()), 1);
        assert_eq!(l.start(t0), Some(Action::ReadSecret { index: 1 }));
    }

    #[test]
    fn a_retired_secret_is_neither_read_nor_renewed_until_revived() {
        let t0 = Instant::now();
        let mut j = Jitter::new(1);
        let mut l = lane(Goal::Sidecar, 3);
        l.read_all(t0);
        read_next(&mut l, t0, grant(true, None), &mut j);
        read_next(&mut l, t0, grant(true, Some(600)), &mut j);
        // Secret 2's read is in flight when it is retired: its answer plans nothing.
        assert_eq!(l.start(t0), Some(Action::ReadSecret { index: 2 }));
        l.retire(2);
        assert!(l.finish(2));
        l.read(t0, 2, t0, grant(true, Some(600)), &mut j);
        assert_eq!(l.timing.due(2), None);
        // The static secret 0 and the leased 1 retired: nothing is due for them again, over
        // an hour of refreshes and a new token.
        l.retire(0);
        l.retire(1);
        assert_eq!((l.timing.due(0), l.timing.due(1)), (None, None));
        assert_eq!(l.next_due(), None);
        l.read_all(t0 + S(60));
        assert_eq!(l.next_due(), None, "a new token reads no retired secret");
        assert_eq!(l.start(t0 + S(3600)), None);
        assert!(l.all_written(), "a retired secret holds no batch back");
        // The indices stay: a secret added later takes the next one.
        assert_eq!(l.add(t0, "kv/new".into()), 3);
        assert_eq!(l.start(t0), Some(Action::ReadSecret { index: 3 }));
        assert!(l.finish(3));
        // Used again: read afresh (not renewed: its old lease may be gone), then refreshed.
        let t1 = t0 + S(900);
        l.revive(t1, 1);
        assert!(!l.all_written(), "revived: not written until read again");
        assert_eq!(l.start(t1), Some(Action::ReadSecret { index: 1 }));
        assert!(l.finish(1));
        l.read(t1, 1, t1, grant(true, None), &mut j);
        let next = l.timing.due(1).expect("planned again");
        assert!(next >= t1 + S(270) && next <= t1 + S(330), "{next:?}");
    }

    #[test]
    fn once_reads_each_secret_once_and_plans_nothing_after() {
        let t0 = Instant::now();
        let mut j = Jitter::new(1);
        let mut l = lane(Goal::Once { timeout: S(30) }, 1);
        l.read_all(t0);
        read_next(&mut l, t0, grant(true, Some(600)), &mut j);
        assert!(l.all_written());
        assert_eq!(l.next_due(), None);
    }
}
