//! What the loop knows about its token, shared with the health and metrics server.
//!
//! Expiry is kept on the monotonic clock: a wall-clock step (NTP, a VM resumed, a bad RTC)
//! must not make a valid token look expired, or an expired one valid. The wall clock is read
//! only to print timestamps, through a source tests can replace.

use std::fmt;
use std::ops::{Add, Sub};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

/// The longest lifetime kept: keeps `Instant` arithmetic far from overflow (100 years).
const MAX_TTL: Duration = Duration::from_secs(100 * 365 * 86_400);

/// When a token granted `ttl` now expires (`None`: a TTL of 0 never expires); for callers
/// that have a TTL rather than the machine's expiry, such as tests.
pub fn expiry_in(ttl: Duration) -> Option<Instant> {
    (!ttl.is_zero()).then(|| Instant::now() + ttl.min(MAX_TTL))
}

/// One reading of both clocks: `mono` decides, `wall` is for printing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Now {
    /// The monotonic clock (tokio's, so tests can pause and advance it).
    pub mono: Instant,
    /// The wall clock, for timestamps in metrics.
    pub wall: SystemTime,
}

impl Add<Duration> for Now {
    type Output = Now;
    /// Both clocks `d` later.
    fn add(self, d: Duration) -> Now {
        Now {
            mono: self.mono + d,
            wall: self.wall + d,
        }
    }
}

impl Sub<Duration> for Now {
    type Output = Now;
    /// Both clocks `d` earlier.
    fn sub(self, d: Duration) -> Now {
        Now {
            mono: self.mono - d,
            wall: self.wall - d,
        }
    }
}

/// Counters and the current token's lifetime; never the token itself.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// When the token in the file expires, on the monotonic clock (None: no token yet, or it
    /// never expires).
    pub expires_at: Option<Instant>,
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
    /// When the last login or renewal succeeded, by the wall clock then.
    pub last_success: Option<SystemTime>,
    /// Why the token is not usable, when it is not; the full text, for the log. `/readyz`
    /// shows only a short, bounded summary of it.
    pub last_error: Option<String>,
    /// The secrets written next to the token, in configuration order.
    pub secrets: Vec<SecretStatus>,
    /// The templates rendered next to the token, in configuration order.
    pub templates: Vec<TemplateStatus>,
    /// The certificates published next to the token, by name.
    pub certs: Vec<CertStatus>,
}

/// One certificate's directory: never its key.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CertStatus {
    /// The directory's name (`VAULT_LOGIN_CERT_<NAME>` lower-cased).
    pub name: String,
    /// The published certificate's NotBefore, in Unix seconds (None: none published yet);
    /// with `not_after`, its lifetime, which the expiry alert takes a fraction of.
    pub not_before: Option<i64>,
    /// The published certificate's NotAfter, in Unix seconds (None: none published yet).
    pub not_after: Option<i64>,
    /// Certificates issued and published.
    pub issues_ok: u64,
    /// Failed issues.
    pub issues_failed: u64,
    /// The last failure's text, until a success.
    pub last_error: Option<String>,
}

/// One template's file: never its content.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TemplateStatus {
    /// The template's name (`VAULT_LOGIN_TEMPLATE_<NAME>` lower-cased).
    pub name: String,
    /// Whether it has rendered since the start.
    pub rendered: bool,
    /// Successful renders (the file written or already holding the result).
    pub renders_ok: u64,
    /// Failed renders (a missing key, a failed read, a wrong type).
    pub renders_failed: u64,
    /// The last failure's text (names the key or path, never a value), until a success.
    pub last_error: Option<String>,
}

/// One secret's file: never its value.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SecretStatus {
    /// The file's name (`VAULT_LOGIN_SECRET_<NAME>` lower-cased).
    pub name: String,
    /// Whether its file has been written.
    pub written: bool,
    /// Successful reads.
    pub reads_ok: u64,
    /// Failed reads and lease renewals.
    pub reads_failed: u64,
    /// When its file last changed, by the wall clock then.
    pub last_change: Option<SystemTime>,
    /// The last failure's text (for the log; `/readyz` shows a summary), until a success.
    pub last_error: Option<String>,
}

/// A wall-clock source.
pub type WallClock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

/// Thread-safe holder of the [`Snapshot`], with the clocks it is read against.
pub struct Status {
    state: Mutex<Snapshot>,
    wall: WallClock,
}

impl Default for Status {
    fn default() -> Self {
        Status::with_wall_clock(Arc::new(SystemTime::now))
    }
}

impl fmt::Debug for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Status")
            .field("state", &self.snapshot())
            .finish_non_exhaustive()
    }
}

