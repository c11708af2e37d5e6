//! An in-process emulator of the HashiCorp Vault HTTP API subset that `vault-login` uses: the
//! kubernetes auth method's login, the token endpoints `renew-self`, `lookup-self` and
//! `revoke-self`, secret reads, LISTs and writes on KV v2 and KV v1 and reads of a dynamic
//! engine behind ACL policies, the PKI engine's `issue/<role>` (real certificates from a root CA
//! made at [`Emulator::enable_pki`]), `sys/internal/ui/mounts/<path>` (the templates' KV v2
//! lookup), and `sys/leases/renew` / `sys/leases/revoke`, `sys/health` and `sys/seal-status`, with the
//! server's status codes, error bodies and TTL arithmetic (see the docs of `access.rs`,
//! `secrets.rs`, `leases.rs`, `policy.rs` and `health.rs` for the facts they follow), in Vault Enterprise / OpenBao
//! namespaces as well as the root one (`X-Vault-Namespace` and path prefixes; the `_in`
//! methods configure a namespace, see `secrets.rs` for the rules).
//!
//! # Flavours
//! It answers as one of two servers ([`Flavour`], chosen with [`Options::flavour`] or
//! [`Emulator::set_flavour`]):
//! - **OpenBao 2.7.2**, the default, checked answer by answer against the real `bao server -dev`
//!   by `tests/differential.rs`: a missing, unknown, expired or revoked token gets a bare 403
//!   `{"errors":["permission denied"]}` on every route; an ACL denial of a valid token, an
//!   unsupported operation on an authenticated route and the token store's 500s are wrapped in
//!   one `go-multierror` text (`"1 error occurred:\n\t* permission denied\n\n"`); backends'
//!   400s are bare (`lease not found`, `batch tokens cannot be renewed`); an unknown
//!   `X-Vault-Namespace` is 404 `namespace not found`; tokens are `s.` + 24 (service) and
//!   `b.` + ~430 (batch, in whole seconds), namespace ids 6 characters, entity ids
//!   `<uuid>.<nsid>` in a namespace; the token endpoints answer for a token of any namespace;
//!   answers carry no `mount_type`.
//! - **Vault >= 1.17**, unverified (no Vault binary runs here; the forms come from its docs and
//!   source): a bad token's 403 is `"2 errors occurred:\n\t* permission denied\n\t* invalid
//!   token\n\n"`, a missing one the wrapped `permission denied`; `hvs.`/`hvb.` tokens,
//!   5-character namespace ids, an unknown namespace is an empty one (403), a token of another
//!   namespace is denied on the token endpoints, `mount_type` is sent, an expired lease is
//!   `lease not found or lease is not renewable`.
//!
//! Both check the ACL before routing, so with the `default` policy an unknown path or a wrong
//! method is a 403; both serve `sys/health` and `sys/seal-status` (also while
//! [`Fault::Sealed`]), KV v2's `?version=N`, and refuse a negative renewal increment.
//!
//! `tests/differential.rs` compares, request by request (status, error strings, JSON shape),
//! every kind vault-login sends: login, the token endpoints, KV v2/v1 reads and versions,
//! database credentials and their leases (in the root and in a namespace, `.<nsid>` ids), the
//! PKI issue with its refusals, TTL cap, `generate_lease` and `LIST certs` (and the
//! certificates' subject and extensions with `openssl`), the templates' mount lookup, LIST and
//! `k=v` writes, health and seal status, namespaces, and the max-TTL edge. Known differences
//! left: the PKI engine makes EC keys only (OpenBao's default role key is RSA 2048; ring cannot
//! generate RSA keys), its CA and mount maximum are fixed at 87600 h, `format=der` and
//! `pem_bundle` are not emulated; the emulator has no root token.
//!
//! Tests drive it synchronously: [`Emulator::start`] binds `127.0.0.1:0` and serves from a
//! background std thread running its own tokio current-thread runtime, so the control API below
//! works the same from plain `#[test]`s and from inside `#[tokio::test]`s. Dropping the
//! [`Emulator`] stops the server.
//!
//! For tests in virtual time, [`Emulator::start_in_runtime`] serves from a task on the test's
//! own runtime instead, with a clock that follows tokio's (paused) clock.
//!
//! ```no_run
//! use vault_emulator::{Emulator, Role};
//! let vault = Emulator::start_default();
//! vault.put_role("kubernetes", "app", Role::default());
//! let jwt = vault.jwt("default", "app", &["vault"], 3600);
//! // point VAULT_ADDR at vault.url(), log in with `jwt`, then inspect:
//! assert_eq!(vault.token_count(), 0);
//! ```
//!
//! # Layout
//! - `lib.rs`: the public control API: [`Emulator`], [`Options`], [`Role`], [`Fault`],
//!   [`Request`], [`TokenInfo`].
//! - `state`: everything the server knows, behind one std `Mutex`: namespaces (each with its
//!   auth mounts → roles, and its secret engines, policies and leases) and how a request's
//!   header and path name one, the token store, the active fault, the request log and the one
//!   clock.
//! - `vault`: the router and the login and token endpoints, as plain functions from a recorded
//!   request to a reply; no I/O. `access`: the caller's token, the ACL check and the routes
//!   behind it (secret engines, lease endpoints, `sys/internal/ui/mounts`); `health`:
//!   `sys/health` and `sys/seal-status`.
//! - `reply`: the answer before it is put on the wire, Vault's error shapes and its envelope;
//!   `flavour`: every answer that differs between OpenBao and Vault; `paths`: how namespace and
//!   mount paths compare.
//! - `server`: the network edge: listener thread or task, TLS, fault injection, going down and
//!   re-binding the same port.
//! - `jwt`: RS256 signing of fake service-account JWTs with the test key, and the claim checks
//!   the kubernetes auth method makes.
//! - `tokens`: the token store and Vault's `CalculateTTL`, plus Go-style durations and RFC 3339
//!   timestamps.
//! - `tls`: a throwaway CA with server and client certificates.
//! - [`real`]: the real OpenBao (`bao server -dev`, fetched on first use) with a fake
//!   kube-apiserver, and a throwaway PostgreSQL, for the real-server tier of tests.
//! - `secrets`: KV v2, KV v1, a dynamic (database-style) engine and the PKI engine's mounts, and
//!   how each answers a read, a LIST and a write; `pki`: the PKI engine (CA, roles, issue);
//!   `leases`: dynamic-secret leases (issue, renew, revoke, expiry);
//!   `policy`: ACL policies and the capability check. Their module docs list the Vault facts
//!   they follow.
#![forbid(unsafe_code)]

