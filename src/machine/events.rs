//! What the machine and its driver say to each other: what the machine is told ([`Event`]),
//! what it asks for ([`Action`]), and the words both use (its settings, Vault's grants, hooks,
//! the run's exit, the next step).

use std::fmt;
use std::time::{Duration, Instant};

use crate::machine::failure::Failure;

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
    /// The longest wait between logins while no valid token is held
    /// (`VAULT_LOGIN_RECOVERY_BACKOFF`), unless Vault said it is busy or sealed.
    pub recovery_backoff: Duration,
    /// The TTL asked for on renewal (`VAULT_LOGIN_RENEW_INCREMENT`).
    pub renew_increment: Option<Duration>,
    /// Revoke the token and remove the file on exit.
    pub revoke_on_exit: bool,
    /// Look at the token file's token before the first login (a sidecar with a token file).
    pub adopt: bool,
    /// The distinct reads that secrets (`VAULT_LOGIN_SECRET_<NAME>`) and templates make, by
    /// their API path (never arguments, which may be secret): one lane entry each, named in logs.
    pub secrets: Vec<String>,
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
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretGrant {
    /// Whether the file was rewritten (a new KV v2 version, new content, new credentials).
    pub changed: bool,
    /// The lease of a dynamic secret (None: a static secret, refreshed on a timer).
    pub lease: Option<Grant>,
    /// The read succeeded but a file made from it could not be rendered (a template's missing
    /// key): what is wrong. Its file keeps its last good content; the read's lease is kept.
    pub problem: Option<String>,
}

/// A certificate Vault issued and the driver published: its validity on the machine's clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CertGrant {
    /// NotBefore.
    pub not_before: Instant,
    /// NotAfter.
    pub not_after: Instant,
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
    /// The login's token (fed back with [`Event::LoginDone`]) becomes the held one: renewals,
    /// reads, writes and the revocation on exit use it from now on. Nothing is fed back.
    Take,
    /// Ask Vault how long a token really has left (`lookup-self`): the fresh login's token not
    /// taken yet (`fresh`), or the held one; feed back [`Event::LookedUp`]. Give up waiting at
    /// `deadline` (feed a transient failure).
    LookupSelf {
        /// Whether to look up the login's token that was not taken (else the held one).
        fresh: bool,
        /// The latest instant the request may still be waited for.
        deadline: Option<Instant>,
    },
    /// Revoke the login's token that was not taken (`revoke-self` with it) and forget it: it was
    /// never written, so no one else has it. Feed back [`Event::Discarded`].
    Discard,
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
    /// Issue certificate `index` with the held token and publish it; feed back
    /// [`Event::CertIssued`].
    IssueCert {
        /// Which certificate.
        index: usize,
    },
    /// Make the token file hold the current token (a no-op if it already does); feed back
    /// [`Event::Written`] or [`Event::WriteFailed`].
    Write {
        /// The file was found missing or changed since the token was taken: a rewrite
        /// restores it (and says so).
        restore: bool,
    },
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
    /// Look at the token a previous run left in the file (`lookup-self`: is it this role's and
    /// this service account's, and alive?); feed back [`Event::Adopted`].
    Adopt,
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
    /// A `lookup-self` answered: the token's remaining `ttl` (zero: it never expires) and
    /// whether it is renewable, as a grant.
    LookedUp {
        /// When the request was sent.
        sent: Instant,
        /// What Vault said of the token, or why not.
        result: Result<Grant, Failure>,
    },
    /// The token file's token was looked at ([`Action::Adopt`]): `found` when it is kept.
    Adopted {
        /// When its `lookup-self` was sent.
        sent: Instant,
        /// What the kept token has left, or `None`: log in.
        found: Option<Adoption>,
    },
    /// The token of [`Action::Discard`] was revoked (or that failed: it was tried once).
    Discarded,
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
    /// A certificate's issue (and its publication) finished.
    CertIssued {
        /// Which certificate.
        index: usize,
        /// When the request was sent.
        sent: Instant,
        /// Its validity, or why not.
        result: Result<CertGrant, Failure>,
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
    /// Whether the token file's directory is watched now. Without a watch, the file is
    /// checked at every wake-up instead (a sidecar only).
    TokenWatched(bool),
    /// SIGHUP: log in again now.
    Relogin,
    /// SIGTERM or SIGINT: stop.
    Shutdown,
}

/// A token a previous run left in the file, kept: its remaining life as `lookup-self` says it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Adoption {
    /// Its remaining TTL and whether it is renewable.
    pub grant: Grant,
    /// The TTL it was created with: what a renewal should give back (a shorter one is capped).
    pub expected: Duration,
}

/// What the next timer does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Log in.
    Login,
    /// Renew the held token.
    Renew,
    /// Ask Vault how long a token whose answer came late really has left.
    Lookup,
    /// Look at the token a previous run left in the file before logging in.
    Adopt,
    /// Nothing: the token never expires.
    Nothing,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Step::Login => "log in",
            Step::Renew => "renew",
            Step::Lookup => "look up",
            Step::Adopt => "adopt",
            Step::Nothing => "nothing",
        })
    }
}
