//! Shared helpers for the integration tests: a Vault emulator, a temp dir with a JWT file, and
//! the real `vault-login` binary started with a clean environment.
#![allow(dead_code, unused_imports)]

pub mod virtual_time;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

pub use vault_emulator::{Emulator, Fault, Options, Role, TokenType};

/// The binary under test: the one cargo built, or `VAULT_LOGIN_BIN` (CI points it at the static
/// musl release build the Dockerfile ships, for a smoke run of the same tests).
pub fn bin() -> String {
    std::env::var("VAULT_LOGIN_BIN")
        .ok()
        .filter(|b| !b.is_empty())
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_vault-login").to_string())
}

/// An emulator with role "default" (audience "vault"), a temp dir, a JWT file and a token path.
pub struct Setup {
    pub emu: Emulator,
    pub dir: tempfile::TempDir,
    pub jwt_path: PathBuf,
    pub token_path: PathBuf,
    pub env: BTreeMap<String, String>,
}

impl Setup {
    pub fn new() -> Setup {
        Self::with(Options::default(), Role::default())
    }

    pub fn with_role(role: Role) -> Setup {
        Self::with(Options::default(), role)
    }

    pub fn with(opts: Options, role: Role) -> Setup {
        let emu = Emulator::start(opts);
        let (dir, jwt_path, token_path, env) = prepare(&emu, role, 3600);
        Setup {
            emu,
            dir,
            jwt_path,
            token_path,
            env,
        }
    }

    /// An emulator with TLS (no client certificate asked) whose CA is trusted via VAULT_CACERT.
    pub fn tls_trusted() -> Setup {
        let mut s = Self::with(
            Options {
                tls: true,
                require_client_cert: false,
                ..Options::default()
            },
            Role::default(),
        );
        let ca = s.dir.path().join("ca.pem");
        std::fs::write(&ca, s.emu.ca_pem().unwrap()).unwrap();
        s.set("VAULT_CACERT", ca.display().to_string());
        s
    }

    pub fn set(&mut self, k: &str, v: impl Into<String>) -> &mut Self {
        self.env.insert(k.into(), v.into());
        self
    }

    pub fn unset(&mut self, k: &str) -> &mut Self {
        self.env.remove(k);
        self
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(bin());
        cmd.env_clear().envs(&self.env).args(args);
        cmd
    }

    /// Runs `vault-login --once` (plus `args`) to completion, killing it after `limit`.
    pub fn once(&self, args: &[&str]) -> Run {
        let mut all = vec!["--once"];
        all.extend_from_slice(args);
        run(self.command(&all), Duration::from_secs(30))
    }

    /// Starts the sidecar in the background.
    pub fn spawn(&self, args: &[&str]) -> Running {
        Running::start(self.command(args))
    }

    pub fn token(&self) -> Option<String> {
        std::fs::read_to_string(&self.token_path).ok()
    }
}

/// Gives `emu` the role "default" (audience "vault" unless the role names one) and lays out a
/// temp dir with a JWT file valid for `jwt_ttl_secs`; returns it with the JWT path, the token
/// path and the environment that points vault-login at all three.
pub fn prepare(
    emu: &Emulator,
    role: Role,
    jwt_ttl_secs: i64,
) -> (
    tempfile::TempDir,
    PathBuf,
    PathBuf,
    BTreeMap<String, String>,
) {
    let role = Role {
        audience: role.audience.or(Some("vault".into())),
        ..role
    };
    emu.put_role("kubernetes", "default", role);
    let dir = tempfile::tempdir().unwrap();
    let jwt_path = dir.path().join("sa").join("token");
    std::fs::create_dir_all(jwt_path.parent().unwrap()).unwrap();
    let jwt = emu.jwt("default", "default", &["vault"], jwt_ttl_secs);
    std::fs::write(&jwt_path, jwt).unwrap();
    let token_dir = dir.path().join("out");
    std::fs::create_dir_all(&token_dir).unwrap();
    let token_path = token_dir.join("token");
    let mut env = BTreeMap::new();
    env.insert("VAULT_ADDR".into(), emu.url());
    env.insert("VAULT_LOGIN_ROLE".into(), "default".into());
    env.insert(
        "VAULT_LOGIN_JWT_FILE".into(),
        jwt_path.display().to_string(),
    );
    env.insert(
        "VAULT_LOGIN_TOKEN_FILE".into(),
        token_path.display().to_string(),
    );
    env.insert("VAULT_LOGIN_MIN_BACKOFF".into(), "100ms".into());
    env.insert("VAULT_LOGIN_MAX_BACKOFF".into(), "500ms".into());
    env.insert("VAULT_LOGIN_LOG".into(), "debug".into());
    (dir, jwt_path, token_path, env)
}

