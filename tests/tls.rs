//! TLS to the emulator with a CA generated at test time, through the real binary.

mod common;

use std::fs;
use std::time::Duration;

use common::*;

fn tls_setup(require_client_cert: bool) -> Setup {
    Setup::with(
        Options {
            tls: true,
            require_client_cert,
            ..Options::default()
        },
        Role::default(),
    )
}

fn write(s: &Setup, name: &str, pem: &str) -> String {
    let p = s.dir.path().join(name);
    fs::write(&p, pem).unwrap();
    p.display().to_string()
}

#[test]
fn ca_file_is_trusted() {
    let mut s = tls_setup(false);
    let ca = write(&s, "ca.pem", &s.emu.ca_pem().unwrap());
    s.set("VAULT_CACERT", ca);
    s.once(&[]).assert_code(0);
    assert!(s.emu.is_valid(&s.token().unwrap()));
}

#[test]
fn ca_directory_is_trusted() {
    let mut s = tls_setup(false);
    let dir = s.dir.path().join("cas");
    fs::create_dir(&dir).unwrap();
    fs::write(dir.join("vault-ca.pem"), s.emu.ca_pem().unwrap()).unwrap();
    fs::write(dir.join("README"), "not a cert").unwrap();
    s.set("BAO_CAPATH", dir.display().to_string());
    s.once(&[]).assert_code(0);
}

#[test]
fn ca_pem_text_from_the_environment_is_trusted() {
    let mut s = tls_setup(false);
    s.set("VAULT_CACERT_BYTES", s.emu.ca_pem().unwrap());
    s.once(&[]).assert_code(0);
    assert!(s.emu.is_valid(&s.token().unwrap()));
    s.set("VAULT_CACERT_BYTES", "not a certificate");
    let run = s.once(&[]);
    run.assert_code(64);
    assert!(run.stderr.contains("VAULT_CACERT_BYTES"), "{}", run.stderr);
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
}

#[test]
fn the_ca_file_wins_over_the_ca_directory_and_says_so() {
    let mut s = tls_setup(false);
    let ca = write(&s, "ca.pem", &s.emu.ca_pem().unwrap());
    let dir = s.dir.path().join("cas");
    fs::create_dir(&dir).unwrap();
    let other = Emulator::start(Options {
        tls: true,
        require_client_cert: false,
        ..Options::default()
    });
    fs::write(dir.join("other.pem"), other.ca_pem().unwrap()).unwrap();
    s.set("VAULT_CACERT", ca)
        .set("VAULT_CAPATH", dir.display().to_string());
    let run = s.once(&[]);
    run.assert_code(0);
    assert!(
        run.stderr
            .contains("VAULT_CAPATH is ignored: VAULT_CACERT takes precedence"),
        "{}",
        run.stderr
    );
}

