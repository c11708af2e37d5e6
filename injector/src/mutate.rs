//! The mutation: from a pod and its annotations to the RFC 6902 JSON patch that injects
//! vault-login, or a refusal naming the annotation at fault. Pure: no I/O, no clock.
//!
//! What a patched pod gets:
//! - volumes: `vault-secrets` (in memory, with a sizeLimit, mounted into the app containers),
//!   `vault-login-home` (in memory, the token, vault-login's alone, shared by the init container
//!   and the classic sidecar so the sidecar keeps the init container's token instead of logging
//!   in again), `vault-login-jwt` (a projected service-account token) and `vault-login-pod` (the
//!   pod's annotations through the downward API, which vault-login reads);
//! - vault-login as a native sidecar (an init container with `restartPolicy: Always` whose
//!   startup probe on `/readyz` holds the app containers until the first token and secrets are
//!   written), or an init container plus a classic sidecar, or (`agent-pre-populate-only`) the
//!   init container alone;
//! - `agent-inject-status: injected`, so the pod is not patched twice.

use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::annotations::Annotations;
use crate::quantity::check_quantity;
use crate::settings::InjectSettings;

/// Name of the shared, in-memory secrets volume (vault-k8s's name).
pub const SECRETS_VOLUME: &str = "vault-secrets";
/// Name of vault-login's private in-memory volume (the token).
pub const HOME_VOLUME: &str = "vault-login-home";
/// Name of the projected service-account token volume.
pub const JWT_VOLUME: &str = "vault-login-jwt";
/// Name of the downward-API volume with the pod's annotations.
pub const POD_VOLUME: &str = "vault-login-pod";
/// Name of the native or classic sidecar.
pub const SIDECAR: &str = "vault-login";
/// Name of the init container (classic mode and `agent-pre-populate-only`).
pub const INIT: &str = "vault-login-init";
/// Where secrets go unless `secret-volume-path` says otherwise (Agent's path).
pub const DEFAULT_SECRETS_PATH: &str = "/vault/secrets";
/// Where the downward-API volume is mounted in vault-login's container.
pub const POD_INFO_DIR: &str = "/var/run/vault-login/pod";
/// The annotations file vault-login reads (`VAULT_LOGIN_ANNOTATIONS_FILE`).
pub const ANNOTATIONS_FILE: &str = "/var/run/vault-login/pod/annotations";
/// Where the projected token is mounted.
pub const JWT_DIR: &str = "/var/run/secrets/vault-login";
/// vault-login's home (the token file when `agent-inject-token` is not set).
pub const HOME_DIR: &str = "/home/vault";

const OUR_VOLUMES: [&str; 4] = [SECRETS_VOLUME, HOME_VOLUME, JWT_VOLUME, POD_VOLUME];
const OUR_CONTAINERS: [&str; 2] = [SIDECAR, INIT];
/// vault-k8s refuses these too: injecting into the control plane's namespaces.
const SYSTEM_NAMESPACES: [&str; 2] = ["kube-system", "kube-public"];
/// Annotations asking for what vault-login does not do: refused rather than ignored.
const UNSUPPORTED: [(&str, &str); 3] = [
    (
        "agent-configmap",
        "vault-login has no Agent configuration file; use the annotations",
    ),
    (
        "agent-json-patch",
        "the injector does not apply patches to its container",
    ),
    (
        "agent-init-json-patch",
        "the injector does not apply patches to its container",
    ),
];

/// One RFC 6902 operation.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum Op {
    /// Add a member or insert into an array (`-`: append).
    Add {
        /// JSON pointer.
        path: String,
        /// The value.
        value: Value,
    },
    /// Remove a member or an array element.
    Remove {
        /// JSON pointer.
        path: String,
    },
}

