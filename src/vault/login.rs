//! One login attempt: read the service-account JWT afresh, post it to the kubernetes auth
//! method, and explain a refusal with what the JWT says; plus how the machine should treat
//! each failure.

use crate::jwt::{self, unix_now, JwtError, JwtSource};
use crate::machine::failure::{Failure, FailureKind};
use crate::sensitive::Secret;
use crate::vault::hints;
use crate::vault::{check_vault_path, Auth, VaultClient, VaultError};

/// Why a login attempt failed.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// The JWT could not be read.
    #[error(transparent)]
    Jwt(#[from] JwtError),
    /// Vault refused or could not be reached.
    #[error("{error}{hints}")]
    Vault {
        /// The Vault failure.
        error: VaultError,
        /// Hints from [`crate::vault::hints::login_hints`].
        hints: String,
    },
    /// The blocking task that reads the JWT did not finish.
    #[error("cannot read the service-account JWT: {0}")]
    Task(String),
    /// No answer before the run's deadline.
    #[error("login: no answer from Vault before the deadline")]
    TimedOut,
}

impl LoginError {
    /// How the machine should treat it.
    pub fn failure(&self) -> Failure {
        let (kind, retry_after) = match self {
            LoginError::Jwt(JwtError::Missing(_)) => (FailureKind::JwtMissing, None),
            LoginError::Jwt(_) => (FailureKind::Other, None),
            LoginError::Vault { error, .. } => (error.kind(), error.retry_after()),
            LoginError::TimedOut | LoginError::Task(_) => (FailureKind::Transient, None),
        };
        Failure {
            kind,
            retry_after,
            message: self.to_string(),
        }
    }
}

/// Reads the JWT from `source` and logs in to `mount` as `role`.
pub async fn attempt(
    client: &VaultClient,
    source: &JwtSource,
    mount: &str,
    role: &str,
) -> Result<Auth, LoginError> {
    // Read on a blocking thread: the volume is the kubelet's, but a slow one must not stall the
    // runtime that also answers probes and signals.
    let source = source.clone();
    let jwt = match tokio::task::spawn_blocking(move || jwt::read(&source)).await {
        Ok(read) => read?,
        Err(e) => return Err(LoginError::Task(e.to_string())),
    };
    let token: &Secret = &jwt.token;
    client.login(mount, role, token).await.map_err(|error| {
        let namespace = client.namespace();
        let hints = hints::login_hints(&error, mount, namespace, Some(&jwt.claims), unix_now());
        LoginError::Vault { error, hints }
    })
}

pub fn parse_role(s: &str) -> Result<String, String> {
    if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "{s:?} contains whitespace; give the role's name exactly as created in vault"
        ));
    }
    Ok(s.to_string())
}

pub fn parse_mount(s: &str) -> Result<String, String> {
    const EXAMPLE: &str = "kubernetes or k8s/cluster-1";
    let trimmed = s.trim_matches('/');
    if trimmed.is_empty() {
        return Err(format!("{s:?} is not a mount path; use e.g. {EXAMPLE}"));
    }
    check_vault_path(s, trimmed, EXAMPLE)?;
    Ok(trimmed.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::StatusCode;

    fn status(code: u16, errors: &[&str]) -> VaultError {
        VaultError::Status {
            op: "PUT /v1/auth/token/renew-self".into(),
            status: StatusCode::from_u16(code).unwrap(),
            errors: errors.iter().map(|e| e.to_string()).collect(),
            retry_after: None,
        }
    }

    #[test]
    fn vault_errors_classify_through_the_machine() {
        let transport = VaultError::Transport {
            op: "POST login".into(),
            message: "connection refused".into(),
        };
        assert_eq!(transport.kind(), FailureKind::Transient);
        assert_eq!(
            status(
                403,
                &["2 errors occurred:\n\t* permission denied\n\t* invalid token\n\n"]
            )
            .kind(),
            FailureKind::Denied
        );
        assert_eq!(
            status(
                500,
                &["1 error occurred:\n\t* past the max TTL, cannot renew\n\n"]
            )
            .kind(),
            FailureKind::Expired
        );
        let html = VaultError::BadResponse {
            op: "POST login".into(),
            status: StatusCode::BAD_GATEWAY,
            problem: "HTML".into(),
        };
        assert_eq!(html.kind(), FailureKind::Transient);
        let garbled = VaultError::BadResponse {
            op: "POST login".into(),
            status: StatusCode::OK,
            problem: "no auth".into(),
        };
        assert_eq!(garbled.kind(), FailureKind::Other);
    }

    #[test]
    fn a_missing_jwt_waits_and_a_timeout_retries() {
        let missing = LoginError::Jwt(JwtError::Missing("/var/run/token".into()));
        assert_eq!(missing.failure().kind, FailureKind::JwtMissing);
        assert!(missing.failure().message.contains("/var/run/token"));
        assert_eq!(LoginError::TimedOut.failure().kind, FailureKind::Transient);
        let e = LoginError::Vault {
            error: status(429, &["rate limit quota exceeded"]),
            hints: String::new(),
        };
        assert_eq!(e.failure().kind, FailureKind::Busy);
    }
}
