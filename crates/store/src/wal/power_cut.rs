//! A disk that loses power, for tests only: it stands under the WAL as
//! [`Disk::PowerCut`](super::disk::Disk) and remembers, for every file it
//! touches, the bytes written and the bytes synced, and for every name
//! whether a directory sync has made it durable.
//!
//! Writes go through to the real files, so whatever reads them (replay,
//! listing) sees what the process wrote, as it would through the page cache.
//! [`PowerCutDisk::cut_after`] arms the cut: the operation with that number
//! and every later one fail and change nothing, as if the machine stopped
//! there. [`PowerCutDisk::power_on`] then rewrites the real files to what a
//! disk may hold when power comes back:
//! - a name is as of its directory's last sync: a file created since is
//!   gone, one deleted or renamed since is back under its old name;
//! - a file holds its synced bytes and, if it only grew since, as many of the
//!   unsynced bytes as the caller's random numbers say — none, all, or a torn
//!   part, possibly zeroes (a file system may record the new length before
//!   the data blocks).
//!
//! Files it never touched count as durable and are left alone; directories
//! themselves (creating the WAL directory) are not modelled. It must not be
//! clever about anything else: the tests rely on it forgetting exactly what
//! an honest disk may forget.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// The simulated disk. Every operation takes one lock, held across the real
/// file call, so a cut falls between two operations, never inside one.
#[derive(Debug, Default)]
pub(crate) struct PowerCutDisk {
    state: Mutex<State>,
}

/// A file opened on a [`PowerCutDisk`].
#[derive(Debug)]
pub(crate) struct PowerCutFile {
    disk: Arc<PowerCutDisk>,
    /// Index into [`State::files`].
    id: usize,
    file: File,
}

/// What [`PowerCutDisk::power_on`] did to the files it knew.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Aftermath {
    /// Names whose creation (or rename) no directory sync had made durable.
    pub(crate) names_lost: u64,
    /// Unsynced bytes the disk forgot.
    pub(crate) unsynced_lost: u64,
    /// Unsynced bytes that made it anyway (as written or as zeroes).
    pub(crate) unsynced_kept: u64,
}

#[derive(Debug, Default)]
struct State {
    /// Operations so far.
    ops: u64,
    /// The operation at which the power fails, if armed.
    cut_at: Option<u64>,
    /// The power has failed: every operation fails.
    cut: bool,
    /// Every file touched, by the order it was first touched.
    files: Vec<Contents>,
    /// Names as the running process sees them.
    names: BTreeMap<PathBuf, usize>,
    /// Names as a power cut would leave them: as of each directory's last sync.
    durable_names: BTreeMap<PathBuf, usize>,
}

/// One file's bytes.
#[derive(Debug, Default)]
struct Contents {
    /// As the process sees them (the page cache).
    written: Vec<u8>,
    /// As of the last `fsync`/`fdatasync`.
    synced: Vec<u8>,
}

impl State {
    /// Counts an operation; fails it if the power is (now) off.
    fn step(&mut self) -> io::Result<()> {
        self.ops += 1;
        if self.cut_at.is_some_and(|at| self.ops >= at) {
            self.cut = true;
        }
        if self.cut {
            return Err(io::Error::other("simulated power cut"));
        }
        Ok(())
    }

    /// The file at `path`, taken as durable as it stands if this disk has
    /// not touched it before (it was there before the disk was).
    fn adopt(&mut self, path: &Path) -> io::Result<usize> {
        if let Some(&id) = self.names.get(path) {
            return Ok(id);
        }
        let bytes = fs::read(path)?;
        let id = self.files.len();
        self.files.push(Contents {
            written: bytes.clone(),
            synced: bytes,
        });
        self.names.insert(path.to_path_buf(), id);
        self.durable_names.insert(path.to_path_buf(), id);
        Ok(id)
    }
}

impl PowerCutDisk {
    /// A disk with the power on and no cut armed.
    pub(crate) fn new() -> Arc<PowerCutDisk> {
        Arc::new(PowerCutDisk::default())
    }

