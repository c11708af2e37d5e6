//! A hostile or broken file system, through the real binary: whatever happens to the token
//! volume or the JWT file, vault-login says clearly what is wrong, never panics, never damages
//! the previous token or anything a planted link points at, keeps looping where that makes
//! sense, and recovers once the problem is gone.
//!
//! Mounting tmpfs and switching users need root (CI runs as root); those tests skip otherwise.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

/// Generous: a 2-core CI machine may be busy compiling other tests.
const LIMIT: Duration = Duration::from_secs(20);
const PREVIOUS: &str = "hvs.previous-token";

fn role(ttl: u64, max: u64, renewable: bool) -> Role {
    Role {
        token_ttl: Duration::from_secs(ttl),
        token_max_ttl: Duration::from_secs(max),
        renewable,
        ..Role::default()
    }
}

#[track_caller]
fn assert_no_panic(stderr: &str) {
    assert!(!stderr.contains("panicked"), "{stderr}");
}

fn mkfifo(path: &Path) {
    let ok = Command::new("mkfifo").arg(path).status().unwrap().success();
    assert!(ok, "mkfifo {}", path.display());
}

/// Replaces `path` atomically with a file holding `content` (like the kubelet and editors do).
fn replace_file(path: &Path, content: &str) {
    let tmp = path.with_extension("new");
    fs::write(&tmp, content).unwrap();
    fs::rename(&tmp, path).unwrap();
}

/// A tmpfs mounted on a fresh directory; unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// Mounts with `opts`; None when this machine does not allow it (not root, no mount).
    fn mount(parent: &Path, opts: &str) -> Option<Tmpfs> {
        if !is_root() {
            return None;
        }
        let dir = parent.join("vol");
        fs::create_dir_all(&dir).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", opts, "tmpfs"])
            .arg(&dir)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(Tmpfs(dir))
    }

    /// `mount -o remount,<opts>`, retried: a remount to read-only fails (EBUSY) while a file on
    /// the volume is open for writing, which the sidecar does for a moment at every write.
    fn remount(&self, opts: &str) {
        let ok = wait_until(LIMIT, || {
            Command::new("mount")
                .args(["-o", &format!("remount,{opts}")])
                .arg(&self.0)
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        });
        assert!(ok, "remount,{opts} {}", self.0.display());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.0)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
}

/// Waits until the token file holds a token the emulator accepts, other than `not`.
#[track_caller]
fn wait_new_token(s: &Setup, r: &Running, not: &str) -> String {
    let ok = wait_until(LIMIT, || {
        s.token().is_some_and(|t| t != not && s.emu.is_valid(&t))
    });
    assert!(ok, "no new valid token; stderr:\n{}", r.stderr());
    s.token().unwrap()
}

/// Waits until `needle` has appeared in stderr at least `n` times.
#[track_caller]
fn wait_count(r: &Running, needle: &str, n: usize) {
    let ok = wait_until(LIMIT, || r.stderr().matches(needle).count() >= n);
    assert!(ok, "{needle:?} not seen {n} times; stderr:\n{}", r.stderr());
}

// ----- the token path -----

#[test]
fn token_directory_that_is_a_file_is_a_config_error() {
    let mut s = Setup::new();
    let file = s.dir.path().join("not-a-dir");
    fs::write(&file, "x").unwrap();
    s.set(
        "VAULT_LOGIN_TOKEN_FILE",
        file.join("token").display().to_string(),
    );
    let run = s.once(&[]);
    run.assert_code(64);
    assert!(run.stderr.contains("is not a directory"), "{}", run.stderr);
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    assert_no_panic(&run.stderr);
    assert_eq!(s.emu.requests().len(), 0);
    assert_eq!(fs::read_to_string(&file).unwrap(), "x");
}

