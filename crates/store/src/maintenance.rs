//! Background upkeep of the embedded store, on two threads:
//! - the *cut* thread, woken when the head grows past its cut size or every
//!   `maintenance_interval`, writes frozen heads as blocks;
//! - the *compaction* thread rolls up the blocks that have no rollup yet
//!   ([`crate::rollups`]), then runs compaction ([`crate::compaction`]) then
//!   retention, one after the other (retention must not delete a block a
//!   merge is reading), at the lowest CPU priority, so that a long merge
//!   never delays a cut (which would push back on ingest) and only uses
//!   CPU that ingest leaves.
//!
//! Every step is ordered so that a crash at any point loses nothing
//! acknowledged and makes nothing visible twice:
//! - cut: write the block (atomically, tmp dir + rename), install it, then
//!   drop the frozen head and delete the WAL segments it covered;
//! - compaction: write every output durably, install them all at once,
//!   then delete the inputs (see [`crate::compaction`]);
//! - retention: only ever deletes whole blocks, never the WAL.

use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use chaintrace_model::UnixNanos;

use crate::block::{self, Block, BlockWriteOptions};
use crate::catalog::disk_bytes;
use crate::compaction;
use crate::embedded::{FrozenHead, Inner};
use crate::store::StoreError;

/// Least time between two attempts after a failed cut.
const RETRY_PAUSE: Duration = Duration::from_millis(500);

/// The cut thread's loop.
pub(crate) fn run_cuts(inner: &Arc<Inner>) {
    while inner.signal.wait(inner.config.maintenance_interval) {
        let cut_before = inner.blocks_cut.load(Ordering::Relaxed);
        if let Err(e) = cut(inner, false) {
            tracing::error!(error = %e, "cannot cut the head into a block; will retry");
            // Appends over budget wake this thread on every request: without a
            // pause, a full disk would turn into a tight loop of failing writes.
            std::thread::sleep(inner.config.maintenance_interval.min(RETRY_PAUSE));
        }
        if inner.blocks_cut.load(Ordering::Relaxed) != cut_before {
            // A new block may complete a compaction group.
            inner.compaction_signal.wake();
        }
    }
}

/// The compaction thread's loop: compaction, then retention.
pub(crate) fn run_compactions(inner: &Arc<Inner>) {
    lower_priority();
    let signal = &inner.compaction_signal;
    let mut backoff = Backoff::default();
    while signal.wait(inner.config.maintenance_interval) {
        // Blocks cut since the last pass get their rollups first: a
        // compaction rolls up its outputs itself, but the newest blocks
        // wait for it a while.
        if let Err(e) = inner.roll_up_missing(&|| signal.is_stopped()) {
            tracing::error!(error = %e, "cannot roll up a block; will retry");
        }
        // Retention runs either way: on a full disk it is what frees room.
        if backoff.ready(Instant::now()) {
            match compact(inner, &|| signal.is_stopped()) {
                Err(_) if signal.is_stopped() => {
                    tracing::info!("compaction stopped: the store is closing");
                    return;
                }
                Err(e) => {
                    let pause = backoff.failed(Instant::now());
                    tracing::error!(
                        error = %e,
                        retry_in_secs = pause.as_secs(),
                        "compaction failed; will retry"
                    );
                }
                Ok(_) => backoff.succeeded(),
            }
        }
        if let Err(e) = retention(inner) {
            tracing::error!(error = %e, "retention failed; will retry");
        }
    }
}

/// When a failed compaction may be tried again. A merge that fails (a full
/// disk, most often) has usually rewritten a lot before it failed; trying
/// again on every cut would spend that CPU again and again. Pauses double
/// from [`Backoff::FIRST`] up to [`Backoff::MAX`]; a success resets them.
#[derive(Debug, Default)]
struct Backoff {
    /// The pause after the last failure and when it ends; `None` after a
    /// success.
    waiting: Option<(Duration, Instant)>,
}

impl Backoff {
    const FIRST: Duration = Duration::from_secs(1);
    const MAX: Duration = Duration::from_secs(300);

    /// Whether an attempt may start at `now`.
    fn ready(&self, now: Instant) -> bool {
        self.waiting.is_none_or(|(_, until)| now >= until)
    }

    /// Notes a failure at `now`; returns the pause before the next attempt.
    fn failed(&mut self, now: Instant) -> Duration {
        let pause = match self.waiting {
            None => Self::FIRST,
            Some((last, _)) => (last * 2).min(Self::MAX),
        };
        self.waiting = Some((pause, now + pause));
        pause
    }

