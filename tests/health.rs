//! The health and metrics server over real sockets: routes, readiness as the token comes and goes,
//! metrics, and resilience against slow and numerous clients.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use vault_login::health;
use vault_login::health::status::expiry_in;
use vault_login::health::status::Status;

struct Server {
    addr: SocketAddr,
    status: Arc<Status>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

async fn start() -> Server {
    start_with(Status::default()).await
}

async fn start_with(status: Status) -> Server {
    let listener = health::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let status = Arc::new(status);
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(health::serve(listener, Arc::clone(&status), async {
        let _ = stopped.await;
    }));
    Server {
        addr,
        status,
        stop: Some(stop),
        task,
    }
}

struct Reply {
    code: u16,
    head: String,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// Sends `raw` on a fresh connection and reads the whole reply (the server closes after one).
async fn exchange(addr: SocketAddr, raw: &str) -> Reply {
    let mut conn = TcpStream::connect(addr).await.unwrap();
    conn.write_all(raw.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), conn.read_to_end(&mut buf))
        .await
        .expect("reply within 5 s")
        .unwrap();
    let text = String::from_utf8(buf).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("a full HTTP reply");
    let code = head.split(' ').nth(1).unwrap().parse().unwrap();
    Reply {
        code,
        head: head.to_string(),
        body: body.to_string(),
    }
}

async fn request(addr: SocketAddr, method: &str, path: &str) -> Reply {
    exchange(
        addr,
        &format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nUser-Agent: test\r\n\r\n"),
    )
    .await
}

async fn get(addr: SocketAddr, path: &str) -> Reply {
    request(addr, "GET", path).await
}

/// Polls `check` until it holds, failing after `limit`.
async fn eventually<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !check().await {
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The value of an unlabelled sample in a `/metrics` body.
fn sample(body: &str, name: &str) -> Option<f64> {
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test]
async fn readyz_follows_the_token() {
    let s = start().await;
    let r = get(s.addr, "/readyz").await;
    assert_eq!((r.code, r.body.as_str()), (503, "no token written yet\n"));
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));

    s.status.login_failed("vault: permission denied");
    let r = get(s.addr, "/readyz").await;
    assert_eq!(r.code, 503);
    assert_eq!(
        r.body,
        "no token written yet: vault: permission denied (details in vault-login's log)\n"
    );
    // Vault's messages and the JWT's claims stay in the log: the endpoint is unauthenticated.
    s.status.login_failed("POST /v1/auth/kubernetes/login: Vault answered 403 Forbidden: permission denied (JWT sub=system:serviceaccount:ns:sa aud=[\"k3s\"])");
    let r = get(s.addr, "/readyz").await;
    assert_eq!(
        r.body,
        "no token written yet: POST /v1/auth/kubernetes/login: Vault answered 403 Forbidden (details in vault-login's log)\n"
    );

    s.status.logged_in(expiry_in(Duration::from_secs(1)));
    let r = get(s.addr, "/readyz").await;
    assert_eq!((r.code, r.body.as_str()), (200, "ok\n"));

    eventually(Duration::from_secs(3), "/readyz turns 503", || async {
        get(s.addr, "/readyz").await.code == 503
    })
    .await;
    let r = get(s.addr, "/readyz").await;
    assert!(r.body.starts_with("token expired "), "{}", r.body);
    assert!(r.body.ends_with("s ago\n"), "{}", r.body);

    s.status.renewed(expiry_in(Duration::ZERO));
    assert_eq!(get(s.addr, "/readyz").await.code, 200);
    s.status.token_removed();
    assert_eq!(get(s.addr, "/readyz").await.code, 503);
}

