//! The token file: written atomically so readers only ever see a whole token.
//!
//! Each write creates a fresh temp file next to the target (exclusively, so a planted file or
//! symlink at that name is never followed), sets the exact mode, writes, fsyncs, chowns, renames
//! over the target and fsyncs the directory. A failure at any step leaves the previous token.
//!
//! The directory is shared with other containers, so reading the token back never follows a
//! symlink, never blocks on a FIFO and never reads more than a token's length; temp files a
//! killed run left behind (each holding a live token) are removed at start.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::files::safe_fs::{self, Links};
use crate::sensitive::Secret;

/// Where the Vault token is written unless told otherwise.
pub const DEFAULT_TOKEN_FILE: &str = "/var/run/secrets/vaultproject.io/token";

/// Where the Vault token is written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenSink {
    /// Written atomically to this file.
    File(PathBuf),
    /// Printed to standard output (once mode only).
    Stdout,
    /// Kept in memory only: `vault-login exec` without a token file (the program gets it
    /// through `VAULT_LOGIN_EXEC_TOKEN`, if at all).
    Memory,
}

/// Numeric owner to give the token file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Owner {
    /// User id.
    pub uid: u32,
    /// Group id; `None` leaves the group as it is.
    pub gid: Option<u32>,
}

/// Why the token file could not be written.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// The directory that should hold the token does not exist.
    #[error("token directory {} does not exist: mount the shared volume there or point VAULT_LOGIN_TOKEN_FILE into an existing directory", .0.display())]
    NoDirectory(PathBuf),
    /// The token path's parent is not a directory.
    #[error("{} is not a directory: VAULT_LOGIN_TOKEN_FILE must be a path inside a directory", .0.display())]
    NotADirectory(PathBuf),
    /// The token path itself is a directory.
    #[error("token file {} is a directory: point VAULT_LOGIN_TOKEN_FILE at a file name inside it", .0.display())]
    IsADirectory(PathBuf),
    /// Any other I/O failure, with the step that failed.
    // `step` ends where `path` fits: "cannot create a temp file in /dir", "cannot rename the
    // temp file over /dir/token".
    #[error("cannot {step} {}: {source}{hint}", path.display())]
    Io {
        /// What we were doing.
        step: &'static str,
        /// The path involved.
        path: PathBuf,
        /// What to check, if we can tell.
        hint: &'static str,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
}

/// Where and how the token is written.
#[derive(Clone, Debug)]
pub struct TokenFile {
    path: PathBuf,
    mode: u32,
    owner: Option<Owner>,
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

fn hint_for(e: &io::Error) -> &'static str {
    match e.raw_os_error() {
        Some(13) | Some(1) => " (check the volume's permissions and the container's user)",
        Some(30) => " (the volume is read-only: mount a writable emptyDir there)",
        Some(28) | Some(122) => " (the volume is full: raise the emptyDir sizeLimit)",
        _ => "",
    }
}

impl TokenFile {
    /// A token file at `path`, written with `mode` and optionally chowned to `owner`.
    pub fn new(path: impl Into<PathBuf>, mode: u32, owner: Option<Owner>) -> Self {
        TokenFile {
            path: path.into(),
            mode,
            owner,
        }
    }

