//! The driver: performs what the [`crate::machine`] asks (log in, renew, write the file, run
//! hooks, revoke, exit) with the real Vault client, token file, hooks and watches, and feeds
//! the results, file changes, signals and timer expiries back to it. No decision is taken here.
//!
//! - `requests`: the I/O it performs: login, renewal and revocation with their deadlines, and
//!   the token file (or stdout).
//! - `secrets`: reading secrets, writing their files when they change, renewing their leases.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::time::{sleep_until, Instant};
use tracing::{info, warn};

use crate::config::{Config, TokenSink};
use crate::duration::brief;
use crate::error::{self, Error, Result};
use crate::files::token_file::TokenFile;
use crate::files::watch::{self, Watches};
use crate::health::status::Status;
use crate::hooks::Hooks;
use crate::jwt;
use crate::machine::backoff::random_u64;
use crate::machine::events::{Action, Event, Exit, Hook};
use crate::machine::Machine;
use crate::secrets::{SecretSpec, SecretWriter, Source};
use crate::vault::login::LoginError;
use crate::vault::{Auth, Renewal, VaultClient, VaultError};

pub mod adopt;
mod requests;
mod secrets;
pub mod signals;

use self::secrets::{SecretAnswer, SecretMemo};

/// What the outside world (signals, tests) can ask of a running loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    /// Stop: SIGTERM or SIGINT.
    Shutdown,
    /// Re-read the JWT and log in again now: SIGHUP.
    Relogin,
}

/// A finished request, as the driver hands it back to itself.
enum Answer {
    Login(Instant, std::result::Result<Auth, LoginError>),
    Renew(Instant, std::result::Result<Renewal, VaultError>),
    Revoked,
}

type Pending<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The running vault-login: configuration, Vault client, token file and shared status.
pub struct Agent {
    cfg: Config,
    client: VaultClient,
    file: Option<TokenFile>,
    status: Arc<Status>,
    hooks: Hooks,
    secrets: Vec<SecretSpec>,
    /// The secrets grouped by path: one read each.
    sources: Vec<Source>,
    writer: SecretWriter,
}

impl Agent {
    /// Prepares a run: builds the Vault client and checks the token file's directory, so
    /// configuration problems surface before any network call.
    pub fn new(cfg: Config, status: Arc<Status>) -> Result<Agent> {
        let client = VaultClient::new(&cfg.vault)?;
        if cfg.vault.tls.skip_verify {
            warn!("VAULT_SKIP_VERIFY is set: Vault's TLS certificate is NOT verified; anyone on the network path can steal the token");
        }
        let file = match &cfg.token_sink {
            TokenSink::File(path) => {
                let f = TokenFile::new(path, cfg.token_file_mode, cfg.token_file_owner);
                f.check().map_err(|source| Error::TokenFile {
                    setting: cfg.token_file_setting,
                    source,
                })?;
                Some(f)
            }
            TokenSink::Stdout => None,
        };
        let hooks = Hooks::new(&cfg.hooks);
        let writer = SecretWriter::new(&cfg.secrets.dir, cfg.token_file_mode, cfg.token_file_owner);
        let secrets = cfg.secrets.specs.clone();
        if !secrets.is_empty() {
            writer.check()?;
        }
        status.track_secrets(secrets.iter().map(|s| s.name.clone()));
        Ok(Agent {
            cfg,
            client,
            file,
            status,
            hooks,
            sources: crate::secrets::sources(&secrets),
            secrets,
            writer,
        })
    }

