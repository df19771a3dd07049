//! The storage seam: the [`Store`] trait every backend implements, the query
//! and statistics types that cross it, and [`StoreError`].
//!
//! This module owns the contract, not an engine: it must not know about WAL
//! files, the in-memory head or ClickHouse. The embedded engine
//! ([`crate::EmbeddedStore`]) and, later, the ClickHouse store implement it.

use std::io;
use std::path::PathBuf;

use arrow_array::RecordBatch;
use chaintrace_model::{
    LogRecord, Severity, Span, SpanColumn, SpanId, Trace, TraceId, TraceSummary, UnixNanos,
};

use crate::block::Operation;
use crate::search::{SearchRequest, SearchStats};

/// The number of summaries [`Store::recent_traces`] returns when
/// [`TraceListQuery::limit`] is 0.
pub const DEFAULT_TRACE_LIST_LIMIT: usize = 20;

/// A place that keeps spans and answers trace queries.
///
/// Implementations are shared between receivers and the query API, hence
/// `Send + Sync + 'static`; callers usually hold an `Arc<dyn Store>`.
#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    /// Stores a batch durably: when this returns `Ok`, the spans survive
    /// `kill -9` and a restart.
    ///
    /// Duplicate spans (same `trace_id` + `span_id`; exporters retry) are never
    /// visible twice: the first stored copy wins.
    async fn append(&self, spans: Vec<Span>) -> Result<(), StoreError>;

    /// The whole trace, or `None` if no span of it is stored.
    async fn trace(&self, id: TraceId) -> Result<Option<Trace>, StoreError>;

    /// Trace summaries matching `query`, newest (latest start) first, at most
    /// `query.limit` of them.
    async fn recent_traces(&self, query: &TraceListQuery) -> Result<Vec<TraceSummary>, StoreError>;

    /// Counters for `/metrics` and the CLI.
    async fn stats(&self) -> Result<StoreStats, StoreError>;

    /// Every stored span of the traces that started in `[start, end]`
    /// (`None`: open), duplicates dropped, for at most `max_spans` spans
    /// (more is an error, [`StoreError::TooMuchData`], never a silent cut).
    /// Feeds SQL and analytics over spans.
    async fn scan_spans(
        &self,
        start: Option<UnixNanos>,
        end: Option<UnixNanos>,
        max_spans: usize,
    ) -> Result<Vec<Span>, StoreError>;

    /// Every stored span of the traces that have spans in the pieces of
    /// storage (blocks, memory) whose time range meets `[start, end]`
    /// (`None`: open), handed to `visit` in chunks of whole traces in
    /// trace-id order, duplicates dropped (the first copy wins, as in every
    /// read). A chunk may hold spans outside the range (a trace is not
    /// split): callers keep the spans they want. Memory stays bounded
    /// whatever the range holds: nothing is refused for its size.
    /// `visit` runs on a blocking thread; returning false stops the read.
    ///
    /// The default reads [`Store::scan_spans`] (at most
    /// [`DEFAULT_STREAM_SPANS`] spans, of traces that start in the range) and
    /// hands them over in one chunk: for stores without a streaming read.
    async fn stream_traces(
        &self,
        start: Option<UnixNanos>,
        end: Option<UnixNanos>,
        mut visit: Box<dyn FnMut(Vec<Span>) -> bool + Send>,
    ) -> Result<StreamStats, StoreError> {
        let spans = self.scan_spans(start, end, DEFAULT_STREAM_SPANS).await?;
        let stats = StreamStats {
            spans: spans.len() as u64,
            ..StreamStats::default()
        };
        if spans.is_empty() {
            return Ok(stats);
        }
        let kept_on = tokio::task::spawn_blocking(move || visit(spans))
            .await
            .map_err(|e| StoreError::Internal(format!("a stream visitor failed: {e}")))?;
        Ok(StreamStats {
            stopped: !kept_on,
            ..stats
        })
    }

    /// The `columns` of every stored span that starts in `[start, end]`
    /// (`None`: open), duplicates dropped (the first copy wins, as in every
    /// read), handed to `visit` as Arrow batches of those columns in that
    /// order ([`columns_schema`](crate::columns_schema); types as
    /// [`SpanColumn`] says), read without rebuilding spans. No order is
    /// promised. `visit` runs on a blocking thread; returning false stops
    /// the read. `Ok(None)`: this store has no columnar read (the default);
    /// read [`Store::stream_traces`] instead.
    async fn stream_columns(
        &self,
        _start: Option<UnixNanos>,
        _end: Option<UnixNanos>,
        _columns: Vec<SpanColumn>,
        _visit: Box<dyn FnMut(RecordBatch) -> bool + Send>,
    ) -> Result<Option<StreamStats>, StoreError> {
        Ok(None)
    }

    /// Hands `visit` every trace that starts in `[request.start,
    /// request.end]` and passes `request.filter`, until `visit` returns
    /// false or `request.max_inspected` traces have been read.
    ///
    /// Each trace is whole (all stored spans, duplicates dropped, exactly as
    /// [`Store::trace`] returns it) and comes at most once, roughly newest
    /// first: the store may walk its storage in pieces (the embedded store:
    /// memory, then blocks by newest data) and orders by trace start within
    /// each. The filter lets the store skip traces without reading them; it
    /// must never skip one that passes it. `visit` runs on a blocking thread.
    async fn search(
        &self,
        request: SearchRequest,
        visit: Box<dyn FnMut(Trace) -> bool + Send>,
    ) -> Result<SearchStats, StoreError>;

    /// Every distinct (service, span name, kind) of the spans stored since
    /// about `start` — of every piece of storage (a block, memory) holding
    /// data that ends after it — sorted, read from what the store keeps
    /// beside its spans rather than by decoding them. `Ok(None)` when the
    /// store cannot tell that way (the caller reads spans instead): the
    /// default, and the embedded store's answer while a block written by an
    /// older build, or with more operations than its meta keeps, is in range.
    async fn operations(&self, _start: UnixNanos) -> Result<Option<Vec<Operation>>, StoreError> {
        Ok(None)
    }

    /// Calls between services (a span whose parent span belongs to another
    /// service) whose called span started in the minutes from `start` to
    /// `end` (each rounded down to its minute), as (caller, callee, calls)
    /// sorted by caller and callee — read from what the store keeps beside its spans,
    /// not by decoding them. `Ok(None)` when the store cannot tell that way
    /// (the caller reads spans instead): the default, and the embedded
    /// store's answer while a block written by an older build, or with more
    /// entries than its meta keeps, is in range.
    async fn dependencies(
        &self,
        _start: UnixNanos,
        _end: UnixNanos,
    ) -> Result<Option<Vec<(String, String, u64)>>, StoreError> {
        Ok(None)
    }

    /// Stores log records durably, like [`Store::append`] spans: on `Ok`
    /// they survive `kill -9` and a restart. Logs have no ids, so a batch
    /// sent twice is stored twice (as the OpenTelemetry Collector does).
    /// The default refuses: a store without logs says so.
    /// The rollup figures ([`Rollup`](chaintrace_model::rollup::Rollup)) of
    /// the traces that started in the whole minutes from `from`'s to
    /// `to`'s, both included, keyed per `step` (one key for the whole
    /// range, per hour or per minute); `None` when this store keeps no
    /// rollups (analytics then read the traces).
    async fn rollups(
        &self,
        _from: UnixNanos,
        _to: UnixNanos,
        _step: chaintrace_model::rollup::Step,
    ) -> Result<Option<RollupRead>, StoreError> {
        Ok(None)
    }

    async fn append_logs(&self, logs: Vec<LogRecord>) -> Result<(), StoreError> {
        Err(StoreError::Unsupported {
            what: "storing logs",
            items: logs.len(),
        })
    }

    /// The stored log records matching `query`, newest first.
    async fn logs(&self, _query: LogQuery) -> Result<LogPage, StoreError> {
        Ok(LogPage::default())
    }
}

