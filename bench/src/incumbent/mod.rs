//! Section 6: vault-login beside the incumbent it replaces, the real `bao agent` (OpenBao Agent
//! 2.7.2, the open fork of Vault Agent), both against the same real `bao server -dev`, with the
//! same role and the same kind of JWT, in one run: cold start, idle footprint, requests for a
//! token and for a KV secret with a short TTL, an outage shorter than the token's life, and
//! recovery after one longer than it. Section 4 replays a *model* of Vault Agent; this one
//! measures the real program.
//!
//! # Layout
//! - `stage`: the real server (via `vault_emulator::real`) with an audit log, a secret and a
//!   role; each client's folder, JWT and command line.
//! - `hcl`: the agent's configuration file. `gate`: a forwarder that can refuse connections.
//! - `audit`: who sent which request, from the server's file audit device.
//! - `cold`, `idle`, `steady`, `outage`, `recovery`: the scenes, each adding its rows.
//!
//! Figures are reported, never asserted. The section needs minutes and the 182 MB `bao`
//! binary, so it runs only when named (`--only agent`), never in `--quick`.

pub(crate) mod audit;
mod cold;
mod gate;
mod hcl;
mod idle;
mod outage;
mod recovery;
pub(crate) mod stage;
mod steady;

use std::path::Path;
use std::time::Duration;

use crate::report::Report;

/// The report's section name.
pub const SECTION: &str = "6 vs OpenBao Agent 2.7.2";

/// The scenes, in the order they run; `--agent-parts` picks some.
pub const PARTS: [&str; 5] = ["cold", "idle", "steady", "outage", "recovery"];

/// How much of each scene to run.
pub struct Plan {
    /// Alternated cold starts per program.
    pub cold_runs: usize,
    /// The idle window.
    pub idle_window: Duration,
    /// How long the steady scene runs.
    pub steady_window: Duration,
    /// Short-outage trials per program and kind of outage.
    pub outage_reps: usize,
    /// Clients per program in the recovery scene.
    pub recovery_clients: usize,
    /// The long outages, in turn.
    pub recovery_outages: Vec<Duration>,
}

impl Plan {
    /// The full run (about 18 minutes).
    pub fn full() -> Plan {
        Plan {
            cold_runs: 21,
            idle_window: Duration::from_secs(10),
            steady_window: Duration::from_secs(360),
            outage_reps: 2,
            recovery_clients: 6,
            recovery_outages: vec![Duration::from_secs(40), Duration::from_secs(90)],
        }
    }

    /// Few samples and short windows: that every scene still runs (about 6 minutes).
    pub fn quick() -> Plan {
        Plan {
            cold_runs: 3,
            idle_window: Duration::from_secs(3),
            steady_window: Duration::from_secs(45),
            outage_reps: 1,
            recovery_clients: 2,
            recovery_outages: vec![Duration::from_secs(25)],
        }
    }
}

/// Runs the scenes named in `parts` against one real server and adds their rows;
/// `vault_login` is the binary under test.
pub fn run(
    report: &mut Report,
    vault_login: &Path,
    plan: &Plan,
    parts: &[String],
) -> Result<(), String> {
    let wants = |p: &str| parts.iter().any(|x| x == p);
    // The role is rewritten by each scene; this one is for the cold starts.
    let stage = stage::Stage::start(
        "run",
        vault_login,
        Duration::from_secs(3600),
        Duration::from_secs(24 * 3600),
    )?;
    eprintln!(
        "   real server {} ({})",
        stage.bao.addr(),
        stage.bao.bin().display()
    );
    let mut failures = Vec::new();
    let mut scene = |name: &str, f: &mut dyn FnMut(&mut Report) -> Result<(), String>| {
        if !wants(name) {
            return;
        }
        eprintln!("   -- {name}");
        if let Err(e) = f(report) {
            eprintln!("   {name} FAILED: {e}");
            failures.push(format!("{name}: {e}"));
        }
    };
    scene("cold", &mut |r| cold::run(r, &stage, plan.cold_runs));
    scene("idle", &mut |r| idle::run(r, &stage, plan.idle_window));
    scene("steady", &mut |r| {
        steady::run(r, &stage, plan.steady_window)
    });
    scene("outage", &mut |r| outage::run(r, &stage, plan.outage_reps));
    scene("recovery", &mut |r| {
        recovery::run(r, &stage, plan.recovery_clients, &plan.recovery_outages)
    });
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures.join("; "))
    }
}
