//! The Vault endpoints, as plain functions from a recorded [`Request`] to a [`Reply`]: the router
//! (health, namespace, login, token check, then the token endpoints or `access.rs`), the
//! kubernetes login, and the token endpoints `renew-self`, `lookup-self`, `revoke-self`.

use std::time::{Duration, SystemTime};

use serde_json::{json, Value};

use crate::access::{self, body_object, capability, Caller};
use crate::flavour::Flavour;
use crate::health;
use crate::jwt;
use crate::paths::clean;
use crate::reply::{envelope, Envelope, Reply};
use crate::state::State;
use crate::tokens::{
    calculate_ttl, display_name, parse_duration, parse_increment, rfc3339, stable_uuid, unix_secs,
    ServiceAccount, TokenEntry, TtlInput,
};
use crate::{Request, Role, TokenType};

/// Routes one request. Faults have already been applied by the server.
pub(crate) fn handle(st: &mut State, req: &Request) -> Reply {
    let now = st.now();
    handle_at(st, req, now)
}

/// What a sealed server answers: the health endpoints, else 503 `Vault is sealed`.
pub(crate) fn sealed(st: &State, req: &Request) -> Reply {
    let path = req.path.strip_prefix("/v1/").unwrap_or_default();
    let header = req.header("x-vault-namespace").unwrap_or_default();
    health::answer(
        &st.cluster,
        &req.method,
        header,
        path,
        &req.query,
        true,
        st.now(),
    )
    .unwrap_or_else(|| Reply::error(503, "Vault is sealed"))
}

/// [`handle`] with the current time given, so the TTL arithmetic can be tested at chosen
/// instants.
fn handle_at(st: &mut State, req: &Request, now: SystemTime) -> Reply {
    let Some(path) = req.path.strip_prefix("/v1/") else {
        return Reply::errors::<&str>(404, &[]);
    };
    let header = req.header("x-vault-namespace").unwrap_or_default();
    let health = health::answer(
        &st.cluster,
        &req.method,
        header,
        path,
        &req.query,
        false,
        now,
    );
    if let Some(reply) = health {
        return reply;
    }
    // Vault takes the namespace from the header, from a path prefix, or both joined.
    let (ns, path) = match st.resolve(header, path) {
        Some(resolved) => resolved,
        None if st.flavour.refuses_unknown_namespaces() => {
            return Reply::error(404, "namespace not found")
        }
        // An empty namespace: nothing is mounted there, nothing allowed.
        None => (clean(header).to_string(), path),
    };
    let write = matches!(req.method.as_str(), "POST" | "PUT");
    let login_mount = path
        .strip_prefix("auth/")
        .and_then(|p| p.strip_suffix("/login"))
        .filter(|m| !m.is_empty());
    if let Some(mount) = login_mount {
        // Login paths are unauthenticated: a mount that exists is routed (an unsupported
        // operation is its own bare 405), and a login to one that does not is denied.
        match (st.mount(&ns, mount).is_some(), write) {
            (true, true) => return login(st, req, &ns, mount, now),
            (true, false) => return Reply::error(405, "unsupported operation"),
            (false, true) => return Reply::error(403, "permission denied"),
            (false, false) => {}
        }
    }
    let caller = match access::caller(st, req, now) {
        Ok(c) => c,
        Err(reply) => return reply,
    };
    if let Some(rest) = path.strip_prefix("sys/internal/ui/mounts/") {
        return access::ui_mount(st, req, &caller, &ns, rest);
    }
    match path {
        "auth/token/renew-self" | "auth/token/lookup-self" | "auth/token/revoke-self" => {
            token_endpoint(st, req, &caller, &ns, path, now)
        }
        _ => access::route(st, req, &caller, &ns, path, now),
    }
}

/// One of the token endpoints, for a live token: the ACL is checked where the flavour looks the
/// token up (OpenBao: the token's own namespace, whatever the request named; Vault: the
/// request's, so a token of another namespace is denied).
fn token_endpoint(
    st: &mut State,
    req: &Request,
    caller: &Caller,
    ns: &str,
    path: &str,
    now: SystemTime,
) -> Reply {
    let acl_ns = if st.flavour.token_endpoints_follow_the_token() {
        caller.ns.as_str()
    } else {
        ns
    };
    if let Err(reply) = access::authorize(st, caller, acl_ns, path, capability(&req.method)) {
        return reply;
    }
    let write = matches!(req.method.as_str(), "POST" | "PUT");
    match path {
        "auth/token/renew-self" if write => renew_self(st, req, &caller.token, now),
        "auth/token/lookup-self" if write || req.method == "GET" => {
            lookup_self(st, &caller.token, now)
        }
        "auth/token/revoke-self" if write => revoke_self(st, &caller.token, now),
        _ => Reply::wrapped(405, "unsupported operation"),
    }
}

