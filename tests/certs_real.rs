//! Certificates from the real OpenBao 2.7.2 `pki` engine (issue 23): a root CA generated in
//! the test, a role with a 20 s TTL, the real `vault-login` binary. A reader polling every few
//! milliseconds opens `tls.crt` then `tls.key` across several rotations; the server's own list
//! of issued certificates counts the issues across SIGHUP and SIGKILL + restart. Each test
//! passes with one line when the real server cannot run here, unless
//! `VAULT_LOGIN_REQUIRE_REAL=1`.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{bin, free_port, http_get, run, wait_until, Running};
use serde_json::{json, Value};
use vault_emulator::real::Bao;
use vault_login::secrets::certs::x509;

const LIMIT: Duration = Duration::from_secs(30);

struct Pki {
    bao: Bao,
    _dir: tempfile::TempDir,
    out: PathBuf,
    env: BTreeMap<String, String>,
}

impl Pki {
    /// `bao` with a pki mount (root CA `shop.svc`), role `web` (`role_args` added), a policy
    /// allowing `update` on `pki/issue/web` (unless `allowed` is false) and the kubernetes role.
    fn new(bao: Bao, role_args: &[&str], allowed: bool) -> Pki {
        bao.cli(&["secrets", "enable", "pki"]);
        bao.cli(&["secrets", "tune", "-max-lease-ttl=87600h", "pki"]);
        bao.cli(&[
            "write",
            "pki/root/generate/internal",
            "common_name=shop.svc",
            "ttl=87600h",
        ]);
        let mut role = vec![
            "write",
            "pki/roles/web",
            "allowed_domains=shop.svc",
            "allow_subdomains=true",
        ];
        role.extend_from_slice(role_args);
        bao.cli(&role);
        let policy = r#"path "pki/issue/web" { capabilities = ["update"] }"#;
        bao.api(
            "PUT",
            "/v1/sys/policies/acl/pki",
            Some(json!({ "policy": policy })),
        );
        let policies = if allowed {
            "token_policies=default,pki"
        } else {
            "token_policies=default"
        };
        bao.cli(&[
            "write",
            "auth/kubernetes/role/default",
            "bound_service_account_names=default",
            "bound_service_account_namespaces=default",
            "audience=k3s",
            "token_ttl=3600",
            policies,
        ]);
        let dir = tempfile::tempdir().unwrap();
        let jwt = dir.path().join("jwt");
        std::fs::write(&jwt, bao.jwt("default", "default", &["k3s"], 3600)).unwrap();
        let out = dir.path().join("out");
        std::fs::create_dir(&out).unwrap();
        let mut env = BTreeMap::new();
        for (k, v) in [
            ("VAULT_ADDR", bao.addr()),
            ("VAULT_LOGIN_ROLE", "default".into()),
            ("VAULT_LOGIN_JWT_FILE", jwt.display().to_string()),
            (
                "VAULT_LOGIN_TOKEN_FILE",
                out.join("token").display().to_string(),
            ),
            ("VAULT_LOGIN_MIN_BACKOFF", "200ms".into()),
            ("VAULT_LOGIN_MAX_BACKOFF", "1s".into()),
            ("VAULT_LOGIN_LOG", "info".into()),
            (
                "VAULT_LOGIN_CERT_WEB",
                "pki/issue/web?common_name=app.shop.svc&alt_names=api.shop.svc&ip_sans=10.0.0.1"
                    .into(),
            ),
        ] {
            env.insert(k.to_string(), v);
        }
        if let Some(ca) = bao.ca_cert() {
            env.insert("VAULT_CACERT".into(), ca.display().to_string());
        }
        Pki {
            bao,
            _dir: dir,
            out,
            env,
        }
    }

    fn spawn(&self) -> Running {
        let mut cmd = std::process::Command::new(bin());
        cmd.env_clear().envs(&self.env);
        Running::start(cmd)
    }

    fn web(&self) -> PathBuf {
        self.out.join("web")
    }

    /// Certificates the server issued (its `certs` list, less the root CA).
    fn issued(&self) -> usize {
        let v: Value = self.bao.api("LIST", "/v1/pki/certs", None);
        v["data"]["keys"].as_array().map_or(0, Vec::len) - 1
    }

