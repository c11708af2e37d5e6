//! Secrets to files, end to end without the loop: the configuration, the Vault client's secret
//! reads and lease calls, rendering and the writer, against the emulator over real sockets.

mod common;

use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use common::*;
use serde_json::json;
use vault_emulator::DynamicRole;
use vault_login::config::Config;
use vault_login::secrets::{self, Fingerprint, Rendered, SecretError, SecretSpec, SecretWriter};
use vault_login::sensitive::Secret;
use vault_login::vault::SecretRead;
use vault_login::vault::VaultClient;

/// The tutorial's secret and the role's policy granting read on it (plus the other engines).
fn setup() -> Setup {
    with_tutorial_secret(Role::default())
}

/// Reads and renders one spec, as the loop does for a path only one spec reads.
async fn fetch(
    client: &VaultClient,
    token: &Secret,
    spec: &SecretSpec,
) -> Result<(SecretRead, Rendered), SecretError> {
    let (read, mut rendered) = secrets::fetch_all(client, token, &spec.path, &[spec]).await?;
    Ok((read, rendered.remove(0)))
}

/// The configuration `s` plus `vars`, as the binary would load it.
fn config(s: &Setup, vars: &[(&str, &str)]) -> Config {
    let mut env = s.env.clone();
    for (k, v) in vars {
        env.insert(k.to_string(), v.to_string());
    }
    let names: Vec<String> = env.keys().cloned().collect();
    let lookup = move |name: &str| env.get(name).cloned();
    Config::load_with_names(["vault-login"], &lookup, &names).expect("valid configuration")
}

async fn login(s: &Setup, cfg: &Config) -> (VaultClient, Secret) {
    let client = VaultClient::new(&cfg.vault).unwrap();
    let jwt = Secret::new(std::fs::read_to_string(&s.jwt_path).unwrap());
    let auth = client.login("kubernetes", "default", &jwt).await.unwrap();
    (client, auth.client_token)
}

fn writer(cfg: &Config) -> SecretWriter {
    SecretWriter::new(&cfg.secrets.dir, cfg.token_file_mode, cfg.token_file_owner)
}

fn spec<'a>(cfg: &'a Config, name: &str) -> &'a SecretSpec {
    cfg.secrets
        .specs
        .iter()
        .find(|s| s.name == name)
        .expect("spec")
}

#[tokio::test]
async fn the_tutorial_secret_reaches_a_json_file_and_a_field_file_next_to_the_token() {
    let s = setup();
    let cfg = config(
        &s,
        &[
            ("VAULT_LOGIN_SECRET_DB", "internal/data/database/config"),
            (
                "VAULT_LOGIN_SECRET_DB_PASSWORD",
                "internal/data/database/config#password",
            ),
        ],
    );
    assert_eq!(cfg.secrets.dir, s.token_path.parent().unwrap());
    let (client, token) = login(&s, &cfg).await;
    let w = writer(&cfg);
    w.check().unwrap();
    for spec in &cfg.secrets.specs {
        let (read, rendered) = fetch(&client, &token, spec).await.unwrap();
        assert_eq!(read.kv2_version, Some(1));
        assert!(!read.has_renewable_lease());
        assert!(rendered.changed_since(None));
        w.write(spec, &rendered).unwrap();
    }
    let dir = s.token_path.parent().unwrap();
    let db: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("db")).unwrap()).unwrap();
    assert_eq!(
        db,
        json!({"username": "db-readonly-username", "password": "db-secret-password"})
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("db_password")).unwrap(),
        "db-secret-password"
    );
    for name in ["db", "db_password"] {
        let mode = std::fs::metadata(dir.join(name)).unwrap().mode() & 0o7777;
        assert_eq!(mode, 0o600, "{name} has the token file's mode");
    }
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, vec!["db", "db_password"], "no temp files left");
}

#[tokio::test]
async fn a_kv2_file_is_rewritten_only_when_the_version_changes() {
    let s = setup();
    let cfg = config(
        &s,
        &[("VAULT_LOGIN_SECRET_DB", "internal/data/database/config")],
    );
    let (client, token) = login(&s, &cfg).await;
    let spec = spec(&cfg, "db");
    let (_, first) = fetch(&client, &token, spec).await.unwrap();
    assert_eq!(first.fingerprint(), Fingerprint::Version(1));
    let (_, again) = fetch(&client, &token, spec).await.unwrap();
    assert!(!again.changed_since(Some(first.fingerprint())));
    s.emu.put_kv2(
        "internal",
        "database/config",
        json!({"username": "db-readonly-username", "password": "rotated"}),
    );
    let (read, next) = fetch(&client, &token, spec).await.unwrap();
    assert_eq!(read.kv2_version, Some(2));
    assert!(next.changed_since(Some(first.fingerprint())));
    let path = writer(&cfg).write(spec, &next).unwrap().expect("rewritten");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    assert_eq!(v["password"], "rotated");
}

