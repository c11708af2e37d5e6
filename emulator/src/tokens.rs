//! The token store and Vault's TTL arithmetic (`CalculateTTL` in vault/sdk/framework), plus the
//! formats Vault prints: Go durations, RFC 3339 timestamps, random ids.
//!
//! # Time precision, as in Vault
//! - `CalculateTTL` truncates both `now` and the token's issue time to the second before doing
//!   any arithmetic, so every TTL it returns (and every duration in its warnings) is a whole
//!   number of seconds, and the max-TTL deadline is `trunc(issue time) + max TTL`, a whole
//!   second ([`TokenEntry::max_valid`]).
//! - The token's expiry is the *precise* time of the login or renewal plus that TTL
//!   (`LeaseOptions.ExpirationTime` is `time.Now().Add(TTL)`), and a token is refused from that
//!   instant on. Issue and expiry times are therefore kept as [`SystemTime`]s.
//! - A renewal in the last partial second before the deadline finds `maxValidTTL <= 0` and is
//!   refused (500, `past the max TTL, cannot renew`) without touching the token, which stays
//!   valid until its previous expiry; a renewal in the second before that grants 1 s and lets
//!   the token outlive the deadline by less than a second.
//! - lookup-self's `ttl` is `int64(ExpireTime.Sub(time.Now().Round(time.Second)).Seconds())`
//!   ([`TokenEntry::ttl_secs`]).

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ring::rand::{SecureRandom, SystemRandom};

use crate::{TokenInfo, TokenType};

/// The mount's `default_lease_ttl` and `max_lease_ttl` (Vault's system default, 768 h).
pub(crate) const MOUNT_TTL_SECS: i64 = 768 * 3600;

/// The service account a token was issued to.
#[derive(Clone, Debug, Default)]
pub(crate) struct ServiceAccount {
    pub name: String,
    pub namespace: String,
    pub uid: String,
    pub secret_name: String,
}

/// One issued token.
#[derive(Clone, Debug)]
pub(crate) struct TokenEntry {
    pub id: String,
    pub accessor: String,
    pub token_type: TokenType,
    pub renewable: bool,
    pub policies: Vec<String>,
    /// The Vault namespace it was created in (`""`: root).
    pub vault_ns: String,
    pub mount: String,
    pub role: String,
    pub sa: ServiceAccount,
    pub entity_id: String,
    pub creation_time: SystemTime,
    pub creation_ttl: i64,
    pub explicit_max_ttl: i64,
    pub period: i64,
    /// The unix second (issue time truncated to the second, plus the effective max TTL) from
    /// which renewals are refused (see [`TtlOutcome::max_valid`]).
    pub max_valid: Option<i64>,
    pub expire_time: SystemTime,
    pub last_renewal: Option<SystemTime>,
    pub renewals: u32,
}

impl TokenEntry {
    /// A token stops working once `now >= expire_time`.
    pub fn is_live(&self, now: SystemTime) -> bool {
        now < self.expire_time
    }

    /// lookup-self's `ttl`: Vault's `leaseEntry.ttl()`, which rounds `now` to the nearest second
    /// (halves up, like Go's `Time.Round`) and truncates the rest toward zero.
    pub fn ttl_secs(&self, now: SystemTime) -> i64 {
        let left = unix_nanos(self.expire_time) - round_to_second(unix_nanos(now));
        i64::try_from(left / NANOS).unwrap_or(i64::MAX)
    }
}

/// Tokens by id; revoked tokens are removed, expired ones stay but count as unknown.
#[derive(Default)]
pub(crate) struct TokenStore {
    tokens: HashMap<String, TokenEntry>,
    issued: usize,
    /// Every secret handed out, as (token, accessor), for leak checks.
    history: Vec<(String, String)>,
}

impl TokenStore {
    pub fn insert(&mut self, entry: TokenEntry) {
        self.issued += 1;
        self.remember(&entry.id, &entry.accessor);
        self.tokens.insert(entry.id.clone(), entry);
    }

    /// Records a secret that is not a login token (a response-wrapping token).
    pub fn remember(&mut self, token: &str, accessor: &str) {
        self.history.push((token.to_string(), accessor.to_string()));
    }

    pub fn issued(&self) -> usize {
        self.issued
    }

    pub fn history(&self) -> &[(String, String)] {
        &self.history
    }