/// The outcome of a finished run.
#[derive(Debug)]
pub struct Run {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Run {
    pub fn code(&self) -> i32 {
        self.status.code().unwrap_or(-1)
    }

    #[track_caller]
    pub fn assert_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code(),
            code,
            "exit code; stderr:\n{}\nstdout:\n{}",
            self.stderr,
            self.stdout
        );
        self
    }
}

fn pipe_reader<R: Read + Send + 'static>(r: Option<R>) -> Arc<Mutex<String>> {
    let buf = Arc::new(Mutex::new(String::new()));
    if let Some(mut r) = r {
        let b = buf.clone();
        thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            while let Ok(n) = r.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                b.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&chunk[..n]));
            }
        });
    }
    buf
}

/// Runs a command to completion within `limit`.
pub fn run(mut cmd: Command, limit: Duration) -> Run {
    let mut r = Running::start_with(&mut cmd);
    let status = r.wait(limit).expect("process did not exit in time");
    thread::sleep(Duration::from_millis(50));
    Run {
        status,
        stdout: r.stdout(),
        stderr: r.stderr(),
        elapsed: r.started.elapsed(),
    }
}

/// A process running in the background; killed on drop.
pub struct Running {
    pub child: Child,
    out: Arc<Mutex<String>>,
    err: Arc<Mutex<String>>,
    pub started: Instant,
}

impl Running {
    pub fn start(mut cmd: Command) -> Running {
        Self::start_with(&mut cmd)
    }

    fn start_with(cmd: &mut Command) -> Running {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn vault-login");
        let out = pipe_reader(child.stdout.take());
        let err = pipe_reader(child.stderr.take());
        Running {
            child,
            out,
            err,
            started: Instant::now(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stderr(&self) -> String {
        self.err.lock().unwrap().clone()
    }

    pub fn stdout(&self) -> String {
        self.out.lock().unwrap().clone()
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.pid().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig}");
    }

    /// Waits for exit within `limit`; None if still running.
    pub fn wait(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits until stderr contains `needle`, or panics after `limit`.
    #[track_caller]
    pub fn wait_log(&self, needle: &str, limit: Duration) {
        let ok = wait_until(limit, || self.stderr().contains(needle));
        assert!(
            ok,
            "log line {needle:?} not seen in time; stderr:\n{}",
            self.stderr()
        );
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `cond` every 10 ms until it holds (true) or `limit` passes (false).
pub fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// Login requests the emulator received.
pub fn logins(emu: &Emulator) -> usize {
    emu.count_requests(|r| r.path.ends_with("/login"))
}

/// Renewal requests the emulator received.
pub fn renewals(emu: &Emulator) -> usize {
    emu.count_requests(|r| r.path.ends_with("/renew-self"))
}

/// A role with this TTL and max TTL (seconds), otherwise the emulator's defaults.
pub fn role(ttl: u64, max: u64) -> Role {
    Role {
        token_ttl: Duration::from_secs(ttl),
        token_max_ttl: Duration::from_secs(max),
        ..Role::default()
    }
}

/// The password in the tutorial's secret.
pub const TUTORIAL_PASSWORD: &str = "db-secret-password";

/// A setup whose role's tokens carry policy `app`, which reads the tutorial's secret
/// (`internal/data/database/config`, seeded), `kv/app` and `database/creds/app`.
pub fn with_tutorial_secret(role: Role) -> Setup {
    let s = Setup::with_role(Role {
        token_policies: vec!["app".into()],
        ..role
    });
    s.emu.put_policy(
        "app",
        &[
            ("internal/data/database/config", &["read"]),
            ("kv/app", &["read"]),
            ("database/creds/app", &["read"]),
        ],
    );
    s.emu.put_kv2(
        "internal",
        "database/config",
        serde_json::json!({"username": "db-readonly-username", "password": TUTORIAL_PASSWORD}),
    );
    s
}

/// Waits up to 10 s for the token file to exist and returns its content.
#[track_caller]
pub fn wait_token(s: &Setup) -> String {
    assert!(
        wait_until(Duration::from_secs(10), || s.token().is_some()),
        "token written"
    );
    s.token().unwrap()
}

/// Whether the tests run as root (CI does), judged from /proc without unsafe code; tests that
/// need root (tmpfs mounts, running as another UID) skip themselves otherwise.
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// A free loopback port (bound, then released) for a server the test starts.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A GET over a raw socket: (status, body). None if the server is not answering.
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    use std::io::Write as _;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let status = out.split_whitespace().nth(1)?.parse().ok()?;
    let body = out.split_once("\r\n\r\n").map(|x| x.1.to_string())?;
    Some((status, body))
}
