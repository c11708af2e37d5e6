//! Reaching Vault through an HTTP proxy, as the `vault` CLI does: `VAULT_PROXY_ADDR` for every
//! request, else `HTTPS_PROXY` / `HTTP_PROXY` with `NO_PROXY`, never for loopback addresses. The
//! proxy is a small forwarding proxy on loopback that resolves every host to 127.0.0.1, so a
//! Vault named `vault.test` is reachable only through it.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;

use common::*;

/// A request line and its Proxy-Authorization header, if any.
type Request = (String, Option<String>);

/// What the proxy saw, request by request.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<Request>>>);

impl Seen {
    fn lines(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .map(|(l, _)| l.clone())
            .collect()
    }

    fn auth(&self) -> Vec<Option<String>> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .map(|(_, a)| a.clone())
            .collect()
    }
}

/// Starts the proxy; its URL and what it sees.
fn proxy() -> (String, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Seen::default();
    let log = seen.clone();
    thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let log = log.clone();
            thread::spawn(move || forward(client, &log));
        }
    });
    (url, seen)
}

/// One client connection: CONNECT host:port (tunnel), or a request in absolute form (forwarded
/// with its head unchanged, as origin servers accept absolute-form targets).
fn forward(client: TcpStream, seen: &Seen) {
    let mut reader = BufReader::new(client.try_clone().unwrap());
    let mut head = String::new();
    let mut auth = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        if let Some(v) = line
            .to_ascii_lowercase()
            .strip_prefix("proxy-authorization:")
        {
            auth = Some(v.trim().to_string());
        }
        head.push_str(&line);
        if line == "\r\n" {
            break;
        }
    }
    let request_line = head.lines().next().unwrap_or("").to_string();
    seen.0.lock().unwrap().push((request_line.clone(), auth));
    let mut parts = request_line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let authority = if method == "CONNECT" {
        target.to_string()
    } else {
        let rest = target.split_once("://").map_or(target, |(_, r)| r);
        rest.split('/').next().unwrap_or("").to_string()
    };
    // Every host is 127.0.0.1 to this proxy.
    let port = authority.rsplit(':').next().unwrap_or("80");
    let Ok(mut upstream) = TcpStream::connect(format!("127.0.0.1:{port}")) else {
        let _ = (&client).write_all(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n");
        return;
    };
    if method == "CONNECT" {
        (&client)
            .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
            .unwrap();
    } else {
        upstream.write_all(head.as_bytes()).unwrap();
    }
    // Whatever the reader already buffered belongs upstream too.
    let buffered = reader.buffer().to_vec();
    upstream.write_all(&buffered).unwrap();
    let (mut down, mut up) = (upstream.try_clone().unwrap(), client.try_clone().unwrap());
    let t = thread::spawn(move || {
        let _ = std::io::copy(&mut down, &mut up);
        let _ = up.shutdown(Shutdown::Write);
    });
    let mut from_client = reader.into_inner();
    let _ = std::io::copy(&mut from_client, &mut upstream);
    let _ = upstream.shutdown(Shutdown::Write);
    let _ = t.join();
    let mut rest = Vec::new();
    let _ = from_client.read_to_end(&mut rest);
}

#[test]
fn vault_proxy_addr_carries_every_request() {
    let (url, seen) = proxy();
    let mut s = Setup::new();
    let port = s.emu.addr().port();
    s.set("VAULT_PROXY_ADDR", &url);
    s.once(&[]).assert_code(0);
    assert!(s.emu.is_valid(&s.token().unwrap()));
    // Even a loopback Vault goes through it, as with the vault CLI's VAULT_PROXY_ADDR.
    assert_eq!(
        seen.lines(),
        vec![format!(
            "POST http://127.0.0.1:{port}/v1/auth/kubernetes/login HTTP/1.1"
        )]
    );
}

#[test]
fn https_proxy_tunnels_to_vault_and_no_proxy_bypasses_it() {
    let (url, seen) = proxy();
    let mut s = Setup::tls_trusted();
    let port = s.emu.addr().port();
    // vault.test resolves nowhere but in the proxy; its certificate names it.
    s.set("VAULT_ADDR", format!("https://vault.test:{port}"))
        .set("HTTPS_PROXY", &url)
        .set("HTTP_PROXY", "http://127.0.0.1:9");
    s.once(&[]).assert_code(0);
    assert!(s.emu.is_valid(&s.token().unwrap()));
    assert_eq!(
        seen.lines(),
        vec![format!("CONNECT vault.test:{port} HTTP/1.1")]
    );
    assert_eq!(
        s.emu.requests().last().unwrap().sni.as_deref(),
        Some("vault.test")
    );

    // NO_PROXY matches: straight to vault.test, which does not resolve.
    s.set("NO_PROXY", "example.com,.test")
        .set("VAULT_LOGIN_TIMEOUT", "2s");
    let run = s.once(&[]);
    run.assert_code(1);
    assert_eq!(seen.lines().len(), 1, "{:?}", seen.lines());
}

