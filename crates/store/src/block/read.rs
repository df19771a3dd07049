//! [`Block`]: an open block, and the three ways of reading it — one trace
//! by id (pruned by row-group statistics, bloom filter and page index),
//! every span (for compaction), and trace summaries by start time.
//!
//! Opening reads `meta.json`, the Parquet footers (with the page index)
//! and, for a `vparquet2` or later block, its whole (small) resource table
//! once; bloom filters are loaded on first use and kept. Older formats
//! are read too: they differ only in how rows rebuild a span (see
//! [`super::schema`]), never in what queries read. Everything read
//! from disk is checked: a damaged block gives a [`BlockError`], never a
//! panic.

use std::ops::Range;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use arrow_array::{Array, BooleanArray, FixedSizeBinaryArray, RecordBatch};
use arrow_schema::{ArrowError, SchemaRef};
use chaintrace_model::{Resource, Span, SpanId, TraceId, TraceSummary, UnixNanos};
use parquet::arrow::arrow_reader::{
    ArrowPredicateFn, ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReader,
    ParquetRecordBatchReaderBuilder, RowFilter, RowSelection, RowSelectionPolicy,
};
use parquet::arrow::ProjectionMask;
use parquet::bloom_filter::Sbbf;
use parquet::file::metadata::PageIndexPolicy;
use parquet::file::page_index::column_index::ColumnIndexMetaData;
use parquet::file::statistics::Statistics;

use super::decode::{summaries, SpanColumns, SPAN_COLUMNS};
use super::error::BlockError;
use super::file::BlockFile;
use super::meta::{read_meta, BlockMeta};
use super::resources::read_resources;
use super::schema::{col, trace_col, Format, FORMAT_KEY, TRACES_SCHEMA};
use super::{DATA_FILE, RESOURCES_FILE, TMP_PREFIX, TRACES_FILE};

/// Rows per decoded batch when scanning a whole file: bounds memory with
/// long prompts.
const SCAN_BATCH_ROWS: usize = 1024;

/// What one [`Block::trace_spans_with_stats`] lookup touched.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LookupStats {
    /// Row groups in `data.parquet`.
    pub row_groups: usize,
    /// Row groups skipped because their trace id min/max excludes the id.
    pub pruned_by_stats: usize,
    /// Row groups skipped because their bloom filter rules the id out.
    pub pruned_by_bloom: usize,
    /// Row groups skipped because no page's trace id min/max admits the id.
    pub pruned_by_page_index: usize,
    /// Row groups whose pages were decoded.
    pub row_groups_read: usize,
    /// Rows whose `trace_id` was compared: those of the pages the page
    /// index admits (a page or two, not whole row groups).
    pub rows_scanned: usize,
    /// Rows decoded in full: the trace's spans.
    pub rows_decoded: usize,
}

/// One open Parquet file of a block: the shared handle and its footer.
pub(super) struct OpenFile {
    pub(super) path: PathBuf,
    file: BlockFile,
    pub(super) meta: ArrowReaderMetadata,
}

