//! Rollups of the embedded store: each block's per-minute figures
//! ([`Rollup`]) in a `rollup.bin` beside its Parquet files, and the head's
//! computed when asked.
//!
//! - A compaction rolls up its outputs while it merges them (it holds
//!   every trace whole), before it installs them.
//! - A cut block is rolled up by the compaction thread right after the cut,
//!   from the block read back, at idle priority, so that cuts (which bound
//!   ingest) never wait for it. Blocks written before rollups existed get
//!   theirs the same way.
//! - A read ([`Inner::rollups_blocking`]) uses the rollups blocks have, rolls
//!   up (and saves) those that have none yet, and rolls up the head.
//!
//! The file is written after the block is complete (tmp file, then
//! rename): a block without one is still a whole block, and a missing,
//! torn or outdated file is rolled up again. Rollups are only as good as
//! the [`TraceFigures`] the store was given (`EmbeddedConfig::figures`);
//! without them the store keeps none and [`Inner::rollups_blocking`] says so.

use std::fs;
use std::path::Path;
use std::sync::Arc;

use chaintrace_model::rollup::{
    minute_of, Rollup, RollupSummary, Step, TraceFigures, MINUTE_NANOS, ROLLUP_VERSION,
};
use chaintrace_model::{Span, Trace, UnixNanos};

use crate::block::Block;
use crate::embedded::Inner;
use crate::store::{RollupRead, StoreError};

/// The [`TraceFigures`] a store rolls up with (the analysis crate's):
/// compared by identity, shown by name only.
#[derive(Clone)]
pub struct Figures(Arc<dyn TraceFigures>);

impl Figures {
    /// Wraps `figures`.
    pub fn new(figures: impl TraceFigures + 'static) -> Figures {
        Figures(Arc::new(figures))
    }

    pub(crate) fn get(&self) -> &dyn TraceFigures {
        &*self.0
    }
}

impl std::fmt::Debug for Figures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Figures")
    }
}

impl PartialEq for Figures {
    fn eq(&self, other: &Figures) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

/// The rollup file in a block's directory.
pub(crate) const ROLLUP_FILE: &str = "rollup.bin";

/// Reads `<dir>/rollup.bin` and its size in bytes: `None` when absent,
/// unreadable or of another rules version (it is then rolled up again).
pub(crate) fn read_rollup(dir: &Path) -> Option<(Rollup, usize)> {
    let bytes = fs::read(dir.join(ROLLUP_FILE)).ok()?;
    match Rollup::from_bytes(&bytes) {
        Ok(r) if r.version == ROLLUP_VERSION => Some((r, bytes.len())),
        Ok(_) => None,
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "unreadable rollup; it is made again");
            None
        }
    }
}

/// Saves `rollup` as `<dir>/rollup.bin` (tmp file, then rename); returns
/// its size. A block deleted meanwhile (compaction, retention) is no
/// error: its rollup is not needed any more.
pub(crate) fn write_rollup(dir: &Path, rollup: &Rollup) -> Result<usize, StoreError> {
    let bytes = rollup.to_bytes();
    if !dir.exists() {
        return Ok(bytes.len());
    }
    let tmp = dir.join(format!(".{ROLLUP_FILE}.tmp-{}", std::process::id()));
    let done = fs::write(&tmp, &bytes).and_then(|()| fs::rename(&tmp, dir.join(ROLLUP_FILE)));
    match done {
        Ok(()) => Ok(bytes.len()),
        Err(_) if !dir.exists() => Ok(bytes.len()),
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            Err(StoreError::io("write rollup", dir.join(ROLLUP_FILE), e))
        }
    }
}

/// Rolls up every span of `block`, one whole trace at a time (its rows
/// are sorted by trace id).
pub(crate) fn roll_up_block(
    block: &Block,
    figures: &dyn TraceFigures,
) -> Result<Rollup, StoreError> {
    let mut rollup = Rollup::new();
    let mut spans: Vec<Span> = Vec::new();
    let add = |spans: Vec<Span>, rollup: &mut Rollup| {
        if let Some(first) = spans.first() {
            let trace = Trace::new(first.trace_id, spans);
            rollup.add_trace(&trace, &figures.figures(&trace));
        }
    };
    for span in block.span_stream()? {
        let span = span?;
        if spans.last().is_some_and(|s| s.trace_id != span.trace_id) {
            add(std::mem::take(&mut spans), &mut rollup);
        }
        spans.push(span);
    }
    add(spans, &mut rollup);
    Ok(rollup)
}

