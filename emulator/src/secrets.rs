//! Secret engines (KV v2, KV v1, a database-style dynamic engine), the ACL check in front of
//! them, and `sys/leases/renew` / `sys/leases/revoke`: one dispatch, [`route`], that the router
//! in `vault.rs` consults before its own routes.
//!
//! # What is emulated (hashicorp/vault-plugin-secrets-kv, vault/expiration.go, http/logical.go)
//! - Every request here needs a live token (else 403, Vault ≥ 1.17's
//!   `2 errors occurred:\n\t* permission denied\n\t* invalid token\n\n`), and its policies must
//!   grant the capability (`read` for a GET, `update` for the lease endpoints) on the request
//!   path, else 403 `1 error occurred:\n\t* permission denied\n\n`. Vault checks the ACL before
//!   routing, so a KV v2 read without `data/` (`internal/database/config`) is denied by a policy
//!   written for `internal/data/…`; when a policy does allow it, KV v2 answers 404
//!   `1 error occurred:\n\t* unsupported path\n\n`.
//! - Namespaces (Vault Enterprise docs "Vault API and namespaces"; OpenBao
//!   `NamespaceStore.ResolveNamespaceFromRequest`, `policy.parsePaths`, `ACL.AllowOperation`):
//!   secret engines, policies and leases belong to a namespace; the request's namespace is the
//!   `X-Vault-Namespace` header joined with any leading path segments that name a namespace
//!   (`State::resolve`). A policy's paths are prefixed with the path of the namespace it is
//!   defined in, a token's policies are those of the namespace it was issued in, and the ACL
//!   is checked on the request's namespace path plus its path; so a token works in its
//!   namespace and, where its policies name the child's paths (`team1/secret/data/…`), in its
//!   child namespaces, and is denied (403 permission denied, the token being valid) in a parent
//!   or sibling namespace.
//! - A lease issued in a namespace other than the root carries the namespace's id
//!   (`database/creds/app/<random>.<nsid>`, as Vault's `ExpirationManager.Register` writes it),
//!   and `sys/leases/renew` / `sys/leases/revoke` act in the namespace that id names, whatever
//!   the request's namespace (Vault re-routes them by the lease id before the ACL check).
//! - KV v2 `GET <mount>/data/<path>` → `data: {data, metadata: {created_time, custom_metadata,
//!   deletion_time, destroyed, version}}`, `lease_duration` 0, `mount_type` `kv`. A path never
//!   written answers 404 `{"errors":[]}`; a soft-deleted or destroyed latest version answers
//!   404 with the whole envelope, `data.data` null and the metadata (`deletion_time` set, or
//!   `destroyed` true). `GET <mount>/metadata/<path>` → `current_version`, `oldest_version`,
//!   `versions` by number, and the other metadata fields.
//! - KV v1 `GET <mount>/<path>` → `data` is the secret itself; `lease_duration` 2764800 (768 h,
//!   or the secret's own `ttl` key), `lease_id` "", `renewable` false.
//! - Dynamic `GET <mount>/creds/<role>` → new `username`/`password` every read, `lease_id`
//!   `<mount>/creds/<role>/<24 base62>`, `renewable`, `lease_duration` (see `leases.rs`);
//!   `mount_type` `database`. An unknown role answers 400 `unknown role: <role>`.
//! - `?version=N` on KV v2 reads is not emulated (the emulator does not record query strings).

use std::collections::{BTreeMap, HashMap};
use std::time::SystemTime;

use serde_json::{json, Map, Value};

use crate::leases::LeaseStore;
use crate::policy::{Policies, Rule};
use crate::state::{clean, State};
use crate::tokens::{
    namespace_id, parse_duration, random_base62, random_uuid, rfc3339, MOUNT_TTL_SECS,
};
use crate::vault::Reply;
use crate::{DynamicRole, Request};

/// Vault ≥ 1.17's body for a valid token without the capability.
pub(crate) const DENIED: &str = "1 error occurred:\n\t* permission denied\n\n";
/// Vault ≥ 1.17's body for a missing, expired or revoked token.
pub(crate) const INVALID_TOKEN: &str =
    "2 errors occurred:\n\t* permission denied\n\t* invalid token\n\n";

