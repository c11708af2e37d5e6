//! A directory of files published as one unit, the way the kubelet's atomic writer publishes a
//! projected volume: each generation is written into a fresh `..YYYY_MM_DD_hh_mm_ss.NNN`
//! directory, the `..data` symlink is pointed at it with one rename, and every visible name is
//! a symlink through `..data` (`tls.crt -> ..data/tls.crt`). A reader that opens one file and
//! then another gets both from the same generation unless a swap falls between its two opens
//! *and* the old generation is already gone; old generations are removed only after the swap,
//! and a reader holding an open file keeps reading it whatever happens to the names.
//!
//! The generation's name is its publication time (UTC), which tells a restarted sidecar when
//! the files were issued (certificates are back-dated by Vault, so NotBefore does not).

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::duration::{civil_from_days, days_from_civil};
use crate::files::safe_fs::{self, Links};
use crate::files::token_file::{FileError, Owner};

/// The symlink naming the current generation.
pub const DATA_LINK: &str = "..data";
const DATA_TMP: &str = "..data_tmp";

/// One file of a generation: its name, content and exact mode.
pub struct Entry<'a> {
    /// The visible name (no `/`).
    pub name: &'a str,
    /// The content.
    pub bytes: &'a [u8],
    /// The exact mode.
    pub mode: u32,
}

/// A directory published in generations.
#[derive(Clone, Debug)]
pub struct AtomicDir {
    dir: PathBuf,
    owner: Option<Owner>,
}

fn io_err(step: &'static str, path: &Path, source: io::Error) -> FileError {
    FileError::Io {
        step,
        path: path.to_path_buf(),
        hint: "",
        source,
    }
}

/// A generation's name for `at`: `..2026_11_29_13_04_05.123`.
pub fn generation_name(at: SystemTime) -> String {
    let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs() as i64;
    let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    format!(
        "..{y:04}_{mo:02}_{d:02}_{:02}_{:02}_{:02}.{:03}",
        s / 3600,
        s / 60 % 60,
        s % 60,
        since.subsec_millis()
    )
}

/// The publication time a generation's name says, if it is one.
pub fn generation_time(name: &str) -> Option<SystemTime> {
    let rest = name.strip_prefix("..")?;
    let (date, millis) = rest.split_once('.')?;
    let parts: Vec<i64> = date
        .split('_')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    let [y, mo, d, h, mi, s] = parts[..] else {
        return None;
    };
    let millis: u64 = millis.parse().ok().filter(|m| *m < 1000)?;
    let secs = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + s;
    let secs = u64::try_from(secs).ok()?;
    Some(UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_millis(millis))
}

