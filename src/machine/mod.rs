//! The token loop's decisions as one deterministic state machine, in the style of `quinn-proto`.
//!
//! The machine does no I/O and never reads the clock. The driver (the `agent` module) hands it
//! `now` with every [`Event`] (a login or renewal result, a file write's outcome, a file change,
//! a signal) and with every [`Machine::handle_timeout`]; it answers with [`Action`]s to perform
//! ([`Machine::poll_action`]) and the instant it next wants to be woken
//! ([`Machine::poll_timeout`]). Randomness (jitter) comes from a seed given at construction, so
//! a run is reproducible: the property tests and the benchmark's simulated days drive this same
//! machine with a model of Vault in virtual time.
//!
//! Contract with the driver:
//! - at most one request (login or renewal) is in flight; a new request action replaces the
//!   one in flight (drop it: its result must not be fed back);
//! - a [`Action::Write { restore: false }`]'s outcome is fed back with [`Event::Written`] or
//!   [`Event::WriteFailed`]; the machine asks for one write at a time;
//! - a request's `sent` is the instant it was sent: a token's expiry counts from then, so a
//!   slow answer never makes a token look longer-lived than it is;
//! - a login's token waits in the driver until [`Action::Take`] makes it the held one (a late
//!   answer's token may stay there until `lookup-self` shows it alive, or be
//!   [`Action::Discard`]ed);
//! - after [`Action::Exit`] nothing more is asked.
//!
//! A late answer (one that took more than [`schedule::LATE_SHARE`] of the TTL it grants) is
//! used, not thrown away: Vault issued or renewed the token somewhere between the sending and
//! the answer, so counting from the sending may call a live token dead and log in again for
//! nothing, orphaning it. Its real remaining life is asked with one `lookup-self` first.

pub mod backoff;
pub mod cert_lane;
pub mod events;
pub mod failure;
mod lane;
pub mod said;
pub mod schedule;
pub mod secret_lane;
mod timer;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use tracing::{error, info, warn};

use crate::duration::brief;
use crate::machine::backoff::{Backoff, Jitter};
use crate::machine::cert_lane::{CertLane, CertSettings};
use crate::machine::events::CertGrant;
use crate::machine::events::{
    Action, Event, Exit, Goal, Grant, Hook, Settings, Step, REVOKE_GRACE, WRITE_RETRY_FLOOR,
};
use crate::machine::failure::{Failure, FailureKind};
use crate::machine::secret_lane::{Outcome, SecretLane};
use said::Said;
use schedule::{Lifetime, Next};
use timer::{Timer, TimerTable};

/// The request in flight.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Request {
    Login,
    Renew,
    Lookup,
    Adopt,
}

/// A token whose answer came late, until `lookup-self` says how long it really has.
#[derive(Clone, Copy, Debug)]
struct Unsure {
    /// Whether it is still the driver's fresh login token, not taken: the held token is live
    /// and stays in the file until this one proves alive.
    fresh: bool,
    /// What the late answer granted.
    grant: Grant,
    /// When the late request was sent: its life counted from then is the lower bound.
    sent: Instant,
    /// Whether a login gave it (else a renewal): which plan follows.
    login: bool,
    /// Whether the renewal was capped at the max TTL.
    capped: bool,
}

/// Where the run is: each phase says which events still count and what ends it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Keeping a token (and the secrets and certificates) valid.
    Running,
    /// `--once`: everything is written and the hooks run; their end is the run's.
    AwaitingHooks,
    /// Shutting down: only the revocation and a discard in flight are waited for, until
    /// [`Timer::Exit`] at the latest; the run then ends with [`Exit::Done`].
    Exiting {
        /// Whether the revocation on exit is in flight.
        revoking: bool,
    },
    /// The run has ended: [`Action::Exit`] was asked for, nothing more is.
    Finished,
}

/// The token loop's state and rules. See the module documentation for the driver's contract.
#[derive(Debug)]
pub struct Machine {
    settings: Settings,
    rng: Jitter,
    started: Instant,
    backoff: Backoff,
    held: Option<Lifetime>,
    /// The next step ([`Timer::Step`] says when).
    step: Step,
    /// When each thing the machine waits for is due.
    timers: TimerTable,
    in_flight: Option<Request>,
    /// Whether the last login failed (a JWT change then retries at once).
    login_failing: bool,
    /// Whether the JWT changed while a login was in flight.
    jwt_changed_in_flight: bool,
    /// The renewal a SIGHUP's login pre-empted: if that login keeps failing, the held token goes
    /// back to its renewals then, instead of being left to expire while logins are retried.
    resume: Option<Instant>,
    /// Whether the file is known to hold the held token.
    file_current: bool,
    /// The new token's hooks, waiting for its first successful write.
    unhooked: bool,
    attempts: u32,
    last_error: Option<String>,
    /// The token's failures as the log says them: a repeat is counted, not said in full again.
    said: Said,
    /// Where the run is.
    phase: Phase,
    /// A fresh token's [`Action::Discard`] is in flight: exiting waits for it too.
    discarding: bool,
    /// An [`Action::Write { restore: false }`] is in flight, and whether another was needed meanwhile: one write
    /// at a time (see [`Machine::write`]).
    writing: bool,
    write_again: bool,
    /// The file was found missing or changed since the token was taken: the next write
    /// restores it.
    restore: bool,
    /// Whether the token file's directory is watched ([`Event::TokenWatched`]).
    token_watched: bool,
    /// The token whose answer came late, until its life is known.
    unsure: Option<Unsure>,
    actions: VecDeque<Action>,
    /// The secrets' lane: one read or lease renewal at a time, beside the token's request.
    secrets: SecretLane,
    /// Hooks owed once the current batch of file changes is complete.
    owed: Option<Hook>,
    /// The certificates' lane: one issue at a time, once per certificate lifetime.
    certs: CertLane,
}

impl Machine {
    /// A machine that starts by logging in at `now`; `seed` drives all jitter.
    pub fn new(settings: Settings, now: Instant, seed: u64) -> Machine {
        // A sidecar restarted in the same pod first looks at the token its predecessor left.
        let first = match settings.goal {
            Goal::Sidecar if settings.adopt => Step::Adopt,
            _ => Step::Login,
        };
        let mut timers = TimerTable::default();
        timers.set(Timer::Step, now);
        if let Goal::Once { timeout } = settings.goal {
            timers.set(Timer::GiveUp, now + timeout);
        }
        Machine {
            secrets: SecretLane::new(&settings),
            certs: CertLane::new(&settings, &CertSettings::default()),
            owed: None,
            backoff: Backoff::new(settings.min_backoff, settings.max_backoff),
            settings,
            rng: Jitter::new(seed),
            started: now,
            held: None,
            step: first,
            timers,
            in_flight: None,
            login_failing: false,
            jwt_changed_in_flight: false,
            resume: None,
            file_current: false,
            unhooked: false,
            attempts: 0,
            last_error: None,
            said: Said::default(),
            phase: Phase::Running,
            discarding: false,
            writing: false,
            write_again: false,
            restore: false,
            token_watched: true,
            unsure: None,
            actions: VecDeque::new(),
        }
    }

    /// The same machine keeping `certs` too (none by default).
    pub fn with_certs(mut self, certs: &CertSettings) -> Machine {
        self.certs = CertLane::new(&self.settings, certs);
        self
    }

    /// Keeps certificate `index` that a previous run published (the driver checked it): issued
    /// at `start`, expiring at `end`; it is renewed on its schedule, not at the next token.
    pub fn adopt_cert(&mut self, index: usize, start: Instant, end: Instant) {
        self.certs.adopt(index, start, end, &mut self.rng);
        self.arm_lanes();
    }

    /// A certificate found while running (a template's `pkiCert` inside a block that waited
    /// for another read), issued as soon as a token is there; its index is the next one.
    pub fn add_cert(&mut self, now: Instant) -> usize {
        self.certs.add(now)
    }

    /// When certificate `index`'s published life ends, if one is published.
    pub fn cert_expiry(&self, index: usize) -> Option<Instant> {
        self.certs.expiry(index)
    }

    /// When certificate `index` is next issued, if planned.
    pub fn cert_due(&self, index: usize) -> Option<Instant> {
        self.certs.due(index)
    }

    /// The next thing to do, if any.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When to call [`Machine::handle_timeout`] next (None: only events can wake it).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    /// Re-arms the lanes' timers after an input: each lane keeps its secrets' or certificates'
    /// own times, the table their earliest, while a written token is there to read with.
    fn arm_lanes(&mut self) {
        if !matches!(self.phase, Phase::Running | Phase::AwaitingHooks) {
            return;
        }
        let current = self.file_current;
        let secrets = self.secrets.next_due().filter(|_| current);
        self.timers.arm(Timer::Secrets, secrets);
        self.timers
            .arm(Timer::Certs, self.certs.next_due().filter(|_| current));
    }

    /// A secret found while running (a template's read that depends on another's answer),
    /// read as soon as a token is there; its index is the next one.
    pub fn add_secret(&mut self, now: Instant, name: String) -> usize {
        let index = self.secrets.add(now, name);
        self.arm_lanes();
        index
    }

    /// Secret `index` is used by nothing any more (`used` false: no more reads or renewals,
    /// [`SecretLane::retire`]), or a retired one is used again (read as soon as a token is
    /// there). One method for both: one inlined copy of the lanes' re-arming, not two.
    pub fn secret_used(&mut self, now: Instant, index: usize, used: bool) {
        if used {
            self.secrets.revive(now, index);
        } else {
            self.secrets.retire(index);
        }
        self.arm_lanes();
    }

    /// Whether every secret's file has been written.
    pub fn secrets_written(&self) -> bool {
        self.secrets.all_written()
    }

    /// The next step and when it is due, for logs ("renew in 42m"); `None` while its request
    /// is in flight, or for a token that never expires.
    pub fn next_step(&self) -> (Step, Option<Instant>) {
        (self.step, self.timers.get(Timer::Step))
    }

    /// The held token's life as the machine counts it (from the request's sending, a lower
    /// bound): `None` without a token, `Some(None)` for one that never expires. Health and
    /// metrics show this, so `/readyz` never outlives what the machine plans with.
    pub fn token_expiry(&self) -> Option<Option<Instant>> {
        self.held.map(|h| h.expires_at)
    }

    /// Whether a token is held that Vault still accepts at `now`, as far as the machine knows:
    /// a token taken from a late answer counts as live until `lookup-self` says otherwise.
    pub fn holds_live_token(&self, now: Instant) -> bool {
        self.held.is_some_and(|h| h.live(now)) || self.unsure.is_some_and(|u| !u.fresh)
    }

    /// Whether the last login's answer came late and Vault is being asked its token's
    /// remaining life (`lookup-self`) before it is planned with; until then a live token held
    /// before stays in the file.
    pub fn login_answered_late(&self) -> bool {
        self.unsure.is_some_and(|u| u.login)
    }

