//! What happens after a token is published: the token info file (JSON metadata, never the
//! token), the on-change command, and a signal to the app through its pid file.
//!
//! None of these can stop the token loop: a failure is logged and the loop goes on. In the
//! sidecar the command and the signal run in background tasks, one run at a time, and tokens that
//! arrive during a run coalesce into one more run after it. In `--once` mode they run to
//! completion (bounded by their timeouts) before the process exits, so init containers can use
//! them too.

pub mod command;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use rustix::process::{Pid, Signal};
use tokio::io::AsyncReadExt;
use tokio::process::{Child, ChildStderr};
use tokio::sync::Notify;
use tokio::time::{sleep, Instant};
use tracing::{error, info, warn};

use crate::duration::brief;
use crate::files::safe_fs::{self, Links, UnsafeFile};
use crate::files::token_file::{Owner, TokenFile};
use crate::jwt::{unix_now, JWT_ENV};
use crate::sensitive::Secret;
use crate::vault::Auth;

/// The variable that tells the on-change command where the token file is.
pub const TOKEN_FILE_ENV: &str = "VAULT_LOGIN_TOKEN_FILE";
/// The variable that tells the on-change command where the token info file is, when there is one.
pub const TOKEN_INFO_FILE_ENV: &str = "VAULT_LOGIN_TOKEN_INFO_FILE";
/// The most of a pid file read: a pid and a newline are a few bytes.
pub const MAX_PID_FILE_BYTES: u64 = 64;
/// How many times to try signalling the app after a new token.
const SIGNAL_TRIES: u32 = 3;
/// The wait between tries: long enough for an app that is restarting to write its pid file.
const SIGNAL_RETRY: Duration = Duration::from_secs(1);
/// How long to wait for a killed command to be reaped, and for its stderr to close.
const REAP_GRACE: Duration = Duration::from_secs(5);
/// How much of the command's stderr is kept to find its last line.
const STDERR_TAIL: usize = 4096;
/// The longest stderr line logged, in characters.
const LOGGED_LINE: usize = 300;

/// A signal vault-login can send to the app, with its conventional name.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct AppSignal {
    name: &'static str,
    signal: Signal,
}

/// Catchable signals an app may use to reload, by name without the `SIG` prefix. SIGKILL and
/// SIGSTOP are left out: the app could not react to them.
const SIGNALS: &[(&str, Signal)] = &[
    ("HUP", Signal::HUP),
    ("INT", Signal::INT),
    ("QUIT", Signal::QUIT),
    ("ILL", Signal::ILL),
    ("TRAP", Signal::TRAP),
    ("ABRT", Signal::ABORT),
    ("BUS", Signal::BUS),
    ("FPE", Signal::FPE),
    ("USR1", Signal::USR1),
    ("SEGV", Signal::SEGV),
    ("USR2", Signal::USR2),
    ("PIPE", Signal::PIPE),
    ("ALRM", Signal::ALARM),
    ("TERM", Signal::TERM),
    ("CHLD", Signal::CHILD),
    ("CONT", Signal::CONT),
    ("TSTP", Signal::TSTP),
    ("TTIN", Signal::TTIN),
    ("TTOU", Signal::TTOU),
    ("URG", Signal::URG),
    ("XCPU", Signal::XCPU),
    ("XFSZ", Signal::XFSZ),
    ("VTALRM", Signal::VTALARM),
    ("PROF", Signal::PROF),
    ("WINCH", Signal::WINCH),
    ("IO", Signal::IO),
    ("SYS", Signal::SYS),
];

/// Other names of signals in [`SIGNALS`].
const ALIASES: &[(&str, &str)] = &[("IOT", "ABRT"), ("POLL", "IO"), ("CLD", "CHLD")];

impl AppSignal {
    /// SIGHUP, the default.
    pub const HUP: AppSignal = AppSignal {
        name: "HUP",
        signal: Signal::HUP,
    };

    /// The signal's number on this platform.
    pub fn number(&self) -> i32 {
        self.signal.as_raw()
    }
}

impl std::fmt::Display for AppSignal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SIG{}", self.name)
    }
}

impl std::fmt::Debug for AppSignal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SIG{}", self.name)
    }
}

/// Parses a signal name with or without the `SIG` prefix, in any case (`HUP`, `sigusr1`), or
/// its number (`1`).
pub fn parse_signal(s: &str) -> Result<AppSignal, String> {
    const HINT: &str =
        "use a catchable signal by name or number, e.g. HUP, USR1, USR2, TERM, INT, QUIT or WINCH";
    let t = s.trim();
    if t.is_empty() {
        return Err(format!("the signal is empty; {HINT}"));
    }
    if t.bytes().all(|b| b.is_ascii_digit()) {
        let found = t
            .parse::<i32>()
            .ok()
            .and_then(Signal::from_named_raw)
            .and_then(|sig| SIGNALS.iter().find(|(_, known)| *known == sig));
        return match found {
            Some(&(name, signal)) => Ok(AppSignal { name, signal }),
            None => Err(format!(
                "{s:?} is not a signal number vault-login can send; {HINT}"
            )),
        };
    }
    let upper = t.to_ascii_uppercase();
    let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
    let bare = ALIASES
        .iter()
        .find(|(alias, _)| *alias == bare)
        .map_or(bare, |(_, name)| *name);
    match SIGNALS.iter().find(|(name, _)| *name == bare) {
        Some(&(name, signal)) => Ok(AppSignal { name, signal }),
        None => Err(format!(
            "{s:?} is not a signal vault-login can send; {HINT}"
        )),
    }
}

