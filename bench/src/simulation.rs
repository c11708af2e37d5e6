//! Section 4, request economy and token churn: a discrete-event simulation, on a simulated
//! clock, of one pod's token over many days, driven once by vault-login's schedule and once by
//! Vault Agent's, against the same model of Vault and the same outages.
//!
//! - vault-login: the library's own state machine (`vault_login::machine`), the same one the
//!   agent drives, fed this clock and this model's answers (min backoff 1 s, max 5 m, jitter
//!   from the machine's seeded source).
//! - Vault Agent: `AuthHandler.Run` (command/agentproxyshared/auth/auth.go) around
//!   `LifetimeWatcher.doRenewWithOptions` (api/lifetime_watcher.go), as in hashicorp/vault
//!   main: log in, renew at once, sleep `2/3·R + grace/3` (grace 10–20 % of the lease, re-drawn
//!   while the lease grows), stop and re-authenticate when `R ≤ grace` or `R − sleep ≤ grace`
//!   (`R ≤ 4·grace` after a successful renewal). A failed renewal retries with
//!   cenkalti/backoff v3 (10 s initial, ×2, ±50 %, max 5 m, giving up after the token's
//!   remaining life); a failed login with sdk/helper/backoff (1 s → 5 m, ×2, up to −25 %).
//!   [`AgentReading::Doc`] replaces the outage rule with `shared/vault-api.md`'s short
//!   version: re-authenticate as soon as a failed renewal finds `R ≤ 4·grace`.
//! - Vault: `CalculateTTL` in whole seconds; a renewal grants `min(ttl, max deadline − now)`
//!   with a "capped" warning when short, is refused past the deadline (500) and for an expired
//!   token (403); during an outage every request fails (connection refused); requests take no
//!   time. The app always reads the newest token written, so a moment without a valid token is
//!   a moment when the newest token has expired.

use std::time::Duration;

use std::time::Instant;

use vault_login::machine::events::{Action, Event, Goal, Grant, SecretGrant, Settings};
use vault_login::machine::failure::{self, Failure, FailureKind};
use vault_login::machine::Machine;

use crate::report::{Report, Verdict};
use crate::stats::Rng;

/// Seconds on the simulated clock.
type Secs = f64;

/// One simulated day.
pub const DAY: Secs = 86_400.0;

/// The least time between the end of one outage and the start of the next.
pub const OUTAGE_SEPARATION: Secs = 3600.0;

/// What is simulated: token TTLs, how many pods for how long, and the outages.
#[derive(Clone, Copy, Debug)]
pub struct Scenario {
    /// The role's token TTL (s).
    pub ttl: i64,
    /// The role's max TTL (s).
    pub max_ttl: i64,
    /// Outages per simulated day, placed uniformly at random (not overlapping).
    pub outages_per_day: usize,
    /// Length of each outage (s).
    pub outage_len: Secs,
    /// Simulated days per pod.
    pub days: u32,
    /// Pods (independent runs with their own outages and jitter).
    pub pods: u32,
    /// Seed of the whole scenario.
    pub seed: u64,
}

/// Which reading of Vault Agent's outage behaviour to simulate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AgentReading {
    /// lifetime_watcher.go as written.
    Source,
    /// `shared/vault-api.md`: re-authenticate when a failed renewal finds `R ≤ 4·grace`.
    Doc,
}

/// What a client cost Vault and its app, summed over pods.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Tally {
    /// Every request sent, failed ones included.
    pub requests: u64,
    /// Requests that failed (outage, refused).
    pub failed: u64,
    /// Successful logins (the first of each pod included).
    pub logins: u64,
    /// Successful renewals.
    pub renewals: u64,
    /// Total time the newest token written was expired (s).
    pub gap: Secs,
    /// Longest single such moment (s).
    pub longest_gap: Secs,
    /// Part of `gap` after tokens that had reached their max TTL (only a login could help).
    pub gap_at_max_ttl: Secs,
    /// Part of `gap` while Vault was up: time the client itself lost.
    pub gap_while_up: Secs,
}

impl Tally {
    fn add(&mut self, o: &Tally) {
        self.requests += o.requests;
        self.failed += o.failed;
        self.logins += o.logins;
        self.renewals += o.renewals;
        self.gap += o.gap;
        self.gap_at_max_ttl += o.gap_at_max_ttl;
        self.gap_while_up += o.gap_while_up;
        self.longest_gap = self.longest_gap.max(o.longest_gap);
    }
}