    #[track_caller]
    fn wait_cert(&self, r: &Running) {
        let ok = wait_until(LIMIT, || self.web().join("tls.key").exists());
        assert!(ok, "no certificate published; stderr:\n{}", r.stderr());
    }
}

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A certificate file and a key file opened one after the other: the leaf's info and the
/// key's public key. `None` when a file is missing or unreadable.
fn read_files(cert: &Path, key: &Path) -> Option<(x509::CertInfo, Vec<u8>)> {
    let cert = std::fs::read_to_string(cert).ok()?;
    let key = std::fs::read_to_string(key).ok()?;
    let cert = x509::pem_blocks(&cert)?.into_iter().next()?;
    let info = x509::parse_cert(&cert.der).ok()?;
    let key = x509::pem_blocks(&key)?.into_iter().next()?;
    Some((info, x509::public_key_of(&key).ok()?))
}

/// `tls.crt` then `tls.key` of `dir` by their names: the leaf and whether the key is its key.
fn read_pair(dir: &Path) -> Option<(x509::CertInfo, bool)> {
    let (info, key) = read_files(&dir.join("tls.crt"), &dir.join("tls.key"))?;
    let matches = key == info.public_key;
    Some((info, matches))
}

/// What the polling readers saw.
#[derive(Debug, Default)]
struct Seen {
    /// Pairs read by name (`tls.crt`, then `tls.key`).
    reads: u64,
    /// Of those, pairs that straddled a swap: the certificate from one generation, the key
    /// from the next (the key matches the certificate published after).
    straddles: u64,
    /// Mismatches that are not a straddle.
    unexplained: u64,
    /// Pairs read through one resolution of `..data` (the generation directory).
    pinned: u64,
    /// Of those, mismatches.
    pinned_mismatches: u64,
    expired: u64,
    failed: u64,
    certs: BTreeSet<(i64, Vec<u8>)>,
}

impl Seen {
    fn poll(&mut self, web: &Path) {
        match read_files(&web.join("tls.crt"), &web.join("tls.key")) {
            Some((info, key)) => {
                self.reads += 1;
                self.expired += u64::from(info.not_after <= now_unix());
                if key != info.public_key {
                    let after = read_pair(web).map(|(i, _)| i.public_key);
                    match after == Some(key) {
                        true => self.straddles += 1,
                        false => self.unexplained += 1,
                    }
                }
                self.certs.insert((info.not_after, info.public_key));
            }
            None => self.failed += 1,
        }
        // The way to never straddle: resolve `..data` once, open both in that generation (it
        // may be removed in between: then nothing is read, and the next poll reads the new one).
        if let Ok(generation) = std::fs::read_link(web.join("..data")) {
            let g = web.join(generation);
            if let Some((info, key)) = read_files(&g.join("tls.crt"), &g.join("tls.key")) {
                self.pinned += 1;
                self.pinned_mismatches += u64::from(key != info.public_key);
            }
        }
    }
}

