//! File-system watching: wakes the loop when the JWT's directory or the token's directory changes.
//!
//! Projected service-account tokens are replaced by swapping a `..data` symlink, so we watch
//! directories, never a file's inode. Watching is an optimisation, not a requirement: when the
//! inotify instance cannot be created (`fs.inotify.max_user_instances` is shared by every
//! container of a UID on a node) we log one warning and the loop falls back to its timers.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::Notify;
use tracing::{debug, warn};

/// Watches up to two directories and signals a [`Notify`] for each.
pub struct Watches {
    watcher: Option<RecommendedWatcher>,
    jwt_target: PathBuf,
    jwt_watched: Option<PathBuf>,
    token_watched: Option<PathBuf>,
    /// Signalled when something changes in (or towards) the JWT file's directory.
    pub jwt_changed: Arc<Notify>,
    /// Signalled when something changes in the token file's directory.
    pub token_changed: Arc<Notify>,
}

/// The deepest existing directory on the way to `dir` (so a not-yet-mounted path can be awaited).
fn nearest_existing(dir: &Path) -> Option<PathBuf> {
    dir.ancestors()
        .find(|p| !p.as_os_str().is_empty() && p.is_dir())
        .map(Path::to_path_buf)
        .or_else(|| Some(PathBuf::from(".")))
}

impl Watches {
    /// Starts watching the JWT file's directory (if `jwt_file` is given) and `token_dir`.
    pub fn new(jwt_file: Option<&Path>, token_dir: Option<&Path>) -> Watches {
        let jwt_changed = Arc::new(Notify::new());
        let token_changed = Arc::new(Notify::new());
        let jwt_target = jwt_file
            .and_then(Path::parent)
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let mut w = Watches {
            watcher: None,
            jwt_target,
            jwt_watched: None,
            token_watched: None,
            jwt_changed,
            token_changed,
        };
        let jwt_root = jwt_file.map(|_| w.jwt_target.clone());
        let token_root = token_dir.map(Path::to_path_buf);
        let (jn, tn) = (w.jwt_changed.clone(), w.token_changed.clone());
        let jwt_parent = jwt_root.clone();
        let token_parent = token_root.clone();
        let handler = move |res: notify::Result<notify::Event>| {
            let Ok(event) = res else { return };
            // Reads (ours included: checking the token file opens it) are not changes; reacting
            // to them would make every check trigger the next one.
            if matches!(event.kind, notify::EventKind::Access(_)) {
                return;
            }
            for path in &event.paths {
                // Events name the entry that changed; wake whichever watch it falls under. A
                // JWT watch placed on an ancestor wakes on anything below it.
                if jwt_parent.as_ref().is_some_and(|p| {
                    path.starts_with(p) || p.starts_with(path.parent().unwrap_or(path))
                }) {
                    jn.notify_one();
                }
                if token_parent.as_ref().is_some_and(|p| path.starts_with(p)) {
                    tn.notify_one();
                }
            }
        };
        match notify::recommended_watcher(handler) {
            Ok(watcher) => w.watcher = Some(watcher),
            Err(e) => {
                warn!(error = %e, "cannot watch files (inotify limit fs.inotify.max_user_instances reached?); carrying on without watching: JWT changes are picked up at the next login and the token file is checked at each wake-up");
                return w;
            }
        }
        if let Some(dir) = token_root {
            w.token_watched = w.add(&dir).then_some(dir);
        }
        if jwt_file.is_some() {
            w.retarget_jwt();
        }
        w
    }

    /// A set of watches that watches nothing (tests, `--once` with the JWT present).
    pub fn none() -> Watches {
        Watches {
            watcher: None,
            jwt_target: PathBuf::new(),
            jwt_watched: None,
            token_watched: None,
            jwt_changed: Arc::new(Notify::new()),
            token_changed: Arc::new(Notify::new()),
        }
    }

    fn add(&mut self, dir: &Path) -> bool {
        let Some(watcher) = self.watcher.as_mut() else {
            return false;
        };
        match watcher.watch(dir, RecursiveMode::NonRecursive) {
            Ok(()) => {
                debug!(dir = %dir.display(), "watching");
                true
            }
            Err(e) => {
                warn!(dir = %dir.display(), error = %e, "cannot watch directory; relying on timers");
                false
            }
        }
    }

    /// Moves the JWT watch to the deepest existing directory towards the JWT file, so a
    /// directory that appears later is followed down. Cheap when nothing changed.
    pub fn retarget_jwt(&mut self) {
        if self.watcher.is_none() || self.jwt_target.as_os_str().is_empty() {
            return;
        }
        // A subdirectory created between finding the deepest directory and watching it sends
        // no event to the new watch (`mkdir -p a/b` racing us): look again after each move,
        // until the deepest existing directory is the one watched. Bounded by the path depth.
        for _ in 0..=self.jwt_target.components().count() {
            let Some(want) = nearest_existing(&self.jwt_target) else {
                return;
            };
            if self.jwt_watched.as_ref() == Some(&want) {
                return;
            }
            if let (Some(old), Some(watcher)) = (self.jwt_watched.take(), self.watcher.as_mut()) {
                if Some(&old) != self.token_watched.as_ref() {
                    let _ = watcher.unwatch(&old);
                }
            }
            if Some(&want) == self.token_watched.as_ref() || self.add(&want) {
                self.jwt_watched = Some(want);
            } else {
                return;
            }
        }
    }

    /// Whether the JWT directory is being watched (else the caller must poll with backoff).
    pub fn watching_jwt(&self) -> bool {
        self.jwt_watched.is_some()
    }

    /// Whether the token directory is being watched (else check the file at each wake-up).
    pub fn watching_token(&self) -> bool {
        self.token_watched.is_some()
    }
}

/// Waits for `n` to be notified (never, when there is nothing to wait on).
pub async fn notified(n: Option<&Notify>) {
    match n {
        Some(n) => n.notified().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn wakes_on_jwt_and_token_changes() {
        let dir = tempfile::tempdir().unwrap();
        let jwt_dir = dir.path().join("sa");
        let tok_dir = dir.path().join("out");
        std::fs::create_dir(&jwt_dir).unwrap();
        std::fs::create_dir(&tok_dir).unwrap();
        let w = Watches::new(Some(&jwt_dir.join("token")), Some(&tok_dir));
        assert!(w.watching_jwt() && w.watching_token());
        std::fs::write(jwt_dir.join("token"), "x").unwrap();
        tokio::time::timeout(Duration::from_secs(5), w.jwt_changed.notified())
            .await
            .expect("jwt change seen");
        std::fs::write(tok_dir.join("token"), "x").unwrap();
        tokio::time::timeout(Duration::from_secs(5), w.token_changed.notified())
            .await
            .expect("token change seen");
    }

    #[tokio::test]
    async fn follows_a_directory_that_appears_later() {
        let dir = tempfile::tempdir().unwrap();
        let jwt_dir = dir.path().join("later/sa");
        let mut w = Watches::new(Some(&jwt_dir.join("token")), None);
        assert_eq!(w.jwt_watched.as_deref(), Some(dir.path()));
        std::fs::create_dir_all(&jwt_dir).unwrap();
        tokio::time::timeout(Duration::from_secs(5), w.jwt_changed.notified())
            .await
            .expect("ancestor change seen");
        w.retarget_jwt();
        assert_eq!(w.jwt_watched.as_deref(), Some(jwt_dir.as_path()));
        std::fs::write(jwt_dir.join("token"), "x").unwrap();
        tokio::time::timeout(Duration::from_secs(5), w.jwt_changed.notified())
            .await
            .expect("file creation seen");
    }
}
