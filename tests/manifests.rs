//! The manifests in k8s/, run: every vault-login container of every workload, with its env,
//! command and args as written, against the Vault emulator configured like the Terraform beside
//! the manifests (`<dir>/vault/main.tf`). Paths are mapped into a temp dir that stands in for
//! the pod's volumes, VAULT_ADDR to the emulator, VAULT_LOGIN_LISTEN to a free loopback port;
//! the kubelet's part (the projected or default service-account token) is played by the
//! emulator's signing key. A typo in an env name, a path the app does not read, or an audience
//! the role does not accept fails here instead of in a cluster. Also: the tutorial's verify
//! step and error hints, and the PrometheusRule's expressions against real /metrics output.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use common::*;
use serde_json::{json, Value};
use vault_emulator::{PkiKeyType, PkiRole};

const SEC: Duration = Duration::from_secs(1);

/// The audiences of a default (automounted) service-account token on k3s, the tutorial's
/// cluster: the API server's own and `k3s`.
const DEFAULT_TOKEN_AUDIENCES: [&str; 2] = ["https://kubernetes.default.svc.cluster.local", "k3s"];
/// Where the kubelet mounts the default service-account token.
const DEFAULT_TOKEN_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// The path of the binary in the image (the Dockerfile's ENTRYPOINT).
const IMAGE_BINARY: &str = "/vault-login";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

// ---------------------------------------------------------------------------------------------
// Manifests

/// One YAML document of k8s/, as JSON.
#[derive(Clone, Debug)]
struct Doc {
    file: PathBuf,
    value: Value,
}

impl Doc {
    fn kind(&self) -> &str {
        self.value["kind"].as_str().unwrap_or_default()
    }
    fn name(&self) -> &str {
        self.value["metadata"]["name"].as_str().unwrap_or_default()
    }
    fn namespace(&self) -> &str {
        self.value["metadata"]["namespace"]
            .as_str()
            .unwrap_or("default")
    }
    /// The pod template of a workload, None for other kinds.
    fn pod_spec(&self) -> Option<&Value> {
        let v = &self.value;
        let spec = match self.kind() {
            "Pod" => &v["spec"],
            "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" | "Job" => {
                &v["spec"]["template"]["spec"]
            }
            "CronJob" => &v["spec"]["jobTemplate"]["spec"]["template"]["spec"],
            _ => return None,
        };
        spec.is_object().then_some(spec)
    }
    fn pod_spec_mut(&mut self) -> &mut Value {
        match self.kind() {
            "Pod" => &mut self.value["spec"],
            "CronJob" => &mut self.value["spec"]["jobTemplate"]["spec"]["template"]["spec"],
            _ => &mut self.value["spec"]["template"]["spec"],
        }
    }
    fn label(&self) -> String {
        format!(
            "{}: {} {}/{}",
            self.file
                .strip_prefix(repo())
                .unwrap_or(&self.file)
                .display(),
            self.kind(),
            self.namespace(),
            self.name()
        )
    }
}

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            yaml_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "yaml" || e == "yml")
            && p.file_name().is_some_and(|n| n != "kustomization.yaml")
        {
            out.push(p);
        }
    }
}

/// Every document of every manifest in k8s/.
fn all_docs() -> Vec<Doc> {
    let mut files = Vec::new();
    yaml_files(&repo().join("k8s"), &mut files);
    let mut docs = Vec::new();
    for file in files {
        let text = fs::read_to_string(&file).unwrap();
        for d in serde_yaml::Deserializer::from_str(&text) {
            let yaml = <serde_yaml::Value as serde::Deserialize>::deserialize(d)
                .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            let value = serde_json::to_value(yaml).unwrap();
            if !value.is_null() {
                docs.push(Doc {
                    file: file.clone(),
                    value,
                });
            }
        }
    }
    docs
}

/// A vault-login sidecar or init container (not the injector webhook, whose image is
/// `vault-login-injector`: it logs in to nothing).
fn is_vault_login(container: &Value) -> bool {
    container["image"]
        .as_str()
        .is_some_and(|i| i.contains("vault-login") && !i.contains("vault-login-injector"))
}

fn containers(spec: &Value) -> Vec<&Value> {
    ["initContainers", "containers"]
        .iter()
        .flat_map(|k| spec[*k].as_array().into_iter().flatten())
        .collect()
}

/// Workloads with at least one vault-login container.
fn workloads(docs: &[Doc]) -> Vec<Doc> {
    docs.iter()
        .filter(|d| {
            d.pod_spec()
                .is_some_and(|s| containers(s).into_iter().any(is_vault_login))
        })
        .cloned()
        .collect()
}

fn tutorial_pod(docs: &[Doc]) -> Doc {
    docs.iter()
        .find(|d| d.kind() == "Pod" && d.name() == "login-app" && d.namespace() == "default")
        .cloned()
        .expect("k8s/tutorial: Pod default/login-app")
}

// ---------------------------------------------------------------------------------------------
// Terraform: the few HCL forms k8s/*/vault/main.tf uses (blocks, `key = value` attributes,
// strings, numbers, lists, `var.x` and `type.name.attr` references, heredocs skipped).

#[derive(Debug, Default)]
struct Block {
    kind: String,
    labels: Vec<String>,
    attrs: BTreeMap<String, String>,
}

fn strip_comment(line: &str) -> &str {
    let mut in_str = false;
    for (i, c) in line.char_indices() {
        match c {
            '"' => in_str = !in_str,
            '#' if !in_str => return &line[..i],
            _ => {}
        }
    }
    line
}

fn hcl_blocks(text: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut depth = 0usize;
    let mut heredoc: Option<String> = None;
    let mut current: Option<Block> = None;
    for raw in text.lines() {
        if let Some(end) = &heredoc {
            if raw.trim() == end {
                heredoc = None;
            }
            continue;
        }
        let line = strip_comment(raw).trim();
        if line.is_empty() {
            continue;
        }
        if let Some(i) = line.find("<<") {
            heredoc = Some(line[i + 2..].trim_start_matches('-').trim().to_string());
        }
        if depth == 0 {
            if let Some(head) = line.strip_suffix('{') {
                let mut words = head.split_whitespace();
                let kind = words.next().unwrap_or_default().to_string();
                let labels = words.map(|w| w.trim_matches('"').to_string()).collect();
                current = Some(Block {
                    kind,
                    labels,
                    attrs: BTreeMap::new(),
                });
                depth = 1;
            }
            continue;
        }
        if depth == 1 {
            if let Some((k, v)) = line.split_once('=') {
                if !k.trim().contains(' ') && !line.ends_with('{') {
                    if let Some(b) = current.as_mut() {
                        b.attrs.insert(k.trim().to_string(), v.trim().to_string());
                    }
                }
            }
        }
        depth += line.matches('{').count();
        depth -= line.matches('}').count().min(depth);
        if depth == 0 {
            blocks.extend(current.take());
        }
    }
    blocks
}

/// One `path "..." { capabilities = [...] }` of a policy: the path and its capabilities.
type PolicyPath = (String, Vec<String>);

struct Terraform {
    blocks: Vec<Block>,
    text: String,
}

