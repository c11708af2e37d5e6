//! Admission latency and memory of the real `vault-login-injector` binary: starts it on
//! 127.0.0.1 with a throwaway certificate, sends 1,000 reviews of an annotated Deployment pod
//! over one kept-alive HTTPS connection (as the API server does), and prints the client-side
//! latency (p50, p99, max) and the process's RSS (VmRSS, VmHWM).
//!
//! cargo build --release -p vault-login-injector
//! cargo run --release -p vault-login-injector --example admission_bench -- target/release/vault-login-injector

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[path = "../tests/support/mod.rs"]
mod support;

fn rss(pid: u32) -> (String, String) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .map_or("?".into(), |l| l[name.len()..].trim().to_string())
    };
    (field("VmRSS:"), field("VmHWM:"))
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let binary = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "target/release/vault-login-injector".into());
    let n: usize = std::env::args().nth(2).map_or(1000, |s| s.parse().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let pki = support::Pki::generate();
    let (cert, key) = pki.write(dir.path());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(&binary)
        .env("VAULT_LOGIN_INJECTOR_LISTEN", format!("127.0.0.1:{port}"))
        .env("VAULT_LOGIN_INJECTOR_TLS_CERT_FILE", &cert)
        .env("VAULT_LOGIN_INJECTOR_TLS_KEY_FILE", &key)
        .env(
            "VAULT_LOGIN_INJECTOR_IMAGE",
            "ghcr.io/example/vault-login:0.1.0",
        )
        .env(
            "VAULT_LOGIN_INJECTOR_VAULT_ADDR",
            "https://vault.vault.svc:8200",
        )
        .env("VAULT_LOGIN_INJECTOR_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(pki.ca_pem.as_bytes()).unwrap())
        .build()
        .unwrap();
    let base = format!("https://127.0.0.1:{port}");
    let started = Instant::now();
    while client.get(format!("{base}/healthz")).send().await.is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the injector did not start"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (idle_rss, _) = rss(child.id());
    let pod = support::pod(
        "web-7d9f8c6b5-",
        ("ReplicaSet", "web-7d9f8c6b5"),
        serde_json::json!({"vault.hashicorp.com/agent-inject": "true", "vault.hashicorp.com/role": "web"}),
        vec![
            support::container("web", "nginx:1.27"),
            support::container("worker", "app:1"),
        ],
        "Always",
    );
    let body = support::review(&pod, "app", "CREATE").to_string();
    let mut took = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let r = client
            .post(format!("{base}/mutate"))
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let answer: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
        took.push(t.elapsed());
        assert!(answer["response"]["patch"].is_string());
    }
    took.sort();
    let pct = |p: f64| took[((took.len() as f64 * p) as usize).min(took.len() - 1)];
    let (rss_now, hwm) = rss(child.id());
    let metrics = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let value = |name: &str| {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map_or(0.0, |v| v.trim().parse::<f64>().unwrap_or(0.0))
    };
    let (sum, count) = (
        value("vault_login_injector_review_seconds_sum"),
        value("vault_login_injector_review_seconds_count"),
    );
    println!(
        "server-side mean (body read → answer) {:.1}µs over {count} reviews",
        sum / count.max(1.0) * 1e6
    );
    println!("reviews: {n}, request body {} bytes", body.len());
    println!(
        "latency p50 {:?}, p99 {:?}, max {:?}",
        pct(0.50),
        pct(0.99),
        took[took.len() - 1]
    );
    println!("rss idle {idle_rss}, after {rss_now}, peak {hwm}");
    let _ = child.kill();
    let _ = child.wait();
}
