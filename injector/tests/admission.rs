//! The webhook over HTTPS with the reviews the API server sends for the pods users annotate;
//! each answer's JSON patch applied with an independent RFC 6902 implementation, the patched
//! pod checked field by field and against the Kubernetes schema.

mod support;

use serde_json::{json, Value};
use support::*;

const NS: &str = "app";

fn annotations(extra: &[(&str, &str)]) -> Value {
    let mut a = json!({
        "vault.hashicorp.com/agent-inject": "true",
        "vault.hashicorp.com/role": "web",
    });
    for (k, v) in extra {
        a[*k] = json!(v);
    }
    a
}

fn deployment_pod(extra: &[(&str, &str)]) -> Value {
    pod(
        "web-7d9f8c6b5-",
        ("ReplicaSet", "web-7d9f8c6b5"),
        annotations(extra),
        vec![container("web", "nginx:1.27")],
        "Always",
    )
}

fn named<'a>(pod: &'a Value, list: &str, name: &str) -> &'a Value {
    pod["spec"][list]
        .as_array()
        .and_then(|l| l.iter().find(|c| c["name"] == name))
        .unwrap_or_else(|| panic!("no {list} {name} in {pod}"))
}

fn names(pod: &Value, list: &str) -> Vec<String> {
    pod["spec"][list].as_array().map_or(vec![], |l| {
        l.iter()
            .map(|c| c["name"].as_str().unwrap().to_string())
            .collect()
    })
}

