//! The Vault API surface: login, the token endpoints, namespaces, routing.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use common::*;
use serde_json::{json, Value};
use vault_emulator::{Emulator, Flavour, Options, Role, TokenType};

/// OpenBao's answer to an unknown, expired or revoked token (the default flavour).
const BAD_TOKEN: &str = "permission denied";
/// ... to a request without a token on a path that needs one.
const NO_TOKEN: &str = BAD_TOKEN;
/// ... to a valid token on a path its policy does not allow (or that does not exist).
const DENIED: &str = "1 error occurred:\n\t* permission denied\n\n";
/// Vault >= 1.17's answer to an unknown, expired or revoked token (unverified).
const VAULT_BAD_TOKEN: &str = "2 errors occurred:\n\t* permission denied\n\t* invalid token\n\n";

fn keys(v: &Value) -> BTreeSet<&str> {
    v.as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect()
}

fn set<'a>(items: &[&'a str]) -> BTreeSet<&'a str> {
    items.iter().copied().collect()
}

#[test]
fn login_answers_vaults_exact_envelope() {
    let vault = Emulator::start_default();
    vault.put_role("kubernetes", "app", Role::default());
    let jwt = vault.jwt("default", "app", &["vault"], 600);
    let resp = login_with(
        &vault,
        "kubernetes",
        "app",
        &jwt,
        &[("X-Vault-Request", "true")],
    );
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("content-type"), Some("application/json"));
    let v = resp.json();
    assert_eq!(
        keys(&v),
        set(&[
            "request_id",
            "lease_id",
            "renewable",
            "lease_duration",
            "data",
            "wrap_info",
            "warnings",
            "auth"
        ])
    );
    assert_eq!(v["request_id"].as_str().unwrap().len(), 36);
    assert_eq!(v["lease_id"], "");
    assert_eq!(v["renewable"], false);
    assert_eq!(v["lease_duration"], 0);
    assert_eq!(v["data"], Value::Null);
    assert_eq!(v["wrap_info"], Value::Null);
    assert_eq!(v["warnings"], Value::Null);
    let auth = &v["auth"];
    assert_eq!(
        keys(auth),
        set(&[
            "client_token",
            "accessor",
            "policies",
            "token_policies",
            "metadata",
            "lease_duration",
            "renewable",
            "entity_id",
            "token_type",
            "orphan",
            "mfa_requirement",
            "num_uses"
        ])
    );
    let token = auth["client_token"].as_str().unwrap();
    assert!(token.starts_with("s.") && token.len() == 26, "{token}");
    assert_eq!(auth["accessor"].as_str().unwrap().len(), 24);
    assert_eq!(auth["policies"], json!(["default"]));
    assert_eq!(auth["token_policies"], json!(["default"]));
    // `omitempty` in Vault's response struct: absent, not null, when there are none.
    assert!(auth.get("identity_policies").is_none());
    assert_eq!(auth["lease_duration"], 3600);
    assert_eq!(auth["renewable"], true);
    assert_eq!(auth["token_type"], "service");
    assert_eq!(auth["orphan"], true);
    assert_eq!(auth["mfa_requirement"], Value::Null);
    assert_eq!(auth["num_uses"], 0);
    assert_eq!(auth["entity_id"].as_str().unwrap().len(), 36);
    let meta = &auth["metadata"];
    assert_eq!(
        keys(meta),
        set(&[
            "role",
            "service_account_name",
            "service_account_namespace",
            "service_account_secret_name",
            "service_account_uid"
        ])
    );
    assert_eq!(meta["role"], "app");
    assert_eq!(meta["service_account_name"], "app");
    assert_eq!(meta["service_account_namespace"], "default");
    assert_eq!(meta["service_account_secret_name"], "");
    assert_eq!(meta["service_account_uid"].as_str().unwrap().len(), 36);

    let info = vault.lookup(token).expect("live token");
    assert_eq!(info.accessor, auth["accessor"]);
    assert_eq!(
        (info.role.as_str(), info.namespace.as_str()),
        ("app", "default")
    );
    assert_eq!(info.service_account, "app");
    assert!(info.ttl > Duration::from_secs(3598) && info.ttl <= Duration::from_secs(3600));
    assert!(info.renewable && info.token_type == TokenType::Service);
    assert!(vault.is_valid(token));
    assert_eq!(vault.token_count(), 1);
    assert_eq!(
        vault.issued_tokens(),
        vec![(token.to_string(), info.accessor.clone())]
    );

    let reqs = vault.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].method, "POST");
    assert_eq!(reqs[0].path, "/v1/auth/kubernetes/login");
    assert_eq!(reqs[0].header("X-Vault-Request"), Some("true"));
    assert_eq!(reqs[0].json()["role"], "app");
    assert_eq!(reqs[0].json()["jwt"], jwt.as_str());
}

