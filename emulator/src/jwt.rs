//! Fake Kubernetes service-account JWTs: RS256 signing with the throwaway test key, and the
//! checks the kubernetes auth method makes on login (claims via hashicorp/cap, bound names and
//! namespaces, then the signature through the TokenReview API).

use std::sync::OnceLock;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{self, RsaKeyPair, UnparsedPublicKey};
use serde_json::{json, Map, Value};

use crate::tokens::{stable_uuid, ServiceAccount};
use crate::Role;

/// The issuer of in-cluster projected tokens.
pub(crate) const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

/// Clock skew the validator tolerates on `nbf`, `exp` and `iat` (go-jose's `DefaultLeeway`).
const LEEWAY_SECS: f64 = 60.0;

static KEY_PKCS8: &[u8] = include_bytes!("../testdata/sa-signing-key.pk8");

fn key() -> &'static RsaKeyPair {
    static KEY: OnceLock<RsaKeyPair> = OnceLock::new();
    KEY.get_or_init(|| {
        // The fixture is a valid 2048-bit PKCS#8 RSA key; the unit tests load it.
        RsaKeyPair::from_pkcs8(KEY_PKCS8).expect("testdata/sa-signing-key.pk8 is a valid RSA key")
    })
}

/// Claims shaped like a kubelet-projected token for `ns`/`sa`, issued at `now` (unix seconds).
pub(crate) fn sa_claims(ns: &str, sa: &str, aud: &[&str], ttl: i64, now: i64) -> Value {
    // An already expired token was issued before it expired, not in the future.
    let iat = if ttl < 0 { now + ttl - 3600 } else { now };
    json!({
        "aud": aud,
        "exp": now + ttl,
        "iat": iat,
        "nbf": iat,
        "iss": ISSUER,
        "sub": format!("system:serviceaccount:{ns}:{sa}"),
        "kubernetes.io": {
            "namespace": ns,
            "pod": {"name": format!("{sa}-7c9d5b6f4-x2v8k"), "uid": stable_uuid(&format!("pod:{ns}:{sa}"))},
            "serviceaccount": {"name": sa, "uid": stable_uuid(&format!("sa:{ns}:{sa}"))},
        },
    })
}

/// Signs `claims` with RS256 under the header `{"alg":"RS256","kid":"test"}`.
pub(crate) fn sign(claims: &Value) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","kid":"test"}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    let signing_input = format!("{header}.{payload}");
    let mut sig = vec![0; key().public().modulus_len()];
    // Signing with a valid key into a modulus-sized buffer cannot fail.
    key()
        .sign(
            &signature::RSA_PKCS1_SHA256,
            &SystemRandom::new(),
            signing_input.as_bytes(),
            &mut sig,
        )
        .expect("RSA signing with the test key");
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig))
}

/// A syntactically valid JWS with its claims; the signature is checked last, like Vault does.
pub(crate) struct Jwt {
    claims: Map<String, Value>,
    signature_ok: bool,
}

fn b64(part: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(part.trim_end_matches('=')).ok()
}

impl Jwt {
    /// The claims, as signed (the fake kube-apiserver's TokenReview reads them).
    pub(crate) fn claims(&self) -> &Map<String, Value> {
        &self.claims
    }

    /// Whether the test key signed it with RS256.
    pub(crate) fn signature_ok(&self) -> bool {
        self.signature_ok
    }

    /// The service account its claims name.
    pub(crate) fn service_account(&self) -> ServiceAccount {
        service_account(&self.claims)
    }
}

/// Parses a compact JWS; `None` when it is not one (Vault: 403 permission denied).
pub(crate) fn parse(token: &str) -> Option<Jwt> {
    let mut parts = token.trim().split('.');
    let (header, payload, sig) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let header: Map<String, Value> = serde_json::from_slice(&b64(header)?).ok()?;
    let claims: Map<String, Value> = serde_json::from_slice(&b64(payload)?).ok()?;
    let sig = b64(sig)?;
    let signing_input = &token.trim()[..token.trim().rfind('.')?];
    let public = UnparsedPublicKey::new(
        &signature::RSA_PKCS1_2048_8192_SHA256,
        key().public().as_ref(),
    );
    let signature_ok = header.get("alg").and_then(Value::as_str) == Some("RS256")
        && public.verify(signing_input.as_bytes(), &sig).is_ok();
    Some(Jwt {
        claims,
        signature_ok,
    })
}

/// Why a login was refused, with Vault's status and message.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub status: u16,
    pub message: &'static str,
}

const fn forbidden(message: &'static str) -> Refusal {
    Refusal {
        status: 403,
        message,
    }
}

