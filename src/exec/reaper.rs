//! Zombies, when vault-login is PID 1 of a container: processes the child leaves behind are
//! re-parented to PID 1, and nobody else would ever wait for them.
//!
//! tokio waits for its own children (the program, hook commands) by pid; reaping with
//! `waitpid(-1)` would steal their exit statuses. So the reaper waits only for a child that
//! is not the program and has been a zombie for a whole sweep (a second): tokio reaps its own
//! children as soon as SIGCHLD arrives, so such a zombie is an orphan.

use std::collections::HashSet;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rustix::process::{getpid, waitpid, Pid, WaitOptions};
use tracing::debug;

/// How often the reaper looks for zombies.
const SWEEP: Duration = Duration::from_secs(1);

/// Starts the reaper if this process is PID 1; `program` holds the program's pid (never
/// reaped here).
pub fn start_if_init(program: Arc<AtomicI32>) {
    if !getpid().is_init() {
        return;
    }
    debug!("running as PID 1: reaping orphaned processes");
    tokio::spawn(async move {
        let mut seen = HashSet::new();
        loop {
            tokio::time::sleep(SWEEP).await;
            seen = sweep(&seen, program.load(Ordering::Relaxed), children());
        }
    });
}

/// Reaps the zombies among `children` that were zombies in the last sweep too; returns the
/// ones seen now.
fn sweep(seen: &HashSet<i32>, program: i32, children: Vec<i32>) -> HashSet<i32> {
    let mut zombies = HashSet::new();
    for pid in children {
        if pid == program || !is_zombie(pid) {
            continue;
        }
        if !seen.contains(&pid) {
            zombies.insert(pid);
            continue;
        }
        if let Some(p) = Pid::from_raw(pid) {
            match waitpid(Some(p), WaitOptions::NOHANG) {
                Ok(_) => debug!(pid, "orphaned process reaped"),
                Err(e) => debug!(pid, error = %e, "cannot reap"),
            }
        }
    }
    zombies
}

/// This process's children, from `/proc/self/task/*/children`.
fn children() -> Vec<i32> {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    let mut pids = Vec::new();
    for task in tasks.flatten() {
        if let Ok(text) = std::fs::read_to_string(task.path().join("children")) {
            pids.extend(
                text.split_whitespace()
                    .filter_map(|p| p.parse::<i32>().ok()),
            );
        }
    }
    pids
}

/// Whether `pid` is a zombie: the state after the command name in `/proc/<pid>/stat`.
fn is_zombie(pid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The command name may hold spaces and parentheses; the state follows the last ')'.
    let state = stat.rsplit_once(')').map(|(_, rest)| rest.trim_start());
    state.is_some_and(|s| s.starts_with('Z'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_zombie_child_is_found_and_reaped_on_the_second_sweep() {
        // A child of this test process that exits and is not waited for.
        let child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id() as i32;
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !is_zombie(pid) {
            assert!(std::time::Instant::now() < deadline, "never a zombie");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(children().contains(&pid));
        // Only this test's child: other tests' children are theirs to wait for.
        let seen = sweep(&HashSet::new(), 0, vec![pid]);
        assert!(
            seen.contains(&pid) && is_zombie(pid),
            "not reaped on the first sweep"
        );
        sweep(&seen, pid, vec![pid]);
        assert!(is_zombie(pid), "the program is never reaped here");
        sweep(&seen, 0, vec![pid]);
        assert!(!is_zombie(pid), "reaped on the second");
        drop(child);
    }
}
