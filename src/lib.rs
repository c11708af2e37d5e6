//! vault-login: log in to HashiCorp Vault (or OpenBao) with a Kubernetes pod's service-account
//! JWT through the `kubernetes` auth method, write the token to a file, and keep it valid.
//!
//! # Layout
//! - [`config`]: flags and environment variables (`VAULT_*`, `BAO_*`, `VAULT_LOGIN_*`) into a [`config::Config`]
//!   of each module's settings; the only module that knows them all.
//! - [`cli`]: the flags and `--help` made from the declarations; clap's errors on one line.
//! - [`settings`]: every setting declared once: flag, variables, default, parser, help.
//! - [`command`]: the on-change command line split like a shell would, without a shell.
//! - [`secret`]: the [`secret::Secret`] wrapper that keeps tokens and JWTs out of logs.
//! - [`jwt`]: reads the service-account JWT afresh for each login and decodes its claims for hints.
//! - [`tls`]: the rustls client configuration (CA file/dir, mTLS, server name, skip-verify).
//! - [`server_name`]: `VAULT_TLS_SERVER_NAME` as SNI: requests addressed to it, dialled to `VAULT_ADDR`.
//! - [`proxy`]: HTTP proxies to Vault (`VAULT_PROXY_ADDR`, `HTTPS_PROXY`, `NO_PROXY`), as the vault CLI reads them.
//! - [`response`]: Vault's JSON answers (auth, secrets, leases) and the client's errors.
//! - [`vault`]: the Vault HTTP client (login, renew-self, lookup-self, revoke-self) and its errors.
//! - [`safe_fs`]: non-blocking, bounded reads of files other containers can write (pid, token, JWT).
//! - [`hints`]: what a login tells the operator: hints for Vault's refusals, the verify fields of a success.
//! - [`token_file`]: atomic, exact-mode writes of the token file (and of secret files).
//! - [`secrets`]: secrets to files: the `VAULT_LOGIN_SECRET_<NAME>` specs, rendering (JSON, one
//!   field, dotenv), when to rewrite, read errors, and the secret-file writer.
//! - [`backoff`]: exponential backoff with full jitter, and the random sources for jitter.
//! - [`schedule`]: pure functions of durations: when to renew, when to log in again, how long to
//!   wait before expiry; a credential's [`schedule::Lifetime`].
//! - [`failure`]: what a failed Vault request means for the loop: the one classification of
//!   Vault's answers.
//! - [`events`]: what the machine and its driver say to each other: events in, actions out.
//! - [`secret_lane`]: the machine's secrets' lane: when to read each secret and renew its lease.
//! - [`machine`]: the loop's decisions as one deterministic state machine (quinn-proto style):
//!   fed `now` and events (results, file changes, signals, timers), it answers with actions (log
//!   in, renew, write, read a secret, renew a lease, run hooks, revoke, exit) and when to wake.
//!   Randomness comes from a seed. The agent, the property tests and the bench's simulated days
//!   all drive this one machine.
//! - [`login`]: one login attempt (JWT read afresh, posted, refusals explained) and the
//!   classification of its failures for the machine.
//! - [`duration`]: durations as settings are written (`1h30m`) and as logs print them.
//! - [`watch`]: directory watches for the JWT and token files, degrading to timers.
//! - [`status`]: the token's state shared with health and metrics.
//! - [`health`]: the `/healthz`, `/readyz` and `/metrics` HTTP server on `VAULT_LOGIN_LISTEN`.
//! - [`hooks`]: after a new token: the token info file, the on-change command, the app's signal.
//! - [`signals`]: SIGTERM/SIGINT/SIGHUP into the loop's controls.
//! - [`adopt`]: on a restart in the same pod, the token already in the file, kept if
//!   `lookup-self` shows it is this role's and this service account's.
//! - [`agent`]: the thin async driver: performs the machine's actions with the real client, files,
//!   hooks and watches, and feeds results, file changes, signals and timers back; no decisions.
//! - [`telemetry`]: log output (text or JSON on stderr).
//! - [`template`]: Go `text/template` (Vault Agent's template language) over JSON data, with a function table.
//! - [`error`]: the crate's error type and exit codes.
#![forbid(unsafe_code)]

pub mod adopt;
pub mod agent;
pub mod backoff;
pub mod cli;
pub mod command;
pub mod config;
pub mod duration;
pub mod error;
pub mod events;
pub mod failure;
pub mod health;
pub mod hints;
pub mod hooks;
pub mod jwt;
pub mod login;
pub mod machine;
pub mod proxy;
pub mod response;
pub mod safe_fs;
pub mod schedule;
pub mod secret;
pub mod secret_lane;
pub mod secrets;
pub mod server_name;
pub mod settings;
pub mod signals;
pub mod status;
pub mod telemetry;
pub mod template;
pub mod tls;
pub mod token_file;
pub mod vault;
pub mod watch;

pub use error::{Error, Result};
