//! The embedded store: WAL, head and blocks put together behind [`Store`].
//!
//! Write path: an append is encoded on the caller's task and queued to the
//! WAL; once its group is fsynced, the WAL writer thread inserts it into the
//! active head and only then answers, so a query never shows a span a crash
//! could take away, and head contents follow WAL order exactly.
//! [`EmbeddedStore::open_on`] opens the store with the WAL on another
//! [`Disk`]; `power_cut_tests` uses it to cut the power under live appends.
//!
//! Cutting: a seal (run on the same writer thread) closes the open WAL
//! segment and freezes the active head in one step, so a frozen head holds
//! exactly the spans of the sealed segments. The maintenance thread writes
//! each frozen head as a Parquet block, installs it, then deletes the
//! segments it covers; until then the frozen head stays queryable. A crash
//! anywhere in between either replays the segments (no block yet) or deletes
//! them at open (the block's meta says it holds them).
//!
//! Reads merge the active head, frozen heads and blocks, dropping duplicate
//! spans (exporters retry; a retry can land in another generation), so
//! duplicates are never visible, before or after compaction.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use chaintrace_model::{LogRecord, Span, Trace, TraceId, TraceSummary, UnixNanos};

use crate::catalog::Catalog;
use crate::head::Head;
use crate::lock::DirLock;
use crate::logs::LogStore;
use crate::maintenance;
use crate::sampling::{Sampler, SamplingConfig};
use crate::search::{SearchRequest, SearchStats};
use crate::store::{LogPage, LogQuery, Store, StoreError, StoreStats, TraceListQuery};
use crate::wal::{self, Disk, ReplayReport, SegmentSeq, Wal};

/// Where and how the embedded store keeps its data.
#[derive(Debug, Clone, PartialEq)]
pub struct EmbeddedConfig {
    /// Data directory; the WAL lives in `<dir>/wal/`, blocks in
    /// `<dir>/blocks/`, log records in `<dir>/logs/`.
    pub dir: PathBuf,
    /// A WAL segment is closed and a new one started once the next record
    /// would take it past this many bytes (a single larger record still gets
    /// a segment of its own).
    pub wal_segment_bytes: u64,
    /// A log segment is closed and a new one started past this many bytes.
    /// Log segments are also the logs' storage: a lookup by trace reads
    /// whole segments that may hold it, so they are kept smaller than span
    /// segments.
    pub log_segment_bytes: u64,
    /// Cut the head into a block once it holds about this many bytes in memory.
    pub block_max_bytes: u64,
    /// Cut the head into a block once its oldest span arrived this long ago.
    pub block_max_age: Duration,
    /// Memory budget for the head (active and frozen) plus the WAL queue;
    /// over it, appends wait up to `overload_wait` for a block cut to free
    /// memory, then are refused with [`StoreError::Overloaded`].
    pub max_memory: u64,
    /// How long an append over `max_memory` waits for room before it is
    /// refused. Under sustained load the budget fills while a block is being
    /// cut; answering "try later" at once made exporters back off (100 ms
    /// and more) while the cut freed memory a moment later, and the server
    /// sat a third idle. Zero refuses at once.
    pub overload_wait: Duration,
    /// Delete blocks whose newest span ended longer ago than this.
    pub retention: Option<Duration>,
    /// Delete the oldest blocks while all blocks take more than this many bytes.
    pub max_disk: Option<u64>,
    /// Compaction merges blocks whose data starts in the same window of this length.
    pub compaction_window: Duration,
    /// Merge this many blocks of one level and window at least.
    pub compaction_min_blocks: usize,
    /// A compaction starts a new output block, at a trace boundary, once
    /// the current one holds this many spans.
    pub compaction_block_spans: u64,
    /// Merge at most this many blocks at once (each open input holds one
    /// decoded batch in memory).
    pub compaction_max_inputs: usize,
    /// The newest this many cut blocks are left out of compaction until
    /// newer blocks take their place. Newest-first searches and listings
    /// read them first; while small they stop early, where a compacted
    /// block (spread over its whole window) must be read through.
    pub compaction_fresh_blocks: usize,
    /// How often the maintenance thread looks for work when not woken.
    pub maintenance_interval: Duration,
    /// Tail sampling at each cut (see [`crate::sampling`]); `None` keeps
    /// every trace.
    pub sampling: Option<SamplingConfig>,
    /// What each trace's rollup figures are (the analysis crate's
    /// `RollupFigures`); `None` keeps no rollups.
    pub figures: Option<crate::rollups::Figures>,
}

impl EmbeddedConfig {
    /// Default size of a WAL segment: 64 MiB.
    pub const DEFAULT_WAL_SEGMENT_BYTES: u64 = 64 * 1024 * 1024;

    /// The defaults, storing under `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        EmbeddedConfig {
            dir: dir.into(),
            wal_segment_bytes: Self::DEFAULT_WAL_SEGMENT_BYTES,
            log_segment_bytes: 16 * 1024 * 1024,
            block_max_bytes: 64 * 1024 * 1024,
            block_max_age: Duration::from_secs(5 * 60),
            max_memory: 384 * 1024 * 1024,
            overload_wait: Duration::from_secs(2),
            retention: Some(Duration::from_secs(7 * 24 * 3600)),
            max_disk: None,
            // Outputs are split by trace id, so each spans its whole window:
            // a short window keeps searches for the newest traces reading
            // little. With 1 h, TraceQL at 10 M spans took 70-110 ms p50.
            compaction_window: Duration::from_secs(600),
            compaction_min_blocks: 4,
            // About nine cut blocks of a loaded server: fewer blocks to
            // probe by id, each still quick to retain or rewrite.
            compaction_block_spans: 2_000_000,
            compaction_max_inputs: 32,
            // At 10 M spans, with every cut block merged TraceQL for the
            // newest 20 traces took 57-126 ms p50 (it read through 2 M-span
            // blocks); with the newest cut blocks left, 16-34 ms.
            compaction_fresh_blocks: 3,
            maintenance_interval: Duration::from_secs(1),
            sampling: None,
            figures: None,
        }
    }

    /// The WAL directory, `<dir>/wal`.
    pub fn wal_dir(&self) -> PathBuf {
        self.dir.join("wal")
    }

    /// The blocks directory, `<dir>/blocks`.
    pub fn blocks_dir(&self) -> PathBuf {
        self.dir.join("blocks")
    }

    /// The log directory, `<dir>/logs`.
    pub fn logs_dir(&self) -> PathBuf {
        self.dir.join("logs")
    }
}

/// A head that was sealed with its WAL segments and waits to become a block.
pub(crate) struct FrozenHead {
    /// First WAL segment whose spans it holds.
    pub(crate) from: SegmentSeq,
    /// Last WAL segment whose spans it holds.
    pub(crate) through: SegmentSeq,
    /// The spans.
    pub(crate) head: Head,
}

/// The in-memory generations: the head taking inserts, and frozen ones.
pub(crate) struct Heads {
    pub(crate) active: Head,
    /// When the active head got its first span since the last cut.
    pub(crate) active_since: Option<Instant>,
    /// Frozen heads, oldest first.
    pub(crate) frozen: Vec<Arc<FrozenHead>>,
    /// Highest WAL segment sealed so far.
    pub(crate) sealed_through: SegmentSeq,
}

impl Heads {
    fn bytes(&self) -> u64 {
        self.active.stats().bytes
            + self
                .frozen
                .iter()
                .map(|f| f.head.stats().bytes)
                .sum::<u64>()
    }
}

/// Wakes the maintenance thread early, and tells it to stop.
#[derive(Default)]
pub(crate) struct Signal {
    state: Mutex<(bool, bool)>,
    cond: Condvar,
}

impl Signal {
    /// Whether [`Signal::stop`] was called.
    pub(crate) fn is_stopped(&self) -> bool {
        self.state.lock().unwrap_or_else(PoisonError::into_inner).1
    }

    /// Asks for a maintenance pass soon.
    pub(crate) fn wake(&self) {
        self.state.lock().unwrap_or_else(PoisonError::into_inner).0 = true;
        self.cond.notify_one();
    }

    fn stop(&self) {
        self.state.lock().unwrap_or_else(PoisonError::into_inner).1 = true;
        self.cond.notify_one();
    }

    /// Waits for a wake-up or `timeout`; returns false once stopped.
    pub(crate) fn wait(&self, timeout: Duration) -> bool {
        let guard = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let (mut guard, _) = self
            .cond
            .wait_timeout_while(guard, timeout, |(woken, stopped)| !*woken && !*stopped)
            .unwrap_or_else(PoisonError::into_inner);
        guard.0 = false;
        !guard.1
    }
}

/// The share of `max_memory` that batches waiting for room may hold.
const WAITING_SHARE: u64 = 4;

/// One append's place among those waiting for room; leaves on drop, so a
/// request that is cancelled while waiting frees its share too.
struct Waiting<'a> {
    inner: &'a Inner,
    bytes: u64,
    deadline: tokio::time::Instant,
}

