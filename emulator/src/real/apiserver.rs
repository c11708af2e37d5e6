//! A fake kube-apiserver for OpenBao's kubernetes auth method: HTTPS with a throwaway CA, and the
//! one endpoint the method calls, `POST /apis/authentication.k8s.io/v1/tokenreviews`, answered
//! as a real kube-apiserver answers it:
//!
//! - the caller authenticates with `Authorization: Bearer <JWT>`, a service-account token for
//!   the apiserver's own audience (Vault's `token_reviewer_jwt`); anything else is `401` with a
//!   `Status` object;
//! - the reviewed token must be signed by the cluster's key (the emulator's test key), unexpired
//!   (60 s leeway) and carry one of `spec.audiences` in `aud` (the apiserver's own audience when
//!   the spec names none);
//! - the answer is `201 Created` with the `TokenReview` echoed and `status.authenticated`,
//!   `status.user` (`system:serviceaccount:<ns>:<sa>`, the account's `uid`, its groups and the
//!   pod in `extra`) and `status.audiences`, the intersection; a token that fails gets
//!   `status.authenticated` left out, an empty `user` and an `error`, still `201`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{SystemTime, UNIX_EPOCH};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio_rustls::TlsAcceptor;

use crate::jwt;
use crate::tls::Material;

/// The audience of the apiserver itself (`--api-audiences`), checked when a review names none.
pub const APISERVER_AUDIENCE: &str = "https://kubernetes.default.svc.cluster.local";

/// The one path it serves.
const TOKENREVIEWS: &str = "/apis/authentication.k8s.io/v1/tokenreviews";

/// Leeway on `exp` and `nbf`, like the apiserver's JWT validator.
const LEEWAY_SECS: f64 = 60.0;

/// What the handlers share with the control API.
#[derive(Default)]
struct Shared {
    reviews: AtomicUsize,
    failing: AtomicBool,
    log: AtomicBool,
    /// Service accounts deleted since their tokens were issued: `(namespace, name)`.
    deleted: Mutex<Vec<(String, String)>>,
}