impl OpenFile {
    /// Opens a file of a `format` block: its footer must name `format`,
    /// its columns be `want`'s and (when given) its rows number `rows`.
    fn open(
        path: PathBuf,
        format: Format,
        want: &SchemaRef,
        rows: Option<u64>,
    ) -> Result<OpenFile, BlockError> {
        let file = BlockFile::open(&path).map_err(|e| BlockError::io(&path, e))?;
        let options = ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Optional);
        let meta = guard(&path, || {
            ArrowReaderMetadata::load(&file, options).map_err(|e| BlockError::parquet(&path, e))
        })?;
        let kv = meta.metadata().file_metadata().key_value_metadata();
        let format_name = format.name();
        let named = kv
            .and_then(|kv| kv.iter().find(|k| k.key == FORMAT_KEY))
            .and_then(|k| k.value.as_deref());
        if named != Some(format_name) {
            return Err(BlockError::corrupt(
                &path,
                format!("footer names format {named:?}, meta.json {format_name:?}"),
            ));
        }
        let have = meta.schema();
        let same =
            have.fields().len() == want.fields().len()
                && have.fields().iter().zip(want.fields()).all(|(h, w)| {
                    h.name() == w.name() && h.data_type().equals_datatype(w.data_type())
                });
        if !same {
            return Err(BlockError::corrupt(
                &path,
                format!("columns differ from {format_name}: {have}"),
            ));
        }
        let got = meta.metadata().file_metadata().num_rows();
        if let Some(rows) = rows.filter(|&rows| u64::try_from(got).ok() != Some(rows)) {
            return Err(BlockError::corrupt(
                &path,
                format!("{got} rows, meta.json says {rows}"),
            ));
        }
        Ok(OpenFile { path, file, meta })
    }

    pub(super) fn reader(
        &self,
        row_groups: Vec<usize>,
        projection: Option<&ProjectionMask>,
        selection: Option<RowSelection>,
        filter: Option<RowFilter>,
        batch_rows: usize,
    ) -> Result<ParquetRecordBatchReader, BlockError> {
        let mut builder = ParquetRecordBatchReaderBuilder::new_with_metadata(
            self.file.clone(),
            self.meta.clone(),
        )
        .with_row_groups(row_groups)
        .with_batch_size(batch_rows);
        if let Some(p) = projection {
            builder = builder.with_projection(p.clone());
        }
        if selection.is_some() || filter.is_some() {
            // Skip unselected rows page by page; a bitmask would decode them.
            builder = builder.with_row_selection_policy(RowSelectionPolicy::Selectors);
        }
        if let Some(s) = selection {
            builder = builder.with_row_selection(s);
        }
        if let Some(f) = filter {
            builder = builder.with_row_filter(f);
        }
        guard(&self.path, || {
            builder
                .build()
                .map_err(|e| BlockError::parquet(&self.path, e))
        })
    }

    /// Reads every batch of `reader`, handing each to `f`.
    pub(super) fn each_batch(
        &self,
        reader: ParquetRecordBatchReader,
        mut f: impl FnMut(&RecordBatch) -> Result<(), String>,
    ) -> Result<(), BlockError> {
        guard(&self.path, || {
            for batch in reader {
                let batch = batch.map_err(|e| BlockError::arrow(&self.path, e))?;
                f(&batch).map_err(|detail| BlockError::corrupt(&self.path, detail))?;
            }
            Ok(())
        })
    }
}

/// An open, immutable block: its meta, and what lookups need from the
/// Parquet footers. Cheap to keep open for every block of a store, and
/// shared by concurrent readers (`Send + Sync`).
pub struct Block {
    dir: PathBuf,
    meta: BlockMeta,
    pub(super) data: OpenFile,
    traces: OpenFile,
    /// Leaf column index of `trace_id` in `data.parquet`.
    pub(super) trace_id_leaf: usize,
    /// Only the columns that rebuild a span (not the derived hot ones).
    pub(super) span_projection: ProjectionMask,
    /// The `trace_id` bloom filter of each row group, loaded on first use.
    blooms: Vec<OnceLock<Option<Sbbf>>>,
    /// The rows of `resources.parquet` (`vparquet2`); `None` for a
    /// `vparquet1` block, whose rows carry their resource's attributes.
    pub(super) resources: Option<Vec<Arc<Resource>>>,
    /// The summary of its rollup, once read or made (see `crate::rollups`).
    rollup: std::sync::RwLock<Option<Arc<chaintrace_model::rollup::RollupSummary>>>,
}

impl std::fmt::Debug for Block {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Block")
            .field("dir", &self.dir)
            .field("meta", &self.meta)
            .finish_non_exhaustive()
    }
}