impl Terraform {
    fn load(dir: &Path) -> Terraform {
        let path = dir.join("vault").join("main.tf");
        let text = fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (the Vault side of {})",
                path.display(),
                dir.display()
            )
        });
        Terraform {
            blocks: hcl_blocks(&text),
            text,
        }
    }

    fn resources<'a>(&'a self, ty: &'a str) -> impl Iterator<Item = &'a Block> + 'a {
        self.blocks
            .iter()
            .filter(move |b| b.kind == "resource" && b.labels.first().is_some_and(|l| l == ty))
    }

    /// A value as a list of strings (a scalar is a one-element list).
    fn list(&self, raw: &str) -> Vec<String> {
        let raw = raw.trim();
        if let Some(inner) = raw.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
            return inner
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .flat_map(|s| self.list(s))
                .collect();
        }
        if let Some(s) = raw.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
            return vec![s.to_string()];
        }
        if raw.chars().all(|c| c.is_ascii_digit()) {
            return vec![raw.to_string()];
        }
        if let Some(var) = raw.strip_prefix("var.") {
            let block = self
                .blocks
                .iter()
                .find(|b| b.kind == "variable" && b.labels == [var])
                .unwrap_or_else(|| panic!("variable {var} not declared"));
            let default = block
                .attrs
                .get("default")
                .unwrap_or_else(|| panic!("variable {var} has no default"));
            return self.list(default);
        }
        let parts: Vec<&str> = raw.split('.').collect();
        if let [ty, name, attr] = parts[..] {
            let block = self
                .resources(ty)
                .find(|b| b.labels.get(1).is_some_and(|n| n == name))
                .unwrap_or_else(|| panic!("no resource {ty}.{name}"));
            return match (block.attrs.get(attr), ty, attr) {
                (Some(v), _, _) => self.list(v),
                // vault_auth_backend's path defaults to its type.
                (None, "vault_auth_backend", "path") => self.list(&block.attrs["type"]),
                _ => panic!("{raw}: attribute not set"),
            };
        }
        panic!("unsupported HCL value {raw:?}")
    }

    fn one(&self, raw: &str) -> String {
        let mut v = self.list(raw);
        assert_eq!(v.len(), 1, "{raw}: expected one value");
        v.remove(0)
    }

    /// Configures the emulator's mounts and roles as `terraform apply` would configure Vault.
    fn configure(&self, emu: &Emulator) -> usize {
        let mut roles = 0;
        for b in self.resources("vault_kubernetes_auth_backend_role") {
            let get = |k: &str| b.attrs.get(k).map(|v| self.list(v)).unwrap_or_default();
            let secs = |k: &str| {
                get(k)
                    .first()
                    .map_or(0, |v| v.parse::<u64>().expect("seconds"))
            };
            let mount = self.one(&b.attrs["backend"]);
            let name = self.one(&b.attrs["role_name"]);
            let role = Role {
                bound_service_account_names: get("bound_service_account_names"),
                bound_service_account_namespaces: get("bound_service_account_namespaces"),
                audience: get("audience").into_iter().next(),
                token_ttl: Duration::from_secs(secs("token_ttl")),
                token_max_ttl: Duration::from_secs(secs("token_max_ttl")),
                token_policies: get("token_policies"),
                ..Role::default()
            };
            emu.put_role(&mount, &name, role);
            roles += 1;
        }
        for (name, paths) in self.policies() {
            let caps: Vec<Vec<&str>> = (paths.iter())
                .map(|(_, c)| c.iter().map(String::as_str).collect())
                .collect();
            let rules: Vec<(&str, &[&str])> = (paths.iter().zip(&caps))
                .map(|((p, _), c)| (p.as_str(), &c[..]))
                .collect();
            emu.put_policy(&name, &rules);
        }
        self.configure_pki(emu);
        roles
    }

    /// The PKI engines (`vault_pki_secret_backend_root_cert`) and their roles, on the
    /// emulator's PKI (EC keys only).
    fn configure_pki(&self, emu: &Emulator) {
        for b in self.resources("vault_pki_secret_backend_root_cert") {
            let mount = self.one(&b.attrs["backend"]);
            emu.enable_pki(&mount, &self.one(&b.attrs["common_name"]));
        }
        for b in self.resources("vault_pki_secret_backend_role") {
            let get = |k: &str| b.attrs.get(k).map(|v| self.list(v)).unwrap_or_default();
            let flag = |k: &str| b.attrs.get(k).is_some_and(|v| v == "true");
            let secs = |k: &str| {
                get(k)
                    .first()
                    .map_or(0, |v| v.parse::<u64>().expect("seconds"))
            };
            let key_type = match (
                get("key_type").first().map(String::as_str),
                secs("key_bits"),
            ) {
                (Some("ec"), 384) => PkiKeyType::EcP384,
                (Some("ec"), _) => PkiKeyType::EcP256,
                (other, _) => {
                    panic!("pki role key_type {other:?}: the emulator makes EC keys only")
                }
            };
            let role = PkiRole {
                allowed_domains: get("allowed_domains"),
                allow_subdomains: flag("allow_subdomains"),
                allow_bare_domains: flag("allow_bare_domains"),
                ttl: Duration::from_secs(secs("ttl")),
                max_ttl: Duration::from_secs(secs("max_ttl")),
                key_type,
                generate_lease: flag("generate_lease"),
                ..PkiRole::default()
            };
            let mount = self.one(&b.attrs["backend"]);
            emu.put_pki_role(&mount, &self.one(&b.attrs["name"]), role);
        }
    }

    /// Each `vault_policy`'s name and the paths its heredoc grants (`${res.name.attr}`
    /// interpolations resolved), each with its capabilities (`read` when none are written).
    fn policies(&self) -> Vec<(String, Vec<PolicyPath>)> {
        let mut out = Vec::new();
        let mut lines = self.text.lines();
        while let Some(line) = lines.next() {
            let Some(label) = line
                .trim()
                .strip_prefix("resource \"vault_policy\" \"")
                .and_then(|r| r.split('"').next())
            else {
                continue;
            };
            let block = self
                .resources("vault_policy")
                .find(|b| b.labels.get(1).is_some_and(|l| l == label))
                .expect("parsed");
            let name = self.one(&block.attrs["name"]);
            let mut paths = Vec::new();
            for l in lines.by_ref() {
                let l = l.trim();
                if l == "}" {
                    break;
                }
                if let Some(p) = l.strip_prefix("path \"").and_then(|r| r.split('"').next()) {
                    let mut p = p.to_string();
                    while let Some(i) = p.find("${") {
                        let j = p[i..].find('}').expect("closed interpolation") + i;
                        let value = self.one(&p[i + 2..j]);
                        p.replace_range(i..=j, &value);
                    }
                    paths.push((p, vec!["read".to_string()]));
                } else if let Some(caps) = l.strip_prefix("capabilities") {
                    let caps = caps.trim_start().trim_start_matches('=');
                    if let Some(last) = paths.last_mut() {
                        last.1 = self.list(caps);
                    }
                }
            }
            out.push((name, paths));
        }
        out
    }
}

// ---------------------------------------------------------------------------------------------
// Running one vault-login container

/// The names vault-login reads: every `VAULT_*`/`BAO_*` name and proxy variable its --help
/// mentions.
fn known_env_names() -> &'static Vec<String> {
    static NAMES: OnceLock<Vec<String>> = OnceLock::new();
    NAMES.get_or_init(|| {
        let out = Command::new(bin()).arg("--help").output().unwrap();
        let help = String::from_utf8_lossy(&out.stdout);
        let mut names: Vec<String> = help
            .split(|c: char| !(c.is_ascii_uppercase() || c == '_'))
            .filter(|w| w.starts_with("VAULT_") || w.starts_with("BAO_") || w.ends_with("_PROXY"))
            .map(str::to_string)
            .collect();
        names.sort();
        names.dedup();
        assert!(
            names.len() > 30,
            "--help names too few variables: {names:?}"
        );
        names
    })
}

/// A volume as the test lays it out: `<tmp>/volumes/<name>`.
struct Mount {
    path: String,
    volume: String,
}

/// The pod's file systems in a temp dir.
struct PodFs {
    root: tempfile::TempDir,
}

impl PodFs {
    fn volume_dir(&self, volume: &str) -> PathBuf {
        self.root.path().join("volumes").join(volume)
    }

    /// Where `path` of a container with `mounts` lies on the host; paths outside every mount
    /// are on the container's (read-only, image) root file system: `<tmp>/rootfs/...`, which
    /// does not exist.
    fn map(&self, mounts: &[Mount], path: &str) -> PathBuf {
        let best = mounts
            .iter()
            .filter(|m| {
                path == m.path || path.starts_with(&format!("{}/", m.path.trim_end_matches('/')))
            })
            .max_by_key(|m| m.path.len());
        match best {
            Some(m) => {
                let rest = path[m.path.len()..].trim_start_matches('/');
                self.volume_dir(&m.volume).join(rest)
            }
            None => self
                .root
                .path()
                .join("rootfs")
                .join(path.trim_start_matches('/')),
        }
    }
}

/// What a run of one vault-login container gave.
#[derive(Debug)]
struct Outcome {
    /// The token as the app containers see it, when one was written and is valid.
    token: Option<String>,
    stderr: String,
    /// Why the container does not work as the manifest intends.
    problems: Vec<String>,
}

impl Outcome {
    fn ok(&self) -> bool {
        self.problems.is_empty() && self.token.is_some()
    }
}

/// Mounts of a container, plus the default service-account token when the kubelet would add it.
fn mounts_of(container: &Value, automount: bool) -> Vec<Mount> {
    let mut mounts: Vec<Mount> = container["volumeMounts"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| Mount {
            path: m["mountPath"].as_str().unwrap().to_string(),
            volume: format!(
                "{}/{}",
                m["name"].as_str().unwrap(),
                m["subPath"].as_str().unwrap_or_default()
            )
            .trim_end_matches('/')
            .to_string(),
        })
        .collect();
    if automount && !mounts.iter().any(|m| m.path == DEFAULT_TOKEN_DIR) {
        mounts.push(Mount {
            path: DEFAULT_TOKEN_DIR.into(),
            volume: "kube-api-access".into(),
        });
    }
    mounts
}

