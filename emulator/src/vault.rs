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

    /// 204 No Content: what Vault answers a successful revocation.
    pub fn no_content() -> Reply {
        Reply {
            status: 204,
            headers: Vec::new(),
            body: Body::Empty,
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

    /// An error as Vault's router returns it: folded into one `go-multierror` text
    /// (`1 error occurred:\n\t* ...\n\n`), or each message alone in the older form
    /// ([`State::legacy_errors`]).
    fn wrapped(legacy: bool, status: u16, messages: &[&str]) -> Reply {
        if legacy {
            return Reply::errors(status, &messages[..1.min(messages.len())]);
        }
        Reply::error(status, &multi_error(messages))
    }

    /// 403 for a token that is missing, unknown, expired or revoked.
    fn bad_token(legacy: bool, sent: bool) -> Reply {
        if sent {
            Reply::wrapped(legacy, 403, &["permission denied", "invalid token"])
        } else {
            Reply::wrapped(legacy, 403, &["permission denied"])
        }
    }
}

/// `go-multierror`'s text for `messages`, as Vault >= 1.17 sends it.
fn multi_error(messages: &[&str]) -> String {
    let mut text = match messages.len() {
        1 => "1 error occurred:\n".to_string(),
        n => format!("{n} errors occurred:\n"),
    };
    for m in messages {
        text.push_str(&format!("\t* {m}\n"));
    }
    text.push('\n');
    text
}

/// Routes one request. Faults have already been applied by the server.
pub(crate) fn handle(st: &mut State, req: &Request) -> Reply {
    let now = st.now();
    handle_at(st, req, now)
}

/// [`handle`] with the current time given, so the TTL arithmetic can be tested at chosen
/// instants.
fn handle_at(st: &mut State, req: &Request, now: SystemTime) -> Reply {
    let Some(path) = req.path.strip_prefix("/v1/") else {
        return Reply::errors::<&str>(404, &[]);
    };
    // Vault takes the namespace from the header, from a path prefix, or both joined.
    let (ns, path) = st.resolve(req.header("x-vault-namespace").unwrap_or_default(), path);
    // Secret engines, policies and leases have their own dispatch (secrets.rs).
    if let Some(reply) = crate::secrets::route(st, req, &ns, path, now) {
        return reply;
    }
    let write = matches!(req.method.as_str(), "POST" | "PUT");
    let read = req.method == "GET";
    match path {
        "auth/token/renew-self" if write => renew_self(st, req, &ns, now),
        "auth/token/lookup-self" if read => lookup_self(st, req, &ns, now),
        "auth/token/revoke-self" if write => revoke_self(st, req, &ns, now),
        _ => match path
            .strip_prefix("auth/")
            .and_then(|p| p.strip_suffix("/login"))
        {
            Some(mount) if !mount.is_empty() && write => login(st, req, &ns, mount, now),
            // Login paths are unauthenticated, so Vault routes them: an unsupported operation.
            Some(mount) if !mount.is_empty() && st.mount(&ns, mount).is_some() => {
                Reply::errors::<&str>(405, &[])
            }
            // Vault checks the token's policy before routing: with the `default` policy, or
            // no token, an unknown path or a wrong method is denied, never 404 or 405.
            _ => Reply::wrapped(st.legacy_errors, 403, &["permission denied"]),
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
        // `identity_policies` is `omitempty`: the emulator has no identity groups, so never.
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

fn login(st: &mut State, req: &Request, ns: &str, mount: &str, now: SystemTime) -> Reply {
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
    let now_f = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default();
    let sa = match jwt::validate(&token, &role, now_f) {
        Ok(sa) => sa,
        Err(refusal) => return Reply::error(refusal.status, refusal.message),
    };
    // The TokenReview comes after the claim checks; any failure of it is a bare 403.
    if st.review_fails(ns, mount) {
        return Reply::denied();
    }
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
    // CalculateTTL with no start time: both are now, truncated to the second.
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
        // `time.Now().Add(TTL)`: the precise login time plus the whole-second TTL.
        expire_time: now + Duration::from_secs(ttl.max(0).unsigned_abs()),
        last_renewal: None,
        renewals: 0,
    }
}

/// The caller's live token in this namespace, or the 403 Vault gives for anything else: a
/// valid token of another namespace is denied by the ACL (the default policy grants the token
/// endpoints in the token's own namespace only), so it is not called invalid.
fn caller<'a>(
    st: &'a mut State,
    req: &Request,
    ns: &str,
    now: SystemTime,
) -> Result<&'a mut TokenEntry, Reply> {
    let legacy = st.legacy_errors;
    let Some(token) = client_token(req) else {
        return Err(Reply::bad_token(legacy, false));
    };
    match st.tokens.live_mut(&token, now) {
        Some(t) if t.vault_ns == ns => Ok(t),
        Some(_) => Err(Reply::wrapped(legacy, 403, &["permission denied"])),
        None => Err(Reply::bad_token(legacy, true)),
    }
}

fn renew_self(st: &mut State, req: &Request, ns: &str, now: SystemTime) -> Reply {
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
        let message =
            format!("failed to renew entry: role {role_name} does not exist during renewal");
        return Reply::wrapped(st.legacy_errors, 500, &[&message]);
    };
    let input = TtlInput {
        increment,
        backend_ttl: secs(role.token_ttl),
        period: role.token_period.map(secs).unwrap_or(0),
        backend_max_ttl: secs(role.token_max_ttl),
        explicit_max_ttl,
    };
    // Vault truncates now and the issue time to the second; a refusal leaves the token alone.
    let outcome = match calculate_ttl(input, unix_secs(now), unix_secs(creation)) {
        Ok(o) => o,
        Err(message) => return Reply::wrapped(st.legacy_errors, 500, &[message]),
    };
    let t = match caller(st, req, ns, now) {
        Ok(t) => t,
        Err(reply) => return reply,
    };
    // `time.Now().Add(TTL)`: the precise renewal time plus the whole-second TTL.
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

fn lookup_self(st: &mut State, req: &Request, ns: &str, now: SystemTime) -> Reply {
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

fn revoke_self(st: &mut State, req: &Request, ns: &str, now: SystemTime) -> Reply {
    let id = match caller(st, req, ns, now) {
        Ok(t) if t.token_type == TokenType::Batch => {
            return Reply::error(400, "batch tokens cannot be revoked")
        }
        Ok(t) => t.id.clone(),
        Err(reply) => return reply,
    };
    st.tokens.revoke(&id);
    Reply::no_content()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokens::unix_now;
    use std::time::UNIX_EPOCH;

    /// A state with role `app` on the `kubernetes` mount, and a clock `base + millis` where
    /// `base` is the current whole second (so the service-account JWT is valid).
    struct Fixture {
        st: State,
        base: u64,
    }

    impl Fixture {
        fn new(ttl: u64, max: u64) -> Fixture {
            let mut st = State::new(crate::state::Clock::System);
            let role = Role {
                token_ttl: Duration::from_secs(ttl),
                token_max_ttl: Duration::from_secs(max),
                ..Role::default()
            };
            st.put_role("", "kubernetes", "app", role);
            let base = u64::try_from(unix_now()).unwrap();
            Fixture { st, base }
        }

        fn at(&self, millis: u64) -> SystemTime {
            UNIX_EPOCH + Duration::from_secs(self.base) + Duration::from_millis(millis)
        }

        fn call(&mut self, method: &str, path: &str, token: &str, body: &str, ms: u64) -> Reply {
            let mut headers = Vec::new();
            if !token.is_empty() {
                headers.push(("x-vault-token".to_string(), token.to_string()));
            }
            let req = Request {
                method: method.into(),
                path: path.into(),
                headers,
                body: body.into(),
                at: self.at(ms),
                sni: None,
            };
            let now = self.at(ms);
            handle_at(&mut self.st, &req, now)
        }

        fn login(&mut self, ms: u64) -> Value {
            let claims = jwt::sa_claims("default", "app", &[], 3600, unix_now());
            let body = json!({"role": "app", "jwt": jwt::sign(&claims)}).to_string();
            ok(self.call("POST", "/v1/auth/kubernetes/login", "", &body, ms))
        }

        fn renew(&mut self, token: &str, ms: u64) -> Reply {
            self.call("POST", "/v1/auth/token/renew-self", token, "", ms)
        }

        fn lookup(&mut self, token: &str, ms: u64) -> Reply {
            self.call("GET", "/v1/auth/token/lookup-self", token, "", ms)
        }

        fn expire_time(&self, token: &str) -> SystemTime {
            // `info` filters out expired tokens, so ask at the epoch.
            self.st.tokens.info(token, UNIX_EPOCH).unwrap().expire_time
        }
    }

    fn json_of(reply: &Reply) -> &Value {
        match &reply.body {
            Body::Json(v) => v,
            other => panic!("not JSON: {other:?}"),
        }
    }

    fn ok(reply: Reply) -> Value {
        assert_eq!(reply.status, 200, "{:?}", reply.body);
        json_of(&reply).clone()
    }

    fn capped(ttl: &str, max: &str) -> Value {
        json!([format!(
            "TTL of \"{ttl}\" exceeded the effective max_ttl of \"{max}\"; TTL value is capped accordingly"
        )])
    }

    #[test]
    fn normal_renewals_report_whole_second_ttls_and_expire_at_the_precise_time() {
        let mut f = Fixture::new(2, 600);
        let v = f.login(250);
        assert_eq!(v["auth"]["lease_duration"], 2);
        assert_eq!(v["warnings"], Value::Null);
        let token = v["auth"]["client_token"].as_str().unwrap().to_string();
        assert_eq!(f.expire_time(&token), f.at(2_250));
        for ms in [1_333, 2_777, 4_001] {
            let v = ok(f.renew(&token, ms));
            assert_eq!(v["auth"]["lease_duration"], 2, "at {ms} ms");
            assert_eq!(v["warnings"], Value::Null);
            assert_eq!(f.expire_time(&token), f.at(ms + 2_000));
        }
        // lookup-self: now 4.001 s rounds to 4 s, 2.001 s left → 2.
        let d = ok(f.lookup(&token, 4_001))["data"].clone();
        assert_eq!(d["creation_ttl"], 2);
        assert_eq!(d["ttl"], 2);
        assert_eq!(d["expire_time"], rfc3339(f.at(6_001)));
        assert_eq!(d["issue_time"], rfc3339(f.at(250)));
        assert_eq!(d["creation_time"], f.base);
        assert_eq!(d["last_renewal_time"], f.base + 4);
        // now 5.6 s rounds to 6 s: 0.401 s left → 0, still valid.
        assert_eq!(ok(f.lookup(&token, 5_600))["data"]["ttl"], 0);
        assert_eq!(f.lookup(&token, 6_000).status, 200);
        assert_eq!(f.lookup(&token, 6_001).status, 403);
    }

    #[test]
    fn a_renewal_in_the_last_partial_second_before_max_ttl_is_refused_and_the_token_lives_on() {
        // Logged in at x.600 with TTL 2 s and max TTL 5 s: Vault's deadline is the login second
        // truncated plus 5 s, i.e. base + 5 s, 600 ms before login + 5 s.
        let mut f = Fixture::new(2, 5);
        let token = f.login(600)["auth"]["client_token"]
            .as_str()
            .unwrap()
            .to_string();
        let info = f.st.tokens.info(&token, f.at(600)).unwrap();
        assert_eq!(info.max_expire_time, Some(f.at(5_000)));
        // now 2 s: 3 s left before the deadline, the full TTL fits.
        let v = ok(f.renew(&token, 2_000));
        assert_eq!(
            (v["auth"]["lease_duration"].clone(), v["warnings"].clone()),
            (json!(2), Value::Null)
        );
        // now 3.5 s → 3 s: exactly 2 s left, still not capped.
        let v = ok(f.renew(&token, 3_500));
        assert_eq!(
            (v["auth"]["lease_duration"].clone(), v["warnings"].clone()),
            (json!(2), Value::Null)
        );
        // now 4.6 s → 4 s: 1 s left: capped to 1 s with the warning; the token then outlives the
        // deadline by 600 ms.
        let v = ok(f.renew(&token, 4_600));
        assert_eq!(v["auth"]["lease_duration"], 1);
        assert_eq!(v["warnings"], capped("2s", "1s"));
        assert_eq!(f.expire_time(&token), f.at(5_600));
        // now 5.2 s → 5 s (400 ms before login + max TTL): no time left, the renewal is refused
        // and the token keeps its expiry.
        let r = f.renew(&token, 5_200);
        assert_eq!(r.status, 500);
        assert_eq!(
            json_of(&r)["errors"],
            json!(["1 error occurred:\n\t* past the max TTL, cannot renew\n\n"])
        );
        assert_eq!(f.expire_time(&token), f.at(5_600));
        let d = ok(f.lookup(&token, 5_200))["data"].clone();
        assert_eq!(d["ttl"], 0);
        assert_eq!(d["last_renewal_time"], f.base + 4);
        assert_eq!(f.st.tokens.info(&token, f.at(5_200)).unwrap().renewals, 3);
        // Valid for the remaining ~400 ms, then gone.
        assert_eq!(f.lookup(&token, 5_599).status, 200);
        assert_eq!(f.lookup(&token, 5_600).status, 403);
        assert_eq!(f.renew(&token, 5_600).status, 403);
    }

    fn errors_of(reply: &Reply) -> Value {
        json_of(reply)["errors"].clone()
    }

    #[test]
    fn bad_tokens_unknown_paths_and_500s_answer_as_vault_does_in_both_forms() {
        for legacy in [false, true] {
            let mut f = Fixture::new(2, 5);
            f.st.legacy_errors = legacy;
            let token = f.login(0)["auth"]["client_token"]
                .as_str()
                .unwrap()
                .to_string();
            let (bad_token, no_token, denied, past_max) = if legacy {
                (
                    json!(["permission denied"]),
                    json!(["permission denied"]),
                    json!(["permission denied"]),
                    json!(["past the max TTL, cannot renew"]),
                )
            } else {
                (
                    json!(["2 errors occurred:\n\t* permission denied\n\t* invalid token\n\n"]),
                    json!(["1 error occurred:\n\t* permission denied\n\n"]),
                    json!(["1 error occurred:\n\t* permission denied\n\n"]),
                    json!(["1 error occurred:\n\t* past the max TTL, cannot renew\n\n"]),
                )
            };
            for (method, path) in [
                ("POST", "/v1/auth/token/renew-self"),
                ("GET", "/v1/auth/token/lookup-self"),
                ("POST", "/v1/auth/token/revoke-self"),
            ] {
                let r = f.call(method, path, "hvs.unknown", "", 100);
                assert_eq!(
                    (r.status, errors_of(&r)),
                    (403, bad_token.clone()),
                    "{path}"
                );
                let r = f.call(method, path, "", "", 100);
                assert_eq!((r.status, errors_of(&r)), (403, no_token.clone()), "{path}");
            }
            // Unknown paths and wrong methods: denied before routing, never 404 or 405.
            for (method, path) in [
                ("GET", "/v1/secret/nope"),
                ("GET", "/v1/auth/token/renew-self"),
                ("POST", "/v1/auth/token/lookup-self"),
                ("DELETE", "/v1/auth/token/revoke-self"),
                ("GET", "/v1/auth/nomount/login"),
            ] {
                let r = f.call(method, path, &token, "", 100);
                assert_eq!(
                    (r.status, errors_of(&r)),
                    (403, denied.clone()),
                    "{method} {path}"
                );
            }
            // A login to a mount that does not exist: the auth method's plain denial.
            let r = f.call(
                "POST",
                "/v1/auth/nomount/login",
                "",
                r#"{"role":"app","jwt":"x"}"#,
                100,
            );
            assert_eq!(
                (r.status, errors_of(&r)),
                (403, json!(["permission denied"]))
            );
            // Past max TTL: a 500 wrapped as Vault's router wraps it.
            for ms in [1_500, 3_000, 4_500] {
                assert_eq!(f.renew(&token, ms).status, 200, "at {ms} ms");
            }
            let r = f.renew(&token, 5_200);
            assert_eq!((r.status, errors_of(&r)), (500, past_max));
        }
    }

    #[test]
    fn identity_policies_are_left_out_when_empty() {
        let mut f = Fixture::new(60, 600);
        let v = f.login(0);
        let auth = v["auth"].as_object().unwrap();
        assert!(!auth.contains_key("identity_policies"), "{v}");
        assert_eq!(auth["token_policies"], json!(["default"]));
        let token = auth["client_token"].as_str().unwrap().to_string();
        let v = ok(f.renew(&token, 1_000));
        assert!(!v["auth"]
            .as_object()
            .unwrap()
            .contains_key("identity_policies"));
    }

    #[test]
    fn a_login_capped_by_max_ttl_reports_whole_seconds() {
        let mut f = Fixture::new(3600, 90);
        let v = f.login(999);
        assert_eq!(v["auth"]["lease_duration"], 90);
        assert_eq!(v["warnings"], capped("1h", "1m30s"));
        let token = v["auth"]["client_token"].as_str().unwrap().to_string();
        assert_eq!(f.expire_time(&token), f.at(90_999));
        // now 30.5 s → 30 s: 60 s left before the deadline (base + 90 s).
        let v = ok(f.call(
            "POST",
            "/v1/auth/token/renew-self",
            &token,
            r#"{"increment": "2m"}"#,
            30_500,
        ));
        assert_eq!(v["auth"]["lease_duration"], 60);
        assert_eq!(v["warnings"], capped("2m", "1m"));
        assert_eq!(f.expire_time(&token), f.at(90_500));
    }
}
