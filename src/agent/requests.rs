//! The I/O the driver performs for the token: a login, a renewal and a revocation, each cut
//! at its deadline, and making the token file (or stdout) hold the token.

use std::io::Write;

use tokio::time::{timeout_at, Instant};
use tracing::{error, info, warn};

use serde_json::Value;

use super::{Agent, Answer};
use crate::files::token_file::TokenSink;
use crate::machine::events::{Event, Grant};
use crate::sensitive::Secret;
use crate::vault::login::{self, LoginError};
use crate::vault::VaultError;

impl Agent {
    /// One login attempt, abandoned at `deadline`.
    pub(super) async fn login(&self, deadline: Option<Instant>) -> Answer {
        let sent = Instant::now();
        let attempt = login::attempt(&self.client, &self.cfg.jwt, &self.cfg.mount, &self.cfg.role);
        let result = match deadline {
            Some(d) => timeout_at(d, attempt)
                .await
                .unwrap_or_else(|_| Err(LoginError::TimedOut)),
            None => attempt.await,
        };
        Answer::Login(sent, result)
    }

    /// One renewal of `token`; abandoned at the token's expiry.
    pub(super) async fn renew(
        &self,
        token: Option<Secret>,
        increment: Option<std::time::Duration>,
        deadline: Option<Instant>,
    ) -> Answer {
        let sent = Instant::now();
        let Some(token) = token else {
            return Answer::Renew(sent, Err(VaultError::no_token("renew-self")));
        };
        let attempt = self.client.renew_self(&token, increment);
        let op = "POST /v1/auth/token/renew-self";
        Answer::Renew(sent, until(deadline, op, "token", attempt).await)
    }

    /// How long `token` really has left (`lookup-self`), abandoned at `deadline`.
    pub(super) async fn lookup(&self, token: Option<Secret>, deadline: Option<Instant>) -> Answer {
        let sent = Instant::now();
        let op = "GET /v1/auth/token/lookup-self";
        let Some(token) = token else {
            return Answer::Lookup(sent, Err(VaultError::no_token(op)));
        };
        let attempt = async {
            let data = self.client.lookup_self(&token).await?;
            life_of(&data).ok_or_else(|| VaultError::BadResponse {
                op: op.into(),
                status: reqwest::StatusCode::OK,
                problem: "data.ttl is missing or not a number of seconds".into(),
            })
        };
        Answer::Lookup(sent, until(deadline, op, "token", attempt).await)
    }

    /// Revokes a login's token the machine will not use (`revoke-self` with it): no one else
    /// ever had it, so nothing of the app's dies with it.
    pub(super) async fn discard(&self, token: Secret) {
        match self.client.revoke_self(&token).await {
            Ok(()) => info!("revoked the unused token of a login that answered late"),
            Err(e) => {
                warn!(error = %e, "cannot revoke the unused token of a late login; it expires with its TTL")
            }
        }
    }

    /// Revokes the secrets' `leases` and `token` (if any), and removes the token and secret
    /// files.
    pub(super) async fn revoke(
        &self,
        token: Option<Secret>,
        leases: Vec<String>,
        deadline: Instant,
    ) -> Answer {
        if let Some(token) = &token {
            for lease in &leases {
                match timeout_at(deadline, self.client.revoke_lease(token, lease)).await {
                    Ok(Ok(())) => info!("secret lease revoked"),
                    Ok(Err(e)) => {
                        warn!(error = %e, "secret lease not revoked (revoke-self revokes it with the token)")
                    }
                    Err(_) => warn!("secret lease revocation timed out"),
                }
            }
        }
        let templates = self.book().templates.templates().to_vec();
        // Only files: the environment values are the program's.
        let (specs, templates) = (
            &self.secrets[..self.outputs.env_specs],
            &templates[..self.outputs.env_templates],
        );
        self.writer.remove_all(specs, templates);
        if let Some(token) = token {
            match timeout_at(deadline, self.client.revoke_self(&token)).await {
                Ok(Ok(())) => info!("token revoked"),
                Ok(Err(e)) => warn!(error = %e, "token revocation failed"),
                Err(_) => warn!("token revocation timed out"),
            }
        }
        if let Some(f) = &self.file {
            match f.remove() {
                Ok(()) => {
                    self.status.token_removed();
                    info!(path = %f.path().display(), "token file removed");
                }
                Err(e) => warn!(error = %e, "cannot remove the token file"),
            }
        }
        Answer::Revoked
    }

    /// Makes the file hold `token`: to the file (unless it already does), or to stdout. The file
    /// is read and written on a blocking thread: a slow or hung volume never stalls the runtime
    /// that drives renewals, signals and the health server.
    pub(super) async fn write(&self, token: Option<Secret>, restoring: bool) -> Event {
        let Some(token) = token else {
            return Event::WriteFailed("no token to write".into());
        };
        let result = match (&self.file, &self.cfg.token_sink) {
            (Some(f), _) => f.put(token, restoring).await,
            // exec without a token file: the token lives in memory only.
            (None, TokenSink::Memory) => Ok(()),
            (None, _) => {
                let mut out = std::io::stdout().lock();
                writeln!(out, "{}", token.expose())
                    .and_then(|_| out.flush())
                    .map_err(|e| format!("cannot write the token to stdout: {e}"))
            }
        };
        match result {
            Ok(()) => {
                self.status.file_restored();
                Event::Written
            }
            Err(e) => {
                self.status.file_failed(&e);
                error!(error = %e, "token file not written");
                Event::WriteFailed(e)
            }
        }
    }
}

/// `attempt` (a renewal), abandoned at `deadline`, the expiry of the renewed `what`: waiting
/// longer is pointless.
pub(super) async fn until<T>(
    deadline: Option<Instant>,
    op: &str,
    what: &str,
    attempt: impl std::future::Future<Output = Result<T, VaultError>>,
) -> Result<T, VaultError> {
    match deadline {
        Some(d) => timeout_at(d, attempt).await.unwrap_or_else(|_| {
            Err(VaultError::Transport {
                op: op.into(),
                message: format!("no answer before the {what} expired"),
            })
        }),
        None => attempt.await,
    }
}

/// What `lookup-self`'s `data` says of the token's life, as a grant: `ttl` (remaining seconds,
/// counted by Vault) and `renewable`; None without a `ttl`.
fn life_of(data: &Value) -> Option<Grant> {
    let ttl = data.get("ttl").and_then(Value::as_u64)?;
    Some(Grant {
        ttl: std::time::Duration::from_secs(ttl),
        renewable: data
            .get("renewable")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        capped_warning: false,
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;

    use super::*;

    #[test]
    fn lookup_self_data_reads_as_the_remaining_life() {
        let g = life_of(&json!({"ttl": 17, "renewable": true, "creation_ttl": 20})).unwrap();
        assert_eq!((g.ttl, g.renewable), (Duration::from_secs(17), true));
        let batch = life_of(&json!({"ttl": 5, "type": "batch"})).unwrap();
        assert!(!batch.renewable);
        assert_eq!(life_of(&json!({"ttl": "17"})), None);
        assert_eq!(life_of(&json!({"ttl": -1})), None);
        assert_eq!(life_of(&Value::Null), None);
    }
}
