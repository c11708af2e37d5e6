//! ACL policies: named sets of path rules, the way `vault policy write` configures them, and the
//! check Vault makes before it routes a request.
//!
//! # What is emulated
//! - A rule is a path pattern and its capabilities (`read`, `create`, `update`, `delete`,
//!   `list`, `sudo`, `deny`). A pattern ending in `*` matches every path with that prefix; a `+`
//!   segment matches exactly one path segment; anything else must match exactly.
//! - A token's capabilities on a path are the union of the capabilities of the best-matching
//!   rule of each of its policies, `deny` winning over everything (Vault merges all policies into
//!   one ACL, then picks the most specific pattern: an exact match before any glob, then the
//!   pattern with fewer `+` wildcards, then the longer one).
//! - The `root` policy allows everything. The `default` policy grants the token endpoints and
//!   `sys/leases/renew` (and `sys/renew`, `sys/leases/lookup`) with `update`, as Vault's built-in
//!   default policy does; it does not grant `sys/leases/revoke` or any secret.
//! - Each namespace has its own policies, `default` included; patterns are relative to it
//!   (see `secrets.rs` for how a token's namespace and the request's combine).

use std::collections::HashMap;

/// One `path "<pattern>" { capabilities = [...] }` block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Rule {
    pub pattern: String,
    pub capabilities: Vec<String>,
}

/// The built-in `default` policy's rules that matter to vault-login.
fn default_rules() -> Vec<Rule> {
    [
        ("auth/token/lookup-self", "read"),
        ("auth/token/renew-self", "update"),
        ("auth/token/revoke-self", "update"),
        ("sys/renew", "update"),
        ("sys/leases/renew", "update"),
        ("sys/leases/lookup", "update"),
        ("sys/capabilities-self", "update"),
    ]
    .into_iter()
    .map(|(pattern, cap)| Rule {
        pattern: pattern.into(),
        capabilities: vec![cap.into()],
    })
    .collect()
}

/// Policies by name.
pub(crate) struct Policies {
    by_name: HashMap<String, Vec<Rule>>,
}

impl Default for Policies {
    fn default() -> Self {
        Policies {
            by_name: HashMap::from([("default".to_string(), default_rules())]),
        }
    }
}

/// How specific a matching pattern is; larger is more specific.
type Specificity = (bool, usize, usize);

fn specificity(pattern: &str) -> Specificity {
    let exact = !pattern.ends_with('*') && !pattern.split('/').any(|s| s == "+");
    let pluses = pattern.split('/').filter(|s| *s == "+").count();
    // Fewer `+` is more specific, so invert the count.
    (exact, usize::MAX - pluses, pattern.len())
}

/// Whether `pattern` matches `path` (both without a leading `/`).
pub(crate) fn matches(pattern: &str, path: &str) -> bool {
    let (body, glob) = match pattern.strip_suffix('*') {
        Some(b) => (b, true),
        None => (pattern, false),
    };
    if !body.split('/').any(|s| s == "+") {
        return if glob {
            path.starts_with(body)
        } else {
            path == body
        };
    }
    let pat: Vec<&str> = body.split('/').collect();
    let segs: Vec<&str> = path.split('/').collect();
    let same = |p: &str, s: &str| p == "+" || p == s;
    if !glob {
        return pat.len() == segs.len() && pat.iter().zip(&segs).all(|(p, s)| same(p, s));
    }
    // Every pattern segment but the last matches a whole path segment; the last one is a prefix
    // of the rest of the path (or, for `+`, any one non-empty segment).
    if segs.len() < pat.len() {
        return false;
    }
    let last = pat.len() - 1;
    if !pat[..last].iter().zip(&segs).all(|(p, s)| same(p, s)) {
        return false;
    }
    match pat[last] {
        "+" => !segs[last].is_empty(),
        prefix => segs[last..].join("/").starts_with(prefix),
    }
}

impl Policies {
    /// Takes over `other`'s policies (replacing same-named ones).
    pub fn absorb(&mut self, other: Policies) {
        self.by_name.extend(other.by_name);
    }

