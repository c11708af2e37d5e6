//! The Vault endpoints, as plain functions from a recorded [`Request`] to a [`Reply`]: routing,
//! kubernetes login, and the token endpoints `renew-self`, `lookup-self`, `revoke-self`.

use std::time::{Duration, SystemTime};

use serde_json::{json, Map, Value};

use crate::jwt;
use crate::state::{clean, State};
use crate::tokens::{
    calculate_ttl, namespace_id, parse_duration, random_base62, random_uuid, rfc3339, stable_uuid,
    unix_secs, ServiceAccount, TokenEntry, TtlInput,
};
use crate::{Request, Role, TokenType};

/// An HTTP answer before it is put on the wire.
#[derive(Debug)]
pub(crate) struct Reply {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Body,
}

#[derive(Debug)]
pub(crate) enum Body {
    Empty,
    Json(Value),
    Html(String),
    /// 8 MiB of JSON-looking junk, streamed.
    Oversized,
}

impl Reply {
    pub fn json(status: u16, value: Value) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: Body::Json(value),
        }
    }

    /// Vault's error shape: `{"errors":[...]}`.
    pub fn errors<S: AsRef<str>>(status: u16, errors: &[S]) -> Reply {
        let list: Vec<&str> = errors.iter().map(AsRef::as_ref).collect();
        Reply::json(status, json!({ "errors": list }))
    }

    fn error(status: u16, message: &str) -> Reply {
        Reply::errors(status, &[message])
    }

    fn denied() -> Reply {
        Reply::error(403, "permission denied")
    }
}

/// Routes one request. Faults have already been applied by the server.
pub(crate) fn handle(st: &mut State, req: &Request) -> Reply {
    let Some(path) = req.path.strip_prefix("/v1/") else {
        return Reply::errors::<&str>(404, &[]);
    };
    // Vault takes the namespace from the header, from a path prefix, or both joined.
    let (path_ns, path) = match path.strip_prefix("auth/") {
        Some(_) => ("", path),
        None => match path.find("/auth/") {
            Some(i) => (&path[..i], &path[i + 1..]),
            None => ("", path),
        },
    };
    let header_ns = clean(req.header("x-vault-namespace").unwrap_or_default());
    let ns = match (header_ns, clean(path_ns)) {
        (h, "") => h.to_string(),
        ("", p) => p.to_string(),
        (h, p) => format!("{h}/{p}"),
    };
    let write = matches!(req.method.as_str(), "POST" | "PUT");
    let read = req.method == "GET";
    let wrong_method = || Reply::errors::<&str>(405, &[]);
    match path {
        "auth/token/renew-self" if write => renew_self(st, req, &ns),
        "auth/token/lookup-self" if read => lookup_self(st, req, &ns),
        "auth/token/revoke-self" if write => revoke_self(st, req, &ns),
        "auth/token/renew-self" | "auth/token/lookup-self" | "auth/token/revoke-self" => {
            wrong_method()
        }
        _ => match path
            .strip_prefix("auth/")
            .and_then(|p| p.strip_suffix("/login"))
        {
            Some(mount) if !mount.is_empty() && write => login(st, req, &ns, mount),
            Some(mount) if !mount.is_empty() => wrong_method(),
            _ => Reply::errors::<&str>(404, &[]),
        },
    }
}

/// The request body as a JSON object; an empty body is `{}`.
fn body_object(req: &Request) -> Result<Map<String, Value>, Reply> {
    if req.body.trim().is_empty() {
        return Ok(Map::new());
    }
    match serde_json::from_str::<Value>(&req.body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(Reply::error(
            400,
            &format!("failed to parse JSON input: expected an object, got {other}"),
        )),
        Err(e) => Err(Reply::error(
            400,
            &format!("failed to parse JSON input: {e}"),
        )),
    }
}

fn string_field(body: &Map<String, Value>, name: &str) -> String {
    match body.get(name) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    }
}

/// The client token: `X-Vault-Token`, or `Authorization: Bearer`.
fn client_token(req: &Request) -> Option<String> {
    req.header("x-vault-token")
        .or_else(|| req.header("authorization")?.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_string)
}

/// The standard response envelope.
fn envelope(mount_type: &str, data: Value, auth: Value, warnings: &[String]) -> Value {
    json!({
        "request_id": random_uuid(),
        "lease_id": "",
        "renewable": false,
        "lease_duration": 0,
        "data": data,
        "wrap_info": null,
        "warnings": if warnings.is_empty() { Value::Null } else { json!(warnings) },
        "auth": auth,
        "mount_type": mount_type,
    })
}

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

fn token_type_name(t: TokenType) -> &'static str {
    match t {
        TokenType::Service => "service",
        TokenType::Batch => "batch",
    }
}

/// `policyutil.SanitizePolicies`: trimmed, `default` added, sorted, deduplicated.
fn sanitize_policies(policies: &[String]) -> Vec<String> {
    let mut out: Vec<String> = policies
        .iter()
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect();
    if !out.iter().any(|p| p == "root") {
        out.push("default".into());
    }
    out.sort();
    out.dedup();
    out
}