impl<'a> Waiting<'a> {
    /// Joins the waiters, or `None` when their share of the budget is full.
    fn enter(inner: &'a Inner, bytes: u64) -> Option<Self> {
        let cap = inner.config.max_memory / WAITING_SHARE;
        inner
            .waiting_bytes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |w| {
                (w.saturating_add(bytes) <= cap).then_some(w + bytes)
            })
            .ok()?;
        Some(Waiting {
            inner,
            bytes,
            deadline: tokio::time::Instant::now() + inner.config.overload_wait,
        })
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.inner
            .waiting_bytes
            .fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

/// How often an append waiting for room looks at the budget again when no
/// cut has finished (the WAL queue drains without notifying).
const ROOM_RECHECK: Duration = Duration::from_millis(20);

/// chaintrace's single-node store. See the [module docs](self) and the
/// [crate docs](crate).
pub struct EmbeddedStore {
    inner: Arc<Inner>,
    /// The cut and compaction threads; emptied by `close`.
    maintenance: Mutex<Vec<JoinHandle<()>>>,
}

/// The body of one maintenance thread.
type MaintenanceLoop = fn(&Arc<Inner>);

/// What the store's threads share.
pub(crate) struct Inner {
    pub(crate) config: EmbeddedConfig,
    pub(crate) wal: Wal,
    /// Log records, apart from spans.
    pub(crate) logs: LogStore,
    /// Shared with the WAL writer thread's insert callbacks. Not `Inner`
    /// itself: a callback must never hold the last reference to the WAL.
    pub(crate) heads: Arc<RwLock<Heads>>,
    pub(crate) catalog: Catalog,
    pub(crate) signal: Arc<Signal>,
    /// Notified whenever a cut frees memory: appends waiting for room.
    pub(crate) freed: tokio::sync::Notify,
    /// Estimated bytes of the batches waiting for room, kept under
    /// [`WAITING_SHARE`] of the budget so that waiting cannot grow memory
    /// without bound.
    waiting_bytes: AtomicU64,
    /// Wakes and stops the compaction thread.
    pub(crate) compaction_signal: Signal,
    /// Held by a compaction pass and by retention: they never overlap (nor
    /// do the thread's and one asked for through [`EmbeddedStore::compact`]).
    pub(crate) compaction_lock: Mutex<()>,
    /// Estimated bytes of all heads, readable without the lock.
    pub(crate) head_bytes: Arc<AtomicU64>,
    /// The thread freeing the last head written to a block, if any.
    pub(crate) freeing: Mutex<Option<JoinHandle<()>>>,
    /// Counters of maintenance work, for stats.
    pub(crate) blocks_cut: AtomicU64,
    pub(crate) compactions: AtomicU64,
    pub(crate) blocks_deleted: AtomicU64,
    /// How long each compaction merge took.
    pub(crate) compaction_seconds: chaintrace_metrics::Histogram,
    /// The per-minute rollups of the blocks read last (see `crate::rollups`).
    pub(crate) rollup_minutes: Mutex<crate::rollups::MinutesCache>,
    /// Decides which traces each cut keeps, when sampling is on.
    pub(crate) sampler: Option<Mutex<Sampler>>,
    /// The data directory's lock, released when the last handle goes (or,
    /// in tests, at a simulated crash).
    _lock: Mutex<Option<DirLock>>,
}

impl Inner {
    // A panic while holding the lock cannot leave the heads half-updated in a
    // way that matters more than refusing all further service would, so a
    // poisoned lock is used as is.
    pub(crate) fn heads(&self) -> RwLockReadGuard<'_, Heads> {
        self.heads.read().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn heads_mut(&self) -> RwLockWriteGuard<'_, Heads> {
        self.heads.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Recomputes the lock-free memory estimate and wakes appends waiting
    /// for room.
    pub(crate) fn refresh_head_bytes(&self) {
        let bytes = self.heads().bytes();
        self.head_bytes.store(bytes, Ordering::Relaxed);
        self.freed.notify_waiters();
    }