/// Validates a parsed JWT for `role` at unix time `now`, in the kubernetes auth method's order.
pub(crate) fn validate(jwt: &Jwt, role: &Role, now: f64) -> Result<ServiceAccount, Refusal> {
    let c = &jwt.claims;
    if let Some(expected) = role.audience.as_deref().filter(|a| !a.trim().is_empty()) {
        let matches = match c.get("aud") {
            Some(Value::String(a)) => a == expected,
            Some(Value::Array(list)) => list.iter().any(|a| a.as_str() == Some(expected)),
            _ => false,
        };
        if !matches {
            return Err(forbidden(
                "invalid audience (aud) claim: audience claim does not match any expected audience",
            ));
        }
    }
    let time = |name: &str| c.get(name).and_then(Value::as_f64);
    if time("nbf").is_some_and(|nbf| now + LEEWAY_SECS < nbf) {
        return Err(forbidden(
            "invalid not before (nbf) claim: token not yet valid",
        ));
    }
    if time("exp").is_some_and(|exp| now - LEEWAY_SECS > exp) {
        return Err(forbidden(
            "invalid expiration time (exp) claim: token is expired",
        ));
    }
    if time("iat").is_some_and(|iat| now + LEEWAY_SECS < iat) {
        return Err(forbidden(
            "invalid issued at (iat) claim: token issued in the future",
        ));
    }
    let sa = service_account(c);
    let names = &role.bound_service_account_names;
    if (names.len() != 1 || names[0] != "*") && !names.iter().any(|g| glob(g, &sa.name)) {
        return Err(forbidden("service account name not authorized"));
    }
    let namespaces = &role.bound_service_account_namespaces;
    let ns_ok = namespaces.first().is_some_and(|first| first == "*")
        || namespaces.iter().any(|g| glob(g, &sa.namespace));
    if !ns_ok {
        return Err(forbidden("namespace not authorized"));
    }
    if sa.uid.is_empty() {
        return Err(Refusal {
            status: 500,
            message: "could not parse UID from claims",
        });
    }
    if !jwt.signature_ok {
        return Err(forbidden("permission denied"));
    }
    Ok(sa)
}

/// The service account named by projected (`kubernetes.io`) or legacy secret-based claims.
fn service_account(c: &Map<String, Value>) -> ServiceAccount {
    let s = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or_default().to_string();
    let legacy = |k: &str| s(c.get(&format!("kubernetes.io/serviceaccount/{k}")));
    match c.get("kubernetes.io") {
        Some(k) => ServiceAccount {
            name: s(k.pointer("/serviceaccount/name")),
            namespace: s(k.get("namespace")),
            uid: s(k.pointer("/serviceaccount/uid")),
            secret_name: legacy("secret.name"),
        },
        None => ServiceAccount {
            name: legacy("service-account.name"),
            namespace: legacy("namespace"),
            uid: legacy("service-account.uid"),
            secret_name: legacy("secret.name"),
        },
    }
}

