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
//! - a [`Action::Write`]'s outcome is fed back with [`Event::Written`] or
//!   [`Event::WriteFailed`]; a new one replaces one still in flight;
//! - a request's `sent` is the instant it was sent: a token's expiry counts from then, so a
//!   slow answer never makes a token look longer-lived than it is;
//! - after [`Action::Exit`] nothing more is asked.

pub mod backoff;
pub mod events;
pub mod failure;
pub mod schedule;
pub mod secret_lane;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use tracing::{error, info, warn};

use crate::duration::brief;
use crate::machine::backoff::{Backoff, Jitter};
use crate::machine::events::{
    Action, Event, Exit, Goal, Grant, Hook, Settings, Step, REVOKE_GRACE, WRITE_RETRY_FLOOR,
};
use crate::machine::failure::{Failure, FailureKind};
use crate::machine::secret_lane::{Outcome, SecretLane};
use schedule::{Lifetime, Next};

/// The request in flight.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Request {
    Login,
    Renew,
}

/// The token loop's state and rules. See the module documentation for the driver's contract.
#[derive(Debug)]
pub struct Machine {
    settings: Settings,
    rng: Jitter,
    started: Instant,
    backoff: Backoff,
    held: Option<Lifetime>,
    /// The next step and when it is due (None: never).
    step: Step,
    due: Option<Instant>,
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
    /// When to retry a failed write.
    write_retry: Option<Instant>,
    /// The new token's hooks, waiting for its first successful write.
    unhooked: bool,
    /// `--once`: waiting for the hooks before exiting.
    awaiting_hooks: bool,
    attempts: u32,
    last_error: Option<String>,
    /// Set once shutting down: the exit to take when the revocation finishes or times out.
    exiting: Option<(Exit, Instant)>,
    finished: bool,
    actions: VecDeque<Action>,
    /// The secrets' lane: one read or lease renewal at a time, beside the token's request.
    secrets: SecretLane,
    /// Hooks owed once the current batch of file changes is complete.
    owed: Option<Hook>,
}

impl Machine {
    /// A machine that starts by logging in at `now`; `seed` drives all jitter.
    pub fn new(settings: Settings, now: Instant, seed: u64) -> Machine {
        Machine {
            secrets: SecretLane::new(&settings),
            owed: None,
            backoff: Backoff::new(settings.min_backoff, settings.max_backoff),
            settings,
            rng: Jitter::new(seed),
            started: now,
            held: None,
            step: Step::Login,
            due: Some(now),
            in_flight: None,
            login_failing: false,
            jwt_changed_in_flight: false,
            resume: None,
            file_current: false,
            write_retry: None,
            unhooked: false,
            awaiting_hooks: false,
            attempts: 0,
            last_error: None,
            exiting: None,
            finished: false,
            actions: VecDeque::new(),
        }
    }