impl AtomicDir {
    /// The directory `dir` (created on the first publication), its files chowned to `owner`.
    pub fn new(dir: impl Into<PathBuf>, owner: Option<Owner>) -> Self {
        AtomicDir {
            dir: dir.into(),
            owner,
        }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Publishes `entries` as the new generation, then removes older ones. On failure the
    /// previous generation stays published and the partial new one is removed.
    pub fn publish(&self, entries: &[Entry<'_>], at: SystemTime) -> Result<(), FileError> {
        self.ensure_dir()?;
        let (gen_name, gen) = self.new_generation(at)?;
        let result = self.fill_and_swap(&gen_name, &gen, entries);
        if result.is_err() {
            let _ = fs::remove_dir_all(&gen);
            let _ = fs::remove_file(self.dir.join(DATA_TMP));
            return result;
        }
        for e in entries {
            self.link_name(e.name)?;
        }
        self.remove_old(&gen_name);
        Ok(())
    }

    fn ensure_dir(&self) -> Result<(), FileError> {
        match fs::symlink_metadata(&self.dir) {
            Ok(m) if m.is_dir() => Ok(()),
            Ok(_) => Err(io_err(
                "use as a directory",
                &self.dir,
                io::Error::other("it is not a directory"),
            )),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::DirBuilder::new()
                    .mode(0o755)
                    .create(&self.dir)
                    .map_err(|e| io_err("create the directory", &self.dir, e))?;
                self.chown_path(&self.dir)
            }
            Err(e) => Err(io_err("inspect", &self.dir, e)),
        }
    }

    fn chown_path(&self, path: &Path) -> Result<(), FileError> {
        if let Some(o) = self.owner {
            std::os::unix::fs::lchown(path, Some(o.uid), o.gid)
                .map_err(|e| io_err("chown", path, e))?;
        }
        Ok(())
    }

    /// Creates the generation directory, named after `at` (later if taken).
    fn new_generation(&self, at: SystemTime) -> Result<(String, PathBuf), FileError> {
        let mut at = at;
        for _ in 0..1000 {
            let name = generation_name(at);
            let path = self.dir.join(&name);
            // Readers must traverse it; the key inside keeps its own mode.
            match fs::DirBuilder::new().mode(0o755).create(&path) {
                Ok(()) => {
                    let _ = fs::set_permissions(&path, fs::Permissions::from_mode(0o755));
                    self.chown_path(&path)?;
                    return Ok((name, path));
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    at += Duration::from_millis(1);
                }
                Err(e) => return Err(io_err("create a generation directory in", &self.dir, e)),
            }
        }
        Err(io_err(
            "create a generation directory in",
            &self.dir,
            io::Error::other("generation names exhausted"),
        ))
    }

    fn fill_and_swap(
        &self,
        name: &str,
        gen: &Path,
        entries: &[Entry<'_>],
    ) -> Result<(), FileError> {
        for e in entries {
            let path = gen.join(e.name);
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600 & e.mode)
                .open(&path)
                .map_err(|err| io_err("create", &path, err))?;
            if let Some(o) = self.owner {
                std::os::unix::fs::fchown(&f, Some(o.uid), o.gid)
                    .map_err(|err| io_err("chown", &path, err))?;
            }
            // The exact mode after the chown (which may clear set-id bits), beyond the umask.
            f.set_permissions(fs::Permissions::from_mode(e.mode))
                .map_err(|err| io_err("chmod", &path, err))?;
            f.write_all(e.bytes)
                .map_err(|err| io_err("write", &path, err))?;
            f.sync_all().map_err(|err| io_err("fsync", &path, err))?;
        }
        if let Ok(d) = safe_fs::open_directory(gen) {
            let _ = d.sync_all();
        }
        let tmp = self.dir.join(DATA_TMP);
        let _ = fs::remove_file(&tmp);
        std::os::unix::fs::symlink(name, &tmp)
            .map_err(|e| io_err("create the symlink", &tmp, e))?;
        self.chown_path(&tmp)?;
        let data = self.dir.join(DATA_LINK);
        fs::rename(&tmp, &data).map_err(|e| io_err("swap the symlink", &data, e))?;
        if let Ok(d) = safe_fs::open_directory(&self.dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }

    /// Makes `name` a symlink to `..data/name`, unless it already is one.
    fn link_name(&self, name: &str) -> Result<(), FileError> {
        let path = self.dir.join(name);
        let target = Path::new(DATA_LINK).join(name);
        if fs::read_link(&path).is_ok_and(|t| t == target) {
            return Ok(());
        }
        // Replaced with a rename, so the name is never missing for a reader.
        let tmp = self.dir.join(format!("..{name}.tmp"));
        let _ = fs::remove_file(&tmp);
        std::os::unix::fs::symlink(&target, &tmp)
            .map_err(|e| io_err("create the symlink", &tmp, e))?;
        self.chown_path(&tmp)?;
        fs::rename(&tmp, &path).map_err(|e| io_err("replace", &path, e))
    }

    /// Removes every generation but `keep` (older ones, and a killed run's partial ones).
    fn remove_old(&self, keep: &str) {
        let Ok(read) = fs::read_dir(&self.dir) else {
            return;
        };
        for entry in read.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name != keep && generation_time(name).is_some() {
                let _ = fs::remove_dir_all(entry.path());
            }
        }
    }

    /// The current generation's name, if `..data` points at one.
    pub fn current(&self) -> Option<String> {
        let target = fs::read_link(self.dir.join(DATA_LINK)).ok()?;
        let name = target.to_str()?;
        // Only a generation inside this directory: a planted link elsewhere is not followed.
        (generation_time(name).is_some() && !name.contains('/')).then(|| name.to_string())
    }

    /// Reads file `name` of the current generation (bounded, never through a symlink inside
    /// the generation), with the generation's publication time.
    pub fn read(&self, name: &str, max: u64) -> Result<(Vec<u8>, SystemTime), String> {
        let generation = self
            .current()
            .ok_or_else(|| format!("{} has no current generation", self.dir.display()))?;
        let path = self.dir.join(&generation).join(name);
        let bytes = safe_fs::read_regular(&path, Links::Refuse, max)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let at = generation_time(&generation).unwrap_or(UNIX_EPOCH);
        Ok((bytes, at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn generation_names_round_trip() {
        let at = UNIX_EPOCH + Duration::from_millis(1_796_607_431_042);
        let name = generation_name(at);
        assert_eq!(name, "..2026_12_07_01_37_11.042");
        assert_eq!(generation_time(&name), Some(at));
        for bad in [
            "..data",
            "..data_tmp",
            "tls.crt",
            "..2026_12_07_01_37_11",
            "..a_b_c_d_e_f.1",
        ] {
            assert_eq!(generation_time(bad), None, "{bad}");
        }
    }

    #[test]
    fn publishes_through_data_and_keeps_only_the_current_generation() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = AtomicDir::new(tmp.path().join("web"), None);
        assert_eq!(dir.current(), None);
        let t0 = UNIX_EPOCH + Duration::from_secs(2_000_000_000);
        for (i, at) in [t0, t0, t0 + Duration::from_secs(5)]
            .into_iter()
            .enumerate()
        {
            let content = format!("cert {i}");
            dir.publish(
                &[
                    Entry {
                        name: "tls.crt",
                        bytes: content.as_bytes(),
                        mode: 0o644,
                    },
                    Entry {
                        name: "tls.key",
                        bytes: b"key",
                        mode: 0o640,
                    },
                ],
                at,
            )
            .unwrap();
            assert_eq!(
                fs::read_to_string(dir.path().join("tls.crt")).unwrap(),
                content
            );
        }
        let names: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.starts_with("..") && n != DATA_LINK)
            .collect();
        assert_eq!(names, vec![dir.current().unwrap()], "one generation left");
        let (bytes, at) = dir.read("tls.crt", 100).unwrap();
        assert_eq!(
            (bytes, at),
            (b"cert 2".to_vec(), t0 + Duration::from_secs(5))
        );
        assert_eq!(
            fs::read_link(dir.path().join("tls.key")).unwrap(),
            Path::new("..data/tls.key")
        );
        let key = fs::metadata(dir.path().join("tls.key")).unwrap();
        assert_eq!(key.mode() & 0o777, 0o640);
        // The same instant twice got two distinct generations.
        assert!(dir.read("tls.key", 2).is_err(), "bounded read");
    }

    #[test]
    fn a_planted_data_link_is_not_followed() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tmp.path().join("..2030_01_01_00_00_00.000");
        fs::create_dir(&outside).unwrap();
        let dir = AtomicDir::new(tmp.path().join("web"), None);
        fs::create_dir(dir.path()).unwrap();
        std::os::unix::fs::symlink("../..2030_01_01_00_00_00.000", dir.path().join(DATA_LINK))
            .unwrap();
        assert_eq!(dir.current(), None);
        // A file in the way of the directory is an error, not a panic.
        let blocked = AtomicDir::new(tmp.path().join("file"), None);
        fs::write(blocked.path(), "x").unwrap();
        let e = blocked.publish(&[], SystemTime::now()).unwrap_err();
        assert!(e.to_string().contains("not a directory"), "{e}");
    }
}
