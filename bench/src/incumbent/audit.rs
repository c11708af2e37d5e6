//! Counting requests from the real server's file audit device: every request the server
//! handled, with its time, path and the client that made it. A client is told apart by its
//! token's `display_name`, `kubernetes-<namespace>-<service account>`: each process the bench
//! starts logs in as its own service account, so one audit log serves a whole scene.
//!
//! The bench's own questions to the server (is this token alive?) carry the header [`PROBE`],
//! which the server is told to log; they are not counted as anyone's requests.
//!
//! OpenBao 2.x refuses `bao audit enable` over the API ("use declarative, config-based audit
//! device management instead"): the device is declared in a config file handed to
//! `bao server -dev -config=...` ([`config`]).

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

/// The header the bench's own requests carry.
pub const PROBE: &str = "X-Bench-Probe";

/// The `audit` stanza for a server config file writing to `log`.
pub fn config(log: &Path) -> String {
    format!(
        "audit \"file\" \"bench\" {{\n  options = {{\n    file_path = \"{}\"\n  }}\n}}\n",
        log.display()
    )
}

/// One request the server handled.
#[derive(Clone, Debug, PartialEq)]
pub struct Request {
    /// When the server logged the request, seconds since the Unix epoch.
    pub time: f64,
    /// The API path after `/v1/`, e.g. `auth/token/renew-self`.
    pub path: String,
    /// The token's display name (`kubernetes-<ns>-<sa>`); for a login, the new token's.
    pub client: Option<String>,
    /// Whether the answer carried an error.
    pub failed: bool,
    /// Sent by the bench itself (with [`PROBE`]), not by a client.
    pub probe: bool,
}

impl Request {
    /// A login (`auth/<mount>/login`).
    pub fn is_login(&self) -> bool {
        self.path.starts_with("auth/") && self.path.ends_with("/login")
    }

    /// A token renewal.
    pub fn is_renewal(&self) -> bool {
        self.path == "auth/token/renew-self"
    }
}

/// Reads every request in the audit log at `path` (empty if the file is not there yet).
pub fn read(path: &Path) -> Vec<Request> {
    parse(&std::fs::read_to_string(path).unwrap_or_default())
}

/// The requests of an audit log's text, in the order the server received them. A request's
/// entry and its response's entry are joined by request id: a login's request has no token
/// yet, so its client is the one named in the response.
pub fn parse(text: &str) -> Vec<Request> {
    let mut order: Vec<String> = Vec::new();
    let mut by_id: BTreeMap<String, Request> = BTreeMap::new();
    for line in text.lines() {
        let Ok(entry) = serde_json::from_str::<Value>(line) else {
            // A line being written while we read: the next read gets it whole.
            continue;
        };
        let Some(id) = entry["request"]["id"].as_str() else {
            continue;
        };
        let client = entry["auth"]["display_name"]
            .as_str()
            .filter(|n| !n.is_empty())
            .map(str::to_string);
        let failed = entry["error"].as_str().is_some_and(|e| !e.is_empty());
        let probe = entry["request"]["headers"]
            .get(PROBE.to_ascii_lowercase())
            .is_some();
        match by_id.get_mut(id) {
            Some(known) => {
                if known.client.is_none() {
                    known.client = client;
                }
                known.failed |= failed;
                known.probe |= probe;
            }
            None => {
                let time = entry["time"].as_str().and_then(unix_seconds).unwrap_or(0.0);
                let path = entry["request"]["path"].as_str().unwrap_or("").to_string();
                order.push(id.to_string());
                by_id.insert(
                    id.to_string(),
                    Request {
                        time,
                        path,
                        client,
                        failed,
                        probe,
                    },
                );
            }
        }
    }
    order.iter().filter_map(|id| by_id.remove(id)).collect()
}

/// The display name the server gives a token of service account `sa` in namespace `ns`.
pub fn display_name(ns: &str, sa: &str) -> String {
    format!("kubernetes-{ns}-{sa}")
}

/// An RFC 3339 UTC time as the audit log writes it (`2026-12-07T00:52:01.899632695Z`), in
/// seconds since the Unix epoch.
pub fn unix_seconds(t: &str) -> Option<f64> {
    let t = t.strip_suffix('Z')?;
    let (date, time) = t.split_once('T')?;
    let mut d = date.splitn(3, '-').map(|p| p.parse::<i64>());
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let mut hms = time.splitn(3, ':');
    let (h, min) = (
        hms.next()?.parse::<i64>().ok()?,
        hms.next()?.parse::<i64>().ok()?,
    );
    let s: f64 = hms.next()?.parse().ok()?;
    let days = days_from_civil(y, m, day);
    Some((days * 86_400 + h * 3600 + min * 60) as f64 + s)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_match_the_unix_clock() {
        assert_eq!(unix_seconds("1970-01-01T00:00:00Z"), Some(0.0));
        // `date -u -d 2026-12-07T00:52:01Z +%s`
        assert_eq!(unix_seconds("2026-12-07T00:52:01Z"), Some(1_796_604_721.0));
        let frac = unix_seconds("2000-02-29T23:59:59.25Z").expect("leap day");
        assert!((frac - 951_868_799.25).abs() < 1e-6, "{frac}");
        assert_eq!(unix_seconds("2026-12-07T00:52:01"), None);
        assert_eq!(unix_seconds("garbage"), None);
    }

    /// Entries shaped like OpenBao 2.7.2's (fields the parser does not read left out).
    const LOG: &str = r#"{"time":"2026-12-07T00:52:01.888575799Z","type":"request","auth":{"token_ttl":0},"request":{"id":"a","path":"auth/kubernetes/login"}}
{"time":"2026-12-07T00:52:01.89430973Z","type":"response","auth":{"display_name":"kubernetes-bench-agent-0"},"request":{"id":"a","path":"auth/kubernetes/login"}}
{"time":"2026-12-07T00:52:01.897653895Z","type":"request","auth":{"display_name":"kubernetes-bench-agent-0"},"request":{"id":"b","path":"auth/token/renew-self"}}
{"time":"2026-12-07T00:52:01.899632695Z","type":"response","auth":{"display_name":"kubernetes-bench-agent-0"},"request":{"id":"b","path":"auth/token/renew-self"},"error":"1 error occurred:\n\t* permission denied\n\n"}
{"time":"2026-12-07T00:52:02.5Z","type":"request","auth":{"display_name":"kubernetes-bench-vault-login-0"},"request":{"id":"c","path":"internal/data/database/config"}}
{"time":"2026-12-07T00:52:02.7Z","type":"request","auth":{"display_name":"kubernetes-bench-vault-login-0"},"request":{"id":"d","path":"auth/token/lookup-self","headers":{"x-bench-probe":["1"]}}}
{"time":"2026-12-07T00:52:02.6Z","type":"resp"#;

    #[test]
    fn joins_requests_with_their_responses() {
        let got = parse(LOG);
        assert_eq!(got.len(), 4, "{got:?}");
        assert!(got[3].probe && !got[2].probe && !got[0].probe);
        assert!(got[0].is_login() && !got[0].failed);
        assert_eq!(got[0].client.as_deref(), Some("kubernetes-bench-agent-0"));
        assert!((got[0].time - 1_796_604_721.888_575_8).abs() < 1e-3);
        assert!(got[1].is_renewal() && got[1].failed);
        assert_eq!(got[2].path, "internal/data/database/config");
        assert_eq!(
            got[2].client.as_deref(),
            Some(display_name("bench", "vault-login-0").as_str())
        );
        assert!(!got[2].failed, "a response not yet written is no failure");
    }
}
