//! The immutable block format of the embedded store, `vparquet3` — shaped
//! like Grafana Tempo's vParquet blocks.
//!
//! A block is a directory `<blocks_dir>/<block_id>/` holding:
//!
//! - `data.parquet`: one row per span, sorted by trace id, then start time,
//!   then span id. Hot columns (ids, service, name, kind, status, start,
//!   duration, and the LLM fields model, input/output tokens and error
//!   type derived from attributes) serve queries; generic columns (nested
//!   attributes; events and links as one encoded binary value each, null
//!   when the span has none; scope) and `resource_index` together with the
//!   span's own fields rebuild every span exactly. LZ4, dictionaries
//!   for repeated strings, a bloom filter and page statistics on
//!   `trace_id`, row groups that end at trace boundaries.
//! - `resources.parquet`: each distinct resource of the block once (its
//!   attributes); `resource_index` counts its rows. Spans of one export
//!   share a resource, so this replaces a nested column repeated on every
//!   row. Read whole when the block is opened; every span decoded from the
//!   block shares the table's `Arc<Resource>`s.
//! - `traces.parquet`: one row per trace ([`TraceSummary`]
//!   fields), sorted by start time; listing traces reads only this file.
//! - `meta.json`: [`BlockMeta`] — version, time range, counts, services,
//!   names, and per-value span counts ([`SpanCounts`]) for search
//!   planning. Written last: its presence makes the directory a block.
//!
//! Blocks of the previous formats are still read: by id, by search, in
//! listings and as compaction input. `vparquet2` has seven-field attribute
//! structs and events and links as nested lists; `vparquet1` also has no
//! `resources.parquet` (a nested `resource_attributes` column on every row
//! of `data.parquet`). Every block written, by a cut or a compaction, is
//! `vparquet3`.
//!
//! [`write_block`] writes a block atomically from spans in memory (the
//! cut); [`BlockWriter`] writes one from traces pushed in trace-id order,
//! holding about one record batch (compaction). [`Block`] opens one and
//! answers trace-by-id ([`Block::trace_spans`]), pull-based full scans for
//! compaction ([`Block::span_stream`]) and summary listings
//! ([`Block::trace_summaries`]).
//! This module owns the files of one block only: choosing when to cut,
//! compacting, retention and the catalog of blocks belong to the store.
//!
//! [`TraceSummary`]: chaintrace_model::TraceSummary
//!
//! ```no_run
//! use chaintrace_store::block::{write_block, Block, BlockWriteOptions};
//! # fn demo(spans: Vec<chaintrace_model::Span>, id: chaintrace_model::TraceId)
//! #     -> Result<(), chaintrace_store::block::BlockError> {
//! let blocks = std::path::Path::new("./chaintrace-data/blocks");
//! let meta = write_block(blocks, "b000001", spans, &BlockWriteOptions::default())?;
//! let block = Block::open(&blocks.join(&meta.id))?;
//! let spans_of_one_trace = block.trace_spans(id)?;
//! let listed = block.trace_summaries(Some(meta.min_start), None)?;
//! # Ok(())
//! # }
//! ```

mod attrs;
mod decode;
mod encode;
mod error;
mod file;
mod hot;
mod meta;
mod read;
mod resources;
pub(crate) mod schema;
mod search;
mod span_lists;
mod stats;
pub(crate) mod value_codec;
mod write;
mod write_stream;

#[cfg(test)]
pub(crate) mod testing;

pub use error::BlockError;
pub(crate) use hot::HotFields;
pub use meta::{BlockMeta, HOT_RULES, MAX_META_NAMES};
pub use read::{Block, ColumnBatches, LookupStats, SpanIds, SpanStream};
pub use stats::{
    Operation, ServiceCalls, SpanCounts, MAX_META_DEPENDENCIES, MAX_META_OPERATIONS, MINUTE_NANOS,
};
pub use write::{write_block, write_block_refs, BlockWriteOptions, DEFAULT_ROW_GROUP_ROWS};
pub use write_stream::BlockWriter;

/// The block format this build writes.
pub const FORMAT_VERSION: &str = schema::Format::CURRENT.name();

/// The block formats this build reads, for messages.
pub const READABLE_VERSIONS: &str = "vparquet1, vparquet2, vparquet3";

/// The spans file of a block.
pub const DATA_FILE: &str = "data.parquet";
/// The distinct resources of a (`vparquet2` or later) block.
pub const RESOURCES_FILE: &str = "resources.parquet";
/// The per-trace summaries file of a block.
pub const TRACES_FILE: &str = "traces.parquet";
/// The meta file of a block.
pub const META_FILE: &str = "meta.json";
/// Prefix of the directory a block is written in before it is renamed into
/// place; such a directory is never a block.
pub const TMP_PREFIX: &str = ".tmp-";

#[cfg(test)]
mod tests;