/// Most bytes of rollup files whose minutes [`MinutesCache`] keeps decoded
/// (decoded, they take a few times that).
const MINUTES_CACHE_BYTES: usize = 16 << 20;

/// The per-minute rollups of the blocks read last, by block id, oldest
/// use first out: memory stays bounded whatever the retention, while the
/// blocks an hour's questions keep cutting through stay decoded.
#[derive(Debug, Default)]
pub(crate) struct MinutesCache {
    entries: std::collections::VecDeque<(String, Arc<Rollup>, usize)>,
    bytes: usize,
}

impl MinutesCache {
    fn get(&mut self, id: &str) -> Option<Arc<Rollup>> {
        let at = self.entries.iter().position(|(k, _, _)| k == id)?;
        let entry = self.entries.remove(at)?;
        let rollup = Arc::clone(&entry.1);
        self.entries.push_back(entry);
        Some(rollup)
    }

    /// Keeps `rollup`; hands back what it pushed out, for the caller to
    /// drop after letting go of the lock (freeing a big decoded rollup
    /// takes a while, and readers wait on that lock).
    fn put(&mut self, id: &str, rollup: Arc<Rollup>, bytes: usize) -> Vec<Arc<Rollup>> {
        let mut out = Vec::new();
        if let Some(at) = self.entries.iter().position(|(k, _, _)| k == id) {
            if let Some((_, old, old_bytes)) = self.entries.remove(at) {
                self.bytes -= old_bytes;
                out.push(old);
            }
        }
        self.entries.push_back((id.to_string(), rollup, bytes));
        self.bytes += bytes;
        while self.bytes > MINUTES_CACHE_BYTES && self.entries.len() > 1 {
            if let Some((_, old, old_bytes)) = self.entries.pop_front() {
                self.bytes -= old_bytes;
                out.push(old);
            }
        }
        out
    }
}

impl Inner {
    fn cached_minutes(&self) -> std::sync::MutexGuard<'_, MinutesCache> {
        self.rollup_minutes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Rolls `block` up from its spans, saves the file, keeps the summary
    /// and, for a reader (`keep_minutes`), the minutes.
    fn roll_up_now(
        &self,
        block: &Block,
        figures: &dyn TraceFigures,
        keep_minutes: bool,
    ) -> Result<Arc<Rollup>, StoreError> {
        let rollup = Arc::new(roll_up_block(block, figures)?);
        let bytes = match write_rollup(block.dir(), &rollup) {
            Ok(bytes) => bytes,
            Err(e) => {
                // The figures are right; only a later read rolls it up again.
                tracing::warn!(error = %e, "cannot save a block's rollup");
                0
            }
        };
        block.set_rollup(Arc::new(rollup.summary()));
        if keep_minutes {
            let evicted = self
                .cached_minutes()
                .put(&block.meta().id, Arc::clone(&rollup), bytes);
            drop(evicted);
        }
        Ok(rollup)
    }

    /// The summary of `block`'s rollup, rolled up now if it has none
    /// (`built` counts those).
    fn block_summary(
        &self,
        block: &Block,
        figures: &dyn TraceFigures,
        built: &mut u64,
    ) -> Result<Arc<RollupSummary>, StoreError> {
        if let Some(summary) = block.rollup() {
            return Ok(summary);
        }
        self.roll_up_now(block, figures, true)?;
        *built += 1;
        block.rollup().ok_or(StoreError::Internal(
            "a block's rollup summary was not kept".into(),
        ))
    }

    /// The per-minute rollup of `block`: from the cache, else its file,
    /// else rolled up now.
    fn block_minutes(
        &self,
        block: &Block,
        figures: &dyn TraceFigures,
        read: &mut RollupRead,
    ) -> Result<Arc<Rollup>, StoreError> {
        let id = &block.meta().id;
        if let Some(r) = self.cached_minutes().get(id) {
            return Ok(r);
        }
        if let Some((rollup, bytes)) = read_rollup(block.dir()) {
            let rollup = Arc::new(rollup);
            read.files_read += 1;
            let evicted = self.cached_minutes().put(id, Arc::clone(&rollup), bytes);
            drop(evicted);
            return Ok(rollup);
        }
        read.built += 1;
        self.roll_up_now(block, figures, true)
    }