    /// The target path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The directory holding the token file.
    pub fn dir(&self) -> &Path {
        match self.path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        }
    }

    /// Checks, without writing the token, that the directory exists and accepts new files, and
    /// removes temp files a killed run left next to the token.
    ///
    /// Called at startup so a missing volume is reported before any token is created in Vault.
    pub fn check(&self) -> Result<(), FileError> {
        let dir = self.dir();
        match fs::metadata(dir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Err(FileError::NotADirectory(dir.to_path_buf())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(FileError::NoDirectory(dir.to_path_buf()))
            }
            Err(e) => return Err(self.io("inspect the directory", dir, e)),
        }
        if fs::symlink_metadata(&self.path).is_ok_and(|m| m.is_dir()) {
            return Err(FileError::IsADirectory(self.path.clone()));
        }
        self.remove_stale_temps();
        let (probe, file) = self.create_temp()?;
        drop(file);
        let _ = fs::remove_file(&probe);
        Ok(())
    }

    /// The prefix of this file's temp names: `.<name>.tmp.`.
    fn temp_prefix(&self) -> String {
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "token".into());
        format!(".{name}.tmp.")
    }

    /// Removes temp files left by a run that was killed between creating and renaming one;
    /// returns how many. Call it before this process writes: any temp then is not ours.
    pub fn remove_stale_temps(&self) -> usize {
        let prefix = self.temp_prefix();
        let Ok(entries) = fs::read_dir(self.dir()) else {
            return 0;
        };
        let mut removed = 0;
        for entry in entries.flatten() {
            let stale = entry.file_name().to_str().is_some_and(|n| {
                n.strip_prefix(prefix.as_str())
                    .is_some_and(|rest| !rest.is_empty())
            });
            // Only files and links: unlinking either never touches what a link points to.
            let not_dir = entry.file_type().is_ok_and(|t| !t.is_dir());
            if stale && not_dir {
                match fs::remove_file(entry.path()) {
                    Ok(()) => {
                        removed += 1;
                        tracing::warn!(path = %entry.path().display(), "removed a temp file a previous run left next to the token");
                    }
                    Err(e) => {
                        tracing::warn!(path = %entry.path().display(), error = %e, "cannot remove a temp file a previous run left next to the token")
                    }
                }
            }
        }
        removed
    }

    /// Atomically replaces the file's content with `token`.
    pub fn write(&self, token: &Secret) -> Result<(), FileError> {
        self.write_bytes(token.expose().as_bytes())
    }

    /// Atomically replaces the file's content with `bytes` (a rendered secret file), with the
    /// same temp file, mode, owner, fsync and rename as [`TokenFile::write`].
    pub fn write_bytes(&self, bytes: &[u8]) -> Result<(), FileError> {
        if fs::symlink_metadata(&self.path).is_ok_and(|m| m.is_dir()) {
            return Err(FileError::IsADirectory(self.path.clone()));
        }
        let (tmp, mut file) = self.create_temp()?;
        let result = self.fill_and_publish(&tmp, &mut file, bytes);
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    fn fill_and_publish(&self, tmp: &Path, file: &mut File, bytes: &[u8]) -> Result<(), FileError> {
        file.write_all(bytes)
            .map_err(|e| self.io("write the temp file", tmp, e))?;
        file.sync_all()
            .map_err(|e| self.io("fsync the temp file", tmp, e))?;
        if let Some(owner) = self.owner {
            std::os::unix::fs::fchown(&*file, Some(owner.uid), owner.gid)
                .map_err(|e| self.io("chown the temp file", tmp, e))?;
            // chown clears set-id bits on some systems; restate the mode.
            file.set_permissions(fs::Permissions::from_mode(self.mode))
                .map_err(|e| self.io("chmod the temp file", tmp, e))?;
        }
        fs::rename(tmp, &self.path).map_err(|e| {
            if e.raw_os_error() == Some(21) {
                FileError::IsADirectory(self.path.clone())
            } else {
                self.io("rename the temp file over", &self.path, e)
            }
        })?;
        // Make the rename itself durable; a failure here does not undo the published token.
        // The open never blocks, whatever another container put at the directory's path.
        if let Ok(d) = safe_fs::open_directory(self.dir()) {
            let _ = d.sync_all();
        }
        Ok(())
    }

    /// Creates a new temp file beside the target with exactly `mode`, never reusing a name.
    fn create_temp(&self) -> Result<(PathBuf, File), FileError> {
        let prefix = self.temp_prefix();
        let mut last_err = None;
        for _ in 0..8 {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let tmp = self.dir().join(format!(
                "{prefix}{}.{n}.{:x}",
                std::process::id(),
                crate::machine::backoff::random_u64() & 0xffff_ffff
            ));
            // create_new = O_CREAT|O_EXCL: fails on any existing entry, including a symlink,
            // so a planted link is never followed. Mode 0600 at creation, then the exact mode
            // with fchmod, so the umask cannot widen or narrow it.
            match OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600 & self.mode)
                .open(&tmp)
            {
                Ok(file) => {
                    if let Err(e) = file.set_permissions(fs::Permissions::from_mode(self.mode)) {
                        let _ = fs::remove_file(&tmp);
                        return Err(self.io("chmod the temp file", &tmp, e));
                    }
                    return Ok((tmp, file));
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last_err = Some(e),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    return Err(FileError::NoDirectory(self.dir().to_path_buf()))
                }
                Err(e) => return Err(self.io("create a temp file in", self.dir(), e)),
            }
        }
        let e = last_err.unwrap_or_else(|| io::Error::other("temp names exhausted"));
        Err(self.io("create a temp file in", self.dir(), e))
    }

    /// Makes the file hold `token` (unless it already does) on a blocking thread: a slow or
    /// hung volume never stalls the runtime that drives renewals, signals and the health
    /// server. `restoring`: the file was found missing or changed, which is logged.
    pub async fn put(&self, token: Secret, restoring: bool) -> Result<(), String> {
        let f = self.clone();
        // Logged here, not after the await: a later write may replace this one in the driver
        // after the file was already restored.
        let task = tokio::task::spawn_blocking(move || {
            if f.holds(&token) {
                return Ok(());
            }
            f.write(&token).map_err(|e| e.to_string())?;
            if restoring {
                tracing::warn!(path = %f.path().display(), "token file was missing or changed; restored the current token");
            }
            Ok(())
        });
        task.await
            .unwrap_or_else(|e| Err(format!("the token file write did not finish: {e}")))
    }

    /// The token the file holds, if it is a regular file (not a symlink) with one line of at
    /// most 16 KiB, read without blocking; None otherwise (another container may have put
    /// anything there).
    pub fn read(&self) -> Option<Secret> {
        let bytes = safe_fs::read_regular(&self.path, Links::Refuse, 16 * 1024).ok()?;
        let bytes = zeroize::Zeroizing::new(bytes);
        let text = std::str::from_utf8(&bytes).ok()?.trim();
        let token = !text.is_empty() && !text.contains(char::is_whitespace);
        token.then(|| Secret::new(text.to_string()))
    }

    /// Whether the file currently holds exactly `token` (false if missing or unreadable).
    ///
    /// What another container put there (a symlink, a FIFO, a device, a huge file) is read at
    /// most one byte past the token's length, without blocking, and counts as not holding it.
    pub fn holds(&self, token: &Secret) -> bool {
        let want = token.expose().as_bytes();
        match safe_fs::read_regular(&self.path, Links::Refuse, want.len() as u64) {
            Ok(bytes) => bytes == want,
            Err(e) => {
                if !e.is_not_found() {
                    tracing::warn!(path = %self.path.display(), error = %e, "the token file does not hold the token");
                }
                false
            }
        }
    }

    /// Removes the token file; a missing file is not an error.
    pub fn remove(&self) -> Result<(), FileError> {
        match fs::remove_file(&self.path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.io("remove", &self.path, e)),
        }
    }

    fn io(&self, step: &'static str, path: &Path, source: io::Error) -> FileError {
        FileError::Io {
            step,
            path: path.to_path_buf(),
            hint: hint_for(&source),
            source,
        }
    }
}

