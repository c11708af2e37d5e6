//! Opening and reading files that another container can write (the pid file, the token file,
//! the JWT file) so that nothing planted there can stall or bloat vault-login.
//!
//! Every open is `O_NONBLOCK` (a FIFO with no writer would otherwise block the open, and with
//! it the thread that drives renewals and the health server), then `fstat`: only a regular file
//! is read, never a FIFO, socket or device (`/dev/zero` would never end). Reads stop one byte
//! past a bound, so a huge file costs at most that bound in memory. Symlinks are followed only
//! where the file's contract needs it: the kubelet publishes projected tokens as
//! `token -> ..data/token`.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use rustix::fs::{FileType, Mode, OFlags};
use rustix::io::Errno;

/// Whether the last component of a path may be a symlink.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Links {
    /// Follow symlinks (the JWT file: the kubelet's `..data` links).
    Follow,
    /// Refuse a symlink at the path itself (`O_NOFOLLOW`).
    Refuse,
}

/// Why a file that others can write was not read.
#[derive(Debug, thiserror::Error)]
pub enum UnsafeFile {
    /// The path does not exist, cannot be opened, or reading failed.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The path is a symlink, and this file's contract does not allow one.
    #[error("it is a symbolic link, which vault-login does not follow here; write a regular file at this path")]
    Symlink,
    /// The path is something other than a regular file.
    #[error("it is {0}, not a regular file; write a regular file at this path")]
    NotRegular(&'static str),
    /// The file holds more than the bound.
    #[error("it is larger than {0} bytes")]
    TooLarge(u64),
}

impl UnsafeFile {
    /// Whether the path does not exist (a missing file is normal for some callers).
    pub fn is_not_found(&self) -> bool {
        matches!(self, UnsafeFile::Io(e) if e.kind() == io::ErrorKind::NotFound)
    }
}

/// What a non-regular file is, for messages.
fn kind_of(t: FileType) -> &'static str {
    match t {
        FileType::Directory => "a directory",
        FileType::Fifo => "a FIFO (named pipe)",
        FileType::Socket => "a socket",
        FileType::CharacterDevice => "a character device",
        FileType::BlockDevice => "a block device",
        FileType::Symlink => "a symbolic link",
        _ => "not a regular file",
    }
}

/// Opens `path` read-only without blocking and returns it only if it is a regular file.
pub fn open_regular_nonblocking(path: &Path, links: Links) -> Result<File, UnsafeFile> {
    let mut flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOCTTY;
    if links == Links::Refuse {
        flags |= OFlags::NOFOLLOW;
    }
    let fd = match rustix::fs::open(path, flags, Mode::empty()) {
        Ok(fd) => fd,
        // O_NOFOLLOW on a symlink fails with ELOOP.
        Err(Errno::LOOP) if links == Links::Refuse => return Err(UnsafeFile::Symlink),
        Err(e) => return Err(UnsafeFile::Io(e.into())),
    };
    let stat = rustix::fs::fstat(&fd).map_err(io::Error::from)?;
    let file_type = FileType::from_raw_mode(stat.st_mode);
    if file_type != FileType::RegularFile {
        return Err(UnsafeFile::NotRegular(kind_of(file_type)));
    }
    Ok(File::from(fd))
}

/// Reads all of `file` if it holds at most `max` bytes; never reads more than `max + 1`.
pub fn read_bounded(file: File, max: u64) -> Result<Vec<u8>, UnsafeFile> {
    let mut buf = Vec::new();
    file.take(max.saturating_add(1)).read_to_end(&mut buf)?;
    if buf.len() as u64 > max {
        return Err(UnsafeFile::TooLarge(max));
    }
    Ok(buf)
}

/// Opens (see [`open_regular_nonblocking`]) and reads (see [`read_bounded`]) in one step.
pub fn read_regular(path: &Path, links: Links, max: u64) -> Result<Vec<u8>, UnsafeFile> {
    read_bounded(open_regular_nonblocking(path, links)?, max)
}

/// Opens a directory without blocking (for `fsync` after a rename); refuses anything else.
pub fn open_directory(path: &Path) -> io::Result<File> {
    let flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::DIRECTORY;
    Ok(File::from(rustix::fs::open(path, flags, Mode::empty())?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn mkfifo(path: &Path) {
        rustix::fs::mknodat(
            rustix::fs::CWD,
            path,
            FileType::Fifo,
            Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
    }

    #[test]
    fn regular_files_are_read_up_to_the_bound() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"12345").unwrap();
        assert_eq!(read_regular(&path, Links::Refuse, 5).unwrap(), b"12345");
        assert!(matches!(
            read_regular(&path, Links::Refuse, 4),
            Err(UnsafeFile::TooLarge(4))
        ));
        let e = read_regular(&dir.path().join("none"), Links::Refuse, 4).unwrap_err();
        assert!(e.is_not_found(), "{e}");
    }

    #[test]
    fn a_fifo_without_a_writer_is_refused_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fifo");
        mkfifo(&path);
        for links in [Links::Refuse, Links::Follow] {
            match read_regular(&path, links, 64) {
                Err(UnsafeFile::NotRegular(kind)) => assert!(kind.contains("FIFO"), "{kind}"),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn devices_directories_and_links_to_them_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let zero = dir.path().join("zero");
        symlink("/dev/zero", &zero).unwrap();
        assert!(matches!(
            read_regular(&zero, Links::Refuse, 64),
            Err(UnsafeFile::Symlink)
        ));
        match read_regular(&zero, Links::Follow, 64) {
            Err(UnsafeFile::NotRegular(kind)) => assert_eq!(kind, "a character device"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            read_regular(dir.path(), Links::Follow, 64),
            Err(UnsafeFile::NotRegular("a directory"))
        ));
        let e = UnsafeFile::NotRegular("a FIFO (named pipe)").to_string();
        assert!(e.contains("not a regular file"), "{e}");
    }

    #[test]
    fn followed_links_reach_regular_files() {
        let dir = tempfile::tempdir().unwrap();
        // As the kubelet lays out a projected volume: token -> ..data/token, ..data -> ..2024_x.
        std::fs::create_dir(dir.path().join("..2024_x")).unwrap();
        std::fs::write(dir.path().join("..2024_x/token"), b"jwt").unwrap();
        symlink("..2024_x", dir.path().join("..data")).unwrap();
        symlink("..data/token", dir.path().join("token")).unwrap();
        let token = dir.path().join("token");
        assert_eq!(read_regular(&token, Links::Follow, 64).unwrap(), b"jwt");
        assert!(matches!(
            read_regular(&token, Links::Refuse, 64),
            Err(UnsafeFile::Symlink)
        ));
    }

    #[test]
    fn directories_open_and_fifos_do_not() {
        let dir = tempfile::tempdir().unwrap();
        open_directory(dir.path()).unwrap().sync_all().unwrap();
        let fifo = dir.path().join("fifo");
        mkfifo(&fifo);
        assert!(open_directory(&fifo).is_err());
    }
}