/// One version of a KV v2 secret.
#[derive(Clone, Debug)]
pub(crate) struct Kv2Version {
    pub data: Map<String, Value>,
    pub created: SystemTime,
    pub deleted: Option<SystemTime>,
    pub destroyed: bool,
}

/// A KV v2 secret: its versions (version n at index n-1) and metadata.
#[derive(Clone, Debug, Default)]
pub(crate) struct Kv2Secret {
    pub versions: Vec<Kv2Version>,
    pub custom_metadata: Option<Map<String, Value>>,
}

/// A mounted secret engine.
pub(crate) enum Engine {
    KvV2(HashMap<String, Kv2Secret>),
    KvV1(HashMap<String, Map<String, Value>>),
    Database(HashMap<String, DynamicRole>),
}

/// The secret engines, policies and leases of one namespace.
#[derive(Default)]
pub(crate) struct Secrets {
    pub mounts: HashMap<String, Engine>,
    pub policies: Policies,
    pub leases: LeaseStore,
}

impl Secrets {
    /// Takes over `other`'s engines, policies and leases (replacing same-named ones).
    pub fn absorb(&mut self, other: Secrets) {
        self.mounts.extend(other.mounts);
        self.policies.absorb(other.policies);
        self.leases.absorb(other.leases);
    }

    /// The engine at `mount`, created with `make` when absent or of another kind.
    fn engine(
        &mut self,
        mount: &str,
        is: fn(&Engine) -> bool,
        make: fn() -> Engine,
    ) -> &mut Engine {
        let mount = clean(mount).to_string();
        let entry = self.mounts.entry(mount).or_insert_with(make);
        if !is(entry) {
            *entry = make();
        }
        entry
    }

    /// Writes a new KV v2 version; returns its number.
    pub fn put_kv2(
        &mut self,
        mount: &str,
        path: &str,
        data: Map<String, Value>,
        now: SystemTime,
    ) -> u64 {
        let engine = self.engine(
            mount,
            |e| matches!(e, Engine::KvV2(_)),
            || Engine::KvV2(HashMap::new()),
        );
        let Engine::KvV2(secrets) = engine else {
            return 0;
        };
        let secret = secrets.entry(clean(path).to_string()).or_default();
        secret.versions.push(Kv2Version {
            data,
            created: now,
            deleted: None,
            destroyed: false,
        });
        secret.versions.len() as u64
    }

    /// Soft-deletes (or, with `destroy`, destroys) one KV v2 version (0: the latest).
    pub fn delete_kv2(
        &mut self,
        mount: &str,
        path: &str,
        version: u64,
        destroy: bool,
        now: SystemTime,
    ) {
        if let Some(Engine::KvV2(secrets)) = self.mounts.get_mut(clean(mount)) {
            if let Some(secret) = secrets.get_mut(clean(path)) {
                let n = if version == 0 {
                    secret.versions.len() as u64
                } else {
                    version
                };
                if let Some(v) = n
                    .checked_sub(1)
                    .and_then(|i| secret.versions.get_mut(i as usize))
                {
                    if destroy {
                        v.destroyed = true;
                        v.data = Map::new();
                    } else {
                        v.deleted = Some(now);
                    }
                }
            }
        }
    }

    /// Writes a KV v1 secret.
    pub fn put_kv1(&mut self, mount: &str, path: &str, data: Map<String, Value>) {
        if let Engine::KvV1(secrets) = self.engine(
            mount,
            |e| matches!(e, Engine::KvV1(_)),
            || Engine::KvV1(HashMap::new()),
        ) {
            secrets.insert(clean(path).to_string(), data);
        }
    }

    /// Creates or replaces a dynamic-secret role.
    pub fn put_role(&mut self, mount: &str, name: &str, role: DynamicRole) {
        if let Engine::Database(roles) = self.engine(
            mount,
            |e| matches!(e, Engine::Database(_)),
            || Engine::Database(HashMap::new()),
        ) {
            roles.insert(name.to_string(), role);
        }
    }

    /// Creates or replaces a policy from `(pattern, capabilities)` pairs.
    pub fn put_policy(&mut self, name: &str, rules: &[(&str, &[&str])]) {
        let rules = rules
            .iter()
            .map(|(pattern, caps)| Rule {
                pattern: clean(pattern).to_string(),
                capabilities: caps.iter().map(|c| c.to_string()).collect(),
            })
            .collect();
        self.policies.put(name, rules);
    }