/// RFC 3339 UTC time of a Unix timestamp in seconds, e.g. `2024-02-29T12:00:00Z`, clamped to
/// 1970 through year 9999 (humantime formats only those; a token's times are never outside).
pub fn rfc3339(unix_secs: i64) -> String {
    // 9999-12-31T23:59:59Z; the clamp keeps the value in u64 and humantime's range.
    let secs = unix_secs.clamp(0, 253_402_300_799) as u64;
    let time = std::time::UNIX_EPOCH + Duration::from_secs(secs);
    humantime::format_rfc3339_seconds(time).to_string()
}

/// The token info file's content: the token's metadata as pretty JSON, never the token itself.
/// `issued_at` is when the token was obtained by login, `now` when Vault answered last.
pub fn token_info(auth: &Auth, issued_at: i64, now: i64) -> Secret {
    let ttl = auth.lease_duration.as_secs();
    let expires_at =
        (ttl > 0).then(|| rfc3339(now.saturating_add(i64::try_from(ttl).unwrap_or(i64::MAX))));
    let value = serde_json::json!({
        "accessor": auth.accessor.expose(),
        "policies": auth.policies,
        "renewable": auth.renewable,
        "token_type": auth.token_type,
        "lease_duration": ttl,
        "expires_at": expires_at,
        "issued_at": rfc3339(issued_at),
        "entity_id": auth.entity_id,
        "metadata": auth.metadata,
    });
    // A Value with string keys always serializes; fall back to compact output regardless.
    let text = serde_json::to_string_pretty(&value).unwrap_or_else(|_| value.to_string());
    Secret::new(text + "\n")
}

/// The last non-blank line of a command's output, trimmed, with control characters replaced and
/// cut to a length fit for a log line.
pub fn last_line(output: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(output);
    let line = text.lines().map(str::trim).rfind(|l| !l.is_empty())?;
    let mut out: String = line
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(LOGGED_LINE)
        .collect();
    if line.chars().count() > LOGGED_LINE {
        out.push('…');
    }
    Some(out)
}

/// Parses a pid file's content: one positive process id, surrounding blanks allowed.
pub fn parse_pid(content: &str) -> Result<Pid, String> {
    let t = content.trim();
    if t.is_empty() {
        return Err("is empty".to_string());
    }
    // Only positive ids: 0 and negative numbers would signal whole process groups.
    t.parse::<i32>()
        .ok()
        .filter(|pid| *pid > 0)
        .and_then(Pid::from_raw)
        .ok_or_else(|| {
            let shown: String = t.chars().take(40).collect();
            format!("does not hold a process id (it holds {shown:?})")
        })
}

/// What to do after each new token: the settings of [`Hooks`].
#[derive(Clone, Debug)]
pub struct HookSettings {
    /// Program and arguments to run after each new token, if any (never empty).
    pub on_change: Option<Vec<String>>,
    /// Kill the on-change command after this long (> 0).
    pub on_change_timeout: Duration,
    /// File holding the pid of the app to signal after each new token, if any.
    pub signal_pid_file: Option<PathBuf>,
    /// Signal to send to the app.
    pub signal: AppSignal,
    /// Where to write the token's metadata as JSON, if anywhere (never the token file).
    pub token_info_file: Option<PathBuf>,
    /// The token file, told to the on-change command; `None` when the token goes to stdout.
    pub token_file: Option<PathBuf>,
    /// Permission bits of the token info file (those of the token file).
    pub file_mode: u32,
    /// Owner to give the token info file (that of the token file), if any.
    pub file_owner: Option<Owner>,
}

/// The on-change command and what it is told.
struct OnChange {
    argv: Vec<String>,
    timeout: Duration,
    token_file: Option<PathBuf>,
    info_file: Option<PathBuf>,
}

/// Where the app's pid is and what to send it.
struct SignalTarget {
    pid_file: PathBuf,
    signal: AppSignal,
}

/// The hooks configured for this run.
pub struct Hooks {
    command: Option<Arc<OnChange>>,
    signal: Option<Arc<SignalTarget>>,
    info: Option<TokenFile>,
    /// Unix time of the last login, for `issued_at` across renewals of the same token.
    issued_at: AtomicI64,
    command_worker: OnceLock<Worker>,
    signal_worker: OnceLock<Worker>,
    /// What a template's own command is told and its time limit (those of the on-change command).
    template_base: OnChange,
    /// One worker per template with a command, by template name, started at its first change.
    template_workers: std::sync::Mutex<std::collections::HashMap<String, Worker>>,
    /// The info file's writes in order: the number of the last one issued, and of the last one
    /// written (writes run on blocking threads and may finish out of order).
    info_issued: AtomicU64,
    info_written: Arc<std::sync::Mutex<u64>>,
}

