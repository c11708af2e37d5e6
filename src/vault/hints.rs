//! What a login tells the operator: hints that turn Vault's terse login refusals into the
//! setting to check, and the fields of a successful login that the Vault tutorial's "verify"
//! step shows (`vault write auth/kubernetes/login` output), without the token.

use std::time::Duration;

use tracing::info;

use crate::duration::brief;
use crate::jwt::Claims;
use crate::vault::{Auth, VaultError};

/// The metadata keys the kubernetes auth method puts on every token it issues, in the order the
/// vault CLI prints them as `token_meta_*` (see hashicorp/vault-plugin-auth-kubernetes).
pub const TOKEN_META_KEYS: [&str; 5] = [
    "service_account_name",
    "service_account_namespace",
    "service_account_secret_name",
    "service_account_uid",
    "role",
];

/// Hints for a failed login, as ` (...)` to append to the error, or `""` when there is
/// nothing to add. `mount` is VAULT_LOGIN_MOUNT's value; `claims` the JWT that was sent.
pub fn login_hints(
    err: &VaultError,
    mount: &str,
    namespace: Option<&str>,
    claims: Option<&Claims>,
    now: i64,
) -> String {
    let mut hints: Vec<String> = Vec::new();
    let mounts_of = match namespace {
        Some(ns) => format!("in namespace {ns} (VAULT_NAMESPACE)"),
        None => "in the root namespace: VAULT_NAMESPACE is not set, and on HCP Vault or Vault Enterprise \
                 the auth method usually lives in a namespace (HCP: admin)"
            .to_string(),
    };
    let jwt = claims.map(|c| format!("JWT {}", c.describe(now)));
    match err.status().map(|s| s.as_u16()) {
        Some(403) if is_bare_denial(err) => {
            hints.extend(jwt);
            hints.push(format!(
                "a bare \"permission denied\" means one of two things: no kubernetes auth method is mounted at auth/{mount} \
                 (VAULT_LOGIN_MOUNT={mount}; `vault auth list` shows the mounts {mounts_of}), or Vault could not review the JWT with the \
                 TokenReview API: check with `vault read auth/{mount}/config` that token_reviewer_jwt is a valid token of \
                 Vault's reviewer service account, that this account is bound to the system:auth-delegator cluster role, \
                 that kubernetes_ca_cert is the cluster's CA, and that kubernetes_host is reachable from Vault (not only from your machine)"
            ));
            // The claims Vault checks itself have their own messages; only expiry is worth
            // repeating here, as a reviewer rejects an expired token too.
            if let Some(exp) = claims.and_then(|c| c.exp).filter(|exp| *exp <= now) {
                hints.push(format!(
                    "the JWT expired {}s ago: the kubelet refreshes projected tokens; check that VAULT_LOGIN_JWT_FILE is the projected file",
                    now.saturating_sub(exp)
                ));
            }
        }
        Some(403) => {
            hints.extend(jwt);
            if let Some(c) = claims {
                hints.extend(c.hints(now));
            }
        }
        // OpenBao's answer for an `X-Vault-Namespace` that names no namespace.
        Some(404) if err.mentions("namespace not found") => hints.push(format!(
            "there is no namespace {} on this server: VAULT_NAMESPACE must name an existing namespace, \
             its full path from the root (`vault namespace list` in the parent namespace shows them)",
            namespace.unwrap_or("(none)")
        )),
        Some(400) if err.mentions("invalid role name") => hints.push(format!(
            "no such role on auth/{mount}: VAULT_LOGIN_ROLE must name a role that exists there (`vault list auth/{mount}/role`)"
        )),
        Some(500) if err.mentions("could not load backend configuration") => hints.push(format!(
            "the kubernetes auth method at auth/{mount} has no configuration: write auth/{mount}/config (kubernetes_host, kubernetes_ca_cert, token_reviewer_jwt)"
        )),
        _ => {}
    }
    if hints.is_empty() {
        String::new()
    } else {
        format!(" ({})", hints.join("; "))
    }
}

/// Whether a 403 says only "permission denied": no claim, audience or binding message. Vault
/// >= 1.17 wraps it as `1 error occurred:\n\t* permission denied\n\n`.
fn is_bare_denial(err: &VaultError) -> bool {
    let VaultError::Status { errors, .. } = err else {
        return false;
    };
    let words = |e: &String| {
        e.split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
            .map(str::to_ascii_lowercase)
            .collect::<Vec<_>>()
    };
    let noise = ["permission", "denied", "error", "errors", "occurred"];
    errors.iter().all(|e| {
        words(e)
            .iter()
            .all(|w| noise.contains(&w.as_str()) || w.chars().all(|c| c.is_ascii_digit()))
    })
}

/// What the tutorial's "verify" step reads in `vault write auth/kubernetes/login` output, from
/// a successful login: everything but the token, and only the accessor's first characters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verify {
    /// The accessor's first four characters and an ellipsis.
    pub token_accessor: String,
    /// The TTL as the vault CLI prints it (`1h`, `59m30s`).
    pub token_duration: String,
    /// Whether the token may be renewed.
    pub token_renewable: bool,
    /// The token's policies.
    pub token_policies: Vec<String>,
    /// `token_meta_*` values in [`TOKEN_META_KEYS`] order; `n/a` for a missing or empty one.
    pub token_meta: [String; 5],
}

