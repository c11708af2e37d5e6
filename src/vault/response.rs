//! Vault's answers: the JSON envelopes of auth, secret and lease responses, their errors, and
//! the typed results the client hands back, with bounded excerpts of anything unexpected.

use std::fmt;
use std::time::Duration;

use reqwest::StatusCode;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;

use crate::machine::events::Grant;
use crate::machine::failure::{self, Failure, FailureKind};
use crate::sensitive::Secret;

/// The longest TTL we take from an answer (10 years): a larger `lease_duration` (up to
/// `u64::MAX` seconds from a broken or hostile server) would overflow the loop's deadlines.
pub const MAX_LEASE: Duration = Duration::from_secs(10 * 365 * 24 * 60 * 60);

/// A Vault request failure, classified so callers can tell outages from configuration problems.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    /// No HTTP answer: connection refused or reset, DNS, TLS, timeout.
    #[error("{op}: {message}")]
    Transport {
        /// The request, e.g. `POST /v1/auth/kubernetes/login`.
        op: String,
        /// What went wrong, one line.
        message: String,
    },
    /// Vault answered with an error status and (usually) an `errors` list.
    #[error("{op}: Vault answered {status}: {}", display_errors(.errors))]
    Status {
        /// The request.
        op: String,
        /// The HTTP status.
        status: StatusCode,
        /// Vault's messages, verbatim (folded onto one line when printed).
        errors: Vec<String>,
        /// `Retry-After`, when Vault sent one.
        retry_after: Option<Duration>,
    },
    /// An answer that is not what Vault sends: HTML from a proxy, a body too large, missing fields.
    #[error("{op}: unexpected answer ({status}): {problem}")]
    BadResponse {
        /// The request.
        op: String,
        /// The HTTP status.
        status: StatusCode,
        /// What is wrong, with a short sanitised excerpt where that is safe.
        problem: String,
    },
}

fn display_errors(errors: &[String]) -> String {
    if errors.is_empty() {
        return "(no error message)".to_string();
    }
    // Vault >= 1.17 packs several errors in one multi-line string; keep the words, fold the lines.
    errors
        .iter()
        .map(|e| e.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect::<Vec<_>>()
        .join("; ")
}

impl VaultError {
    /// The error of a request `op` that needs a token when none is held (the driver's guard;
    /// the machine asks for such requests only with a live token).
    pub fn no_token(op: &str) -> VaultError {
        VaultError::Transport {
            op: op.to_string(),
            message: "no token held".into(),
        }
    }

    /// How the machine should treat it: the one classification ([`failure::classify`]) for
    /// Vault's answers, and for what is not one (no answer: transient; an unreadable body:
    /// transient when its status says Vault or a proxy in front of it is in trouble, as a
    /// proxy's HTML error page does, and not when a 2xx cannot be read).
    pub fn kind(&self) -> FailureKind {
        match self {
            VaultError::Transport { .. } => FailureKind::Transient,
            VaultError::Status { status, errors, .. } => {
                failure::classify(Some(status.as_u16()), errors)
            }
            VaultError::BadResponse { status, .. } if status.is_success() => FailureKind::Other,
            VaultError::BadResponse { .. } => FailureKind::Transient,
        }
    }

    /// The failure the machine is fed for it, saying `message`.
    pub fn failure(&self, message: String) -> Failure {
        Failure {
            kind: self.kind(),
            retry_after: self.retry_after(),
            message,
        }
    }

    /// Whether waiting and trying again can help without anyone changing Vault's configuration.
    pub fn is_transient(&self) -> bool {
        self.kind().is_transient()
    }

    /// Whether Vault refused the token or the login (403).
    pub fn is_permission_denied(&self) -> bool {
        matches!(self, VaultError::Status { status, .. } if *status == StatusCode::FORBIDDEN)
    }

    /// The HTTP status, when Vault answered.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            VaultError::Transport { .. } => None,
            VaultError::Status { status, .. } | VaultError::BadResponse { status, .. } => {
                Some(*status)
            }
        }
    }

    /// Whether any of Vault's messages contains `needle`.
    pub fn mentions(&self, needle: &str) -> bool {
        matches!(self, VaultError::Status { errors, .. } if errors.iter().any(|e| e.contains(needle)))
    }

    /// The wait Vault asked for with `Retry-After`.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            VaultError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// The `auth` block of a login or renewal answer.