#[test]
fn http_proxy_is_used_for_http_and_never_for_loopback() {
    let (url, seen) = proxy();
    let mut s = Setup::new();
    let port = s.emu.addr().port();
    s.set("http_proxy", &url)
        .set("HTTPS_PROXY", "http://127.0.0.1:9");
    // A loopback Vault is reached directly, whatever the environment says.
    s.once(&[]).assert_code(0);
    assert!(seen.lines().is_empty(), "{:?}", seen.lines());
    s.set("VAULT_ADDR", format!("http://localhost:{port}"));
    s.once(&[]).assert_code(0);
    assert!(seen.lines().is_empty(), "{:?}", seen.lines());
    // Any other host goes through the proxy.
    s.set("VAULT_ADDR", format!("http://vault.test:{port}"));
    s.once(&[]).assert_code(0);
    assert!(s.emu.is_valid(&s.token().unwrap()));
    assert_eq!(
        seen.lines(),
        vec![format!(
            "POST http://vault.test:{port}/v1/auth/kubernetes/login HTTP/1.1"
        )]
    );
}

#[test]
fn proxy_credentials_are_sent_but_never_logged() {
    let (url, seen) = proxy();
    let mut s = Setup::tls_trusted();
    let port = s.emu.addr().port();
    let with_auth = url.replace("http://", "http://agent:s3cr3t-pw@");
    s.set("VAULT_ADDR", format!("https://vault.test:{port}"))
        .set("HTTPS_PROXY", &with_auth)
        .set("VAULT_LOGIN_LOG", "trace");
    let run = s.once(&[]);
    run.assert_code(0);
    // base64("agent:s3cr3t-pw")
    assert_eq!(
        seen.auth(),
        vec![Some("basic ywdlbnq6cznjcjn0lxb3".to_string())]
    );
    assert!(!run.stderr.contains("s3cr3t-pw"), "{}", run.stderr);
    assert!(
        !run.stderr.contains("YWdlbnQ6czNjcjN0LXB3"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("proxy=env(https=http://***@127.0.0.1:"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_bad_proxy_is_a_configuration_error() {
    let mut s = Setup::new();
    s.set("HTTPS_PROXY", "socks5://user:pw@proxy:1080");
    let run = s.once(&[]);
    run.assert_code(64);
    assert!(run.stderr.contains("HTTPS_PROXY"), "{}", run.stderr);
    assert!(run.stderr.contains("http:// or https://"), "{}", run.stderr);
    assert!(!run.stderr.contains("pw@"), "{}", run.stderr);
    assert_eq!(s.emu.requests().len(), 0);
}

#[test]
fn through_a_proxy_the_server_name_is_checked_but_the_tunnel_goes_to_vault_addr() {
    let (url, seen) = proxy();
    let mut s = Setup::tls_trusted();
    let port = s.emu.addr().port();
    s.set("VAULT_ADDR", format!("https://vault.test:{port}"))
        .set("HTTPS_PROXY", &url)
        .set("VAULT_TLS_SERVER_NAME", "localhost");
    s.once(&[]).assert_code(0);
    // The proxy is asked for VAULT_ADDR's host, not the server name (which would be another
    // machine), and the certificate is checked against the server name.
    assert_eq!(
        seen.lines(),
        vec![format!("CONNECT vault.test:{port} HTTP/1.1")]
    );
    s.set("VAULT_TLS_SERVER_NAME", "wrong.test")
        .set("VAULT_LOGIN_TIMEOUT", "2s");
    let run = s.once(&[]);
    run.assert_code(1);
    assert!(run.stderr.contains("wrong.test"), "{}", run.stderr);
}

#[test]
fn an_unreachable_proxy_is_named_without_its_credentials() {
    let mut s = Setup::tls_trusted();
    let port = s.emu.addr().port();
    // Nothing listens on port 9 here.
    s.set("VAULT_ADDR", format!("https://vault.test:{port}"))
        .set("HTTPS_PROXY", "http://agent:s3cr3t-pw@127.0.0.1:9")
        .set("VAULT_LOGIN_TIMEOUT", "2s");
    let run = s.once(&[]);
    run.assert_code(1);
    assert!(!run.stderr.contains("s3cr3t-pw"), "{}", run.stderr);
    // The last line names the proxy too: the refusal is the proxy's, not Vault's.
    let last = run.stderr.lines().last().unwrap_or("");
    assert!(last.contains("vault.test"), "{last}");
    assert!(last.contains("via proxy http://***@127.0.0.1:9"), "{last}");
}