impl Verify {
    /// The fields of `auth` the tutorial's verify step shows.
    pub fn of(auth: &Auth) -> Verify {
        let meta = |key: &str| match auth.metadata.get(key).and_then(|v| v.as_str()) {
            Some(v) if !v.is_empty() => v.to_string(),
            _ => "n/a".to_string(),
        };
        Verify {
            token_accessor: auth.accessor.prefix(4),
            token_duration: short_duration(auth.lease_duration),
            token_renewable: auth.renewable,
            token_policies: auth.policies.clone(),
            token_meta: TOKEN_META_KEYS.map(meta),
        }
    }
}

/// What a login's line says beside Vault's answer.
#[derive(Clone, Copy, Debug)]
pub struct Login<'a> {
    /// From the request's sending to its answer.
    pub took: Duration,
    /// Whether the answer came too late to count the token's life from the sending (its
    /// remaining life is asked next).
    pub late: bool,
    /// Whether the new token replaced a live one in the file.
    pub replaced: bool,
    /// What the loop does next, and in how long.
    pub next: &'a str,
    /// How long until `next`, rounded for reading.
    pub next_in: &'a str,
}

/// Logs the one line a login gives, `login succeeded`, with the [`Verify`] fields (never the
/// token), how long it took and whether that was late, whether it replaced a live token, and
/// what the loop does next and when.
pub fn log_login(auth: &Auth, login: &Login) {
    let v = Verify::of(auth);
    let [name, namespace, secret_name, uid, role] = &v.token_meta;
    info!(
        token_accessor = %v.token_accessor,
        token_duration = %v.token_duration,
        token_renewable = v.token_renewable,
        token_type = %auth.token_type,
        token_policies = ?v.token_policies,
        token_meta_service_account_name = %name,
        token_meta_service_account_namespace = %namespace,
        token_meta_service_account_secret_name = %secret_name,
        token_meta_service_account_uid = %uid,
        token_meta_role = %role,
        took = %brief(login.took),
        late = login.late,
        replaced = login.replaced,
        next = login.next,
        next_in = login.next_in,
        "login succeeded"
    );
}

