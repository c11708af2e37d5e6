//! The machine's vocabulary: its settings, what it is told ([`Event`]), what it asks
//! ([`Action`]), and the one classification of Vault's answers every decision relies on.

use std::fmt;
use std::time::{Duration, Instant};

/// How long a revocation on exit may take before the process exits anyway: a pod's shutdown
/// must not wait on a hung Vault.
pub const REVOKE_GRACE: Duration = Duration::from_millis(800);

/// The shortest wait before retrying a token file write the volume refused (full, read-only):
/// a broken volume sends no events, so the retry runs on a timer, but not faster than this.
pub const WRITE_RETRY_FLOOR: Duration = Duration::from_secs(1);

/// What the run is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Goal {
    /// `--once`: exit 0 once a token is written and the hooks have run; give up after `timeout`.
    Once {
        /// How long to keep trying.
        timeout: Duration,
    },
    /// Keep a valid token in the file until told to stop.
    Sidecar,
}

/// The settings the machine's decisions depend on.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Once or sidecar.
    pub goal: Goal,
    /// The first retry's wait.
    pub min_backoff: Duration,
    /// The longest retry wait.
    pub max_backoff: Duration,
    /// The TTL asked for on renewal (`VAULT_LOGIN_RENEW_INCREMENT`).
    pub renew_increment: Option<Duration>,
    /// Revoke the token and remove the file on exit.
    pub revoke_on_exit: bool,
    /// How many secrets (`VAULT_LOGIN_SECRET_<NAME>`) to keep written next to the token.
    pub secrets: usize,
    /// How often a secret without a lease is read again (`VAULT_LOGIN_SECRETS_REFRESH`).
    pub refresh: Duration,
}

/// What Vault granted: a login's or a renewal's `auth` block, reduced to what decisions need.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Grant {
    /// `lease_duration` (zero: the token never expires).
    pub ttl: Duration,
    /// Whether Vault said the token may be renewed (false for batch tokens).
    pub renewable: bool,
    /// Whether a warning said the TTL was capped at the max TTL (renewals only).
    pub capped_warning: bool,
}

/// How a failed request should be treated: one pure classification ([`classify`]) of what
/// Vault answered, so all decisions agree on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureKind {
    /// No answer, or an answer that says "later": connection errors, timeouts, 412, 429, 473,
    /// 5xx other than the max-TTL refusal. Retry the same request.
    Transient,
    /// The token or login was refused (403): log in again; for a login, retry with backoff.
    Denied,
    /// The token cannot be renewed (400 `lease is not renewable`, batch tokens): replace it by
    /// a login while a third of its life is left.
    NotRenewable,
    /// The token is at its end (500 `past the max TTL`, 400 `lease expired`): log in now.
    Expired,
    /// The service-account JWT file does not exist yet: wait for it to appear.
    JwtMissing,
    /// Anything else (a bad JWT, a 400, an unreadable answer): retry with backoff while an
    /// operator fixes it.
    Other,
}

/// A failed login or renewal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// How to treat it.
    pub kind: FailureKind,
    /// The wait Vault asked for with `Retry-After`.
    pub retry_after: Option<Duration>,
    /// One line saying what went wrong (never a secret): for logs and the final error.
    pub message: String,
}

impl Failure {
    /// A failure of `kind` saying `message`.
    pub fn new(kind: FailureKind, message: impl Into<String>) -> Failure {
        Failure {
            kind,
            retry_after: None,
            message: message.into(),
        }
    }
}

/// Classifies what Vault answered. Messages are matched as substrings so that Vault ≥ 1.17's
/// multi-error texts (`2 errors occurred:\n\t* permission denied\n\t* invalid token`) and the
/// wrapped 500s (`1 error occurred:\n\t* past the max TTL, cannot renew`) classify like the old
/// single strings.
pub fn classify(status: Option<u16>, errors: &[String]) -> FailureKind {
    let says = |needle: &str| errors.iter().any(|e| e.contains(needle));
    let Some(status) = status else {
        return FailureKind::Transient;
    };
    if says("past the max TTL") || says("lease expired") {
        return FailureKind::Expired;
    }
    if says("not renewable") || says("batch tokens cannot be renewed") {
        return FailureKind::NotRenewable;
    }
    match status {
        403 => FailureKind::Denied,
        412 | 429 | 473 | 500..=599 => FailureKind::Transient,
        _ => FailureKind::Other,
    }
}