#[tokio::test]
async fn a_wall_clock_step_does_not_flip_readyz() {
    use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
    use std::time::UNIX_EPOCH;
    let wall = Arc::new(AtomicU64::new(1_700_000_000));
    let read = Arc::clone(&wall);
    let s = start_with(Status::with_wall_clock(Arc::new(move || {
        UNIX_EPOCH + Duration::from_secs(read.load(SeqCst))
    })))
    .await;
    s.status.logged_in(expiry_in(Duration::from_secs(600)));
    // The wall clock steps a day ahead: the token has not aged, and is still ready.
    wall.fetch_add(86_400, SeqCst);
    let r = get(s.addr, "/readyz").await;
    assert_eq!((r.code, r.body.as_str()), (200, "ok\n"));
    let m = get(s.addr, "/metrics").await.body;
    assert_eq!(sample(&m, "vault_login_token_ready"), Some(1.0));
    let ttl = sample(&m, "vault_login_token_ttl_seconds").unwrap();
    assert!(ttl > 590.0 && ttl <= 600.0, "{ttl}");
    // Its expiry is printed by the wall clock as it reads now.
    let expiry = sample(&m, "vault_login_token_expiry_timestamp_seconds").unwrap();
    assert!((expiry - (1_700_086_400.0 + ttl)).abs() < 1.0, "{expiry}");
    // And a step back does not revive an expired token.
    s.status.renewed(expiry_in(Duration::from_secs(1)));
    wall.fetch_sub(2 * 86_400, SeqCst);
    eventually(Duration::from_secs(5), "/readyz turns 503", || async {
        get(s.addr, "/readyz").await.code == 503
    })
    .await;
}

#[tokio::test]
async fn healthz_answers_get_and_head() {
    let s = start().await;
    let r = get(s.addr, "/healthz").await;
    assert_eq!((r.code, r.body.as_str()), (200, "ok\n"));
    assert_eq!(r.header("content-length"), Some("3"));
    // HEAD: the same headers, no body.
    let r = request(s.addr, "HEAD", "/healthz").await;
    assert_eq!((r.code, r.body.as_str()), (200, ""));
    assert_eq!(r.header("content-length"), Some("3"));
    // Query strings and HTTP/1.0 are fine.
    let r = exchange(s.addr, "GET /healthz?probe=1 HTTP/1.0\r\n\r\n").await;
    assert_eq!(r.code, 200);
}

#[tokio::test]
async fn metrics_parse() {
    let s = start().await;
    s.status.logged_in(expiry_in(Duration::from_secs(3600)));
    s.status.renewal_failed("connection refused");
    s.status.renewed(expiry_in(Duration::from_secs(3600)));
    let r = get(s.addr, "/metrics").await;
    assert_eq!(r.code, 200);
    assert_eq!(
        r.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let mut described = Vec::new();
    for line in r.body.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            described.push(rest.split(' ').next().unwrap().to_string());
        } else if !line.starts_with('#') {
            let name = line.split(['{', ' ']).next().unwrap();
            assert!(described.iter().any(|d| d == name), "{name} has no TYPE");
            let value = line.rsplit(' ').next().unwrap();
            assert!(value == "+Inf" || value.parse::<f64>().is_ok(), "{line}");
        }
    }
    assert_eq!(sample(&r.body, "vault_login_token_ready"), Some(1.0));
    let ttl = sample(&r.body, "vault_login_token_ttl_seconds").unwrap();
    assert!((3590.0..=3600.0).contains(&ttl), "{ttl}");
    assert!(r
        .body
        .contains("\nvault_login_renewals_total{result=\"failure\"} 1\n"));
    assert!(r
        .body
        .contains("\nvault_login_renewals_total{result=\"success\"} 1\n"));
    assert!(r
        .body
        .contains("\nvault_login_logins_total{result=\"success\"} 1\n"));
    assert_eq!(
        sample(&r.body, "vault_login_consecutive_failures"),
        Some(0.0)
    );
}