impl Hooks {
    /// The hooks `settings` ask for; nothing runs until the first token.
    pub fn new(settings: &HookSettings) -> Hooks {
        let s = settings;
        Hooks {
            command: s.on_change.as_ref().map(|argv| {
                Arc::new(OnChange {
                    argv: argv.clone(),
                    timeout: s.on_change_timeout,
                    token_file: s.token_file.clone(),
                    info_file: s.token_info_file.clone(),
                })
            }),
            signal: s.signal_pid_file.as_ref().map(|pid_file| {
                Arc::new(SignalTarget {
                    pid_file: pid_file.clone(),
                    signal: s.signal,
                })
            }),
            info: s.token_info_file.as_ref().map(|path| {
                let file = TokenFile::new(path, s.file_mode, s.file_owner);
                file.remove_stale_temps();
                file
            }),
            issued_at: AtomicI64::new(0),
            command_worker: OnceLock::new(),
            signal_worker: OnceLock::new(),
            template_base: OnChange {
                argv: Vec::new(),
                timeout: s.on_change_timeout,
                token_file: s.token_file.clone(),
                info_file: s.token_info_file.clone(),
            },
            template_workers: std::sync::Mutex::default(),
            info_issued: AtomicU64::new(0),
            info_written: Arc::default(),
        }
    }

    /// A new token was published (sidecar): write the info file, then start the command and
    /// the signal in the background. Must be called within a tokio runtime.
    pub fn new_token(&self, auth: &Auth) {
        self.logged_in(auth);
        self.secrets_changed();
    }

    /// Only secret files changed (sidecar): start the command and the signal in the background;
    /// the info file describes the token, which did not change.
    pub fn secrets_changed(&self) {
        if let Some(cmd) = &self.command {
            let cmd = cmd.clone();
            self.command_worker
                .get_or_init(|| Worker::start(move || run_command(cmd.clone())))
                .wake();
        }
        if let Some(target) = &self.signal {
            let target = target.clone();
            self.signal_worker
                .get_or_init(|| Worker::start(move || send_signal(target.clone())))
                .wake();
        }
    }

    /// A new token was published (`--once`): write the info file, run the command and send the
    /// signal, and return when both are done.
    ///
    /// Cancel-safe: dropping the future (e.g. in a `select!` against SIGTERM) kills the command's
    /// process group at once and stops signalling; the info file is already written.
    pub async fn new_token_and_wait(&self, auth: &Auth) {
        if let Some(info) = self.logged_in(auth) {
            // The process exits next: the info file must be there first.
            let _ = info.await;
        }
        let command = async {
            if let Some(cmd) = &self.command {
                run_command(cmd.clone()).await;
            }
        };
        let signal = async {
            if let Some(target) = &self.signal {
                send_signal(target.clone()).await;
            }
        };
        tokio::join!(command, signal);
    }

    /// Template `name`'s file changed (sidecar): run its command `argv` (Agent's per-template
    /// `command`) in the background, one run at a time per template, changes during a run
    /// coalescing into one more run. Must be called within a tokio runtime.
    pub fn template_changed(&self, name: &str, argv: &[String]) {
        let Ok(mut workers) = self.template_workers.lock() else {
            return;
        };
        let cmd = Arc::new(self.template_command(argv));
        workers
            .entry(name.to_string())
            .or_insert_with(|| Worker::start(move || run_command(cmd.clone())))
            .wake();
    }

    /// Template `name`'s file changed (`--once`): run its command `argv` to completion, bounded
    /// by the on-change timeout, before the process exits.
    pub async fn template_changed_and_wait(&self, argv: &[String]) {
        run_command(Arc::new(self.template_command(argv))).await;
    }

    fn template_command(&self, argv: &[String]) -> OnChange {
        let base = &self.template_base;
        OnChange {
            argv: argv.to_vec(),
            timeout: base.timeout,
            token_file: base.token_file.clone(),
            info_file: base.info_file.clone(),
        }
    }

    /// A token issued at `issued_at` (Unix seconds) by an earlier run was adopted: the info
    /// file's `issued_at` is that, not this run's start.
    pub fn adopted(&self, issued_at: i64) {
        self.issued_at.store(issued_at, Ordering::Relaxed);
    }

    /// The token was renewed: rewrite the info file with the new expiry.
    pub fn renewed(&self, auth: &Auth) {
        self.write_info(auth, self.issued_at.load(Ordering::Relaxed), unix_now());
    }

    fn logged_in(&self, auth: &Auth) -> Option<tokio::task::JoinHandle<()>> {
        let now = unix_now();
        self.issued_at.store(now, Ordering::Relaxed);
        self.write_info(auth, now, now)
    }

    /// Writes the info file on a blocking thread (a hung volume must not stall the runtime);
    /// a write that finishes after a newer one is dropped.
    fn write_info(
        &self,
        auth: &Auth,
        issued_at: i64,
        now: i64,
    ) -> Option<tokio::task::JoinHandle<()>> {
        let file = self.info.clone()?;
        let content = token_info(auth, issued_at, now);
        let number = self.info_issued.fetch_add(1, Ordering::Relaxed) + 1;
        let written = Arc::clone(&self.info_written);
        Some(tokio::task::spawn_blocking(move || {
            let Ok(mut last) = written.lock() else {
                return;
            };
            if number < *last {
                return;
            }
            *last = number;
            if let Err(e) = file.write(&content) {
                error!(error = %e, path = %file.path().display(), "token info file not written");
            }
        }))
    }
}

/// A background task that runs one job at a time; wake-ups during a run coalesce into one more
/// run after it.
struct Worker {
    wake: Arc<Notify>,
}