impl Block {
    /// Opens the block in `dir`: reads `meta.json` (refusing unknown format
    /// versions), the Parquet footers and the resource table, and checks
    /// that they agree.
    /// A leftover `.tmp-*` directory of an unfinished write is not a block.
    pub fn open(dir: &Path) -> Result<Block, BlockError> {
        let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.starts_with(TMP_PREFIX) {
            return Err(BlockError::NotABlock {
                path: dir.to_path_buf(),
                reason: "it is an unfinished block write".to_string(),
            });
        }
        let meta = read_meta(dir)?;
        let format = Format::from_name(&meta.version).ok_or_else(|| {
            BlockError::corrupt(dir, format!("unknown format {:?}", meta.version))
        })?;
        let data_schema = format.data_schema();
        let data = OpenFile::open(
            dir.join(DATA_FILE),
            format,
            data_schema,
            Some(meta.span_count),
        )?;
        let traces = OpenFile::open(
            dir.join(TRACES_FILE),
            format,
            &TRACES_SCHEMA,
            Some(meta.trace_count),
        )?;
        let resources = match format.resources_schema() {
            None => None,
            Some(schema) => Some(load_resources(dir, format, schema)?),
        };
        let parquet_schema = data.meta.parquet_schema();
        let trace_id_leaf = parquet_schema
            .columns()
            .iter()
            .position(|c| c.path().parts() == [col::TRACE_ID])
            .ok_or_else(|| BlockError::corrupt(&data.path, "no trace_id leaf column"))?;
        let roots = SPAN_COLUMNS
            .iter()
            .copied()
            .chain([format.resource_column()])
            .filter_map(|name| data_schema.index_of(name).ok());
        let span_projection = ProjectionMask::roots(parquet_schema, roots);
        let blooms = (0..data.meta.metadata().num_row_groups())
            .map(|_| OnceLock::new())
            .collect();
        Ok(Block {
            dir: dir.to_path_buf(),
            meta,
            data,
            traces,
            trace_id_leaf,
            span_projection,
            blooms,
            resources,
            rollup: std::sync::RwLock::new(
                crate::rollups::read_rollup(dir).map(|(r, _)| Arc::new(r.summary())),
            ),
        })
    }