mod access;
mod flavour;
mod health;
mod jwt;
mod leases;
mod paths;
mod pki;
mod policy;
pub mod real;
mod reply;
mod secrets;
mod server;
mod state;
mod tls;
mod tokens;
mod vault;

pub use flavour::Flavour;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use state::{lock, Clock, State};

/// How to start an [`Emulator`].
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Serve HTTPS with a CA generated at start (see [`Emulator::ca_pem`]).
    pub tls: bool,
    /// With `tls`: require a client certificate signed by the same CA (mTLS).
    pub require_client_cert: bool,
    /// Whose answers to give: OpenBao 2.7.2 (the default, verified) or Vault >= 1.17.
    pub flavour: Flavour,
}

/// A kubernetes auth role, as `vault write auth/<mount>/role/<name>` would configure it.
#[derive(Clone, Debug)]
pub struct Role {
    /// Allowed service-account names; `*`-prefix/suffix globs, a lone `"*"` allows all.
    pub bound_service_account_names: Vec<String>,
    /// Allowed service-account namespaces; same glob rules.
    pub bound_service_account_namespaces: Vec<String>,
    /// When set, the JWT's `aud` list must contain it.
    pub audience: Option<String>,
    /// Token TTL; zero means the mount default (768 h).
    pub token_ttl: Duration,
    /// Token max TTL; zero means the mount maximum (768 h). OpenBao refuses a role whose
    /// `token_ttl` exceeds it, and so does [`Emulator::put_role`] (it panics).
    pub token_max_ttl: Duration,
    /// Makes tokens periodic: every renewal sets the TTL to the period, with no max TTL.
    pub token_period: Option<Duration>,
    /// A hard max TTL recorded on the token, which also caps periodic tokens.
    pub token_explicit_max_ttl: Option<Duration>,
    /// Service (renewable, has an accessor) or batch tokens.
    pub token_type: TokenType,
    /// Policies attached to issued tokens.
    pub token_policies: Vec<String>,
    /// `false` issues service tokens that refuse renewal (`lease is not renewable`).
    pub renewable: bool,
}

impl Default for Role {
    fn default() -> Self {
        Role {
            bound_service_account_names: vec!["*".into()],
            bound_service_account_namespaces: vec!["*".into()],
            audience: None,
            token_ttl: Duration::from_secs(3600),
            token_max_ttl: Duration::ZERO,
            token_period: None,
            token_explicit_max_ttl: None,
            token_type: TokenType::Service,
            token_policies: vec!["default".into()],
            renewable: true,
        }
    }
}

