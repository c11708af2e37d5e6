//! The binaries under test: building the release and static musl `vault-login` (the latter for
//! every platform the image is built for, through `.ci/build-arch.sh` as the Dockerfile does),
//! finding them, and describing them (size, stripped, static).

use std::path::{Path, PathBuf};
use std::process::Command;

/// One platform the image is built for.
#[derive(Clone, Copy, Debug)]
pub struct Arch {
    /// Docker's platform name.
    pub platform: &'static str,
    /// `.ci/build-arch.sh`'s name for it.
    pub name: &'static str,
    /// The Rust target.
    pub triple: &'static str,
}

/// The image's platforms; the first is the machine the benchmarks run on.
pub const ARCHES: [Arch; 3] = [
    Arch {
        platform: "linux/amd64",
        name: "amd64",
        triple: "x86_64-unknown-linux-musl",
    },
    Arch {
        platform: "linux/arm64",
        name: "arm64",
        triple: "aarch64-unknown-linux-musl",
    },
    Arch {
        platform: "linux/arm/v7",
        name: "armv7",
        triple: "armv7-unknown-linux-musleabihf",
    },
];

/// The workspace root (the bench crate's parent directory).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => workspace_root().join("target"),
    }
}

fn cargo() -> String {
    // `cargo run` tells us which cargo it is; fall back to the one on PATH.
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

/// The exact build commands, for the report.
pub fn build_commands() -> [String; 2] {
    [
        "cargo build --release --locked -p vault-login --bin vault-login".into(),
        "bash .ci/build-arch.sh amd64|arm64|armv7".into(),
    ]
}

fn run_cargo(args: &[&str]) -> Result<(), String> {
    eprintln!("   $ cargo {}", args.join(" "));
    let status = Command::new(cargo())
        .args(args)
        .current_dir(workspace_root())
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("cargo {} failed ({status})", args.join(" ")))
    }
}

/// `cargo build --release --locked -p vault-login --bin vault-login` plus `extra` arguments.
fn build_vault_login(extra: &[&str]) -> Result<(), String> {
    let mut args = vec![
        "build",
        "--release",
        "--locked",
        "-p",
        "vault-login",
        "--bin",
        "vault-login",
    ];
    args.extend_from_slice(extra);
    run_cargo(&args)
}

/// Builds the release binary (glibc) and returns its path. `VAULT_LOGIN_BENCH_BIN` names an
/// already built binary to use instead (CI points it at the static musl build it has made, to
/// save a second LTO build in the smoke run).
pub fn build_release() -> Result<PathBuf, String> {
    if let Some(bin) = std::env::var_os("VAULT_LOGIN_BENCH_BIN").filter(|b| !b.is_empty()) {
        eprintln!(
            "   using VAULT_LOGIN_BENCH_BIN={}",
            Path::new(&bin).display()
        );
        return Ok(PathBuf::from(bin));
    }
    build_vault_login(&[])?;
    Ok(target_dir().join("release/vault-login"))
}

/// Builds the static musl binary for `arch` with `.ci/build-arch.sh` (which installs zig and
/// cargo-zigbuild on first use) and returns its path; `None` when the script skipped the
/// platform because its Rust standard library cannot be installed on this machine (exit code 3).
pub fn build_arch(arch: &Arch) -> Result<Option<PathBuf>, String> {
    eprintln!("   $ bash .ci/build-arch.sh {}", arch.name);
    let mut cmd = Command::new("bash");
    cmd.arg(".ci/build-arch.sh")
        .arg(arch.name)
        .current_dir(workspace_root());
    // The variables `cargo run` sets for this harness: ring's build script watches
    // CARGO_MANIFEST_DIR, so passing them on would recompile ring and relink (about 3 minutes
    // per platform) what CI's musl-smoke has just built.
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        if key.starts_with("CARGO_PKG_")
            || [
                "CARGO_MANIFEST_DIR",
                "CARGO_MANIFEST_PATH",
                "CARGO_CRATE_NAME",
                "CARGO_BIN_NAME",
                "CARGO_PRIMARY_PACKAGE",
            ]
            .contains(&key.as_ref())
        {
            cmd.env_remove(key.as_ref());
        }
    }
    let status = cmd
        .status()
        .map_err(|e| format!("cannot run bash .ci/build-arch.sh: {e}"))?;
    match status.code() {
        Some(0) => Ok(Some(
            target_dir().join(arch.triple).join("release/vault-login"),
        )),
        Some(3) => Ok(None),
        _ => Err(format!(
            "bash .ci/build-arch.sh {} failed ({status})",
            arch.name
        )),
    }
}

/// Size in bytes and what `file` says about the binary (stripped? static?).
pub fn describe(path: &Path) -> (u64, String) {
    let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let kind = Command::new("file")
        .arg("-b")
        .arg(path)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let mut notes = Vec::new();
    if kind.contains("static-pie") || kind.contains("statically linked") {
        notes.push("static");
    } else if kind.contains("dynamically linked") {
        notes.push("dynamic");
    }
    if kind.contains("not stripped") {
        notes.push("NOT stripped");
    } else if kind.contains("stripped") {
        notes.push("stripped");
    }
    (size, notes.join(", "))
}
