//! Section 5, fleet: many vault-login sidecars against one emulator with a short TTL; Vault
//! goes down for 10 s; how the fleet comes back: requests per second after recovery, total
//! memory, and how soon every process holds a valid token again.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant, SystemTime};

use vault_emulator::Fault;

use crate::lab::{stop, Lab};
use crate::procfs::{footprint, pss_kib};
use crate::report::{Report, Verdict};
use crate::simulation;

const SECTION: &str = "5 fleet";
const TTL: Duration = Duration::from_secs(20);
const OUTAGE: Duration = Duration::from_secs(10);
/// Time between the whole fleet holding tokens and Vault going down; its requests are the
/// calm load to compare the recovery with.
const BEFORE_OUTAGE: Duration = Duration::from_secs(5);
/// No one-second bucket after recovery may hold more than this share of the fleet.
const TARGET_BUCKET_SHARE: f64 = 0.35;
const POLL: Duration = Duration::from_millis(200);

/// How the fleet is run.
pub struct Plan {
    /// Processes.
    pub size: usize,
    /// Starts are spread evenly over this long, like the pods of a rollout, so renewals are
    /// spread over the TTL before the outage (a fleet started in one burst renews in bursts
    /// for many TTLs whatever the outage does).
    pub stagger: Duration,
    /// How long after recovery requests are bucketed.
    pub window: Duration,
    /// Every process must hold a valid token again this soon after recovery (the target is
    /// 30 s; `--quick` waits less).
    pub recovery_limit: Duration,
}

fn all_valid(lab: &Lab, files: &[PathBuf]) -> usize {
    files.iter().filter(|f| lab.token_valid(f)).count()
}

/// Polls until every token file is valid; the time it took, or `None` after `limit`.
fn until_all_valid(lab: &Lab, files: &[PathBuf], limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    loop {
        if all_valid(lab, files) == files.len() {
            return Some(start.elapsed());
        }
        if start.elapsed() >= limit {
            return None;
        }
        std::thread::sleep(POLL);
    }
}