/// A renewal's answer.
#[derive(Debug, PartialEq)]
enum Renewal {
    Granted {
        ttl: Duration,
        warnings: Vec<String>,
    },
    /// Connection refused: Vault is down.
    Down,
    /// 500 `past the max TTL, cannot renew`.
    PastMax,
    /// 403 `permission denied`: the token has expired.
    Denied,
}

struct Token {
    issued: Secs,
    expires: Secs,
}

/// Vault as one pod sees it.
struct Vault {
    ttl: i64,
    max_ttl: i64,
    outages: Vec<(Secs, Secs)>,
    tokens: Vec<Token>,
    tally: Tally,
    /// When each request was sent.
    sent: Vec<Secs>,
}

impl Vault {
    fn new(s: &Scenario, outages: Vec<(Secs, Secs)>) -> Vault {
        Vault {
            ttl: s.ttl,
            max_ttl: s.max_ttl,
            outages,
            tokens: Vec::new(),
            tally: Tally::default(),
            sent: Vec::new(),
        }
    }

    fn up(&self, t: Secs) -> bool {
        !self.outages.iter().any(|&(a, b)| t >= a && t < b)
    }

    fn note_gap(&mut self, until: Secs) {
        let (issued, since) = self
            .tokens
            .last()
            .map_or((0.0, 0.0), |tok| (tok.issued, tok.expires));
        if since < until {
            if since - issued >= (self.max_ttl - 1) as Secs {
                self.tally.gap_at_max_ttl += until - since;
            }
            let down: Secs = self
                .outages
                .iter()
                .map(|&(a, b)| (b.min(until) - a.max(since)).max(0.0))
                .sum();
            self.tally.gap_while_up += until - since - down;
            self.tally.gap += until - since;
            self.tally.longest_gap = self.tally.longest_gap.max(until - since);
        }
    }

    /// A login at `t`: the new token's index and TTL, or `None` when Vault is down.
    fn login(&mut self, t: Secs) -> Option<(usize, Duration)> {
        self.tally.requests += 1;
        self.sent.push(t);
        if !self.up(t) {
            self.tally.failed += 1;
            return None;
        }
        // The app switches to the new token now: any moment without one ends here.
        self.note_gap(t);
        self.tally.logins += 1;
        let ttl = self.ttl.min(self.max_ttl);
        self.tokens.push(Token {
            issued: t,
            expires: t + ttl as Secs,
        });
        Some((self.tokens.len() - 1, Duration::from_secs(ttl as u64)))
    }

    /// renew-self of token `id` at `t`, with `CalculateTTL`'s whole-second arithmetic.
    fn renew(&mut self, id: usize, t: Secs) -> Renewal {
        self.tally.requests += 1;
        self.sent.push(t);
        if !self.up(t) {
            self.tally.failed += 1;
            return Renewal::Down;
        }
        let tok = &mut self.tokens[id];
        if t >= tok.expires {
            self.tally.failed += 1;
            return Renewal::Denied;
        }
        let max_valid_ttl = tok.issued.floor() as i64 + self.max_ttl - t.floor() as i64;
        if max_valid_ttl <= 0 {
            self.tally.failed += 1;
            return Renewal::PastMax;
        }
        let (ttl, warnings) = if max_valid_ttl < self.ttl {
            let w = format!(
                "TTL of \"{}s\" exceeded the effective max_ttl of \"{max_valid_ttl}s\"; TTL value is capped accordingly",
                self.ttl
            );
            (max_valid_ttl, vec![w])
        } else {
            (self.ttl, Vec::new())
        };
        tok.expires = t + ttl as Secs;
        self.tally.renewals += 1;
        Renewal::Granted {
            ttl: Duration::from_secs(ttl as u64),
            warnings,
        }
    }

    fn finish(mut self, end: Secs) -> Tally {
        self.note_gap(end);
        self.tally
    }
}

fn secs(d: Duration) -> Secs {
    d.as_secs_f64()
}

fn dur(s: Secs) -> Duration {
    Duration::from_secs_f64(s.max(0.0))
}

