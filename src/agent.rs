//! The lifecycle loop: log in, write the token, then (sidecar mode) renew or log in again
//! before expiry, forever. Decisions come from [`crate::schedule`]; this module only executes
//! them, reacting to timers, file-system changes and control messages.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::{sleep_until, Instant};
use tracing::{debug, error, info, warn};

use crate::backoff::{random_unit, Backoff};
use crate::config::{human, Config, JwtSource, TokenSink};
use crate::error::{Error, Result};
use crate::hooks::Hooks;
use crate::jwt::{self, unix_now, JwtError};
use crate::schedule::{self, Next};
use crate::secret::Secret;
use crate::status::Status;
use crate::token_file::TokenFile;
use crate::vault::{Auth, VaultClient, VaultError};
use crate::watch::Watches;

/// What the outside world (signals, tests) can ask of a running loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    /// Stop: SIGTERM or SIGINT.
    Shutdown,
    /// Re-read the JWT and log in again now: SIGHUP.
    Relogin,
}

/// Why a login attempt failed.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// The JWT could not be read.
    #[error(transparent)]
    Jwt(#[from] JwtError),
    /// Vault refused or could not be reached.
    #[error("{error}{hints}")]
    Vault {
        /// The Vault failure.
        error: VaultError,
        /// Hints from [`crate::hints::login_hints`].
        hints: String,
    },
}

impl LoginError {
    fn retry_after(&self) -> Option<Duration> {
        match self {
            LoginError::Vault { error, .. } => error.retry_after(),
            LoginError::Jwt(_) => None,
        }
    }
}

/// A token we hold and the plan for it.
struct Held {
    token: Secret,
    accessor: Secret,
    /// When Vault will stop accepting it (None: never).
    expires_at: Option<Instant>,
    renewable: bool,
    /// The TTL a renewal should give back when not capped.
    expected: Duration,
}

impl Held {
    fn remaining(&self, now: Instant) -> Duration {
        match self.expires_at {
            Some(at) => at.saturating_duration_since(now),
            None => Duration::MAX,
        }
    }
}

/// What the loop does when its timer fires.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Action {
    Login,
    Renew,
    Idle,
}

/// The running vault-login: configuration, Vault client, token file and shared status.
pub struct Agent {
    cfg: Config,
    client: VaultClient,
    file: Option<TokenFile>,
    status: Arc<Status>,
    hooks: Hooks,
}

/// How far in the future "never" is for the timer; tokio needs a real instant.
const FAR: Duration = Duration::from_secs(100 * 365 * 86_400);

impl Agent {
    /// Prepares a run: builds the Vault client and checks the token file's directory, so
    /// configuration problems surface before any network call.
    pub fn new(cfg: Config, status: Arc<Status>) -> Result<Agent> {
        let client = VaultClient::new(&cfg)?;
        let file = match &cfg.token_sink {
            TokenSink::File(path) => {
                let f = TokenFile::new(path, cfg.token_file_mode, cfg.token_file_owner);
                f.check()?;
                Some(f)
            }
            TokenSink::Stdout => None,
        };
        let hooks = Hooks::new(&cfg);
        Ok(Agent {
            cfg,
            client,
            file,
            status,
            hooks,
        })
    }

    /// Runs until done: `--once` returns after the first written token (or gives up at the
    /// deadline); the sidecar loop returns on [`Control::Shutdown`].
    pub async fn run(self, control: mpsc::UnboundedReceiver<Control>) -> Result<()> {
        self.log_jwt_claims();
        if self.cfg.once {
            self.run_once(control).await
        } else {
            self.run_sidecar(control).await
        }
    }

    fn log_jwt_claims(&self) {
        match jwt::read(&self.cfg.jwt) {
            Ok(j) => info!(claims = %j.claims.describe(unix_now()), "service-account JWT"),
            Err(e) => warn!(error = %e, "service-account JWT not usable yet"),
        }
    }

    fn jwt_file(&self) -> Option<&std::path::Path> {
        match &self.cfg.jwt {
            JwtSource::File(p) => Some(p),
            JwtSource::Env(_) => None,
        }
    }