    /// The token if it exists and has not expired.
    pub fn live_mut(&mut self, id: &str, now: SystemTime) -> Option<&mut TokenEntry> {
        self.tokens.get_mut(id).filter(|t| t.is_live(now))
    }

    pub fn info(&self, id: &str, now: SystemTime) -> Option<TokenInfo> {
        let t = self.tokens.get(id).filter(|t| t.is_live(now))?;
        Some(TokenInfo {
            accessor: t.accessor.clone(),
            policies: t.policies.clone(),
            ttl: t.expire_time.duration_since(now).unwrap_or_default(),
            renewable: t.renewable,
            token_type: t.token_type,
            expire_time: t.expire_time,
            max_expire_time: t.max_valid.map(from_unix),
            renewals: t.renewals,
            role: t.role.clone(),
            namespace: t.sa.namespace.clone(),
            service_account: t.sa.name.clone(),
        })
    }

    pub fn revoke(&mut self, id: &str) {
        self.tokens.remove(id);
    }

    pub fn revoke_all(&mut self) {
        self.tokens.clear();
    }
}

/// Inputs of `CalculateTTL`, in whole seconds (0 = unset).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct TtlInput {
    /// Requested by the client on renewal.
    pub increment: i64,
    /// The role's `token_ttl`.
    pub backend_ttl: i64,
    /// The role's `token_period`.
    pub period: i64,
    /// The role's `token_max_ttl`.
    pub backend_max_ttl: i64,
    /// The token's `explicit_max_ttl`.
    pub explicit_max_ttl: i64,
}

/// What `CalculateTTL` decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TtlOutcome {
    pub ttl: i64,
    pub warnings: Vec<String>,
    /// Unix second beyond which the token cannot be extended, when bounded.
    pub max_valid: Option<i64>,
}

/// Vault's `CalculateTTL` (vault/sdk/framework/lease.go): `now` and `start` (the token's issue
/// time) are unix seconds, already truncated as Vault truncates them, so the TTL is whole
/// seconds. The caller sets the expiry to the precise current time plus the TTL.
pub(crate) fn calculate_ttl(
    input: TtlInput,
    now: i64,
    start: i64,
) -> Result<TtlOutcome, &'static str> {
    let mut max_ttl = MOUNT_TTL_SECS;
    if input.backend_max_ttl > 0 && input.backend_max_ttl < max_ttl {
        max_ttl = input.backend_max_ttl;
    }
    if input.explicit_max_ttl > 0 && input.explicit_max_ttl < max_ttl {
        max_ttl = input.explicit_max_ttl;
    }
    let mut warnings = Vec::new();
    let (mut ttl, max_valid) = if input.period > 0 {
        let mut period = input.period;
        if period > max_ttl {
            warnings.push(format!(
                "period of \"{}\" exceeded the effective max_ttl of \"{}\"; period value is capped accordingly",
                human_duration(period),
                human_duration(max_ttl)
            ));
            period = max_ttl;
        }
        let max_valid = (input.explicit_max_ttl > 0).then(|| start + input.explicit_max_ttl);
        (period, max_valid)
    } else {
        let ttl = if input.increment > 0 {
            input.increment
        } else if input.backend_ttl > 0 {
            input.backend_ttl
        } else {
            MOUNT_TTL_SECS
        };
        (ttl, Some(start + max_ttl))
    };
    if let Some(max_valid) = max_valid {
        let max_valid_ttl = max_valid - now;
        // Current Vault refuses at zero too (older releases checked `< 0` and granted a zero TTL).
        if max_valid_ttl <= 0 {
            return Err("past the max TTL, cannot renew");
        }
        if max_valid_ttl < ttl {
            warnings.push(format!(
                "TTL of \"{}\" exceeded the effective max_ttl of \"{}\"; TTL value is capped accordingly",
                human_duration(ttl),
                human_duration(max_valid_ttl)
            ));
            ttl = max_valid_ttl;
        }
    }
    Ok(TtlOutcome {
        ttl,
        warnings,
        max_valid,
    })
}

/// Vault's `humanDuration` (sdk/framework/lease.go, hashicorp/vault#7901), which its TTL
/// warnings use: Go's `Duration.String()` without zero elements: `0s`, `45s`, `9m30s`, `5m`,
/// `1h`, `1h5s`, `768h`.
pub(crate) fn human_duration(secs: i64) -> String {
    let mut s = go_duration(secs);
    if s.ends_with("m0s") {
        s.truncate(s.len() - 2);
    }
    if let Some(i) = s.find("h0m").filter(|&i| i > 0) {
        s.replace_range(i + 1..i + 3, "");
    }
    s
}