    /// The summary of the block's rollup, when it has one.
    pub(crate) fn rollup(&self) -> Option<Arc<chaintrace_model::rollup::RollupSummary>> {
        self.rollup
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Keeps `rollup` as the summary of the block's rollup.
    pub(crate) fn set_rollup(&self, rollup: Arc<chaintrace_model::rollup::RollupSummary>) {
        *self
            .rollup
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(rollup);
    }

    /// The views of one `data.parquet` batch that rebuild spans.
    pub(super) fn span_columns<'a>(
        &'a self,
        batch: &'a RecordBatch,
    ) -> Result<SpanColumns<'a>, String> {
        SpanColumns::new(batch, self.resources.as_deref())
    }

    /// What `meta.json` says about the block.
    pub fn meta(&self) -> &BlockMeta {
        &self.meta
    }

    /// The block's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Row groups in `traces.parquet`.
    #[cfg(test)]
    pub(crate) fn traces_row_groups(&self) -> usize {
        self.traces.meta.metadata().num_row_groups()
    }

    /// Row groups in `data.parquet`.
    pub fn row_group_count(&self) -> usize {
        self.blooms.len()
    }

    /// All spans of trace `id` in this block, in block order (start time,
    /// then span id); empty if it holds none.
    ///
    /// Row groups whose trace id min/max excludes `id` are skipped, the
    /// bloom filter is asked before reading a row group, and inside it the
    /// page index narrows decoding to the pages that may hold `id`.
    pub fn trace_spans(&self, id: TraceId) -> Result<Vec<Span>, BlockError> {
        self.trace_spans_with_stats(id).map(|(spans, _)| spans)
    }

    /// [`Block::trace_spans`], also saying how much pruning happened.
    pub fn trace_spans_with_stats(
        &self,
        id: TraceId,
    ) -> Result<(Vec<Span>, LookupStats), BlockError> {
        let key = &id.0[..];
        let metadata = self.data.meta.metadata().clone();
        let mut stats = LookupStats {
            row_groups: metadata.num_row_groups(),
            ..LookupStats::default()
        };
        let mut spans = Vec::new();
        for (i, rg) in metadata.row_groups().iter().enumerate() {
            let chunk = rg.column(self.trace_id_leaf);
            if let Some((min, max)) = chunk
                .statistics()
                .and_then(|s| Some((s.min_bytes_opt()?, s.max_bytes_opt()?)))
            {
                if key < min || key > max {
                    stats.pruned_by_stats += 1;
                    continue;
                }
            }
            if !self.bloom_may_contain(i, key)? {
                stats.pruned_by_bloom += 1;
                continue;
            }
            let total = usize::try_from(rg.num_rows()).unwrap_or(0);
            let selection = match self.candidate_pages(i, key, total) {
                Some(ranges) if ranges.is_empty() => {
                    stats.pruned_by_page_index += 1;
                    continue;
                }
                Some(ranges) => {
                    stats.rows_scanned += ranges.iter().map(|r| r.len()).sum::<usize>();
                    Some(RowSelection::from_consecutive_ranges(
                        ranges.into_iter(),
                        total,
                    ))
                }
                None => {
                    stats.rows_scanned += total;
                    None
                }
            };
            stats.row_groups_read += 1;
            // The trace_id column is decoded first; the other columns then
            // decode only the rows whose id matched.
            let filter = self.trace_id_filter(id);
            let reader = self.data.reader(
                vec![i],
                Some(&self.span_projection),
                selection,
                Some(filter),
                8192,
            )?;
            self.data.each_batch(reader, |batch| {
                stats.rows_decoded += batch.num_rows();
                let mut columns = self.span_columns(batch)?;
                for row in 0..columns.len() {
                    if columns.trace_id(row) == key {
                        spans.push(columns.span(row)?);
                    }
                }
                Ok(())
            })?;
        }
        Ok((spans, stats))
    }

    /// A row filter keeping the rows of trace `id`.
    fn trace_id_filter(&self, id: TraceId) -> RowFilter {
        self.trace_id_row_filter(move |trace| trace == id.0)
    }

    /// A row filter keeping the rows whose trace id `keep` accepts.
    pub(super) fn trace_id_row_filter(
        &self,
        keep: impl Fn(&[u8]) -> bool + Send + 'static,
    ) -> RowFilter {
        let leaf = ProjectionMask::leaves(self.data.meta.parquet_schema(), [self.trace_id_leaf]);
        let predicate = ArrowPredicateFn::new(leaf, move |batch: RecordBatch| {
            let ids = batch
                .column(0)
                .as_any()
                .downcast_ref::<FixedSizeBinaryArray>()
                .ok_or_else(|| {
                    ArrowError::SchemaError("trace_id is not FixedSizeBinary".to_string())
                })?;
            Ok((0..ids.len())
                .map(|r| Some(ids.is_valid(r) && keep(ids.value(r))))
                .collect::<BooleanArray>())
        });
        RowFilter::new(vec![Box::new(predicate)])
    }

    /// Whether row group `rg`'s bloom filter admits `key` (true when the
    /// row group has none).
    /// The bloom filter of column chunk `chunk`, read now (not cached);
    /// `None` when the chunk has none.
    pub(super) fn guarded_bloom(
        &self,
        chunk: &parquet::file::metadata::ColumnChunkMetaData,
    ) -> Result<Option<Sbbf>, BlockError> {
        guard(&self.data.path, || {
            Sbbf::read_from_column_chunk(chunk, &self.data.file)
                .map_err(|e| BlockError::parquet(&self.data.path, e))
        })
    }

    pub(super) fn bloom_may_contain(&self, rg: usize, key: &[u8]) -> Result<bool, BlockError> {
        let Some(cell) = self.blooms.get(rg) else {
            return Ok(true);
        };
        let bloom = match cell.get() {
            Some(b) => b,
            None => {
                let metadata = self.data.meta.metadata();
                let chunk = metadata.row_group(rg).column(self.trace_id_leaf);
                let loaded = guard(&self.data.path, || {
                    Sbbf::read_from_column_chunk(chunk, &self.data.file)
                        .map_err(|e| BlockError::parquet(&self.data.path, e))
                })?;
                // Another thread may have won the race; both loaded the same.
                let _ = cell.set(loaded);
                cell.get().unwrap_or(&None)
            }
        };
        Ok(bloom.as_ref().is_none_or(|b| b.check(key)))
    }

    /// The row ranges of row group `rg` whose `trace_id` pages may hold
    /// `key`, from the page index; `None` when there is no usable index.
    pub(super) fn candidate_pages(
        &self,
        rg: usize,
        key: &[u8],
        total: usize,
    ) -> Option<Vec<Range<usize>>> {
        let metadata = self.data.meta.metadata();
        let index = metadata.column_index()?.get(rg)?.get(self.trace_id_leaf)?;
        let locations = metadata
            .offset_index()?
            .get(rg)?
            .get(self.trace_id_leaf)?
            .page_locations();
        let ColumnIndexMetaData::FIXED_LEN_BYTE_ARRAY(index) = index else {
            return None;
        };
        if index.num_pages() != locations.len() as u64 {
            return None;
        }
        let mut ranges: Vec<Range<usize>> = Vec::new();
        for (p, page) in locations.iter().enumerate() {
            let first = usize::try_from(page.first_row_index).ok()?;
            let next = match locations.get(p + 1) {
                Some(n) => usize::try_from(n.first_row_index).ok()?,
                None => total,
            };
            if first > next || next > total {
                return None;
            }
            let admits = match (index.min_value(p), index.max_value(p)) {
                (Some(min), Some(max)) => min <= key && key <= max,
                _ => false, // all-null page: trace_id is never null
            };
            if admits {
                match ranges.last_mut() {
                    Some(last) if last.end == first => last.end = next,
                    _ => ranges.push(first..next),
                }
            }
        }
        Some(ranges)
    }

    /// Every span of the block, in block order (trace id, start, span id).
    /// Holds the whole block in memory: compaction uses
    /// [`Block::span_stream`].
    pub fn read_all(&self) -> Result<Vec<Span>, BlockError> {
        let count = usize::try_from(self.meta.span_count).unwrap_or(0);
        let mut spans = Vec::with_capacity(count.min(1 << 20));
        for span in self.span_stream()? {
            spans.push(span?);
        }
        Ok(spans)
    }

    /// Every span of the block, in block order (trace id, start, span id),
    /// decoded one batch of rows at a time as the iterator is pulled, so
    /// that compaction can merge many blocks holding one batch of each.
    /// A read or decode error is the last item.
    pub fn span_stream(&self) -> Result<SpanStream<'_>, BlockError> {
        self.span_stream_rows(SCAN_BATCH_ROWS)
    }

    /// [`Block::span_stream`] decoding `batch_rows` rows at a time: a
    /// merge over many blocks holds one batch of each.
    pub fn span_stream_rows(&self, batch_rows: usize) -> Result<SpanStream<'_>, BlockError> {
        let all = (0..self.row_group_count()).collect();
        let reader = self.data.reader(
            all,
            Some(&self.span_projection),
            None,
            None,
            batch_rows.max(1),
        )?;
        Ok(SpanStream {
            block: self,
            batches: Some(reader),
            decoded: Vec::new().into_iter(),
        })
    }

    /// The (trace id, span id) of every row, in block order: only those two
    /// columns are decoded, one batch at a time (compaction plans its
    /// outputs from them).
    pub fn span_ids(&self) -> Result<SpanIds<'_>, BlockError> {
        let all = (0..self.row_group_count()).collect();
        let schema = self.data.meta.parquet_schema();
        let span_id_leaf = schema
            .columns()
            .iter()
            .position(|c| c.path().parts() == [col::SPAN_ID])
            .ok_or_else(|| BlockError::corrupt(&self.data.path, "no span_id leaf column"))?;
        let leaves = ProjectionMask::leaves(schema, [self.trace_id_leaf, span_id_leaf]);
        let reader = self
            .data
            .reader(all, Some(&leaves), None, None, 8 * SCAN_BATCH_ROWS)?;
        Ok(SpanIds {
            path: &self.data.path,
            batches: Some(reader),
            decoded: Vec::new().into_iter(),
        })
    }

    /// The top-level leaf columns `names` (hot columns such as `name`,
    /// `start_unix_nano`) of every row in block order, `batch_rows` rows at
    /// a time, typed as the file stores them; only those columns are read.
    /// A read or decode error is the last item.
    pub fn column_batches(
        &self,
        names: &[&str],
        batch_rows: usize,
    ) -> Result<ColumnBatches<'_>, BlockError> {
        let schema = self.data.meta.parquet_schema();
        let mut leaves = Vec::with_capacity(names.len());
        for name in names {
            let leaf = schema
                .columns()
                .iter()
                .position(|c| c.path().parts() == [*name])
                .ok_or_else(|| {
                    BlockError::corrupt(&self.data.path, format!("no {name} leaf column"))
                })?;
            leaves.push(leaf);
        }
        let mask = ProjectionMask::leaves(schema, leaves);
        let all = (0..self.row_group_count()).collect();
        let reader = self.data.reader(all, Some(&mask), None, None, batch_rows)?;
        Ok(ColumnBatches {
            path: &self.data.path,
            batches: Some(reader),
        })
    }

    /// Summaries of the traces in this block that start in `[start, end]`
    /// (inclusive; `None` leaves that side open), oldest first. Reads only
    /// `traces.parquet`, skipping row groups by their start-time statistics.
    pub fn trace_summaries(
        &self,
        start: Option<UnixNanos>,
        end: Option<UnixNanos>,
    ) -> Result<Vec<TraceSummary>, BlockError> {
        let (lo, hi) = bounds(start, end);
        let groups = self.summary_groups(lo, hi);
        let mut out = Vec::new();
        if groups.is_empty() {
            return Ok(out);
        }
        let reader = self.traces.reader(groups, None, None, None, 64 * 1024)?;
        self.traces.each_batch(reader, |batch| {
            out.extend(
                summaries(batch)?
                    .into_iter()
                    .filter(|t| (lo..=hi).contains(&t.start_unix_nano.0)),
            );
            Ok(())
        })?;
        Ok(out)
    }

    /// At least the `limit` newest summaries that start in `[start, end]`
    /// and that `keep` accepts, if the block has them (more may come back:
    /// whole row groups are read). Reads `traces.parquet` newest row group
    /// first and stops once `limit` are found, so listing the newest traces
    /// reads a small part of a large block.
    pub fn newest_trace_summaries(
        &self,
        start: Option<UnixNanos>,
        end: Option<UnixNanos>,
        limit: usize,
        keep: &dyn Fn(&TraceSummary) -> bool,
    ) -> Result<Vec<TraceSummary>, BlockError> {
        let (lo, hi) = bounds(start, end);
        let mut out = Vec::new();
        // The file is sorted by start: later row groups hold newer traces.
        for group in self.summary_groups(lo, hi).into_iter().rev() {
            if out.len() >= limit {
                break;
            }
            let reader = self
                .traces
                .reader(vec![group], None, None, None, 64 * 1024)?;
            self.traces.each_batch(reader, |batch| {
                out.extend(
                    summaries(batch)?
                        .into_iter()
                        .filter(|t| (lo..=hi).contains(&t.start_unix_nano.0) && keep(t)),
                );
                Ok(())
            })?;
        }
        Ok(out)
    }

    /// The `traces.parquet` row groups whose start-time statistics overlap
    /// `[lo, hi]`, in file order.
    fn summary_groups(&self, lo: u64, hi: u64) -> Vec<usize> {
        if lo > hi || self.meta.trace_count == 0 {
            return Vec::new();
        }
        let metadata = self.traces.meta.metadata();
        let start_leaf = TRACES_SCHEMA.index_of(trace_col::START).unwrap_or(0);
        metadata
            .row_groups()
            .iter()
            .enumerate()
            .filter(|(_, rg)| match rg.column(start_leaf).statistics() {
                // u64 is stored as INT64; the bits are the u64's.
                Some(Statistics::Int64(s)) => match (s.min_opt(), s.max_opt()) {
                    (Some(&min), Some(&max)) => (min as u64) <= hi && (max as u64) >= lo,
                    _ => true,
                },
                _ => true,
            })
            .map(|(i, _)| i)
            .collect()
    }
}

