//! Injected faults, going down and coming back on the same port, TLS and mTLS, shutdown.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;
use vault_emulator::{Emulator, Fault, Options, Role};

fn lookup(vault: &Emulator) -> std::io::Result<Resp> {
    call(
        vault.addr(),
        "GET",
        "/v1/auth/token/lookup-self",
        &[("X-Vault-Token", "hvs.x")],
        "",
    )
}

#[test]
fn json_error_faults() {
    let vault = Emulator::start_default();
    let cases = [
        (Fault::Sealed, 503, "Vault is sealed"),
        (Fault::Internal, 500, "internal error"),
        (
            Fault::PreconditionFailed,
            412,
            "required index state not present",
        ),
        (
            Fault::Status {
                status: 473,
                errors: vec!["performance standby".into()],
            },
            473,
            "performance standby",
        ),
    ];
    for (fault, status, message) in cases {
        vault.set_fault(fault.clone());
        let resp = lookup(&vault).unwrap();
        assert_eq!(
            (resp.status, resp.error().as_str()),
            (status, message),
            "{fault:?}"
        );
    }
    vault.clear_fault();
    assert_eq!(lookup(&vault).unwrap().status, 403);
}

#[test]
fn rate_limit_names_the_path_and_optionally_retry_after() {
    let vault = Emulator::start_default();
    vault.set_fault(Fault::RateLimited { retry_after: None });
    let resp = login(&vault, "kubernetes", "app", "x");
    assert_eq!(resp.status, 429);
    assert_eq!(
        resp.error(),
        "request path \"auth/kubernetes/login\": rate limit quota exceeded"
    );
    assert_eq!(resp.header("retry-after"), None);
    vault.set_fault(Fault::RateLimited {
        retry_after: Some(7),
    });
    let resp = login(&vault, "kubernetes", "app", "x");
    assert_eq!(resp.header("retry-after"), Some("7"));
}

#[test]
fn html_faults() {
    let vault = Emulator::start_default();
    vault.set_fault(Fault::Html { status: 502 });
    let resp = lookup(&vault).unwrap();
    assert_eq!(resp.status, 502);
    assert!(resp
        .header("content-type")
        .unwrap()
        .starts_with("text/html"));
    assert!(String::from_utf8_lossy(&resp.body).contains("502 Bad Gateway"));
    vault.set_fault(Fault::HtmlOk);
    let resp = lookup(&vault).unwrap();
    assert_eq!(resp.status, 200);
    assert!(resp
        .header("content-type")
        .unwrap()
        .starts_with("text/html"));
    assert!(serde_json::from_slice::<serde_json::Value>(&resp.body).is_err());
}

#[test]
fn oversized_streams_eight_mebibytes() {
    let vault = Emulator::start_default();
    vault.set_fault(Fault::Oversized);
    let resp = lookup(&vault).unwrap();
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("content-length"), None);
    assert_eq!(resp.body.len(), 8 * 1024 * 1024);
    assert!(resp.body.starts_with(b"{\"request_id\":"));
    // A client that stops early just hangs up; the emulator keeps serving.
    let mut s = connect(vault.addr()).unwrap();
    send_keep_alive(&mut s, "GET", "/v1/auth/token/lookup-self").unwrap();
    let mut first = [0u8; 1024];
    assert!(s.read(&mut first).unwrap() > 0);
    drop(s);
    vault.clear_fault();
    assert_eq!(lookup(&vault).unwrap().status, 403);
}

#[test]
fn refuse_closes_connections_without_reading() {
    let vault = Emulator::start_default();
    vault.set_fault(Fault::Refuse);
    let err = lookup(&vault).err();
    assert!(err.is_some(), "no response expected");
    assert!(vault.requests().is_empty(), "nothing was read");
    assert_eq!(vault.connections(), 1);
    vault.clear_fault();
    assert_eq!(lookup(&vault).unwrap().status, 403);
}

#[test]
fn reset_reads_the_request_then_hangs_up() {
    let vault = Emulator::start_default();
    vault.set_fault(Fault::Reset);
    let resp = login_attempt(&vault);
    assert!(resp.is_err(), "{resp:?}");
    let reqs = vault.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].json()["role"], "app");
}

fn login_attempt(vault: &Emulator) -> std::io::Result<Resp> {
    call(
        vault.addr(),
        "POST",
        "/v1/auth/kubernetes/login",
        &[("X-Vault-Request", "true")],
        &json!({"role": "app", "jwt": "x"}).to_string(),
    )
}

