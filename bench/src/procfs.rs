//! What Linux says about a running process: memory, threads and context switches from
//! `/proc/PID/status`, `/proc/PID/task/*/status`, `/proc/PID/smaps` and `smaps_rollup`.

use std::collections::BTreeMap;
use std::fs;

/// A process's memory and thread figures, in KiB where it applies.
#[derive(Clone, Copy, Debug, Default)]
pub struct Footprint {
    /// VmRSS: resident pages, shared ones included.
    pub rss_kib: u64,
    /// RssAnon: resident anonymous pages (heap, stacks): what this process alone costs.
    pub rss_anon_kib: u64,
    /// RssFile: resident file-backed pages (the binary, shared libraries).
    pub rss_file_kib: u64,
    /// Threads.
    pub threads: u64,
}

/// One `Key: value kB` (or bare number) field of a `/proc` status-like text.
fn field(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(key)?.strip_prefix(':')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// Memory and threads of `pid`, or `None` once it has gone.
pub fn footprint(pid: u32) -> Option<Footprint> {
    let text = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    Some(Footprint {
        rss_kib: field(&text, "VmRSS")?,
        rss_anon_kib: field(&text, "RssAnon").unwrap_or(0),
        rss_file_kib: field(&text, "RssFile").unwrap_or(0),
        threads: field(&text, "Threads").unwrap_or(0),
    })
}

/// Voluntary plus involuntary context switches summed over every thread of `pid`.
pub fn context_switches(pid: u32) -> Option<u64> {
    let mut total = 0;
    for entry in fs::read_dir(format!("/proc/{pid}/task")).ok()?.flatten() {
        let Ok(text) = fs::read_to_string(entry.path().join("status")) else {
            continue;
        };
        total += field(&text, "voluntary_ctxt_switches").unwrap_or(0)
            + field(&text, "nonvoluntary_ctxt_switches").unwrap_or(0);
    }
    Some(total)
}

/// Voluntary plus involuntary context switches of each thread of `pid`, by thread id. A thread
/// that exits takes its counts with it (the sum over threads can go down): sample often and add
/// the increases per thread to count the switches of a program whose threads come and go.
pub fn context_switches_by_thread(pid: u32) -> Option<BTreeMap<u32, u64>> {
    let mut by = BTreeMap::new();
    for entry in fs::read_dir(format!("/proc/{pid}/task")).ok()?.flatten() {
        let Some(tid) = entry.file_name().to_str().and_then(|t| t.parse().ok()) else {
            continue;
        };
        let Ok(text) = fs::read_to_string(entry.path().join("status")) else {
            continue;
        };
        by.insert(
            tid,
            field(&text, "voluntary_ctxt_switches").unwrap_or(0)
                + field(&text, "nonvoluntary_ctxt_switches").unwrap_or(0),
        );
    }
    Some(by)
}

/// Proportional set size (shared pages divided among their users), in KiB.
pub fn pss_kib(pid: u32) -> Option<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    field(&text, "Pss")
}

/// Resident KiB per mapping kind (`[heap]`, `[stack]`, anonymous, each file), largest first:
/// where the RSS goes.
pub fn rss_by_mapping(pid: u32) -> Vec<(String, u64)> {
    let Ok(text) = fs::read_to_string(format!("/proc/{pid}/smaps")) else {
        return Vec::new();
    };
    let mut by: BTreeMap<String, u64> = BTreeMap::new();
    let mut current = String::new();
    for line in text.lines() {
        let mut parts = line.split_whitespace();
        let first = parts.next().unwrap_or("");
        // Mapping header lines start with an address range `start-end`.
        if first.contains('-') && first.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
            let name = line.split_whitespace().nth(5).unwrap_or("[anon]");
            current = name.rsplit('/').next().unwrap_or(name).to_string();
        } else if first == "Rss:" {
            let kib: u64 = parts.next().and_then(|v| v.parse().ok()).unwrap_or(0);
            *by.entry(current.clone()).or_default() += kib;
        }
    }
    let mut list: Vec<_> = by.into_iter().filter(|(_, k)| *k > 0).collect();
    list.sort_by_key(|e| std::cmp::Reverse(e.1));
    list
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_fields_with_and_without_units() {
        let text = "Name:\tx\nVmRSS:\t  2048 kB\nThreads:\t2\nvoluntary_ctxt_switches:\t5\n";
        assert_eq!(field(text, "VmRSS"), Some(2048));
        assert_eq!(field(text, "Threads"), Some(2));
        assert_eq!(field(text, "voluntary_ctxt_switches"), Some(5));
        assert_eq!(field(text, "RssAnon"), None);
    }

    #[test]
    fn our_own_process_is_readable() {
        let me = std::process::id();
        let f = footprint(me).expect("own status");
        assert!(f.rss_kib > 0 && f.threads >= 1);
        assert!(context_switches(me).is_some());
        let by = context_switches_by_thread(me).expect("own tasks");
        assert!(by.contains_key(&me), "{by:?}");
        assert!(!rss_by_mapping(me).is_empty());
    }
}
