//! What a failed Vault request means for the loop: one pure classification of Vault's answers
//! ([`classify`]) that every decision relies on, and the failure the machine is fed.

use std::time::Duration;

/// How a failed request should be treated: one pure classification ([`classify`]) of what
/// Vault answered, so all decisions agree on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureKind {
    /// No answer, or an answer that says "later": connection errors, timeouts, 412, 473, 5xx
    /// other than the max-TTL refusal and 503. Retry the same request.
    Transient,
    /// Vault answered that it is overloaded, sealed or not the active node (429, 503): retry
    /// the same request, but on the long backoff even without a valid token (a fleet retrying
    /// fast would keep it down), and no sooner than its `Retry-After`.
    Busy,
    /// The token or login was refused (403): log in again; for a login, retry with backoff.
    Denied,
    /// The token cannot be renewed (400 `lease is not renewable`, batch tokens): replace it by
    /// a login while a third of its life is left.
    NotRenewable,
    /// The token is at its end (500 `past the max TTL`, 400 `lease expired`): log in now.
    Expired,
    /// The service-account JWT file does not exist yet: wait for it to appear.
    JwtMissing,
    /// Anything else (a bad JWT, a 400, an unreadable answer): retry with backoff while an
    /// operator fixes it.
    Other,
}

impl FailureKind {
    /// Whether the same request is simply retried later (no answer, or Vault said "later").
    pub fn is_transient(self) -> bool {
        match self {
            FailureKind::Transient | FailureKind::Busy => true,
            FailureKind::Denied
            | FailureKind::NotRenewable
            | FailureKind::Expired
            | FailureKind::JwtMissing
            | FailureKind::Other => false,
        }
    }
}

/// A failed login or renewal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// How to treat it.
    pub kind: FailureKind,
    /// The wait Vault asked for with `Retry-After`.
    pub retry_after: Option<Duration>,
    /// One line saying what went wrong (never a secret): for logs and the final error.
    pub message: String,
}

impl Failure {
    /// A failure of `kind` saying `message`.
    pub fn new(kind: FailureKind, message: impl Into<String>) -> Failure {
        Failure {
            kind,
            retry_after: None,
            message: message.into(),
        }
    }
}

/// Classifies what Vault answered. Messages are matched as substrings so that Vault ≥ 1.17's
/// multi-error texts (`2 errors occurred:\n\t* permission denied\n\t* invalid token`) and the
/// wrapped 500s (`1 error occurred:\n\t* past the max TTL, cannot renew`) classify like the old
/// single strings.
pub fn classify(status: Option<u16>, errors: &[String]) -> FailureKind {
    let says = |needle: &str| errors.iter().any(|e| e.contains(needle));
    let Some(status) = status else {
        return FailureKind::Transient;
    };
    // A lease that is gone: OpenBao says `lease not found`, Vault `lease not found or lease is
    // not renewable`; both mean the thing is at its end.
    if says("past the max TTL") || says("lease expired") || says("lease not found") {
        return FailureKind::Expired;
    }
    if says("not renewable") || says("batch tokens cannot be renewed") {
        return FailureKind::NotRenewable;
    }
    match status {
        403 => FailureKind::Denied,
        429 | 503 => FailureKind::Busy,
        412 | 473 | 500..=599 => FailureKind::Transient,
        _ => FailureKind::Other,
    }
}

/// Whether one of Vault's warnings on a renewal says the TTL was capped at the max TTL
/// (`TTL of "1h" exceeded the effective max_ttl of "9m30s"; TTL value is capped accordingly`).
pub fn warns_of_cap(warnings: &[String]) -> bool {
    warnings
        .iter()
        .any(|w| w.contains("capped") || w.contains("max_ttl") || w.contains("max TTL"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification_table() {
        let e = |s: &str| vec![s.to_string()];
        let multi = e("2 errors occurred:\n\t* permission denied\n\t* invalid token\n\n");
        let max = e("1 error occurred:\n\t* past the max TTL, cannot renew\n\n");
        let cases: Vec<(Option<u16>, Vec<String>, FailureKind)> = vec![
            (None, vec![], FailureKind::Transient),
            (Some(403), e("permission denied"), FailureKind::Denied),
            (Some(403), multi, FailureKind::Denied),
            (Some(403), vec![], FailureKind::Denied),
            (
                Some(400),
                e("lease is not renewable"),
                FailureKind::NotRenewable,
            ),
            (
                Some(400),
                e("batch tokens cannot be renewed"),
                FailureKind::NotRenewable,
            ),
            (Some(400), e("lease expired"), FailureKind::Expired),
            (Some(400), e("lease not found"), FailureKind::Expired),
            (
                Some(400),
                e("lease not found or lease is not renewable"),
                FailureKind::Expired,
            ),
            (
                Some(500),
                e("past the max TTL, cannot renew"),
                FailureKind::Expired,
            ),
            (Some(500), max, FailureKind::Expired),
            (Some(500), e("internal error"), FailureKind::Transient),
            (Some(503), e("Vault is sealed"), FailureKind::Busy),
            (Some(503), e("node is not active"), FailureKind::Busy),
            (Some(502), vec![], FailureKind::Transient),
            (Some(429), e("rate limit quota exceeded"), FailureKind::Busy),
            (Some(412), vec![], FailureKind::Transient),
            (Some(473), vec![], FailureKind::Transient),
            (Some(400), e("missing role"), FailureKind::Other),
            (Some(404), vec![], FailureKind::Other),
            (Some(405), vec![], FailureKind::Other),
        ];
        for (status, errors, want) in cases {
            assert_eq!(classify(status, &errors), want, "{status:?} {errors:?}");
        }
    }

    #[test]
    fn cap_warnings() {
        let warn = vec![
            "TTL of \"1h0m0s\" exceeded the effective max_ttl of \"9m30s\"; TTL value is capped accordingly"
                .to_string(),
        ];
        assert!(warns_of_cap(&warn));
        assert!(!warns_of_cap(&[]));
        assert!(!warns_of_cap(&["endpoint is deprecated".to_string()]));
    }
}