    /// Rolls up the blocks that have no rollup yet, newest first, until
    /// `stopped`. Returns how many it rolled up.
    pub(crate) fn roll_up_missing(&self, stopped: &dyn Fn() -> bool) -> Result<u64, StoreError> {
        let Some(figures) = self.config.figures.as_ref() else {
            return Ok(0);
        };
        let mut blocks = self.catalog.blocks();
        blocks.retain(|b| b.rollup().is_none());
        blocks.sort_by_key(|b| std::cmp::Reverse(b.meta().max_end));
        let mut built = 0;
        for block in blocks {
            if stopped() {
                break;
            }
            // In the background: the minutes stay in the file until asked for.
            self.roll_up_now(&block, figures.get(), false)?;
            built += 1;
        }
        Ok(built)
    }

    /// The figures of the traces that started in the whole minutes from
    /// `from`'s to `to`'s (both included), from every block that may hold
    /// them and from the head, keyed as `step` says; `None` when this
    /// store keeps no rollups. A block lying wholly in the range adds its
    /// summary (total or hours) from memory; one the range cuts through,
    /// or any block when minutes are asked for, adds its minutes.
    pub(crate) fn rollups_blocking(
        &self,
        from: UnixNanos,
        to: UnixNanos,
        step: Step,
    ) -> Result<Option<RollupRead>, StoreError> {
        let Some(figures) = self.config.figures.as_ref() else {
            return Ok(None);
        };
        let figures = figures.get();
        let (lo, hi) = (minute_of(from), minute_of(to).saturating_add(MINUTE_NANOS));
        // Heads before blocks, as every read: a cut installs its block
        // before it drops the frozen head. A frozen head whose block is
        // already listed is then left out, so nothing counts twice.
        let (active, frozen) = {
            let heads = self.heads();
            let active: Vec<Trace> = heads
                .active
                .traces()
                .filter(|(_, spans)| starts_in(spans, lo, hi))
                .map(|(id, spans)| Trace::new(id, spans.to_vec()))
                .collect();
            (active, heads.frozen.clone())
        };
        // A span ends after it starts, so a block whose spans all ended
        // before `lo` holds no trace starting in range.
        let blocks = self.blocks_meeting(Some(UnixNanos(lo)), Some(UnixNanos(hi)));
        let mut read = RollupRead {
            rollup: Rollup::new(),
            blocks: blocks.len() as u64,
            ..RollupRead::default()
        };
        let mut out = Rollup::new();
        for block in &blocks {
            let summary = self.block_summary(block, figures, &mut read.built)?;
            let Some((first, last)) = summary.minutes else {
                continue;
            };
            if last < lo || first >= hi {
                continue;
            }
            let inside = lo <= first && last < hi;
            match step {
                Step::Total if inside => out.merge_minute(lo, &summary.total),
                Step::Hour if inside => {
                    for (&hour, figures) in &summary.hours {
                        out.merge_minute(hour, figures);
                    }
                }
                _ => {
                    let minutes = self.block_minutes(block, figures, &mut read)?;
                    out.merge_range_at(&minutes, lo, hi, step);
                }
            }
        }
        let covered: Vec<(u64, u64)> = blocks
            .iter()
            .filter_map(|b| b.meta().wal_segments)
            .collect();
        let mut head = Rollup::new();
        for f in frozen {
            if covered
                .iter()
                .any(|&(a, b)| a <= f.through && f.through <= b)
            {
                continue;
            }
            for (id, spans) in f
                .head
                .traces()
                .filter(|(_, spans)| starts_in(spans, lo, hi))
            {
                let trace = Trace::new(id, spans.to_vec());
                head.add_trace(&trace, &figures.figures(&trace));
                read.head_traces += 1;
            }
        }
        for trace in &active {
            head.add_trace(trace, &figures.figures(trace));
            read.head_traces += 1;
        }
        out.merge_range_at(&head, lo, hi, step);
        read.rollup = out;
        Ok(Some(read))
    }
}

/// Whether the earliest of `spans` starts in `[lo, hi)`.
fn starts_in(spans: &[Span], lo: u64, hi: u64) -> bool {
    spans
        .iter()
        .map(|s| s.start.0)
        .min()
        .is_some_and(|t| (lo..hi).contains(&t))
}