    /// Runs until the machine says exit: `--once` after the first written token (or at the
    /// deadline), the sidecar on [`Control::Shutdown`].
    pub async fn run(self, mut control: mpsc::UnboundedReceiver<Control>) -> Result<()> {
        let claims = jwt::log_claims(&self.cfg.jwt).await;
        let sub = claims.and_then(|c| c.sub).unwrap_or_default();
        let started = Instant::now();
        let mut machine = Machine::new(
            self.cfg.machine_settings(),
            started.into_std(),
            random_u64(),
        );
        // The sidecar watches from the start; `--once` only if it has to wait for the JWT.
        let mut watches = (!self.cfg.once).then(|| Watches::new(self.jwt_file(), self.token_dir()));
        let mut request: Option<Pending<'_, Answer>> = None;
        let mut hooks_done: Option<Pending<'_, ()>> = None;
        let mut secret_request: Option<Pending<'_, SecretAnswer>> = None;
        let mut memos: Vec<SecretMemo> = (self.sources.iter())
            .map(|s| SecretMemo {
                written: vec![None; s.specs.len()],
                lease_id: None,
            })
            .collect();
        // The held token's latest auth block, for renewals, writes, hooks and revocation.
        let mut auth: Option<Auth> = None;
        let mut control_open = true;
        let (cfg, file) = (&self.cfg, self.file.as_ref().filter(|_| !self.cfg.once));
        if let Some(f) = file {
            let attempt = adopt::attempt(&self.client, f, &sub, &cfg.mount, &cfg.role);
            // A signal during the lookup (a hung Vault) is not kept waiting; SIGHUP logs in.
            let found = tokio::select! {
                c = control.recv() => {
                    control_open = c.is_some();
                    if c.is_none_or(|c| c == Control::Shutdown) {
                        machine.handle(Instant::now().into_std(), Event::Shutdown);
                    }
                    None
                }
                found = attempt => found,
            };
            if let Some(a) = found.inspect(|a| self.status.adopted(a.auth.lease_duration)) {
                self.hooks.adopted(a.issued_at);
                machine.adopt(a.sent.into_std(), a.auth.grant(), a.expected);
                auth = Some(a.auth);
            }
        }
        // Set when the file was found changed: the next write restores it.
        let mut changed = false;
        // The token file write in flight (on a blocking thread).
        let mut writing: Option<Pending<'_, Event>> = None;
        let mut write_again = false;
        let now = || Instant::now().into_std();
        let mut due_at_once = false;
        loop {
            while let Some(action) = machine.poll_action() {
                match action {
                    Action::Login { deadline } => {
                        request = Some(Box::pin(self.login(deadline.map(Instant::from_std))));
                    }
                    Action::Renew {
                        increment,
                        deadline,
                    } => {
                        let token = auth.as_ref().map(|a| a.client_token.clone());
                        let deadline = deadline.map(Instant::from_std);
                        request = Some(Box::pin(self.renew(token, increment, deadline)));
                    }
                    // One write at a time: two on blocking threads would race each other's
                    // renames (and each other's inotify events). A write asked for meanwhile
                    // runs once the current one is done, with the token held then.
                    Action::Write if writing.is_some() => write_again = true,
                    Action::Write => {
                        let restoring = std::mem::take(&mut changed);
                        let token = auth.as_ref().map(|a| a.client_token.clone());
                        writing = Some(Box::pin(self.write(token, restoring)));
                    }
                    Action::WatchJwt => {
                        let w = watches.get_or_insert_with(|| Watches::new(self.jwt_file(), None));
                        w.retarget_jwt();
                        // It may have appeared between the failed read and the watch.
                        match jwt::read(&self.cfg.jwt) {
                            Ok(_) => machine.handle(now(), Event::JwtChanged),
                            Err(e) => {
                                info!(error = %e, watching = w.watching_jwt(), "waiting for the service-account JWT file")
                            }
                        }
                    }
                    Action::RunHooks(Hook::NewToken) => {
                        if let Some(a) = &auth {
                            self.hooks.new_token(a);
                        }
                    }
                    Action::RunHooks(Hook::Renewed) => {
                        if let Some(a) = &auth {
                            self.hooks.renewed(a);
                        }
                    }
                    Action::RunHooks(Hook::SecretsChanged) => self.hooks.secrets_changed(),
                    Action::ReadSecret { index } => {
                        let token = auth.as_ref().map(|a| a.client_token.clone());
                        let last = memos[index].written.clone();
                        secret_request = Some(Box::pin(self.read_secret(index, token, last)));
                    }
                    Action::RenewLease { index, deadline } => {
                        let token = auth.as_ref().map(|a| a.client_token.clone());
                        let lease = memos[index].lease_id.clone().unwrap_or_default();
                        let deadline = deadline.map(Instant::from_std);
                        secret_request =
                            Some(Box::pin(self.renew_lease(index, token, lease, deadline)));
                    }
                    Action::RunHooksAndWait => {
                        let a = auth.clone();
                        let hooks = &self.hooks;
                        hooks_done = Some(Box::pin(async move {
                            if let Some(a) = a {
                                hooks.new_token_and_wait(&a).await;
                            }
                        }));
                    }
                    Action::Revoke { token, deadline } => {
                        let token = auth
                            .as_ref()
                            .filter(|_| token)
                            .map(|a| a.client_token.clone());
                        let leases = memos.iter_mut().filter_map(|m| m.lease_id.take()).collect();
                        secret_request = None;
                        // A write still in flight finishes first, or it would put the token
                        // back after the file is removed (the machine's deadline still holds).
                        let in_flight = writing.take();
                        write_again = false;
                        let revoke = self.revoke(token, leases, Instant::from_std(deadline));
                        request = Some(Box::pin(async move {
                            if let Some(write) = in_flight {
                                write.await;
                            }
                            revoke.await
                        }));
                    }
                    Action::Exit(exit) => return self.exit(exit, started),
                }
            }
            let wake = machine.poll_timeout().map(Instant::from_std);
            // A step already due (the first login) runs now, not at the timer's next millisecond
            // tick (most of a cold start); every other pass goes through the select below.
            let due = wake.is_some_and(|w| w <= Instant::now());
            if due && !due_at_once {
                due_at_once = true;
                machine.handle_timeout(now());
                continue;
            }
            due_at_once = false;
            let jwt_changed = watches.as_ref().map(|w| w.jwt_changed.clone());
            let token_changed = watches
                .as_ref()
                .filter(|w| w.watching_token())
                .map(|w| w.token_changed.clone());
            tokio::select! {
                biased;
                c = control.recv(), if control_open => {
                    let event = match c {
                        Some(Control::Relogin) => Event::Relogin,
                        Some(Control::Shutdown) => Event::Shutdown,
                        None => {
                            control_open = false;
                            Event::Shutdown
                        }
                    };
                    if event != Event::Relogin {
                        // Whatever was in flight is abandoned.
                        request = None;
                        secret_request = None;
                    }
                    machine.handle(now(), event);
                }
                answer = async { request.as_mut().expect("guarded by is_some").await }, if request.is_some() => {
                    request = None;
                    // A renewal's own line says what follows; only a login needs a plan line.
                    let login = matches!(answer, Answer::Login(_, Ok(_)));
                    let event = self.answered(answer, &mut auth, &machine);
                    machine.handle(now(), event);
                    if login {
                        self.log_plan(&machine, &auth);
                    }
                }
                answer = async { secret_request.as_mut().expect("guarded by is_some").await }, if secret_request.is_some() => {
                    secret_request = None;
                    let event = self.secret_answered(answer, &mut memos);
                    machine.handle(now(), event);
                }
                event = async { writing.as_mut().expect("guarded by is_some").await }, if writing.is_some() => {
                    writing = None;
                    machine.handle(now(), event);
                    if std::mem::take(&mut write_again) && writing.is_none() {
                        let restoring = std::mem::take(&mut changed);
                        let token = auth.as_ref().map(|a| a.client_token.clone());
                        writing = Some(Box::pin(self.write(token, restoring)));
                    }
                }
                () = async { hooks_done.as_mut().expect("guarded by is_some").await }, if hooks_done.is_some() => {
                    hooks_done = None;
                    machine.handle(now(), Event::HooksDone);
                }
                () = watch::notified(token_changed.as_deref()), if token_changed.is_some() => {
                    // Our own writes land here too: the write checks the content first, so
                    // an unchanged file is not rewritten.
                    changed = true;
                    machine.handle(now(), Event::TokenFileChanged);
                }
                () = watch::notified(jwt_changed.as_deref()), if jwt_changed.is_some() => {
                    if let Some(w) = watches.as_mut() {
                        w.retarget_jwt();
                    }
                    machine.handle(now(), Event::JwtChanged);
                }
                () = sleep_until(wake.unwrap_or_else(Instant::now)), if wake.is_some() => {
                    // Without a directory watch, check the file at every wake-up instead.
                    if token_changed.is_none() && !self.cfg.once && auth.is_some() {
                        changed = true;
                        machine.handle(now(), Event::TokenFileChanged);
                    }
                    machine.handle_timeout(now());
                }
            }
        }
    }