#[derive(Clone)]
pub struct Auth {
    /// The Vault token.
    pub client_token: Secret,
    /// The token's accessor (empty for batch tokens).
    pub accessor: Secret,
    /// Policies attached to the token.
    pub policies: Vec<String>,
    /// The TTL Vault granted.
    pub lease_duration: Duration,
    /// Whether the token may be renewed.
    pub renewable: bool,
    /// `service` or `batch`.
    pub token_type: String,
    /// The identity entity.
    pub entity_id: String,
    /// Auth metadata (role, service account name and namespace...).
    pub metadata: serde_json::Map<String, Value>,
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Auth")
            .field("client_token", &self.client_token)
            .field("accessor", &self.accessor)
            .field("policies", &self.policies)
            .field("lease_duration", &self.lease_duration)
            .field("renewable", &self.renewable)
            .field("token_type", &self.token_type)
            .finish_non_exhaustive()
    }
}

impl Auth {
    /// Whether this is a batch token (never renewable).
    pub fn is_batch(&self) -> bool {
        self.token_type == "batch" || self.client_token.expose().starts_with("hvb.")
    }

    /// What a login granted, for the machine (a batch token is never renewable).
    pub fn grant(&self) -> Grant {
        Grant {
            ttl: self.lease_duration,
            renewable: self.renewable && !self.is_batch(),
            capped_warning: false,
        }
    }
}

/// A successful renewal: the new `auth` block and any warnings (e.g. the max-TTL cap).
#[derive(Clone, Debug)]
pub struct Renewal {
    /// The renewed token's auth block.
    pub auth: Auth,
    /// Vault's warnings, verbatim.
    pub warnings: Vec<String>,
}

impl Renewal {
    /// What the renewal granted, for the machine.
    pub fn grant(&self) -> Grant {
        Grant {
            ttl: self.auth.lease_duration,
            renewable: self.auth.renewable,
            capped_warning: failure::warns_of_cap(&self.warnings),
        }
    }
}

#[derive(Deserialize)]
pub(crate) struct Envelope {
    #[serde(default)]
    auth: Option<RawAuth>,
    #[serde(default)]
    warnings: Option<Vec<String>>,
    #[serde(default)]
    wrap_info: Option<Value>,
}

#[derive(Deserialize)]
pub(crate) struct RawAuth {
    #[serde(default)]
    client_token: String,
    #[serde(default)]
    accessor: String,
    #[serde(default)]
    policies: Option<Vec<String>>,
    #[serde(default)]
    lease_duration: u64,
    #[serde(default)]
    renewable: bool,
    #[serde(default)]
    token_type: Option<String>,
    #[serde(default)]
    entity_id: Option<String>,
    #[serde(default)]
    metadata: Option<serde_json::Map<String, Value>>,
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    errors: Option<Vec<String>>,
}

/// Turns a non-2xx answer into the matching [`VaultError`]; pure, so it can be fuzzed.
pub fn check_status(
    op: &str,
    status: StatusCode,
    retry_after: Option<Duration>,
    bytes: &[u8],
) -> Result<(), VaultError> {
    if status.is_success() {
        return Ok(());
    }
    let op = op.to_string();
    match serde_json::from_slice::<ErrorBody>(bytes) {
        Ok(ErrorBody { errors }) => Err(VaultError::Status {
            op,
            status,
            errors: errors.unwrap_or_default(),
            retry_after,
        }),
        Err(_) if bytes.is_empty() => Err(VaultError::Status {
            op,
            status,
            errors: Vec::new(),
            retry_after,
        }),
        Err(_) => Err(VaultError::BadResponse {
            op,
            status,
            problem: format!("body is not Vault's JSON: {}", excerpt(bytes)),
        }),
    }
}