/// The largest [`LogQuery::limit`].
pub const MAX_LOG_LIMIT: usize = 10_000;

/// Which log records [`Store::logs`] returns: every condition set must hold.
#[derive(Debug, Clone, Default)]
pub struct LogQuery {
    /// Records written in this trace.
    pub trace_id: Option<TraceId>,
    /// Records written in this span.
    pub span_id: Option<SpanId>,
    /// Records of this severity or worse (a record with neither number
    /// nor a known severity text never passes).
    pub min_severity: Option<Severity>,
    /// Records of this `service.name`.
    pub service: Option<String>,
    /// Records whose body or an attribute value contains this text,
    /// ignoring ASCII case.
    pub text: Option<String>,
    /// Records at or after this time.
    pub start: Option<UnixNanos>,
    /// Records at or before this time.
    pub end: Option<UnixNanos>,
    /// The most records to return: 0 means 100; at most [`MAX_LOG_LIMIT`].
    pub limit: usize,
}

impl LogQuery {
    /// The limit to apply.
    pub fn effective_limit(&self) -> usize {
        match self.limit {
            0 => 100,
            n => n.min(MAX_LOG_LIMIT),
        }
    }

    /// Whether `log` passes every condition but the time range.
    pub fn matches(&self, log: &LogRecord) -> bool {
        if self.trace_id.is_some() && log.trace_id != self.trace_id {
            return false;
        }
        if self.span_id.is_some() && log.span_id != self.span_id {
            return false;
        }
        if let Some(min) = self.min_severity {
            if log.severity().is_none_or(|s| s < min) {
                return false;
            }
        }
        if let Some(service) = &self.service {
            if log.service_name() != service {
                return false;
            }
        }
        if let Some(text) = self.text.as_deref().filter(|t| !t.is_empty()) {
            let found = contains_ignoring_case(&log.body, text)
                || log
                    .attributes
                    .iter()
                    .any(|kv| contains_ignoring_case(&kv.value, text));
            if !found {
                return false;
            }
        }
        true
    }
}