#[test]
fn directory_planted_at_the_token_path_while_running() {
    let s = Setup::with_role(role(2, 600, true));
    let r = s.spawn(&[]);
    let token = wait_new_token(&s, &r, "");
    // Remove the file and put a directory in its place; the sidecar may restore the file in
    // between, so try until the directory wins.
    let planted = wait_until(LIMIT, || {
        let _ = fs::remove_file(&s.token_path);
        fs::create_dir(&s.token_path).is_ok()
    });
    assert!(planted, "{}", r.stderr());
    fs::write(s.token_path.join("keep"), "mine").unwrap();
    r.wait_log("is a directory", LIMIT);
    // The loop goes on: the token is still renewed in memory.
    let before = renewals(&s.emu);
    assert!(
        wait_until(LIMIT, || renewals(&s.emu) > before),
        "{}",
        r.stderr()
    );
    assert_eq!(
        fs::read_to_string(s.token_path.join("keep")).unwrap(),
        "mine"
    );
    // Gone again: the current token comes back as a regular file.
    fs::remove_dir_all(&s.token_path).unwrap();
    assert!(
        wait_until(LIMIT, || s.token().is_some_and(|t| s.emu.is_valid(&t))),
        "{}",
        r.stderr()
    );
    assert!(fs::symlink_metadata(&s.token_path).unwrap().is_file());
    assert!(s.emu.is_valid(&token) || s.emu.is_valid(&s.token().unwrap()));
    assert_no_panic(&r.stderr());
}

#[test]
fn symlink_planted_while_running_is_replaced_not_followed() {
    let s = Setup::with_role(role(2, 600, true));
    let victim = s.dir.path().join("victim");
    fs::write(&victim, "precious").unwrap();
    fs::set_permissions(&victim, fs::Permissions::from_mode(0o644)).unwrap();
    let r = s.spawn(&[]);
    let token = wait_new_token(&s, &r, "");
    // Atomically swap the token file for a link to the victim, as an attacker would.
    let link = s.token_path.with_extension("link");
    std::os::unix::fs::symlink(&victim, &link).unwrap();
    fs::rename(&link, &s.token_path).unwrap();
    let restored = wait_until(LIMIT, || {
        fs::symlink_metadata(&s.token_path).is_ok_and(|m| m.is_file())
    });
    assert!(restored, "{}", r.stderr());
    assert_eq!(s.token().unwrap(), token, "the current token, restored");
    assert_eq!(fs::read_to_string(&victim).unwrap(), "precious");
    assert_eq!(
        fs::metadata(&victim).unwrap().permissions().mode() & 0o777,
        0o644
    );
    // Still renewing afterwards.
    let before = renewals(&s.emu);
    assert!(
        wait_until(LIMIT, || renewals(&s.emu) > before),
        "{}",
        r.stderr()
    );
    assert_eq!(fs::read_to_string(&victim).unwrap(), "precious");
    assert_no_panic(&r.stderr());
}