/// Parses octal permission bits like `0600`, `600` or `0o600`, at most `0777`.
pub fn parse_mode(s: &str) -> Result<u32, String> {
    let t = s.trim();
    let digits = t
        .strip_prefix("0o")
        .or_else(|| t.strip_prefix("0O"))
        .unwrap_or(t);
    if digits.is_empty() || !digits.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return Err(format!(
            "{s:?} is not an octal file mode; use e.g. 0600 or 0640"
        ));
    }
    match u32::from_str_radix(digits, 8) {
        Ok(mode) if mode <= 0o777 => Ok(mode),
        _ => Err(format!(
            "{s:?} is more than 0777 (setuid, setgid and sticky bits are not allowed); use e.g. 0600 or 0640"
        )),
    }
}

/// Parses a numeric owner, `UID` or `UID:GID`.
pub fn parse_owner(s: &str) -> Result<Owner, String> {
    let t = s.trim();
    let bad = || {
        format!("{s:?} is not an owner; use a numeric UID or UID:GID such as 1000 or 1000:2000 (names are not looked up)")
    };
    let id = |part: &str| -> Result<u32, String> {
        if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        match part.parse::<u32>() {
            // u32::MAX is (uid_t)-1, which chown reads as "leave unchanged".
            Ok(id) if id != u32::MAX => Ok(id),
            _ => Err(format!(
                "{s:?} has an id out of range; ids go from 0 to 4294967294"
            )),
        }
    };
    match t.split_once(':') {
        Some((uid, gid)) => Ok(Owner {
            uid: id(uid)?,
            gid: Some(id(gid)?),
        }),
        None => Ok(Owner {
            uid: id(t)?,
            gid: None,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    /// Checks a problem's shape: one line, lowercase, no trailing period.
    fn check_problem(problem: &str) {
        assert!(!problem.contains('\n'), "multi-line problem: {problem}");
        assert!(!problem.ends_with('.'), "trailing period: {problem}");
        assert!(
            problem.starts_with(|c: char| !c.is_uppercase()),
            "{problem}"
        );
    }

    fn files_in(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn writes_exact_content_and_mode_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let tf = TokenFile::new(dir.path().join("token"), 0o640, None);
        tf.check().unwrap();
        tf.write(&Secret::new("hvs.one")).unwrap();
        tf.write(&Secret::new("hvs.two")).unwrap();
        assert_eq!(fs::read_to_string(tf.path()).unwrap(), "hvs.two");
        assert_eq!(fs::metadata(tf.path()).unwrap().mode() & 0o7777, 0o640);
        assert_eq!(files_in(dir.path()), vec!["token"]);
        assert!(tf.holds(&Secret::new("hvs.two")));
        assert!(!tf.holds(&Secret::new("hvs.one")));
    }

    #[test]
    fn missing_directory_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let tf = TokenFile::new(dir.path().join("nope/token"), 0o600, None);
        let err = tf.check().unwrap_err();
        assert!(matches!(err, FileError::NoDirectory(_)));
        assert!(err.to_string().contains("nope"));
        assert!(matches!(
            tf.write(&Secret::new("x")),
            Err(FileError::NoDirectory(_))
        ));
    }

    #[test]
    fn directory_at_token_path_is_rejected_and_untouched() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("token")).unwrap();
        let tf = TokenFile::new(dir.path().join("token"), 0o600, None);
        assert!(matches!(tf.check(), Err(FileError::IsADirectory(_))));
        assert!(matches!(
            tf.write(&Secret::new("x")),
            Err(FileError::IsADirectory(_))
        ));
        assert_eq!(files_in(dir.path()), vec!["token"]);
    }

    #[test]
    fn planted_symlink_is_replaced_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, "precious").unwrap();
        std::os::unix::fs::symlink(&victim, dir.path().join("token")).unwrap();
        let tf = TokenFile::new(dir.path().join("token"), 0o600, None);
        tf.write(&Secret::new("hvs.x")).unwrap();
        assert_eq!(fs::read_to_string(&victim).unwrap(), "precious");
        assert!(!fs::symlink_metadata(tf.path())
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(fs::read_to_string(tf.path()).unwrap(), "hvs.x");
    }

    #[test]
    fn stale_temps_of_a_killed_run_are_removed_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let keep = ["token", "other", ".other.tmp.1.2.3", ".token.tmp."];
        for name in keep {
            fs::write(dir.path().join(name), "x").unwrap();
        }
        fs::write(dir.path().join(".token.tmp.77.0.abc"), "hvs.live").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join(".token.tmp.78.1.f")).unwrap();
        fs::create_dir(dir.path().join(".token.tmp.dir")).unwrap();
        let tf = TokenFile::new(dir.path().join("token"), 0o600, None);
        tf.check().unwrap();
        let mut want: Vec<String> = keep.iter().map(|s| s.to_string()).collect();
        want.push(".token.tmp.dir".into());
        want.sort();
        assert_eq!(files_in(dir.path()), want);
        assert!(Path::new("/etc/passwd").exists());
        assert_eq!(tf.remove_stale_temps(), 0);
    }

    #[test]
    fn holds_never_blocks_or_reads_without_bound() {
        let dir = tempfile::tempdir().unwrap();
        let tf = TokenFile::new(dir.path().join("token"), 0o600, None);
        let token = Secret::new("hvs.abc");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            tf.path(),
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        assert!(!tf.holds(&token));
        fs::remove_file(tf.path()).unwrap();
        std::os::unix::fs::symlink("/dev/zero", tf.path()).unwrap();
        assert!(!tf.holds(&token));
        fs::remove_file(tf.path()).unwrap();
        // A link to a file holding the token is still not the token file.
        fs::write(dir.path().join("elsewhere"), "hvs.abc").unwrap();
        std::os::unix::fs::symlink(dir.path().join("elsewhere"), tf.path()).unwrap();
        assert!(!tf.holds(&token));
        fs::remove_file(tf.path()).unwrap();
        fs::write(tf.path(), "hvs.abcd").unwrap();
        assert!(!tf.holds(&token));
        tf.write(&token).unwrap();
        assert!(tf.holds(&token));
    }

    #[test]
    fn remove_is_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let tf = TokenFile::new(dir.path().join("token"), 0o600, None);
        tf.write(&Secret::new("a")).unwrap();
        tf.remove().unwrap();
        tf.remove().unwrap();
        assert!(!tf.path().exists());
    }

    #[test]
    fn modes() {
        for (input, want) in [
            ("0600", 0o600),
            ("600", 0o600),
            ("0o640", 0o640),
            ("0O640", 0o640),
            ("0777", 0o777),
            ("0", 0),
            ("000400", 0o400),
            (" 0644 ", 0o644),
        ] {
            assert_eq!(parse_mode(input), Ok(want), "{input}");
        }
        for input in [
            "0778",
            "8",
            "rw-r--r--",
            "",
            "0o",
            "0x1ff",
            "+600",
            "-600",
            "6 00",
        ] {
            let e = parse_mode(input).unwrap_err();
            assert!(e.contains("not an octal file mode"), "{input}: {e}");
            check_problem(&e);
        }
        for input in ["1000", "4755", "07777", "777777777777777777777"] {
            let e = parse_mode(input).unwrap_err();
            assert!(e.contains("more than 0777"), "{input}: {e}");
        }
    }

    #[test]
    fn owners() {
        assert_eq!(
            parse_owner("1000"),
            Ok(Owner {
                uid: 1000,
                gid: None
            })
        );
        assert_eq!(
            parse_owner("1000:2000"),
            Ok(Owner {
                uid: 1000,
                gid: Some(2000)
            })
        );
        assert_eq!(
            parse_owner("0:0"),
            Ok(Owner {
                uid: 0,
                gid: Some(0)
            })
        );
        assert_eq!(
            parse_owner("4294967294"),
            Ok(Owner {
                uid: 4_294_967_294,
                gid: None
            })
        );
        for input in [
            "1000:",
            ":1000",
            "-1",
            "nobody",
            "1000:staff",
            "1:2:3",
            "",
            "+5",
            "1 000",
        ] {
            let e = parse_owner(input).unwrap_err();
            assert!(e.contains("not an owner"), "{input}: {e}");
            check_problem(&e);
        }
        for input in ["4294967295", "4294967296", "1:99999999999999999999999"] {
            let e = parse_owner(input).unwrap_err();
            assert!(e.contains("out of range"), "{input}: {e}");
        }
    }
}
