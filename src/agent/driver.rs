//! The driver's loop state and its small steps (quinn's `drive_*`): [`Driver::perform`] carries
//! out one action of the machine, [`Driver::next_event`] waits for whatever finishes first
//! (a request, a write, hooks, a file change, a signal, the machine's timer), and
//! [`Driver::deliver`] hands it to the machine as an event. Nothing here decides what to do.

use tokio::sync::mpsc;
use tokio::time::{sleep_until, Instant};
use tracing::info;

use super::adopt;
use super::certs::CertAnswer;
use super::secrets::{SecretAnswer, SecretMemo};
use super::{Agent, Answer, Control, Pending};
use crate::error::{Error, Result};
use crate::exec::supervisor::Exited;
use crate::exec::{Incomplete, Supervisor};
use crate::files::watch::{self, Watches};
use crate::jwt;
use crate::machine::backoff::random_u64;
use crate::machine::events::{Action, Event, Exit, Hook};
use crate::machine::Machine;
use crate::vault::Auth;

/// What finished while the driver waited.
pub(super) enum Input {
    /// A signal (or the control channel closed: `None`).
    Control(Option<Control>),
    /// A login, renewal or revocation answered.
    Answer(Answer),
    /// A secret read or lease renewal answered.
    Secret(SecretAnswer),
    /// A certificate's issue finished.
    Cert(CertAnswer),
    /// The token file write finished, as the machine's event.
    Written(Event),
    /// The `--once` hooks finished.
    HooksDone,
    /// A discarded fresh token's revocation finished.
    Discarded,
    /// The token file changed (or, without a watch, may have).
    TokenFileChanged,
    /// Something changed in the JWT's directory; the JWT's fingerprint as read then.
    JwtChanged(u64),
    /// The machine's timer is due.
    Timer,
    /// `exec`'s program exited.
    ChildExited(std::io::Result<std::process::ExitStatus>),
    /// `exec`'s program did not stop within the stop timeout.
    KillDue,
}

/// The loop's state: the machine, and what is in flight on its behalf.
pub(super) struct Driver<'a> {
    agent: &'a Agent,
    pub(super) machine: Machine,
    control: mpsc::UnboundedReceiver<Control>,
    control_open: bool,
    watches: Option<Watches>,
    request: Option<Pending<'a, Answer>>,
    secret_request: Option<Pending<'a, SecretAnswer>>,
    cert_request: Option<Pending<'a, CertAnswer>>,
    hooks_done: Option<Pending<'a, ()>>,
    /// The token file write in flight (on a blocking thread), and whether another was asked
    /// for meanwhile.
    writing: Option<Pending<'a, Event>>,
    /// Whether the machine was last told the token file is watched.
    token_watched: Option<bool>,
    memos: Vec<SecretMemo>,
    /// How many certificates the machine's lane has (the templates' `pkiCert`s can add some).
    certs_known: usize,
    /// The held token's latest auth block, for renewals, writes, hooks and revocation.
    auth: Option<Auth>,
    /// The last login's auth block, until the machine takes it (or discards it).
    fresh: Option<Auth>,
    /// The revocation of a discarded fresh token.
    discarding: Option<Pending<'a, ()>>,
    due_at_once: bool,
    pub(super) started: Instant,
    /// The JWT's subject as read at start: whose token may be adopted.
    sub: String,
    /// The JWT file's fingerprint at the last change delivered ([`jwt::fingerprint`]).
    jwt_seen: Option<u64>,
    /// `vault-login exec`'s program.
    exec: Option<Supervisor>,
    /// What the run ends with instead of the machine's exit: `exec`'s exit code, or why the
    /// program was never started.
    pub(super) outcome: Option<Result<i32>>,
}

fn now() -> std::time::Instant {
    Instant::now().into_std()
}

