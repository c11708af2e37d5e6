//! Secret engines (KV v2, KV v1, a database-style dynamic engine): what each namespace holds,
//! and how an engine answers a read once the request has passed the ACL check (`access.rs`).
//!
//! # What is emulated (openbao/openbao `builtin/logical/kv`, vault/expiration.go)
//! - KV v2 `GET <mount>/data/<path>` → `data: {data, metadata: {created_time, custom_metadata,
//!   deletion_time, destroyed, version}}`, `lease_duration` 0. A path never written answers
//!   404 `{"errors":[]}`; a soft-deleted or destroyed version answers 404 with the whole
//!   envelope, `data.data` null and the metadata (`deletion_time` set, or `destroyed` true).
//!   `?version=N` reads version N (0 or below: the latest); a version never written is 404
//!   `{"errors":[]}`, a value that is not an integer a 400 field-validation error.
//!   `GET <mount>/metadata/<path>` → `current_version`, `oldest_version`, `versions` by number,
//!   and the other metadata fields. Any other path under the mount (`internal/database/config`,
//!   without `data/`) is a 404 with the envelope, `data` null and a warning naming the CLI's
//!   `kv get`.
//! - KV v1 `GET <mount>/<path>` → `data` is the secret itself; `lease_duration` 2764800 (768 h,
//!   or the secret's own `ttl` key), `lease_id` "", `renewable` false.
//! - Dynamic `GET <mount>/creds/<role>` → new `username` (`v-<display name, 8>-<role, 8>-<20>-<unix>`, as
//!   OpenBao's PostgreSQL plugin names them) and `password` every read, `lease_id`
//!   `<mount>/creds/<role>/<24 base62>` (plus `.<namespace id>` outside the root namespace, as
//!   `ExpirationManager.Register` writes it), `renewable`, `lease_duration` (see `leases.rs`).
//!   An unknown role answers 400 `unknown role: <role>`.
//! - LIST (or `GET ?list=true`; the ACL asks `list` on the path with a trailing `/`): KV v2
//!   `metadata/<folder>` and KV v1 `<folder>` answer `keys`, a name's first segment below the
//!   folder, with `/` when more follows (`app` and `app/` both); an empty folder is 404
//!   `{"errors":[]}`; KV v2 `data/` is 405.
//! - Writes: KV v1 `PUT <path>` stores the body (204); KV v2 `PUT data/<path>` needs `data`
//!   (else 400 `no data provided`) and answers the new version's metadata. A write that creates
//!   a secret needs `create`, not `update` (KV's existence check).
//! - `mount_type` (`kv`, `database`) only where the flavour sends it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::SystemTime;

use serde_json::{json, Map, Value};

use crate::flavour::Flavour;
use crate::leases::LeaseStore;
use crate::paths::clean;
use crate::pki::{self, Pki};
use crate::policy::{Policies, Rule};
use crate::reply::{envelope, Envelope, Reply};
use crate::tokens::{parse_duration, random_base62, rfc3339, unix_secs, MOUNT_TTL_SECS};
use crate::{DynamicRole, PkiRole};

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
    Pki(Box<Pki>),
}

