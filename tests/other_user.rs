//! Tests that run the binary as another user (UID 4242, via setpriv): degraded watching when the
//! UID's inotify instances are used up (`fs.inotify.max_user_instances` is shared by every
//! container of that UID on a node), and the process being non-dumpable.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

const UID: &str = "4242";

#[test]
fn works_without_inotify() {
    let python = "/usr/bin/python3";
    if !is_root()
        || !std::path::Path::new(python).exists()
        || Command::new("setpriv").arg("--version").output().is_err()
    {
        eprintln!("skipped: needs root, setpriv and {python}");
        return;
    }
    let mut s = Setup::with_role(Role {
        token_ttl: Duration::from_secs(2),
        token_max_ttl: Duration::from_secs(600),
        ..Role::default()
    });
    open_to_other_users(&s);

    // Another process of the same UID takes every inotify instance the UID may have.
    let mut hog = Command::new("setpriv")
        .args(["--reuid", UID, "--regid", UID, "--clear-groups", python, "-c"])
        .arg("import ctypes,sys,time\nlibc=ctypes.CDLL(None)\nfds=[libc.inotify_init1(0) for _ in range(100000)]\nprint(sum(f>=0 for f in fds), flush=True)\ntime.sleep(60)\n")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(hog.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    assert!(
        line.trim().parse::<u32>().unwrap() > 0,
        "hog holds instances: {line}"
    );

    let r = start_as_other_user(&mut s);
    r.wait_log("cannot watch files", Duration::from_secs(5));
    // Still renews, and a deleted token file comes back at the next wake-up.
    assert!(
        wait_until(Duration::from_secs(8), || renewals(&s.emu) >= 2),
        "{}",
        r.stderr()
    );
    let token = s.token().unwrap();
    fs::remove_file(&s.token_path).unwrap();
    assert!(
        wait_until(Duration::from_secs(4), || s.token().is_some()),
        "{}",
        r.stderr()
    );
    assert_eq!(s.token().unwrap(), token);
    assert_eq!(
        r.stderr().matches("cannot watch files").count(),
        1,
        "one warning"
    );
    let _ = hog.kill();
    let _ = hog.wait();
}

#[test]
fn process_is_not_dumpable() {
    // proc(5): the files of a non-dumpable process are owned by root. Visible only when the
    // process runs as another user, so run it as UID 4242.
    if !is_root() || Command::new("setpriv").arg("--version").output().is_err() {
        eprintln!("skipped: needs root and setpriv");
        return;
    }
    let mut s = Setup::with_role(Role::default());
    open_to_other_users(&s);
    let r = start_as_other_user(&mut s);
    assert!(
        wait_until(Duration::from_secs(5), || s.token().is_some()),
        "{}",
        r.stderr()
    );
    use std::os::unix::fs::MetadataExt;
    let meta = fs::metadata(format!("/proc/{}/environ", r.pid())).unwrap();
    assert_eq!(
        meta.uid(),
        0,
        "/proc/PID/environ owned by root: process is not dumpable"
    );
    assert!(!r.stderr().contains("non-dumpable"), "{}", r.stderr());
}

/// Lets UID 4242 read the JWT and write the token directory of a setup made by root.
/// Starts the sidecar of `s` as UID 4242, logging at info.
fn start_as_other_user(s: &mut Setup) -> Running {
    s.set("VAULT_LOGIN_LOG", "info");
    let mut cmd = Command::new("setpriv");
    cmd.env_clear()
        .envs(&s.env)
        .args(["--reuid", UID, "--regid", UID, "--clear-groups", &bin()]);
    Running::start(cmd)
}

fn open_to_other_users(s: &Setup) {
    for d in [
        s.dir.path(),
        s.jwt_path.parent().unwrap(),
        s.token_path.parent().unwrap(),
    ] {
        fs::set_permissions(d, fs::Permissions::from_mode(0o777)).unwrap();
    }
    fs::set_permissions(&s.jwt_path, fs::Permissions::from_mode(0o644)).unwrap();
}