/// Parses a whole login or renew-self answer (any status, any bytes) into the token's `auth`
/// block and Vault's warnings; pure, so it can be fuzzed.
pub fn parse_auth_response(
    op: &str,
    status: StatusCode,
    retry_after: Option<Duration>,
    bytes: &[u8],
) -> Result<Renewal, VaultError> {
    check_status(op, status, retry_after, bytes)?;
    let env: Envelope = parse_body(op, status, bytes, false)?;
    let warnings = env.warnings.unwrap_or_default();
    let auth = auth_from(op, status, env.auth, env.wrap_info.as_ref())?;
    Ok(Renewal { auth, warnings })
}

/// A secret's data: field names to values. `Debug` shows the field names only.
#[derive(Clone, Default, PartialEq)]
pub struct SecretData(serde_json::Map<String, Value>);

impl SecretData {
    /// Wraps a secret's fields.
    pub fn new(fields: serde_json::Map<String, Value>) -> Self {
        SecretData(fields)
    }

    /// The fields and values; call only to render the secret file.
    pub fn expose(&self) -> &serde_json::Map<String, Value> {
        &self.0
    }

    /// The field names, sorted (safe to show).
    pub fn field_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.0.keys().cloned().collect();
        names.sort();
        names
    }
}

impl Drop for SecretData {
    fn drop(&mut self) {
        // Like `Secret`: overwrite the values' heap buffers so they do not linger in freed memory.
        fn wipe(v: &mut Value) {
            match v {
                Value::String(s) => zeroize::Zeroize::zeroize(s),
                Value::Array(items) => items.iter_mut().for_each(wipe),
                Value::Object(map) => map.values_mut().for_each(wipe),
                _ => {}
            }
        }
        self.0.values_mut().for_each(wipe);
    }
}

impl fmt::Debug for SecretData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretData({:?}: ***)", self.field_names())
    }
}

/// A secret as Vault answered `GET /v1/<path>`.
#[derive(Clone, Debug)]
pub struct SecretRead {
    /// The secret's fields; for KV v2 the inner `data.data`, without the metadata.
    pub data: SecretData,
    /// The lease of a dynamic secret; empty for KV.
    pub lease_id: String,
    /// The lease's TTL (a dynamic secret) or refresh hint (KV v1's 768 h); zero for KV v2.
    pub lease_duration: Duration,
    /// Whether the lease can be renewed with `VaultClient::renew_lease`.
    pub renewable: bool,
    /// The KV v2 version read (`data.metadata.version`), when this is a KV v2 answer.
    pub kv2_version: Option<u64>,
    /// Vault's warnings, verbatim.
    pub warnings: Vec<String>,
}

impl SecretRead {
    /// Whether this is a dynamic secret with a lease that can be renewed.
    pub fn has_renewable_lease(&self) -> bool {
        self.renewable && !self.lease_id.is_empty()
    }

    /// The lease, for the machine, if this is a dynamic secret (KV has none; KV v1's
    /// `lease_duration` without a lease id is only a refresh hint).
    pub fn lease(&self) -> Option<Grant> {
        (!self.lease_id.is_empty() && !self.lease_duration.is_zero()).then_some(Grant {
            ttl: self.lease_duration,
            renewable: self.renewable,
            capped_warning: false,
        })
    }
}

/// A successful `sys/leases/renew`.
#[derive(Clone, Debug)]
pub struct LeaseRenewal {
    /// The lease renewed.
    pub lease_id: String,
    /// The TTL granted: less than asked once the lease nears its max TTL (see `warnings`).
    pub lease_duration: Duration,
    /// Whether it can be renewed again.
    pub renewable: bool,
    /// Vault's warnings, verbatim (e.g. the max-TTL cap).
    pub warnings: Vec<String>,
}

impl LeaseRenewal {
    /// What the renewal granted, for the machine. Vault says a lease reached its max TTL with
    /// its "TTL value is capped" warning; the machine also counts a grant shorter than the
    /// lease's first TTL as capped, for servers that do not warn.
    pub fn grant(&self) -> Grant {
        Grant {
            ttl: self.lease_duration,
            renewable: self.renewable,
            capped_warning: failure::warns_of_cap(&self.warnings),
        }
    }
}