#[test]
fn slow_answers_normally_after_the_delay() {
    let (vault, token) = logged_in(Role::default());
    vault.set_fault(Fault::Slow(Duration::from_millis(300)));
    let started = Instant::now();
    let resp = with_token(&vault, "GET", "lookup-self", &token, "");
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(resp.status, 200);
}

#[test]
fn redirect_points_at_another_node_with_the_same_path() {
    let standby = Emulator::start_default();
    let active = Emulator::start_default();
    standby.set_fault(Fault::Redirect {
        to: active.url() + "/",
    });
    let resp = call(
        standby.addr(),
        "PUT",
        "/v1/auth/token/renew-self?x=1",
        &[],
        "",
    )
    .unwrap();
    assert_eq!(resp.status, 307);
    assert_eq!(
        resp.header("location"),
        Some(format!("{}/v1/auth/token/renew-self?x=1", active.url()).as_str())
    );
    assert!(resp.body.is_empty());
}

#[test]
fn sealed_health_endpoints_answer_as_openbao() {
    let vault = Emulator::start_default();
    let get = |path: &str, headers: &[(&str, &str)]| {
        call(vault.addr(), "GET", path, headers, "").unwrap()
    };
    let resp = get("/v1/sys/health", &[]);
    assert_eq!(resp.status, 200);
    let v = resp.json();
    assert_eq!(
        (v["sealed"].clone(), v["standby"].clone()),
        (json!(false), json!(false))
    );
    assert!(
        v["cluster_id"].is_string() && v["server_time_utc"].is_i64(),
        "{v}"
    );
    assert_eq!(get("/v1/sys/health?activecode=299", &[]).status, 299);
    let resp = get("/v1/sys/health", &[("X-Vault-Namespace", "admin")]);
    assert_eq!(
        (resp.status, resp.error()),
        (400, "operation unavailable in namespaces".into())
    );
    vault.set_fault(Fault::Sealed);
    let resp = get("/v1/sys/health", &[]);
    assert_eq!(resp.status, 503);
    let v = resp.json();
    assert_eq!(
        (
            v["sealed"].clone(),
            v["standby"].clone(),
            v["replication_dr_mode"].clone()
        ),
        (json!(true), json!(true), json!("unknown"))
    );
    assert!(v.get("cluster_id").is_none(), "{v}");
    assert_eq!(get("/v1/sys/health?sealedcode=200", &[]).status, 200);
    let resp = get("/v1/sys/health?sealedcode=abc", &[]);
    assert_eq!((resp.status, resp.json()), (400, json!({"errors": []})));
    let resp = get("/v1/sys/seal-status", &[]);
    assert_eq!(
        (resp.status, resp.json()["sealed"].clone()),
        (200, json!(true))
    );
    let resp = get("/v1/auth/token/lookup-self", &[]);
    assert_eq!((resp.status, resp.error()), (503, "Vault is sealed".into()));
    vault.clear_fault();
    assert_eq!(
        get("/v1/sys/seal-status", &[]).json()["sealed"],
        json!(false)
    );
}

#[test]
fn counted_faults_clear_themselves() {
    let vault = Emulator::start_default();
    vault.set_fault_for(Fault::Sealed, 2);
    let statuses: Vec<u16> = (0..3).map(|_| lookup(&vault).unwrap().status).collect();
    assert_eq!(statuses, [503, 503, 403]);

    vault.set_fault_for(Fault::Refuse, 1);
    assert!(lookup(&vault).is_err());
    assert_eq!(lookup(&vault).unwrap().status, 403);

    vault.set_fault_for(Fault::Reset, 1);
    assert!(lookup(&vault).is_err());
    assert_eq!(lookup(&vault).unwrap().status, 403);
    assert_eq!(
        vault.requests().len(),
        6,
        "refused connections are not recorded"
    );
    vault.clear_requests();
    assert!(vault.requests().is_empty());
}

#[test]
#[should_panic(expected = "Fault::Down cannot be counted")]
fn down_cannot_be_counted() {
    Emulator::start_default().set_fault_for(Fault::Down, 1);
}

#[test]
fn down_refuses_connections_and_clear_rebinds_the_same_port() {
    let vault = Emulator::start_default();
    let addr = vault.addr();
    // A keep-alive connection opened before the outage dies with it.
    let mut open = connect(addr).unwrap();
    send_keep_alive(&mut open, "GET", "/v1/sys/health").unwrap();
    assert_eq!(read_one(&mut open).unwrap().status, 200);

    vault.set_fault(Fault::Down);
    let err = TcpStream::connect(addr).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused);
    let _ = open.write_all(b"GET /v1/sys/health HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut buf = [0u8; 64];
    assert!(matches!(open.read(&mut buf), Ok(0) | Err(_)));

    vault.clear_fault();
    assert_eq!(vault.addr(), addr);
    assert_eq!(lookup(&vault).unwrap().status, 403);

    // Another fault replaces Down and brings the listener back as well.
    vault.set_fault(Fault::Down);
    assert!(TcpStream::connect(addr).is_err());
    vault.set_fault(Fault::Sealed);
    assert_eq!(lookup(&vault).unwrap().status, 503);
}