/// Runs the fleet and adds the section's rows.
pub fn run(report: &mut Report, bin: &Path, plan: &Plan) -> Result<(), String> {
    let lab = Lab::new("fleet", TTL, Duration::ZERO)?;
    let mut files = Vec::with_capacity(plan.size);
    let mut logs = Vec::with_capacity(plan.size);
    let mut children: Vec<Child> = Vec::with_capacity(plan.size);
    let started = Instant::now();
    let spawned = (|| {
        for i in 0..plan.size {
            let due = started + plan.stagger.mul_f64(i as f64 / plan.size as f64);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            let token = lab.token_slot(&format!("p{i:03}"))?;
            let log_path = token.with_file_name("log");
            let log =
                File::create(&log_path).map_err(|e| format!("{}: {e}", log_path.display()))?;
            let mut cmd = lab.command(bin, &token);
            cmd.stderr(log);
            children.push(cmd.spawn().map_err(|e| format!("spawn #{i}: {e}"))?);
            files.push(token);
            logs.push(log_path);
        }
        Ok::<(), String>(())
    })();
    let result = spawned.and_then(|()| measure(&lab, &files, &mut children, plan, started));
    stop(&mut children);
    let m = result?;

    let warned = logs
        .iter()
        .filter(|p| {
            std::fs::read_to_string(p)
                .map(|t| t.contains("cannot watch files"))
                .unwrap_or(false)
        })
        .count();
    let n = plan.size;
    let limit = (TARGET_BUCKET_SHARE * n as f64).floor() as usize;
    let busiest = m.buckets.iter().copied().max().unwrap_or(0);
    let share = busiest as f64 / n as f64;
    let series: Vec<String> = m.buckets.iter().map(|b| b.to_string()).collect();
    eprintln!("   requests per 1 s after recovery: {}", series.join(" "));

    report.add(
        SECTION,
        &format!(
            "{n} sidecars, TTL 20 s, started over {} s: all hold a valid token after",
            plan.stagger.as_secs()
        ),
        format!("{:.1} s", m.ready_after.as_secs_f64()),
        "",
        "",
        Verdict::Info,
    );
    report.add(
        SECTION,
        &format!("total memory of {n} sidecars: RSS sum (PSS sum)"),
        format!(
            "{:.1} MiB ({:.1} MiB); {:.2} MiB RSS each",
            m.rss_kib as f64 / 1024.0,
            m.pss_kib as f64 / 1024.0,
            m.rss_kib as f64 / 1024.0 / n as f64
        ),
        "",
        "",
        Verdict::Info,
    );
    report.add(
        SECTION,
        "Vault down 10 s; then every token file valid again after",
        match m.recovered_after {
            Some(d) => format!("{:.1} s", d.as_secs_f64()),
            None => format!(
                "not within {} s ({} of {n} valid)",
                plan.recovery_limit.as_secs(),
                m.valid_at_limit
            ),
        },
        "",
        &format!("≤ {} s", plan.recovery_limit.as_secs()),
        Verdict::of(m.recovered_after.is_some()),
    );
    report.add(
        SECTION,
        &format!(
            "requests per 1 s bucket, first {} s after recovery",
            plan.window.as_secs()
        ),
        series.join(" "),
        "",
        "",
        Verdict::Info,
    );
    report.add(
        SECTION,
        "busiest 1 s bucket after recovery (calm load before the outage)",
        format!(
            "{busiest} requests = {:.0} % of the fleet ({:.1} req/s)",
            share * 100.0,
            m.calm_rate
        ),
        "",
        &format!("≤ 35 % ({limit})"),
        Verdict::of(busiest <= limit),
    );
    let (mean, max) = simulated_busiest(plan);
    report.add(
        SECTION,
        "same fleet on section 4's simulated clock (the schedule alone, no latency): busiest 1 s bucket after recovery, mean and max over 12 seeds",
        format!(
            "{:.0} % and {:.0} % of the fleet",
            mean * 100.0 / n as f64,
            max as f64 * 100.0 / n as f64
        ),
        "",
        &format!("≤ 35 % ({limit})"),
        Verdict::of(max <= limit),
    );
    report.add(
        SECTION,
        "processes without inotify (warned once, ran on timers) / exited early",
        format!("{warned} of {n} / {}", m.exited),
        "",
        "",
        Verdict::Info,
    );
    Ok(())
}

/// The busiest second after recovery when the same fleet runs on the simulated clock (mean and
/// max over seeds): what the schedule itself does, without process start-up, CPU contention or
/// latency, to read the measured figure against.
fn simulated_busiest(plan: &Plan) -> (f64, usize) {
    const SEEDS: u64 = 12;
    let stagger = plan.stagger.as_secs_f64();
    // As measured: Vault goes down once the fleet is up and BEFORE_OUTAGE has passed.
    let down = stagger + BEFORE_OUTAGE.as_secs_f64();
    let up = down + OUTAGE.as_secs_f64();
    let window = plan.window.as_secs_f64();
    let busiest: Vec<usize> = (1..=SEEDS)
        .map(|seed| {
            let sent = simulation::fleet_requests(
                plan.size as u32,
                TTL.as_secs() as i64,
                stagger,
                (down, up),
                up + window,
                seed,
            );
            let buckets = simulation::per_second(&sent, up, plan.window.as_secs() as usize);
            buckets.into_iter().max().unwrap_or(0)
        })
        .collect();
    let mean = busiest.iter().sum::<usize>() as f64 / busiest.len() as f64;
    (mean, busiest.into_iter().max().unwrap_or(0))
}

struct Measured {
    ready_after: Duration,
    calm_rate: f64,
    rss_kib: u64,
    pss_kib: u64,
    recovered_after: Option<Duration>,
    valid_at_limit: usize,
    buckets: Vec<usize>,
    exited: usize,
}