/// vault-login's sidecar: the library's own state machine (`vault_login::machine`, the one
/// the agent drives), fed the simulated clock and this model's answers. Requests take no time.
fn vault_login(v: &mut Vault, rng: &mut Rng, start: Secs, end: Secs) {
    drive(v, rng.next_u64(), start, end, 0, 0);
}

/// A secret's lease in the model: 1 h, max 24 h.
const LEASE: Duration = Duration::from_secs(3600);
const LEASE_MAX: Secs = 86_400.0;

/// Drives the machine from `start` to `end` against `v`, with `statics` KV secrets (read again
/// every 5 min) and `dynamic` leased secrets (lease [`LEASE`], max [`LEASE_MAX`]); returns the
/// secret reads and lease renewals it sent (token requests are in `v`'s tally).
fn drive(
    v: &mut Vault,
    seed: u64,
    start: Secs,
    end: Secs,
    statics: usize,
    dynamic: usize,
) -> (u64, u64) {
    let base = Instant::now();
    let at = |s: Secs| base + dur(s);
    let settings = Settings {
        goal: Goal::Sidecar,
        min_backoff: Duration::from_secs(1),
        max_backoff: Duration::from_secs(300),
        recovery_backoff: Duration::from_secs(20),
        renew_increment: None,
        revoke_on_exit: false,
        adopt: false,
        secrets: (0..statics + dynamic)
            .map(|i| format!("secret/{i}"))
            .collect(),
        refresh: Duration::from_secs(300),
    };
    let mut m = Machine::new(settings, at(start), seed);
    let mut held: Option<usize> = None;
    // Each dynamic secret's lease: issued at, expires at.
    let mut leases: Vec<(Secs, Secs)> = vec![(0.0, 0.0); dynamic];
    let (mut reads, mut renewals) = (0u64, 0u64);
    let mut now = start;
    loop {
        while let Some(action) = m.poll_action() {
            let event = match action {
                Action::Login { .. } => Event::LoginDone {
                    sent: at(now),
                    result: match v.login(now) {
                        Some((id, ttl)) => {
                            held = Some(id);
                            // Service tokens from a renewable role.
                            Ok(Grant {
                                ttl,
                                renewable: true,
                                capped_warning: false,
                            })
                        }
                        None => Err(refused()),
                    },
                },
                Action::Renew { .. } => Event::RenewDone {
                    sent: at(now),
                    result: match held.map(|id| v.renew(id, now)) {
                        Some(Renewal::Granted { ttl, warnings }) => Ok(Grant {
                            ttl,
                            renewable: true,
                            capped_warning: failure::warns_of_cap(&warnings),
                        }),
                        Some(Renewal::Down) | None => Err(refused()),
                        Some(Renewal::PastMax) => Err(vault_error(500, PAST_MAX)),
                        Some(Renewal::Denied) => Err(vault_error(403, DENIED)),
                    },
                },
                // The file is a tmpfs: writes succeed.
                Action::Write { .. } => Event::Written,
                Action::ReadSecret { index } => {
                    reads += 1;
                    let lease = (index >= statics).then(|| {
                        leases[index - statics] = (now, now + secs(LEASE));
                        Grant {
                            ttl: LEASE,
                            renewable: true,
                            capped_warning: false,
                        }
                    });
                    Event::SecretRead {
                        index,
                        sent: at(now),
                        result: Ok(SecretGrant {
                            changed: lease.is_some(),
                            lease,
                            problem: None,
                        }),
                    }
                }
                Action::RenewLease { index, .. } => {
                    renewals += 1;
                    let (issued, _) = leases[index - statics];
                    let left = (issued + LEASE_MAX - now).floor().max(0.0);
                    let ttl = secs(LEASE).min(left);
                    leases[index - statics].1 = now + ttl;
                    Event::LeaseRenewed {
                        index,
                        sent: at(now),
                        result: Ok(Grant {
                            ttl: dur(ttl),
                            renewable: true,
                            capped_warning: ttl < secs(LEASE),
                        }),
                    }
                }
                _ => continue,
            };
            m.handle(at(now), event);
        }
        let Some(wake) = m.poll_timeout() else {
            break;
        };
        let wake = secs(wake.saturating_duration_since(base)).max(now);
        if wake >= end {
            break;
        }
        now = wake;
        m.handle_timeout(at(now));
    }
    (reads, renewals)
}