impl<'a> Driver<'a> {
    pub(super) fn new(
        agent: &'a Agent,
        control: mpsc::UnboundedReceiver<Control>,
        first: jwt::FirstLook,
        exec: Option<Supervisor>,
    ) -> Self {
        let started = Instant::now();
        let cfg = &agent.cfg;
        // The `VAULT_LOGIN_CERT_*` certificates, then the templates' `pkiCert`s.
        let mut certs = cfg.cert_settings();
        certs.count += agent.book().certs.len();
        let machine = Machine::new(cfg.machine_settings(), started.into_std(), random_u64())
            .with_certs(&certs);
        // The sidecar watches from the start; `--once` only if it has to wait for the JWT.
        let watches = (!cfg.once).then(|| Watches::new(agent.jwt_file(), agent.token_dir()));
        let memos = (agent.book().sources.iter())
            .map(|s| SecretMemo {
                written: vec![None; s.specs.len()],
                lease_id: None,
            })
            .collect();
        Driver {
            agent,
            machine,
            control,
            control_open: true,
            watches,
            request: None,
            secret_request: None,
            cert_request: None,
            hooks_done: None,
            writing: None,
            token_watched: None,
            memos,
            certs_known: certs.count,
            auth: None,
            fresh: None,
            discarding: None,
            due_at_once: false,
            started,
            // The start-up's one read of the JWT serves both.
            sub: first.claims.and_then(|c| c.sub).unwrap_or_default(),
            jwt_seen: first.fingerprint,
            exec,
            outcome: None,
        }
    }

