//! Any text through the configuration value parsers and through `Config::load` as
//! VAULT_ADDR / VAULT_LOGIN_MOUNT / VAULT_NAMESPACE / VAULT_LOGIN_LISTEN / VAULT_HEADERS /
//! HTTPS_PROXY: no panic, and what is accepted holds the invariants `Config` documents.
//!
//! Input: up to six values separated by NUL bytes (an environment value cannot hold a NUL),
//! decoded lossily like `Config::from_process` does.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use vault_login::config::{human, parse_duration, Config, ConfigError};
use vault_login::config::settings::parse_bool;
use vault_login::files::token_file::{parse_mode, parse_owner};

const NAMES: [&str; 6] = [
    "VAULT_ADDR",
    "VAULT_LOGIN_MOUNT",
    "VAULT_NAMESPACE",
    "VAULT_LOGIN_LISTEN",
    "VAULT_HEADERS",
    "HTTPS_PROXY",
];
const TEN_YEARS: Duration = Duration::from_secs(10 * 365 * 24 * 60 * 60);

fuzz_target!(|data: &[u8]| {
    let values: Vec<String> = data
        .split(|b| *b == 0)
        .take(NAMES.len())
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect();

    for v in &values {
        if let Ok(d) = parse_duration(v) {
            assert!(d <= TEN_YEARS, "{v:?} -> {d:?}");
            // What the summary prints must read back as the same duration (from 1ms up, the
            // units `human` uses are ones the parser accepts).
            if d >= Duration::from_millis(1) {
                assert_eq!(parse_duration(&human(d)), Ok(d), "{v:?} -> {}", human(d));
            }
        }
        let _ = parse_bool(v);
        if let Ok(mode) = parse_mode(v) {
            assert!(mode <= 0o777, "{v:?}");
        }
        if let Ok(owner) = parse_owner(v) {
            assert_ne!(owner.uid, u32::MAX, "{v:?}");
            assert_ne!(owner.gid, Some(u32::MAX), "{v:?}");
        }
    }

    let env = |name: &str| -> Option<String> {
        if name == "VAULT_LOGIN_ROLE" {
            return Some("app".into());
        }
        let i = NAMES.iter().position(|n| *n == name)?;
        values.get(i).cloned()
    };
    match Config::load(["vault-login"], &env) {
        Ok(cfg) => {
            assert!(matches!(cfg.vault.addr.scheme(), "http" | "https"));
            assert!(cfg.vault.addr.query().is_none() && cfg.vault.addr.fragment().is_none());
            assert!(cfg.vault.addr.username().is_empty() && cfg.vault.addr.password().is_none());
            let path = cfg.vault.addr.path();
            assert!(path == "/" || !path.ends_with('/'), "{path:?}");
            assert!(!cfg.mount.is_empty());
            assert!(!cfg.mount.starts_with('/') && !cfg.mount.ends_with('/'));
            assert!(!cfg
                .mount
                .split('/')
                .any(|s| s.is_empty() || s == "." || s == ".."));
            if let Some(ns) = &cfg.vault.namespace {
                assert!(!ns.is_empty() && !ns.starts_with('/') && !ns.ends_with('/'));
            }
            for (name, _) in &cfg.vault.headers {
                assert!(
                    !name.to_ascii_lowercase().starts_with("x-vault-"),
                    "{name:?}"
                );
            }
            if let Some(proxy) = &cfg.vault.proxy.https {
                assert!(matches!(proxy.scheme(), "http" | "https"));
                assert!(proxy.host_str().is_some_and(|h| !h.is_empty()));
            }
            let summary = cfg.summary();
            assert!(!summary.contains('\n'), "{summary}");
            if let Some(proxy) = &cfg.vault.proxy.https {
                if let Some(pw) = proxy.password().filter(|p| p.len() > 3) {
                    assert!(!summary.contains(pw), "{summary}");
                }
            }
        }
        Err(ConfigError::Invalid {
            source_name,
            problem,
        }) => {
            assert!(!problem.is_empty());
            assert!(!problem.contains('\n'), "{problem}");
            assert!(
                NAMES.contains(&source_name.as_str()) || source_name == "VAULT_LOGIN_ROLE",
                "{source_name}"
            );
        }
        Err(other) => panic!("only values changed, yet: {other:?}"),
    }
});