/// The cost of secrets on the simulated clock: one calm pod (TTL 1 h, max 24 h) writing
/// `statics` KV secrets (refreshed every 5 min) and `dynamic` leased secrets, driven by the same
/// machine for `days`. Returns (token requests, secret reads, lease renewals) per day.
pub fn secret_requests(statics: usize, dynamic: usize, days: u32, seed: u64) -> (f64, f64, f64) {
    let end = f64::from(days) * DAY;
    let s = Scenario {
        ttl: 3600,
        max_ttl: 86_400,
        outages_per_day: 0,
        outage_len: 0.0,
        days,
        pods: 1,
        seed,
    };
    let mut v = Vault::new(&s, Vec::new());
    let (reads, renewals) = drive(&mut v, seed, 0.0, end, statics, dynamic);
    let days = f64::from(days);
    let t = v.finish(end);
    (
        t.requests as f64 / days,
        reads as f64 / days,
        renewals as f64 / days,
    )
}

/// Vault ≥ 1.17's answers, as the agent would classify them.
const PAST_MAX: &str = "1 error occurred:\n\t* past the max TTL, cannot renew\n\n";
const DENIED: &str = "2 errors occurred:\n\t* permission denied\n\t* invalid token\n\n";

fn vault_error(status: u16, text: &str) -> Failure {
    Failure::new(failure::classify(Some(status), &[text.to_string()]), text)
}

fn refused() -> Failure {
    Failure::new(FailureKind::Transient, "connection refused")
}

/// sdk/helper/backoff: the auth handler's login backoff.
struct AuthBackoff {
    min: Secs,
    max: Secs,
    current: Secs,
    attempt: u32,
}

impl AuthBackoff {
    fn new(rng: &mut Rng) -> AuthBackoff {
        let mut b = AuthBackoff {
            min: 1.0,
            max: 300.0,
            current: 0.0,
            attempt: 0,
        };
        b.reset(rng);
        b
    }

    fn jitter(t: Secs, rng: &mut Rng) -> Secs {
        t * (1.0 - 0.25 * rng.unit())
    }

    fn reset(&mut self, rng: &mut Rng) {
        self.current = Self::jitter(self.min, rng);
        self.attempt = 0;
    }

    fn next(&mut self, rng: &mut Rng) -> Secs {
        let first = self.attempt == 0;
        self.attempt += 1;
        if first {
            return self.current;
        }
        self.current = Self::jitter((2.0 * self.current).min(self.max), rng);
        self.current
    }
}

/// cenkalti/backoff v3 `ExponentialBackOff` as the lifetime watcher configures it.
struct RenewBackoff {
    start: Secs,
    max_elapsed: Secs,
    current: Secs,
}

impl RenewBackoff {
    fn new(now: Secs, max_elapsed: Secs) -> RenewBackoff {
        RenewBackoff {
            start: now,
            max_elapsed,
            current: 10.0,
        }
    }

    /// The next wait, or `None` (backoff.Stop) once more than `max_elapsed` has passed.
    fn next(&mut self, now: Secs, rng: &mut Rng) -> Option<Secs> {
        if now - self.start > self.max_elapsed {
            return None;
        }
        let wait = self.current * (0.5 + rng.unit());
        self.current = if self.current >= 150.0 {
            300.0
        } else {
            self.current * 2.0
        };
        Some(wait)
    }
}

/// `calculateGrace`: 10–20 % of the lease.
fn grace(lease: Secs, rng: &mut Rng) -> Secs {
    if lease <= 0.0 {
        return 0.0;
    }
    0.1 * lease * (1.0 + rng.unit())
}

struct Watcher {
    id: usize,
    initial_time: Secs,
    init_lease: Secs,
    prior: Secs,
    grace: Secs,
    errors: Option<RenewBackoff>,
}