impl Status {
    /// A status that reads the wall clock from `wall` (tests step it; the monotonic clock
    /// still decides expiry).
    pub fn with_wall_clock(wall: WallClock) -> Status {
        Status {
            state: Mutex::new(Snapshot::default()),
            wall,
        }
    }

    /// Both clocks, now.
    pub fn now(&self) -> Now {
        Now {
            mono: Instant::now(),
            wall: (self.wall)(),
        }
    }

    /// A copy of the current state.
    pub fn snapshot(&self) -> Snapshot {
        self.state.lock().map(|s| s.clone()).unwrap_or_default()
    }

    fn update(&self, f: impl FnOnce(&mut Snapshot)) {
        if let Ok(mut s) = self.state.lock() {
            f(&mut s);
        }
    }

    /// A new token was written to the file; it expires at `expires_at` (`None`: never), as
    /// the machine counts it.
    pub fn logged_in(&self, expires_at: Option<Instant>) {
        let now = self.now();
        self.update(|s| {
            s.logins_ok += 1;
            s.token_written = true;
            s.succeeded(now, expires_at);
        });
    }

    /// A token a previous run left in the file was adopted; it expires at `expires_at`.
    pub fn adopted(&self, expires_at: Option<Instant>) {
        let now = self.now();
        self.update(|s| {
            s.token_written = true;
            s.succeeded(now, expires_at);
        });
    }