#[test]
fn renewed_before_expiry_and_a_polling_reader_gets_matching_pairs() {
    let Some(bao) = Bao::start() else { return };
    let mut pki = Pki::new(bao, &["ttl=20s", "max_ttl=1h"], true);
    let port = free_port();
    let hooks = pki.out.join("hooks.log");
    pki.env
        .insert("VAULT_LOGIN_LISTEN".into(), format!("127.0.0.1:{port}"));
    pki.env.insert(
        "VAULT_LOGIN_ON_CHANGE".into(),
        format!("/bin/sh -c 'echo swapped >> {}'", hooks.display()),
    );
    let r = pki.spawn();
    pki.wait_cert(&r);
    assert!(
        wait_until(LIMIT, || http_get(port, "/readyz")
            .is_some_and(|(s, _)| s == 200)),
        "not ready with a certificate"
    );
    let web = pki.web();
    let stop = AtomicBool::new(false);
    let seen = std::thread::scope(|s| {
        let reader = s.spawn(|| {
            let mut seen = Seen::default();
            while !stop.load(Ordering::SeqCst) {
                seen.poll(&web);
                std::thread::sleep(Duration::from_millis(3));
            }
            seen
        });
        // Three 20 s lives and a bit: at least three renewals.
        std::thread::sleep(Duration::from_secs(62));
        stop.store(true, Ordering::SeqCst);
        reader.join().unwrap()
    });
    let stderr = r.stderr();
    let certs = seen.certs.len();
    eprintln!(
        "reads={} straddles={} unexplained={} pinned={} pinned_mismatches={} expired={} failed={} certs={certs} issued={}",
        seen.reads, seen.straddles, seen.unexplained, seen.pinned, seen.pinned_mismatches,
        seen.expired, seen.failed, pki.issued()
    );
    assert_eq!(
        seen.pinned_mismatches, 0,
        "a generation whose key does not match its certificate"
    );
    assert_eq!(
        seen.unexplained, 0,
        "a mismatch that is not a read across one swap:\n{stderr}"
    );
    assert_eq!(
        seen.expired, 0,
        "an expired certificate was served; stderr:\n{stderr}"
    );
    assert_eq!(
        seen.failed, 0,
        "a read by name found a file missing or damaged"
    );
    assert!(
        seen.reads > 1000 && seen.pinned > 1000,
        "the reader polled only {seen:?} times"
    );
    // Each swap can be straddled at most once per poll that spans it.
    assert!(seen.straddles < certs as u64, "{seen:?}");
    assert!(
        certs >= 4,
        "only {certs} certificates seen in 62 s of 20 s lives:\n{stderr}"
    );
    // Renewed at 2/3 of the life, not far more often.
    assert!(pki.issued() <= 7, "{} issues in 62 s", pki.issued());
    // The hooks ran after each swap, once per certificate (the first with the first token).
    // The sidecar still runs: a renewal may land between two reads, so each check allows it.
    let hook_runs = || std::fs::read_to_string(&hooks).map_or(0, |h| h.lines().count());
    let once_each = wait_until(LIMIT, || hook_runs() == pki.issued());
    assert!(
        once_each,
        "{} hook runs for {} certificates",
        hook_runs(),
        pki.issued()
    );
    let before = (pki.issued(), read_pair(&web).unwrap().0.not_after);
    let (_, metrics) = http_get(port, "/metrics").unwrap();
    let after = (pki.issued(), read_pair(&web).unwrap().0.not_after);
    let shows = |(issued, expiry): (usize, i64)| {
        metrics.contains(&format!(
            "vault_login_certificate_issues_total{{cert=\"web\",result=\"success\"}} {issued}"
        )) && metrics.contains(&format!(
            "vault_login_certificate_expiry_timestamp_seconds{{cert=\"web\"}} {expiry}"
        ))
    };
    assert!(shows(before) || shows(after), "{metrics}");
    // Old generations are removed after each swap.
    let generations = std::fs::read_dir(&web)
        .unwrap()
        .filter(|e| {
            let name = e.as_ref().unwrap().file_name().into_string().unwrap();
            name.starts_with("..2")
        })
        .count();
    assert_eq!(generations, 1);
    // The key is not world-readable; the certificate verifies against ca.crt.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(web.join("tls.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o007, 0, "{mode:o}");
    match std::process::Command::new("openssl")
        .args(["verify", "-CAfile"])
        .arg(web.join("ca.crt"))
        .arg(web.join("tls.crt"))
        .output()
    {
        Ok(out) => assert!(
            out.status.success(),
            "openssl verify: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => eprintln!("openssl not available ({e}); chain not verified"),
    }
    assert!(!stderr.contains("PRIVATE KEY"), "a key in the log");
}

/// SIGHUP: a new login and token, and still the one certificate on the server.
fn sighup_issues_nothing(pki: &Pki, r: &Running) {
    let token = std::fs::read_to_string(pki.out.join("token")).unwrap();
    r.signal("HUP");
    let new_token = || std::fs::read_to_string(pki.out.join("token")).ok();
    assert!(
        wait_until(LIMIT, || new_token().is_some_and(|t| t != token)),
        "no new token after SIGHUP"
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        pki.issued(),
        1,
        "SIGHUP issued a certificate:\n{}",
        r.stderr()
    );
}

#[test]
fn sighup_and_a_restart_issue_nothing_new_names_or_a_broken_key_do() {
    let Some(bao) = Bao::start() else { return };
    let mut pki = Pki::new(bao, &["ttl=10m", "max_ttl=1h"], true);
    let mut r = pki.spawn();
    pki.wait_cert(&r);
    r.wait_log("certificate issued and published", LIMIT);
    assert_eq!(pki.issued(), 1);
    sighup_issues_nothing(&pki, &r);

    // SIGKILL, and a successor in the same pod: the published one is kept.
    r.child.kill().unwrap();
    r.wait(LIMIT);
    let r2 = pki.spawn();
    r2.wait_log("published certificate kept", LIMIT);
    // (The token in the file may be adopted too: no login line to wait for.)
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        pki.issued(),
        1,
        "a restart issued a certificate:\n{}",
        r2.stderr()
    );
    drop(r2);

    // Other names: replaced.
    pki.env.insert(
        "VAULT_LOGIN_CERT_WEB".into(),
        "pki/issue/web?common_name=app.shop.svc&alt_names=other.shop.svc".into(),
    );
    let r3 = pki.spawn();
    r3.wait_log("published certificate will be replaced", LIMIT);
    r3.wait_log("certificate issued and published", LIMIT);
    assert_eq!(pki.issued(), 2);
    let (info, _) = read_pair(&pki.web()).unwrap();
    assert!(
        info.dns_names.contains(&"other.shop.svc".to_string()),
        "{info:?}"
    );
    drop(r3);

    // A broken key: replaced.
    let generation = std::fs::read_link(pki.web().join("..data")).unwrap();
    let key = pki.web().join(generation).join("tls.key");
    let mut perms = std::fs::metadata(&key).unwrap().permissions();
    use std::os::unix::fs::PermissionsExt;
    perms.set_mode(0o600);
    std::fs::set_permissions(&key, perms).unwrap();
    // One base64 character of the key's body changed: still PEM, no longer this key.
    let text = std::fs::read_to_string(&key).unwrap();
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    let c = if lines[3].starts_with('Q') { "R" } else { "Q" };
    lines[3].replace_range(0..1, c);
    std::fs::write(&key, lines.join("\n") + "\n").unwrap();
    let r4 = pki.spawn();
    r4.wait_log("published certificate will be replaced", LIMIT);
    r4.wait_log("certificate issued and published", LIMIT);
    assert_eq!(pki.issued(), 3);
    let (_, matches) = read_pair(&pki.web()).unwrap();
    assert!(matches);
}

