//! The data directory's exclusive lock: one store process per directory.
//!
//! Opening a store truncates torn WAL tails and deletes half-written block
//! directories, which is right after a crash and ruinous under a running
//! server. So the lock is taken before anything in the directory is
//! touched, and held for as long as the store is open. It is an advisory
//! `flock` on `<dir>/LOCK` (`File::try_lock`): the kernel drops it when the
//! process dies, so a `kill -9` never leaves a stale lock behind.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};

use crate::store::StoreError;

/// Name of the lock file inside the data directory.
pub const LOCK_FILE: &str = "LOCK";

/// Holds the data directory's lock until dropped.
#[derive(Debug)]
pub(crate) struct DirLock {
    /// Kept open: closing the file releases the lock.
    _file: File,
}

impl DirLock {
    /// Creates `dir` if needed and locks it, or fails with
    /// [`StoreError::DirectoryInUse`] when another store holds it (in this
    /// process or another).
    pub(crate) fn acquire(dir: &Path) -> Result<DirLock, StoreError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::io("create data directory", dir, e))?;
        let path = dir.join(LOCK_FILE);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| StoreError::io("open lock file", &path, e))?;
        match file.try_lock() {
            Ok(()) => Ok(DirLock { _file: file }),
            Err(TryLockError::WouldBlock) => Err(StoreError::DirectoryInUse { dir: dir_name(dir) }),
            Err(TryLockError::Error(e)) => Err(StoreError::io("lock", &path, e)),
        }
    }
}

fn dir_name(dir: &Path) -> PathBuf {
    std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_same_directory_is_refused_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let first = DirLock::acquire(dir.path()).unwrap();
        let err = DirLock::acquire(dir.path()).unwrap_err();
        assert!(matches!(err, StoreError::DirectoryInUse { .. }), "{err}");
        assert!(err.to_string().contains("already in use"), "{err}");
        drop(first);
        DirLock::acquire(dir.path()).unwrap();
    }
}
