//! The service-account JWT: read fresh from its source at every login, sanity-checked, and
//! its claims decoded (never verified: Vault does that) so errors can say what is wrong.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::Deserialize;

use crate::files::safe_fs::{self, Links, UnsafeFile};
use crate::sensitive::Secret;

/// Where Kubernetes projects the pod's service-account token by default.
pub const DEFAULT_JWT_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";
/// The only variable for the JWT itself: never a flag, since process arguments are visible to others.
pub const JWT_ENV: &str = "VAULT_LOGIN_JWT";

/// Where the service-account JWT comes from.
#[derive(Clone, Debug)]
pub enum JwtSource {
    /// Read from this file at every login (the kubelet rotates it).
    File(PathBuf),
    /// Given in `VAULT_LOGIN_JWT`.
    Env(Secret),
}

impl JwtSource {
    /// The file, when the JWT is read from one (it is then watched for rotations).
    pub fn file(&self) -> Option<&Path> {
        match self {
            JwtSource::File(p) => Some(p),
            JwtSource::Env(_) => None,
        }
    }
}

/// The most we read of a JWT file: real service-account tokens are around 1 KiB.
pub const MAX_JWT_BYTES: u64 = 64 * 1024;

/// Why the JWT could not be used.
#[derive(Debug, thiserror::Error)]
pub enum JwtError {
    /// The file does not exist (yet).
    #[error("service-account JWT file {} does not exist (is the projected token volume mounted? set VAULT_LOGIN_JWT_FILE)", .0.display())]
    Missing(PathBuf),
    /// The file exists but could not be read.
    #[error("cannot read service-account JWT file {}: {source} (check the volume and the container's user)", path.display())]
    Unreadable {
        /// The JWT file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The path is not a regular file (a directory, FIFO, device...).
    #[error("service-account JWT file {} is {kind}, not a regular file (point VAULT_LOGIN_JWT_FILE at the token file itself)", path.display())]
    NotAFile {
        /// The JWT file.
        path: PathBuf,
        /// What it is instead, e.g. `a FIFO (named pipe)`.
        kind: &'static str,
    },
    /// The file is larger than any service-account token.
    #[error("service-account JWT in {} is larger than {MAX_JWT_BYTES} bytes: not a service-account token", .0)]
    TooLarge(String),
    /// The file or variable is empty.
    #[error("service-account JWT in {0} is empty (the kubelet has not written it yet, or the wrong file is mounted)")]
    Empty(String),
    /// The content is not `header.payload.signature` in base64url.
    #[error("service-account JWT in {origin} is malformed: {problem}")]
    Malformed {
        /// Where the JWT came from.
        origin: String,
        /// What is wrong with it.
        problem: &'static str,
    },
}

/// The claims we log and use for hints; a subset of a Kubernetes service-account token's.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct Claims {
    /// `system:serviceaccount:<namespace>:<name>`.
    #[serde(default)]
    pub sub: Option<String>,
    /// The audiences; Kubernetes always writes a list, other issuers may write a string.
    #[serde(default, deserialize_with = "string_or_list")]
    pub aud: Vec<String>,
    /// Issuer.
    #[serde(default)]
    pub iss: Option<String>,
    /// Expiry, seconds since the Unix epoch.
    #[serde(default)]
    pub exp: Option<i64>,
    /// Not before, seconds since the Unix epoch.
    #[serde(default)]
    pub nbf: Option<i64>,
    /// Issued at, seconds since the Unix epoch.
    #[serde(default)]
    pub iat: Option<i64>,
}

fn string_or_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Aud {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Option::<Aud>::deserialize(d)? {
        None => Vec::new(),
        Some(Aud::One(s)) => vec![s],
        Some(Aud::Many(v)) => v,
    })
}

