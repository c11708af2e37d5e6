//! What the loop knows about its token, shared with the health and metrics server.

use std::sync::Mutex;
use std::time::{Duration, SystemTime};

/// Counters and the current token's lifetime; never the token itself.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// When the token in the file expires (None: no token yet, or it never expires).
    pub expires_at: Option<SystemTime>,
    /// Whether a token has been written to the file.
    pub token_written: bool,
    /// Whether the token never expires (TTL 0).
    pub never_expires: bool,
    /// Successful logins.
    pub logins_ok: u64,
    /// Failed logins.
    pub logins_failed: u64,
    /// Successful renewals.
    pub renewals_ok: u64,
    /// Failed renewals.
    pub renewals_failed: u64,
    /// Failures since the last success.
    pub consecutive_failures: u64,
    /// When the last login or renewal succeeded.
    pub last_success: Option<SystemTime>,
    /// Why the token is not usable, when it is not (for `/readyz`).
    pub last_error: Option<String>,
}

/// Thread-safe holder of the [`Snapshot`].
#[derive(Debug, Default)]
pub struct Status(Mutex<Snapshot>);

impl Status {
    /// A copy of the current state.
    pub fn snapshot(&self) -> Snapshot {
        self.0.lock().map(|s| s.clone()).unwrap_or_default()
    }

    fn update(&self, f: impl FnOnce(&mut Snapshot)) {
        if let Ok(mut s) = self.0.lock() {
            f(&mut s);
        }
    }

    /// A new token with `ttl` was written to the file.
    pub fn logged_in(&self, ttl: Duration) {
        let now = SystemTime::now();
        self.update(|s| {
            s.logins_ok += 1;
            s.consecutive_failures = 0;
            s.last_success = Some(now);
            s.token_written = true;
            s.never_expires = ttl.is_zero();
            s.expires_at = (!ttl.is_zero()).then(|| now + ttl);
            s.last_error = None;
        });
    }

    /// The token was renewed for `ttl`.
    pub fn renewed(&self, ttl: Duration) {
        let now = SystemTime::now();
        self.update(|s| {
            s.renewals_ok += 1;
            s.consecutive_failures = 0;
            s.last_success = Some(now);
            s.never_expires = ttl.is_zero();
            s.expires_at = (!ttl.is_zero()).then(|| now + ttl);
            s.last_error = None;
        });
    }

    /// A login failed with `error`.
    pub fn login_failed(&self, error: &str) {
        self.update(|s| {
            s.logins_failed += 1;
            s.consecutive_failures += 1;
            s.last_error = Some(error.to_string());
        });
    }

    /// A renewal failed with `error`.
    pub fn renewal_failed(&self, error: &str) {
        self.update(|s| {
            s.renewals_failed += 1;
            s.consecutive_failures += 1;
            s.last_error = Some(error.to_string());
        });
    }

    /// The token file could not be written or was lost.
    pub fn file_failed(&self, error: &str) {
        self.update(|s| {
            s.token_written = false;
            s.last_error = Some(error.to_string());
        });
    }

    /// The token file holds the current token again.
    pub fn file_restored(&self) {
        self.update(|s| s.token_written = true);
    }

    /// The token file was removed on shutdown.
    pub fn token_removed(&self) {
        self.update(|s| {
            s.token_written = false;
            s.expires_at = None;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::readiness;

    #[test]
    fn a_login_whose_write_failed_becomes_ready_when_the_file_is_restored() {
        let status = Status::default();
        let now = SystemTime::now();
        assert!(readiness(&status.snapshot(), now).is_err(), "no token yet");
        // As agent.rs does when the first write of a new token fails.
        status.logged_in(Duration::from_secs(60));
        status.file_failed("cannot create a temp file in /x: No space left on device");
        let reason = readiness(&status.snapshot(), now).unwrap_err();
        assert!(reason.contains("No space left"), "{reason}");
        status.file_restored();
        assert!(readiness(&status.snapshot(), now).is_ok());
        assert_eq!(status.snapshot().logins_ok, 1);
    }

    #[test]
    fn removal_on_shutdown_is_not_ready() {
        let status = Status::default();
        status.logged_in(Duration::from_secs(60));
        status.token_removed();
        assert!(readiness(&status.snapshot(), SystemTime::now()).is_err());
    }
}
