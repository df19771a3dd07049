//! The catalog: which blocks exist under `<dir>/blocks/`, opened once and
//! shared by queries, the cutter, compaction and retention.
//!
//! Opening the catalog is also where crashes are cleaned up: half-written
//! blocks (`.tmp-*` directories) are removed; the blocks of a compaction
//! that did not write all its outputs (some of its `siblings` missing
//! while inputs remain) are deleted, keeping the inputs; and the inputs
//! (`replaces`) of a compaction whose outputs all exist are deleted. A
//! block that cannot be opened is set aside as `<id>.corrupt`, never fatal. This module does not decide
//! what to cut, merge or delete; it only keeps the list and the directories.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use chaintrace_model::UnixNanos;

use crate::block::{Block, BlockMeta};
use crate::store::StoreError;
use crate::wal::SegmentSeq;

/// The open blocks of one store.
pub(crate) struct Catalog {
    dir: PathBuf,
    blocks: RwLock<Vec<Arc<Block>>>,
    /// Makes block ids unique within one process even within one nanosecond.
    next_id: AtomicU64,
}

impl Catalog {
    /// Opens every block under `dir` (created if missing), cleaning up what
    /// a crash left behind.
    pub(crate) fn open(dir: &Path) -> Result<Catalog, StoreError> {
        fs::create_dir_all(dir).map_err(|e| StoreError::io("create blocks directory", dir, e))?;
        let entries =
            fs::read_dir(dir).map_err(|e| StoreError::io("list blocks directory", dir, e))?;
        let mut blocks = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| StoreError::io("list blocks directory", dir, e))?;
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().to_string();
            if !path.is_dir() || name.ends_with(".corrupt") {
                continue;
            }
            if name.starts_with(".tmp-") {
                tracing::warn!(path = %path.display(), "removing a block that was being written when the process stopped");
                remove_dir(&path)?;
                continue;
            }
            match Block::open(&path) {
                Ok(block) => blocks.push(Arc::new(block)),
                Err(e) => {
                    let aside = path.with_extension("corrupt");
                    tracing::error!(path = %path.display(), error = %e, moved_to = %aside.display(), "cannot open block; setting it aside");
                    fs::rename(&path, &aside)
                        .map_err(|e| StoreError::io("set aside corrupt block", &path, e))?;
                }
            }
        }
        let present: HashSet<String> = blocks.iter().map(|b| b.meta().id.clone()).collect();
        let mut kept = Vec::with_capacity(blocks.len());
        let mut partial = Vec::new();
        for block in blocks {
            if unfinished_compaction(block.meta(), &present) {
                partial.push(block);
            } else {
                kept.push(block);
            }
        }
        for block in partial {
            tracing::warn!(block = %block.meta().id, "removing a block of a compaction that did not finish; its inputs stay");
            remove_dir(block.dir())?;
        }
        // A finished compaction supersedes its inputs; a crash may have left them.
        let superseded: HashSet<String> = kept
            .iter()
            .flat_map(|b| b.meta().replaces.iter().cloned())
            .collect();
        let mut blocks = std::mem::take(&mut kept);
        for block in blocks.drain(..) {
            if superseded.contains(&block.meta().id) {
                tracing::info!(block = %block.meta().id, "removing a block already merged by compaction");
                remove_dir(block.dir())?;
            } else {
                kept.push(block);
            }
        }
        kept.sort_by_key(|b| (b.meta().min_start, b.meta().id.clone()));
        Ok(Catalog {
            dir: dir.to_path_buf(),
            blocks: RwLock::new(kept),
            next_id: AtomicU64::new(0),
        })
    }

    /// The blocks directory.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// A new, unique block id: creation time, then a counter.
    pub(crate) fn new_block_id(&self) -> String {
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        format!("{:020}-{n:04}", UnixNanos::now().0)
    }

    /// A snapshot of the open blocks, oldest data first.
    pub(crate) fn blocks(&self) -> Vec<Arc<Block>> {
        self.blocks
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The highest WAL segment number any block holds the spans of (0 if none).
    pub(crate) fn covered_through(&self) -> SegmentSeq {
        self.blocks()
            .iter()
            .filter_map(|b| b.meta().wal_segments.map(|(_, through)| through))
            .max()
            .unwrap_or(0)
    }

    /// Adds `block` and drops the blocks it replaces from the list, then
    /// deletes their directories. Queries holding an older snapshot keep
    /// their `Arc`s; files already open stay readable on Unix.
    pub(crate) fn install(&self, block: Block) -> Result<(), StoreError> {
        self.install_all(vec![block])
    }

    /// Adds every block of `new` and drops all the blocks they replace, in
    /// one step under the lock (a reader sees either the inputs or all the
    /// outputs of a compaction, never a mix), then deletes the replaced
    /// directories. The blocks must all be on disk already: if the process
    /// stops before the deletes finish, [`Catalog::open`] finishes them.
    pub(crate) fn install_all(&self, new: Vec<Block>) -> Result<(), StoreError> {
        let replaced: HashSet<String> = new
            .iter()
            .flat_map(|b| b.meta().replaces.iter().cloned())
            .collect();
        let mut gone = Vec::new();
        {
            let mut blocks = self.blocks.write().unwrap_or_else(PoisonError::into_inner);
            blocks.retain(|b| {
                let drop = replaced.contains(&b.meta().id);
                if drop {
                    gone.push(Arc::clone(b));
                }
                !drop
            });
            blocks.extend(new.into_iter().map(Arc::new));
            blocks.sort_by_key(|b| (b.meta().min_start, b.meta().id.clone()));
        }
        for b in gone {
            remove_dir(b.dir())?;
        }
        Ok(())
    }

    /// Drops `ids` from the list and deletes their directories (retention).
    pub(crate) fn remove(&self, ids: &[String]) -> Result<(), StoreError> {
        let wanted: HashSet<&str> = ids.iter().map(String::as_str).collect();
        let mut gone = Vec::new();
        {
            let mut blocks = self.blocks.write().unwrap_or_else(PoisonError::into_inner);
            blocks.retain(|b| {
                let drop = wanted.contains(b.meta().id.as_str());
                if drop {
                    gone.push(Arc::clone(b));
                }
                !drop
            });
        }
        for b in gone {
            remove_dir(b.dir())?;
        }
        Ok(())
    }
}

/// Whether `meta` is an output of a compaction that stopped before writing
/// all its outputs: a sibling is missing while an input is still there.
/// (Once the inputs are gone the compaction had finished, and a missing
/// sibling was deleted later, by retention.)
fn unfinished_compaction(meta: &BlockMeta, present: &HashSet<String>) -> bool {
    meta.siblings.iter().any(|s| !present.contains(s))
        && meta.replaces.iter().any(|r| present.contains(r))
}

/// Bytes a block takes on disk (all its files).
pub(crate) fn disk_bytes(dir: &Path) -> u64 {
    fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

fn remove_dir(path: &Path) -> Result<(), StoreError> {
    match fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StoreError::io("delete block", path, e)),
    }
}
