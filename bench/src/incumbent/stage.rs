//! The stage every scene of the section plays on: one real `bao server -dev` (through
//! `vault_emulator::real`, with kubernetes auth against its fake kube-apiserver) with a file
//! audit device, a KV v2 secret and a role; and the clients, `vault-login` or `bao agent`, each
//! logging in as its own service account from its own JWT file and writing its own token file.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::json;
use vault_emulator::real::{bao_bin, Bao, BaoOptions};

use super::audit;
use super::hcl::{AgentConfig, RawTemplate, Template};

/// The namespace of every client's service account.
pub const NAMESPACE: &str = "bench";
/// The kubernetes auth role every client logs in with.
pub const ROLE: &str = "bench";
/// The audience the role demands and every JWT carries.
const AUDIENCE: &str = "vault";
/// The KV v2 secret (API path) and the field the secret scenes write.
pub const SECRET_PATH: &str = "internal/data/database/config";
const SECRET_FIELD: &str = "password";

/// The two programs compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// This project's binary.
    VaultLogin,
    /// `bao agent`, OpenBao's Vault Agent.
    Agent,
}

impl Kind {
    /// Both, in the order the scenes alternate them.
    pub const BOTH: [Kind; 2] = [Kind::VaultLogin, Kind::Agent];

    /// The name in the report and the prefix of its service accounts.
    pub fn label(self) -> &'static str {
        match self {
            Kind::VaultLogin => "vault-login",
            Kind::Agent => "agent",
        }
    }
}

/// The real server with its audit log, removed (and stopped) on drop.
pub struct Stage {
    /// The dev server.
    pub bao: Bao,
    /// Scratch directory: the audit log, the server config, one folder per client.
    pub dir: PathBuf,
    audit_log: PathBuf,
    vault_login: PathBuf,
}

