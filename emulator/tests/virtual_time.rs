//! `Emulator::start_in_runtime`: the server runs on the test's own runtime with a clock that
//! follows tokio's, so under a paused clock TTLs, expiry, JWT checks, lookup-self and the request
//! log all move with the test's virtual time; the control API works from inside the test.

mod common;

use std::io::ErrorKind;
use std::time::{Duration, SystemTime};

use common::*;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::sleep;
use vault_emulator::{Emulator, Fault, Options, Role};

const HOUR: Duration = Duration::from_secs(3600);

async fn post(vault: &Emulator, path: &str, token: &str, body: Value) -> Resp {
    let headers: Vec<(&str, &str)> = if token.is_empty() {
        Vec::new()
    } else {
        vec![("X-Vault-Token", token)]
    };
    call_async(vault.addr(), "POST", path, &headers, &body.to_string())
        .await
        .expect("answered")
}

async fn lookup_self(vault: &Emulator, token: &str) -> Resp {
    call_async(
        vault.addr(),
        "GET",
        "/v1/auth/token/lookup-self",
        &[("X-Vault-Token", token)],
        "",
    )
    .await
    .expect("answered")
}

/// An in-runtime emulator with role `app` (TTL 1 h, max TTL 24 h) and a login through it.
async fn logged_in() -> (Emulator, String) {
    let vault = Emulator::start_in_runtime(Options::default());
    vault.put_role(
        "kubernetes",
        "app",
        Role {
            token_ttl: HOUR,
            token_max_ttl: 24 * HOUR,
            ..Role::default()
        },
    );
    let jwt = vault.jwt("default", "app", &[], 7 * 24 * 3600);
    let resp = post(
        &vault,
        "/v1/auth/kubernetes/login",
        "",
        json!({"role": "app", "jwt": jwt}),
    )
    .await;
    assert_eq!(resp.status, 200, "{:?}", resp.json());
    let token = resp.json()["auth"]["client_token"]
        .as_str()
        .unwrap()
        .to_string();
    (vault, token)
}

fn secs(d: Duration) -> u64 {
    d.as_secs()
}

#[tokio::test(start_paused = true)]
async fn tokens_live_and_die_in_virtual_time() {
    let (vault, token) = logged_in().await;
    let issued = vault.now();
    assert_eq!(secs(vault.lookup(&token).unwrap().ttl), 3600);

    // 40 virtual minutes later: 20 left, by the control API and by lookup-self.
    sleep(40 * Duration::from_secs(60)).await;
    assert_eq!(
        vault.now().duration_since(issued).unwrap(),
        40 * 60 * Duration::from_secs(1)
    );
    assert_eq!(secs(vault.lookup(&token).unwrap().ttl), 1200);
    // lookup-self rounds now to the second first, like Vault: 1199 or 1200 by the fraction.
    let looked = lookup_self(&vault, &token).await.json();
    let ttl = looked["data"]["ttl"].as_u64().unwrap();
    assert!((1199..=1200).contains(&ttl), "{looked}");

    // A renewal counts from the virtual now.
    let renewed = post(&vault, "/v1/auth/token/renew-self", &token, json!({})).await;
    assert_eq!(renewed.json()["auth"]["lease_duration"], 3600);
    let info = vault.lookup(&token).unwrap();
    assert_eq!(info.expire_time, vault.now() + HOUR);
    assert_eq!(info.renewals, 1);
    // The max TTL: login (truncated to the second) + 24 h.
    let max = info.max_expire_time.unwrap();
    let login_second = SystemTime::UNIX_EPOCH
        + Duration::from_secs(
            issued
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_secs(),
        );
    assert_eq!(max, login_second + 24 * HOUR);

    // Past its expiry the token is gone, for the control API and over HTTP.
    sleep(HOUR).await;
    assert!(!vault.is_valid(&token));
    assert_eq!(lookup_self(&vault, &token).await.status, 403);
}

#[tokio::test(start_paused = true)]
async fn the_request_log_records_virtual_times() {
    let (vault, token) = logged_in().await;
    sleep(5 * HOUR).await;
    lookup_self(&vault, &token).await;
    let reqs = vault.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[1].at.duration_since(reqs[0].at).unwrap(), 5 * HOUR);
}