#[test]
fn login_accepts_put_and_nested_mounts() {
    let vault = Emulator::start_default();
    vault.enable_mount("k8s/prod");
    vault.put_role("k8s/prod", "app", Role::default());
    let jwt = vault.jwt("default", "app", &[], 600);
    let body = json!({"role": "app", "jwt": jwt}).to_string();
    let resp = call(vault.addr(), "PUT", "/v1/auth/k8s/prod/login", &[], &body).unwrap();
    assert_eq!(resp.status, 200);
    let token = resp.json()["auth"]["client_token"]
        .as_str()
        .unwrap()
        .to_string();
    let lookup = with_token(&vault, "GET", "lookup-self", &token, "").json();
    assert_eq!(lookup["data"]["path"], "auth/k8s/prod/login");
    assert_eq!(lookup["data"]["display_name"], "k8s-prod-default-app");
}

#[test]
fn login_errors_come_in_vaults_order() {
    let vault = Emulator::start_default();
    vault.put_role("kubernetes", "app", Role::default());
    let jwt = vault.jwt("default", "app", &[], 600);
    let post =
        |path: &str, body: Value| call(vault.addr(), "POST", path, &[], &body.to_string()).unwrap();
    let login = "/v1/auth/kubernetes/login";
    let cases = [
        (json!({}), 400, "missing role".to_string()),
        (json!({"jwt": jwt}), 400, "missing role".into()),
        (json!({"role": "app"}), 400, "missing jwt".into()),
        (json!({"role": "app", "jwt": ""}), 400, "missing jwt".into()),
        (
            json!({"role": "nope", "jwt": "x"}),
            400,
            "invalid role name \"nope\"".into(),
        ),
        (
            json!({"role": "app", "jwt": "not-a-jwt"}),
            403,
            "permission denied".into(),
        ),
    ];
    for (body, status, message) in cases {
        let resp = post(login, body.clone());
        assert_eq!((resp.status, resp.error()), (status, message), "{body}");
    }
    // A mount that does not exist is denied before the body is even looked at.
    let resp = post("/v1/auth/missing/login", json!({}));
    assert_eq!(
        (resp.status, resp.error()),
        (403, "permission denied".into())
    );
    let resp = call(vault.addr(), "POST", login, &[], "{not json").unwrap();
    assert_eq!(resp.status, 400);
    assert!(resp.error().starts_with("failed to decode JSON input: "));
}