    /// Whether the run has ended.
    pub fn is_finished(&self) -> bool {
        self.phase == Phase::Finished
    }

    fn deadline(&self) -> Option<Instant> {
        match self.settings.goal {
            Goal::Once { timeout } => Some(self.started + timeout),
            Goal::Sidecar => None,
        }
    }

    fn once(&self) -> bool {
        matches!(self.settings.goal, Goal::Once { .. })
    }

    /// Time has reached [`Machine::poll_timeout`]: the timers due by `now` fire, in
    /// `Timer::ALL`'s order.
    pub fn handle_timeout(&mut self, now: Instant) {
        // Without a watch on its directory, the token file is checked at every wake-up
        // instead (the write checks the content first, so an intact file is not rewritten).
        if !self.token_watched && !self.once() {
            self.file_changed(now);
        }
        for timer in Timer::ALL {
            // Checked one by one: a timer that fires may arm a later one for `now`.
            if self.timers.expire(timer, now) {
                self.fire(now, timer);
            }
        }
        if matches!(self.phase, Phase::Running | Phase::AwaitingHooks) {
            self.start_secret(now);
            self.settle_hooks(now);
            self.arm_lanes();
        }
    }

    /// `timer` fired at `now`.
    fn fire(&mut self, now: Instant, timer: Timer) {
        match timer {
            Timer::Exit => {
                warn!("token revocation did not finish in time; exiting");
                self.exit(Exit::Done);
            }
            Timer::GiveUp => {
                let last = self
                    .last_error
                    .clone()
                    .unwrap_or_else(|| "no attempt finished before the deadline".to_string());
                self.exit(Exit::GaveUp {
                    attempts: self.attempts,
                    elapsed: now.saturating_duration_since(self.started),
                    last,
                });
            }
            Timer::WriteRetry => {
                if self.holds_live_token(now) {
                    self.write();
                } else if self.once() {
                    // The token expired before the volume took it: a new one is needed.
                    self.plan(Step::Login, Some(now));
                }
            }
            Timer::Step => self.start(now),
            // Started after the other timers with any work the lanes have due.
            Timer::Secrets | Timer::Certs => {}
        }
    }

    /// Something happened at `now`.
    pub fn handle(&mut self, now: Instant, event: Event) {
        self.deliver(now, event);
        self.arm_lanes();
    }

    fn deliver(&mut self, now: Instant, event: Event) {
        match event {
            _ if self.phase == Phase::Finished => {}
            Event::Shutdown => self.shutdown(now),
            Event::Revoked => {
                if let Phase::Exiting { revoking, .. } = &mut self.phase {
                    *revoking = false;
                }
                self.exit_when_settled();
            }
            Event::Discarded => {
                self.discarding = false;
                self.exit_when_settled();
            }
            _ if matches!(self.phase, Phase::Exiting { .. }) => {}
            Event::LoginDone { sent, result } => self.login_done(now, sent, result),
            Event::Adopted { sent, found } => {
                if self.in_flight == Some(Request::Adopt) {
                    self.in_flight = None;
                    match found {
                        Some(a) => self.adopt(sent, a.grant, a.expected),
                        None => self.plan(Step::Login, Some(now)),
                    }
                }
            }
            Event::RenewDone { sent, result } => {
                if self.in_flight == Some(Request::Renew) {
                    self.in_flight = None;
                    match result {
                        Ok(grant) => self.renewed(now, sent, grant),
                        Err(f) => self.renewal_failed(now, f),
                    }
                }
            }
            Event::LookedUp { sent, result } => {
                if self.in_flight == Some(Request::Lookup) {
                    self.in_flight = None;
                    self.looked_up(now, sent, result);
                }
            }
            Event::SecretRead {
                index,
                sent,
                result,
            } => self.secret_done(now, index, |lane, rng| {
                lane.read(now, index, sent, result, rng)
            }),
            Event::LeaseRenewed {
                index,
                sent,
                result,
            } => self.secret_done(now, index, |lane, rng| {
                lane.lease_renewed(now, index, sent, result, rng)
            }),
            Event::CertIssued {
                index,
                sent,
                result,
            } => self.cert_done(now, index, sent, result),
            Event::Written if std::mem::take(&mut self.write_again) => {
                // What landed is already old (a newer token was taken meanwhile): the file is
                // not current and the new token's hooks wait for its own write.
                self.writing = false;
                self.write();
            }
            Event::Written => {
                self.writing = false;
                self.written(now);
                self.start_secret(now);
                self.settle_hooks(now);
            }
            Event::WriteFailed(message) => {
                self.writing = false;
                self.write_failed(now, message);
                if std::mem::take(&mut self.write_again) {
                    self.write();
                }
            }
            Event::HooksDone => {
                if self.phase == Phase::AwaitingHooks {
                    self.exit(Exit::Done);
                }
            }
            Event::JwtChanged => self.jwt_changed(now),
            Event::TokenFileChanged => self.file_changed(now),
            Event::TokenWatched(watched) => self.token_watched = watched,
            Event::Relogin => self.relogin(now),
        }
    }

    /// The login in flight was answered.
    fn login_done(&mut self, now: Instant, sent: Instant, result: Result<Grant, Failure>) {
        if self.in_flight != Some(Request::Login) {
            return;
        }
        self.in_flight = None;
        let jwt_changed = std::mem::take(&mut self.jwt_changed_in_flight);
        match result {
            Err(f) if jwt_changed && !f.kind.is_transient() => {
                // The retry below is still the SIGHUP's, if it was one.
                let resume = self.resume.take();
                self.login_failed(now, f);
                self.resume = resume;
                info!("service-account JWT changed during the login: retrying now");
                self.plan(Step::Login, Some(now));
            }
            Ok(grant) => self.login_answered(now, sent, grant),
            Err(f) => self.login_failed(now, f),
        }
    }

    /// The secrets' lane's request for `index` was answered; `apply` hands it to the lane.
    fn secret_done(
        &mut self,
        now: Instant,
        index: usize,
        apply: impl FnOnce(&mut SecretLane, &mut Jitter) -> Outcome,
    ) {
        if self.secrets.finish(index) {
            let outcome = apply(&mut self.secrets, &mut self.rng);
            self.absorb(now, outcome);
            self.start_secret(now);
            self.settle_hooks(now);
        }
    }

    /// Certificate `index`'s issue was answered.
    fn cert_done(
        &mut self,
        now: Instant,
        index: usize,
        sent: Instant,
        result: Result<CertGrant, Failure>,
    ) {
        if self.certs.finish(index) {
            let outcome = self.certs.issued(now, index, sent, result, &mut self.rng);
            self.absorb(now, outcome);
            self.start_secret(now);
            self.settle_hooks(now);
        }
    }

    fn jwt_changed(&mut self, now: Instant) {
        if self.in_flight == Some(Request::Login) {
            // The login in flight may have read the old JWT (the kubelet writes the new one in
            // several steps): if it fails, retry at once rather than back off.
            self.jwt_changed_in_flight = true;
        } else if self.login_failing && self.step == Step::Login && self.in_flight.is_none() {
            info!("service-account JWT changed: retrying the login now");
            self.timers.set(Timer::Step, now);
        }
    }

    /// SIGHUP: abandon what is in flight and log in now.
    fn relogin(&mut self, now: Instant) {
        if self.phase == Phase::AwaitingHooks {
            return;
        }
        match self.in_flight {
            Some(_) => info!("SIGHUP: abandoning the request in flight and logging in again now"),
            None => info!("SIGHUP: logging in again now"),
        }
        self.in_flight = None;
        self.drop_unsure();
        self.backoff.reset();
        // (A second SIGHUP during the first one's login keeps the first's renewal.)
        if self.step == Step::Renew && self.held.is_some_and(|h| h.renewable) {
            // A renewal in flight (its timer stopped) was due already.
            self.resume = Some(self.timers.get(Timer::Step).unwrap_or(now));
        }
        self.plan(Step::Login, Some(now));
        self.start(now);
    }

    fn shutdown(&mut self, now: Instant) {
        if let Phase::Exiting { .. } = self.phase {
            // A second signal while revoking: go now.
            self.exit(Exit::Done);
            return;
        }
        self.in_flight = None;
        if self.once() {
            self.exit(Exit::Interrupted);
            return;
        }
        info!("shutting down");
        self.drop_unsure();
        let deadline = now + REVOKE_GRACE;
        let revoking = self.settings.revoke_on_exit;
        if revoking {
            self.actions.push_back(Action::Revoke {
                token: self.holds_live_token(now),
                deadline,
            });
        }
        // Nothing else is waited for now.
        self.timers.stop_all();
        self.timers.set(Timer::Exit, deadline);
        self.phase = Phase::Exiting { revoking };
        self.exit_when_settled();
    }

    /// Exits once shutting down and neither the revocation nor a discard is still in flight.
    fn exit_when_settled(&mut self) {
        if let Phase::Exiting {
            revoking: false, ..
        } = self.phase
        {
            if !self.discarding {
                self.exit(Exit::Done);
            }
        }
    }

    /// Forgets the token whose life was being looked up (SIGHUP, shutdown): one not taken yet
    /// was never written, so no one else has it and it is revoked rather than left to expire.
    fn drop_unsure(&mut self) {
        if let Some(u) = self.unsure.take() {
            if u.fresh {
                self.discarding = true;
                self.actions.push_back(Action::Discard);
            }
        }
    }

    fn exit(&mut self, exit: Exit) {
        self.phase = Phase::Finished;
        self.timers.stop_all();
        self.in_flight = None;
        self.actions.push_back(Action::Exit(exit));
    }

    /// Plans `step` at `at` (None: not on a timer).
    fn plan(&mut self, step: Step, at: Option<Instant>) {
        debug_assert!(
            at.is_none() || self.in_flight.is_none(),
            "a step is planned only once its request is answered"
        );
        self.step = step;
        self.timers.arm(Timer::Step, at);
    }

    fn plan_next(&mut self, base: Instant, next: Next) {
        match next {
            Next::Renew(d) => self.plan(Step::Renew, Some(base + d)),
            Next::Relogin(d) => self.plan(Step::Login, Some(base + d)),
            Next::Hold => self.plan(Step::Nothing, None),
        }
    }

    /// Holds the token a previous run left in the file (checked by the driver with
    /// `lookup-self`, `sent` when that was sent) instead of logging in: it is in the file and the
    /// app has it, so nothing is written and no new-token hooks run (the info file is refreshed);
    /// renewals follow its schedule and every secret is read again.
    fn adopt(&mut self, sent: Instant, grant: Grant, expected: Duration) {
        self.held = Some(Lifetime {
            expected,
            ..Lifetime::granted(sent, grant.ttl, grant.renewable)
        });
        self.file_current = true;
        let unit = self.unit();
        self.plan_next(
            sent,
            schedule::after_login(grant.ttl, grant.renewable, unit),
        );
        self.actions.push_back(Action::RunHooks(Hook::Renewed));
        self.secrets.read_all(sent);
        self.certs.token_ready(sent);
    }

