//! The child's environment values: the `VAULT_LOGIN_ENV_<VAR>` specs (one field of a read, or a
//! strict template) and [`Environment`], what each value holds once rendered from the shared
//! reads, and why it holds nothing yet.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::os::unix::ffi::OsStringExt;
use std::sync::Arc;

use zeroize::Zeroizing;

use crate::secrets::template::{Funcs, Reads, Template};
use crate::secrets::{Format, SecretSpec, SpecError, TemplateSpec, SECRET_ENV_PREFIX};

/// vault-login's own variables, never passed on (config's `OWN_PREFIX`; repeated here because
/// nothing below config imports it).
const OWN_PREFIX: &str = "VAULT_LOGIN_";

/// The prefix of the variables that set the child's environment: `VAULT_LOGIN_ENV_<VAR>=…`.
pub const ENV_PREFIX: &str = "VAULT_LOGIN_ENV_";

/// One `VAULT_LOGIN_ENV_<VAR>`, as the shared reads use it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EnvSpec {
    /// `<path>#<field>`: the field, raw, like a `VAULT_LOGIN_SECRET_*` file's `#field`.
    Field(SecretSpec),
    /// A value containing `{{`: a strict template.
    Template(TemplateSpec),
}

impl EnvSpec {
    /// The variable the child sees (case kept).
    pub fn var(&self) -> &str {
        match self {
            EnvSpec::Field(s) => &s.name,
            EnvSpec::Template(t) => &t.name,
        }
    }
}

fn spec_error(variable: &str, problem: impl Into<String>) -> SpecError {
    SpecError {
        variable: variable.to_string(),
        problem: problem.into(),
    }
}

/// Whether `var` is a POSIX shell variable name, the only names every program can read.
pub fn shell_name(var: &str) -> bool {
    let mut bytes = var.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Parses `variable=value` (`variable` starting with [`ENV_PREFIX`]).
pub fn parse(variable: &str, value: &str, funcs: &Funcs) -> Result<EnvSpec, SpecError> {
    let var = variable.strip_prefix(ENV_PREFIX).unwrap_or_default();
    if !shell_name(var) {
        return Err(spec_error(
            variable,
            format!("{var:?} is not a shell variable name ([A-Za-z_][A-Za-z0-9_]*); name the variable the program reads, e.g. {ENV_PREFIX}DB_PASSWORD"),
        ));
    }
    if var.starts_with(OWN_PREFIX) {
        return Err(spec_error(
            variable,
            "the program never sees VAULT_LOGIN_* variables; give another name",
        ));
    }
    if value.contains("{{") {
        let template = Template::parse(var, value, funcs).map_err(|e| {
            spec_error(
                variable,
                format!("line {}, column {}: {}", e.line, e.col, e.message),
            )
        })?;
        let first_reads = template.discover(&Reads::new(), funcs);
        return Ok(EnvSpec::Template(TemplateSpec {
            name: var.to_string(),
            variable: variable.to_string(),
            file: String::new(),
            mode: None,
            lenient: false,
            command: None,
            origin: None,
            template: Arc::new(template),
            first_reads,
        }));
    }
    if !value.contains('#') || value.starts_with(crate::secrets::DOTENV_PREFIX) {
        return Err(spec_error(
            variable,
            "give <path>#<field>, e.g. internal/data/database/config#password, or a template with {{ }}",
        ));
    }
    // The file specs' parser checks the path and the field; only the name differs.
    let mut spec = SecretSpec::parse(&format!("{SECRET_ENV_PREFIX}X"), value)
        .map_err(|e| spec_error(variable, e.problem))?;
    debug_assert!(matches!(spec.format, Format::Field(_)));
    spec.name = var.to_string();
    spec.variable = variable.to_string();
    Ok(EnvSpec::Field(spec))
}

/// Every `VAULT_LOGIN_ENV_<VAR>` among `names`, read through `env`, sorted by VAR. An empty
/// value counts as unset.
pub fn specs_from_env(
    names: &[String],
    env: &dyn Fn(&str) -> Option<String>,
    funcs: &Funcs,
) -> Result<Vec<EnvSpec>, SpecError> {
    let mut variables: Vec<&String> = (names.iter())
        .filter(|n| n.starts_with(ENV_PREFIX))
        .collect();
    variables.sort();
    variables.dedup();
    let mut specs = Vec::new();
    for variable in variables {
        let Some(value) = env(variable).filter(|v| !v.is_empty()) else {
            continue;
        };
        specs.push(parse(variable, &value, funcs)?);
    }
    Ok(specs)
}

/// What a value holds: its bytes once rendered, and the last failure that is not an outage.
#[derive(Default)]
struct Slot {
    value: Option<Zeroizing<Vec<u8>>>,
    failure: Option<String>,
}

/// The values rendered so far, by VAR.
#[derive(Default)]
pub struct Environment {
    slots: BTreeMap<String, Slot>,
}

impl fmt::Debug for Environment {
    /// The names and whether each is set; never a value.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let set: Vec<(&String, bool)> = (self.slots.iter())
            .map(|(k, s)| (k, s.value.is_some()))
            .collect();
        f.debug_struct("Environment").field("set", &set).finish()
    }
}