impl Stage {
    /// Starts the server (named `name` in the scratch path) with a role issuing tokens of
    /// `ttl` up to `max_ttl`; `vault_login` is the binary the clients of that kind run.
    pub fn start(
        name: &str,
        vault_login: &Path,
        ttl: Duration,
        max_ttl: Duration,
    ) -> Result<Stage, String> {
        // The fetch (or BAO_BIN) first, so "cannot run here" is a line, not a panic.
        bao_bin().map_err(|e| format!("the real OpenBao is unavailable: {e}"))?;
        let dir = std::env::temp_dir().join(format!(
            "vault-login-bench-{}-agent-{name}",
            std::process::id()
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let audit_log = dir.join("audit.log");
        let config = dir.join("server.hcl");
        fs::write(&config, audit::config(&audit_log))
            .map_err(|e| format!("cannot write {}: {e}", config.display()))?;
        let bao = Bao::start_with(BaoOptions {
            tls: false,
            args: vec![format!("-config={}", config.display())],
        })
        .ok_or("the real OpenBao is unavailable (see the line above)")?;
        let stage = Stage {
            bao,
            dir,
            audit_log,
            vault_login: vault_login.to_path_buf(),
        };
        stage.bao.api(
            "POST",
            "/v1/sys/mounts/internal",
            Some(json!({"type": "kv", "options": {"version": "2"}})),
        );
        stage.bao.api(
            "POST",
            &format!("/v1/{SECRET_PATH}"),
            Some(json!({"data": {"username": "app", SECRET_FIELD: "bench-password"}})),
        );
        stage.bao.api(
            "PUT",
            "/v1/sys/policies/acl/bench-kv",
            Some(json!({"policy": format!("path \"{SECRET_PATH}\" {{ capabilities = [\"read\"] }}")})),
        );
        stage.bao.api(
            "PUT",
            &format!("/v1/sys/config/auditing/request-headers/{}", audit::PROBE),
            Some(json!({"hmac": false})),
        );
        stage.set_role(ttl, max_ttl);
        Ok(stage)
    }

    /// (Re)writes the role: any service account of the bench namespace, tokens of `ttl` up to
    /// `max_ttl`, allowed to read the secret.
    pub fn set_role(&self, ttl: Duration, max_ttl: Duration) {
        self.set_role_with(ttl, max_ttl, &[]);
    }

    /// [`Stage::set_role`] with more policies on its tokens (the certificate scenes' pki one).
    pub fn set_role_with(&self, ttl: Duration, max_ttl: Duration, policies: &[&str]) {
        let mut all = vec!["default", "bench-kv"];
        all.extend_from_slice(policies);
        self.bao.api(
            "POST",
            &format!("/v1/auth/kubernetes/role/{ROLE}"),
            Some(json!({
                "bound_service_account_names": ["*"],
                "bound_service_account_namespaces": [NAMESPACE],
                "audience": AUDIENCE,
                "token_ttl": ttl.as_secs(),
                "token_max_ttl": max_ttl.as_secs(),
                "token_policies": all,
            })),
        );
    }

    /// Every request the clients have sent so far (the bench's own probes left out).
    pub fn requests(&self) -> Vec<audit::Request> {
        let mut all = audit::read(&self.audit_log);
        all.retain(|r| !r.probe);
        all
    }

    /// Whether `token` is alive now: its own lookup-self, sent to the server's own port (not
    /// through any gate) and marked as the bench's probe.
    pub fn alive(&self, token: &str) -> bool {
        !token.is_empty()
            && matches!(
                self.bao.try_http(
                    "GET",
                    "/v1/auth/token/lookup-self",
                    Some(token),
                    &[(audit::PROBE, "1")],
                    None
                ),
                Ok((200, _))
            )
    }

    /// Whether the token in `file` is alive now.
    pub fn file_token_alive(&self, file: &Path) -> bool {
        fs::read_to_string(file).is_ok_and(|t| self.alive(t.trim()))
    }

    /// A client's folder, JWT and file paths; `tag` tells scenes apart (`cold`, `kv`, ...).
    pub fn slot(&self, kind: Kind, tag: &str, index: usize) -> Result<Slot, String> {
        let name = format!("{}-{tag}-{index}", kind.label());
        let dir = self.dir.join(&name);
        for sub in ["out", "sa"] {
            fs::create_dir_all(dir.join(sub))
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        // The JWT alone in its folder, as the kubelet projects it: vault-login watches the
        // folder, and a log file written beside it would look like a new JWT at every line.
        let jwt_file = dir.join("sa/token");
        // A day-long JWT: no scene outlives it.
        fs::write(
            &jwt_file,
            self.bao.jwt(NAMESPACE, &name, &[AUDIENCE], 86_400),
        )
        .map_err(|e| format!("cannot write {}: {e}", jwt_file.display()))?;
        Ok(Slot {
            kind,
            client: audit::display_name(NAMESPACE, &name),
            token_file: dir.join("out/token"),
            secret_file: dir.join("out/db_password"),
            log: dir.join("log"),
            name,
            jwt_file,
            dir,
            vault_login: self.vault_login.clone(),
            bao: self.bao.bin().to_path_buf(),
        })
    }
}

impl Drop for Stage {
    fn drop(&mut self) {
        if std::env::var_os("VAULT_LOGIN_BENCH_KEEP").is_some() {
            eprintln!("   kept {}", self.dir.display());
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// How a client keeps a certificate from `pki/issue/<role>` (the certificate scenes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CertWay {
    /// vault-login's `VAULT_LOGIN_CERT_<NAME>`.
    VaultLogin,
    /// The agent with a template calling `secret "pki/issue/<role>" "common_name=..."`.
    AgentSecret,
    /// The agent with a template calling `pkiCert "pki/issue/<role>" "common_name=..."`.
    AgentPkiCert,
}

impl CertWay {
    /// The three, in the order the report lists them.
    pub const ALL: [CertWay; 3] = [
        CertWay::VaultLogin,
        CertWay::AgentSecret,
        CertWay::AgentPkiCert,
    ];

    /// The program that runs it.
    pub fn kind(self) -> Kind {
        match self {
            CertWay::VaultLogin => Kind::VaultLogin,
            CertWay::AgentSecret | CertWay::AgentPkiCert => Kind::Agent,
        }
    }

    /// Its name in the report.
    pub fn label(self) -> &'static str {
        match self {
            CertWay::VaultLogin => "vault-login `VAULT_LOGIN_CERT_WEB`",
            CertWay::AgentSecret => "`bao agent`, template `secret \"pki/issue/…\"`",
            CertWay::AgentPkiCert => "`bao agent`, template `pkiCert`",
        }
    }
}

/// How a client runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Log in, write the token, exit: `--once`, `-exit-after-auth`.
    Once,
    /// Keep the token valid.
    Sidecar,
    /// A sidecar that also writes the KV secret's field, read again every interval.
    WithSecret(Duration),
}

/// One client's place on the stage.
pub struct Slot {
    /// Which program.
    pub kind: Kind,
    /// Its display name in the audit log.
    pub client: String,
    /// The token file it writes.
    pub token_file: PathBuf,
    /// The secret file it writes with [`Mode::WithSecret`].
    pub secret_file: PathBuf,
    /// Its stderr and stdout.
    pub log: PathBuf,
    /// Its service account's name, unique on the stage.
    pub name: String,
    jwt_file: PathBuf,
    dir: PathBuf,
    vault_login: PathBuf,
    bao: PathBuf,
}

impl Slot {
    /// The command that runs this client against `vault_addr` (the server, or a gate).
    pub fn command(&self, vault_addr: &str, mode: Mode) -> Result<Command, String> {
        let cmd = match self.kind {
            Kind::VaultLogin => self.vault_login_command(vault_addr, mode),
            Kind::Agent => self.agent_command(vault_addr, mode)?,
        };
        self.logging(cmd)
    }

    /// `cmd` with its stdout and stderr appended to the slot's log.
    fn logging(&self, mut cmd: Command) -> Result<Command, String> {
        let log = File::options()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|e| format!("cannot open {}: {e}", self.log.display()))?;
        let log2 = log
            .try_clone()
            .map_err(|e| format!("{}: {e}", self.log.display()))?;
        cmd.stdin(Stdio::null()).stdout(log).stderr(log2);
        Ok(cmd)
    }

    fn vault_login_command(&self, vault_addr: &str, mode: Mode) -> Command {
        let mut cmd = Command::new(&self.vault_login);
        cmd.env_clear()
            .env(
                "PATH",
                std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()),
            )
            .env("VAULT_ADDR", vault_addr)
            .env("VAULT_LOGIN_ROLE", ROLE)
            .env("VAULT_LOGIN_JWT_FILE", &self.jwt_file)
            .env("VAULT_LOGIN_TOKEN_FILE", &self.token_file);
        match mode {
            Mode::Once => {
                cmd.arg("--once");
            }
            Mode::Sidecar => {}
            Mode::WithSecret(every) => {
                cmd.env(
                    "VAULT_LOGIN_SECRET_DB_PASSWORD",
                    format!("{SECRET_PATH}#{SECRET_FIELD}"),
                )
                .env(
                    "VAULT_LOGIN_SECRETS_REFRESH",
                    format!("{}s", every.as_secs()),
                );
            }
        }
        cmd
    }

    fn agent_command(&self, vault_addr: &str, mode: Mode) -> Result<Command, String> {
        let mut config = AgentConfig::new(vault_addr, ROLE, &self.jwt_file, &self.token_file);
        if let Mode::WithSecret(every) = mode {
            config.template = Some(Template {
                path: SECRET_PATH.into(),
                field: SECRET_FIELD.into(),
                destination: self.secret_file.to_string_lossy().into_owned(),
                interval: every,
            });
        }
        let mut cmd = self.agent_with(&config)?;
        if mode == Mode::Once {
            cmd.arg("-exit-after-auth");
        }
        Ok(cmd)
    }

    /// `bao agent` with `config`, written to the slot's `agent.hcl`.
    fn agent_with(&self, config: &AgentConfig) -> Result<Command, String> {
        let path = self.dir.join("agent.hcl");
        fs::write(&path, config.render())
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        let mut cmd = Command::new(&self.bao);
        cmd.arg("agent")
            .arg(format!("-config={}", path.display()))
            .env_clear()
            .env(
                "PATH",
                std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()),
            )
            .env("HOME", &self.dir);
        Ok(cmd)
    }

