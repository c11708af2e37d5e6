//! The secrets' lane: each `VAULT_LOGIN_SECRET_<NAME>` is one more thing with a lifetime. Static
//! secrets are read again every refresh interval; a dynamic secret's lease is renewed like the
//! token (about 2/3 of it, never right after the read) and replaced by new credentials before
//! its max TTL. One read or renewal is in flight at a time, beside the token's request.

use std::time::{Duration, Instant};

use tracing::{info, warn};

use super::{Action, Failure, FailureKind, Grant, Held, Hook, Machine, SecretGrant};
use crate::backoff::Backoff;
use crate::duration::human;
use crate::schedule::{self, Next};

/// One secret's lane: what to do next with it and when.
#[derive(Clone, Debug)]
pub(super) struct SecretState {
    /// When the next read or renewal is due (None: nothing planned).
    pub(super) due: Option<Instant>,
    /// Renew the lease (true) or read the secret (false).
    pub(super) renew: bool,
    /// Whether its file has been written since the start.
    pub(super) written: bool,
    /// The lease of a dynamic secret.
    pub(super) lease: Option<Held>,
    pub(super) backoff: Backoff,
}

impl Machine {
    pub(super) fn start_secret(&mut self, now: Instant) {
        if self.secret_in_flight.is_some() || !self.file_current || !self.holds_live_token(now) {
            return;
        }
        let next = self
            .secrets
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.due.filter(|d| *d <= now).map(|d| (d, i)))
            .min();
        let Some((_, index)) = next else {
            return;
        };
        let s = &mut self.secrets[index];
        s.due = None;
        self.secret_in_flight = Some(index);
        match s.lease.filter(|l| s.renew && l.live(now)) {
            Some(lease) => self.actions.push_back(Action::RenewLease {
                index,
                deadline: lease.expires_at,
            }),
            None => self.actions.push_back(Action::ReadSecret { index }),
        }
    }

    /// Plans secret `index`'s next step from a plan relative to `base`.
    pub(super) fn plan_secret(&mut self, index: usize, base: Instant, next: Next, now: Instant) {
        let refresh = self.settings.refresh;
        let once = self.once();
        let s = &mut self.secrets[index];
        match next {
            _ if once => s.due = None,
            Next::Renew(d) => {
                s.renew = true;
                s.due = Some(base + d);
            }
            Next::Relogin(d) => {
                s.renew = false;
                s.due = Some(base + d);
            }
            Next::Hold => {
                s.renew = false;
                s.due = Some(now + refresh);
            }
        }
    }

    pub(super) fn secret_read(
        &mut self,
        now: Instant,
        index: usize,
        sent: Instant,
        result: Result<SecretGrant, Failure>,
    ) {
        match result {
            Ok(grant) => {
                let s = &mut self.secrets[index];
                s.written = true;
                s.backoff.reset();
                if grant.changed {
                    self.owed = self.owed.or(Some(Hook::SecretsChanged));
                }
                match grant.lease.filter(|l| !l.ttl.is_zero()) {
                    Some(lease) => {
                        s.lease = Some(Held {
                            expires_at: Some(sent + lease.ttl),
                            renewable: lease.renewable,
                            expected: lease.ttl,
                        });
                        // As for a token: no renewal right after the read.
                        let unit = self.unit();
                        let next = schedule::after_login(lease.ttl, lease.renewable, unit);
                        self.plan_secret(index, sent, next, now);
                    }
                    None => {
                        s.lease = None;
                        self.plan_secret(index, sent, Next::Hold, now);
                    }
                }
            }
            Err(f) => self.secret_failed(now, index, f, false),
        }
    }

    pub(super) fn lease_renewed(
        &mut self,
        now: Instant,
        index: usize,
        sent: Instant,
        result: Result<Grant, Failure>,
    ) {
        let Some(lease) = self.secrets[index].lease.as_mut() else {
            self.plan_secret(index, now, Next::Relogin(Duration::ZERO), now);
            return;
        };
        match result {
            Ok(g) => {
                let capped = g.ttl < lease.expected || g.capped_warning;
                lease.expires_at = (!g.ttl.is_zero()).then(|| sent + g.ttl);
                lease.renewable = g.renewable;
                let expected = lease.expected;
                self.secrets[index].backoff.reset();
                let unit = self.unit();
                // Capped or not renewable: new credentials before the lease's max TTL.
                let next = schedule::after_renewal(g.ttl, expected, capped, g.renewable, unit);
                if capped {
                    info!(secret = index, ttl = %human(g.ttl), "lease at its max TTL; new credentials will be read before it expires");
                }
                self.plan_secret(index, sent, next, now);
            }
            Err(f) if f.kind == FailureKind::Transient => self.secret_failed(now, index, f, true),
            Err(f) => {
                // The lease is gone (expired, revoked, not renewable): new credentials now.
                warn!(error = %f.message, "lease not renewed; reading new credentials");
                let s = &mut self.secrets[index];
                s.lease = None;
                s.renew = false;
                s.due = Some(now);
            }
        }
    }

    /// A read or renewal of secret `index` failed: retry (the renewal, while the lease lasts
    /// and the failure is transient; otherwise a read) on the backoff, before the lease expires.
    pub(super) fn secret_failed(
        &mut self,
        now: Instant,
        index: usize,
        f: Failure,
        renew_again: bool,
    ) {
        let u1 = self.unit();
        let u2 = self.unit();
        let max = self.settings.max_backoff;
        let s = &mut self.secrets[index];
        let delay = schedule::honour_retry_after(s.backoff.next_delay_with(u1), f.retry_after, max);
        let remaining = s.lease.map(|l| l.remaining(now));
        let (renew, delay) = match remaining.map(|r| schedule::retry_before_expiry(delay, r, u2)) {
            Some(Some(d)) => (renew_again, d),
            Some(None) => {
                s.lease = None;
                (false, delay)
            }
            None => (false, delay),
        };
        warn!(error = %f.message, retry_in = %human(delay), "secret not read; its file keeps the last good content");
        s.renew = renew;
        s.due = Some(now + delay);
        self.last_error = Some(f.message);
    }
}
