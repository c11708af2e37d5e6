//! An outage shorter than the token's life: does the token in the file change? One client at a
//! time (vault-login and the agent alternated), behind its own gate; right after its first
//! renewal the server becomes unreachable for long enough to cover the next renewal, but not the
//! token's expiry. Two kinds of outage: refused connections (the gate closed, the server keeps
//! running) and a hung server (SIGSTOP: connections accepted, never answered).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::gate::Gate;
use super::stage::{Kind, Mode, Slot, Stage};
use super::SECTION;
use crate::lab::{stop, wait_until};
use crate::report::{Report, Verdict};

const TTL: Duration = Duration::from_secs(30);
/// Begun right after a renewal, it covers the next one (vault-login renews at 70 ± 10 % of the
/// TTL, the agent at about 70 %) and ends with 5 s of the token's life left.
const OUTAGE: Duration = Duration::from_secs(25);
/// Watched after the server's return: past the old token's expiry.
const AFTER: Duration = Duration::from_secs(15);
const SAMPLE: Duration = Duration::from_millis(250);

/// How the server is unreachable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cut {
    /// Connections refused: the gate is closed.
    Refused,
    /// The server is frozen with SIGSTOP.
    Hung,
}

impl Cut {
    fn label(self) -> &'static str {
        match self {
            Cut::Refused => "refused",
            Cut::Hung => "hung",
        }
    }
}

/// What one trial saw.
#[derive(Debug, Default)]
struct Trial {
    /// Different tokens the file held after the first one.
    changes: usize,
    /// Logins the server saw from the client after its first.
    logins: usize,
    /// Samples (every 250 ms, while the server could answer) where the file's token was dead.
    dead_samples: usize,
}

fn first_renewal(stage: &Stage, slot: &Slot) -> bool {
    wait_until(TTL + Duration::from_secs(5), || {
        stage.requests().iter().any(|r| {
            r.client.as_deref() == Some(slot.client.as_str()) && r.is_renewal() && !r.failed
        })
    })
}

fn trial(stage: &Stage, kind: Kind, cut: Cut, index: usize) -> Result<Trial, String> {
    let slot = stage.slot(kind, &format!("outage-{}", cut.label()), index)?;
    let mut gate = Gate::open(SocketAddr::from(([127, 0, 0, 1], stage.bao.port())))
        .map_err(|e| format!("gate: {e}"))?;
    let mut children = vec![slot.spawn(&gate.url(), Mode::Sidecar)?];
    let result = (|| {
        if !wait_until(Duration::from_secs(20), || {
            stage.file_token_alive(&slot.token_file)
        }) {
            return Err(format!("{} wrote no valid token within 20 s", kind.label()));
        }
        if !first_renewal(stage, &slot) {
            return Err(format!("{} did not renew within the TTL", kind.label()));
        }
        let mut trial = Trial::default();
        let mut last = slot.token();
        match cut {
            Cut::Refused => gate.close(),
            Cut::Hung => stage.bao.pause(),
        }
        let down = Instant::now();
        let mut up = false;
        while down.elapsed() < OUTAGE + AFTER {
            if !up && down.elapsed() >= OUTAGE {
                match cut {
                    Cut::Refused => gate.reopen().map_err(|e| format!("gate: {e}"))?,
                    Cut::Hung => stage.bao.resume(),
                }
                up = true;
            }
            let now = slot.token();
            if now != last && !now.is_empty() {
                trial.changes += 1;
                last = now.clone();
            }
            // A frozen server cannot be asked; behind a closed gate it still can.
            if (up || cut == Cut::Refused) && !stage.alive(&now) {
                trial.dead_samples += 1;
            }
            std::thread::sleep(SAMPLE);
        }
        Ok(trial)
    })();
    // Never leave the server frozen for the next scene.
    if cut == Cut::Hung {
        stage.bao.resume();
    }
    stop(&mut children);
    let mut trial = result?;
    trial.logins = stage
        .requests()
        .iter()
        .filter(|r| r.client.as_deref() == Some(slot.client.as_str()) && r.is_login() && !r.failed)
        .count()
        .saturating_sub(1);
    Ok(trial)
}

/// Runs `reps` trials per program and kind of outage, alternated, and adds the rows.
pub fn run(report: &mut Report, stage: &Stage, reps: usize) -> Result<(), String> {
    stage.set_role(TTL, Duration::from_secs(24 * 3600));
    for cut in [Cut::Refused, Cut::Hung] {
        let mut totals = [Trial::default(), Trial::default()];
        let mut changed = [0usize; 2];
        for i in 0..reps {
            for (k, kind) in Kind::BOTH.into_iter().enumerate() {
                let t = trial(stage, kind, cut, i)?;
                eprintln!("   {cut:?} outage, {}: {t:?}", kind.label());
                changed[k] += usize::from(t.changes > 0);
                totals[k].changes += t.changes;
                totals[k].logins += t.logins;
                totals[k].dead_samples += t.dead_samples;
            }
        }
        let row = |k: usize| {
            format!(
                "{} of {reps} ({} new logins; dead token in the file: {} samples)",
                changed[k], totals[k].logins, totals[k].dead_samples
            )
        };
        report.add(
            SECTION,
            &format!(
                "{} outage of {} s right after a renewal, token TTL {} s ({} s of life left at the return): trials where the token in the file changed",
                cut.label(),
                OUTAGE.as_secs(),
                TTL.as_secs(),
                (TTL - OUTAGE).as_secs()
            ),
            row(0),
            format!("agent: {}", row(1)),
            "",
            Verdict::Info,
        );
    }
    Ok(())
}
