//! The real [`Agent`] in-process, in virtual time: inside `#[tokio::test(start_paused = true)]`
//! it runs on the test's runtime against [`Emulator::start_in_runtime`], whose clock is the
//! test's, with real files in a temp dir and the same environment [`super::Setup`] gives the
//! binary. tokio's paused clock jumps to the next timer whenever every task waits, so hours of
//! token lifetime pass in milliseconds and the timing is the same on a loaded machine.
//!
//! Real child processes (the on-change command) and inotify events run in real time, outside
//! the runtime: a test waits for them with [`settle`], which holds virtual time still meanwhile
//! (tokio does not auto-advance a paused clock while a blocking task runs).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::{sleep, sleep_until, Instant};
use tracing::subscriber::DefaultGuard;
use vault_emulator::{DynamicRole, Emulator, Options, Role};
use vault_login::agent::{Agent, Control};
use vault_login::config::Config;
use vault_login::error::{Error, EXIT_OK};
use vault_login::health::status::Status;

/// How long the JWT written at start stays valid: longer than any virtual run.
const JWT_TTL_SECS: i64 = 60 * 86_400;

/// An in-runtime emulator with role "default" (audience "vault"), a temp dir with a JWT file, a
/// token path, and the environment the agent is configured from.
pub struct Virtual {
    pub emu: Emulator,
    pub dir: tempfile::TempDir,
    pub jwt_path: PathBuf,
    pub token_path: PathBuf,
    pub env: BTreeMap<String, String>,
}

impl Virtual {
    /// # Panics
    /// Outside a tokio runtime.
    pub fn new() -> Virtual {
        Self::with_role(Role::default())
    }

    pub fn with_role(role: Role) -> Virtual {
        let emu = Emulator::start_in_runtime(Options::default());
        let (dir, jwt_path, token_path, env) = super::prepare(&emu, role, JWT_TTL_SECS);
        Virtual {
            emu,
            dir,
            jwt_path,
            token_path,
            env,
        }
    }

    /// 1 h tokens (max `token_max_ttl`) whose policy `app` reads `database/creds/app`, a
    /// dynamic secret with a 1 h lease, max 24 h; the secret is `VAULT_LOGIN_SECRET_CREDS`.
    pub fn with_hourly_db_creds(token_max_ttl: Duration) -> Virtual {
        const HOUR: Duration = Duration::from_secs(3600);
        let mut v = Self::with_role(Role {
            token_policies: vec!["app".into()],
            token_ttl: HOUR,
            token_max_ttl,
            ..Role::default()
        });
        v.emu
            .put_policy("app", &[("database/creds/app", &["read"])]);
        let lease = DynamicRole {
            default_ttl: HOUR,
            max_ttl: 24 * HOUR,
            renewable: true,
        };
        v.emu.put_dynamic_role("database", "app", lease);
        v.set("VAULT_LOGIN_SECRET_CREDS", "database/creds/app");
        v
    }

    pub fn set(&mut self, k: &str, v: impl Into<String>) -> &mut Self {
        self.env.insert(k.into(), v.into());
        self
    }

    pub fn unset(&mut self, k: &str) -> &mut Self {
        self.env.remove(k);
        self
    }

    /// The configuration the binary would build from these flags and this environment.
    pub fn config(&self, args: &[&str]) -> Result<Config, Error> {
        let env = |name: &str| self.env.get(name).cloned();
        let argv = std::iter::once("vault-login").chain(args.iter().copied());
        // The names too, as `from_process` lists them: `VAULT_LOGIN_SECRET_<NAME>` is open-ended.
        let names: Vec<String> = self.env.keys().cloned().collect();
        Ok(Config::load_with_names(argv, &env, &names)?)
    }