/// Vault Agent's auto-auth on the simulated clock.
fn vault_agent(v: &mut Vault, rng: &mut Rng, end: Secs, reading: AgentReading) {
    let mut auth_backoff = AuthBackoff::new(rng);
    let mut watcher: Option<Watcher> = None;
    let mut wake = 0.0;
    while wake < end {
        let now = wake;
        let Some(w) = watcher.as_mut() else {
            match v.login(now) {
                Some((id, ttl)) => {
                    auth_backoff.reset(rng);
                    let lease = secs(ttl);
                    watcher = Some(Watcher {
                        id,
                        initial_time: now,
                        init_lease: lease,
                        prior: lease,
                        grace: grace(lease, rng),
                        errors: None,
                    });
                    // `go watcher.Renew()`: the first loop iteration renews at once.
                    wake = now;
                }
                None => wake = now + auth_backoff.next(rng),
            }
            continue;
        };
        let remaining = match v.renew(w.id, now) {
            Renewal::Granted { ttl, .. } => {
                w.errors = None;
                w.initial_time = now;
                w.init_lease = secs(ttl);
                secs(ttl)
            }
            // "permission denied" takes the non-renewable path, whose remaining time for an
            // expired token is under the grace: the watcher returns and Agent logs in at once.
            Renewal::Denied => {
                watcher = None;
                wake = now;
                continue;
            }
            Renewal::Down | Renewal::PastMax => {
                let r = w.initial_time + w.init_lease - now;
                if w.errors.is_none() {
                    w.errors = Some(RenewBackoff::new(now, r));
                }
                r
            }
        };
        let in_error = w.errors.is_some();
        let sleep = match w.errors.as_mut() {
            None => {
                if remaining > w.prior {
                    w.grace = grace(remaining, rng);
                }
                remaining * 2.0 / 3.0 + w.grace / 3.0
            }
            Some(b) => match b.next(now, rng) {
                Some(s) => s,
                None => {
                    // The watcher returns its error: the handler backs off, then logs in.
                    watcher = None;
                    wake = now + auth_backoff.next(rng);
                    continue;
                }
            },
        };
        w.prior = remaining;
        let mut done = remaining <= w.grace || remaining - sleep <= w.grace;
        if reading == AgentReading::Doc && in_error && remaining <= 4.0 * w.grace {
            done = true;
        }
        if done {
            watcher = None;
            wake = now;
        } else {
            wake = now + sleep;
        }
    }
}

/// Outages for one pod: `per_day` a day, each `len` long, uniformly placed, at least
/// [`OUTAGE_SEPARATION`] apart (three outages, not one long one), none in the first minute (the
/// pod's first login).
fn outages(s: &Scenario, rng: &mut Rng) -> Vec<(Secs, Secs)> {
    let mut all = Vec::new();
    for day in 0..s.days {
        let base = f64::from(day) * DAY;
        loop {
            let mut today: Vec<(Secs, Secs)> = (0..s.outages_per_day)
                .map(|_| {
                    let a = base + rng.unit() * (DAY - s.outage_len);
                    (a, a + s.outage_len)
                })
                .collect();
            today.sort_by(|x, y| x.0.total_cmp(&y.0));
            let previous = all
                .last()
                .map_or(Secs::NEG_INFINITY, |o: &(Secs, Secs)| o.1);
            let apart = today
                .windows(2)
                .all(|p| p[1].0 - p[0].1 >= OUTAGE_SEPARATION)
                && today
                    .first()
                    .is_none_or(|o| o.0 - previous >= OUTAGE_SEPARATION);
            if apart && today.first().is_none_or(|o| o.0 >= 60.0) {
                all.extend(today);
                break;
            }
        }
    }
    all
}

/// Who is simulated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Client {
    /// vault-login's schedule.
    VaultLogin,
    /// Vault Agent's, in one reading.
    Agent(AgentReading),
}

/// Runs `client` through the scenario (same outages and seeds for every client) and sums the
/// tallies over pods.
pub fn simulate(s: &Scenario, client: Client) -> Tally {
    let end = f64::from(s.days) * DAY;
    let mut total = Tally::default();
    for pod in 0..s.pods {
        let mut world = Rng::new(s.seed ^ (u64::from(pod) << 20));
        let outages = outages(s, &mut world);
        let mut jitter = Rng::new(world.next_u64());
        let mut vault = Vault::new(s, outages);
        match client {
            Client::VaultLogin => vault_login(&mut vault, &mut jitter, 0.0, end),
            Client::Agent(reading) => vault_agent(&mut vault, &mut jitter, end, reading),
        }
        total.add(&vault.finish(end));
    }
    total
}