#[test]
fn stale_temps_are_removed_at_start_and_planted_names_do_not_break_writes() {
    let s = Setup::new();
    let dir = s.token_path.parent().unwrap().to_path_buf();
    let victim = s.dir.path().join("victim");
    fs::write(&victim, "precious").unwrap();
    // Hold the process before exec so its pid (part of the temp names) is known.
    let go = s.dir.path().join("go");
    let mut cmd = Command::new("sh");
    cmd.env_clear().envs(&s.env).args([
        "-c",
        &format!(
            "while [ ! -e '{}' ]; do sleep 0.01; done; exec '{}' --once",
            go.display(),
            bin()
        ),
    ]);
    let mut r = Running::start(cmd);
    let pid = r.pid();
    // The writer's names are `.token.tmp.<pid>.<counter>.<random hex>`: take the first counters
    // with likely-looking suffixes, as a FIFO, a directory, a link and a stale file; plus stale
    // files of earlier runs (a killed run leaves a live token in them).
    let mut planted = Vec::new();
    for n in 0..16u32 {
        for suffix in ["0", "1", "deadbeef", "ffffffff"] {
            let p = dir.join(format!(".token.tmp.{pid}.{n}.{suffix}"));
            match n % 4 {
                0 => mkfifo(&p),
                1 => fs::create_dir(&p).unwrap(),
                2 => std::os::unix::fs::symlink(&victim, &p).unwrap(),
                _ => fs::write(&p, "hvs.stale").unwrap(),
            }
            planted.push(p);
        }
    }
    for old in [".token.tmp.1.0.0", ".token.tmp.99999.3.abc"] {
        fs::write(dir.join(old), "hvs.stale").unwrap();
        planted.push(dir.join(old));
    }
    // Not a temp name of ours: kept.
    fs::write(dir.join(".token.tmp"), "other").unwrap();
    fs::write(&go, "").unwrap();
    let status = r.wait(LIMIT * 2).expect("exits");
    assert_eq!(status.code(), Some(0), "{}", r.stderr());
    let token = s.token().unwrap();
    assert!(s.emu.is_valid(&token));
    assert_eq!(fs::read_to_string(&victim).unwrap(), "precious");
    assert!(
        r.stderr()
            .contains("removed a temp file a previous run left"),
        "{}",
        r.stderr()
    );
    // Files, FIFOs and links at temp names are gone; directories cannot hold a token and stay.
    let mut left = Vec::new();
    for p in &planted {
        match fs::symlink_metadata(p) {
            Ok(m) => {
                assert!(m.is_dir(), "{} left behind", p.display());
                left.push(p);
            }
            Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::NotFound),
        }
    }
    assert_eq!(left.len(), 16);
    assert_eq!(fs::read_to_string(dir.join(".token.tmp")).unwrap(), "other");
    // Nothing of ours left behind: only the token, `.token.tmp` and the directories.
    assert_eq!(fs::read_dir(&dir).unwrap().count(), left.len() + 2);
    assert_no_panic(&r.stderr());
}

// ----- the token volume -----

/// Mounts a tmpfs with `opts` and points the token file into it; None when mounting is not
/// allowed here.
fn token_volume(s: &mut Setup, opts: &str) -> Option<Tmpfs> {
    let vol = Tmpfs::mount(s.dir.path(), opts)?;
    let token_path = vol.0.join("token");
    s.set("VAULT_LOGIN_TOKEN_FILE", token_path.display().to_string());
    s.token_path = token_path;
    Some(vol)
}

#[test]
fn volume_remounted_read_only_while_running() {
    let mut s = Setup::with_role(role(1, 600, false));
    let Some(vol) = token_volume(&mut s, "size=64k") else {
        eprintln!("skipped: cannot mount tmpfs here (needs root)");
        return;
    };
    let r = s.spawn(&[]);
    wait_new_token(&s, &r, "");
    vol.remount("ro");
    let frozen = s.token().unwrap();
    // Non-renewable 1s tokens: a new login (and write) about every 0.7s, each failing now.
    wait_count(&r, "read-only", 2);
    let logins_ro = logins(&s.emu);
    assert!(
        wait_until(LIMIT, || logins(&s.emu) > logins_ro),
        "the loop keeps logging in; {}",
        r.stderr()
    );
    assert_eq!(s.token().unwrap(), frozen, "previous token untouched");
    assert!(r.stderr().contains("mount a writable emptyDir"));
    vol.remount("rw");
    wait_new_token(&s, &r, &frozen);
    // No temp file left from the failed attempts.
    assert_eq!(fs::read_dir(&vol.0).unwrap().count(), 1);
    assert_no_panic(&r.stderr());
    drop(r);
}