    fn succeeded(&mut self) {
        self.waiting = None;
    }
}

/// One compaction pass (see [`compaction::compact`]), never at the same
/// time as another pass or retention.
pub(crate) fn compact(inner: &Inner, stopped: &dyn Fn() -> bool) -> Result<u64, StoreError> {
    let _alone = inner
        .compaction_lock
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    compaction::compact(inner, stopped)
}

/// Gives the calling thread the lowest CPU priority, so that under full
/// ingest load compaction only takes CPU nobody else wants: the `SCHED_IDLE`
/// policy (it runs only when no other thread of the machine wants the core,
/// and yields to one at once when it wakes), and nice 19 for where that
/// policy is refused. Linux only (where a thread has its own policy and
/// nice value); elsewhere a no-op.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: plain syscalls on the calling thread; the parameter
        // struct lives across the call and nothing else is shared.
        let (niced, idle) = unsafe {
            let tid = libc::syscall(libc::SYS_gettid) as libc::pid_t;
            let niced = libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 19) == 0;
            let param = libc::sched_param { sched_priority: 0 };
            let idle = libc::sched_setscheduler(tid, libc::SCHED_IDLE, &param) == 0;
            (niced, idle)
        };
        if !(niced && idle) {
            tracing::warn!(
                error = %std::io::Error::last_os_error(),
                niced,
                idle,
                "cannot fully lower the compaction thread's priority"
            );
        }
    }
}

/// Seals the WAL and freezes the active head when it is big or old enough
/// (or always, with `force`), then writes every frozen head as a block.
pub(crate) fn cut(inner: &Inner, force: bool) -> Result<(), StoreError> {
    let due = {
        let heads = inner.heads();
        !heads.active.is_empty()
            && (force
                || heads.active.stats().bytes >= inner.config.block_max_bytes
                || heads
                    .active_since
                    .is_some_and(|t| t.elapsed() >= inner.config.block_max_age))
    };
    if due {
        freeze(inner)?;
    }
    write_frozen(inner)
}

/// Seals the open WAL segment and, in the same step on the WAL writer
/// thread, moves the active head to the frozen list.
fn freeze(inner: &Inner) -> Result<(), StoreError> {
    let heads = Arc::clone(&inner.heads);
    let sealed = inner.wal.seal(Box::new(move |through| {
        let mut heads = heads.write().unwrap_or_else(PoisonError::into_inner);
        if heads.active.is_empty() || through <= heads.sealed_through {
            return;
        }
        let from = heads.sealed_through + 1;
        heads.sealed_through = through;
        heads.active_since = None;
        let head = std::mem::take(&mut heads.active);
        heads.frozen.push(Arc::new(FrozenHead {
            from,
            through,
            head,
        }));
    }))?;
    sealed
        .blocking_recv()
        .map_err(|_| StoreError::Closed("the WAL writer stopped during a seal"))??;
    Ok(())
}

/// Writes the frozen heads as blocks, oldest first, stopping at the first
/// failure so that a block never covers WAL segments past a missing one.
fn write_frozen(inner: &Inner) -> Result<(), StoreError> {
    loop {
        let Some(frozen) = inner.heads().frozen.first().cloned() else {
            return Ok(());
        };
        let started = Instant::now();
        // With sampling on, the traces it drops are left out and the roots
        // of those it keeps say why.
        let plan = inner.sampler.as_ref().map(|sampler| {
            sampler
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .plan(frozen.head.traces(), UnixNanos::now())
        });
        let spans = match &plan {
            Some(plan) => plan.apply(frozen.head.all_spans()),
            None => frozen.head.all_spans(),
        };
        let span_count = spans.len();
        let written = if spans.is_empty() {
            // Every trace dropped: nothing to write, the WAL still goes.
            None
        } else {
            let id = inner.catalog.new_block_id();
            let options = BlockWriteOptions {
                wal_segments: Some((frozen.from, frozen.through)),
                ..BlockWriteOptions::default()
            };
            let meta = block::write_block_refs(inner.catalog.dir(), &id, spans, &options)?;
            let block = Block::open(&inner.catalog.dir().join(&meta.id))?;
            inner.catalog.install(block)?;
            Some(meta)
        };
        {
            let mut heads = inner.heads_mut();
            heads.frozen.retain(|f| !Arc::ptr_eq(f, &frozen));
        }
        let through = frozen.through;
        free_in_background(inner, frozen);
        inner.refresh_head_bytes();
        inner.wal.remove_through(through)?;
        inner.blocks_cut.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(
            block = written.as_ref().map_or("(none)", |m| m.id.as_str()),
            spans = span_count,
            bytes = written.as_ref().map_or(0, |m| m.data_bytes),
            ms = started.elapsed().as_millis() as u64,
            "cut block"
        );
    }
}

