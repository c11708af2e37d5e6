//! End to end without a cluster: pods annotated as vault-k8s's docs and tests annotate them go
//! through the injector's mutation; the patched pod's vault-login container is then run as the
//! kubelet would run it (its environment, its volumes mapped into a temp dir, the downward-API
//! annotations file in the kubelet's format, a projected service-account token the real
//! OpenBao's kubernetes auth accepts), and `bao agent` runs with the configuration vault-k8s
//! would generate for the same annotations (written out by hand below from vault-k8s's
//! `config.go`, so the test does not check our mapping against itself). The files in the
//! secrets volume must be byte-identical, with the same modes.
//!
//! The server binary comes from `BAO_BIN` or the real-server harness; without one the test
//! says so and passes, except in CI.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use serde_json::{json, Value};
use vault_emulator::real::Bao;
use vault_login_injector::mutate::{mutate, Outcome};
use vault_login_injector::settings::InjectSettings;

/// Agent's default templates, as vault-k8s's `config.go` spells them (`%s`: the path).
const MAP: &str =
    "{{ with secret \"%s\" }}{{ range $k, $v := .Data }}{{ $k }}: {{ $v }}\n{{ end }}{{ end }}";
const JSON: &str = "{{ with secret \"%s\" }}{{ .Data | toJSON }}\n{{ end }}";

fn map(path: &str) -> String {
    MAP.replacen("%s", path, 1)
}

fn json_form(path: &str) -> String {
    JSON.replacen("%s", path, 1)
}

/// One `template` stanza vault-k8s writes into Agent's config for a secret.
struct AgentTemplate {
    /// The destination relative to the secret volume path.
    file: &'static str,
    contents: Option<String>,
    /// A template file (`agent-inject-template-file`): the name under the templates dir.
    source: Option<&'static str>,
    perms: Option<&'static str>,
    error_on_missing_key: bool,
    command: Option<String>,
}

fn tmpl(file: &'static str, contents: String) -> AgentTemplate {
    AgentTemplate {
        file,
        contents: Some(contents),
        source: None,
        perms: None,
        error_on_missing_key: false,
        command: None,
    }
}

/// An annotated pod and what vault-k8s would configure Agent with for it.
struct Case {
    name: &'static str,
    annotations: Vec<(String, String)>,
    /// The OpenBao namespace the auth method and secrets are in (`namespace` annotation).
    namespace: Option<&'static str>,
    /// `secret-volume-path`, default `/vault/secrets`.
    volume: &'static str,
    templates: Vec<AgentTemplate>,
    /// `agent-inject-token`: a token sink at `<volume>/token` too.
    inject_token: bool,
}

const TUTORIAL_TEMPLATE: &str = "{{- with secret \"internal/data/database/config\" -}}\npostgresql://{{ .Data.data.username }}:{{ .Data.data.password }}@postgres:5432/wizard\n{{- end -}}";