    /// Pauses a compaction while ingest is short of room (over half the
    /// memory budget: cuts are falling behind appends), so that merging
    /// never takes CPU the cut needs; nice 19 alone still let it fill every
    /// gap and cost sustained ingest ~15 %. Returns when there is room again
    /// or `stopped` turns true.
    pub(crate) fn yield_to_ingest(&self, stopped: &dyn Fn() -> bool) {
        while self.memory_used() > self.config.max_memory / 2 && !stopped() {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Bytes held by the heads and the WAL queue, against `max_memory`.
    fn memory_used(&self) -> u64 {
        self.head_bytes
            .load(Ordering::Relaxed)
            .saturating_add(self.wal.stats().queued_bytes)
    }

    /// Returns once the memory budget has room, waiting up to
    /// `overload_wait` for a cut to free some; then refuses. Refuses at once
    /// when the batches already waiting hold their share of the budget.
    async fn wait_for_room(&self, spans: &[Span]) -> Result<(), StoreError> {
        // The batch counts before it is admitted: checking only what is
        // already held let one request of tiny items (16 MiB of empty
        // attributes, ~470 MB decoded) in past a budget of 384 MiB.
        let bytes: u64 = spans.iter().map(crate::head::estimate_span_bytes).sum();
        let budget = self.config.max_memory;
        if bytes > budget {
            return Err(StoreError::OverMemoryBudget {
                spans: spans.len(),
                bytes,
                budget,
            });
        }
        let mut waiting: Option<Waiting<'_>> = None;
        loop {
            // Registered before the check, so a cut finishing in between
            // still wakes this wait.
            let freed = self.freed.notified();
            let used = self.memory_used();
            if used.saturating_add(bytes) <= budget {
                return Ok(());
            }
            self.signal.wake();
            let refuse = || {
                StoreError::Overloaded(format!(
                    "{} of spans wait in memory to be written to blocks and this batch needs {} \
                     more (budget {})",
                    human_bytes(used),
                    human_bytes(bytes),
                    human_bytes(budget)
                ))
            };
            let deadline = match &waiting {
                Some(w) => w.deadline,
                None => {
                    waiting
                        .insert(Waiting::enter(self, bytes).ok_or_else(refuse)?)
                        .deadline
                }
            };
            if tokio::time::Instant::now() >= deadline {
                return Err(refuse());
            }
            // The WAL queue drains without a notification: look again soon.
            let recheck = (tokio::time::Instant::now() + ROOM_RECHECK).min(deadline);
            tokio::select! {
                () = freed => {}
                () = tokio::time::sleep_until(recheck) => {}
            }
        }
    }

    /// Every stored span of trace `id`, from all generations, duplicates
    /// dropped by the store's one rule (see [`crate::generations`]).
    pub(crate) fn trace_blocking(&self, id: TraceId) -> Result<Option<Trace>, StoreError> {
        let mut spans = self.gather_traces(&[id], None, usize::MAX)?;
        Ok(spans.remove(&id).map(|list| Trace::new(id, list)))
    }

    /// Newest-first summaries from all generations. A trace found in more
    /// than one (a long chain cut across blocks, or a late retry) is rebuilt
    /// whole so its counts are right.
    fn recent_traces_blocking(
        &self,
        query: &TraceListQuery,
    ) -> Result<Vec<TraceSummary>, StoreError> {
        let limit = query.effective_limit();
        let mut found: HashMap<TraceId, (TraceSummary, u32)> = HashMap::new();
        let add = |found: &mut HashMap<TraceId, (TraceSummary, u32)>, list: Vec<TraceSummary>| {
            for s in list {
                found
                    .entry(s.trace_id)
                    .and_modify(|(_, n)| *n += 1)
                    .or_insert((s, 1));
            }
        };
        let frozen = {
            let heads = self.heads();
            add(&mut found, heads.active.recent_traces(query));
            heads.frozen.clone()
        };
        for f in &frozen {
            add(&mut found, f.head.recent_traces(query));
        }
        // Newest data first, so the walk can stop at the first block that
        // cannot hold a trace newer than the `limit` found so far (a trace
        // in a block starts at or before the block's `max_end`).
        let mut blocks = self.catalog.blocks();
        blocks.sort_by_key(|b| std::cmp::Reverse(b.meta().max_end));
        for block in blocks {
            let meta = block.meta();
            if found.len() >= limit {
                // The limit-th newest distinct trace found so far.
                let mut starts: Vec<UnixNanos> =
                    found.values().map(|(s, _)| s.start_unix_nano).collect();
                let (_, kth, _) = starts.select_nth_unstable_by(limit - 1, |a, b| b.cmp(a));
                if meta.max_end < *kth {
                    break;
                }
            }
            if query.start.is_some_and(|s| meta.max_end < s)
                || query.end.is_some_and(|e| meta.min_start > e)
                || query
                    .service
                    .as_ref()
                    .is_some_and(|s| !meta.services.iter().any(|m| m == s))
            {
                continue;
            }
            let service = query.service.as_deref();
            let mut list = block.newest_trace_summaries(query.start, query.end, limit, &|s| {
                service.is_none_or(|want| s.root_service.as_deref() == Some(want))
            })?;
            list.sort_by_key(|s| std::cmp::Reverse(s.start_unix_nano));
            list.truncate(limit);
            add(&mut found, list);
        }
        let mut ordered: BTreeMap<(std::cmp::Reverse<u64>, TraceId), (TraceSummary, u32)> =
            BTreeMap::new();
        for (id, (summary, n)) in found {
            ordered.insert(
                (std::cmp::Reverse(summary.start_unix_nano.0), id),
                (summary, n),
            );
        }
        let mut out = Vec::with_capacity(limit);
        for ((_, id), (summary, n)) in ordered {
            if out.len() == limit {
                break;
            }
            if n == 1 {
                out.push(summary);
            } else if let Some(trace) = self.trace_blocking(id)? {
                out.push(trace.summary());
            }
        }
        Ok(out)
    }
}

impl Inner {
    /// See [`Store::scan_spans`]. Only traces that start in the range are
    /// decoded: their ids come from the heads' and each block's trace
    /// summaries, whose span counts refuse an oversized range before
    /// anything is decoded.
    /// See [`Store::dependencies`]: block metas, then the spans in memory.
    fn dependencies_blocking(
        &self,
        start: UnixNanos,
        end: UnixNanos,
    ) -> Option<Vec<(String, String, u64)>> {
        use crate::block::MINUTE_NANOS;
        let (first, last) = (start.0 / MINUTE_NANOS, end.0 / MINUTE_NANOS);
        let mut calls: std::collections::BTreeMap<(String, String), u64> =
            std::collections::BTreeMap::new();
        for block in self.catalog.blocks() {
            let meta = block.meta();
            if meta.max_end < start || meta.min_start > end {
                continue;
            }
            let counts = meta.span_counts.as_ref()?;
            if !counts.dependencies_known || counts.dependencies_truncated {
                return None;
            }
            for c in &counts.dependencies {
                if (first..=last).contains(&c.minute) {
                    *calls
                        .entry((c.parent.clone(), c.child.clone()))
                        .or_default() += c.calls;
                }
            }
        }
        {
            let heads = self.heads();
            let generations: Vec<_> = std::iter::once(&heads.active)
                .chain(heads.frozen.iter().map(|f| &f.head))
                .collect();
            // A parent may be in another generation than its child.
            let service_of: HashMap<(TraceId, chaintrace_model::SpanId), &str> = generations
                .iter()
                .flat_map(|head| head.all_spans())
                .map(|s| ((s.trace_id, s.span_id), s.service_name()))
                .collect();
            for span in generations.iter().flat_map(|head| head.all_spans()) {
                let minute = span.start.0 / MINUTE_NANOS;
                if !(first..=last).contains(&minute) {
                    continue;
                }
                let Some(parent) = span.parent_span_id else {
                    continue;
                };
                if let Some(&caller) = service_of.get(&(span.trace_id, parent)) {
                    let callee = span.service_name();
                    if caller != callee {
                        *calls
                            .entry((caller.to_string(), callee.to_string()))
                            .or_default() += 1;
                    }
                }
            }
        }
        Some(
            calls
                .into_iter()
                .map(|((parent, child), n)| (parent, child, n))
                .collect(),
        )
    }

    /// See [`Store::operations`]: block metas, then the spans in memory.
    fn operations_blocking(&self, start: UnixNanos) -> Option<Vec<crate::block::Operation>> {
        use chaintrace_model::SpanKind;
        // Keyed by the kind's name: SpanKind has no order of its own.
        let mut seen: std::collections::BTreeMap<(String, String, &'static str), SpanKind> =
            std::collections::BTreeMap::new();
        for block in self.catalog.blocks() {
            let meta = block.meta();
            if meta.max_end < start {
                continue;
            }
            let counts = meta.span_counts.as_ref()?;
            if !counts.operations_known || counts.operations_truncated {
                return None;
            }
            for op in &counts.operations {
                seen.insert(
                    (op.service.clone(), op.name.clone(), op.kind.as_str()),
                    op.kind,
                );
            }
        }
        {
            let heads = self.heads();
            let generations =
                std::iter::once(&heads.active).chain(heads.frozen.iter().map(|f| &f.head));
            // Spans of one export share a resource: its service is looked
            // up once per run; names are compared before being copied.
            let mut memo: std::collections::HashSet<(&str, &str, SpanKind)> =
                std::collections::HashSet::new();
            for head in generations {
                for span in head.all_spans() {
                    if span.end >= start {
                        memo.insert((span.service_name(), span.name.as_str(), span.kind));
                    }
                }
            }
            for (service, name, kind) in memo {
                seen.insert((service.to_string(), name.to_string(), kind.as_str()), kind);
            }
        }
        Some(
            seen.into_iter()
                .map(|((service, name, _), kind)| crate::block::Operation {
                    service,
                    name,
                    kind,
                })
                .collect(),
        )
    }

    fn scan_spans_blocking(
        &self,
        start: Option<UnixNanos>,
        end: Option<UnixNanos>,
        max_spans: usize,
    ) -> Result<Vec<Span>, StoreError> {
        let in_range = |t: UnixNanos| start.is_none_or(|s| t >= s) && end.is_none_or(|e| t <= e);
        let too_much = || StoreError::TooMuchData { limit: max_spans };
        // Duplicates and spans of a trace outside the range that still
        // start inside it are read before they can be told apart.
        let slack = max_spans.saturating_add(max_spans / 2);
        let query = TraceListQuery {
            limit: usize::MAX,
            service: None,
            start,
            end,
        };
        // Refuse before decoding anything when blocks lying wholly inside
        // the range already hold too much: decoded spans take ~1 KiB each.
        let blocks = self.catalog.blocks();
        let surely_inside: u64 = blocks
            .iter()
            .map(|b| b.meta())
            .filter(|m| {
                start.is_none_or(|s| m.min_start >= s) && end.is_none_or(|e| m.max_end <= e)
            })
            .map(|m| m.span_count)
            .sum();
        if surely_inside > max_spans as u64 {
            return Err(too_much());
        }
        // Candidates: traces that start in range somewhere (a trace starts
        // where its earliest span is, so it starts in range in that
        // generation's summaries).
        let mut candidates: HashSet<TraceId> = HashSet::new();
        let mut expected = 0u64;
        {
            let heads = self.heads();
            let generations =
                std::iter::once(&heads.active).chain(heads.frozen.iter().map(|f| &f.head));
            for head in generations {
                for summary in head.recent_traces(&query) {
                    candidates.insert(summary.trace_id);
                    expected += summary.span_count;
                }
            }
        }
        // A block that ends before the range cannot hold a span of a trace
        // starting in it.
        for block in blocks
            .iter()
            .filter(|b| start.is_none_or(|s| b.meta().max_end >= s))
        {
            for summary in block.trace_summaries(start, end)? {
                candidates.insert(summary.trace_id);
                expected += summary.span_count;
            }
            if expected > slack as u64 {
                return Err(too_much());
            }
        }
        let ids: Vec<TraceId> = candidates.into_iter().collect();
        let gathered = self
            .gather_traces(&ids, start, slack)
            .map_err(|e| match e {
                StoreError::TooMuchData { .. } => too_much(),
                other => other,
            })?;
        let mut out = Vec::new();
        for (_, spans) in gathered {
            let trace_start = spans.iter().map(|s| s.start).min().unwrap_or_default();
            if !in_range(trace_start) {
                continue;
            }
            out.extend(spans);
            if out.len() > max_spans {
                return Err(too_much());
            }
        }
        Ok(out)
    }
}

impl EmbeddedStore {
    /// Opens (creating if needed) the store in `config.dir`: opens the
    /// blocks, replays the WAL segments not yet in a block into the head, and
    /// starts the WAL writer and maintenance threads. A torn or corrupt WAL
    /// tail is truncated with a warning and reported in
    /// [`ReplayReport::truncated_bytes`]; it never fails the open.
    ///
    /// This is blocking file I/O that may take a while on a large WAL, and it
    /// needs no async runtime: from async code, call it through
    /// `tokio::task::spawn_blocking`.
    pub fn open(config: EmbeddedConfig) -> Result<(EmbeddedStore, ReplayReport), StoreError> {
        Self::open_on(config, Disk::Std)
    }

    /// Shows the store's metrics in `registry`: WAL fsyncs and their
    /// latency, head and block sizes, cuts, compactions (and their
    /// duration) and retention deletions. Values are read at each scrape
    /// (file I/O: render the registry where blocking is allowed).
    ///
    /// ```no_run
    /// # fn demo() -> Result<(), chaintrace_store::StoreError> {
    /// use chaintrace_store::{EmbeddedConfig, EmbeddedStore};
    /// let (store, _) = EmbeddedStore::open(EmbeddedConfig::new("./chaintrace-data"))?;
    /// let registry = chaintrace_metrics::Registry::new();
    /// store.register_metrics(&registry);
    /// assert!(registry.render().contains("chaintrace_wal_syncs_total"));
    /// # Ok(())
    /// # }
    /// ```
    pub fn register_metrics(&self, registry: &chaintrace_metrics::Registry) {
        crate::metrics::register(&self.inner, registry);
    }

    /// [`EmbeddedStore::open`] with the WAL's files changed through `disk`:
    /// the power-cut tests pass a disk that loses unsynced bytes. Blocks are
    /// written with `std::fs` either way.
    pub(crate) fn open_on(
        config: EmbeddedConfig,
        disk: Disk,
    ) -> Result<(EmbeddedStore, ReplayReport), StoreError> {
        // Before anything below truncates or deletes what a running store
        // is writing.
        let lock = DirLock::acquire(&config.dir)?;
        let catalog = Catalog::open(&config.blocks_dir())?;
        let covered = catalog.covered_through();
        let mut head = Head::default();
        let mut replayed_through = covered;
        let disk_for_logs = disk.clone();
        let (wal, report) = Wal::open(
            &config.wal_dir(),
            disk,
            config.wal_segment_bytes,
            covered,
            &mut |seq, spans| {
                replayed_through = replayed_through.max(seq);
                head.insert(spans);
            },
        )?;
        let (logs, log_report) =
            LogStore::open(&config.logs_dir(), disk_for_logs, config.log_segment_bytes)?;
        let stats = head.stats();
        tracing::info!(
            dir = %config.dir.display(),
            blocks = catalog.blocks().len(),
            segments = report.segments,
            records = report.records,
            spans = stats.spans,
            duplicates = stats.duplicates,
            traces = stats.traces,
            truncated_bytes = report.truncated_bytes,
            log_records = log_report.spans,
            log_truncated_bytes = log_report.truncated_bytes,
            "opened embedded store"
        );
        let active_since = (!head.is_empty()).then(Instant::now);
        let heads = Heads {
            active: head,
            active_since,
            frozen: Vec::new(),
            sealed_through: covered,
        };
        let inner = Arc::new(Inner {
            sampler: config.sampling.clone().map(|c| Mutex::new(Sampler::new(c))),
            head_bytes: Arc::new(AtomicU64::new(heads.bytes())),
            heads: Arc::new(RwLock::new(heads)),
            config,
            wal,
            logs,
            catalog,
            signal: Arc::new(Signal::default()),
            freed: tokio::sync::Notify::new(),
            waiting_bytes: AtomicU64::new(0),
            freeing: Mutex::new(None),
            compaction_signal: Signal::default(),
            compaction_lock: Mutex::new(()),
            blocks_cut: AtomicU64::new(0),
            compactions: AtomicU64::new(0),
            blocks_deleted: AtomicU64::new(0),
            compaction_seconds: chaintrace_metrics::Histogram::new(
                crate::metrics::COMPACTION_BUCKETS,
            ),
            rollup_minutes: Mutex::new(crate::rollups::MinutesCache::default()),
            _lock: Mutex::new(Some(lock)),
        });
        let store = EmbeddedStore {
            inner,
            maintenance: Mutex::new(Vec::new()),
        };
        let threads: [(&str, MaintenanceLoop); 2] = [
            ("chaintrace-cut", maintenance::run_cuts),
            ("chaintrace-compact", maintenance::run_compactions),
        ];
        for (name, run) in threads {
            let worker = Arc::clone(&store.inner);
            let handle = std::thread::Builder::new()
                .name(name.into())
                .spawn(move || run(&worker))
                .map_err(|e| {
                    StoreError::io(
                        "start the maintenance threads for",
                        &store.inner.config.dir,
                        e,
                    )
                })?;
            store
                .maintenance
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(handle);
        }
        Ok((store, report))
    }

    /// Stops taking appends (they fail with [`StoreError::Closed`]), commits
    /// everything already queued and stops the WAL writer and maintenance
    /// threads. Queries keep working. Dropping the store does the same.
    /// Idempotent.
    pub fn close(&self) {
        self.inner.signal.stop();
        // A merge in progress notices within a few traces and leaves no output.
        self.inner.compaction_signal.stop();
        let handles = std::mem::take(
            &mut *self
                .maintenance
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        for handle in handles {
            let name = handle.thread().name().unwrap_or("maintenance").to_string();
            if handle.join().is_err() {
                tracing::error!(thread = %name, "a maintenance thread panicked");
            }
        }
        self.inner.wal.close();
        self.inner.logs.close();
    }

    /// Like `kill -9` in a test, with `std::mem::forget` of the store
    /// after it: releases the directory lock, as the kernel would, so the
    /// test can open the directory again while nothing else is closed,
    /// flushed or dropped.
    #[cfg(test)]
    pub(crate) fn crash(&self) {
        drop(
            self.inner
                ._lock
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        );
    }

    /// The configuration the store was opened with.
    pub fn config(&self) -> &EmbeddedConfig {
        &self.inner.config
    }

    /// Cuts every span held in memory into blocks now, regardless of size
    /// and age (tests, shutdown, benchmarks). Blocking.
    pub fn flush(&self) -> Result<(), StoreError> {
        maintenance::cut(&self.inner, true)
    }

    /// Runs one compaction pass now and returns how many merges it made. Blocking.
    pub fn compact(&self) -> Result<u64, StoreError> {
        maintenance::compact(&self.inner, &|| false)
    }

    /// Applies retention now and returns how many blocks it deleted. Blocking.
    pub fn apply_retention(&self) -> Result<u64, StoreError> {
        maintenance::retention(&self.inner)
    }
}

impl Drop for EmbeddedStore {
    fn drop(&mut self) {
        self.close();
    }
}

impl fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmbeddedStore")
            .field("dir", &self.inner.config.dir)
            .finish_non_exhaustive()
    }
}

#[async_trait::async_trait]
impl Store for EmbeddedStore {
    /// Durable on `Ok`; visible to queries from then on, not before. Refused
    /// with [`StoreError::Overloaded`] while the memory budget is used up.
    async fn append(&self, spans: Vec<Span>) -> Result<(), StoreError> {
        if spans.is_empty() {
            return Ok(());
        }
        let inner = &self.inner;
        inner.wait_for_room(&spans).await?;
        let record = wal::encode_batch(&spans)?;
        let heads = Arc::clone(&inner.heads);
        let head_bytes = Arc::clone(&inner.head_bytes);
        let signal = Arc::clone(&inner.signal);
        let cut_at = inner.config.block_max_bytes;
        let insert = Box::new(move |_position| {
            let mut heads = heads.write().unwrap_or_else(PoisonError::into_inner);
            let before = heads.active.stats().bytes;
            heads.active.insert(spans);
            let after = heads.active.stats().bytes;
            heads.active_since.get_or_insert_with(Instant::now);
            drop(heads);
            head_bytes.fetch_add(after - before, Ordering::Relaxed);
            if after >= cut_at {
                signal.wake();
            }
        });
        let durable = inner.wal.submit(record, Some(insert))?;
        durable.await.map_err(|_| {
            StoreError::Closed("the WAL writer stopped before confirming the write")
        })??;
        Ok(())
    }

    async fn trace(&self, id: TraceId) -> Result<Option<Trace>, StoreError> {
        let inner = Arc::clone(&self.inner);
        blocking(move || inner.trace_blocking(id)).await
    }

    async fn recent_traces(&self, query: &TraceListQuery) -> Result<Vec<TraceSummary>, StoreError> {
        let inner = Arc::clone(&self.inner);
        let query = query.clone();
        blocking(move || inner.recent_traces_blocking(&query)).await
    }

    async fn scan_spans(
        &self,
        start: Option<UnixNanos>,
        end: Option<UnixNanos>,
        max_spans: usize,
    ) -> Result<Vec<Span>, StoreError> {
        let inner = Arc::clone(&self.inner);
        blocking(move || {
            let spans = inner.scan_spans_blocking(start, end, max_spans);
            // Reading the blocks of the range took more than the spans.
            chaintrace_model::memory::release_unused();
            spans
        })
        .await
    }

    async fn stream_traces(
        &self,
        start: Option<UnixNanos>,
        end: Option<UnixNanos>,
        mut visit: Box<dyn FnMut(Vec<Span>) -> bool + Send>,
    ) -> Result<crate::StreamStats, StoreError> {
        let inner = Arc::clone(&self.inner);
        blocking(move || {
            let stats = inner.stream_traces_blocking(start, end, &mut *visit);
            // Every block in range was read a batch at a time.
            chaintrace_model::memory::release_unused();
            stats
        })
        .await
    }

    async fn rollups(
        &self,
        from: UnixNanos,
        to: UnixNanos,
        step: chaintrace_model::rollup::Step,
    ) -> Result<Option<crate::RollupRead>, StoreError> {
        let inner = Arc::clone(&self.inner);
        blocking(move || inner.rollups_blocking(from, to, step)).await
    }

    async fn stream_columns(
        &self,
        start: Option<UnixNanos>,
        end: Option<UnixNanos>,
        columns: Vec<chaintrace_model::SpanColumn>,
        mut visit: Box<dyn FnMut(arrow_array::RecordBatch) -> bool + Send>,
    ) -> Result<Option<crate::StreamStats>, StoreError> {
        let inner = Arc::clone(&self.inner);
        blocking(move || {
            let stats = inner.stream_columns_blocking(start, end, &columns, &mut *visit);
            chaintrace_model::memory::release_unused();
            stats.map(Some)
        })
        .await
    }

    async fn search(
        &self,
        request: SearchRequest,
        mut visit: Box<dyn FnMut(Trace) -> bool + Send>,
    ) -> Result<SearchStats, StoreError> {
        let inner = Arc::clone(&self.inner);
        blocking(move || {
            let stats = inner.search_blocking(&request, &mut *visit);
            // A walk reads up to thousands of whole traces.
            chaintrace_model::memory::release_unused();
            stats
        })
        .await
    }

    async fn operations(
        &self,
        start: UnixNanos,
    ) -> Result<Option<Vec<crate::block::Operation>>, StoreError> {
        let inner = Arc::clone(&self.inner);
        blocking(move || Ok(inner.operations_blocking(start))).await
    }

    async fn dependencies(
        &self,
        start: UnixNanos,
        end: UnixNanos,
    ) -> Result<Option<Vec<(String, String, u64)>>, StoreError> {
        let inner = Arc::clone(&self.inner);
        blocking(move || Ok(inner.dependencies_blocking(start, end))).await
    }

    async fn append_logs(&self, logs: Vec<LogRecord>) -> Result<(), StoreError> {
        if self.inner.signal.is_stopped() {
            return Err(StoreError::Closed("the store is closing"));
        }
        self.inner.logs.append(logs).await
    }

    async fn logs(&self, query: LogQuery) -> Result<LogPage, StoreError> {
        let inner = Arc::clone(&self.inner);
        blocking(move || inner.logs.query(&query)).await
    }

    async fn stats(&self) -> Result<StoreStats, StoreError> {
        // Summing block sizes walks the blocks' directories: file I/O.
        let inner = Arc::clone(&self.inner);
        blocking(move || Ok(inner.stats_blocking())).await
    }
}

impl Inner {
    pub(crate) fn stats_blocking(&self) -> StoreStats {
        let inner = self;
        let (active, frozen) = {
            let heads = inner.heads();
            let frozen: Vec<_> = heads.frozen.iter().map(|f| f.head.stats()).collect();
            (heads.active.stats(), frozen)
        };
        let wal = inner.wal.stats();
        let logs = inner.logs.stats();
        let blocks = inner.catalog.blocks();
        StoreStats {
            traces: active.traces + frozen.iter().map(|f| f.traces).sum::<u64>(),
            spans: active.spans + frozen.iter().map(|f| f.spans).sum::<u64>(),
            wal_bytes: wal.bytes,
            wal_segments: wal.segments,
            head_bytes: active.bytes + frozen.iter().map(|f| f.bytes).sum::<u64>(),
            duplicate_spans: active.duplicates + frozen.iter().map(|f| f.duplicates).sum::<u64>(),
            wal_syncs: wal.syncs,
            blocks: blocks.len() as u64,
            block_spans: blocks.iter().map(|b| b.meta().span_count).sum(),
            block_bytes: blocks
                .iter()
                .map(|b| crate::catalog::disk_bytes(b.dir()))
                .sum(),
            blocks_cut: inner.blocks_cut.load(Ordering::Relaxed),
            compactions: inner.compactions.load(Ordering::Relaxed),
            compacting: inner.compaction_lock.try_lock().is_err(),
            blocks_deleted: inner.blocks_deleted.load(Ordering::Relaxed),
            log_records: logs.records,
            log_bytes: logs.bytes,
            sampling: self
                .sampler
                .as_ref()
                .map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).stats()),
        }
    }
}

/// `bytes` for a message: MiB from one MiB up, KiB below.
fn human_bytes(bytes: u64) -> String {
    if bytes >= 1 << 20 {
        format!("{} MiB", bytes >> 20)
    } else {
        format!("{} KiB", bytes.div_ceil(1024))
    }
}

/// Runs blocking store work off the async threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result,
        Err(e) if e.is_panic() => {
            let panic = e.into_panic();
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic without a message".to_string());
            tracing::error!(panic = %what, "a store query panicked");
            Err(StoreError::Internal(format!(
                "a store query panicked: {what}"
            )))
        }
        Err(_) => Err(StoreError::Closed(
            "a query task was cancelled by runtime shutdown",
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::fs::{self, OpenOptions};
    use std::io::Write;
    use std::path::{Path, PathBuf};

    use chaintrace_model::UnixNanos;

    use super::*;
    use crate::test_support::{span, trace_id};

    fn open(dir: &Path) -> (EmbeddedStore, ReplayReport) {
        EmbeddedStore::open(EmbeddedConfig::new(dir)).unwrap()
    }

    fn segments(dir: &Path) -> Vec<PathBuf> {
        let mut paths: Vec<PathBuf> = fs::read_dir(dir.join("wal"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "wal"))
            .collect();
        paths.sort();
        paths
    }

    /// Offsets of the records in a segment file, read with the real framing.
    fn record_offsets(path: &Path) -> Vec<u64> {
        let bytes = fs::read(path).unwrap();
        let mut offsets = Vec::new();
        let mut offset = 8u64;
        while (offset as usize) < bytes.len() {
            offsets.push(offset);
            let len = u32::from_le_bytes(bytes[offset as usize..][..4].try_into().unwrap());
            offset += 8 + u64::from(len);
        }
        offsets
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn operations_come_from_memory_and_block_metas_without_reading_spans() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = open(dir.path());
        let mut client = span(1, 2, Some(1), "gateway", "call_llm", 150, 190);
        client.kind = chaintrace_model::SpanKind::Client;
        store
            .append(vec![
                span(1, 1, None, "gateway", "handle", 100, 200),
                client,
                span(2, 1, None, "llm", "chat", 300, 400),
            ])
            .await
            .unwrap();
        let names = |ops: Vec<crate::block::Operation>| -> Vec<String> {
            ops.iter()
                .map(|o| format!("{}/{}/{}", o.service, o.name, o.kind.as_str()))
                .collect()
        };
        let want = [
            "gateway/call_llm/client",
            "gateway/handle/internal",
            "llm/chat/internal",
        ];
        // From memory.
        let ops = store.operations(UnixNanos(0)).await.unwrap().unwrap();
        assert_eq!(names(ops), want);
        // Cut into a block: from its meta, the same.
        tokio::task::block_in_place(|| store.flush()).unwrap();
        assert_eq!(store.stats().await.unwrap().blocks, 1);
        let ops = store.operations(UnixNanos(0)).await.unwrap().unwrap();
        assert_eq!(names(ops), want);
        // A block whose data ended before the start is left out.
        let later = store.operations(UnixNanos(10_000)).await.unwrap().unwrap();
        assert!(later.is_empty(), "{later:?}");
    }

    /// Calls between services by definition: every span whose parent is in
    /// `spans` with another service, counted at its start's minute.
    pub(super) fn brute_force_calls(
        spans: &[Span],
        start: UnixNanos,
        end: UnixNanos,
    ) -> Vec<(String, String, u64)> {
        let minute = |t: UnixNanos| t.0 / crate::block::MINUTE_NANOS;
        let mut calls: BTreeMap<(String, String), u64> = BTreeMap::new();
        for child in spans {
            if !(minute(start)..=minute(end)).contains(&minute(child.start)) {
                continue;
            }
            let parent = spans
                .iter()
                .find(|p| p.trace_id == child.trace_id && Some(p.span_id) == child.parent_span_id);
            if let Some(parent) = parent {
                if parent.service_name() != child.service_name() {
                    *calls
                        .entry((
                            parent.service_name().to_string(),
                            child.service_name().to_string(),
                        ))
                        .or_default() += 1;
                }
            }
        }
        calls.into_iter().map(|((p, c), n)| (p, c, n)).collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn calls_between_services_come_from_memory_and_block_metas() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = open(dir.path());
        let m = crate::block::MINUTE_NANOS;
        let at = |minute: u64, ms: u64| minute * m + ms * 1_000_000;
        let spans = vec![
            // Minute 0: gateway → llm.
            span(1, 1, None, "gateway", "handle", at(0, 0), at(0, 90)),
            span(1, 2, Some(1), "llm", "chat", at(0, 10), at(0, 80)),
            // Minute 2: gateway → llm → vector, and a same-service child.
            span(2, 1, None, "gateway", "handle", at(2, 0), at(2, 90)),
            span(2, 2, Some(1), "llm", "chat", at(2, 10), at(2, 80)),
            span(2, 3, Some(2), "vector", "search", at(2, 20), at(2, 30)),
            span(2, 4, Some(1), "gateway", "auth", at(2, 1), at(2, 5)),
            // An orphan: its parent is in no block and not in memory.
            span(3, 2, Some(9), "llm", "chat", at(2, 10), at(2, 20)),
        ];
        store.append(spans.clone()).await.unwrap();
        let windows = [
            (UnixNanos(0), UnixNanos(at(0, 999))),
            (UnixNanos(at(1, 0)), UnixNanos(at(5, 0))),
            (UnixNanos(0), UnixNanos(at(5, 0))),
            (UnixNanos(at(3, 0)), UnixNanos(at(9, 0))),
        ];
        async fn check(
            store: &EmbeddedStore,
            spans: &[Span],
            windows: &[(UnixNanos, UnixNanos)],
            from: &str,
        ) {
            for &(start, end) in windows {
                let got = store.dependencies(start, end).await.unwrap();
                let want = brute_force_calls(spans, start, end);
                assert_eq!(got.as_ref(), Some(&want), "{from}, {start:?}..{end:?}");
            }
        }
        check(&store, &spans, &windows, "memory").await;
        assert_eq!(
            store
                .dependencies(UnixNanos(0), UnixNanos(at(5, 0)))
                .await
                .unwrap(),
            Some(vec![
                ("gateway".into(), "llm".into(), 2),
                ("llm".into(), "vector".into(), 1)
            ])
        );
        tokio::task::block_in_place(|| store.flush()).unwrap();
        assert_eq!(store.stats().await.unwrap().blocks, 1);
        assert_eq!(store.stats().await.unwrap().spans, 0, "all in the block");
        check(&store, &spans, &windows, "a block's meta").await;
    }

    /// Three single-span traces, one batch each.
    async fn append_three(store: &EmbeddedStore) {
        for t in 1..=3u8 {
            let start = u64::from(t) * 100;
            store
                .append(vec![span(t, 1, None, "rag", "chain", start, start + 50)])
                .await
                .unwrap();
        }
    }

    async fn trace_ids(store: &EmbeddedStore) -> Vec<u8> {
        let q = TraceListQuery {
            limit: 1000,
            ..Default::default()
        };
        let mut ids: Vec<u8> = store
            .recent_traces(&q)
            .await
            .unwrap()
            .iter()
            .map(|s| s.trace_id.0[0])
            .collect();
        ids.sort_unstable();
        ids
    }

    /// A budget that one batch of `big` spans fills, with room for a
    /// one-span batch to wait; blocks are cut by size only when `cuts`.
    /// A budget that `batch(1, 8)` fills to within half a span, so one
    /// more span is over it; a quarter of it (the waiting share) holds
    /// two spans.
    fn tight_budget(dir: &Path, overload_wait: Duration, cuts: bool) -> EmbeddedConfig {
        let one = crate::head::estimate_span_bytes(&span(9, 1, None, "rag", "chain", 10, 90));
        let eight: u64 = batch(1, 8)
            .iter()
            .map(crate::head::estimate_span_bytes)
            .sum();
        EmbeddedConfig {
            max_memory: eight + one / 2,
            block_max_bytes: if cuts { 1 } else { u64::MAX },
            block_max_age: Duration::from_secs(3600),
            overload_wait,
            retention: None,
            ..EmbeddedConfig::new(dir)
        }
    }

    /// Trace `t` with `n` spans: a root and its children.
    fn batch(t: u8, n: u8) -> Vec<Span> {
        (1..=n)
            .map(|s| span(t, s, (s > 1).then_some(1), "rag", "chain", 10, 90))
            .collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_append_over_budget_waits_for_the_cut_that_frees_memory() {
        let dir = tempfile::tempdir().unwrap();
        // The wait is long enough that only a hang would reach it: the
        // append must be admitted by the cut it wakes, not by the clock.
        let config = tight_budget(dir.path(), Duration::from_secs(600), true);
        let (store, _) = EmbeddedStore::open(config).unwrap();
        store.append(batch(1, 8)).await.unwrap();
        // Over budget now: this append waits, wakes maintenance, and goes in
        // once the first batch is cut into a block.
        store.append(batch(2, 1)).await.unwrap();
        assert_eq!(trace_ids(&store).await, [1, 2]);
        assert!(store.stats().await.unwrap().blocks >= 1);
    }

    #[tokio::test]
    async fn an_append_over_budget_is_refused_when_nothing_frees_memory() {
        let dir = tempfile::tempdir().unwrap();
        let config = tight_budget(dir.path(), Duration::from_millis(50), false);
        let (store, _) = EmbeddedStore::open(config).unwrap();
        store.append(batch(1, 8)).await.unwrap();
        match store.append(batch(2, 1)).await {
            Err(StoreError::Overloaded(m)) => assert!(m.contains("budget"), "{m}"),
            other => panic!("expected Overloaded, got {other:?}"),
        }
        assert_eq!(
            trace_ids(&store).await,
            [1],
            "the refused batch is not stored"
        );
    }

    #[tokio::test]
    async fn a_batch_too_big_to_wait_is_refused_at_once() {
        let dir = tempfile::tempdir().unwrap();
        // Nothing would ever free memory: a wait would outlast the timeout.
        let config = tight_budget(dir.path(), Duration::from_secs(600), false);
        let (store, _) = EmbeddedStore::open(config).unwrap();
        store.append(batch(1, 8)).await.unwrap();
        // Five spans are more than the waiting share (a quarter of the budget).
        let answer = tokio::time::timeout(Duration::from_secs(60), store.append(batch(2, 5)))
            .await
            .expect("refused at once, not after waiting");
        assert!(
            matches!(answer, Err(StoreError::Overloaded(_))),
            "{answer:?}"
        );
        assert_eq!(store.inner.waiting_bytes.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn a_batch_counts_before_it_is_admitted() {
        let dir = tempfile::tempdir().unwrap();
        let config = tight_budget(dir.path(), Duration::from_millis(50), false);
        let (store, _) = EmbeddedStore::open(config).unwrap();
        // Bigger than the whole budget: never admissible, refused at once
        // as such (not "try later", which an exporter would retry forever).
        match store.append(batch(1, 9)).await {
            Err(e @ StoreError::OverMemoryBudget { .. }) => {
                assert!(!e.is_retryable());
                assert!(e.to_string().contains("send smaller batches"), "{e}");
            }
            other => panic!("expected OverMemoryBudget, got {other:?}"),
        }
        // Memory holds a little, well under the budget; a batch that fits
        // only if it is not counted is not let in.
        store.append(batch(2, 2)).await.unwrap();
        assert!(matches!(
            store.append(batch(3, 7)).await,
            Err(StoreError::Overloaded(_))
        ));
        store.append(batch(4, 4)).await.unwrap();
        assert_eq!(trace_ids(&store).await, [2, 4]);
    }

    #[tokio::test]
    async fn compaction_yields_while_ingest_is_short_of_room() {
        let dir = tempfile::tempdir().unwrap();
        let config = tight_budget(dir.path(), Duration::from_millis(10), false);
        let (store, _) = EmbeddedStore::open(config).unwrap();
        let asked = std::cell::Cell::new(0);
        let stop_on_third = || {
            asked.set(asked.get() + 1);
            asked.get() >= 3
        };
        // Room to spare: no pause at all.
        store.inner.yield_to_ingest(&stop_on_third);
        assert_eq!(asked.get(), 0, "went on without waiting");
        // Over half the budget, with nothing cutting: it waits until told
        // to stop.
        store.append(batch(1, 8)).await.unwrap();
        asked.set(0);
        store.inner.yield_to_ingest(&stop_on_third);
        assert_eq!(asked.get(), 3, "kept waiting while short of room");
    }

    #[tokio::test]
    async fn replay_after_clean_close() {
        let dir = tempfile::tempdir().unwrap();
        let (store, report) = open(dir.path());
        assert_eq!(report, ReplayReport::default());
        let batch = vec![
            span(1, 1, None, "rag", "chain", 10, 90),
            span(1, 2, Some(1), "rag", "embed", 20, 30),
        ];
        store.append(batch.clone()).await.unwrap();
        assert_eq!(
            store.trace(trace_id(1)).await.unwrap(),
            Some(Trace::new(trace_id(1), batch.clone()))
        );
        store.close();
        assert!(matches!(
            store
                .append(vec![span(2, 1, None, "rag", "late", 0, 1)])
                .await,
            Err(StoreError::Closed(_))
        ));
        drop(store);

        let (store, report) = open(dir.path());
        assert_eq!((report.segments, report.records, report.spans), (1, 1, 2));
        assert_eq!(report.truncated_bytes, 0);
        assert_eq!(
            store.trace(trace_id(1)).await.unwrap(),
            Some(Trace::new(trace_id(1), batch))
        );
        assert_eq!(store.trace(trace_id(2)).await.unwrap(), None);
    }

    #[tokio::test]
    async fn replay_after_crash_without_close() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = open(dir.path());
        append_three(&store).await;
        // Like kill -9: no close, no Drop, the writer thread is left parked.
        store.crash();
        std::mem::forget(store);

        let (store, report) = open(dir.path());
        assert_eq!(report.records, 3);
        assert_eq!(trace_ids(&store).await, vec![1, 2, 3]);
    }

    #[tokio::test]
    async fn torn_tail_is_truncated_and_later_appends_replay() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = open(dir.path());
        append_three(&store).await;
        drop(store);
        let path = segments(dir.path()).pop().unwrap();
        let good_len = fs::metadata(&path).unwrap().len();

        // Half of a real record, as a crash mid-write leaves it.
        let record = wal::encode_batch(&[span(9, 1, None, "rag", "torn", 0, 1)]).unwrap();
        let half = &record.as_bytes()[..record.as_bytes().len() / 2];
        OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(half)
            .unwrap();

        let (store, report) = open(dir.path());
        assert_eq!(report.records, 3);
        assert_eq!(report.truncated_bytes, half.len() as u64);
        assert_eq!(fs::metadata(&path).unwrap().len(), good_len);
        assert_eq!(trace_ids(&store).await, vec![1, 2, 3]);
        store
            .append(vec![span(4, 1, None, "rag", "after", 400, 450)])
            .await
            .unwrap();
        drop(store);

        // Garbage this time; the append made after the first repair survives.
        OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(&[0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 5, 6, 7])
            .unwrap();
        let (store, report) = open(dir.path());
        assert_eq!(report.records, 4);
        assert_eq!(report.truncated_bytes, 11);
        assert_eq!(trace_ids(&store).await, vec![1, 2, 3, 4]);
        drop(store);

        let (store, report) = open(dir.path());
        assert_eq!((report.records, report.truncated_bytes), (4, 0));
        assert_eq!(trace_ids(&store).await, vec![1, 2, 3, 4]);
    }

    #[tokio::test]
    async fn corrupt_crc_in_the_middle_keeps_the_records_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = open(dir.path());
        append_three(&store).await;
        drop(store);
        let path = segments(dir.path()).pop().unwrap();
        let offsets = record_offsets(&path);
        assert_eq!(offsets.len(), 3);
        let mut bytes = fs::read(&path).unwrap();
        // Flip one payload byte of the middle record.
        bytes[offsets[1] as usize + 12] ^= 0x40;
        fs::write(&path, &bytes).unwrap();

        let (store, report) = open(dir.path());
        assert_eq!(report.records, 1);
        assert_eq!(report.truncated_bytes, bytes.len() as u64 - offsets[1]);
        assert_eq!(fs::metadata(&path).unwrap().len(), offsets[1]);
        assert_eq!(trace_ids(&store).await, vec![1]);
    }

    #[tokio::test]
    async fn corruption_in_an_older_segment_keeps_later_segments() {
        let dir = tempfile::tempdir().unwrap();
        let config = EmbeddedConfig {
            wal_segment_bytes: 1, // one record per segment
            ..EmbeddedConfig::new(dir.path())
        };
        let (store, _) = EmbeddedStore::open(config.clone()).unwrap();
        append_three(&store).await;
        drop(store);
        let paths = segments(dir.path());
        assert_eq!(paths.len(), 3);
        let mut bytes = fs::read(&paths[1]).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        fs::write(&paths[1], &bytes).unwrap();

        let (store, report) = EmbeddedStore::open(config).unwrap();
        assert_eq!(report.segments, 3);
        assert_eq!(report.records, 2);
        assert_eq!(fs::metadata(&paths[1]).unwrap().len(), 8);
        assert_eq!(trace_ids(&store).await, vec![1, 3]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_appends_are_all_durable() {
        const TASKS: u8 = 50;
        const BATCHES: u8 = 20;
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = open(dir.path());
        let store = Arc::new(store);
        let mut tasks = Vec::new();
        for t in 0..TASKS {
            let store = Arc::clone(&store);
            tasks.push(tokio::spawn(async move {
                for b in 0..BATCHES {
                    // Trace per task, one span per batch (span id = batch + 1).
                    let start = u64::from(b) * 10 + 1;
                    let parent = (b > 0).then_some(1);
                    store
                        .append(vec![span(
                            t + 1,
                            b + 1,
                            parent,
                            "rag",
                            "step",
                            start,
                            start + 5,
                        )])
                        .await
                        .unwrap();
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        let stats = store.stats().await.unwrap();
        assert_eq!(stats.spans, u64::from(TASKS) * u64::from(BATCHES));
        assert_eq!(stats.traces, u64::from(TASKS));
        assert!(stats.wal_syncs >= 1);
        // No close: durability must not depend on it.
        store.crash();
        std::mem::forget(store);

        let (store, report) = open(dir.path());
        assert_eq!(report.records, u64::from(TASKS) * u64::from(BATCHES));
        let stats = store.stats().await.unwrap();
        assert_eq!(stats.spans, u64::from(TASKS) * u64::from(BATCHES));
        assert_eq!(stats.traces, u64::from(TASKS));
        for t in 1..=TASKS {
            let trace = store.trace(trace_id(t)).await.unwrap().unwrap();
            assert_eq!(trace.spans.len(), usize::from(BATCHES));
        }
    }

    #[tokio::test]
    async fn duplicates_are_visible_once_also_after_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = open(dir.path());
        let root = span(1, 1, None, "rag", "chain", 10, 90);
        let child = span(1, 2, Some(1), "rag", "embed", 20, 30);
        store
            .append(vec![root.clone(), root.clone(), child.clone()])
            .await
            .unwrap();
        // The exporter retried the whole batch.
        store
            .append(vec![root.clone(), child.clone()])
            .await
            .unwrap();
        let expected = Some(Trace::new(trace_id(1), vec![root, child]));
        assert_eq!(store.trace(trace_id(1)).await.unwrap(), expected);
        let stats = store.stats().await.unwrap();
        assert_eq!((stats.spans, stats.duplicate_spans), (2, 3));
        drop(store);

        let (store, report) = open(dir.path());
        assert_eq!(report.spans, 5);
        assert_eq!(store.trace(trace_id(1)).await.unwrap(), expected);
        let summary = &store
            .recent_traces(&TraceListQuery::default())
            .await
            .unwrap()[0];
        assert_eq!(summary.span_count, 2);
        assert_eq!(store.stats().await.unwrap().spans, 2);
    }

    #[tokio::test]
    async fn recent_traces_through_the_trait() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = open(dir.path());
        let store: Arc<dyn Store> = Arc::new(store);
        store
            .append(vec![
                span(1, 1, None, "rag", "a", 100, 200),
                span(2, 1, None, "billing", "b", 300, 310),
                span(3, 1, None, "rag", "c", 200, 900),
            ])
            .await
            .unwrap();
        let list = |q: TraceListQuery| {
            let store = Arc::clone(&store);
            async move {
                store
                    .recent_traces(&q)
                    .await
                    .unwrap()
                    .iter()
                    .map(|s| s.trace_id.0[0])
                    .collect::<Vec<u8>>()
            }
        };
        assert_eq!(list(TraceListQuery::default()).await, vec![2, 3, 1]);
        let q = TraceListQuery {
            limit: 1,
            service: Some("rag".into()),
            ..Default::default()
        };
        assert_eq!(list(q).await, vec![3]);
        let q = TraceListQuery {
            end: Some(UnixNanos(250)),
            ..Default::default()
        };
        assert_eq!(list(q).await, vec![3, 1]);
        let summary = &store
            .recent_traces(&TraceListQuery::default())
            .await
            .unwrap()[1];
        assert_eq!(summary.root_service.as_deref(), Some("rag"));
        assert_eq!(summary.root_name.as_deref(), Some("c"));
        assert_eq!(summary.duration_nano.0, 700);
    }

    #[tokio::test]
    async fn tiny_segments_rotate_and_replay_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let config = EmbeddedConfig {
            wal_segment_bytes: 400,
            ..EmbeddedConfig::new(dir.path())
        };
        let (store, _) = EmbeddedStore::open(config.clone()).unwrap();
        for b in 0..30u8 {
            // Every batch also repeats span 1, so replay order matters for
            // which copy wins: the first one (name "copy 0").
            let start = u64::from(b) * 10 + 1;
            store
                .append(vec![
                    span(1, 1, None, "rag", &format!("copy {b}"), 1, 1000),
                    span(1, b + 2, Some(1), "rag", "step", start, start + 5),
                ])
                .await
                .unwrap();
        }
        let stats = store.stats().await.unwrap();
        assert!(stats.wal_segments > 5, "{stats:?}");
        let on_disk: u64 = segments(dir.path())
            .iter()
            .map(|p| fs::metadata(p).unwrap().len())
            .sum();
        assert_eq!(stats.wal_bytes, on_disk);
        assert_eq!(stats.wal_segments, segments(dir.path()).len() as u64);
        for path in segments(dir.path()) {
            let len = fs::metadata(&path).unwrap().len();
            assert!(len <= 400, "{} has {len} bytes", path.display());
        }
        let before = store.trace(trace_id(1)).await.unwrap();
        drop(store);

        let (store, report) = EmbeddedStore::open(config).unwrap();
        assert_eq!(report.segments, stats.wal_segments);
        assert_eq!(report.records, 30);
        let after = store.trace(trace_id(1)).await.unwrap();
        assert_eq!(after, before);
        let after = after.unwrap();
        assert_eq!(after.spans.len(), 31);
        assert_eq!(after.root().unwrap().name, "copy 0");
        let stats_after = store.stats().await.unwrap();
        assert_eq!(stats_after.wal_bytes, stats.wal_bytes);
        assert_eq!(stats_after.wal_segments, stats.wal_segments);
    }
}

#[cfg(test)]
mod conformance_tests {
    use std::path::PathBuf;

    use super::*;
    use crate::conformance::{run_all, Harness};

    struct EmbeddedHarness {
        dir: PathBuf,
    }

    #[async_trait::async_trait]
    impl Harness for EmbeddedHarness {
        type S = EmbeddedStore;

        async fn open(&self) -> EmbeddedStore {
            EmbeddedStore::open(EmbeddedConfig::new(&self.dir))
                .unwrap()
                .0
        }

        async fn persist(&self, store: &EmbeddedStore) {
            tokio::task::block_in_place(|| store.flush()).unwrap();
            assert_eq!(
                store.stats().await.unwrap().spans,
                0,
                "flush leaves nothing in memory"
            );
        }

        async fn retain(&self, store: &EmbeddedStore) {
            tokio::task::block_in_place(|| store.apply_retention()).unwrap();
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn embedded_store_passes_the_conformance_suite() {
        let dir = tempfile::tempdir().unwrap();
        run_all(&EmbeddedHarness {
            dir: dir.path().to_path_buf(),
        })
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn compaction_merges_blocks_and_drops_duplicates() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = EmbeddedConfig::new(dir.path());
        config.compaction_min_blocks = 3;
        config.compaction_fresh_blocks = 0;
        let (store, _) = EmbeddedStore::open(config.clone()).unwrap();
        let base = UnixNanos::now().0 - 3_600_000_000_000;
        let span = |t: u8, s: u8, parent: Option<u8>| {
            crate::test_support::span(t, s, parent, "rag", "op", base + u64::from(s), base + 100)
        };
        for round in 0..4u8 {
            // Each block holds trace `round` and a retried copy of trace 0's root.
            store
                .append(vec![
                    span(round + 1, 1, None),
                    span(round + 1, 2, Some(1)),
                    span(1, 1, None),
                ])
                .await
                .unwrap();
            tokio::task::block_in_place(|| store.flush()).unwrap();
        }
        assert_eq!(store.stats().await.unwrap().blocks, 4);
        let merges = tokio::task::block_in_place(|| store.compact()).unwrap();
        assert_eq!(merges, 1);
        let stats = store.stats().await.unwrap();
        assert_eq!(stats.blocks, 1, "{stats:?}");
        assert_eq!(
            stats.block_spans, 8,
            "duplicates dropped on merge: {stats:?}"
        );
        for t in 1..=4u8 {
            let trace = store
                .trace(crate::test_support::trace_id(t))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(trace.spans.len(), 2, "trace {t}");
        }
        drop(store);
        // After reopen: one block, nothing replayed twice, same answers.
        let (store, report) = EmbeddedStore::open(config).unwrap();
        assert_eq!(report.spans, 0, "the WAL was emptied by the cuts");
        assert_eq!(store.stats().await.unwrap().blocks, 1);
        assert_eq!(
            store
                .trace(crate::test_support::trace_id(3))
                .await
                .unwrap()
                .unwrap()
                .spans
                .len(),
            2
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn compaction_merges_blocks_of_older_formats_into_a_current_one() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = EmbeddedConfig::new(dir.path());
        config.compaction_min_blocks = 2;
        config.compaction_fresh_blocks = 0;
        config.retention = None; // the fixture's spans are from 2023
        config.maintenance_interval = Duration::from_secs(3600);
        // The vparquet2 fixture holds the vparquet1 fixture's spans and one
        // more trace: compaction must show each span once.
        let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/block/fixtures");
        let mut copied = Vec::new();
        for (version, files) in [
            ("v1", &["data.parquet", "traces.parquet", "meta.json"][..]),
            (
                "v2",
                &[
                    "data.parquet",
                    "resources.parquet",
                    "traces.parquet",
                    "meta.json",
                ][..],
            ),
        ] {
            let name = format!("b-{version}-fixture");
            let to = config.blocks_dir().join(&name);
            std::fs::create_dir_all(&to).unwrap();
            for f in files {
                std::fs::copy(fixtures.join(version).join(&name).join(f), to.join(f)).unwrap();
            }
            copied.push(to);
        }
        let (store, _) = EmbeddedStore::open(config.clone()).unwrap();
        let t = 1_700_000_000_000_000_000;
        let late = crate::test_support::span(0xab, 1, None, "rag", "late", t, t + 10);
        store.append(vec![late.clone()]).await.unwrap();
        tokio::task::block_in_place(|| store.flush()).unwrap();
        assert_eq!(store.stats().await.unwrap().blocks, 3);
        // Older blocks keep no operations or calls: the store says it cannot tell.
        assert!(store.operations(UnixNanos(0)).await.unwrap().is_none());
        let all_time = (UnixNanos(0), UnixNanos(u64::MAX));
        assert!(store
            .dependencies(all_time.0, all_time.1)
            .await
            .unwrap()
            .is_none());
        assert_eq!(tokio::task::block_in_place(|| store.compact()).unwrap(), 1);
        let stats = store.stats().await.unwrap();
        assert_eq!(stats.blocks, 1);
        assert!(
            copied.iter().all(|b| !b.exists()),
            "the old inputs were replaced"
        );
        let mut expected = crate::block::testing::fixture_spans_v2();
        expected.push(late);
        // The merged block, written by this build (streaming, as compaction
        // writes), keeps every operation of its spans.
        let ops = store
            .operations(UnixNanos(0))
            .await
            .unwrap()
            .expect("a current block keeps its operations");
        let mut want: Vec<(String, String, &str)> = expected
            .iter()
            .map(|s| {
                (
                    s.service_name().to_string(),
                    s.name.to_string(),
                    s.kind.as_str(),
                )
            })
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        want.sort();
        let got: Vec<(String, String, &str)> = ops
            .iter()
            .map(|o| (o.service.clone(), o.name.clone(), o.kind.as_str()))
            .collect();
        assert_eq!(got, want);
        // And its calls between services, as counted from its spans.
        let calls = store
            .dependencies(all_time.0, all_time.1)
            .await
            .unwrap()
            .expect("a current block keeps its calls");
        assert_eq!(
            calls,
            super::tests::brute_force_calls(&expected, all_time.0, all_time.1)
        );
        for id in expected
            .iter()
            .map(|s| s.trace_id)
            .collect::<std::collections::BTreeSet<_>>()
        {
            let mut want: Vec<&Span> = expected.iter().filter(|s| s.trace_id == id).collect();
            want.sort_by_key(|s| (s.start, s.span_id));
            let trace = store.trace(id).await.unwrap().unwrap();
            assert_eq!(trace.spans.iter().collect::<Vec<_>>(), want);
        }
        let merged: Vec<_> = std::fs::read_dir(config.blocks_dir())
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(merged.len(), 1, "{merged:?}");
        let meta = std::fs::read_to_string(merged[0].join("meta.json")).unwrap();
        assert!(
            meta.contains(&format!("\"{}\"", crate::block::FORMAT_VERSION)),
            "{meta}"
        );
        assert!(merged[0].join("resources.parquet").exists());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_crash_between_block_and_wal_cleanup_shows_nothing_twice() {
        let dir = tempfile::tempdir().unwrap();
        let config = EmbeddedConfig::new(dir.path());
        let (store, _) = EmbeddedStore::open(config.clone()).unwrap();
        let base = UnixNanos::now().0 - 3_600_000_000_000;
        store
            .append(vec![crate::test_support::span(
                9,
                1,
                None,
                "rag",
                "root",
                base,
                base + 10,
            )])
            .await
            .unwrap();
        // Keep a copy of the WAL as it was before the cut deleted it.
        let wal_dir = config.wal_dir();
        let saved: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(&wal_dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .map(|p| (p.clone(), std::fs::read(&p).unwrap()))
            .collect();
        tokio::task::block_in_place(|| store.flush()).unwrap();
        store.crash();
        std::mem::forget(store);
        // As if the process died after installing the block, before deleting segments.
        for (path, bytes) in saved {
            std::fs::write(path, bytes).unwrap();
        }
        let (store, report) = EmbeddedStore::open(config).unwrap();
        assert_eq!(
            report.spans, 0,
            "segments already in a block are not replayed"
        );
        let trace = store
            .trace(crate::test_support::trace_id(9))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(trace.spans.len(), 1);
        assert_eq!(store.stats().await.unwrap().spans, 0);
    }
}
