//! Everything behind a token: who the caller is, what its policies allow, and the routes that
//! need nothing more (secret engines, `sys/leases/renew` and `sys/leases/revoke`, and the 404 for
//! an allowed path no engine serves). The token endpoints live in `vault.rs`.
//!
//! # What is emulated (openbao/openbao `vault/request_handling.go`, `vault/expiration.go`)
//! - A missing, unknown, expired or revoked token is refused before anything else (the
//!   flavour's 403). A valid token's policies must then grant the capability the method needs
//!   (`read` for GET, `update` for PUT/POST, `delete`, `list`) on the request path, else 403
//!   `1 error occurred:\n\t* permission denied\n\n`. The ACL comes before routing, so with the
//!   `default` policy an unknown path or a wrong method is a 403; a token allowed there gets
//!   404 `no handler for route "<path>". route entry not found.` or 405 `1 error
//!   occurred:\n\t* unsupported operation\n\n`.
//! - Namespaces (OpenBao `NamespaceStore.ResolveNamespaceFromRequest`, `policy.parsePaths`,
//!   `ACL.AllowOperation`): a policy's paths are prefixed with the path of the namespace it is
//!   defined in, a token's policies are those of the namespace it was issued in, and the ACL is
//!   checked on the request's namespace path plus its path; so a token works in its namespace
//!   and, where its policies name the child's paths (`team1/secret/data/…`), in its child
//!   namespaces, and is denied (the token being valid) in a parent or sibling namespace.
//! - `sys/leases/renew` and `sys/leases/revoke` act in the namespace the lease id names
//!   (`….<namespace id>`), whatever the request's namespace: the request is moved there before
//!   the ACL check. The ACL sees the whole path, so `sys/leases/renew/<id>` (the id in the URL)
//!   is denied by the `default` policy, which grants the exact path `sys/leases/renew`.
//! - `GET sys/internal/ui/mounts/<path>`: the mount serving `path` (`type`, `options.version`,
//!   `path` with its `/`, accessor `<type>_<8 hex>`, …) when the caller's policies grant
//!   anything under it; otherwise, or with no mount there, a bare 403 `preflight capability
//!   check returned 403, please ensure client's policies grant access to path "<path>/"`. A bad
//!   token gets the flavour's 403, another method a bare 405.
//! - Lease renewal: the increment is validated first (400 field validation), then the lease id
//!   (400 `lease_id must be specified`); a lease that is gone is the flavour's 400. Revoking an
//!   unknown lease succeeds (204), as `ExpirationManager.Revoke` returns nil without an entry.

use std::time::SystemTime;

use serde_json::{json, Map, Value};

use crate::leases::Refusal;
use crate::paths::{clean, relative_path};
use crate::reply::{envelope, Envelope, Reply};
use crate::secrets::{self, Engine, ReadContext};
use crate::state::State;
use crate::tokens::{parse_increment, stable_uuid};
use crate::Request;

/// A live token making a request.
pub(crate) struct Caller {
    pub token: String,
    /// The namespace it was issued in (`""`: root).
    pub ns: String,
    pub policies: Vec<String>,
}

/// The client token: `X-Vault-Token`, or `Authorization: Bearer`.
fn client_token(req: &Request) -> Option<String> {
    req.header("x-vault-token")
        .or_else(|| req.header("authorization")?.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_string)
}

/// The caller's live token, or the flavour's 403 for a missing or bad one.
pub(crate) fn caller(st: &mut State, req: &Request, now: SystemTime) -> Result<Caller, Reply> {
    let flavour = st.flavour;
    let token = client_token(req).ok_or_else(|| Reply::bad_token(flavour, false))?;
    let t = st
        .tokens
        .live_mut(&token, now)
        .ok_or_else(|| Reply::bad_token(flavour, true))?;
    Ok(Caller {
        ns: t.vault_ns.clone(),
        policies: t.policies.clone(),
        token,
    })
}

/// The capability a method needs.
pub(crate) fn capability(method: &str) -> &'static str {
    match method {
        "GET" | "HEAD" => "read",
        "DELETE" => "delete",
        "LIST" => "list",
        _ => "update",
    }
}

/// `Ok` when the caller's policies (those of its own namespace) grant `capability` on `path`
/// in namespace `ns`; else the ACL's 403.
pub(crate) fn authorize(
    st: &State,
    caller: &Caller,
    ns: &str,
    path: &str,
    capability: &str,
) -> Result<(), Reply> {
    let allowed = relative_path(&caller.ns, ns, path).is_some_and(|rel| {
        st.secrets(&caller.ns)
            .is_some_and(|s| s.policies.allows(&caller.policies, &rel, capability))
    });
    if allowed {
        Ok(())
    } else {
        Err(Reply::acl_denied())
    }
}