/// Why the environment is not complete.
#[derive(Debug, PartialEq, Eq)]
pub enum Incomplete {
    /// These values wait for a read (an outage is retried).
    Waiting(Vec<String>),
    /// A value cannot be had without someone changing Vault or the configuration: the message
    /// names the variable and the path.
    Failed(String),
}

impl Environment {
    /// An environment waiting for each of `vars`.
    pub fn new<'a>(vars: impl IntoIterator<Item = &'a str>) -> Self {
        let slots = vars.into_iter().map(|v| (v.to_string(), Slot::default()));
        Environment {
            slots: slots.collect(),
        }
    }

    /// Sets `var` to `bytes`; an error (naming `var`) when no environment can hold them.
    pub fn set(&mut self, var: &str, bytes: &[u8]) -> Result<(), String> {
        let Some(slot) = self.slots.get_mut(var) else {
            return Ok(());
        };
        if bytes.contains(&0) {
            let e = format!(
                "{var}: the value contains a NUL byte, which no environment variable can hold"
            );
            slot.failure = Some(e.clone());
            return Err(e);
        }
        slot.value = Some(Zeroizing::new(bytes.to_vec()));
        slot.failure = None;
        Ok(())
    }

    /// Records why `var` could not be had (not an outage).
    pub fn failed(&mut self, var: &str, message: String) {
        if let Some(slot) = self.slots.get_mut(var) {
            slot.failure = Some(message);
        }
    }

    /// Forgets a failure of `var` recorded during an outage.
    pub fn clear_failure(&mut self, var: &str) {
        if let Some(slot) = self.slots.get_mut(var) {
            slot.failure = None;
        }
    }

    /// Every value, or why not: a failure first (only for values never had), then the ones
    /// still waiting.
    pub fn snapshot(&self) -> Result<ChildEnv, Incomplete> {
        let unset = || (self.slots.iter()).filter(|(_, s)| s.value.is_none());
        if let Some(f) = unset().find_map(|(_, s)| s.failure.clone()) {
            return Err(Incomplete::Failed(f));
        }
        let waiting: Vec<String> = unset().map(|(k, _)| k.clone()).collect();
        if !waiting.is_empty() {
            return Err(Incomplete::Waiting(waiting));
        }
        let mut env = ChildEnv::default();
        for (k, s) in &self.slots {
            if let Some(v) = &s.value {
                env.set(k, v);
            }
        }
        Ok(env)
    }
}

/// The variables vault-login adds to the child's environment (values, `VAULT_TOKEN`, ...).
/// Compared to decide on a restart; never printed.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ChildEnv {
    vars: BTreeMap<String, Zeroizing<Vec<u8>>>,
}

impl fmt::Debug for ChildEnv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.vars.keys()).finish()
    }
}

impl ChildEnv {
    /// Sets `var` to `value`.
    pub fn set(&mut self, var: &str, value: &[u8]) {
        self.vars
            .insert(var.to_string(), Zeroizing::new(value.to_vec()));
    }