#[test]
fn refusals_name_the_policy_or_the_role_settings() {
    let Some(bao) = Bao::start() else { return };
    let mut pki = Pki::new(bao, &["ttl=10m"], false);
    let r = pki.spawn();
    r.wait_log("certificate not issued", LIMIT);
    let log = r.stderr();
    assert!(
        log.contains("VAULT_LOGIN_CERT_WEB") && log.contains("`update` on pki/issue/web"),
        "{log}"
    );
    drop(r);
    // Allowed, but a name the role does not allow: Vault's words and the role's settings.
    pki.bao.cli(&[
        "write",
        "auth/kubernetes/role/default",
        "bound_service_account_names=default",
        "bound_service_account_namespaces=default",
        "audience=k3s",
        "token_policies=default,pki",
    ]);
    pki.env.insert(
        "VAULT_LOGIN_CERT_WEB".into(),
        "pki/issue/web?common_name=evil.com".into(),
    );
    // A new pod: the old token (with the old policies) is not in the file to adopt.
    std::fs::remove_file(pki.out.join("token")).unwrap();
    let r = pki.spawn();
    r.wait_log("certificate not issued", LIMIT);
    let log = r.stderr();
    assert!(
        log.contains("common name evil.com not allowed by this role"),
        "{log}"
    );
    assert!(log.contains("allowed_domains"), "{log}");
    assert_eq!(pki.issued(), 0);
}

#[test]
fn bad_parameters_are_a_configuration_error_before_any_network_call() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = std::process::Command::new(bin());
    cmd.env_clear()
        // Nothing listens here: a network call would be a runtime failure, not 64.
        .env("VAULT_ADDR", "http://127.0.0.1:9")
        .env("VAULT_LOGIN_ROLE", "app")
        .env("VAULT_LOGIN_JWT", "x.y.z")
        .env("VAULT_LOGIN_TOKEN_FILE", dir.path().join("token"))
        .env(
            "VAULT_LOGIN_CERT_WEB",
            "pki/issue/web?common_name=a.svc&ip_sans=10.0.0",
        );
    let out = run(cmd, Duration::from_secs(10));
    out.assert_code(64);
    assert!(
        out.stderr.contains("VAULT_LOGIN_CERT_WEB") && out.stderr.contains("not an IP address"),
        "{}",
        out.stderr
    );
    assert_eq!(out.stderr.trim().lines().count(), 1, "{}", out.stderr);
}

