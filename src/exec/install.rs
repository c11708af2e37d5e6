//! `vault-login install <dir>`: copies this (static) binary into a shared volume, so an init
//! container can give any app image `<dir>/vault-login exec -- <entrypoint>`.
//!
//! The copy is published like the token file: a fresh temp file in `<dir>` (created
//! exclusively, so nothing planted there is followed), written, fsynced, made 0755, renamed
//! over `<dir>/vault-login`, then the directory fsynced. A reader never runs half a binary.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The installed file's name.
pub const INSTALLED_NAME: &str = "vault-login";
/// The installed file's mode: anyone may run it (it holds no secret).
const MODE: u32 = 0o755;
/// The largest binary copied (the static binary is ~3 MB; this bounds a read of a wrong file).
const MAX_BYTES: u64 = 256 * 1024 * 1024;

/// Why `vault-login install` failed.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// The command line or the directory is wrong (exit 64).
    #[error(
        "install: {0}; usage: vault-login install <dir> (copies this binary to <dir>/vault-login)"
    )]
    Usage(String),
    /// The copy failed (exit 1).
    #[error("install: cannot write {}: {source}", .path.display())]
    Io {
        /// The file being written.
        path: PathBuf,
        /// What failed.
        #[source]
        source: io::Error,
    },
}

/// Runs `vault-login install <dir>` with `args` (after `install`); the installed path.
pub fn run(args: &[std::ffi::OsString]) -> Result<PathBuf, InstallError> {
    let usage = |problem: &str| InstallError::Usage(problem.to_string());
    let dir = match args {
        [dir] if !dir.is_empty() => PathBuf::from(dir),
        [] => return Err(usage("no directory given")),
        _ => return Err(usage("give exactly one directory")),
    };
    match fs::metadata(&dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Err(usage(&format!("{} is not a directory", dir.display()))),
        Err(e) => {
            return Err(usage(&format!(
                "{}: {e}; mount the shared volume there first",
                dir.display()
            )))
        }
    }
    let target = dir.join(INSTALLED_NAME);
    install(Path::new("/proc/self/exe"), &target).map_err(|source| InstallError::Io {
        path: target.clone(),
        source,
    })?;
    Ok(target)
}

/// Copies `from` to `to` atomically with mode 0755.
pub fn install(from: &Path, to: &Path) -> io::Result<()> {
    let mut bytes = Vec::new();
    File::open(from)?.take(MAX_BYTES).read_to_end(&mut bytes)?;
    let dir = to.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(".{INSTALLED_NAME}.tmp.{}", std::process::id()));
    let result = write_new(&tmp, &bytes).and_then(|()| fs::rename(&tmp, to));
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result?;
    // The rename is durable once the directory is.
    File::open(dir)?.sync_all()
}

fn write_new(tmp: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o700)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(tmp)?;
    f.write_all(bytes)?;
    // Exact, whatever the umask.
    f.set_permissions(fs::Permissions::from_mode(MODE))?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_atomically_with_mode_0755_over_an_old_copy() {
        let dir = tempfile::tempdir().unwrap();
        let from = dir.path().join("src");
        fs::write(&from, b"binary").unwrap();
        let to = dir.path().join(INSTALLED_NAME);
        fs::write(&to, b"old").unwrap();
        install(&from, &to).unwrap();
        assert_eq!(fs::read(&to).unwrap(), b"binary");
        assert_eq!(
            fs::metadata(&to).unwrap().permissions().mode() & 0o7777,
            0o755
        );
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names.len(), 2, "no temp file left: {names:?}");
    }

    #[test]
    fn usage_errors_are_configuration_errors() {
        let e = crate::Error::from(run(&[]).unwrap_err());
        assert_eq!(e.exit_code(), 64);
        assert!(e.to_string().contains("no directory"), "{e}");
        let e = crate::Error::from(run(&["/nonexistent/dir".into()]).unwrap_err());
        assert_eq!(e.exit_code(), 64);
        assert!(e.to_string().contains("/nonexistent/dir"), "{e}");
    }
}
