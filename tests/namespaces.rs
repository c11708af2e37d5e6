//! Vault Enterprise / HCP Vault / OpenBao namespaces through the real binary: with
//! VAULT_NAMESPACE every request names the namespace, so `--once` logs in there and writes the
//! namespace's secrets; without it the same Vault answers from the root namespace, and the run
//! fails saying what Vault refused.

mod common;

use std::path::PathBuf;

use common::*;
use serde_json::json;
use vault_emulator::DynamicRole;

/// HCP Vault's layout: the tutorial's role, policy `app` and secret live in namespace `admin`
/// (moved there from the root, which is left empty), with a dynamic database role beside them.
fn hcp_like() -> Setup {
    let s = with_tutorial_secret(Role::default());
    s.emu.set_namespace_required(Some("admin"));
    // Made after the move, so in admin as well.
    s.emu
        .put_dynamic_role("database", "app", DynamicRole::default());
    s
}

fn out(s: &Setup, name: &str) -> PathBuf {
    s.token_path.parent().unwrap().join(name)
}

#[test]
fn once_with_vault_namespace_writes_the_token_and_the_namespaces_secrets() {
    let mut s = hcp_like();
    s.set("VAULT_NAMESPACE", "admin")
        .set("VAULT_LOGIN_SECRET_DB", "internal/data/database/config")
        .set(
            "VAULT_LOGIN_SECRET_DB_PASSWORD",
            "internal/data/database/config#password",
        )
        .set("VAULT_LOGIN_SECRET_CREDS", "database/creds/app");
    let run = s.once(&[]);
    run.assert_code(0);
    let token = s.token().unwrap();
    assert!(s.emu.is_valid(&token));
    let db: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out(&s, "db")).unwrap()).unwrap();
    assert_eq!(
        db,
        json!({"username": "db-readonly-username", "password": TUTORIAL_PASSWORD})
    );
    assert_eq!(
        std::fs::read_to_string(out(&s, "db_password")).unwrap(),
        TUTORIAL_PASSWORD
    );
    // The dynamic credentials came from admin's engine, under a lease of admin.
    let leases = s.emu.leases();
    assert_eq!(leases.len(), 1);
    assert_eq!(leases[0].namespace, "admin");
    let creds: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out(&s, "creds")).unwrap()).unwrap();
    assert_eq!(creds["password"], leases[0].data["password"]);
    // Every request named the namespace, by header, with the plain API path.
    let reqs = s.emu.requests();
    assert!(reqs.len() >= 3, "{reqs:?}");
    for r in &reqs {
        assert_eq!(r.header("x-vault-namespace"), Some("admin"), "{r:?}");
        assert!(!r.path.starts_with("/v1/admin/"), "{r:?}");
    }
    assert!(reqs
        .iter()
        .any(|r| r.path == "/v1/internal/data/database/config"));
    for secret in [token.as_str(), TUTORIAL_PASSWORD] {
        assert!(!run.stderr.contains(secret), "{}", run.stderr);
    }
}

#[test]
fn once_without_vault_namespace_fails_on_the_roots_permission_denied_and_says_where_to_look() {
    let mut s = hcp_like();
    s.set("VAULT_LOGIN_SECRET_DB", "internal/data/database/config")
        .set("VAULT_LOGIN_TIMEOUT", "2s");
    let run = s.once(&[]);
    run.assert_code(1);
    // The root namespace has no kubernetes auth method: Vault's bare "permission denied",
    // which vault-login explains, naming the mount and saying VAULT_NAMESPACE is not set.
    for needle in [
        "auth/kubernetes/login",
        "permission denied",
        "no kubernetes auth method is mounted at auth/kubernetes",
        "in the root namespace: VAULT_NAMESPACE is not set",
    ] {
        assert!(
            run.stderr.contains(needle),
            "{needle:?} missing:\n{}",
            run.stderr
        );
    }
    assert!(s.token().is_none(), "no token file");
    assert!(!out(&s, "db").exists(), "no secret file");
    assert!(s
        .emu
        .requests()
        .iter()
        .all(|r| r.header("x-vault-namespace").is_none()));
}

