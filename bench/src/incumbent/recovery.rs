//! Recovery after an outage longer than the token's life (issue 26): 6 vault-login and 6 agents,
//! default settings, token TTL 20 s, each behind its own gate; all gates close at once (refused
//! connections, the server keeps running so every token expires), reopen after the outage, and
//! the bench measures, per client, the time from the server's return to the first token in its
//! file that the server accepts.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::process::Child;
use std::time::{Duration, Instant};

use super::gate::Gate;
use super::stage::{Kind, Mode, Slot, Stage};
use super::SECTION;
use crate::lab::{stop, wait_until};
use crate::report::{Report, Verdict};

const TTL: Duration = Duration::from_secs(20);
/// Longer than both programs' longest backoff (5 m) plus a request timeout.
const LIMIT: Duration = Duration::from_secs(390);
const POLL: Duration = Duration::from_millis(100);
/// Between one recovery and the next outage, so every client is back to renewing.
const SETTLE: Duration = Duration::from_secs(10);

/// Seconds from the return to each client's first valid token (`None`: not within [`LIMIT`]).
fn recover(stage: &Stage, slots: &[Slot]) -> Vec<Option<f64>> {
    let back = Instant::now();
    let mut got: Vec<Option<f64>> = vec![None; slots.len()];
    // A token once dead stays dead: ask the server about each token once it is found dead.
    let mut dead: HashSet<String> = HashSet::new();
    while got.iter().any(Option::is_none) && back.elapsed() < LIMIT {
        for (i, slot) in slots.iter().enumerate() {
            if got[i].is_some() {
                continue;
            }
            let token = slot.token();
            if token.is_empty() || dead.contains(&token) {
                continue;
            }
            if stage.alive(&token) {
                got[i] = Some(back.elapsed().as_secs_f64());
            } else {
                dead.insert(token);
            }
        }
        std::thread::sleep(POLL);
    }
    got
}

fn mean(xs: &[f64]) -> f64 {
    xs.iter().sum::<f64>() / xs.len().max(1) as f64
}

/// Runs the fleet of `per_kind` + `per_kind` through each outage in turn and adds the rows.
pub fn run(
    report: &mut Report,
    stage: &Stage,
    per_kind: usize,
    outages: &[Duration],
) -> Result<(), String> {
    stage.set_role(TTL, Duration::from_secs(24 * 3600));
    let upstream = SocketAddr::from(([127, 0, 0, 1], stage.bao.port()));
    let mut slots = Vec::new();
    for i in 0..per_kind {
        for kind in Kind::BOTH {
            slots.push(stage.slot(kind, "recovery", i)?);
        }
    }
    let mut gates = Vec::new();
    let mut children: Vec<Child> = Vec::new();
    let result = (|| {
        for slot in &slots {
            let gate = Gate::open(upstream).map_err(|e| format!("gate: {e}"))?;
            children.push(slot.spawn(&gate.url(), Mode::Sidecar)?);
            gates.push(gate);
        }
        for slot in &slots {
            if !wait_until(Duration::from_secs(30), || {
                stage.file_token_alive(&slot.token_file)
            }) {
                return Err(format!(
                    "{} wrote no valid token within 30 s",
                    slot.kind.label()
                ));
            }
        }
        let mut out = Vec::new();
        for outage in outages {
            std::thread::sleep(SETTLE);
            for g in gates.iter_mut() {
                g.close();
            }
            eprintln!("   outage of {} s", outage.as_secs());
            std::thread::sleep(*outage);
            for g in gates.iter_mut() {
                g.reopen().map_err(|e| format!("gate: {e}"))?;
            }
            let times = recover(stage, &slots);
            eprintln!("   back after: {times:.1?}");
            out.push((*outage, times));
        }
        Ok(out)
    })();
    stop(&mut children);
    drop(gates);
    for (outage, times) in result? {
        let of = |kind: Kind| -> (Vec<f64>, usize) {
            let mine: Vec<Option<f64>> = slots
                .iter()
                .zip(&times)
                .filter(|(s, _)| s.kind == kind)
                .map(|(_, t)| *t)
                .collect();
            let missing = mine.iter().filter(|t| t.is_none()).count();
            (mine.into_iter().flatten().collect(), missing)
        };
        let (ours, ours_missing) = of(Kind::VaultLogin);
        let (agent, agent_missing) = of(Kind::Agent);
        let cell = |xs: &[f64], missing: usize| {
            let max = xs.iter().cloned().fold(0.0, f64::max);
            let mut s = format!("mean {:.1} s, max {max:.1} s", mean(xs));
            if missing > 0 {
                s.push_str(&format!(", {missing} not within {} s", LIMIT.as_secs()));
            }
            s
        };
        let ratio = mean(&ours) / mean(&agent);
        report.add(
            SECTION,
            &format!(
                "recovery after a {} s refused outage ({per_kind} + {per_kind} clients, TTL {} s, default settings): server back → first valid token in the file",
                outage.as_secs(),
                TTL.as_secs()
            ),
            format!("{} (ratio {ratio:.2}×)", cell(&ours, ours_missing)),
            format!("agent: {}", cell(&agent, agent_missing)),
            "mean ≤ agent's",
            Verdict::of(ours_missing == 0 && agent_missing == 0 && mean(&ours) <= mean(&agent)),
        );
    }
    Ok(())
}