/// A duration as the vault CLI prints TTLs: `1h`, `1h30m`, `45s`, `0s`.
pub fn short_duration(d: Duration) -> String {
    let s = d.as_secs();
    let (h, m, s) = (s / 3600, s / 60 % 60, s % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 || out.is_empty() {
        out.push_str(&format!("{s}s"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sensitive::Secret;
    use reqwest::StatusCode;

    const NOW: i64 = 1_800_000_000;

    fn status(code: u16, errors: &[&str]) -> VaultError {
        VaultError::Status {
            op: "POST http://dev-vault:8200/v1/auth/kubernetes/login".into(),
            status: StatusCode::from_u16(code).unwrap(),
            errors: errors.iter().map(|e| e.to_string()).collect(),
            retry_after: None,
        }
    }

    fn claims(exp: i64) -> Claims {
        Claims {
            sub: Some("system:serviceaccount:default:default".into()),
            aud: vec!["k3s".into()],
            exp: Some(exp),
            ..Claims::default()
        }
    }

    /// (error, mount, claims, must contain, must not contain)
    type Case<'a> = (
        VaultError,
        &'a str,
        Option<&'a Claims>,
        Vec<&'a str>,
        Vec<&'a str>,
    );

    #[test]
    fn hint_table() {
        let live = claims(NOW + 600);
        let expired = claims(NOW - 30);
        let cases: Vec<Case> = vec![
            (
                status(403, &["permission denied"]),
                "kubernetes",
                Some(&live),
                vec![
                    "VAULT_LOGIN_MOUNT=kubernetes",
                    "auth/kubernetes",
                    "token_reviewer_jwt",
                    "system:auth-delegator",
                    "kubernetes_ca_cert",
                    "kubernetes_host is reachable from Vault",
                    "sub=system:serviceaccount:default:default",
                ],
                vec!["audiences are", "must bind", "expired"],
            ),
            (
                status(403, &["1 error occurred:\n\t* permission denied\n\n"]),
                "k8s/prod",
                None,
                vec!["VAULT_LOGIN_MOUNT=k8s/prod", "vault read auth/k8s/prod/config"],
                vec!["JWT sub"],
            ),
            (
                status(403, &["permission denied"]),
                "kubernetes",
                Some(&expired),
                vec!["token_reviewer_jwt", "the JWT expired 30s ago"],
                vec![],
            ),
            (
                status(
                    403,
                    &["invalid audience (aud) claim: audience claim does not match any expected audience"],
                ),
                "kubernetes",
                Some(&live),
                vec!["audiences are [\"k3s\"]", "\"default\" in namespace \"default\""],
                vec!["token_reviewer_jwt", "VAULT_LOGIN_MOUNT"],
            ),
            (
                status(403, &["service account name not authorized"]),
                "kubernetes",
                Some(&live),
                vec!["bound_service_account_names"],
                vec!["token_reviewer_jwt"],
            ),
            (
                status(400, &["invalid role name \"defualt\""]),
                "kubernetes",
                Some(&live),
                vec!["VAULT_LOGIN_ROLE", "vault list auth/kubernetes/role"],
                vec!["token_reviewer_jwt"],
            ),
            (
                status(500, &["1 error occurred:\n\t* could not load backend configuration\n\n"]),
                "kubernetes",
                Some(&live),
                vec!["write auth/kubernetes/config"],
                vec![],
            ),
            (status(503, &["Vault is sealed"]), "kubernetes", Some(&live), vec![], vec!["("]),
            (
                VaultError::Transport {
                    op: "POST x".into(),
                    message: "timed out".into(),
                },
                "kubernetes",
                Some(&live),
                vec![],
                vec!["("],
            ),
        ];
        for (err, mount, c, want, unwanted) in cases {
            let text = login_hints(&err, mount, None, c, NOW);
            for w in want {
                assert!(text.contains(w), "{err}: want {w:?} in {text:?}");
            }
            for u in unwanted {
                assert!(!text.contains(u), "{err}: {u:?} not wanted in {text:?}");
            }
            if !text.is_empty() {
                assert!(text.starts_with(" (") && text.ends_with(')'), "{text}");
                assert!(!text.contains('\n'), "one line: {text}");
            }
        }
    }

    #[test]
    fn a_bare_denial_says_which_namespace_was_searched() {
        let denied = status(403, &["permission denied"]);
        let root = login_hints(&denied, "kubernetes", None, None, NOW);
        assert!(root.contains("VAULT_NAMESPACE is not set"), "{root}");
        assert!(root.contains("(HCP: admin)"), "{root}");
        let admin = login_hints(&denied, "kubernetes", Some("admin"), None, NOW);
        assert!(
            admin.contains("in namespace admin (VAULT_NAMESPACE)"),
            "{admin}"
        );
        assert!(!admin.contains("is not set"), "{admin}");
    }

    #[test]
    fn an_unknown_namespace_is_named_with_what_to_check() {
        let gone = status(404, &["namespace not found"]);
        let text = login_hints(&gone, "kubernetes", Some("adm1n"), None, NOW);
        assert!(text.contains("there is no namespace adm1n"), "{text}");
        assert!(text.contains("VAULT_NAMESPACE"), "{text}");
        assert_eq!(
            login_hints(&status(404, &[]), "kubernetes", Some("x"), None, NOW),
            ""
        );
    }

    #[test]
    fn only_a_message_without_detail_is_bare() {
        for bare in [
            "permission denied",
            "Permission Denied",
            "1 error occurred:\n\t* permission denied\n\n",
        ] {
            assert!(is_bare_denial(&status(403, &[bare])), "{bare:?}");
        }
        assert!(is_bare_denial(&status(403, &[])));
        for detailed in [
            "namespace not authorized",
            "2 errors occurred:\n\t* permission denied\n\t* invalid token\n\n",
            "invalid expiration time (exp) claim: token is expired",
        ] {
            assert!(!is_bare_denial(&status(403, &[detailed])), "{detailed:?}");
        }
    }

    #[test]
    fn verify_fields_follow_the_cli_and_hide_the_token() {
        let mut metadata = serde_json::Map::new();
        for (k, v) in [
            ("role", "default"),
            ("service_account_name", "default"),
            ("service_account_namespace", "default"),
            ("service_account_secret_name", ""),
            (
                "service_account_uid",
                "c4636638-7d29-471c-a88d-33f167937b2d",
            ),
        ] {
            metadata.insert(k.into(), v.into());
        }
        let auth = Auth {
            client_token: Secret::new("hvs.secrettokenvalue"),
            accessor: Secret::new("wQoJ359SrX8RwRxg0VqyjATS"),
            policies: vec!["default".into()],
            lease_duration: Duration::from_secs(3600),
            renewable: true,
            token_type: "service".into(),
            entity_id: String::new(),
            metadata,
        };
        let v = Verify::of(&auth);
        assert_eq!(
            v,
            Verify {
                token_accessor: "wQoJ…".into(),
                token_duration: "1h".into(),
                token_renewable: true,
                token_policies: vec!["default".into()],
                token_meta: [
                    "default".into(),
                    "default".into(),
                    "n/a".into(),
                    "c4636638-7d29-471c-a88d-33f167937b2d".into(),
                    "default".into(),
                ],
            }
        );
        assert!(!format!("{v:?}").contains("secrettokenvalue"));
    }

    #[test]
    fn durations_print_like_the_vault_cli() {
        for (secs, want) in [
            (0, "0s"),
            (1, "1s"),
            (59, "59s"),
            (60, "1m"),
            (3600, "1h"),
            (3570, "59m30s"),
            (5400, "1h30m"),
            (90061, "25h1m1s"),
        ] {
            assert_eq!(short_duration(Duration::from_secs(secs)), want);
        }
        assert_eq!(short_duration(Duration::from_millis(999)), "0s");
    }
}
