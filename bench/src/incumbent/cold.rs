//! Cold start: `vault-login --once` against `bao agent -exit-after-auth`, alternated run by
//! run against the same server, each timed from spawn to exit and checked to have written a
//! fresh token the server accepts; plus what each run cost the server (from its audit log).

use std::time::{Duration, Instant};

use super::stage::{Kind, Mode, Stage};
use super::SECTION;
use crate::report::{Report, Verdict};
use crate::stats::{median, ms, percentile};

const WARMUP: usize = 2;

/// Runs `runs` alternated pairs (after warm-ups) and adds the rows.
pub fn run(report: &mut Report, stage: &Stage, runs: usize) -> Result<(), String> {
    let addr = stage.bao.addr();
    let slots = [
        stage.slot(Kind::VaultLogin, "cold", 0)?,
        stage.slot(Kind::Agent, "cold", 0)?,
    ];
    let mut samples: [Vec<Duration>; 2] = [Vec::new(), Vec::new()];
    let before = stage.requests().len();
    for round in 0..WARMUP + runs {
        for (i, slot) in slots.iter().enumerate() {
            let old = slot.token();
            let mut cmd = slot.command(&addr, Mode::Once)?;
            let start = Instant::now();
            let status = cmd
                .status()
                .map_err(|e| format!("{}: cannot start: {e}", slot.kind.label()))?;
            let took = start.elapsed();
            if !status.success() {
                return Err(format!(
                    "{} failed ({status}); log: {}",
                    slot.kind.label(),
                    slot.log.display()
                ));
            }
            let new = slot.token();
            if new == old || !stage.alive(&new) {
                return Err(format!(
                    "{} exited without writing a fresh valid token",
                    slot.kind.label()
                ));
            }
            if round >= WARMUP {
                samples[i].push(took);
            }
        }
    }
    // What one cold start sends: the agent renews right after its login even when it is
    // about to exit (the renewal is then cut off by the exit).
    let requests = stage.requests();
    let per_run = |kind: Kind| {
        let client = &slots[if kind == Kind::Agent { 1 } else { 0 }].client;
        let n = requests[before..]
            .iter()
            .filter(|r| r.client.as_deref() == Some(client.as_str()))
            .count();
        n as f64 / (WARMUP + runs) as f64
    };
    for (i, slot) in slots.iter().enumerate() {
        eprintln!(
            "   {:<12} median {}  p10 {}  p90 {}  min {}",
            slot.kind.label(),
            ms(median(&samples[i])),
            ms(percentile(&samples[i], 10.0)),
            ms(percentile(&samples[i], 90.0)),
            ms(percentile(&samples[i], 0.0))
        );
    }
    let spread = |s: &[Duration]| format!("{} (p90 {})", ms(median(s)), ms(percentile(s, 90.0)));
    report.add(
        SECTION,
        &format!("cold start: median wall time, exec → token on disk → exit, `--once` vs `-exit-after-auth` ({runs} runs each, alternated)"),
        spread(&samples[0]),
        format!("agent: {}", spread(&samples[1])),
        "",
        Verdict::Info,
    );
    let ratio = median(&samples[0]).as_secs_f64() / median(&samples[1]).as_secs_f64();
    report.add(
        SECTION,
        "cold start: ratio vault-login / agent (medians)",
        format!("{ratio:.2}×"),
        "1×",
        "",
        Verdict::Info,
    );
    report.add(
        SECTION,
        "cold start: requests to the server per run (audit log)",
        format!("{:.2}", per_run(Kind::VaultLogin)),
        format!("agent: {:.2}", per_run(Kind::Agent)),
        "",
        Verdict::Info,
    );
    Ok(())
}
