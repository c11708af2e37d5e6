//! The test bench every section shares: an in-process Vault emulator on loopback with one
//! kubernetes role, a service-account JWT on disk, a scratch directory, and the environment that
//! points `vault-login` (or the curl script) at them.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use vault_emulator::{Emulator, Role};

/// The role every process logs in with.
pub const ROLE: &str = "default";

/// An emulator, a JWT and a scratch directory, removed on drop.
pub struct Lab {
    /// The Vault emulator.
    pub vault: Emulator,
    /// Scratch directory for token files and logs.
    pub dir: PathBuf,
    /// The service-account JWT file.
    pub jwt_file: PathBuf,
}

impl Lab {
    /// Starts an emulator whose role issues tokens with `ttl` and `max_ttl` (zero: Vault's 768 h).
    pub fn new(name: &str, ttl: Duration, max_ttl: Duration) -> Result<Lab, String> {
        let dir =
            std::env::temp_dir().join(format!("vault-login-bench-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("sa"))
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let vault = Emulator::start_default();
        vault.put_role(
            "kubernetes",
            ROLE,
            Role {
                token_ttl: ttl,
                token_max_ttl: max_ttl,
                ..Role::default()
            },
        );
        let jwt_file = dir.join("sa/token");
        // A day-long JWT: no section outlives it.
        fs::write(
            &jwt_file,
            vault.jwt("default", "default", &["vault"], 86_400),
        )
        .map_err(|e| format!("cannot write {}: {e}", jwt_file.display()))?;
        Ok(Lab {
            vault,
            dir,
            jwt_file,
        })
    }

    /// A fresh directory for one process's token file; returns the token file's path.
    pub fn token_slot(&self, name: &str) -> Result<PathBuf, String> {
        let d = self.dir.join(name);
        fs::create_dir_all(&d).map_err(|e| format!("cannot create {}: {e}", d.display()))?;
        Ok(d.join("token"))
    }

    /// `program` with a clean environment holding only PATH and the vault-login settings
    /// (the curl script reads the same variables).
    pub fn command(&self, program: &Path, token_file: &Path) -> Command {
        let mut cmd = Command::new(program);
        cmd.env_clear()
            .env(
                "PATH",
                std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()),
            )
            .env("VAULT_ADDR", self.vault.url())
            .env("VAULT_LOGIN_ROLE", ROLE)
            .env("VAULT_LOGIN_JWT_FILE", &self.jwt_file)
            .env("VAULT_LOGIN_TOKEN_FILE", token_file)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        cmd
    }

    /// Whether `token_file` holds a token Vault accepts now.
    pub fn token_valid(&self, token_file: &Path) -> bool {
        fs::read_to_string(token_file)
            .map(|t| self.vault.is_valid(t.trim()))
            .unwrap_or(false)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // VAULT_LOGIN_BENCH_KEEP=1 keeps token files and logs for a post-mortem.
        if std::env::var_os("VAULT_LOGIN_BENCH_KEEP").is_some() {
            eprintln!("   kept {}", self.dir.display());
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// Polls `cond` every 20 ms until it holds (true) or `limit` passes (false).
pub fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if cond() {
            return true;
        }
        if start.elapsed() >= limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sends SIGTERM to our own children (by pid, via kill(1)), waits up to 5 s for them to exit,
/// then SIGKILLs whatever is left.
pub fn stop(children: &mut [Child]) {
    if children.is_empty() {
        return;
    }
    let pids: Vec<String> = children.iter().map(|c| c.id().to_string()).collect();
    for chunk in pids.chunks(100) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .args(chunk)
            .stderr(Stdio::null())
            .status();
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    for child in children.iter_mut() {
        loop {
            match child.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Ok(None) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
            }
        }
    }
}
