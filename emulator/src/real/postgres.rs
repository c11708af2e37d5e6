//! A throwaway PostgreSQL 15 for OpenBao's database engine: `initdb` in a temp dir (as user
//! `postgres` when running as root, which PostgreSQL refuses to run as), listening on a free
//! 127.0.0.1 port with password (SCRAM) logins, stopped and removed on drop.

use std::fs::File;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{skip, Unavailable};

/// Where Debian's `postgresql-15` puts the server binaries.
const BIN_DIR: &str = "/usr/lib/postgresql/15/bin";

/// The superuser's name.
const SUPERUSER: &str = "postgres";

/// A running PostgreSQL; stopped (immediate shutdown) and its data removed on drop.
pub struct Postgres {
    child: Option<Child>,
    /// Held for its `Drop`: removed after the server has stopped.
    _dir: tempfile::TempDir,
    port: u16,
    password: String,
}

impl Postgres {
    /// Starts one; `None` after one line saying why when PostgreSQL 15 is not installed or
    /// does not start (a panic instead when the real tier is required).
    pub fn start() -> Option<Postgres> {
        match Self::try_start() {
            Ok(pg) => Some(pg),
            Err(why) => {
                skip(&why);
                None
            }
        }
    }

    fn try_start() -> Result<Postgres, Unavailable> {
        let fail =
            |what: &str, e: &dyn std::fmt::Display| Unavailable::Postgres(format!("{what}: {e}"));
        let bin = Path::new(BIN_DIR);
        if !bin.join("initdb").is_file() {
            return Err(Unavailable::Postgres(format!(
                "{BIN_DIR}/initdb is missing: install Debian's postgresql-15"
            )));
        }
        let dir = tempfile::Builder::new()
            .prefix("postgres-")
            .tempdir()
            .map_err(|e| fail("temp dir", &e))?;
        let password = random_hex();
        let pwfile = dir.path().join("pwfile");
        std::fs::write(&pwfile, &password).map_err(|e| fail("pwfile", &e))?;
        std::fs::set_permissions(&pwfile, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| fail("pwfile", &e))?;
        let as_root = is_root();
        if as_root {
            let ok = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                return Err(Unavailable::Postgres(
                    "cannot chown the data dir to user postgres (is there a postgres user?)".into(),
                ));
            }
        }
        let data = dir.path().join("data");
        let out = as_user(as_root, &bin.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args(["-U", SUPERUSER, "-E", "UTF8", "--no-sync"])
            .args(["--auth-local=trust", "--auth-host=scram-sha-256"])
            .arg(format!("--pwfile={}", pwfile.display()))
            .output()
            .map_err(|e| fail("initdb", &e))?;
        if !out.status.success() {
            return Err(Unavailable::Postgres(format!(
                "initdb: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        let mut last = String::new();
        // The free port may be taken by a parallel test before postgres binds it.
        for _ in 0..3 {
            let port = free_port().map_err(|e| fail("free port", &e))?;
            let log_path = dir.path().join(format!("postgres-{port}.log"));
            let log = File::create(&log_path).map_err(|e| fail("log", &e))?;
            let child = as_user(as_root, &bin.join("postgres"))
                .arg("-D")
                .arg(&data)
                .args(["-h", "127.0.0.1", "-p", &port.to_string()])
                .arg("-k")
                .arg(dir.path())
                .args(["-c", "fsync=off", "-c", "max_connections=50"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .map_err(|e| fail("postgres", &e))?;
            let mut child = child;
            match wait_ready(&mut child, port, &password) {
                Ok(()) => {
                    return Ok(Postgres {
                        child: Some(child),
                        _dir: dir,
                        port,
                        password,
                    })
                }
                Err(why) => {
                    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                    last = format!("{why}: {}", log.trim());
                    shutdown(child);
                }
            }
        }
        Err(Unavailable::Postgres(format!("did not start: {last}")))
    }

    /// The loopback port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The superuser (`postgres`) password, for OpenBao's database connection.
    pub fn superuser_password(&self) -> String {
        self.password.clone()
    }

    /// OpenBao's `connection_url` template for this server.
    pub fn connection_url(&self) -> String {
        format!(
            "postgresql://{{{{username}}}}:{{{{password}}}}@127.0.0.1:{}/postgres?sslmode=disable",
            self.port
        )
    }

    /// Runs `sql` with `psql` over TCP as `user` with `password`: its output (unaligned, tuples
    /// only, trimmed), or its error.
    pub fn psql(&self, user: &str, password: &str, sql: &str) -> Result<String, String> {
        psql(self.port, user, password, sql)
    }
}

/// `psql` over TCP to `port`.
fn psql(port: u16, user: &str, password: &str, sql: &str) -> Result<String, String> {
    {
        let out = Command::new(Path::new(BIN_DIR).join("psql"))
            .args(["-h", "127.0.0.1", "-p", &port.to_string()])
            .args([
                "-U",
                user,
                "-d",
                "postgres",
                "-w",
                "-X",
                "-tA",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                sql,
            ])
            .env("PGPASSWORD", password)
            .env("PGCONNECT_TIMEOUT", "5")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("psql: {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if let Some(child) = self.child.take() {
            shutdown(child);
        }
    }
}

/// Waits until the server answers a query as the superuser.
fn wait_ready(child: &mut Child, port: u16, password: &str) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("exited with {status}"));
        }
        match psql(port, SUPERUSER, password, "select 1") {
            Ok(out) if out == "1" => return Ok(()),
            Ok(out) if Instant::now() >= deadline => {
                return Err(format!("select 1 answered {out:?}"))
            }
            Err(e) if Instant::now() >= deadline => return Err(e),
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// Immediate shutdown (SIGQUIT to the postmaster), then wait for it; SIGKILL after 10 s.
fn shutdown(mut child: Child) {
    let _ = Command::new("kill")
        .args(["-QUIT", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// `program` run directly, or as user `postgres` through `setpriv` (which execs, so the child
/// is the server itself and signals reach it).
fn as_user(as_root: bool, program: &Path) -> Command {
    if as_root {
        let mut cmd = Command::new("setpriv");
        cmd.args([
            "--reuid=postgres",
            "--regid=postgres",
            "--init-groups",
            "--",
        ])
        .arg(program);
        cmd
    } else {
        Command::new(program)
    }
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
    })
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// 32 hex characters from the kernel's random source.
fn random_hex() -> String {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 16];
    // The system random source does not fail on Linux once booted; a zero password would
    // still be a working (throwaway, loopback-only) password.
    let _ = ring::rand::SystemRandom::new().fill(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