fn measure(
    lab: &Lab,
    files: &[PathBuf],
    children: &mut [Child],
    plan: &Plan,
    started: Instant,
) -> Result<Measured, String> {
    until_all_valid(lab, files, Duration::from_secs(60)).ok_or_else(|| {
        format!(
            "only {} of {} sidecars logged in within 60 s",
            all_valid(lab, files),
            files.len()
        )
    })?;
    let ready_after = started.elapsed();
    let (mut rss_kib, mut pss) = (0, 0);
    for c in children.iter() {
        rss_kib += footprint(c.id()).map_or(0, |f| f.rss_kib);
        pss += pss_kib(c.id()).unwrap_or(0);
    }

    let calm_from = lab.vault.requests().len();
    std::thread::sleep(BEFORE_OUTAGE);
    let calm_rate = (lab.vault.requests().len() - calm_from) as f64 / BEFORE_OUTAGE.as_secs_f64();
    eprintln!("   Vault down for {} s", OUTAGE.as_secs());
    lab.vault.set_fault(Fault::Down);
    std::thread::sleep(OUTAGE);
    lab.vault.clear_fault();
    let (back_wall, back) = (SystemTime::now(), Instant::now());
    let recovered_after = until_all_valid(lab, files, plan.recovery_limit);
    let valid_at_limit = all_valid(lab, files);
    let invalid: Vec<String> = files
        .iter()
        .enumerate()
        .filter(|(_, f)| !lab.token_valid(f))
        .map(|(i, _)| format!("p{i:03}"))
        .take(10)
        .collect();
    if !invalid.is_empty() {
        eprintln!("   without a valid token: {} ...", invalid.join(" "));
    }
    if let Some(left) = plan.window.checked_sub(back.elapsed()) {
        std::thread::sleep(left);
    }
    let mut buckets = vec![0usize; plan.window.as_secs() as usize];
    let requests = lab.vault.requests();
    for r in &requests {
        if let Ok(after) = r.at.duration_since(back_wall) {
            if let Some(b) = buckets.get_mut(after.as_secs() as usize) {
                *b += 1;
            }
        }
    }
    // What the first seconds after recovery are made of.
    for second in 0..3u64 {
        let in_bucket: Vec<_> = requests
            .iter()
            .filter(|r| {
                r.at.duration_since(back_wall)
                    .is_ok_and(|d| d.as_secs() == second)
            })
            .collect();
        let logins = in_bucket
            .iter()
            .filter(|r| r.path.ends_with("/login"))
            .count();
        let mut tokens: Vec<&str> = in_bucket
            .iter()
            .filter_map(|r| r.header("x-vault-token"))
            .collect();
        tokens.sort_unstable();
        tokens.dedup();
        eprintln!(
            "   second {second} after recovery: {} requests: {logins} logins, {} renewals from {} distinct tokens",
            in_bucket.len(),
            in_bucket.len() - logins,
            tokens.len()
        );
    }
    let mut exited = 0;
    for c in children.iter_mut() {
        if matches!(c.try_wait(), Ok(Some(_))) {
            exited += 1;
        }
    }
    Ok(Measured {
        ready_after,
        calm_rate,
        rss_kib,
        pss_kib: pss,
        recovered_after,
        valid_at_limit,
        buckets,
        exited,
    })
}

#[cfg(test)]
mod replay_figure {
    use super::*;

    /// Prints the replay figure BENCHMARKS.md quotes (run with --nocapture); asserts the target.
    #[test]
    fn simulated_replay_of_the_full_fleet_meets_the_target() {
        let plan = Plan {
            size: 300,
            stagger: Duration::from_secs(20),
            window: Duration::from_secs(30),
            recovery_limit: Duration::from_secs(30),
        };
        let (mean, max) = simulated_busiest(&plan);
        println!("simulated busiest second: mean {mean:.1} max {max} of 300");
        assert!(mean <= 105.0, "mean {mean}");
    }
}