    /// Looks at the token a previous run left in the file ([`adopt`]), for this pod's service
    /// account `sub`; the machine keeps it or logs in.
    fn adopt(&self) -> Pending<'a, Answer> {
        let (agent, sub) = (self.agent, self.sub.clone());
        Box::pin(async move {
            let cfg = &agent.cfg;
            let found = match agent.file.as_ref() {
                Some(file) => {
                    adopt::attempt(&agent.client, file, &sub, &cfg.mount, &cfg.role).await
                }
                None => None,
            };
            Answer::Adopt(found)
        })
    }

    /// On start, keeps each certificate a previous run published if it is still good for its
    /// names and its key matches: a restart issues nothing. A template's `pkiCert` kept from
    /// its destination renders its templates now, unless it is already due.
    pub(super) async fn adopt_certs(&mut self) {
        let dirs = self.agent.cfg.certs.specs.len();
        for index in 0..dirs {
            if let Some((start, end)) = self.agent.published_cert(index) {
                self.machine.adopt_cert(index, start, end);
            }
        }
        for index in dirs..self.certs_known {
            let Some((start, end, pems)) = self.agent.cached_template_cert(index) else {
                continue;
            };
            self.machine.adopt_cert(index, start, end);
            // Not yet due (or `--once`, which never renews): rendered now from the file's.
            if self.machine.cert_due(index).is_none_or(|d| d > now()) {
                self.agent.keep_template_cert(index, pems).await;
            }
        }
        self.grow(0);
    }

    /// Gives the machine what the templates added: the last `sources` reads (read as soon as
    /// a token is there, so the batch and its hooks wait for them) and the `pkiCert`
    /// certificates the book has beyond the lane's; and takes from it the reads nothing uses
    /// any more. Called before the machine hears the answer that rendered, so a retired read
    /// is never started by it.
    fn grow(&mut self, sources: usize) {
        for name in self.agent.last_source_paths(sources) {
            self.machine.add_secret(now(), name);
            self.memos.push(SecretMemo::default());
        }
        // Only the new ones are named (most answers add none): no copy of the book's reads.
        let dirs = self.agent.cfg.certs.specs.len();
        let names: Vec<String> = {
            let book = self.agent.book();
            (self.certs_known - dirs..book.certs.len())
                .map(|k| super::certs::template_cert_name(&book.certs, k))
                .collect()
        };
        for name in names {
            self.agent.status.add_cert(name);
            self.machine.add_cert(now());
            self.certs_known += 1;
        }
        let changes = self.agent.book().sweep();
        for (index, used) in changes {
            self.machine.secret_used(now(), index, used);
        }
    }

    /// The held token's expiry as the machine counts it, on tokio's clock (`None`: never).
    /// (A late login's token not taken yet is not counted: the held one is still in use.)
    fn token_expiry(&self) -> Option<Instant> {
        self.machine.token_expiry().flatten().map(Instant::from_std)
    }

    fn token(&self) -> Option<crate::sensitive::Secret> {
        self.auth.as_ref().map(|a| a.client_token.clone())
    }

    fn start_write(&mut self, restoring: bool) {
        self.writing = Some(Box::pin(self.agent.write(self.token(), restoring)));
    }

    /// Carries out one action; the exit, when the machine says so.
    pub(super) fn perform(&mut self, action: Action) -> Option<Exit> {
        let agent = self.agent;
        match action {
            Action::Login { deadline } => {
                self.request = Some(Box::pin(agent.login(deadline.map(Instant::from_std))));
            }
            Action::Take => {
                if let Some(a) = self.fresh.take() {
                    self.auth = Some(a);
                }
            }
            Action::LookupSelf { fresh, deadline } => {
                let which = if fresh { &self.fresh } else { &self.auth };
                let token = which.as_ref().map(|a| a.client_token.clone());
                let deadline = deadline.map(Instant::from_std);
                self.request = Some(Box::pin(agent.lookup(token, deadline)));
            }
            Action::Discard => match self.fresh.take() {
                Some(a) => self.discarding = Some(Box::pin(agent.discard(a.client_token))),
                None => self.machine.handle(now(), Event::Discarded),
            },
            Action::Renew {
                increment,
                deadline,
            } => {
                let deadline = deadline.map(Instant::from_std);
                self.request = Some(Box::pin(agent.renew(self.token(), increment, deadline)));
            }
            // The machine asks for one write at a time (it merges the ones needed meanwhile).
            Action::Write { restore } => self.start_write(restore),
            Action::WatchJwt => self.watch_jwt(),
            Action::RunHooks(hook) => self.run_hooks(hook),
            Action::ReadSecret { index } => {
                let last = self.memos[index].written.clone();
                self.secret_request = Some(Box::pin(agent.read_secret(index, self.token(), last)));
            }
            Action::IssueCert { index } => {
                self.cert_request = Some(Box::pin(agent.issue_cert(index, self.token())));
            }
            Action::RenewLease { index, deadline } => {
                let lease = self.memos[index].lease_id.clone().unwrap_or_default();
                let deadline = deadline.map(Instant::from_std);
                let renew = agent.renew_lease(index, self.token(), lease, deadline);
                self.secret_request = Some(Box::pin(renew));
            }
            Action::RunHooksAndWait => {
                let (a, hooks) = (self.auth.clone(), &agent.hooks);
                self.hooks_done = Some(Box::pin(async move {
                    if let Some(a) = a {
                        hooks.new_token_and_wait(&a).await;
                    }
                }));
            }
            Action::Revoke { token, deadline } => self.revoke(token, deadline),
            Action::Adopt => self.request = Some(self.adopt()),
            Action::Exit(exit) => return Some(exit),
        }
        None
    }

    fn watch_jwt(&mut self) {
        let agent = self.agent;
        let w = (self.watches).get_or_insert_with(|| Watches::new(agent.jwt_file(), None));
        w.retarget_jwt();
        info!(
            watching = w.watching_jwt(),
            "waiting for the service-account JWT file"
        );
        // It may have appeared between the failed read and the watch: look once more, through
        // the watch's own path (a read on the blocking pool, an event only if it changed).
        w.jwt_changed.notify_one();
    }

    fn run_hooks(&mut self, hook: Hook) {
        // Once per batch, like the hooks: the program sees a whole batch of changes at once.
        self.apply_env();
        let hooks = &self.agent.hooks;
        match (hook, &self.auth) {
            (Hook::NewToken, Some(a)) => hooks.new_token(a),
            (Hook::Renewed, Some(a)) => hooks.renewed(a),
            (Hook::SecretsChanged, _) => hooks.secrets_changed(),
            (Hook::NewToken | Hook::Renewed, None) => {}
        }
    }

    /// Hands `exec`'s program the environment of a finished batch: started the first time,
    /// restarted (or not) on a change; never started when a value cannot be had.
    fn apply_env(&mut self) {
        let Some(exec) = self.exec.as_mut() else {
            return;
        };
        if self.outcome.is_some() {
            return;
        }
        let result = match self.agent.child_env(self.auth.as_ref()) {
            Ok(env) => exec.update(env).map_err(Error::Program),
            Err(Incomplete::Failed(message)) if !exec.started() => {
                Err(Error::Fatal(format!("program not started: {message}")))
            }
            Err(Incomplete::Waiting(vars)) if !exec.started() => {
                info!(waiting = %vars.join(","), "program not started yet: waiting for its values");
                Ok(())
            }
            Err(_) => Ok(()),
        };
        if let Err(e) = result {
            self.finish(Err(e));
        }
    }

    /// Ends the run with `outcome` once the machine has stopped (revoking if asked).
    fn finish(&mut self, outcome: Result<i32>) {
        if self.outcome.is_none() {
            self.outcome = Some(outcome);
            self.machine.handle(now(), Event::Shutdown);
        }
    }

    fn revoke(&mut self, token: bool, deadline: std::time::Instant) {
        let token = self.token().filter(|_| token);
        let leases = (self.memos.iter_mut())
            .filter_map(|m| m.lease_id.take())
            .collect();
        self.secret_request = None;
        // A write still in flight finishes first, or it would put the token back after the
        // file is removed (the machine's deadline still holds).
        let in_flight = self.writing.take();
        let revoke = self
            .agent
            .revoke(token, leases, Instant::from_std(deadline));
        self.request = Some(Box::pin(async move {
            if let Some(write) = in_flight {
                write.await;
            }
            revoke.await
        }));
    }

    /// Handles a step that is already due (the first login) at once rather than at the
    /// timer's next millisecond tick (most of a cold start); true when it did. Every other
    /// pass goes through [`Driver::next_event`], so signals cannot be starved.
    pub(super) fn due_now(&mut self) -> bool {
        let due = (self.machine.poll_timeout()).is_some_and(|w| w <= now());
        if due && !self.due_at_once {
            self.due_at_once = true;
            self.machine.handle_timeout(now());
            return true;
        }
        self.due_at_once = false;
        false
    }

    /// Waits for the first thing to finish, signals first.
    pub(super) async fn next_event(&mut self) -> Input {
        let wake = self.machine.poll_timeout().map(Instant::from_std);
        let jwt_changed = self.watches.as_ref().map(|w| w.jwt_changed.clone());
        let jwt_source = self.agent.cfg.jwt.clone();
        let token_changed = (self.watches.as_ref())
            .filter(|w| w.watching_token())
            .map(|w| w.token_changed.clone());
        // A fact for the machine, which decides what an unwatched file needs.
        let watched = token_changed.is_some();
        if self.token_watched.replace(watched) != Some(watched) {
            self.machine.handle(now(), Event::TokenWatched(watched));
        }
        let kill_at = self.exec.as_ref().and_then(Supervisor::kill_at);
        let child_running = self.exec.as_ref().is_some_and(Supervisor::running);
        let Driver {
            control,
            control_open,
            request,
            secret_request,
            cert_request,
            writing,
            hooks_done,
            discarding,
            exec,
            ..
        } = self;
        tokio::select! {
            biased;
            c = control.recv(), if *control_open => Input::Control(c),
            st = async { exec.as_mut().expect("guarded by child_running").wait().await }, if child_running => Input::ChildExited(st),
            () = sleep_until(kill_at.unwrap_or_else(Instant::now)), if kill_at.is_some() => Input::KillDue,
            a = async { request.as_mut().expect("guarded by is_some").await }, if request.is_some() => Input::Answer(a),
            a = async { secret_request.as_mut().expect("guarded by is_some").await }, if secret_request.is_some() => Input::Secret(a),
            a = async { cert_request.as_mut().expect("guarded by is_some").await }, if cert_request.is_some() => Input::Cert(a),
            e = async { writing.as_mut().expect("guarded by is_some").await }, if writing.is_some() => Input::Written(e),
            () = async { hooks_done.as_mut().expect("guarded by is_some").await }, if hooks_done.is_some() => Input::HooksDone,
            () = async { discarding.as_mut().expect("guarded by is_some").await }, if discarding.is_some() => Input::Discarded,
            // Our own writes land here too: the write checks the content first, so an
            // unchanged file is not rewritten.
            () = watch::notified(token_changed.as_deref()), if token_changed.is_some() => Input::TokenFileChanged,
            // The watch sees the whole directory: whether the JWT itself changed takes a read,
            // made on the blocking pool like every read of it.
            () = watch::notified(jwt_changed.as_deref()), if jwt_changed.is_some() => {
                Input::JwtChanged(jwt::fingerprint_off_thread(jwt_source).await)
            }
            () = sleep_until(wake.unwrap_or_else(Instant::now)), if wake.is_some() => Input::Timer,
        }
    }

    /// Hands what finished to the machine as its event.
    pub(super) fn deliver(&mut self, input: Input) {
        let event = match input {
            Input::Control(c) => self.controlled(c),
            Input::ChildExited(status) => return self.child_exited(status),
            Input::KillDue => {
                if let Some(exec) = self.exec.as_mut() {
                    exec.kill();
                }
                return;
            }
            Input::Answer(answer) => return self.answered(answer),
            Input::Secret(answer) => Some(self.secret_answered(answer)),
            Input::Cert(answer) => {
                self.cert_request = None;
                let (event, added) = self.agent.cert_answered(answer);
                self.grow(added);
                Some(event)
            }
            Input::Written(event) => return self.written(event),
            Input::HooksDone => {
                self.hooks_done = None;
                Some(Event::HooksDone)
            }
            Input::Discarded => {
                self.discarding = None;
                Some(Event::Discarded)
            }
            Input::TokenFileChanged => Some(Event::TokenFileChanged),
            Input::JwtChanged(seen) => self.jwt_changed(seen),
            Input::Timer => return self.machine.handle_timeout(now()),
        };
        if let Some(event) = event {
            self.machine.handle(now(), event);
        }
    }

    /// `exec`'s program exited: restarted, or the run ends with its code.
    fn child_exited(&mut self, status: std::io::Result<std::process::ExitStatus>) {
        let Some(exec) = self.exec.as_mut() else {
            return;
        };
        match exec.exited(status) {
            Ok(Exited::Restarted) => {}
            Ok(Exited::Done(code)) => self.finish(Ok(code)),
            Err(e) => self.finish(Err(Error::Program(e))),
        }
    }

    /// The token's request was answered: the machine hears it, then the status and the
    /// login's one log line follow what it decided.
    fn answered(&mut self, answer: Answer) {
        self.request = None;
        // A renewal's own line says what follows; only a login needs a plan line.
        let login = match &answer {
            Answer::Login(sent, Ok(_)) => Some(sent.elapsed()),
            _ => None,
        };
        let adopted = matches!(answer, Answer::Adopt(Some(_)));
        let renewal = matches!(answer, Answer::Renew(_, Ok(_)) | Answer::Lookup(_, Ok(_)));
        let replaced = self.machine.holds_live_token(now());
        let event = (self.agent).answered(answer, &mut self.auth, &mut self.fresh);
        self.machine.handle(now(), event);
        // Counted (metrics, expiry) even if the write fails next; readiness follows the file
        // through file_failed/file_restored. The expiry is the machine's (a lookup-self of a
        // late answer's token corrects it).
        let status = &self.agent.status;
        match (&self.fresh, login) {
            (Some(a), Some(took)) => {
                status.logged_in(self.token_expiry());
                // Logged once the machine has planned, so the line says what is next (and
                // whether the answer came late).
                self.agent.log_login(a, took, replaced, &self.machine);
            }
            _ if renewal => status.renewed(self.token_expiry()),
            _ if adopted => status.adopted(self.token_expiry()),
            _ => {}
        }
    }

    /// A secret's read or lease renewal finished, as the machine's event.
    fn secret_answered(&mut self, answer: SecretAnswer) -> Event {
        self.secret_request = None;
        let (event, added) = self.agent.secret_answered(answer, &mut self.memos);
        // Reads a template makes once another's answer is in: the lane's too, due now, so the
        // batch (and its hooks) waits for them.
        self.grow(added);
        event
    }

    /// The token file's write finished; a write asked for meanwhile starts now.
    fn written(&mut self, event: Event) {
        self.writing = None;
        self.machine.handle(now(), event);
    }

    /// Something changed in the JWT's directory: an event only if the JWT itself changed.
    fn jwt_changed(&mut self, seen: u64) -> Option<Event> {
        if let Some(w) = self.watches.as_mut() {
            w.retarget_jwt();
        }
        // The watch sees the whole directory: only a change of the JWT itself (`seen` is its
        // fingerprint now) is one; a file written beside it would otherwise retry a failing
        // login at once, in a loop as fast as the writes.
        if self.jwt_seen.replace(seen) == Some(seen) {
            return None;
        }
        Some(Event::JwtChanged)
    }

    fn controlled(&mut self, c: Option<Control>) -> Option<Event> {
        let event = match c {
            Some(Control::Forward(sig)) => return self.forward(sig),
            Some(Control::Relogin) => Event::Relogin,
            Some(Control::Shutdown) => Event::Shutdown,
            None => {
                self.control_open = false;
                Event::Shutdown
            }
        };
        if event != Event::Relogin {
            // Whatever was in flight is abandoned.
            self.request = None;
            self.secret_request = None;
            self.cert_request = None;
        }
        Some(event)
    }

    /// `exec`: a signal goes to the program. Before it runs (or after it exited), one that
    /// ends processes ends vault-login with 128+N, as if the program had died of it.
    fn forward(&mut self, sig: crate::hooks::AppSignal) -> Option<Event> {
        let exec = self.exec.as_mut()?;
        if exec.forward(sig) {
            return None;
        }
        if crate::exec::stops(sig) && self.outcome.is_none() {
            info!(signal = %sig, "stopping before the program started");
            self.outcome = Some(Ok(128 + sig.number()));
            self.request = None;
            self.secret_request = None;
            return Some(Event::Shutdown);
        }
        None
    }
}
