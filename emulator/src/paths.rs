//! How namespace and mount paths compare: without surrounding slashes, and seen from a parent
//! namespace with the child's relative path in front.

/// Namespace paths and mount paths are compared without surrounding slashes.
pub(crate) fn clean(path: &str) -> &str {
    path.trim_matches('/')
}

/// `path` in namespace `ns` as seen from namespace `from`: `Some` only when `ns` is `from` or
/// one of its children (Vault prefixes both policy paths and request paths with their
/// namespace's path, so nothing else can match).
pub(crate) fn relative_path(from: &str, ns: &str, path: &str) -> Option<String> {
    if from == ns {
        return Some(path.to_string());
    }
    let below = if from.is_empty() {
        ns
    } else {
        ns.strip_prefix(from)?.strip_prefix('/')?
    };
    Some(format!("{below}/{path}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_is_seen_from_the_tokens_namespace_or_its_ancestors_only() {
        let rel = |from: &str, ns: &str| relative_path(from, ns, "secret/data/app");
        assert_eq!(rel("admin", "admin").as_deref(), Some("secret/data/app"));
        assert_eq!(rel("", "").as_deref(), Some("secret/data/app"));
        assert_eq!(rel("", "admin").as_deref(), Some("admin/secret/data/app"));
        assert_eq!(
            rel("admin", "admin/team1/x").as_deref(),
            Some("team1/x/secret/data/app")
        );
        for (from, ns) in [
            ("admin", ""),
            ("admin", "team1"),
            ("admin", "administrators"),
            ("admin/team1", "admin"),
        ] {
            assert_eq!(rel(from, ns), None, "{from:?} -> {ns:?}");
        }
    }
}