    /// One login attempt: read the JWT afresh, post it to Vault.
    async fn login(&self) -> std::result::Result<Auth, LoginError> {
        let jwt = jwt::read(&self.cfg.jwt)?;
        self.client
            .login(&self.cfg.mount, &self.cfg.role, &jwt.token)
            .await
            .inspect(crate::hints::log_login)
            .map_err(|error| {
                let hints = crate::hints::login_hints(
                    &error,
                    &self.cfg.mount,
                    Some(&jwt.claims),
                    unix_now(),
                );
                LoginError::Vault { error, hints }
            })
    }

    /// Publishes a token: to the file, or to stdout for `--token-file -`.
    fn publish(&self, token: &Secret) -> std::result::Result<(), String> {
        match &self.file {
            Some(f) => f.write(token).map_err(|e| e.to_string()),
            None => {
                let mut out = std::io::stdout().lock();
                writeln!(out, "{}", token.expose())
                    .and_then(|_| out.flush())
                    .map_err(|e| format!("cannot write the token to stdout: {e}"))
            }
        }
    }

    async fn run_once(self, mut control: mpsc::UnboundedReceiver<Control>) -> Result<()> {
        let started = Instant::now();
        let deadline = started + self.cfg.timeout;
        let mut backoff = Backoff::new(self.cfg.min_backoff, self.cfg.max_backoff);
        let mut watches: Option<Watches> = None;
        let mut attempts = 0u32;
        let mut last = String::from("no attempt finished before the deadline");
        loop {
            attempts += 1;
            let outcome = tokio::select! {
                r = tokio::time::timeout_at(deadline, self.login()) => r,
                c = control.recv() => {
                    if stops(c) {
                        return Err(interrupted());
                    }
                    continue;
                }
            };
            let err = match outcome {
                Err(_) => break,
                Ok(Ok(auth)) => match self.publish(&auth.client_token) {
                    Ok(()) => {
                        self.status.logged_in(auth.lease_duration);
                        info!(
                            ttl = %human(auth.lease_duration),
                            renewable = auth.renewable,
                            policies = ?auth.policies,
                            accessor = %auth.accessor.prefix(4),
                            attempts,
                            elapsed = %human(started.elapsed()),
                            "logged in; token written"
                        );
                        // The process exits next: run the hooks to completion first.
                        self.hooks.new_token_and_wait(&auth).await;
                        return Ok(());
                    }
                    Err(e) => e,
                },
                Ok(Err(e)) => {
                    let missing = matches!(e, LoginError::Jwt(JwtError::Missing(_)));
                    let text = e.to_string();
                    self.status.login_failed(&text);
                    if missing {
                        // Wait for the kubelet to write it: a directory watch, not a poll loop.
                        let w = watches.get_or_insert_with(|| Watches::new(self.jwt_file(), None));
                        w.retarget_jwt();
                        if w.watching_jwt() && jwt::read(&self.cfg.jwt).is_err() {
                            info!(error = %text, "waiting for the service-account JWT file");
                            last = text;
                            let changed = w.jwt_changed.clone();
                            tokio::select! {
                                _ = changed.notified() => continue,
                                _ = sleep_until(deadline) => break,
                                c = control.recv() => {
                                    if stops(c) {
                                        return Err(interrupted());
                                    }
                                    continue;
                                }
                            }
                        }
                    }
                    let delay = schedule::honour_retry_after(
                        backoff.next_delay(),
                        e.retry_after(),
                        self.cfg.max_backoff,
                    );
                    text_delay_log(&text, delay, deadline);
                    last = text;
                    let wake = (Instant::now() + delay).min(deadline);
                    tokio::select! {
                        _ = sleep_until(wake) => {}
                        c = control.recv() => {
                            if stops(c) {
                                return Err(interrupted());
                            }
                        }
                    }
                    if Instant::now() >= deadline {
                        break;
                    }
                    continue;
                }
            };
            // A token we could not publish: retry like any failure.
            self.status.file_failed(&err);
            let delay = backoff.next_delay();
            text_delay_log(&err, delay, deadline);
            last = err;
            sleep_until((Instant::now() + delay).min(deadline)).await;
            if Instant::now() >= deadline {
                break;
            }
        }
        Err(Error::GaveUp {
            attempts,
            elapsed: human(started.elapsed()),
            last,
        })
    }

