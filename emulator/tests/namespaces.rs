//! Vault Enterprise / OpenBao namespaces over real sockets: secret engines, policies and leases
//! belong to a namespace, a request names one by `X-Vault-Namespace`, a path prefix or both,
//! and a token works only where its namespace's policies reach.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};
use vault_emulator::{DynamicRole, Emulator, Flavour, Role};

/// Vault >= 1.17's 403 for a valid token without the capability.
const DENIED: &str = "1 error occurred:\n\t* permission denied\n\n";

/// Role `app` (policy `app`) on the `kubernetes` mount of namespace `ns`.
fn app_role_in(vault: &Emulator, ns: &str) {
    vault.put_role_in(
        ns,
        "kubernetes",
        "app",
        Role {
            token_policies: vec!["app".into()],
            ..Role::default()
        },
    );
}

/// Logs in with role `app` in namespace `ns` (by header) and returns the token.
fn token_in(vault: &Emulator, ns: &str) -> String {
    let jwt = vault.jwt("default", "app", &["vault"], 600);
    let headers: &[(&str, &str)] = if ns.is_empty() {
        &[]
    } else {
        &[("X-Vault-Namespace", ns)]
    };
    let resp = login_with(vault, "kubernetes", "app", &jwt, headers);
    assert_eq!(
        resp.status,
        200,
        "login in {ns:?}: {}",
        String::from_utf8_lossy(&resp.body)
    );
    resp.json()["auth"]["client_token"]
        .as_str()
        .unwrap()
        .to_string()
}

/// A request with the token and, when `ns` is not empty, `X-Vault-Namespace: ns`.
fn send(vault: &Emulator, method: &str, ns: &str, path: &str, token: &str, body: &str) -> Resp {
    let mut headers = vec![("X-Vault-Token", token)];
    if !ns.is_empty() {
        headers.push(("X-Vault-Namespace", ns));
    }
    call(vault.addr(), method, &format!("/v1/{path}"), &headers, body).expect("answered")
}

fn get(vault: &Emulator, ns: &str, path: &str, token: &str) -> Resp {
    send(vault, "GET", ns, path, token, "")
}

