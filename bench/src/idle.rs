//! Section 2, idle footprint: a sidecar that has logged in with a 1 h TTL and has nothing to do
//! for the next 40 minutes: resident memory, anonymous memory, threads, and context switches
//! over an idle window.

use std::fs::File;
use std::path::Path;
use std::time::Duration;

use crate::lab::{stop, wait_until, Lab};
use crate::procfs::{context_switches, footprint, pss_kib, rss_by_mapping};
use crate::report::{Report, Verdict};

const SECTION: &str = "2 idle footprint";
const TARGET_RSS_KIB: u64 = 4 * 1024;

fn mib(kib: u64) -> String {
    format!("{:.2} MiB", kib as f64 / 1024.0)
}

/// Which build is measured: the RSS target is judged on the one the image ships.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Build {
    /// The static musl binary of the `scratch` image.
    Shipped,
    /// The dynamic glibc build of `cargo build --release`, for local runs.
    Local,
}

/// Measures `bin` (labelled `label`, e.g. "glibc") idling for `window` and adds its rows.
pub fn run(
    report: &mut Report,
    label: &str,
    build: Build,
    bin: &Path,
    window: Duration,
) -> Result<(), String> {
    let lab = Lab::new(
        &format!("idle-{label}"),
        Duration::from_secs(3600),
        Duration::ZERO,
    )?;
    let token = lab.token_slot("sidecar")?;
    let log_path = lab.dir.join("sidecar.log");
    let log = File::create(&log_path).map_err(|e| format!("{}: {e}", log_path.display()))?;
    let mut cmd = lab.command(bin, &token);
    cmd.stderr(log);
    let child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
    let pid = child.id();
    let mut children = [child];
    let result = (|| {
        if !wait_until(Duration::from_secs(10), || lab.token_valid(&token)) {
            return Err("the sidecar wrote no valid token within 10 s".to_string());
        }
        // Let the post-login log lines and allocations settle.
        std::thread::sleep(Duration::from_secs(1));
        let requests_before = lab.vault.requests().len();
        let cs0 = context_switches(pid).ok_or("sidecar exited")?;
        std::thread::sleep(window);
        let cs1 = context_switches(pid).ok_or("sidecar exited")?;
        let fp = footprint(pid).ok_or("sidecar exited")?;
        let requests = lab.vault.requests().len() - requests_before;
        let by_mapping = rss_by_mapping(pid);
        let pss = pss_kib(pid).unwrap_or(0);
        Ok((fp, pss, cs1 - cs0, requests, by_mapping))
    })();
    stop(&mut children);
    let (fp, pss, switches, requests, by_mapping) = result?;
    let log_text = std::fs::read_to_string(&log_path).unwrap_or_default();
    let watching = !log_text.contains("cannot watch");
    let top: Vec<String> = by_mapping
        .iter()
        .take(6)
        .map(|(name, kib)| format!("{name} {kib} KiB"))
        .collect();
    eprintln!("   {label}: RSS by mapping: {}", top.join(", "));
    eprintln!(
        "   {label}: RssFile {} KiB, inotify watches {}",
        fp.rss_file_kib,
        if watching {
            "active"
        } else {
            "unavailable (timers)"
        }
    );

    let secs = window.as_secs_f64();
    // Pages of shared libraries (libc, ld.so, libgcc_s) count in every process's RSS that maps
    // them, but exist once per node.
    let shared_libs: u64 = by_mapping
        .iter()
        .filter(|(name, _)| name.contains(".so"))
        .map(|(_, kib)| kib)
        .sum();
    match build {
        Build::Shipped => report.add(
            SECTION,
            &format!("RSS (VmRSS), {label} build (the image's binary)"),
            mib(fp.rss_kib),
            "",
            "≤ 4 MiB",
            Verdict::of(fp.rss_kib <= TARGET_RSS_KIB),
        ),
        Build::Local => report.add(
            SECTION,
            &format!(
                "RSS (VmRSS), {label} build (local runs; not in the image), of it shared libraries"
            ),
            format!("{}, of it {}", mib(fp.rss_kib), mib(shared_libs)),
            "",
            "",
            Verdict::Info,
        ),
    }
    report.add(
        SECTION,
        &format!("PSS (shared pages split among their users), {label} build"),
        mib(pss),
        "",
        "",
        Verdict::Info,
    );
    report.add(
        SECTION,
        &format!("anonymous RSS (RssAnon), {label} build"),
        mib(fp.rss_anon_kib),
        "",
        "",
        Verdict::Info,
    );
    report.add(
        SECTION,
        &format!(
            "threads, {label} build (inotify watches {})",
            if watching { "on" } else { "off" }
        ),
        fp.threads.to_string(),
        "",
        "",
        Verdict::Info,
    );
    report.add(
        SECTION,
        &format!("context switches in {secs:.0} s idle (all threads), {label} build"),
        switches.to_string(),
        "",
        "0",
        Verdict::of(switches == 0),
    );
    report.add(
        SECTION,
        &format!("Vault requests in {secs:.0} s idle, {label} build"),
        requests.to_string(),
        "",
        "",
        Verdict::Info,
    );
    Ok(())
}