/// consul-template's `pkiCert` as users write it: one file with the certificate, its key and
/// the CA, text around them.
const PKI_TEMPLATE: &str = "# web\n{{ with pkiCert \"pki/issue/web\" \"common_name=app.shop.svc\" \"alt_names=api.shop.svc\" }}cert:\n{{ .Cert }}key:\n{{ .Key }}ca:\n{{ .CA }}{{ end }}\ndigits in the length of .Data.Cert: {{ with pkiCert \"pki/issue/web\" \"common_name=app.shop.svc\" \"alt_names=api.shop.svc\" }}{{ .Data.Cert | len | printf \"%d\" | len }}{{ end }}\n";

/// `text` with each PEM block replaced by `<LABEL>`: the layout, whichever certificate.
fn layout(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("-----BEGIN ") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 11..];
        let label = &after[..after.find("-----").expect("a BEGIN line")];
        let end = format!("-----END {label}-----");
        let stop = after.find(&end).expect("an END line") + end.len();
        out.push_str(&format!("<{label}>"));
        rest = &after[stop..];
    }
    out.push_str(rest);
    out
}

/// The leaf, the key and the CA of a rendered `PKI_TEMPLATE` file, as PEM texts.
fn blocks_of(text: &str) -> (String, String, String) {
    let mut found = (String::new(), String::new(), String::new());
    for b in x509::pem_blocks(text).expect("PEM") {
        let pem = x509::pem_encode(&b.label, &b.der);
        if b.label.ends_with("PRIVATE KEY") {
            found.1 = pem;
        } else if x509::parse_cert(&b.der).expect("certificate").is_ca {
            found.2 = pem;
        } else {
            found.0 = pem;
        }
    }
    found
}

/// The rendered file's key matches its certificate, which names what was asked for and
/// verifies against its CA (`openssl verify`, when openssl is here).
#[track_caller]
fn assert_good_pair(text: &str, scratch: &Path) {
    let (cert, key, ca) = blocks_of(text);
    let info = x509::parse_cert(&x509::pem_blocks(&cert).unwrap()[0].der).unwrap();
    let key = &x509::pem_blocks(&key).unwrap()[0];
    assert_eq!(x509::public_key_of(key).unwrap(), info.public_key);
    assert!(info.covers(&["app.shop.svc".into(), "api.shop.svc".into()], &[]));
    std::fs::write(scratch.join("leaf.pem"), &cert).unwrap();
    std::fs::write(scratch.join("ca.pem"), &ca).unwrap();
    match std::process::Command::new("openssl")
        .args(["verify", "-CAfile"])
        .arg(scratch.join("ca.pem"))
        .arg(scratch.join("leaf.pem"))
        .output()
    {
        Ok(out) => assert!(
            out.status.success(),
            "openssl verify: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => eprintln!("openssl not available ({e}); chain not verified"),
    }
}

impl Pki {
    /// `VAULT_LOGIN_CERT_WEB` off, the `pkiCert` template on (file `web.pem`), from a file.
    fn with_template(mut self, text: &str) -> Pki {
        self.env.remove("VAULT_LOGIN_CERT_WEB");
        let source = self._dir.path().join("web.tmpl");
        std::fs::write(&source, text).unwrap();
        self.env.insert(
            "VAULT_LOGIN_TEMPLATE_WEB".into(),
            format!("@{}", source.display()),
        );
        self.env
            .insert("VAULT_LOGIN_TEMPLATE_FILE_WEB".into(), "web.pem".into());
        self
    }

    /// `vault-login --once`, which must succeed; its stderr.
    fn once(&self) -> String {
        let mut cmd = std::process::Command::new(bin());
        cmd.env_clear().envs(&self.env).arg("--once");
        let out = run(cmd, Duration::from_secs(60));
        out.assert_code(0);
        out.stderr
    }

    /// The real `bao agent` rendering `text` into `dest` once with the root token.
    fn agent(&self, text: &str, dest: &Path) {
        let dir = self._dir.path().join("agent");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("token"), self.bao.root_token()).unwrap();
        std::fs::write(dir.join("web.tmpl"), text).unwrap();
        let ca = match self.bao.ca_cert() {
            Some(ca) => format!(" ca_cert = \"{}\"", ca.display()),
            None => String::new(),
        };
        let hcl = format!(
            "vault {{ address = \"{}\"{ca} }}\nexit_after_auth = true\n\
             auto_auth {{ method \"token_file\" {{ config = {{ token_file_path = \"{}\" }} }} }}\n\
             template_config {{ exit_on_retry_failure = true }}\n\
             template {{\n  source = \"{}\"\n  destination = \"{}\"\n}}\n",
            self.bao.addr(),
            dir.join("token").display(),
            dir.join("web.tmpl").display(),
            dest.display(),
        );
        std::fs::write(dir.join("agent.hcl"), hcl).unwrap();
        let mut cmd = std::process::Command::new(self.bao.bin());
        cmd.args(["agent", "-config"]).arg(dir.join("agent.hcl"));
        let out = run(cmd, Duration::from_secs(60));
        assert_eq!(out.code(), 0, "bao agent: {}", out.stderr);
    }
}