#[test]
fn requests_are_recorded_under_faults() {
    let vault = Emulator::start_default();
    vault.set_fault(Fault::Sealed);
    assert_eq!(login_attempt(&vault).unwrap().status, 503);
    let reqs = vault.requests();
    assert_eq!(reqs.len(), 1);
    let r = &reqs[0];
    assert_eq!(
        (r.method.as_str(), r.path.as_str()),
        ("POST", "/v1/auth/kubernetes/login")
    );
    assert_eq!(r.header("x-vault-request"), Some("true"));
    assert!(r.headers.iter().all(|(n, _)| *n == n.to_ascii_lowercase()));
    assert_eq!(r.json(), json!({"role": "app", "jwt": "x"}));
}

#[test]
fn the_emulator_can_be_shared_between_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Emulator>();
    let (vault, token) = logged_in(Role::default());
    let handle = vault.clone_handle();
    let checker = std::thread::spawn(move || handle.is_valid(&token));
    assert!(checker.join().unwrap());
    // The server lives until the last handle is gone.
    let addr = vault.addr();
    let handle = vault.clone_handle();
    drop(vault);
    assert_eq!(lookup_at(addr).unwrap().status, 403);
    drop(handle);
    assert!(TcpStream::connect(addr).is_err());
}

#[test]
fn dropping_the_emulator_stops_the_server() {
    let vault = Emulator::start_default();
    let addr = vault.addr();
    drop(vault);
    assert!(TcpStream::connect(addr).is_err());
}

#[test]
fn tls_with_the_generated_ca() {
    let vault = Emulator::start(Options {
        tls: true,
        require_client_cert: false,
        ..Options::default()
    });
    assert_eq!(
        vault.url(),
        format!("https://localhost:{}", vault.addr().port())
    );
    let ca = vault.ca_pem().unwrap();
    assert!(ca.starts_with("-----BEGIN CERTIFICATE-----"));
    vault.put_role("kubernetes", "app", Role::default());
    let body = json!({"role": "app", "jwt": vault.jwt("default", "app", &[], 60)}).to_string();
    for name in ["localhost", "127.0.0.1", "vault.test"] {
        let resp = call_tls(
            vault.addr(),
            &ca,
            name,
            None,
            "POST",
            "/v1/auth/kubernetes/login",
            &body,
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(resp.status, 200, "{name}");
    }
    assert!(call_tls(vault.addr(), &ca, "other.test", None, "GET", "/", "").is_err());
    // Plain HTTP to a TLS port gets no Vault answer.
    assert!(lookup(&vault).map(|r| r.status != 403).unwrap_or(true));
}

#[test]
fn mtls_requires_a_client_certificate_from_the_ca() {
    let vault = Emulator::start(Options {
        tls: true,
        require_client_cert: true,
        ..Options::default()
    });
    let ca = vault.ca_pem().unwrap();
    let (cert, key) = vault.client_cert_pem().unwrap();
    assert!(key.contains("BEGIN PRIVATE KEY"));
    let path = "/v1/auth/token/lookup-self";
    let resp = call_tls(
        vault.addr(),
        &ca,
        "localhost",
        Some((cert, key)),
        "GET",
        path,
        "",
    )
    .unwrap();
    assert_eq!(resp.status, 403);
    assert!(call_tls(vault.addr(), &ca, "localhost", None, "GET", path, "").is_err());

    let plain = Emulator::start_default();
    assert!(plain.ca_pem().is_none() && plain.client_cert_pem().is_none());
}

#[tokio::test]
async fn the_control_api_works_inside_a_tokio_runtime() {
    let vault = Emulator::start_default();
    vault.set_fault(Fault::Down);
    vault.clear_fault();
    let addr = vault.addr();
    let status = tokio::task::spawn_blocking(move || lookup_at(addr).unwrap().status)
        .await
        .unwrap();
    assert_eq!(status, 403);
    drop(vault);
}

fn lookup_at(addr: std::net::SocketAddr) -> std::io::Result<Resp> {
    call(addr, "GET", "/v1/auth/token/lookup-self", &[], "")
}