    /// Starts the agent (sidecar mode unless `args` says `--once`) as a task on this runtime.
    ///
    /// # Panics
    /// When the configuration is refused or the agent cannot be built.
    pub fn spawn(&self, args: &[&str]) -> Running {
        let logs = Logs::default();
        let guard = logs.capture(self.env.get("VAULT_LOGIN_LOG").map_or("info", |s| s));
        let cfg = self
            .config(args)
            .unwrap_or_else(|e| panic!("configuration refused: {e}"));
        // The wall clock the metrics print follows virtual time too, as the emulator's does.
        let (wall0, mono0) = (std::time::SystemTime::now(), Instant::now());
        let status = Arc::new(Status::with_wall_clock(Arc::new(move || {
            wall0 + (Instant::now() - mono0)
        })));
        let agent =
            Agent::new(cfg, Arc::clone(&status)).unwrap_or_else(|e| panic!("agent not built: {e}"));
        let (control, rx) = mpsc::unbounded_channel();
        Running {
            control,
            task: Some(tokio::spawn(agent.run(rx))),
            status,
            logs,
            started: Instant::now(),
            _guard: guard,
        }
    }

    /// Runs `--once` (plus `args`) to the end, as the binary's `main` would.
    pub async fn once(&self, args: &[&str]) -> Finished {
        let mut all = vec!["--once"];
        all.extend_from_slice(args);
        self.spawn(&all).finish().await
    }

    pub fn token(&self) -> Option<String> {
        std::fs::read_to_string(&self.token_path).ok()
    }

    /// Waits up to an hour of virtual time for the token file and returns its content.
    pub async fn wait_token(&self) -> String {
        assert!(
            wait_for(Duration::from_secs(3600), || self.token().is_some()).await,
            "token written"
        );
        self.token().unwrap()
    }
}

/// The agent running as a task; aborted on drop.
pub struct Running {
    control: mpsc::UnboundedSender<Control>,
    task: Option<JoinHandle<vault_login::Result<()>>>,
    pub status: Arc<Status>,
    pub logs: Logs,
    started: Instant,
    _guard: DefaultGuard,
}

impl Running {
    /// Everything logged so far.
    pub fn stderr(&self) -> String {
        self.logs.text()
    }

    /// What SIGHUP does.
    pub fn relogin(&self) {
        let _ = self.control.send(Control::Relogin);
    }

    /// What SIGTERM and SIGINT do; [`Running::finish`] then collects the outcome.
    pub fn shutdown(&self) {
        let _ = self.control.send(Control::Shutdown);
    }

    /// Whether the agent is still running.
    pub fn is_running(&self) -> bool {
        self.task.as_ref().is_some_and(|t| !t.is_finished())
    }

    /// Waits (in virtual time, without limit) for the agent to return.
    pub async fn finish(mut self) -> Finished {
        let task = self.task.take().expect("finished once");
        let result = task.await.expect("agent task panicked");
        let mut stderr = self.logs.text();
        if let Err(e) = &result {
            // What the binary's main prints last.
            stderr.push_str(&format!("vault-login: {e}\n"));
        }
        Finished {
            result,
            stderr,
            elapsed: self.started.elapsed(),
        }
    }

    /// Waits for the agent to log `needle`, or panics after `limit` of virtual time.
    pub async fn wait_log(&self, needle: &str, limit: Duration) {
        let ok = wait_for(limit, || self.logs.text().contains(needle)).await;
        assert!(
            ok,
            "log line {needle:?} not seen in time; logs:\n{}",
            self.stderr()
        );
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// How a run ended.
#[derive(Debug)]
pub struct Finished {
    pub result: vault_login::Result<()>,
    /// The logs, then the line the binary prints when it fails (`vault-login: <error>`).
    pub stderr: String,
    /// Virtual time from start to return.
    pub elapsed: Duration,
}

impl Finished {
    /// The exit code the binary would exit with.
    pub fn code(&self) -> i32 {
        match &self.result {
            Ok(()) => EXIT_OK,
            Err(e) => e.exit_code(),
        }
    }

    #[track_caller]
    pub fn assert_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code(),
            code,
            "exit code; result {:?}; logs:\n{}",
            self.result,
            self.stderr
        );
        self
    }
}