/// The request body as a JSON object (`{}` when empty), or the 400 for anything else.
pub(crate) fn body_object(req: &Request) -> Result<Map<String, Value>, Reply> {
    if req.body.trim().is_empty() {
        return Ok(Map::new());
    }
    match serde_json::from_str::<Value>(&req.body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(Reply::error(
            400,
            &format!("failed to decode JSON input: expected an object, got {other}"),
        )),
        Err(e) => Err(Reply::error(
            400,
            &format!("failed to decode JSON input: {e}"),
        )),
    }
}

/// Answers an authenticated request that is not for a token endpoint: a lease endpoint, a
/// secret engine, or nothing. `ns` is the request's namespace and `path` the API path after
/// `/v1/`, relative to it.
pub(crate) fn route(
    st: &mut State,
    req: &Request,
    caller: &Caller,
    ns: &str,
    path: &str,
    now: SystemTime,
) -> Reply {
    let lease_op = ["sys/leases/renew", "sys/leases/revoke"]
        .into_iter()
        .find(|op| path == *op || path.starts_with(&format!("{op}/")));
    if let Some(op) = lease_op {
        return lease_request(st, req, caller, ns, op, path, now);
    }
    let list = is_list(req);
    // Vault lists folders: the ACL sees a LIST's path with a trailing `/`.
    let acl_path = match list && !path.ends_with('/') {
        true => format!("{path}/"),
        false => path.to_string(),
    };
    let write = matches!(req.method.as_str(), "PUT" | "POST");
    let creates = write
        && st
            .secrets(ns)
            .and_then(|s| s.split(path).map(|(m, rest)| secrets::creates(s, &m, rest)))
            .unwrap_or(false);
    let needed = match (list, creates) {
        (true, _) => "list",
        (_, true) => "create",
        _ => capability(&req.method),
    };
    if let Err(reply) = authorize(st, caller, ns, &acl_path, needed) {
        return reply;
    }
    let Some((mount, rest)) = st.secrets(ns).and_then(|s| s.split(path)) else {
        return Reply::error(
            404,
            &format!("no handler for route {path:?}. route entry not found."),
        );
    };
    let flavour = st.flavour;
    let cx = ReadContext {
        flavour,
        nsid: (!ns.is_empty()).then(|| flavour.namespace_id(ns)),
        token: &caller.token,
        display_name: st
            .tokens
            .live_mut(&caller.token, now)
            .map(|t| crate::tokens::display_name(t))
            .unwrap_or_default(),
        query: &req.query,
        now,
    };
    let rest = rest.to_string();
    match req.method.as_str() {
        _ if list => secrets::list(st.secrets_mut(ns), flavour, &mount, &rest),
        "GET" => secrets::read(st.secrets_mut(ns), &cx, &mount, &rest, path),
        "PUT" | "POST" => match body_object(req) {
            Ok(body) => secrets::write(st.secrets_mut(ns), &cx, &mount, &rest, path, body),
            Err(reply) => reply,
        },
        _ => Reply::wrapped(405, "unsupported operation"),
    }
}

/// A LIST: the method, or `GET` with `list=true`.
fn is_list(req: &Request) -> bool {
    req.method == "LIST"
        || (req.method == "GET"
            && req
                .query
                .split('&')
                .any(|kv| matches!(kv, "list=true" | "list=1")))
}

