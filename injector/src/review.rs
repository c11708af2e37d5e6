//! AdmissionReview v1: the API server's request in, the answer out.
//!
//! A review that cannot be read is answered 400 with a line saying why (the API server then
//! applies the webhook's `failurePolicy`); a pod the injector refuses is answered 200 with
//! `allowed: false` and the refusal, which `kubectl` and the ReplicaSet's events show.

use base64::Engine;
use serde_json::{json, Value};

use crate::mutate::{mutate, Outcome};
use crate::settings::InjectSettings;

/// The review's API version the injector speaks (`admissionReviewVersions: ["v1"]`).
pub const API_VERSION: &str = "admission.k8s.io/v1";

/// The answer to one review.
#[derive(Debug)]
pub struct Answer {
    /// The AdmissionReview to send back (HTTP 200).
    pub body: Value,
    /// What happened, for the log and the metrics: `injected`, `skipped` or `refused`.
    pub outcome: &'static str,
    /// The detail: the injection mode, why it was skipped, or the refusal.
    pub detail: String,
}

/// Reads a review and answers it; `Err` is the line to answer with 400.
pub fn answer(body: &[u8], s: &InjectSettings) -> Result<Answer, String> {
    let review: Value = serde_json::from_slice(body)
        .map_err(|e| format!("the body is not JSON ({e}); send an AdmissionReview"))?;
    let version = review
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("");
    if version != API_VERSION
        || review.get("kind").and_then(Value::as_str) != Some("AdmissionReview")
    {
        return Err(format!(
            "not an {API_VERSION} AdmissionReview (apiVersion {version:?}); set admissionReviewVersions: [\"v1\"] in the webhook"
        ));
    }
    let request = review
        .get("request")
        .filter(|r| r.is_object())
        .ok_or("the AdmissionReview has no request")?;
    let uid = request
        .get("uid")
        .and_then(Value::as_str)
        .filter(|u| !u.is_empty())
        .ok_or("the request has no uid")?;
    let kind = request
        .pointer("/kind/kind")
        .and_then(Value::as_str)
        .unwrap_or("");
    let group = request
        .pointer("/kind/group")
        .and_then(Value::as_str)
        .unwrap_or("");
    let operation = request
        .get("operation")
        .and_then(Value::as_str)
        .unwrap_or("");
    let allowed = |detail: &str, outcome| Answer {
        body: json!({"apiVersion": API_VERSION, "kind": "AdmissionReview",
                     "response": {"uid": uid, "allowed": true}}),
        outcome,
        detail: detail.to_string(),
    };
    if kind != "Pod"
        || !group.is_empty()
        || request.get("subResource").is_some_and(|s| !s.is_null())
    {
        return Ok(allowed("not a pod", "skipped"));
    }
    if operation != "CREATE" {
        return Ok(allowed("not a creation", "skipped"));
    }
    let pod = request
        .get("object")
        .filter(|o| o.is_object())
        .ok_or("the request has no object (the pod)")?;
    let namespace = request
        .get("namespace")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .or_else(|| pod.pointer("/metadata/namespace").and_then(Value::as_str))
        .unwrap_or("default");
    Ok(match mutate(pod, namespace, s) {
        Ok(Outcome::Skipped(why)) => allowed(why, "skipped"),
        Ok(Outcome::Injected { patch, mode }) => {
            // Serialising a Vec of our own ops cannot fail: every value is already JSON.
            let patch = serde_json::to_vec(&patch).unwrap_or_default();
            Answer {
                body: json!({"apiVersion": API_VERSION, "kind": "AdmissionReview", "response": {
                    "uid": uid, "allowed": true, "patchType": "JSONPatch",
                    "patch": base64::engine::general_purpose::STANDARD.encode(patch),
                }}),
                outcome: "injected",
                detail: mode.to_string(),
            }
        }
        Err(refusal) => Answer {
            body: json!({"apiVersion": API_VERSION, "kind": "AdmissionReview", "response": {
                "uid": uid, "allowed": false,
                "status": {"code": 400, "reason": "BadRequest",
                           "message": format!("vault-login-injector: {refusal}")},
            }}),
            outcome: "refused",
            detail: refusal.0,
        },
    })
}