/// Inclusive nanosecond bounds; `None` leaves that side open.
fn bounds(start: Option<UnixNanos>, end: Option<UnixNanos>) -> (u64, u64) {
    (start.map_or(0, |t| t.0), end.map_or(u64::MAX, |t| t.0))
}

/// The spans of a block in block order, one decoded batch at a time; see
/// [`Block::span_stream`].
pub struct SpanStream<'b> {
    block: &'b Block,
    /// `None` once the file is read or an error was returned.
    batches: Option<ParquetRecordBatchReader>,
    decoded: std::vec::IntoIter<Span>,
}

impl Iterator for SpanStream<'_> {
    type Item = Result<Span, BlockError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(span) = self.decoded.next() {
                return Some(Ok(span));
            }
            let block = self.block;
            let path = &block.data.path;
            let batch = next_batch(path, &mut self.batches)?;
            let decoded = batch.and_then(|batch| {
                guard(path, || {
                    let mut columns = block
                        .span_columns(&batch)
                        .map_err(|detail| BlockError::corrupt(path, detail))?;
                    (0..columns.len())
                        .map(|row| {
                            columns
                                .span(row)
                                .map_err(|detail| BlockError::corrupt(path, detail))
                        })
                        .collect::<Result<Vec<Span>, BlockError>>()
                })
            });
            match decoded {
                Ok(spans) => self.decoded = spans.into_iter(),
                Err(e) => {
                    self.batches = None;
                    return Some(Err(e));
                }
            }
        }
    }
}