/// The password of a KV v2 read that must have succeeded.
fn password(resp: &Resp) -> String {
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    resp.json()["data"]["data"]["password"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Namespaces `admin`, its child `admin/child` and the sibling `team1`, and the root: each has
/// its own `secret/app` (KV v2, a password naming the namespace) and its own policy `app`.
fn four_namespaces() -> Emulator {
    let vault = Emulator::start_default();
    for (ns, pw) in [
        ("", "root-pw"),
        ("admin", "admin-pw"),
        ("admin/child", "child-pw"),
        ("team1", "team1-pw"),
    ] {
        app_role_in(&vault, ns);
        vault.put_kv2_in(ns, "secret", "app", json!({"password": pw}));
        vault.put_policy_in(ns, "app", &[("secret/data/app", &["read"])]);
    }
    vault
}

#[test]
fn a_namespaced_token_reads_its_namespaces_secret_by_header_or_path_prefix_and_nowhere_else() {
    let vault = four_namespaces();
    let admin = token_in(&vault, "admin");
    // By header (with or without slashes), by path prefix, and by both joined.
    for (ns, path) in [
        ("admin", "secret/data/app"),
        ("/admin/", "secret/data/app"),
        ("", "admin/secret/data/app"),
    ] {
        let resp = get(&vault, ns, path, &admin);
        assert_eq!(password(&resp), "admin-pw", "{ns:?} {path}");
        assert!(resp.json().get("mount_type").is_none());
    }
    // The root namespace, a sibling, and a child its policy does not name: valid token, no
    // policy there, so a plain "permission denied" (not "invalid token").
    for (ns, path) in [
        ("", "secret/data/app"),
        ("root", "secret/data/app"),
        ("team1", "secret/data/app"),
        ("", "team1/secret/data/app"),
        ("admin", "child/secret/data/app"),
        ("admin/child", "secret/data/app"),
    ] {
        let resp = get(&vault, ns, path, &admin);
        assert_eq!(
            (resp.status, resp.error()),
            (403, DENIED.to_string()),
            "{ns:?} {path}"
        );
    }
    // Each namespace's token reads its own secret; the same names never leak across.
    assert_eq!(
        password(&get(&vault, "", "secret/data/app", &token_in(&vault, ""))),
        "root-pw"
    );
    assert_eq!(
        password(&get(
            &vault,
            "team1",
            "secret/data/app",
            &token_in(&vault, "team1")
        )),
        "team1-pw"
    );
    let child = token_in(&vault, "admin/child");
    assert_eq!(
        password(&get(&vault, "admin", "child/secret/data/app", &child)),
        "child-pw"
    );
    // A child's token cannot climb to its parent.
    let resp = get(&vault, "admin", "secret/data/app", &child);
    assert_eq!((resp.status, resp.error()), (403, DENIED.to_string()));
}

#[test]
fn a_token_reaches_a_child_namespace_through_policy_paths_relative_to_its_own() {
    let vault = four_namespaces();
    // admin's policy names the child's path relative to admin: header and path prefix join
    // (header `admin`, path `child/...` is namespace admin/child).
    vault.put_policy_in(
        "admin",
        "app",
        &[
            ("secret/data/app", &["read"]),
            ("child/secret/data/*", &["read"]),
        ],
    );
    let admin = token_in(&vault, "admin");
    for (ns, path) in [
        ("admin", "child/secret/data/app"),
        ("admin/child", "secret/data/app"),
        ("", "admin/child/secret/data/app"),
    ] {
        assert_eq!(
            password(&get(&vault, ns, path, &admin)),
            "child-pw",
            "{ns:?} {path}"
        );
    }
    // A root policy naming `admin/...` reaches into admin; written as `secret/...` it means the
    // root's own secret only.
    let root = token_in(&vault, "");
    let resp = get(&vault, "admin", "secret/data/app", &root);
    assert_eq!((resp.status, resp.error()), (403, DENIED.to_string()));
    vault.put_policy_in("", "app", &[("admin/secret/data/app", &["read"])]);
    assert_eq!(
        password(&get(&vault, "admin", "secret/data/app", &root)),
        "admin-pw"
    );
    let resp = get(&vault, "", "secret/data/app", &root);
    assert_eq!((resp.status, resp.error()), (403, DENIED.to_string()));
    // Policies are looked up in the token's namespace: admin's `app` does not change the root
    // token's rights, nor the other way round.
    vault.put_policy_in("admin", "app", &[]);
    let resp = get(&vault, "admin", "secret/data/app", &admin);
    assert_eq!((resp.status, resp.error()), (403, DENIED.to_string()));
    assert_eq!(
        password(&get(&vault, "admin", "secret/data/app", &root)),
        "admin-pw"
    );
}

#[test]
fn token_endpoints_follow_the_token_on_openbao_and_deny_a_stray_token_on_vault() {
    let vault = four_namespaces();
    let admin = token_in(&vault, "admin");
    for ns in ["admin", "admin/"] {
        let resp = send(&vault, "GET", ns, "auth/token/lookup-self", &admin, "");
        assert_eq!(resp.status, 200, "{ns}");
        assert_eq!(resp.json()["data"]["namespace_path"], "admin/");
    }
    let resp = send(
        &vault,
        "GET",
        "",
        "admin/auth/token/lookup-self",
        &admin,
        "",
    );
    assert_eq!(resp.status, 200);
    // OpenBao looks the token up in its own namespace, whatever the request names (measured:
    // 200 without the header, and with a sibling's or a child's).
    for ns in ["", "team1", "admin/child"] {
        let resp = send(&vault, "GET", ns, "auth/token/lookup-self", &admin, "");
        assert_eq!(resp.status, 200, "{ns:?}");
        assert_eq!(resp.json()["data"]["namespace_path"], "admin/");
    }
    let resp = send(&vault, "POST", "", "auth/token/renew-self", &admin, "{}");
    assert_eq!(resp.status, 200);
    // Vault (unverified) denies a valid token of another namespace there, without calling it
    // invalid.
    vault.set_flavour(Flavour::Vault);
    for (ns, path) in [
        ("", "auth/token/lookup-self"),
        ("team1", "auth/token/lookup-self"),
        ("admin/child", "auth/token/lookup-self"),
    ] {
        let resp = send(&vault, "GET", ns, path, &admin, "");
        assert_eq!(
            (resp.status, resp.error()),
            (403, DENIED.to_string()),
            "{ns:?} {path}"
        );
    }
    let resp = send(&vault, "POST", "", "auth/token/renew-self", &admin, "{}");
    assert_eq!((resp.status, resp.error()), (403, DENIED.to_string()));
    let resp = send(
        &vault,
        "POST",
        "",
        "admin/auth/token/renew-self",
        &admin,
        "{}",
    );
    assert_eq!(resp.status, 200);
    // An unknown token is still invalid, in any namespace.
    let resp = send(&vault, "GET", "admin", "secret/data/app", "hvs.nope", "");
    assert_eq!(resp.status, 403);
    assert!(resp.error().contains("invalid token"), "{}", resp.error());
    vault.set_flavour(Flavour::OpenBao);
    let resp = send(&vault, "GET", "admin", "secret/data/app", "s.nope", "");
    assert_eq!(
        (resp.status, resp.error()),
        (403, "permission denied".into())
    );
}

#[test]
fn a_namespaced_dynamic_lease_carries_the_namespace_id_and_renews_and_revokes_there() {
    let vault = four_namespaces();
    vault.put_dynamic_role_in(
        "admin",
        "database",
        "app",
        DynamicRole {
            default_ttl: Duration::from_secs(600),
            max_ttl: Duration::from_secs(3600),
            renewable: true,
        },
    );
    // Reading needs the creds path; revoking needs sys/leases/revoke (the default policy only
    // grants renew), both relative to admin.
    vault.put_policy_in(
        "admin",
        "app",
        &[
            ("database/creds/app", &["read"]),
            ("sys/leases/revoke", &["update"]),
        ],
    );
    let admin = token_in(&vault, "admin");
    let nsid = admin.rsplit('.').next().unwrap().to_string();
    assert_eq!(nsid.len(), 6, "{admin}");
    let resp = get(&vault, "admin", "database/creds/app", &admin);
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    let v = resp.json();
    let lease_id = v["lease_id"].as_str().unwrap().to_string();
    let random = lease_id
        .strip_prefix("database/creds/app/")
        .and_then(|r| r.strip_suffix(&format!(".{nsid}")))
        .unwrap_or_else(|| panic!("{lease_id} is not database/creds/app/<random>.{nsid}"));
    assert_eq!(random.len(), 24, "{lease_id}");
    assert_eq!(
        (v["renewable"].clone(), v["lease_duration"].clone()),
        (json!(true), json!(600))
    );
    let leases = vault.leases();
    assert_eq!(leases.len(), 1);
    assert_eq!(
        (leases[0].lease_id.as_str(), leases[0].namespace.as_str()),
        (lease_id.as_str(), "admin")
    );
    // No such engine in the root namespace, where admin's token is denied anyway.
    let resp = get(&vault, "", "database/creds/app", &admin);
    assert_eq!((resp.status, resp.error()), (403, DENIED.to_string()));

    let renew = |ns: &str, token: &str, increment: u64| {
        send(
            &vault,
            "PUT",
            ns,
            "sys/leases/renew",
            token,
            &json!({"lease_id": lease_id, "increment": increment}).to_string(),
        )
    };
    let resp = renew("admin", &admin, 1200);
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    let v: Value = resp.json();
    assert_eq!(
        (
            v["lease_id"].as_str(),
            v["lease_duration"].clone(),
            v["data"].clone()
        ),
        (Some(lease_id.as_str()), json!(1200), Value::Null)
    );
    // Vault moves a lease request into the namespace its id names, so a client that sends no
    // namespace renews it too (the ACL is then checked in admin, where the token belongs).
    assert_eq!(renew("", &admin, 900).json()["lease_duration"], 900);
    assert_eq!(vault.leases()[0].renewals, 2);
    // Tokens of other namespaces are denied in admin, even the root's.
    for other in [token_in(&vault, ""), token_in(&vault, "team1")] {
        let resp = renew("admin", &other, 60);
        assert_eq!((resp.status, resp.error()), (403, DENIED.to_string()));
    }
    assert_eq!(vault.leases()[0].renewals, 2);
    // The default policy does not grant revoke: team1's token with only that is denied...
    let revoke = |ns: &str, token: &str| {
        send(
            &vault,
            "PUT",
            ns,
            "sys/leases/revoke",
            token,
            &json!({ "lease_id": lease_id }).to_string(),
        )
    };
    assert_eq!(revoke("admin", &token_in(&vault, "team1")).status, 403);
    assert_eq!(vault.lease_count(), 1);
    // ...and admin's, granted revoke by its policy, revokes it.
    let resp = revoke("admin", &admin);
    assert_eq!((resp.status, resp.body.len()), (204, 0));
    assert_eq!(vault.lease_count(), 0);
    let resp = renew("admin", &admin, 60);
    assert_eq!((resp.status, resp.error()), (400, "lease not found".into()));
    assert_eq!(vault.leases_issued(), 1);
}

#[test]
fn a_root_lease_has_no_namespace_suffix_and_is_not_found_from_another_namespace() {
    let vault = four_namespaces();
    vault.put_dynamic_role("database", "app", DynamicRole::default());
    vault.put_policy("app", &[("database/creds/app", &["read"])]);
    let root = token_in(&vault, "");
    let v = get(&vault, "", "database/creds/app", &root).json();
    let lease_id = v["lease_id"].as_str().unwrap().to_string();
    let random = lease_id.strip_prefix("database/creds/app/").unwrap();
    assert!(
        random.len() == 24 && random.chars().all(|c| c.is_ascii_alphanumeric()),
        "{lease_id}"
    );
    assert_eq!(vault.leases()[0].namespace, "");
    // admin's lease store does not hold it: admin's token renews in admin and finds nothing.
    let admin = token_in(&vault, "admin");
    let body = json!({ "lease_id": lease_id }).to_string();
    let resp = send(&vault, "PUT", "admin", "sys/leases/renew", &admin, &body);
    assert_eq!((resp.status, resp.error()), (400, "lease not found".into()));
    let resp = send(&vault, "PUT", "", "sys/leases/renew", &root, &body);
    assert_eq!(resp.status, 200);
}

#[test]
fn set_namespace_required_moves_secrets_policies_and_auth_together() {
    let vault = Emulator::start_default();
    vault.put_role(
        "kubernetes",
        "app",
        Role {
            token_policies: vec!["app".into()],
            ..Role::default()
        },
    );
    vault.put_policy("app", &[("secret/data/*", &["read"])]);
    vault.put_kv2("secret", "before", json!({"password": "b"}));
    vault.set_namespace_required(Some("admin"));
    // Configuration made afterwards with the plain methods lands in admin too.
    vault.put_kv2("secret", "after", json!({"password": "a"}));
    let admin = token_in(&vault, "admin");
    assert_eq!(
        password(&get(&vault, "admin", "secret/data/before", &admin)),
        "b"
    );
    assert_eq!(
        password(&get(&vault, "", "admin/secret/data/after", &admin)),
        "a"
    );
    let resp = get(&vault, "", "secret/data/before", &admin);
    assert_eq!((resp.status, resp.error()), (403, DENIED.to_string()));
    // The root namespace is left empty: no role to log in with.
    let jwt = vault.jwt("default", "app", &["vault"], 600);
    assert_eq!(login(&vault, "kubernetes", "app", &jwt).status, 403);
    // And back.
    vault.set_namespace_required(None);
    let root = token_in(&vault, "");
    assert_eq!(password(&get(&vault, "", "secret/data/after", &root)), "a");
}