#[test]
fn full_volume_while_running() {
    let mut s = Setup::with_role(role(2, 600, false));
    let Some(vol) = token_volume(&mut s, "size=8k") else {
        eprintln!("skipped: cannot mount tmpfs here (needs root)");
        return;
    };
    let r = s.spawn(&[]);
    wait_new_token(&s, &r, "");
    // Fill the rest of the volume; keep topping it up, since a write in flight may free a page.
    let filler = vol.0.join("filler");
    let fill = || {
        use std::io::Write;
        let mut f = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&filler)
            .unwrap();
        while f.write_all(&[b'x'; 512]).is_ok() {}
    };
    fill();
    let full = wait_until(LIMIT, || {
        fill();
        r.stderr().contains("volume is full")
    });
    assert!(full, "{}", r.stderr());
    let frozen = s.token().unwrap();
    let seen = r.stderr().matches("volume is full").count();
    assert!(
        wait_until(LIMIT, || {
            fill();
            r.stderr().matches("volume is full").count() >= seen + 2
        }),
        "the loop keeps trying; {}",
        r.stderr()
    );
    assert_eq!(s.token().unwrap(), frozen, "previous token untouched");
    fs::remove_file(&filler).unwrap();
    wait_new_token(&s, &r, &frozen);
    assert_eq!(
        fs::read_dir(&vol.0).unwrap().count(),
        1,
        "no temp file left"
    );
    assert_no_panic(&r.stderr());
    drop(r);
}

// ----- the JWT file -----

#[test]
fn jwt_file_that_is_a_fifo_does_not_hang() {
    let s = Setup::new();
    let jwt = fs::read_to_string(&s.jwt_path).unwrap();
    fs::remove_file(&s.jwt_path).unwrap();
    mkfifo(&s.jwt_path);
    fs::write(&s.token_path, PREVIOUS).unwrap();
    let r = s.spawn(&[]);
    // Nobody ever writes to the FIFO: an open() would block the loop forever. The loop keeps
    // retrying (the full reason said once, then counted).
    wait_count(&r, "is a FIFO", 3);
    assert!(r
        .stderr()
        .contains("is a FIFO (named pipe), not a regular file"));
    assert_eq!(s.token().unwrap(), PREVIOUS);
    assert_eq!(logins(&s.emu), 0);
    replace_file(&s.jwt_path, &jwt);
    wait_new_token(&s, &r, PREVIOUS);
    assert_no_panic(&r.stderr());
}

/// In virtual time (the agent in-process): only the `--once` deadline is waited for.
#[tokio::test(start_paused = true)]
async fn huge_jwt_file_is_refused_without_reading_it_all() {
    let mut s = common::virtual_time::Virtual::new();
    // 8 GiB, sparse: reading it into memory would exhaust the machine.
    let f = fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&s.jwt_path)
        .unwrap();
    f.set_len(8 << 30).unwrap();
    drop(f);
    fs::write(&s.token_path, PREVIOUS).unwrap();
    s.set("VAULT_LOGIN_TIMEOUT", "2s");
    let run = s.once(&[]).await;
    run.assert_code(1);
    assert!(
        run.stderr.contains("larger than 65536 bytes"),
        "{}",
        run.stderr
    );
    assert_no_panic(&run.stderr);
    assert_eq!(s.token().unwrap(), PREVIOUS);
    assert_eq!(logins(&s.emu), 0);
}

#[test]
fn unreadable_jwt_file_then_fixed() {
    const UID: &str = "4242";
    if !is_root() || Command::new("setpriv").arg("--version").output().is_err() {
        eprintln!("skipped: needs root and setpriv");
        return;
    }
    let s = Setup::new();
    for d in [
        s.dir.path(),
        s.jwt_path.parent().unwrap(),
        s.token_path.parent().unwrap(),
    ] {
        fs::set_permissions(d, fs::Permissions::from_mode(0o777)).unwrap();
    }
    // Root's file, mode 0600: the sidecar's user may see it but not read it.
    fs::set_permissions(&s.jwt_path, fs::Permissions::from_mode(0o600)).unwrap();
    fs::write(&s.token_path, PREVIOUS).unwrap();
    let mut cmd = Command::new("setpriv");
    cmd.env_clear()
        .envs(&s.env)
        .args(["--reuid", UID, "--regid", UID, "--clear-groups"])
        .arg(bin());
    let r = Running::start(cmd);
    wait_count(&r, "cannot read service-account JWT file", 3);
    assert!(r.stderr().contains("ermission denied"), "{}", r.stderr());
    assert_eq!(s.token().unwrap(), PREVIOUS);
    assert_eq!(logins(&s.emu), 0);
    fs::set_permissions(&s.jwt_path, fs::Permissions::from_mode(0o644)).unwrap();
    wait_new_token(&s, &r, PREVIOUS);
    assert_no_panic(&r.stderr());
}