    /// Turns a finished request into the machine's event, keeping the auth block and the
    /// shared status up to date.
    fn answered(&self, answer: Answer, auth: &mut Option<Auth>, machine: &Machine) -> Event {
        match answer {
            Answer::Login(sent, Ok(a)) => {
                // Counted as a login (metrics, expiry) even if the write fails next;
                // readiness follows the file through file_failed/file_restored.
                self.status.logged_in(a.lease_duration);
                let grant = a.grant();
                info!(
                    ttl = %brief(a.lease_duration),
                    renewable = grant.renewable,
                    token_type = %a.token_type,
                    policies = ?a.policies,
                    accessor = %a.accessor.prefix(4),
                    replaced = machine.holds_live_token(Instant::now().into_std()),
                    "logged in"
                );
                *auth = Some(a);
                Event::LoginDone {
                    sent: sent.into_std(),
                    result: Ok(grant),
                }
            }
            Answer::Login(sent, Err(e)) => {
                let failure = e.failure();
                self.status.login_failed(&failure.message);
                Event::LoginDone {
                    sent: sent.into_std(),
                    result: Err(failure),
                }
            }
            Answer::Renew(sent, Ok(r)) => {
                self.status.renewed(r.auth.lease_duration);
                for w in &r.warnings {
                    info!(warning = %w, "Vault warning on renewal");
                }
                let grant = r.grant();
                if let Some(held) = auth.as_mut() {
                    // Keep the token we hold: a renewal answer may omit it.
                    let token = held.client_token.clone();
                    *held = Auth {
                        client_token: token,
                        ..r.auth
                    };
                }
                Event::RenewDone {
                    sent: sent.into_std(),
                    result: Ok(grant),
                }
            }
            Answer::Renew(sent, Err(e)) => {
                let message = e.to_string();
                self.status.renewal_failed(&message);
                Event::RenewDone {
                    sent: sent.into_std(),
                    result: Err(e.failure(message)),
                }
            }
            Answer::Revoked => Event::Revoked,
        }
    }

    fn log_plan(&self, machine: &Machine, auth: &Option<Auth>) {
        if !self.cfg.once && auth.is_some() {
            let (next, next_in) = machine.next_fields(Instant::now().into_std());
            info!(next, next_in, "plan");
        }
    }

    fn exit(&self, exit: Exit, started: Instant) -> Result<()> {
        match (&exit, self.cfg.once) {
            (Exit::Done, true) => info!(elapsed = %brief(started.elapsed()), "token written; done"),
            (Exit::Done, false) => info!("stopped"),
            _ => {}
        }
        error::of_exit(exit, self.cfg.once)
    }

    fn jwt_file(&self) -> Option<&std::path::Path> {
        self.cfg.jwt.file()
    }

    fn token_dir(&self) -> Option<&std::path::Path> {
        self.file.as_ref().map(TokenFile::dir)
    }
}