    async fn run_sidecar(self, mut control: mpsc::UnboundedReceiver<Control>) -> Result<()> {
        let token_dir = self.file.as_ref().map(|f| f.dir().to_path_buf());
        let mut watches = Watches::new(self.jwt_file(), token_dir.as_deref());
        let jwt_changed = watches.jwt_changed.clone();
        let token_changed = watches.token_changed.clone();
        let mut backoff = Backoff::new(self.cfg.min_backoff, self.cfg.max_backoff);
        let mut held: Option<Held> = None;
        let mut action = Action::Login;
        let mut wake = Instant::now();
        let mut login_failing = false;
        // Set while the token we hold could not be written: retry the write on its own timer.
        let mut write_retry: Option<Instant> = None;
        // A new token whose hooks wait for its first successful write.
        let mut unhooked: Option<Auth> = None;

        loop {
            tokio::select! {
                biased;
                c = control.recv() => match c {
                    Some(Control::Relogin) => {
                        info!("SIGHUP: logging in again now");
                        action = Action::Login;
                        wake = Instant::now();
                        backoff.reset();
                        continue;
                    }
                    Some(Control::Shutdown) | None => break,
                },
                _ = token_changed.notified(), if held.is_some() => {
                    if self.restore_file(held.as_ref()) {
                        write_retry = None;
                        self.run_pending_hooks(&mut unhooked);
                    } else if write_retry.is_none() {
                        // A full or read-only volume sends no further events: retry on a timer.
                        write_retry = Some(self.write_retry_at());
                    }
                    continue;
                }
                _ = sleep_until(write_retry.unwrap_or_else(|| Instant::now() + FAR)), if write_retry.is_some() => {
                    let restored = self.restore_file(held.as_ref());
                    if restored {
                        self.run_pending_hooks(&mut unhooked);
                    }
                    write_retry = (!restored)
                        .then(|| self.write_retry_at());
                    continue;
                }
                _ = jwt_changed.notified() => {
                    watches.retarget_jwt();
                    if login_failing && action == Action::Login {
                        info!("service-account JWT changed: retrying the login now");
                        wake = Instant::now();
                    }
                    continue;
                }
                _ = sleep_until(wake) => {}
            }

            if !watches.watching_token() {
                if self.restore_file(held.as_ref()) {
                    self.run_pending_hooks(&mut unhooked);
                } else {
                    write_retry = Some(self.write_retry_at());
                }
            }
            let now = Instant::now();
            match action {
                Action::Idle => {
                    wake = now + FAR;
                }
                Action::Login => match interruptible(&mut control, self.login()).await {
                    Err(Control::Shutdown) => break,
                    Err(Control::Relogin) => {
                        info!("SIGHUP: abandoning the login in flight and logging in again now");
                        wake = Instant::now();
                        backoff.reset();
                        continue;
                    }
                    Ok(Ok(auth)) => {
                        login_failing = false;
                        backoff.reset();
                        let replaced = held.is_some();
                        let ttl = auth.lease_duration;
                        let renewable = auth.renewable && !auth.is_batch();
                        let got = Held {
                            token: auth.client_token.clone(),
                            accessor: auth.accessor.clone(),
                            expires_at: (!ttl.is_zero()).then(|| Instant::now() + ttl),
                            renewable,
                            expected: ttl,
                        };
                        // Counted as a login (metrics, expiry) even if the write fails below;
                        // readiness follows the file through file_failed/file_restored.
                        self.status.logged_in(ttl);
                        match self.publish(&got.token) {
                            Ok(()) => {
                                write_retry = None;
                                unhooked = None;
                                self.hooks.new_token(&auth);
                            }
                            Err(e) => {
                                error!(error = %e, "token file not written; keeping the token in memory and retrying the write");
                                self.status.file_failed(&e);
                                unhooked = Some(auth.clone());
                                write_retry = Some(self.write_retry_at());
                            }
                        }
                        let next = schedule::after_login(ttl, renewable, random_unit());
                        info!(
                            ttl = %human(ttl),
                            renewable,
                            token_type = %auth.token_type,
                            policies = ?auth.policies,
                            accessor = %auth.accessor.prefix(4),
                            next = %describe(next),
                            replaced,
                            token_file_written = write_retry.is_none(),
                            "logged in"
                        );
                        held = Some(got);
                        (action, wake) = plan(next);
                    }
                    Ok(Err(e)) => {
                        login_failing = true;
                        let text = e.to_string();
                        self.status.login_failed(&text);
                        let delay = schedule::honour_retry_after(
                            backoff.next_delay(),
                            e.retry_after(),
                            self.cfg.max_backoff,
                        );
                        let remaining = held.as_ref().map(|h| h.remaining(now));
                        let delay = match remaining
                            .map(|r| schedule::retry_before_expiry(delay, r, random_unit()))
                        {
                            Some(Some(d)) => {
                                warn!(error = %text, retry_in = %human(d), token_valid_for = %human(remaining.unwrap_or_default()), "login failed; the current token stays in the file");
                                d
                            }
                            Some(None) => {
                                held = None;
                                backoff.restart_after_expiry();
                                let delay = backoff.next_delay();
                                error!(error = %text, retry_in = %human(delay), "login failed and the previous token has expired");
                                delay
                            }
                            None => {
                                warn!(error = %text, retry_in = %human(delay), "login failed");
                                delay
                            }
                        };
                        wake = Instant::now() + delay;
                    }
                },
                Action::Renew => {
                    let Some(h) = held.as_mut() else {
                        action = Action::Login;
                        wake = now;
                        continue;
                    };
                    match interruptible(
                        &mut control,
                        self.client.renew_self(&h.token, self.cfg.renew_increment),
                    )
                    .await
                    {
                        Err(Control::Shutdown) => break,
                        Err(Control::Relogin) => {
                            info!(
                                "SIGHUP: abandoning the renewal in flight and logging in again now"
                            );
                            action = Action::Login;
                            wake = Instant::now();
                            backoff.reset();
                            continue;
                        }
                        Ok(Ok(r)) => {
                            backoff.reset();
                            let granted = r.auth.lease_duration;
                            let expected = match self.cfg.renew_increment {
                                Some(inc) => inc.min(h.expected),
                                None => h.expected,
                            };
                            let capped = schedule::is_capped(granted, expected, &r.warnings);
                            h.renewable = r.auth.renewable;
                            h.expires_at = (!granted.is_zero()).then(|| Instant::now() + granted);
                            self.status.renewed(granted);
                            self.hooks.renewed(&r.auth);
                            for w in &r.warnings {
                                info!(warning = %w, "Vault warning on renewal");
                            }
                            let next = schedule::after_renewal(
                                granted,
                                expected,
                                capped,
                                h.renewable,
                                random_unit(),
                            );
                            if capped {
                                info!(ttl = %human(granted), relogin_in = %describe(next), "max TTL reached; will log in again before the token expires");
                            } else {
                                info!(ttl = %human(granted), next = %describe(next), "token renewed");
                            }
                            (action, wake) = plan(next);
                        }
                        Ok(Err(e)) => {
                            let text = e.to_string();
                            self.status.renewal_failed(&text);
                            let remaining = h.remaining(Instant::now());
                            if e.mentions("not renewable")
                                || e.mentions("batch tokens cannot be renewed")
                            {
                                h.renewable = false;
                                let next =
                                    Next::Relogin(schedule::two_thirds(remaining, random_unit()));
                                warn!(error = %text, relogin_in = %describe(next), "token is not renewable; will log in again before it expires");
                                (action, wake) = plan(next);
                            } else if e.is_transient() && !e.mentions("past the max TTL") {
                                let delay = schedule::honour_retry_after(
                                    backoff.next_delay(),
                                    e.retry_after(),
                                    self.cfg.max_backoff,
                                );
                                match schedule::retry_before_expiry(delay, remaining, random_unit())
                                {
                                    Some(d) => {
                                        warn!(error = %text, retry_in = %human(d), token_valid_for = %human(remaining), "Vault unreachable; keeping the current token and retrying the renewal");
                                        wake = Instant::now() + d;
                                    }
                                    None => {
                                        backoff.restart_after_expiry();
                                        warn!(error = %text, "renewal failed and the token has expired; logging in again");
                                        action = Action::Login;
                                        wake = Instant::now();
                                    }
                                }
                            } else {
                                warn!(error = %text, "renewal refused; logging in again now");
                                action = Action::Login;
                                wake = Instant::now();
                            }
                        }
                    }
                }
            }
            debug!(?action, wake_in = %human(wake.saturating_duration_since(Instant::now())), "sleeping");
        }

        info!("shutting down");
        if self.cfg.revoke_on_exit {
            if let Some(h) = held.as_ref() {
                match tokio::time::timeout(
                    Duration::from_secs(2),
                    self.client.revoke_self(&h.token),
                )
                .await
                {
                    Ok(Ok(())) => info!(accessor = %h.accessor.prefix(4), "token revoked"),
                    Ok(Err(e)) => warn!(error = %e, "token revocation failed"),
                    Err(_) => warn!("token revocation timed out after 2s"),
                }
            }
            if let Some(f) = &self.file {
                match f.remove() {
                    Ok(()) => {
                        self.status.token_removed();
                        info!(path = %f.path().display(), "token file removed");
                    }
                    Err(e) => warn!(error = %e, "cannot remove the token file"),
                }
            }
        }
        Ok(())
    }