fn case(name: &'static str, annotations: &[(&str, &str)], templates: Vec<AgentTemplate>) -> Case {
    let mut all = vec![
        (
            "vault.hashicorp.com/agent-inject".to_string(),
            "true".to_string(),
        ),
        ("vault.hashicorp.com/role".to_string(), "app".to_string()),
    ];
    all.extend(
        annotations
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    Case {
        name,
        annotations: all,
        namespace: None,
        volume: "/vault/secrets",
        templates,
        inject_token: false,
    }
}

/// The corpus, from vault-k8s's docs (the injector tutorial and the annotation reference) and
/// its tests (`agent-inject/agent/config_test.go`); `dir` holds the template files and the
/// marker the command touches.
fn corpus(dir: &Path) -> Vec<Case> {
    let template_file = dir.join("templates/app.ctmpl").display().to_string();
    let marker = dir.join("command-ran").display().to_string();
    let command = format!("/usr/bin/touch {marker}");
    let mut out = vec![
        // The tutorial's first step: a KV v2 secret with the default (map) template.
        case(
            "kv2-default-map",
            &[("vault.hashicorp.com/agent-inject-secret-database-config.txt", "internal/data/database/config")],
            vec![tmpl("database-config.txt", map("internal/data/database/config"))],
        ),
        // The tutorial's second step: the same secret through a template.
        case(
            "custom-template",
            &[
                ("vault.hashicorp.com/agent-inject-secret-database-config.txt", "internal/data/database/config"),
                ("vault.hashicorp.com/agent-inject-template-database-config.txt", TUTORIAL_TEMPLATE),
            ],
            vec![tmpl("database-config.txt", TUTORIAL_TEMPLATE.to_string())],
        ),
        // agent-inject-default-template: json.
        case(
            "json-default",
            &[
                ("vault.hashicorp.com/agent-inject-default-template", "json"),
                ("vault.hashicorp.com/agent-inject-secret-app", "secret/data/app"),
            ],
            vec![tmpl("app", json_form("secret/data/app"))],
        ),
        // A template file in the agent's container (vault-k8s's `source`).
        case(
            "template-file",
            &[
                ("vault.hashicorp.com/agent-inject-secret-app.conf", "secret/data/app"),
                ("vault.hashicorp.com/agent-inject-template-file-app.conf", &template_file),
            ],
            vec![AgentTemplate {
                source: Some("app.ctmpl"),
                contents: None,
                ..tmpl("app.conf", String::new())
            }],
        ),
        // File name and permissions, an env-file template.
        case(
            "file-name-and-perms",
            &[
                ("vault.hashicorp.com/agent-inject-secret-db", "internal/data/database/config"),
                ("vault.hashicorp.com/agent-inject-template-db", "{{ with secret \"internal/data/database/config\" -}}\nexport DB_USER=\"{{ .Data.data.username }}\"\nexport DB_PASS=\"{{ .Data.data.password }}\"\n{{- end }}\n"),
                ("vault.hashicorp.com/agent-inject-file-db", "db.env"),
                ("vault.hashicorp.com/agent-inject-perms-db", "0440"),
            ],
            vec![AgentTemplate {
                perms: Some("0440"),
                ..tmpl("db.env", "{{ with secret \"internal/data/database/config\" -}}\nexport DB_USER=\"{{ .Data.data.username }}\"\nexport DB_PASS=\"{{ .Data.data.password }}\"\n{{- end }}\n".to_string())
            }],
        ),
        // Several secrets: KV v1, KV v2 with nested data, a custom template, the token.
        {
            let mut c = case(
                "several-secrets-and-token",
                &[
                    ("vault.hashicorp.com/agent-inject-secret-legacy", "kv/legacy/db"),
                    ("vault.hashicorp.com/agent-inject-secret-config", "secret/data/config"),
                    ("vault.hashicorp.com/agent-inject-secret-url", "secret/data/app"),
                    ("vault.hashicorp.com/agent-inject-template-url", "{{ with secret \"secret/data/app\" }}{{ .Data.data.username }}@{{ .Data.data.host }}:{{ .Data.data.port }}{{ end }}"),
                    ("vault.hashicorp.com/agent-inject-token", "true"),
                ],
                vec![
                    tmpl("legacy", map("kv/legacy/db")),
                    tmpl("config", map("secret/data/config")),
                    tmpl("url", "{{ with secret \"secret/data/app\" }}{{ .Data.data.username }}@{{ .Data.data.host }}:{{ .Data.data.port }}{{ end }}".into()),
                ],
            );
            c.inject_token = true;
            c
        },
        // preserve-secret-case: the file keeps the name's capitals.
        case(
            "preserve-case",
            &[
                ("vault.hashicorp.com/preserve-secret-case", "true"),
                ("vault.hashicorp.com/agent-inject-secret-DatabaseConfig", "internal/data/database/config"),
            ],
            vec![tmpl("DatabaseConfig", map("internal/data/database/config"))],
        ),
        // Without it, vault-k8s lower-cases the name.
        case(
            "lower-cased",
            &[("vault.hashicorp.com/agent-inject-secret-DatabaseConfig", "internal/data/database/config")],
            vec![tmpl("databaseconfig", map("internal/data/database/config"))],
        ),
        // A missing key prints `<no value>` unless error-on-missing-key; a per-file command.
        case(
            "missing-key-and-command",
            &[
                ("vault.hashicorp.com/agent-inject-template-partial", "{{ with secret \"secret/data/app\" }}{{ .Data.data.username }} {{ .Data.data.nope }}{{ end }}\n"),
                ("vault.hashicorp.com/error-on-missing-key-partial", "false"),
                ("vault.hashicorp.com/agent-inject-command-partial", &command),
            ],
            vec![AgentTemplate {
                command: Some(command.clone()),
                ..tmpl("partial", "{{ with secret \"secret/data/app\" }}{{ .Data.data.username }} {{ .Data.data.nope }}{{ end }}\n".into())
            }],
        ),
        // Another secret volume path.
        {
            let mut c = case(
                "secret-volume-path",
                &[
                    ("vault.hashicorp.com/secret-volume-path", "/etc/secrets"),
                    ("vault.hashicorp.com/agent-inject-secret-app", "secret/data/app"),
                ],
                vec![tmpl("app", map("secret/data/app"))],
            );
            c.volume = "/etc/secrets";
            c
        },
    ];
    // OpenBao's own prefix, and a namespace.
    let mut bao = case(
        "openbao-prefix-namespace",
        &[],
        vec![tmpl("team", map("secret/data/app"))],
    );
    bao.annotations = [
        ("openbao.org/agent-inject", "true"),
        ("openbao.org/role", "app"),
        ("openbao.org/namespace", "team-a"),
        ("openbao.org/agent-inject-secret-team", "secret/data/app"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    bao.namespace = Some("team-a");
    out.push(bao);
    out
}

/// The secrets the corpus reads: the tutorial's `internal` KV v2, a KV v2 at `secret/` and a KV
/// v1 at `kv/`, and `secret/app` in namespace `team-a` with other values.
fn seed(bao: &Bao) {
    bao.cli(&["secrets", "enable", "-path=internal", "kv-v2"]);
    bao.cli(&["secrets", "enable", "-path=kv", "-version=1", "kv"]);
    for (path, data) in [
        (
            "/v1/internal/data/database/config",
            json!({"data": {"username": "db-readonly-user", "password": "db-secret-password"}}),
        ),
        (
            "/v1/secret/data/app",
            json!({"data": {"username": "app", "password": "s3cr3t!<&>\"q", "host": "db.internal", "port": 5432, "ratio": 0.75, "tags": ["a", "b"], "multiline": "line one\nline two\n", "empty": ""}}),
        ),
        (
            "/v1/secret/data/config",
            json!({"data": {"log": {"level": "info"}, "features": {"beta": true, "max_items": 100}, "big": 12345678901234567890u64, "nul": null}}),
        ),
        (
            "/v1/kv/legacy/db",
            json!({"connection_url": "postgres://u:p@h:5432/d?sslmode=disable", "port": 6379, "flag": false}),
        ),
    ] {
        bao.api("POST", path, Some(data));
    }
    let policy = r#"
path "internal/data/*" { capabilities = ["read"] }
path "secret/data/*" { capabilities = ["read"] }
path "kv/*" { capabilities = ["read"] }
"#;
    bao.api(
        "PUT",
        "/v1/sys/policies/acl/app",
        Some(json!({ "policy": policy })),
    );
    let role = [
        "bound_service_account_names=app",
        "bound_service_account_namespaces=default",
        "audience=vault",
        "token_policies=app",
        "token_ttl=300",
    ];
    let mut args = vec!["write", "auth/kubernetes/role/app"];
    args.extend(role);
    bao.cli(&args);

    bao.cli(&["namespace", "create", "team-a"]);
    bao.enable_kubernetes_auth_in("team-a")
        .expect("kubernetes auth in team-a");
    let mut args = vec!["write", "-namespace=team-a", "auth/kubernetes/role/app"];
    args.extend(role);
    bao.cli(&args);
    bao.cli(&[
        "secrets",
        "enable",
        "-namespace=team-a",
        "-path=secret",
        "kv-v2",
    ]);
    bao.cli(&[
        "kv",
        "put",
        "-namespace=team-a",
        "secret/app",
        "password=in-team-a",
        "username=team",
    ]);
    let (status, _) = bao.http(
        "PUT",
        "/v1/sys/policies/acl/app",
        Some(&bao.root_token()),
        &[("X-Vault-Namespace", "team-a")],
        Some(&json!({ "policy": policy }).to_string()),
    );
    assert_eq!(status, 204);
}

/// The injector's settings: an init container plus a classic sidecar (the init container runs
/// to completion, as Agent's init container with `exit_after_auth` does).
fn inject_settings(bao: &Bao) -> InjectSettings {
    InjectSettings {
        image: "vault-login:test".into(),
        vault_addr: Some(bao.addr()),
        native_sidecar: false,
        audience: Some("vault".into()),
        token_expiration: 3600,
        sidecar_port: 9102,
        volume_size: "8Mi".into(),
        requests: (Some("5m".into()), Some("16Mi".into())),
        limits: (None, Some("64Mi".into())),
        run_as_user: 65532,
        run_as_group: 65532,
    }
}

/// The pod as the API server stores it after the injector's patch.
fn patched_pod(c: &Case, s: &InjectSettings) -> Value {
    let annotations: serde_json::Map<String, Value> = c
        .annotations
        .iter()
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    let mut pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": c.name, "namespace": "default", "annotations": annotations},
        "spec": {
            "serviceAccountName": "app",
            "containers": [{"name": "app", "image": "app:1"}],
        },
    });
    let Ok(Outcome::Injected { patch, .. }) = mutate(&pod, "default", s) else {
        panic!("{}: not injected", c.name);
    };
    let patch: json_patch::Patch =
        serde_json::from_value(serde_json::to_value(&patch).expect("patch json")).expect("patch");
    json_patch::patch(&mut pod, &patch).expect("patch applies");
    pod
}

/// Go's `%q` as the kubelet's downward API writes annotation values (`strconv.Quote`).
fn go_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The kubelet's `fieldRef: metadata.annotations` file: `key="value"` lines sorted by key, no
/// newline after the last.
fn downward_annotations(pod: &Value) -> String {
    let map: BTreeMap<&str, &str> = pod["metadata"]["annotations"]
        .as_object()
        .expect("annotations")
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str().expect("string value")))
        .collect();
    map.iter()
        .map(|(k, v)| format!("{k}={}", go_quote(v)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Runs container `name` of `pod` as the kubelet would: its volumes are directories under
/// `root` (the downward-API and projected-token volumes filled in), its environment with the
/// mount paths moved there, no other environment. Returns the volume directories by name.
fn run_container(
    pod: &Value,
    name: &str,
    root: &Path,
    jwt: &str,
) -> (BTreeMap<String, PathBuf>, std::process::Output) {
    let (volumes, mut cmd) = container_command(pod, name, root, jwt);
    (volumes, cmd.output().expect("run vault-login"))
}

/// The command [`run_container`] runs, and the volume directories.
fn container_command(
    pod: &Value,
    name: &str,
    root: &Path,
    jwt: &str,
) -> (BTreeMap<String, PathBuf>, Command) {
    let container = ["initContainers", "containers"]
        .iter()
        .filter_map(|l| pod["spec"][l].as_array())
        .flatten()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no container {name}"));
    let mut mounts: Vec<(String, PathBuf)> = Vec::new();
    let mut volumes = BTreeMap::new();
    for m in container["volumeMounts"].as_array().expect("mounts") {
        let volume = m["name"].as_str().expect("volume name");
        let dir = root.join(volume);
        std::fs::create_dir_all(&dir).expect("volume dir");
        let spec = pod["spec"]["volumes"]
            .as_array()
            .and_then(|v| v.iter().find(|v| v["name"] == volume))
            .unwrap_or_else(|| panic!("no volume {volume}"));
        if spec.get("downwardAPI").is_some() {
            for item in spec["downwardAPI"]["items"].as_array().expect("items") {
                assert_eq!(item["fieldRef"]["fieldPath"], "metadata.annotations");
                let path = dir.join(item["path"].as_str().expect("path"));
                std::fs::write(path, downward_annotations(pod)).expect("annotations file");
            }
        }
        if let Some(sources) = spec.pointer("/projected/sources").and_then(Value::as_array) {
            for s in sources {
                let path = dir.join(s["serviceAccountToken"]["path"].as_str().expect("path"));
                std::fs::write(path, jwt).expect("token file");
            }
        }
        mounts.push((
            m["mountPath"].as_str().expect("mountPath").to_string(),
            dir.clone(),
        ));
        volumes.insert(volume.to_string(), dir);
    }
    // Longest mount path first, so a nested mount wins.
    mounts.sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vault-login"));
    cmd.env_clear();
    for e in container["env"].as_array().expect("env") {
        let value = e["value"].as_str().expect("literal env values only");
        let mapped = mounts
            .iter()
            .find_map(|(mount, dir)| {
                let rest = value.strip_prefix(mount.as_str())?;
                (rest.is_empty() || rest.starts_with('/'))
                    .then(|| format!("{}{rest}", dir.display()))
            })
            .unwrap_or_else(|| value.to_string());
        cmd.env(e["name"].as_str().expect("env name"), mapped);
    }
    if let Some(args) = container["args"].as_array() {
        cmd.args(args.iter().map(|a| a.as_str().expect("arg")));
    }
    assert!(
        container.get("command").is_none(),
        "the image's entrypoint runs"
    );
    (volumes, cmd)
}

/// vault-k8s's Agent configuration (`config.go`, init container: `exit_after_auth`) for case
/// `c`, as JSON, with the pod's paths moved under `dir`.
fn agent_config(c: &Case, bao: &Bao, dir: &Path, jwt_file: &Path, templates_dir: &Path) -> Value {
    let volume = dir.join("volume");
    let mut sinks = vec![json!({"type": "file", "config": {"path": dir.join(".vault-token")}})];
    if c.inject_token {
        sinks.push(json!({"type": "file", "config": {"path": volume.join("token")}}));
    }
    let mut method = json!({
        "type": "kubernetes",
        "mount_path": "auth/kubernetes",
        "config": {"role": "app", "token_path": jwt_file},
    });
    if let Some(ns) = c.namespace {
        method["namespace"] = json!(ns);
    }
    let templates: Vec<Value> = c
        .templates
        .iter()
        .map(|t| {
            let mut v = json!({
                "destination": volume.join(t.file),
                "left_delimiter": "{{",
                "right_delimiter": "}}",
            });
            if let Some(contents) = &t.contents {
                v["contents"] = json!(contents);
            }
            if let Some(source) = t.source {
                v["source"] = json!(templates_dir.join(source));
            }
            if let Some(perms) = t.perms {
                v["perms"] = json!(perms);
            }
            if let Some(command) = &t.command {
                v["command"] = json!(command);
            }
            if t.error_on_missing_key {
                v["error_on_missing_key"] = json!(true);
            }
            v
        })
        .collect();
    json!({
        "auto_auth": {"method": method, "sink": sinks},
        "exit_after_auth": true,
        "pid_file": dir.join(".pid"),
        "vault": {"address": bao.addr()},
        "template": templates,
        "template_config": {"exit_on_retry_failure": true},
    })
}

/// The regular files directly in `dir` with their bytes and permission bits.
fn files_in(dir: &Path) -> BTreeMap<String, (Vec<u8>, u32)> {
    std::fs::read_dir(dir)
        .expect("read dir")
        .filter_map(|e| {
            let e = e.ok()?;
            let meta = e.metadata().ok()?;
            meta.is_file().then(|| {
                let name = e.file_name().to_string_lossy().into_owned();
                let bytes = std::fs::read(e.path()).expect("read file");
                (name, (bytes, meta.permissions().mode() & 0o777))
            })
        })
        .collect()
}

#[test]
fn annotated_pods_get_the_files_bao_agent_renders() {
    let Some(bao) = Bao::start() else {
        return;
    };
    seed(&bao);
    let work = tempfile::tempdir().expect("tempdir");
    let templates_dir = work.path().join("templates");
    std::fs::create_dir_all(&templates_dir).expect("templates dir");
    std::fs::write(
        templates_dir.join("app.ctmpl"),
        "{{ with secret \"secret/data/app\" }}[db]\nuser = {{ .Data.data.username }}\npassword = {{ .Data.data.password | toJSON }}\n{{ range .Data.data.tags }}tag = {{ . }}\n{{ end }}{{ end }}",
    )
    .expect("template file");
    let jwt = bao.jwt("default", "app", &["vault"], 600);
    let settings = inject_settings(&bao);
    let corpus = corpus(work.path());
    assert!(corpus.len() >= 8);
    let marker = work.path().join("command-ran");
    let mut failures = Vec::new();
    for c in &corpus {
        let pod = patched_pod(c, &settings);
        let root = work.path().join(c.name).join("pod");
        let started = Instant::now();
        let (volumes, out) = run_container(&pod, "vault-login-init", &root, &jwt);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "{}: vault-login failed: {stderr}",
            c.name
        );
        assert!(
            !stderr.contains("s3cr3t") && !stderr.contains("db-secret-password"),
            "{stderr}"
        );
        eprintln!("{}: vault-login --once in {:?}", c.name, started.elapsed());
        let ours = files_in(&volumes["vault-secrets"]);
        let ran_for_us = marker.exists();
        let _ = std::fs::remove_file(&marker);

        let dir = work.path().join(c.name).join("agent");
        std::fs::create_dir_all(dir.join("volume")).expect("agent volume");
        let jwt_file = dir.join("jwt");
        std::fs::write(&jwt_file, &jwt).expect("jwt");
        let config = dir.join("config.json");
        let agent_cfg = agent_config(c, &bao, &dir, &jwt_file, &templates_dir);
        std::fs::write(&config, agent_cfg.to_string()).expect("agent config");
        let out = Command::new(bao.bin())
            .arg("agent")
            .arg(format!("-config={}", config.display()))
            .env_remove("VAULT_NAMESPACE")
            .env_remove("BAO_NAMESPACE")
            .output()
            .expect("run bao agent");
        assert!(
            out.status.success(),
            "{}: bao agent failed: {}",
            c.name,
            String::from_utf8_lossy(&out.stderr)
        );
        let agents = files_in(&dir.join("volume"));
        let ran_for_agent = marker.exists();
        let _ = std::fs::remove_file(&marker);

        // The token files hold different tokens; both must be there when asked for.
        let (mut ours, mut agents) = (ours, agents);
        if c.inject_token {
            assert!(
                ours.remove("token").is_some_and(|(t, _)| !t.is_empty()),
                "{}: no token in the volume",
                c.name
            );
            assert!(
                agents.remove("token").is_some(),
                "{}: agent wrote no token",
                c.name
            );
        }
        let names = |m: &BTreeMap<String, (Vec<u8>, u32)>| m.keys().cloned().collect::<Vec<_>>();
        if names(&ours) != names(&agents) {
            failures.push(format!(
                "{}: files {:?} (ours) vs {:?} (agent)",
                c.name,
                names(&ours),
                names(&agents)
            ));
            continue;
        }
        for (file, (bytes, mode)) in &agents {
            let (our_bytes, our_mode) = &ours[file];
            if our_bytes != bytes {
                failures.push(format!(
                    "{}/{file}:\nagent: {:?}\nours:  {:?}",
                    c.name,
                    String::from_utf8_lossy(bytes),
                    String::from_utf8_lossy(our_bytes)
                ));
            }
            if our_mode != mode {
                failures.push(format!(
                    "{}/{file}: mode {our_mode:o} (ours) vs {mode:o} (agent)",
                    c.name
                ));
            }
        }
        if c.templates.iter().any(|t| t.command.is_some()) {
            assert!(
                ran_for_agent,
                "{}: bao agent did not run the command",
                c.name
            );
            assert!(
                ran_for_us,
                "{}: vault-login did not run the command",
                c.name
            );
        }
    }
    assert!(
        failures.is_empty(),
        "{} differences:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// As a native sidecar, the per-file command runs in the background after the file is written.
#[test]
fn the_native_sidecar_runs_the_per_file_command() {
    let Some(bao) = Bao::start() else {
        return;
    };
    seed(&bao);
    let work = tempfile::tempdir().expect("tempdir");
    let marker = work.path().join("command-ran");
    let c = corpus(work.path())
        .into_iter()
        .find(|c| c.name == "missing-key-and-command")
        .expect("case");
    let settings = InjectSettings {
        native_sidecar: true,
        ..inject_settings(&bao)
    };
    let pod = patched_pod(&c, &settings);
    let jwt = bao.jwt("default", "app", &["vault"], 600);
    let (volumes, mut cmd) = container_command(&pod, "vault-login", &work.path().join("pod"), &jwt);
    // Any free port: the kubelet's 9102 may be taken on this machine.
    cmd.env("VAULT_LOGIN_LISTEN", "127.0.0.1:0")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut child = cmd.spawn().expect("start the sidecar");
    let file = volumes["vault-secrets"].join("partial");
    let deadline = Instant::now() + std::time::Duration::from_secs(30);
    while !(marker.exists() && file.exists()) && Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let running = child.try_wait().expect("try_wait").is_none();
    let _ = child.kill();
    let _ = child.wait();
    assert!(running, "the sidecar exited");
    assert_eq!(
        std::fs::read_to_string(&file).expect("partial"),
        "app <no value>\n"
    );
    assert!(marker.exists(), "the command did not run within 30s");
}
