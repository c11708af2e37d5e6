//! The real-server tier: the real `vault-login` binary against the real OpenBao 2.7.2 (`bao
//! server -dev`, fetched on first use by `vault_emulator::real`) and, for the database engine,
//! a real PostgreSQL 15. Short real TTLs, generous bounds, and the server itself is asked
//! whether what vault-login wrote is alive. Each test prints one line and passes when the real
//! server cannot run here, unless `VAULT_LOGIN_REQUIRE_REAL=1` (CI), which makes that a failure.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::{bin, run, wait_until, Run, Running};
use serde_json::{json, Value};
use vault_emulator::real::{Bao, BaoOptions, Postgres};

const LIMIT: Duration = Duration::from_secs(20);

/// The tutorial's role (`k8s/tutorial/vault/main.tf`): service account `default` in namespace
/// `default`, audience `k3s`, policy `default`, with the TTLs given.
fn tutorial_role(bao: &Bao, extra: &[&str]) {
    let mut args = vec![
        "write",
        "auth/kubernetes/role/default",
        "bound_service_account_names=default",
        "bound_service_account_namespaces=default",
        "audience=k3s",
    ];
    args.extend_from_slice(extra);
    bao.cli(&args);
}

/// A temp dir with the JWT file and the environment pointing vault-login at `bao`.
struct Real {
    bao: Bao,
    /// Held for its `Drop`: the JWT and the files vault-login writes.
    _dir: tempfile::TempDir,
    token_path: PathBuf,
    env: BTreeMap<String, String>,
}

impl Real {
    /// `bao` with the tutorial's role (`role_args` added to it) and a JWT for
    /// `default/default` with audience `k3s`.
    fn new(bao: Bao, role_args: &[&str]) -> Real {
        tutorial_role(&bao, role_args);
        let dir = tempfile::tempdir().unwrap();
        let jwt_path = dir.path().join("sa").join("token");
        std::fs::create_dir_all(jwt_path.parent().unwrap()).unwrap();
        std::fs::write(&jwt_path, bao.jwt("default", "default", &["k3s"], 3600)).unwrap();
        let out = dir.path().join("out");
        std::fs::create_dir_all(&out).unwrap();
        let token_path = out.join("token");
        let mut env = BTreeMap::new();
        for (k, v) in [
            ("VAULT_ADDR", bao.addr()),
            ("VAULT_LOGIN_ROLE", "default".into()),
            ("VAULT_LOGIN_JWT_FILE", jwt_path.display().to_string()),
            ("VAULT_LOGIN_TOKEN_FILE", token_path.display().to_string()),
            ("VAULT_LOGIN_MIN_BACKOFF", "100ms".into()),
            ("VAULT_LOGIN_MAX_BACKOFF", "500ms".into()),
            ("VAULT_LOGIN_LOG", "debug".into()),
        ] {
            env.insert(k.to_string(), v);
        }
        if let Some(ca) = bao.ca_cert() {
            env.insert("VAULT_CACERT".into(), ca.display().to_string());
        }
        Real {
            bao,
            _dir: dir,
            token_path,
            env,
        }
    }

    fn set(&mut self, k: &str, v: impl Into<String>) -> &mut Self {
        self.env.insert(k.into(), v.into());
        self
    }

    fn command(&self, args: &[&str]) -> std::process::Command {
        let mut cmd = std::process::Command::new(bin());
        cmd.env_clear().envs(&self.env).args(args);
        cmd
    }

    fn once(&self) -> Run {
        run(self.command(&["--once"]), Duration::from_secs(30))
    }

    fn spawn(&self) -> Running {
        Running::start(self.command(&[]))
    }

    fn token(&self) -> Option<String> {
        std::fs::read_to_string(&self.token_path)
            .ok()
            .filter(|t| !t.is_empty())
    }

    fn file(&self, name: &str) -> Option<String> {
        std::fs::read_to_string(self.token_path.with_file_name(name)).ok()
    }

