//! Leases of dynamic secrets: issue, renew (`sys/leases/renew`), revoke, expiry.
//!
//! # What is emulated (vault/expiration.go, sdk/framework/lease.go)
//! - A lease id is the request path plus `/` and 24 random base62 characters
//!   (`database/creds/app/AbC…`), plus `.<namespace id>` outside the root namespace; each
//!   namespace keeps its own store (see `secrets.rs`).
//! - Issue: TTL = the role's `default_ttl` (0: the mount default, 768 h), capped at its max TTL
//!   (the role's `max_ttl`, else the mount's 768 h) — `CalculateTTL` with no increment.
//! - Renew: `CalculateTTL(increment, default_ttl, max_ttl, issue time)`, exactly as for tokens
//!   (see [`crate::tokens::calculate_ttl`]): the new expiry is now + TTL, so a small increment
//!   shortens the lease; near the max TTL the grant is capped and the answer carries the warning
//!   `TTL of "…" exceeded the effective max_ttl of "…"; TTL value is capped accordingly`; from the
//!   max-TTL second on, renewal fails with 400 `past the max TTL, cannot renew`.
//! - Vault's expiration manager revokes a lease when it expires and when the token that created
//!   it is revoked or expires, and deletes its entry. Renewing such a lease (or an unknown id)
//!   answers 400 `lease not found` (OpenBao; Vault: `lease not found or lease is not
//!   renewable`); a non-renewable lease answers 400 `lease is not renewable`. The emulator
//!   computes both lazily from the request's `now`.
//! - Revoking an unknown lease succeeds (204), as `ExpirationManager.Revoke` returns nil when
//!   there is no entry.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use serde_json::{Map, Value};

use crate::tokens::{calculate_ttl, from_unix, unix_secs, TokenStore, TtlInput, TtlOutcome};

/// One lease on a dynamic secret.
#[derive(Clone, Debug)]
pub(crate) struct Lease {
    pub id: String,
    /// The token that read the secret; the lease dies with it.
    pub token: String,
    pub renewable: bool,
    /// The role's `default_ttl` and `max_ttl`, in seconds (0: the mount's).
    pub default_ttl: i64,
    pub max_ttl: i64,
    pub issue_time: SystemTime,
    pub expire_time: SystemTime,
    /// Unix second from which renewals are refused.
    pub max_valid: Option<i64>,
    pub renewals: u32,
    pub data: Map<String, Value>,
}

/// Why a renewal was refused (each a 400).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Unknown, revoked or expired: the flavour names it.
    Gone,
    /// `lease is not renewable`.
    NotRenewable,
    /// `CalculateTTL`'s refusal (`past the max TTL, cannot renew`).
    Ttl(&'static str),
}

/// Leases by id.
#[derive(Default)]
pub(crate) struct LeaseStore {
    leases: HashMap<String, Lease>,
    issued: usize,
}

impl LeaseStore {
    /// Issues a lease at `now` for a secret read with `token`; returns the lease and its TTL.
    #[allow(clippy::too_many_arguments)]
    pub fn issue(
        &mut self,
        id: String,
        token: &str,
        renewable: bool,
        default_ttl: i64,
        max_ttl: i64,
        data: Map<String, Value>,
        now: SystemTime,
    ) -> Result<(Lease, i64), &'static str> {
        let now_s = unix_secs(now);
        let outcome = calculate_ttl(input(0, default_ttl, max_ttl), now_s, now_s)?;
        let lease = Lease {
            id: id.clone(),
            token: token.to_string(),
            renewable,
            default_ttl,
            max_ttl,
            issue_time: now,
            expire_time: now + secs(outcome.ttl),
            max_valid: outcome.max_valid,
            renewals: 0,
            data,
        };
        self.issued += 1;
        self.leases.insert(id, lease.clone());
        Ok((lease, outcome.ttl))
    }

    /// The lease if Vault would still know it at `now`: not expired, its token still valid.
    pub fn live(&self, id: &str, now: SystemTime, tokens: &TokenStore) -> Option<&Lease> {
        self.leases
            .get(id)
            .filter(|l| now < l.expire_time && tokens.info(&l.token, now).is_some())
    }

    /// Renews a lease at `now` by `increment` seconds (0: the role's default TTL).
    pub fn renew(
        &mut self,
        id: &str,
        increment: i64,
        now: SystemTime,
        tokens: &TokenStore,
    ) -> Result<(Lease, TtlOutcome), Refusal> {
        let Some(lease) = self.live(id, now, tokens).cloned() else {
            self.leases.remove(id);
            return Err(Refusal::Gone);
        };
        if !lease.renewable {
            return Err(Refusal::NotRenewable);
        }
        let outcome = calculate_ttl(
            input(increment, lease.default_ttl, lease.max_ttl),
            unix_secs(now),
            unix_secs(lease.issue_time),
        )
        .map_err(Refusal::Ttl)?;
        let entry = self.leases.get_mut(id).ok_or(Refusal::Gone)?;
        entry.expire_time = now + secs(outcome.ttl);
        entry.max_valid = outcome.max_valid;
        entry.renewals += 1;
        Ok((entry.clone(), outcome))
    }

    /// Takes over `other`'s leases and its count of issued leases.
    pub fn absorb(&mut self, other: LeaseStore) {
        self.leases.extend(other.leases);
        self.issued += other.issued;
    }

    /// Revokes a lease; unknown ids are fine.
    pub fn revoke(&mut self, id: &str) {
        self.leases.remove(id);
    }

    /// Every lease still live at `now`.
    pub fn all_live(&self, now: SystemTime, tokens: &TokenStore) -> Vec<Lease> {
        let mut out: Vec<Lease> = self
            .leases
            .keys()
            .filter_map(|id| self.live(id, now, tokens).cloned())
            .collect();
        out.sort_by_key(|l| l.issue_time);
        out
    }

    /// How many leases were ever issued.
    pub fn issued(&self) -> usize {
        self.issued
    }
}