/// go-secure-stdlib's `GlobbedStringsMatch`: only a leading and/or trailing `*` is special,
/// and a pattern shorter than two characters (a lone `*` too) must match exactly.
fn glob(pattern: &str, value: &str) -> bool {
    if pattern.len() < 2 {
        return pattern == value;
    }
    match (pattern.strip_prefix('*'), pattern.strip_suffix('*')) {
        (Some(_), Some(_)) => value.contains(&pattern[1..pattern.len() - 1]),
        (Some(suffix), None) => value.ends_with(suffix),
        (None, Some(prefix)) => value.starts_with(prefix),
        (None, None) => pattern == value,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000;

    fn login(token: &str, role: &Role) -> Result<ServiceAccount, Refusal> {
        validate(&parse(token).expect("parsable"), role, NOW as f64)
    }

    #[test]
    fn signed_tokens_verify_and_name_the_service_account() {
        let token = sign(&sa_claims("apps", "web", &["vault"], 600, NOW));
        let sa = login(&token, &Role::default()).unwrap();
        assert_eq!((sa.namespace.as_str(), sa.name.as_str()), ("apps", "web"));
        assert_eq!(sa.uid, stable_uuid("sa:apps:web"));
    }

    #[test]
    fn tampered_tokens_fail_last_with_permission_denied() {
        let token = sign(&sa_claims("apps", "web", &["vault"], 600, NOW));
        let (head, _) = token.rsplit_once('.').unwrap();
        let other = sign(&sa_claims("apps", "admin", &["vault"], 600, NOW));
        let forged = format!("{head}.{}", other.rsplit_once('.').unwrap().1);
        assert_eq!(
            login(&forged, &Role::default()).unwrap_err(),
            forbidden("permission denied")
        );
        // A claim check still reports its own message first, as Vault validates claims
        // before asking Kubernetes about the signature.
        let role = Role {
            audience: Some("other".into()),
            ..Role::default()
        };
        assert_eq!(login(&forged, &role).unwrap_err().status, 403);
        assert!(login(&forged, &role)
            .unwrap_err()
            .message
            .contains("audience"));
    }

    #[test]
    fn garbage_does_not_parse() {
        for bad in ["", "a.b", "a.b.c", "x.y.z.w", "e30.e30.!!!"] {
            assert!(parse(bad).is_none(), "{bad}");
        }
        assert!(parse(&format!("{}.e30.", URL_SAFE_NO_PAD.encode("{}"))).is_some());
    }

    #[test]
    fn time_claims_have_sixty_seconds_of_leeway() {
        let role = Role::default();
        assert!(login(&sign(&sa_claims("a", "b", &[], -60, NOW)), &role).is_ok());
        assert_eq!(
            login(&sign(&sa_claims("a", "b", &[], -61, NOW)), &role)
                .unwrap_err()
                .message,
            "invalid expiration time (exp) claim: token is expired"
        );
        let future = |field: &str, delta: i64| {
            let mut c = sa_claims("a", "b", &[], 600, NOW);
            c[field] = json!(NOW + delta);
            login(&sign(&c), &role).map(|_| ()).map_err(|r| r.message)
        };
        assert_eq!(future("nbf", 60), Ok(()));
        assert_eq!(
            future("nbf", 61),
            Err("invalid not before (nbf) claim: token not yet valid")
        );
        assert_eq!(
            future("iat", 61),
            Err("invalid issued at (iat) claim: token issued in the future")
        );
    }

    #[test]
    fn bound_names_and_namespaces_use_vault_globs() {
        let token = sign(&sa_claims("team-prod", "web-api", &["vault"], 600, NOW));
        let role = |names: &[&str], namespaces: &[&str]| Role {
            bound_service_account_names: names.iter().map(|s| s.to_string()).collect(),
            bound_service_account_namespaces: namespaces.iter().map(|s| s.to_string()).collect(),
            ..Role::default()
        };
        assert!(login(&token, &role(&["web-*"], &["*-prod"])).is_ok());
        assert!(login(&token, &role(&["*-api"], &["*am-p*"])).is_ok());
        assert!(login(&token, &role(&["web-api", "x"], &["team-prod"])).is_ok());
        assert_eq!(
            login(&token, &role(&["web"], &["*"])).unwrap_err().message,
            "service account name not authorized"
        );
        // Vault treats "*" specially only when it is the sole (or first) entry.
        assert_eq!(
            login(&token, &role(&["x", "*"], &["*"]))
                .unwrap_err()
                .message,
            "service account name not authorized"
        );
        assert!(login(&token, &role(&["*"], &["*", "x"])).is_ok());
        assert_eq!(
            login(&token, &role(&["*"], &["team-*-x", "prod"]))
                .unwrap_err()
                .message,
            "namespace not authorized"
        );
        assert_eq!(
            login(&token, &role(&["*"], &[])).unwrap_err().message,
            "namespace not authorized"
        );
    }

    #[test]
    fn audience_must_be_in_the_aud_list() {
        let role = Role {
            audience: Some("vault".into()),
            ..Role::default()
        };
        assert!(login(&sign(&sa_claims("a", "b", &["x", "vault"], 60, NOW)), &role).is_ok());
        let mut c = sa_claims("a", "b", &[], 60, NOW);
        c["aud"] = json!("vault");
        assert!(login(&sign(&c), &role).is_ok());
        assert_eq!(
            login(&sign(&sa_claims("a", "b", &["k3s"], 60, NOW)), &role)
                .unwrap_err()
                .message,
            "invalid audience (aud) claim: audience claim does not match any expected audience"
        );
    }

    #[test]
    fn legacy_secret_claims_are_understood() {
        let c = json!({
            "iss": "kubernetes/serviceaccount",
            "kubernetes.io/serviceaccount/namespace": "apps",
            "kubernetes.io/serviceaccount/service-account.name": "web",
            "kubernetes.io/serviceaccount/service-account.uid": "u-1",
            "kubernetes.io/serviceaccount/secret.name": "web-token-abcde",
        });
        let sa = login(&sign(&c), &Role::default()).unwrap();
        assert_eq!(sa.secret_name, "web-token-abcde");
        assert_eq!(sa.uid, "u-1");
    }
}