/// Runs every vault-login container of `w` and reports what the app would get. `prepare` may
/// change the emulator (faults, reviewer failures) after it is configured from Terraform.
fn run_workload(w: &Doc, docs: &[Doc], prepare: &dyn Fn(&Emulator)) -> Vec<Outcome> {
    let spec = w.pod_spec().expect("a workload");
    let ns = w.namespace();
    let sa = spec["serviceAccountName"].as_str().unwrap_or("default");
    let sa_doc = docs
        .iter()
        .find(|d| d.kind() == "ServiceAccount" && d.name() == sa && d.namespace() == ns);
    let mut base_problems = Vec::new();
    if sa != "default" && sa_doc.is_none() {
        base_problems.push(format!("service account {ns}/{sa} is not defined in k8s/"));
    }
    let automount = spec["automountServiceAccountToken"]
        .as_bool()
        .or_else(|| sa_doc.and_then(|d| d.value["automountServiceAccountToken"].as_bool()))
        .unwrap_or(true);

    let emu = Emulator::start_default();
    let dir = w.file.parent().unwrap();
    let roles = Terraform::load(dir).configure(&emu);
    assert!(
        roles > 0,
        "{}: no role in {}/vault/main.tf",
        w.label(),
        dir.display()
    );
    prepare(&emu);

    let pod = PodFs {
        root: tempfile::tempdir().unwrap(),
    };
    // The kubelet's part: volumes, projected tokens, the default token.
    for v in spec["volumes"].as_array().into_iter().flatten() {
        let name = v["name"].as_str().unwrap();
        fs::create_dir_all(pod.volume_dir(name)).unwrap();
        for src in v["projected"]["sources"].as_array().into_iter().flatten() {
            let t = &src["serviceAccountToken"];
            if t.is_object() {
                let aud: Vec<&str> = match t["audience"].as_str() {
                    Some(a) => vec![a],
                    None => DEFAULT_TOKEN_AUDIENCES.to_vec(),
                };
                let ttl = t["expirationSeconds"].as_i64().unwrap_or(3607);
                let path = pod.volume_dir(name).join(t["path"].as_str().unwrap());
                fs::create_dir_all(path.parent().unwrap()).unwrap();
                fs::write(path, emu.jwt(ns, sa, &aud, ttl)).unwrap();
            }
        }
    }
    if automount {
        let dir = pod.volume_dir("kube-api-access");
        fs::create_dir_all(&dir).unwrap();
        fs::write(
            dir.join("token"),
            emu.jwt(ns, sa, &DEFAULT_TOKEN_AUDIENCES, 3607),
        )
        .unwrap();
    }

    let all = containers(spec);
    let mut outcomes = Vec::new();
    for c in all.iter().filter(|c| is_vault_login(c)) {
        let mut problems = base_problems.clone();
        let mounts = mounts_of(c, automount);
        let mut env: BTreeMap<String, String> = BTreeMap::new();
        let mut listen_port = None;
        let mut secrets: Vec<String> = Vec::new();
        let mut certs: Vec<(String, String)> = Vec::new();
        for e in c["env"].as_array().into_iter().flatten() {
            let name = e["name"].as_str().unwrap().to_string();
            let Some(value) = e["value"].as_str() else {
                problems.push(format!("{name}: only literal values are supported here"));
                continue;
            };
            let secret =
                name.starts_with("VAULT_LOGIN_SECRET_") && name != "VAULT_LOGIN_SECRETS_DIR";
            if secret {
                // The tutorial's `vault kv put internal/database/config ...`: the data an
                // operator stores before the pod starts.
                let path = value.split_once(':').map_or(value, |x| x.1);
                let path = path.split('#').next().unwrap_or_default();
                if let Some((mount, rest)) = path.split_once("/data/") {
                    emu.put_kv2(
                        mount,
                        rest,
                        json!({"username": "db-readonly-username", "password": "db-secret-password"}),
                    );
                }
                secrets.push(
                    name.trim_start_matches("VAULT_LOGIN_SECRET_")
                        .to_ascii_lowercase(),
                );
            } else if let Some(cert) = name
                .strip_prefix(CERT_ENV_PREFIX)
                .filter(|_| name != "VAULT_LOGIN_CERT_RENEW_BEFORE")
            {
                certs.push((cert.to_ascii_lowercase(), name.clone()));
            } else if !known_env_names().contains(&name) {
                problems.push(format!(
                    "{name} is not a variable vault-login reads (not in --help): a typo?"
                ));
            }
            let mapped = match name.as_str() {
                "VAULT_ADDR" | "BAO_ADDR" => emu.url(),
                "VAULT_LOGIN_LISTEN" => {
                    let port = free_port();
                    let declared = value.rsplit(':').next().and_then(|p| p.parse::<u16>().ok());
                    listen_port = Some((declared, port));
                    format!("127.0.0.1:{port}")
                }
                _ if value.starts_with('/') && !value.contains(char::is_whitespace) => {
                    pod.map(&mounts, value).display().to_string()
                }
                _ => value.to_string(),
            };
            env.insert(name, mapped);
        }
        // The app talks to the Vault that issued the token.
        let addr_of = |c: &Value| {
            c["env"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|e| e["name"] == "VAULT_ADDR")
                .and_then(|e| e["value"].as_str())
                .map(str::to_string)
        };
        for app in all.iter().filter(|a| !is_vault_login(a)) {
            if let (Some(mine), Some(theirs)) = (addr_of(c), addr_of(app)) {
                if mine != theirs {
                    problems.push(format!(
                        "VAULT_ADDR is {mine} here but {theirs} in container {}",
                        app["name"]
                    ));
                }
            }
        }
        // The binary's own defaults are paths inside the container too.
        let mut container_token_path = c["env"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|e| e["name"] == "VAULT_LOGIN_TOKEN_FILE")
            .and_then(|e| e["value"].as_str())
            .unwrap_or("/var/run/secrets/vaultproject.io/token")
            .to_string();
        if !env.contains_key("VAULT_LOGIN_TOKEN_FILE") {
            env.insert(
                "VAULT_LOGIN_TOKEN_FILE".into(),
                pod.map(&mounts, &container_token_path)
                    .display()
                    .to_string(),
            );
        }
        if !env.contains_key("VAULT_LOGIN_JWT_FILE") && !env.contains_key("VAULT_LOGIN_JWT") {
            env.insert(
                "VAULT_LOGIN_JWT_FILE".into(),
                pod.map(&mounts, &format!("{DEFAULT_TOKEN_DIR}/token"))
                    .display()
                    .to_string(),
            );
        }
        if container_token_path == "-" {
            container_token_path.clear();
        }

        // Probes must reach the health server where VAULT_LOGIN_LISTEN puts it.
        let mut probes = Vec::new();
        for kind in ["startupProbe", "readinessProbe", "livenessProbe"] {
            let get = &c[kind]["httpGet"];
            if !get.is_object() {
                continue;
            }
            let port = match &get["port"] {
                Value::Number(n) => n.as_u64().map(|n| n as u16),
                Value::String(name) => c["ports"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|p| p["name"] == *name)
                    .and_then(|p| p["containerPort"].as_u64())
                    .map(|n| n as u16),
                _ => None,
            };
            match listen_port {
                Some((declared, _)) if declared == port => {
                    probes.push((kind, get["path"].as_str().unwrap_or("/").to_string()))
                }
                _ => problems.push(format!(
                    "{kind} probes port {port:?}, but VAULT_LOGIN_LISTEN is {:?}",
                    listen_port.map(|p| p.0)
                )),
            }
        }

        // command/args as written: the image's entrypoint is the binary.
        let mut args: Vec<String> = Vec::new();
        if let Some(cmd) = c["command"].as_array() {
            let cmd: Vec<String> = cmd
                .iter()
                .map(|v| v.as_str().unwrap().to_string())
                .collect();
            if cmd.first().map(String::as_str) != Some(IMAGE_BINARY) {
                problems.push(format!("command {cmd:?} does not run {IMAGE_BINARY}"));
            }
            args.extend(cmd.into_iter().skip(1));
        }
        args.extend(
            c["args"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|v| v.as_str().unwrap().to_string()),
        );
        // `vault-login install <dir>` (k8s/deployment-exec.yaml): the binary copied into a
        // volume for another container's `exec`; it writes no token, so only a failure counts.
        if args.first().is_some_and(|a| a == "install") {
            let dir = pod.map(&mounts, args.get(1).map_or("", String::as_str));
            let out = Command::new(bin())
                .arg("install")
                .arg(&dir)
                .output()
                .unwrap();
            let mode = fs::metadata(dir.join("vault-login")).map(|m| m.mode() & 0o7777);
            if !out.status.success() || mode.as_ref().ok() != Some(&0o755) {
                problems.push(format!("install did not put a 0755 binary there: {mode:?}"));
                outcomes.push(Outcome {
                    token: None,
                    stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
                    problems,
                });
            }
            continue;
        }
        let once = args.iter().any(|a| a == "--once")
            || env
                .get("VAULT_LOGIN_ONCE")
                .is_some_and(|v| matches!(v.as_str(), "true" | "1"));

        let mut cmd = Command::new(bin());
        cmd.env_clear()
            .envs(&env)
            .args(&args)
            .current_dir(pod.root.path());
        let mut run = Running::start(cmd);
        let token_file = PathBuf::from(&env["VAULT_LOGIN_TOKEN_FILE"]);
        let written = || fs::read_to_string(&token_file).is_ok_and(|t| !t.is_empty());
        // Done when the token is there, the process exited, or the first login failed (the
        // emulator is up: a failure is the manifest's doing, not an outage).
        wait_until(20 * SEC, || {
            written()
                || run.stderr().contains("login failed")
                || run.child.try_wait().ok().flatten().is_some()
        });
        // Every secret the container names is written next to the token (or in the secrets
        // directory) once it is done or ready.
        let secrets_dir = env
            .get("VAULT_LOGIN_SECRETS_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| token_file.parent().unwrap().to_path_buf());
        let all_secrets = || secrets.iter().all(|n| secrets_dir.join(n).is_file());
        wait_until(10 * SEC, || {
            all_secrets()
                || run.stderr().contains("secret not read")
                || run.child.try_wait().ok().flatten().is_some()
        });
        for n in secrets.iter().filter(|n| !secrets_dir.join(n).is_file()) {
            problems.push(format!("secret file {n} was not written"));
        }
        let env_value = |name: &str| {
            c["env"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|e| e["name"] == name)
                .and_then(|e| e["value"].as_str())
                .unwrap_or_default()
                .to_string()
        };
        for (name, variable) in &certs {
            problems.extend(check_cert(
                &secrets_dir.join(name),
                variable,
                &env_value(variable),
                &run,
            ));
        }
        let token = fs::read_to_string(&token_file)
            .ok()
            .filter(|t| emu.is_valid(t));
        // The app: another container must mount the token's volume and read that path.
        if let Some(t) = &token {
            let host = fs::canonicalize(&token_file).unwrap();
            let mut read_by_app = false;
            for app in all.iter().filter(|a| !is_vault_login(a)) {
                let app_mounts = mounts_of(app, automount);
                for m in &app_mounts {
                    let dir = pod.volume_dir(&m.volume);
                    let Ok(rest) = host.strip_prefix(fs::canonicalize(&dir).unwrap_or(dir)) else {
                        continue;
                    };
                    let app_path = Path::new(&m.path).join(rest).display().to_string();
                    let seen = fs::read_to_string(pod.map(&app_mounts, &app_path));
                    if seen.is_ok_and(|s| s == *t) && app.to_string().contains(&app_path) {
                        read_by_app = true;
                    }
                }
            }
            // An app served by certificates (nginx) needs the certificate, not the token.
            let cert_read = certs.iter().all(|(name, _)| {
                let file = secrets_dir.join(name).join("tls.crt");
                app_reads(&pod, &all, automount, docs, &file)
            });
            if certs.is_empty() && !read_by_app {
                problems.push(format!(
                    "no app container mounts the token's volume and reads {container_token_path}"
                ));
            }
            if !certs.is_empty() && !cert_read {
                problems.push("no app container mounts the certificate's volume and names its tls.crt (in its spec or a ConfigMap)".into());
            }
        }
        if token.is_some() {
            if once {
                match run.wait(10 * SEC) {
                    Some(s) if s.success() => {}
                    other => problems.push(format!(
                        "--once did not exit 0 after writing the token: {other:?}"
                    )),
                }
            } else if problems.is_empty() {
                for (kind, path) in &probes {
                    let port = listen_port.map(|p| p.1).unwrap_or_default();
                    let ok = wait_until(5 * SEC, || {
                        http_get(port, path).is_some_and(|(s, _)| s == 200)
                    });
                    if !ok {
                        problems.push(format!("{kind} GET {path} did not answer 200"));
                    }
                }
                run.signal("TERM");
                if !run.wait(10 * SEC).is_some_and(|s| s.success()) {
                    problems.push("sidecar did not exit 0 on SIGTERM".into());
                }
            }
        } else {
            problems.push("no valid token was written".into());
        }

        let stderr = run.stderr();
        drop(run);
        outcomes.push(Outcome {
            token,
            stderr,
            problems,
        });
    }
    outcomes
}

/// The prefix of the certificate variables (`VAULT_LOGIN_CERT_<NAME>`).
const CERT_ENV_PREFIX: &str = "VAULT_LOGIN_CERT_";

/// What is wrong with certificate `variable` (`value` as written) published in `dir`, once the
/// sidecar `run` had 10 s: the three files, the key not world-readable, the product's own check
/// (the certificate names every requested name and the key matches it), and `openssl verify`
/// against `ca.crt` where openssl is installed.
fn check_cert(dir: &Path, variable: &str, value: &str, run: &Running) -> Vec<String> {
    use vault_login::files::atomic_dir::AtomicDir;
    use vault_login::secrets::certs::{check_published, CertSpec};
    let files = ["tls.crt", "tls.key", "ca.crt"];
    wait_until(10 * SEC, || {
        files.iter().all(|f| dir.join(f).is_file())
            || run.stderr().contains("certificate not issued")
    });
    let missing: Vec<&str> = files
        .into_iter()
        .filter(|f| !dir.join(f).is_file())
        .collect();
    if !missing.is_empty() {
        return vec![format!(
            "{variable}: {missing:?} not written in {}",
            dir.display()
        )];
    }
    let mut problems = Vec::new();
    let mode = fs::metadata(dir.join("tls.key"))
        .map(|m| m.mode() & 0o777)
        .unwrap_or(0o777);
    if mode & 0o007 != 0 {
        problems.push(format!(
            "{variable}: tls.key is world-accessible ({mode:o})"
        ));
    }
    let spec = CertSpec::parse(variable, value).unwrap();
    if let Err(why) = check_published(
        &AtomicDir::new(dir, None),
        &spec,
        std::time::SystemTime::now(),
    ) {
        problems.push(format!("{variable}: the published certificate: {why}"));
    }
    match Command::new("openssl")
        .arg("verify")
        .arg("-CAfile")
        .arg(dir.join("ca.crt"))
        .arg(dir.join("tls.crt"))
        .output()
    {
        Ok(out) if !out.status.success() => problems.push(format!(
            "{variable}: openssl verify: {}",
            String::from_utf8_lossy(&out.stdout)
        )),
        Ok(_) => {}
        Err(_) => eprintln!("no openssl here: {variable}'s certificate was not verified"),
    }
    problems
}

/// Whether a container other than vault-login mounts the volume holding `file` (a host path
/// in `pod`, whose last component may be a symlink, as the published names are) and names it
/// as it sees it, in its own spec or in a ConfigMap of k8s/.
fn app_reads(pod: &PodFs, all: &[&Value], automount: bool, docs: &[Doc], file: &Path) -> bool {
    let (Some(parent), Some(name)) = (file.parent(), file.file_name()) else {
        return false;
    };
    let Ok(host) = fs::canonicalize(parent).map(|p| p.join(name)) else {
        return false;
    };
    let config_maps: Vec<String> = (docs.iter())
        .filter(|d| d.kind() == "ConfigMap")
        .map(|d| d.value["data"].to_string())
        .collect();
    all.iter().filter(|a| !is_vault_login(a)).any(|app| {
        mounts_of(app, automount).iter().any(|m| {
            let dir = pod.volume_dir(&m.volume);
            let Ok(rest) = host.strip_prefix(fs::canonicalize(&dir).unwrap_or(dir)) else {
                return false;
            };
            let app_path = Path::new(&m.path).join(rest).display().to_string();
            app.to_string().contains(&app_path) || config_maps.iter().any(|c| c.contains(&app_path))
        })
    })
}

fn run_one(w: &Doc, docs: &[Doc], prepare: &dyn Fn(&Emulator)) -> Outcome {
    let mut v = run_workload(w, docs, prepare);
    assert_eq!(v.len(), 1, "{}: one vault-login container", w.label());
    v.remove(0)
}

fn env_mut<'a>(w: &'a mut Doc, name: &str) -> &'a mut Value {
    let label = w.label();
    let spec = w.pod_spec_mut();
    let (key, ci) = ["initContainers", "containers"]
        .iter()
        .find_map(|k| {
            let i = spec[*k].as_array()?.iter().position(is_vault_login)?;
            Some((*k, i))
        })
        .unwrap_or_else(|| panic!("{label}: no vault-login container"));
    spec[key][ci]["env"]
        .as_array_mut()
        .and_then(|env| env.iter_mut().find(|e| e["name"] == name))
        .unwrap_or_else(|| panic!("{label}: no env {name}"))
}

