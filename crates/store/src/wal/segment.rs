//! Segment files on disk: their names, listing them in order, creating a new
//! one durably, and cutting one short.
//!
//! Segments are named by a sequence number, `00000000000000000001.wal`, so
//! that name order is write order. This module owns file-system calls on
//! whole segments, made through a [`Disk`] so that a power-cut test can sit
//! underneath; it neither parses records nor decides policy.

use std::fs;
use std::path::{Path, PathBuf};

use crate::store::StoreError;

use super::disk::{Disk, SegmentFile};
use super::record::{self, SegmentVersion};

/// File extension of WAL segments.
const EXTENSION: &str = "wal";

/// A segment's sequence number; later segments have larger numbers.
pub(crate) type SegmentSeq = u64;

/// The path of segment `seq` in `dir`.
pub(crate) fn segment_path(dir: &Path, seq: SegmentSeq) -> PathBuf {
    dir.join(format!("{seq:020}.{EXTENSION}"))
}

/// The segments in `dir`, oldest first. Files that are not named like a
/// segment are ignored (with a warning), never touched.
pub(crate) fn list_segments(dir: &Path) -> Result<Vec<(SegmentSeq, PathBuf)>, StoreError> {
    let entries = fs::read_dir(dir).map_err(|e| StoreError::io("list WAL directory", dir, e))?;
    let mut segments = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| StoreError::io("list WAL directory", dir, e))?;
        let path = entry.path();
        let seq = path
            .extension()
            .filter(|ext| *ext == EXTENSION)
            .and_then(|_| path.file_stem())
            .and_then(|stem| stem.to_str())
            .and_then(|stem| stem.parse::<SegmentSeq>().ok());
        match seq {
            Some(seq) => segments.push((seq, path)),
            None => {
                tracing::warn!(path = %path.display(), "ignoring a file in the WAL directory that is not a WAL segment")
            }
        }
    }
    segments.sort_unstable_by_key(|(seq, _)| *seq);
    Ok(segments)
}

/// Creates segment `seq` in `dir` with the header of the version this build
/// writes, durably: the file and the directory entry are both synced before
/// this returns (without the directory sync a power cut can drop the new
/// file, and the records acknowledged in it, whole). The file is opened for
/// appending.
pub(crate) fn create_segment(
    disk: &Disk,
    dir: &Path,
    seq: SegmentSeq,
    version: SegmentVersion,
) -> Result<(SegmentFile, PathBuf), StoreError> {
    let path = segment_path(dir, seq);
    let mut file = disk
        .create_new(&path)
        .map_err(|e| StoreError::io("create WAL segment", &path, e))?;
    let written = file
        .write_all(&record::header(version))
        .map_err(|e| StoreError::io("write WAL segment header", &path, e))
        .and_then(|()| {
            file.sync_all()
                .map_err(|e| StoreError::io("sync WAL segment", &path, e))
        });
    if let Err(e) = written {
        // A full disk must not leave a trail of empty segments behind.
        drop(file);
        let _ = disk.remove_file(&path);
        return Err(e);
    }
    sync_dir(disk, dir)?;
    Ok((file, path))
}

/// Opens an existing segment for appending at its end.
pub(crate) fn open_for_append(disk: &Disk, path: &Path) -> Result<SegmentFile, StoreError> {
    disk.open_append(path)
        .map_err(|e| StoreError::io("open WAL segment for appending", path, e))
}

/// Cuts the segment at `path` to `len` bytes and syncs it.
pub(crate) fn truncate(disk: &Disk, path: &Path, len: u64) -> Result<(), StoreError> {
    // Opened for appending, which `ftruncate` accepts like any writable file.
    let file = disk
        .open_append(path)
        .map_err(|e| StoreError::io("open WAL segment to truncate it", path, e))?;
    file.set_len(len)
        .map_err(|e| StoreError::io("truncate WAL segment", path, e))?;
    file.sync_all()
        .map_err(|e| StoreError::io("sync truncated WAL segment", path, e))
}

/// Moves a file that is not a readable segment out of the way (to
/// `<name>.corrupt`), keeping its bytes for a human to look at.
pub(crate) fn set_aside(disk: &Disk, dir: &Path, path: &Path) -> Result<PathBuf, StoreError> {
    let mut aside = path.as_os_str().to_owned();
    aside.push(".corrupt");
    let aside = PathBuf::from(aside);
    disk.rename(path, &aside)
        .map_err(|e| StoreError::io("set aside unreadable WAL segment", path, e))?;
    sync_dir(disk, dir)?;
    Ok(aside)
}

/// Makes creations, renames and deletions in `dir` durable.
pub(crate) fn sync_dir(disk: &Disk, dir: &Path) -> Result<(), StoreError> {
    disk.sync_dir(dir)
        .map_err(|e| StoreError::io("sync WAL directory", dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_listed_in_sequence_order() {
        let dir = tempfile::tempdir().unwrap();
        for seq in [10, 2, 1] {
            create_segment(&Disk::Std, dir.path(), seq, SegmentVersion::CURRENT).unwrap();
        }
        fs::write(dir.path().join("notes.txt"), b"hi").unwrap();
        fs::write(dir.path().join("x.wal"), b"hi").unwrap();
        let listed: Vec<_> = list_segments(dir.path())
            .unwrap()
            .into_iter()
            .map(|(seq, _)| seq)
            .collect();
        assert_eq!(listed, vec![1, 2, 10]);
        assert_eq!(
            segment_path(dir.path(), 1).file_name().unwrap(),
            "00000000000000000001.wal"
        );
        assert!(
            create_segment(&Disk::Std, dir.path(), 2, SegmentVersion::CURRENT).is_err(),
            "never overwrite a segment"
        );
    }

    #[test]
    fn new_segments_get_a_version_3_header() {
        let dir = tempfile::tempdir().unwrap();
        let (_, path) = create_segment(&Disk::Std, dir.path(), 1, SegmentVersion::CURRENT).unwrap();
        assert_eq!(fs::read(path).unwrap(), b"CTWAL\n\x03\x00");
    }
}