impl Engine {
    /// The mount's `type`, as `sys/internal/ui/mounts` names it.
    pub fn kind(&self) -> &'static str {
        match self {
            Engine::KvV2(_) | Engine::KvV1(_) => "kv",
            Engine::Database(_) => "database",
            Engine::Pki(_) => "pki",
        }
    }
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

    /// Enables a PKI engine at `mount` (keeping one already there) and returns its CA (PEM).
    pub fn enable_pki(&mut self, mount: &str, common_name: &str, now: SystemTime) -> String {
        let entry = self
            .mounts
            .entry(clean(mount).to_string())
            .or_insert_with(|| Engine::Pki(Box::new(Pki::new(common_name, now))));
        if !matches!(entry, Engine::Pki(_)) {
            *entry = Engine::Pki(Box::new(Pki::new(common_name, now)));
        }
        match entry {
            Engine::Pki(p) => p.ca_pem().to_string(),
            _ => String::new(),
        }
    }

    /// Creates or replaces a PKI role (enabling the engine, its CA named after the mount).
    pub fn put_pki_role(&mut self, mount: &str, name: &str, role: PkiRole, now: SystemTime) {
        if self.pki(mount).is_none() {
            self.enable_pki(mount, clean(mount), now);
        }
        if let Some(Engine::Pki(p)) = self.mounts.get_mut(clean(mount)) {
            p.put_role(name, role);
        }
    }

    /// The PKI engine at `mount`, if there is one.
    pub fn pki(&self, mount: &str) -> Option<&Pki> {
        match self.mounts.get(clean(mount)) {
            Some(Engine::Pki(p)) => Some(p),
            _ => None,
        }
    }

    /// Creates or replaces a policy from `(pattern, capabilities)` pairs.
    pub fn put_policy(&mut self, name: &str, rules: &[(&str, &[&str])]) {
        let rules = rules
            .iter()
            .map(|(pattern, caps)| Rule {
                // A trailing `/` is kept: `kv/` grants a LIST of the folder, not `kv`.
                pattern: pattern.trim_start_matches('/').to_string(),
                capabilities: caps.iter().map(|c| c.to_string()).collect(),
            })
            .collect();
        self.policies.put(name, rules);
    }

    /// The mount that owns `path` (the longest mount prefix) and the rest of the path.
    pub fn split<'p>(&self, path: &'p str) -> Option<(String, &'p str)> {
        self.mounts
            .keys()
            .filter(|m| path == m.as_str() || path.starts_with(&format!("{m}/")))
            .max_by_key(|m| m.len())
            .map(|m| (m.clone(), path[m.len()..].trim_start_matches('/')))
    }
}

pub(crate) use crate::reply::ReadContext;

fn not_found() -> Reply {
    Reply::errors::<&str>(404, &[])
}

/// Answers a GET of `rest` under the engine at `mount` (`path` is the whole path, relative to
/// the namespace).
pub(crate) fn read(
    secrets: &mut Secrets,
    cx: &ReadContext,
    mount: &str,
    rest: &str,
    path: &str,
) -> Reply {
    let Some(engine) = secrets.mounts.get(mount) else {
        return not_found();
    };
    match engine {
        Engine::KvV2(kv) => {
            if let Some(key) = rest.strip_prefix("data/") {
                match query_version(cx.query) {
                    Ok(version) => read_kv2(cx.flavour, kv.get(key), version),
                    Err(reply) => reply,
                }
            } else if let Some(key) = rest.strip_prefix("metadata/") {
                read_kv2_metadata(cx.flavour, kv.get(key))
            } else {
                let warnings = [cx.flavour.kv2_invalid_path().to_string()];
                let parts = Envelope {
                    warnings: &warnings,
                    ..Envelope::data(Value::Null, "kv")
                };
                Reply::json(404, envelope(cx.flavour, parts))
            }
        }
        Engine::KvV1(kv) => match kv.get(rest) {
            Some(data) => {
                let ttl = data
                    .get("ttl")
                    .and_then(parse_duration)
                    .filter(|t| *t > 0)
                    .unwrap_or(MOUNT_TTL_SECS);
                let parts = Envelope {
                    lease_duration: ttl,
                    ..Envelope::data(Value::Object(data.clone()), "kv")
                };
                Reply::json(200, envelope(cx.flavour, parts))
            }
            None => not_found(),
        },
        // `issue/<role>` is a write; nothing of the PKI engine's is read here.
        Engine::Pki(_) => Reply::wrapped(405, "unsupported operation"),
        Engine::Database(roles) => {
            let Some(role_name) = rest.strip_prefix("creds/").filter(|r| !r.contains('/')) else {
                return Reply::wrapped(404, "unsupported path");
            };
            let Some(role) = roles.get(role_name).cloned() else {
                return Reply::error(400, &format!("unknown role: {role_name}"));
            };
            issue_creds(secrets, cx, role_name, &role, path)
        }
    }
}