impl Worker {
    fn start<F, Fut>(job: F) -> Worker
    where
        F: Fn() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let wake = Arc::new(Notify::new());
        let notified = wake.clone();
        tokio::spawn(async move {
            loop {
                // notify_one keeps at most one permit: any number of wake-ups during a run
                // become one more run.
                notified.notified().await;
                job().await;
            }
        });
        Worker { wake }
    }

    fn wake(&self) {
        self.wake.notify_one();
    }
}

/// The command's process group, killed with SIGKILL when this is dropped while armed: a wait
/// that is cancelled (SIGTERM, the runtime shutting down) or timed out must not leave the
/// command, or a shell's children, running.
struct GroupGuard(Option<Pid>);

impl GroupGuard {
    /// Sends SIGKILL to the whole group; a group already gone is not an error.
    fn kill(&self) {
        if let Some(pgid) = self.0 {
            let _ = rustix::process::kill_process_group(pgid, Signal::KILL);
        }
    }

    /// The command was reaped: its group id may soon name another group, and what it left
    /// running in the background is its own business.
    fn disarm(&mut self) {
        self.0 = None;
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// How a run of the on-change command ended.
enum Outcome {
    Exited(ExitStatus),
    TimedOut,
    Lost(String),
}

/// Reads the command's stderr to its end, keeping the last [`STDERR_TAIL`] bytes.
async fn stderr_tail(stderr: Option<ChildStderr>) -> Vec<u8> {
    let mut tail = Vec::new();
    let Some(mut stderr) = stderr else {
        return tail;
    };
    let mut chunk = [0u8; 1024];
    while let Ok(n) = stderr.read(&mut chunk).await {
        if n == 0 {
            break;
        }
        tail.extend_from_slice(&chunk[..n]);
        if tail.len() > STDERR_TAIL {
            tail.drain(..tail.len() - STDERR_TAIL);
        }
    }
    tail
}

/// Waits for the command until `deadline`, then kills its group and waits for it to be reaped.
async fn wait_or_kill(child: &mut Child, group: &GroupGuard, deadline: Instant) -> Outcome {
    match tokio::time::timeout_at(deadline, child.wait()).await {
        Ok(Ok(status)) => Outcome::Exited(status),
        Ok(Err(e)) => Outcome::Lost(e.to_string()),
        Err(_) => {
            group.kill();
            match tokio::time::timeout(REAP_GRACE, child.wait()).await {
                Ok(Ok(_)) => Outcome::TimedOut,
                Ok(Err(e)) => Outcome::Lost(e.to_string()),
                Err(_) => Outcome::Lost(format!(
                    "still not reaped {} after SIGKILL",
                    brief(REAP_GRACE)
                )),
            }
        }
    }
}

/// Runs the on-change command once and logs how it went; never fails.
///
/// Cancel-safe: dropping the future kills the command's whole process group at once.
async fn run_command(cmd: Arc<OnChange>) {
    let Some((program, args)) = cmd.argv.split_first() else {
        return;
    };
    let program = program.as_str();
    let started = Instant::now();
    let mut command = tokio::process::Command::new(program);
    command
        .args(args)
        .env_remove(JWT_ENV)
        .stdin(Stdio::null())
        // Its output goes to the container log; stdout may be carrying the token (`--token-file -`).
        .stdout(Stdio::from(std::io::stderr()))
        .stderr(Stdio::piped())
        // Its own group, so a kill reaches a shell's children too.
        .process_group(0)
        .kill_on_drop(true);
    match &cmd.token_file {
        Some(path) => command.env(TOKEN_FILE_ENV, path),
        None => command.env_remove(TOKEN_FILE_ENV),
    };
    match &cmd.info_file {
        Some(path) => command.env(TOKEN_INFO_FILE_ENV, path),
        None => command.env_remove(TOKEN_INFO_FILE_ENV),
    };
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => {
            warn!(program, error = %e, "on-change command could not start");
            return;
        }
    };
    // Declared after `child`, so dropped (and the group killed) before it: the group id stays
    // valid while the child is not reaped.
    let mut group = GroupGuard(
        child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .and_then(Pid::from_raw),
    );
    let reading = stderr_tail(child.stderr.take());
    tokio::pin!(reading);
    let mut tail = None;
    let outcome = {
        let waiting = wait_or_kill(&mut child, &group, started + cmd.timeout);
        tokio::pin!(waiting);
        loop {
            tokio::select! {
                outcome = &mut waiting => break outcome,
                got = &mut reading, if tail.is_none() => tail = Some(got),
            }
        }
    };
    group.disarm();
    // A grandchild may hold stderr open after the command exits: wait for it only so long.
    let tail = match tail {
        Some(tail) => Some(tail),
        None => tokio::time::timeout(REAP_GRACE, &mut reading).await.ok(),
    };
    let stderr = tail.as_deref().and_then(last_line).unwrap_or_default();
    let elapsed = brief(started.elapsed());
    match outcome {
        Outcome::Exited(status) if status.success() => {
            info!(program, %status, elapsed, stderr, "on-change command succeeded");
        }
        Outcome::Exited(status) => {
            warn!(program, %status, elapsed, stderr, "on-change command failed");
        }
        Outcome::TimedOut => {
            warn!(program, timeout = %brief(cmd.timeout), stderr, "on-change command timed out and was killed");
        }
        Outcome::Lost(e) => {
            warn!(program, error = %e, stderr, "on-change command: cannot tell how it ended");
        }
    }
}

/// Why the app could not be signalled.
#[derive(Debug, thiserror::Error)]
pub enum SignalError {
    /// The pid file could not be read, or is not a small regular file.
    #[error("cannot read pid file {}: {source}", path.display())]
    PidFile {
        /// The pid file.
        path: PathBuf,
        /// Why: the I/O error, or what was planted there instead of a pid file.
        #[source]
        source: UnsafeFile,
    },
    /// The pid file does not hold a process id.
    #[error("pid file {} {problem}", path.display())]
    BadPid {
        /// The pid file.
        path: PathBuf,
        /// What is wrong with its content.
        problem: String,
    },
    /// `kill(2)` failed.
    #[error("cannot send {signal} to process {pid} from pid file {}: {problem}", path.display())]
    Kill {
        /// The pid file.
        path: PathBuf,
        /// The process id it held.
        pid: i32,
        /// The signal.
        signal: AppSignal,
        /// Why it failed, with what to check.
        problem: String,
    },
    /// The blocking task that reads the pid file did not finish.
    #[error("cannot signal the app: {0}")]
    Task(String),
}

/// Reads the pid file and sends the signal once; returns the pid signalled.
///
/// The app's container can write the pid file, so it is read without blocking, without
/// following a symlink and only [`MAX_PID_FILE_BYTES`] of it: a FIFO, `/dev/zero` or a huge
/// file there is an error, not a stall.
pub fn signal_app(pid_file: &Path, signal: AppSignal) -> Result<i32, SignalError> {
    let content =
        safe_fs::read_regular(pid_file, Links::Refuse, MAX_PID_FILE_BYTES).map_err(|source| {
            SignalError::PidFile {
                path: pid_file.to_path_buf(),
                source,
            }
        })?;
    let content = String::from_utf8_lossy(&content);
    let pid = parse_pid(&content).map_err(|problem| SignalError::BadPid {
        path: pid_file.to_path_buf(),
        problem,
    })?;
    rustix::process::kill_process(pid, signal.signal).map_err(|e| SignalError::Kill {
        path: pid_file.to_path_buf(),
        pid: pid.as_raw_nonzero().get(),
        signal,
        problem: match e {
            rustix::io::Errno::SRCH => "no such process (a stale pid file?)".to_string(),
            rustix::io::Errno::PERM => {
                "permission denied (run both containers as the same user, with shareProcessNamespace: true)".to_string()
            }
            other => other.to_string(),
        },
    })?;
    Ok(pid.as_raw_nonzero().get())
}

/// Signals the app, retrying a few times while the pid file is missing or stale; never fails.
async fn send_signal(target: Arc<SignalTarget>) {
    for attempt in 1..=SIGNAL_TRIES {
        let (pid_file, signal) = (target.pid_file.clone(), target.signal);
        // The pid file is read on a blocking thread: a slow volume must not stall the runtime.
        let sent = tokio::task::spawn_blocking(move || signal_app(&pid_file, signal))
            .await
            .unwrap_or_else(|e| Err(SignalError::Task(e.to_string())));
        match sent {
            Ok(pid) => {
                info!(pid, signal = %target.signal, "signalled the app");
                return;
            }
            Err(e) if attempt < SIGNAL_TRIES => {
                warn!(error = %e, attempt, retry_in = %brief(SIGNAL_RETRY), "cannot signal the app yet");
                sleep(SIGNAL_RETRY).await;
            }
            Err(e) => {
                warn!(error = %e, attempts = attempt, "cannot signal the app; giving up until the next token");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hooks::command::split_command;

    fn words(s: &str) -> Vec<String> {
        match split_command(s) {
            Ok(w) => w,
            Err(e) => panic!("{s:?}: {e}"),
        }
    }

    #[test]
    fn splits_like_a_shell() {
        for (input, want) in [
            ("prog", vec!["prog"]),
            ("  prog  a\tb\nc  ", vec!["prog", "a", "b", "c"]),
            ("prog 'a b' \"c d\"", vec!["prog", "a b", "c d"]),
            ("prog a' 'b", vec!["prog", "a b"]),
            ("prog '' \"\"", vec!["prog", "", ""]),
            ("prog a\\ b", vec!["prog", "a b"]),
            ("prog \\'x\\\"", vec!["prog", "'x\""]),
            ("prog 'it''s'", vec!["prog", "its"]),
            ("prog \"it's\"", vec!["prog", "it's"]),
            ("prog '\\n$HOME'", vec!["prog", "\\n$HOME"]),
            (
                "prog \"\\$HOME \\\" \\\\ \\` \\n\"",
                vec!["prog", "$HOME \" \\ ` \\n"],
            ),
            ("prog $HOME", vec!["prog", "$HOME"]),
            ("prog a\\\nb", vec!["prog", "ab"]),
            ("prog \"a\\\nb\"", vec!["prog", "ab"]),
            ("prog 'a|b;c&d<e>f`g'", vec!["prog", "a|b;c&d<e>f`g"]),
            ("prog \"a|b\" a\\|b", vec!["prog", "a|b", "a|b"]),
            (
                "/bin/sh -c \"echo \\$VAULT_LOGIN_TOKEN_FILE >> /tmp/out\"",
                vec!["/bin/sh", "-c", "echo $VAULT_LOGIN_TOKEN_FILE >> /tmp/out"],
            ),
            ("héllo wörld", vec!["héllo", "wörld"]),
        ] {
            assert_eq!(words(input), want, "{input:?}");
        }
    }

    #[test]
    fn refuses_what_a_shell_would_not_split() {
        for (input, needle) in [
            ("prog 'a", "unclosed single quote"),
            ("prog \"a", "unclosed double quote"),
            ("prog \"a\\", "unclosed double quote"),
            ("prog a\\", "lone backslash"),
            ("", "names no program"),
            ("   \t\n ", "names no program"),
            ("'' arg", "names no program"),
            ("prog | other", "unquoted '|'"),
            ("prog; other", "unquoted ';'"),
            ("prog && other", "unquoted '&'"),
            ("prog > out", "unquoted '>'"),
            ("prog < in", "unquoted '<'"),
            ("prog `x`", "unquoted '`'"),
        ] {
            let e = split_command(input).unwrap_err();
            assert!(e.contains(needle), "{input:?}: {e}");
            assert!(e.contains(&format!("{input:?}")), "{input:?}: {e}");
            assert!(!e.ends_with('.'), "{e}");
            assert!(!e.contains('\n'), "{e}");
        }
    }

    #[test]
    fn signal_names_and_numbers() {
        for (input, name, number) in [
            ("HUP", "HUP", 1),
            ("hup", "HUP", 1),
            ("SIGHUP", "HUP", 1),
            ("sighup", "HUP", 1),
            (" SigHup ", "HUP", 1),
            ("1", "HUP", 1),
            ("INT", "INT", 2),
            ("QUIT", "QUIT", 3),
            ("TERM", "TERM", 15),
            ("15", "TERM", 15),
            ("SIGWINCH", "WINCH", 28),
        ] {
            let sig = parse_signal(input).unwrap();
            assert_eq!(sig.to_string(), format!("SIG{name}"), "{input}");
            assert_eq!(sig.number(), number, "{input}");
        }
        // Numbers that differ between architectures: check against the platform's constants.
        assert_eq!(
            parse_signal("USR1").unwrap().number(),
            Signal::USR1.as_raw()
        );
        assert_eq!(
            parse_signal("sigusr2").unwrap().number(),
            Signal::USR2.as_raw()
        );
        let usr1 = Signal::USR1.as_raw().to_string();
        assert_eq!(parse_signal(&usr1).unwrap().to_string(), "SIGUSR1");
        assert_eq!(
            parse_signal("SIGPOLL").unwrap(),
            parse_signal("IO").unwrap()
        );
        assert_eq!(format!("{:?}", AppSignal::HUP), "SIGHUP");
    }

    #[test]
    fn signals_that_cannot_be_sent() {
        for input in [
            "",
            " ",
            "0",
            "-1",
            "KILL",
            "SIGKILL",
            "9",
            "STOP",
            "SIGSTOP",
            "99",
            "64",
            "SIG",
            "SIGSIGHUP",
            "HUP1",
            "1.0",
            "+1",
            "reload",
            "99999999999",
        ] {
            let e = parse_signal(input).unwrap_err();
            assert!(e.contains("HUP, USR1"), "{input:?}: {e}");
            assert!(!e.ends_with('.'), "{e}");
        }
        let e = parse_signal("SIGFOO").unwrap_err();
        assert!(e.starts_with("\"SIGFOO\" is not a signal"), "{e}");
    }

    #[test]
    fn rfc3339_times() {
        for (secs, want) in [
            (0, "1970-01-01T00:00:00Z"),
            // Clamped: humantime formats 1970 through 9999.
            (-1, "1970-01-01T00:00:00Z"),
            (951_782_400, "2000-02-29T00:00:00Z"),
            (1_709_208_000, "2024-02-29T12:00:00Z"),
            (1_700_000_000, "2023-11-14T22:13:20Z"),
            (4_102_444_799, "2099-12-31T23:59:59Z"),
            (253_402_300_799, "9999-12-31T23:59:59Z"),
            (i64::MAX, "9999-12-31T23:59:59Z"),
            (i64::MIN, "1970-01-01T00:00:00Z"),
        ] {
            assert_eq!(rfc3339(secs), want, "{secs}");
        }
    }

    fn auth(ttl: u64) -> Auth {
        let mut metadata = serde_json::Map::new();
        metadata.insert("role".into(), "app".into());
        Auth {
            client_token: Secret::new("hvs.THE-TOKEN"),
            accessor: Secret::new("acc-123"),
            policies: vec!["default".into(), "app".into()],
            lease_duration: Duration::from_secs(ttl),
            renewable: true,
            token_type: "service".into(),
            entity_id: "ent-1".into(),
            metadata,
        }
    }

    #[test]
    fn token_info_has_the_metadata_and_never_the_token() {
        let info = token_info(&auth(3600), 1_700_000_000, 1_700_000_100);
        let text = info.expose();
        assert!(text.ends_with('\n'));
        assert!(!text.contains("THE-TOKEN"), "{text}");
        let v: serde_json::Value = serde_json::from_str(text).unwrap();
        assert_eq!(v["accessor"], "acc-123");
        assert_eq!(v["policies"], serde_json::json!(["default", "app"]));
        assert_eq!(v["renewable"], true);
        assert_eq!(v["token_type"], "service");
        assert_eq!(v["lease_duration"], 3600);
        assert_eq!(v["issued_at"], "2023-11-14T22:13:20Z");
        assert_eq!(v["expires_at"], "2023-11-14T23:15:00Z");
        assert_eq!(v["entity_id"], "ent-1");
        assert_eq!(v["metadata"]["role"], "app");
        assert_eq!(v.as_object().unwrap().len(), 9);
        // A token that never expires has no expiry.
        let v: serde_json::Value =
            serde_json::from_str(token_info(&auth(0), 0, 0).expose()).unwrap();
        assert_eq!(v["expires_at"], serde_json::Value::Null);
        assert_eq!(v["lease_duration"], 0);
        // A huge TTL stays a valid time.
        let v: serde_json::Value =
            serde_json::from_str(token_info(&auth(u64::MAX), 0, 1_700_000_000).expose()).unwrap();
        assert_eq!(v["expires_at"], "9999-12-31T23:59:59Z");
    }

    #[test]
    fn last_lines() {
        assert_eq!(last_line(b""), None);
        assert_eq!(last_line(b"\n \n\t\n"), None);
        assert_eq!(last_line(b"boom"), Some("boom".into()));
        assert_eq!(last_line(b"first\nboom\n"), Some("boom".into()));
        assert_eq!(
            last_line(b"first\r\n  boom  \r\n\n  \n"),
            Some("boom".into())
        );
        assert_eq!(last_line(b"a\x1b[31mred"), Some("a [31mred".into()));
        assert_eq!(
            last_line(b"bad \xff utf8"),
            Some("bad \u{fffd} utf8".into())
        );
        let long = "x".repeat(1000);
        let got = last_line(long.as_bytes()).unwrap();
        assert_eq!(got.chars().count(), LOGGED_LINE + 1);
        assert!(got.ends_with('…'));
    }

    #[test]
    fn pid_files() {
        assert_eq!(parse_pid("42").unwrap().as_raw_nonzero().get(), 42);
        assert_eq!(parse_pid(" 42\n").unwrap().as_raw_nonzero().get(), 42);
        for content in [
            "",
            "\n",
            "0",
            "-1",
            "-42",
            "abc",
            "42 43",
            "4.2",
            "99999999999",
        ] {
            assert!(parse_pid(content).is_err(), "{content:?}");
        }
        assert!(parse_pid("").unwrap_err().contains("empty"));
        assert!(parse_pid("abc").unwrap_err().contains("\"abc\""));
    }

    #[tokio::test(start_paused = true)]
    async fn wake_ups_during_a_run_coalesce_into_one_more_run() {
        use std::sync::atomic::AtomicUsize;
        let runs = Arc::new(AtomicUsize::new(0));
        let counted = runs.clone();
        let worker = Worker::start(move || {
            let counted = counted.clone();
            async move {
                counted.fetch_add(1, Ordering::SeqCst);
                sleep(Duration::from_secs(10)).await;
            }
        });
        let count = || runs.load(Ordering::SeqCst);
        sleep(Duration::from_secs(1)).await;
        assert_eq!(count(), 0, "nothing runs before a wake-up");
        worker.wake();
        sleep(Duration::from_secs(1)).await;
        assert_eq!(count(), 1);
        for _ in 0..3 {
            worker.wake();
        }
        sleep(Duration::from_secs(5)).await;
        assert_eq!(count(), 1, "no overlapping run");
        sleep(Duration::from_secs(10)).await;
        assert_eq!(count(), 2, "one more run for three wake-ups");
        sleep(Duration::from_secs(60)).await;
        assert_eq!(count(), 2);
        worker.wake();
        sleep(Duration::from_secs(1)).await;
        assert_eq!(count(), 3);
    }

    /// Whether a process exists and is not a zombie.
    fn alive(pid: i32) -> bool {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            // The state follows the parenthesised command name.
            Ok(stat) => stat
                .rsplit_once(") ")
                .is_some_and(|(_, rest)| !rest.starts_with('Z') && !rest.starts_with('X')),
            Err(_) => false,
        }
    }

    async fn read_pid(path: &Path) -> i32 {
        for _ in 0..500 {
            if let Ok(text) = std::fs::read_to_string(path) {
                if let Ok(pid) = text.trim().parse() {
                    return pid;
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("{} never written", path.display());
    }

    #[tokio::test]
    async fn dropping_a_running_command_kills_its_whole_group() {
        let dir = tempfile::tempdir().unwrap();
        let (shell, grandchild) = (dir.path().join("shell"), dir.path().join("grandchild"));
        let script = format!(
            "sleep 300 & echo $! > {g}; echo $$ > {s}; wait",
            g = grandchild.display(),
            s = shell.display()
        );
        let cmd = Arc::new(OnChange {
            argv: vec!["/bin/sh".into(), "-c".into(), script],
            timeout: Duration::from_secs(300),
            token_file: None,
            info_file: None,
        });
        let run = tokio::spawn(run_command(cmd));
        let (shell, grandchild) = (read_pid(&shell).await, read_pid(&grandchild).await);
        assert!(alive(shell) && alive(grandchild));
        run.abort();
        assert!(run.await.unwrap_err().is_cancelled());
        // SIGKILL is sent synchronously on drop; the kernel needs a moment to tear them down.
        let killed_at = std::time::Instant::now();
        while (alive(shell) || alive(grandchild)) && killed_at.elapsed() < Duration::from_secs(5) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(!alive(shell), "the command survived");
        assert!(!alive(grandchild), "the command's child survived");
    }

    #[tokio::test]
    async fn new_token_and_wait_is_cancel_safe() {
        let dir = tempfile::tempdir().unwrap();
        let (shell, grandchild) = (dir.path().join("shell"), dir.path().join("grandchild"));
        let on_change = format!(
            "/bin/sh -c 'sleep 300 & echo $! > {g}; echo $$ > {s}; wait'",
            g = grandchild.display(),
            s = shell.display()
        );
        let token = dir.path().join("token").display().to_string();
        let pid_file = dir.path().join("app.pid").display().to_string();
        let vars = [
            ("VAULT_ADDR", "http://127.0.0.1:8200"),
            ("VAULT_LOGIN_ROLE", "app"),
            ("VAULT_LOGIN_TOKEN_FILE", token.as_str()),
            ("VAULT_LOGIN_ON_CHANGE", on_change.as_str()),
            ("VAULT_LOGIN_ON_CHANGE_TIMEOUT", "5m"),
            // Missing: the signal is retried while the command hangs.
            ("VAULT_LOGIN_SIGNAL_PID_FILE", pid_file.as_str()),
        ];
        let env = |name: &str| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        };
        let cfg = crate::config::Config::load(["vault-login"], &env).unwrap();
        let hooks = Hooks::new(&cfg.hooks);
        let auth = Auth {
            client_token: Secret::new("hvs.x"),
            accessor: Secret::new("a"),
            policies: vec![],
            lease_duration: Duration::from_secs(60),
            renewable: true,
            token_type: "service".into(),
            entity_id: String::new(),
            metadata: serde_json::Map::new(),
        };
        // As the driver does: the hooks against a stop signal that wins once the command runs.
        let pids = async { (read_pid(&shell).await, read_pid(&grandchild).await) };
        let (shell, grandchild) = tokio::select! {
            () = hooks.new_token_and_wait(&auth) => panic!("the command hangs: cannot finish"),
            pids = pids => pids,
        };
        // The future is dropped: the command's group is killed at once.
        let dropped_at = std::time::Instant::now();
        while (alive(shell) || alive(grandchild)) && dropped_at.elapsed() < Duration::from_secs(5) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(
            !alive(shell) && !alive(grandchild),
            "the command outlived its cancelled wait"
        );
    }

    #[tokio::test]
    async fn a_command_past_its_timeout_is_killed_with_its_group() {
        let dir = tempfile::tempdir().unwrap();
        let grandchild = dir.path().join("grandchild");
        let script = format!("sleep 300 & echo $! > {}; wait", grandchild.display());
        let cmd = Arc::new(OnChange {
            argv: vec!["/bin/sh".into(), "-c".into(), script],
            timeout: Duration::from_millis(500),
            token_file: None,
            info_file: None,
        });
        let run = tokio::spawn(run_command(cmd));
        let grandchild = read_pid(&grandchild).await;
        tokio::time::timeout(Duration::from_secs(20), run)
            .await
            .expect("the timeout ends the run")
            .unwrap();
        // SIGKILL is sent; the kernel may take a moment to tear the process down.
        let killed_at = std::time::Instant::now();
        while alive(grandchild) && killed_at.elapsed() < Duration::from_secs(5) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(
            !alive(grandchild),
            "the command's child survived its timeout"
        );
    }

    #[test]
    fn planted_pid_files_are_refused_without_blocking_or_reading_much() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.pid");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &path,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        let e = signal_app(&path, AppSignal::HUP).unwrap_err().to_string();
        assert!(e.contains("app.pid") && e.contains("FIFO"), "{e}");
        std::fs::remove_file(&path).unwrap();
        std::os::unix::fs::symlink("/dev/zero", &path).unwrap();
        let e = signal_app(&path, AppSignal::HUP).unwrap_err().to_string();
        assert!(e.contains("symbolic link"), "{e}");
        std::fs::remove_file(&path).unwrap();
        // A pid padded past the bound: refused, though a pid is in it.
        let padded = format!("{}{}", " ".repeat(64), std::process::id());
        std::fs::write(&path, padded).unwrap();
        let e = signal_app(&path, AppSignal::HUP).unwrap_err().to_string();
        assert!(e.contains("larger than 64 bytes"), "{e}");
    }

    #[test]
    fn signal_app_errors_name_the_pid_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.pid");
        let e = signal_app(&path, AppSignal::HUP).unwrap_err();
        assert!(matches!(e, SignalError::PidFile { .. }), "{e}");
        assert!(e.to_string().contains("app.pid"), "{e}");
        std::fs::write(&path, "nonsense").unwrap();
        let e = signal_app(&path, AppSignal::HUP).unwrap_err();
        assert!(matches!(e, SignalError::BadPid { .. }), "{e}");
        // A process that has exited and been reaped: its pid is (almost certainly) free.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        std::fs::write(&path, pid.to_string()).unwrap();
        match signal_app(&path, AppSignal::HUP) {
            Err(e @ SignalError::Kill { .. }) => {
                assert!(e.to_string().contains("no such process"), "{e}")
            }
            other => panic!("{other:?}"),
        }
    }
}