fn input(increment: i64, default_ttl: i64, max_ttl: i64) -> TtlInput {
    TtlInput {
        increment,
        backend_ttl: default_ttl,
        period: 0,
        backend_max_ttl: max_ttl,
        explicit_max_ttl: 0,
    }
}

fn secs(s: i64) -> Duration {
    Duration::from_secs(s.max(0).unsigned_abs())
}

/// The max-TTL deadline as a time, when bounded.
pub(crate) fn max_expire_time(lease: &Lease) -> Option<SystemTime> {
    lease.max_valid.map(from_unix)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokens::{ServiceAccount, TokenEntry};
    use crate::TokenType;
    use std::time::UNIX_EPOCH;

    /// A store holding one token valid for a day from `base`, and the clock `base + millis`.
    fn fixture() -> (TokenStore, impl Fn(u64) -> SystemTime) {
        let base = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let mut tokens = TokenStore::default();
        tokens.insert(TokenEntry {
            id: "s.t".into(),
            accessor: "a".into(),
            token_type: TokenType::Service,
            renewable: true,
            policies: vec!["default".into()],
            vault_ns: String::new(),
            mount: "kubernetes".into(),
            role: "app".into(),
            sa: ServiceAccount::default(),
            entity_id: String::new(),
            creation_time: base,
            creation_ttl: 86400,
            explicit_max_ttl: 0,
            period: 0,
            max_valid: None,
            expire_time: base + Duration::from_secs(86400),
            last_renewal: None,
            renewals: 0,
        });
        (tokens, move |ms| base + Duration::from_millis(ms))
    }

    #[test]
    fn renewals_are_capped_at_max_ttl_with_vaults_warning_then_refused() {
        let (tokens, at) = fixture();
        let mut leases = LeaseStore::default();
        // Issued at x.600 with TTL 2 s, max TTL 5 s: the deadline is the issue second + 5 s.
        let (lease, ttl) = leases
            .issue(
                "db/creds/app/x".into(),
                "s.t",
                true,
                2,
                5,
                Map::new(),
                at(600),
            )
            .unwrap();
        assert_eq!(ttl, 2);
        assert_eq!(lease.expire_time, at(2_600));
        let (l, o) = leases
            .renew("db/creds/app/x", 0, at(2_000), &tokens)
            .unwrap();
        assert_eq!((o.ttl, o.warnings.len()), (2, 0));
        assert_eq!(l.expire_time, at(4_000));
        // now 3.5 s → 3 s: exactly 2 s left, not capped.
        let (l, o) = leases
            .renew("db/creds/app/x", 0, at(3_500), &tokens)
            .unwrap();
        assert_eq!((o.ttl, o.warnings.len()), (2, 0));
        assert_eq!(l.expire_time, at(5_500));
        // now 4.6 s → 4 s: 1 s left before the deadline: capped, with the warning.
        let (l, o) = leases
            .renew("db/creds/app/x", 3600, at(4_600), &tokens)
            .unwrap();
        assert_eq!(o.ttl, 1);
        assert_eq!(
            o.warnings,
            vec![
                "TTL of \"1h\" exceeded the effective max_ttl of \"1s\"; TTL value is capped accordingly"
                    .to_string()
            ]
        );
        assert_eq!(l.expire_time, at(5_600));
        assert_eq!(l.renewals, 3);
        // now 5.2 s → 5 s: the lease still lives, but no time is left to grant.
        assert!(leases.live("db/creds/app/x", at(5_200), &tokens).is_some());
        assert_eq!(
            leases
                .renew("db/creds/app/x", 0, at(5_200), &tokens)
                .unwrap_err(),
            Refusal::Ttl("past the max TTL, cannot renew")
        );
        // Expired: revoked by the expiration manager, so unknown.
        assert!(leases.live("db/creds/app/x", at(5_600), &tokens).is_none());
        assert_eq!(
            leases
                .renew("db/creds/app/x", 0, at(5_600), &tokens)
                .unwrap_err(),
            Refusal::Gone
        );
    }

    #[test]
    fn a_small_increment_shortens_the_lease_and_a_non_renewable_lease_is_refused() {
        let (tokens, at) = fixture();
        let mut leases = LeaseStore::default();
        leases
            .issue("a".into(), "s.t", true, 3600, 0, Map::new(), at(0))
            .unwrap();
        let (l, o) = leases.renew("a", 10, at(1_000), &tokens).unwrap();
        assert_eq!(o.ttl, 10);
        assert_eq!(l.expire_time, at(11_000));
        leases
            .issue("b".into(), "s.t", false, 3600, 0, Map::new(), at(0))
            .unwrap();
        assert_eq!(
            leases.renew("b", 0, at(1_000), &tokens).unwrap_err(),
            Refusal::NotRenewable
        );
        // A lease dies with its token.
        let mut tokens = tokens;
        tokens.revoke("s.t");
        assert!(leases.all_live(at(1_000), &tokens).is_empty());
    }
}