/// What the webhook answers for a pod.
#[derive(Debug, PartialEq)]
pub enum Outcome {
    /// Not ours to patch; allowed as is.
    Skipped(&'static str),
    /// Allowed with this patch.
    Injected {
        /// The operations, in order.
        patch: Vec<Op>,
        /// How vault-login was injected, for logs and metrics: `native`, `classic` or `init-only`.
        mode: &'static str,
    },
}

/// Why a pod is refused: a line naming the annotation and what to do.
#[derive(Debug, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct Refusal(pub String);

/// How vault-login runs in the pod.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    /// A native sidecar; `gate`: its startup probe holds the app until the first render.
    Native { gate: bool },
    /// An init container and/or a classic sidecar.
    Classic { init: bool, sidecar: bool },
}

/// What the annotations ask for, checked.
struct Plan {
    mode: Mode,
    init_first: bool,
    /// Indexes of the app containers that get the secrets volume.
    containers: Vec<usize>,
    secrets_path: String,
    token_file: String,
    vault_addr: Option<String>,
    resources: Value,
    user: i64,
    group: i64,
}

/// Decides and builds the patch for a pod created in `namespace`.
pub fn mutate(pod: &Value, namespace: &str, s: &InjectSettings) -> Result<Outcome, Refusal> {
    let a = Annotations::of(pod);
    if !a.flag("agent-inject", false).map_err(Refusal)? {
        return Ok(Outcome::Skipped("no agent-inject annotation"));
    }
    if pod
        .pointer("/status/phase")
        .and_then(Value::as_str)
        .is_some_and(|p| !p.is_empty() && p != "Pending")
    {
        return Ok(Outcome::Skipped("pod already running"));
    }
    if a.get("agent-inject-status") == Some("injected") {
        return Ok(Outcome::Skipped("already injected"));
    }
    if SYSTEM_NAMESPACES.contains(&namespace) {
        return Err(Refusal(format!(
            "{}: vault-login is not injected into namespace {namespace}; run the pod elsewhere or drop the annotation",
            a.key("agent-inject")
        )));
    }
    let plan = plan(pod, &a, s)?;
    let mut pod = pod.clone();
    let mut patch = remove_ours(&mut pod);
    add_volumes(&mut patch, &pod, s);
    add_mounts(&mut patch, &pod, &plan);
    add_containers(&mut patch, &pod, &plan, s);
    patch.push(Op::Add {
        path: format!(
            "/metadata/annotations/{}",
            escape(&a.key("agent-inject-status"))
        ),
        value: json!("injected"),
    });
    let mode = match plan.mode {
        Mode::Native { .. } => "native",
        Mode::Classic { sidecar: true, .. } => "classic",
        Mode::Classic { .. } => "init-only",
    };
    Ok(Outcome::Injected { patch, mode })
}