// ---------------------------------------------------------------------------------------------
// The manifests as written

#[test]
fn every_vault_login_container_in_k8s_logs_in_as_written() {
    let docs = all_docs();
    let ws = workloads(&docs);
    // The tutorial's pod and the six examples in k8s/: none may be skipped silently.
    assert!(
        ws.len() >= 7,
        "workloads: {:?}",
        ws.iter().map(Doc::label).collect::<Vec<_>>()
    );
    let mut failures = Vec::new();
    for w in &ws {
        for o in run_workload(w, &docs, &|_| {}) {
            if !o.ok() {
                failures.push(format!("{}: {:?}\n{}", w.label(), o.problems, o.stderr));
            }
            if let Some(t) = &o.token {
                assert!(
                    !o.stderr.contains(t.as_str()),
                    "{}: token in the log",
                    w.label()
                );
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn the_tutorials_verify_step_shows_the_token_fields_but_not_the_token() {
    let docs = all_docs();
    let pod = tutorial_pod(&docs);
    let o = run_one(&pod, &docs, &|_| {});
    assert!(o.ok(), "{o:?}");
    let token = o.token.unwrap();
    let line = o
        .stderr
        .lines()
        .find(|l| l.contains("login succeeded"))
        .unwrap_or_else(|| panic!("no 'login succeeded' line:\n{}", o.stderr));
    for field in [
        "token_accessor=",
        "token_duration=1h",
        "token_renewable=true",
        "token_policies=[\"default\"]",
        "token_meta_service_account_name=default",
        "token_meta_service_account_namespace=default",
        "token_meta_service_account_secret_name=n/a",
        "token_meta_service_account_uid=",
        "token_meta_role=default",
    ] {
        assert!(line.contains(field), "{field} missing in {line}");
    }
    assert!(!o.stderr.contains(&token), "the token is in the log");
}

#[test]
fn the_tutorial_keeps_its_names() {
    let docs = all_docs();
    let pod = tutorial_pod(&docs);
    let v = &pod.value;
    assert_eq!(v["metadata"]["labels"]["app"], "login-app");
    let spec = pod.pod_spec().unwrap();
    assert_eq!(
        spec["serviceAccountName"].as_str().unwrap_or("default"),
        "default"
    );
    for c in containers(spec) {
        let addr = c["env"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == "VAULT_ADDR")
            .map(|e| e["value"].clone());
        assert_eq!(addr, Some(json!("http://dev-vault:8200")), "{}", c["name"]);
    }
    let app = &spec["containers"][0];
    assert_eq!(app["image"], "docker.io/hashicorp/vault:1.10.0");

    let tf = Terraform::load(&repo().join("k8s/tutorial"));
    for var in [
        "kubernetes_host",
        "kubernetes_ca_cert",
        "token_reviewer_jwt",
    ] {
        assert!(
            tf.blocks
                .iter()
                .any(|b| b.kind == "variable" && b.labels == [var]),
            "variable {var}"
        );
    }
    let config = tf
        .resources("vault_kubernetes_auth_backend_config")
        .next()
        .unwrap();
    assert_eq!(
        config.attrs["kubernetes_ca_cert"],
        "base64decode(var.kubernetes_ca_cert)"
    );
    assert_eq!(config.attrs["token_reviewer_jwt"], "var.token_reviewer_jwt");
    assert_eq!(config.attrs["issuer"], "\"api\"");
    assert_eq!(config.attrs["disable_iss_validation"], "\"true\"");
    let role = tf
        .resources("vault_kubernetes_auth_backend_role")
        .next()
        .unwrap();
    assert_eq!(
        role.labels,
        ["vault_kubernetes_auth_backend_role", "default"]
    );
    for (k, want) in [
        ("role_name", vec!["default"]),
        ("bound_service_account_names", vec!["default"]),
        ("bound_service_account_namespaces", vec!["default"]),
        ("token_ttl", vec!["3600"]),
        ("token_policies", vec!["default"]),
        ("audience", vec!["k3s"]),
        ("token_max_ttl", vec!["86400"]),
    ] {
        assert_eq!(tf.list(&role.attrs[k]), want, "{k}");
    }
    assert_eq!(tf.one(&role.attrs["backend"]), "kubernetes");
}

#[test]
fn the_tutorials_default_token_works_too() {
    // The tutorial's own way: the automounted default token (audiences include `k3s` on k3s) at
    // vault-login's default JWT path, instead of the projected volume.
    let docs = all_docs();
    let mut pod = tutorial_pod(&docs);
    let spec = pod.pod_spec_mut();
    spec.as_object_mut()
        .unwrap()
        .remove("automountServiceAccountToken");
    let c = &mut spec["initContainers"][0];
    c["env"]
        .as_array_mut()
        .unwrap()
        .retain(|e| e["name"] != "VAULT_LOGIN_JWT_FILE");
    c["volumeMounts"]
        .as_array_mut()
        .unwrap()
        .retain(|m| m["name"] != "vault-login-jwt");
    let o = run_one(&pod, &docs, &|_| {});
    assert!(o.ok(), "{o:?}");
    // It logged in with the default token: the startup line shows its audiences.
    assert!(
        o.stderr
            .contains(r#"aud=["https://kubernetes.default.svc.cluster.local", "k3s"]"#),
        "{}",
        o.stderr
    );
}

// ---------------------------------------------------------------------------------------------
// The same check fails on broken manifests

#[test]
fn a_typo_in_an_env_name_fails() {
    let docs = all_docs();
    for (from, to) in [
        ("VAULT_LOGIN_ROLE", "VAULT_LOGIN_ROEL"),
        // Harmless by chance (the default path is the same), still a typo.
        ("VAULT_LOGIN_TOKEN_FILE", "VAULT_LOGIN_TOKEN_FIEL"),
        ("VAULT_LOGIN_JWT_FILE", "VAULT_LOGIN_JWT_PATH"),
    ] {
        let mut pod = tutorial_pod(&docs);
        env_mut(&mut pod, from)["name"] = json!(to);
        let o = run_one(&pod, &docs, &|_| {});
        assert!(!o.ok(), "{to}: {o:?}");
        assert!(
            o.problems
                .iter()
                .any(|p| p.contains(to) && p.contains("typo")),
            "{to}: {:?}",
            o.problems
        );
    }
}

#[test]
fn an_audience_the_role_does_not_accept_fails() {
    let docs = all_docs();
    let mut pod = tutorial_pod(&docs);
    let vols = pod.pod_spec_mut()["volumes"].as_array_mut().unwrap();
    let jwt = vols
        .iter_mut()
        .find(|v| v["projected"].is_object())
        .expect("projected volume");
    jwt["projected"]["sources"][0]["serviceAccountToken"]["audience"] = json!("vault");
    let o = run_one(&pod, &docs, &|_| {});
    assert!(!o.ok(), "{o:?}");
    assert!(
        o.problems.iter().any(|p| p.contains("no valid token")),
        "{:?}",
        o.problems
    );
    assert!(o.stderr.contains("invalid audience"), "{}", o.stderr);
    assert!(
        o.stderr.contains("audiences are [\\\"vault\\\"]")
            || o.stderr.contains("audiences are [\"vault\"]"),
        "{}",
        o.stderr
    );
}

#[test]
fn a_token_path_the_app_does_not_read_fails() {
    let docs = all_docs();
    // Outside every volume: the read-only root file system.
    let mut pod = tutorial_pod(&docs);
    env_mut(&mut pod, "VAULT_LOGIN_TOKEN_FILE")["value"] = json!("/tmp/vault-token");
    let o = run_one(&pod, &docs, &|_| {});
    assert!(!o.ok(), "{o:?}");
    // On the volume, but not the file the app reads.
    let mut pod = tutorial_pod(&docs);
    env_mut(&mut pod, "VAULT_LOGIN_TOKEN_FILE")["value"] =
        json!("/var/run/secrets/vaultproject.io/vault-token");
    let o = run_one(&pod, &docs, &|_| {});
    assert!(o.token.is_some(), "{o:?}");
    assert!(
        o.problems.iter().any(|p| p.contains("no app container")),
        "{:?}",
        o.problems
    );
}

#[test]
fn a_probe_on_another_port_fails() {
    let docs = all_docs();
    let mut pod = tutorial_pod(&docs);
    env_mut(&mut pod, "VAULT_LOGIN_LISTEN")["value"] = json!("0.0.0.0:9103");
    let o = run_one(&pod, &docs, &|_| {});
    assert!(
        o.problems
            .iter()
            .any(|p| p.contains("probes port Some(9102)")),
        "{:?}",
        o.problems
    );
}

// ---------------------------------------------------------------------------------------------
// Hints for the errors the tutorial's readers hit

#[test]
fn a_failing_token_review_is_explained() {
    let docs = all_docs();
    let pod = tutorial_pod(&docs);
    let o = run_one(&pod, &docs, &|emu| {
        emu.set_token_review_failing("kubernetes", true)
    });
    assert!(!o.ok());
    for want in [
        "permission denied",
        "VAULT_LOGIN_MOUNT=kubernetes",
        "token_reviewer_jwt",
        "system:auth-delegator",
        "kubernetes_ca_cert",
        "kubernetes_host is reachable from Vault",
    ] {
        assert!(o.stderr.contains(want), "{want:?} missing:\n{}", o.stderr);
    }
}

#[test]
fn a_wrong_mount_is_explained() {
    let docs = all_docs();
    let mut pod = tutorial_pod(&docs);
    let spec = pod.pod_spec_mut();
    let c = &mut spec["initContainers"][0];
    assert!(is_vault_login(c));
    c["env"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "VAULT_LOGIN_MOUNT", "value": "k8s"}));
    let o = run_one(&pod, &docs, &|_| {});
    assert!(!o.ok());
    assert!(o.stderr.contains("/v1/auth/k8s/login"), "{}", o.stderr);
    assert!(o.stderr.contains("VAULT_LOGIN_MOUNT=k8s"), "{}", o.stderr);
    assert!(o.stderr.contains("vault auth list"), "{}", o.stderr);
}

#[test]
fn a_refused_connection_names_the_address_and_the_service() {
    let docs = all_docs();
    let pod = tutorial_pod(&docs);
    let o = run_one(&pod, &docs, &|emu| emu.set_fault(Fault::Down));
    assert!(!o.ok());
    assert!(
        o.stderr
            .contains("connection refused: nothing accepts connections at 127.0.0.1:"),
        "{}",
        o.stderr
    );
    assert!(
        o.stderr.contains("VAULT_ADDR") && o.stderr.contains("Service"),
        "{}",
        o.stderr
    );
}

// ---------------------------------------------------------------------------------------------
// The PrometheusRule against real /metrics output

/// Samples of one scrape: `name{labels}` → value.
type Samples = BTreeMap<String, f64>;

fn parse_metrics(text: &str) -> Samples {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (k, v) = l.rsplit_once(' ').unwrap();
            let v = match v {
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                v => v.parse().unwrap(),
            };
            (k.to_string(), v)
        })
        .collect()
}

/// A PromQL subset evaluated on one target's scrape: metric names (every label set of the
/// name; no selectors), numbers, `time()`, parentheses, `* / + -`, the filtering comparisons
/// and `and`/`or`/`unless`, with PromQL's precedence and its one-to-one matching of two
/// vectors on identical label sets. `time()` is the evaluation time the test hands in.
mod promql {
    use std::collections::BTreeMap;

    use super::Samples;

    /// A vector: label set (`{cert="web"}`, or empty) → value.
    pub type Series = BTreeMap<String, f64>;

    #[derive(Clone, Debug, PartialEq)]
    pub enum V {
        Scalar(f64),
        Vector(Series),
    }

    impl V {
        /// A vector of one unlabelled sample.
        pub fn one(v: f64) -> V {
            V::Vector([(String::new(), v)].into_iter().collect())
        }

        /// The empty vector: an alert expression that does not hold.
        pub fn empty() -> V {
            V::Vector(Series::new())
        }
    }

    /// `expr` on the scrape `s`, with `time()` = `now` (Unix seconds).
    pub fn eval(expr: &str, s: &Samples, now: f64) -> V {
        let tokens = lex(expr);
        let mut p = Parser {
            t: &tokens,
            i: 0,
            s,
            now,
        };
        let v = p.binary(0);
        assert_eq!(
            p.i,
            tokens.len(),
            "unparsed rest of {expr:?}: {:?}",
            &tokens[p.i..]
        );
        v
    }

    fn lex(e: &str) -> Vec<String> {
        let mut out = Vec::new();
        let cs: Vec<char> = e.chars().collect();
        let mut i = 0;
        while i < cs.len() {
            let c = cs[i];
            if c.is_whitespace() {
                i += 1;
            } else if c.is_ascii_alphanumeric() || c == '_' || c == '.' {
                let start = i;
                while i < cs.len()
                    && (cs[i].is_ascii_alphanumeric() || cs[i] == '_' || cs[i] == '.')
                {
                    i += 1;
                }
                out.push(cs[start..i].iter().collect());
            } else if i + 1 < cs.len() && matches!((c, cs[i + 1]), ('<' | '>' | '=' | '!', '=')) {
                out.push(format!("{c}="));
                i += 2;
            } else if "()*/+-<>".contains(c) {
                out.push(c.to_string());
                i += 1;
            } else {
                panic!("unsupported character {c:?} in {e:?}");
            }
        }
        out
    }

    struct Parser<'a> {
        t: &'a [String],
        i: usize,
        s: &'a Samples,
        now: f64,
    }

    const LEVELS: [&[&str]; 4] = [
        &["or"],
        &["and", "unless"],
        &["==", "!=", "<", ">", "<=", ">="],
        &["+", "-"],
    ];

    impl Parser<'_> {
        fn peek(&self) -> Option<&str> {
            self.t.get(self.i).map(String::as_str)
        }

        fn expect(&mut self, tok: &str) {
            assert_eq!(self.peek(), Some(tok), "at token {}", self.i);
            self.i += 1;
        }

        fn binary(&mut self, level: usize) -> V {
            if level == LEVELS.len() {
                return self.product();
            }
            let mut lhs = self.binary(level + 1);
            while let Some(op) = self.peek().filter(|o| LEVELS[level].contains(o)) {
                let op = op.to_string();
                self.i += 1;
                let rhs = self.binary(level + 1);
                lhs = apply(&op, lhs, rhs);
            }
            lhs
        }

        fn product(&mut self) -> V {
            let mut lhs = self.primary();
            while let Some(op) = self.peek().filter(|o| ["*", "/"].contains(o)) {
                let op = op.to_string();
                self.i += 1;
                let rhs = self.primary();
                lhs = apply(&op, lhs, rhs);
            }
            lhs
        }

        fn primary(&mut self) -> V {
            let tok = self.t[self.i].clone();
            self.i += 1;
            if tok == "(" {
                let v = self.binary(0);
                self.expect(")");
                return v;
            }
            if tok == "time" {
                self.expect("(");
                self.expect(")");
                return V::Scalar(self.now);
            }
            if let Ok(n) = tok.parse::<f64>() {
                return V::Scalar(n);
            }
            assert!(tok.starts_with("vault_login_"), "unsupported term {tok:?}");
            // Every series of the name, keyed by its label set.
            let series = self.s.iter().filter_map(|(k, v)| {
                let labels = k.strip_prefix(tok.as_str())?;
                (labels.is_empty() || labels.starts_with('{')).then(|| (labels.to_string(), *v))
            });
            V::Vector(series.collect())
        }
    }

    fn apply(op: &str, l: V, r: V) -> V {
        use V::*;
        let arith = |a: f64, b: f64| match op {
            "+" => a + b,
            "-" => a - b,
            "*" => a * b,
            "/" => a / b,
            _ => unreachable!(),
        };
        let cmp = |a: f64, b: f64| match op {
            "==" => a == b,
            "!=" => a != b,
            "<" => a < b,
            ">" => a > b,
            "<=" => a <= b,
            ">=" => a >= b,
            _ => unreachable!(),
        };
        // One-to-one matching: the left-hand samples whose label set the right has, each with
        // the right-hand value.
        let matched = |a: Series, b: &Series| -> Vec<(String, f64, f64)> {
            a.into_iter()
                .filter_map(|(k, x)| b.get(&k).map(|y| (k, x, *y)))
                .collect()
        };
        match op {
            "and" => match (l, r) {
                (Vector(a), Vector(b)) => {
                    Vector(a.into_iter().filter(|(k, _)| b.contains_key(k)).collect())
                }
                _ => panic!("and needs vectors"),
            },
            "or" => match (l, r) {
                (Vector(mut a), Vector(b)) => {
                    for (k, y) in b {
                        a.entry(k).or_insert(y);
                    }
                    Vector(a)
                }
                _ => panic!("or needs vectors"),
            },
            "unless" => match (l, r) {
                (Vector(a), Vector(b)) => {
                    Vector(a.into_iter().filter(|(k, _)| !b.contains_key(k)).collect())
                }
                _ => panic!("unless needs vectors"),
            },
            "+" | "-" | "*" | "/" => match (l, r) {
                (Scalar(a), Scalar(b)) => Scalar(arith(a, b)),
                (Vector(a), Scalar(b)) => {
                    Vector(a.into_iter().map(|(k, a)| (k, arith(a, b))).collect())
                }
                (Scalar(a), Vector(b)) => {
                    Vector(b.into_iter().map(|(k, b)| (k, arith(a, b))).collect())
                }
                (Vector(a), Vector(b)) => Vector(
                    matched(a, &b)
                        .into_iter()
                        .map(|(k, x, y)| (k, arith(x, y)))
                        .collect(),
                ),
            },
            _ => match (l, r) {
                // Filtering comparisons keep the left-hand sample (the right one for scalar < vector).
                (Vector(a), Scalar(b)) => {
                    Vector(a.into_iter().filter(|(_, a)| cmp(*a, b)).collect())
                }
                (Scalar(a), Vector(b)) => {
                    Vector(b.into_iter().filter(|(_, b)| cmp(a, *b)).collect())
                }
                (Vector(a), Vector(b)) => Vector(
                    matched(a, &b)
                        .into_iter()
                        .filter(|(_, x, y)| cmp(*x, *y))
                        .map(|(k, x, _)| (k, x))
                        .collect(),
                ),
                (Scalar(_), Scalar(_)) => panic!("scalar comparison needs bool"),
            },
        }
    }
}