/// Batches of some of a block's columns; see [`Block::column_batches`].
pub struct ColumnBatches<'b> {
    path: &'b Path,
    batches: Option<ParquetRecordBatchReader>,
}

impl Iterator for ColumnBatches<'_> {
    type Item = Result<RecordBatch, BlockError>;

    fn next(&mut self) -> Option<Self::Item> {
        next_batch(self.path, &mut self.batches)
    }
}

/// The (trace id, span id) of a block's rows; see [`Block::span_ids`].
pub struct SpanIds<'b> {
    path: &'b Path,
    batches: Option<ParquetRecordBatchReader>,
    decoded: std::vec::IntoIter<(TraceId, SpanId)>,
}

impl Iterator for SpanIds<'_> {
    type Item = Result<(TraceId, SpanId), BlockError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(ids) = self.decoded.next() {
                return Some(Ok(ids));
            }
            let path = self.path;
            let ids = next_batch(path, &mut self.batches)?.and_then(|batch| {
                let column = |name: &str, len: usize| {
                    batch
                        .column_by_name(name)
                        .and_then(|c| c.as_any().downcast_ref::<FixedSizeBinaryArray>())
                        .filter(|c| c.value_length() == len as i32 && c.null_count() == 0)
                        .ok_or_else(|| {
                            BlockError::corrupt(
                                path,
                                format!("{name} is not {len}-byte binary without nulls"),
                            )
                        })
                };
                let traces = column(col::TRACE_ID, TraceId::LEN)?;
                let spans = column(col::SPAN_ID, SpanId::LEN)?;
                Ok((0..traces.len())
                    .map(|row| {
                        let mut ids = (TraceId::default(), SpanId::default());
                        ids.0 .0.copy_from_slice(traces.value(row));
                        ids.1 .0.copy_from_slice(spans.value(row));
                        ids
                    })
                    .collect::<Vec<_>>())
            });
            match ids {
                Ok(ids) => self.decoded = ids.into_iter(),
                Err(e) => {
                    self.batches = None;
                    return Some(Err(e));
                }
            }
        }
    }
}

