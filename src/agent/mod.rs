//! The driver: performs what the [`crate::machine`] asks (log in, renew, write the file, run
//! hooks, revoke, exit) with the real Vault client, token file, hooks and watches, and feeds
//! the results, file changes, signals and timer expiries back to it. No decision is taken here.
//!
//! - `process`: the runtime, health server and signal handlers around the loop, for `main`.
//! - `driver`: the loop's state and its steps: perform an action, wait for the next event,
//!   deliver it to the machine.
//! - `requests`: the I/O it performs: login, renewal and revocation with their deadlines, and
//!   the token file (or stdout).
//! - `certs`: checking the certificates a previous run published, issuing and publishing new
//!   ones.
//! - `secrets`: making each distinct read, writing the secret files and rendering the templates
//!   that changed, renewing leases.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::config::{Config, TokenSink};
use crate::duration::brief;
use crate::error::{self, Error, Result, EXIT_OK};
use crate::exec::{ChildEnv, EnvSpec, Environment, Incomplete, Supervisor};
use crate::files::token_file::TokenFile;
use crate::health::status::Status;
use crate::hooks::Hooks;
use crate::jwt;
use crate::machine::events::{Adoption, Event, Exit, Grant};
use crate::machine::failure::warns_of_cap;
use crate::machine::Machine;
use crate::secrets::{SecretSpec, SecretWriter, TemplateBook};
use crate::vault::hints;
use crate::vault::login::LoginError;
use crate::vault::{Auth, Renewal, VaultClient, VaultError};

pub mod adopt;
mod certs;
mod driver;
pub mod process;
mod requests;
mod secrets;
pub mod signals;

use self::driver::Driver;

/// What the outside world (signals, tests) can ask of a running loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    /// Stop: SIGTERM or SIGINT.
    Shutdown,
    /// Re-read the JWT and log in again now: SIGHUP.
    Relogin,
    /// `exec`: a signal for the program (TERM, INT, HUP, QUIT, USR1, USR2, WINCH).
    Forward(crate::hooks::AppSignal),
}

/// A finished request, as the driver hands it back to itself.
enum Answer {
    Login(Instant, std::result::Result<Auth, LoginError>),
    Renew(Instant, std::result::Result<Renewal, VaultError>),
    Lookup(Instant, std::result::Result<Grant, VaultError>),
    Adopt(Option<adopt::Adopted>),
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
    /// The reads (one per distinct request, shared by secrets and templates) and templates.
    book: std::sync::Mutex<self::secrets::Book>,
    writer: SecretWriter,
    /// Where the environment values start among `secrets` and the book's templates.
    outputs: Outputs,
    /// `vault-login exec`'s program, checked at startup; the driver takes it.
    supervisor: std::sync::Mutex<Option<Supervisor>>,
}

