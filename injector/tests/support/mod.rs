//! The webhook on 127.0.0.1:0 with a throwaway CA, the reviews the API server sends, and an
//! independent RFC 6902 implementation (the json-patch crate) to apply the answers.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use serde_json::{json, Value};
use tokio::sync::oneshot;
use vault_login_injector::server::{self, Shared};
use vault_login_injector::settings::InjectSettings;
use vault_login_injector::tls::ReloadingCert;

/// A CA and a server certificate for 127.0.0.1 and localhost, as PEM.
pub struct Pki {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

impl Pki {
    pub fn generate() -> Pki {
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_key = KeyPair::generate().unwrap();
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca, ca_key);
        let names = vec!["127.0.0.1".to_string(), "localhost".to_string()];
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(names)
            .unwrap()
            .signed_by(&key, &issuer)
            .unwrap();
        Pki {
            ca_pem: ca_cert.pem(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }

    pub fn write(&self, dir: &Path) -> (PathBuf, PathBuf) {
        let (cert, key) = (dir.join("tls.crt"), dir.join("tls.key"));
        // Swapped in whole, as the kubelet swaps a Secret volume's files.
        for (path, text) in [(&cert, &self.cert_pem), (&key, &self.key_pem)] {
            let tmp = path.with_extension("tmp");
            std::fs::write(&tmp, text).unwrap();
            std::fs::rename(&tmp, path).unwrap();
        }
        (cert, key)
    }
}

pub fn settings() -> InjectSettings {
    InjectSettings {
        image: "ghcr.io/example/vault-login:0.1.0".into(),
        vault_addr: Some("https://vault.vault.svc:8200".into()),
        native_sidecar: true,
        audience: Some("vault".into()),
        token_expiration: 3600,
        sidecar_port: 9102,
        volume_size: "8Mi".into(),
        requests: (Some("5m".into()), Some("16Mi".into())),
        limits: (Some("100m".into()), Some("64Mi".into())),
        run_as_user: 65532,
        run_as_group: 65532,
    }
}

/// The webhook serving on 127.0.0.1:0 in its own runtime thread.
pub struct Webhook {
    pub url: String,
    pub dir: tempfile::TempDir,
    pub pki: Pki,
    pub client: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Webhook {
    pub async fn start(inject: InjectSettings) -> Webhook {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::generate();
        let (cert, key) = pki.write(dir.path());
        let cert = Arc::new(ReloadingCert::new(&cert, &key).unwrap());
        let shared = Arc::new(Shared {
            inject,
            metrics: Default::default(),
            cert,
        });
        let (stop, stopped) = oneshot::channel::<()>();
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = server::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
                addr_tx.send(listener.local_addr().unwrap()).unwrap();
                server::run(listener, shared, async {
                    let _ = stopped.await;
                })
                .await;
            });
        });
        let addr = addr_rx.recv().unwrap();
        let client = client_trusting(&pki.ca_pem);
        Webhook {
            url: format!("https://{addr}"),
            dir,
            pki,
            client,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// POSTs a body to /mutate; the status and the body.
    pub async fn post(&self, body: Vec<u8>, content_type: &str) -> (u16, String) {
        let r = self
            .client
            .post(format!("{}/mutate", self.url))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    /// Sends the review the API server sends for `pod`; the AdmissionReview answered.
    pub async fn review(&self, pod: &Value, namespace: &str) -> Value {
        let (status, body) = self
            .post(
                review(pod, namespace, "CREATE").to_string().into_bytes(),
                "application/json",
            )
            .await;
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }

    /// The pod after the answer's patch (the pod itself when there is none).
    pub async fn patched(&self, pod: &Value, namespace: &str) -> Value {
        let answer = self.review(pod, namespace).await;
        let response = &answer["response"];
        assert_eq!(response["allowed"], true, "{answer}");
        assert_eq!(response["uid"], pod_uid(pod));
        apply(pod, response)
    }

    pub async fn get(&self, path: &str) -> (u16, String) {
        let r = self
            .client
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }
}

impl Drop for Webhook {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

pub fn client_trusting(ca_pem: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap())
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
}

/// Applies an AdmissionResponse's base64 JSON patch to the pod.
pub fn apply(pod: &Value, response: &Value) -> Value {
    use base64::Engine;
    let mut pod = pod.clone();
    if let Some(patch) = response.get("patch").and_then(Value::as_str) {
        assert_eq!(response["patchType"], "JSONPatch");
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(patch)
            .unwrap();
        let patch: json_patch::Patch = serde_json::from_slice(&bytes).unwrap();
        json_patch::patch(&mut pod, &patch).unwrap();
    }
    pod
}

fn pod_uid(pod: &Value) -> String {
    format!(
        "uid-{}",
        pod["metadata"]["generateName"]
            .as_str()
            .or(pod["metadata"]["name"].as_str())
            .unwrap_or("pod")
    )
}

/// The AdmissionReview the API server sends for a pod (fields as kube-apiserver 1.30 fills them).
pub fn review(pod: &Value, namespace: &str, operation: &str) -> Value {
    json!({
        "kind": "AdmissionReview",
        "apiVersion": "admission.k8s.io/v1",
        "request": {
            "uid": pod_uid(pod),
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
            "requestResource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": namespace,
            "operation": operation,
            "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller",
                         "uid": "1c0ae2a5-0b6e-4e4b-9c1a-2f3c0a4b5d6e",
                         "groups": ["system:serviceaccounts", "system:serviceaccounts:kube-system", "system:authenticated"]},
            "object": pod,
            "oldObject": null,
            "dryRun": false,
            "options": {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"}
        }
    })
}

/// A container as the API server has defaulted it.
pub fn container(name: &str, image: &str) -> Value {
    json!({
        "name": name, "image": image,
        "resources": {},
        "volumeMounts": [{"name": "kube-api-access-x7k2p", "readOnly": true,
                          "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}],
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
        "imagePullPolicy": "IfNotPresent"
    })
}

/// A pod as a controller creates it and the API server defaults it before the webhooks.
pub fn pod(
    generate_name: &str,
    owner: (&str, &str),
    annotations: Value,
    containers: Vec<Value>,
    restart: &str,
) -> Value {
    json!({
        "kind": "Pod", "apiVersion": "v1",
        "metadata": {
            "generateName": generate_name,
            "labels": {"app": "web"},
            "annotations": annotations,
            "ownerReferences": [{"apiVersion": if owner.0 == "ReplicaSet" { "apps/v1" } else { "batch/v1" },
                                 "kind": owner.0, "name": owner.1,
                                 "uid": "0b7c1e8e-4a55-4d2f-8f3a-9d1e2c3b4a5f",
                                 "controller": true, "blockOwnerDeletion": true}]
        },
        "spec": {
            "volumes": [{"name": "kube-api-access-x7k2p", "projected": {"sources": [
                {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}
            ], "defaultMode": 420}}],
            "containers": containers,
            "restartPolicy": restart,
            "terminationGracePeriodSeconds": 30,
            "dnsPolicy": "ClusterFirst",
            "serviceAccountName": "web",
            "serviceAccount": "web",
            "securityContext": {},
            "schedulerName": "default-scheduler",
            "tolerations": [
                {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
                {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}
            ],
            "priority": 0,
            "enableServiceLinks": true,
            "preemptionPolicy": "PreemptLowerPriority"
        },
        "status": {"phase": "Pending", "qosClass": "BestEffort"}
    })
}

/// The checks the API server makes that a schema cannot: unique names, mounts of existing
/// volumes, unique mount paths per container.
pub fn check_pod_semantics(pod: &Value) {
    let volumes: Vec<&str> = pod["spec"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    let mut sorted = volumes.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(
        sorted.len(),
        volumes.len(),
        "duplicate volume names: {volumes:?}"
    );
    let mut names = Vec::new();
    for list in ["initContainers", "containers"] {
        for c in pod["spec"][list].as_array().map_or(&[][..], Vec::as_slice) {
            names.push(c["name"].as_str().unwrap());
            let mut paths = Vec::new();
            for m in c["volumeMounts"].as_array().map_or(&[][..], Vec::as_slice) {
                assert!(
                    volumes.contains(&m["name"].as_str().unwrap()),
                    "{m} mounts a volume the pod lacks"
                );
                paths.push(m["mountPath"].as_str().unwrap());
            }
            let n = paths.len();
            paths.sort();
            paths.dedup();
            assert_eq!(paths.len(), n, "duplicate mount paths in {}", c["name"]);
            if c.get("restartPolicy").is_some() {
                assert_eq!(
                    list, "initContainers",
                    "restartPolicy on a regular container"
                );
            }
        }
    }
    let n = names.len();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), n, "duplicate container names");
}

/// Validates pods against the Kubernetes schema with the packaging lint's validator
/// (kubernetes-validate --strict, the versions .ci/lint-packaging.sh uses). The validator is
/// installed by that script into target/lint-venv; without it the check is skipped with a line,
/// or fails when VAULT_LOGIN_REQUIRE_REAL=1 (CI, which runs the lint first).
pub fn validate_with_schema(pods: &[(&str, Value)]) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let validator = std::env::var_os("KUBERNETES_VALIDATE")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target/lint-venv/bin/kubernetes-validate"));
    if !validator.exists() {
        let line = format!(
            "kubernetes-validate not found at {} (run .ci/lint-packaging.sh once)",
            validator.display()
        );
        if std::env::var("VAULT_LOGIN_REQUIRE_REAL").is_ok_and(|v| v == "1") {
            panic!("{line}");
        }
        eprintln!("SKIP schema validation: {line}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for (name, pod) in pods {
        let mut pod = pod.clone();
        // A real pod has a name by then (generateName is resolved after admission).
        pod["metadata"]["name"] = json!(format!("{name}-x1"));
        pod["metadata"]["namespace"] = json!("app");
        let file = dir.path().join(format!("{name}.yaml"));
        std::fs::write(&file, serde_json::to_string_pretty(&pod).unwrap()).unwrap();
        files.push(file);
    }
    for version in ["1.29.0", "1.37.0"] {
        let out = std::process::Command::new(&validator)
            .args(["-k", version, "--strict"])
            .args(&files)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success(),
            "kubernetes-validate {version}:\n{text}"
        );
        assert_eq!(text.matches(" passed ").count(), files.len(), "{text}");
    }
}