/// Frees a written head's spans on a thread of its own: freeing a quarter
/// million spans' strings and vectors took about a fifth of the cut
/// thread's time, and that thread bounds sustained ingest. At most one head
/// is being freed at a time, so memory stays bounded if freeing falls behind.
fn free_in_background(inner: &Inner, frozen: Arc<FrozenHead>) {
    let mut slot = inner.freeing.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(previous) = slot.take() {
        // A panic while dropping spans cannot leave anything to clean up.
        let _ = previous.join();
    }
    // If no thread can be started, the closure and the head in it are
    // dropped right here instead.
    *slot = std::thread::Builder::new()
        .name("chaintrace-free".into())
        .spawn(move || drop(frozen))
        .ok();
}

/// Deletes blocks past the retention age, then the oldest blocks while all
/// blocks take more than the disk budget. Never touches the WAL or the head.
pub(crate) fn retention(inner: &Inner) -> Result<u64, StoreError> {
    let _alone = inner
        .compaction_lock
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    let mut blocks = inner.catalog.blocks();
    blocks.sort_by_key(|b| b.meta().max_end);
    let mut doomed = Vec::new();
    if let Some(age) = inner.config.retention {
        let cutoff = UnixNanos(
            UnixNanos::now()
                .0
                .saturating_sub(u64::try_from(age.as_nanos()).unwrap_or(u64::MAX)),
        );
        // Logs age out by the same rule, segment by segment.
        inner.logs.retain(cutoff)?;
        doomed.extend(
            blocks
                .iter()
                .filter(|b| b.meta().max_end < cutoff)
                .map(|b| b.meta().id.clone()),
        );
    }
    if let Some(budget) = inner.config.max_disk {
        let mut total: u64 = blocks.iter().map(|b| disk_bytes(b.dir())).sum();
        for b in &blocks {
            if total <= budget {
                break;
            }
            total -= disk_bytes(b.dir());
            if !doomed.contains(&b.meta().id) {
                doomed.push(b.meta().id.clone());
            }
        }
    }
    if doomed.is_empty() {
        return Ok(0);
    }
    tracing::info!(blocks = doomed.len(), "retention: deleting blocks");
    inner.catalog.remove(&doomed)?;
    inner
        .blocks_deleted
        .fetch_add(doomed.len() as u64, Ordering::Relaxed);
    Ok(doomed.len() as u64)
}

#[cfg(test)]
mod backoff_tests {
    use super::*;

    #[test]
    fn failed_compactions_back_off_doubling_up_to_the_cap_and_success_resets() {
        let start = Instant::now();
        let mut b = Backoff::default();
        assert!(b.ready(start));
        assert_eq!(b.failed(start), Duration::from_secs(1));
        assert!(!b.ready(start));
        assert!(!b.ready(start + Duration::from_millis(999)));
        assert!(b.ready(start + Duration::from_secs(1)));
        let pauses: Vec<u64> = (0..10).map(|_| b.failed(start).as_secs()).collect();
        assert_eq!(pauses, [2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
        assert!(!b.ready(start + Duration::from_secs(299)));
        b.succeeded();
        assert!(b.ready(start));
        assert_eq!(b.failed(start), Duration::from_secs(1));
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    #[test]
    fn the_compaction_thread_runs_at_the_lowest_priority() {
        let (nice, policy) = std::thread::spawn(|| {
            super::lower_priority();
            // SAFETY: plain syscalls on the calling thread.
            unsafe {
                let tid = libc::syscall(libc::SYS_gettid) as libc::pid_t;
                (
                    libc::getpriority(libc::PRIO_PROCESS, tid as libc::id_t),
                    libc::sched_getscheduler(tid),
                )
            }
        })
        .join()
        .unwrap();
        assert_eq!(nice, 19);
        assert_eq!(policy, libc::SCHED_IDLE);
        // Only that thread: the caller keeps the normal policy.
        // SAFETY: as above.
        let ours = unsafe { libc::sched_getscheduler(0) };
        assert_eq!(ours, libc::SCHED_OTHER);
    }
}
