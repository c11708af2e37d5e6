//! vault-login-injector: a mutating admission webhook that puts vault-login into the pods
//! annotated for the vault-k8s injector (`vault.hashicorp.com/agent-inject: "true"`, or
//! `openbao.org/agent-inject`).
//!
//! # Layout
//! - [`settings`]: the `VAULT_LOGIN_INJECTOR_*` variables, declared once.
//! - [`annotations`]: a pod's annotations under either prefix, and Go's boolean spellings.
//! - [`quantity`]: Kubernetes resource quantities, checked.
//! - [`mutate`]: the pure decision: pod and settings in, JSON patch or refusal out.
//! - [`review`]: AdmissionReview v1 in, AdmissionReview out.
//! - [`tls`]: the serving certificate, reloaded when its files change.
//! - [`metrics`]: counters and the latency histogram for `/metrics`.
//! - [`server`]: the HTTPS server (`/mutate`, `/healthz`, `/metrics`).
#![forbid(unsafe_code)]

pub mod annotations;
pub mod metrics;
pub mod mutate;
pub mod quantity;
pub mod review;
pub mod server;
pub mod settings;
pub mod tls;

/// Exit code of a configuration error (`EX_USAGE`).
pub const EXIT_CONFIG: i32 = 64;
/// Exit code of a runtime failure.
pub const EXIT_RUNTIME: i32 = 1;

/// Why the injector cannot run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A setting is wrong: names the variable and what to do.
    #[error("{0}")]
    Config(String),
    /// The serving certificate or key cannot be used: names the file.
    #[error("{0}")]
    Tls(String),
    /// Anything else at run time.
    #[error("{0}")]
    Runtime(String),
}

impl Error {
    /// The process's exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Config(_) => EXIT_CONFIG,
            Error::Tls(_) | Error::Runtime(_) => EXIT_RUNTIME,
        }
    }
}