    /// Starts the due step.
    fn start(&mut self, now: Instant) {
        self.timers.stop(Timer::Step);
        match (self.step, self.held) {
            (Step::Nothing, _) => {}
            (Step::Lookup, _) if self.unsure.is_some() => self.look_up(now),
            (Step::Adopt, _) => {
                self.in_flight = Some(Request::Adopt);
                self.actions.push_back(Action::Adopt);
            }
            (Step::Renew, Some(h)) if h.live(now) => {
                self.in_flight = Some(Request::Renew);
                self.actions.push_back(Action::Renew {
                    increment: self.settings.renew_increment,
                    deadline: h.expires_at,
                });
            }
            _ => {
                self.step = Step::Login;
                self.in_flight = Some(Request::Login);
                self.jwt_changed_in_flight = false;
                self.attempts = self.attempts.saturating_add(1);
                // Not cut at the held token's expiry: a login does not need it, and an answer
                // just after that expiry is still the quickest way to a valid token.
                self.actions.push_back(Action::Login {
                    deadline: self.deadline(),
                });
            }
        }
    }

    fn unit(&mut self) -> f64 {
        self.rng.unit()
    }

    fn next_backoff(&mut self, retry_after: Option<Duration>) -> Duration {
        let unit = self.unit();
        let d = self.backoff.next_delay_with(unit);
        schedule::honour_retry_after(d, retry_after, self.settings.max_backoff)
    }

    /// The wait before retrying after `f` while no valid token is held: a pod without one is
    /// broken for its app, so the waits are capped at the short recovery backoff (drawn over
    /// its whole window, so a fleet comes back spread out), unless Vault said it is busy or
    /// sealed: then the long backoff, and no sooner than its `Retry-After`.
    fn recovery_delay(&mut self, f: &Failure) -> Duration {
        let unit = self.unit();
        let d = match f.kind {
            FailureKind::Busy => self.backoff.next_delay_with(unit),
            FailureKind::Transient
            | FailureKind::Denied
            | FailureKind::NotRenewable
            | FailureKind::Expired
            | FailureKind::JwtMissing
            | FailureKind::Other => self
                .backoff
                .next_delay_within(unit, self.settings.recovery_backoff),
        };
        schedule::honour_retry_after(d, f.retry_after, self.settings.max_backoff)
    }

    /// The login's token becomes the held one, its life counted from `sent` (only a lower
    /// bound when the answer came late), and is written; its hooks run once the write lands.
    fn take(&mut self, sent: Instant, grant: Grant) {
        self.held = Some(Lifetime::granted(sent, grant.ttl, grant.renewable));
        self.file_current = false;
        self.timers.stop(Timer::WriteRetry);
        self.unhooked = true;
        // A change seen before this token's first write was our own previous write.
        self.restore = false;
        self.actions.push_back(Action::Take);
        self.write();
    }

    /// Asks for the token file's write, one at a time: two on blocking threads would race
    /// each other's renames (and each other's inotify events). A write needed while one is in
    /// flight is asked for once that one's outcome is in, and writes the token held then.
    fn write(&mut self) {
        if self.writing {
            self.write_again = true;
        } else {
            self.writing = true;
            let restore = std::mem::take(&mut self.restore);
            self.actions.push_back(Action::Write { restore });
        }
    }

    /// The token file may have been replaced or removed: put the token back, unless it is
    /// already gone (an expired token is worse than none) or we are about to exit.
    fn file_changed(&mut self, now: Instant) {
        if self.phase == Phase::Running && self.holds_live_token(now) {
            self.file_current = false;
            self.restore = true;
            self.write();
        }
    }

    /// A login answered with a token: taken at once, unless the answer came late.
    fn login_answered(&mut self, now: Instant, sent: Instant, grant: Grant) {
        let took = now.saturating_duration_since(sent);
        if self.once() || !schedule::answered_late(took, grant.ttl) {
            self.logged_in(sent, grant);
            return;
        }
        self.login_failing = false;
        self.resume = None;
        self.backoff.reset();
        self.last_error = None;
        // The held token, while live, stays in the file until the new one proves alive: a
        // token issued longer ago than its TTL may already be gone. (The driver's login line
        // says it came late: [`Machine::login_answered_late`].)
        let fresh = self.holds_live_token(now);
        if !fresh {
            self.take(sent, grant);
        }
        self.unsure = Some(Unsure {
            fresh,
            grant,
            sent,
            login: true,
            capped: false,
        });
        self.look_up(now);
    }

    fn logged_in(&mut self, sent: Instant, grant: Grant) {
        self.said.clear();
        self.login_failing = false;
        self.resume = None;
        self.backoff.reset();
        self.last_error = None;
        self.take(sent, grant);
        if self.once() {
            self.plan(Step::Nothing, None);
        } else {
            // Unlike Vault Agent, no renewal right after the login: the token has its full TTL.
            let unit = self.unit();
            self.plan_next(
                sent,
                schedule::after_login(grant.ttl, grant.renewable, unit),
            );
        }
    }

    /// Sends the `lookup-self` of the token whose answer came late.
    fn look_up(&mut self, now: Instant) {
        let Some(u) = self.unsure.as_mut() else {
            return;
        };
        let fresh = u.fresh;
        let (sent, grant) = (u.sent, u.grant);
        if fresh && !self.held.is_some_and(|h| h.live(now)) {
            // The held token ran out while Vault did not answer: the new one is the best there is.
            if let Some(u) = self.unsure.as_mut() {
                u.fresh = false;
            }
            self.take(sent, grant);
        }
        let fresh = self.unsure.is_some_and(|u| u.fresh);
        // A fresh token's lookup is not waited for past the held token's expiry: then the new
        // one is taken as it is.
        let deadline = self.held.and_then(|h| h.expires_at).filter(|_| fresh);
        self.plan(Step::Lookup, None);
        self.in_flight = Some(Request::Lookup);
        self.actions
            .push_back(Action::LookupSelf { fresh, deadline });
    }

    /// What `lookup-self` said of the token whose answer came late (sent at `sent`).
    fn looked_up(&mut self, now: Instant, sent: Instant, result: Result<Grant, Failure>) {
        let Some(u) = self.unsure else {
            // Nothing to look up (not expected): a login is the way to a token.
            return self.plan(Step::Login, Some(now));
        };
        match result {
            // A token that expires and has under a second left is as good as gone.
            Ok(g) if !g.ttl.is_zero() || u.grant.ttl.is_zero() => {
                self.unsure = None;
                self.backoff.reset();
                self.last_error = None;
                if u.fresh {
                    self.take(u.sent, u.grant);
                }
                let Some(h) = self.held.as_mut() else {
                    return self.plan(Step::Login, Some(now));
                };
                // Both are lower bounds of the expiry; the lookup's is the later one unless
                // Vault's rounding says otherwise.
                let expires_at =
                    (!g.ttl.is_zero()).then(|| (sent + g.ttl).max(u.sent + u.grant.ttl));
                h.expires_at = expires_at;
                h.renewable = g.renewable;
                let expected = h.expected;
                let left = expires_at.map_or(Duration::ZERO, |at| at - sent);
                let unit = self.unit();
                let next = if u.login {
                    schedule::after_login(left, g.renewable, unit)
                } else {
                    schedule::after_renewal(left, expected, u.capped, g.renewable, unit)
                };
                self.plan_next(sent, next);
                let (next, next_in) = self.next_fields(now);
                info!(ttl = %brief(left), next, next_in, "Vault confirmed the token's remaining life");
                if !u.login {
                    self.actions.push_back(Action::RunHooks(Hook::Renewed));
                }
            }
            Ok(_) => {
                // Under a second left (Vault counts whole seconds): too little to use, but
                // still alive, so an unused one is revoked rather than left behind.
                let f = Failure::new(FailureKind::Expired, "lookup-self: under a second left");
                self.unsure_is_gone(now, u, f, true)
            }
            Err(f) if f.kind == FailureKind::Denied => self.unsure_is_gone(now, u, f, false),
            Err(f) if f.kind.is_transient() => {
                // Its life is unknown, not over: ask again, before the held token (if the new
                // one is not taken yet) runs out.
                let (delay, held_left) = match self.held.filter(|_| u.fresh) {
                    Some(h) => (self.next_backoff(f.retry_after), Some(h.remaining(now))),
                    None => (self.recovery_delay(&f), None),
                };
                let unit = self.unit();
                let d = match held_left {
                    Some(left) => {
                        schedule::retry_before_expiry(delay, left, unit).unwrap_or_default()
                    }
                    None => delay,
                };
                warn!(error = %f.message, retry_in = %brief(d), next = "lookup", "cannot ask Vault for the new token's remaining life; asking again");
                self.last_error = Some(f.message);
                self.plan(Step::Lookup, Some(now + d));
            }
            Err(f) => {
                // Vault cannot say (an odd answer): count the life from the sending, as for
                // any answer, and plan on that.
                warn!(error = %f.message, "lookup-self failed; counting the token's life from its request");
                self.unsure = None;
                if u.fresh {
                    if u.sent + u.grant.ttl > now {
                        self.take(u.sent, u.grant);
                    } else {
                        self.discarding = true;
                        self.actions.push_back(Action::Discard);
                        self.login_failed(now, f);
                        return;
                    }
                }
                let unit = self.unit();
                let next = if u.login {
                    schedule::after_login(u.grant.ttl, u.grant.renewable, unit)
                } else {
                    let expected = self.held.map_or(u.grant.ttl, |h| h.expected);
                    schedule::after_renewal(
                        u.grant.ttl,
                        expected,
                        u.capped,
                        u.grant.renewable,
                        unit,
                    )
                };
                self.plan_next(u.sent, next);
            }
        }
    }

    /// Vault says the token whose answer came late is gone (or about to be: `alive`): a fresh
    /// one is dropped (the login it was for is still owed, the held token stays); a taken one
    /// is replaced now.
    fn unsure_is_gone(&mut self, now: Instant, u: Unsure, f: Failure, alive: bool) {
        self.unsure = None;
        if u.fresh {
            if alive {
                self.discarding = true;
                self.actions.push_back(Action::Discard);
            }
            warn!(error = %f.message, "the late login's token is no longer valid; the current token stays in the file");
            self.login_failed(now, f);
        } else {
            warn!(error = %f.message, next = "login", "the token that came late is no longer valid; logging in again now");
            self.held = None;
            self.plan(Step::Login, Some(now));
            self.start(now);
        }
    }

