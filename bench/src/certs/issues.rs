//! Certificates issued per pod-day, through restarts and re-logins: a day compressed into a few
//! minutes against the real OpenBao 2.7.2 `pki` engine. Three clients run side by side on the
//! stage of section 6, each keeping a certificate for its own common name: vault-login with
//! `VAULT_LOGIN_CERT_WEB`, and `bao agent` with a template calling `secret "pki/issue/web"`, and
//! one calling `pkiCert`. Every duration of a pod-day is divided by the same factor (the
//! certificate's TTL, the token's TTL and max TTL, the time between restarts), so the count in
//! the compressed day is the count per pod-day at the scaled-up durations. Each client is
//! SIGKILLed and started again in the same folder at every restart. The server's own list of
//! certificates (`pki/certs`, each read back for its common name) gives the counts; its audit
//! log's `pki/issue` requests, logins and the restart instants say what each issue followed.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use vault_login::secrets::certs::x509;

use super::SECTION;
use crate::incumbent::audit::Request;
use crate::incumbent::stage::{CertWay, Slot, Stage};
use crate::lab::{stop, wait_until};
use crate::report::{Report, Verdict};

/// The pki mount's issue path.
const ISSUE: &str = "pki/issue/web";
/// The role's domain; each client asks for `<its name>.bench.svc`.
const DOMAIN: &str = "bench.svc";
/// How long after a (re)start, or a login, an early issue is put down to it.
const CAUSE_WINDOW: f64 = 5.0;
/// An issue while the previous certificate has lived less than this share of its TTL is early:
/// no renewal rule of the three renews that soon.
const EARLY: f64 = 0.5;

/// A pod-day, compressed.
#[derive(Clone, Debug)]
pub struct Day {
    /// The compressed day.
    pub window: Duration,
    /// The certificates' TTL (the role's `ttl` and `max_ttl`).
    pub cert_ttl: Duration,
    /// The tokens' TTL.
    pub token_ttl: Duration,
    /// The tokens' max TTL: a re-login each time it is reached.
    pub token_max_ttl: Duration,
    /// Time between two SIGKILL + restarts of every client.
    pub restart_every: Duration,
}

impl Day {
    /// Four minutes for a day (×360: certificates of 4 h, tokens of 1 h up to 3 h, a restart
    /// every 6 h).
    pub fn full() -> Day {
        Day {
            window: Duration::from_secs(240),
            cert_ttl: Duration::from_secs(40),
            token_ttl: Duration::from_secs(10),
            token_max_ttl: Duration::from_secs(30),
            restart_every: Duration::from_secs(60),
        }
    }

    /// Ninety seconds, that the section still runs.
    pub fn quick() -> Day {
        Day {
            window: Duration::from_secs(90),
            cert_ttl: Duration::from_secs(30),
            token_ttl: Duration::from_secs(10),
            token_max_ttl: Duration::from_secs(20),
            restart_every: Duration::from_secs(30),
        }
    }

    /// How many times shorter than a real day it is.
    fn factor(&self) -> f64 {
        86_400.0 / self.window.as_secs_f64()
    }