/// Reads and checks the annotations the injector acts on.
fn plan(pod: &Value, a: &Annotations<'_>, s: &InjectSettings) -> Result<Plan, Refusal> {
    let refuse = |name: &str, problem: String| Refusal(format!("{}: {problem}", a.key(name)));
    for (name, why) in UNSUPPORTED {
        if let Some(key) = a.any_starting_with(name) {
            return Err(Refusal(format!(
                "{key}: not supported by vault-login ({why}); remove it"
            )));
        }
    }
    if let Some(t) = a.get("auth-type").filter(|t| *t != "kubernetes") {
        return Err(refuse("auth-type", format!(
            "{t:?} is not supported; vault-login logs in with the kubernetes auth method only (remove it or write kubernetes)"
        )));
    }
    // vault-login reads the annotations itself; what it would refuse at start is refused here,
    // so the pod is not created rather than created to crash-loop (one list: vault-login's).
    let pairs: Vec<(String, String)> = a
        .all()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let layer = vault_login::config::annotations::Layer::from_annotations(&pairs)
        .map_err(|(key, problem)| Refusal(format!("{key}: {problem}")))?;
    // A template that cannot parse would crash-loop the pod: refused now, naming its annotation.
    layer
        .check_templates(&vault_login::secrets::template::Funcs::standard())
        .map_err(|e| Refusal(format!("{}: {}", e.variable, e.problem)))?;
    if a.get("role").is_none_or(str::is_empty) {
        return Err(refuse(
            "role",
            "missing; give the Vault kubernetes auth role to log in as".into(),
        ));
    }
    let vault_addr = match a.get("service") {
        Some(_) => None,
        None => Some(s.vault_addr.clone().ok_or_else(|| refuse("service",
            "missing and the injector has no default (VAULT_LOGIN_INJECTOR_VAULT_ADDR); give the Vault address".into()))?),
    };
    let flag = |name, default| a.flag(name, default).map_err(Refusal);
    let pre_populate_only = flag("agent-pre-populate-only", false)?;
    let pre_populate = flag("agent-pre-populate", true)?;
    let mode = match (pre_populate_only, s.native_sidecar) {
        (true, _) => Mode::Classic {
            init: true,
            sidecar: false,
        },
        (false, true) => Mode::Native { gate: pre_populate },
        (false, false) => Mode::Classic {
            init: pre_populate,
            sidecar: true,
        },
    };
    let secrets_path = a
        .get("secret-volume-path")
        .unwrap_or(DEFAULT_SECRETS_PATH)
        .to_string();
    if !secrets_path.starts_with('/') {
        return Err(refuse(
            "secret-volume-path",
            format!("{secrets_path:?} is not an absolute path; write e.g. /vault/secrets"),
        ));
    }
    let token_file = if flag("agent-inject-token", false)? {
        format!("{}/token", secrets_path.trim_end_matches('/'))
    } else {
        format!("{HOME_DIR}/.vault-token")
    };
    let id = |name: &str, default: i64| -> Result<i64, Refusal> {
        a.get(name).map_or(Ok(default), |v| {
            v.trim()
                .parse::<i64>()
                .ok()
                .filter(|n| *n >= 0)
                .ok_or_else(|| refuse(name, format!("{v:?} is not a numeric ID; write e.g. 65532")))
        })
    };
    let user = id("agent-run-as-user", s.run_as_user)?;
    if user == 0 {
        return Err(refuse(
            "agent-run-as-user",
            "0 is root; vault-login runs as non-root: give another UID".into(),
        ));
    }
    Ok(Plan {
        mode,
        init_first: flag("agent-init-first", false)?,
        containers: selected_containers(pod, a)?,
        secrets_path,
        token_file,
        vault_addr,
        resources: resources(a, s)?,
        user,
        group: id("agent-run-as-group", s.run_as_group)?,
    })
}

/// The app containers that get the secrets volume: all, or those `agent-inject-containers` names.
fn selected_containers(pod: &Value, a: &Annotations<'_>) -> Result<Vec<usize>, Refusal> {
    let names: Vec<&str> = containers(pod, "containers").iter().map(name_of).collect();
    let Some(list) = a
        .get("agent-inject-containers")
        .filter(|l| !l.trim().is_empty())
    else {
        return Ok((0..names.len())
            .filter(|i| !OUR_CONTAINERS.contains(&names[*i]))
            .collect());
    };
    let mut selected = Vec::new();
    for wanted in list.split(',').map(str::trim).filter(|w| !w.is_empty()) {
        let index = names.iter().position(|n| *n == wanted).ok_or_else(|| {
            Refusal(format!(
                "{}: the pod has no container {wanted:?} (it has {}); fix the list",
                a.key("agent-inject-containers"),
                names.join(", ")
            ))
        })?;
        if !selected.contains(&index) {
            selected.push(index);
        }
    }
    Ok(selected)
}