/// The `VAULT_LOGIN_ENV_*` values ride along the files: field values follow the
/// `VAULT_LOGIN_SECRET_*` specs and template values follow the `VAULT_LOGIN_TEMPLATE_*`
/// templates, so the shared reads serve them all; these are the first indexes that are values.
#[derive(Clone, Copy, Debug)]
struct Outputs {
    env_specs: usize,
    env_templates: usize,
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
            TokenSink::Stdout | TokenSink::Memory => None,
        };
        let hooks = Hooks::new(&cfg.hooks);
        let writer = SecretWriter::new(&cfg.secrets.dir, cfg.token_file_mode, cfg.token_file_owner);
        if !cfg.secrets.is_empty() {
            writer.check()?;
        }
        let outputs = Outputs {
            env_specs: cfg.secrets.specs.len(),
            env_templates: cfg.secrets.templates.len(),
        };
        let (secrets, templates) = cfg.reads();
        let values = cfg.exec.as_ref().map_or(&[][..], |e| &e.values[..]);
        let supervisor = cfg.exec.clone().map(Supervisor::new).transpose();
        let supervisor = supervisor.map_err(Error::Program)?;
        status.track_secrets(secrets.iter().map(|s| s.name.clone()));
        status.track_templates(templates.iter().map(|t| t.name.clone()));
        let env = Environment::new(values.iter().map(EnvSpec::var));
        let book = TemplateBook::new(templates, crate::secrets::template::Funcs::standard());
        let pki_certs = book.first_certs();
        let pki_names = (0..pki_certs.len()).map(|k| certs::template_cert_name(&pki_certs, k));
        let dir_names = cfg.certs.specs.iter().map(|c| c.name.clone());
        status.track_certs(dir_names.chain(pki_names));
        Ok(Agent {
            book: std::sync::Mutex::new(self::secrets::Book::new(&secrets, book, env)),
            outputs,
            supervisor: std::sync::Mutex::new(supervisor),
            cfg,
            client,
            file,
            status,
            hooks,
            secrets,
            writer,
        })
    }

    /// Runs until the machine says exit: `--once` after the first written token (or at the
    /// deadline), the sidecar on [`Control::Shutdown`]. (`exec`'s child's exit code is
    /// [`Agent::run_to_exit`]'s.)
    pub async fn run(self, control: mpsc::UnboundedReceiver<Control>) -> Result<()> {
        self.run_to_exit(control).await.map(|_| ())
    }

    /// Like [`Agent::run`], with the code to exit with: `exec`'s program's, else 0.
    pub async fn run_to_exit(self, control: mpsc::UnboundedReceiver<Control>) -> Result<i32> {
        let first = jwt::first_look(&self.cfg.jwt).await;
        if let Some(e) = self.render_readless().await {
            if self.cfg.once {
                return Err(Error::Fatal(e));
            }
        }
        let supervisor = (self.supervisor.lock())
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        let mut driver = Driver::new(&self, control, first, supervisor);
        driver.adopt_certs().await;
        loop {
            while let Some(action) = driver.machine.poll_action() {
                if let Some(exit) = driver.perform(action) {
                    if let Some(outcome) = driver.outcome.take() {
                        return outcome;
                    }
                    return self.exit(exit, driver.started).map(|()| EXIT_OK);
                }
            }
            if !driver.due_now() {
                let input = driver.next_event().await;
                driver.deliver(input);
            }
        }
    }

    /// Turns a finished request into the machine's event, keeping the auth blocks (a login's
    /// in `fresh` until the machine takes it) and the shared status up to date.
    fn answered(&self, answer: Answer, auth: &mut Option<Auth>, fresh: &mut Option<Auth>) -> Event {
        match answer {
            Answer::Login(sent, Ok(a)) => {
                let grant = a.grant();
                *fresh = Some(a);
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
                // The max-TTL cap's warning is the machine's "max TTL reached" line already.
                for w in r
                    .warnings
                    .iter()
                    .filter(|w| !warns_of_cap(std::slice::from_ref(w)))
                {
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
            Answer::Lookup(sent, result) => Event::LookedUp {
                sent: sent.into_std(),
                result: result.map_err(|e| {
                    let message = e.to_string();
                    e.failure(message)
                }),
            },
            Answer::Adopt(Some(a)) => {
                self.hooks.adopted(a.issued_at);
                let found = Adoption {
                    grant: a.auth.grant(),
                    expected: a.expected,
                };
                *auth = Some(a.auth);
                Event::Adopted {
                    sent: a.sent.into_std(),
                    found: Some(found),
                }
            }
            Answer::Adopt(None) => Event::Adopted {
                sent: Instant::now().into_std(),
                found: None,
            },
            Answer::Revoked => Event::Revoked,
        }
    }

    /// The one line a login gives: what Vault granted, how long it `took`, and what the
    /// machine does next; a late answer's token replaces nothing until Vault confirms its life.
    fn log_login(&self, a: &Auth, took: Duration, replaced: bool, machine: &Machine) {
        let (next, next_in) = match self.cfg.once {
            true => ("exit", "-".to_string()),
            false => machine.next_fields(Instant::now().into_std()),
        };
        let late = machine.login_answered_late();
        let login = hints::Login {
            took,
            late,
            replaced: replaced && !late,
            next,
            next_in: &next_in,
        };
        hints::log_login(a, &login);
    }

    fn exit(&self, exit: Exit, started: Instant) -> Result<()> {
        match (&exit, self.cfg.once) {
            (Exit::Done, true) => info!(elapsed = %brief(started.elapsed()), "token written; done"),
            (Exit::Done, false) => info!("stopped"),
            _ => {}
        }
        error::of_exit(exit, self.cfg.once)
    }

    /// What `exec`'s child gets: every value (or why not yet), and the token with Vault's
    /// address and namespace when asked for.
    fn child_env(&self, auth: Option<&Auth>) -> std::result::Result<ChildEnv, Incomplete> {
        let mut env = self.book().env.snapshot()?;
        if self.cfg.exec.as_ref().is_some_and(|e| e.pass_token) {
            let Some(auth) = auth else {
                return Err(Incomplete::Waiting(vec!["VAULT_TOKEN".into()]));
            };
            env.set("VAULT_TOKEN", auth.client_token.expose().as_bytes());
            let addr = self.cfg.vault.addr.as_str().trim_end_matches('/');
            env.set("VAULT_ADDR", addr.as_bytes());
            if let Some(ns) = &self.cfg.vault.namespace {
                env.set("VAULT_NAMESPACE", ns.as_bytes());
            }
        }
        Ok(env)
    }

    fn jwt_file(&self) -> Option<&std::path::Path> {
        self.cfg.jwt.file()
    }

    fn token_dir(&self) -> Option<&std::path::Path> {
        self.file.as_ref().map(TokenFile::dir)
    }
}
