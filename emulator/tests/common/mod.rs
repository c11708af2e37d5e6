//! A minimal blocking HTTP/1.1 client (plain or TLS via rustls) for driving the emulator the
//! way a real client would, including the broken answers the faults produce.
#![allow(dead_code)]

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use serde_json::{json, Value};
use vault_emulator::{Emulator, Role};

/// A parsed response.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The single Vault error message.
    pub fn error(&self) -> String {
        let v = self.json();
        assert_eq!(self.header("content-type"), Some("application/json"), "{v}");
        let errors = v["errors"].as_array().expect("errors list");
        assert_eq!(errors.len(), 1, "{v}");
        errors[0].as_str().unwrap().to_string()
    }
}

fn write_request(
    w: &mut impl Write,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
    close: bool,
) -> io::Result<()> {
    let mut raw = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    if close {
        raw.push_str("Connection: close\r\n");
    }
    raw.push_str(&format!("Content-Length: {}\r\n", body.len()));
    for (name, value) in headers {
        raw.push_str(&format!("{name}: {value}\r\n"));
    }
    raw.push_str("\r\n");
    raw.push_str(body);
    w.write_all(raw.as_bytes())?;
    w.flush()
}

/// Reads until EOF and parses; `Err` when the connection ended without a response.
pub fn read_response(r: &mut impl Read) -> io::Result<Resp> {
    let mut raw = Vec::new();
    match r.read_to_end(&mut raw) {
        Ok(_) => {}
        // rustls reports a missing close_notify; what arrived is still the answer.
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof && !raw.is_empty() => {}
        Err(e) => return Err(e),
    }
    parse(&raw)
}

/// Parses a whole response as read until EOF.
pub fn parse(raw: &[u8]) -> io::Result<Resp> {
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_string());
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no response head"))?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("status line"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"))
    {
        body = dechunk(&body).ok_or_else(|| bad("chunked body"))?;
    }
    Ok(Resp {
        status,
        headers,
        body,
    })
}

fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n")?;
        let size =
            usize::from_str_radix(std::str::from_utf8(&data[..line_end]).ok()?.trim(), 16).ok()?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}

/// [`call`] over a tokio socket, for a server on the test's own runtime
/// ([`Emulator::start_in_runtime`]), where a blocking client would stall the server.
pub async fn call_async(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> io::Result<Resp> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut raw = Vec::new();
    write_request(&mut raw, method, path, headers, body, true)?;
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.write_all(&raw).await?;
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).await?;
    parse(&answer)
}

pub fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
    let s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    Ok(s)
}

/// One request on a fresh plain connection.
pub fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> io::Result<Resp> {
    let mut s = connect(addr)?;
    write_request(&mut s, method, path, headers, body, true)?;
    read_response(&mut s)
}

/// Writes a keep-alive request (used to hold a connection open).
pub fn send_keep_alive(s: &mut TcpStream, method: &str, path: &str) -> io::Result<()> {
    write_request(s, method, path, &[], "", false)
}

/// Reads one keep-alive response with a Content-Length body.
pub fn read_one(s: &mut TcpStream) -> io::Result<Resp> {
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = s.read(&mut buf)?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        raw.extend_from_slice(&buf[..n]);
        if let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let resp = parse(&raw)?;
            let len: usize = resp
                .header("content-length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            if raw.len() >= split + 4 + len {
                return parse(&raw);
            }
        }
    }
}

/// One request over TLS, verifying the server against `ca_pem` as `server_name`.
pub fn call_tls(
    addr: SocketAddr,
    ca_pem: &str,
    server_name: &str,
    client_cert: Option<(String, String)>,
    method: &str,
    path: &str,
    body: &str,
) -> io::Result<Resp> {
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).expect("CA PEM"))
        .expect("CA cert");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots);
    let config = match client_cert {
        Some((cert, key)) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_slice(cert.as_bytes()).expect("client cert")],
                PrivateKeyDer::from_pem_slice(key.as_bytes()).expect("client key"),
            )
            .expect("client auth"),
        None => builder.with_no_client_auth(),
    };
    let name = ServerName::try_from(server_name.to_string()).expect("server name");
    let conn = ClientConnection::new(Arc::new(config), name).map_err(io::Error::other)?;
    let mut tls = StreamOwned::new(conn, connect(addr)?);
    write_request(&mut tls, method, path, &[], body, true)?;
    read_response(&mut tls)
}

/// POSTs a login for `role` with `jwt` to `mount`.
pub fn login(vault: &Emulator, mount: &str, role: &str, jwt: &str) -> Resp {
    login_with(vault, mount, role, jwt, &[])
}

pub fn login_with(
    vault: &Emulator,
    mount: &str,
    role: &str,
    jwt: &str,
    headers: &[(&str, &str)],
) -> Resp {
    let body = json!({ "role": role, "jwt": jwt }).to_string();
    call(
        vault.addr(),
        "POST",
        &format!("/v1/auth/{mount}/login"),
        headers,
        &body,
    )
    .expect("login answered")
}

/// An emulator with role `app` on the default mount, and a token from it.
pub fn logged_in(role: Role) -> (Emulator, String) {
    let vault = Emulator::start_default();
    vault.put_role("kubernetes", "app", role);
    let jwt = vault.jwt("default", "app", &["vault"], 600);
    let resp = login(&vault, "kubernetes", "app", &jwt);
    assert_eq!(
        resp.status,
        200,
        "{:?}",
        String::from_utf8_lossy(&resp.body)
    );
    let token = resp.json()["auth"]["client_token"]
        .as_str()
        .unwrap()
        .to_string();
    (vault, token)
}

/// Calls a token endpoint with `X-Vault-Token`.
pub fn with_token(vault: &Emulator, method: &str, endpoint: &str, token: &str, body: &str) -> Resp {
    call(
        vault.addr(),
        method,
        &format!("/v1/auth/token/{endpoint}"),
        &[("X-Vault-Token", token)],
        body,
    )
    .expect("answered")
}