fn metadata(t: &TokenEntry) -> Value {
    json!({
        "role": t.role,
        "service_account_name": t.sa.name,
        "service_account_namespace": t.sa.namespace,
        "service_account_secret_name": t.sa.secret_name,
        "service_account_uid": t.sa.uid,
    })
}

/// The `auth` block of login and renew responses.
fn auth_block(t: &TokenEntry, ttl: i64) -> Value {
    json!({
        "client_token": t.id,
        "accessor": t.accessor,
        "policies": t.policies,
        "token_policies": t.policies,
        "identity_policies": null,
        "metadata": metadata(t),
        "lease_duration": ttl,
        "renewable": t.renewable,
        "entity_id": t.entity_id,
        "token_type": token_type_name(t.token_type),
        "orphan": true,
        "mfa_requirement": null,
        "num_uses": 0,
    })
}

fn login(st: &mut State, req: &Request, ns: &str, mount: &str) -> Reply {
    // Without a token, a path no mount claims is not a login path: Vault denies it.
    let Some(roles) = st.mount(ns, mount) else {
        return Reply::denied();
    };
    let body = match body_object(req) {
        Ok(b) => b,
        Err(reply) => return reply,
    };
    let role_name = string_field(&body, "role");
    if role_name.is_empty() {
        return Reply::error(400, "missing role");
    }
    let jwt_str = string_field(&body, "jwt");
    if jwt_str.is_empty() {
        return Reply::error(400, "missing jwt");
    }
    let Some(role) = roles.get(&role_name).cloned() else {
        return Reply::error(400, &format!("invalid role name {role_name:?}"));
    };
    let Some(token) = jwt::parse(&jwt_str) else {
        return Reply::denied();
    };
    let now = SystemTime::now();
    let now_f = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default();
    let sa = match jwt::validate(&token, &role, now_f) {
        Ok(sa) => sa,
        Err(refusal) => return Reply::error(refusal.status, refusal.message),
    };
    let wrap_ttl = match req.header("x-vault-wrap-ttl") {
        None => None,
        Some(v) => match parse_duration(&Value::String(v.to_string())) {
            Some(s) if s > 0 => Some(s),
            Some(_) => None,
            None => {
                return Reply::error(400, "error parsing X-Vault-Wrap-TTL header");
            }
        },
    };
    let now_s = unix_secs(now);
    let input = TtlInput {
        increment: 0,
        backend_ttl: secs(role.token_ttl),
        period: role.token_period.map(secs).unwrap_or(0),
        backend_max_ttl: secs(role.token_max_ttl),
        explicit_max_ttl: role.token_explicit_max_ttl.map(secs).unwrap_or(0),
    };
    let outcome = match calculate_ttl(input, now_s, now_s) {
        Ok(o) => o,
        Err(message) => return Reply::error(500, message),
    };
    let entry = new_token(
        ns,
        mount,
        &role_name,
        &role,
        sa,
        now,
        input,
        outcome.ttl,
        outcome.max_valid,
    );
    let auth = auth_block(&entry, outcome.ttl);
    let wrapped_accessor = entry.accessor.clone();
    st.tokens.insert(entry);
    let Some(ttl) = wrap_ttl else {
        return Reply::json(
            200,
            envelope("kubernetes", Value::Null, auth, &outcome.warnings),
        );
    };
    let (wrap_token, wrap_accessor) = (format!("hvs.{}", random_base62(24)), random_base62(24));
    st.tokens.remember(&wrap_token, &wrap_accessor);
    Reply::json(
        200,
        json!({
            "request_id": random_uuid(),
            "lease_id": "",
            "renewable": false,
            "lease_duration": 0,
            "data": null,
            "wrap_info": {
                "token": wrap_token,
                "accessor": wrap_accessor,
                "ttl": ttl,
                "creation_time": rfc3339(now),
                "creation_path": format!("auth/{}/login", clean(mount)),
                "wrapped_accessor": wrapped_accessor,
            },
            "warnings": null,
            "auth": null,
            "mount_type": "",
        }),
    )
}

#[allow(clippy::too_many_arguments)]
fn new_token(
    ns: &str,
    mount: &str,
    role_name: &str,
    role: &Role,
    sa: ServiceAccount,
    now: SystemTime,
    input: TtlInput,
    ttl: i64,
    max_valid: Option<i64>,
) -> TokenEntry {
    // Vault marks tokens made in a child namespace with the namespace's id.
    let suffix = if ns.is_empty() {
        String::new()
    } else {
        format!(".{}", namespace_id(ns))
    };
    let (id, accessor) = match role.token_type {
        TokenType::Service => (
            format!("hvs.{}{suffix}", random_base62(24)),
            format!("{}{suffix}", random_base62(24)),
        ),
        TokenType::Batch => (format!("hvb.{}", random_base62(138)), String::new()),
    };
    TokenEntry {
        id,
        accessor,
        token_type: role.token_type,
        renewable: role.renewable && role.token_type == TokenType::Service,
        policies: sanitize_policies(&role.token_policies),
        vault_ns: ns.to_string(),
        mount: clean(mount).to_string(),
        role: role_name.to_string(),
        entity_id: stable_uuid(&format!("entity:{ns}:{}:{}", clean(mount), sa.uid)),
        sa,
        creation_time: now,
        creation_ttl: ttl,
        explicit_max_ttl: input.explicit_max_ttl,
        period: input.period,
        max_valid,
        expire_time: now + Duration::from_secs(ttl.max(0).unsigned_abs()),
        last_renewal: None,
        renewals: 0,
    }
}