#[derive(Deserialize)]
struct SecretEnvelope {
    #[serde(default)]
    lease_id: Option<String>,
    #[serde(default)]
    lease_duration: Option<u64>,
    #[serde(default)]
    renewable: Option<bool>,
    #[serde(default)]
    data: Option<serde_json::Map<String, Value>>,
    #[serde(default)]
    warnings: Option<Vec<String>>,
    #[serde(default)]
    wrap_info: Option<Value>,
}

/// The version of a KV v2 answer read at a `…/data/…` path, `None` for any other answer.
pub(crate) fn kv2_version(path: &str, data: &serde_json::Map<String, Value>) -> Option<u64> {
    let on_data_path = path.split('/').skip(1).any(|s| s == "data");
    let shaped = data.len() == 2 && data.contains_key("data") && data.contains_key("metadata");
    if !on_data_path || !shaped {
        return None;
    }
    data.get("metadata")?.get("version")?.as_u64()
}

/// Parses a whole secret read (any status, any bytes) for `path`; pure, so it can be fuzzed.
pub fn parse_secret_response(
    op: &str,
    status: StatusCode,
    path: &str,
    bytes: &[u8],
) -> Result<SecretRead, VaultError> {
    check_status(op, status, None, bytes)?;
    let env: SecretEnvelope = parse_body(op, status, bytes, true)?;
    let bad = |problem: &str| VaultError::BadResponse {
        op: op.to_string(),
        status,
        problem: problem.to_string(),
    };
    let Some(data) = env.data else {
        return Err(if env.wrap_info.is_some_and(|w| !w.is_null()) {
            bad("the answer is response-wrapped (wrap_info instead of data): check the path's wrapping policy")
        } else {
            bad("no data in the answer")
        });
    };
    // Wrapped at once, so every copy of the values is wiped when dropped.
    let mut data = SecretData(data);
    let kv2_version = kv2_version(path, &data.0);
    if kv2_version.is_some() {
        let inner = match data.0.remove("data") {
            Some(Value::Object(map)) => map,
            other => {
                drop(SecretData(
                    other.into_iter().map(|v| (String::new(), v)).collect(),
                ));
                serde_json::Map::new()
            }
        };
        data = SecretData(inner);
    }
    Ok(SecretRead {
        data,
        lease_id: env.lease_id.unwrap_or_default(),
        lease_duration: Duration::from_secs(env.lease_duration.unwrap_or(0)).min(MAX_LEASE),
        renewable: env.renewable.unwrap_or(false),
        kv2_version,
        warnings: env.warnings.unwrap_or_default(),
    })
}

/// Parses a whole `sys/leases/renew` answer (any status, any bytes); pure, so it can be fuzzed.
pub fn parse_lease_renewal(
    op: &str,
    status: StatusCode,
    bytes: &[u8],
) -> Result<LeaseRenewal, VaultError> {
    check_status(op, status, None, bytes)?;
    let env: SecretEnvelope = parse_body(op, status, bytes, true)?;
    let lease_id = env.lease_id.unwrap_or_default();
    if lease_id.is_empty() {
        return Err(VaultError::BadResponse {
            op: op.to_string(),
            status,
            problem: "no lease_id in the answer".to_string(),
        });
    }
    Ok(LeaseRenewal {
        lease_id,
        lease_duration: Duration::from_secs(env.lease_duration.unwrap_or(0)).min(MAX_LEASE),
        renewable: env.renewable.unwrap_or(false),
        warnings: env.warnings.unwrap_or_default(),
    })
}

/// Parses a 2xx body. A secret's body (`holds_secrets`) is never quoted, only where parsing
/// stopped; any other body is quoted as far as [`unquoted_excerpt`] finds it safe.
pub(crate) fn parse_body<T: DeserializeOwned>(
    op: &str,
    status: StatusCode,
    bytes: &[u8],
    holds_secrets: bool,
) -> Result<T, VaultError> {
    serde_json::from_slice(bytes).map_err(|e| VaultError::BadResponse {
        op: op.to_string(),
        status,
        problem: match (bytes.is_empty(), holds_secrets) {
            (true, _) => "empty body".to_string(),
            (false, true) => format!(
                "body is not Vault's JSON at line {} column {} (content not shown: it may hold a secret)",
                e.line(),
                e.column()
            ),
            (false, false) => format!("body is not Vault's JSON: {}", unquoted_excerpt(bytes, &e)),
        },
    })
}