    fn login_failed(&mut self, now: Instant, f: Failure) {
        // A failure repeated on every retry is said in full once, then counted.
        let error = self.said.say(&f.message).into_owned();
        if self.deadline().is_some_and(|d| d <= now) && self.last_error.is_some() {
            // A login cut at --once's deadline says less than the failure before it, which the
            // run now ends with.
            return;
        }
        self.login_failing = true;
        if f.kind == FailureKind::JwtMissing {
            self.actions.push_back(Action::WatchJwt);
        }
        let delay = if self.holds_live_token(now) {
            self.next_backoff(f.retry_after)
        } else {
            self.recovery_delay(&f)
        };
        if let Some(at) = self.resume.filter(|_| self.holds_live_token(now)) {
            // The token in the file is fine: retry the login the operator asked for until the
            // token's planned renewal, then keep renewing it rather than let it run out.
            self.last_error = Some(f.message.clone());
            if now + delay < at {
                warn!(error = %error, retry_in = %brief(delay), "SIGHUP's login failed; retrying it (the current token stays in the file)");
                self.plan(Step::Login, Some(now + delay));
            } else {
                self.resume = None;
                let at = at.max(now);
                warn!(error = %error, renew_in = %brief(at - now), "SIGHUP's login failed; keeping the current token and renewing it as planned (send SIGHUP to try again)");
                self.plan(Step::Renew, Some(at));
            }
            return;
        }
        self.resume = None;
        let delay = match self.held.map(|h| h.remaining(now)) {
            Some(remaining) if !self.once() => {
                let unit = self.unit();
                match schedule::retry_before_expiry(delay, remaining, unit) {
                    Some(d) => {
                        warn!(error = %error, retry_in = %brief(d), token_valid_for = %brief(remaining), "login failed; the current token stays in the file");
                        d
                    }
                    None => {
                        self.held = None;
                        self.backoff.restart_after_expiry();
                        let d = self.recovery_delay(&f);
                        error!(error = %error, retry_in = %brief(d), next = "login", "login failed and the previous token has expired");
                        d
                    }
                }
            }
            _ => {
                match self.deadline() {
                    Some(deadline) => {
                        let left = deadline.saturating_duration_since(now);
                        warn!(error = %error, retry_in = %brief(delay.min(left)), gives_up_in = %brief(left), "login failed");
                    }
                    None => warn!(error = %error, retry_in = %brief(delay), "login failed"),
                }
                delay
            }
        };
        self.last_error = Some(f.message);
        self.plan(Step::Login, Some(now + delay));
    }

    fn renewed(&mut self, now: Instant, sent: Instant, grant: Grant) {
        self.said.clear();
        let Some(h) = self.held.as_mut() else {
            // No token to have renewed (not expected): a login is the way to one.
            return self.plan(Step::Login, Some(now));
        };
        self.backoff.reset();
        let expected = match self.settings.renew_increment {
            Some(inc) => inc.min(h.expected),
            None => h.expected,
        };
        let capped = grant.ttl < expected || grant.capped_warning;
        h.renewable = grant.renewable;
        h.expires_at = (!grant.ttl.is_zero()).then(|| sent + grant.ttl);
        let renewable = h.renewable;
        let took = now.saturating_duration_since(sent);
        // A capped renewal's expiry is the max TTL's, wherever Vault renewed it in the wait:
        // nothing to ask, and no time to lose asking.
        if !capped && schedule::answered_late(took, grant.ttl) {
            info!(took = %brief(took), ttl = %brief(grant.ttl), next = "lookup", "renewal answered late; asking Vault for the token's remaining life");
            self.unsure = Some(Unsure {
                fresh: false,
                grant,
                sent,
                login: false,
                capped,
            });
            self.look_up(now);
            return;
        }
        let unit = self.unit();
        let next = schedule::after_renewal(grant.ttl, expected, capped, renewable, unit);
        self.plan_next(sent, next);
        if capped {
            info!(ttl = %brief(grant.ttl), relogin_in = %next.delay().map_or_else(|| "never".into(), brief), "max TTL reached; will log in again before the token expires");
        } else {
            let (next, next_in) = self.next_fields(now);
            info!(ttl = %brief(grant.ttl), next, next_in, "token renewed");
        }
        self.actions.push_back(Action::RunHooks(Hook::Renewed));
    }

    fn renewal_failed(&mut self, now: Instant, f: Failure) {
        // A failure repeated on every retry is said in full once, then counted.
        let error = self.said.say(&f.message).into_owned();
        let Some(h) = self.held.as_mut() else {
            self.plan(Step::Login, Some(now));
            self.start(now);
            return;
        };
        let remaining = h.remaining(now);
        match f.kind {
            FailureKind::NotRenewable => {
                h.renewable = false;
                let unit = self.unit();
                let d = schedule::two_thirds(remaining, unit);
                warn!(error = %error, relogin_in = %brief(d), "token is not renewable; will log in again before it expires");
                self.plan(Step::Login, Some(now + d));
            }
            FailureKind::Transient | FailureKind::Busy => {
                let delay = self.next_backoff(f.retry_after);
                let unit = self.unit();
                match schedule::retry_before_expiry(delay, remaining, unit) {
                    Some(d) => {
                        warn!(error = %error, retry_in = %brief(d), token_valid_for = %brief(remaining), "Vault unreachable; keeping the current token and retrying the renewal");
                        self.plan(Step::Renew, Some(now + d));
                    }
                    None => {
                        self.backoff.restart_after_expiry();
                        warn!(error = %error, next = "login", "renewal failed and the token has expired; logging in again");
                        self.plan(Step::Login, Some(now));
                        self.start(now);
                    }
                }
            }
            _ => {
                warn!(error = %error, "renewal refused; logging in again now");
                self.plan(Step::Login, Some(now));
                self.start(now);
            }
        }
    }

    fn written(&mut self, now: Instant) {
        self.file_current = true;
        self.timers.stop(Timer::WriteRetry);
        if self.unhooked {
            self.unhooked = false;
            self.owed = Some(Hook::NewToken);
            self.secrets.read_all(now);
            self.certs.token_ready(now);
        }
    }

    /// Runs the hooks owed once the batch of file changes is complete: no secret read is in
    /// flight or due now, and (`--once`) every secret is written.
    fn settle_hooks(&mut self, now: Instant) {
        let Some(hook) = self.owed else {
            return;
        };
        if self.secrets.busy() || self.certs.busy() || self.phase != Phase::Running {
            return;
        }
        if self.once() {
            if self.secrets_written() && self.certs.all_published() {
                self.owed = None;
                self.phase = Phase::AwaitingHooks;
                self.actions.push_back(Action::RunHooksAndWait);
            }
            return;
        }
        // More reads of this batch still to run: wait for them.
        // (A file check in flight does not count: the token file was written once already.)
        let pending_now =
            self.holds_live_token(now) && (self.secrets.due_at(now) || self.certs.due_at(now));
        if !pending_now {
            self.owed = None;
            self.actions.push_back(Action::RunHooks(hook));
        }
    }

    /// Starts the earliest due secret read or lease renewal, when the lane is free and a live,
    /// written token is there to read with.
    fn start_secret(&mut self, now: Instant) {
        if !self.holds_live_token(now) {
            // Nothing can be read until the next token, which reads every secret again: a
            // read left due would wake the driver again at once, a busy loop.
            self.secrets.park();
            self.certs.park();
            return;
        }
        if !self.file_current {
            return;
        }
        if let Some(action) = self.secrets.start(now) {
            self.actions.push_back(action);
        }
        if let Some(action) = self.certs.start(now) {
            self.actions.push_back(action);
        }
    }

    /// Takes in what a finished secret read or lease renewal means for hooks and errors.
    fn absorb(&mut self, now: Instant, outcome: Outcome) {
        match outcome {
            Outcome::Changed => self.owed = self.owed.or(Some(Hook::SecretsChanged)),
            Outcome::Same => {}
            Outcome::Failed(message) => self.last_error = Some(message),
            Outcome::Unrendered { message, changed } => {
                if changed {
                    self.owed = self.owed.or(Some(Hook::SecretsChanged));
                }
                if self.once() {
                    // The data was read: reading it again before the deadline would render
                    // the same error, so `--once` says it now.
                    self.exit(Exit::GaveUp {
                        attempts: self.attempts,
                        elapsed: now.saturating_duration_since(self.started),
                        last: message,
                    });
                } else {
                    self.last_error = Some(message);
                }
            }
        }
    }

    fn write_failed(&mut self, now: Instant, message: String) {
        self.file_current = false;
        let wait = if self.once() {
            self.next_backoff(None)
        } else {
            self.settings.min_backoff.max(WRITE_RETRY_FLOOR)
        };
        error!(error = %message, retry_in = %brief(wait), "token file not written; keeping the token in memory and retrying the write");
        self.last_error = Some(message);
        self.timers.set(Timer::WriteRetry, now + wait);
    }

