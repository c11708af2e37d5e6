//! vault-login: log in to HashiCorp Vault (or OpenBao) with a Kubernetes pod's service-account
//! JWT through the `kubernetes` auth method, write the token to a file, and keep it valid.
//!
//! # Layout
//! Each top-level module is one concept; a folder when the concept has parts.
//! - [`config`]: flags and environment variables (`VAULT_*`, `BAO_*`, `VAULT_LOGIN_*`) into a
//!   [`config::Config`] of each module's settings; the only module that knows them all. Its parts:
//!   `settings` (every setting declared once: flag, variables, default, parser, help), `cli`
//!   (the flags and `--help` made from the declarations; clap's errors on one line) and
//!   `annotations` (the pod's vault-k8s annotations, from the downward-API file, as a layer below
//!   flags and environment).
//! - [`machine`]: the loop's decisions as one deterministic state machine (quinn-proto style): fed
//!   `now` and events (results, file changes, signals, timers), it answers with actions (log in,
//!   renew, write, read a secret, renew a lease, run hooks, revoke, exit) and when to wake.
//!   Randomness comes from a seed. The agent, the property tests and the bench's simulated days all
//!   drive this one machine. Its parts: `events` (what the machine and its driver say to each
//!   other), `failure` (the one classification of Vault's answers), `schedule` (pure functions of
//!   durations: when to renew, when to log in again), `backoff` (exponential backoff with full
//!   jitter, and the random sources), `secret_lane` (when to read each secret and renew its lease), `cert_lane` (when to issue
//!   each certificate: once per lifetime, renewed at 2/3 with jitter), `lane` (the timing both
//!   lanes share: each entry's due time, one request in flight), `timer` (the named timers;
//!   `poll_timeout` is the earliest), `said` (a failure said once, then counted).
//! - [`vault`]: talking to Vault: the HTTP client (login, renew-self, lookup-self, revoke-self,
//!   secret reads, leases) and its parts: `response` (Vault's JSON answers and the client's
//!   errors), `tls` (the rustls client configuration), `server_name` (`VAULT_TLS_SERVER_NAME` as
//!   SNI), `proxy` (HTTP proxies to Vault, as the vault CLI reads them), `login` (one login attempt
//!   and the classification of its failures), `hints` (what a refusal tells the operator).
//! - [`secrets`]: what Vault gives the pod as files. The `VAULT_LOGIN_SECRET_<NAME>` specs,
//!   rendering (JSON, one field, dotenv), the sources (one per distinct read, shared by secret
//!   files, templates and `exec`'s values), when to rewrite, read errors, and the secret-file
//!   writer. Its parts: `templates` (the `VAULT_LOGIN_TEMPLATE_<NAME>` specs and the book that
//!   keeps the reads' answers and renders each template once everything it reads is answered),
//!   `template` (Go `text/template`, Vault Agent's template language, over JSON data with a
//!   function table) and `certs` (certificates from Vault's PKI: the `VAULT_LOGIN_CERT_<NAME>`
//!   specs, the issue answer as `tls.crt`/`tls.key`/`ca.crt`, whether a published one can be
//!   kept, `pki_cert`: templates' `pkiCert` and the certificate a destination already holds, and
//!   `x509`: PEM, a minimal DER reader, the key match).
//! - [`files`]: files other containers can touch: `safe_fs` (non-blocking, bounded reads),
//!   `token_file` (atomic, exact-mode writes of the token and secret files), `atomic_dir` (a
//!   certificate's directory published in generations through a `..data` symlink), `watch` (directory
//!   watches for the JWT and token files, degrading to timers).
//! - `hooks` (crate-private): after a new token: the token info file, the on-change `command` (split like a
//!   shell would, without a shell), the app's signal.
//! - [`health`]: the `/healthz`, `/readyz` and `/metrics` HTTP server on `VAULT_LOGIN_LISTEN`, and
//!   `status`, the token's state it serves.
//! - [`agent`]: the thin async driver: performs the machine's actions with the real client, files,
//!   hooks and watches, and feeds results, file changes, signals and timers back. Its parts: `adopt`
//!   (on a restart in the same pod, the token already in the file, kept if `lookup-self` shows it is
//!   this role's and this service account's) and `signals` (SIGTERM/SIGINT/SIGHUP into controls).
//! - [`exec`]: `vault-login exec -- <program>`: the program as a child with its secrets in its
//!   environment. Its parts: `env` (the `VAULT_LOGIN_ENV_<VAR>` values, rendered from the shared
//!   reads into memory), `supervisor` (start, signals, restart on a changed environment, exit
//!   code), `reaper` (orphans, as PID 1) and `install` (`vault-login install <dir>`).
//! - `jwt` (crate-private): reads the service-account JWT afresh for each login and decodes its claims for hints.
//! - [`sensitive`]: the [`sensitive::Secret`] wrapper that keeps tokens and JWTs out of logs.
//! - `duration` (crate-private): durations as settings are written (`1h30m`) and as logs print them.
//! - [`telemetry`]: log output (text or JSON on stderr).
//! - [`error`]: the crate's error type and exit codes.
#![forbid(unsafe_code)]
// Issue 20: functions, not files, are capped (100 lines, clippy.toml); tests may be longer.
#![cfg_attr(not(test), warn(clippy::too_many_lines))]

pub mod agent;
pub mod config;
pub(crate) mod duration;
pub mod error;
pub mod exec;
pub mod files;
pub mod health;
pub(crate) mod hooks;
pub(crate) mod jwt;
pub mod machine;
pub mod secrets;
pub mod sensitive;
pub mod telemetry;
pub mod vault;

pub use error::{Error, Result};