/// New database-style credentials under a new lease.
fn issue_creds(
    secrets: &mut Secrets,
    cx: &ReadContext,
    role_name: &str,
    role: &DynamicRole,
    path: &str,
) -> Reply {
    // OpenBao's PostgreSQL plugin: `v-{{display name | truncate 8}}-{{role | truncate 8}}-
    // {{random 20}}-{{unix time}}`, the display name of a kubernetes login starting `kubernet`
    // (`admin-au` in namespace `admin`).
    let role8: String = role_name.chars().take(8).collect();
    let name8: String = cx.display_name.chars().take(8).collect();
    let mut data = Map::new();
    data.insert(
        "username".into(),
        json!(format!(
            "v-{name8}-{role8}-{}-{}",
            random_base62(20),
            unix_secs(cx.now)
        )),
    );
    data.insert("password".into(), json!(random_base62(20)));
    let suffix = cx
        .nsid
        .as_ref()
        .map(|id| format!(".{id}"))
        .unwrap_or_default();
    let id = format!("{}/{}{suffix}", clean(path), random_base62(24));
    let secs = |d: std::time::Duration| i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
    let issued = secrets.leases.issue(
        id,
        cx.token,
        role.renewable,
        secs(role.default_ttl),
        secs(role.max_ttl),
        data,
        cx.now,
    );
    match issued {
        Ok((lease, ttl)) => {
            let parts = Envelope {
                lease_id: &lease.id,
                renewable: lease.renewable,
                lease_duration: ttl,
                ..Envelope::data(Value::Object(lease.data.clone()), "database")
            };
            Reply::json(200, envelope(cx.flavour, parts))
        }
        Err(message) => Reply::wrapped(500, message),
    }
}

/// KV v2's `version` query parameter: 0 (the latest) when absent, or the 400 OpenBao's field
/// validation answers for a value that is not an integer.
fn query_version(query: &str) -> Result<i64, Reply> {
    let Some(raw) = query
        .split('&')
        .filter_map(|kv| kv.split_once('=').or(Some((kv, ""))))
        .find(|(k, _)| *k == "version")
        .map(|(_, v)| v)
    else {
        return Ok(0);
    };
    raw.parse::<i64>().map_err(|_| {
        Reply::error(
            400,
            "Field validation failed: error converting input for field \"version\": '' cannot parse value as 'int': strconv.ParseInt: invalid syntax",
        )
    })
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

/// Version `version` of a KV v2 secret (0 or below: the latest).
fn read_kv2(flavour: Flavour, secret: Option<&Kv2Secret>, version: i64) -> Reply {
    let Some(secret) = secret.filter(|s| !s.versions.is_empty()) else {
        return not_found();
    };
    let n = match usize::try_from(version) {
        Ok(n) if n > 0 => n,
        _ => secret.versions.len(),
    };
    let Some(v) = n.checked_sub(1).and_then(|i| secret.versions.get(i)) else {
        return not_found();
    };
    let metadata = version_metadata(n, v, &secret.custom_metadata);
    if v.deleted.is_some() || v.destroyed {
        // Vault answers 404 with the whole envelope, so clients can see why.
        let data = json!({"data": null, "metadata": metadata});
        return Reply::json(404, envelope(flavour, Envelope::data(data, "kv")));
    }
    let data = json!({"data": Value::Object(v.data.clone()), "metadata": metadata});
    Reply::json(200, envelope(flavour, Envelope::data(data, "kv")))
}

fn read_kv2_metadata(flavour: Flavour, secret: Option<&Kv2Secret>) -> Reply {
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
    Reply::json(200, envelope(flavour, Envelope::data(data, "kv")))
}

/// The keys directly under `prefix` (`""` or ending in `/`) among `names`: a name's first
/// segment below it, with `/` when more follows (Vault lists both `app` and `app/`).
fn folder_keys<'a>(names: impl Iterator<Item = &'a String>, prefix: &str) -> Vec<String> {
    let keys: BTreeSet<String> = names
        .filter_map(|n| n.strip_prefix(prefix))
        .filter(|rest| !rest.is_empty())
        .map(|rest| match rest.split_once('/') {
            Some((first, _)) => format!("{first}/"),
            None => rest.to_string(),
        })
        .collect();
    keys.into_iter().collect()
}

/// `rest` as a folder prefix: `""`, or ending in one `/`.
fn folder(rest: &str) -> String {
    match rest.trim_end_matches('/') {
        "" => String::new(),
        r => format!("{r}/"),
    }
}