    /// The names whose values differ between `self` and `other` (added, removed or changed).
    pub fn changed_names(&self, other: &ChildEnv) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for (k, v) in &self.vars {
            if other.vars.get(k) != Some(v) {
                names.push(k.clone());
            }
        }
        for k in other.vars.keys() {
            if !self.vars.contains_key(k) {
                names.push(k.clone());
            }
        }
        names
    }

    /// The whole environment of a child: `inherited` (vault-login's own) without any
    /// `VAULT_LOGIN_*` variable, then these variables over it.
    pub fn compose(
        &self,
        inherited: impl IntoIterator<Item = (OsString, OsString)>,
    ) -> Vec<(OsString, OsString)> {
        let own = OWN_PREFIX.as_bytes();
        let mut all: BTreeMap<OsString, OsString> = (inherited.into_iter())
            .filter(|(k, _)| !k.as_encoded_bytes().starts_with(own))
            .collect();
        for (k, v) in &self.vars {
            all.insert(OsString::from(k), OsString::from_vec(v.to_vec()));
        }
        all.into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn funcs() -> Funcs {
        Funcs::standard()
    }

    #[test]
    fn a_field_value_keeps_the_variable_s_case() {
        let spec = parse("VAULT_LOGIN_ENV_dbPass", "kv/data/db#password", &funcs()).unwrap();
        let EnvSpec::Field(s) = &spec else {
            panic!("{spec:?}")
        };
        assert_eq!(spec.var(), "dbPass");
        assert_eq!(s.path, "kv/data/db");
        assert_eq!(s.format, Format::Field("password".into()));
        assert_eq!(s.variable, "VAULT_LOGIN_ENV_dbPass");
    }

    #[test]
    fn a_value_with_braces_is_a_template() {
        let v = r#"{{ with secret "kv/data/db" }}{{ .Data.data.user }}{{ end }}"#;
        let spec = parse("VAULT_LOGIN_ENV_DSN", v, &funcs()).unwrap();
        let EnvSpec::Template(t) = &spec else {
            panic!("{spec:?}")
        };
        assert!(!t.lenient, "strict");
        assert_eq!(t.first_reads.len(), 1);
    }

    #[test]
    fn bad_names_and_values_name_the_variable() {
        for (var, value, needle) in [
            ("VAULT_LOGIN_ENV_1X", "kv/a#b", "shell variable name"),
            ("VAULT_LOGIN_ENV_A-B", "kv/a#b", "shell variable name"),
            ("VAULT_LOGIN_ENV_", "kv/a#b", "shell variable name"),
            ("VAULT_LOGIN_ENV_VAULT_LOGIN_X", "kv/a#b", "never sees"),
            ("VAULT_LOGIN_ENV_A", "kv/a", "<path>#<field>"),
            ("VAULT_LOGIN_ENV_A", "dotenv:kv/a#b", "<path>#<field>"),
            ("VAULT_LOGIN_ENV_A", "kv/a#", "field name"),
            ("VAULT_LOGIN_ENV_A", "/v1/kv/a#b", "without /v1/"),
            ("VAULT_LOGIN_ENV_A", "{{ nope }}", "line 1"),
        ] {
            let e = parse(var, value, &funcs()).unwrap_err();
            assert_eq!(e.variable, var);
            assert!(e.problem.contains(needle), "{var}={value}: {}", e.problem);
        }
    }

    #[test]
    fn the_environment_is_complete_once_every_value_is_set() {
        let mut env = Environment::new(["A", "B"]);
        assert_eq!(
            env.snapshot().unwrap_err(),
            Incomplete::Waiting(vec!["A".into(), "B".into()])
        );
        env.set("A", b"1").unwrap();
        env.failed("B", "VAULT_LOGIN_ENV_B: reading kv/b: denied".into());
        assert!(matches!(env.snapshot(), Err(Incomplete::Failed(m)) if m.contains("kv/b")));
        env.set("B", b"2").unwrap();
        let snap = env.snapshot().unwrap();
        // A later failure keeps the value the child already has.
        env.failed("B", "outage".into());
        assert_eq!(env.snapshot().unwrap(), snap);
        assert!(env.set("A", b"a\0b").unwrap_err().contains("NUL"));
    }

    #[test]
    fn the_child_env_drops_vault_login_variables_and_says_what_changed() {
        let mut a = ChildEnv::default();
        a.set("DB", b"one");
        let inherited = [
            ("PATH".into(), "/bin".into()),
            ("VAULT_LOGIN_JWT".into(), "eyJ".into()),
            ("VAULT_LOGIN_ROLE".into(), "r".into()),
            ("DB".into(), "old".into()),
        ];
        let all = a.compose(inherited);
        let keys: Vec<_> = all.iter().map(|(k, _)| k.to_str().unwrap()).collect();
        assert_eq!(keys, vec!["DB", "PATH"]);
        assert_eq!(all[0].1, "one");
        let mut b = a.clone();
        assert!(a.changed_names(&b).is_empty());
        b.set("DB", b"two");
        b.set("NEW", b"x");
        assert_eq!(a.changed_names(&b), vec!["DB", "NEW"]);
        assert_eq!(format!("{b:?}"), r#"["DB", "NEW"]"#);
    }
}