#[test]
fn a_pki_cert_template_renders_like_bao_agent_and_each_keeps_the_others_certificate() {
    let Some(bao) = Bao::start() else { return };
    let pki = Pki::new(bao, &["ttl=10m", "max_ttl=1h"], true).with_template(PKI_TEMPLATE);
    let scratch = tempfile::tempdir().unwrap();
    let agent_file = scratch.path().join("agent-web.pem");
    pki.agent(PKI_TEMPLATE, &agent_file);
    assert_eq!(pki.issued(), 1);
    let log = pki.once();
    assert_eq!(pki.issued(), 2, "each issues its own:\n{log}");
    let ours_file = pki.out.join("web.pem");
    let agent = std::fs::read_to_string(&agent_file).unwrap();
    let ours = std::fs::read_to_string(&ours_file).unwrap();
    // Different certificates, the same layout byte for byte; each pair good.
    assert_ne!(agent, ours);
    assert_eq!(layout(&ours), layout(&agent));
    assert!(
        layout(&ours).contains("<CERTIFICATE>\nkey:\n<RSA PRIVATE KEY>\nca:\n<CERTIFICATE>\n"),
        "{}",
        layout(&ours)
    );
    assert_good_pair(&agent, scratch.path());
    assert_good_pair(&ours, scratch.path());
    assert!(!log.contains("PRIVATE KEY"), "a key in the log");

    // Agent run again on its destination keeps its certificate: nothing issued, same bytes.
    pki.agent(PKI_TEMPLATE, &agent_file);
    assert_eq!(pki.issued(), 2, "bao agent re-issued over its own file");
    assert_eq!(std::fs::read_to_string(&agent_file).unwrap(), agent);
    // vault-login on Agent's destination keeps Agent's certificate and renders it as Agent
    // did, byte for byte; Agent on vault-login's keeps ours and renders it as we did.
    std::fs::write(&ours_file, &agent).unwrap();
    let log = pki.once();
    assert!(
        log.contains("pkiCert certificate kept from the template's destination"),
        "{log}"
    );
    assert_eq!(pki.issued(), 2, "vault-login re-issued:\n{log}");
    assert_eq!(std::fs::read_to_string(&ours_file).unwrap(), agent);
    std::fs::write(&agent_file, &ours).unwrap();
    pki.agent(PKI_TEMPLATE, &agent_file);
    assert_eq!(
        pki.issued(),
        2,
        "bao agent re-issued over vault-login's file"
    );
    assert_eq!(std::fs::read_to_string(&agent_file).unwrap(), ours);
}