#[test]
fn wrong_ca_is_a_clear_verification_error() {
    let mut s = tls_setup(false);
    let other = Emulator::start(Options {
        tls: true,
        require_client_cert: false,
        ..Options::default()
    });
    let ca = write(&s, "other-ca.pem", &other.ca_pem().unwrap());
    s.set("VAULT_CACERT", ca).set("VAULT_LOGIN_TIMEOUT", "2s");
    let run = s.once(&[]);
    run.assert_code(1);
    assert!(
        run.stderr.contains("trusted CA") || run.stderr.contains("not trusted"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("VAULT_CACERT"), "{}", run.stderr);
    assert!(s.token().is_none());
}

#[test]
fn public_roots_do_not_trust_a_private_ca() {
    let mut s = tls_setup(false);
    s.set("VAULT_LOGIN_TIMEOUT", "2s");
    let run = s.once(&[]);
    run.assert_code(1);
    assert!(run.stderr.contains("not trusted"), "{}", run.stderr);
}

#[test]
fn server_name_override() {
    let mut s = tls_setup(false);
    let ca = write(&s, "ca.pem", &s.emu.ca_pem().unwrap());
    // The certificate is for localhost, 127.0.0.1 and vault.test: verifying against a name it
    // does not carry must fail even though the URL's host matches, and a carried one must work.
    s.set("VAULT_CACERT", ca)
        .set("VAULT_LOGIN_TIMEOUT", "2s")
        .set("VAULT_TLS_SERVER_NAME", "wrong.test");
    let run = s.once(&[]);
    run.assert_code(1);
    assert!(run.stderr.contains("wrong.test"), "{}", run.stderr);
    assert!(
        run.stderr.contains("VAULT_TLS_SERVER_NAME"),
        "{}",
        run.stderr
    );
    s.set("VAULT_TLS_SERVER_NAME", "vault.test");
    s.once(&[]).assert_code(0);
}

/// The SNI of the newest request the emulator received.
fn last_sni(s: &Setup) -> Option<String> {
    s.emu.requests().last().expect("a request").sni.clone()
}

#[test]
fn server_name_is_sent_as_sni_like_the_vault_cli() {
    let mut s = tls_setup(false);
    let ca = write(&s, "ca.pem", &s.emu.ca_pem().unwrap());
    let port = s.emu.addr().port();
    s.set("VAULT_CACERT", ca);
    // The URL's host is the SNI by default (none for an IP address).
    s.once(&[]).assert_code(0);
    assert_eq!(last_sni(&s).as_deref(), Some("localhost"));
    s.set("VAULT_ADDR", format!("https://127.0.0.1:{port}"));
    s.once(&[]).assert_code(0);
    assert_eq!(last_sni(&s), None);
    // VAULT_TLS_SERVER_NAME is sent as SNI, while the connection still goes to VAULT_ADDR,
    // whether its host is an IP address or a name that has to be looked up.
    s.set("VAULT_TLS_SERVER_NAME", "vault.test");
    s.once(&[]).assert_code(0);
    assert_eq!(last_sni(&s).as_deref(), Some("vault.test"));
    assert!(s.emu.is_valid(&s.token().unwrap()));
    s.set("VAULT_ADDR", format!("https://localhost:{port}"));
    s.once(&[]).assert_code(0);
    assert_eq!(last_sni(&s).as_deref(), Some("vault.test"));
    // Errors name VAULT_ADDR's URL, not the rerouted one.
    s.set("VAULT_TLS_SERVER_NAME", "wrong.test")
        .set("VAULT_LOGIN_TIMEOUT", "2s");
    let run = s.once(&[]);
    run.assert_code(1);
    assert!(
        run.stderr.contains(&format!(
            "https://localhost:{port}/v1/auth/kubernetes/login"
        )),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("https://wrong.test"), "{}", run.stderr);
    assert!(
        run.stderr.contains("VAULT_TLS_SERVER_NAME"),
        "{}",
        run.stderr
    );
}

#[test]
fn mutual_tls() {
    let mut s = tls_setup(true);
    let ca = write(&s, "ca.pem", &s.emu.ca_pem().unwrap());
    s.set("VAULT_CACERT", ca).set("VAULT_LOGIN_TIMEOUT", "2s");
    let run = s.once(&[]);
    run.assert_code(1);
    assert!(run.stderr.contains("VAULT_CLIENT_CERT"), "{}", run.stderr);
    let (cert, key) = s.emu.client_cert_pem().unwrap();
    let cert = write(&s, "client.pem", &cert);
    let key = write(&s, "client-key.pem", &key);
    s.set("VAULT_CLIENT_CERT", cert)
        .set("VAULT_CLIENT_KEY", key);
    s.once(&[]).assert_code(0);
    assert!(s.emu.is_valid(&s.token().unwrap()));
}

#[test]
fn skip_verify_works_and_warns() {
    let mut s = tls_setup(false);
    s.set("VAULT_SKIP_VERIFY", "true");
    let run = s.once(&[]);
    run.assert_code(0);
    assert!(
        run.stderr.contains("VAULT_SKIP_VERIFY is set"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("WARN"), "{}", run.stderr);
    let _ = Duration::ZERO;
}
