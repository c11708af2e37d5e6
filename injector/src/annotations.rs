//! The pod's vault-k8s annotations, under `vault.hashicorp.com/` or `openbao.org/`.

use serde_json::{Map, Value};

/// The two prefixes the injector answers to, vault-k8s's first.
pub const PREFIXES: [&str; 2] = ["vault.hashicorp.com/", "openbao.org/"];

/// A pod's annotations seen through the prefix that asked for injection.
#[derive(Debug)]
pub struct Annotations<'a> {
    map: Option<&'a Map<String, Value>>,
    /// The prefix of the `agent-inject` annotation that asked for injection.
    pub prefix: &'static str,
}

impl<'a> Annotations<'a> {
    /// Reads `metadata.annotations` of a pod (absent or not an object: none).
    pub fn of(pod: &'a Value) -> Annotations<'a> {
        let map = pod
            .pointer("/metadata/annotations")
            .and_then(Value::as_object);
        let prefix = PREFIXES
            .into_iter()
            .find(|p| {
                map.and_then(|m| m.get(&format!("{p}agent-inject")))
                    .and_then(Value::as_str)
                    .is_some_and(|v| parse_bool(v) == Ok(true))
            })
            .unwrap_or(PREFIXES[0]);
        Annotations { map, prefix }
    }

    /// The annotation's full key under the chosen prefix, e.g. `vault.hashicorp.com/role`.
    pub fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// The value of `name` under the chosen prefix, else under the other one.
    pub fn get(&self, name: &str) -> Option<&'a str> {
        let map = self.map?;
        let mut prefixes = PREFIXES;
        if self.prefix != PREFIXES[0] {
            prefixes.reverse();
        }
        prefixes
            .iter()
            .find_map(|p| map.get(&format!("{p}{name}")).and_then(Value::as_str))
    }

    /// A boolean annotation, Go's `strconv.ParseBool` spellings; `default` when absent.
    pub fn flag(&self, name: &str, default: bool) -> Result<bool, String> {
        match self.get(name) {
            None => Ok(default),
            Some(v) => parse_bool(v).map_err(|p| format!("{}: {p}", self.key(name))),
        }
    }

    /// Every annotation whose value is a string.
    pub fn all(&self) -> impl Iterator<Item = (&'a str, &'a str)> {
        self.map
            .into_iter()
            .flatten()
            .filter_map(|(k, v)| Some((k.as_str(), v.as_str()?)))
    }

    /// Whether any annotation under either prefix starts with `name`.
    pub fn any_starting_with(&self, name: &str) -> Option<String> {
        let map = self.map?;
        map.keys()
            .find(|k| {
                PREFIXES
                    .iter()
                    .any(|p| k.strip_prefix(p).is_some_and(|n| n.starts_with(name)))
            })
            .cloned()
    }
}

/// Go's `strconv.ParseBool`, which vault-k8s uses for every boolean annotation.
pub fn parse_bool(s: &str) -> Result<bool, String> {
    match s {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(format!("{s:?} is not a boolean; write true or false")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_prefix_that_asked_wins() {
        let pod = json!({"metadata": {"annotations": {
            "openbao.org/agent-inject": "true",
            "openbao.org/role": "bao",
            "vault.hashicorp.com/role": "vault",
            "vault.hashicorp.com/service": "https://v:8200",
        }}});
        let a = Annotations::of(&pod);
        assert_eq!(a.prefix, "openbao.org/");
        assert_eq!(a.get("role"), Some("bao"));
        assert_eq!(a.get("service"), Some("https://v:8200"));
        assert_eq!(
            a.key("agent-inject-status"),
            "openbao.org/agent-inject-status"
        );
    }

    #[test]
    fn booleans_as_go_parses_them() {
        let pod = json!({"metadata": {"annotations": {
            "vault.hashicorp.com/agent-inject": "T",
            "vault.hashicorp.com/agent-init-first": "yes",
        }}});
        let a = Annotations::of(&pod);
        assert_eq!(a.flag("agent-inject", false), Ok(true));
        assert_eq!(a.flag("agent-pre-populate", true), Ok(true));
        let err = a.flag("agent-init-first", false).unwrap_err();
        assert_eq!(
            err,
            "vault.hashicorp.com/agent-init-first: \"yes\" is not a boolean; write true or false"
        );
    }
}