/// `GET sys/internal/ui/mounts/<path>`: the mount that serves `path` in namespace `ns`, for a
/// caller whose policies grant something under it (OpenBao's `hasMountAccess`); otherwise a
/// bare 403 naming the path. Any other method is a bare 405 (the route is unauthenticated).
pub(crate) fn ui_mount(st: &State, req: &Request, caller: &Caller, ns: &str, path: &str) -> Reply {
    if req.method != "GET" {
        return Reply::error(405, "unsupported operation");
    }
    let denied = || {
        let shown = match path.ends_with('/') {
            true => path.to_string(),
            false => format!("{path}/"),
        };
        Reply::error(403, &format!("preflight capability check returned 403, please ensure client's policies grant access to path {shown:?}"))
    };
    let Some(secrets) = st.secrets(ns) else {
        return denied();
    };
    let Some((mount, _)) = secrets.split(path) else {
        return denied();
    };
    let visible = relative_path(&caller.ns, ns, &format!("{mount}/")).is_some_and(|rel| {
        st.secrets(&caller.ns)
            .is_some_and(|s| s.policies.grants_under(&caller.policies, &rel))
    });
    if !visible {
        return denied();
    }
    let Some(engine) = secrets.mounts.get(&mount) else {
        return denied();
    };
    let seed = stable_uuid(&format!("{ns}/{mount}"));
    let options = match engine {
        Engine::KvV2(_) => json!({"version": "2"}),
        Engine::KvV1(_) => json!({"version": "1"}),
        _ => Value::Null,
    };
    // The dev server's own `secret/` has a description; mounts made later have none.
    let description = match (engine, mount.as_str()) {
        (Engine::KvV2(_), "secret") => "key/value secret storage",
        _ => "",
    };
    let max_lease_ttl = match engine {
        Engine::Pki(_) => 87600 * 3600,
        _ => 0,
    };
    let data = json!({
        "accessor": format!("{}_{}", engine.kind(), &seed[..8]),
        "config": {"default_lease_ttl": 0, "force_no_cache": false, "max_lease_ttl": max_lease_ttl},
        "deprecation_status": "supported",
        "description": description,
        "external_entropy_access": false,
        "local": false,
        "options": options,
        "path": format!("{mount}/"),
        "plugin_version": "",
        "running_plugin_version": "v2.7.2+builtin.bao",
        "running_sha256": "",
        "seal_wrap": false,
        "type": engine.kind(),
        "uuid": seed,
    });
    Reply::json(
        200,
        envelope(st.flavour, Envelope::data(data, engine.kind())),
    )
}

/// `sys/leases/renew` or `sys/leases/revoke` (`op`, with an optional id after it in `path`),
/// in the namespace the lease id names.
fn lease_request(
    st: &mut State,
    req: &Request,
    caller: &Caller,
    ns: &str,
    op: &str,
    path: &str,
    now: SystemTime,
) -> Reply {
    let body = match body_object(req) {
        Ok(b) => b,
        Err(reply) => return reply,
    };
    let url_id = path[op.len()..].trim_start_matches('/');
    let id = lease_id_of(&body, url_id);
    // Vault moves the request into the lease's namespace before checking the ACL there.
    let lease_ns = id
        .as_deref()
        .and_then(|id| lease_namespace(st, id))
        .unwrap_or_else(|| ns.to_string());
    if let Err(reply) = authorize(st, caller, &lease_ns, path, capability(&req.method)) {
        return reply;
    }
    if !matches!(req.method.as_str(), "PUT" | "POST") {
        return Reply::wrapped(405, "unsupported operation");
    }
    if op == "sys/leases/revoke" {
        let Some(id) = id else {
            return Reply::error(400, "lease_id must be specified");
        };
        if let Some(n) = st.namespaces.get_mut(clean(&lease_ns)) {
            n.secrets.leases.revoke(&id);
        }
        return Reply::no_content();
    }
    let increment = match parse_increment(body.get("increment").unwrap_or(&Value::Null)) {
        Ok(secs) => secs,
        Err(message) => return Reply::error(400, &message),
    };
    let Some(id) = id else {
        return Reply::error(400, "lease_id must be specified");
    };
    renew(st, &lease_ns, &id, increment, now)
}

/// The namespace whose id a lease id ends with (`….<nsid>`), when one exists.
fn lease_namespace(st: &State, lease_id: &str) -> Option<String> {
    let last = lease_id.rsplit('/').next()?;
    let (_, nsid) = last.rsplit_once('.')?;
    st.namespaces
        .keys()
        .find(|n| !n.is_empty() && st.flavour.namespace_id(n) == nsid)
        .cloned()
}

fn lease_id_of(body: &Map<String, Value>, url_id: &str) -> Option<String> {
    body.get("lease_id")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .or_else(|| (!url_id.is_empty()).then(|| url_id.to_string()))
}

fn renew(st: &mut State, ns: &str, id: &str, increment: i64, now: SystemTime) -> Reply {
    let flavour = st.flavour;
    let outcome = match st.namespaces.get_mut(clean(ns)) {
        Some(n) => n.secrets.leases.renew(id, increment, now, &st.tokens),
        None => Err(Refusal::Gone),
    };
    match outcome {
        Ok((lease, outcome)) => {
            let parts = Envelope {
                lease_id: &lease.id,
                renewable: lease.renewable,
                lease_duration: outcome.ttl,
                warnings: &outcome.warnings,
                ..Envelope::data(Value::Null, "system")
            };
            Reply::json(200, envelope(flavour, parts))
        }
        Err(Refusal::Gone) => Reply::error(400, flavour.lease_gone()),
        Err(Refusal::NotRenewable) => Reply::error(400, "lease is not renewable"),
        Err(Refusal::Ttl(message)) => Reply::error(400, message),
    }
}