    /// The token was renewed; it now expires at `expires_at`.
    pub fn renewed(&self, expires_at: Option<Instant>) {
        let now = self.now();
        self.update(|s| {
            s.renewals_ok += 1;
            s.succeeded(now, expires_at);
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

    /// The secrets to track, by file name (before the loop starts).
    pub fn track_secrets(&self, names: impl IntoIterator<Item = String>) {
        let secrets = names
            .into_iter()
            .map(|name| SecretStatus {
                name,
                ..SecretStatus::default()
            })
            .collect();
        self.update(|s| s.secrets = secrets);
    }

    /// Secret `index` was read (`changed`: its file was rewritten).
    pub fn secret_read(&self, index: usize, changed: bool) {
        let now = (self.wall)();
        self.update(|s| {
            if let Some(x) = s.secrets.get_mut(index) {
                x.written = true;
                x.reads_ok += 1;
                x.last_error = None;
                if changed {
                    x.last_change = Some(now);
                }
            }
        });
    }

    /// Reading or renewing secret `index` failed with `error`.
    pub fn secret_failed(&self, index: usize, error: &str) {
        self.update(|s| {
            if let Some(x) = s.secrets.get_mut(index) {
                x.reads_failed += 1;
                x.last_error = Some(error.to_string());
            }
        });
    }

    /// The certificates to track, by name (before the loop starts).
    pub fn track_certs(&self, names: impl IntoIterator<Item = String>) {
        let certs = (names.into_iter())
            .map(|name| CertStatus {
                name,
                ..CertStatus::default()
            })
            .collect();
        self.update(|s| s.certs = certs);
    }

    /// One more certificate to track (a template's `pkiCert` found while running), by name.
    pub fn add_cert(&self, name: String) {
        self.update(|s| {
            s.certs.push(CertStatus {
                name,
                ..CertStatus::default()
            })
        });
    }

    /// Certificate `index` is published, valid from `not_before` until `not_after` (Unix
    /// seconds); `issued`: it was just issued (else kept from a previous run).
    pub fn cert_published(&self, index: usize, not_before: i64, not_after: i64, issued: bool) {
        self.update(|s| {
            if let Some(x) = s.certs.get_mut(index) {
                x.not_before = Some(not_before);
                x.not_after = Some(not_after);
                x.issues_ok += u64::from(issued);
                x.last_error = None;
            }
        });
    }

    /// Issuing certificate `index` failed with `error`.
    pub fn cert_failed(&self, index: usize, error: &str) {
        self.update(|s| {
            if let Some(x) = s.certs.get_mut(index) {
                x.issues_failed += 1;
                x.last_error = Some(error.to_string());
            }
        });
    }

    /// The templates to track, by name (before the loop starts).
    pub fn track_templates(&self, names: impl IntoIterator<Item = String>) {
        let templates = names
            .into_iter()
            .map(|name| TemplateStatus {
                name,
                ..TemplateStatus::default()
            })
            .collect();
        self.update(|s| s.templates = templates);
    }

    /// Template `index` rendered (`Ok`) or failed with the error.
    pub fn template_rendered(&self, index: usize, result: Result<(), &str>) {
        self.update(|s| {
            if let Some(x) = s.templates.get_mut(index) {
                match result {
                    Ok(()) => {
                        x.rendered = true;
                        x.renders_ok += 1;
                        x.last_error = None;
                    }
                    Err(e) => {
                        x.renders_failed += 1;
                        x.last_error = Some(e.to_string());
                    }
                }
            }
        });
    }

    /// The token file was removed on shutdown.
    pub fn token_removed(&self) {
        self.update(|s| {
            s.token_written = false;
            s.expires_at = None;
        });
    }
}

impl Snapshot {
    /// A login or renewal succeeded at `now`; the token expires at `expires_at` (`None`: never).
    fn succeeded(&mut self, now: Now, expires_at: Option<Instant>) {
        self.consecutive_failures = 0;
        self.last_success = Some(now.wall);
        self.never_expires = expires_at.is_none();
        self.expires_at = expires_at.map(|at| at.min(now.mono + MAX_TTL));
        self.last_error = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::{readiness, render_metrics};
    use std::time::UNIX_EPOCH;

    #[test]
    fn a_login_whose_write_failed_becomes_ready_when_the_file_is_restored() {
        let status = Status::default();
        assert!(
            readiness(&status.snapshot(), status.now()).is_err(),
            "no token yet"
        );
        // As agent.rs does when the first write of a new token fails.
        status.logged_in(expiry_in(Duration::from_secs(60)));
        status.file_failed("cannot create a temp file in /x: No space left on device");
        let reason = readiness(&status.snapshot(), status.now()).unwrap_err();
        assert!(reason.contains("No space left"), "{reason}");
        status.file_restored();
        assert!(readiness(&status.snapshot(), status.now()).is_ok());
        assert_eq!(status.snapshot().logins_ok, 1);
    }

    #[test]
    fn removal_on_shutdown_is_not_ready() {
        let status = Status::default();
        status.logged_in(expiry_in(Duration::from_secs(60)));
        status.token_removed();
        assert!(readiness(&status.snapshot(), status.now()).is_err());
    }

    /// A wall clock the test can step: seconds since the epoch.
    fn stepped_clock(start: u64) -> (Arc<std::sync::atomic::AtomicU64>, Status) {
        let secs = Arc::new(std::sync::atomic::AtomicU64::new(start));
        let read = secs.clone();
        let status = Status::with_wall_clock(Arc::new(move || {
            UNIX_EPOCH + Duration::from_secs(read.load(std::sync::atomic::Ordering::SeqCst))
        }));
        (secs, status)
    }

    fn ttl_metric(text: &str) -> f64 {
        let line = text
            .lines()
            .find(|l| l.starts_with("vault_login_token_ttl_seconds "))
            .unwrap_or_else(|| panic!("no ttl in {text}"));
        line.rsplit_once(' ').unwrap().1.parse().unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn a_wall_clock_step_does_not_flip_readiness() {
        use std::sync::atomic::Ordering::SeqCst;
        let (wall, status) = stepped_clock(1_700_000_000);
        status.logged_in(expiry_in(Duration::from_secs(60)));
        // The wall clock jumps two hours ahead (an NTP step): the token is still valid.
        wall.fetch_add(7_200, SeqCst);
        let now = status.now();
        assert_eq!(readiness(&status.snapshot(), now), Ok(()));
        let text = render_metrics(&status.snapshot(), now);
        assert_eq!(ttl_metric(&text), 60.0);
        assert!(text.contains("\nvault_login_token_ready 1\n"), "{text}");
        // Printed timestamps follow the wall clock as it is now.
        assert!(
            text.contains("\nvault_login_token_expiry_timestamp_seconds 1700007260\n"),
            "{text}"
        );
        // ... and back a day: an expired token must not look valid either.
        wall.fetch_sub(7_200 + 86_400, SeqCst);
        tokio::time::advance(Duration::from_secs(61)).await;
        let reason = readiness(&status.snapshot(), status.now()).unwrap_err();
        assert_eq!(reason, "token expired 1s ago");
        assert_eq!(
            ttl_metric(&render_metrics(&status.snapshot(), status.now())),
            0.0
        );
    }

    #[tokio::test(start_paused = true)]
    async fn expiry_follows_the_monotonic_clock() {
        let (_wall, status) = stepped_clock(1_700_000_000);
        status.logged_in(expiry_in(Duration::from_secs(60)));
        tokio::time::advance(Duration::from_secs(59)).await;
        assert_eq!(readiness(&status.snapshot(), status.now()), Ok(()));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(readiness(&status.snapshot(), status.now()).is_err());
        status.renewed(expiry_in(Duration::from_secs(30)));
        assert_eq!(readiness(&status.snapshot(), status.now()), Ok(()));
        // A TTL beyond any Instant arithmetic is kept, capped.
        status.renewed(expiry_in(Duration::MAX));
        assert_eq!(readiness(&status.snapshot(), status.now()), Ok(()));
    }
}