    /// Arms the cut: the `n`th operation from now (1: the next) fails, and
    /// so does everything after it.
    pub(crate) fn cut_after(&self, n: u64) {
        let mut state = self.state();
        state.cut_at = Some(state.ops + n.max(1));
    }

    /// Whether the power has failed.
    pub(crate) fn is_cut(&self) -> bool {
        self.state().cut
    }

    /// Cuts the power (if it is still on) and rewrites the real files this
    /// disk knows to what survives, as the module doc says; `random` picks
    /// how much of each file's unsynced tail survives. The disk stays off:
    /// use a new one for the next run.
    pub(crate) fn power_on(&self, random: &mut dyn FnMut() -> u64) -> io::Result<Aftermath> {
        let mut state = self.state();
        state.cut = true;
        let mut aftermath = Aftermath::default();
        let known: BTreeSet<&PathBuf> = state
            .names
            .keys()
            .chain(state.durable_names.keys())
            .collect();
        for path in &known {
            match fs::remove_file(path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
            if !state.durable_names.contains_key(*path) {
                aftermath.names_lost += 1;
            }
        }
        for (path, &id) in &state.durable_names {
            fs::write(path, survivor(&state.files[id], random, &mut aftermath))?;
        }
        Ok(aftermath)
    }

    pub(super) fn create_new(self: &Arc<Self>, path: &Path) -> io::Result<PowerCutFile> {
        let mut state = self.state();
        state.step()?;
        let file = OpenOptions::new()
            .append(true)
            .create_new(true)
            .open(path)?;
        let id = state.files.len();
        state.files.push(Contents::default());
        state.names.insert(path.to_path_buf(), id);
        Ok(PowerCutFile {
            disk: Arc::clone(self),
            id,
            file,
        })
    }

    pub(super) fn open_append(self: &Arc<Self>, path: &Path) -> io::Result<PowerCutFile> {
        let mut state = self.state();
        state.step()?;
        let file = OpenOptions::new().append(true).open(path)?;
        let id = state.adopt(path)?;
        Ok(PowerCutFile {
            disk: Arc::clone(self),
            id,
            file,
        })
    }

    pub(super) fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut state = self.state();
        state.step()?;
        state.adopt(path)?;
        fs::remove_file(path)?;
        state.names.remove(path);
        Ok(())
    }

    pub(super) fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut state = self.state();
        state.step()?;
        let id = state.adopt(from)?;
        fs::rename(from, to)?;
        state.names.remove(from);
        state.names.insert(to.to_path_buf(), id);
        Ok(())
    }

    pub(super) fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut state = self.state();
        state.step()?;
        let in_dir = |path: &Path| path.parent() == Some(dir);
        state.durable_names.retain(|path, _| !in_dir(path));
        let now: Vec<(PathBuf, usize)> = state
            .names
            .iter()
            .filter(|(path, _)| in_dir(path))
            .map(|(path, &id)| (path.clone(), id))
            .collect();
        state.durable_names.extend(now);
        Ok(())
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A test that panicked mid-operation has failed already.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// What of `contents` is on the platter after a power cut.
fn survivor(
    contents: &Contents,
    random: &mut dyn FnMut() -> u64,
    aftermath: &mut Aftermath,
) -> Vec<u8> {
    let Contents { written, synced } = contents;
    let mut kept = synced.clone();
    if written.len() > synced.len() && written.starts_with(synced) {
        let unsynced = &written[synced.len()..];
        let len = unsynced.len() as u64;
        let (n, zeroes) = match random() % 4 {
            0 => (0, false),
            1 => (len, false),
            2 => (random() % len, false),
            _ => (random() % len + 1, true),
        };
        if zeroes {
            kept.resize(kept.len() + n as usize, 0);
        } else {
            kept.extend_from_slice(&unsynced[..n as usize]);
        }
        aftermath.unsynced_kept += n;
        aftermath.unsynced_lost += len - n;
    } else if written != synced {
        // Cut short (or rewritten) since the last sync: the old bytes stand.
        aftermath.unsynced_lost += written.len().abs_diff(synced.len()) as u64;
    }
    kept
}