    /// What the token lane does next, for log fields: `renew`, `login`, `lookup` or `nothing` (a token
    /// that never expires), and in how long, rounded for reading.
    pub fn next_fields(&self, now: Instant) -> (&'static str, String) {
        // A step whose request is in flight is happening now.
        let due = match self.in_flight {
            Some(_) => Some(now),
            None => self.timers.get(Timer::Step),
        };
        match (self.step, due) {
            (Step::Nothing, _) | (_, None) => ("nothing", "never".to_string()),
            (Step::Renew, Some(at)) => ("renew", brief(at.saturating_duration_since(now))),
            (Step::Login, Some(at)) => ("login", brief(at.saturating_duration_since(now))),
            (Step::Lookup, Some(at)) => ("lookup", brief(at.saturating_duration_since(now))),
            (Step::Adopt, Some(at)) => ("adopt", brief(at.saturating_duration_since(now))),
        }
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::events::{Adoption, SecretGrant};

    const S: fn(u64) -> Duration = Duration::from_secs;
    const MS: fn(u64) -> Duration = Duration::from_millis;

    /// The machine's settings the tests start from (the lanes' tests too).
    pub(super) fn settings(goal: Goal) -> Settings {
        Settings {
            goal,
            min_backoff: S(1),
            max_backoff: S(300),
            recovery_backoff: S(20),
            renew_increment: None,
            revoke_on_exit: false,
            adopt: false,
            secrets: Vec::new(),
            refresh: Duration::from_secs(300),
        }
    }

    fn grant(ttl: u64, renewable: bool) -> Grant {
        Grant {
            ttl: S(ttl),
            renewable,
            capped_warning: false,
        }
    }

    fn actions(m: &mut Machine) -> Vec<Action> {
        std::iter::from_fn(|| m.poll_action()).collect()
    }

    /// Feeds `m` a login's answer at `now`, for a request sent at `sent`.
    fn login_done(m: &mut Machine, now: Instant, sent: Instant, result: Result<Grant, Failure>) {
        m.handle(now, Event::LoginDone { sent, result });
    }

    /// Feeds `m` a renewal's answer at `now`, for a request sent at `sent`.
    fn renew_done(m: &mut Machine, now: Instant, sent: Instant, result: Result<Grant, Failure>) {
        m.handle(now, Event::RenewDone { sent, result });
    }

    /// Feeds `m` secret `index`'s read at `now`, for a request sent at `sent`.
    fn secret_read(
        m: &mut Machine,
        now: Instant,
        index: usize,
        sent: Instant,
        result: Result<SecretGrant, Failure>,
    ) {
        m.handle(
            now,
            Event::SecretRead {
                index,
                sent,
                result,
            },
        );
    }

    fn transient() -> Failure {
        Failure::new(FailureKind::Transient, "connection refused")
    }

    /// A sidecar that logged in at `t0` with `ttl` and wrote its file.
    /// A sidecar whose first login's token is taken, its write in flight.
    fn taken(ttl: u64, renewable: bool, seed: u64) -> (Machine, Instant) {
        let t0 = Instant::now();
        let mut m = Machine::new(settings(Goal::Sidecar), t0, seed);
        m.handle_timeout(t0);
        assert_eq!(actions(&mut m), vec![Action::Login { deadline: None }]);
        login_done(&mut m, t0, t0, Ok(grant(ttl, renewable)));
        assert_eq!(
            actions(&mut m),
            vec![Action::Take, Action::Write { restore: false }]
        );
        (m, t0)
    }

    fn logged_in(ttl: u64, renewable: bool) -> (Machine, Instant) {
        let (mut m, t0) = taken(ttl, renewable, 7);
        m.handle(t0, Event::Written);
        assert_eq!(actions(&mut m), vec![Action::RunHooks(Hook::NewToken)]);
        (m, t0)
    }

    /// [`logged_in`], then at its first planned step (a renewal, or a login for a
    /// non-renewable token), with that step's action drained.
    fn at_first_step(ttl: u64, renewable: bool) -> (Machine, Instant, Instant) {
        let (mut m, t0) = logged_in(ttl, renewable);
        let due = m.poll_timeout().unwrap();
        m.handle_timeout(due);
        actions(&mut m);
        (m, t0, due)
    }

    #[test]
    fn a_short_grant_is_capped_even_without_a_warning() {
        let (mut m, _, due) = at_first_step(3600, true);
        renew_done(&mut m, due, due, Ok(grant(3599, true)));
        assert_eq!(
            m.next_step().0,
            Step::Login,
            "3599 s of an expected 3600 s: capped"
        );
        let (mut m, _, due) = at_first_step(3600, true);
        renew_done(&mut m, due, due, Ok(grant(7200, true)));
        assert_eq!(m.next_step().0, Step::Renew, "more than expected is fine");
    }

    #[test]
    fn login_then_renew_later_not_at_once() {
        let (mut m, t0) = logged_in(3600, true);
        let (step, due) = m.next_step();
        assert_eq!(step, Step::Renew);
        let due = due.unwrap();
        assert!(due >= t0 + S(2268) && due <= t0 + S(2772), "{:?}", due - t0);
        assert_eq!(m.poll_timeout(), Some(due));
        m.handle_timeout(due - S(1));
        assert!(actions(&mut m).is_empty(), "nothing before it is due");
        m.handle_timeout(due);
        assert_eq!(
            actions(&mut m),
            vec![Action::Renew {
                increment: None,
                deadline: Some(t0 + S(3600))
            }]
        );
    }

    #[test]
    fn expiry_counts_from_the_sent_instant() {
        let t0 = Instant::now();
        let mut m = Machine::new(settings(Goal::Sidecar), t0, 1);
        m.handle_timeout(t0);
        actions(&mut m);
        // The answer took 9 s (on time: under a tenth of the TTL): the token's life started
        // when the request left.
        login_done(&mut m, t0 + S(9), t0, Ok(grant(100, true)));
        assert_eq!(
            actions(&mut m),
            vec![Action::Take, Action::Write { restore: false }]
        );
        m.handle(t0 + S(9), Event::Written);
        let due = m.poll_timeout().unwrap();
        assert!(due <= t0 + S(77), "{:?}", due - t0);
        m.handle_timeout(due);
        assert!(actions(&mut m).contains(&Action::Renew {
            increment: None,
            deadline: Some(t0 + S(100))
        }));
    }

    #[test]
    fn renewal_outage_retries_before_expiry_then_logs_in() {
        let (mut m, t0) = logged_in(60, true);
        let mut now = m.poll_timeout().unwrap();
        let mut tries = 0;
        loop {
            m.handle_timeout(now);
            match actions(&mut m).as_slice() {
                [Action::Renew { .. }] => {
                    renew_done(&mut m, now, now, Err(transient()));
                    tries += 1;
                }
                other => panic!("{other:?}"),
            }
            if let [Action::Login { .. }] = actions(&mut m).as_slice() {
                break;
            }
            let next = m.poll_timeout().unwrap();
            assert!(next > now);
            if next < t0 + S(60) {
                assert!(next <= t0 + S(60) - schedule::EXPIRY_MARGIN);
            }
            now = next;
            assert!(tries < 100);
        }
        assert!(tries >= 3, "{tries}");
        assert!(!m.holds_live_token(now + schedule::EXPIRY_MARGIN));
    }

    #[test]
    fn refused_renewal_logs_in_now_and_not_renewable_later() {
        let (mut m, t0, due) = at_first_step(600, true);
        let denied = Failure::new(FailureKind::Denied, "permission denied");
        renew_done(&mut m, due, due, Err(denied));
        assert_eq!(actions(&mut m), vec![Action::Login { deadline: None }]);
        assert!(m.holds_live_token(t0 + S(599)), "kept until replaced");

        let (mut m, t0, due) = at_first_step(600, true);
        let nr = Failure::new(FailureKind::NotRenewable, "lease is not renewable");
        renew_done(&mut m, due, due, Err(nr));
        assert!(actions(&mut m).is_empty());
        assert_eq!(m.next_step().0, Step::Login);
        let at = m.poll_timeout().unwrap();
        assert!(at > due && at < t0 + S(600));
    }

    #[test]
    fn capped_renewal_relogins_before_expiry() {
        let (mut m, _, due) = at_first_step(3600, true);
        renew_done(&mut m, due, due, Ok(grant(1500, true)));
        assert_eq!(actions(&mut m), vec![Action::RunHooks(Hook::Renewed)]);
        let (step, at) = m.next_step();
        assert_eq!(step, Step::Login);
        assert!(at.unwrap() + S(18 * 60) <= due + S(1500));
    }

    #[test]
    fn failed_login_keeps_the_held_token_and_drops_it_when_expired() {
        let (mut m, t0) = logged_in(20, false);
        let due = m.poll_timeout().unwrap();
        m.handle_timeout(due);
        assert!(matches!(actions(&mut m).as_slice(), [Action::Login { .. }]));
        login_done(&mut m, due, due, Err(transient()));
        assert!(m.holds_live_token(due));
        let mut now = due;
        while m.holds_live_token(now) {
            now = m.poll_timeout().unwrap();
            assert!(now < t0 + S(20) || !m.holds_live_token(now));
            m.handle_timeout(now);
            actions(&mut m);
            login_done(&mut m, now, now, Err(transient()));
        }
        // Once the token is gone, the file is not rewritten with it.
        m.handle(now, Event::TokenFileChanged);
        assert!(!actions(&mut m)
            .iter()
            .any(|a| matches!(a, Action::Write { .. })));
    }

    #[test]
    fn write_failure_is_retried_and_hooks_wait_for_the_write() {
        let (mut m, t0) = taken(3600, true, 3);
        m.handle(t0, Event::WriteFailed("read-only file system".into()));
        assert!(
            actions(&mut m).is_empty(),
            "no hooks for an unwritten token"
        );
        assert_eq!(m.poll_timeout(), Some(t0 + WRITE_RETRY_FLOOR));
        m.handle_timeout(t0 + WRITE_RETRY_FLOOR);
        assert_eq!(actions(&mut m), vec![Action::Write { restore: false }]);
        m.handle(t0 + WRITE_RETRY_FLOOR, Event::Written);
        assert_eq!(actions(&mut m), vec![Action::RunHooks(Hook::NewToken)]);
    }

    #[test]
    fn file_change_rewrites_a_live_token() {
        let (mut m, t0) = logged_in(3600, true);
        m.handle(t0 + S(5), Event::TokenFileChanged);
        assert_eq!(actions(&mut m), vec![Action::Write { restore: true }]);
        m.handle(t0 + S(5), Event::Written);
        assert!(actions(&mut m).is_empty(), "hooks ran once already");
    }

    #[test]
    fn an_unwatched_token_file_is_checked_at_every_wake_up_of_a_sidecar_only() {
        let (mut m, t0) = logged_in(3600, true);
        m.handle(t0, Event::TokenWatched(false));
        assert!(actions(&mut m).is_empty(), "a fact, not yet a check");
        m.handle_timeout(t0 + S(1));
        assert_eq!(actions(&mut m)[0], Action::Write { restore: true });
        m.handle(t0 + S(1), Event::Written);
        m.handle(t0 + S(1), Event::TokenWatched(true));
        m.handle_timeout(t0 + S(2));
        assert!(!actions(&mut m)
            .iter()
            .any(|a| matches!(a, Action::Write { .. })));
        // `--once` never checks: it exits after its write.
        let t0 = Instant::now();
        let mut m = Machine::new(settings(Goal::Once { timeout: S(60) }), t0, 3);
        m.handle(t0, Event::TokenWatched(false));
        m.handle_timeout(t0);
        assert!(!actions(&mut m)
            .iter()
            .any(|a| matches!(a, Action::Write { .. })));
    }

    #[test]
    fn one_write_at_a_time_and_the_one_needed_meanwhile_follows_with_its_own_hooks() {
        let (mut m, t0) = taken(3600, true, 3);
        // The file is replaced while the first write is in flight: no second write yet.
        m.handle(t0, Event::TokenFileChanged);
        assert!(actions(&mut m).is_empty(), "one write at a time");
        // The first lands: what it wrote may be old, so the next write follows at once and
        // the new token's hooks wait for it.
        m.handle(t0, Event::Written);
        assert_eq!(actions(&mut m), vec![Action::Write { restore: true }]);
        m.handle(t0, Event::Written);
        assert_eq!(actions(&mut m), vec![Action::RunHooks(Hook::NewToken)]);
        // A failed write with another needed meanwhile: that one is asked for at once.
        m.handle(t0 + S(5), Event::TokenFileChanged);
        assert_eq!(actions(&mut m), vec![Action::Write { restore: true }]);
        m.handle(t0 + S(5), Event::TokenFileChanged);
        m.handle(t0 + S(5), Event::WriteFailed("disk full".into()));
        assert_eq!(actions(&mut m), vec![Action::Write { restore: true }]);
    }

    #[test]
    fn jwt_change_retries_a_failing_login_at_once() {
        let t0 = Instant::now();
        let mut m = Machine::new(settings(Goal::Sidecar), t0, 3);
        m.handle_timeout(t0);
        actions(&mut m);
        let missing = Failure::new(FailureKind::JwtMissing, "no JWT");
        login_done(&mut m, t0, t0, Err(missing));
        assert_eq!(actions(&mut m), vec![Action::WatchJwt]);
        assert!(m.poll_timeout().unwrap() >= t0 + S(1));
        m.handle(t0 + S(0), Event::JwtChanged);
        assert_eq!(m.poll_timeout(), Some(t0));
    }

    #[test]
    fn a_jwt_change_during_a_failing_login_retries_at_once() {
        let t0 = Instant::now();
        let mut m = Machine::new(settings(Goal::Sidecar), t0, 3);
        m.handle_timeout(t0);
        actions(&mut m);
        // The kubelet swaps the JWT while the login (with the old one) is in flight.
        m.handle(t0, Event::JwtChanged);
        let denied = Failure::new(FailureKind::Denied, "invalid audience (aud) claim");
        login_done(&mut m, t0 + S(1), t0, Err(denied.clone()));
        assert_eq!(m.poll_timeout(), Some(t0 + S(1)), "no backoff");
        // Without a change meanwhile, the next failure backs off.
        m.handle_timeout(t0 + S(1));
        actions(&mut m);
        login_done(&mut m, t0 + S(1), t0 + S(1), Err(denied));
        assert!(m.poll_timeout().unwrap() >= t0 + S(2));
    }

    #[test]
    fn sighup_abandons_the_request_and_logs_in() {
        let (mut m, _, due) = at_first_step(3600, true);
        m.handle(due, Event::Relogin);
        assert!(matches!(actions(&mut m).as_slice(), [Action::Login { .. }]));
        // The abandoned renewal's answer is ignored.
        renew_done(&mut m, due, due, Ok(grant(3600, true)));
        assert!(actions(&mut m).is_empty());
    }

    #[test]
    fn a_failed_sighup_login_goes_back_to_renewing_the_held_token() {
        let (mut m, t0) = logged_in(3600, true);
        let (step, renew_at) = m.next_step();
        assert_eq!(step, Step::Renew);
        let renew_at = renew_at.unwrap();
        let t1 = t0 + S(600);
        m.handle(t1, Event::Relogin);
        assert_eq!(actions(&mut m), vec![Action::Login { deadline: None }]);
        // A second SIGHUP during that login keeps the renewal to go back to.
        m.handle(t1, Event::Relogin);
        assert_eq!(actions(&mut m), vec![Action::Login { deadline: None }]);
        let denied = Failure::new(FailureKind::Denied, "permission denied");
        // The login is retried on the backoff while that comes before the planned renewal...
        let mut now = t1;
        let mut logins = 0;
        while m.next_step().0 == Step::Login {
            assert!(now < renew_at);
            login_done(&mut m, now, now, Err(denied.clone()));
            logins += 1;
            if let Some(at) = m.poll_timeout().filter(|_| m.next_step().0 == Step::Login) {
                now = at;
                m.handle_timeout(now);
                assert_eq!(actions(&mut m), vec![Action::Login { deadline: None }]);
            }
        }
        assert!(logins > 5, "{logins}");
        // ...then the held token is renewed as planned.
        assert_eq!(m.next_step(), (Step::Renew, Some(renew_at)));
        assert_eq!(m.poll_timeout(), Some(renew_at));
        m.handle_timeout(renew_at);
        assert!(matches!(actions(&mut m).as_slice(), [Action::Renew { .. }]));

        // SIGHUP during the renewal itself: its login's failure renews at once.
        m.handle(renew_at, Event::Relogin);
        actions(&mut m);
        let t2 = renew_at + S(1);
        login_done(&mut m, t2, renew_at, Err(transient()));
        assert_eq!(m.next_step(), (Step::Renew, Some(t2)));

        // A non-renewable token has no renewals to go back to: the login is retried.
        let (mut m, t0) = logged_in(3600, false);
        m.handle(t0 + S(10), Event::Relogin);
        actions(&mut m);
        login_done(&mut m, t0 + S(11), t0 + S(10), Err(denied));
        assert_eq!(m.next_step().0, Step::Login);
    }

    #[test]
    fn shutdown_exits_in_every_state() {
        for revoke in [false, true] {
            let (mut m, t0) = logged_in(3600, true);
            m.settings.revoke_on_exit = revoke;
            m.handle(t0, Event::Shutdown);
            let acts = actions(&mut m);
            if revoke {
                assert_eq!(
                    acts,
                    vec![Action::Revoke {
                        token: true,
                        deadline: t0 + REVOKE_GRACE
                    }]
                );
                assert_eq!(m.poll_timeout(), Some(t0 + REVOKE_GRACE));
                m.handle_timeout(t0 + REVOKE_GRACE);
                assert_eq!(actions(&mut m), vec![Action::Exit(Exit::Done)]);
            } else {
                assert_eq!(acts, vec![Action::Exit(Exit::Done)]);
            }
            assert!(m.is_finished());
            assert_eq!(m.poll_timeout(), None);
        }
        let t0 = Instant::now();
        let mut m = Machine::new(settings(Goal::Once { timeout: S(60) }), t0, 1);
        m.handle_timeout(t0);
        actions(&mut m);
        m.handle(t0, Event::Shutdown);
        assert_eq!(actions(&mut m), vec![Action::Exit(Exit::Interrupted)]);
    }

    #[test]
    fn each_phase_takes_only_its_events() {
        // Exiting: a request's answer is ignored; a second signal exits without waiting.
        let (mut m, t0) = logged_in(3600, true);
        m.settings.revoke_on_exit = true;
        m.handle(t0, Event::Shutdown);
        actions(&mut m);
        m.handle(t0, Event::TokenFileChanged);
        m.handle(t0, Event::Relogin);
        assert!(actions(&mut m).is_empty(), "nothing new while exiting");
        m.handle(t0 + MS(1), Event::Shutdown);
        assert_eq!(actions(&mut m), vec![Action::Exit(Exit::Done)]);
        // Finished: nothing at all.
        m.handle(t0 + MS(2), Event::Shutdown);
        m.handle_timeout(t0 + S(3600));
        assert!(actions(&mut m).is_empty());

        // `--once` awaiting its hooks: a SIGHUP or a file change starts nothing.
        let t0 = Instant::now();
        let mut m = Machine::new(settings(Goal::Once { timeout: S(60) }), t0, 1);
        m.handle_timeout(t0);
        login_done(&mut m, t0, t0, Ok(grant(3600, true)));
        m.handle(t0, Event::Written);
        assert!(actions(&mut m).contains(&Action::RunHooksAndWait));
        m.handle(t0, Event::Relogin);
        m.handle(t0, Event::TokenFileChanged);
        assert!(actions(&mut m).is_empty());
        m.handle(t0, Event::HooksDone);
        assert_eq!(actions(&mut m), vec![Action::Exit(Exit::Done)]);
    }

    #[test]
    fn once_writes_runs_hooks_then_exits() {
        let t0 = Instant::now();
        let mut m = Machine::new(settings(Goal::Once { timeout: S(60) }), t0, 1);
        m.handle_timeout(t0);
        assert_eq!(
            actions(&mut m),
            vec![Action::Login {
                deadline: Some(t0 + S(60))
            }]
        );
        login_done(&mut m, t0, t0, Ok(grant(3600, true)));
        assert_eq!(
            actions(&mut m),
            vec![Action::Take, Action::Write { restore: false }]
        );
        m.handle(t0, Event::Written);
        assert_eq!(actions(&mut m), vec![Action::RunHooksAndWait]);
        assert!(!m.is_finished());
        m.handle(t0, Event::HooksDone);
        assert_eq!(actions(&mut m), vec![Action::Exit(Exit::Done)]);
    }

    #[test]
    fn once_gives_up_at_the_deadline_with_the_last_error() {
        let t0 = Instant::now();
        let mut m = Machine::new(settings(Goal::Once { timeout: S(10) }), t0, 1);
        let mut now = t0;
        loop {
            m.handle_timeout(now);
            let acts = actions(&mut m);
            if let Some(Action::Exit(exit)) = acts.last() {
                match exit {
                    Exit::GaveUp {
                        attempts,
                        elapsed,
                        last,
                    } => {
                        assert!(*attempts >= 3, "{attempts}");
                        assert_eq!(*elapsed, S(10));
                        assert_eq!(last, "permission denied");
                    }
                    other => panic!("{other:?}"),
                }
                break;
            }
            assert!(matches!(acts.as_slice(), [Action::Login { .. }]));
            let denied = Failure::new(FailureKind::Denied, "permission denied");
            login_done(&mut m, now, now, Err(denied));
            let next = m.poll_timeout().unwrap();
            assert!(next > now && next <= t0 + S(10));
            now = next;
        }
    }

    #[test]
    fn a_login_cut_at_the_deadline_does_not_hide_the_failure_before_it() {
        let t0 = Instant::now();
        let mut m = Machine::new(settings(Goal::Once { timeout: S(10) }), t0, 1);
        m.handle_timeout(t0);
        actions(&mut m);
        let denied = Failure::new(FailureKind::Denied, "permission denied");
        login_done(&mut m, t0, t0, Err(denied));
        let retry = m.poll_timeout().unwrap();
        m.handle_timeout(retry);
        assert!(matches!(actions(&mut m).as_slice(), [Action::Login { .. }]));
        // That login is still in flight at the deadline: the driver cuts it.
        let deadline = t0 + S(10);
        let cut = Failure::new(
            FailureKind::Transient,
            "login: no answer from Vault before the deadline",
        );
        login_done(&mut m, deadline, retry, Err(cut));
        m.handle_timeout(deadline);
        match actions(&mut m).last() {
            Some(Action::Exit(Exit::GaveUp { last, .. })) => assert_eq!(last, "permission denied"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_adopted_token_is_renewed_on_its_schedule_without_a_write_or_new_token_hooks() {
        let t0 = Instant::now();
        let mut s = settings(Goal::Sidecar);
        s.secrets = vec!["kv/data/app".into()];
        s.adopt = true;
        let mut m = Machine::new(s, t0, 5);
        // A sidecar with a token file first looks at the token a previous run left there.
        m.handle_timeout(t0);
        assert_eq!(actions(&mut m), vec![Action::Adopt]);
        let found = Adoption {
            grant: grant(1000, true),
            expected: S(3600),
        };
        let adopted = Event::Adopted {
            sent: t0,
            found: Some(found),
        };
        m.handle(t0, adopted);
        assert_eq!(actions(&mut m), vec![Action::RunHooks(Hook::Renewed)]);
        assert!(m.holds_live_token(t0));
        // The secrets are read with it at once; the renewal comes at about 70 % of what is left.
        m.handle_timeout(t0);
        assert_eq!(actions(&mut m), vec![Action::ReadSecret { index: 0 }]);
        let (step, due) = m.next_step();
        assert_eq!(step, Step::Renew);
        let due = due.unwrap();
        assert!(due >= t0 + S(630) && due <= t0 + S(770), "{due:?}");
        // A renewal granting the role's full TTL (more than was left) is not capped.
        m.handle_timeout(due);
        assert!(actions(&mut m).contains(&Action::Renew {
            increment: None,
            deadline: Some(t0 + S(1000))
        }));
        renew_done(&mut m, due, due, Ok(grant(3600, true)));
        assert_eq!(m.next_step().0, Step::Renew);
    }

    #[test]
    fn nothing_to_adopt_means_a_login_and_once_never_adopts() {
        let t0 = Instant::now();
        let mut s = settings(Goal::Sidecar);
        s.adopt = true;
        let mut m = Machine::new(s.clone(), t0, 5);
        m.handle_timeout(t0);
        assert_eq!(actions(&mut m), vec![Action::Adopt]);
        // A SIGHUP during the lookup (a hung Vault) logs in at once.
        m.handle(t0, Event::Relogin);
        assert!(matches!(actions(&mut m)[..], [Action::Login { .. }]));
        let mut m = Machine::new(s, t0, 5);
        m.handle_timeout(t0);
        actions(&mut m);
        let t1 = t0 + S(1);
        m.handle(
            t1,
            Event::Adopted {
                sent: t0,
                found: None,
            },
        );
        m.handle_timeout(t1);
        assert!(matches!(actions(&mut m)[..], [Action::Login { .. }]));
        let mut once = settings(Goal::Once { timeout: S(60) });
        once.adopt = true;
        let mut m = Machine::new(once, t0, 5);
        m.handle_timeout(t0);
        assert!(matches!(actions(&mut m)[..], [Action::Login { .. }]));
    }

    /// Feeds `m` a lookup-self's answer at `now`, for a request sent at `sent`.
    fn looked_up(m: &mut Machine, now: Instant, sent: Instant, result: Result<Grant, Failure>) {
        m.handle(now, Event::LookedUp { sent, result });
    }

    fn is_login(a: &Action) -> bool {
        matches!(a, Action::Login { .. })
    }

    #[test]
    fn a_late_login_without_a_live_token_is_written_and_looked_up_not_repeated() {
        // The run: Vault hung (SIGSTOP) longer than the 20 s TTL; the login sent at t0
        // was answered 25 s later.
        let t0 = Instant::now();
        let mut m = Machine::new(settings(Goal::Sidecar), t0, 4);
        m.handle_timeout(t0);
        assert_eq!(actions(&mut m), vec![Action::Login { deadline: None }]);
        let t1 = t0 + S(25);
        login_done(&mut m, t1, t0, Ok(grant(20, true)));
        assert_eq!(
            actions(&mut m),
            vec![
                Action::Take,
                Action::Write { restore: false },
                Action::LookupSelf {
                    fresh: false,
                    deadline: None
                }
            ]
        );
        assert!(m.holds_live_token(t1), "unknown life is not no life");
        assert_eq!(m.next_fields(t1).0, "lookup");
        m.handle(t1, Event::Written);
        // Hooks run; the token is not dropped; nothing waits on a timer meanwhile.
        assert_eq!(actions(&mut m), vec![Action::RunHooks(Hook::NewToken)]);
        assert_eq!(m.poll_timeout(), None);
        // Vault counts 19 s left: renew at about 70 % of that, counted from the lookup.
        let t2 = t1 + MS(100);
        looked_up(&mut m, t2, t1, Ok(grant(19, true)));
        assert!(actions(&mut m).is_empty());
        let (step, due) = m.next_step();
        assert_eq!(step, Step::Renew);
        let due = due.unwrap();
        assert!(
            due >= t1 + MS(11_900) && due <= t1 + MS(14_700),
            "{:?}",
            due - t1
        );
        m.handle_timeout(due);
        assert_eq!(
            actions(&mut m),
            vec![Action::Renew {
                increment: None,
                deadline: Some(t1 + S(19))
            }]
        );
    }

    #[test]
    fn a_late_token_that_vault_calls_gone_is_replaced_by_one_login() {
        let t0 = Instant::now();
        let mut m = Machine::new(settings(Goal::Sidecar), t0, 4);
        m.handle_timeout(t0);
        actions(&mut m);
        let t1 = t0 + S(30);
        login_done(&mut m, t1, t0, Ok(grant(20, true)));
        actions(&mut m);
        m.handle(t1, Event::Written);
        actions(&mut m);
        let denied = Failure::new(FailureKind::Denied, "permission denied");
        looked_up(&mut m, t1, t1, Err(denied));
        assert_eq!(actions(&mut m), vec![Action::Login { deadline: None }]);
        // A lookup that reports no time left is the same.
        login_done(&mut m, t1 + S(1), t1, Ok(grant(20, true)));
        assert_eq!(
            actions(&mut m),
            vec![Action::Take, Action::Write { restore: false }]
        );
        let (mut m, _) = logged_in(20, true);
        let t = Instant::now() + S(1);
        m.handle(t, Event::Relogin);
        actions(&mut m);
        login_done(&mut m, t + S(3), t, Ok(grant(20, true)));
        assert!(matches!(
            actions(&mut m).as_slice(),
            [Action::LookupSelf { fresh: true, .. }]
        ));
        looked_up(&mut m, t + S(3), t + S(3), Ok(grant(0, true)));
        assert_eq!(actions(&mut m), vec![Action::Discard], "not taken, revoked");
        assert_eq!(m.next_step().0, Step::Login);
    }

    #[test]
    fn a_failed_lookup_is_asked_again_without_a_second_login() {
        let t0 = Instant::now();
        let mut m = Machine::new(settings(Goal::Sidecar), t0, 4);
        m.handle_timeout(t0);
        actions(&mut m);
        let mut now = t0 + S(40);
        login_done(&mut m, now, t0, Ok(grant(20, true)));
        actions(&mut m);
        m.handle(now, Event::Written);
        actions(&mut m);
        for _ in 0..10 {
            looked_up(&mut m, now, now, Err(transient()));
            let next = m.poll_timeout().unwrap();
            assert!(next > now && next <= now + S(20), "{:?}", next - now);
            assert_eq!(m.next_step().0, Step::Lookup);
            now = next;
            m.handle_timeout(now);
            let acts = actions(&mut m);
            assert!(!acts.iter().any(is_login), "{acts:?}");
            assert!(matches!(
                acts.as_slice(),
                [Action::LookupSelf { fresh: false, .. }]
            ));
        }
        looked_up(&mut m, now, now, Ok(grant(15, true)));
        assert_eq!(m.next_step().0, Step::Renew);
    }

    #[test]
    fn a_late_login_while_the_held_token_lives_is_checked_before_it_is_written() {
        // A non-renewable 100 s token is replaced at about two thirds of its life; Vault takes
        // 15 s to answer the login, so the new token's life is unsure.
        let (mut m, t0) = logged_in(100, false);
        let due = m.poll_timeout().unwrap();
        m.handle_timeout(due);
        assert!(matches!(actions(&mut m).as_slice(), [Action::Login { .. }]));
        let t1 = due + S(15);
        assert!(t1 < t0 + S(100));
        login_done(&mut m, t1, due, Ok(grant(100, false)));
        assert_eq!(
            actions(&mut m),
            vec![Action::LookupSelf {
                fresh: true,
                deadline: Some(t0 + S(100))
            }]
        );
        // The file still holds the live token: a change puts that one back.
        m.handle(t1, Event::TokenFileChanged);
        assert_eq!(actions(&mut m), vec![Action::Write { restore: true }]);
        m.handle(t1, Event::Written);
        looked_up(&mut m, t1 + S(1), t1, Ok(grant(99, false)));
        assert_eq!(
            actions(&mut m),
            vec![Action::Take, Action::Write { restore: false }]
        );
        m.handle(t1 + S(1), Event::Written);
        assert_eq!(actions(&mut m), vec![Action::RunHooks(Hook::NewToken)]);
        let (step, at) = m.next_step();
        assert_eq!(step, Step::Login);
        let at = at.unwrap();
        assert!(at >= t1 + S(59) && at <= t1 + S(73), "{:?}", at - t1);

        // Vault says the new one is gone: the held token stays, the login is retried before
        // it expires.
        let (mut m, t0) = logged_in(100, false);
        let due = m.poll_timeout().unwrap();
        m.handle_timeout(due);
        actions(&mut m);
        login_done(&mut m, due + S(15), due, Ok(grant(100, false)));
        actions(&mut m);
        let denied = Failure::new(FailureKind::Denied, "permission denied");
        looked_up(&mut m, due + S(15), due + S(15), Err(denied));
        assert!(actions(&mut m).is_empty());
        assert_eq!(m.next_step().0, Step::Login);
        assert!(m.poll_timeout().unwrap() < t0 + S(100));
        assert!(m.holds_live_token(due + S(15)));

        // The lookup hangs until the held token runs out: the new one is taken as it is and
        // looked up again.
        let (mut m, t0) = logged_in(100, false);
        let due = m.poll_timeout().unwrap();
        m.handle_timeout(due);
        actions(&mut m);
        login_done(&mut m, due + S(15), due, Ok(grant(100, false)));
        actions(&mut m);
        let end = t0 + S(100);
        let cut = Failure::new(FailureKind::Transient, "no answer before the token expired");
        looked_up(&mut m, end, due + S(15), Err(cut));
        assert_eq!(m.poll_timeout(), Some(end));
        m.handle_timeout(end);
        assert_eq!(
            actions(&mut m),
            vec![
                Action::Take,
                Action::Write { restore: false },
                Action::LookupSelf {
                    fresh: false,
                    deadline: None
                }
            ]
        );
    }

    #[test]
    fn an_unused_fresh_token_is_revoked_on_sighup_and_before_exit() {
        let late = || {
            let (mut m, _) = logged_in(100, false);
            let due = m.poll_timeout().unwrap();
            m.handle_timeout(due);
            actions(&mut m);
            let t1 = due + S(15);
            login_done(&mut m, t1, due, Ok(grant(100, false)));
            actions(&mut m);
            (m, t1)
        };
        let (mut m, t1) = late();
        m.handle(t1, Event::Relogin);
        assert_eq!(
            actions(&mut m),
            vec![Action::Discard, Action::Login { deadline: None }]
        );
        m.handle(t1, Event::Discarded);
        assert!(actions(&mut m).is_empty());

        // Shutdown waits (a bounded while) for the revocation.
        let (mut m, t1) = late();
        m.handle(t1, Event::Shutdown);
        assert_eq!(actions(&mut m), vec![Action::Discard]);
        assert!(!m.is_finished());
        assert_eq!(m.poll_timeout(), Some(t1 + REVOKE_GRACE));
        m.handle(t1 + MS(5), Event::Discarded);
        assert_eq!(actions(&mut m), vec![Action::Exit(Exit::Done)]);
        // ...and with --revoke-on-exit, for both.
        let (mut m, t1) = late();
        m.settings.revoke_on_exit = true;
        m.handle(t1, Event::Shutdown);
        assert_eq!(
            actions(&mut m),
            vec![
                Action::Discard,
                Action::Revoke {
                    token: true,
                    deadline: t1 + REVOKE_GRACE
                }
            ]
        );
        m.handle(t1, Event::Revoked);
        assert!(actions(&mut m).is_empty());
        m.handle(t1, Event::Discarded);
        assert_eq!(actions(&mut m), vec![Action::Exit(Exit::Done)]);
    }

    #[test]
    fn a_late_renewal_is_looked_up_before_planning() {
        let (mut m, _, due) = at_first_step(100, true);
        let t1 = due + S(20);
        renew_done(&mut m, t1, due, Ok(grant(100, true)));
        assert_eq!(
            actions(&mut m),
            vec![Action::LookupSelf {
                fresh: false,
                deadline: None
            }]
        );
        looked_up(&mut m, t1, t1, Ok(grant(100, true)));
        assert_eq!(actions(&mut m), vec![Action::RunHooks(Hook::Renewed)]);
        let (step, at) = m.next_step();
        assert_eq!(step, Step::Renew);
        assert!(at.unwrap() >= t1 + S(63));
    }

    #[test]
    fn without_a_token_logins_retry_under_the_recovery_cap() {
        let t0 = Instant::now();
        let mut m = Machine::new(settings(Goal::Sidecar), t0, 11);
        let mut now = t0;
        let mut waits = Vec::new();
        for _ in 0..40 {
            m.handle_timeout(now);
            assert!(matches!(actions(&mut m).as_slice(), [Action::Login { .. }]));
            login_done(&mut m, now, now, Err(transient()));
            let next = m.poll_timeout().unwrap();
            waits.push(next - now);
            now = next;
        }
        assert!(waits.iter().all(|w| *w >= S(1) && *w <= S(20)), "{waits:?}");
        // Spread over the window, not stacked at its top.
        let late = &waits[10..];
        assert!(late.iter().filter(|w| **w > S(19)).count() < 5, "{late:?}");
        assert!(late.iter().any(|w| *w < S(10)), "{late:?}");

        // Vault busy or sealed: the long backoff, and its Retry-After.
        let mut m = Machine::new(settings(Goal::Sidecar), t0, 11);
        let mut now = t0;
        let mut longest = Duration::ZERO;
        for _ in 0..40 {
            m.handle_timeout(now);
            actions(&mut m);
            let sealed = Failure::new(FailureKind::Busy, "Vault is sealed");
            login_done(&mut m, now, now, Err(sealed));
            let next = m.poll_timeout().unwrap();
            longest = longest.max(next - now);
            now = next;
        }
        assert!(longest > S(60), "{longest:?}");
        m.handle_timeout(now);
        actions(&mut m);
        let mut limited = Failure::new(FailureKind::Busy, "rate limit quota exceeded");
        limited.retry_after = Some(S(240));
        login_done(&mut m, now, now, Err(limited));
        assert!(m.poll_timeout().unwrap() >= now + S(240));
    }

    #[test]
    fn a_fleet_without_tokens_comes_back_spread_out() {
        // 300 sidecars whose tokens (20 s) ran out in a 90 s outage, as in the fleet bench.
        let t0 = Instant::now();
        let up = t0 + S(90);
        let mut after: Vec<Duration> = Vec::new();
        for seed in 0..300u64 {
            let (mut m, t) = logged_in(20, true);
            m.rng = Jitter::new(seed * 7919 + 1);
            let shift = |i: Instant| t0 + (i - t);
            let mut now = m.poll_timeout().unwrap();
            m.handle_timeout(now);
            let mut acts = actions(&mut m);
            loop {
                match acts
                    .iter()
                    .find(|a| matches!(a, Action::Login { .. } | Action::Renew { .. }))
                {
                    Some(a) if shift(now) >= up => {
                        assert!(is_login(a), "{a:?}");
                        after.push(shift(now) - up);
                        break;
                    }
                    Some(a) if is_login(a) => login_done(&mut m, now, now, Err(transient())),
                    Some(_) => renew_done(&mut m, now, now, Err(transient())),
                    None => {
                        now = m.poll_timeout().unwrap();
                        m.handle_timeout(now);
                    }
                }
                acts = actions(&mut m);
            }
        }
        let mut buckets = [0usize; 30];
        for d in &after {
            assert!(*d <= S(21), "{d:?}");
            buckets[d.as_secs() as usize] += 1;
        }
        let busiest = buckets.iter().max().copied().unwrap_or(0);
        assert!(busiest <= 105, "{buckets:?}");
        let mean = after.iter().sum::<Duration>() / 300;
        assert!(mean < S(12), "{mean:?}");
    }

    #[test]
    fn ttl_zero_holds_forever() {
        let (m, _) = logged_in(0, true);
        assert_eq!(m.next_step().0, Step::Nothing);
        assert_eq!(m.poll_timeout(), None);
    }

    /// A machine with `n` secrets that logged in and wrote its token at `t0`.
    fn with_secrets(goal: Goal, n: usize) -> (Machine, Instant) {
        let t0 = Instant::now();
        let mut s = settings(goal);
        s.secrets = (0..n).map(|i| format!("kv/data/s{i}")).collect();
        s.refresh = S(300);
        let mut m = Machine::new(s, t0, 9);
        m.handle_timeout(t0);
        actions(&mut m);
        login_done(&mut m, t0, t0, Ok(grant(3600, true)));
        assert_eq!(
            actions(&mut m),
            vec![Action::Take, Action::Write { restore: false }]
        );
        m.handle(t0, Event::Written);
        (m, t0)
    }

    fn read_ok(changed: bool, lease: Option<u64>) -> Result<SecretGrant, Failure> {
        Ok(SecretGrant {
            changed,
            lease: lease.map(|ttl| grant(ttl, true)),
            problem: None,
        })
    }

    #[test]
    fn secrets_are_read_after_a_new_token_one_at_a_time_then_hooks_once() {
        let (mut m, t0) = with_secrets(Goal::Sidecar, 2);
        assert_eq!(actions(&mut m), vec![Action::ReadSecret { index: 0 }]);
        secret_read(&mut m, t0, 0, t0, read_ok(true, None));
        assert_eq!(actions(&mut m), vec![Action::ReadSecret { index: 1 }]);
        secret_read(&mut m, t0, 1, t0, read_ok(true, None));
        // One batch: the token and both files, one run of the hooks.
        assert_eq!(actions(&mut m), vec![Action::RunHooks(Hook::NewToken)]);
        assert!(m.secrets_written());
        // Static secrets come back every refresh interval (±10 %, each on its own draw);
        // unchanged means no hooks, changed means one run.
        let band = |t: Instant| t >= t0 + S(270) && t <= t0 + S(330);
        let mut read = [false; 2];
        for changed in [false, true] {
            let due = m.poll_timeout().unwrap();
            assert!(band(due), "{due:?}");
            m.handle_timeout(due);
            let Some(Action::ReadSecret { index }) = actions(&mut m).first().cloned() else {
                panic!("no secret read at its refresh");
            };
            read[index] = true;
            secret_read(&mut m, due, index, due, read_ok(changed, None));
            let want = if changed {
                vec![Action::RunHooks(Hook::SecretsChanged)]
            } else {
                vec![]
            };
            let got: Vec<Action> = actions(&mut m)
                .into_iter()
                .filter(|a| !matches!(a, Action::ReadSecret { .. }))
                .collect();
            assert_eq!(got, want);
        }
        assert_eq!(read, [true, true], "each secret read once at its refresh");
    }

    #[test]
    fn a_lease_is_renewed_at_two_thirds_not_at_once_and_replaced_when_capped() {
        let (mut m, t0) = with_secrets(Goal::Sidecar, 1);
        actions(&mut m);
        secret_read(&mut m, t0, 0, t0, read_ok(true, Some(600)));
        actions(&mut m);
        let due = m.poll_timeout().unwrap();
        assert!(due >= t0 + S(378) && due <= t0 + S(462), "{:?}", due - t0);
        m.handle_timeout(due);
        assert_eq!(
            actions(&mut m),
            vec![Action::RenewLease {
                index: 0,
                deadline: Some(t0 + S(600))
            }]
        );
        // Capped well short of the usual margin: new credentials at once.
        m.handle(
            due,
            Event::LeaseRenewed {
                index: 0,
                sent: due,
                result: Ok(grant(100, true)),
            },
        );
        assert_eq!(actions(&mut m), vec![Action::ReadSecret { index: 0 }]);
    }

    #[test]
    fn a_failed_read_is_retried_on_the_backoff_and_keeps_the_file() {
        let (mut m, t0) = with_secrets(Goal::Sidecar, 1);
        actions(&mut m);
        let denied = Failure::new(FailureKind::Other, "reading kv/app: Vault answered 403");
        secret_read(&mut m, t0, 0, t0, Err(denied));
        // The token's hooks still run: the batch is over, the secret retries later.
        assert_eq!(actions(&mut m), vec![Action::RunHooks(Hook::NewToken)]);
        assert!(!m.secrets_written());
        let retry = m.poll_timeout().unwrap();
        assert!(retry >= t0 + S(1) && retry <= t0 + S(2), "{:?}", retry - t0);
    }

    #[test]
    fn once_exits_only_when_every_secret_is_written_or_gives_up_naming_it() {
        let (mut m, t0) = with_secrets(Goal::Once { timeout: S(10) }, 1);
        assert_eq!(actions(&mut m), vec![Action::ReadSecret { index: 0 }]);
        secret_read(&mut m, t0, 0, t0, read_ok(true, None));
        assert_eq!(actions(&mut m), vec![Action::RunHooksAndWait]);
        m.handle(t0, Event::HooksDone);
        assert_eq!(actions(&mut m), vec![Action::Exit(Exit::Done)]);

        let (mut m, t0) = with_secrets(Goal::Once { timeout: S(10) }, 1);
        let mut now = t0;
        loop {
            let acts = actions(&mut m);
            if let Some(Action::Exit(Exit::GaveUp { last, .. })) = acts.last() {
                assert!(last.contains("internal/data/db"), "{last}");
                break;
            }
            if acts.contains(&Action::ReadSecret { index: 0 }) {
                let e = Failure::new(FailureKind::Other, "reading internal/data/db: 403");
                secret_read(&mut m, now, 0, now, Err(e));
            }
            now = m.poll_timeout().unwrap();
            assert!(now <= t0 + S(10));
            m.handle_timeout(now);
        }
    }

    #[test]
    fn same_seed_same_run() {
        let run = |seed| {
            let (mut m, t0) = logged_in(3600, true);
            m.rng = Jitter::new(seed);
            let due = m.poll_timeout().unwrap();
            m.handle_timeout(due);
            actions(&mut m);
            renew_done(&mut m, due, due, Err(transient()));
            m.poll_timeout().unwrap() - t0
        };
        assert_eq!(run(5), run(5));
    }
}