/// Section 5's fleet on the simulated clock: `pods` vault-login sidecars started evenly over
/// `stagger` seconds against a Vault with the role's `ttl`, down during `outage`; every request's
/// time, sorted. The same model as the simulated days, so it shows what the schedule alone
/// does to a fleet, without process start-up, scheduling noise or request latency.
pub fn fleet_requests(
    pods: u32,
    ttl: i64,
    stagger: Secs,
    outage: (Secs, Secs),
    end: Secs,
    seed: u64,
) -> Vec<Secs> {
    let s = Scenario {
        ttl,
        max_ttl: 32 * 86_400,
        outages_per_day: 0,
        outage_len: outage.1 - outage.0,
        days: 1,
        pods,
        seed,
    };
    let mut sent = Vec::new();
    for pod in 0..pods {
        let mut jitter = Rng::new(seed ^ (u64::from(pod) << 20));
        let mut vault = Vault::new(&s, vec![outage]);
        let start = stagger * f64::from(pod) / f64::from(pods);
        vault_login(&mut vault, &mut jitter, start, end);
        sent.extend(vault.sent);
    }
    sent.sort_by(f64::total_cmp);
    sent
}

/// Requests per one-second bucket, `n` buckets from `from`.
pub fn per_second(sent: &[Secs], from: Secs, n: usize) -> Vec<usize> {
    let mut buckets = vec![0; n];
    for &t in sent {
        if t >= from {
            if let Some(b) = buckets.get_mut((t - from) as usize) {
                *b += 1;
            }
        }
    }
    buckets
}

/// Per pod per day figures of a tally.
#[derive(Clone, Copy, Debug)]
pub struct PerDay {
    /// Requests sent.
    pub requests: f64,
    /// Of which failed.
    pub failed: f64,
    /// Token replacements: logins after each pod's first.
    pub replacements: f64,
}

/// Normalises a tally to one pod and one day.
pub fn per_day(s: &Scenario, t: &Tally) -> PerDay {
    let pod_days = f64::from(s.pods) * f64::from(s.days);
    PerDay {
        requests: t.requests as f64 / pod_days,
        failed: t.failed as f64 / pod_days,
        replacements: (t.logins - u64::from(s.pods)) as f64 / pod_days,
    }
}