/// An excerpt of a 2xx body that failed to parse, unless it may hold a secret: a successful
/// answer with a wrong-typed field, cut short or behind junk still holds `client_token` or
/// `wrap_info.token`, so say where parsing stopped instead of quoting it.
pub(crate) fn unquoted_excerpt(bytes: &[u8], e: &serde_json::Error) -> String {
    // Any '{' may start an object holding a token, even after junk, and "token" or "accessor"
    // may name one: quote only bodies with none of them (a proxy's or portal's HTML page).
    let names = |word: &[u8]| {
        bytes
            .windows(word.len())
            .any(|w| w.eq_ignore_ascii_case(word))
    };
    let may_hold_token = bytes.contains(&b'{') || names(b"token") || names(b"accessor");
    if may_hold_token {
        format!(
            "{} at line {} column {} (content not shown: it may hold a token)",
            match e.classify() {
                serde_json::error::Category::Data => "a field has an unexpected type or value",
                serde_json::error::Category::Eof => "the JSON is cut short",
                _ => "invalid JSON",
            },
            e.line(),
            e.column()
        )
    } else {
        excerpt(bytes)
    }
}

pub(crate) fn auth_from(
    op: &str,
    status: StatusCode,
    auth: Option<RawAuth>,
    wrap_info: Option<&Value>,
) -> Result<Auth, VaultError> {
    let bad = |problem: &str| VaultError::BadResponse {
        op: op.to_string(),
        status,
        problem: problem.to_string(),
    };
    // Never quote a JSON body here: it may hold a wrapping token or other secrets.
    let raw = match auth {
        Some(raw) if !raw.client_token.is_empty() => raw,
        Some(_) => return Err(bad("auth.client_token is empty")),
        None if wrap_info.is_some_and(|w| !w.is_null()) => {
            return Err(bad(
                "the answer is response-wrapped (wrap_info instead of auth): vault-login needs an unwrapped login; check the path's wrapping policy",
            ))
        }
        None => return Err(bad("no auth.client_token in the answer")),
    };
    Ok(Auth {
        client_token: Secret::new(raw.client_token),
        accessor: Secret::new(raw.accessor),
        policies: raw.policies.unwrap_or_default(),
        lease_duration: Duration::from_secs(raw.lease_duration).min(MAX_LEASE),
        renewable: raw.renewable,
        token_type: raw.token_type.unwrap_or_else(|| "service".into()),
        entity_id: raw.entity_id.unwrap_or_default(),
        metadata: raw.metadata.unwrap_or_default(),
    })
}

/// The first 120 characters of a non-JSON body, tags stripped and whitespace folded.
pub(crate) fn excerpt(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(4096)]);
    let mut out = String::new();
    let mut in_tag = false;
    for c in text.chars() {
        match c {
            '<' => {
                in_tag = true;
                out.push(' ');
            }
            '>' if in_tag => in_tag = false,
            _ if in_tag => {}
            c if c.is_control() || c.is_whitespace() => out.push(' '),
            c => out.push(c),
        }
    }
    let folded = out.split_whitespace().collect::<Vec<_>>().join(" ");
    let short: String = folded.chars().take(120).collect();
    if short.is_empty() {
        "(no text)".to_string()
    } else if folded.chars().count() > 120 {
        format!("{short:?}…")
    } else {
        format!("{short:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapped_login_is_explained_without_quoting() {
        let body = br#"{"auth":null,"wrap_info":{"token":"hvs.wrapsecret","ttl":300}}"#;
        let env: Envelope = parse_body("op", StatusCode::OK, body, false).unwrap();
        let err = auth_from("op", StatusCode::OK, env.auth, env.wrap_info.as_ref()).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("response-wrapped"));
        assert!(!text.contains("wrapsecret"));
    }
}