#[test]
fn login_checks_audience_time_names_namespaces_and_signature() {
    let vault = Emulator::start_default();
    vault.put_role(
        "kubernetes",
        "app",
        Role {
            audience: Some("vault".into()),
            bound_service_account_names: vec!["web-*".into()],
            bound_service_account_namespaces: vec!["*-prod".into()],
            ..Role::default()
        },
    );
    let check = |jwt: &str| {
        let resp = login(&vault, "kubernetes", "app", jwt);
        (
            resp.status,
            if resp.status == 200 {
                String::new()
            } else {
                resp.error()
            },
        )
    };
    assert_eq!(
        check(&vault.jwt("team-prod", "web-api", &["vault"], 600)).0,
        200
    );
    assert_eq!(
        check(&vault.jwt("team-prod", "web-api", &["k3s"], 600)),
        (
            403,
            "invalid audience (aud) claim: audience claim does not match any expected audience"
                .into()
        )
    );
    assert_eq!(
        check(&vault.jwt("team-prod", "web-api", &["vault"], -120)),
        (
            403,
            "invalid expiration time (exp) claim: token is expired".into()
        )
    );
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let mut claims = claims_of(&vault.jwt("team-prod", "web-api", &["vault"], 600));
    claims["nbf"] = json!(now + 300);
    assert_eq!(
        check(&vault.sign_claims(&claims)),
        (
            403,
            "invalid not before (nbf) claim: token not yet valid".into()
        )
    );
    claims["nbf"] = json!(now);
    claims["iat"] = json!(now + 300);
    assert_eq!(
        check(&vault.sign_claims(&claims)),
        (
            403,
            "invalid issued at (iat) claim: token issued in the future".into()
        )
    );
    assert_eq!(
        check(&vault.jwt("team-prod", "db", &["vault"], 600)),
        (403, "service account name not authorized".into())
    );
    assert_eq!(
        check(&vault.jwt("team-dev", "web-api", &["vault"], 600)),
        (403, "namespace not authorized".into())
    );
    // Tampered: the claims of one token with the signature of another.
    let good = vault.jwt("team-prod", "web-api", &["vault"], 600);
    let evil = vault.jwt("team-prod", "web-admin", &["vault"], 600);
    let (evil_head, _) = evil.rsplit_once('.').unwrap();
    let forged = format!("{evil_head}.{}", good.rsplit_once('.').unwrap().1);
    assert_eq!(check(&forged), (403, "permission denied".into()));
    assert_eq!(vault.token_count(), 1);
}