/// The caller's live token in this namespace, or the 403 Vault gives for anything else.
fn caller<'a>(
    st: &'a mut State,
    req: &Request,
    ns: &str,
    now: SystemTime,
) -> Result<&'a mut TokenEntry, Reply> {
    let token = client_token(req).ok_or_else(Reply::denied)?;
    st.tokens
        .live_mut(&token, now)
        .filter(|t| t.vault_ns == ns)
        .ok_or_else(Reply::denied)
}

fn renew_self(st: &mut State, req: &Request, ns: &str) -> Reply {
    let now = SystemTime::now();
    let (mount, role_name, creation, explicit_max_ttl) = match caller(st, req, ns, now) {
        Ok(t) if t.token_type == TokenType::Batch => {
            return Reply::error(400, "batch tokens cannot be renewed")
        }
        Ok(t) if !t.renewable => return Reply::error(400, "lease is not renewable"),
        Ok(t) => (
            t.mount.clone(),
            t.role.clone(),
            t.creation_time,
            t.explicit_max_ttl,
        ),
        Err(reply) => return reply,
    };
    let body = match body_object(req) {
        Ok(b) => b,
        Err(reply) => return reply,
    };
    let increment = match body.get("increment") {
        None | Some(Value::Null) => 0,
        Some(v) => match parse_duration(v) {
            Some(s) => s,
            None => return Reply::error(400, &format!("invalid increment {v}")),
        },
    };
    // Renewal re-reads the role, as the kubernetes auth method's renew callback does.
    let Some(role) = st
        .mount(ns, &mount)
        .and_then(|r| r.get(&role_name))
        .cloned()
    else {
        return Reply::error(
            500,
            &format!("failed to renew entry: role {role_name} does not exist during renewal"),
        );
    };
    let input = TtlInput {
        increment,
        backend_ttl: secs(role.token_ttl),
        period: role.token_period.map(secs).unwrap_or(0),
        backend_max_ttl: secs(role.token_max_ttl),
        explicit_max_ttl,
    };
    let outcome = match calculate_ttl(input, unix_secs(now), unix_secs(creation)) {
        Ok(o) => o,
        Err(message) => return Reply::error(500, message),
    };
    let Ok(t) = caller(st, req, ns, now) else {
        return Reply::denied();
    };
    t.expire_time = now + Duration::from_secs(outcome.ttl.max(0).unsigned_abs());
    t.max_valid = outcome.max_valid;
    t.period = input.period;
    t.renewals += 1;
    t.last_renewal = Some(now);
    Reply::json(
        200,
        envelope(
            "token",
            Value::Null,
            auth_block(t, outcome.ttl),
            &outcome.warnings,
        ),
    )
}

fn lookup_self(st: &mut State, req: &Request, ns: &str) -> Reply {
    let now = SystemTime::now();
    let t = match caller(st, req, ns, now) {
        Ok(t) => t,
        Err(reply) => return reply,
    };
    let mut data = json!({
        "accessor": t.accessor,
        "creation_time": unix_secs(t.creation_time),
        "creation_ttl": t.creation_ttl,
        "display_name": format!("{}-{}-{}", t.mount.replace('/', "-"), t.sa.namespace, t.sa.name),
        "entity_id": t.entity_id,
        "expire_time": rfc3339(t.expire_time),
        "explicit_max_ttl": t.explicit_max_ttl,
        "id": t.id,
        "issue_time": rfc3339(t.creation_time),
        "meta": metadata(t),
        "num_uses": 0,
        "orphan": true,
        "path": format!("auth/{}/login", t.mount),
        "policies": t.policies,
        "renewable": t.renewable,
        "ttl": t.ttl_secs(now),
        "type": token_type_name(t.token_type),
    });
    if let Some(at) = t.last_renewal {
        data["last_renewal_time"] = json!(unix_secs(at));
        data["last_renewal"] = json!(rfc3339(at));
    }
    if t.period > 0 {
        data["period"] = json!(t.period);
    }
    if !ns.is_empty() {
        data["namespace_path"] = json!(format!("{ns}/"));
    }
    Reply::json(200, envelope("token", data, Value::Null, &[]))
}

fn revoke_self(st: &mut State, req: &Request, ns: &str) -> Reply {
    let now = SystemTime::now();
    let id = match caller(st, req, ns, now) {
        Ok(t) if t.token_type == TokenType::Batch => {
            return Reply::error(400, "batch tokens cannot be revoked")
        }
        Ok(t) => t.id.clone(),
        Err(reply) => return reply,
    };
    st.tokens.revoke(&id);
    Reply {
        status: 204,
        headers: Vec::new(),
        body: Body::Empty,
    }
}
