//! Idle footprint: one vault-login sidecar and one agent, side by side, logged in with a 1 h
//! TTL (nothing to do for the next ~40 minutes): resident memory, threads, and how often the
//! kernel switches to them (their wake-ups) over an idle window.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::stage::{Kind, Mode, Stage};
use super::SECTION;
use crate::lab::{stop, wait_until};
use crate::procfs::{context_switches_by_thread, footprint, pss_kib};
use crate::report::{Report, Verdict};

const TTL: Duration = Duration::from_secs(3600);
/// After the login (and the agent's renewal right after it), before measuring.
const SETTLE: Duration = Duration::from_secs(3);
const SAMPLE: Duration = Duration::from_secs(1);

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// Context switches of each process in `pids` over `window`, the increases of each thread
/// added up from samples every second (threads come and go: the Go runtime's, tokio's blocking
/// pool after 10 s idle; one that exits loses at most its last second).
fn switches_over(pids: &[u32], window: Duration) -> Result<Vec<u64>, String> {
    let gone = || "a sidecar exited while idle".to_string();
    let mut last: Vec<BTreeMap<u32, u64>> = pids
        .iter()
        .map(|p| context_switches_by_thread(*p).ok_or_else(gone))
        .collect::<Result<_, _>>()?;
    let mut total = vec![0u64; pids.len()];
    let start = Instant::now();
    while start.elapsed() < window {
        std::thread::sleep(SAMPLE.min(window.saturating_sub(start.elapsed())));
        for (i, pid) in pids.iter().enumerate() {
            let now = context_switches_by_thread(*pid).ok_or_else(gone)?;
            for (tid, n) in &now {
                // A thread born in the window counts from zero.
                total[i] += n.saturating_sub(last[i].get(tid).copied().unwrap_or(0));
            }
            last[i] = now;
        }
    }
    Ok(total)
}

/// Measures both for `window` and adds the rows.
pub fn run(report: &mut Report, stage: &Stage, window: Duration) -> Result<(), String> {
    stage.set_role(TTL, Duration::from_secs(24 * 3600));
    let addr = stage.bao.addr();
    let slots = [
        stage.slot(Kind::VaultLogin, "idle", 0)?,
        stage.slot(Kind::Agent, "idle", 0)?,
    ];
    let mut children = Vec::new();
    for slot in &slots {
        children.push(slot.spawn(&addr, Mode::Sidecar)?);
    }
    let pids: Vec<u32> = children.iter().map(|c| c.id()).collect();
    let result = (|| {
        for slot in &slots {
            if !wait_until(Duration::from_secs(20), || {
                stage.file_token_alive(&slot.token_file)
            }) {
                return Err(format!(
                    "{} wrote no valid token within 20 s",
                    slot.kind.label()
                ));
            }
        }
        std::thread::sleep(SETTLE);
        let requests_before = stage.requests().len();
        let switches = switches_over(&pids, window)?;
        let requests = stage.requests();
        let mut out = Vec::new();
        for (i, pid) in pids.iter().enumerate() {
            let fp = footprint(*pid).ok_or("a sidecar exited while idle")?;
            let sent = requests[requests_before.min(requests.len())..]
                .iter()
                .filter(|r| r.client.as_deref() == Some(slots[i].client.as_str()))
                .count();
            out.push((fp, pss_kib(*pid).unwrap_or(0), switches[i], sent));
        }
        Ok(out)
    })();
    stop(&mut children);
    let m = result?;
    let secs = window.as_secs_f64();
    let (ours, agent) = (&m[0], &m[1]);
    report.add(
        SECTION,
        "idle: RSS (VmRSS); anonymous (RssAnon); PSS (glibc build of vault-login; the agent is a static Go binary)",
        format!("{}; {}; {}", mib(ours.0.rss_kib), mib(ours.0.rss_anon_kib), mib(ours.1)),
        format!("agent: {}; {}; {}", mib(agent.0.rss_kib), mib(agent.0.rss_anon_kib), mib(agent.1)),
        "",
        Verdict::Info,
    );
    report.add(
        SECTION,
        "idle: threads",
        ours.0.threads.to_string(),
        format!("agent: {}", agent.0.threads),
        "",
        Verdict::Info,
    );
    report.add(
        SECTION,
        &format!("idle: wake-ups, context switches per second over {secs:.0} s (all threads)"),
        format!("{:.1} ({} in all)", ours.2 as f64 / secs, ours.2),
        format!("agent: {:.1} ({} in all)", agent.2 as f64 / secs, agent.2),
        "",
        Verdict::Info,
    );
    report.add(
        SECTION,
        &format!("idle: requests to the server in those {secs:.0} s"),
        ours.3.to_string(),
        format!("agent: {}", agent.3),
        "",
        Verdict::Info,
    );
    Ok(())
}
