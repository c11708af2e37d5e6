//! Secret engines over real sockets: KV v2 and KV v1 reads, dynamic secrets with leases
//! (renew, revoke, expiry), and the ACL check in front of them.

mod common;

use std::collections::BTreeSet;
use std::thread::sleep;
use std::time::Duration;

use common::*;
use serde_json::{json, Value};
use vault_emulator::{DynamicRole, Emulator, Role};

const DENIED: &str = "1 error occurred:\n\t* permission denied\n\n";

fn keys(v: &Value) -> BTreeSet<&str> {
    v.as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect()
}

/// An emulator whose role `app` carries policy `app` with `rules`, and a token from it.
fn with_policy(rules: &[(&str, &[&str])]) -> (Emulator, String) {
    let (vault, _) = logged_in(Role::default());
    vault.put_policy("app", rules);
    vault.put_role(
        "kubernetes",
        "app",
        Role {
            token_policies: vec!["app".into()],
            ..Role::default()
        },
    );
    let jwt = vault.jwt("default", "app", &["vault"], 600);
    let token = login(&vault, "kubernetes", "app", &jwt).json()["auth"]["client_token"]
        .as_str()
        .unwrap()
        .to_string();
    (vault, token)
}

fn get(vault: &Emulator, path: &str, token: &str) -> Resp {
    call(
        vault.addr(),
        "GET",
        &format!("/v1/{path}"),
        &[("X-Vault-Token", token)],
        "",
    )
    .expect("answered")
}

fn put(vault: &Emulator, path: &str, token: &str, body: Value) -> Resp {
    call(
        vault.addr(),
        "PUT",
        &format!("/v1/{path}"),
        &[("X-Vault-Token", token)],
        &body.to_string(),
    )
    .expect("answered")
}

#[test]
fn kv2_read_answers_vaults_envelope_with_the_latest_version() {
    let (vault, token) = with_policy(&[("internal/data/database/*", &["read"])]);
    vault.put_kv2(
        "internal",
        "database/config",
        json!({"username": "db-readonly-user", "password": "old"}),
    );
    let v2 = vault.put_kv2(
        "internal",
        "database/config",
        json!({"username": "db-readonly-user", "password": "db-secret-password"}),
    );
    assert_eq!(v2, 2);
    let resp = get(&vault, "internal/data/database/config", &token);
    assert_eq!(resp.status, 200);
    let v = resp.json();
    assert_eq!(
        keys(&v),
        [
            "request_id",
            "lease_id",
            "renewable",
            "lease_duration",
            "data",
            "wrap_info",
            "warnings",
            "auth",
        ]
        .into_iter()
        .collect()
    );
    assert_eq!(
        (
            v["lease_id"].clone(),
            v["renewable"].clone(),
            v["lease_duration"].clone()
        ),
        (json!(""), json!(false), json!(0))
    );
    assert!(v.get("mount_type").is_none(), "OpenBao sends no mount_type");
    assert_eq!(
        v["data"]["data"],
        json!({"username": "db-readonly-user", "password": "db-secret-password"})
    );
    let meta = &v["data"]["metadata"];
    assert_eq!(
        keys(meta),
        [
            "created_time",
            "custom_metadata",
            "deletion_time",
            "destroyed",
            "version"
        ]
        .into_iter()
        .collect()
    );
    assert_eq!(meta["version"], 2);
    assert_eq!(meta["deletion_time"], "");
    assert_eq!(meta["destroyed"], false);
    assert_eq!(meta["custom_metadata"], Value::Null);
    assert!(meta["created_time"].as_str().unwrap().ends_with('Z'));
}

