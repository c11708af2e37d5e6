//! Steady state with a short TTL: how many requests each program sends per hour to keep a token
//! (logins, renewals), and to keep one KV secret fresh at the same refresh interval. Four
//! clients run side by side for the window: a vault-login and an agent with the token only,
//! and a vault-login and an agent that also write the secret; the server's audit log says who
//! sent what, and when.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::audit::Request;
use super::stage::{Kind, Mode, Stage, SECRET_PATH};
use super::SECTION;
use crate::lab::{stop, wait_until};
use crate::report::{Report, Verdict};
use crate::simulation::{simulate, AgentReading, Client, Scenario};

/// The short TTL, and the max TTL that makes both log in again now and then.
pub const TTL: Duration = Duration::from_secs(20);
const MAX_TTL: Duration = Duration::from_secs(120);
/// The secret's refresh interval, the same for both (the agent's
/// `static_secret_render_interval`, vault-login's `VAULT_LOGIN_SECRETS_REFRESH`).
const REFRESH: Duration = Duration::from_secs(10);

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// What one client sent in the window.
#[derive(Default, Debug)]
struct Tally {
    logins: usize,
    renewals: usize,
    failed: usize,
    secret_reads: usize,
    /// Other requests: the agent's template asks `sys/internal/ui/mounts/...` which KV version
    /// a mount is.
    other: usize,
    /// Seconds between consecutive reads of the secret.
    gaps: Vec<f64>,
}

fn tally(requests: &[Request], client: &str, until: f64) -> Tally {
    let mut t = Tally::default();
    let mut last_read: Option<f64> = None;
    for r in requests
        .iter()
        .filter(|r| r.client.as_deref() == Some(client) && r.time <= until)
    {
        t.failed += usize::from(r.failed);
        if r.is_login() {
            t.logins += 1;
        } else if r.is_renewal() {
            t.renewals += 1;
        } else if r.path == SECRET_PATH {
            t.secret_reads += 1;
            if let Some(prev) = last_read {
                t.gaps.push(r.time - prev);
            }
            last_read = Some(r.time);
        } else {
            t.other += 1;
        }
    }
    t
}

const MODEL_PODS: u32 = 20;

/// Requests per hour for the token in section 4's simulation of `client` with this scene's TTLs.
fn modelled(client: Client) -> String {
    let s = Scenario {
        ttl: TTL.as_secs() as i64,
        max_ttl: MAX_TTL.as_secs() as i64,
        outages_per_day: 0,
        outage_len: 0.0,
        days: 1,
        pods: MODEL_PODS,
        seed: 0x5EED,
    };
    let t = simulate(&s, client);
    let hours = f64::from(MODEL_PODS) * 24.0;
    format!(
        "{:.0} ({:.0} logins, {:.0} renewals, {:.0} failed)",
        t.requests as f64 / hours,
        t.logins as f64 / hours,
        t.renewals as f64 / hours,
        t.failed as f64 / hours
    )
}

