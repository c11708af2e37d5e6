//! The emulator's OpenBao flavour against the real OpenBao 2.7.2 (`vault_emulator::real`): the
//! same requests, configured the same way on both, every request kind vault-login sends and the
//! errors it must tell apart, and the test fails on any difference in status, error strings or
//! JSON shape. Ids and tokens are compared by shape (a UUID, `s.` + 24, `b.` + base64url, a
//! 24-character accessor, each with or without `.<namespace id>`), times by form (RFC 3339 with
//! or without a fraction; unix seconds within a few seconds), TTLs within a second.
//!
//! Every difference is collected and printed together, one per line, so a new OpenBao release
//! shows all its changes at once.

mod common;

use std::fmt::Write as _;
use std::thread::sleep;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::call;
use serde_json::{json, Map, Value};
use vault_emulator::real::{Bao, Postgres};
use vault_emulator::{DynamicRole, Emulator, Fault, PkiKeyType, PkiRole, Role, TokenType};

/// One server under test.
trait Target {
    fn send(
        &self,
        method: &str,
        path: &str,
        token: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> (u16, Value);
}

impl Target for Bao {
    fn send(
        &self,
        method: &str,
        path: &str,
        token: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> (u16, Value) {
        let token = (!token.is_empty()).then_some(token);
        let body = (!body.is_empty()).then_some(body);
        let (status, bytes) = self.http(method, path, token, headers, body);
        (status, parse(&bytes))
    }
}

impl Target for Emulator {
    fn send(
        &self,
        method: &str,
        path: &str,
        token: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> (u16, Value) {
        let mut all: Vec<(&str, &str)> = headers.to_vec();
        if !token.is_empty() {
            all.push(("X-Vault-Token", token));
        }
        if !body.is_empty() {
            all.push(("Content-Type", "application/json"));
        }
        let resp = call(self.addr(), method, path, &all, body).expect("the emulator answers");
        (resp.status, parse(&resp.body))
    }
}

fn parse(bytes: &[u8]) -> Value {
    if bytes.is_empty() {
        return Value::Null;
    }
    serde_json::from_slice(bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(bytes).into_owned()))
}

/// The two servers and the differences found so far.
struct Pair {
    real: Bao,
    emu: Emulator,
    diffs: Vec<String>,
    checked: usize,
}

/// What one request sends, with the token of each side.
struct Ask<'a> {
    method: &'a str,
    path: &'a str,
    tokens: (&'a str, &'a str),
    headers: &'a [(&'a str, &'a str)],
    /// The body each side gets: (real, emulator).
    bodies: (&'a str, &'a str),
}

impl Pair {
    /// Sends the request to both and records every difference; returns (real, emulator).
    fn ask(&mut self, what: &str, ask: Ask) -> (Value, Value) {
        let (rs, rv) = self.real.send(
            ask.method,
            ask.path,
            ask.tokens.0,
            ask.headers,
            ask.bodies.0,
        );
        let (es, ev) = self.emu.send(
            ask.method,
            ask.path,
            ask.tokens.1,
            ask.headers,
            ask.bodies.1,
        );
        self.checked += 1;
        let label = format!("{what} ({} {})", ask.method, ask.path);
        if rs != es {
            self.diffs
                .push(format!("{label}: status real {rs}, emulator {es}"));
        }
        let mut found = Vec::new();
        compare("", &rv, &ev, &mut found);
        for d in found {
            self.diffs.push(format!("{label}: {d}"));
        }
        (rv, ev)
    }

    /// The same request without a token.
    fn open(&mut self, what: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &str) {
        self.ask(
            what,
            Ask {
                method,
                path,
                tokens: ("", ""),
                headers,
                bodies: (body, body),
            },
        );
    }

    /// The same request with each side's token.
    fn with(
        &mut self,
        what: &str,
        method: &str,
        path: &str,
        t: &Tokens,
        body: &str,
    ) -> (Value, Value) {
        self.ask(
            what,
            Ask {
                method,
                path,
                tokens: (&t.0, &t.1),
                headers: &[],
                bodies: (body, body),
            },
        )
    }