/// Whether `value`'s display text contains `needle`, ignoring ASCII case.
fn contains_ignoring_case(value: &chaintrace_model::AnyValue, needle: &str) -> bool {
    let hay = match value.as_str() {
        Some(s) => std::borrow::Cow::Borrowed(s),
        None => std::borrow::Cow::Owned(value.to_display_string()),
    };
    let (hay, needle) = (hay.as_bytes(), needle.as_bytes());
    needle.len() <= hay.len()
        && hay
            .windows(needle.len())
            .any(|w| w.eq_ignore_ascii_case(needle))
}

/// What [`Store::logs`] found.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct LogPage {
    /// The records, newest first.
    pub logs: Vec<LogRecord>,
    /// Records that matched (more than `logs` holds when the limit cut).
    pub matched: u64,
    /// Records read to answer.
    pub inspected: u64,
    /// Whether the store stopped reading at its bound before it had seen
    /// every record in range: more may match.
    pub truncated: bool,
}

/// Which traces [`Store::recent_traces`] lists.
#[derive(Debug, Clone, Default)]
pub struct TraceListQuery {
    /// The most summaries to return; 0 means [`DEFAULT_TRACE_LIST_LIMIT`].
    pub limit: usize,
    /// When set, the root span's `service.name` must equal this.
    pub service: Option<String>,
    /// When set, the trace must start at or after this time.
    pub start: Option<UnixNanos>,
    /// When set, the trace must start at or before this time.
    pub end: Option<UnixNanos>,
}

impl TraceListQuery {
    /// The limit to apply: `limit`, or [`DEFAULT_TRACE_LIST_LIMIT`] when it is 0.
    pub fn effective_limit(&self) -> usize {
        if self.limit == 0 {
            DEFAULT_TRACE_LIST_LIMIT
        } else {
            self.limit
        }
    }
}