/// Runs the four clients for `window` and adds the rows.
pub fn run(report: &mut Report, stage: &Stage, window: Duration) -> Result<(), String> {
    stage.set_role(TTL, MAX_TTL);
    let addr = stage.bao.addr();
    let mut plan = Vec::new();
    for kind in Kind::BOTH {
        plan.push((stage.slot(kind, "steady", 0)?, Mode::Sidecar));
        plan.push((stage.slot(kind, "kv", 0)?, Mode::WithSecret(REFRESH)));
    }
    let start = unix_now();
    let mut children = Vec::new();
    for (slot, mode) in &plan {
        match slot.spawn(&addr, *mode) {
            Ok(c) => children.push(c),
            Err(e) => {
                stop(&mut children);
                return Err(e);
            }
        }
    }
    let ready = plan.iter().all(|(slot, _)| {
        wait_until(Duration::from_secs(20), || {
            stage.file_token_alive(&slot.token_file)
        })
    });
    if ready {
        std::thread::sleep(window.saturating_sub(Duration::from_secs_f64(unix_now() - start)));
    }
    let end = unix_now();
    stop(&mut children);
    if !ready {
        return Err("a client wrote no valid token within 20 s".into());
    }
    let requests = stage.requests();
    let hours = (end - start) / 3600.0;
    let t: Vec<Tally> = plan
        .iter()
        .map(|(s, _)| tally(&requests, &s.client, end))
        .collect();
    // plan: [vault-login token, vault-login kv, agent token, agent kv]
    let (ours, agent, ours_kv, agent_kv) = (&t[0], &t[2], &t[1], &t[3]);
    let per_hour = |n: usize| n as f64 / hours;
    let token_row = |t: &Tally| {
        format!(
            "{:.0} ({:.0} logins, {:.0} renewals, {:.0} failed)",
            per_hour(t.logins + t.renewals + t.other + t.secret_reads),
            per_hour(t.logins),
            per_hour(t.renewals),
            per_hour(t.failed)
        )
    };
    let mins = (end - start) / 60.0;
    report.add(
        SECTION,
        &format!(
            "requests per hour for the token, TTL {} s, max TTL {} s ({mins:.1} min, side by side)",
            TTL.as_secs(),
            MAX_TTL.as_secs()
        ),
        token_row(ours),
        format!("agent: {}", token_row(agent)),
        "",
        Verdict::Info,
    );
    let (model_ours, model_agent) = (
        modelled(Client::VaultLogin),
        modelled(Client::Agent(AgentReading::Source)),
    );
    report.add(
        SECTION,
        &format!(
            "the same, replayed by section 4's model (simulated clock, {MODEL_PODS} pods × 1 day, no outage)"
        ),
        model_ours,
        format!("agent model: {model_agent}"),
        "",
        Verdict::Info,
    );
    let ratio =
        (ours.logins + ours.renewals) as f64 / (agent.logins + agent.renewals).max(1) as f64;
    report.add(
        SECTION,
        "token requests, ratio vault-login / agent",
        format!("{ratio:.2}×"),
        "1×",
        "",
        Verdict::Info,
    );
    let kv_row = |t: &Tally| {
        format!(
            "{:.0} reads (+{:.0} other), {:.0} for the token",
            per_hour(t.secret_reads),
            per_hour(t.other),
            per_hour(t.logins + t.renewals)
        )
    };
    report.add(
        SECTION,
        &format!(
            "requests per hour for one KV v2 secret, refreshed every {} s (same clients' token requests beside)",
            REFRESH.as_secs()
        ),
        kv_row(ours_kv),
        format!("agent: {}", kv_row(agent_kv)),
        "",
        Verdict::Info,
    );
    let gaps = |t: &Tally| {
        if t.gaps.is_empty() {
            return "no two reads".to_string();
        }
        let mut sorted = t.gaps.clone();
        sorted.sort_by(f64::total_cmp);
        let at = |p: f64| sorted[((sorted.len() - 1) as f64 * p).round() as usize];
        let mean = sorted.iter().sum::<f64>() / sorted.len() as f64;
        format!(
            "mean {mean:.2} s, p10–p90 {:.2}–{:.2} s, all {:.2}–{:.2} s",
            at(0.1),
            at(0.9),
            sorted[0],
            sorted[sorted.len() - 1]
        )
    };
    report.add(
        SECTION,
        "time between two reads of the secret (server's clock; both also read it after each new token)",
        gaps(ours_kv),
        format!("agent: {}", gaps(agent_kv)),
        "",
        Verdict::Info,
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(time: f64, path: &str, client: &str, failed: bool) -> Request {
        Request {
            time,
            path: path.into(),
            client: Some(client.into()),
            failed,
            probe: false,
        }
    }

    #[test]
    fn tally_counts_one_client_up_to_the_end() {
        let rs = [
            req(0.0, "auth/kubernetes/login", "a", false),
            req(0.1, "auth/token/renew-self", "a", true),
            req(
                0.2,
                "sys/internal/ui/mounts/internal/data/database/config",
                "a",
                false,
            ),
            req(0.3, SECRET_PATH, "a", false),
            req(9.8, SECRET_PATH, "a", false),
            req(5.0, SECRET_PATH, "b", false),
            req(20.0, SECRET_PATH, "a", false),
        ];
        let t = tally(&rs, "a", 10.0);
        assert_eq!(
            (t.logins, t.renewals, t.failed, t.secret_reads, t.other),
            (1, 1, 1, 2, 1)
        );
        assert_eq!(t.gaps.len(), 1);
        assert!((t.gaps[0] - 9.5).abs() < 1e-9);
    }
}