#[test]
fn kv2_missing_deleted_and_destroyed_versions_answer_404() {
    let (vault, token) = with_policy(&[("internal/*", &["read"])]);
    vault.put_kv2("internal", "app", json!({"a": "1"}));
    let missing = get(&vault, "internal/data/nothing-here", &token);
    assert_eq!(missing.status, 404);
    assert_eq!(missing.json(), json!({"errors": []}));

    vault.delete_kv2("internal", "app");
    let deleted = get(&vault, "internal/data/app", &token);
    assert_eq!(deleted.status, 404);
    let v = deleted.json();
    assert_eq!(v["data"]["data"], Value::Null);
    assert_ne!(v["data"]["metadata"]["deletion_time"], "");
    assert_eq!(v["data"]["metadata"]["version"], 1);

    vault.put_kv2("internal", "app", json!({"a": "2"}));
    assert_eq!(get(&vault, "internal/data/app", &token).status, 200);
    vault.destroy_kv2("internal", "app", 2);
    let destroyed = get(&vault, "internal/data/app", &token).json();
    assert_eq!(destroyed["data"]["metadata"]["destroyed"], true);
    assert_eq!(destroyed["data"]["data"], Value::Null);

    // The metadata endpoint lists every version.
    let meta = get(&vault, "internal/metadata/app", &token);
    assert_eq!(meta.status, 200);
    let d = &meta.json()["data"];
    assert_eq!(d["current_version"], 2);
    assert_eq!(keys(&d["versions"]), ["1", "2"].into_iter().collect());
    assert_eq!(d["versions"]["2"]["destroyed"], true);
    assert_ne!(d["versions"]["1"]["deletion_time"], "");
}

#[test]
fn a_kv2_path_without_data_is_denied_by_a_data_policy_and_unsupported_otherwise() {
    let (vault, token) = with_policy(&[("internal/data/database/config", &["read"])]);
    vault.put_kv2("internal", "database/config", json!({"password": "x"}));
    let resp = get(&vault, "internal/database/config", &token);
    assert_eq!(resp.status, 403);
    assert_eq!(resp.error(), DENIED);

    let (vault, token) = with_policy(&[("internal/*", &["read"])]);
    vault.put_kv2("internal", "database/config", json!({"password": "x"}));
    let resp = get(&vault, "internal/database/config", &token);
    assert_eq!(resp.status, 404);
    let v = resp.json();
    assert_eq!(v["data"], json!(null));
    assert_eq!(
        v["warnings"],
        json!(["Invalid path for a versioned K/V secrets engine. See the API docs for the appropriate API endpoints to use. If using the OpenBao CLI, use 'bao kv get' for this operation."])
    );
}

#[test]
fn kv2_reads_the_version_asked_for() {
    let (vault, token) = with_policy(&[("internal/data/*", &["read"])]);
    for n in 1..=3 {
        vault.put_kv2("internal", "app", json!({ "n": n }));
    }
    for (query, status, n) in [
        ("", 200, json!(3)),
        ("?version=1", 200, json!(1)),
        ("?version=2", 200, json!(2)),
        ("?version=0", 200, json!(3)),
        ("?version=-1", 200, json!(3)),
    ] {
        let resp = get(&vault, &format!("internal/data/app{query}"), &token);
        assert_eq!(resp.status, status, "{query}");
        assert_eq!(resp.json()["data"]["data"]["n"], n, "{query}");
        assert_eq!(resp.json()["data"]["metadata"]["version"], n, "{query}");
    }
    let resp = get(&vault, "internal/data/app?version=9", &token);
    assert_eq!((resp.status, resp.json()), (404, json!({"errors": []})));
    let resp = get(&vault, "internal/data/app?version=abc", &token);
    assert_eq!(resp.status, 400);
    assert!(
        resp.error()
            .starts_with("Field validation failed: error converting input for field \"version\""),
        "{}",
        resp.error()
    );
    // The query string is recorded apart from the path.
    let last = vault.requests().pop().unwrap();
    assert_eq!(
        (last.path.as_str(), last.query.as_str()),
        ("/v1/internal/data/app", "version=abc")
    );
}

#[test]
fn reads_need_a_live_token_and_a_policy_that_grants_read() {
    let (vault, token) = logged_in(Role::default());
    vault.put_kv2("internal", "database/config", json!({"password": "x"}));
    // The default policy grants no secret.
    let resp = get(&vault, "internal/data/database/config", &token);
    assert_eq!((resp.status, resp.error()), (403, DENIED.to_string()));
    for bad in ["", "hvs.not-a-token"] {
        let resp = get(&vault, "internal/data/database/config", bad);
        assert_eq!(resp.status, 403);
        assert!(
            resp.error().contains("permission denied"),
            "{}",
            resp.error()
        );
    }
    // The same token works once its role's policy grants read: policies are read per request.
    vault.put_policy("default", &[("internal/data/*", &["read"])]);
    assert_eq!(
        get(&vault, "internal/data/database/config", &token).status,
        200
    );
}