    /// Creates or replaces a policy.
    pub fn put(&mut self, name: &str, rules: Vec<Rule>) {
        self.by_name.insert(name.to_string(), rules);
    }

    /// Whether `policies` grant anything (a capability other than `deny`) on some path under
    /// `prefix` (ending in `/`), as `sys/internal/ui/mounts` asks before naming a mount.
    pub fn grants_under(&self, policies: &[String], prefix: &str) -> bool {
        if policies.iter().any(|p| p == "root") {
            return true;
        }
        policies
            .iter()
            .filter_map(|name| self.by_name.get(name))
            .flatten()
            .filter(|rule| rule.capabilities.iter().any(|c| c != "deny"))
            .any(|rule| {
                let body = rule.pattern.trim_end_matches('*');
                rule.pattern.starts_with(prefix)
                    || (rule.pattern.ends_with('*') && prefix.starts_with(body))
                    || (body.contains('+') && matches(&rule.pattern, &format!("{prefix}x")))
            })
    }

    /// Whether a token holding `policies` has `capability` on `path`.
    pub fn allows(&self, policies: &[String], path: &str, capability: &str) -> bool {
        if policies.iter().any(|p| p == "root") {
            return true;
        }
        let mut best: Option<(Specificity, Vec<&Rule>)> = None;
        for rule in policies
            .iter()
            .filter_map(|name| self.by_name.get(name))
            .flatten()
            .filter(|rule| matches(&rule.pattern, path))
        {
            let s = specificity(&rule.pattern);
            match &mut best {
                Some((bs, rules)) if *bs == s => rules.push(rule),
                Some((bs, _)) if *bs > s => {}
                _ => best = Some((s, vec![rule])),
            }
        }
        let Some((_, rules)) = best else {
            return false;
        };
        let caps: Vec<&str> = rules
            .iter()
            .flat_map(|r| r.capabilities.iter().map(String::as_str))
            .collect();
        !caps.contains(&"deny") && caps.contains(&capability)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policies(rules: &[(&str, &[&str])]) -> Policies {
        let mut p = Policies::default();
        p.put(
            "app",
            rules
                .iter()
                .map(|(pattern, caps)| Rule {
                    pattern: pattern.to_string(),
                    capabilities: caps.iter().map(|c| c.to_string()).collect(),
                })
                .collect(),
        );
        p
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn globs_and_plus_segments_match_like_vault() {
        assert!(matches(
            "internal/data/database/config",
            "internal/data/database/config"
        ));
        assert!(!matches(
            "internal/data/database/config",
            "internal/data/database/config2"
        ));
        assert!(matches("internal/data/*", "internal/data/database/config"));
        assert!(matches(
            "internal/data/data*",
            "internal/data/database/config"
        ));
        assert!(matches("internal/*", "internal/database/config"));
        assert!(!matches("internal/data/*", "internal/database/config"));
        assert!(matches(
            "internal/+/database/config",
            "internal/data/database/config"
        ));
        assert!(!matches(
            "internal/+/config",
            "internal/data/database/config"
        ));
        assert!(matches("database/creds/+", "database/creds/app"));
        assert!(!matches("database/creds/+", "database/creds/app/x"));
        assert!(matches("*", "anything/at/all"));
    }

    #[test]
    fn the_most_specific_rule_wins_and_deny_overrides() {
        let p = policies(&[
            ("internal/data/*", &["read"]),
            ("internal/data/database/secret", &["deny"]),
        ]);
        let app = names(&["app", "default"]);
        assert!(p.allows(&app, "internal/data/database/config", "read"));
        assert!(!p.allows(&app, "internal/data/database/secret", "read"));
        assert!(!p.allows(&app, "internal/database/config", "read"));
        assert!(!p.allows(
            &names(&["default"]),
            "internal/data/database/config",
            "read"
        ));
        assert!(p.allows(&names(&["default"]), "sys/leases/renew", "update"));
        assert!(!p.allows(&names(&["default"]), "sys/leases/revoke", "update"));
        assert!(p.allows(&names(&["root"]), "sys/leases/revoke", "update"));
    }
}