#[tokio::test]
async fn a_kv1_file_is_rewritten_only_when_its_content_changes() {
    let s = setup();
    s.emu.put_kv1("kv", "app", json!({"api_key": "k-1"}));
    let cfg = config(&s, &[("VAULT_LOGIN_SECRET_APP", "kv/app#api_key")]);
    let (client, token) = login(&s, &cfg).await;
    let spec = spec(&cfg, "app");
    let (read, first) = fetch(&client, &token, spec).await.unwrap();
    assert_eq!(read.kv2_version, None);
    assert_eq!(read.lease_duration, Duration::from_secs(2_764_800));
    assert_eq!(first.expose(), b"k-1");
    let (_, same) = fetch(&client, &token, spec).await.unwrap();
    assert!(!same.changed_since(Some(first.fingerprint())));
    s.emu.put_kv1("kv", "app", json!({"api_key": "k-2"}));
    let (_, changed) = fetch(&client, &token, spec).await.unwrap();
    assert!(changed.changed_since(Some(first.fingerprint())));
    assert_eq!(changed.expose(), b"k-2");
}

#[tokio::test]
async fn dynamic_secrets_come_with_a_lease_that_renews_caps_and_revokes() {
    let s = setup();
    s.emu.put_policy(
        "app",
        &[
            ("database/creds/app", &["read"]),
            ("sys/leases/revoke", &["update"]),
        ],
    );
    s.emu.put_dynamic_role(
        "database",
        "app",
        DynamicRole {
            default_ttl: Duration::from_secs(300),
            max_ttl: Duration::from_secs(600),
            renewable: true,
        },
    );
    let cfg = config(&s, &[("VAULT_LOGIN_SECRET_PG", "database/creds/app")]);
    let (client, token) = login(&s, &cfg).await;
    let (read, rendered) = fetch(&client, &token, spec(&cfg, "pg")).await.unwrap();
    assert!(read.has_renewable_lease());
    assert!(read.lease_id.starts_with("database/creds/app/"));
    assert_eq!(read.lease_duration, Duration::from_secs(300));
    let password = read.data.expose()["password"].as_str().unwrap().to_string();
    assert!(!format!("{read:?} {rendered:?}").contains(&password));

    let renewed = client
        .renew_lease(&token, &read.lease_id, Some(Duration::from_secs(120)))
        .await
        .unwrap();
    assert_eq!(renewed.lease_id, read.lease_id);
    assert_eq!(renewed.lease_duration, Duration::from_secs(120));
    assert!(renewed.warnings.is_empty());
    let capped = client
        .renew_lease(&token, &read.lease_id, Some(Duration::from_secs(3600)))
        .await
        .unwrap();
    assert!(capped.lease_duration <= Duration::from_secs(600));
    assert!(capped.lease_duration >= Duration::from_secs(598));
    assert!(capped.grant().capped_warning);
    assert!(!renewed.grant().capped_warning);
    assert_eq!(capped.warnings.len(), 1);
    assert!(
        capped.warnings[0].contains("TTL value is capped accordingly"),
        "{:?}",
        capped.warnings
    );
    assert_eq!(s.emu.leases()[0].renewals, 2);

    client.revoke_lease(&token, &read.lease_id).await.unwrap();
    assert_eq!(s.emu.lease_count(), 0);
    let err = client
        .renew_lease(&token, &read.lease_id, None)
        .await
        .unwrap_err();
    assert!(err.mentions("lease not found"), "{err}");
    assert!(!err.is_transient());
    let requests: Vec<(String, String)> = s
        .emu
        .requests()
        .into_iter()
        .map(|r| (r.method, r.path))
        .filter(|(_, p)| p.starts_with("/v1/sys/leases"))
        .collect();
    assert_eq!(
        requests,
        vec![
            ("PUT".to_string(), "/v1/sys/leases/renew".to_string()),
            ("PUT".to_string(), "/v1/sys/leases/renew".to_string()),
            ("PUT".to_string(), "/v1/sys/leases/revoke".to_string()),
            ("PUT".to_string(), "/v1/sys/leases/renew".to_string()),
        ]
    );
}

#[tokio::test]
async fn revoking_without_the_policy_is_a_403_naming_the_endpoint() {
    let s = setup();
    s.emu
        .put_dynamic_role("database", "app", DynamicRole::default());
    let cfg = config(&s, &[("VAULT_LOGIN_SECRET_PG", "database/creds/app")]);
    let (client, token) = login(&s, &cfg).await;
    let (read, _) = fetch(&client, &token, spec(&cfg, "pg")).await.unwrap();
    let err = client
        .revoke_lease(&token, &read.lease_id)
        .await
        .unwrap_err();
    assert!(err.is_permission_denied(), "{err}");
    assert!(err.to_string().contains("sys/leases/revoke"), "{err}");
    assert_eq!(s.emu.lease_count(), 1);
}