/// Requests and limits: the annotations', else the injector's defaults; an empty annotation: none.
fn resources(a: &Annotations<'_>, s: &InjectSettings) -> Result<Value, Refusal> {
    let mut out = Map::new();
    let kinds = [
        (
            "requests",
            [
                ("cpu", &s.requests.0),
                ("memory", &s.requests.1),
                ("ephemeral-storage", &None),
            ],
        ),
        (
            "limits",
            [
                ("cpu", &s.limits.0),
                ("memory", &s.limits.1),
                ("ephemeral-storage", &None),
            ],
        ),
    ];
    for (kind, resources) in kinds {
        let mut set = Map::new();
        for ((resource, default), suffix) in resources.into_iter().zip(["cpu", "mem", "ephemeral"])
        {
            let name = format!("agent-{kind}-{suffix}");
            let value = match a.get(&name) {
                Some(v) if v.trim().is_empty() => None,
                Some(v) => {
                    check_quantity(v.trim())
                        .map_err(|p| Refusal(format!("{}: {p}", a.key(&name))))?;
                    Some(v.trim().to_string())
                }
                None => default.clone(),
            };
            if let Some(v) = value {
                set.insert(resource.to_string(), json!(v));
            }
        }
        if !set.is_empty() {
            out.insert(kind.to_string(), Value::Object(set));
        }
    }
    Ok(Value::Object(out))
}

/// Removes what an earlier injection added (a pod whose status asks to `update`), from `pod`
/// and as operations, so the additions below start from a clean pod.
fn remove_ours(pod: &mut Value) -> Vec<Op> {
    let mut ops = Vec::new();
    let mut remove = |pod: &mut Value, array: String, ours: &dyn Fn(&Value) -> bool| {
        if let Some(items) = pod.pointer_mut(&array).and_then(Value::as_array_mut) {
            for i in (0..items.len()).rev() {
                if ours(&items[i]) {
                    items.remove(i);
                    ops.push(Op::Remove {
                        path: format!("{array}/{i}"),
                    });
                }
            }
        }
    };
    let our_container = |c: &Value| OUR_CONTAINERS.contains(&name_of(c));
    let our_volume = |v: &Value| OUR_VOLUMES.contains(&name_of(v));
    remove(pod, "/spec/initContainers".into(), &our_container);
    remove(pod, "/spec/containers".into(), &our_container);
    remove(pod, "/spec/volumes".into(), &our_volume);
    for list in ["initContainers", "containers"] {
        for i in 0..containers(pod, list).len() {
            remove(pod, format!("/spec/{list}/{i}/volumeMounts"), &our_volume);
        }
    }
    ops
}

fn add_volumes(ops: &mut Vec<Op>, pod: &Value, s: &InjectSettings) {
    let memory = |size: &str| json!({"medium": "Memory", "sizeLimit": size});
    let mut token = json!({"path": "token", "expirationSeconds": s.token_expiration});
    if let Some(audience) = &s.audience {
        token["audience"] = json!(audience);
    }
    let volumes = [
        json!({"name": SECRETS_VOLUME, "emptyDir": memory(&s.volume_size)}),
        json!({"name": HOME_VOLUME, "emptyDir": memory("1Mi")}),
        json!({"name": JWT_VOLUME, "projected": {"sources": [{"serviceAccountToken": token}]}}),
        json!({"name": POD_VOLUME, "downwardAPI": {"items": [
            {"path": "annotations", "fieldRef": {"fieldPath": "metadata.annotations"}}
        ]}}),
    ];
    append(ops, pod, "/spec/volumes", volumes.to_vec());
}

/// The secrets volume into the selected app containers, and into the init containers that run
/// after vault-login's (`agent-init-first`).
fn add_mounts(ops: &mut Vec<Op>, pod: &Value, plan: &Plan) {
    let mount = json!({"name": SECRETS_VOLUME, "mountPath": plan.secrets_path, "readOnly": true});
    for &i in &plan.containers {
        let path = format!("/spec/containers/{i}/volumeMounts");
        append(ops, pod, &path, vec![mount.clone()]);
    }
    let gated = !matches!(plan.mode, Mode::Classic { init: false, .. });
    if plan.init_first && gated {
        for i in 0..containers(pod, "initContainers").len() {
            let path = format!("/spec/initContainers/{i}/volumeMounts");
            append(ops, pod, &path, vec![mount.clone()]);
        }
    }
}