// ----- files another container can write: FIFOs, /dev/zero, huge files -----

/// What another container can plant at a path it can write.
#[derive(Clone, Copy, Debug)]
enum Plant {
    /// A FIFO nobody writes to: an open() without O_NONBLOCK blocks forever.
    Fifo,
    /// A symlink to /dev/zero: a read without bound never ends.
    DevZero,
    /// A 100 MB file (sparse): a read without bound costs 100 MB.
    Huge,
}

const PLANTS: [Plant; 3] = [Plant::Fifo, Plant::DevZero, Plant::Huge];

/// Replaces `path` atomically with `what`.
fn plant(path: &Path, what: Plant) {
    let tmp = path.with_extension("planted");
    let _ = fs::remove_file(&tmp);
    match what {
        Plant::Fifo => mkfifo(&tmp),
        Plant::DevZero => std::os::unix::fs::symlink("/dev/zero", &tmp).unwrap(),
        Plant::Huge => fs::File::create(&tmp)
            .unwrap()
            .set_len(100 * 1024 * 1024)
            .unwrap(),
    }
    fs::rename(&tmp, path).unwrap();
}

/// The process's peak resident memory (VmHWM), in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/<pid>/status")
}

/// Generous for a debug build talking HTTP (about 10-20 MiB), well under the 100 MB a single
/// unbounded read of a planted file would cost.
const PEAK_RSS_KIB: u64 = 64 * 1024;

#[track_caller]
fn assert_memory_bounded(r: &Running) {
    let peak = peak_rss_kib(r.pid());
    eprintln!("peak RSS {peak} KiB");
    assert!(
        peak < PEAK_RSS_KIB,
        "peak RSS {peak} KiB; stderr:\n{}",
        r.stderr()
    );
}

/// Whether the token path holds a regular file with a token the emulator accepts (never opens
/// anything else: the test must not hang on a planted FIFO either).
fn holds_valid_token(s: &Setup) -> bool {
    fs::symlink_metadata(&s.token_path).is_ok_and(|m| m.is_file() && m.len() < 4096)
        && s.token().is_some_and(|t| s.emu.is_valid(&t))
}

#[test]
fn fifo_at_the_pid_file() {
    pid_file_case(Plant::Fifo, "it is a FIFO (named pipe), not a regular file");
}

#[test]
fn dev_zero_link_at_the_pid_file() {
    pid_file_case(
        Plant::DevZero,
        "it is a symbolic link, which vault-login does not follow here",
    );
}

#[test]
fn huge_file_at_the_pid_file() {
    pid_file_case(Plant::Huge, "it is larger than 64 bytes");
}

/// One planted pid file: a warning, the loop keeps logging in, memory stays bounded.
fn pid_file_case(what: Plant, says: &str) {
    // Non-renewable 3 s tokens: a login (and a signal) about every 2 s.
    let mut s = Setup::with_role(role(3, 600, false));
    let pid_file = s.dir.path().join("app.pid");
    s.set(
        "VAULT_LOGIN_SIGNAL_PID_FILE",
        pid_file.display().to_string(),
    );
    s.set("VAULT_LOGIN_SIGNAL", "USR2");
    let r = s.spawn(&[]);
    wait_new_token(&s, &r, "");
    plant(&pid_file, what);
    let seen = r.stderr().matches(says).count();
    wait_count(&r, says, seen + 1);
    // The loop is not stuck on the pid file: it logs in twice more, with valid tokens.
    let before = logins(&s.emu);
    let ok = wait_until(LIMIT, || logins(&s.emu) >= before + 2);
    assert!(ok, "{what:?}: logins stopped; stderr:\n{}", r.stderr());
    assert!(holds_valid_token(&s), "{what:?}: {}", r.stderr());
    assert!(
        r.stderr().contains("cannot signal the app"),
        "{}",
        r.stderr()
    );
    assert_memory_bounded(&r);
    assert_no_panic(&r.stderr());
}