/// A running fake kube-apiserver; dropping it stops the server.
pub struct Apiserver {
    addr: SocketAddr,
    ca_pem: String,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Apiserver {
    /// Starts serving HTTPS on `127.0.0.1:0` with a fresh CA.
    ///
    /// # Panics
    /// When the port cannot be bound or the TLS material cannot be made (test support).
    pub fn start() -> Apiserver {
        let material = Material::generate(false)
            .unwrap_or_else(|e| panic!("fake kube-apiserver: tls material: {e}"));
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap_or_else(|e| panic!("fake kube-apiserver: bind: {e}"));
        let addr = std_listener
            .local_addr()
            .unwrap_or_else(|e| panic!("fake kube-apiserver: local addr: {e}"));
        std_listener
            .set_nonblocking(true)
            .unwrap_or_else(|e| panic!("fake kube-apiserver: nonblocking: {e}"));
        let shared = Arc::new(Shared {
            log: AtomicBool::new(std::env::var_os("FAKE_APISERVER_LOG").is_some()),
            ..Shared::default()
        });
        let (stop, stopped) = oneshot::channel();
        let acceptor = TlsAcceptor::from(material.server_config.clone());
        let handler_state = shared.clone();
        let thread = std::thread::Builder::new()
            .name("fake-kube-apiserver".into())
            .spawn(move || serve(std_listener, acceptor, handler_state, stopped))
            .unwrap_or_else(|e| panic!("fake kube-apiserver: thread: {e}"));
        Apiserver {
            addr,
            ca_pem: material.ca_pem,
            shared,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// `https://127.0.0.1:PORT`, for `kubernetes_host`.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// The CA certificate (PEM) that signed the server certificate, for `kubernetes_ca_cert`.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// A service-account JWT signed with the cluster key, as the kubelet projects one.
    pub fn jwt(&self, ns: &str, sa: &str, aud: &[&str], ttl_secs: u64) -> String {
        let ttl = i64::try_from(ttl_secs).unwrap_or(i64::MAX / 2);
        jwt::sign(&jwt::sa_claims(ns, sa, aud, ttl, unix_now() as i64))
    }

    /// A long-lived JWT of the reviewer account (`kube-system/openbao-reviewer`, audience the
    /// apiserver's own), for Vault's `token_reviewer_jwt`.
    pub fn reviewer_jwt(&self) -> String {
        self.jwt(
            "kube-system",
            "openbao-reviewer",
            &[APISERVER_AUDIENCE],
            365 * 24 * 3600,
        )
    }

    /// TokenReviews answered so far (authenticated or not).
    pub fn reviews(&self) -> usize {
        self.shared.reviews.load(Ordering::SeqCst)
    }

    /// While `failing`, every review answers `500` (an apiserver in trouble).
    pub fn set_failing(&self, failing: bool) {
        self.shared.failing.store(failing, Ordering::SeqCst);
    }

    /// Deletes a service account: its tokens stop authenticating, as in a real cluster.
    pub fn delete_service_account(&self, ns: &str, sa: &str) {
        let mut deleted = self
            .shared
            .deleted
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        deleted.push((ns.to_string(), sa.to_string()));
    }

    /// Prints every review (method, path, spec audiences, answer) to stderr when `on`; the
    /// environment variable `FAKE_APISERVER_LOG` turns it on from the start.
    pub fn log_requests(&self, on: bool) {
        self.shared.log.store(on, Ordering::SeqCst);
    }
}

impl Drop for Apiserver {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn serve(
    listener: std::net::TcpListener,
    acceptor: TlsAcceptor,
    shared: Arc<Shared>,
    mut stopped: oneshot::Receiver<()>,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("fake kube-apiserver: runtime: {e}");
            return;
        }
    };
    runtime.block_on(async move {
        let listener = match TcpListener::from_std(listener) {
            Ok(l) => l,
            Err(e) => {
                eprintln!("fake kube-apiserver: listener: {e}");
                return;
            }
        };
        loop {
            let (tcp, _) = tokio::select! {
                _ = &mut stopped => return,
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(_) => continue,
                },
            };
            let acceptor = acceptor.clone();
            let shared = shared.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = service_fn(move |req| handle(req, shared.clone()));
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
}

async fn handle(
    req: hyper::Request<Incoming>,
    shared: Arc<Shared>,
) -> Result<hyper::Response<Full<Bytes>>, Infallible> {
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let bearer = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string);
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => Bytes::new(),
    };
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let (status, answer) = answer(&shared, &method, &path, bearer.as_deref(), &body);
    if shared.log.load(Ordering::SeqCst) {
        eprintln!(
            "fake kube-apiserver: {method} {path} spec.audiences={} -> {status} {}",
            body.pointer("/spec/audiences").unwrap_or(&Value::Null),
            answer.get("status").unwrap_or(&Value::Null)
        );
    }
    let mut response = hyper::Response::new(Full::new(Bytes::from(answer.to_string())));
    *response.status_mut() =
        hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

/// A `metav1.Status` failure, the body of every non-2xx answer.
fn status_failure(code: u16, reason: &str, message: &str) -> (u16, Value) {
    let body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code,
    });
    (code, body)
}

fn answer(
    shared: &Shared,
    method: &str,
    path: &str,
    bearer: Option<&str>,
    body: &Value,
) -> (u16, Value) {
    if path != TOKENREVIEWS {
        return status_failure(
            404,
            "NotFound",
            "the server could not find the requested resource",
        );
    }
    if method != "POST" {
        return status_failure(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        );
    }
    let caller_ok =
        bearer.is_some_and(|b| review(shared, b, &[APISERVER_AUDIENCE.to_string()]).is_ok());
    if !caller_ok {
        return status_failure(401, "Unauthorized", "Unauthorized");
    }
    if shared.failing.load(Ordering::SeqCst) {
        return status_failure(
            500,
            "InternalError",
            "Internal error occurred: tokenreview unavailable",
        );
    }
    let Some(token) = body.pointer("/spec/token").and_then(Value::as_str) else {
        return status_failure(
            400,
            "BadRequest",
            "TokenReview.authentication.k8s.io \"\" is invalid: spec.token: Required value",
        );
    };
    shared.reviews.fetch_add(1, Ordering::SeqCst);
    let spec_audiences: Vec<String> = body
        .pointer("/spec/audiences")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let wanted = if spec_audiences.is_empty() {
        vec![APISERVER_AUDIENCE.to_string()]
    } else {
        spec_audiences.clone()
    };
    let mut spec = json!({"token": token});
    if !spec_audiences.is_empty() {
        spec["audiences"] = json!(spec_audiences);
    }
    let status = match review(shared, token, &wanted) {
        Ok(status) => status,
        Err(error) => json!({"user": {}, "error": error}),
    };
    let review = json!({
        "kind": "TokenReview",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": {"creationTimestamp": null},
        "spec": spec,
        "status": status,
    });
    (201, review)
}

/// Authenticates `token` for one of `wanted`: the `status` of a successful review, or the
/// `error` of a failed one.
fn review(shared: &Shared, token: &str, wanted: &[String]) -> Result<Value, String> {
    const INVALID: &str =
        "[invalid bearer token, square/go-jose: error in cryptographic primitive]";
    let parsed = jwt::parse(token).ok_or("[invalid bearer token, token lookup failed]")?;
    if !parsed.signature_ok() {
        return Err(INVALID.into());
    }
    let claims = parsed.claims();
    let now = unix_now();
    let time = |name: &str| claims.get(name).and_then(Value::as_f64);
    if time("exp").is_some_and(|exp| now - LEEWAY_SECS > exp) {
        return Err("[invalid bearer token, service account token has expired]".into());
    }
    if time("nbf").is_some_and(|nbf| now + LEEWAY_SECS < nbf) {
        return Err("[invalid bearer token, service account token is not valid yet]".into());
    }
    let token_aud: Vec<String> = match claims.get("aud") {
        Some(Value::String(a)) => vec![a.clone()],
        Some(Value::Array(list)) => list
            .iter()
            .filter_map(|a| a.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    };
    let audiences: Vec<&String> = wanted.iter().filter(|a| token_aud.contains(a)).collect();
    if audiences.is_empty() {
        return Err(format!(
            "[invalid bearer token, token audiences {token_aud:?} is invalid for the target audiences {wanted:?}]"
        ));
    }
    let sa = parsed.service_account();
    if sa.name.is_empty() || sa.namespace.is_empty() {
        return Err(INVALID.into());
    }
    let deleted = shared.deleted.lock().unwrap_or_else(|p| p.into_inner());
    if deleted
        .iter()
        .any(|(ns, name)| *ns == sa.namespace && *name == sa.name)
    {
        return Err(format!(
            "[invalid bearer token, service account {}/{} has been deleted]",
            sa.namespace, sa.name
        ));
    }
    let pod = claims.get("kubernetes.io").and_then(|k| k.get("pod"));
    let pod_field = |f: &str| {
        pod.and_then(|p| p.get(f))
            .and_then(Value::as_str)
            .unwrap_or("")
    };
    Ok(json!({
        "authenticated": true,
        "user": {
            "username": format!("system:serviceaccount:{}:{}", sa.namespace, sa.name),
            "uid": sa.uid,
            "groups": ["system:serviceaccounts", format!("system:serviceaccounts:{}", sa.namespace), "system:authenticated"],
            "extra": {
                "authentication.kubernetes.io/pod-name": [pod_field("name")],
                "authentication.kubernetes.io/pod-uid": [pod_field("uid")],
            },
        },
        "audiences": audiences,
    }))
}