#[test]
fn a_pki_cert_split_over_templates_matches_and_sighup_or_a_restart_issue_nothing() {
    let Some(bao) = Bao::start() else { return };
    let mut pki = Pki::new(bao, &["ttl=10m", "max_ttl=1h"], true);
    pki.env.remove("VAULT_LOGIN_CERT_WEB");
    let split = |pki: &mut Pki, names: &str| {
        for (name, field, file) in [
            ("CRT", "Cert", "tls.crt"),
            ("KEY", "Key", "tls.key"),
            ("CA", "CA", "ca.crt"),
        ] {
            pki.env.insert(
                format!("VAULT_LOGIN_TEMPLATE_{name}"),
                format!("{{{{ with pkiCert \"pki/issue/web\" {names} }}}}{{{{ .{field} }}}}{{{{ end }}}}"),
            );
            pki.env
                .insert(format!("VAULT_LOGIN_TEMPLATE_FILE_{name}"), file.into());
        }
    };
    split(
        &mut pki,
        "\"common_name=app.shop.svc\" \"alt_names=api.shop.svc\"",
    );
    let files =
        || ["tls.crt", "tls.key", "ca.crt"].map(|f| std::fs::read_to_string(pki.out.join(f)).ok());
    let mut r = pki.spawn();
    assert!(
        wait_until(LIMIT, || files().iter().all(Option::is_some)),
        "templates not rendered:\n{}",
        r.stderr()
    );
    r.wait_log("pkiCert certificate issued", LIMIT);
    assert_eq!(pki.issued(), 1, "one certificate for the three templates");
    // The key in one file matches the certificate in another: one certificate, not three.
    let first = files();
    let (info, matches) = read_files(&pki.out.join("tls.crt"), &pki.out.join("tls.key"))
        .map(|(i, k)| {
            let m = k == i.public_key;
            (i, m)
        })
        .unwrap();
    assert!(matches, "tls.key does not match tls.crt");
    assert!(info.dns_names.contains(&"api.shop.svc".to_string()));
    let scratch = tempfile::tempdir().unwrap();
    let joined: String = first.iter().flatten().cloned().collect();
    assert_good_pair(&joined, scratch.path());
    sighup_issues_nothing(&pki, &r);

    // SIGKILL, and a successor in the same pod: kept from the destinations, same files.
    r.child.kill().unwrap();
    r.wait(LIMIT);
    let r2 = pki.spawn();
    r2.wait_log(
        "pkiCert certificate kept from the template's destination",
        LIMIT,
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        pki.issued(),
        1,
        "a restart issued a certificate:\n{}",
        r2.stderr()
    );
    assert_eq!(files(), first, "the templates' files changed");
    drop(r2);

    // Other names in the templates: replaced.
    split(
        &mut pki,
        "\"common_name=app.shop.svc\" \"alt_names=other.shop.svc\"",
    );
    let r3 = pki.spawn();
    r3.wait_log("will be replaced", LIMIT);
    r3.wait_log("pkiCert certificate issued", LIMIT);
    assert_eq!(pki.issued(), 2);
    assert!(
        wait_until(LIMIT, || read_files(
            &pki.out.join("tls.crt"),
            &pki.out.join("tls.key")
        )
        .is_some_and(
            |(i, k)| k == i.public_key && i.dns_names.contains(&"other.shop.svc".to_string())
        )),
        "not replaced:\n{}",
        r3.stderr()
    );
}

#[test]
fn a_pki_cert_template_is_renewed_before_expiry() {
    let Some(bao) = Bao::start() else { return };
    let pki = Pki::new(bao, &["ttl=20s", "max_ttl=1h"], true).with_template(PKI_TEMPLATE);
    let r = pki.spawn();
    let file = pki.out.join("web.pem");
    assert!(
        wait_until(LIMIT, || file.exists()),
        "not rendered:\n{}",
        r.stderr()
    );
    let (mut reads, mut expired, mut mismatched) = (0u64, 0u64, 0u64);
    let mut certs = BTreeSet::new();
    let until = std::time::Instant::now() + Duration::from_secs(45);
    while std::time::Instant::now() < until {
        let text = std::fs::read_to_string(&file).unwrap();
        let (cert, key, _) = blocks_of(&text);
        let info = x509::parse_cert(&x509::pem_blocks(&cert).unwrap()[0].der).unwrap();
        let key = x509::public_key_of(&x509::pem_blocks(&key).unwrap()[0]).unwrap();
        reads += 1;
        expired += u64::from(info.not_after <= now_unix());
        mismatched += u64::from(key != info.public_key);
        certs.insert(info.not_after);
        std::thread::sleep(Duration::from_millis(20));
    }
    let stderr = r.stderr();
    eprintln!(
        "reads={reads} certs={} issued={}",
        certs.len(),
        pki.issued()
    );
    assert_eq!(
        expired, 0,
        "an expired certificate was in the file:\n{stderr}"
    );
    assert_eq!(mismatched, 0, "a key not matching its certificate");
    // 45 s of 20 s lives renewed at 2/3 (±10 %): three or four renewals, not one per read.
    assert!(
        certs.len() >= 3,
        "only {} certificates:\n{stderr}",
        certs.len()
    );
    assert!(pki.issued() <= 6, "{} issues in 45 s", pki.issued());
    assert!(!stderr.contains("PRIVATE KEY"), "a key in the log");
}
