//! Everything the emulator knows, shared between the control API and the server thread behind
//! one std `Mutex` (never held across an `.await`).

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};
use std::time::SystemTime;

use crate::flavour::Flavour;
use crate::health::Cluster;
use crate::paths::clean;
use crate::secrets::Secrets;
use crate::tokens::{random_uuid, TokenStore};
use crate::{Fault, Request, Role};

/// The auth mount every namespace-less emulator starts with.
pub(crate) const DEFAULT_MOUNT: &str = "kubernetes";

/// Locks the state; a panic on another thread (a failed test assertion) must not poison it.
pub(crate) fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// One Vault namespace: its kubernetes auth mounts, each with its roles, and its secret
/// engines, policies and leases.
#[derive(Default)]
pub(crate) struct Namespace {
    pub mounts: HashMap<String, HashMap<String, Role>>,
    /// Mounts whose TokenReview call fails (see `Emulator::set_token_review_failing`).
    pub review_failing: HashSet<String>,
    /// Secret engines, policies and leases (`secrets.rs`).
    pub secrets: Secrets,
}

/// Where every "now" of the emulator comes from: token TTLs, creation and expiry, JWT checks,
/// lookup-self and the request log all read [`State::now`], so one clock rules them.
#[derive(Clone, Debug)]
pub(crate) enum Clock {
    /// The system clock (the server thread of [`crate::Emulator::start`]).
    System,
    /// `base` plus the time tokio's clock has moved since `start`: under a paused tokio clock
    /// (`#[tokio::test(start_paused = true)]`) the emulator's time is the test's virtual time.
    Tokio {
        base: SystemTime,
        start: tokio::time::Instant,
        /// The runtime whose clock counts; entered to read it from any thread.
        runtime: tokio::runtime::Handle,
    },
}

impl Clock {
    /// A clock following the current runtime's tokio clock from now on.
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub fn tokio() -> Clock {
        let runtime = tokio::runtime::Handle::try_current().unwrap_or_else(|_| {
            panic!("vault-emulator: start_in_runtime must be called inside a tokio runtime")
        });
        Clock::Tokio {
            base: SystemTime::now(),
            start: tokio::time::Instant::now(),
            runtime,
        }
    }

    pub fn now(&self) -> SystemTime {
        match self {
            Clock::System => SystemTime::now(),
            Clock::Tokio {
                base,
                start,
                runtime,
            } => {
                // tokio reads a paused clock from the runtime in context: a checker thread
                // outside the runtime must see the same time as the test.
                let _context = runtime.enter();
                *base + start.elapsed()
            }
        }
    }
}

/// A fault and how many more requests it applies to (`None`: until cleared).
pub(crate) struct ActiveFault {
    pub fault: Fault,
    pub remaining: Option<usize>,
}

pub(crate) struct State {
    /// The namespace the plain `enable_mount`/`put_role` configure (`""`: root).
    pub primary_ns: String,
    pub namespaces: HashMap<String, Namespace>,
    pub tokens: TokenStore,
    pub fault: Option<ActiveFault>,
    pub requests: Vec<Request>,
    /// TCP connections accepted, including those [`Fault::Refuse`] closed unread.
    pub connections: usize,
    pub log: bool,
    /// Whose answers to give where OpenBao and Vault differ.
    pub flavour: Flavour,
    /// The cluster's name and id, as the health endpoints report them.
    pub cluster: Cluster,
    /// Where "now" comes from: the system clock, or tokio's for tests in virtual time.
    pub clock: Clock,
}

impl State {
    pub fn new(clock: Clock) -> State {
        let mut root = Namespace::default();
        root.mounts.insert(DEFAULT_MOUNT.into(), HashMap::new());
        State {
            primary_ns: String::new(),
            namespaces: HashMap::from([(String::new(), root)]),
            tokens: TokenStore::default(),
            fault: None,
            requests: Vec::new(),
            connections: 0,
            log: false,
            flavour: Flavour::default(),
            cluster: Cluster {
                name: format!("vault-cluster-{}", &random_uuid()[..8]),
                id: random_uuid(),
            },
            clock,
        }
    }

