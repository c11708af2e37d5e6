//! The child process: started once its environment is complete, told about a changed
//! environment as [`Restart`] says (once per batch, only when the environment really changed),
//! sent the signals vault-login receives, stopped with the stop signal then SIGKILL, and its
//! exit turned into vault-login's exit code.

use std::path::PathBuf;
use std::process::ExitStatus;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;

use rustix::process::{kill_process, Pid, Signal};
use tokio::process::{Child, Command};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::{exit_code, resolve, ChildEnv, ExecSettings, NotRunnable, Restart};
use super::{EXIT_NOT_EXECUTABLE, EXIT_NOT_FOUND};
use crate::duration::brief;
use crate::hooks::AppSignal;

/// What a child's exit means.
#[derive(Debug, PartialEq, Eq)]
pub enum Exited {
    /// It was stopped for a restart, and started again.
    Restarted,
    /// vault-login exits with this code.
    Done(i32),
}

/// The child and what it was told.
pub struct Supervisor {
    settings: ExecSettings,
    /// The program found in `PATH` (or as given) at startup.
    program: PathBuf,
    child: Option<Child>,
    /// The running child's pid, for the reaper (0: none).
    pid: Arc<AtomicI32>,
    /// The environment the child was started with (or, with `signal` and `never`, last told
    /// about): a batch that renders the same is not a change.
    applied: Option<ChildEnv>,
    /// The newest environment: the next start uses it.
    latest: Option<ChildEnv>,
    /// Stopped to be started again; SIGKILL at this instant if it has not exited.
    restarting: bool,
    kill_at: Option<Instant>,
    /// Whether vault-login passed on a signal that ends the child: its exit then ends
    /// vault-login, restart or not.
    ending: bool,
    reaper: bool,
}

impl Supervisor {
    /// A supervisor for `settings`; the program must be found and executable now.
    pub fn new(settings: ExecSettings) -> Result<Supervisor, NotRunnable> {
        let program = resolve(
            std::path::Path::new(&settings.program),
            std::env::var_os("PATH").as_ref(),
        )?;
        Ok(Supervisor {
            settings,
            program,
            child: None,
            pid: Arc::new(AtomicI32::new(0)),
            applied: None,
            latest: None,
            restarting: false,
            kill_at: None,
            ending: false,
            reaper: false,
        })
    }

    /// Whether a child was ever started.
    pub fn started(&self) -> bool {
        self.applied.is_some()
    }

    /// Whether a child is running (its exit is awaited with [`Supervisor::wait`]).
    pub fn running(&self) -> bool {
        self.child.is_some()
    }

    /// When the stopped child is to be killed, if one is being stopped.
    pub fn kill_at(&self) -> Option<Instant> {
        self.kill_at
    }

    /// Takes the complete environment of a batch: starts the child the first time, else does
    /// what the restart policy says if it differs from what the child has.
    pub fn update(&mut self, env: ChildEnv) -> Result<(), NotRunnable> {
        self.latest = Some(env.clone());
        let Some(applied) = &self.applied else {
            return self.start();
        };
        let changed = applied.changed_names(&env);
        if changed.is_empty() || self.restarting || self.ending {
            debug!(changed = changed.len(), "environment checked");
            return Ok(());
        }
        let changed = changed.join(",");
        match self.settings.restart {
            Restart::Always if self.child.is_some() => {
                info!(changed = %changed, signal = %self.settings.stop_signal, "environment changed; restarting the program");
                self.restarting = true;
                self.kill_at = Some(Instant::now() + self.settings.stop_timeout);
                self.signal(self.settings.stop_signal);
            }
            Restart::Always => return self.start(),
            Restart::Signal => {
                info!(changed = %changed, signal = %self.settings.stop_signal, "environment changed; signalling the program (VAULT_LOGIN_EXEC_RESTART=signal)");
                self.applied = Some(env);
                self.signal(self.settings.stop_signal);
            }
            Restart::Never => {
                warn!(changed = %changed, "environment changed; the program keeps running with the old values (VAULT_LOGIN_EXEC_RESTART=never)");
                self.applied = Some(env);
            }
        }
        Ok(())
    }

    /// Passes a signal vault-login received to the child; false when no child runs. A
    /// signal that ends processes by default (TERM, INT, QUIT, HUP) cancels a restart: the
    /// child's exit then ends vault-login.
    pub fn forward(&mut self, sig: AppSignal) -> bool {
        if self.child.is_none() {
            return false;
        }
        if super::stops(sig) {
            self.ending = true;
        }
        debug!(signal = %sig, "passing the signal to the program");
        self.signal(sig);
        true
    }

    /// The child's exit; never ready while no child runs.
    pub async fn wait(&mut self) -> std::io::Result<ExitStatus> {
        match self.child.as_mut() {
            Some(c) => c.wait().await,
            None => std::future::pending().await,
        }
    }

    /// Takes the child's exit: starts it again if it was stopped for a restart, else the code
    /// vault-login exits with.
    pub fn exited(&mut self, status: std::io::Result<ExitStatus>) -> Result<Exited, NotRunnable> {
        self.child = None;
        self.pid.store(0, Ordering::Relaxed);
        self.kill_at = None;
        let code = match status {
            Ok(s) => exit_code(s),
            Err(e) => {
                warn!(error = %e, "cannot learn how the program exited");
                super::EXIT_UNKNOWN
            }
        };
        if std::mem::take(&mut self.restarting) && !self.ending {
            debug!(code, "program stopped for the restart");
            self.start()?;
            return Ok(Exited::Restarted);
        }
        info!(code, "program exited");
        Ok(Exited::Done(code))
    }

    /// The stop timeout passed: SIGKILL.
    pub fn kill(&mut self) {
        self.kill_at = None;
        warn!(timeout = %brief(self.settings.stop_timeout), "the program did not stop in time; killing it");
        if let Some(c) = self.child.as_mut() {
            let _ = c.start_kill();
        }
    }

    fn signal(&self, sig: AppSignal) {
        let pid = Pid::from_raw(self.pid.load(Ordering::Relaxed));
        let sig = Signal::from_named_raw(sig.number());
        if let (Some(pid), Some(sig)) = (pid, sig) {
            if let Err(e) = kill_process(pid, sig) {
                debug!(error = %e, "the program could not be signalled (it is exiting)");
            }
        }
    }

    fn start(&mut self) -> Result<(), NotRunnable> {
        let env = self.latest.clone().unwrap_or_default();
        let mut cmd = Command::new(&self.program);
        cmd.arg0(&self.settings.program)
            .args(&self.settings.args)
            .env_clear()
            .envs(env.compose(std::env::vars_os()));
        let started = std::time::Instant::now();
        let child = cmd.spawn().map_err(|e| NotRunnable {
            code: match e.kind() {
                std::io::ErrorKind::NotFound => EXIT_NOT_FOUND,
                _ => EXIT_NOT_EXECUTABLE,
            },
            message: format!("{}: cannot start: {e}", self.program.display()),
        })?;
        let pid = child.id().and_then(|p| i32::try_from(p).ok()).unwrap_or(0);
        self.pid.store(pid, Ordering::Relaxed);
        if !self.reaper {
            self.reaper = true;
            super::reaper::start_if_init(Arc::clone(&self.pid));
        }
        info!(pid, program = %self.program.display(), spawn = %brief(started.elapsed()), "program started");
        self.child = Some(child);
        self.applied = Some(env);
        Ok(())
    }
}