/// Go's `time.Duration.String()` for whole seconds: `0s`, `45s`, `9m30s`, `1h0m0s`.
pub(crate) fn go_duration(secs: i64) -> String {
    if secs == 0 {
        return "0s".into();
    }
    let sign = if secs < 0 { "-" } else { "" };
    let s = secs.unsigned_abs();
    let (h, m, s) = (s / 3600, s / 60 % 60, s % 60);
    match (h, m) {
        (0, 0) => format!("{sign}{s}s"),
        (0, _) => format!("{sign}{m}m{s}s"),
        _ => format!("{sign}{h}h{m}m{s}s"),
    }
}

/// Parses a Vault duration the way `parseutil.ParseDurationSecond` does: a JSON number or a
/// digit string is seconds, otherwise a Go duration (`90s`, `1h30m`, `1.5h`) or days (`2d`).
/// Returns whole seconds, truncated.
pub(crate) fn parse_duration(value: &serde_json::Value) -> Option<i64> {
    match value {
        serde_json::Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        serde_json::Value::String(s) => parse_duration_str(s),
        _ => None,
    }
}

/// Parses a renewal's `increment` as OpenBao's field validation does: whole seconds (a JSON
/// integer or a digit string) or a Go duration; a negative value or anything else is a 400
/// whose message is returned.
pub(crate) fn parse_increment(value: &serde_json::Value) -> Result<i64, String> {
    parse_duration_field("increment", value)
}

/// Parses duration field `name` (a renewal's `increment`, an issue's `ttl`) as OpenBao's field
/// validation does: see [`parse_increment`].
pub(crate) fn parse_duration_field(name: &str, value: &serde_json::Value) -> Result<i64, String> {
    let field = |why: String| {
        format!("Field validation failed: error converting input for field \"{name}\": {why}")
    };
    let secs = match value {
        serde_json::Value::Null => return Ok(0),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => i,
            None => go_duration_secs(&n.to_string()).map_err(field)?,
        },
        serde_json::Value::String(s) => match s.trim().parse::<i64>() {
            Ok(i) => i,
            Err(_) if s.trim().is_empty() => 0,
            Err(_) => go_duration_secs(s.trim()).map_err(field)?,
        },
        _ => return Err(field("could not parse duration from input".into())),
    };
    if secs < 0 {
        return Err(field(format!("cannot provide negative value '{secs}'")));
    }
    Ok(secs)
}

/// Go's `time.ParseDuration` in whole seconds (truncated), with Go's error texts.
fn go_duration_secs(s: &str) -> Result<i64, String> {
    let invalid = || format!("time: invalid duration {s:?}");
    let (sign, mut rest) = match s.strip_prefix('-') {
        Some(r) => (-1.0, r),
        None => (1.0, s.strip_prefix('+').unwrap_or(s)),
    };
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut total = 0.0_f64;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number: f64 = rest[..num_len].parse().map_err(|_| invalid())?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "" => return Err(format!("time: missing unit in duration {s:?}")),
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            unit => return Err(format!("time: unknown unit {unit:?} in duration {s:?}")),
        };
        rest = &rest[unit_len..];
        total += number * scale;
    }
    Ok((sign * total) as i64)
}

fn parse_duration_str(s: &str) -> Option<i64> {
    let s = s.trim();
    if s.is_empty() {
        return Some(0);
    }
    if let Ok(n) = s.parse::<i64>() {
        return Some(n);
    }
    let (sign, mut rest) = match s.strip_prefix('-') {
        Some(r) => (-1.0, r),
        None => (1.0, s.strip_prefix('+').unwrap_or(s)),
    };
    let mut total = 0.0_f64;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "d" => 86400.0,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += number * scale;
    }
    Some((sign * total) as i64)
}

/// Whole unix seconds by the system clock, for tests of the arithmetic; the server reads
/// [`crate::state::State::now`].
/// The token's display name: the mount's path from the root namespace (`kubernetes`, or
/// `admin/auth/kubernetes` in a namespace, the `auth/` prefix only stripped at the start) with
/// `/` as `-`, then the service account.
pub(crate) fn display_name(t: &TokenEntry) -> String {
    let source = if t.vault_ns.is_empty() {
        t.mount.clone()
    } else {
        format!("{}/auth/{}", t.vault_ns, t.mount)
    };
    format!(
        "{}-{}-{}",
        source.replace('/', "-"),
        t.sa.namespace,
        t.sa.name
    )
}