#[test]
fn kv1_read_returns_the_secret_itself_with_a_refresh_hint() {
    let (vault, token) = with_policy(&[("kv/*", &["read"])]);
    vault.put_kv1("kv", "app", json!({"api_key": "k-123"}));
    vault.put_kv1("kv", "short", json!({"api_key": "k", "ttl": "30m"}));
    let v = get(&vault, "kv/app", &token).json();
    assert_eq!(v["data"], json!({"api_key": "k-123"}));
    assert_eq!(v["lease_duration"], 2_764_800);
    assert_eq!(
        (v["lease_id"].clone(), v["renewable"].clone()),
        (json!(""), json!(false))
    );
    assert_eq!(
        get(&vault, "kv/short", &token).json()["lease_duration"],
        1800
    );
    let missing = get(&vault, "kv/none", &token);
    assert_eq!(
        (missing.status, missing.json()),
        (404, json!({"errors": []}))
    );
}

#[test]
fn dynamic_reads_issue_fresh_credentials_under_a_renewable_lease() {
    let (vault, token) = with_policy(&[("database/creds/+", &["read"])]);
    vault.put_dynamic_role(
        "database",
        "app",
        DynamicRole {
            default_ttl: Duration::from_secs(600),
            max_ttl: Duration::from_secs(3600),
            renewable: true,
        },
    );
    let a = get(&vault, "database/creds/app", &token).json();
    let b = get(&vault, "database/creds/app", &token).json();
    for v in [&a, &b] {
        let id = v["lease_id"].as_str().unwrap();
        let random = id.strip_prefix("database/creds/app/").expect(id);
        assert_eq!(random.len(), 24, "{id}");
        assert!(random.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_eq!(v["renewable"], true);
        assert_eq!(v["lease_duration"], 600);
        assert!(v.get("mount_type").is_none());
        assert_eq!(
            keys(&v["data"]),
            ["password", "username"].into_iter().collect()
        );
    }
    assert_ne!(a["data"]["password"], b["data"]["password"]);
    assert_ne!(a["lease_id"], b["lease_id"]);
    assert_eq!(vault.lease_count(), 2);
    let lease = &vault.leases()[0];
    assert!(lease.ttl <= Duration::from_secs(600) && lease.ttl > Duration::from_secs(590));
    let resp = get(&vault, "database/creds/other", &token);
    assert_eq!(
        (resp.status, resp.error()),
        (400, "unknown role: other".to_string())
    );
}

#[test]
fn renewal_extends_the_lease_and_is_capped_at_max_ttl_with_a_warning() {
    let (vault, token) = with_policy(&[("database/creds/*", &["read"])]);
    vault.put_dynamic_role(
        "database",
        "app",
        DynamicRole {
            default_ttl: Duration::from_secs(60),
            max_ttl: Duration::from_secs(120),
            renewable: true,
        },
    );
    let id = get(&vault, "database/creds/app", &token).json()["lease_id"]
        .as_str()
        .unwrap()
        .to_string();
    let resp = put(
        &vault,
        "sys/leases/renew",
        &token,
        json!({"lease_id": id, "increment": 30}),
    );
    assert_eq!(resp.status, 200);
    let v = resp.json();
    assert_eq!(v["lease_id"], id.as_str());
    assert_eq!(v["renewable"], true);
    assert_eq!(v["lease_duration"], 30);
    assert_eq!(v["data"], Value::Null);
    assert_eq!(v["warnings"], Value::Null);
    // Asking for an hour gets what is left of the 2 minutes, with Vault's warning.
    let v = put(
        &vault,
        "sys/leases/renew",
        &token,
        json!({"lease_id": id, "increment": "1h"}),
    )
    .json();
    let granted = v["lease_duration"].as_i64().unwrap();
    assert!((118..=120).contains(&granted), "{v}");
    let left = match granted {
        120 => "2m".to_string(),
        n => format!("1m{}s", n - 60),
    };
    assert_eq!(
        v["warnings"],
        json!([format!(
            "TTL of \"1h\" exceeded the effective max_ttl of \"{left}\"; TTL value is capped accordingly"
        )])
    );
    assert_eq!(vault.leases()[0].renewals, 2);
}

#[test]
fn renewal_errors_carry_vaults_messages() {
    let (vault, token) = with_policy(&[("database/creds/*", &["read"])]);
    vault.put_dynamic_role(
        "database",
        "fixed",
        DynamicRole {
            renewable: false,
            ..DynamicRole::default()
        },
    );
    let renew = |body: Value| put(&vault, "sys/leases/renew", &token, body);
    let r = renew(json!({"lease_id": "database/creds/app/nope"}));
    assert_eq!((r.status, r.error()), (400, "lease not found".to_string()));
    let r = renew(json!({}));
    assert_eq!(
        (r.status, r.error()),
        (400, "lease_id must be specified".to_string())
    );
    let fixed = get(&vault, "database/creds/fixed", &token).json();
    assert_eq!(fixed["renewable"], false);
    let r = renew(json!({"lease_id": fixed["lease_id"]}));
    assert_eq!(
        (r.status, r.error()),
        (400, "lease is not renewable".to_string())
    );
    let r = call(
        vault.addr(),
        "GET",
        "/v1/sys/leases/renew",
        &[("X-Vault-Token", &token)],
        "",
    )
    .unwrap();
    // A GET needs `read`, which the default policy does not grant there: denied before routing.
    assert_eq!(
        (r.status, r.error()),
        (403, "1 error occurred:\n\t* permission denied\n\n".into())
    );
    // The id in the URL: the default policy grants the exact path `sys/leases/renew` only.
    let r = call(
        vault.addr(),
        "PUT",
        "/v1/sys/leases/renew/database/creds/app/x",
        &[("X-Vault-Token", &token)],
        "",
    )
    .unwrap();
    assert_eq!(
        (r.status, r.error()),
        (403, "1 error occurred:\n\t* permission denied\n\n".into())
    );
    // A negative increment fails the field validation.
    let r = call(
        vault.addr(),
        "PUT",
        "/v1/sys/leases/renew",
        &[("X-Vault-Token", &token)],
        r#"{"lease_id":"database/creds/app/x","increment":-5}"#,
    )
    .unwrap();
    assert_eq!(
        (r.status, r.error()),
        (400, "Field validation failed: error converting input for field \"increment\": cannot provide negative value '-5'".into())
    );
}

#[test]
fn leases_expire_and_die_with_their_token() {
    let (vault, token) = with_policy(&[("database/creds/*", &["read"])]);
    vault.put_dynamic_role(
        "database",
        "short",
        DynamicRole {
            default_ttl: Duration::from_secs(1),
            max_ttl: Duration::from_secs(1),
            renewable: true,
        },
    );
    vault.put_dynamic_role("database", "long", DynamicRole::default());
    let short = get(&vault, "database/creds/short", &token).json()["lease_id"].clone();
    let long = get(&vault, "database/creds/long", &token).json()["lease_id"].clone();
    assert_eq!(vault.lease_count(), 2);
    sleep(Duration::from_millis(1_200));
    assert_eq!(vault.lease_count(), 1);
    let r = put(
        &vault,
        "sys/leases/renew",
        &token,
        json!({"lease_id": short}),
    );
    assert_eq!(r.error(), "lease not found");
    // Revoking the token revokes its leases.
    assert_eq!(
        with_token(&vault, "POST", "revoke-self", &token, "").status,
        204
    );
    assert_eq!(vault.lease_count(), 0);
    assert_eq!(vault.leases_issued(), 2);
    let _ = long;
}

#[test]
fn revoking_a_lease_needs_update_on_sys_leases_revoke() {
    let (vault, token) = with_policy(&[("database/creds/*", &["read"])]);
    vault.put_dynamic_role("database", "app", DynamicRole::default());
    let id = get(&vault, "database/creds/app", &token).json()["lease_id"].clone();
    let r = put(&vault, "sys/leases/revoke", &token, json!({"lease_id": id}));
    assert_eq!((r.status, r.error()), (403, DENIED.to_string()));
    assert_eq!(vault.lease_count(), 1);

    let (vault, token) = with_policy(&[
        ("database/creds/*", &["read"]),
        ("sys/leases/revoke", &["update"]),
    ]);
    vault.put_dynamic_role("database", "app", DynamicRole::default());
    let id = get(&vault, "database/creds/app", &token).json()["lease_id"].clone();
    let r = put(&vault, "sys/leases/revoke", &token, json!({"lease_id": id}));
    assert_eq!(r.status, 204);
    assert!(r.body.is_empty());
    assert_eq!(vault.lease_count(), 0);
    // Unknown leases revoke fine, as in Vault.
    let r = put(
        &vault,
        "sys/leases/revoke",
        &token,
        json!({"lease_id": "database/creds/app/x"}),
    );
    assert_eq!(r.status, 204);
}