/// Seconds since the Unix epoch, for comparing with JWT claims.
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl Claims {
    /// Checks the shape of a JWT and decodes its payload; `origin` names the source in errors.
    pub fn decode(jwt: &str, origin: &str) -> Result<Claims, JwtError> {
        let malformed = |problem| JwtError::Malformed {
            origin: origin.to_string(),
            problem,
        };
        let parts: Vec<&str> = jwt.split('.').collect();
        if parts.len() != 3 {
            return Err(malformed(
                "expected three base64url parts separated by '.' (header.payload.signature)",
            ));
        }
        if parts.iter().any(|p| p.is_empty()) {
            return Err(malformed("one of its three parts is empty"));
        }
        let is_b64url = |p: &str| {
            p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'=')
        };
        if !parts.iter().all(|p| is_b64url(p)) {
            return Err(malformed("it contains characters outside base64url"));
        }
        let payload = URL_SAFE_NO_PAD
            .decode(parts[1].trim_end_matches('='))
            .map_err(|_| malformed("its payload is not valid base64url"))?;
        serde_json::from_slice(&payload).map_err(|_| malformed("its payload is not a JSON object"))
    }

    /// One line for logs: `sub=... aud=[...] exp=... (in 59m)`; claims are not secret.
    pub fn describe(&self, now: i64) -> String {
        let sub = self.sub.as_deref().unwrap_or("<none>");
        // Claims come from a file anyone may have written: saturate rather than overflow.
        let exp = match self.exp {
            Some(exp) if exp > now => format!("{exp} (in {}s)", exp.saturating_sub(now)),
            Some(exp) => format!("{exp} (expired {}s ago)", now.saturating_sub(exp)),
            None => "<none>".to_string(),
        };
        format!("sub={sub} aud={:?} exp={exp}", self.aud)
    }

    /// Likely causes of a permission-denied login, judged from the claims alone.
    pub fn hints(&self, now: i64) -> Vec<String> {
        let mut hints = Vec::new();
        if let Some(exp) = self.exp {
            if exp <= now {
                hints.push(format!(
                    "the JWT expired {}s ago: the kubelet refreshes projected tokens, check the volume's expirationSeconds and that VAULT_LOGIN_JWT_FILE is the projected file",
                    now.saturating_sub(exp)
                ));
            }
        }
        if let Some(nbf) = self.nbf {
            if nbf > now.saturating_add(60) {
                hints.push(format!(
                    "the JWT is not valid for another {}s: check clock skew",
                    nbf.saturating_sub(now)
                ));
            }
        }
        if self.aud.is_empty() {
            hints.push(
                "the JWT has no audience: roles with `audience` set reject it; project a token with serviceAccountToken.audience".to_string(),
            );
        } else {
            hints.push(format!(
                "the JWT's audiences are {:?}: the role's `audience` must be one of them",
                self.aud
            ));
        }
        if let Some(sub) = &self.sub {
            if let Some(rest) = sub.strip_prefix("system:serviceaccount:") {
                if let Some((ns, sa)) = rest.split_once(':') {
                    hints.push(format!(
                        "the role must bind service account {sa:?} in namespace {ns:?} (bound_service_account_names/namespaces)"
                    ));
                }
            }
        }
        hints
    }
}

/// A JWT read from its source, with its decoded claims.
pub struct Jwt {
    /// The token itself.
    pub token: Secret,
    /// Its decoded claims.
    pub claims: Claims,
}

/// What a JWT file holds now, as a fingerprint to tell a real change from another event in its
/// directory (a log file written beside it, the kubelet's own temp files): a hash of the token,
/// or of the reason it cannot be read. Never the token itself.
pub fn fingerprint(source: &JwtSource) -> u64 {
    fingerprint_of(&read(source))
}

/// [`fingerprint`] read on the blocking pool (the file is another container's: the async
/// runtime's thread never waits on it).
pub async fn fingerprint_off_thread(source: JwtSource) -> u64 {
    let read = tokio::task::spawn_blocking(move || fingerprint(&source)).await;
    // A read that panicked (it does not) counts as a change: the login that follows reads again.
    read.unwrap_or(0)
}

fn fingerprint_of(read: &Result<Jwt, JwtError>) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    match read {
        Ok(jwt) => jwt.token.expose().hash(&mut h),
        Err(e) => e.to_string().hash(&mut h),
    }
    h.finish()
}

impl fmt::Debug for Jwt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Jwt")
            .field("token", &self.token)
            .field("claims", &self.claims)
            .finish()
    }
}

/// What the start-up learns from one read of the JWT.
#[derive(Clone, Debug, Default)]
pub struct FirstLook {
    /// Its claims, if it could be read and decoded.
    pub claims: Option<Claims>,
    /// Its [`fingerprint`] (None if the read itself did not finish).
    pub fingerprint: Option<u64>,
}