#[cfg(test)]
pub(crate) fn unix_now() -> i64 {
    unix_secs(SystemTime::now())
}

pub(crate) fn unix_secs(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    }
}

const NANOS: i128 = 1_000_000_000;

/// Signed nanoseconds since the epoch.
fn unix_nanos(t: SystemTime) -> i128 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_nanos() as i128,
        Err(e) => -(e.duration().as_nanos() as i128),
    }
}

/// Go's `Time.Round(time.Second)` on unix nanoseconds: to the nearest second, halves up.
fn round_to_second(nanos: i128) -> i128 {
    let rem = nanos.rem_euclid(NANOS);
    if rem * 2 < NANOS {
        nanos - rem
    } else {
        nanos - rem + NANOS
    }
}

pub(crate) fn from_unix(secs: i64) -> SystemTime {
    if secs >= 0 {
        UNIX_EPOCH + Duration::from_secs(secs as u64)
    } else {
        UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs())
    }
}

/// RFC 3339 in UTC with trailing-zero-trimmed nanoseconds, as Go's JSON encoding prints times.
pub(crate) fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    let (y, mo, da) = civil_from_days(days);
    let mut out = format!(
        "{y:04}-{mo:02}-{da:02}T{:02}:{:02}:{:02}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    );
    let nanos = d.subsec_nanos();
    if nanos > 0 {
        let frac = format!("{nanos:09}");
        out.push('.');
        out.push_str(frac.trim_end_matches('0'));
    }
    out.push('Z');
    out
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut buf = [0u8; N];
    // The OS RNG fails only on platforms without one, where nothing here could work.
    SystemRandom::new()
        .fill(&mut buf)
        .expect("the operating system's random number generator failed");
    buf
}

pub(crate) const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// `len` random bytes.
pub(crate) fn random_bytes_vec(len: usize) -> Vec<u8> {
    let mut buf = vec![0u8; len];
    // The OS RNG fails only on platforms without one, where nothing here could work.
    SystemRandom::new()
        .fill(&mut buf)
        .expect("the operating system's random number generator failed");
    buf
}

/// `len` random base62 characters, like Vault's token and accessor bodies.
pub(crate) fn random_base62(len: usize) -> String {
    let mut out = String::with_capacity(len);
    while out.len() < len {
        for b in random_bytes::<64>() {
            // Rejection sampling keeps the characters uniform.
            if b < 248 && out.len() < len {
                out.push(BASE62[usize::from(b % 62)] as char);
            }
        }
    }
    out
}

/// A random UUID (version 4), as Vault's request and entity ids look.
pub(crate) fn random_uuid() -> String {
    let mut b = random_bytes::<16>();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    format_uuid(&b)
}

/// A UUID-shaped id derived from `seed`, for ids that must be stable (service-account uids).
pub(crate) fn stable_uuid(seed: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, seed.as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&digest.as_ref()[..16]);
    b[6] = (b[6] & 0x0f) | 0x50;
    b[8] = (b[8] & 0x3f) | 0x80;
    format_uuid(&b)
}

