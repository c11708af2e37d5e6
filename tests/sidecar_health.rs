//! The health/metrics server of the real binary, following the real token loop.

mod common;

use std::net::TcpListener;
use std::time::Duration;

use common::virtual_time::{wait_for, Virtual};
use common::*;

const SEC: Duration = Duration::from_secs(1);

fn metric(body: &str, name: &str) -> Option<f64> {
    body.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

fn setup(ttl: u64) -> (Setup, u16) {
    let mut s = Setup::with_role(Role {
        token_ttl: Duration::from_secs(ttl),
        token_max_ttl: Duration::from_secs(600),
        ..Role::default()
    });
    let port = free_port();
    s.set("VAULT_LOGIN_LISTEN", format!("127.0.0.1:{port}"))
        .set("VAULT_LOGIN_LOG", "info");
    (s, port)
}

#[test]
fn readyz_follows_the_token() {
    let (s, port) = setup(1);
    s.emu.set_fault(Fault::Down);
    let r = s.spawn(&[]);
    assert!(
        wait_until(5 * SEC, || http_get(port, "/healthz")
            .is_some_and(|x| x.0 == 200)),
        "{}",
        r.stderr()
    );
    let (code, body) = http_get(port, "/readyz").unwrap();
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("no token"), "{body}");
    s.emu.clear_fault();
    assert!(
        wait_until(5 * SEC, || http_get(port, "/readyz")
            .is_some_and(|x| x.0 == 200)),
        "{}",
        r.stderr()
    );
    // Vault goes away for longer than the TTL: the token expires and readiness says so.
    s.emu.set_fault(Fault::Down);
    assert!(
        wait_until(6 * SEC, || http_get(port, "/readyz")
            .is_some_and(|x| x.0 == 503 && x.1.contains("expired"))),
        "{}",
        r.stderr()
    );
    assert_eq!(
        http_get(port, "/healthz").unwrap().0,
        200,
        "alive while not ready"
    );
    s.emu.clear_fault();
    assert!(wait_until(5 * SEC, || http_get(port, "/readyz")
        .is_some_and(|x| x.0 == 200)));
}

#[test]
fn metrics_follow_renewals() {
    let (s, port) = setup(1);
    let r = s.spawn(&[]);
    assert!(wait_until(5 * SEC, || s.token().is_some()));
    assert!(wait_until(5 * SEC, || http_get(port, "/metrics")
        .is_some_and(|m| metric(
            &m.1,
            "vault_login_token_expiry_timestamp_seconds"
        )
        .is_some())));
    let (code, m1) = http_get(port, "/metrics").unwrap();
    assert_eq!(code, 200);
    for line in m1.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
        let name = line.split([' ', '{']).next().unwrap();
        assert!(m1.contains(&format!("# TYPE {name} ")), "TYPE for {name}");
        assert!(m1.contains(&format!("# HELP {name} ")), "HELP for {name}");
        let value = line.rsplit(' ').next().unwrap();
        assert!(value.parse::<f64>().is_ok(), "{line}");
    }
    let exp1 = metric(&m1, "vault_login_token_expiry_timestamp_seconds").unwrap();
    assert!(
        wait_until(6 * SEC, || renewals(&s.emu) >= 1),
        "{}",
        r.stderr()
    );
    assert!(wait_until(2 * SEC, || {
        let m = http_get(port, "/metrics").unwrap().1;
        metric(&m, "vault_login_token_expiry_timestamp_seconds").unwrap() > exp1
    }));
    let m2 = http_get(port, "/metrics").unwrap().1;
    assert!(
        m2.contains("vault_login_renewals_total{result=\"success\"}"),
        "{m2}"
    );
    assert!(metric(&m2, "vault_login_token_ttl_seconds").unwrap() > 0.0);
    assert!(m2.contains("vault_login_build_info{"));
}

/// A GET from the test's own runtime (the in-process server would stall under a blocking client):
/// the status code, None if the server did not answer within 5 s.
async fn get_async(addr: std::net::SocketAddr, path: &str) -> Option<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let exchange = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
        let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.ok()?;
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.ok()?;
        String::from_utf8_lossy(&out)
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    };
    tokio::time::timeout(5 * SEC, exchange).await.ok().flatten()
}

/// In virtual time, the agent and the health server sharing one runtime as in the binary:
/// forty clients keep the server full all along (each sends half a request, stalls until the
/// server drops it, and comes back at once), and the renewals go on regardless.
#[tokio::test(start_paused = true)]
async fn slow_health_clients_do_not_delay_renewals() {
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use vault_login::health;

    let v = Virtual::with_role(Role {
        token_ttl: Duration::from_secs(60),
        token_max_ttl: Duration::from_secs(86_400),
        ..Role::default()
    });
    let r = v.spawn(&[]);
    let listener = health::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (_stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(health::serve(listener, Arc::clone(&r.status), async {
        let _ = stopped.await;
    }));
    v.wait_token().await;
    assert_eq!(get_async(addr, "/healthz").await, Some(200));

    let stallers: Vec<_> = (0..40)
        .map(|_| {
            tokio::spawn(async move {
                loop {
                    let Ok(mut c) = tokio::net::TcpStream::connect(addr).await else {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    };
                    let _ = c.write_all(b"GET /metrics HTTP/1.1\r\nHost:").await;
                    let mut buf = [0u8; 1024];
                    while matches!(c.read(&mut buf).await, Ok(n) if n > 0) {}
                }
            })
        })
        .collect();
    let before = renewals(&v.emu);
    assert!(
        wait_for(10 * 60 * SEC, || renewals(&v.emu) >= before + 3).await,
        "renewals continued: {}",
        r.stderr()
    );
    for s in &stallers {
        s.abort();
    }
    let mut ready = false;
    for _ in 0..10 {
        if get_async(addr, "/readyz").await == Some(200) {
            ready = true;
            break;
        }
        tokio::time::sleep(SEC).await;
    }
    assert!(ready, "server recovers");
}

#[test]
fn health_port_in_use_is_a_configuration_error() {
    let (mut s, _) = setup(60);
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    s.set(
        "VAULT_LOGIN_LISTEN",
        taken.local_addr().unwrap().to_string(),
    );
    let run = s.once(&[]);
    run.assert_code(64);
    assert!(run.stderr.contains("VAULT_LOGIN_LISTEN"), "{}", run.stderr);
}