/// Runs the calm and the outage scenarios for every client and adds the section's rows.
pub fn run(report: &mut Report) {
    let (token, _, _) = secret_requests(0, 0, 30, 0x5EED);
    for (name, statics, dynamic, baseline) in [
        (
            "one KV secret (refresh 5 min)",
            1,
            0,
            "Agent: 288 reads a day (static_secret_render_interval 5m)",
        ),
        (
            "one dynamic secret (lease 1 h, max 24 h)",
            0,
            1,
            "Agent: renews at 2/3 + grace, once more right after each read",
        ),
    ] {
        let (t, reads, renewals) = secret_requests(statics, dynamic, 30, 0x5EED);
        eprintln!(
            "   secrets {name}: token {t:.2}/day, reads {reads:.2}/day, renewals {renewals:.2}/day"
        );
        report.add(
            "4 simulated day, secrets",
            &format!("extra Vault requests per pod per day for {name} (1 pod × 30 days, calm)"),
            format!(
                "{:.2} ({reads:.2} reads, {renewals:.2} lease renewals)",
                reads + renewals + t - token
            ),
            baseline.to_string(),
            "",
            Verdict::Info,
        );
    }
    let calm = Scenario {
        ttl: 3600,
        max_ttl: 86_400,
        outages_per_day: 0,
        outage_len: 600.0,
        days: 30,
        pods: 100,
        seed: 0x5EED,
    };
    let stormy = Scenario {
        outages_per_day: 3,
        ..calm
    };
    for (name, s) in [("calm", calm), ("3 × 10 min outages/day", stormy)] {
        let section = format!("4 simulated day, {name}");
        let ours = simulate(&s, Client::VaultLogin);
        let agent = simulate(&s, Client::Agent(AgentReading::Source));
        let doc = simulate(&s, Client::Agent(AgentReading::Doc));
        let (o, a, d) = (per_day(&s, &ours), per_day(&s, &agent), per_day(&s, &doc));
        let with_doc = |agent_text: String, doc_text: String| {
            if s.outages_per_day > 0 {
                format!("Agent {agent_text} (doc reading: {doc_text})")
            } else {
                format!("Agent {agent_text}")
            }
        };
        eprintln!(
            "   {name}: vault-login {ours:?}\n   {name}: agent {agent:?}\n   {name}: agent (doc) {doc:?}"
        );
        report.add(
            &section,
            &format!(
                "Vault requests per pod per day, failed included ({} pods × {} days)",
                s.pods, s.days
            ),
            format!("{:.2} ({:.2} failed)", o.requests, o.failed),
            with_doc(
                format!("{:.2} ({:.2} failed)", a.requests, a.failed),
                format!("{:.2}", d.requests),
            ),
            "≤ Agent",
            Verdict::of(o.requests <= a.requests),
        );
        let churn_target = if s.outages_per_day > 0 { "< Agent" } else { "" };
        report.add(
            &section,
            "token replacements per pod per day (each orphans the app's leases)",
            format!("{:.3}", o.replacements),
            with_doc(
                format!("{:.3}", a.replacements),
                format!("{:.3}", d.replacements),
            ),
            churn_target,
            if s.outages_per_day > 0 {
                Verdict::of(o.replacements < a.replacements)
            } else {
                Verdict::Info
            },
        );
        report.add(
            &section,
            "time without a valid token, total over all pod-days (longest; of it after the max TTL; of it while Vault was up)",
            format!(
                "{:.1} s ({:.1} s; {:.1} s; {:.1} s)",
                ours.gap, ours.longest_gap, ours.gap_at_max_ttl, ours.gap_while_up
            ),
            with_doc(
                format!(
                    "{:.1} s ({:.1} s; {:.1} s; {:.1} s)",
                    agent.gap, agent.longest_gap, agent.gap_at_max_ttl, agent.gap_while_up
                ),
                format!("{:.1} s", doc.gap),
            ),
            "0 s",
            Verdict::of(ours.gap == 0.0),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scenario(outages_per_day: usize) -> Scenario {
        Scenario {
            ttl: 3600,
            max_ttl: 86_400,
            outages_per_day,
            outage_len: 600.0,
            days: 3,
            pods: 10,
            seed: 1,
        }
    }

    #[test]
    fn secrets_cost_what_their_schedule_says() {
        let (token, reads, renewals) = secret_requests(1, 0, 3, 1);
        // A static secret: one read per 5 min, plus one per new token.
        assert!((288.0..=292.0).contains(&reads), "{reads}");
        assert_eq!(renewals, 0.0);
        assert!(token < 40.0, "{token}");
        let (_, reads, renewals) = secret_requests(0, 1, 3, 1);
        // A 1 h lease renewed at about 70 % until its 24 h max, then new credentials.
        assert!((1.0..=4.0).contains(&reads), "{reads}");
        assert!((30.0..=40.0).contains(&renewals), "{renewals}");
    }

    #[test]
    fn vault_caps_at_max_ttl_and_refuses_past_it() {
        let s = Scenario {
            max_ttl: 100,
            ..scenario(0)
        };
        let mut v = Vault::new(&s, Vec::new());
        let (id, ttl) = v.login(0.5).expect("up");
        assert_eq!(ttl, Duration::from_secs(100), "login TTL capped by max TTL");
        match v.renew(id, 60.2) {
            Renewal::Granted { ttl, warnings } => {
                assert_eq!(ttl, Duration::from_secs(40));
                assert!(failure::warns_of_cap(&warnings));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(v.renew(id, 100.0), Renewal::PastMax);
        assert_eq!(v.renew(id, 100.3), Renewal::Denied, "expired at 100.2");
        let t = v.finish(200.0);
        // Half a second before the first login, then from expiry (100.2) to the end.
        assert!((t.gap - 100.3).abs() < 1e-6, "{t:?}");
        assert!((t.gap_at_max_ttl - 99.8).abs() < 1e-6, "{t:?}");
    }

    #[test]
    fn gap_while_up_excludes_outages() {
        let s = Scenario {
            max_ttl: 100,
            ..scenario(0)
        };
        let mut v = Vault::new(&s, vec![(100.0, 150.0)]);
        v.login(0.0).expect("up");
        let t = v.finish(200.0);
        assert!((t.gap - 100.0).abs() < 1e-9 && (t.gap_while_up - 50.0).abs() < 1e-9);
    }

    #[test]
    fn vault_is_down_during_outages() {
        let mut v = Vault::new(&scenario(0), vec![(10.0, 20.0)]);
        assert!(v.login(10.0).is_none());
        assert!(v.login(20.0).is_some());
        assert_eq!((v.tally.requests, v.tally.failed), (2, 1));
    }

    #[test]
    fn calm_days_have_no_gap_and_one_relogin_a_day() {
        let s = scenario(0);
        for client in [Client::VaultLogin, Client::Agent(AgentReading::Source)] {
            let t = simulate(&s, client);
            assert_eq!(t.gap, 0.0, "{client:?}");
            assert_eq!(t.failed, 0, "{client:?}");
            let d = per_day(&s, &t);
            assert!((0.9..=1.1).contains(&d.replacements), "{client:?} {d:?}");
            assert!((25.0..45.0).contains(&d.requests), "{client:?} {d:?}");
        }
    }

    #[test]
    fn agent_renews_right_after_each_login() {
        let s = Scenario {
            days: 1,
            pods: 1,
            ..scenario(0)
        };
        let end = 10.0;
        let mut v = Vault::new(&s, Vec::new());
        vault_agent(&mut v, &mut Rng::new(3), end, AgentReading::Source);
        assert_eq!((v.tally.logins, v.tally.renewals), (1, 1));
        let mut v = Vault::new(&s, Vec::new());
        vault_login(&mut v, &mut Rng::new(3), 0.0, end);
        assert_eq!((v.tally.logins, v.tally.renewals), (1, 0));
    }

    #[test]
    fn outages_are_apart_and_after_the_first_minute() {
        let s = scenario(3);
        let o = outages(&s, &mut Rng::new(9));
        assert_eq!(o.len(), 9);
        assert!(o.windows(2).all(|p| p[1].0 - p[0].1 >= OUTAGE_SEPARATION));
        assert!(o[0].0 >= 60.0 && o.iter().all(|x| x.1 - x.0 == 600.0));
    }

    #[test]
    fn same_scenario_same_figures() {
        let s = scenario(3);
        let c = Client::Agent(AgentReading::Doc);
        assert_eq!(simulate(&s, c), simulate(&s, c));
    }

    #[test]
    fn simulated_fleet_spreads_its_recovery() {
        // Section 5's scenario: 300 sidecars, TTL 20 s, started over 20 s, Vault down 10 s.
        let (down, up) = (25.0, 35.0);
        let sent = fleet_requests(300, 20, 20.0, (down, up), 70.0, 7);
        // Everyone was logged in and renewing before the outage...
        assert!(per_second(&sent, 20.0, 5).iter().all(|&b| b > 0));
        let after = per_second(&sent, up, 30);
        // ...everyone whose renewal fell in the outage came back, spread over seconds: no
        // second after recovery holds more than 35 % of the fleet.
        let busiest = after.iter().copied().max().unwrap();
        assert!(busiest <= 105, "{after:?}");
        assert!(after[..10].iter().sum::<usize>() >= 200, "{after:?}");
        // The fleet did retry during the outage, but backed off instead of hammering.
        let during = per_second(&sent, down, 10).iter().sum::<usize>();
        assert!(during > 100 && during < 1500, "{during}");
    }

    #[test]
    fn recovery_after_an_outage_longer_than_the_ttl_is_no_slower_than_the_agents() {
        // Issue 26's runs: TTL 20 s, Vault refused for 40 s and for 90 s; the wait from the
        // end of each outage to a valid token again (time without one while Vault is up).
        for outage_len in [40.0, 90.0] {
            let s = Scenario {
                ttl: 20,
                max_ttl: 32 * 86_400,
                outages_per_day: 3,
                outage_len,
                days: 10,
                pods: 20,
                seed: 26,
            };
            let outages = f64::from(s.pods * s.days) * s.outages_per_day as f64;
            let mean = |c| simulate(&s, c).gap_while_up / outages;
            let ours = mean(Client::VaultLogin);
            let agent = mean(Client::Agent(AgentReading::Source));
            eprintln!(
                "outage {outage_len} s: mean recovery vault-login {ours:.1} s, agent {agent:.1} s"
            );
            assert!(
                ours <= agent,
                "{outage_len} s: {ours:.1} s vs the agent's {agent:.1} s"
            );
            assert!(ours <= 20.0, "{outage_len} s: {ours:.1} s");
        }
    }

    #[test]
    fn per_second_buckets() {
        assert_eq!(
            per_second(&[0.5, 1.0, 1.9, 2.0, 9.0], 1.0, 3),
            vec![2, 1, 0]
        );
    }
}