/// A dynamic-secret role, as `vault write database/roles/<name>` configures one.
#[derive(Clone, Debug)]
pub struct DynamicRole {
    /// The lease's TTL at issue and on renewal without an increment; zero means the mount
    /// default (768 h).
    pub default_ttl: Duration,
    /// The lease's max TTL; zero means the mount maximum (768 h).
    pub max_ttl: Duration,
    /// `false` issues leases that refuse renewal (`lease is not renewable`).
    pub renewable: bool,
}

impl Default for DynamicRole {
    fn default() -> Self {
        DynamicRole {
            default_ttl: Duration::from_secs(3600),
            max_ttl: Duration::from_secs(24 * 3600),
            renewable: true,
        }
    }
}

/// A PKI role, as `bao write <mount>/roles/<name>` configures one; the defaults are
/// OpenBao's, except the key type (see [`PkiKeyType`]).
#[derive(Clone, Debug)]
pub struct PkiRole {
    /// Domains whose names the role may certify (with `allow_subdomains` /
    /// `allow_bare_domains`).
    pub allowed_domains: Vec<String>,
    /// Names below an allowed domain (`a.shop.svc`, `*.shop.svc` for `shop.svc`).
    pub allow_subdomains: bool,
    /// An allowed domain itself.
    pub allow_bare_domains: bool,
    /// `localhost` and `localdomain` (default true).
    pub allow_localhost: bool,
    /// Any name at all.
    pub allow_any_name: bool,
    /// IP SANs (`ip_sans`; default true).
    pub allow_ip_sans: bool,
    /// The TTL when the request names none; zero means the mount default (768 h).
    pub ttl: Duration,
    /// The longest TTL; zero means the mount maximum (87600 h here). Longer requests are
    /// capped with a warning, not refused.
    pub max_ttl: Duration,
    /// The key made for each certificate.
    pub key_type: PkiKeyType,
    /// Each certificate comes with a lease (not renewable) that ends at its NotAfter.
    pub generate_lease: bool,
}

impl Default for PkiRole {
    fn default() -> Self {
        PkiRole {
            allowed_domains: Vec::new(),
            allow_subdomains: false,
            allow_bare_domains: false,
            allow_localhost: true,
            allow_any_name: false,
            allow_ip_sans: true,
            ttl: Duration::ZERO,
            max_ttl: Duration::ZERO,
            key_type: PkiKeyType::EcP256,
            generate_lease: false,
        }
    }
}

/// The key a PKI role makes: ECDSA only, as the emulator's crypto (ring) cannot generate RSA
/// keys. OpenBao's default is `rsa` 2048; give the real role `key_type=ec` to compare.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PkiKeyType {
    /// `key_type=ec key_bits=256` (P-256).
    EcP256,
    /// `key_type=ec key_bits=384` (P-384).
    EcP384,
}

/// What the emulator knows about a live lease.
#[derive(Clone, Debug)]
pub struct LeaseInfo {
    /// The lease id, `<mount>/creds/<role>/<random>`, with `.<namespace id>` appended outside
    /// the root namespace.
    pub lease_id: String,
    /// The Vault namespace it was issued in (`""`: root).
    pub namespace: String,
    /// When it was issued.
    pub issue_time: SystemTime,
    /// Time left until it expires.
    pub ttl: Duration,
    /// When it expires.
    pub expire_time: SystemTime,
    /// From this instant on renewals are refused (`past the max TTL, cannot renew`).
    pub max_expire_time: Option<SystemTime>,
    /// Successful renewals so far.
    pub renewals: u32,
    /// The credentials handed out (test support: for leak checks).
    pub data: serde_json::Map<String, serde_json::Value>,
}

/// Vault token types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenType {
    /// `s.` (OpenBao) or `hvs.` (Vault) tokens: renewable (unless the role says otherwise),
    /// with an accessor.
    Service,
    /// `b.` (OpenBao) or `hvb.` (Vault) tokens: never renewable, no accessor, cannot be revoked
    /// by themselves.
    Batch,
}