    /// The mount that owns `path` (the longest mount prefix) and the rest of the path.
    fn split<'p>(&self, path: &'p str) -> Option<(String, &'p str)> {
        self.mounts
            .keys()
            .filter(|m| path == m.as_str() || path.starts_with(&format!("{m}/")))
            .max_by_key(|m| m.len())
            .map(|m| (m.clone(), path[m.len()..].trim_start_matches('/')))
    }
}

/// Answers a request for a secret engine or the lease endpoints; `None` leaves it to the other
/// routes. `ns` is the request's namespace and `path` the API path after `/v1/`, relative to it.
pub(crate) fn route(
    st: &mut State,
    req: &Request,
    ns: &str,
    path: &str,
    now: SystemTime,
) -> Option<Reply> {
    let write = matches!(req.method.as_str(), "POST" | "PUT");
    let lease_op = ["sys/leases/renew", "sys/leases/revoke"]
        .into_iter()
        .find(|op| path == *op || path.starts_with(&format!("{op}/")));
    if let Some(op) = lease_op {
        if !write {
            return Some(Reply::errors::<&str>(405, &[]));
        }
        let url_id = path[op.len()..].trim_start_matches('/');
        return Some(lease_request(st, req, ns, op, url_id, now));
    }
    let (mount, rest) = st.secrets(ns)?.split(path)?;
    let rest = rest.to_string();
    if req.method != "GET" {
        return Some(Reply::errors::<&str>(405, &[]));
    }
    let token = match authorize(st, req, ns, path, "read", now) {
        Ok(token) => token,
        Err(reply) => return Some(reply),
    };
    Some(read(st, ns, &mount, &rest, path, &token, now))
}

/// `sys/leases/renew` or `sys/leases/revoke` (`op`), in the namespace the lease id names.
fn lease_request(
    st: &mut State,
    req: &Request,
    ns: &str,
    op: &str,
    url_id: &str,
    now: SystemTime,
) -> Reply {
    let body = match body(req) {
        Ok(b) => b,
        Err(reply) => return reply,
    };
    let id = lease_id_of(&body, url_id);
    // Vault moves the request into the lease's namespace before checking the ACL there.
    let lease_ns = id
        .as_deref()
        .and_then(|id| lease_namespace(st, id))
        .unwrap_or_else(|| ns.to_string());
    let token = match authorize(st, req, &lease_ns, op, "update", now) {
        Ok(token) => token,
        Err(reply) => return reply,
    };
    let Some(id) = id else {
        return Reply::errors(400, &["lease_id must be specified"]);
    };
    if op == "sys/leases/renew" {
        renew(st, &lease_ns, &body, &id, &token, now)
    } else {
        revoke(st, &lease_ns, &id)
    }
}

/// The namespace whose id a lease id ends with (`….<nsid>`), when one exists.
fn lease_namespace(st: &State, lease_id: &str) -> Option<String> {
    let last = lease_id.rsplit('/').next()?;
    let (_, nsid) = last.rsplit_once('.')?;
    st.namespaces
        .keys()
        .find(|n| !n.is_empty() && namespace_id(n) == nsid)
        .cloned()
}

/// `path` in namespace `ns` as seen from namespace `from`: `Some` only when `ns` is `from` or
/// one of its children (Vault prefixes both policy paths and request paths with their
/// namespace's path, so nothing else can match).
fn relative_path(from: &str, ns: &str, path: &str) -> Option<String> {
    if from == ns {
        return Some(path.to_string());
    }
    let below = if from.is_empty() {
        ns
    } else {
        ns.strip_prefix(from)?.strip_prefix('/')?
    };
    Some(format!("{below}/{path}"))
}