/// Most spans the default [`Store::stream_traces`] reads.
pub const DEFAULT_STREAM_SPANS: usize = 300_000;

/// What [`Store::rollups`] read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RollupRead {
    /// The figures, minute by minute.
    pub rollup: chaintrace_model::rollup::Rollup,
    /// Blocks whose rollups were read.
    pub blocks: u64,
    /// Of those, blocks that had none yet and were rolled up by this read.
    pub built: u64,
    /// Rollup files read (blocks the range cuts through, or minutes asked
    /// for, not in the cache of recently read minutes).
    pub files_read: u64,
    /// Traces of the head rolled up by this read.
    pub head_traces: u64,
}

/// What one [`Store::stream_traces`] read did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamStats {
    /// Traces handed over.
    pub traces: u64,
    /// Spans handed over.
    pub spans: u64,
    /// Second copies of spans met and dropped.
    pub duplicates: u64,
    /// Blocks read.
    pub blocks: u64,
    /// Whether the visitor stopped the read.
    pub stopped: bool,
}

/// Counters describing what a store holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct StoreStats {
    /// Traces held in memory (the head), not yet in blocks.
    pub traces: u64,
    /// Spans held in memory (duplicates not counted), not yet in blocks.
    pub spans: u64,
    /// Bytes in write-ahead-log segment files.
    pub wal_bytes: u64,
    /// Write-ahead-log segment files.
    pub wal_segments: u64,
    /// Rough estimate of the memory held by the in-memory head, in bytes.
    pub head_bytes: u64,
    /// Duplicate spans received and dropped since the store was opened
    /// (including duplicates met while replaying the WAL).
    pub duplicate_spans: u64,
    /// `fsync`s of appended WAL records since the store was opened; with group
    /// commit this grows more slowly than the number of appends under load.
    pub wal_syncs: u64,
    /// Blocks on disk.
    pub blocks: u64,
    /// Spans in blocks.
    pub block_spans: u64,
    /// Bytes of all block files.
    pub block_bytes: u64,
    /// Blocks cut from the head since open.
    pub blocks_cut: u64,
    /// Compaction merges since open.
    pub compactions: u64,
    /// Whether a compaction pass is running now (merges run in the
    /// background; a benchmark waits for them to settle before measuring disk).
    pub compacting: bool,
    /// Blocks deleted by retention since open.
    pub blocks_deleted: u64,
    /// Log records stored.
    pub log_records: u64,
    /// Bytes of the log segment files.
    pub log_bytes: u64,
    /// What tail sampling decided since open; `None` when it is off.
    pub sampling: Option<crate::sampling::SamplingStats>,
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Disk I/O failed; `op` says what was being done to `path`.
    #[error("cannot {op} {}: {source}", path.display())]
    Io {
        /// What was being done, e.g. `write WAL segment`.
        op: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// A WAL segment was written by a newer (or unknown) format version; it is
    /// left untouched rather than truncated.
    #[error(
        "WAL segment {} has format version {found}, this build reads version {supported}; \
         refusing to open the store rather than risk damaging it",
        path.display()
    )]
    UnsupportedWalVersion {
        /// The segment file.
        path: PathBuf,
        /// The version in its header.
        found: u16,
        /// The version this build writes and reads.
        supported: u16,
    },
    /// A batch could not be encoded for the WAL.
    #[error("cannot encode a batch of {spans} spans for the WAL: {reason}")]
    Encode {
        /// Spans in the batch.
        spans: usize,
        /// The encoder's complaint.
        reason: String,
    },
    /// A batch encodes to more bytes than one WAL record may hold.
    #[error("a batch of {spans} spans encodes to {bytes} bytes, over the WAL record limit of {limit} bytes; send smaller batches")]
    BatchTooLarge {
        /// Spans in the batch.
        spans: usize,
        /// Its encoded size.
        bytes: u64,
        /// The largest record the WAL accepts.
        limit: u64,
    },
    /// A batch takes more memory than the whole memory budget: it could
    /// never be admitted, however long it waited.
    #[error(
        "a batch of {spans} spans takes about {} MiB in memory, over the whole memory budget of {} MiB; send smaller batches",
        bytes >> 20,
        budget >> 20
    )]
    OverMemoryBudget {
        /// Spans in the batch.
        spans: usize,
        /// Their estimated size in memory.
        bytes: u64,
        /// The budget (`--max-memory`).
        budget: u64,
    },
    /// A block could not be written or read.
    #[error(transparent)]
    Block(#[from] crate::block::BlockError),
    /// A scan would read more spans than its cap.
    #[error("the time range holds more than {limit} spans; narrow it")]
    TooMuchData {
        /// The cap.
        limit: usize,
    },
    /// The store is shutting down (or has shut down) and takes no more writes.
    #[error("the store is closed: {0}")]
    Closed(&'static str),
    /// Another store (another `chaintrace serve`, or one in this process)
    /// has the data directory open.
    #[error(
        "data directory {} is already in use by another chaintrace process \
         (it holds the lock on {}/LOCK); stop that one or pick another directory",
        dir.display(),
        dir.display()
    )]
    DirectoryInUse {
        /// The data directory.
        dir: PathBuf,
    },
    /// A bug: work on a store thread panicked. Logged; not worth retrying.
    #[error("internal error: {0}")]
    Internal(String),
    /// The store is over a budget (memory, disk); try again later.
    #[error("the store is over budget, try again later: {0}")]
    Overloaded(String),
    /// This store does not do that.
    #[error("this store does not support {what} ({items} items refused)")]
    Unsupported {
        /// What was asked, e.g. `storing logs`.
        what: &'static str,
        /// How many items were refused.
        items: usize,
    },
}