#[tokio::test]
async fn read_errors_name_the_path_and_what_to_do_and_never_touch_the_file() {
    let s = setup();
    let cfg = config(
        &s,
        &[
            ("VAULT_LOGIN_SECRET_CLI", "internal/database/config"),
            ("VAULT_LOGIN_SECRET_GONE", "internal/data/database/nothing"),
            (
                "VAULT_LOGIN_SECRET_TYPO",
                "internal/data/database/config#pasword",
            ),
        ],
    );
    // The policy allows the missing path too, so Vault answers 404 rather than 403.
    s.emu.put_policy("app", &[("internal/data/*", &["read"])]);
    let (client, token) = login(&s, &cfg).await;
    let w = writer(&cfg);
    for spec in &cfg.secrets.specs {
        std::fs::write(w.path_for(spec), b"previous").unwrap();
    }

    let denied = fetch(&client, &token, spec(&cfg, "cli")).await.unwrap_err();
    assert!(matches!(denied, SecretError::Denied { .. }), "{denied:?}");
    let text = denied.to_string();
    assert!(
        text.contains("the role's policies must grant \"read\" on internal/database/config"),
        "{text}"
    );
    assert!(
        text.contains("reads go to internal/data/database/config"),
        "{text}"
    );

    let gone = fetch(&client, &token, spec(&cfg, "gone"))
        .await
        .unwrap_err();
    assert!(matches!(gone, SecretError::NotFound { .. }), "{gone:?}");
    assert!(
        gone.to_string()
            .contains("there is no secret at internal/data/database/nothing"),
        "{gone}"
    );

    let typo = fetch(&client, &token, spec(&cfg, "typo"))
        .await
        .unwrap_err();
    let text = typo.to_string();
    assert!(text.contains("no field \"pasword\""), "{text}");
    assert!(text.contains("password, username"), "{text}");
    assert!(text.contains("VAULT_LOGIN_SECRET_TYPO"), "{text}");

    for err in [&denied, &gone, &typo] {
        let all = format!("{err} {err:?}");
        assert!(!all.contains("db-secret-password"), "{all}");
        assert!(!err.is_transient());
    }
    for spec in &cfg.secrets.specs {
        assert_eq!(std::fs::read(w.path_for(spec)).unwrap(), b"previous");
    }
}

#[tokio::test]
async fn an_outage_is_transient_and_names_the_path() {
    let s = setup();
    let cfg = config(
        &s,
        &[("VAULT_LOGIN_SECRET_DB", "internal/data/database/config")],
    );
    let (client, token) = login(&s, &cfg).await;
    s.emu.set_fault(Fault::Sealed);
    let err = fetch(&client, &token, spec(&cfg, "db")).await.unwrap_err();
    s.emu.clear_fault();
    assert!(err.is_transient(), "{err}");
    assert_eq!(err.path(), Some("internal/data/database/config"));
}

#[tokio::test]
async fn a_dotenv_file_from_vault_is_sourced_by_sh_with_the_exact_values() {
    let s = setup();
    let hostile = "p'w\"$(touch pwned)`id`\n$HOME";
    s.emu.put_kv2(
        "internal",
        "database/config",
        json!({"DB_USER": "db-readonly-username", "DB_PASSWORD": hostile}),
    );
    let cfg = config(
        &s,
        &[(
            "VAULT_LOGIN_SECRET_DB_ENV",
            "dotenv:internal/data/database/config",
        )],
    );
    let (client, token) = login(&s, &cfg).await;
    let spec = spec(&cfg, "db_env");
    let (_, rendered) = fetch(&client, &token, spec).await.unwrap();
    let path = writer(&cfg)
        .write(spec, &rendered)
        .unwrap()
        .expect("written");
    let out = std::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(r#". "$1" && printf '%s|%s' "$DB_USER" "$DB_PASSWORD""#)
        .arg("sh")
        .arg(&path)
        .current_dir(s.dir.path())
        .env_clear()
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!("db-readonly-username|{hostile}")
    );
    assert!(!s.dir.path().join("pwned").exists());
}

#[test]
fn bad_secret_settings_exit_64_with_one_line_before_any_request() {
    for (var, value, needle) in [
        (
            "VAULT_LOGIN_SECRET_DB",
            "internal/data/db#",
            "nothing after '#'",
        ),
        ("VAULT_LOGIN_SECRET_A-B", "kv/app", "letters, digits"),
        ("VAULT_LOGIN_SECRETS_REFRESH", "0", "more than zero"),
    ] {
        let mut s = Setup::new();
        s.set(var, value);
        s.set("VAULT_LOGIN_SECRET_OK", "kv/app");
        let run = s.once(&[]);
        run.assert_code(64);
        let lines: Vec<&str> = run.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{:?}", run.stderr);
        assert!(lines[0].contains(var), "{}", lines[0]);
        assert!(lines[0].contains(needle), "{}", lines[0]);
        assert_eq!(s.emu.requests().len(), 0);
    }
}