/// Reads the JWT from `source` once at start, on the blocking pool like every read of it (the
/// first login's then reuses the thread), and logs what it says (who, for which audiences,
/// until when) or why it is not usable yet: the first thing an operator checks when a login is
/// refused. The claims and the fingerprint serve the rest of the start-up.
pub async fn first_look(source: &JwtSource) -> FirstLook {
    let source = source.clone();
    let Ok(read) = tokio::task::spawn_blocking(move || read(&source)).await else {
        return FirstLook::default();
    };
    let fingerprint = Some(fingerprint_of(&read));
    let claims = match read {
        Ok(j) => {
            tracing::info!(claims = %j.claims.describe(unix_now()), "service-account JWT");
            Some(j.claims)
        }
        Err(e) => {
            tracing::warn!(error = %e, "service-account JWT not usable yet");
            None
        }
    };
    FirstLook {
        claims,
        fingerprint,
    }
}

/// Reads the JWT from the configured source; called afresh for every login attempt.
pub fn read(source: &JwtSource) -> Result<Jwt, JwtError> {
    match source {
        JwtSource::Env(value) => parse(value.expose(), "VAULT_LOGIN_JWT"),
        JwtSource::File(path) => {
            let text = read_file(path)?;
            parse(&text, &path.display().to_string())
        }
    }
}

fn parse(raw: &str, origin: &str) -> Result<Jwt, JwtError> {
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Err(JwtError::Empty(origin.to_string()));
    }
    let claims = Claims::decode(trimmed, origin)?;
    Ok(Jwt {
        token: Secret::new(trimmed),
        claims,
    })
}