/// Whether one of Vault's warnings on a renewal says the TTL was capped at the max TTL
/// (`TTL of "1h" exceeded the effective max_ttl of "9m30s"; TTL value is capped accordingly`).
pub fn warns_of_cap(warnings: &[String]) -> bool {
    warnings
        .iter()
        .any(|w| w.contains("capped") || w.contains("max_ttl") || w.contains("max TTL"))
}

/// The hooks to run after a token change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    /// A new token is in the file: info file, on-change command, app signal.
    NewToken,
    /// The token was renewed: the info file's expiry.
    Renewed,
    /// Only secret files changed: on-change command and app signal.
    SecretsChanged,
}

/// What a secret read gave: whether its file changed, and its lease, if it has one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SecretGrant {
    /// Whether the file was rewritten (a new KV v2 version, new content, new credentials).
    pub changed: bool,
    /// The lease of a dynamic secret (None: a static secret, refreshed on a timer).
    pub lease: Option<Grant>,
}

/// Why the run ends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Exit {
    /// Done: `--once` wrote its token, or the sidecar was told to stop.
    Done,
    /// `--once` was stopped by a signal before it finished.
    Interrupted,
    /// `--once` did not get a token written before its deadline.
    GaveUp {
        /// Login attempts made.
        attempts: u32,
        /// Time spent.
        elapsed: Duration,
        /// The last failure.
        last: String,
    },
}

/// What the driver must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Read the JWT afresh and log in; feed back [`Event::LoginDone`]. Give up waiting at
    /// `deadline` (feed a transient failure).
    Login {
        /// The latest instant the request may still be waited for.
        deadline: Option<Instant>,
    },
    /// Renew the held token; feed back [`Event::RenewDone`].
    Renew {
        /// The TTL to ask for.
        increment: Option<Duration>,
        /// The token's expiry: waiting longer than its remaining life is pointless.
        deadline: Option<Instant>,
    },
    /// Read secret `index` with the held token and write its file if it changed; feed back
    /// [`Event::SecretRead`].
    ReadSecret {
        /// Which secret.
        index: usize,
    },
    /// Renew the lease of secret `index`; feed back [`Event::LeaseRenewed`].
    RenewLease {
        /// Which secret.
        index: usize,
        /// The lease's expiry: waiting longer is pointless.
        deadline: Option<Instant>,
    },
    /// Make the token file hold the current token (a no-op if it already does); feed back
    /// [`Event::Written`] or [`Event::WriteFailed`].
    Write,
    /// Watch the JWT file's directory so its appearance is fed back as [`Event::JwtChanged`].
    WatchJwt,
    /// Run these hooks in the background.
    RunHooks(Hook),
    /// Run the new token's hooks to completion (`--once`), then feed back [`Event::HooksDone`].
    RunHooksAndWait,
    /// Revoke the held token (if `token`) and remove the token file; feed back
    /// [`Event::Revoked`]. Abandon it at `deadline`.
    Revoke {
        /// Whether a live token is held.
        token: bool,
        /// When to stop waiting for Vault.
        deadline: Instant,
    },
    /// End the run.
    Exit(Exit),
}

/// What happened, as the driver saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A login answered (or failed); `sent` is when its request was sent.
    LoginDone {
        /// When the request was sent.
        sent: Instant,
        /// The grant, or why not.
        result: Result<Grant, Failure>,
    },
    /// A renewal answered (or failed).
    RenewDone {
        /// When the request was sent.
        sent: Instant,
        /// The grant, or why not.
        result: Result<Grant, Failure>,
    },
    /// A secret read (and its file write) finished; `sent` is when the read was sent.
    SecretRead {
        /// Which secret.
        index: usize,
        /// When the request was sent.
        sent: Instant,
        /// What it gave, or why not.
        result: Result<SecretGrant, Failure>,
    },
    /// A secret's lease renewal answered.
    LeaseRenewed {
        /// Which secret.
        index: usize,
        /// When the request was sent.
        sent: Instant,
        /// The grant, or why not.
        result: Result<Grant, Failure>,
    },
    /// The token file holds the current token.
    Written,
    /// The token file could not be written.
    WriteFailed(String),
    /// The `--once` hooks finished.
    HooksDone,
    /// The revocation on exit finished (either way).
    Revoked,
    /// The JWT file appeared or changed.
    JwtChanged,
    /// The token file was changed or removed by someone else.
    TokenFileChanged,
    /// SIGHUP: log in again now.
    Relogin,
    /// SIGTERM or SIGINT: stop.
    Shutdown,
}

/// What the next timer does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Log in.
    Login,
    /// Renew the held token.
    Renew,
    /// Nothing: the token never expires.
    Nothing,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Step::Login => "log in",
            Step::Renew => "renew",
            Step::Nothing => "nothing",
        })
    }
}