fn string_field(body: &serde_json::Map<String, Value>, name: &str) -> String {
    match body.get(name) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    }
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

/// An answer carrying a token (login, renew-self).
fn auth_answer(flavour: Flavour, auth: Value, warnings: &[String], mount_type: &str) -> Reply {
    let parts = Envelope {
        auth,
        warnings,
        ..Envelope::data(Value::Null, mount_type)
    };
    Reply::json(200, envelope(flavour, parts))
}

fn login(st: &mut State, req: &Request, ns: &str, mount: &str, now: SystemTime) -> Reply {
    let Some(roles) = st.mount(ns, mount) else {
        return Reply::error(403, "permission denied");
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
        return Reply::error(403, "permission denied");
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
        return Reply::error(403, "permission denied");
    }
    let wrap_ttl = match req.header("x-vault-wrap-ttl") {
        None => None,
        Some(v) => match parse_duration(&Value::String(v.to_string())) {
            Some(s) if s > 0 => Some(s),
            Some(_) => None,
            None => {
                return Reply::error(
                    400,
                    &format!("error parsing X-Vault-Wrap-TTL header: time: invalid duration {v:?}"),
                );
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
        Err(message) => return Reply::wrapped(500, message),
    };
    let issued = Issued {
        ns,
        mount,
        role_name: &role_name,
        role: &role,
        input,
        ttl: outcome.ttl,
        max_valid: outcome.max_valid,
    };
    let entry = new_token(st.flavour, issued, sa, now);
    let auth = auth_block(&entry, outcome.ttl);
    let wrapped_accessor = entry.accessor.clone();
    st.tokens.insert(entry);
    let Some(ttl) = wrap_ttl else {
        return auth_answer(st.flavour, auth, &outcome.warnings, "kubernetes");
    };
    let flavour = st.flavour;
    let (wrap_token, wrap_accessor) = flavour.service_token(None);
    st.tokens.remember(&wrap_token, &wrap_accessor);
    let mut body = json!({
        "request_id": flavour.wrapped_request_id(),
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
    });
    if flavour.sends_mount_type() {
        body["mount_type"] = json!("");
    }
    Reply::json(200, body)
}

/// What a login decided, for [`new_token`].
struct Issued<'a> {
    ns: &'a str,
    mount: &'a str,
    role_name: &'a str,
    role: &'a Role,
    input: TtlInput,
    ttl: i64,
    max_valid: Option<i64>,
}

fn new_token(flavour: Flavour, issued: Issued, sa: ServiceAccount, now: SystemTime) -> TokenEntry {
    let Issued {
        ns,
        mount,
        role_name,
        role,
        input,
        ttl,
        max_valid,
    } = issued;
    // Tokens made in a child namespace carry the namespace's id.
    let nsid = (!ns.is_empty()).then(|| flavour.namespace_id(ns));
    let (id, accessor) = match role.token_type {
        TokenType::Service => flavour.service_token(nsid.as_deref()),
        TokenType::Batch => (flavour.batch_token(), String::new()),
    };
    // OpenBao's batch tokens carry their creation time in whole seconds.
    let created = if role.token_type == TokenType::Batch && flavour.batch_whole_seconds() {
        crate::tokens::from_unix(unix_secs(now))
    } else {
        now
    };
    let entity = stable_uuid(&format!("entity:{ns}:{}:{}", clean(mount), sa.uid));
    TokenEntry {
        id,
        accessor,
        token_type: role.token_type,
        renewable: role.renewable && role.token_type == TokenType::Service,
        policies: sanitize_policies(&role.token_policies),
        vault_ns: ns.to_string(),
        mount: clean(mount).to_string(),
        role: role_name.to_string(),
        entity_id: flavour.entity_id(entity, ns),
        sa,
        creation_time: created,
        creation_ttl: ttl,
        explicit_max_ttl: input.explicit_max_ttl,
        period: input.period,
        max_valid,
        // `time.Now().Add(TTL)`: the login time plus the whole-second TTL.
        expire_time: created + Duration::from_secs(ttl.max(0).unsigned_abs()),
        last_renewal: None,
        renewals: 0,
    }
}

fn renew_self(st: &mut State, req: &Request, token: &str, now: SystemTime) -> Reply {
    let Some(t) = st.tokens.live_mut(token, now) else {
        return Reply::bad_token(st.flavour, true);
    };
    if t.token_type == TokenType::Batch {
        return Reply::error(400, "batch tokens cannot be renewed");
    }
    if !t.renewable {
        return Reply::error(400, "lease is not renewable");
    }
    let (ns, mount, role_name, creation, explicit_max_ttl) = (
        t.vault_ns.clone(),
        t.mount.clone(),
        t.role.clone(),
        t.creation_time,
        t.explicit_max_ttl,
    );
    let body = match body_object(req) {
        Ok(b) => b,
        Err(reply) => return reply,
    };
    let increment = match parse_increment(body.get("increment").unwrap_or(&Value::Null)) {
        Ok(secs) => secs,
        Err(message) => return Reply::error(400, &message),
    };
    // Renewal re-reads the role, as the kubernetes auth method's renew callback does.
    let Some(role) = st
        .mount(&ns, &mount)
        .and_then(|r| r.get(&role_name))
        .cloned()
    else {
        let message =
            format!("failed to renew entry: role {role_name} does not exist during renewal");
        return Reply::wrapped(500, &message);
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
        Err(message) => return Reply::wrapped(500, message),
    };
    let flavour = st.flavour;
    let Some(t) = st.tokens.live_mut(token, now) else {
        return Reply::bad_token(flavour, true);
    };
    // `time.Now().Add(TTL)`: the precise renewal time plus the whole-second TTL.
    t.expire_time = now + Duration::from_secs(outcome.ttl.max(0).unsigned_abs());
    t.max_valid = outcome.max_valid;
    t.period = input.period;
    t.renewals += 1;
    t.last_renewal = Some(now);
    auth_answer(
        flavour,
        auth_block(t, outcome.ttl),
        &outcome.warnings,
        "token",
    )
}

fn lookup_self(st: &mut State, token: &str, now: SystemTime) -> Reply {
    let flavour = st.flavour;
    let Some(t) = st.tokens.live_mut(token, now) else {
        return Reply::bad_token(flavour, true);
    };
    let mut data = json!({
        "accessor": t.accessor,
        "creation_time": unix_secs(t.creation_time),
        "creation_ttl": t.creation_ttl,
        "display_name": display_name(t),
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
    if !t.vault_ns.is_empty() {
        data["namespace_path"] = json!(format!("{}/", t.vault_ns));
    }
    Reply::json(200, envelope(flavour, Envelope::data(data, "token")))
}

fn revoke_self(st: &mut State, token: &str, now: SystemTime) -> Reply {
    match st.tokens.live_mut(token, now) {
        Some(t) if t.token_type == TokenType::Batch => {
            Reply::error(400, "batch tokens cannot be revoked")
        }
        Some(_) => {
            st.tokens.revoke(token);
            Reply::no_content()
        }
        None => Reply::bad_token(st.flavour, true),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reply::Body;
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
            Fixture::with_role(Role {
                token_ttl: Duration::from_secs(ttl),
                token_max_ttl: Duration::from_secs(max),
                ..Role::default()
            })
        }

        fn with_role(role: Role) -> Fixture {
            let mut st = State::new(crate::state::Clock::System);
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
                query: String::new(),
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
    fn bad_tokens_unknown_paths_and_500s_answer_in_each_flavours_form() {
        for flavour in [Flavour::OpenBao, Flavour::Vault] {
            let mut f = Fixture::new(2, 5);
            f.st.flavour = flavour;
            let token = f.login(0)["auth"]["client_token"]
                .as_str()
                .unwrap()
                .to_string();
            let denied = json!(["1 error occurred:\n\t* permission denied\n\n"]);
            let past_max = json!(["1 error occurred:\n\t* past the max TTL, cannot renew\n\n"]);
            let (bad_token, no_token) = match flavour {
                Flavour::OpenBao => (json!(["permission denied"]), json!(["permission denied"])),
                Flavour::Vault => (
                    json!(["2 errors occurred:\n\t* permission denied\n\t* invalid token\n\n"]),
                    denied.clone(),
                ),
            };
            for (method, path) in [
                ("POST", "/v1/auth/token/renew-self"),
                ("GET", "/v1/auth/token/lookup-self"),
                ("POST", "/v1/auth/token/revoke-self"),
            ] {
                let r = f.call(method, path, "s.unknown", "", 100);
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
        // OpenBao refuses token_ttl > token_max_ttl on a role; an explicit max TTL caps alike.
        let mut f = Fixture::with_role(Role {
            token_ttl: Duration::from_secs(3600),
            token_explicit_max_ttl: Some(Duration::from_secs(90)),
            ..Role::default()
        });
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