#[tokio::test]
async fn wrong_method_and_unknown_path() {
    let s = start().await;
    let r = exchange(
        s.addr,
        "POST /readyz HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
    )
    .await;
    assert_eq!(r.code, 405);
    assert_eq!(r.header("allow"), Some("GET, HEAD"));
    assert_eq!(request(s.addr, "DELETE", "/metrics").await.code, 405);
    assert_eq!(get(s.addr, "/nope").await.code, 404);
    assert_eq!(request(s.addr, "POST", "/nope").await.code, 404);
    // Garbage gets a 400, and the server carries on.
    let r = exchange(s.addr, "\x00\x01\x02 not http\r\n\r\n").await;
    assert_eq!(r.code, 400);
    assert_eq!(get(s.addr, "/healthz").await.code, 200);
    // An oversized request head is refused.
    let big = format!(
        "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(16 * 1024)
    );
    assert_eq!(exchange(s.addr, &big).await.code, 431);
    assert_eq!(get(s.addr, "/healthz").await.code, 200);
}

/// In virtual time: the server, its timers and both clients run on the test's paused clock.
#[tokio::test(start_paused = true)]
async fn slow_client_does_not_block_others_and_is_dropped() {
    let s = start().await;
    let mut slow = TcpStream::connect(s.addr).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHo")
        .await
        .unwrap();
    let opened = tokio::time::Instant::now();

    let r = get(s.addr, "/healthz").await;
    assert_eq!(r.code, 200);
    assert_eq!(opened.elapsed(), Duration::ZERO, "served at once");

    let mut buf = Vec::new();
    let limit = health::HEADER_READ_TIMEOUT + Duration::from_secs(2);
    let read = tokio::time::timeout(limit, slow.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "slow client still connected after {limit:?}");
    assert!(
        opened.elapsed() >= health::HEADER_READ_TIMEOUT,
        "dropped after {:?}, before the header timeout",
        opened.elapsed()
    );
    assert!(!String::from_utf8_lossy(&buf).contains(" 200 "));
}

#[tokio::test]
async fn many_concurrent_connections() {
    let s = start().await;
    s.status.logged_in(expiry_in(Duration::from_secs(600)));
    let clients: Vec<_> = (0..100)
        .map(|i| {
            let addr = s.addr;
            let path = ["/healthz", "/readyz", "/metrics"][i % 3];
            tokio::spawn(async move { get(addr, path).await.code })
        })
        .collect();
    for c in clients {
        assert_eq!(c.await.unwrap(), 200);
    }
    assert_eq!(get(s.addr, "/readyz").await.code, 200);
}

/// In virtual time, like [`slow_client_does_not_block_others_and_is_dropped`].
#[tokio::test(start_paused = true)]
async fn idle_connections_beyond_the_cap_only_delay_others() {
    let s = start().await;
    // Fill every slot with clients that say nothing: the next probe waits in the backlog until
    // the header timeout frees a slot, then succeeds.
    let mut idle = Vec::new();
    for _ in 0..health::MAX_CONNECTIONS {
        idle.push(TcpStream::connect(s.addr).await.unwrap());
    }
    let started = tokio::time::Instant::now();
    let r = get(s.addr, "/healthz").await;
    assert_eq!(r.code, 200);
    let waited = started.elapsed();
    assert!(
        waited >= health::HEADER_READ_TIMEOUT,
        "served after {waited:?}: the connection cap did not hold"
    );
    assert!(waited < health::HEADER_READ_TIMEOUT + Duration::from_secs(2));
    drop(idle);
}

/// In virtual time, so "promptly" is exact: no timer of the server may hold up the return.
#[tokio::test(start_paused = true)]
async fn shutdown_stops_the_server() {
    let mut s = start().await;
    assert_eq!(get(s.addr, "/healthz").await.code, 200);
    // An open connection does not hold up shutdown.
    let _lingering = TcpStream::connect(s.addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    s.stop.take().unwrap().send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(1), &mut s.task)
        .await
        .expect("serve returns promptly after shutdown")
        .unwrap();
    assert!(TcpStream::connect(s.addr).await.is_err());
}

#[tokio::test]
async fn bind_error_names_the_setting() {
    let taken = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let err = health::bind(taken.local_addr().unwrap())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("VAULT_LOGIN_LISTEN"), "{err}");
    assert!(
        err.contains(&taken.local_addr().unwrap().to_string()),
        "{err}"
    );
    assert!(err.to_lowercase().contains("in use"), "{err}");
    assert!(!err.contains('\n'), "{err}");
}
