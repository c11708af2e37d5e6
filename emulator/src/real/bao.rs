//! `bao server -dev` as a child process: a free loopback port, a known root token, the kubernetes
//! auth method enabled at `auth/kubernetes` and configured against a fake kube-apiserver, and
//! the helpers a test needs to ask the real server directly (its CLI, raw HTTP) or to make it
//! misbehave (stop, pause, seal).

use std::fs::File;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::apiserver::Apiserver;
use super::http::{self, Req};
use super::{bao_or_skip, Unavailable};

/// The dev server's root token.
const ROOT_TOKEN: &str = "root";

/// How long the dev server may take to answer `sys/health` after start.
const START_LIMIT: Duration = Duration::from_secs(60);

/// How to start a [`Bao`].
#[derive(Clone, Debug, Default)]
pub struct BaoOptions {
    /// `-dev-tls`: HTTPS with a CA the server generates ([`Bao::ca_cert`]).
    pub tls: bool,
    /// More arguments for `bao server -dev`.
    pub args: Vec<String>,
}

/// A running `bao server -dev`; the child is killed and its temp dir removed on drop.
pub struct Bao {
    bin: PathBuf,
    child: Option<Child>,
    dir: tempfile::TempDir,
    port: u16,
    /// `(path, PEM)` of the dev-tls CA.
    ca: Option<(PathBuf, String)>,
    unseal_key: String,
    apiserver: Apiserver,
}

impl Bao {
    /// `bao server -dev` on a free 127.0.0.1 port with a known root token, kubernetes auth
    /// enabled at `auth/kubernetes` and configured against a fake kube-apiserver started here;
    /// `None` (after one line saying why) when the real server is unavailable.
    ///
    /// # Panics
    /// When the binary is there but the server does not come up (its log is in the message), or
    /// when the real tier is required and unavailable.
    pub fn start() -> Option<Bao> {
        Self::start_with(BaoOptions::default())
    }

    /// [`Bao::start`] with options (`-dev-tls`, extra arguments).
    ///
    /// # Panics
    /// Like [`Bao::start`].
    pub fn start_with(opts: BaoOptions) -> Option<Bao> {
        let bin = bao_or_skip()?;
        let mut last = String::new();
        // A port picked free can be taken by a parallel test before bao binds it (the cluster
        // port, API port + 1, too): a few attempts with fresh ports.
        for _ in 0..4 {
            match Self::try_start(&bin, &opts) {
                Ok(bao) => return Some(bao),
                Err(Unavailable::Start(why)) if why.contains("address already in use") => {
                    last = why
                }
                Err(why) => panic!("{why}"),
            }
        }
        panic!("{}", Unavailable::Start(last));
    }