    /// The emulator's current time.
    pub fn now(&self) -> SystemTime {
        self.clock.now()
    }

    /// The roles of a mount, `None` when the namespace or the mount does not exist.
    pub fn mount(&self, ns: &str, mount: &str) -> Option<&HashMap<String, Role>> {
        self.namespaces.get(clean(ns))?.mounts.get(clean(mount))
    }

    /// Namespace `ns`, created (with its missing ancestors, as Vault only creates a namespace
    /// inside an existing one) when absent.
    pub fn namespace_mut(&mut self, ns: &str) -> &mut Namespace {
        let ns = clean(ns);
        for (i, _) in ns.match_indices('/') {
            self.namespaces.entry(ns[..i].to_string()).or_default();
        }
        self.namespaces.entry(ns.to_string()).or_default()
    }

    /// The namespace of a request and its path relative to it, as Vault resolves them: the
    /// `X-Vault-Namespace` header (`root` is the root namespace) followed by the path, split
    /// after the longest run of leading segments that names an existing namespace. `None` when
    /// the header names no existing namespace.
    pub fn resolve<'p>(&self, header: &str, path: &'p str) -> Option<(String, &'p str)> {
        let header = match clean(header) {
            "root" => "",
            h => h,
        };
        if !self.namespaces.contains_key(header) {
            return None;
        }
        let mut ns = header.to_string();
        let mut rest = path;
        while let Some((segment, tail)) = rest.split_once('/') {
            let candidate = if ns.is_empty() {
                segment.to_string()
            } else {
                format!("{ns}/{segment}")
            };
            if segment.is_empty() || !self.namespaces.contains_key(&candidate) {
                break;
            }
            ns = candidate;
            rest = tail;
        }
        Some((ns, rest))
    }

    /// The secret engines, policies and leases of `ns`, when it exists.
    pub fn secrets(&self, ns: &str) -> Option<&Secrets> {
        self.namespaces.get(clean(ns)).map(|n| &n.secrets)
    }

    /// The secret engines, policies and leases of `ns`, creating the namespace if needed.
    pub fn secrets_mut(&mut self, ns: &str) -> &mut Secrets {
        &mut self.namespace_mut(ns).secrets
    }

    pub fn enable_mount(&mut self, ns: &str, mount: &str) {
        self.namespace_mut(ns)
            .mounts
            .entry(clean(mount).to_string())
            .or_default();
    }

    /// Creates or replaces a role.
    ///
    /// # Panics
    /// When `token_ttl` exceeds a set `token_max_ttl`: OpenBao refuses to write such a role
    /// (400 `'token_ttl' cannot be greater than 'token_max_ttl'`), so a test that configures
    /// one tests something no server does (test support).
    pub fn put_role(&mut self, ns: &str, mount: &str, name: &str, role: Role) {
        assert!(
            role.token_max_ttl.is_zero() || role.token_ttl <= role.token_max_ttl,
            "vault-emulator: role {name:?}: 'token_ttl' cannot be greater than 'token_max_ttl' \
             (OpenBao refuses this role; cap a login with token_explicit_max_ttl instead)"
        );
        self.enable_mount(ns, mount);
        if let Some(roles) = self
            .namespaces
            .get_mut(clean(ns))
            .and_then(|n| n.mounts.get_mut(clean(mount)))
        {
            roles.insert(name.to_string(), role);
        }
    }

    /// Whether the mount's TokenReview call fails.
    pub fn review_fails(&self, ns: &str, mount: &str) -> bool {
        self.namespaces
            .get(clean(ns))
            .is_some_and(|n| n.review_failing.contains(clean(mount)))
    }

    pub fn set_review_failing(&mut self, ns: &str, mount: &str, failing: bool) {
        let set = &mut self.namespace_mut(ns).review_failing;
        if failing {
            set.insert(clean(mount).to_string());
        } else {
            set.remove(clean(mount));
        }
    }

    pub fn delete_role(&mut self, ns: &str, mount: &str, name: &str) {
        if let Some(roles) = self
            .namespaces
            .get_mut(clean(ns))
            .and_then(|n| n.mounts.get_mut(clean(mount)))
        {
            roles.remove(name);
        }
    }

    /// Makes `ns` the primary namespace: its auth mounts, secret engines, policies and leases
    /// are moved there (replacing same-named ones) and the old primary namespace is left empty.
    pub fn set_primary_namespace(&mut self, ns: &str) {
        let ns = clean(ns).to_string();
        if ns == self.primary_ns {
            return;
        }
        let old = std::mem::replace(&mut self.primary_ns, ns.clone());
        let moved = self.namespaces.remove(&old).unwrap_or_default();
        self.namespaces.insert(old, Namespace::default());
        let target = self.namespace_mut(&ns);
        target.mounts.extend(moved.mounts);
        target.review_failing.extend(moved.review_failing);
        target.secrets.absorb(moved.secrets);
    }

    /// Replaces the active fault; returns whether [`Fault::Down`] was active before.
    pub fn set_fault(&mut self, fault: Option<ActiveFault>) -> bool {
        let was_down = matches!(&self.fault, Some(a) if a.fault == Fault::Down);
        self.fault = fault;
        was_down
    }

    /// The fault for one request, counting a limited fault down.
    pub fn fault_for_request(&mut self) -> Option<Fault> {
        let active = self.fault.as_mut()?;
        let fault = active.fault.clone();
        if let Some(n) = active.remaining.as_mut() {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.fault = None;
            }
        }
        Some(fault)
    }

    /// Whether to drop a freshly accepted connection ([`Fault::Refuse`]), counting it down.
    pub fn refuse_connection(&mut self) -> bool {
        match &self.fault {
            Some(a) if a.fault == Fault::Refuse => self.fault_for_request().is_some(),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(namespaces: &[&str]) -> State {
        let mut st = State::new(Clock::System);
        for ns in namespaces {
            st.namespace_mut(ns);
        }
        st
    }

    #[test]
    fn the_namespace_is_the_header_joined_with_the_longest_existing_path_prefix() {
        let st = with(&["admin/team1", "ops"]);
        let resolve = |h: &str, p: &'static str| st.resolve(h, p).unwrap();
        // Creating admin/team1 created admin.
        assert_eq!(resolve("", "admin/x"), ("admin".into(), "x"));
        assert_eq!(
            resolve("", "secret/data/app"),
            ("".into(), "secret/data/app")
        );
        assert_eq!(
            resolve("admin", "secret/data/app"),
            ("admin".into(), "secret/data/app")
        );
        assert_eq!(
            resolve("/admin/", "secret/data/app"),
            ("admin".into(), "secret/data/app")
        );
        assert_eq!(
            resolve("", "admin/team1/secret/data/app"),
            ("admin/team1".into(), "secret/data/app")
        );
        assert_eq!(
            resolve("admin", "team1/secret/data/app"),
            ("admin/team1".into(), "secret/data/app")
        );
        assert_eq!(
            resolve("admin/team1", "auth/token/lookup-self"),
            ("admin/team1".into(), "auth/token/lookup-self")
        );
        // `root` is the root namespace; a segment that names no namespace stays in the path.
        assert_eq!(resolve("root", "ops/x"), ("ops".into(), "x"));
        assert_eq!(resolve("admin", "ops/x"), ("admin".into(), "ops/x"));
        assert_eq!(resolve("", "adm/x"), ("".into(), "adm/x"));
        // A header naming no namespace resolves to none.
        assert_eq!(st.resolve("nope", "admin/x"), None);
    }
}