    /// The sidecar that also keeps a certificate for `common_name` from `issue` (`<mount>/issue/<role>`)
    /// the `way` given (which must be one of this slot's program), in `out/`.
    pub fn cert_command(
        &self,
        vault_addr: &str,
        way: CertWay,
        issue: &str,
        common_name: &str,
    ) -> Result<Command, String> {
        if way.kind() != self.kind {
            return Err(format!("{} cannot run {way:?}", self.kind.label()));
        }
        if way == CertWay::VaultLogin {
            let mut cmd = self.vault_login_command(vault_addr, Mode::Sidecar);
            cmd.env(
                "VAULT_LOGIN_CERT_WEB",
                format!("{issue}?common_name={common_name}"),
            );
            return self.logging(cmd);
        }
        let mut config = AgentConfig::new(vault_addr, ROLE, &self.jwt_file, &self.token_file);
        // The certificate and its key in one file: two templates would issue two certificates
        // (vault#19787), which would only make `secret` look worse.
        let contents = if way == CertWay::AgentSecret {
            format!("{{{{ with secret \"{issue}\" \"common_name={common_name}\" }}}}{{{{ .Data.certificate }}}}\n{{{{ .Data.private_key }}}}\n{{{{ end }}}}")
        } else {
            format!("{{{{ with pkiCert \"{issue}\" \"common_name={common_name}\" }}}}{{{{ .Cert }}}}{{{{ .Key }}}}{{{{ end }}}}")
        };
        config.raw_templates.push(RawTemplate {
            contents,
            destination: self.dir.join("out/web.pem").to_string_lossy().into_owned(),
        });
        let cmd = self.agent_with(&config)?;
        self.logging(cmd)
    }

    /// Starts it as a long-running child.
    pub fn spawn(&self, vault_addr: &str, mode: Mode) -> Result<Child, String> {
        self.command(vault_addr, mode)?
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", self.kind.label()))
    }

    /// The token now in its file (empty when there is none).
    pub fn token(&self) -> String {
        fs::read_to_string(&self.token_file)
            .map(|t| t.trim().to_string())
            .unwrap_or_default()
    }
}