#[tokio::test(start_paused = true)]
async fn jwt_times_are_checked_against_virtual_time() {
    let vault = Emulator::start_in_runtime(Options::default());
    vault.put_role("kubernetes", "app", Role::default());
    let jwt = vault.jwt("default", "app", &[], 600);
    let login = |jwt: String| {
        let vault = vault.clone_handle();
        async move {
            post(
                &vault,
                "/v1/auth/kubernetes/login",
                "",
                json!({"role": "app", "jwt": jwt}),
            )
            .await
        }
    };
    assert_eq!(login(jwt.clone()).await.status, 200);
    // Expired by the virtual clock, beyond Vault's 60 s leeway.
    sleep(Duration::from_secs(600 + 61)).await;
    let resp = login(jwt).await;
    assert_eq!(resp.status, 403);
    assert!(
        resp.json().to_string().contains("expired"),
        "{:?}",
        resp.json()
    );
    // A JWT made now is valid again: `jwt()` reads the same clock.
    assert_eq!(
        login(vault.jwt("default", "app", &[], 600)).await.status,
        200
    );
}

#[tokio::test(start_paused = true)]
async fn a_slow_answer_takes_virtual_time_only() {
    let (vault, token) = logged_in().await;
    vault.set_fault_for(Fault::Slow(Duration::from_secs(30)), 1);
    let before = tokio::time::Instant::now();
    let resp = lookup_self(&vault, &token).await;
    assert_eq!(resp.status, 200);
    assert_eq!(before.elapsed(), Duration::from_secs(30));
    // The token aged by the same 30 s (lookup-self rounds now to the second).
    let ttl = resp.json()["data"]["ttl"].as_u64().unwrap();
    assert!((3569..=3570).contains(&ttl), "{ttl}");
    assert_eq!(secs(vault.lookup(&token).unwrap().ttl), 3570);
}

#[tokio::test(start_paused = true)]
async fn down_and_up_work_from_inside_the_test() {
    let (vault, token) = logged_in().await;
    let addr = vault.addr();
    // A keep-alive connection opened before the outage dies with it.
    let mut open = tokio::net::TcpStream::connect(addr).await.unwrap();
    let keep_alive = "GET /v1/sys/health HTTP/1.1\r\nHost: x\r\n\r\n";
    open.write_all(keep_alive.as_bytes()).await.unwrap();
    let mut buf = [0u8; 4096];
    let n = open.read(&mut buf).await.unwrap();
    // sys/health needs no token.
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));

    vault.set_fault(Fault::Down);
    let err = tokio::net::TcpStream::connect(addr).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused);
    let _ = open.write_all(keep_alive.as_bytes()).await;
    assert!(matches!(open.read(&mut buf).await, Ok(0) | Err(_)));

    vault.clear_fault();
    assert_eq!(vault.addr(), addr);
    assert_eq!(lookup_self(&vault, &token).await.status, 200);

    // Another fault replaces Down and brings the listener back as well.
    vault.set_fault(Fault::Down);
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    vault.set_fault(Fault::Sealed);
    assert_eq!(lookup_self(&vault, &token).await.status, 503);
}

#[tokio::test(start_paused = true)]
async fn a_handle_on_another_thread_reads_the_same_virtual_clock() {
    let (vault, token) = logged_in().await;
    sleep(30 * HOUR).await;
    let other = vault.clone_handle();
    let (now, valid) = tokio::task::spawn_blocking(move || (other.now(), other.is_valid(&token)))
        .await
        .unwrap();
    // No time passes while a blocking task runs.
    assert_eq!(now, vault.now());
    assert!(
        !valid,
        "expired in virtual time, also seen from another thread"
    );
}

#[tokio::test(start_paused = true)]
async fn dropping_the_last_handle_stops_the_server() {
    let vault = Emulator::start_in_runtime(Options::default());
    let addr = vault.addr();
    let other = vault.clone_handle();
    drop(vault);
    assert_eq!(
        call_async(addr, "GET", "/v1/sys/health", &[], "")
            .await
            .unwrap()
            .status,
        200
    );
    drop(other);
    let err = tokio::net::TcpStream::connect(addr).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused);
}

#[tokio::test]
async fn without_a_paused_clock_it_keeps_real_time() {
    let vault = Emulator::start_in_runtime(Options::default());
    let gap = vault
        .now()
        .duration_since(SystemTime::now())
        .unwrap_or_else(|e| e.duration());
    assert!(gap < Duration::from_secs(5), "{gap:?}");
}

#[test]
#[should_panic(expected = "inside a tokio runtime")]
fn start_in_runtime_needs_a_runtime() {
    Emulator::start_in_runtime(Options::default());
}