    #[track_caller]
    fn wait_token(&self, r: &Running) -> String {
        assert!(
            wait_until(LIMIT, || self.token().is_some()),
            "no token file; stderr:\n{}",
            r.stderr()
        );
        self.token().unwrap()
    }

    /// `lookup-self` of `token`: its `data`, or `None` when the server says it is not alive.
    fn lookup(&self, token: &str) -> Option<Value> {
        let (status, body) =
            self.bao
                .http("GET", "/v1/auth/token/lookup-self", Some(token), &[], None);
        (status == 200).then(|| serde_json::from_slice::<Value>(&body).unwrap()["data"].clone())
    }

    /// How many tokens the server holds (the root token included), from its accessor list.
    fn token_count(&self) -> usize {
        let root = self.bao.root_token();
        let (status, body) =
            self.bao
                .http("LIST", "/v1/auth/token/accessors", Some(&root), &[], None);
        assert_eq!(status, 200);
        let v: Value = serde_json::from_slice(&body).unwrap();
        v["data"]["keys"].as_array().unwrap().len()
    }

    /// [`Real::watch_reads`] for `span`, asserting the server called no read dead and that at
    /// least two tokens were seen (a new one replaced the first in time): the tokens seen.
    fn live_reads_across_a_replacement(&self, r: &Running, span: Duration) -> Vec<String> {
        let (seen, dead) = self.watch_reads(span);
        assert!(
            dead.is_empty(),
            "dead reads {dead:?}; stderr:\n{}",
            r.stderr()
        );
        assert!(
            seen.len() >= 2,
            "tokens seen: {}; stderr:\n{}",
            seen.len(),
            r.stderr()
        );
        seen
    }