/// The next batch of `reader` (`None` at its end, after which the reader
/// is dropped), with a Parquet panic turned into an error.
fn next_batch(
    path: &Path,
    reader: &mut Option<ParquetRecordBatchReader>,
) -> Option<Result<RecordBatch, BlockError>> {
    let batches = reader.as_mut()?;
    let next = guard(path, || {
        Ok(batches
            .next()
            .map(|b| b.map_err(|e| BlockError::arrow(path, e))))
    });
    match next {
        Ok(Some(batch)) => Some(batch),
        Ok(None) => {
            *reader = None;
            None
        }
        Err(e) => {
            *reader = None;
            Some(Err(e))
        }
    }
}

/// Reads the whole resource table of a `format` block (`vparquet2` or
/// later), whose `resources.parquet` has `schema`.
fn load_resources(
    dir: &Path,
    format: Format,
    schema: &SchemaRef,
) -> Result<Vec<Arc<Resource>>, BlockError> {
    let file = OpenFile::open(dir.join(RESOURCES_FILE), format, schema, None)?;
    let all = (0..file.meta.metadata().num_row_groups()).collect();
    let reader = file.reader(all, None, None, None, 64 * 1024)?;
    let mut out = Vec::new();
    file.each_batch(reader, |batch| read_resources(batch, &mut out))?;
    Ok(out)
}

/// Runs a Parquet read, turning a panic inside the library into an error.
///
/// parquet-rs validates most input but has had panics on malformed files;
/// a block on disk is outside data, and one damaged block must not take the
/// server down.
fn guard<T>(path: &Path, f: impl FnOnce() -> Result<T, BlockError>) -> Result<T, BlockError> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|panic| {
        let why = panic
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| panic.downcast_ref::<&str>().copied())
            .unwrap_or("unknown panic");
        Err(BlockError::corrupt(
            path,
            format!("parquet reader failed: {why}"),
        ))
    })
}