/// The caller's token if it is live and its policies (those of the namespace it was issued in)
/// grant `capability` on `path` in namespace `ns`.
fn authorize(
    st: &mut State,
    req: &Request,
    ns: &str,
    path: &str,
    capability: &str,
    now: SystemTime,
) -> Result<String, Reply> {
    let invalid = || Reply::errors(403, &[INVALID_TOKEN]);
    let token = req
        .header("x-vault-token")
        .or_else(|| req.header("authorization")?.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(invalid)?
        .to_string();
    let (token_ns, policies) = st
        .tokens
        .live_mut(&token, now)
        .map(|t| (t.vault_ns.clone(), t.policies.clone()))
        .ok_or_else(invalid)?;
    let allowed = relative_path(&token_ns, ns, path).is_some_and(|rel| {
        st.secrets(&token_ns)
            .is_some_and(|s| s.policies.allows(&policies, &rel, capability))
    });
    if allowed {
        Ok(token)
    } else {
        Err(Reply::errors(403, &[DENIED]))
    }
}

/// The standard envelope for a secret.
fn envelope(
    lease_id: &str,
    renewable: bool,
    lease_duration: i64,
    data: Value,
    warnings: &[String],
    mount_type: &str,
) -> Value {
    json!({
        "request_id": random_uuid(),
        "lease_id": lease_id,
        "renewable": renewable,
        "lease_duration": lease_duration,
        "data": data,
        "wrap_info": null,
        "warnings": if warnings.is_empty() { Value::Null } else { json!(warnings) },
        "auth": null,
        "mount_type": mount_type,
    })
}

fn not_found() -> Reply {
    Reply::errors::<&str>(404, &[])
}

#[allow(clippy::too_many_arguments)]
fn read(
    st: &mut State,
    ns: &str,
    mount: &str,
    rest: &str,
    path: &str,
    token: &str,
    now: SystemTime,
) -> Reply {
    let Some(engine) = st.secrets(ns).and_then(|s| s.mounts.get(mount)) else {
        return not_found();
    };
    match engine {
        Engine::KvV2(secrets) => {
            if let Some(key) = rest.strip_prefix("data/") {
                read_kv2(secrets.get(key))
            } else if let Some(key) = rest.strip_prefix("metadata/") {
                read_kv2_metadata(secrets.get(key))
            } else {
                Reply::errors(404, &["1 error occurred:\n\t* unsupported path\n\n"])
            }
        }
        Engine::KvV1(secrets) => match secrets.get(rest) {
            Some(data) => {
                let ttl = data
                    .get("ttl")
                    .and_then(parse_duration)
                    .filter(|t| *t > 0)
                    .unwrap_or(MOUNT_TTL_SECS);
                Reply::json(
                    200,
                    envelope("", false, ttl, Value::Object(data.clone()), &[], "kv"),
                )
            }
            None => not_found(),
        },
        Engine::Database(roles) => {
            let Some(role_name) = rest.strip_prefix("creds/").filter(|r| !r.contains('/')) else {
                return Reply::errors(404, &["1 error occurred:\n\t* unsupported path\n\n"]);
            };
            let Some(role) = roles.get(role_name).cloned() else {
                return Reply::errors(400, &[format!("unknown role: {role_name}")]);
            };
            let mut data = Map::new();
            data.insert(
                "username".into(),
                json!(format!(
                    "v-kubernetes-{role_name}-{}-{}",
                    random_base62(20),
                    crate::tokens::unix_secs(now)
                )),
            );
            data.insert("password".into(), json!(random_base62(20)));
            // Vault appends the namespace's id to leases issued outside the root namespace.
            let suffix = if ns.is_empty() {
                String::new()
            } else {
                format!(".{}", namespace_id(ns))
            };
            let id = format!("{}/{}{suffix}", clean(path), random_base62(24));
            let ttl = |d: std::time::Duration| i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
            match st.secrets_mut(ns).leases.issue(
                id,
                token,
                role.renewable,
                ttl(role.default_ttl),
                ttl(role.max_ttl),
                data,
                now,
            ) {
                Ok((lease, ttl)) => Reply::json(
                    200,
                    envelope(
                        &lease.id,
                        lease.renewable,
                        ttl,
                        Value::Object(lease.data),
                        &[],
                        "database",
                    ),
                ),
                Err(message) => Reply::errors(500, &[message]),
            }
        }
    }
}

fn version_metadata(n: usize, v: &Kv2Version, custom: &Option<Map<String, Value>>) -> Value {
    json!({
        "created_time": rfc3339(v.created),
        "custom_metadata": custom,
        "deletion_time": v.deleted.map(rfc3339).unwrap_or_default(),
        "destroyed": v.destroyed,
        "version": n,
    })
}

fn read_kv2(secret: Option<&Kv2Secret>) -> Reply {
    let Some((n, v)) = secret.and_then(|s| s.versions.last().map(|v| (s.versions.len(), v))) else {
        return not_found();
    };
    let custom = &secret.and_then(|s| s.custom_metadata.clone());
    let metadata = version_metadata(n, v, custom);
    if v.deleted.is_some() || v.destroyed {
        // Vault answers 404 with the whole envelope, so clients can see why.
        let body = envelope(
            "",
            false,
            0,
            json!({"data": null, "metadata": metadata}),
            &[],
            "kv",
        );
        return Reply::json(404, body);
    }
    Reply::json(
        200,
        envelope(
            "",
            false,
            0,
            json!({"data": Value::Object(v.data.clone()), "metadata": metadata}),
            &[],
            "kv",
        ),
    )
}

fn read_kv2_metadata(secret: Option<&Kv2Secret>) -> Reply {
    let Some(secret) = secret.filter(|s| !s.versions.is_empty()) else {
        return not_found();
    };
    let versions: BTreeMap<String, Value> = secret
        .versions
        .iter()
        .enumerate()
        .map(|(i, v)| {
            (
                (i + 1).to_string(),
                json!({
                    "created_time": rfc3339(v.created),
                    "deletion_time": v.deleted.map(rfc3339).unwrap_or_default(),
                    "destroyed": v.destroyed,
                }),
            )
        })
        .collect();
    let first = &secret.versions[0];
    let last = &secret.versions[secret.versions.len() - 1];
    let data = json!({
        "cas_required": false,
        "created_time": rfc3339(first.created),
        "current_version": secret.versions.len(),
        "custom_metadata": secret.custom_metadata,
        "delete_version_after": "0s",
        "max_versions": 0,
        "oldest_version": 0,
        "updated_time": rfc3339(last.created),
        "versions": versions,
    });
    Reply::json(200, envelope("", false, 0, data, &[], "kv"))
}

/// The request body as a JSON object (`{}` when empty), or Vault's 400.
fn body(req: &Request) -> Result<Map<String, Value>, Reply> {
    if req.body.trim().is_empty() {
        return Ok(Map::new());
    }
    match serde_json::from_str::<Value>(&req.body) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(Reply::errors(400, &["failed to parse JSON input"])),
    }
}