/// The agent's log lines, captured with the binary's text format from every task polled on the
/// test's (current-thread) runtime.
#[derive(Clone, Default)]
pub struct Logs(Arc<Mutex<Vec<u8>>>);

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    /// Makes this thread's log events land here (with `filter`, as `VAULT_LOGIN_LOG` takes it) until the
    /// guard is dropped.
    fn capture(&self, filter: &str) -> DefaultGuard {
        let buf = self.0.clone();
        use tracing_subscriber::layer::SubscriberExt;
        let targets: tracing_subscriber::filter::Targets = filter.parse().expect("a log filter");
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(move || LogWriter(buf.clone()))
            .with_target(false)
            .with_ansi(false)
            .finish()
            .with(targets);
        tracing::subscriber::set_default(subscriber)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// Polls `cond` until it holds (true) or `limit` of virtual time passes (false), in steps of
/// a two-thousandth of `limit` (at least 1 ms, at most a minute).
pub async fn wait_for(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let step = (limit / 2000).clamp(Duration::from_millis(1), Duration::from_secs(60));
    let deadline = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        sleep(step.min(deadline - Instant::now())).await;
    }
}

/// Waits in real time for the world outside the runtime (a child process, a file-system event)
/// until `cond` holds (true) or `limit` of real time passes (false). Virtual time stands still
/// meanwhile, so a timeout in the agent cannot fire just because the test waited; the runtime
/// still runs every task that has work (I/O, signals, the agent's reaction).
pub async fn settle(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        hold_still(Duration::from_millis(5)).await;
    }
}

/// Lets `real` of real time pass with virtual time standing still.
pub async fn hold_still(real: Duration) {
    tokio::task::spawn_blocking(move || std::thread::sleep(real))
        .await
        .expect("a sleeping blocking task");
}

/// Watches the token file as a task and records every moment it held a token Vault would
/// refuse (expired, revoked, unknown). It looks every `step` and, above all, at the instant the
/// token it last saw expires: a token left in the file past its expiry is caught right then.
pub struct TokenChecker {
    task: JoinHandle<(usize, Vec<String>)>,
    stop: Option<oneshot::Sender<()>>,
}

impl TokenChecker {
    pub fn start(v: &Virtual, step: Duration) -> TokenChecker {
        let (stop, mut stopped) = oneshot::channel::<()>();
        let (path, emu) = (v.token_path.clone(), v.emu.clone_handle());
        let task = tokio::spawn(async move {
            let (mut reads, mut bad) = (0, Vec::new());
            loop {
                let mut next = Instant::now() + step;
                if let Ok(t) = std::fs::read_to_string(&path) {
                    reads += 1;
                    match emu.lookup(&t) {
                        Some(info) => {
                            // Just past its expiry, by the emulator's (virtual) clock.
                            let left = between(emu.now(), info.expire_time);
                            next = next.min(Instant::now() + left + Duration::from_millis(1));
                        }
                        None => bad.push(format!(
                            "{}… len {} at {:?}",
                            t.chars().take(6).collect::<String>(),
                            t.len(),
                            emu.now()
                        )),
                    }
                }
                tokio::select! {
                    _ = sleep_until(next) => {}
                    _ = &mut stopped => break,
                }
            }
            (reads, bad)
        });
        TokenChecker {
            task,
            stop: Some(stop),
        }
    }

    /// Stops and asserts the file never held an unusable token; returns how many reads it made.
    pub async fn finish(mut self) -> usize {
        drop(self.stop.take());
        let (reads, bad) = (&mut self.task).await.unwrap();
        assert!(
            bad.is_empty(),
            "file held an unusable token {} times: {bad:?}",
            bad.len()
        );
        reads
    }
}

/// Seconds between two emulator times.
pub fn between(earlier: SystemTime, later: SystemTime) -> Duration {
    later.duration_since(earlier).unwrap_or_default()
}