    /// Logs in on both with the same kind of JWT; the two tokens (empty when refused).
    fn login(&mut self, what: &str, role: &str, headers: &[(&str, &str)]) -> Tokens {
        let body = |jwt: String| json!({"role": role, "jwt": jwt}).to_string();
        let real_body = body(self.real.jwt("default", "app", &["vault"], 600));
        let emu_body = body(self.emu.jwt("default", "app", &["vault"], 600));
        let (rs, rv) = self
            .real
            .send("POST", "/v1/auth/kubernetes/login", "", headers, &real_body);
        let (es, ev) = self
            .emu
            .send("POST", "/v1/auth/kubernetes/login", "", headers, &emu_body);
        self.checked += 1;
        let label = format!("{what} (POST /v1/auth/kubernetes/login)");
        if rs != es {
            self.diffs
                .push(format!("{label}: status real {rs}, emulator {es}"));
        }
        let mut found = Vec::new();
        compare("", &rv, &ev, &mut found);
        self.diffs
            .extend(found.into_iter().map(|d| format!("{label}: {d}")));
        let token = |v: &Value| {
            v["auth"]["client_token"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        };
        Tokens(token(&rv), token(&ev))
    }
}

/// A token on each side: (real, emulator).
struct Tokens(String, String);

impl Tokens {
    fn same(t: &str) -> Tokens {
        Tokens(t.into(), t.into())
    }
}

// ----- comparing answers -----

/// Keys whose integers are TTLs in seconds: equal within a second (the two logins are not at
/// the same instant).
const TTL_KEYS: [&str; 3] = ["lease_duration", "ttl", "creation_ttl"];
/// Keys whose integers are unix times: within a few seconds.
const TIME_KEYS: [&str; 5] = [
    "creation_time",
    "last_renewal_time",
    "server_time_utc",
    "expiration",
    "not_before",
];

fn compare(at: &str, real: &Value, emu: &Value, diffs: &mut Vec<String>) {
    match (real, emu) {
        (Value::Object(r), Value::Object(e)) => compare_objects(at, r, e, diffs),
        (Value::Array(r), Value::Array(e)) => {
            if r.len() != e.len() {
                diffs.push(format!("{at}: real {real}, emulator {emu}"));
                return;
            }
            for (i, (r, e)) in r.iter().zip(e).enumerate() {
                compare(&format!("{at}[{i}]"), r, e, diffs);
            }
        }
        (Value::String(r), Value::String(e)) => {
            if shape(r) != shape(e) {
                diffs.push(format!(
                    "{at}: real {r:?} ({}), emulator {e:?} ({})",
                    shape(r),
                    shape(e)
                ));
            }
        }
        (Value::Number(r), Value::Number(e)) => {
            let key = at.rsplit('.').next().unwrap_or_default();
            let (r, e) = (
                r.as_f64().unwrap_or(f64::NAN),
                e.as_f64().unwrap_or(f64::NAN),
            );
            let slack = if TTL_KEYS.contains(&key) {
                1.0
            } else if TIME_KEYS.contains(&key) {
                5.0
            } else {
                0.0
            };
            if (r - e).abs() > slack || r.fract() != e.fract() {
                diffs.push(format!("{at}: real {r}, emulator {e}"));
            }
        }
        (r, e) if r == e => {}
        (r, e) => diffs.push(format!("{at}: real {r}, emulator {e}")),
    }
}

fn compare_objects(
    at: &str,
    r: &Map<String, Value>,
    e: &Map<String, Value>,
    diffs: &mut Vec<String>,
) {
    for key in r.keys().filter(|k| !e.contains_key(*k)) {
        diffs.push(format!(
            "{at}.{key}: only the real server sends it ({})",
            r[key]
        ));
    }
    for key in e.keys().filter(|k| !r.contains_key(*k)) {
        diffs.push(format!(
            "{at}.{key}: only the emulator sends it ({})",
            e[key]
        ));
    }
    for (key, rv) in r {
        if let Some(ev) = e.get(key) {
            compare(&format!("{at}.{key}"), rv, ev, diffs);
        }
    }
}

fn all(s: &str, ok: impl Fn(char) -> bool) -> bool {
    !s.is_empty() && s.chars().all(ok)
}

fn base62(s: &str, len: usize) -> bool {
    s.len() == len && all(s, |c| c.is_ascii_alphanumeric())
}

fn uuid(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.iter().map(|p| p.len()).eq([8, 4, 4, 4, 12])
        && parts.iter().all(|p| all(p, |c| c.is_ascii_hexdigit()))
}

fn rfc3339(s: &str) -> Option<bool> {
    let b = s.as_bytes();
    let ok = s.len() >= 20
        && s.ends_with('Z')
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && all(&s[..4], |c| c.is_ascii_digit());
    ok.then(|| s.len() > 20 && b[19] == b'.')
}

/// A certificate serial as OpenBao writes it: 20 bytes in lower-case hex, colon-separated.
fn serial(s: &str) -> bool {
    let bytes: Vec<&str> = s.split(':').collect();
    bytes.len() == 20
        && bytes
            .iter()
            .all(|b| b.len() == 2 && all(b, |c| c.is_ascii_digit() || ('a'..='f').contains(&c)))
}

/// PEM as Go writes it (one block, 64-column base64 lines, LF, no newline after the END
/// line): `<PEM LABEL>`; any other layout is named by what differs.
fn pem_shape(s: &str) -> Option<String> {
    let label = s.strip_prefix("-----BEGIN ")?.split("-----").next()?;
    let lines: Vec<&str> = s.split('\n').collect();
    let body = &lines[1..lines.len().saturating_sub(1)];
    let layout_ok = !s.contains('\r')
        && lines.last() == Some(&format!("-----END {label}-----").as_str())
        && !body.is_empty()
        && body[..body.len() - 1].iter().all(|l| l.len() == 64)
        && body.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 64
                && all(l, |c| c.is_ascii_alphanumeric() || "+/=".contains(c))
        });
    Some(match layout_ok {
        true => format!("<PEM {label}>"),
        false => format!(
            "<PEM {label} laid out otherwise: {} lines, ends {:?}>",
            lines.len(),
            &s[s.len().saturating_sub(8)..]
        ),
    })
}