    /// When to try again to write a token the file could not take (full or read-only volume):
    /// the min backoff, but not faster than once a second.
    fn write_retry_at(&self) -> Instant {
        Instant::now() + self.cfg.min_backoff.max(Duration::from_secs(1))
    }

    /// Runs the hooks of a new token whose first write failed, once the file holds it.
    fn run_pending_hooks(&self, unhooked: &mut Option<Auth>) {
        let written = |a: &mut Auth| self.file.as_ref().is_none_or(|f| f.holds(&a.client_token));
        if let Some(auth) = unhooked.take_if(written) {
            self.hooks.new_token(&auth);
        }
    }

    /// Rewrites the token file if it was deleted or its content replaced; false if that failed.
    fn restore_file(&self, held: Option<&Held>) -> bool {
        let (Some(f), Some(h)) = (&self.file, held) else {
            return true;
        };
        if h.expires_at.is_some_and(|at| at <= Instant::now()) || f.holds(&h.token) {
            return true;
        }
        match f.write(&h.token) {
            Ok(()) => {
                self.status.file_restored();
                warn!(path = %f.path().display(), "token file was missing or changed; restored the current token");
                true
            }
            Err(e) => {
                self.status.file_failed(&e.to_string());
                error!(error = %e, "token file cannot be written; keeping the token in memory and retrying");
                false
            }
        }
    }
}

