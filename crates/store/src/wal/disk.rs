//! The file layer under the WAL: every call that changes a WAL file or the
//! WAL directory — create, write, sync, cut short, rename, delete, sync the
//! directory — goes through [`Disk`] and the [`SegmentFile`] it opens.
//!
//! It exists so that a test can slide a disk that loses power under the real
//! writer (`super::power_cut`): `kill -9` keeps the page cache, so only a
//! disk that forgets unsynced bytes can show an acknowledgement given before
//! its sync. In a build without tests each enum has the single variant
//! `Std`, which is plain `std::fs`: a one-variant enum is its payload (no
//! tag; a const assertion below checks the size) and every `match` compiles
//! away, so the write path pays nothing — no allocation, no dynamic dispatch.
//!
//! Reads (listing the directory, replay reading a segment) stay on
//! `std::fs`: they see what this process wrote, which the simulated disk
//! writes through to the real files. Creating the WAL directory itself also
//! stays here on `std::fs` (see [`super::Wal::open`]); this module decides
//! nothing, it only carries the calls.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

#[cfg(test)]
use std::sync::Arc;

#[cfg(test)]
use super::power_cut::{PowerCutDisk, PowerCutFile};

/// The file system the WAL changes its files through.
#[derive(Debug, Clone, Default)]
pub(crate) enum Disk {
    /// The real file system.
    #[default]
    Std,
    /// A simulated disk that keeps only synced bytes over a power cut.
    #[cfg(test)]
    PowerCut(Arc<PowerCutDisk>),
}

/// A WAL segment file opened through a [`Disk`], always for appending.
#[derive(Debug)]
pub(crate) enum SegmentFile {
    /// A real file.
    Std(File),
    /// A file on the simulated disk.
    #[cfg(test)]
    PowerCut(PowerCutFile),
}

// The zero-cost claim of the module doc, checked where it matters: outside
// tests a segment file is exactly a `File`.
#[cfg(not(test))]
const _: () = assert!(std::mem::size_of::<SegmentFile>() == std::mem::size_of::<File>());

impl Disk {
    /// Creates the file at `path`, failing if it exists, open for appending.
    /// Its directory entry is durable only after [`Disk::sync_dir`].
    pub(crate) fn create_new(&self, path: &Path) -> io::Result<SegmentFile> {
        match self {
            Disk::Std => OpenOptions::new()
                .append(true)
                .create_new(true)
                .open(path)
                .map(SegmentFile::Std),
            #[cfg(test)]
            Disk::PowerCut(disk) => disk.create_new(path).map(SegmentFile::PowerCut),
        }
    }

    /// Opens the existing file at `path` for appending at its end.
    pub(crate) fn open_append(&self, path: &Path) -> io::Result<SegmentFile> {
        match self {
            Disk::Std => OpenOptions::new()
                .append(true)
                .open(path)
                .map(SegmentFile::Std),
            #[cfg(test)]
            Disk::PowerCut(disk) => disk.open_append(path).map(SegmentFile::PowerCut),
        }
    }

    /// Deletes the file at `path`; durable only after [`Disk::sync_dir`].
    pub(crate) fn remove_file(&self, path: &Path) -> io::Result<()> {
        match self {
            Disk::Std => std::fs::remove_file(path),
            #[cfg(test)]
            Disk::PowerCut(disk) => disk.remove_file(path),
        }
    }

    /// Renames `from` to `to` in the same directory; durable only after
    /// [`Disk::sync_dir`].
    pub(crate) fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        match self {
            Disk::Std => std::fs::rename(from, to),
            #[cfg(test)]
            Disk::PowerCut(disk) => disk.rename(from, to),
        }
    }

    /// Makes creations, renames and deletions in `dir` durable.
    pub(crate) fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        match self {
            Disk::Std => sync_std_dir(dir),
            #[cfg(test)]
            Disk::PowerCut(disk) => disk.sync_dir(dir),
        }
    }
}

/// `fsync` on a real directory.
fn sync_std_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)?.sync_all()
    }
    // Elsewhere directory entries cannot be synced through std; creation is
    // then only as durable as the platform makes it.
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

impl SegmentFile {
    /// Appends all of `bytes`; not durable until a sync.
    pub(crate) fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            SegmentFile::Std(file) => file.write_all(bytes),
            #[cfg(test)]
            SegmentFile::PowerCut(file) => file.write_all(bytes),
        }
    }

    /// Makes the bytes written so far durable (`fdatasync`): the group commit.
    pub(crate) fn sync_data(&self) -> io::Result<()> {
        match self {
            SegmentFile::Std(file) => file.sync_data(),
            #[cfg(test)]
            SegmentFile::PowerCut(file) => file.sync(),
        }
    }

    /// Makes the bytes and the metadata durable (`fsync`), but not the
    /// file's name: that takes [`Disk::sync_dir`].
    pub(crate) fn sync_all(&self) -> io::Result<()> {
        match self {
            SegmentFile::Std(file) => file.sync_all(),
            #[cfg(test)]
            SegmentFile::PowerCut(file) => file.sync(),
        }
    }

    /// Cuts the file to `len` bytes; not durable until a sync.
    pub(crate) fn set_len(&self, len: u64) -> io::Result<()> {
        match self {
            SegmentFile::Std(file) => file.set_len(len),
            #[cfg(test)]
            SegmentFile::PowerCut(file) => file.set_len(len),
        }
    }
}