#[cfg(test)]
mod tests {
    use chaintrace_model::rollup::{CallFigures, ErrorFigures, SpanFigures};
    use chaintrace_model::{Status, StatusCode};

    use super::*;
    use crate::test_support::{span, trace_id};
    use crate::{EmbeddedConfig, EmbeddedStore, Store};

    /// Figures simple enough to check by hand: self time is the duration,
    /// a root is all critical path, `llm` spans are calls of `m`.
    struct Simple;

    impl TraceFigures for Simple {
        fn figures(&self, trace: &Trace) -> Vec<SpanFigures> {
            trace
                .spans
                .iter()
                .map(|s| SpanFigures {
                    self_nano: s.duration().0,
                    critical_nano: if s.parent_span_id.is_none() {
                        s.duration().0
                    } else {
                        0
                    },
                    call: (s.name == "llm").then(|| CallFigures {
                        model: Some("m".into()),
                        input: Some(10),
                        output: Some(3),
                        ..CallFigures::default()
                    }),
                    error: s.is_error().then(|| ErrorFigures {
                        short: s.status.message.clone(),
                        full: s.status.message.clone(),
                        source: 3,
                    }),
                })
                .collect()
        }
    }

    /// Minute 0 of the test data: a whole minute, an hour ago.
    /// An hour ago, at the start of a ten-minute compaction window (the
    /// default `compaction_window`), so that the data's three minutes never
    /// straddle two windows, which compaction keeps apart: the test failed
    /// whenever it ran in the last two minutes of a window.
    fn base() -> u64 {
        const WINDOW: u64 = 600_000_000_000;
        (UnixNanos::now().0 - 3_600_000_000_000) / WINDOW * WINDOW
    }

    /// Trace `t` (1-based): root `chain`, an `llm` call (failed for every
    /// fifth) and a `db` step, starting `t × 5 s` into the data.
    fn trace(t: u8) -> Vec<Span> {
        let start = base() + u64::from(t) * 5_000_000_000;
        let mut llm = span(
            t,
            2,
            Some(1),
            "rag",
            "llm",
            start + 10,
            start + 900 + u64::from(t),
        );
        if t.is_multiple_of(5) {
            llm.status = Status {
                code: StatusCode::Error,
                message: "RateLimitError".into(),
            };
        }
        vec![
            span(t, 1, None, "rag", "chain", start, start + 1_000),
            llm,
            span(t, 3, Some(1), "db", "query", start + 950, start + 990),
        ]
    }

    /// The store's rollups of the range, which it must keep.
    async fn rolled(
        store: &EmbeddedStore,
        from: UnixNanos,
        to: UnixNanos,
        step: Step,
    ) -> RollupRead {
        store.rollups(from, to, step).await.unwrap().unwrap()
    }

