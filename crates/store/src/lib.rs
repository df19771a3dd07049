//! Where chaintrace keeps spans: the [`Store`] trait and the embedded store.
//!
//! Receivers hand batches of [`Span`](chaintrace_model::Span)s to
//! [`Store::append`]; the query API asks for a whole trace
//! ([`Store::trace`]) or a newest-first list of trace summaries
//! ([`Store::recent_traces`]). Every backend — the [`EmbeddedStore`] here, a
//! ClickHouse store later — implements the same trait.
//!
//! The embedded store is laid out like Grafana Tempo's: a write-ahead log of
//! segment files (a batch is acknowledged only once it is fsynced, with group
//! commit sharing one fsync among concurrent appends; replayed at open, a torn
//! tail truncated, never fatal) in front of an in-memory head indexed by trace
//! id, which is cut into Parquet blocks that are compacted and retained (see
//! [`EmbeddedStore`]). That an acknowledged batch survives a power cut, not
//! only a killed process, is tested on a simulated disk that forgets unsynced
//! bytes (`power_cut_tests`).
//!
//! ```no_run
//! use chaintrace_store::{EmbeddedConfig, EmbeddedStore, Store, TraceListQuery};
//!
//! # async fn demo() -> Result<(), chaintrace_store::StoreError> {
//! let (store, replay) = EmbeddedStore::open(EmbeddedConfig::new("./chaintrace-data"))?;
//! println!("replayed {} spans", replay.spans);
//! store.append(Vec::new()).await?;
//! let newest = store.recent_traces(&TraceListQuery::default()).await?;
//! println!("{} traces", newest.len());
//! store.close();
//! # Ok(())
//! # }
//! ```

pub mod block;
mod catalog;
mod columns;
mod compaction;
#[cfg(test)]
mod compaction_tests;
#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
mod embedded;
#[cfg(feature = "fuzz")]
pub mod fuzz_api;
mod generations;
mod head;
mod lock;
mod logs;
mod maintenance;
mod metrics;
#[cfg(test)]
mod power_cut_tests;
mod rollups;
pub mod sampling;
mod search;
mod search_exec;
mod store;
mod stream;
mod wal;

#[cfg(test)]
mod test_support;

pub use block::{Operation, ServiceCalls};
pub use columns::{column_type, columns_schema};
pub use embedded::{EmbeddedConfig, EmbeddedStore};
pub use lock::LOCK_FILE;
pub use rollups::Figures;
pub use sampling::{Policy as SamplingPolicy, SamplingConfig, SamplingStats};
pub use search::{
    AttributeMatch, SearchRequest, SearchStats, SpanClause, TraceFilter, ERROR_TYPE_KEYS,
};
pub use store::{
    LogPage, LogQuery, RollupRead, Store, StoreError, StoreStats, StreamStats, TraceListQuery,
    DEFAULT_STREAM_SPANS, DEFAULT_TRACE_LIST_LIMIT, MAX_LOG_LIMIT,
};
pub use stream::STREAM_CHUNK_SPANS;
pub use wal::ReplayReport;