    /// The pod-day it stands for, in words.
    fn describe(&self) -> String {
        let real = |d: Duration| {
            let h = d.as_secs_f64() * self.factor() / 3600.0;
            format!("{h:.1} h")
        };
        format!(
            "{} s for a day (×{:.0}): certificate TTL {} s ≙ {}, token TTL {} s / max {} s ≙ {} / {}, SIGKILL + restart every {} s ≙ {}",
            self.window.as_secs(),
            self.factor(),
            self.cert_ttl.as_secs(),
            real(self.cert_ttl),
            self.token_ttl.as_secs(),
            self.token_max_ttl.as_secs(),
            real(self.token_ttl),
            real(self.token_max_ttl),
            self.restart_every.as_secs(),
            real(self.restart_every),
        )
    }
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// The pki mount: a root CA, role `web` for `*.bench.svc` with the day's TTL, and a policy
/// allowing `update` on its issue path, on the role's tokens.
fn mount_pki(stage: &Stage, day: &Day) {
    let bao = &stage.bao;
    bao.cli(&["secrets", "enable", "pki"]);
    bao.cli(&["secrets", "tune", "-max-lease-ttl=87600h", "pki"]);
    bao.cli(&[
        "write",
        "pki/root/generate/internal",
        &format!("common_name={DOMAIN}"),
        "ttl=87600h",
    ]);
    let ttl = format!("{}s", day.cert_ttl.as_secs());
    bao.cli(&[
        "write",
        "pki/roles/web",
        &format!("allowed_domains={DOMAIN}"),
        "allow_subdomains=true",
        &format!("ttl={ttl}"),
        &format!("max_ttl={ttl}"),
    ]);
    bao.api(
        "PUT",
        "/v1/sys/policies/acl/bench-pki",
        Some(json!({"policy": format!("path \"{ISSUE}\" {{ capabilities = [\"update\"] }}")})),
    );
    stage.set_role_with(day.token_ttl, day.token_max_ttl, &["bench-pki"]);
}

/// Certificates the server issued, by common name (the root CA's included).
fn issued_by_name(stage: &Stage) -> Result<BTreeMap<String, usize>, String> {
    let list: Value = stage.bao.api("LIST", "/v1/pki/certs", None);
    let serials = list["data"]["keys"]
        .as_array()
        .ok_or("pki/certs: no keys in the answer")?;
    let mut out = BTreeMap::new();
    for serial in serials.iter().filter_map(Value::as_str) {
        let cert: Value = stage
            .bao
            .api("GET", &format!("/v1/pki/cert/{serial}"), None);
        let pem = cert["data"]["certificate"].as_str().unwrap_or_default();
        let name = x509::pem_blocks(pem)
            .and_then(|blocks| blocks.into_iter().next())
            .and_then(|b| x509::parse_cert(&b.der).ok())
            .and_then(|info| info.common_name)
            .ok_or_else(|| format!("pki/cert/{serial}: no certificate with a common name"))?;
        *out.entry(name).or_default() += 1;
    }
    Ok(out)
}

/// One client's day.
struct Client {
    way: CertWay,
    slot: Slot,
    common_name: String,
    child: Option<Child>,
    /// When it was started, Unix seconds (the first start, then each restart).
    starts: Vec<f64>,
}

impl Client {
    fn start(&mut self, addr: &str) -> Result<(), String> {
        let mut cmd = self
            .slot
            .cert_command(addr, self.way, ISSUE, &self.common_name)?;
        self.starts.push(unix_now());
        self.child = Some(
            cmd.spawn()
                .map_err(|e| format!("cannot start {}: {e}", self.slot.kind.label()))?,
        );
        Ok(())
    }

    /// An error if it has exited by itself (a configuration the program refused, say).
    fn check_running(&mut self) -> Result<(), String> {
        match self.child.as_mut().map(Child::try_wait) {
            Some(Ok(Some(status))) => Err(format!(
                "{:?} exited by itself ({status}); its log: {}",
                self.way,
                self.slot.log.display()
            )),
            _ => Ok(()),
        }
    }