/// The class a string belongs to where its value is random or a time; the string itself
/// otherwise (with the durations of a TTL warning masked, which depend on the second).
fn shape(s: &str) -> String {
    let (body, nsid) = match s.rsplit_once('.') {
        Some((b, id)) if base62(id, 6) && !b.is_empty() => (b, ".<nsid>"),
        _ => (s, ""),
    };
    let class = if uuid(body) {
        Some("<uuid>")
    } else if body.strip_prefix("s.").is_some_and(|t| base62(t, 24)) {
        Some("<service token>")
    } else if base62(body, 24) {
        Some("<accessor>")
    } else if s.strip_prefix("b.").is_some_and(|t| {
        t.len() > 200 && all(t, |c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    }) {
        return "<batch token>".into();
    } else {
        None
    };
    if let Some(class) = class {
        return format!("{class}{nsid}");
    }
    if let Some(pem) = pem_shape(s) {
        return pem;
    }
    if serial(s) {
        return "<serial number>".into();
    }
    // A mount's accessor: `<type>_<8 hex>`.
    if let Some((kind, hex)) = s.split_once('_') {
        if hex.len() == 8
            && all(hex, |c| c.is_ascii_hexdigit())
            && all(kind, |c| c.is_ascii_lowercase())
        {
            return format!("<{kind} mount accessor>");
        }
    }
    match rfc3339(s) {
        Some(true) => return "<time with fraction>".into(),
        Some(false) => return "<time in whole seconds>".into(),
        None => {}
    }
    if let Some(hex) = s.strip_prefix("vault-cluster-") {
        if hex.len() == 8 && all(hex, |c| c.is_ascii_hexdigit()) {
            return "<cluster name>".into();
        }
    }
    // A lease id: the request path and 24 random characters.
    if let Some((path, last)) = s.rsplit_once('/') {
        if !path.is_empty() && shape(last).starts_with("<accessor>") {
            return format!("{path}/<lease>{}", &shape(last)["<accessor>".len()..]);
        }
    }
    // Database credentials: `v-<display name>-<role>-<20 random>-<unix time>` (the display
    // name may hold a `-`: `admin-au` in namespace `admin`) and a 20-character password.
    let parts: Vec<&str> = s.rsplitn(3, '-').collect();
    if let [unix, random, head] = parts[..] {
        if head.starts_with("v-") && base62(random, 20) && all(unix, |c| c.is_ascii_digit()) {
            return format!("{head}-<random>-<unix time>");
        }
    }
    if s.len() == 20 && all(s, |c| c.is_ascii_alphanumeric() || c == '-') {
        return "<password>".into();
    }
    if s.starts_with("TTL of ") {
        let masked: String = s
            .split('"')
            .enumerate()
            .map(|(i, part)| if i % 2 == 1 { "<duration>" } else { part })
            .collect::<Vec<_>>()
            .join("\"");
        return masked;
    }
    s.to_string()
}

// ----- configuring both the same way -----

const APP_POLICY: &[(&str, &[&str])] = &[
    ("secret/data/app", &["read"]),
    ("secret/data/missing", &["read"]),
    ("secret/app", &["read"]),
    ("kv/app", &["read"]),
    ("kv/missing", &["read"]),
    ("database/creds/app", &["read"]),
    ("sys/leases/revoke", &["update"]),
    ("pki/issue/web", &["update"]),
    ("pki/issue/lease", &["update"]),
    ("pki/issue/noip", &["update"]),
    ("pki/issue/nope", &["update"]),
    ("pki/certs/", &["list"]),
    ("kv/", &["list"]),
    ("kv/written", &["create", "update", "read"]),
    ("kv/update-only", &["update"]),
    ("secret/metadata/", &["list"]),
    ("secret/data/", &["list"]),
    ("secret/data/written", &["create", "update", "read"]),
];

fn hcl(rules: &[(&str, &[&str])]) -> String {
    let mut out = String::new();
    for (path, caps) in rules {
        let caps: Vec<String> = caps.iter().map(|c| format!("{c:?}")).collect();
        let _ = writeln!(
            out,
            "path {path:?} {{ capabilities = [{}] }}",
            caps.join(", ")
        );
    }
    out
}

/// A kubernetes role on both: `(token_ttl, token_max_ttl)` in seconds, policies, type.
fn role(pair: &Pair, ns: &str, name: &str, ttl: u64, max: u64, policies: &[&str], batch: bool) {
    let mut body = json!({
        "bound_service_account_names": ["*"],
        "bound_service_account_namespaces": ["*"],
        "audience": "vault",
        "token_ttl": ttl,
        "token_max_ttl": max,
        "token_policies": policies,
    });
    if batch {
        body["token_type"] = json!("batch");
    }
    let headers: Vec<(&str, &str)> = if ns.is_empty() {
        vec![]
    } else {
        vec![("X-Vault-Namespace", ns)]
    };
    let (status, answer) = pair.real.http(
        "POST",
        &format!("/v1/auth/kubernetes/role/{name}"),
        Some(&pair.real.root_token()),
        &headers,
        Some(&body.to_string()),
    );
    assert!(
        status < 300,
        "role {name}: {status} {}",
        String::from_utf8_lossy(&answer)
    );
    pair.emu.put_role_in(
        ns,
        "kubernetes",
        name,
        Role {
            audience: Some("vault".into()),
            token_ttl: Duration::from_secs(ttl),
            token_max_ttl: Duration::from_secs(max),
            token_policies: policies.iter().map(|p| p.to_string()).collect(),
            token_type: if batch {
                TokenType::Batch
            } else {
                TokenType::Service
            },
            ..Role::default()
        },
    );
}

fn setup() -> Option<Pair> {
    let real = Bao::start()?;
    let emu = Emulator::start_default();
    let pair = Pair {
        real,
        emu,
        diffs: Vec::new(),
        checked: 0,
    };
    let r = &pair.real;
    r.cli(&["secrets", "enable", "-version=1", "kv"]);
    r.cli(&["kv", "put", "secret/app", "password=one"]);
    r.cli(&["kv", "put", "secret/app", "password=two"]);
    r.cli(&["write", "kv/app", "password=kv"]);
    r.api(
        "PUT",
        "/v1/sys/policies/acl/app",
        Some(json!({ "policy": hcl(APP_POLICY) })),
    );
    r.cli(&["namespace", "create", "admin"]);
    r.enable_kubernetes_auth_in("admin")
        .expect("kubernetes auth in admin");
    let e = &pair.emu;
    e.put_kv2("secret", "app", json!({"password": "one"}));
    e.put_kv2("secret", "app", json!({"password": "two"}));
    e.put_kv1("kv", "app", json!({"password": "kv"}));
    e.put_policy("app", APP_POLICY);
    e.enable_mount_in("admin", "kubernetes");
    role(&pair, "", "app", 60, 3600, &["app"], false);
    role(&pair, "", "batch", 30, 0, &["default"], true);
    role(&pair, "", "short", 4, 5, &["default"], false);
    role(&pair, "admin", "app", 60, 3600, &["default"], false);
    Some(pair)
}

/// Fails with every difference, one per line.
fn assert_no_differences(pair: &Pair) {
    assert!(
        pair.diffs.is_empty(),
        "{} of {} answers differ between OpenBao 2.7.2 and the emulator:\n{}",
        pair.diffs.len(),
        pair.checked,
        pair.diffs.join("\n")
    );
    eprintln!("{} answers compared, no difference", pair.checked);
}

// ----- the scenarios -----

#[test]
fn login_tokens_secrets_leases_and_their_errors_answer_as_openbao() {
    let Some(mut p) = setup() else { return };
    let login = "/v1/auth/kubernetes/login";
    p.open("login without role", "POST", login, &[], r#"{"jwt":"x"}"#);
    p.open("login without jwt", "POST", login, &[], r#"{"role":"app"}"#);
    p.open(
        "login to an unknown role",
        "POST",
        login,
        &[],
        r#"{"role":"nope","jwt":"x"}"#,
    );
    p.open(
        "login to a mount that does not exist",
        "POST",
        "/v1/auth/nope/login",
        &[],
        r#"{"role":"app","jwt":"x"}"#,
    );
    p.open("GET on the login path", "GET", login, &[], "");
    let t = p.login("login", "app", &[]);
    p.with("lookup-self", "GET", "/v1/auth/token/lookup-self", &t, "");
    p.with("renew-self", "POST", "/v1/auth/token/renew-self", &t, "{}");
    p.with(
        "renew-self with an increment",
        "POST",
        "/v1/auth/token/renew-self",
        &t,
        r#"{"increment":"30s"}"#,
    );
    p.with(
        "renew-self with a negative increment",
        "POST",
        "/v1/auth/token/renew-self",
        &t,
        r#"{"increment":-5}"#,
    );
    p.with(
        "renew-self with a bad increment",
        "POST",
        "/v1/auth/token/renew-self",
        &t,
        r#"{"increment":"5x"}"#,
    );
    p.with(
        "lookup-self after renewals",
        "GET",
        "/v1/auth/token/lookup-self",
        &t,
        "",
    );
    for (what, token) in [
        ("no token", ""),
        ("an unknown token", "s.AAAAAAAAAAAAAAAAAAAAAAAA"),
    ] {
        let bad = Tokens::same(token);
        p.with(
            &format!("renew-self with {what}"),
            "POST",
            "/v1/auth/token/renew-self",
            &bad,
            "{}",
        );
        p.with(
            &format!("lookup-self with {what}"),
            "GET",
            "/v1/auth/token/lookup-self",
            &bad,
            "",
        );
        p.with(
            &format!("KV read with {what}"),
            "GET",
            "/v1/secret/data/app",
            &bad,
            "",
        );
        p.with(
            &format!("lease renewal with {what}"),
            "PUT",
            "/v1/sys/leases/renew",
            &bad,
            r#"{"lease_id":"x"}"#,
        );
        p.with(
            &format!("unknown path with {what}"),
            "GET",
            "/v1/nonexist/x",
            &bad,
            "",
        );
    }
    // KV v2 and v1, versions, a path without data/, a denied and a missing secret.
    p.with("KV v2 latest", "GET", "/v1/secret/data/app", &t, "");
    p.with(
        "KV v2 version 1",
        "GET",
        "/v1/secret/data/app?version=1",
        &t,
        "",
    );
    p.with(
        "KV v2 version 9",
        "GET",
        "/v1/secret/data/app?version=9",
        &t,
        "",
    );
    p.with(
        "KV v2 version abc",
        "GET",
        "/v1/secret/data/app?version=abc",
        &t,
        "",
    );
    p.with("KV v2 without data/", "GET", "/v1/secret/app", &t, "");
    p.with("KV v2 denied", "GET", "/v1/secret/data/other", &t, "");
    p.with("KV v2 missing", "GET", "/v1/secret/data/missing", &t, "");
    p.with("KV v1", "GET", "/v1/kv/app", &t, "");
    p.with("KV v1 missing", "GET", "/v1/kv/missing", &t, "");
    p.with("KV v1 denied", "GET", "/v1/kv/other", &t, "");
    p.with(
        "a write the policy denies",
        "POST",
        "/v1/kv/app",
        &t,
        r#"{"x":"1"}"#,
    );
    p.with(
        "a wrong method on a token endpoint",
        "DELETE",
        "/v1/auth/token/lookup-self",
        &t,
        "",
    );
    p.with("an unknown path", "GET", "/v1/nonexist/x", &t, "");
    // Leases by id: gone, missing, in the URL, a wrong method, revocation.
    let gone = r#"{"lease_id":"database/creds/app/AAAAAAAAAAAAAAAAAAAAAAAA"}"#;
    p.with(
        "renewing a lease that is gone",
        "PUT",
        "/v1/sys/leases/renew",
        &t,
        gone,
    );
    p.with(
        "renewing without a lease id",
        "PUT",
        "/v1/sys/leases/renew",
        &t,
        "{}",
    );
    p.with(
        "renewing with a negative increment",
        "PUT",
        "/v1/sys/leases/renew",
        &t,
        r#"{"lease_id":"x","increment":-5}"#,
    );
    p.with(
        "renewing with the id in the URL",
        "PUT",
        "/v1/sys/leases/renew/database/creds/app/x",
        &t,
        "",
    );
    p.with(
        "GET on sys/leases/renew",
        "GET",
        "/v1/sys/leases/renew",
        &t,
        "",
    );
    p.with(
        "revoking a lease that is gone",
        "PUT",
        "/v1/sys/leases/revoke",
        &t,
        gone,
    );
    p.with(
        "revoking without a lease id",
        "PUT",
        "/v1/sys/leases/revoke",
        &t,
        "{}",
    );
    // Health.
    p.open("sys/health", "GET", "/v1/sys/health", &[], "");
    p.open(
        "sys/health?activecode",
        "GET",
        "/v1/sys/health?activecode=299",
        &[],
        "",
    );
    p.open(
        "sys/health with a bad code",
        "GET",
        "/v1/sys/health?activecode=abc",
        &[],
        "",
    );
    p.open(
        "sys/health in a namespace",
        "GET",
        "/v1/sys/health",
        &[("X-Vault-Namespace", "admin")],
        "",
    );
    p.open("POST sys/health", "POST", "/v1/sys/health", &[], "");
    p.open("sys/seal-status", "GET", "/v1/sys/seal-status", &[], "");
    // Response wrapping, batch tokens, revocation.
    let wrap_body = |jwt: String| json!({"role": "app", "jwt": jwt}).to_string();
    let wrap_real = wrap_body(p.real.jwt("default", "app", &["vault"], 600));
    let wrap_emu = wrap_body(p.emu.jwt("default", "app", &["vault"], 600));
    p.ask(
        "a wrapped login",
        Ask {
            method: "POST",
            path: login,
            tokens: ("", ""),
            headers: &[("X-Vault-Wrap-TTL", "300")],
            bodies: (&wrap_real, &wrap_emu),
        },
    );
    let b = p.login("batch login", "batch", &[]);
    p.with(
        "batch lookup-self",
        "GET",
        "/v1/auth/token/lookup-self",
        &b,
        "",
    );
    p.with(
        "batch renew-self",
        "POST",
        "/v1/auth/token/renew-self",
        &b,
        "{}",
    );
    p.with(
        "batch revoke-self",
        "POST",
        "/v1/auth/token/revoke-self",
        &b,
        "",
    );
    p.with("revoke-self", "POST", "/v1/auth/token/revoke-self", &t, "");
    p.with(
        "lookup-self after revoke-self",
        "GET",
        "/v1/auth/token/lookup-self",
        &t,
        "",
    );
    p.with(
        "revoke-self again",
        "POST",
        "/v1/auth/token/revoke-self",
        &t,
        "",
    );
    assert_no_differences(&p);
}

#[test]
fn namespaces_answer_as_openbao() {
    let Some(mut p) = setup() else { return };
    let admin = [("X-Vault-Namespace", "admin")];
    let nope = [("X-Vault-Namespace", "nope")];
    let t = p.login("login in a namespace", "app", &admin);
    p.login("login in a namespace that does not exist", "app", &nope);
    p.login("login in the root, where the role is not", "nope", &[]);
    p.with(
        "lookup-self without the namespace header",
        "GET",
        "/v1/auth/token/lookup-self",
        &t,
        "",
    );
    p.with(
        "renew-self without the namespace header",
        "POST",
        "/v1/auth/token/renew-self",
        &t,
        "{}",
    );
    p.with(
        "lookup-self by path prefix",
        "GET",
        "/v1/admin/auth/token/lookup-self",
        &t,
        "",
    );
    p.ask(
        "lookup-self with the header",
        Ask {
            method: "GET",
            path: "/v1/auth/token/lookup-self",
            tokens: (&t.0, &t.1),
            headers: &admin,
            bodies: ("", ""),
        },
    );
    p.ask(
        "lookup-self in a namespace that does not exist",
        Ask {
            method: "GET",
            path: "/v1/auth/token/lookup-self",
            tokens: (&t.0, &t.1),
            headers: &nope,
            bodies: ("", ""),
        },
    );
    p.ask(
        "a KV read in a namespace that does not exist",
        Ask {
            method: "GET",
            path: "/v1/secret/data/app",
            tokens: (&t.0, &t.1),
            headers: &nope,
            bodies: ("", ""),
        },
    );
    p.with(
        "a root secret with a namespaced token",
        "GET",
        "/v1/secret/data/app",
        &t,
        "",
    );
    p.with(
        "a lease renewal in the root with a namespaced token",
        "PUT",
        "/v1/sys/leases/renew",
        &t,
        r#"{"lease_id":"x"}"#,
    );
    p.ask(
        "a lease renewal in the namespace",
        Ask {
            method: "PUT",
            path: "/v1/sys/leases/renew",
            tokens: (&t.0, &t.1),
            headers: &admin,
            bodies: (r#"{"lease_id":"x"}"#, r#"{"lease_id":"x"}"#),
        },
    );
    p.with(
        "revoke-self without the namespace header",
        "POST",
        "/v1/auth/token/revoke-self",
        &t,
        "",
    );
    assert_no_differences(&p);
}

#[test]
fn the_comparison_catches_the_vault_flavour() {
    // The check itself can fail: the Vault flavour's forms are not OpenBao's.
    let Some(mut p) = setup() else { return };
    p.emu.set_flavour(vault_emulator::Flavour::Vault);
    let t = p.login("login", "app", &[]);
    p.with("lookup-self", "GET", "/v1/auth/token/lookup-self", &t, "");
    p.with(
        "renew-self with an unknown token",
        "POST",
        "/v1/auth/token/renew-self",
        &Tokens::same("s.AAAAAAAAAAAAAAAAAAAAAAAA"),
        "{}",
    );
    let diffs = p.diffs.join("\n");
    for expected in [
        "only the emulator sends it",
        "<service token>",
        "invalid token",
    ] {
        assert!(diffs.contains(expected), "{expected:?} not among:\n{diffs}");
    }
}

/// Sleeps until `secs` after the whole second `base`.
fn sleep_until(base: u64, secs: f64) {
    let target = UNIX_EPOCH + Duration::from_secs(base) + Duration::from_secs_f64(secs);
    if let Ok(d) = target.duration_since(SystemTime::now()) {
        sleep(d);
    }
}

/// Seconds since `base` now.
fn since(base: u64) -> f64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    now.as_secs_f64() - base as f64
}

#[test]
fn a_token_at_its_max_ttl_is_capped_then_refused_as_openbao_does() {
    let Some(mut p) = setup() else { return };
    // Role `short`: TTL 4 s, max 5 s. Both log in just after a whole second B, so the max-TTL
    // deadline is B + 5 on both: a renewal at B + 3.5 is capped to 2 s (the token then lives
    // until B + 5.5), and one just after B + 5 is refused while the token is still valid. A
    // step that ran too late on a busy machine (the renewal after B + 3.95, the refusal after
    // B + 5.45) proves nothing: the scenario starts again, up to five times.
    let mut ran = false;
    for attempt in 1..=5 {
        let found = p.diffs.len();
        let base = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 1;
        sleep_until(base, 0.01);
        let t = p.login("login", "short", &[]);
        let on_time = since(base) < 0.9;
        sleep_until(base, 3.5);
        p.with(
            "renewal capped at the max TTL",
            "POST",
            "/v1/auth/token/renew-self",
            &t,
            "{}",
        );
        let on_time = on_time && since(base) < 3.95;
        sleep_until(base, 5.02);
        p.with(
            "renewal past the max TTL",
            "POST",
            "/v1/auth/token/renew-self",
            &t,
            "{}",
        );
        if on_time && since(base) < 5.45 {
            ran = true;
            break;
        }
        eprintln!("attempt {attempt}: a step ran late on a busy machine; starting again");
        p.diffs.truncate(found);
    }
    assert!(
        ran,
        "five attempts, each with a step too late to tell capped from refused"
    );
    assert_no_differences(&p);
}

#[test]
fn a_sealed_server_answers_as_openbao() {
    let Some(mut p) = setup() else { return };
    let t = p.login("login", "app", &[]);
    p.real.seal();
    p.emu.set_fault(Fault::Sealed);
    p.open("sys/health sealed", "GET", "/v1/sys/health", &[], "");
    p.open(
        "sys/health?sealedcode=200",
        "GET",
        "/v1/sys/health?sealedcode=200",
        &[],
        "",
    );
    p.open(
        "sys/seal-status sealed",
        "GET",
        "/v1/sys/seal-status",
        &[],
        "",
    );
    p.with(
        "lookup-self sealed",
        "GET",
        "/v1/auth/token/lookup-self",
        &t,
        "",
    );
    p.with(
        "renew-self sealed",
        "POST",
        "/v1/auth/token/renew-self",
        &t,
        "{}",
    );
    p.with("a KV read sealed", "GET", "/v1/secret/data/app", &t, "");
    p.open(
        "login sealed",
        "POST",
        "/v1/auth/kubernetes/login",
        &[],
        r#"{"role":"app","jwt":"x"}"#,
    );
    p.real.unseal();
    p.emu.clear_fault();
    p.open(
        "sys/health unsealed again",
        "GET",
        "/v1/sys/health",
        &[],
        "",
    );
    assert_no_differences(&p);
}

#[test]
fn database_credentials_and_their_lease_answer_as_openbao() {
    let Some(mut p) = setup() else { return };
    let Some(pg) = Postgres::start() else { return };
    let r = &p.real;
    r.cli(&["secrets", "enable", "database"]);
    r.api(
        "POST",
        "/v1/database/config/pg",
        Some(json!({
            "plugin_name": "postgresql-database-plugin",
            "connection_url": pg.connection_url(),
            "username": "postgres",
            "password": pg.superuser_password(),
            "allowed_roles": ["app"],
        })),
    );
    r.api(
        "POST",
        "/v1/database/roles/app",
        Some(json!({
            "db_name": "pg",
            "creation_statements": [
                "CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';"
            ],
            "default_ttl": 60,
            "max_ttl": 3600,
        })),
    );
    p.emu.put_dynamic_role(
        "database",
        "app",
        DynamicRole {
            default_ttl: Duration::from_secs(60),
            max_ttl: Duration::from_secs(3600),
            renewable: true,
        },
    );
    let t = p.login("login", "app", &[]);
    let (real, emu) = p.with(
        "database credentials",
        "GET",
        "/v1/database/creds/app",
        &t,
        "",
    );
    p.with(
        "an unknown database role",
        "GET",
        "/v1/database/creds/nope",
        &t,
        "",
    );
    let lease = |v: &Value| v["lease_id"].as_str().unwrap_or_default().to_string();
    let ids = Tokens(lease(&real), lease(&emu));
    let body = |id: &str, inc: &str| format!(r#"{{"lease_id":{id:?}{inc}}}"#);
    let renew = (
        body(&ids.0, r#","increment":30"#),
        body(&ids.1, r#","increment":30"#),
    );
    let plain = (body(&ids.0, ""), body(&ids.1, ""));
    for (what, path, bodies) in [
        ("renewing the lease", "/v1/sys/leases/renew", &renew),
        ("revoking the lease", "/v1/sys/leases/revoke", &plain),
        ("renewing the revoked lease", "/v1/sys/leases/renew", &plain),
    ] {
        p.ask(
            what,
            Ask {
                method: "PUT",
                path,
                tokens: (&t.0, &t.1),
                headers: &[],
                bodies: (&bodies.0, &bodies.1),
            },
        );
    }
    namespaced_database_lease(&mut p, &pg);
    assert_no_differences(&p);
}

/// The PKI engine on both: a root CA `shop.svc` (the real one tuned to 87600 h like the
/// emulator's), roles `web` (EC P-256, `*.shop.svc`, max TTL 72 h), `lease` (the same with
/// `generate_lease`) and `noip` (no IP SANs).
fn pki_setup(p: &Pair) {
    let r = &p.real;
    r.cli(&["secrets", "enable", "pki"]);
    r.cli(&["secrets", "tune", "-max-lease-ttl=87600h", "pki"]);
    r.cli(&[
        "write",
        "pki/root/generate/internal",
        "common_name=shop.svc",
        "ttl=87600h",
        "key_type=ec",
    ]);
    let base = [
        "allowed_domains=shop.svc",
        "allow_subdomains=true",
        "max_ttl=72h",
        "key_type=ec",
        "key_bits=256",
    ];
    for (name, extra) in [
        ("web", None),
        ("lease", Some("generate_lease=true")),
        ("noip", Some("allow_ip_sans=false")),
    ] {
        let path = format!("pki/roles/{name}");
        let mut args = vec!["write", path.as_str()];
        args.extend(base);
        args.extend(extra);
        r.cli(&args);
    }
    p.emu.enable_pki("pki", "shop.svc");
    let web = PkiRole {
        allowed_domains: vec!["shop.svc".into()],
        allow_subdomains: true,
        max_ttl: Duration::from_secs(72 * 3600),
        key_type: PkiKeyType::EcP256,
        ..PkiRole::default()
    };
    p.emu.put_pki_role("pki", "web", web.clone());
    p.emu.put_pki_role(
        "pki",
        "lease",
        PkiRole {
            generate_lease: true,
            ..web.clone()
        },
    );
    p.emu.put_pki_role(
        "pki",
        "noip",
        PkiRole {
            allow_ip_sans: false,
            ..web
        },
    );
}

/// What `openssl x509` says of a certificate's subject and extensions (key identifiers
/// masked), or `None` without openssl.
fn openssl_view(pem: &str) -> Option<Vec<String>> {
    let dir = tempfile::tempdir().ok()?;
    let file = dir.path().join("cert.pem");
    std::fs::write(&file, pem).ok()?;
    let out = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-subject", "-ext"])
        .arg("subjectAltName,keyUsage,extendedKeyUsage,basicConstraints")
        .arg("-in")
        .arg(&file)
        .output()
        .ok()?;
    assert!(out.status.success(), "openssl x509: {out:?}");
    Some(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.trim().to_string())
            .collect(),
    )
}

/// `openssl verify` of the leaf `pem` against the CA `ca`: `Some(true)` when it verifies.
fn openssl_verifies(pem: &str, ca: &str) -> Option<bool> {
    let dir = tempfile::tempdir().ok()?;
    let (leaf, root) = (dir.path().join("leaf.pem"), dir.path().join("ca.pem"));
    std::fs::write(&leaf, pem).ok()?;
    std::fs::write(&root, ca).ok()?;
    let out = std::process::Command::new("openssl")
        .arg("verify")
        .arg("-CAfile")
        .arg(&root)
        .arg(&leaf)
        .output()
        .ok()?;
    Some(out.status.success())
}

#[test]
fn pki_issue_and_its_refusals_answer_as_openbao() {
    let Some(mut p) = setup() else { return };
    pki_setup(&p);
    let t = p.login("login", "app", &[]);
    let issue = "/v1/pki/issue/web";
    let full = r#"{"common_name":"app.shop.svc","alt_names":"api.shop.svc,*.app.shop.svc","ip_sans":"10.0.0.1,::1","ttl":"1h"}"#;
    let (real, emu) = p.with("an issue with every name", "PUT", issue, &t, full);
    // The certificates themselves: the same subject and extensions, each verifying against
    // its own CA.
    let cert = |v: &Value, k: &str| v["data"][k].as_str().unwrap_or_default().to_string();
    match (
        openssl_view(&cert(&real, "certificate")),
        openssl_view(&cert(&emu, "certificate")),
    ) {
        (Some(r), Some(e)) => {
            if r != e {
                p.diffs
                    .push(format!("the certificate: real {r:?}, emulator {e:?}"));
            }
            for (side, v) in [("real", &real), ("emulator", &emu)] {
                let ok = openssl_verifies(&cert(v, "certificate"), &cert(v, "issuing_ca"));
                assert_eq!(ok, Some(true), "{side}: openssl verify failed");
            }
        }
        _ => eprintln!("no openssl here: the certificates' contents were not compared"),
    }
    for (what, body) in [
        (
            "an issue without a TTL",
            r#"{"common_name":"app.shop.svc"}"#,
        ),
        (
            "an issue over the role's max TTL",
            r#"{"common_name":"app.shop.svc","ttl":"100h"}"#,
        ),
        (
            "an issue with a TTL in seconds",
            r#"{"common_name":"app.shop.svc","ttl":30}"#,
        ),
        (
            "a name outside the role's domains",
            r#"{"common_name":"app.other.svc"}"#,
        ),
        (
            "a bare domain the role does not allow",
            r#"{"common_name":"shop.svc"}"#,
        ),
        ("an upper-case name", r#"{"common_name":"App.shop.svc"}"#),
        (
            "an alt name outside the role's domains",
            r#"{"common_name":"app.shop.svc","alt_names":"b.other","ip_sans":"1.2.3"}"#,
        ),
        (
            "a bad IP SAN",
            r#"{"common_name":"app.shop.svc","ip_sans":"10.0.0"}"#,
        ),
        ("no common name", r#"{"ttl":"1h"}"#),
        (
            "a TTL that is not a duration",
            r#"{"common_name":"app.shop.svc","ttl":"soon"}"#,
        ),
        (
            "a negative TTL",
            r#"{"common_name":"app.shop.svc","ttl":"-5s"}"#,
        ),
        (
            "a PKCS#8 key",
            r#"{"common_name":"app.shop.svc","ttl":"1h","private_key_format":"pkcs8"}"#,
        ),
        (
            "the common name left out of the SANs",
            r#"{"common_name":"app.shop.svc","ttl":"1h","exclude_cn_from_sans":"true"}"#,
        ),
        (
            "parameters the endpoint does not know",
            r#"{"common_name":"app.shop.svc","ttl":"1h","zeta":"1","alpha":"2"}"#,
        ),
        (
            "a format that does not exist",
            r#"{"common_name":"app.shop.svc","format":"jpeg"}"#,
        ),
    ] {
        p.with(what, "PUT", issue, &t, body);
    }
    let cn = r#"{"common_name":"app.shop.svc","ttl":"1h"}"#;
    p.with(
        "a role that does not exist",
        "PUT",
        "/v1/pki/issue/nope",
        &t,
        cn,
    );
    p.with(
        "a role the policy does not grant",
        "PUT",
        "/v1/pki/issue/other",
        &t,
        cn,
    );
    p.with(
        "IP SANs on a role without them",
        "PUT",
        "/v1/pki/issue/noip",
        &t,
        r#"{"common_name":"app.shop.svc","ip_sans":"10.0.0.1"}"#,
    );
    p.with("GET on the issue path", "GET", issue, &t, "");
    p.with(
        "an issue without a token",
        "PUT",
        issue,
        &Tokens::same(""),
        cn,
    );
    // generate_lease: a lease that is not renewable; revoking it.
    let (real, emu) = p.with(
        "an issue with a lease",
        "PUT",
        "/v1/pki/issue/lease",
        &t,
        r#"{"common_name":"app.shop.svc","ttl":"20s"}"#,
    );
    let lease = |v: &Value| format!(r#"{{"lease_id":{}}}"#, v["lease_id"]);
    let bodies = (lease(&real), lease(&emu));
    for (what, path) in [
        ("renewing a certificate's lease", "/v1/sys/leases/renew"),
        ("revoking a certificate's lease", "/v1/sys/leases/revoke"),
    ] {
        p.ask(
            what,
            Ask {
                method: "PUT",
                path,
                tokens: (&t.0, &t.1),
                headers: &[],
                bodies: (&bodies.0, &bodies.1),
            },
        );
    }
    // The serials of every certificate so far, the CA's among them.
    p.with("LIST pki/certs", "LIST", "/v1/pki/certs", &t, "");
    p.with(
        "GET pki/certs?list=true",
        "GET",
        "/v1/pki/certs?list=true",
        &t,
        "",
    );
    assert_no_differences(&p);
}

#[test]
fn template_mount_lookups_lists_and_writes_answer_as_openbao() {
    let Some(mut p) = setup() else { return };
    pki_setup(&p);
    for (path, data) in [("app/sub", "x=1"), ("zz", "x=1")] {
        p.real.cli(&["kv", "put", &format!("secret/{path}"), data]);
        p.emu.put_kv2("secret", path, json!({"x": "1"}));
    }
    p.real.cli(&["write", "kv/dir/a", "x=1"]);
    p.emu.put_kv1("kv", "dir/a", json!({"x": "1"}));
    let t = p.login("login", "app", &[]);
    // The KV v2 rewrite's lookup (`sys/internal/ui/mounts/<path>`), for each kind of mount.
    let mounts = "/v1/sys/internal/ui/mounts";
    for (what, path) in [
        ("the mount of a KV v2 secret", "secret/app"),
        (
            "the mount of a KV v2 secret the token cannot read",
            "secret/other",
        ),
        ("the mount of a KV v1 secret", "kv/app"),
        ("the mount of a PKI role", "pki/issue/web"),
        ("a path no mount serves", "nope/x"),
    ] {
        p.with(what, "GET", &format!("{mounts}/{path}"), &t, "");
    }
    p.with(
        "a mount lookup without a token",
        "GET",
        &format!("{mounts}/secret/app"),
        &Tokens::same(""),
        "",
    );
    p.with(
        "PUT on a mount lookup",
        "PUT",
        &format!("{mounts}/secret/app"),
        &t,
        "{}",
    );
    // `secrets` (LIST).
    for (what, path) in [
        ("LIST of KV v2 metadata", "/v1/secret/metadata/"),
        (
            "LIST of KV v2 metadata without the slash",
            "/v1/secret/metadata",
        ),
        ("LIST of a KV v1 mount", "/v1/kv/"),
        (
            "LIST of a KV v1 folder the policy does not grant",
            "/v1/kv/dir",
        ),
    ] {
        p.with(what, "LIST", path, &t, "");
    }
    p.with(
        "GET ?list=true of a KV v1 mount",
        "GET",
        "/v1/kv/?list=true",
        &t,
        "",
    );
    // `secret` with k=v arguments (a write).
    let kv = r#"{"password":"written"}"#;
    p.with("a KV v1 write", "PUT", "/v1/kv/written", &t, kv);
    p.with("reading the KV v1 write", "GET", "/v1/kv/written", &t, "");
    p.with(
        "a KV v1 write the policy denies",
        "PUT",
        "/v1/kv/app",
        &t,
        kv,
    );
    p.with(
        "a KV v1 write of a new secret with update but not create",
        "PUT",
        "/v1/kv/update-only",
        &t,
        kv,
    );
    p.with("a KV v1 write again", "PUT", "/v1/kv/written", &t, kv);
    p.with(
        "LIST of KV v2 data, which is not a folder",
        "LIST",
        "/v1/secret/data/",
        &t,
        "",
    );
    p.with(
        "a KV v2 write without data",
        "PUT",
        "/v1/secret/data/written",
        &t,
        kv,
    );
    p.with(
        "a KV v2 write",
        "PUT",
        "/v1/secret/data/written",
        &t,
        r#"{"data":{"password":"written"}}"#,
    );
    p.with(
        "reading the KV v2 write",
        "GET",
        "/v1/secret/data/written",
        &t,
        "",
    );
    p.with(
        "a PKI issue from a template",
        "PUT",
        "/v1/pki/issue/web",
        &t,
        r#"{"common_name":"app.shop.svc","ttl":"1h"}"#,
    );
    assert_no_differences(&p);
}

/// The database engine in namespace `admin`, on the same PostgreSQL: a lease id ending in
/// `.<namespace id>`, renewed with and without the namespace header (the id names it), revoked,
/// then gone.
fn namespaced_database_lease(p: &mut Pair, pg: &Postgres) {
    let admin = [("X-Vault-Namespace", "admin")];
    let r = &p.real;
    r.cli(&["secrets", "enable", "-namespace=admin", "database"]);
    let root = r.root_token();
    let post = |path: &str, body: Value| {
        let (status, answer) = r.http("POST", path, Some(&root), &admin, Some(&body.to_string()));
        assert!(
            status < 300,
            "{path}: {status} {}",
            String::from_utf8_lossy(&answer)
        );
    };
    post(
        "/v1/database/config/pg",
        json!({
            "plugin_name": "postgresql-database-plugin",
            "connection_url": pg.connection_url(),
            "username": "postgres",
            "password": pg.superuser_password(),
            "allowed_roles": ["app"],
        }),
    );
    post(
        "/v1/database/roles/app",
        json!({
            "db_name": "pg",
            "creation_statements": [
                "CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';"
            ],
            "default_ttl": 60,
            "max_ttl": 3600,
        }),
    );
    let db_policy: &[(&str, &[&str])] = &[
        ("database/creds/app", &["read"]),
        ("sys/leases/revoke", &["update"]),
    ];
    post(
        "/v1/sys/policies/acl/db",
        json!({ "policy": hcl(db_policy) }),
    );
    p.emu.put_policy_in("admin", "db", db_policy);
    p.emu.put_dynamic_role_in(
        "admin",
        "database",
        "app",
        DynamicRole {
            default_ttl: Duration::from_secs(60),
            max_ttl: Duration::from_secs(3600),
            renewable: true,
        },
    );
    role(p, "admin", "db", 60, 3600, &["db"], false);
    let t = p.login("login in the namespace", "db", &admin);
    let (real, emu) = p.ask(
        "database credentials in the namespace",
        Ask {
            method: "GET",
            path: "/v1/database/creds/app",
            tokens: (&t.0, &t.1),
            headers: &admin,
            bodies: ("", ""),
        },
    );
    let body = |v: &Value, inc: &str| format!(r#"{{"lease_id":{}{inc}}}"#, v["lease_id"]);
    let renew = (
        body(&real, r#","increment":30"#),
        body(&emu, r#","increment":30"#),
    );
    let plain = (body(&real, ""), body(&emu, ""));
    let none: &[(&str, &str)] = &[];
    for (what, path, headers, bodies) in [
        (
            "renewing the namespaced lease",
            "/v1/sys/leases/renew",
            &admin[..],
            &renew,
        ),
        (
            "renewing the namespaced lease without the header",
            "/v1/sys/leases/renew",
            none,
            &renew,
        ),
        (
            "revoking the namespaced lease",
            "/v1/sys/leases/revoke",
            &admin[..],
            &plain,
        ),
        (
            "renewing the revoked namespaced lease",
            "/v1/sys/leases/renew",
            &admin[..],
            &plain,
        ),
    ] {
        p.ask(
            what,
            Ask {
                method: "PUT",
                path,
                tokens: (&t.0, &t.1),
                headers,
                bodies: (&bodies.0, &bodies.1),
            },
        );
    }
}
