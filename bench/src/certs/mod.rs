//! Section 7: certificates from Vault's PKI (issue 23). How many certificates each way of
//! keeping one asks Vault for in a pod-day, through restarts and re-logins, measured against
//! the real OpenBao 2.7.2 `pki` engine with the real `bao agent` beside vault-login; and how a
//! fleet of pods that got their certificates in the same second spreads its renewals, replayed
//! with each program's renewal rule.
//!
//! # Layout
//! - `issues`: the compressed pod-day against the real server (the stage of section 6).
//! - `spread`: the fleet's renewal instants, from vault-login's own schedule function and the
//!   agent's `pkiCert` rule.
//!
//! Figures are reported, never asserted. The real part needs minutes and the 182 MB `bao`
//! binary, so the section runs only when named (`--only certs`), never in the default set.

mod issues;
mod spread;

use std::path::Path;

use crate::report::Report;

pub use issues::Day;

/// The report's section name.
pub const SECTION: &str = "7 certificates";

/// Runs both parts: the fleet's spread (instant), then the compressed day (minutes).
pub fn run(report: &mut Report, vault_login: &Path, day: &Day) -> Result<(), String> {
    spread::run(report, spread::PODS);
    issues::run(report, vault_login, day)
}