fn add_containers(ops: &mut Vec<Op>, pod: &Value, plan: &Plan, s: &InjectSettings) {
    let first = match plan.mode {
        Mode::Native { gate } => Some(container(SIDECAR, Role::Native { gate }, plan, s)),
        Mode::Classic { init: true, .. } => Some(container(INIT, Role::Init, plan, s)),
        Mode::Classic { init: false, .. } => None,
    };
    if let Some(c) = first {
        let inits = containers(pod, "initContainers");
        if plan.init_first && !inits.is_empty() {
            ops.push(Op::Add {
                path: "/spec/initContainers/0".into(),
                value: c,
            });
        } else {
            append(ops, pod, "/spec/initContainers", vec![c]);
        }
    }
    if let Mode::Classic { sidecar: true, .. } = plan.mode {
        append(
            ops,
            pod,
            "/spec/containers",
            vec![container(SIDECAR, Role::Sidecar, plan, s)],
        );
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Role {
    Native { gate: bool },
    Init,
    Sidecar,
}

/// vault-login's container: configured by environment variables and the annotations file.
fn container(name: &str, role: Role, plan: &Plan, s: &InjectSettings) -> Value {
    let mut env = vec![
        json!({"name": "VAULT_LOGIN_ANNOTATIONS_FILE", "value": ANNOTATIONS_FILE}),
        json!({"name": "VAULT_LOGIN_JWT_FILE", "value": format!("{JWT_DIR}/token")}),
        json!({"name": "VAULT_LOGIN_TOKEN_FILE", "value": plan.token_file}),
        json!({"name": "VAULT_LOGIN_SECRETS_DIR", "value": plan.secrets_path}),
        // Explicit, so that agent-pre-populate-only in the annotations cannot turn a sidecar
        // into an init container (the environment wins over the annotations).
        json!({"name": "VAULT_LOGIN_ONCE", "value": (role == Role::Init).to_string()}),
    ];
    if let Some(addr) = &plan.vault_addr {
        env.push(json!({"name": "VAULT_ADDR", "value": addr}));
    }
    let mut c = json!({
        "name": name,
        "image": s.image,
        "imagePullPolicy": "IfNotPresent",
        "resources": plan.resources,
        "securityContext": {
            "runAsNonRoot": true,
            "runAsUser": plan.user,
            "runAsGroup": plan.group,
            "readOnlyRootFilesystem": true,
            "allowPrivilegeEscalation": false,
            "privileged": false,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumeMounts": [
            {"name": SECRETS_VOLUME, "mountPath": plan.secrets_path},
            {"name": HOME_VOLUME, "mountPath": HOME_DIR},
            {"name": JWT_VOLUME, "mountPath": JWT_DIR, "readOnly": true},
            {"name": POD_VOLUME, "mountPath": POD_INFO_DIR, "readOnly": true},
        ],
        "terminationMessagePolicy": "FallbackToLogsOnError",
    });
    if role != Role::Init {
        let port = s.sidecar_port;
        env.push(json!({"name": "VAULT_LOGIN_LISTEN", "value": format!("0.0.0.0:{port}")}));
        c["ports"] = json!([{"name": "vault-login", "containerPort": port, "protocol": "TCP"}]);
        let probe = |path: &str, period: u32, failures: u32| {
            json!({
                "httpGet": {"path": path, "port": port},
                "periodSeconds": period, "timeoutSeconds": 2, "failureThreshold": failures,
            })
        };
        c["livenessProbe"] = probe("/healthz", 10, 3);
        if let Role::Native { gate } = role {
            c["restartPolicy"] = json!("Always");
            if gate {
                // Holds the app containers until the first token and secrets are written, up to
                // five minutes (vault-login's own once-mode timeout).
                c["startupProbe"] = probe("/readyz", 1, 300);
            }
        }
    }
    c["env"] = Value::Array(env);
    c
}

/// Appends `items` to the array at `path`, creating it when the pod has none.
fn append(ops: &mut Vec<Op>, pod: &Value, path: &str, items: Vec<Value>) {
    if pod.pointer(path).is_some_and(Value::is_array) {
        ops.extend(items.into_iter().map(|value| Op::Add {
            path: format!("{path}/-"),
            value,
        }));
    } else {
        ops.push(Op::Add {
            path: path.to_string(),
            value: Value::Array(items),
        });
    }
}

fn containers<'a>(pod: &'a Value, list: &str) -> &'a [Value] {
    pod.pointer(&format!("/spec/{list}"))
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn name_of(v: &Value) -> &str {
    v.get("name").and_then(Value::as_str).unwrap_or("")
}

/// A JSON pointer token (RFC 6901): `~` and `/` escaped.
fn escape(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> InjectSettings {
        InjectSettings {
            image: "img".into(),
            vault_addr: Some("https://vault:8200".into()),
            native_sidecar: true,
            audience: None,
            token_expiration: 3600,
            sidecar_port: 9102,
            volume_size: "8Mi".into(),
            requests: (Some("5m".into()), Some("16Mi".into())),
            limits: (None, Some("64Mi".into())),
            run_as_user: 65532,
            run_as_group: 65532,
        }
    }

    fn pod(annotations: Value) -> Value {
        json!({"metadata": {"annotations": annotations},
               "spec": {"containers": [{"name": "app", "image": "app"}]}})
    }

    fn refusal(annotations: Value) -> String {
        mutate(&pod(annotations), "app", &settings()).unwrap_err().0
    }

    #[test]
    fn pods_not_asking_are_left_alone() {
        let s = settings();
        let none = json!({"spec": {"containers": []}});
        assert_eq!(
            mutate(&none, "app", &s),
            Ok(Outcome::Skipped("no agent-inject annotation"))
        );
        let off = pod(json!({"vault.hashicorp.com/agent-inject": "false"}));
        assert_eq!(
            mutate(&off, "app", &s),
            Ok(Outcome::Skipped("no agent-inject annotation"))
        );
    }

    #[test]
    fn refusals_name_the_annotation() {
        let base = |extra: (&str, &str)| {
            let mut a = json!({"vault.hashicorp.com/agent-inject": "true", "vault.hashicorp.com/role": "r"});
            a[extra.0] = json!(extra.1);
            a
        };
        let cases = [
            (("vault.hashicorp.com/auth-type", "jwt"), "vault.hashicorp.com/auth-type: \"jwt\" is not supported"),
            (("vault.hashicorp.com/agent-configmap", "cm"), "vault.hashicorp.com/agent-configmap: not supported"),
            (("vault.hashicorp.com/agent-json-patch", "[]"), "vault.hashicorp.com/agent-json-patch: not supported"),
            (("vault.hashicorp.com/agent-requests-cpu", "lots"), "vault.hashicorp.com/agent-requests-cpu: \"lots\" is not a Kubernetes quantity"),
            (("vault.hashicorp.com/agent-run-as-user", "0"), "vault.hashicorp.com/agent-run-as-user: 0 is root"),
            (("vault.hashicorp.com/agent-inject-containers", "web"), "vault.hashicorp.com/agent-inject-containers: the pod has no container \"web\" (it has app)"),
            (("vault.hashicorp.com/role", ""), "vault.hashicorp.com/role: missing"),
            (("vault.hashicorp.com/agent-pre-populate-only", "sure"), "vault.hashicorp.com/agent-pre-populate-only: \"sure\" is not a boolean"),
        ];
        for (extra, expected) in cases {
            let got = refusal(base(extra));
            assert!(got.starts_with(expected), "{extra:?}: {got}");
        }
        let got = mutate(&pod(base(("x", "y"))), "kube-system", &settings())
            .unwrap_err()
            .0;
        assert!(
            got.contains("not injected into namespace kube-system"),
            "{got}"
        );
    }

    #[test]
    fn pointer_tokens_are_escaped() {
        assert_eq!(
            escape("vault.hashicorp.com/agent-inject-status"),
            "vault.hashicorp.com~1agent-inject-status"
        );
        assert_eq!(escape("a~b"), "a~0b");
    }
}