/// Runs `fut` unless a control message arrives first: a request to a slow or hung Vault must not
/// delay SIGTERM (stop within a second) or SIGHUP. A closed channel counts as shutdown.
async fn interruptible<F: std::future::Future>(
    control: &mut mpsc::UnboundedReceiver<Control>,
    fut: F,
) -> std::result::Result<F::Output, Control> {
    tokio::select! {
        biased;
        c = control.recv() => Err(c.unwrap_or(Control::Shutdown)),
        r = fut => Ok(r),
    }
}

/// Whether a control message (or the closed channel) asks `--once` to stop.
fn stops(c: Option<Control>) -> bool {
    matches!(c, Some(Control::Shutdown) | None)
}

/// `--once` was stopped by a signal before it could write a token.
fn interrupted() -> Error {
    Error::Fatal("interrupted before a token was written".into())
}

fn text_delay_log(text: &str, delay: Duration, deadline: Instant) {
    let left = deadline.saturating_duration_since(Instant::now());
    warn!(error = %text, retry_in = %human(delay.min(left)), gives_up_in = %human(left), "login failed");
}

fn plan(next: Next) -> (Action, Instant) {
    let now = Instant::now();
    match next {
        Next::Renew(d) => (Action::Renew, now + d),
        Next::Relogin(d) => (Action::Login, now + d),
        Next::Hold => (Action::Idle, now + FAR),
    }
}

fn describe(next: Next) -> String {
    match next {
        Next::Renew(d) => format!("renew in {}", human(d)),
        Next::Relogin(d) => format!("log in again in {}", human(d)),
        Next::Hold => "nothing (token never expires)".to_string(),
    }
}
