//! Advisory file locks (flock). The same kind of lock the Go plugins take, so
//! our host-local and the reference one interlock on the same lock file.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

/// An exclusive flock held until drop.
#[derive(Debug)]
pub struct FileLock {
    file: File,
}

impl FileLock {
    /// Create (0600) or open `path` and wait for the exclusive lock.
    pub fn exclusive(path: impl AsRef<Path>) -> io::Result<FileLock> {
        let file =
            OpenOptions::new().read(true).write(true).create(true).truncate(false).mode(0o600).open(path)?;
        file.lock()?;
        Ok(FileLock { file })
    }

    /// Take the lock only if nobody holds it.
    pub fn try_exclusive(path: impl AsRef<Path>) -> io::Result<Option<FileLock>> {
        let file =
            OpenOptions::new().read(true).write(true).create(true).truncate(false).mode(0o600).open(path)?;
        match file.try_lock() {
            Ok(()) => Ok(Some(FileLock { file })),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => Err(e),
        }
    }

    pub fn file(&self) -> &File {
        &self.file
    }
}

/// Where our runtime locks live (created 0700 on first use).
pub const RUNTIME_LOCK_DIR: &str = "/run/cni-rs/locks";

/// An exclusive lock named `name` under [`RUNTIME_LOCK_DIR`], for state that
/// parallel plugin runs share (bridge creation, nf_tables rule setup).
pub fn runtime_lock(name: &str) -> crate::Result<FileLock> {
    if !crate::spec::valid_name(name) {
        return Err(crate::CniError::internal(format!("invalid lock name {name:?}")));
    }
    let dir = Path::new(RUNTIME_LOCK_DIR);
    if !dir.is_dir() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| crate::CniError::io(format!("creating {RUNTIME_LOCK_DIR}: {e}")))?;
    }
    let path = dir.join(format!("{name}.lock"));
    FileLock::exclusive(&path).map_err(|e| crate::CniError::io(format!("locking {}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_excludes_a_second_holder_until_dropped() {
        let dir = std::env::temp_dir().join(format!("cni-lock-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("lock");
        let held = FileLock::exclusive(&p).unwrap();
        assert!(FileLock::try_exclusive(&p).unwrap().is_none());
        drop(held);
        assert!(FileLock::try_exclusive(&p).unwrap().is_some());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