fn alert_rules() -> Vec<(String, String)> {
    let docs = all_docs();
    let rule = docs
        .iter()
        .find(|d| d.kind() == "PrometheusRule")
        .expect("k8s/: a PrometheusRule");
    let mut out = Vec::new();
    for g in rule.value["spec"]["groups"].as_array().unwrap() {
        for r in g["rules"].as_array().unwrap() {
            let alert = r["alert"].as_str().unwrap().to_string();
            out.push((alert, r["expr"].as_str().unwrap().to_string()));
        }
    }
    out
}

/// One scrape checked against the rules: its name, its samples, the evaluation time (Unix
/// seconds, whole: promtool evaluates at a whole second) and the alerts expected to hold.
type Scenario<'a> = (&'a str, Samples, f64, Vec<&'a str>);

/// Whole Unix seconds of a wall-clock time, as `time()` sees it.
fn unix_seconds(t: std::time::SystemTime) -> f64 {
    t.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as f64
}

/// Which alerts' expressions hold on this scrape, evaluated at `now` (Unix seconds).
fn firing(rules: &[(String, String)], s: &Samples, now: f64) -> Vec<String> {
    rules
        .iter()
        .filter(|(_, expr)| promql::eval(expr, s, now) != promql::V::empty())
        .map(|(a, _)| a.clone())
        .collect()
}