    fn brute_force(traces: impl Iterator<Item = u8>, from: u64, to: u64) -> Rollup {
        let mut all = Rollup::new();
        for t in traces {
            let trace = Trace::new(trace_id(t), trace(t));
            all.add_trace(&trace, &Simple.figures(&trace));
        }
        let mut part = Rollup::new();
        part.merge_range(&all, from, to);
        part
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn rollups_of_blocks_compactions_and_the_head_equal_those_of_every_trace() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = EmbeddedConfig::new(dir.path());
        config.compaction_min_blocks = 3;
        config.compaction_fresh_blocks = 0;
        config.figures = Some(Figures::new(Simple));
        let (store, _) = EmbeddedStore::open(config.clone()).unwrap();
        // Traces 1..=36 cover three minutes: three blocks, the rest in the head.
        for batch in 0..4u8 {
            let spans: Vec<Span> = (batch * 9 + 1..=batch * 9 + 9).flat_map(trace).collect();
            store.append(spans).await.unwrap();
            if batch < 3 {
                tokio::task::block_in_place(|| store.flush()).unwrap();
            }
        }
        let (from, to) = (UnixNanos(base()), UnixNanos(base() + 2 * MINUTE_NANOS + 1));
        let whole = brute_force(1..=36, base(), base() + 3 * MINUTE_NANOS);
        assert_eq!(whole.minutes.len(), 3);
        let read = rolled(&store, from, to, Step::Minute).await;
        assert_eq!(read.rollup, whole);
        // Traces 28..=35 (36 starts in the fourth minute).
        assert_eq!(read.head_traces, 8);
        // Whole-range and hourly reads add the same figures under fewer keys.
        let total = rolled(&store, from, to, Step::Total).await;
        let mut want = Rollup::new();
        want.merge_range_at(&whole, base(), base() + 3 * MINUTE_NANOS, Step::Total);
        assert_eq!(total.rollup, want);
        assert_eq!(total.rollup.minutes.len(), 1);
        let hourly = rolled(&store, from, to, Step::Hour).await;
        let mut want = Rollup::new();
        want.merge_range_at(&whole, base(), base() + 3 * MINUTE_NANOS, Step::Hour);
        assert_eq!(hourly.rollup, want);
        // The middle minute alone.
        let middle = UnixNanos(base() + MINUTE_NANOS + 30_000_000_000);
        let read = rolled(&store, middle, middle, Step::Minute).await;
        assert_eq!(
            read.rollup,
            brute_force(1..=36, base() + MINUTE_NANOS, base() + 2 * MINUTE_NANOS)
        );

        // A compaction writes its outputs' rollups as it merges them.
        tokio::task::block_in_place(|| store.flush()).unwrap();
        // The compaction thread may be merging too: compact until one block is left.
        for _ in 0..100 {
            tokio::task::block_in_place(|| store.compact()).unwrap();
            if store.stats().await.unwrap().blocks == 1 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert_eq!(store.stats().await.unwrap().blocks, 1);
        let read = rolled(&store, from, to, Step::Minute).await;
        assert_eq!(read.rollup, whole);
        assert_eq!((read.blocks, read.built, read.head_traces), (1, 0, 0));
        drop(store);

        // After a restart the files are read, not rolled up again: the
        // summary when the block lies wholly in the range, the minutes
        // when they are asked for.
        let (store, _) = EmbeddedStore::open(config).unwrap();
        let read = rolled(&store, UnixNanos(0), UnixNanos::now(), Step::Total).await;
        assert_eq!((read.built, read.files_read), (0, 0));
        let read = rolled(&store, from, to, Step::Minute).await;
        assert_eq!(read.rollup, whole);
        assert_eq!((read.built, read.files_read), (0, 1));
        let again = rolled(&store, from, to, Step::Minute).await;
        assert_eq!(
            (again.rollup == whole, again.files_read),
            (true, 0),
            "kept decoded"
        );
        let meta_dir = dir.path().join("blocks");
        let with_file = fs::read_dir(&meta_dir)
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| e.path().join(ROLLUP_FILE).exists())
            .count();
        assert_eq!(with_file, 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_block_with_a_torn_or_missing_rollup_is_rolled_up_again() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = EmbeddedConfig::new(dir.path());
        config.figures = Some(Figures::new(Simple));
        // Written by a build without rollups.
        let mut plain = config.clone();
        plain.figures = None;
        let (store, _) = EmbeddedStore::open(plain).unwrap();
        store
            .append((1..=4).flat_map(trace).collect())
            .await
            .unwrap();
        tokio::task::block_in_place(|| store.flush()).unwrap();
        assert!(store
            .rollups(UnixNanos(base()), UnixNanos(base()), Step::Total)
            .await
            .unwrap()
            .is_none());
        drop(store);

        let (store, _) = EmbeddedStore::open(config.clone()).unwrap();
        let range = (UnixNanos(base()), UnixNanos(base() + MINUTE_NANOS));
        let read = rolled(&store, range.0, range.1, Step::Minute).await;
        assert_eq!(
            read.rollup,
            brute_force(1..=4, base(), base() + 2 * MINUTE_NANOS)
        );
        assert!(read.built <= 1, "the background thread may have been first");
        drop(store);
        // Tear the file: the next open rolls the block up again, same figures.
        let block = fs::read_dir(dir.path().join("blocks"))
            .unwrap()
            .filter_map(Result::ok)
            .find(|e| e.path().join(ROLLUP_FILE).exists())
            .unwrap()
            .path();
        let bytes = fs::read(block.join(ROLLUP_FILE)).unwrap();
        fs::write(block.join(ROLLUP_FILE), &bytes[..bytes.len() / 2]).unwrap();
        let (store, _) = EmbeddedStore::open(config).unwrap();
        let read = rolled(&store, range.0, range.1, Step::Minute).await;
        assert_eq!(
            read.rollup,
            brute_force(1..=4, base(), base() + 2 * MINUTE_NANOS)
        );
    }
}