fn read_file(path: &Path) -> Result<String, JwtError> {
    // Follow symlinks: projected volumes publish `token -> ..data/token`. The open never blocks
    // and only a regular file is read, so a FIFO or device planted there cannot stall the loop.
    let buf = match safe_fs::read_regular(path, Links::Follow, MAX_JWT_BYTES) {
        Ok(buf) => buf,
        Err(e) if e.is_not_found() => return Err(JwtError::Missing(path.to_path_buf())),
        Err(UnsafeFile::Io(source)) => {
            return Err(JwtError::Unreadable {
                path: path.to_path_buf(),
                source,
            })
        }
        Err(UnsafeFile::NotRegular(kind)) => {
            return Err(JwtError::NotAFile {
                path: path.to_path_buf(),
                kind,
            })
        }
        Err(UnsafeFile::TooLarge(_)) => return Err(JwtError::TooLarge(path.display().to_string())),
        // Links are followed here, so the open cannot refuse one.
        Err(UnsafeFile::Symlink) => {
            return Err(JwtError::NotAFile {
                path: path.to_path_buf(),
                kind: "a symbolic link",
            })
        }
    };
    String::from_utf8(buf).map_err(|_| JwtError::Malformed {
        origin: path.display().to_string(),
        problem: "it is not UTF-8 text",
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn make(payload: &str) -> String {
        format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256"}"#),
            URL_SAFE_NO_PAD.encode(payload),
            URL_SAFE_NO_PAD.encode("sig")
        )
    }

    #[test]
    fn decodes_kubernetes_claims() {
        let jwt = make(
            r#"{"sub":"system:serviceaccount:default:app","aud":["k3s"],"exp":2000,"iat":1000,"nbf":1000,"iss":"https://k"}"#,
        );
        let c = Claims::decode(&jwt, "t").unwrap();
        assert_eq!(c.sub.as_deref(), Some("system:serviceaccount:default:app"));
        assert_eq!(c.aud, vec!["k3s"]);
        assert_eq!(c.exp, Some(2000));
        assert!(c.describe(1500).contains("exp=2000 (in 500s)"));
        assert!(c.describe(2500).contains("expired 500s ago"));
    }

    #[test]
    fn audience_may_be_a_string() {
        let c = Claims::decode(&make(r#"{"aud":"vault"}"#), "t").unwrap();
        assert_eq!(c.aud, vec!["vault"]);
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "abc",
            "a.b",
            "a.b.c.d",
            "a..c",
            "a.b c.d",
            &make("not json"),
        ] {
            let err = Claims::decode(bad, "src").unwrap_err();
            assert!(err.to_string().contains("src is malformed"), "{err}");
        }
    }

    #[test]
    fn hints_mention_expiry_and_audience() {
        let c = Claims {
            sub: Some("system:serviceaccount:ns1:sa1".into()),
            aud: vec!["api".into()],
            exp: Some(100),
            ..Claims::default()
        };
        let hints = c.hints(200).join("\n");
        assert!(hints.contains("expired 100s ago"));
        assert!(hints.contains("[\"api\"]"));
        assert!(hints.contains("\"sa1\" in namespace \"ns1\""));
    }

    #[test]
    fn extreme_times_do_not_overflow() {
        let c = Claims {
            exp: Some(i64::MIN),
            nbf: Some(i64::MAX),
            ..Claims::default()
        };
        for now in [i64::MIN, -1, 0, 1_764_381_600, i64::MAX] {
            let _ = c.describe(now);
            assert!(!c.hints(now).is_empty());
        }
        assert!(c
            .describe(0)
            .contains(&format!("expired {}s ago", i64::MAX)));
    }

    #[test]
    fn reads_and_trims_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        let jwt = make(r#"{"sub":"x"}"#);
        fs::write(&path, format!("  {jwt}\n")).unwrap();
        let got = read(&JwtSource::File(path.clone())).unwrap();
        assert_eq!(got.token.expose(), jwt);
        assert!(!format!("{got:?}").contains(&jwt));
    }

    #[tokio::test]
    async fn the_first_look_gives_the_claims_and_the_fingerprint_of_one_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        let source = JwtSource::File(path.clone());
        // Missing: no claims, and the fingerprint of why (a later change is told from it).
        let missing = first_look(&source).await;
        assert_eq!(missing.claims, None);
        assert_eq!(missing.fingerprint, Some(fingerprint(&source)));
        fs::write(&path, make(r#"{"sub":"system:serviceaccount:ns:app"}"#)).unwrap();
        let first = first_look(&source).await;
        let sub = first.claims.and_then(|c| c.sub);
        assert_eq!(sub.as_deref(), Some("system:serviceaccount:ns:app"));
        assert_eq!(first.fingerprint, Some(fingerprint(&source)));
        assert_ne!(first.fingerprint, missing.fingerprint);
    }

    #[test]
    fn file_errors_are_specific() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        assert!(matches!(
            read(&JwtSource::File(missing)),
            Err(JwtError::Missing(_))
        ));
        assert!(matches!(
            read(&JwtSource::File(dir.path().to_path_buf())),
            Err(JwtError::NotAFile { .. })
        ));
        let empty = dir.path().join("empty");
        fs::write(&empty, "\n").unwrap();
        assert!(matches!(
            read(&JwtSource::File(empty)),
            Err(JwtError::Empty(_))
        ));
        let huge = dir.path().join("huge");
        fs::write(&huge, vec![b'a'; 70 * 1024]).unwrap();
        assert!(matches!(
            read(&JwtSource::File(huge)),
            Err(JwtError::TooLarge(_))
        ));
    }

    #[test]
    fn fifos_and_devices_are_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        let e = read(&JwtSource::File(fifo)).unwrap_err();
        assert!(
            e.to_string()
                .contains("is a FIFO (named pipe), not a regular file"),
            "{e}"
        );
        let zero = dir.path().join("zero");
        std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
        let e = read(&JwtSource::File(zero)).unwrap_err();
        assert!(e.to_string().contains("is a character device"), "{e}");
        // The kubelet's layout still works: token -> ..data/token, ..data -> a dated directory.
        fs::create_dir(dir.path().join("..2026_11_29")).unwrap();
        let jwt = make(r#"{"sub":"k"}"#);
        fs::write(dir.path().join("..2026_11_29/token"), &jwt).unwrap();
        std::os::unix::fs::symlink("..2026_11_29", dir.path().join("..data")).unwrap();
        std::os::unix::fs::symlink("..data/token", dir.path().join("token")).unwrap();
        let got = read(&JwtSource::File(dir.path().join("token"))).unwrap();
        assert_eq!(got.token.expose(), jwt);
    }

    #[test]
    fn env_source_is_parsed() {
        let jwt = make(r#"{"sub":"y"}"#);
        let got = read(&JwtSource::Env(Secret::new(jwt.clone()))).unwrap();
        assert_eq!(got.claims.sub.as_deref(), Some("y"));
        assert!(matches!(
            read(&JwtSource::Env(Secret::new(" "))),
            Err(JwtError::Empty(_))
        ));
    }
}