/// Answers a LIST (or `GET ?list=true`) of `rest` under the engine at `mount`: KV v2
/// `metadata/<folder>`, KV v1 `<folder>`, PKI `certs` and `roles`. An empty folder is 404
/// `{"errors":[]}`.
pub(crate) fn list(secrets: &Secrets, flavour: Flavour, mount: &str, rest: &str) -> Reply {
    let keys = match secrets.mounts.get(mount) {
        Some(Engine::KvV2(kv)) => match rest.strip_prefix("metadata") {
            Some(r) if r.is_empty() || r.starts_with('/') => {
                let live = kv.iter().filter(|(_, s)| !s.versions.is_empty());
                folder_keys(live.map(|(k, _)| k), &folder(r.trim_start_matches('/')))
            }
            _ => return Reply::wrapped(405, "unsupported operation"),
        },
        Some(Engine::KvV1(kv)) => folder_keys(kv.keys(), &folder(rest)),
        Some(Engine::Pki(p)) => match p.list(rest) {
            Some(keys) => keys,
            None => return Reply::wrapped(405, "unsupported operation"),
        },
        Some(Engine::Database(_)) => return Reply::wrapped(405, "unsupported operation"),
        None => Vec::new(),
    };
    if keys.is_empty() {
        return not_found();
    }
    let data = json!({ "keys": keys });
    Reply::json(200, envelope(flavour, Envelope::data(data, "kv")))
}

/// Whether a write of `rest` under the engine at `mount` creates a secret (the ACL then asks
/// for `create`, not `update`: KV's existence check).
pub(crate) fn creates(secrets: &Secrets, mount: &str, rest: &str) -> bool {
    match secrets.mounts.get(mount) {
        Some(Engine::KvV1(kv)) => !kv.contains_key(rest),
        Some(Engine::KvV2(kv)) => rest
            .strip_prefix("data/")
            .is_some_and(|k| kv.get(k).is_none_or(|s| s.versions.is_empty())),
        _ => false,
    }
}

/// Answers a PUT/POST of `rest` under the engine at `mount` (`path` is the whole path,
/// relative to the namespace): a KV v1 write (204), a KV v2 `data/` write (the new version's
/// metadata), a PKI issue.
pub(crate) fn write(
    secrets: &mut Secrets,
    cx: &ReadContext,
    mount: &str,
    rest: &str,
    path: &str,
    body: Map<String, Value>,
) -> Reply {
    match secrets.mounts.get_mut(mount) {
        Some(Engine::KvV1(kv)) if !rest.is_empty() => {
            kv.insert(rest.to_string(), body);
            Reply::no_content()
        }
        Some(Engine::KvV2(_)) => {
            let Some(key) = rest.strip_prefix("data/").filter(|k| !k.is_empty()) else {
                return Reply::wrapped(405, "unsupported operation");
            };
            let Some(Value::Object(data)) = body.get("data").cloned() else {
                return Reply::error(400, "no data provided");
            };
            let version = secrets.put_kv2(mount, key, data, cx.now);
            let data = json!({
                "created_time": rfc3339(cx.now),
                "custom_metadata": null,
                "deletion_time": "",
                "destroyed": false,
                "version": version,
            });
            Reply::json(200, envelope(cx.flavour, Envelope::data(data, "kv")))
        }
        Some(Engine::Pki(p)) => {
            let Some(role) = rest.strip_prefix("issue/").filter(|r| !r.contains('/')) else {
                return Reply::wrapped(405, "unsupported operation");
            };
            let issued = match pki::issue(p, cx, role, &body) {
                Ok(issued) => issued,
                Err(reply) => return reply,
            };
            if !issued.generate_lease {
                return pki::answer(cx, &issued, "");
            }
            let id = pki::lease_id(clean(path), cx.nsid.as_deref());
            let now_s = unix_secs(cx.now);
            let ttl = (issued.not_after - now_s).max(1);
            let mut lease_data = Map::new();
            lease_data.insert("serial_number".into(), issued.data["serial_number"].clone());
            match secrets
                .leases
                .issue(id, cx.token, false, ttl, ttl, lease_data, cx.now)
            {
                Ok((lease, _)) => pki::answer(cx, &issued, &lease.id),
                Err(message) => Reply::wrapped(500, message),
            }
        }
        _ => Reply::wrapped(405, "unsupported operation"),
    }
}