impl StoreError {
    /// Whether the same request may succeed if sent again later.
    ///
    /// True for [`Overloaded`](StoreError::Overloaded),
    /// [`Closed`](StoreError::Closed) (another instance, or this one after a
    /// restart, may take it) and [`Io`](StoreError::Io) (a full disk or a
    /// failed write leaves nothing acknowledged, so a retry is safe and
    /// duplicates are dropped). False for errors that sending the same data
    /// again cannot fix.
    pub fn is_retryable(&self) -> bool {
        match self {
            StoreError::Overloaded(_) | StoreError::Closed(_) | StoreError::Io { .. } => true,
            StoreError::UnsupportedWalVersion { .. }
            | StoreError::Block(_)
            | StoreError::TooMuchData { .. }
            | StoreError::Encode { .. }
            | StoreError::BatchTooLarge { .. }
            | StoreError::OverMemoryBudget { .. }
            | StoreError::DirectoryInUse { .. }
            | StoreError::Unsupported { .. }
            | StoreError::Internal(_) => false,
        }
    }

    /// Builds an [`Io`](StoreError::Io) error.
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> StoreError {
        StoreError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_error_message_names_the_path_and_operation() {
        let err = StoreError::io(
            "write WAL segment",
            "/data/wal/00000000000000000001.wal",
            io::Error::other("disk full"),
        );
        assert_eq!(
            err.to_string(),
            "cannot write WAL segment /data/wal/00000000000000000001.wal: disk full"
        );
        assert!(err.is_retryable());
        assert!(StoreError::Overloaded("head".into()).is_retryable());
        assert!(!StoreError::Encode {
            spans: 1,
            reason: "x".into()
        }
        .is_retryable());
    }

    #[test]
    fn zero_limit_means_default() {
        assert_eq!(TraceListQuery::default().effective_limit(), 20);
        let q = TraceListQuery {
            limit: 3,
            ..Default::default()
        };
        assert_eq!(q.effective_limit(), 3);
    }
}