    /// The next thing to do, if any.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When to call [`Machine::handle_timeout`] next (None: only events can wake it).
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.finished {
            return None;
        }
        if let Some((_, at)) = &self.exiting {
            return Some(*at);
        }
        let step = self.due.filter(|_| self.in_flight.is_none());
        [
            step,
            self.write_retry,
            self.deadline(),
            self.next_secret_due(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// When the secrets' lane next has work, if the token is in the file to read with.
    fn next_secret_due(&self) -> Option<Instant> {
        self.secrets.next_due().filter(|_| self.file_current)
    }

    /// Whether every secret's file has been written.
    pub fn secrets_written(&self) -> bool {
        self.secrets.all_written()
    }

    /// The next step and when it is due, for logs ("renew in 42m").
    pub fn next_step(&self) -> (Step, Option<Instant>) {
        (self.step, self.due)
    }

    /// Whether a token is held that Vault still accepts at `now`.
    pub fn holds_live_token(&self, now: Instant) -> bool {
        self.held.is_some_and(|h| h.live(now))
    }

    /// Whether the run has ended.
    pub fn is_finished(&self) -> bool {
        self.finished
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

    /// Time has reached [`Machine::poll_timeout`].
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.finished {
            return;
        }
        if let Some((exit, at)) = &self.exiting {
            if *at <= now {
                warn!("token revocation did not finish in time; exiting");
                let exit = exit.clone();
                self.exit(exit);
            }
            return;
        }
        if self.deadline().is_some_and(|d| d <= now) {
            let last = self
                .last_error
                .clone()
                .unwrap_or_else(|| "no attempt finished before the deadline".to_string());
            self.exit(Exit::GaveUp {
                attempts: self.attempts,
                elapsed: now.saturating_duration_since(self.started),
                last,
            });
            return;
        }
        if self.write_retry.is_some_and(|at| at <= now) {
            self.write_retry = None;
            if self.holds_live_token(now) {
                self.actions.push_back(Action::Write);
            } else if self.once() {
                // The token expired before the volume took it: a new one is needed.
                self.plan(Step::Login, Some(now));
            }
        }
        if self.in_flight.is_none() && self.due.is_some_and(|at| at <= now) {
            self.start(now);
        }
        self.start_secret(now);
        self.settle_hooks(now);
    }

    /// Something happened at `now`.
    pub fn handle(&mut self, now: Instant, event: Event) {
        if self.finished {
            return;
        }
        match event {
            Event::Shutdown => self.shutdown(now),
            Event::Revoked => {
                if let Some((exit, _)) = self.exiting.take() {
                    self.exit(exit);
                }
            }
            _ if self.exiting.is_some() => {}
            Event::LoginDone { sent, result } => {
                if self.in_flight == Some(Request::Login) {
                    self.in_flight = None;
                    let jwt_changed = std::mem::take(&mut self.jwt_changed_in_flight);
                    match result {
                        Err(f) if jwt_changed && f.kind != FailureKind::Transient => {
                            // The retry below is still the SIGHUP's, if it was one.
                            let resume = self.resume.take();
                            self.login_failed(now, f);
                            self.resume = resume;
                            info!("service-account JWT changed during the login: retrying now");
                            self.plan(Step::Login, Some(now));
                        }
                        Ok(grant) => self.logged_in(sent, grant),
                        Err(f) => self.login_failed(now, f),
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
            Event::SecretRead {
                index,
                sent,
                result,
            } => {
                if self.secrets.finish(index) {
                    let outcome = self.secrets.read(now, index, sent, result, &mut self.rng);
                    self.absorb(outcome);
                    self.start_secret(now);
                    self.settle_hooks(now);
                }
            }
            Event::LeaseRenewed {
                index,
                sent,
                result,
            } => {
                if self.secrets.finish(index) {
                    let outcome =
                        self.secrets
                            .lease_renewed(now, index, sent, result, &mut self.rng);
                    self.absorb(outcome);
                    self.start_secret(now);
                    self.settle_hooks(now);
                }
            }
            Event::Written => {
                self.written(now);
                self.start_secret(now);
                self.settle_hooks(now);
            }
            Event::WriteFailed(message) => self.write_failed(now, message),
            Event::HooksDone => {
                if self.awaiting_hooks {
                    self.awaiting_hooks = false;
                    self.exit(Exit::Done);
                }
            }
            Event::JwtChanged => {
                if self.in_flight == Some(Request::Login) {
                    // The login in flight may have read the old JWT (the kubelet writes the new
                    // one in several steps): if it fails, retry at once rather than back off.
                    self.jwt_changed_in_flight = true;
                } else if self.login_failing && self.step == Step::Login && self.in_flight.is_none()
                {
                    info!("service-account JWT changed: retrying the login now");
                    self.due = Some(now);
                }
            }
            Event::TokenFileChanged => {
                // Someone replaced or removed the file: put the token back, unless it is
                // already gone (an expired token is worse than none) or we are about to exit.
                if !self.awaiting_hooks && self.holds_live_token(now) {
                    self.file_current = false;
                    self.actions.push_back(Action::Write);
                }
            }
            Event::Relogin => {
                if self.awaiting_hooks {
                    return;
                }
                match self.in_flight {
                    Some(_) => {
                        info!("SIGHUP: abandoning the request in flight and logging in again now")
                    }
                    None => info!("SIGHUP: logging in again now"),
                }
                self.in_flight = None;
                self.backoff.reset();
                // (A second SIGHUP during the first one's login keeps the first's renewal.)
                if self.step == Step::Renew && self.held.is_some_and(|h| h.renewable) {
                    self.resume = self.due;
                }
                self.plan(Step::Login, Some(now));
                self.start(now);
            }
        }
    }

    fn shutdown(&mut self, now: Instant) {
        if self.exiting.take().is_some() {
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
        if self.settings.revoke_on_exit {
            let deadline = now + REVOKE_GRACE;
            self.exiting = Some((Exit::Done, deadline));
            self.actions.push_back(Action::Revoke {
                token: self.holds_live_token(now),
                deadline,
            });
        } else {
            self.exit(Exit::Done);
        }
    }

    fn exit(&mut self, exit: Exit) {
        self.finished = true;
        self.exiting = None;
        self.in_flight = None;
        self.actions.push_back(Action::Exit(exit));
    }

    fn plan(&mut self, step: Step, at: Option<Instant>) {
        self.step = step;
        self.due = at;
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
    pub fn adopt(&mut self, sent: Instant, grant: Grant, expected: Duration) {
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
    }

    /// Starts the due step.
    fn start(&mut self, now: Instant) {
        match (self.step, self.held) {
            (Step::Nothing, _) => self.due = None,
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

    fn logged_in(&mut self, sent: Instant, grant: Grant) {
        self.login_failing = false;
        self.resume = None;
        self.backoff.reset();
        self.last_error = None;
        let renewable = grant.renewable;
        self.held = Some(Lifetime::granted(sent, grant.ttl, renewable));
        self.file_current = false;
        self.write_retry = None;
        self.unhooked = true;
        if self.once() {
            self.plan(Step::Nothing, None);
        } else {
            // Unlike Vault Agent, no renewal right after the login: the token has its full TTL.
            let unit = self.unit();
            self.plan_next(sent, schedule::after_login(grant.ttl, renewable, unit));
        }
        self.actions.push_back(Action::Write);
    }

    fn login_failed(&mut self, now: Instant, f: Failure) {
        if self.deadline().is_some_and(|d| d <= now) && self.last_error.is_some() {
            // A login cut at --once's deadline says less than the failure before it, which the
            // run now ends with.
            return;
        }
        self.login_failing = true;
        if f.kind == FailureKind::JwtMissing {
            self.actions.push_back(Action::WatchJwt);
        }
        let delay = self.next_backoff(f.retry_after);
        if let Some(at) = self.resume.filter(|_| self.holds_live_token(now)) {
            // The token in the file is fine: retry the login the operator asked for until the
            // token's planned renewal, then keep renewing it rather than let it run out.
            self.last_error = Some(f.message.clone());
            if now + delay < at {
                warn!(error = %f.message, retry_in = %brief(delay), "SIGHUP's login failed; retrying it (the current token stays in the file)");
                self.plan(Step::Login, Some(now + delay));
            } else {
                self.resume = None;
                let at = at.max(now);
                warn!(error = %f.message, renew_in = %brief(at - now), "SIGHUP's login failed; keeping the current token and renewing it as planned (send SIGHUP to try again)");
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
                        warn!(error = %f.message, retry_in = %brief(d), token_valid_for = %brief(remaining), "login failed; the current token stays in the file");
                        d
                    }
                    None => {
                        self.held = None;
                        self.backoff.restart_after_expiry();
                        let unit = self.unit();
                        let d = self.backoff.next_delay_with(unit);
                        error!(error = %f.message, retry_in = %brief(d), "login failed and the previous token has expired");
                        d
                    }
                }
            }
            _ => {
                match self.deadline() {
                    Some(deadline) => {
                        let left = deadline.saturating_duration_since(now);
                        warn!(error = %f.message, retry_in = %brief(delay.min(left)), gives_up_in = %brief(left), "login failed");
                    }
                    None => warn!(error = %f.message, retry_in = %brief(delay), "login failed"),
                }
                delay
            }
        };
        self.last_error = Some(f.message);
        self.plan(Step::Login, Some(now + delay));
    }

    fn renewed(&mut self, now: Instant, sent: Instant, grant: Grant) {
        let Some(h) = self.held.as_mut() else {
            return;
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
                warn!(error = %f.message, relogin_in = %brief(d), "token is not renewable; will log in again before it expires");
                self.plan(Step::Login, Some(now + d));
            }
            FailureKind::Transient => {
                let delay = self.next_backoff(f.retry_after);
                let unit = self.unit();
                match schedule::retry_before_expiry(delay, remaining, unit) {
                    Some(d) => {
                        warn!(error = %f.message, retry_in = %brief(d), token_valid_for = %brief(remaining), "Vault unreachable; keeping the current token and retrying the renewal");
                        self.plan(Step::Renew, Some(now + d));
                    }
                    None => {
                        self.backoff.restart_after_expiry();
                        warn!(error = %f.message, "renewal failed and the token has expired; logging in again");
                        self.plan(Step::Login, Some(now));
                        self.start(now);
                    }
                }
            }
            _ => {
                warn!(error = %f.message, "renewal refused; logging in again now");
                self.plan(Step::Login, Some(now));
                self.start(now);
            }
        }
    }

    fn written(&mut self, now: Instant) {
        self.file_current = true;
        self.write_retry = None;
        if self.unhooked {
            self.unhooked = false;
            self.owed = Some(Hook::NewToken);
            self.secrets.read_all(now);
        }
    }

    /// Runs the hooks owed once the batch of file changes is complete: no secret read is in
    /// flight or due now, and (`--once`) every secret is written.
    fn settle_hooks(&mut self, now: Instant) {
        let Some(hook) = self.owed else {
            return;
        };
        if self.secrets.busy() || self.awaiting_hooks {
            return;
        }
        if self.once() {
            if self.secrets_written() {
                self.owed = None;
                self.awaiting_hooks = true;
                self.actions.push_back(Action::RunHooksAndWait);
            }
            return;
        }
        // More reads of this batch still to run: wait for them.
        // (A file check in flight does not count: the token file was written once already.)
        let pending_now = self.holds_live_token(now) && self.secrets.due_at(now);
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
            return;
        }
        if !self.file_current {
            return;
        }
        if let Some(action) = self.secrets.start(now) {
            self.actions.push_back(action);
        }
    }

    /// Takes in what a finished secret read or lease renewal means for hooks and errors.
    fn absorb(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Changed => self.owed = self.owed.or(Some(Hook::SecretsChanged)),
            Outcome::Same => {}
            Outcome::Failed(message) => self.last_error = Some(message),
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
        self.write_retry = Some(now + wait);
    }

    /// What the token lane does next, for log fields: `renew`, `login` or `nothing` (a token
    /// that never expires), and in how long, rounded for reading.
    pub fn next_fields(&self, now: Instant) -> (&'static str, String) {
        match (self.step, self.due) {
            (Step::Nothing, _) | (_, None) => ("nothing", "never".to_string()),
            (Step::Renew, Some(at)) => ("renew", brief(at.saturating_duration_since(now))),
            (Step::Login, Some(at)) => ("login", brief(at.saturating_duration_since(now))),
        }
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::events::SecretGrant;

    const S: fn(u64) -> Duration = Duration::from_secs;

    fn settings(goal: Goal) -> Settings {
        Settings {
            goal,
            min_backoff: S(1),
            max_backoff: S(300),
            renew_increment: None,
            revoke_on_exit: false,
            secrets: 0,
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
    fn logged_in(ttl: u64, renewable: bool) -> (Machine, Instant) {
        let t0 = Instant::now();
        let mut m = Machine::new(settings(Goal::Sidecar), t0, 7);
        m.handle_timeout(t0);
        assert_eq!(actions(&mut m), vec![Action::Login { deadline: None }]);
        login_done(&mut m, t0, t0, Ok(grant(ttl, renewable)));
        assert_eq!(actions(&mut m), vec![Action::Write]);
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
        // The answer took 50 s: the token's life started when the request left.
        login_done(&mut m, t0 + S(50), t0, Ok(grant(100, true)));
        m.handle(t0 + S(50), Event::Written);
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
        assert!(!actions(&mut m).contains(&Action::Write));
    }

    #[test]
    fn write_failure_is_retried_and_hooks_wait_for_the_write() {
        let t0 = Instant::now();
        let mut m = Machine::new(settings(Goal::Sidecar), t0, 3);
        m.handle_timeout(t0);
        actions(&mut m);
        login_done(&mut m, t0, t0, Ok(grant(3600, true)));
        assert_eq!(actions(&mut m), vec![Action::Write]);
        m.handle(t0, Event::WriteFailed("read-only file system".into()));
        assert!(
            actions(&mut m).is_empty(),
            "no hooks for an unwritten token"
        );
        assert_eq!(m.poll_timeout(), Some(t0 + WRITE_RETRY_FLOOR));
        m.handle_timeout(t0 + WRITE_RETRY_FLOOR);
        assert_eq!(actions(&mut m), vec![Action::Write]);
        m.handle(t0 + WRITE_RETRY_FLOOR, Event::Written);
        assert_eq!(actions(&mut m), vec![Action::RunHooks(Hook::NewToken)]);
    }

    #[test]
    fn file_change_rewrites_a_live_token() {
        let (mut m, t0) = logged_in(3600, true);
        m.handle(t0 + S(5), Event::TokenFileChanged);
        assert_eq!(actions(&mut m), vec![Action::Write]);
        m.handle(t0 + S(5), Event::Written);
        assert!(actions(&mut m).is_empty(), "hooks ran once already");
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
        assert_eq!(actions(&mut m), vec![Action::Write]);
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
        s.secrets = 1;
        let mut m = Machine::new(s, t0, 5);
        m.adopt(t0, grant(1000, true), S(3600));
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
    fn ttl_zero_holds_forever() {
        let (m, _) = logged_in(0, true);
        assert_eq!(m.next_step().0, Step::Nothing);
        assert_eq!(m.poll_timeout(), None);
    }

    /// A machine with `n` secrets that logged in and wrote its token at `t0`.
    fn with_secrets(goal: Goal, n: usize) -> (Machine, Instant) {
        let t0 = Instant::now();
        let mut s = settings(goal);
        s.secrets = n;
        s.refresh = S(300);
        let mut m = Machine::new(s, t0, 9);
        m.handle_timeout(t0);
        actions(&mut m);
        login_done(&mut m, t0, t0, Ok(grant(3600, true)));
        assert_eq!(actions(&mut m), vec![Action::Write]);
        m.handle(t0, Event::Written);
        (m, t0)
    }

    fn read_ok(changed: bool, lease: Option<u64>) -> Result<SecretGrant, Failure> {
        Ok(SecretGrant {
            changed,
            lease: lease.map(|ttl| grant(ttl, true)),
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