fn env(c: &Value, name: &str) -> Option<String> {
    c["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == name)
        .map(|e| e["value"].as_str().unwrap().to_string())
}

fn mounts(c: &Value) -> Vec<(String, String)> {
    c["volumeMounts"].as_array().map_or(vec![], |l| {
        l.iter()
            .map(|m| {
                (
                    m["name"].as_str().unwrap().to_string(),
                    m["mountPath"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    })
}

fn has_secrets_mount(c: &Value, path: &str) -> bool {
    mounts(c).contains(&("vault-secrets".to_string(), path.to_string()))
}

#[tokio::test]
async fn deployment_pod_gets_a_native_sidecar_gating_the_app() {
    let w = Webhook::start(settings()).await;
    let pod = deployment_pod(&[]);
    let p = w.patched(&pod, NS).await;
    check_pod_semantics(&p);

    assert_eq!(
        p["metadata"]["annotations"]["vault.hashicorp.com/agent-inject-status"],
        "injected"
    );
    assert_eq!(names(&p, "initContainers"), ["vault-login"]);
    assert_eq!(names(&p, "containers"), ["web"]);
    let c = named(&p, "initContainers", "vault-login");
    assert_eq!(c["restartPolicy"], "Always");
    assert_eq!(c["image"], "ghcr.io/example/vault-login:0.1.0");
    assert_eq!(
        c["startupProbe"]["httpGet"],
        json!({"path": "/readyz", "port": 9102})
    );
    assert_eq!(
        c["livenessProbe"]["httpGet"],
        json!({"path": "/healthz", "port": 9102})
    );
    assert_eq!(
        c["securityContext"],
        json!({"runAsNonRoot": true, "runAsUser": 65532, "runAsGroup": 65532, "readOnlyRootFilesystem": true,
               "allowPrivilegeEscalation": false, "privileged": false, "capabilities": {"drop": ["ALL"]},
               "seccompProfile": {"type": "RuntimeDefault"}})
    );
    assert_eq!(
        c["resources"],
        json!({"requests": {"cpu": "5m", "memory": "16Mi"}, "limits": {"cpu": "100m", "memory": "64Mi"}})
    );
    assert_eq!(
        env(c, "VAULT_LOGIN_ANNOTATIONS_FILE").as_deref(),
        Some("/var/run/vault-login/pod/annotations")
    );
    assert_eq!(
        env(c, "VAULT_LOGIN_JWT_FILE").as_deref(),
        Some("/var/run/secrets/vault-login/token")
    );
    assert_eq!(
        env(c, "VAULT_LOGIN_TOKEN_FILE").as_deref(),
        Some("/home/vault/.vault-token")
    );
    assert_eq!(
        env(c, "VAULT_LOGIN_SECRETS_DIR").as_deref(),
        Some("/vault/secrets")
    );
    assert_eq!(env(c, "VAULT_LOGIN_ONCE").as_deref(), Some("false"));
    assert_eq!(
        env(c, "VAULT_LOGIN_LISTEN").as_deref(),
        Some("0.0.0.0:9102")
    );
    // No service annotation: the injector's default address.
    assert_eq!(
        env(c, "VAULT_ADDR").as_deref(),
        Some("https://vault.vault.svc:8200")
    );
    // The role comes from the annotations file, not the environment.
    assert_eq!(env(c, "VAULT_LOGIN_ROLE"), None);

    assert_eq!(
        named(&p, "volumes", "vault-secrets")["emptyDir"],
        json!({"medium": "Memory", "sizeLimit": "8Mi"})
    );
    assert_eq!(
        named(&p, "volumes", "vault-login-jwt")["projected"]["sources"][0]["serviceAccountToken"],
        json!({"path": "token", "expirationSeconds": 3600, "audience": "vault"})
    );
    assert_eq!(
        named(&p, "volumes", "vault-login-pod")["downwardAPI"]["items"][0],
        json!({"path": "annotations", "fieldRef": {"fieldPath": "metadata.annotations"}})
    );
    // The pod's own volumes and mounts are kept.
    named(&p, "volumes", "kube-api-access-x7k2p");
    let web = named(&p, "containers", "web");
    assert!(has_secrets_mount(web, "/vault/secrets"));
    assert_eq!(mounts(web).len(), 2);
    validate_with_schema(&[("deployment", p)]);
}

#[tokio::test]
async fn job_and_cronjob_pods_complete_native_or_classic() {
    let native = Webhook::start(settings()).await;
    let classic = Webhook::start(vault_login_injector::settings::InjectSettings {
        native_sidecar: false,
        ..settings()
    })
    .await;
    let job = pod(
        "migrate-",
        ("Job", "migrate"),
        annotations(&[]),
        vec![container("migrate", "app:1")],
        "Never",
    );
    let mut cron_annotations = json!({
        "openbao.org/agent-inject": "true",
        "openbao.org/role": "report",
        "openbao.org/service": "https://openbao.openbao.svc:8200",
        "openbao.org/agent-revoke-on-shutdown": "true",
    });
    cron_annotations["openbao.org/agent-inject-token"] = json!("true");
    let cron = pod(
        "report-28795320-",
        ("Job", "report-28795320"),
        cron_annotations,
        vec![container("report", "app:1")],
        "OnFailure",
    );

    // Native: the sidecar is an init container, so the Job completes when its container exits.
    let p = native.patched(&job, NS).await;
    check_pod_semantics(&p);
    assert_eq!(names(&p, "initContainers"), ["vault-login"]);
    assert_eq!(names(&p, "containers"), ["migrate"]);
    let cp = native.patched(&cron, NS).await;
    check_pod_semantics(&cp);
    assert_eq!(
        cp["metadata"]["annotations"]["openbao.org/agent-inject-status"],
        "injected"
    );
    assert!(cp["metadata"]["annotations"]
        .get("vault.hashicorp.com/agent-inject-status")
        .is_none());
    let c = named(&cp, "initContainers", "vault-login");
    // The pod names its server: no default address in the environment.
    assert_eq!(env(c, "VAULT_ADDR"), None);
    assert_eq!(
        env(c, "VAULT_LOGIN_TOKEN_FILE").as_deref(),
        Some("/vault/secrets/token")
    );

    // Classic (clusters before 1.29): an init container, then a sidecar sharing its home.
    let k = classic.patched(&job, NS).await;
    check_pod_semantics(&k);
    assert_eq!(names(&k, "initContainers"), ["vault-login-init"]);
    assert_eq!(names(&k, "containers"), ["migrate", "vault-login"]);
    let init = named(&k, "initContainers", "vault-login-init");
    assert!(init.get("restartPolicy").is_none() && init.get("startupProbe").is_none());
    assert_eq!(env(init, "VAULT_LOGIN_ONCE").as_deref(), Some("true"));
    assert_eq!(env(init, "VAULT_LOGIN_LISTEN"), None);
    let side = named(&k, "containers", "vault-login");
    assert_eq!(env(side, "VAULT_LOGIN_ONCE").as_deref(), Some("false"));
    assert!(side.get("restartPolicy").is_none());
    let home = ("vault-login-home".to_string(), "/home/vault".to_string());
    assert!(mounts(init).contains(&home) && mounts(side).contains(&home));
    assert!(has_secrets_mount(
        named(&k, "containers", "migrate"),
        "/vault/secrets"
    ));
    validate_with_schema(&[
        ("job-native", p),
        ("cronjob-native", cp),
        ("job-classic", k),
    ]);
}

#[tokio::test]
async fn existing_init_containers_keep_their_order_unless_init_first() {
    let w = Webhook::start(settings()).await;
    let mut pod = deployment_pod(&[]);
    pod["spec"]["initContainers"] =
        json!([container("migrate", "app:1"), container("warm", "app:1")]);
    let p = w.patched(&pod, NS).await;
    check_pod_semantics(&p);
    assert_eq!(
        names(&p, "initContainers"),
        ["migrate", "warm", "vault-login"]
    );
    // They run before vault-login: no secrets for them, so no mount.
    assert!(!has_secrets_mount(
        named(&p, "initContainers", "migrate"),
        "/vault/secrets"
    ));

    let first = {
        let mut pod = pod.clone();
        pod["metadata"]["annotations"]["vault.hashicorp.com/agent-init-first"] = json!("true");
        pod
    };
    let f = w.patched(&first, NS).await;
    check_pod_semantics(&f);
    assert_eq!(
        names(&f, "initContainers"),
        ["vault-login", "migrate", "warm"]
    );
    for name in ["migrate", "warm"] {
        assert!(
            has_secrets_mount(named(&f, "initContainers", name), "/vault/secrets"),
            "{name}"
        );
    }
    // The containers' own mounts are still theirs.
    assert!(mounts(named(&f, "initContainers", "warm"))
        .iter()
        .any(|(n, _)| n == "kube-api-access-x7k2p"));
    validate_with_schema(&[("inits", p), ("init-first", f)]);
}

#[tokio::test]
async fn an_injected_pod_is_not_patched_twice_and_update_reinjects() {
    let w = Webhook::start(settings()).await;
    let pod = deployment_pod(&[]);
    let once = w.patched(&pod, NS).await;

    let answer = w.review(&once, NS).await;
    assert_eq!(answer["response"]["allowed"], true);
    assert!(answer["response"].get("patch").is_none(), "{answer}");

    // `update` asks for a new injection: the old containers, volumes and mounts are replaced,
    // not doubled, and a changed annotation takes effect.
    let mut again = once.clone();
    again["metadata"]["annotations"]["vault.hashicorp.com/agent-inject-status"] = json!("update");
    again["metadata"]["annotations"]["vault.hashicorp.com/secret-volume-path"] =
        json!("/etc/secrets");
    let twice = w.patched(&again, NS).await;
    check_pod_semantics(&twice);
    assert_eq!(
        twice["metadata"]["annotations"]["vault.hashicorp.com/agent-inject-status"],
        "injected"
    );
    assert_eq!(names(&twice, "initContainers"), ["vault-login"]);
    assert_eq!(
        names(&twice, "volumes").len(),
        names(&once, "volumes").len()
    );
    let web = named(&twice, "containers", "web");
    assert!(has_secrets_mount(web, "/etc/secrets") && !has_secrets_mount(web, "/vault/secrets"));
    assert_eq!(mounts(web).len(), 2);
    validate_with_schema(&[("reinjected", twice)]);
}

#[tokio::test]
async fn pre_populate_only_is_the_init_container_alone() {
    let w = Webhook::start(settings()).await;
    let pod = deployment_pod(&[("vault.hashicorp.com/agent-pre-populate-only", "true")]);
    let p = w.patched(&pod, NS).await;
    check_pod_semantics(&p);
    assert_eq!(names(&p, "initContainers"), ["vault-login-init"]);
    assert_eq!(names(&p, "containers"), ["web"]);
    let init = named(&p, "initContainers", "vault-login-init");
    assert!(init.get("restartPolicy").is_none());
    assert_eq!(env(init, "VAULT_LOGIN_ONCE").as_deref(), Some("true"));
    assert!(has_secrets_mount(
        named(&p, "containers", "web"),
        "/vault/secrets"
    ));
    validate_with_schema(&[("pre-populate-only", p)]);
}

#[tokio::test]
async fn inject_containers_selects_the_app_containers_and_annotations_set_resources() {
    let w = Webhook::start(settings()).await;
    let extra = [
        ("vault.hashicorp.com/agent-inject-containers", "web, worker"),
        ("vault.hashicorp.com/agent-requests-cpu", "25m"),
        ("vault.hashicorp.com/agent-limits-cpu", ""),
        ("vault.hashicorp.com/agent-limits-mem", "128Mi"),
        ("vault.hashicorp.com/agent-requests-ephemeral", "1Mi"),
        ("vault.hashicorp.com/agent-run-as-user", "1000"),
        ("vault.hashicorp.com/agent-run-as-group", "3000"),
    ];
    let pod = pod(
        "web-7d9f8c6b5-",
        ("ReplicaSet", "web-7d9f8c6b5"),
        annotations(&extra),
        vec![
            container("web", "nginx:1.27"),
            container("metrics", "exporter:1"),
            container("worker", "app:1"),
        ],
        "Always",
    );
    let p = w.patched(&pod, NS).await;
    check_pod_semantics(&p);
    assert!(has_secrets_mount(
        named(&p, "containers", "web"),
        "/vault/secrets"
    ));
    assert!(has_secrets_mount(
        named(&p, "containers", "worker"),
        "/vault/secrets"
    ));
    assert!(!has_secrets_mount(
        named(&p, "containers", "metrics"),
        "/vault/secrets"
    ));
    let c = named(&p, "initContainers", "vault-login");
    assert_eq!(
        c["resources"],
        json!({"requests": {"cpu": "25m", "memory": "16Mi", "ephemeral-storage": "1Mi"}, "limits": {"memory": "128Mi"}})
    );
    assert_eq!(c["securityContext"]["runAsUser"], 1000);
    assert_eq!(c["securityContext"]["runAsGroup"], 3000);
    validate_with_schema(&[("inject-containers", p)]);
}

#[tokio::test]
async fn pods_not_asking_and_other_operations_pass_untouched() {
    let w = Webhook::start(settings()).await;
    let plain = pod(
        "web-",
        ("ReplicaSet", "web"),
        json!({}),
        vec![container("web", "nginx")],
        "Always",
    );
    let off = deployment_pod(&[("vault.hashicorp.com/agent-inject", "false")]);
    for p in [&plain, &off] {
        let answer = w.review(p, NS).await;
        assert_eq!(answer["response"]["allowed"], true);
        assert!(answer["response"].get("patch").is_none(), "{answer}");
    }
    let (status, body) = w
        .post(
            review(&deployment_pod(&[]), NS, "UPDATE")
                .to_string()
                .into_bytes(),
            "application/json",
        )
        .await;
    assert_eq!(status, 200);
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert!(answer["response"].get("patch").is_none(), "{answer}");
}

#[tokio::test]
async fn what_vault_login_would_refuse_is_refused_at_admission() {
    let w = Webhook::start(settings()).await;
    for (key, value, expected) in [
        (
            "vault.hashicorp.com/agent-inject-template-db",
            "{{ with secret }}",
            "line 1, column",
        ),
        (
            "vault.hashicorp.com/agent-inject-template-db",
            // A function reaching outside Vault (`pkiCert` is Agent's and ours since issue 23).
            "{{ file \"/etc/passwd\" }}",
            "line 1, column",
        ),
        (
            "vault.hashicorp.com/agent-inject-secret-db.conf",
            "secret/data/db\" }}{{",
            "line 1, column",
        ),
        (
            "vault.hashicorp.com/agent-revoke-on-shutdown",
            "sure",
            "\"sure\" is not a boolean",
        ),
    ] {
        let answer = w.review(&deployment_pod(&[(key, value)]), NS).await;
        assert_eq!(answer["response"]["allowed"], false, "{key}");
        let message = answer["response"]["status"]["message"].as_str().unwrap();
        assert!(
            message.starts_with(&format!("vault-login-injector: {key}: {expected}")),
            "{message}"
        );
    }
}

#[tokio::test]
async fn a_bad_annotation_refuses_the_pod_with_its_name() {
    let w = Webhook::start(settings()).await;
    let pod = deployment_pod(&[("vault.hashicorp.com/auth-type", "aws")]);
    let answer = w.review(&pod, NS).await;
    let r = &answer["response"];
    assert_eq!(r["allowed"], false);
    assert_eq!(r["status"]["code"], 400);
    let message = r["status"]["message"].as_str().unwrap();
    assert!(
        message.starts_with(
            "vault-login-injector: vault.hashicorp.com/auth-type: \"aws\" is not supported"
        ),
        "{message}"
    );
    assert!(r.get("patch").is_none());
}

#[tokio::test]
async fn malformed_reviews_get_400_with_a_line_and_never_stop_the_server() {
    let w = Webhook::start(settings()).await;
    let good = review(&deployment_pod(&[]), NS, "CREATE").to_string();
    let cases: Vec<(Vec<u8>, &str, &str)> = vec![
        (b"not json".to_vec(), "application/json", "the body is not JSON"),
        (good.clone().into_bytes(), "text/plain", "the content type is not application/json"),
        (json!({"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview", "request": {}}).to_string().into_bytes(),
         "application/json", "not an admission.k8s.io/v1 AdmissionReview"),
        (json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}).to_string().into_bytes(),
         "application/json", "the AdmissionReview has no request"),
        (json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"kind": {"kind": "Pod"}}}).to_string().into_bytes(),
         "application/json", "the request has no uid"),
        (json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                "request": {"uid": "u", "kind": {"group": "", "kind": "Pod"}, "operation": "CREATE", "object": "pod"}}).to_string().into_bytes(),
         "application/json", "the request has no object"),
    ];
    for (body, content_type, expected) in cases {
        let (status, text) = w.post(body, content_type).await;
        assert_eq!(status, 400, "{expected}: {text}");
        assert!(text.starts_with(expected), "{expected}: {text}");
        assert_eq!(text.trim_end().lines().count(), 1, "{text}");
    }
    // Every truncation of a real review, and fields of the wrong type in the pod: an answer
    // each (400, or 200 for a still-readable review), and the server keeps serving.
    let bytes = good.as_bytes();
    for cut in (0..bytes.len()).step_by(97) {
        let (status, _) = w.post(bytes[..cut].to_vec(), "application/json").await;
        assert_eq!(status, 400, "cut at {cut}");
    }
    for (pointer, value) in [
        ("/request/object/spec/containers", json!("web")),
        ("/request/object/spec/volumes", json!({"a": 1})),
        ("/request/object/metadata/annotations", json!(["x"])),
        (
            "/request/object/spec/initContainers",
            json!([1, null, {"name": 7}]),
        ),
        ("/request/object/spec", json!(null)),
    ] {
        let mut odd = review(&deployment_pod(&[]), NS, "CREATE");
        let (parent, key) = pointer.rsplit_once('/').unwrap();
        odd.pointer_mut(parent).unwrap()[key] = value;
        let (status, text) = w
            .post(odd.to_string().into_bytes(), "application/json")
            .await;
        assert_eq!(status, 200, "{pointer}: {text}");
    }
    assert_eq!(w.get("/healthz").await, (200, "ok\n".to_string()));
    let (_, metrics) = w.get("/metrics").await;
    assert!(
        metrics.lines().any(|l| l
            .starts_with("vault_login_injector_reviews_total{outcome=\"bad_request\"} ")
            && l.split(' ').nth(1).unwrap().parse::<u32>().unwrap() >= 6),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_renewed_certificate_is_served_without_a_restart() {
    let w = Webhook::start(settings()).await;
    assert_eq!(w.get("/healthz").await.0, 200);
    let renewed = Pki::generate();
    renewed.write(w.dir.path());
    let new_client = client_trusting(&renewed.ca_pem);
    let r = new_client
        .get(format!("{}/healthz", w.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // The old CA no longer verifies the server.
    let old = client_trusting(&w.pki.ca_pem)
        .get(format!("{}/healthz", w.url))
        .send()
        .await;
    assert!(old.is_err(), "the old certificate is still served");

    // A half-written pair (key of another certificate) keeps the renewed one in service.
    std::fs::write(w.dir.path().join("tls.key"), Pki::generate().key_pem).unwrap();
    let r = new_client
        .get(format!("{}/healthz", w.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (_, metrics) = {
        let r = new_client
            .get(format!("{}/metrics", w.url))
            .send()
            .await
            .unwrap();
        (r.status(), r.text().await.unwrap())
    };
    assert!(
        metrics.contains("vault_login_injector_certificate_reload_failures_total 1"),
        "{metrics}"
    );
}
