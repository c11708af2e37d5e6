//! Section 3's image figure: the Dockerfile's one `COPY` layer on `scratch` (the static binary;
//! no CA bundle since the binary carries its roots), packed the way image builders pack layers — a
//! tar, gzip-compressed — so
//! the size a registry stores and a node pulls is measured without a Docker engine. The image
//! config and manifest (about 1 KiB of JSON) are left out.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Sizes of the layers, summed.
#[derive(Clone, Copy, Debug)]
pub struct Layers {
    /// The layer tars.
    pub tar_bytes: u64,
    /// The same, gzip-compressed: what is pushed and pulled.
    pub gzip_bytes: u64,
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let shown = format!("{cmd:?}");
    let status = cmd
        .status()
        .map_err(|e| format!("cannot run {shown}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{shown} failed ({status})"))
    }
}

fn size(path: &Path) -> Result<u64, String> {
    fs::metadata(path)
        .map(|m| m.len())
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// One layer holding `src` at `dest` (absolute, inside the image): its tar and gzip sizes.
fn layer(src: &Path, dest: &str, work: &Path, n: usize) -> Result<Layers, String> {
    let root = work.join(format!("layer{n}"));
    let rel = dest.trim_start_matches('/');
    let staged = root.join(rel);
    if let Some(parent) = staged.parent() {
        fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
    }
    fs::copy(src, &staged).map_err(|e| format!("{} → {}: {e}", src.display(), staged.display()))?;
    let tar = work.join(format!("layer{n}.tar"));
    // Reproducible like BuildKit's layers: root-owned entries, a fixed mtime.
    run(Command::new("tar")
        .args([
            "--numeric-owner",
            "--owner=0",
            "--group=0",
            "--mtime=@0",
            "-cf",
        ])
        .arg(&tar)
        .arg("-C")
        .arg(&root)
        .arg(rel))?;
    // gzip's default level, as docker and BuildKit use for pushed layers.
    run(Command::new("gzip").args(["-k", "-n", "-f"]).arg(&tar))?;
    Ok(Layers {
        tar_bytes: size(&tar)?,
        gzip_bytes: size(&PathBuf::from(format!("{}.gz", tar.display())))?,
    })
}

/// Packs the image's layers from the static binary `bin` and the CA bundle `ca`.
pub fn measure(bin: &Path) -> Result<Layers, String> {
    static CALLS: AtomicUsize = AtomicUsize::new(0);
    let work = std::env::temp_dir().join(format!(
        "vault-login-bench-image-{}-{}",
        std::process::id(),
        CALLS.fetch_add(1, Ordering::Relaxed)
    ));
    fs::create_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;
    let result = layer(bin, "/vault-login", &work, 0);
    let _ = fs::remove_dir_all(&work);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_hold_the_files_and_compress() {
        let dir = tempfile_dir();
        let file = dir.join("payload");
        // Compressible content: the gzip layer must be smaller than the tar.
        fs::write(&file, "vault-login ".repeat(10_000)).unwrap();
        let l = measure(&file).unwrap();
        assert!(l.tar_bytes > 120_000, "{l:?}");
        assert!(l.gzip_bytes < l.tar_bytes / 10, "{l:?}");
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_missing_file_is_named() {
        let err = measure(Path::new("/nonexistent/vault-login")).unwrap_err();
        assert!(err.contains("/nonexistent/vault-login"), "{err}");
    }

    fn tempfile_dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "vault-login-bench-image-test-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        fs::create_dir_all(&d).unwrap();
        d
    }
}