/// A misbehaviour injected into every request (or connection) until cleared.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// 503 `{"errors":["Vault is sealed"]}`; `sys/health` answers 503 with `"sealed":true`
    /// (or `?sealedcode=`), `sys/seal-status` 200.
    Sealed,
    /// 500 `{"errors":["internal error"]}`.
    Internal,
    /// 429 `request path "<path>": rate limit quota exceeded`, with `Retry-After` when set.
    RateLimited {
        /// Seconds for the `Retry-After` header; `None` sends no header.
        retry_after: Option<u64>,
    },
    /// 412 `{"errors":["required index state not present"]}`.
    PreconditionFailed,
    /// An HTML error page (`text/html`) with this status, like a proxy in front of Vault.
    Html {
        /// The HTTP status, e.g. 502.
        status: u16,
    },
    /// 200 with an HTML page instead of JSON (captive portal, wrong upstream).
    HtmlOk,
    /// 200 `application/json` streaming 8 MiB: a JSON-looking prefix, then junk.
    Oversized,
    /// Accept connections and close them at once without reading.
    Refuse,
    /// Read the request, then drop the connection without answering.
    Reset,
    /// Wait this long, then answer normally.
    Slow(Duration),
    /// Any status with `{"errors":[...]}`.
    Status {
        /// The HTTP status.
        status: u16,
        /// The `errors` list, verbatim.
        errors: Vec<String>,
    },
    /// Stop listening (connection refused) until cleared; clearing re-binds the same port.
    Down,
    /// 307 with `Location: <to><request path and query>` and no body, like a standby node
    /// pointing at the active one (`to` is a base URL such as another emulator's `url()`).
    Redirect {
        /// Base URL of the node to send the client to.
        to: String,
    },
}

/// One request the emulator received, recorded before any fault is applied.
#[derive(Clone, Debug)]
pub struct Request {
    /// `GET`, `PUT`, `POST`, ...
    pub method: String,
    /// The path without the query string, e.g. `/v1/auth/kubernetes/login`.
    pub path: String,
    /// The query string without `?` (`""` when none), e.g. `version=2`.
    pub query: String,
    /// Headers in arrival order, names lowercase.
    pub headers: Vec<(String, String)>,
    /// The body (lossy UTF-8).
    pub body: String,
    /// When the request was read.
    pub at: SystemTime,
    /// The TLS server name (SNI) the client sent, on a TLS connection that sent one.
    pub sni: Option<String>,
}