#[test]
fn the_expression_evaluator_follows_promql() {
    use promql::{eval, V};
    let s: Samples = [
        ("vault_login_a", 2.0),
        ("vault_login_ab", 7.0),
        ("vault_login_b", 10.0),
        ("vault_login_c{cert=\"web\"}", 100.0),
        ("vault_login_c{cert=\"db\"}", 200.0),
        ("vault_login_d{cert=\"web\"}", 40.0),
        ("vault_login_d{cert=\"api\"}", 1.0),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let eval = |e: &str| eval(e, &s, 1000.0);
    let labelled = |pairs: &[(&str, f64)]| {
        V::Vector(
            pairs
                .iter()
                .map(|(c, v)| (format!("{{cert=\"{c}\"}}"), *v))
                .collect(),
        )
    };
    assert_eq!(eval("vault_login_a < 0.25 * vault_login_b"), V::one(2.0));
    assert_eq!(eval("vault_login_a < 0.1 * vault_login_b"), V::empty());
    assert_eq!(eval("vault_login_b - vault_login_a * 2"), V::one(6.0));
    assert_eq!(eval("(vault_login_b - vault_login_a) * 2"), V::one(16.0));
    assert_eq!(eval("vault_login_missing >= 0"), V::empty());
    assert_eq!(eval("vault_login_a == 2 and vault_login_b"), V::one(2.0));
    assert_eq!(eval("vault_login_a == 2 unless vault_login_b"), V::empty());
    assert_eq!(eval("vault_login_a > 5 or vault_login_b"), V::one(10.0));
    // time() is the evaluation time handed in; a scalar.
    assert_eq!(eval("time() - 1"), V::Scalar(999.0));
    assert_eq!(eval("vault_login_b + time()"), V::one(1010.0));
    assert_eq!(eval("vault_login_b > time()"), V::empty());
    // A name takes every label set of that name, and no other name it is a prefix of.
    assert_eq!(
        eval("vault_login_c"),
        labelled(&[("db", 200.0), ("web", 100.0)])
    );
    assert_eq!(eval("vault_login_a"), V::one(2.0));
    // Two vectors match one-to-one on identical label sets; the rest is dropped.
    assert_eq!(
        eval("vault_login_c - vault_login_d"),
        labelled(&[("web", 60.0)])
    );
    assert_eq!(
        eval("vault_login_c > vault_login_d"),
        labelled(&[("web", 100.0)])
    );
    assert_eq!(eval("vault_login_c < vault_login_d"), V::empty());
    assert_eq!(eval("vault_login_c - vault_login_a"), V::empty());
    assert_eq!(eval("vault_login_c > 150"), labelled(&[("db", 200.0)]));
    assert_eq!(
        eval("vault_login_c and vault_login_d"),
        labelled(&[("web", 100.0)])
    );
    assert_eq!(
        eval("vault_login_c unless vault_login_d"),
        labelled(&[("db", 200.0)])
    );
    assert_eq!(
        eval("vault_login_c or vault_login_d"),
        labelled(&[("api", 1.0), ("db", 200.0), ("web", 100.0)])
    );
    // The certificate alert's shape: under 10 % of (expiry - start) left at time().
    let at = |now: f64| {
        promql::eval(
            "(vault_login_c - time()) < 0.1 * (vault_login_c - vault_login_d)",
            &s,
            now,
        )
    };
    // web: from 40 to 100, the last tenth is after 94.
    assert_eq!(at(93.0), V::empty());
    assert_eq!(at(95.0), labelled(&[("web", 5.0)]));
    assert_eq!(at(101.0), labelled(&[("web", -1.0)]));
}

/// Scrapes /metrics of a real sidecar through a healthy token, a Vault outage and an expired
/// token, and checks which alerts' expressions hold at each point (the rules' `for:` is
/// Prometheus's business). With promtool installed, the same scrapes also go through
/// `promtool check rules` and `promtool test rules`.
/// In virtual time: the agent runs in-process against the in-runtime emulator, and each scrape
/// is the exact `/metrics` body the health server would serve for the agent's status.
#[tokio::test(start_paused = true)]
async fn alert_expressions_hold_on_real_metrics_exactly_when_they_should() {
    let rules = alert_rules();
    let names: Vec<&str> = rules.iter().map(|(a, _)| a.as_str()).collect();
    assert_eq!(
        names,
        [
            "VaultLoginTokenExpiringSoon",
            "VaultLoginFailing",
            "VaultLoginNotReady",
            "VaultLoginCertificateExpiringSoon"
        ]
    );
    let mut s = virtual_time::Virtual::with_role(Role {
        // Three failed renewals (at about 0.7 of it, then on the backoff) come well before
        // expiry.
        token_ttl: Duration::from_secs(20),
        token_max_ttl: Duration::from_secs(600),
        ..Role::default()
    });
    s.set("VAULT_LOGIN_LOG", "info");
    let r = s.spawn(&[]);
    let scrape = || {
        let body = vault_login::health::render_metrics(&r.status.snapshot(), r.status.now());
        parse_metrics(&body)
    };
    // The evaluation time: the wall clock the scrape's timestamps are on.
    let wall = || unix_seconds(r.status.now().wall);
    let mut scenarios: Vec<Scenario> = Vec::new();

    assert!(
        virtual_time::wait_for(10 * SEC, || scrape().get("vault_login_token_ready")
            == Some(&1.0))
        .await,
        "{}",
        r.stderr()
    );
    let healthy = scrape();
    assert_eq!(
        firing(&rules, &healthy, wall()),
        Vec::<String>::new(),
        "{healthy:?}"
    );
    scenarios.push(("healthy", healthy, wall(), vec![]));

    // Vault goes away: the renewal at about 14 s fails and is retried.
    s.emu.set_fault(Fault::Down);
    assert!(
        virtual_time::wait_for(30 * SEC, || scrape()
            .get("vault_login_consecutive_failures")
            .is_some_and(|n| *n >= 3.0))
        .await,
        "{}",
        r.stderr()
    );
    let failing = scrape();
    let f = firing(&rules, &failing, wall());
    assert!(
        f.contains(&"VaultLoginFailing".to_string()),
        "{f:?} {failing:?}"
    );
    assert!(
        !f.contains(&"VaultLoginNotReady".to_string()),
        "{f:?} {failing:?}"
    );
    // Whether the token is already in its last quarter depends on timing: promtool gets the
    // built-in evaluator's answer to confirm.
    let expected: Vec<&str> = names
        .iter()
        .copied()
        .filter(|n| f.iter().any(|a| a == n))
        .collect();
    scenarios.push(("failing", failing, wall(), expected));

    // Under a quarter of the 20 s left: expiring soon, still ready.
    assert!(
        virtual_time::wait_for(30 * SEC, || scrape()
            .get("vault_login_token_ttl_seconds")
            .is_some_and(|t| *t > 0.5 && *t < 4.8))
        .await,
        "{}",
        r.stderr()
    );
    let expiring = scrape();
    let f = firing(&rules, &expiring, wall());
    assert_eq!(
        f,
        ["VaultLoginTokenExpiringSoon", "VaultLoginFailing"],
        "{expiring:?}"
    );
    scenarios.push((
        "expiring",
        expiring,
        wall(),
        vec!["VaultLoginTokenExpiringSoon", "VaultLoginFailing"],
    ));

    // Expired: not ready; the TTL is 0, which is still "expiring soon".
    assert!(
        virtual_time::wait_for(15 * SEC, || scrape().get("vault_login_token_ready")
            == Some(&0.0))
        .await,
        "{}",
        r.stderr()
    );
    let expired = scrape();
    assert_eq!(
        firing(&rules, &expired, wall()),
        [
            "VaultLoginTokenExpiringSoon",
            "VaultLoginFailing",
            "VaultLoginNotReady"
        ],
        "{expired:?}"
    );
    scenarios.push((
        "expired",
        expired,
        wall(),
        vec![
            "VaultLoginTokenExpiringSoon",
            "VaultLoginFailing",
            "VaultLoginNotReady",
        ],
    ));

    // Vault is back: a new login clears everything.
    s.emu.clear_fault();
    assert!(
        virtual_time::wait_for(15 * SEC, || scrape().get("vault_login_token_ready")
            == Some(&1.0))
        .await,
        "{}",
        r.stderr()
    );
    let recovered = scrape();
    assert_eq!(
        firing(&rules, &recovered, wall()),
        Vec::<String>::new(),
        "{recovered:?}"
    );
    scenarios.push(("recovered", recovered, wall(), vec![]));

    promtool_check(&rules, &scenarios);
}

/// The certificate metrics' names the alert reads.
const CERT_START: &str = "vault_login_certificate_not_before_timestamp_seconds{cert=\"web\"}";
const CERT_END: &str = "vault_login_certificate_expiry_timestamp_seconds{cert=\"web\"}";

/// Wall-clock Unix seconds now.
fn wall_now() -> f64 {
    unix_seconds(std::time::SystemTime::now())
}

/// Sleeps until the wall clock reads at least `at` (Unix seconds).
fn sleep_until_wall(at: f64) {
    let left = at - wall_now() + 0.2;
    if left > 0.0 {
        std::thread::sleep(Duration::from_secs_f64(left));
    }
}

/// The certificate alert on `/metrics` of the real binary holding a certificate from the real
/// OpenBao 2.7.2 `pki` engine (root CA generated here, a role with a 20 s TTL; Vault back-dates
/// NotBefore by 30 s, so a life of about 50 s). On one scrape, with the evaluation time set by
/// the test: quiet at issue, at half and at 85 % of the life, holding at 95 % and after expiry.
/// On the real clock: with Vault up, the sidecar has renewed before 95 % of the first life, so
/// the alert stays quiet; with Vault killed, the renewal fails and at 95 % of the second
/// certificate's life the alert holds, the token alerts do not. Passes with one line when the
/// real server cannot run here (unless `VAULT_LOGIN_REQUIRE_REAL=1`).
#[test]
fn the_certificate_alert_holds_in_the_last_tenth_of_a_real_certificates_life() {
    const ALERT: &str = "VaultLoginCertificateExpiringSoon";
    let Some(mut bao) = vault_emulator::real::Bao::start() else {
        return;
    };
    bao.cli(&["secrets", "enable", "pki"]);
    bao.cli(&["secrets", "tune", "-max-lease-ttl=87600h", "pki"]);
    bao.cli(&[
        "write",
        "pki/root/generate/internal",
        "common_name=shop.svc",
        "ttl=87600h",
    ]);
    bao.cli(&[
        "write",
        "pki/roles/web",
        "allowed_domains=shop.svc",
        "allow_subdomains=true",
        "ttl=20s",
    ]);
    let policy = r#"path "pki/issue/web" { capabilities = ["update"] }"#;
    bao.api(
        "PUT",
        "/v1/sys/policies/acl/pki",
        Some(json!({ "policy": policy })),
    );
    bao.cli(&[
        "write",
        "auth/kubernetes/role/default",
        "bound_service_account_names=default",
        "bound_service_account_namespaces=default",
        "audience=k3s",
        "token_ttl=3600",
        "token_policies=default,pki",
    ]);
    let dir = tempfile::tempdir().unwrap();
    let jwt = dir.path().join("jwt");
    fs::write(&jwt, bao.jwt("default", "default", &["k3s"], 3600)).unwrap();
    let port = free_port();
    let mut cmd = Command::new(bin());
    cmd.env_clear()
        .env("VAULT_ADDR", bao.addr())
        .env("VAULT_LOGIN_ROLE", "default")
        .env("VAULT_LOGIN_JWT_FILE", &jwt)
        .env("VAULT_LOGIN_TOKEN_FILE", dir.path().join("token"))
        .env(
            "VAULT_LOGIN_CERT_WEB",
            "pki/issue/web?common_name=app.shop.svc",
        )
        .env("VAULT_LOGIN_LISTEN", format!("127.0.0.1:{port}"))
        .env("VAULT_LOGIN_MIN_BACKOFF", "200ms")
        .env("VAULT_LOGIN_MAX_BACKOFF", "1s")
        .env("VAULT_LOGIN_LOG", "info");
    let r = Running::start(cmd);
    let scrape = || {
        http_get(port, "/metrics")
            .map(|(_, body)| parse_metrics(&body))
            .unwrap_or_default()
    };
    let validity = |m: &Samples| Some((*m.get(CERT_START)?, *m.get(CERT_END)?));
    let rules = alert_rules();
    let mut scenarios: Vec<Scenario> = Vec::new();

    assert!(
        wait_until(Duration::from_secs(30), || validity(&scrape()).is_some()),
        "no certificate in /metrics; stderr:\n{}",
        r.stderr()
    );
    let issued = scrape();
    let now = wall_now();
    let (start, end) = validity(&issued).unwrap();
    // The gauges are the published certificate's own NotBefore and NotAfter.
    let pem = fs::read_to_string(dir.path().join("web/tls.crt")).unwrap();
    let leaf = &vault_login::secrets::certs::x509::pem_blocks(&pem).unwrap()[0];
    let info = vault_login::secrets::certs::x509::parse_cert(&leaf.der).unwrap();
    assert_eq!(
        (info.not_before as f64, info.not_after as f64),
        (start, end)
    );
    let life = end - start;
    assert!((48.0..=52.0).contains(&life), "life {life}");
    // Whole seconds inside the life, as promtool evaluates.
    let at = |m: &Samples, fraction: f64| {
        let (start, end) = validity(m).unwrap();
        (start + (end - start) * fraction).floor()
    };
    assert!(firing(&rules, &issued, now).is_empty(), "{issued:?}");
    for (fraction, expected) in [
        (0.5, vec![]),
        (0.85, vec![]),
        (0.95, vec![ALERT]),
        (1.2, vec![ALERT]),
    ] {
        let when = at(&issued, fraction);
        assert_eq!(
            firing(&rules, &issued, when),
            expected,
            "at {fraction} of the life: {issued:?}"
        );
        scenarios.push(("certificate", issued.clone(), when, expected));
    }

    // Vault up: renewed at about 2/3 (±10 %) of the 20 s from the issue, well before 95 % of
    // the first life; the new certificate's life starts over.
    sleep_until_wall(start + 0.95 * life);
    let renewed = scrape();
    let now = wall_now();
    let (start2, end2) = validity(&renewed).unwrap();
    assert!(start2 > start, "not renewed: {renewed:?}\n{}", r.stderr());
    assert!(firing(&rules, &renewed, now).is_empty(), "{renewed:?}");
    scenarios.push(("renewed", renewed, now.floor(), vec![]));

    // Vault gone: the renewal of the second certificate fails and is retried; at 95 % of its
    // life the published certificate is still the second one, and the alert holds.
    bao.stop();
    sleep_until_wall(start2 + 0.95 * (end2 - start2));
    let stuck = scrape();
    let now = wall_now();
    assert_eq!(validity(&stuck), Some((start2, end2)), "{stuck:?}");
    let failed = "vault_login_certificate_issues_total{cert=\"web\",result=\"failure\"}";
    assert!(stuck[failed] >= 1.0, "{stuck:?}");
    assert_eq!(firing(&rules, &stuck, now), [ALERT], "{stuck:?}");
    scenarios.push(("stuck", stuck, now.floor(), vec![ALERT]));

    promtool_check(&rules, &scenarios);
}

/// `promtool check rules` and `promtool test rules` on the scraped samples, when promtool is
/// installed (Debian: `apt-get install prometheus`).
fn promtool_check(rules: &[(String, String)], scenarios: &[Scenario]) {
    if Command::new("promtool").arg("--version").output().is_err() {
        eprintln!("promtool not installed: expressions checked with the built-in evaluator only");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let groups: Vec<Value> = rules
        .iter()
        .map(|(alert, expr)| json!({"alert": alert, "expr": expr}))
        .collect();
    let rule_file = dir.path().join("rules.yaml");
    fs::write(
        &rule_file,
        serde_json::to_string(&json!({"groups": [{"name": "vault-login", "rules": groups}]}))
            .unwrap(),
    )
    .unwrap();
    let out = Command::new("promtool")
        .arg("check")
        .arg("rules")
        .arg(&rule_file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool check rules: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let mut tests = Vec::new();
    for (name, samples, now, expected) in scenarios {
        // promtool loads the series step by step while it evaluates the rules at every
        // evaluation interval up to the eval time, which cannot be a Unix time (billions of
        // steps). So it evaluates at 0, with every timestamp shifted by -now: the rules only
        // compare differences of timestamps and time(), which the shift keeps.
        let series: Vec<Value> = samples
            .iter()
            .map(|(k, v)| {
                let v = if v.is_infinite() {
                    "Inf".to_string()
                } else if k.split('{').next().unwrap().ends_with("_timestamp_seconds") {
                    (v - now).to_string()
                } else {
                    v.to_string()
                };
                json!({"series": k, "values": v})
            })
            .collect();
        let exprs: Vec<Value> = rules
            .iter()
            .map(|(alert, expr)| {
                let fires = expected.contains(&alert.as_str());
                let value = match promql::eval(expr, samples, *now) {
                    promql::V::Vector(v) if !v.is_empty() => Some(v.values().sum::<f64>()),
                    _ => None,
                };
                assert_eq!(value.is_some(), fires, "{name}: {alert}");
                let exp: Vec<Value> = value
                    .map(|v| json!({"labels": "{}", "value": v}))
                    .into_iter()
                    .collect();
                json!({"expr": format!("sum({expr})"), "eval_time": "0s", "exp_samples": exp})
            })
            .collect();
        tests.push(json!({"interval": "1m", "input_series": series, "promql_expr_test": exprs}));
    }
    let test_file = dir.path().join("test.yaml");
    fs::write(
        &test_file,
        serde_json::to_string(&json!({"rule_files": [rule_file], "tests": tests})).unwrap(),
    )
    .unwrap();
    let out = Command::new("promtool")
        .arg("test")
        .arg("rules")
        .arg(&test_file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool test rules: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_secret_the_policy_does_not_grant_fails() {
    let docs = all_docs();
    let mut w = workloads(&docs)
        .into_iter()
        .find(|d| d.file.ends_with("deployment-sidecar.yaml"))
        .expect("the sidecar example");
    let o = run_one(&w, &docs, &|_| {});
    assert!(o.ok(), "{o:?}");
    // A path the Terraform's policy does not grant: Vault answers 403, the file never appears.
    env_mut(&mut w, "VAULT_LOGIN_SECRET_DB")["value"] = json!("internal/data/other");
    let o = run_one(&w, &docs, &|_| {});
    assert!(
        o.problems
            .iter()
            .any(|p| p.contains("secret file db was not written")),
        "{:?}",
        o.problems
    );
    assert!(o.stderr.contains("must grant"), "{}", o.stderr);
}

#[test]
fn a_certificate_the_pki_role_does_not_allow_fails() {
    let docs = all_docs();
    let mut w = workloads(&docs)
        .into_iter()
        .find(|d| d.file.ends_with("deployment-nginx-tls.yaml"))
        .expect("the nginx example");
    // A name outside the role's allowed_domains: Vault answers 400, nothing is published, and
    // the log names the role settings to check.
    env_mut(&mut w, "VAULT_LOGIN_CERT_NGINX")["value"] =
        json!("pki/issue/nginx?common_name=nginx.other.svc&ttl=24h");
    let o = run_one(&w, &docs, &|_| {});
    assert!(
        o.problems
            .iter()
            .any(|p| p.contains("VAULT_LOGIN_CERT_NGINX") && p.contains("not written")),
        "{:?}",
        o.problems
    );
    assert!(
        o.stderr.contains("not allowed by this role") && o.stderr.contains("allowed_domains"),
        "{}",
        o.stderr
    );
}
