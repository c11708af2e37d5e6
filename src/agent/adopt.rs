//! Adopting the token a previous run left in the file, when the sidecar container restarts in
//! the same pod (a crash, an OOM kill, a failed liveness probe): the app keeps the token it
//! has, and the leases it made with it, instead of being handed a new one.
//!
//! The file is on a volume other containers can write, so its content is a claim, not a fact.
//! `lookup-self` says whether the token is alive and whose it is, and it is adopted only if
//! Vault issued it through this mount's login, for this role and this pod's service account.
//! Anything else (garbage, an expired or revoked token, a root token, another role's token) is
//! left alone: vault-login logs in as usual and replaces it.

use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;
use tracing::info;

use crate::duration::brief;
use crate::files::token_file::TokenFile;
use crate::sensitive::Secret;
use crate::vault::{Auth, VaultClient};

/// A token found in the file and adopted.
#[derive(Debug)]
pub struct Adopted {
    /// When `lookup-self` was sent: its TTL counts from then.
    pub sent: Instant,
    /// The token and what `lookup-self` said of it, as a login's `auth` block would.
    pub auth: Auth,
    /// The TTL an uncapped renewal gives back (`creation_ttl`).
    pub expected: Duration,
    /// When the token was issued (`creation_time`, Unix seconds), for the info file.
    pub issued_at: i64,
}

/// Whether `lookup-self`'s `data` describes a live token this run would have got itself: issued
/// by `auth/<mount>/login` for `role` and the service account `sub` names
/// (`system:serviceaccount:<namespace>:<name>`). Why not, for the log.
pub fn check(data: &Value, mount: &str, role: &str, sub: &str) -> Result<(), String> {
    let meta = data.get("meta").unwrap_or(&Value::Null);
    let path = text(data, "path");
    if path != format!("auth/{mount}/login") {
        return Err(format!(
            "it was not issued by auth/{mount}/login (path {path:?})"
        ));
    }
    if text(meta, "role") != role {
        return Err(format!("it was issued for another role than {role:?}"));
    }
    let account = format!(
        "system:serviceaccount:{}:{}",
        text(meta, "service_account_namespace"),
        text(meta, "service_account_name")
    );
    if account != sub {
        return Err("it was issued to another service account".to_string());
    }
    match data.get("ttl").and_then(Value::as_u64) {
        Some(_) => Ok(()),
        None => Err("lookup-self gave no ttl".to_string()),
    }
}

/// `v[key]` as a string; empty when missing or not a string.
fn text<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

/// What a checked `lookup-self` `data` says, as a login's `auth` block would say it.
fn auth_of(token: Secret, data: &Value) -> (Auth, Duration) {
    let secs = |key: &str| Duration::from_secs(data.get(key).and_then(Value::as_u64).unwrap_or(0));
    let policies = data
        .get("policies")
        .and_then(Value::as_array)
        .map(|p| {
            p.iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    let auth = Auth {
        client_token: token,
        accessor: Secret::new(text(data, "accessor")),
        policies,
        lease_duration: secs("ttl"),
        renewable: data
            .get("renewable")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        token_type: text(data, "type").to_string(),
        entity_id: text(data, "entity_id").to_string(),
        metadata: data
            .get("meta")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default(),
    };
    let expected = secs("creation_ttl").max(auth.lease_duration);
    (auth, expected)
}

/// Looks at the token in `file`: adopted if [`check`] accepts what `lookup-self` says of it
/// for the service account `sub` (the JWT's subject, as read at start). The file is read on the
/// blocking pool, like every other read of it.
pub async fn attempt(
    client: &VaultClient,
    file: &TokenFile,
    sub: &str,
    mount: &str,
    role: &str,
) -> Option<Adopted> {
    if sub.is_empty() {
        // No readable JWT: nothing would show the token is this service account's.
        return None;
    }
    let file = file.clone();
    let token = tokio::task::spawn_blocking(move || file.read())
        .await
        .ok()??;
    let sent = Instant::now();
    let data = match client.lookup_self(&token).await {
        Ok(data) => data,
        Err(e) => {
            info!(error = %e, "the token file's token is not usable; logging in");
            return None;
        }
    };
    if let Err(why) = check(&data, mount, role, sub) {
        info!("the token file's token is not adopted: {why}; logging in");
        return None;
    }
    let (auth, expected) = auth_of(token, &data);
    let issued_at = data
        .get("creation_time")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    info!(ttl = %brief(auth.lease_duration), renewable = auth.renewable, accessor = %auth.accessor.prefix(4), "adopted the token already in the file (a restart): no new login");
    Some(Adopted {
        sent,
        auth,
        expected,
        issued_at,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const SUB: &str = "system:serviceaccount:apps:web";

    fn data() -> Value {
        json!({
            "accessor": "acc-1",
            "creation_ttl": 3600,
            "entity_id": "e-1",
            "meta": {"role": "web", "service_account_name": "web", "service_account_namespace": "apps"},
            "path": "auth/k8s/cluster-1/login",
            "policies": ["default", "web"],
            "renewable": true,
            "ttl": 1800,
            "type": "service",
        })
    }

    #[test]
    fn only_a_token_this_run_would_have_got_is_adopted() {
        let mount = "k8s/cluster-1";
        assert_eq!(check(&data(), mount, "web", SUB), Ok(()));
        let mut root = data();
        root["path"] = json!("auth/token/root");
        root["meta"] = Value::Null;
        assert!(check(&root, mount, "web", SUB)
            .unwrap_err()
            .contains("not issued by auth/k8s/cluster-1/login"));
        assert!(
            check(&data(), "kubernetes", "web", SUB).is_err(),
            "another mount"
        );
        assert!(check(&data(), mount, "admin", SUB)
            .unwrap_err()
            .contains("another role"));
        let other = "system:serviceaccount:apps:other";
        assert!(check(&data(), mount, "web", other)
            .unwrap_err()
            .contains("service account"));
        assert!(
            check(&data(), mount, "web", "").is_err(),
            "a JWT without sub proves nothing"
        );
        let mut no_ttl = data();
        no_ttl.as_object_mut().unwrap().remove("ttl");
        assert!(check(&no_ttl, mount, "web", SUB).is_err());
    }

    #[test]
    fn an_adopted_token_reads_like_a_login() {
        let (auth, expected) = auth_of(Secret::new("hvs.x"), &data());
        assert_eq!(auth.lease_duration, Duration::from_secs(1800));
        assert_eq!(expected, Duration::from_secs(3600));
        assert!(auth.renewable);
        assert_eq!(auth.policies, vec!["default", "web"]);
        assert_eq!(auth.metadata["role"], "web");
        assert_eq!(auth.grant().ttl, Duration::from_secs(1800));
        assert_eq!(auth.client_token.expose(), "hvs.x");
    }
}