impl PowerCutFile {
    pub(super) fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        let mut state = self.disk.state();
        state.step()?;
        self.file.write_all(bytes)?;
        state.files[self.id].written.extend_from_slice(bytes);
        Ok(())
    }

    /// `fsync` and `fdatasync` alike: the bytes written so far are durable.
    pub(super) fn sync(&self) -> io::Result<()> {
        let mut state = self.disk.state();
        state.step()?;
        let contents = &mut state.files[self.id];
        contents.synced.clone_from(&contents.written);
        Ok(())
    }

    pub(super) fn set_len(&self, len: u64) -> io::Result<()> {
        let mut state = self.disk.state();
        state.step()?;
        self.file.set_len(len)?;
        let len = usize::try_from(len).map_err(io::Error::other)?;
        state.files[self.id].written.resize(len, 0);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keep_nothing() -> impl FnMut() -> u64 {
        || 0
    }

    #[test]
    fn only_synced_bytes_and_synced_names_survive() {
        let dir = tempfile::tempdir().unwrap();
        let disk = PowerCutDisk::new();
        let synced = dir.path().join("a");
        let unsynced_name = dir.path().join("b");
        let mut a = disk.create_new(&synced).unwrap();
        a.write_all(b"kept").unwrap();
        a.sync().unwrap();
        disk.sync_dir(dir.path()).unwrap();
        a.write_all(b" lost").unwrap();
        let mut b = disk.create_new(&unsynced_name).unwrap();
        b.write_all(b"synced data, unsynced name").unwrap();
        b.sync().unwrap();
        assert_eq!(fs::read(&synced).unwrap(), b"kept lost");

        let aftermath = disk.power_on(&mut keep_nothing()).unwrap();
        assert_eq!(fs::read(&synced).unwrap(), b"kept");
        assert!(!unsynced_name.exists());
        assert_eq!(
            aftermath,
            Aftermath {
                names_lost: 1,
                unsynced_lost: 5,
                unsynced_kept: 0
            }
        );
    }

    #[test]
    fn unsynced_deletion_and_rename_are_undone() {
        let dir = tempfile::tempdir().unwrap();
        let old = dir.path().join("old");
        let gone = dir.path().join("gone");
        fs::write(&old, b"before").unwrap();
        fs::write(&gone, b"still here").unwrap();
        let disk = PowerCutDisk::new();
        disk.rename(&old, &dir.path().join("new")).unwrap();
        disk.remove_file(&gone).unwrap();
        disk.power_on(&mut keep_nothing()).unwrap();
        assert_eq!(fs::read(&old).unwrap(), b"before");
        assert_eq!(fs::read(&gone).unwrap(), b"still here");
        assert!(!dir.path().join("new").exists());
    }

    #[test]
    fn the_armed_operation_and_all_later_ones_fail_without_effect() {
        let dir = tempfile::tempdir().unwrap();
        let disk = PowerCutDisk::new();
        let path = dir.path().join("f");
        let mut file = disk.create_new(&path).unwrap();
        disk.cut_after(2);
        file.write_all(b"one").unwrap();
        assert!(!disk.is_cut());
        assert!(file.write_all(b"two").is_err());
        assert!(disk.is_cut());
        assert!(file.sync().is_err());
        assert_eq!(fs::read(&path).unwrap(), b"one");
    }

    #[test]
    fn a_torn_tail_is_a_prefix_of_the_unsynced_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        fs::write(&path, b"durable|").unwrap();
        let disk = PowerCutDisk::new();
        let mut file = disk.open_append(&path).unwrap();
        file.write_all(b"0123456789").unwrap();
        // Mode 2 (a written prefix), then its length: 4.
        let mut picks = [2, 4].into_iter();
        let aftermath = disk.power_on(&mut || picks.next().unwrap_or(0)).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"durable|0123");
        assert_eq!(aftermath.unsynced_kept, 4);
        assert_eq!(aftermath.unsynced_lost, 6);
    }
}
