//! The real-server harness itself (`vault_emulator::real`): the fetched `bao` runs a dev server
//! whose kubernetes auth method logs in the JWTs the fake kube-apiserver accepts and refuses
//! the others, its answers reach the raw HTTP client and the CLI, and the throwaway PostgreSQL
//! takes password logins.

use serde_json::{json, Value};
use vault_emulator::real::{Bao, BaoOptions, Postgres};

fn login(bao: &Bao, role: &str, jwt: &str) -> (u16, Value) {
    let body = json!({"role": role, "jwt": jwt}).to_string();
    let (status, answer) = bao.http("POST", "/v1/auth/kubernetes/login", None, &[], Some(&body));
    (
        status,
        serde_json::from_slice(&answer).unwrap_or(Value::Null),
    )
}

#[test]
fn kubernetes_login_goes_through_the_fake_apiserver() {
    let Some(bao) = Bao::start() else { return };
    bao.cli(&[
        "write",
        "auth/kubernetes/role/default",
        "bound_service_account_names=default",
        "bound_service_account_namespaces=default",
        "audience=k3s",
        "token_ttl=60",
        "token_policies=default",
    ]);
    let (status, answer) = login(
        &bao,
        "default",
        &bao.jwt("default", "default", &["k3s"], 600),
    );
    assert_eq!(status, 200, "{answer}");
    let token = answer["auth"]["client_token"].as_str().unwrap().to_string();
    assert!(token.starts_with("s."), "{token}");
    assert_eq!(
        answer["auth"]["metadata"]["service_account_name"],
        "default"
    );
    assert_eq!(answer["auth"]["lease_duration"], 60);
    assert!(bao.token_alive(&token));
    assert_eq!(bao.apiserver().reviews(), 1);
    let (status, _) = bao.http(
        "POST",
        "/v1/auth/token/renew-self",
        Some(&token),
        &[],
        Some("{}"),
    );
    assert_eq!(status, 200);
    // OpenBao's kubernetes auth reviews the login's JWT again on every renewal.
    assert_eq!(bao.apiserver().reviews(), 2);

    // The apiserver is asked, and its answer counts: a JWT for another audience is refused by
    // the role's claim check, a deleted account's JWT by the review.
    let (status, answer) = login(
        &bao,
        "default",
        &bao.jwt("default", "default", &["other"], 600),
    );
    assert_eq!(status, 403, "{answer}");
    bao.apiserver().delete_service_account("default", "default");
    let (status, answer) = login(
        &bao,
        "default",
        &bao.jwt("default", "default", &["k3s"], 600),
    );
    assert_eq!(
        (status, &answer),
        (403, &json!({"errors": ["permission denied"]}))
    );
    let (status, body) = bao.http(
        "POST",
        "/v1/auth/token/renew-self",
        Some(&token),
        &[],
        Some("{}"),
    );
    // So a token whose service account is gone stops renewing (a wrapped 403).
    let body = String::from_utf8_lossy(&body);
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("during renewal: permission denied"), "{body}");

    // revoke-self through the raw client; the token is then dead for the server.
    let (status, _) = bao.http(
        "POST",
        "/v1/auth/token/revoke-self",
        Some(&token),
        &[],
        None,
    );
    assert_eq!(status, 204);
    assert!(!bao.token_alive(&token));
}

#[test]
fn dev_tls_serves_with_its_own_ca_and_seals() {
    let Some(bao) = Bao::start_with(BaoOptions {
        tls: true,
        ..BaoOptions::default()
    }) else {
        return;
    };
    assert!(bao.addr().starts_with("https://"));
    let ca = std::fs::read_to_string(bao.ca_cert().unwrap()).unwrap();
    assert!(ca.contains("BEGIN CERTIFICATE"));
    let (status, _) = bao.http("GET", "/v1/sys/health", None, &[], None);
    assert_eq!(status, 200);
    bao.seal();
    let (status, body) = bao.http("GET", "/v1/sys/health", None, &[], None);
    assert_eq!(status, 503, "{}", String::from_utf8_lossy(&body));
    bao.unseal();
    let (status, _) = bao.http("GET", "/v1/sys/health", None, &[], None);
    assert_eq!(status, 200);
}

#[test]
fn postgres_takes_password_logins() {
    let Some(pg) = Postgres::start() else { return };
    let pw = pg.superuser_password();
    assert_eq!(pg.psql("postgres", &pw, "select 40 + 2").unwrap(), "42");
    let err = pg.psql("postgres", "wrong", "select 1").unwrap_err();
    assert!(err.contains("password authentication failed"), "{err}");
}