    /// SIGKILL, as a node or an OOM kill does: nothing is cleaned up.
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// What one client's issues were.
#[derive(Debug, Default)]
struct Causes {
    /// The first certificate.
    first: usize,
    /// Issued once the previous one had lived at least [`EARLY`] of its TTL.
    renewal: usize,
    /// Early, within [`CAUSE_WINDOW`] of a restart.
    restart: usize,
    /// Early, within [`CAUSE_WINDOW`] of a login that was not at a restart.
    relogin: usize,
    /// Early, and neither.
    other: usize,
    /// Successful logins.
    logins: usize,
}

impl Causes {
    /// The certificates issued before a renewal was due.
    fn early(&self) -> usize {
        self.restart + self.relogin + self.other
    }
}

/// Sorts each successful `pki/issue` request of `client` (certificates of `ttl` seconds): the
/// first, a renewal, or early and then put down to a restart (`starts`: the first start, then
/// the restarts), a login, or neither.
fn causes(requests: &[Request], client: &str, starts: &[f64], ttl: f64) -> Causes {
    let mine: Vec<&Request> = requests
        .iter()
        .filter(|r| r.client.as_deref() == Some(client))
        .collect();
    let logins: Vec<f64> = mine
        .iter()
        .filter(|r| r.is_login() && !r.failed)
        .map(|r| r.time)
        .collect();
    let after = |times: &[f64], t: f64| times.iter().any(|s| *s <= t && t < s + CAUSE_WINDOW);
    let mut c = Causes {
        logins: logins.len(),
        ..Causes::default()
    };
    let mut previous: Option<f64> = None;
    for r in mine.iter().filter(|r| r.path == ISSUE && !r.failed) {
        match previous {
            None => c.first += 1,
            Some(p) if r.time - p >= EARLY * ttl => c.renewal += 1,
            Some(_) if after(starts.get(1..).unwrap_or_default(), r.time) => c.restart += 1,
            Some(_) if after(&logins, r.time) => c.relogin += 1,
            Some(_) => c.other += 1,
        }
        previous = Some(r.time);
    }
    c
}

/// Runs the three clients through the compressed day and adds the rows.
pub fn run(report: &mut Report, vault_login: &Path, day: &Day) -> Result<(), String> {
    let stage = Stage::start("certs", vault_login, day.token_ttl, day.token_max_ttl)?;
    eprintln!(
        "   real server {} ({})",
        stage.bao.addr(),
        stage.bao.bin().display()
    );
    mount_pki(&stage, day);
    let addr = stage.bao.addr();
    let mut clients = Vec::new();
    for (i, way) in CertWay::ALL.into_iter().enumerate() {
        let slot = stage.slot(way.kind(), "cert", i)?;
        let common_name = format!("{}.{DOMAIN}", slot.name);
        clients.push(Client {
            way,
            slot,
            common_name,
            child: None,
            starts: Vec::new(),
        });
    }
    let begin = Instant::now();
    let mut result = Ok(());
    for c in &mut clients {
        if let Err(e) = c.start(&addr) {
            result = Err(e);
        }
    }
    let mut next_restart = day.restart_every;
    while result.is_ok() && begin.elapsed() < day.window {
        let until = next_restart.min(day.window);
        std::thread::sleep(until.saturating_sub(begin.elapsed()));
        if let Some(e) = clients.iter_mut().find_map(|c| c.check_running().err()) {
            result = Err(e);
            break;
        }
        if begin.elapsed() >= next_restart && next_restart < day.window {
            eprintln!("   SIGKILL + restart at {} s", next_restart.as_secs());
            for c in &mut clients {
                c.kill();
                if let Err(e) = c.start(&addr) {
                    result = Err(e);
                }
            }
            next_restart += day.restart_every;
        }
    }
    let mut children: Vec<Child> = clients.iter_mut().filter_map(|c| c.child.take()).collect();
    stop(&mut children);
    result?;
    // The audit log is written as the server answers: give its last lines a moment.
    wait_until(Duration::from_secs(2), || false);
    let issued = issued_by_name(&stage)?;
    let requests = stage.requests();
    let mut counts = Vec::new();
    for c in &clients {
        let n = issued.get(&c.common_name).copied().unwrap_or(0);
        let why = causes(
            &requests,
            &c.slot.client,
            &c.starts,
            day.cert_ttl.as_secs_f64(),
        );
        eprintln!("   {:?}: {n} issued; {why:?}", c.way);
        counts.push((c.way, n, why));
    }
    let describe = |(way, n, why): &(CertWay, usize, Causes)| {
        format!(
            "{}: **{n}** (first {}, renewals {}, early: {} at restarts, {} after re-logins, {} other; {} logins)",
            way.label(),
            why.first,
            why.renewal,
            why.restart,
            why.relogin,
            why.other,
            why.logins
        )
    };
    let restarts = clients.first().map_or(0, |c| c.starts.len() - 1);
    let ours = &counts[0];
    report.add(
        SECTION,
        &format!(
            "certificates issued per pod-day through {restarts} SIGKILL + restarts and the re-logins (Vault's `pki/certs`; {})",
            day.describe()
        ),
        describe(ours),
        counts[1..].iter().map(describe).collect::<Vec<_>>().join("; "),
        "none early (at restarts or re-logins)",
        Verdict::of(ours.2.early() == 0),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(time: f64, path: &str) -> Request {
        Request {
            time,
            path: path.into(),
            client: Some("c".into()),
            failed: false,
            probe: false,
        }
    }

    #[test]
    fn each_issue_is_put_down_to_what_it_followed() {
        // Certificates of 40 s: an issue under 20 s after the previous one is early.
        let requests = [
            req(100.0, "auth/kubernetes/login"),
            req(100.5, ISSUE),
            req(127.0, ISSUE),
            req(130.0, "auth/kubernetes/login"),
            req(131.0, ISSUE),
            req(140.2, "auth/kubernetes/login"),
            req(140.4, ISSUE),
            req(150.0, ISSUE),
            req(180.0, ISSUE),
        ];
        let c = causes(&requests, "c", &[99.9, 139.9], 40.0);
        assert_eq!(
            (c.first, c.renewal, c.restart, c.relogin, c.other, c.logins),
            (1, 2, 1, 1, 1, 3)
        );
        assert_eq!(c.early(), 3);
        // A renewal that happens to follow a restart is still a renewal.
        let c = causes(&requests[..3], "c", &[99.9, 126.0], 40.0);
        assert_eq!((c.renewal, c.restart), (1, 0));
        assert_eq!(causes(&requests, "other", &[99.9], 40.0).logins, 0);
    }

    #[test]
    fn the_full_day_stands_for_24_hours() {
        let d = Day::full();
        assert_eq!(d.factor(), 360.0);
        let text = d.describe();
        assert!(text.contains("≙ 4.0 h"), "{text}");
        assert!(text.contains("every 60 s ≙ 6.0 h"), "{text}");
    }
}