impl Request {
    /// The first header with this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body parsed as JSON, `Value::Null` when it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// What the emulator knows about a live token.
#[derive(Clone, Debug)]
pub struct TokenInfo {
    /// The accessor (`""` for batch tokens).
    pub accessor: String,
    /// Token policies.
    pub policies: Vec<String>,
    /// Time left until `expire_time`.
    pub ttl: Duration,
    /// Whether renew-self may extend it.
    pub renewable: bool,
    /// Service or batch.
    pub token_type: TokenType,
    /// When the token stops working.
    pub expire_time: SystemTime,
    /// The max-TTL deadline: the login time truncated to the second plus the effective max TTL
    /// (Vault's `CalculateTTL` works in whole seconds). A renewal in the second before it is
    /// granted 1 s, so the token may outlive it by less than a second; from this instant on
    /// renewals are refused (`past the max TTL, cannot renew`) and the token keeps its expiry.
    /// `None` for periodic tokens without an explicit max TTL.
    pub max_expire_time: Option<SystemTime>,
    /// Successful renewals so far.
    pub renewals: u32,
    /// The role it logged in with.
    pub role: String,
    /// The Kubernetes namespace of the service account.
    pub namespace: String,
    /// The service-account name.
    pub service_account: String,
}

/// A running Vault emulator; dropping it (its last handle, see [`Emulator::clone_handle`])
/// stops the server.
pub struct Emulator {
    state: Arc<Mutex<State>>,
    server: Arc<server::Server>,
    tls: Option<Arc<tls::Material>>,
}

impl Emulator {
    /// Starts serving on `127.0.0.1:0`.
    ///
    /// # Panics
    /// When the port cannot be bound or the TLS material cannot be built (test support).
    pub fn start(opts: Options) -> Emulator {
        Self::start_at(opts, SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// Starts with [`Options::default`] (plain HTTP).
    pub fn start_default() -> Emulator {
        Self::start(Options::default())
    }

    /// Starts serving on `addr` (port 0 picks a free port).
    ///
    /// # Panics
    /// Like [`Emulator::start`].
    pub fn start_at(opts: Options, addr: SocketAddr) -> Emulator {
        let tls = Self::tls_material(&opts);
        let state = Arc::new(Mutex::new(State::new(Clock::System)));
        lock(&state).flavour = opts.flavour;
        let server_config = tls.as_ref().map(|m| m.server_config.clone());
        let server = Arc::new(server::Server::start(addr, state.clone(), server_config));
        Emulator { state, server, tls }
    }

    /// Answers as `flavour` from now on (tokens issued before keep their form).
    pub fn set_flavour(&self, flavour: Flavour) {
        lock(&self.state).flavour = flavour;
    }

    /// Whose answers the emulator gives.
    pub fn flavour(&self) -> Flavour {
        lock(&self.state).flavour
    }

    /// Starts serving on `127.0.0.1:0` from a task on the current tokio runtime (no thread of
    /// its own), with a clock that follows tokio's: every time the emulator uses (token TTLs
    /// and expiry, JWT checks, lookup-self, [`Request::at`], [`Emulator::jwt`]) is the wall
    /// clock at start plus the time tokio's clock has moved since.
    ///
    /// Meant for `#[tokio::test(start_paused = true)]`: the paused clock jumps to the next
    /// timer only when every task waits, and a request in flight to this server never looks
    /// idle (its bytes are ready at once over loopback), so the emulator's time is the test's
    /// virtual time and a TTL of hours passes in milliseconds. The control API works from
    /// inside the test (going [`Fault::Down`] and back is synchronous); the server stops when
    /// the last handle is dropped or the runtime shuts down.
    ///
    /// # Panics
    /// Outside a tokio runtime, or like [`Emulator::start`].
    pub fn start_in_runtime(opts: Options) -> Emulator {
        let tls = Self::tls_material(&opts);
        let state = Arc::new(Mutex::new(State::new(Clock::tokio())));
        lock(&state).flavour = opts.flavour;
        let server_config = tls.as_ref().map(|m| m.server_config.clone());
        let addr = SocketAddr::from(([127, 0, 0, 1], 0));
        let server = server::Server::start_in_runtime(addr, state.clone(), server_config);
        Emulator {
            state,
            server: Arc::new(server),
            tls,
        }
    }

    /// The emulator's current time: the system clock, or tokio's for
    /// [`Emulator::start_in_runtime`].
    pub fn now(&self) -> SystemTime {
        lock(&self.state).now()
    }

    fn tls_material(opts: &Options) -> Option<Arc<tls::Material>> {
        opts.tls.then(|| {
            tls::Material::generate(opts.require_client_cert)
                .map(Arc::new)
                .unwrap_or_else(|e| panic!("vault-emulator: cannot build TLS material: {e}"))
        })
    }

    /// Another handle to the same emulator (for a checker thread, say); the server keeps
    /// running until every handle is dropped.
    pub fn clone_handle(&self) -> Emulator {
        Emulator {
            state: self.state.clone(),
            server: self.server.clone(),
            tls: self.tls.clone(),
        }
    }

    /// The bound address (stays the same across [`Fault::Down`]).
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// `http://127.0.0.1:PORT`, or `https://localhost:PORT` with TLS.
    pub fn url(&self) -> String {
        match self.tls {
            Some(_) => format!("https://localhost:{}", self.addr().port()),
            None => format!("http://{}", self.addr()),
        }
    }

    /// The CA certificate (PEM) when serving TLS; the server certificate names `localhost`,
    /// `127.0.0.1` and `vault.test`.
    pub fn ca_pem(&self) -> Option<String> {
        self.tls.as_ref().map(|m| m.ca_pem.clone())
    }

    /// A client certificate and its PKCS#8 key (PEM), signed by the CA, for mTLS.
    pub fn client_cert_pem(&self) -> Option<(String, String)> {
        self.tls
            .as_ref()
            .map(|m| (m.client_cert_pem.clone(), m.client_key_pem.clone()))
    }

    /// A projected service-account JWT for `namespace`/`service_account`, signed with the test
    /// key, valid from now for `ttl_secs`.
    ///
    /// A negative `ttl_secs` gives an already expired JWT (issued an hour before it expired);
    /// like Vault the emulator allows 60 s of clock skew, so it rejects only `ttl_secs < -60`.
    pub fn jwt(
        &self,
        namespace: &str,
        service_account: &str,
        audience: &[&str],
        ttl_secs: i64,
    ) -> String {
        let now = tokens::unix_secs(lock(&self.state).now());
        let claims = jwt::sa_claims(namespace, service_account, audience, ttl_secs, now);
        jwt::sign(&claims)
    }

    /// Signs arbitrary claims with the test key (header `{"alg":"RS256","kid":"test"}`).
    pub fn sign_claims(&self, claims: &serde_json::Value) -> String {
        jwt::sign(claims)
    }

    /// Enables a kubernetes auth mount (may contain `/`) in the root namespace, or in the
    /// namespace given to [`Emulator::set_namespace_required`].
    pub fn enable_mount(&self, mount: &str) {
        let mut st = lock(&self.state);
        let ns = st.primary_ns.clone();
        st.enable_mount(&ns, mount);
    }

    /// Enables a kubernetes auth mount in Vault namespace `ns` (`""` is the root).
    pub fn enable_mount_in(&self, ns: &str, mount: &str) {
        lock(&self.state).enable_mount(ns, mount);
    }

    /// Creates or replaces a role (enabling the mount if needed), like [`Emulator::enable_mount`].
    pub fn put_role(&self, mount: &str, name: &str, role: Role) {
        let mut st = lock(&self.state);
        let ns = st.primary_ns.clone();
        st.put_role(&ns, mount, name, role);
    }

    /// Creates or replaces a role in Vault namespace `ns`.
    pub fn put_role_in(&self, ns: &str, mount: &str, name: &str, role: Role) {
        lock(&self.state).put_role(ns, mount, name, role);
    }

    /// Deletes a role; renewing its tokens then fails with 500, as in Vault.
    pub fn delete_role(&self, mount: &str, name: &str) {
        let mut st = lock(&self.state);
        let ns = st.primary_ns.clone();
        st.delete_role(&ns, mount, name);
    }

    /// Makes the TokenReview of `mount` (in the namespace [`Emulator::enable_mount`] uses) fail
    /// while `failing`, as when Vault's `token_reviewer_jwt` is wrong or expired, its service
    /// account lacks `system:auth-delegator`, `kubernetes_ca_cert` does not match, or
    /// `kubernetes_host` is unreachable from Vault. Vault checks the JWT's claims first, so a
    /// wrong audience or binding still gets its own message; a JWT that passes them gets the
    /// bare 403 `permission denied` the kubernetes auth method answers for any failed review.
    pub fn set_token_review_failing(&self, mount: &str, failing: bool) {
        let mut st = lock(&self.state);
        let ns = st.primary_ns.clone();
        st.set_review_failing(&ns, mount, failing);
    }

    /// With `Some(ns)`, moves the configuration made with the plain methods (auth mounts and
    /// roles, secret engines, policies and leases) into namespace `ns`, where the plain methods
    /// keep configuring from then on: requests must then name `ns` (`X-Vault-Namespace: ns`, or
    /// the path prefix `ns/`), and requests without it reach an empty root namespace (login: 403
    /// permission denied). `None` moves it back to the root.
    pub fn set_namespace_required(&self, ns: Option<&str>) {
        lock(&self.state).set_primary_namespace(ns.unwrap_or(""));
    }

    /// Applies `fault` to every request until [`Emulator::clear_fault`].
    pub fn set_fault(&self, fault: Fault) {
        self.install_fault(fault, None);
    }

    /// Applies `fault` to the next `n` requests (connections, for [`Fault::Refuse`]), then
    /// clears itself.
    ///
    /// # Panics
    /// With [`Fault::Down`], which only [`Emulator::clear_fault`] ends.
    pub fn set_fault_for(&self, fault: Fault, n: usize) {
        assert!(
            fault != Fault::Down,
            "vault-emulator: Fault::Down cannot be counted; use set_fault and clear_fault"
        );
        if n > 0 {
            self.install_fault(fault, Some(n));
        }
    }

    /// Removes the fault; after [`Fault::Down`] this re-binds the same port before returning.
    pub fn clear_fault(&self) {
        let was_down = lock(&self.state).set_fault(None);
        if was_down {
            self.server.up();
        }
    }

    fn install_fault(&self, fault: Fault, remaining: Option<usize>) {
        let down = fault == Fault::Down;
        let was_down = lock(&self.state).set_fault(Some(state::ActiveFault { fault, remaining }));
        match (was_down, down) {
            (false, true) => self.server.down(),
            (true, false) => self.server.up(),
            _ => {}
        }
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<Request> {
        lock(&self.state).requests.clone()
    }

    /// How many recorded requests match `pred`, without copying the log (cheap enough to poll
    /// through days of virtual time).
    pub fn count_requests(&self, pred: impl Fn(&Request) -> bool) -> usize {
        lock(&self.state)
            .requests
            .iter()
            .filter(|r| pred(r))
            .count()
    }

    /// TCP connections accepted so far, including those [`Fault::Refuse`] closed before
    /// reading (which never show up in [`Emulator::requests`]).
    pub fn connections(&self) -> usize {
        lock(&self.state).connections
    }

    /// Forgets the recorded requests.
    pub fn clear_requests(&self) {
        lock(&self.state).requests.clear();
    }

    /// The token's state, or `None` when it is unknown, revoked or expired.
    pub fn lookup(&self, token: &str) -> Option<TokenInfo> {
        let st = lock(&self.state);
        st.tokens.info(token, st.now())
    }

    /// Whether the token would be accepted now.
    pub fn is_valid(&self, token: &str) -> bool {
        self.lookup(token).is_some()
    }

    /// Revokes one token.
    pub fn revoke(&self, token: &str) {
        lock(&self.state).tokens.revoke(token);
    }

    /// Revokes every token.
    pub fn revoke_all(&self) {
        lock(&self.state).tokens.revoke_all();
    }

    /// How many tokens login has issued (including revoked and expired ones).
    pub fn token_count(&self) -> usize {
        lock(&self.state).tokens.issued()
    }

    /// Every `(token, accessor)` pair handed out so far, in order, including revoked and
    /// expired tokens and response-wrapping tokens; batch tokens have an empty accessor.
    /// Meant for checking that a client never logs a secret.
    pub fn issued_tokens(&self) -> Vec<(String, String)> {
        lock(&self.state).tokens.history().to_vec()
    }

    /// The namespace the plain (not `_in`) configuration methods use: the root, or the one
    /// given to [`Emulator::set_namespace_required`].
    fn primary_ns(&self) -> String {
        lock(&self.state).primary_ns.clone()
    }

    /// Writes a new version of a KV v2 secret at `<mount>/data/<path>` (mounting a KV v2 engine
    /// at `mount` if needed) and returns its version number. `data` must be a JSON object.
    /// Like [`Emulator::enable_mount`], this configures the root namespace, or the one given to
    /// [`Emulator::set_namespace_required`]; so do the other plain secret and policy methods.
    ///
    /// # Panics
    /// When `data` is not an object (test support).
    pub fn put_kv2(&self, mount: &str, path: &str, data: serde_json::Value) -> u64 {
        self.put_kv2_in(&self.primary_ns(), mount, path, data)
    }

    /// [`Emulator::put_kv2`] in Vault namespace `ns` (`""` is the root; created if needed).
    ///
    /// # Panics
    /// When `data` is not an object (test support).
    pub fn put_kv2_in(&self, ns: &str, mount: &str, path: &str, data: serde_json::Value) -> u64 {
        let data = object(data);
        let mut st = lock(&self.state);
        let now = st.now();
        st.secrets_mut(ns).put_kv2(mount, path, data, now)
    }

    /// Soft-deletes the latest version of a KV v2 secret, like `vault kv delete`.
    pub fn delete_kv2(&self, mount: &str, path: &str) {
        let mut st = lock(&self.state);
        let (now, ns) = (st.now(), st.primary_ns.clone());
        st.secrets_mut(&ns).delete_kv2(mount, path, 0, false, now);
    }

    /// Destroys one version of a KV v2 secret, like `vault kv destroy -versions=N`.
    pub fn destroy_kv2(&self, mount: &str, path: &str, version: u64) {
        let mut st = lock(&self.state);
        let (now, ns) = (st.now(), st.primary_ns.clone());
        st.secrets_mut(&ns)
            .delete_kv2(mount, path, version.max(1), true, now);
    }

    /// Writes a KV v1 secret at `<mount>/<path>` (mounting a KV v1 engine at `mount` if
    /// needed). `data` must be a JSON object.
    ///
    /// # Panics
    /// When `data` is not an object (test support).
    pub fn put_kv1(&self, mount: &str, path: &str, data: serde_json::Value) {
        self.put_kv1_in(&self.primary_ns(), mount, path, data);
    }

    /// [`Emulator::put_kv1`] in Vault namespace `ns` (`""` is the root; created if needed).
    ///
    /// # Panics
    /// When `data` is not an object (test support).
    pub fn put_kv1_in(&self, ns: &str, mount: &str, path: &str, data: serde_json::Value) {
        let data = object(data);
        lock(&self.state).secrets_mut(ns).put_kv1(mount, path, data);
    }

    /// Creates or replaces a dynamic-secret role read at `<mount>/creds/<name>` (mounting the
    /// engine at `mount` if needed).
    pub fn put_dynamic_role(&self, mount: &str, name: &str, role: DynamicRole) {
        self.put_dynamic_role_in(&self.primary_ns(), mount, name, role);
    }

    /// [`Emulator::put_dynamic_role`] in Vault namespace `ns` (`""` is the root; created if
    /// needed). Its leases carry the namespace's id: `<mount>/creds/<name>/<random>.<nsid>`.
    pub fn put_dynamic_role_in(&self, ns: &str, mount: &str, name: &str, role: DynamicRole) {
        lock(&self.state)
            .secrets_mut(ns)
            .put_role(mount, name, role);
    }

    /// Enables a PKI engine at `mount` with a new root CA named `common_name` (P-256, valid
    /// 87600 h; the mount's maximum TTL is 87600 h too) and returns the CA certificate (PEM).
    /// Like [`Emulator::put_kv2`], this configures the root namespace or the one given to
    /// [`Emulator::set_namespace_required`]. An existing PKI mount keeps its CA.
    pub fn enable_pki(&self, mount: &str, common_name: &str) -> String {
        self.enable_pki_in(&self.primary_ns(), mount, common_name)
    }

    /// [`Emulator::enable_pki`] in Vault namespace `ns` (`""` is the root; created if needed).
    pub fn enable_pki_in(&self, ns: &str, mount: &str, common_name: &str) -> String {
        let mut st = lock(&self.state);
        let now = st.now();
        st.secrets_mut(ns).enable_pki(mount, common_name, now)
    }

    /// Creates or replaces a PKI role read at `<mount>/issue/<name>` (enabling the engine with
    /// a CA named after the mount if needed).
    pub fn put_pki_role(&self, mount: &str, name: &str, role: PkiRole) {
        self.put_pki_role_in(&self.primary_ns(), mount, name, role);
    }

    /// [`Emulator::put_pki_role`] in Vault namespace `ns` (`""` is the root; created if needed).
    pub fn put_pki_role_in(&self, ns: &str, mount: &str, name: &str, role: PkiRole) {
        let mut st = lock(&self.state);
        let now = st.now();
        st.secrets_mut(ns).put_pki_role(mount, name, role, now);
    }

    /// The CA certificate (PEM) of the PKI engine at `mount` in any namespace, if one is
    /// enabled.
    pub fn pki_ca_pem(&self, mount: &str) -> Option<String> {
        let st = lock(&self.state);
        let found = st
            .namespaces
            .values()
            .find_map(|n| n.secrets.pki(mount).map(|p| p.ca_pem().to_string()));
        found
    }

    /// How many certificates the PKI engines at `mount` (in every namespace) issued, the CA not
    /// counted.
    pub fn pki_issued(&self, mount: &str) -> usize {
        lock(&self.state)
            .namespaces
            .values()
            .filter_map(|n| n.secrets.pki(mount))
            .map(|p| p.issued())
            .sum()
    }

    /// Creates or replaces an ACL policy: `(path pattern, capabilities)` pairs, e.g.
    /// `put_policy("app", &[("internal/data/database/config", &["read"])])`; give its name in
    /// [`Role::token_policies`]. `root` allows everything; `default` always exists.
    pub fn put_policy(&self, name: &str, rules: &[(&str, &[&str])]) {
        self.put_policy_in(&self.primary_ns(), name, rules);
    }

    /// [`Emulator::put_policy`] in Vault namespace `ns` (`""` is the root; created if needed).
    /// Tokens issued in `ns` take their policies from there; the patterns are relative to `ns`
    /// (`secret/data/app`), and name a child namespace's paths with its relative path in front
    /// (`team1/secret/data/app`).
    pub fn put_policy_in(&self, ns: &str, name: &str, rules: &[(&str, &[&str])]) {
        lock(&self.state).secrets_mut(ns).put_policy(name, rules);
    }

    /// Leases live now, in every namespace: not expired, not revoked, their token still valid.
    pub fn leases(&self) -> Vec<LeaseInfo> {
        let st = lock(&self.state);
        let now = st.now();
        let mut all: Vec<LeaseInfo> = st
            .namespaces
            .iter()
            .flat_map(|(ns, n)| {
                n.secrets
                    .leases
                    .all_live(now, &st.tokens)
                    .into_iter()
                    .map(move |l| LeaseInfo {
                        ttl: l.expire_time.duration_since(now).unwrap_or_default(),
                        expire_time: l.expire_time,
                        max_expire_time: leases::max_expire_time(&l),
                        renewals: l.renewals,
                        data: l.data,
                        lease_id: l.id,
                        namespace: ns.clone(),
                        issue_time: l.issue_time,
                    })
            })
            .collect();
        all.sort_by_key(|l| l.issue_time);
        all
    }

    /// How many leases are live now (see [`Emulator::leases`]).
    pub fn lease_count(&self) -> usize {
        self.leases().len()
    }

    /// How many leases were ever issued, in every namespace, including revoked and expired ones.
    pub fn leases_issued(&self) -> usize {
        lock(&self.state)
            .namespaces
            .values()
            .map(|n| n.secrets.leases.issued())
            .sum()
    }

    /// Revokes one lease, as an operator's `vault lease revoke` would.
    pub fn revoke_lease(&self, lease_id: &str) {
        for n in lock(&self.state).namespaces.values_mut() {
            n.secrets.leases.revoke(lease_id);
        }
    }

    /// Prints `METHOD PATH STATUS` to stderr for every request when `on`.
    pub fn log_requests(&self, on: bool) {
        lock(&self.state).log = on;
    }
}

/// A JSON object's map.
///
/// # Panics
/// When `value` is not an object (test support: the control API takes literal `json!({...})`).
fn object(value: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
    match value {
        serde_json::Value::Object(map) => map,
        other => panic!("vault-emulator: secret data must be a JSON object, got {other}"),
    }
}