    fn try_start(bin: &Path, opts: &BaoOptions) -> Result<Bao, Unavailable> {
        let dir = tempfile::Builder::new()
            .prefix("openbao-dev-")
            .tempdir()
            .map_err(|e| Unavailable::Start(format!("temp dir: {e}")))?;
        let port = free_port_pair().map_err(|e| Unavailable::Start(format!("free port: {e}")))?;
        let log = File::create(dir.path().join("bao.log"))
            .map_err(|e| Unavailable::Start(format!("log file: {e}")))?;
        let log_err = log
            .try_clone()
            .map_err(|e| Unavailable::Start(format!("log file: {e}")))?;
        let mut cmd = Command::new(bin);
        cmd.args(["server", "-dev", "-dev-no-store-token"])
            .arg(format!("-dev-root-token-id={ROOT_TOKEN}"))
            .arg(format!("-dev-listen-address=127.0.0.1:{port}"));
        let tls_dir = dir.path().join("tls");
        if opts.tls {
            std::fs::create_dir_all(&tls_dir)
                .map_err(|e| Unavailable::Start(format!("tls dir: {e}")))?;
            cmd.arg("-dev-tls")
                .arg(format!("-dev-tls-cert-dir={}", tls_dir.display()));
        }
        cmd.args(&opts.args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", dir.path())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err);
        let child = cmd
            .spawn()
            .map_err(|e| Unavailable::NotRunnable(format!("{}: {e}", bin.display())))?;
        let apiserver = Apiserver::start();
        let mut bao = Bao {
            bin: bin.to_path_buf(),
            child: Some(child),
            dir,
            port,
            ca: None,
            unseal_key: String::new(),
            apiserver,
        };
        if opts.tls {
            bao.ca = Some(bao.wait_for_ca(&tls_dir)?);
        }
        bao.wait_ready()?;
        bao.unseal_key = bao.read_unseal_key()?;
        bao.enable_kubernetes_auth_in("")
            .map_err(Unavailable::Start)?;
        Ok(bao)
    }

    /// The dev-tls CA file appears before the listener answers; wait for it.
    fn wait_for_ca(&mut self, tls_dir: &Path) -> Result<(PathBuf, String), Unavailable> {
        let deadline = Instant::now() + START_LIMIT;
        while Instant::now() < deadline {
            self.check_alive()?;
            let found = std::fs::read_dir(tls_dir)
                .into_iter()
                .flatten()
                .filter_map(|e| e.ok().map(|e| e.path()))
                .find(|p| {
                    p.file_name()
                        .is_some_and(|n| n.to_string_lossy().ends_with("-ca.pem"))
                });
            if let Some(path) = found {
                let pem = std::fs::read_to_string(&path).unwrap_or_default();
                if pem.contains("END CERTIFICATE") {
                    return Ok((path, pem));
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(Unavailable::Start(format!(
            "no *-ca.pem in {} after {START_LIMIT:?}",
            tls_dir.display()
        )))
    }

    fn check_alive(&mut self) -> Result<(), Unavailable> {
        let exited = match self.child.as_mut() {
            Some(child) => child.try_wait().ok().flatten(),
            None => return Err(Unavailable::Start("stopped".into())),
        };
        match exited {
            Some(status) => Err(Unavailable::Start(format!(
                "exited with {status}: {}",
                self.log_tail()
            ))),
            None => Ok(()),
        }
    }

    fn wait_ready(&mut self) -> Result<(), Unavailable> {
        let deadline = Instant::now() + START_LIMIT;
        while Instant::now() < deadline {
            self.check_alive()?;
            if let Ok((200, _)) = self.try_http("GET", "/v1/sys/health", None, &[], None) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(Unavailable::Start(format!(
            "no answer on port {} after {START_LIMIT:?}: {}",
            self.port,
            self.log_tail()
        )))
    }

    /// The dev server prints its one unseal key in the banner that follows readiness.
    fn read_unseal_key(&mut self) -> Result<String, Unavailable> {
        let deadline = Instant::now() + START_LIMIT;
        while Instant::now() < deadline {
            self.check_alive()?;
            let key = self.log().lines().find_map(|l| {
                l.trim()
                    .strip_prefix("Unseal Key: ")
                    .map(|k| k.trim().to_string())
            });
            if let Some(key) = key {
                return Ok(key);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(Unavailable::Start(format!(
            "no unseal key in the dev server's output: {}",
            self.log_tail()
        )))
    }

    /// Enables the kubernetes auth method at `auth/kubernetes` in OpenBao namespace `namespace`
    /// (`""`: the root; the namespace must exist, `bao namespace create`) and configures it
    /// against this server's fake kube-apiserver, as [`Bao::start`] does for the root.
    pub fn enable_kubernetes_auth_in(&self, namespace: &str) -> Result<(), String> {
        let config = json!({
            "kubernetes_host": self.apiserver.url(),
            "kubernetes_ca_cert": self.apiserver.ca_pem(),
            "token_reviewer_jwt": self.apiserver.reviewer_jwt(),
            // Outside a pod there is no local service-account token or CA to fall back on.
            "disable_local_ca_jwt": true,
            "issuer": "api",
            "disable_iss_validation": true,
        });
        let headers: &[(&str, &str)] = if namespace.is_empty() {
            &[]
        } else {
            &[("X-Vault-Namespace", namespace)]
        };
        for (path, body) in [
            ("/v1/sys/auth/kubernetes", json!({"type": "kubernetes"})),
            ("/v1/auth/kubernetes/config", config),
        ] {
            let (status, answer) = self.try_http(
                "POST",
                path,
                Some(ROOT_TOKEN),
                headers,
                Some(&body.to_string()),
            )?;
            if !(200..300).contains(&status) {
                return Err(format!(
                    "POST {path}: {status} {}",
                    String::from_utf8_lossy(&answer)
                ));
            }
        }
        Ok(())
    }

    /// `http://127.0.0.1:PORT`, or `https://localhost:PORT` with `-dev-tls` (the name its
    /// certificate is checked against).
    pub fn addr(&self) -> String {
        match self.ca {
            Some(_) => format!("https://localhost:{}", self.port),
            None => format!("http://127.0.0.1:{}", self.port),
        }
    }

    /// The loopback port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The dev server's root token.
    pub fn root_token(&self) -> String {
        ROOT_TOKEN.to_string()
    }

    /// The dev-tls CA certificate file, with `-dev-tls`.
    pub fn ca_cert(&self) -> Option<PathBuf> {
        self.ca.as_ref().map(|(path, _)| path.clone())
    }

    /// The dev server's unseal key (for `bao operator unseal`).
    pub fn unseal_key(&self) -> String {
        self.unseal_key.clone()
    }

    /// The fake kube-apiserver the kubernetes auth method reviews tokens with.
    pub fn apiserver(&self) -> &Apiserver {
        &self.apiserver
    }

    /// The path of the real `bao` binary.
    pub fn bin(&self) -> &Path {
        &self.bin
    }

    /// A service-account JWT the fake apiserver accepts (namespace, service account,
    /// audiences, ttl).
    pub fn jwt(&self, ns: &str, sa: &str, aud: &[&str], ttl_secs: u64) -> String {
        self.apiserver.jwt(ns, sa, aud, ttl_secs)
    }

    /// Runs the real `bao` CLI against this server with the root token (`BAO_ADDR`,
    /// `BAO_TOKEN`, and `BAO_CACERT` with `-dev-tls`) and returns its stdout.
    ///
    /// # Panics
    /// When the command fails, with its stderr.
    pub fn cli(&self, args: &[&str]) -> String {
        self.cli_as(ROOT_TOKEN, args)
            .unwrap_or_else(|e| panic!("bao {}: {e}", args.join(" ")))
    }

    /// Runs the `bao` CLI with `token`; `Err(stderr)` when it fails.
    pub fn cli_as(&self, token: &str, args: &[&str]) -> Result<String, String> {
        let mut cmd = Command::new(&self.bin);
        cmd.args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.dir.path())
            .env("BAO_ADDR", self.addr())
            .env("BAO_TOKEN", token)
            .stdin(Stdio::null());
        if let Some((ca, _)) = &self.ca {
            cmd.env("BAO_CACERT", ca);
        }
        let out = cmd.output().map_err(|e| format!("spawn: {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    /// One raw HTTP/1.1 request (std socket, `Connection: close`; TLS with `-dev-tls`), with
    /// `X-Vault-Token` when `token` is given: the status and the body bytes.
    ///
    /// # Panics
    /// When the server cannot be reached or answers garbage.
    pub fn http(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> (u16, Vec<u8>) {
        self.try_http(method, path, token, headers, body)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    /// [`Bao::http`] returning transport errors instead of panicking (the server may be down,
    /// paused or sealed on purpose).
    pub fn try_http(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> Result<(u16, Vec<u8>), String> {
        let mut all: Vec<(&str, &str)> = headers.to_vec();
        if let Some(token) = token {
            all.push(("X-Vault-Token", token));
        }
        if body.is_some() {
            all.push(("Content-Type", "application/json"));
        }
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let req = Req {
            method,
            path,
            headers: &all,
            body,
        };
        http::request(addr, self.ca.as_ref().map(|(_, pem)| pem.as_str()), &req)
    }

    /// A request with the root token whose 2xx answer is parsed as JSON (`Null` for 204).
    ///
    /// # Panics
    /// On any other status, with the body.
    pub fn api(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let body = body.map(|b| b.to_string());
        let (status, answer) = self.http(method, path, Some(ROOT_TOKEN), &[], body.as_deref());
        assert!(
            (200..300).contains(&status),
            "{method} {path}: {status} {}",
            String::from_utf8_lossy(&answer)
        );
        serde_json::from_slice(&answer).unwrap_or(Value::Null)
    }

    /// Whether `token` is alive now, asked with its own `lookup-self`.
    pub fn token_alive(&self, token: &str) -> bool {
        matches!(
            self.try_http("GET", "/v1/auth/token/lookup-self", Some(token), &[], None),
            Ok((200, _))
        )
    }

    /// Seals the server (`bao operator seal`).
    pub fn seal(&self) {
        self.cli(&["operator", "seal"]);
    }

    /// Unseals it with the dev unseal key (`bao operator unseal`).
    pub fn unseal(&self) {
        self.cli(&["operator", "unseal", &self.unseal_key]);
    }

    /// Kills the server (SIGKILL) and waits for it; it stays down.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes the server (SIGSTOP): connections are accepted by the kernel but never answered.
    pub fn pause(&self) {
        self.signal("STOP");
    }

    /// Lets a paused server run again (SIGCONT).
    pub fn resume(&self) {
        self.signal("CONT");
    }

    fn signal(&self, sig: &str) {
        if let Some(child) = &self.child {
            let ok = Command::new("kill")
                .arg(format!("-{sig}"))
                .arg(child.id().to_string())
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "kill -{sig} {}", child.id());
        }
    }

    /// Everything the server printed so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("bao.log")).unwrap_or_default()
    }

    fn log_tail(&self) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }
}

impl Drop for Bao {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGKILL ends a stopped process too.
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A port `p` with `p + 1` also free: the dev server's cluster listener takes the next one.
fn free_port_pair() -> std::io::Result<u16> {
    for _ in 0..50 {
        let first = TcpListener::bind("127.0.0.1:0")?;
        let port = first.local_addr()?.port();
        if port < u16::MAX && TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
            return Ok(port);
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AddrInUse,
        "no two adjacent free ports",
    ))
}