    /// Reads the token file every 50 ms for `span` while the sidecar runs, and asks the server
    /// about every token read: the distinct tokens seen, in order, and the reads the server
    /// called dead.
    fn watch_reads(&self, span: Duration) -> (Vec<String>, Vec<String>) {
        let seen = Mutex::new(Vec::<String>::new());
        let dead = Mutex::new(Vec::<String>::new());
        let stop = AtomicBool::new(false);
        std::thread::scope(|scope| {
            scope.spawn(|| {
                while !stop.load(Ordering::SeqCst) {
                    if let Some(token) = self.token() {
                        let alive = self.bao.token_alive(&token);
                        let mut seen = seen.lock().unwrap();
                        if seen.last() != Some(&token) {
                            seen.push(token.clone());
                        }
                        if !alive {
                            // The file may have moved on between the read and the lookup; only
                            // a token still in the file when found dead is a dead read.
                            if self.token().as_deref() == Some(token.as_str()) {
                                dead.lock()
                                    .unwrap()
                                    .push(format!("read #{} dead", seen.len()));
                            }
                        }
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            });
            std::thread::sleep(span);
            stop.store(true, Ordering::SeqCst);
        });
        (seen.into_inner().unwrap(), dead.into_inner().unwrap())
    }
}

/// A count of `needle` in the sidecar's log.
fn count(r: &Running, needle: &str) -> usize {
    r.stderr().matches(needle).count()
}

#[test]
fn once_with_the_tutorial_role() {
    let Some(bao) = Bao::start() else { return };
    let s = Real::new(
        bao,
        &[
            "token_ttl=3600",
            "token_max_ttl=86400",
            "token_policies=default",
        ],
    );
    let run = s.once();
    run.assert_code(0);
    let token = s.token().expect("token file");
    assert!(token.starts_with("s."), "OpenBao service token: {token}");
    let data = s.lookup(&token).expect("token alive");
    assert_eq!(data["meta"]["role"], "default");
    assert_eq!(data["meta"]["service_account_name"], "default");
    assert_eq!(data["meta"]["service_account_namespace"], "default");
    assert_eq!(data["policies"], json!(["default"]));
    assert!(data["ttl"].as_u64().unwrap() > 3500, "{data}");
    assert!(!run.stderr.contains(&token));
    assert!(run.stderr.contains("login succeeded"), "{}", run.stderr);
    assert_eq!(s.bao.apiserver().reviews(), 1);
}

#[test]
fn renewals_then_a_new_login_before_the_max_ttl_with_no_dead_reads() {
    let Some(bao) = Bao::start() else { return };
    let s = Real::new(bao, &["token_ttl=4", "token_max_ttl=12"]);
    let r = s.spawn();
    s.wait_token(&r);
    // 20 s of a 12 s max TTL: at least one new login, each token renewed before it.
    let seen = s.live_reads_across_a_replacement(&r, Duration::from_secs(20));
    assert!(count(&r, "token renewed") >= 2, "{}", r.stderr());
    assert!(count(&r, "max TTL reached") >= 1, "{}", r.stderr());
    assert!(seen.iter().all(|t| t.starts_with("s.")));
}

#[test]
fn batch_tokens_are_replaced_by_logins_before_they_expire() {
    let Some(bao) = Bao::start() else { return };
    let s = Real::new(
        bao,
        &["token_type=batch", "token_ttl=4", "token_max_ttl=60"],
    );
    let r = s.spawn();
    s.wait_token(&r);
    let seen = s.live_reads_across_a_replacement(&r, Duration::from_secs(12));
    assert!(seen.iter().all(|t| t.starts_with("b.")), "batch tokens");
    // Batch tokens are never renewed; nothing asked the server to.
    assert_eq!(count(&r, "token renewed"), 0, "{}", r.stderr());
}

/// Mounts the tutorial's KV v2 at `internal` and a KV v1 at `kv`, seeds both, and gives the
/// role's tokens policy `app` reading them.
fn kv_engines(bao: &Bao) {
    bao.cli(&["secrets", "enable", "-path=internal", "kv-v2"]);
    bao.cli(&["secrets", "enable", "-path=kv", "kv"]);
    bao.cli(&[
        "kv",
        "put",
        "internal/database/config",
        "username=db-readonly-username",
        "password=db-secret-password",
    ]);
    bao.cli(&["kv", "put", "kv/app", "api_key=one"]);
    let policy = "path \"internal/data/database/config\" { capabilities = [\"read\"] }\npath \"kv/app\" { capabilities = [\"read\"] }\n";
    bao.api(
        "PUT",
        "/v1/sys/policies/acl/app",
        Some(json!({"policy": policy})),
    );
}

#[test]
fn kv2_and_kv1_secrets_are_written_and_refreshed() {
    let Some(bao) = Bao::start() else { return };
    kv_engines(&bao);
    let mut s = Real::new(
        bao,
        &["token_ttl=60", "token_max_ttl=600", "token_policies=app"],
    );
    s.set("VAULT_LOGIN_SECRET_DB", "internal/data/database/config")
        .set(
            "VAULT_LOGIN_SECRET_DB_PASSWORD",
            "internal/data/database/config#password",
        )
        .set("VAULT_LOGIN_SECRET_APP", "kv/app")
        .set("VAULT_LOGIN_SECRETS_REFRESH", "1s");
    let r = s.spawn();
    assert!(
        wait_until(LIMIT, || s.file("app").is_some()
            && s.file("db_password").is_some()),
        "{}",
        r.stderr()
    );
    let db: Value = serde_json::from_str(&s.file("db").unwrap()).unwrap();
    assert_eq!(
        db,
        json!({"username": "db-readonly-username", "password": "db-secret-password"})
    );
    assert_eq!(s.file("db_password").unwrap(), "db-secret-password");
    assert_eq!(
        serde_json::from_str::<Value>(&s.file("app").unwrap()).unwrap(),
        json!({"api_key": "one"})
    );

    s.bao.cli(&[
        "kv",
        "put",
        "internal/database/config",
        "username=db-readonly-username",
        "password=rotated",
    ]);
    s.bao.cli(&["kv", "put", "kv/app", "api_key=two"]);
    assert!(
        wait_until(LIMIT, || s.file("db_password").as_deref()
            == Some("rotated")
            && s.file("app").is_some_and(|a| a.contains("two"))),
        "{}",
        r.stderr()
    );
    assert!(!r.stderr().contains("rotated") && !r.stderr().contains("db-secret-password"));
}

#[test]
fn a_denied_path_fails_once_naming_the_path_and_the_policy() {
    let Some(bao) = Bao::start() else { return };
    kv_engines(&bao);
    // Policy `default` does not read the secret.
    let mut s = Real::new(bao, &["token_ttl=60", "token_policies=default"]);
    s.set("VAULT_LOGIN_SECRET_DB", "internal/data/database/config")
        .set("VAULT_LOGIN_TIMEOUT", "3s");
    let run = s.once();
    run.assert_code(1);
    assert!(
        run.stderr
            .contains("the role's policies must grant \"read\" on internal/data/database/config"),
        "{}",
        run.stderr
    );
    assert!(s.file("db").is_none());
}

#[test]
fn revoke_on_exit_revokes_the_token_on_the_server() {
    let Some(bao) = Bao::start() else { return };
    let mut s = Real::new(bao, &["token_ttl=60", "token_max_ttl=600"]);
    s.set("VAULT_LOGIN_REVOKE_ON_EXIT", "true");
    let mut r = s.spawn();
    let token = s.wait_token(&r);
    assert!(s.lookup(&token).is_some());
    r.signal("TERM");
    assert_eq!(
        r.wait(LIMIT).and_then(|st| st.code()),
        Some(0),
        "{}",
        r.stderr()
    );
    assert!(s.lookup(&token).is_none(), "revoked: {}", r.stderr());
    assert!(r.stderr().contains("token revoked"), "{}", r.stderr());
}

#[test]
fn an_operators_revocation_is_followed_by_a_new_login() {
    let Some(bao) = Bao::start() else { return };
    let s = Real::new(bao, &["token_ttl=4", "token_max_ttl=600"]);
    let r = s.spawn();
    let token = s.wait_token(&r);
    s.bao.cli(&["token", "revoke", &token]);
    assert!(s.lookup(&token).is_none());
    // The next renewal is refused; a login follows and the file holds a live token again.
    assert!(
        wait_until(LIMIT, || s
            .token()
            .is_some_and(|t| t != token && s.lookup(&t).is_some())),
        "{}",
        r.stderr()
    );
}

#[test]
fn a_sidecar_restarted_after_sigkill_adopts_and_renews_the_token() {
    let Some(bao) = Bao::start() else { return };
    let s = Real::new(bao, &["token_ttl=4", "token_max_ttl=600"]);
    let mut first = s.spawn();
    let token = s.wait_token(&first);
    first.signal("KILL");
    assert!(first.wait(LIMIT).is_some());
    let tokens = s.token_count();
    let second = s.spawn();
    second.wait_log("adopted the token already in the file", LIMIT);
    second.wait_log("token renewed", LIMIT);
    // Past the 4 s TTL the adopted token is alive only if the successor renewed it.
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(
        s.token().as_deref(),
        Some(token.as_str()),
        "{}",
        second.stderr()
    );
    assert!(s.lookup(&token).is_some(), "{}", second.stderr());
    assert_eq!(s.token_count(), tokens, "no new login: {}", second.stderr());
}

#[test]
fn a_renewal_while_sealed_is_retried_after_the_unseal() {
    let Some(bao) = Bao::start() else { return };
    let s = Real::new(bao, &["token_ttl=9", "token_max_ttl=600"]);
    let r = s.spawn();
    let token = s.wait_token(&r);
    s.bao.seal();
    // The renewal due at about 2/3 of 9 s meets a sealed server (503) and is retried.
    r.wait_log("retrying the renewal", LIMIT);
    s.bao.unseal();
    let renewed = count(&r, "token renewed");
    assert!(
        wait_until(LIMIT, || count(&r, "token renewed") > renewed),
        "{}",
        r.stderr()
    );
    assert_eq!(
        s.token().as_deref(),
        Some(token.as_str()),
        "kept: {}",
        r.stderr()
    );
    assert!(s.lookup(&token).is_some());
}

#[test]
fn dev_tls_with_vault_cacert() {
    let Some(bao) = Bao::start_with(BaoOptions {
        tls: true,
        ..BaoOptions::default()
    }) else {
        return;
    };
    let s = Real::new(bao, &["token_ttl=60"]);
    assert!(s.env["VAULT_ADDR"].starts_with("https://"));
    assert!(s.env.contains_key("VAULT_CACERT"));
    s.once().assert_code(0);
    assert!(s.lookup(&s.token().unwrap()).is_some());
}

#[test]
fn an_openbao_namespace() {
    let Some(bao) = Bao::start() else { return };
    bao.cli(&["namespace", "create", "team-a"]);
    bao.enable_kubernetes_auth_in("team-a").unwrap();
    bao.cli(&[
        "write",
        "-namespace=team-a",
        "auth/kubernetes/role/app",
        "bound_service_account_names=default",
        "bound_service_account_namespaces=default",
        "audience=k3s",
        "token_ttl=60",
        "token_policies=app",
    ]);
    bao.cli(&[
        "secrets",
        "enable",
        "-namespace=team-a",
        "-path=secret",
        "kv-v2",
    ]);
    bao.cli(&[
        "kv",
        "put",
        "-namespace=team-a",
        "secret/app",
        "password=in-team-a",
    ]);
    let policy =
        json!({"policy": "path \"secret/data/app\" { capabilities = [\"read\"] }"}).to_string();
    let (status, _) = bao.http(
        "PUT",
        "/v1/sys/policies/acl/app",
        Some(&bao.root_token()),
        &[("X-Vault-Namespace", "team-a")],
        Some(&policy),
    );
    assert_eq!(status, 204);
    let mut s = Real::new(bao, &["token_ttl=60"]);
    s.set("VAULT_NAMESPACE", "team-a")
        .set("VAULT_LOGIN_ROLE", "app")
        .set("VAULT_LOGIN_SECRET_PASSWORD", "secret/data/app#password");
    let run = s.once();
    run.assert_code(0);
    assert_eq!(s.file("password").as_deref(), Some("in-team-a"));
    let data = s.lookup(&s.token().unwrap()).expect("alive");
    assert_eq!(data["namespace_path"], "team-a/");
    assert_eq!(data["meta"]["role"], "app");
}

/// OpenBao's database engine on `pg`: connection `pg`, role `app` (lease `ttl`/`max` seconds)
/// whose users may log in until their lease's expiry, and policy `app` reading its creds.
fn database_engine(bao: &Bao, pg: &Postgres, ttl: u64, max: u64) {
    bao.cli(&["secrets", "enable", "database"]);
    bao.api(
        "POST",
        "/v1/database/config/pg",
        Some(json!({
            "plugin_name": "postgresql-database-plugin",
            "connection_url": pg.connection_url(),
            "username": "postgres",
            "password": pg.superuser_password(),
            "allowed_roles": ["app"],
        })),
    );
    bao.api(
        "POST",
        "/v1/database/roles/app",
        Some(json!({
            "db_name": "pg",
            "creation_statements": ["CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';"],
            "default_ttl": ttl,
            "max_ttl": max,
        })),
    );
    let policy = "path \"database/creds/app\" { capabilities = [\"read\"] }\n";
    bao.api(
        "PUT",
        "/v1/sys/policies/acl/app",
        Some(json!({"policy": policy})),
    );
}

/// The live leases of `database/creds/app`, asked with the root token.
fn db_leases(bao: &Bao) -> Vec<String> {
    let (status, body) = bao.http(
        "LIST",
        "/v1/sys/leases/lookup/database/creds/app/",
        Some(&bao.root_token()),
        &[],
        None,
    );
    if status == 404 {
        return Vec::new();
    }
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(status, 200, "{v}");
    v["data"]["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| format!("database/creds/app/{}", k.as_str().unwrap()))
        .collect()
}

/// The seconds lease `id` has left (0 once gone).
fn lease_ttl(bao: &Bao, id: &str) -> u64 {
    let body = json!({"lease_id": id}).to_string();
    let (_, answer) = bao.http(
        "PUT",
        "/v1/sys/leases/lookup",
        Some(&bao.root_token()),
        &[],
        Some(&body),
    );
    let v: Value = serde_json::from_slice(&answer).unwrap_or(Value::Null);
    v["data"]["ttl"].as_u64().unwrap_or(0)
}

/// Whether the server recorded a renewal of lease `id`.
fn lease_renewed(bao: &Bao, id: &str) -> bool {
    let body = json!({"lease_id": id}).to_string();
    let (status, answer) = bao.http(
        "PUT",
        "/v1/sys/leases/lookup",
        Some(&bao.root_token()),
        &[],
        Some(&body),
    );
    let v: Value = serde_json::from_slice(&answer).unwrap_or(Value::Null);
    status == 200 && !v["data"]["last_renewal"].is_null()
}

#[test]
fn database_credentials_log_in_are_renewed_replaced_and_dropped_at_exit() {
    let Some(bao) = Bao::start() else { return };
    let Some(pg) = Postgres::start() else { return };
    database_engine(&bao, &pg, 6, 16);
    let mut s = Real::new(
        bao,
        &["token_ttl=120", "token_max_ttl=600", "token_policies=app"],
    );
    s.set("VAULT_LOGIN_SECRET_DB", "database/creds/app")
        .set("VAULT_LOGIN_REVOKE_ON_EXIT", "true");
    let mut r = s.spawn();
    let creds = || -> Option<(String, String)> {
        let v: Value = serde_json::from_str(&s.file("db")?).ok()?;
        Some((
            v["username"].as_str()?.to_string(),
            v["password"].as_str()?.to_string(),
        ))
    };
    assert!(wait_until(LIMIT, || creds().is_some()), "{}", r.stderr());
    let (first_user, _) = creds().unwrap();

    // Every read of the file, for longer than the 16 s max TTL, holds credentials that log in.
    let start = Instant::now();
    let mut users = vec![first_user.clone()];
    let mut failed = Vec::new();
    let mut renewed = false;
    while start.elapsed() < Duration::from_secs(22) {
        renewed = renewed || db_leases(&s.bao).iter().any(|id| lease_renewed(&s.bao, id));
        if let Some((user, password)) = creds() {
            if users.last() != Some(&user) {
                users.push(user.clone());
            }
            match pg.psql(&user, &password, "select current_user") {
                Ok(who) => assert_eq!(who, user),
                // Replaced between the read and the login: not a dead read.
                Err(e) if creds().is_some_and(|(u, _)| u != user) => drop(e),
                Err(e) => failed.push(format!("{user}: {e}")),
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        failed.is_empty(),
        "dead credentials {failed:?}; stderr:\n{}",
        r.stderr()
    );
    assert!(
        users.len() >= 2,
        "new credentials before the max TTL: {users:?}\n{}",
        r.stderr()
    );
    assert!(
        renewed,
        "a lease was renewed (sys/leases/lookup last_renewal); stderr:\n{}",
        r.stderr()
    );

    r.signal("TERM");
    assert_eq!(
        r.wait(LIMIT).and_then(|st| st.code()),
        Some(0),
        "{}",
        r.stderr()
    );
    // OpenBao's default policy does not grant sys/leases/revoke, so with the tutorial's
    // read-only policy the lease is revoked by revoke-self, with the token it belongs to
    // (vault-login says so in a warning); either way the database user is dropped.
    let last = users.last().unwrap().clone();
    let dropped = || {
        pg.psql(
            "postgres",
            &pg.superuser_password(),
            &format!("select count(*) from pg_roles where rolname = '{last}'"),
        )
        .is_ok_and(|n| n == "0")
    };
    assert!(
        wait_until(LIMIT, dropped),
        "user {last} dropped at exit: {}",
        r.stderr()
    );
    assert!(
        r.stderr().contains("secret lease revoked")
            || r.stderr().contains("revoke-self revokes it with the token"),
        "{}",
        r.stderr()
    );
    // A replaced lease (read again before its max TTL) may run out its last seconds.
    let at_exit = db_leases(&s.bao);
    assert!(
        at_exit.iter().all(|id| lease_ttl(&s.bao, id) <= 16),
        "{at_exit:?}"
    );
    assert!(s.file("db").is_none(), "secret file removed");
    assert!(
        wait_until(LIMIT, || db_leases(&s.bao).is_empty()),
        "every lease gone by its max TTL"
    );
}

/// Every live token the server holds that a kubernetes login issued, by accessor (asked with
/// the root token): what vault-login may have left behind.
fn live_login_tokens(s: &Real) -> Vec<String> {
    let root = s.bao.root_token();
    let (status, body) = s
        .bao
        .http("LIST", "/v1/auth/token/accessors", Some(&root), &[], None);
    assert_eq!(status, 200);
    let v: Value = serde_json::from_slice(&body).unwrap();
    let accessors: Vec<String> = v["data"]["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    accessors
        .into_iter()
        .filter(|accessor| {
            let body = json!({ "accessor": accessor }).to_string();
            let (status, answer) = s.bao.http(
                "POST",
                "/v1/auth/token/lookup-accessor",
                Some(&root),
                &[],
                Some(&body),
            );
            let data = match serde_json::from_slice::<Value>(&answer) {
                Ok(v) if status == 200 => v["data"].clone(),
                _ => return false,
            };
            data["path"] == "auth/kubernetes/login" && data["ttl"].as_u64().unwrap_or(0) > 0
        })
        .collect()
}

#[test]
fn a_login_answered_after_the_ttl_is_used_once_and_nothing_leaks() {
    // The run: the server hangs (SIGSTOP) longer than the token's TTL, then resumes;
    // the pending login is answered seconds after it was sent.
    let Some(bao) = Bao::start() else { return };
    let s = Real::new(bao, &["token_ttl=6", "token_max_ttl=600"]);
    let r = s.spawn();
    let first = s.wait_token(&r);
    s.bao.pause();
    // The renewal is cut at the token's expiry; the login after it waits in the socket.
    r.wait_log(
        "renewal failed and the token has expired; logging in again",
        LIMIT,
    );
    std::thread::sleep(Duration::from_secs(3));
    s.bao.resume();
    // One line for the late login: `login succeeded ... late=true ... next="lookup"`.
    r.wait_log("late=true", LIMIT);
    r.wait_log("Vault confirmed the token's remaining life", LIMIT);
    // The late token is the one kept and renewed, not replaced by a second login.
    let renewed = count(&r, "token renewed");
    assert!(
        wait_until(LIMIT, || count(&r, "token renewed") > renewed),
        "{}",
        r.stderr()
    );
    let token = s.token().unwrap();
    assert_ne!(token, first);
    assert!(s.lookup(&token).is_some(), "{}", r.stderr());
    assert_eq!(
        count(&r, "login succeeded"),
        2,
        "one login after the resume: {}",
        r.stderr()
    );
    // The server holds no other live login token: nothing was orphaned.
    let accessor = s.lookup(&token).unwrap()["accessor"].clone();
    let live = live_login_tokens(&s);
    assert_eq!(
        live,
        vec![accessor.as_str().unwrap().to_string()],
        "{}",
        r.stderr()
    );
    assert!(
        !r.stderr().contains("token file was missing or changed"),
        "no warning about our own write: {}",
        r.stderr()
    );
    assert!(r.stderr().contains("next=\"lookup\""), "{}", r.stderr());
}