#[test]
fn once_with_a_vault_namespace_that_does_not_exist_says_so() {
    // OpenBao answers 404 `namespace not found` for every request naming it (measured).
    let mut s = hcp_like();
    s.set("VAULT_NAMESPACE", "adm1n")
        .set("VAULT_LOGIN_TIMEOUT", "2s");
    let run = s.once(&[]);
    run.assert_code(1);
    for needle in [
        "auth/kubernetes/login",
        "404",
        "namespace not found",
        "there is no namespace adm1n",
    ] {
        assert!(
            run.stderr.contains(needle),
            "{needle:?} missing:\n{}",
            run.stderr
        );
    }
    assert!(s.token().is_none(), "no token file");
}

#[test]
fn once_without_vault_namespace_where_the_root_also_has_the_role_fails_on_the_secret_read() {
    // A platform team's root namespace with the same role, but the secret and its policy in
    // admin: the login succeeds in the root, and the read is denied there.
    let mut s = hcp_like();
    s.emu.put_role_in(
        "",
        "kubernetes",
        "default",
        Role {
            audience: Some("vault".into()),
            ..Role::default()
        },
    );
    s.set("VAULT_LOGIN_SECRET_DB", "internal/data/database/config")
        .set("VAULT_LOGIN_TIMEOUT", "2s");
    let run = s.once(&[]);
    eprintln!("STDERR<<{}>>", run.stderr);
    run.assert_code(1);
    for needle in ["internal/data/database/config", "403", "permission denied"] {
        assert!(
            run.stderr.contains(needle),
            "{needle:?} missing:\n{}",
            run.stderr
        );
    }
    assert!(!out(&s, "db").exists(), "no secret file");
    // With the namespace, the same setup works.
    s.set("VAULT_NAMESPACE", "admin");
    s.once(&[]).assert_code(0);
    assert!(out(&s, "db").exists());
}

/// The sidecar in virtual time: a namespaced lease is renewed (the renewal naming admin like
/// every other request) and the token too, for a few hours.
#[tokio::test(start_paused = true)]
async fn the_sidecar_renews_a_namespaced_lease_and_token_in_their_namespace() {
    use common::virtual_time::{wait_for, Virtual};
    use std::time::Duration;
    const HOUR: Duration = Duration::from_secs(3600);
    let mut v = Virtual::with_hourly_db_creds(24 * HOUR);
    // Moves the role, the policy and the dynamic role into namespace admin.
    v.emu.set_namespace_required(Some("admin"));
    v.set("VAULT_NAMESPACE", "admin");
    let creds = v.token_path.parent().unwrap().join("creds");
    let r = v.spawn(&[]);
    assert!(wait_for(HOUR, || creds.is_file()).await, "{}", r.stderr());
    let count = |v: &Virtual, path: &str| {
        v.emu
            .count_requests(|r| r.path == path && r.header("x-vault-namespace") == Some("admin"))
    };
    tokio::time::sleep(4 * HOUR).await;
    let leases = v.emu.leases();
    assert_eq!(leases.len(), 1, "one live lease; {}", r.stderr());
    assert_eq!(leases[0].namespace, "admin");
    assert!(leases[0].renewals >= 3, "{leases:?}\n{}", r.stderr());
    assert!(count(&v, "/v1/sys/leases/renew") >= 3, "{}", r.stderr());
    assert!(
        count(&v, "/v1/auth/token/renew-self") >= 3,
        "{}",
        r.stderr()
    );
    assert_eq!(
        v.emu
            .count_requests(|r| r.header("x-vault-namespace") != Some("admin")),
        0
    );
    assert_eq!(v.emu.token_count(), 1, "no new login; {}", r.stderr());
}