#[test]
fn fifo_dev_zero_and_huge_file_at_the_jwt_file() {
    let s = Setup::with_role(role(2, 600, true));
    let jwt = fs::read_to_string(&s.jwt_path).unwrap();
    let r = s.spawn(&[]);
    let first = wait_new_token(&s, &r, "");
    for (what, says) in PLANTS.into_iter().zip([
        "is a FIFO (named pipe), not a regular file",
        "is a character device, not a regular file",
        "is larger than 65536 bytes",
    ]) {
        plant(&s.jwt_path, what);
        // SIGHUP: log in again now, which reads the JWT file.
        let seen = r.stderr().matches(says).count();
        r.signal("HUP");
        wait_count(&r, says, seen + 1);
        // The loop goes on: the held token is renewed as planned (SIGHUP's login may be retried
        // before that) and the file keeps it.
        let before = renewals(&s.emu);
        assert!(
            wait_until(LIMIT, || renewals(&s.emu) > before),
            "{what:?}: {}",
            r.stderr()
        );
        assert!(holds_valid_token(&s), "{what:?}: {}", r.stderr());
        assert_eq!(
            s.token().as_deref(),
            Some(first.as_str()),
            "{what:?}: {}",
            r.stderr()
        );
    }
    assert_memory_bounded(&r);
    replace_file(&s.jwt_path, &jwt);
    // SIGHUP's logins gave up for renewals, as the log said: a new SIGHUP logs in.
    r.signal("HUP");
    wait_new_token(&s, &r, &first);
    // Renewals go on with the new token.
    let before = renewals(&s.emu);
    assert!(
        wait_until(LIMIT, || renewals(&s.emu) >= before + 2),
        "{}",
        r.stderr()
    );
    assert_no_panic(&r.stderr());
}

#[test]
fn fifo_at_the_token_path() {
    token_path_case(Plant::Fifo, "it is a FIFO (named pipe), not a regular file");
}

#[test]
fn dev_zero_link_at_the_token_path() {
    token_path_case(
        Plant::DevZero,
        "it is a symbolic link, which vault-login does not follow here",
    );
}

#[test]
fn huge_file_at_the_token_path() {
    token_path_case(Plant::Huge, "it is larger than");
}

/// One thing planted at the token path: read back without blocking and without reading it
/// all, seen not to hold the token, replaced by the token; renewals go on.
fn token_path_case(what: Plant, says: &str) {
    let s = Setup::with_role(role(2, 600, true));
    let r = s.spawn(&[]);
    wait_new_token(&s, &r, "");
    plant(&s.token_path, what);
    let ok = wait_until(LIMIT, || holds_valid_token(&s));
    assert!(ok, "{what:?} not replaced; stderr:\n{}", r.stderr());
    let before = renewals(&s.emu);
    let ok = wait_until(LIMIT, || renewals(&s.emu) >= before + 2);
    assert!(ok, "{what:?}: renewals stopped; stderr:\n{}", r.stderr());
    assert!(r.stderr().contains(says), "{says:?}: {}", r.stderr());
    r.wait_log("restored the current token", LIMIT);
    assert!(
        fs::read_link(&s.token_path).is_err(),
        "the link was replaced"
    );
    assert_memory_bounded(&r);
    assert_no_panic(&r.stderr());
}