fn claims_of(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

#[test]
fn jwts_look_like_projected_service_account_tokens() {
    let vault = Emulator::start_default();
    let jwt = vault.jwt("apps", "web", &["vault", "api"], 600);
    let header: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(jwt.split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(header, json!({"alg": "RS256", "kid": "test"}));
    let c = claims_of(&jwt);
    assert_eq!(c["iss"], "https://kubernetes.default.svc.cluster.local");
    assert_eq!(c["sub"], "system:serviceaccount:apps:web");
    assert_eq!(c["aud"], json!(["vault", "api"]));
    assert_eq!(c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(), 600);
    assert_eq!(c["nbf"], c["iat"]);
    assert_eq!(c["kubernetes.io"]["namespace"], "apps");
    assert_eq!(c["kubernetes.io"]["serviceaccount"]["name"], "web");
    assert!(c["kubernetes.io"]["serviceaccount"]["uid"].is_string());
    assert!(c["kubernetes.io"]["pod"]["name"].is_string());
    assert!(c["kubernetes.io"]["pod"]["uid"].is_string());
}

#[test]
fn wrap_ttl_answers_only_wrap_info() {
    let vault = Emulator::start_default();
    vault.put_role("kubernetes", "app", Role::default());
    let jwt = vault.jwt("default", "app", &[], 600);
    let v = login_with(
        &vault,
        "kubernetes",
        "app",
        &jwt,
        &[("X-Vault-Wrap-TTL", "300")],
    )
    .json();
    assert_eq!(v["auth"], Value::Null);
    assert_eq!(v["data"], Value::Null);
    let w = &v["wrap_info"];
    assert_eq!(
        keys(w),
        set(&[
            "token",
            "accessor",
            "ttl",
            "creation_time",
            "creation_path",
            "wrapped_accessor"
        ])
    );
    assert_eq!(w["ttl"], 300);
    assert_eq!(w["creation_path"], "auth/kubernetes/login");
    assert_eq!(vault.token_count(), 1);
    // Both the wrapped login token and the wrapping token are secrets handed out.
    let issued = vault.issued_tokens();
    assert_eq!(issued.len(), 2);
    assert_eq!(issued[0].1, w["wrapped_accessor"].as_str().unwrap());
    assert_eq!(
        issued[1],
        (
            w["token"].as_str().unwrap().to_string(),
            w["accessor"].as_str().unwrap().to_string()
        )
    );
}

#[test]
fn renew_self_follows_calculate_ttl() {
    let (vault, token) = logged_in(Role {
        token_ttl: Duration::from_secs(5),
        token_max_ttl: Duration::from_secs(100),
        ..Role::default()
    });
    let renew = |body: &str| {
        let resp = with_token(&vault, "POST", "renew-self", &token, body);
        assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
        resp.json()
    };
    let v = renew(r#"{"increment": 30}"#);
    assert_eq!(v["auth"]["lease_duration"], 30);
    assert_eq!(v["warnings"], Value::Null);
    assert_eq!(v["data"], Value::Null);
    assert_eq!(v["auth"]["client_token"], token.as_str());
    assert_eq!(
        renew(r#"{"increment": "1m"}"#)["auth"]["lease_duration"],
        60
    );
    // No increment: the role's token_ttl; a small increment can shorten the token.
    assert_eq!(renew("")["auth"]["lease_duration"], 5);
    assert!(vault.lookup(&token).unwrap().ttl <= Duration::from_secs(5));
    // Past the time left before max TTL: capped, with Vault's warning.
    let v = renew(r#"{"increment": "1h"}"#);
    let ttl = v["auth"]["lease_duration"].as_i64().unwrap();
    assert!((98..=100).contains(&ttl), "{ttl}");
    let warning = v["warnings"][0].as_str().unwrap();
    assert_eq!(
        warning,
        format!(
            "TTL of \"1h\" exceeded the effective max_ttl of \"1m{}s\"; TTL value is capped accordingly",
            ttl - 60
        )
    );
    let info = vault.lookup(&token).unwrap();
    assert_eq!(info.renewals, 4);
    assert!(info.max_expire_time.is_some());
    // The same via PUT.
    let resp = with_token(&vault, "PUT", "renew-self", &token, r#"{"increment": 10}"#);
    assert_eq!(resp.json()["auth"]["lease_duration"], 10);
}

/// In virtual time: the server runs on the test's paused clock (`Emulator::start_in_runtime`).
#[tokio::test(start_paused = true)]
async fn capped_login_warns_and_short_tokens_expire() {
    let vault = Emulator::start_in_runtime(Options::default());
    vault.put_role(
        "kubernetes",
        "app",
        // OpenBao refuses token_ttl > token_max_ttl; an explicit max TTL caps the same way.
        Role {
            token_ttl: Duration::from_secs(3600),
            token_explicit_max_ttl: Some(Duration::from_secs(1)),
            ..Role::default()
        },
    );
    let body = json!({"role": "app", "jwt": vault.jwt("default", "app", &[], 60)}).to_string();
    let v = call_async(
        vault.addr(),
        "POST",
        "/v1/auth/kubernetes/login",
        &[],
        &body,
    )
    .await
    .unwrap()
    .json();
    assert_eq!(v["auth"]["lease_duration"], 1);
    assert_eq!(
        v["warnings"],
        json!(["TTL of \"1h\" exceeded the effective max_ttl of \"1s\"; TTL value is capped accordingly"])
    );
    let token = v["auth"]["client_token"].as_str().unwrap().to_string();
    assert!(vault.is_valid(&token));
    tokio::time::sleep(Duration::from_millis(999)).await;
    assert!(vault.is_valid(&token));
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert!(!vault.is_valid(&token));
    assert!(vault.lookup(&token).is_none());
    let resp = call_async(
        vault.addr(),
        "POST",
        "/v1/auth/token/renew-self",
        &[("X-Vault-Token", &token)],
        "",
    )
    .await
    .unwrap();
    assert_eq!((resp.status, resp.error()), (403, BAD_TOKEN.into()));
}

#[test]
fn periodic_tokens_renew_to_the_period() {
    let (vault, token) = logged_in(Role {
        token_period: Some(Duration::from_secs(7)),
        token_ttl: Duration::ZERO,
        token_max_ttl: Duration::from_secs(2),
        ..Role::default()
    });
    // token_max_ttl caps the period itself (with a warning) but sets no deadline.
    let v = with_token(
        &vault,
        "POST",
        "renew-self",
        &token,
        r#"{"increment": 100}"#,
    )
    .json();
    assert_eq!(v["auth"]["lease_duration"], 2);
    assert!(v["warnings"][0]
        .as_str()
        .unwrap()
        .starts_with("period of \"7s\""));
    assert_eq!(vault.lookup(&token).unwrap().max_expire_time, None);
    vault.put_role(
        "kubernetes",
        "app",
        Role {
            token_period: Some(Duration::from_secs(7)),
            ..Role::default()
        },
    );
    let v = with_token(
        &vault,
        "POST",
        "renew-self",
        &token,
        r#"{"increment": 100}"#,
    )
    .json();
    assert_eq!(v["auth"]["lease_duration"], 7);
    assert_eq!(v["warnings"], Value::Null);
    let data = with_token(&vault, "GET", "lookup-self", &token, "").json()["data"].clone();
    assert_eq!(data["period"], 7);
}

#[test]
fn renewal_refusals() {
    let (vault, token) = logged_in(Role {
        renewable: false,
        ..Role::default()
    });
    let resp = with_token(&vault, "POST", "renew-self", &token, "");
    assert_eq!(
        (resp.status, resp.error()),
        (400, "lease is not renewable".into())
    );

    let (vault, token) = logged_in(Role::default());
    vault.delete_role("kubernetes", "app");
    let resp = with_token(&vault, "POST", "renew-self", &token, "");
    assert_eq!(
        (resp.status, resp.error()),
        (
            500,
            "1 error occurred:\n\t* failed to renew entry: role app does not exist during renewal\n\n".into()
        )
    );
    for (token, error) in [("", NO_TOKEN), ("s.unknown", BAD_TOKEN)] {
        let resp = with_token(&vault, "POST", "renew-self", token, "");
        assert_eq!((resp.status, resp.error()), (403, error.into()));
    }
    let resp = call(vault.addr(), "POST", "/v1/auth/token/renew-self", &[], "").unwrap();
    assert_eq!((resp.status, resp.error()), (403, NO_TOKEN.into()));
    // A negative increment is refused by the field validation.
    let (vault, token) = logged_in(Role::default());
    let resp = with_token(&vault, "POST", "renew-self", &token, r#"{"increment":-5}"#);
    assert_eq!(
        (resp.status, resp.error()),
        (400, "Field validation failed: error converting input for field \"increment\": cannot provide negative value '-5'".into())
    );
    // Vault >= 1.17 (unverified): the multi-error forms.
    vault.set_flavour(Flavour::Vault);
    for (token, error) in [("", DENIED), ("hvs.unknown", VAULT_BAD_TOKEN)] {
        let resp = with_token(&vault, "POST", "renew-self", token, "");
        assert_eq!((resp.status, resp.error()), (403, error.into()));
    }
}

#[test]
fn batch_tokens() {
    let (vault, token) = logged_in(Role {
        token_type: TokenType::Batch,
        ..Role::default()
    });
    assert!(token.starts_with("b.") && token.len() > 300, "{token}");
    let info = vault.lookup(&token).unwrap();
    assert_eq!(
        (info.token_type, info.renewable, info.accessor.as_str()),
        (TokenType::Batch, false, "")
    );
    let resp = with_token(&vault, "POST", "renew-self", &token, "");
    assert_eq!(
        (resp.status, resp.error()),
        (400, "batch tokens cannot be renewed".into())
    );
    let resp = with_token(&vault, "POST", "revoke-self", &token, "");
    assert_eq!(
        (resp.status, resp.error()),
        (400, "batch tokens cannot be revoked".into())
    );
    let data = with_token(&vault, "GET", "lookup-self", &token, "").json()["data"].clone();
    assert_eq!(
        (data["type"].as_str(), data["renewable"].as_bool()),
        (Some("batch"), Some(false))
    );
    // OpenBao keeps a batch token's times in whole seconds.
    for field in ["issue_time", "expire_time"] {
        let t = data[field].as_str().unwrap();
        assert!(t.ends_with(":00Z") || !t.contains('.'), "{field}: {t}");
    }
    let info = vault.lookup(&token).unwrap();
    let since_epoch = info
        .expire_time
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap();
    assert_eq!(since_epoch.subsec_nanos(), 0);
    // Vault's batch tokens (unverified).
    vault.set_flavour(Flavour::Vault);
    let jwt = vault.jwt("default", "app", &[], 600);
    let v = login(&vault, "kubernetes", "app", &jwt).json();
    let token = v["auth"]["client_token"].as_str().unwrap();
    assert!(token.starts_with("hvb."), "{token}");
}

#[test]
fn lookup_self_reports_the_token() {
    let (vault, token) = logged_in(Role::default());
    let v = with_token(&vault, "GET", "lookup-self", &token, "").json();
    assert!(
        v.get("mount_type").is_none(),
        "OpenBao sends no mount_type: {v}"
    );
    assert_eq!(v["auth"], Value::Null);
    let d = &v["data"];
    assert_eq!(
        keys(d),
        set(&[
            "accessor",
            "creation_time",
            "creation_ttl",
            "display_name",
            "entity_id",
            "expire_time",
            "explicit_max_ttl",
            "id",
            "issue_time",
            "meta",
            "num_uses",
            "orphan",
            "path",
            "policies",
            "renewable",
            "ttl",
            "type"
        ])
    );
    assert_eq!(d["id"], token.as_str());
    assert_eq!(d["display_name"], "kubernetes-default-app");
    assert_eq!(d["path"], "auth/kubernetes/login");
    assert_eq!(d["creation_ttl"], 3600);
    assert!((3598..=3600).contains(&d["ttl"].as_i64().unwrap()));
    assert_eq!(d["type"], "service");
    assert_eq!(d["meta"]["role"], "app");
    let expire = d["expire_time"].as_str().unwrap();
    assert!(
        expire.len() >= 20 && expire.ends_with('Z') && &expire[10..11] == "T",
        "{expire}"
    );
    assert!(d["creation_time"].as_i64().unwrap() > 1_700_000_000);

    with_token(&vault, "POST", "renew-self", &token, "");
    let d = with_token(&vault, "GET", "lookup-self", &token, "").json()["data"].clone();
    assert!(d["last_renewal_time"].as_i64().unwrap() >= d["creation_time"].as_i64().unwrap());

    // A wrong method is denied by the policy check before routing.
    let resp = with_token(&vault, "POST", "lookup-self", &token, "");
    assert_eq!((resp.status, resp.error()), (403, DENIED.into()));
}

#[test]
fn revoke_self_and_control_revocation() {
    let (vault, token) = logged_in(Role::default());
    let resp = with_token(&vault, "POST", "revoke-self", &token, "");
    assert_eq!(resp.status, 204);
    assert!(resp.body.is_empty());
    assert!(!vault.is_valid(&token));
    let resp = with_token(&vault, "GET", "lookup-self", &token, "");
    assert_eq!((resp.status, resp.error()), (403, BAD_TOKEN.into()));
    let resp = with_token(&vault, "PUT", "revoke-self", &token, "");
    assert_eq!(resp.status, 403);

    let (vault, token) = logged_in(Role::default());
    vault.revoke(&token);
    assert!(!vault.is_valid(&token));
    let (vault, token) = logged_in(Role::default());
    vault.revoke_all();
    assert!(vault.lookup(&token).is_none());
    assert_eq!(
        vault.token_count(),
        1,
        "revoked tokens still count as issued"
    );
}

#[test]
fn unknown_paths_and_methods() {
    let (vault, token) = logged_in(Role::default());
    // Without a token: refused before routing, bare; unauthenticated routes answer themselves.
    for (method, path, status, errors) in [
        ("GET", "/v1/sys/nope", 403, json!([NO_TOKEN])),
        ("POST", "/v1/auth/kubernetes/role/x", 403, json!([NO_TOKEN])),
        (
            "DELETE",
            "/v1/auth/token/renew-self",
            403,
            json!([NO_TOKEN]),
        ),
        ("GET", "/v1/auth/missing/login", 403, json!([NO_TOKEN])),
        ("GET", "/", 404, json!([])),
        (
            "GET",
            "/v1/auth/kubernetes/login",
            405,
            json!(["unsupported operation"]),
        ),
        ("POST", "/v1/sys/health", 405, json!([])),
    ] {
        let resp = call(vault.addr(), method, path, &[], "").unwrap();
        assert_eq!(resp.status, status, "{method} {path}");
        assert_eq!(resp.json(), json!({ "errors": errors }), "{method} {path}");
        assert_eq!(resp.header("content-type"), Some("application/json"));
    }
    // With the default policy: the ACL denies before routing, wrapped, never 404 or 405.
    for (method, path) in [
        ("GET", "/v1/sys/nope"),
        ("POST", "/v1/auth/kubernetes/role/x"),
        ("DELETE", "/v1/auth/token/renew-self"),
        ("GET", "/v1/auth/missing/login"),
        ("GET", "/v1/sys/leases/renew"),
    ] {
        let resp = call(vault.addr(), method, path, &[("X-Vault-Token", &token)], "").unwrap();
        assert_eq!(
            (resp.status, resp.error()),
            (403, DENIED.into()),
            "{method} {path}"
        );
    }
    // The root policy reaches the router: 404 for no route, 405 for a method the route lacks,
    // both as OpenBao words them. (A glob policy would not do: the default policy's exact
    // rules for the token endpoints win over any glob.)
    vault.put_role(
        "kubernetes",
        "all",
        Role {
            token_policies: vec!["root".into()],
            ..Role::default()
        },
    );
    let jwt = vault.jwt("default", "app", &[], 600);
    let all = login(&vault, "kubernetes", "all", &jwt).json()["auth"]["client_token"]
        .as_str()
        .unwrap()
        .to_string();
    let resp = call(
        vault.addr(),
        "GET",
        "/v1/nonexist/x",
        &[("X-Vault-Token", &all)],
        "",
    )
    .unwrap();
    assert_eq!(
        (resp.status, resp.error()),
        (
            404,
            "no handler for route \"nonexist/x\". route entry not found.".into()
        )
    );
    for (method, path) in [
        ("DELETE", "/v1/auth/token/lookup-self"),
        ("GET", "/v1/auth/token/renew-self"),
        ("GET", "/v1/sys/leases/renew"),
    ] {
        let resp = call(vault.addr(), method, path, &[("X-Vault-Token", &all)], "").unwrap();
        assert_eq!(
            (resp.status, resp.error()),
            (
                405,
                "1 error occurred:\n\t* unsupported operation\n\n".into()
            ),
            "{method} {path}"
        );
    }
    // Vault >= 1.17 (unverified): a missing token's denial is wrapped too, and its answers
    // carry mount_type.
    vault.set_flavour(Flavour::Vault);
    let v = login(&vault, "kubernetes", "all", &jwt).json();
    assert_eq!(v["mount_type"], "kubernetes");
    let resp = call(vault.addr(), "GET", "/v1/sys/nope", &[], "").unwrap();
    assert_eq!(resp.status, 403);
    assert_eq!(resp.json(), json!({ "errors": [DENIED] }));
}

#[test]
fn namespaces_keep_their_own_mounts_and_tokens() {
    let vault = Emulator::start_default();
    vault.put_role_in("team-a", "kubernetes", "app", Role::default());
    let jwt = vault.jwt("default", "app", &[], 600);
    let ns = [("X-Vault-Namespace", "team-a")];
    let resp = login_with(&vault, "kubernetes", "app", &jwt, &ns);
    assert_eq!(resp.status, 200);
    let token = resp.json()["auth"]["client_token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        token.split('.').count(),
        3,
        "namespaced tokens carry the namespace id: {token}"
    );
    // The root namespace has the default mount but not this role.
    let resp = login(&vault, "kubernetes", "app", &jwt);
    assert_eq!(
        (resp.status, resp.error()),
        (400, "invalid role name \"app\"".into())
    );
    // OpenBao looks a token up in its own namespace: the token endpoints answer without the
    // header (Vault, unverified, denies a token of another namespace there).
    let resp = with_token(&vault, "GET", "lookup-self", &token, "");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.json()["data"]["namespace_path"], "team-a/");
    let entity = resp.json()["data"]["entity_id"]
        .as_str()
        .unwrap()
        .to_string();
    let nsid = token.rsplit('.').next().unwrap();
    assert_eq!(nsid.len(), 6, "{token}");
    assert!(entity.ends_with(&format!(".{nsid}")), "{entity}");
    vault.set_flavour(Flavour::Vault);
    let resp = with_token(&vault, "GET", "lookup-self", &token, "");
    assert_eq!((resp.status, resp.error()), (403, DENIED.into()));
    vault.set_flavour(Flavour::OpenBao);
    // A namespace that does not exist: OpenBao's 404.
    let resp = call(
        vault.addr(),
        "GET",
        "/v1/auth/token/lookup-self",
        &[("X-Vault-Token", &token), ("X-Vault-Namespace", "nope")],
        "",
    )
    .unwrap();
    assert_eq!(
        (resp.status, resp.error()),
        (404, "namespace not found".into())
    );
    let resp = login_with(
        &vault,
        "kubernetes",
        "app",
        &jwt,
        &[("X-Vault-Namespace", "nope")],
    );
    assert_eq!(
        (resp.status, resp.error()),
        (404, "namespace not found".into())
    );
    let resp = call(
        vault.addr(),
        "GET",
        "/v1/auth/token/lookup-self",
        &[("X-Vault-Token", &token), ("X-Vault-Namespace", "team-a/")],
        "",
    )
    .unwrap();
    assert_eq!(resp.status, 200);
    assert_eq!(resp.json()["data"]["namespace_path"], "team-a/");
    // The namespace may also prefix the path, alone or below the header's namespace.
    let body = json!({"role": "app", "jwt": jwt}).to_string();
    let resp = call(
        vault.addr(),
        "POST",
        "/v1/team-a/auth/kubernetes/login",
        &[],
        &body,
    )
    .unwrap();
    assert_eq!(resp.status, 200);
    vault.put_role_in("team-a/child", "kubernetes", "app", Role::default());
    let resp = call(
        vault.addr(),
        "POST",
        "/v1/child/auth/kubernetes/login",
        &[("X-Vault-Namespace", "team-a")],
        &body,
    )
    .unwrap();
    assert_eq!(resp.status, 200);
}

#[test]
fn a_required_namespace_hides_the_root_configuration() {
    let vault = Emulator::start_default();
    vault.put_role("kubernetes", "app", Role::default());
    vault.set_namespace_required(Some("ns1"));
    let jwt = vault.jwt("default", "app", &[], 600);
    let resp = login(&vault, "kubernetes", "app", &jwt);
    assert_eq!(
        (resp.status, resp.error()),
        (403, "permission denied".into())
    );
    let resp = login_with(
        &vault,
        "kubernetes",
        "app",
        &jwt,
        &[("X-Vault-Namespace", "ns1")],
    );
    assert_eq!(resp.status, 200);
    // Configuration made afterwards lands in the required namespace too.
    vault.put_role("kubernetes", "other", Role::default());
    let resp = login_with(
        &vault,
        "kubernetes",
        "other",
        &jwt,
        &[("X-Vault-Namespace", "ns1")],
    );
    assert_eq!(resp.status, 200);
    vault.set_namespace_required(None);
    assert_eq!(login(&vault, "kubernetes", "app", &jwt).status, 200);
}

#[test]
fn a_failing_token_review_is_a_bare_permission_denied_after_the_claim_checks() {
    let vault = Emulator::start_default();
    vault.put_role(
        "kubernetes",
        "default",
        Role {
            bound_service_account_names: vec!["default".into()],
            bound_service_account_namespaces: vec!["default".into()],
            audience: Some("k3s".into()),
            ..Role::default()
        },
    );
    let good = vault.jwt("default", "default", &["k3s"], 600);
    vault.set_token_review_failing("kubernetes", true);
    let resp = login(&vault, "kubernetes", "default", &good);
    assert_eq!(
        (resp.status, resp.error()),
        (403, "permission denied".into())
    );
    assert_eq!(vault.token_count(), 0);
    // Vault reviews the token only after its own claim checks: those keep their messages.
    let wrong_aud = vault.jwt("default", "default", &["vault"], 600);
    assert!(login(&vault, "kubernetes", "default", &wrong_aud)
        .error()
        .contains("invalid audience"));
    let wrong_sa = vault.jwt("default", "other", &["k3s"], 600);
    assert_eq!(
        login(&vault, "kubernetes", "default", &wrong_sa).error(),
        "service account name not authorized"
    );
    // Another mount reviews with its own configuration.
    vault.put_role("other", "default", Role::default());
    assert_eq!(login(&vault, "other", "default", &good).status, 200);
    // Fixed reviewer setup: the same JWT logs in.
    vault.set_token_review_failing("/kubernetes/", false);
    let resp = login(&vault, "kubernetes", "default", &good);
    assert_eq!(resp.status, 200);
    let meta = &resp.json()["auth"]["metadata"];
    assert_eq!(meta["role"], "default");
    assert_eq!(meta["service_account_name"], "default");
    assert_eq!(meta["service_account_namespace"], "default");
}
