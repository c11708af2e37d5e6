//! Section 1, cold start: wall time from exec to token on disk and exit, `vault-login --once`
//! against the curl script, run alternately; plus the floors (one raw HTTP login from this
//! process, and spawning `/bin/true`).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::binaries::workspace_root;
use crate::lab::{Lab, ROLE};
use crate::report::{Report, Verdict};
use crate::stats::{median, ms, percentile};

const SECTION: &str = "1 cold start";
/// vault-login must take at most this fraction of the curl script's median.
const TARGET_RATIO: f64 = 0.3;
const WARMUP: usize = 3;

struct Contender<'a> {
    name: &'static str,
    token_file: PathBuf,
    build: Box<dyn Fn(&Path) -> Command + 'a>,
    samples: Vec<Duration>,
}

fn on_path(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool} >/dev/null")])
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Runs `cmd`, checks it wrote a new valid token, returns the wall time.
fn time_one(lab: &Lab, c: &Contender) -> Result<Duration, String> {
    let before = std::fs::read_to_string(&c.token_file).unwrap_or_default();
    let mut cmd = (c.build)(&c.token_file);
    let start = Instant::now();
    let status = cmd
        .status()
        .map_err(|e| format!("{}: cannot start: {e}", c.name))?;
    let took = start.elapsed();
    if !status.success() {
        return Err(format!("{} failed: {status}", c.name));
    }
    let after = std::fs::read_to_string(&c.token_file).unwrap_or_default();
    if after == before || !lab.vault.is_valid(after.trim()) {
        return Err(format!(
            "{} exited without writing a fresh valid token",
            c.name
        ));
    }
    Ok(took)
}

/// One login over a fresh loopback connection, straight from this process: the emulator's own
/// cost plus TCP, with no process start.
fn raw_login(lab: &Lab, jwt: &str) -> Result<Duration, String> {
    let addr = lab.vault.addr();
    let body = format!("{{\"role\":\"{ROLE}\",\"jwt\":\"{jwt}\"}}");
    let request = format!(
        "POST /v1/auth/kubernetes/login HTTP/1.1\r\nHost: {addr}\r\nX-Vault-Request: true\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let start = Instant::now();
    let mut stream = TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("write: {e}"))?;
    let mut answer = Vec::new();
    stream
        .read_to_end(&mut answer)
        .map_err(|e| format!("read: {e}"))?;
    let took = start.elapsed();
    if !answer.starts_with(b"HTTP/1.1 200") {
        return Err(format!(
            "raw login answered {:?}",
            String::from_utf8_lossy(&answer[..answer.len().min(80)])
        ));
    }
    Ok(took)
}

/// Measures and adds the section's rows.
pub fn run(report: &mut Report, bin: &Path, runs: usize) -> Result<(), String> {
    let lab = Lab::new("cold", Duration::from_secs(3600), Duration::ZERO)?;
    let script = workspace_root().join("bench/curl-login.sh");
    if !on_path("curl") {
        return Err("curl is not installed (apt-get install -y curl)".into());
    }
    let sh = PathBuf::from("sh");
    let mut contenders = vec![
        Contender {
            name: "vault-login --once",
            token_file: lab.token_slot("vault-login")?,
            build: Box::new(|t: &Path| {
                let mut c = lab.command(bin, t);
                c.arg("--once");
                c
            }),
            samples: Vec::new(),
        },
        Contender {
            name: "curl + sed script",
            token_file: lab.token_slot("curl-sed")?,
            build: Box::new(|t: &Path| {
                let mut c = lab.command(&sh, t);
                c.arg(&script).arg("sed");
                c
            }),
            samples: Vec::new(),
        },
    ];
    if on_path("jq") {
        contenders.push(Contender {
            name: "curl + jq script",
            token_file: lab.token_slot("curl-jq")?,
            build: Box::new(|t: &Path| {
                let mut c = lab.command(&sh, t);
                c.arg(&script).arg("jq");
                c
            }),
            samples: Vec::new(),
        });
    }

    for _ in 0..WARMUP {
        for c in &contenders {
            time_one(&lab, c)?;
        }
    }
    // Alternate the contenders run by run so drift (other load, CPU frequency) hits all alike.
    for _ in 0..runs {
        for c in contenders.iter_mut() {
            let d = time_one(&lab, c)?;
            c.samples.push(d);
        }
    }

    let jwt = std::fs::read_to_string(&lab.jwt_file).map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    let mut spawn = Vec::new();
    for _ in 0..WARMUP {
        raw_login(&lab, jwt.trim())?;
    }
    for _ in 0..runs {
        raw.push(raw_login(&lab, jwt.trim())?);
        let start = Instant::now();
        Command::new("/bin/true")
            .status()
            .map_err(|e| format!("/bin/true: {e}"))?;
        spawn.push(start.elapsed());
    }

    for c in &contenders {
        eprintln!(
            "   {:<20} median {}  p10 {}  p90 {}  min {}",
            c.name,
            ms(median(&c.samples)),
            ms(percentile(&c.samples, 10.0)),
            ms(percentile(&c.samples, 90.0)),
            ms(percentile(&c.samples, 0.0))
        );
    }
    let ours = median(&contenders[0].samples);
    let curl = median(&contenders[1].samples);
    let ratio = ours.as_secs_f64() / curl.as_secs_f64();
    let spread = |s: &[Duration]| format!("{} (p90 {})", ms(median(s)), ms(percentile(s, 90.0)));
    report.add(
        SECTION,
        &format!("median wall time, exec → token on disk → exit ({runs} runs each, alternated)"),
        spread(&contenders[0].samples),
        format!("curl + sed: {}", spread(&contenders[1].samples)),
        "",
        Verdict::Info,
    );
    if let Some(jq) = contenders.get(2) {
        report.add(
            SECTION,
            "same, curl + jq variant of the script",
            "",
            format!("curl + jq: {}", spread(&jq.samples)),
            "",
            Verdict::Info,
        );
    }
    report.add(
        SECTION,
        "ratio vault-login / curl + sed script (medians)",
        format!("{ratio:.2}×"),
        "1×",
        &format!("≤ {TARGET_RATIO}×"),
        Verdict::of(ratio <= TARGET_RATIO),
    );
    report.add(
        SECTION,
        "floor: one login over raw HTTP from the harness (emulator + loopback TCP)",
        ms(median(&raw)),
        "",
        "",
        Verdict::Info,
    );
    report.add(
        SECTION,
        "floor: spawn and reap `/bin/true`",
        ms(median(&spawn)),
        "",
        "",
        Verdict::Info,
    );
    Ok(())
}