fn format_uuid(b: &[u8; 16]) -> String {
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(increment: i64, ttl: i64, max: i64) -> TtlInput {
        TtlInput {
            increment,
            backend_ttl: ttl,
            backend_max_ttl: max,
            ..TtlInput::default()
        }
    }

    #[test]
    fn ttl_prefers_increment_then_role_then_mount_default() {
        let start = 1_000;
        assert_eq!(
            calculate_ttl(input(60, 10, 0), start, start).unwrap().ttl,
            60
        );
        assert_eq!(
            calculate_ttl(input(0, 10, 0), start, start).unwrap().ttl,
            10
        );
        assert_eq!(
            calculate_ttl(input(0, 0, 0), start, start).unwrap().ttl,
            MOUNT_TTL_SECS
        );
    }

    #[test]
    fn ttl_is_capped_by_the_time_left_before_max_with_a_warning() {
        let out = calculate_ttl(input(3600, 0, 600), 1_030, 1_000).unwrap();
        assert_eq!(out.ttl, 570);
        assert_eq!(out.max_valid, Some(1_600));
        assert_eq!(
            out.warnings,
            vec![
                "TTL of \"1h\" exceeded the effective max_ttl of \"9m30s\"; TTL value is capped accordingly"
            ]
        );
    }

    #[test]
    fn explicit_max_ttl_wins_when_smaller() {
        let mut i = input(0, 100, 600);
        i.explicit_max_ttl = 50;
        let out = calculate_ttl(i, 1_000, 1_000).unwrap();
        assert_eq!((out.ttl, out.max_valid), (50, Some(1_050)));
    }

    #[test]
    fn the_second_before_max_grants_one_second_and_at_or_past_max_renewal_fails() {
        let out = calculate_ttl(input(0, 10, 20), 1_019, 1_000).unwrap();
        assert_eq!((out.ttl, out.max_valid), (1, Some(1_020)));
        assert_eq!(
            out.warnings,
            vec!["TTL of \"10s\" exceeded the effective max_ttl of \"1s\"; TTL value is capped accordingly"]
        );
        for now in [1_020, 1_021] {
            assert_eq!(
                calculate_ttl(input(0, 10, 20), now, 1_000),
                Err("past the max TTL, cannot renew")
            );
        }
    }

    #[test]
    fn a_ttl_that_ends_exactly_at_max_is_not_capped() {
        let out = calculate_ttl(input(0, 10, 20), 1_010, 1_000).unwrap();
        assert_eq!(out.ttl, 10);
        assert!(out.warnings.is_empty());
    }

    #[test]
    fn period_ignores_increment_and_max_ttl() {
        let i = TtlInput {
            increment: 5,
            period: 30,
            backend_max_ttl: 10,
            ..TtlInput::default()
        };
        let out = calculate_ttl(i, 5_000, 1_000).unwrap();
        assert_eq!(out.ttl, 10, "period is capped by the effective max_ttl");
        assert_eq!(out.max_valid, None);
        assert_eq!(
            out.warnings,
            vec!["period of \"30s\" exceeded the effective max_ttl of \"10s\"; period value is capped accordingly"]
        );

        let i = TtlInput {
            increment: 5,
            period: 30,
            explicit_max_ttl: 100,
            ..TtlInput::default()
        };
        let out = calculate_ttl(i, 1_080, 1_000).unwrap();
        assert_eq!((out.ttl, out.max_valid), (20, Some(1_100)));
    }

    #[test]
    fn go_durations() {
        assert_eq!(go_duration(0), "0s");
        assert_eq!(go_duration(45), "45s");
        assert_eq!(go_duration(570), "9m30s");
        assert_eq!(go_duration(3600), "1h0m0s");
        assert_eq!(go_duration(768 * 3600), "768h0m0s");
        assert_eq!(go_duration(-61), "-1m1s");
    }

    #[test]
    fn human_durations_drop_zero_elements_like_vault() {
        assert_eq!(human_duration(0), "0s");
        assert_eq!(human_duration(1), "1s");
        assert_eq!(human_duration(45), "45s");
        assert_eq!(human_duration(300), "5m");
        assert_eq!(human_duration(570), "9m30s");
        assert_eq!(human_duration(3600), "1h");
        assert_eq!(human_duration(3605), "1h5s");
        assert_eq!(human_duration(5400), "1h30m");
        assert_eq!(human_duration(36_030), "10h30s");
        assert_eq!(human_duration(768 * 3600), "768h");
        assert_eq!(human_duration(2_764_721), "767h58m41s");
        assert_eq!(human_duration(-3600), "-1h");
        assert_eq!(human_duration(-61), "-1m1s");
    }

    fn at(secs: u64, millis: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_millis(millis)
    }

    #[test]
    fn lookup_ttl_rounds_now_to_the_second_then_truncates() {
        let entry = |expire: SystemTime| TokenEntry {
            id: String::new(),
            accessor: String::new(),
            token_type: TokenType::Service,
            renewable: true,
            policies: Vec::new(),
            vault_ns: String::new(),
            mount: String::new(),
            role: String::new(),
            sa: ServiceAccount::default(),
            entity_id: String::new(),
            creation_time: UNIX_EPOCH,
            creation_ttl: 0,
            explicit_max_ttl: 0,
            period: 0,
            max_valid: None,
            expire_time: expire,
            last_renewal: None,
            renewals: 0,
        };
        let t = entry(at(1_005, 600));
        // Just issued with 2 s: 2 in the first half of a second, 1 in the second half (Vault's
        // own tests accept 3599 for a fresh 3600 s token).
        assert_eq!(entry(at(1_002, 300)).ttl_secs(at(1_000, 300)), 2);
        assert_eq!(entry(at(1_002, 700)).ttl_secs(at(1_000, 700)), 1);
        // now 1003.3 → 1003: 2.6 → 2; now 1003.5 → 1004: 1.6 → 1; 1004.6 → 1005: 0.6 → 0.
        assert_eq!(t.ttl_secs(at(1_003, 300)), 2);
        assert_eq!(t.ttl_secs(at(1_003, 500)), 1);
        assert_eq!(t.ttl_secs(at(1_004, 600)), 0);
        // Still valid but `now` rounds past the expiry: -0.4 truncates to 0.
        assert!(t.is_live(at(1_005, 500)));
        assert_eq!(t.ttl_secs(at(1_005, 500)), 0);
        assert!(!t.is_live(at(1_005, 600)));
    }

    #[test]
    fn durations_parse_like_vault() {
        use serde_json::json;
        assert_eq!(parse_duration(&json!(90)), Some(90));
        assert_eq!(parse_duration(&json!(1.9)), Some(1));
        assert_eq!(parse_duration(&json!("90")), Some(90));
        assert_eq!(parse_duration(&json!("1h")), Some(3600));
        assert_eq!(parse_duration(&json!("1h30m10s")), Some(5410));
        assert_eq!(parse_duration(&json!("1.5m")), Some(90));
        assert_eq!(parse_duration(&json!("1500ms")), Some(1));
        assert_eq!(parse_duration(&json!("2d")), Some(172_800));
        assert_eq!(parse_duration(&json!("")), Some(0));
        assert_eq!(parse_duration(&json!("1x")), None);
        assert_eq!(parse_duration(&json!("h")), None);
        assert_eq!(parse_duration(&json!(true)), None);
    }

    #[test]
    fn increments_are_validated_like_openbao() {
        use serde_json::json;
        let field = |why: &str| {
            Err(format!(
                "Field validation failed: error converting input for field \"increment\": {why}"
            ))
        };
        assert_eq!(parse_increment(&json!(null)), Ok(0));
        assert_eq!(parse_increment(&json!(0)), Ok(0));
        assert_eq!(parse_increment(&json!("0")), Ok(0));
        assert_eq!(parse_increment(&json!(90)), Ok(90));
        assert_eq!(parse_increment(&json!("1h")), Ok(3600));
        assert_eq!(parse_increment(&json!("1500ms")), Ok(1));
        assert_eq!(
            parse_increment(&json!(-5)),
            field("cannot provide negative value '-5'")
        );
        assert_eq!(
            parse_increment(&json!("-5")),
            field("cannot provide negative value '-5'")
        );
        assert_eq!(
            parse_increment(&json!("-5s")),
            field("cannot provide negative value '-5'")
        );
        assert_eq!(
            parse_increment(&json!(-5.5)),
            field("time: missing unit in duration \"-5.5\"")
        );
        assert_eq!(
            parse_increment(&json!("1.5")),
            field("time: missing unit in duration \"1.5\"")
        );
        assert_eq!(
            parse_increment(&json!("5x")),
            field("time: unknown unit \"x\" in duration \"5x\"")
        );
        assert_eq!(
            parse_increment(&json!("abc")),
            field("time: invalid duration \"abc\"")
        );
        assert_eq!(
            parse_increment(&json!(true)),
            field("could not parse duration from input")
        );
    }

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let t = UNIX_EPOCH + Duration::new(1_709_251_199, 500_000_000);
        assert_eq!(rfc3339(t), "2024-02-29T23:59:59.5Z");
        let t = UNIX_EPOCH + Duration::new(951_782_400, 123);
        assert_eq!(rfc3339(t), "2000-02-29T00:00:00.000000123Z");
    }

    #[test]
    fn ids_have_vault_shapes() {
        let t = random_base62(24);
        assert_eq!(t.len(), 24);
        assert!(t.bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_ne!(t, random_base62(24));
        let u = random_uuid();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
        assert_eq!(stable_uuid("a"), stable_uuid("a"));
        assert_ne!(stable_uuid("a"), stable_uuid("b"));
    }
}
