//! What templates read from Vault, as data: a [`Read`] names one request (`secret` read or write,
//! `secrets` list), a [`Source`] answers reads already made. Rendering never does I/O, so the
//! sidecar can make one request per distinct [`Read`] and share it between every template and
//! `VAULT_LOGIN_SECRET_*` file.

use super::value::{PemEncoded, Secret, Value};
use std::collections::BTreeMap;
use std::sync::Arc;

/// One Vault request a template makes.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Read {
    /// `secret "path"`: `GET /v1/<path>`.
    Get(String),
    /// `secret "path" "k=v" ...`: `PUT /v1/<path>` with the pairs as a JSON object of strings
    /// (consul-template trims both sides of each pair and skips empty arguments).
    Write(String, BTreeMap<String, String>),
    /// `secrets "path"`: `LIST /v1/<path>`, answered by the sorted `data.keys`.
    List(String),
    /// `pkiCert "path" "k=v" ...`: a certificate issued by `PUT /v1/<path>` with the pairs,
    /// kept for its lifetime rather than re-read (the certificates' lane decides when).
    Cert(String, BTreeMap<String, String>),
}

impl Read {
    /// The API path after `/v1/`.
    pub fn path(&self) -> &str {
        match self {
            Read::Get(p) | Read::Write(p, _) | Read::List(p) | Read::Cert(p, _) => p,
        }
    }

    /// The read `secret` makes for its string arguments (path, then `k=v` pairs).
    pub fn secret(args: &[String]) -> Result<Read, String> {
        let Some((path, rest)) = args.split_first() else {
            return Err("secret needs a path".into());
        };
        if rest.is_empty() {
            return Ok(Read::Get(path.clone()));
        }
        Ok(Read::Write(path.clone(), pairs(rest)?))
    }

    /// The certificate `pkiCert` asks for with its string arguments (path, then `k=v`
    /// pairs); the path is trimmed of spaces and slashes, as consul-template trims it.
    pub fn pki_cert(args: &[String]) -> Result<Read, String> {
        let Some((path, rest)) = args.split_first() else {
            return Err("pkiCert needs a path".into());
        };
        let path = path.trim().trim_matches('/');
        if path.is_empty() {
            return Err("pkiCert needs a path, e.g. pki/issue/<role>".into());
        }
        Ok(Read::Cert(path.to_string(), pairs(rest)?))
    }
}

/// consul-template's `k=v` arguments: both sides trimmed, empty arguments skipped.
fn pairs(args: &[String]) -> Result<BTreeMap<String, String>, String> {
    let mut body = BTreeMap::new();
    for kv in args.iter().filter(|a| !a.is_empty()) {
        let Some((k, v)) = kv.split_once('=') else {
            return Err("an argument after the path is not a k=v pair".into());
        };
        body.insert(k.trim().to_string(), v.trim().to_string());
    }
    Ok(body)
}

impl std::fmt::Display for Read {
    /// `secret "p"`, `secret "p" (write)`, `secrets "p"`: names the request, never a value.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Read::Get(p) => write!(f, "secret {p:?}"),
            Read::Write(p, _) => write!(f, "secret {p:?} (write)"),
            Read::List(p) => write!(f, "secrets {p:?}"),
            Read::Cert(p, _) => write!(f, "pkiCert {p:?}"),
        }
    }
}

/// Answers to reads already made: the renderer's only window on Vault.
pub trait Source {
    /// The answer to `read`: `None` when it was not made (yet), `Some(Err)` when it failed
    /// (the message names the path and the cause, never a secret value).
    fn answer(&self, read: &Read) -> Option<Result<Value, String>>;
}

/// A [`Source`] kept in a map: each read's answer, as the sidecar's shared cache would hold it.
#[derive(Default, Clone)]
pub struct Reads {
    /// `None`: forgotten ([`Reads::forget`]). Kept as a key rather than removed: the map's
    /// removal code, instantiated for this one use, cost ~3 KB of binary.
    map: BTreeMap<Read, Option<Result<Value, String>>>,
}

impl std::fmt::Debug for Reads {
    /// Lists the requests, not the answers (they are secrets).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.reads().map(ToString::to_string))
            .finish()
    }
}

impl Reads {
    /// No answers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records the answer to a `secret` read or write.
    pub fn secret(&mut self, read: Read, secret: Secret) {
        self.map
            .insert(read, Some(Ok(Value::Secret(Arc::new(secret)))));
    }

    /// Records the certificate `pkiCert` returns for `read`.
    pub fn cert(&mut self, read: Read, pems: PemEncoded) {
        self.map.insert(read, Some(Ok(Value::Pem(Arc::new(pems)))));
    }

    /// Records the answer to a `secrets` list: the keys, sorted as consul-template sorts them.
    pub fn list(&mut self, read: Read, mut keys: Vec<String>) {
        keys.sort();
        let v = Value::list(keys.into_iter().map(Value::Str).collect());
        self.map.insert(read, Some(Ok(v)));
    }

    /// Records a failed read (`message` names the path and cause, not secret values).
    pub fn failed(&mut self, read: Read, message: String) {
        self.map.insert(read, Some(Err(message)));
    }

    /// Forgets `read`'s answer: a template that reads it again waits for a new one.
    pub fn forget(&mut self, read: &Read) {
        if let Some(answer) = self.map.get_mut(read) {
            *answer = None;
        }
    }

    /// Whether `read` has an answer.
    pub fn contains(&self, read: &Read) -> bool {
        matches!(self.map.get(read), Some(Some(_)))
    }

    /// The reads answered, in order.
    pub fn reads(&self) -> impl Iterator<Item = &Read> {
        self.map.iter().filter(|(_, a)| a.is_some()).map(|(r, _)| r)
    }
}

impl Source for Reads {
    fn answer(&self, read: &Read) -> Option<Result<Value, String>> {
        self.map.get(read).cloned().flatten()
    }
}