fn lease_id_of(body: &Map<String, Value>, url_id: &str) -> Option<String> {
    body.get("lease_id")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .or_else(|| (!url_id.is_empty()).then(|| url_id.to_string()))
}

fn renew(
    st: &mut State,
    ns: &str,
    body: &Map<String, Value>,
    id: &str,
    _token: &str,
    now: SystemTime,
) -> Reply {
    let increment = match body.get("increment") {
        None | Some(Value::Null) => 0,
        Some(v) => match parse_duration(v) {
            Some(s) => s,
            None => return Reply::errors(400, &[format!("invalid increment {v}")]),
        },
    };
    let refused = (400, "lease not found or lease is not renewable");
    let outcome = match st.namespaces.get_mut(clean(ns)) {
        Some(n) => n.secrets.leases.renew(id, increment, now, &st.tokens),
        None => Err(refused),
    };
    match outcome {
        Ok((lease, outcome)) => Reply::json(
            200,
            envelope(
                &lease.id,
                lease.renewable,
                outcome.ttl,
                Value::Null,
                &outcome.warnings,
                "system",
            ),
        ),
        Err((status, message)) => Reply::errors(status, &[message]),
    }
}

fn revoke(st: &mut State, ns: &str, id: &str) -> Reply {
    if let Some(n) = st.namespaces.get_mut(clean(ns)) {
        n.secrets.leases.revoke(id);
    }
    Reply::no_content()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_is_seen_from_the_tokens_namespace_or_its_ancestors_only() {
        let rel = |from: &str, ns: &str| relative_path(from, ns, "secret/data/app");
        assert_eq!(rel("admin", "admin").as_deref(), Some("secret/data/app"));
        assert_eq!(rel("", "").as_deref(), Some("secret/data/app"));
        assert_eq!(rel("", "admin").as_deref(), Some("admin/secret/data/app"));
        assert_eq!(
            rel("admin", "admin/team1/x").as_deref(),
            Some("team1/x/secret/data/app")
        );
        for (from, ns) in [
            ("admin", ""),
            ("admin", "team1"),
            ("admin", "administrators"),
            ("admin/team1", "admin"),
        ] {
            assert_eq!(rel(from, ns), None, "{from:?} -> {ns:?}");
        }
    }
}
