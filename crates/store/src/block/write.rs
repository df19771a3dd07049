//! [`write_block`]: sorts and de-duplicates spans, writes `data.parquet`,
//! `resources.parquet`, `traces.parquet` and `meta.json` into a temporary
//! directory, and publishes the block with one rename.
//!
//! Durability: every file and the temporary directory are fsynced before
//! the rename, the blocks directory after it. A crash leaves either no
//! block or a whole one, plus perhaps a `.tmp-*` directory that is not a
//! block and that the next write of the same id clears.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use arrow_array::RecordBatch;
use chaintrace_model::{Span, SpanId, TraceId, TraceSummary, UnixNanos};
use parquet::arrow::ArrowWriter;
use parquet::errors::ParquetError;
use parquet::file::properties::WriterProperties;

use super::encode::{data_batch, traces_batch};
use super::error::BlockError;
use super::hot::HotFields;
use super::meta::{check_id, meta_json, BlockMeta, MAX_META_NAMES};
use super::resources::ResourceTable;
use super::schema::{
    data_properties, resources_properties, traces_properties, DATA_SCHEMA, RESOURCES_SCHEMA,
    TRACES_SCHEMA,
};
use super::stats::BlockCounts;
use super::{DATA_FILE, FORMAT_VERSION, META_FILE, RESOURCES_FILE, TMP_PREFIX, TRACES_FILE};

/// Row-group size used by [`BlockWriteOptions::default`].
pub const DEFAULT_ROW_GROUP_ROWS: usize = 64 * 1024;

/// A row group also ends once its spans hold about this many bytes in
/// memory (long prompts), so that writing a block stays bounded.
pub(super) const MAX_ROW_GROUP_BYTES: usize = 256 << 20;

/// Rows per record batch handed to the Parquet writer; with
/// [`MAX_BATCH_BYTES`] this keeps each batch far below Arrow's 2 GiB
/// string-offset limit.
pub(super) const BATCH_ROWS: usize = 4096;
pub(super) const MAX_BATCH_BYTES: usize = 64 << 20;

/// How to write a block; the store fills in what only it knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockWriteOptions {
    /// Most spans per row group. Row groups end at trace boundaries, so a
    /// trace spans two row groups only when it alone is larger than this.
    pub row_group_rows: usize,
    /// Carried into [`BlockMeta::wal_segments`].
    pub wal_segments: Option<(u64, u64)>,
    /// Carried into [`BlockMeta::replaces`].
    pub replaces: Vec<String>,
    /// Carried into [`BlockMeta::compaction_level`].
    pub compaction_level: u32,
    /// Carried into [`BlockMeta::siblings`].
    pub siblings: Vec<String>,
}

impl Default for BlockWriteOptions {
    fn default() -> Self {
        BlockWriteOptions {
            row_group_rows: DEFAULT_ROW_GROUP_ROWS,
            wal_segments: None,
            replaces: Vec::new(),
            compaction_level: 0,
            siblings: Vec::new(),
        }
    }
}

/// Writes a block atomically: into `<blocks_dir>/.tmp-<id>/`, fsyncs every
/// file and the directory, renames it to `<blocks_dir>/<id>/` and fsyncs
/// `blocks_dir`.
///
/// `spans` may come in any order and may hold duplicates (same trace id and
/// span id, as retrying exporters send them): the first of each duplicate in
/// input order is kept. Rows are sorted by trace id, then start time, then
/// span id. Fails if `spans` is empty, the id is not a valid directory name
/// or a block with this id exists.
///
/// ```no_run
/// use chaintrace_store::block::{write_block, Block, BlockWriteOptions};
/// # fn demo(spans: Vec<chaintrace_model::Span>) -> Result<(), chaintrace_store::block::BlockError> {
/// let dir = std::path::Path::new("./chaintrace-data/blocks");
/// let meta = write_block(dir, "b000001", spans, &BlockWriteOptions::default())?;
/// let block = Block::open(&dir.join(&meta.id))?;
/// println!("{} spans in {} traces", block.meta().span_count, block.meta().trace_count);
/// # Ok(())
/// # }
/// ```
pub fn write_block(
    blocks_dir: &Path,
    id: &str,
    spans: Vec<Span>,
    opts: &BlockWriteOptions,
) -> Result<BlockMeta, BlockError> {
    write_block_refs(blocks_dir, id, spans.iter().collect(), opts)
}

/// [`write_block`] from spans held elsewhere (a frozen head, blocks being
/// compacted): sorting and encoding work on references, so a block is
/// written without copying its spans first.
pub fn write_block_refs(
    blocks_dir: &Path,
    id: &str,
    spans: Vec<&Span>,
    opts: &BlockWriteOptions,
) -> Result<BlockMeta, BlockError> {
    check_id(id)?;
    if spans.is_empty() {
        return Err(BlockError::Empty { id: id.to_string() });
    }
    let tmp = begin(blocks_dir, id)?;
    let meta = match write_files(&tmp, id, spans, opts) {
        Ok(meta) => meta,
        Err(e) => {
            // Best effort: a failed write leaves no temporary files behind.
            let _ = fs::remove_dir_all(&tmp);
            return Err(e);
        }
    };
    publish(&tmp, blocks_dir, id)?;
    Ok(meta)
}

/// Creates the empty temporary directory block `id` is written in, after
/// checking that no block `id` exists; returns its path.
pub(super) fn begin(blocks_dir: &Path, id: &str) -> Result<PathBuf, BlockError> {
    let final_dir = blocks_dir.join(id);
    if final_dir.symlink_metadata().is_ok() {
        return Err(BlockError::Exists { path: final_dir });
    }
    fs::create_dir_all(blocks_dir).map_err(|e| BlockError::io(blocks_dir, e))?;
    let tmp = blocks_dir.join(format!("{TMP_PREFIX}{id}"));
    if tmp.symlink_metadata().is_ok() {
        // Left by a write that crashed; nothing refers to it.
        fs::remove_dir_all(&tmp).map_err(|e| BlockError::io(&tmp, e))?;
    }
    fs::create_dir(&tmp).map_err(|e| BlockError::io(&tmp, e))?;
    Ok(tmp)
}

/// Makes the complete block in `tmp` durable and visible as
/// `<blocks_dir>/<id>/` with one rename.
pub(super) fn publish(tmp: &Path, blocks_dir: &Path, id: &str) -> Result<(), BlockError> {
    let final_dir = blocks_dir.join(id);
    sync_dir(tmp)?;
    fs::rename(tmp, &final_dir).map_err(|e| BlockError::io(&final_dir, e))?;
    sync_dir(blocks_dir)
}

fn write_files(
    dir: &Path,
    id: &str,
    spans: Vec<&Span>,
    opts: &BlockWriteOptions,
) -> Result<BlockMeta, BlockError> {
    let (spans, traces, mut summaries) = sort_and_summarize(spans);
    // Derived once: the data columns and the meta counts both need them.
    let hot: Vec<HotFields<'_>> = spans.iter().map(|s| HotFields::of(s)).collect();
    let resources = ResourceTable::of(&spans);
    let resources_bytes = write_resources(dir, |path| resources.batch(path))?;
    let data_path = dir.join(DATA_FILE);
    let sizes: Vec<usize> = hot.iter().map(|h| h.bytes).collect();
    let plan = plan_row_groups(&sizes, &traces, opts.row_group_rows.max(1));
    let most_traces = plan.iter().map(|g| g.traces).max().unwrap_or(1);
    let props = data_properties(most_traces);
    // Three threads: this one builds Arrow batches while another encodes
    // the previous ones to Parquet, and a third counts the meta file's
    // values. Cuts are what bound sustained ingest (the cut thread is busy
    // nearly all the time under load), so their stages run side by side.
    let (data_bytes, counted) = std::thread::scope(|scope| {
        let (pieces, received) = mpsc::sync_channel(PIPELINE_DEPTH);
        let path = &data_path;
        let encoder = scope.spawn(move || encode_data(path, props, received));
        let counter = scope.spawn(|| Counted::of(&spans, &hot));
        let rows = Rows {
            spans: &spans,
            hot: &hot,
            resource_index: &resources.index,
        };
        let built = build_batches(&plan, &sizes, rows, path, &pieces);
        drop(pieces);
        let encoded = encoder.join().unwrap_or_else(|_| {
            Err(BlockError::parquet(
                path,
                ParquetError::General("the Parquet encoder thread panicked".into()),
            ))
        });
        let counted = counter.join().map_err(|_| {
            BlockError::parquet(
                path,
                ParquetError::General("the thread counting meta values panicked".into()),
            )
        });
        // An encoder error stops the builder quietly: report that one.
        Ok::<_, BlockError>((built.and(encoded)?, counted?))
    })?;

    let traces_bytes = write_traces(dir, &mut summaries)?;
    let meta = block_meta(
        id,
        counted,
        &spans,
        summaries.len(),
        data_bytes + traces_bytes + resources_bytes,
        opts,
    );
    write_meta(dir, &meta)?;
    Ok(meta)
}

/// Writes `resources.parquet` in `dir` from the batch `batch` builds;
/// returns its size.
pub(super) fn write_resources(
    dir: &Path,
    batch: impl FnOnce(&Path) -> Result<RecordBatch, BlockError>,
) -> Result<u64, BlockError> {
    let path = dir.join(RESOURCES_FILE);
    let mut writer = parquet_writer(&path, &RESOURCES_SCHEMA, resources_properties())?;
    write_batch(&mut writer, &batch(&path)?, &path)?;
    close(writer, &path)
}

/// Sorts `summaries` by start time (newest-first listing reads this file
/// only) and writes them as `traces.parquet` in `dir`; returns its size.
pub(super) fn write_traces(dir: &Path, summaries: &mut [TraceSummary]) -> Result<u64, BlockError> {
    summaries.sort_by_key(|t| (t.start_unix_nano, t.trace_id));
    let path = dir.join(TRACES_FILE);
    let mut writer = parquet_writer(&path, &TRACES_SCHEMA, traces_properties())?;
    for chunk in summaries.chunks(64 * 1024) {
        write_batch(&mut writer, &traces_batch(chunk, &path)?, &path)?;
    }
    close(writer, &path)
}

/// Writes and fsyncs `meta.json` in `dir`: the last file of a block.
pub(super) fn write_meta(dir: &Path, meta: &BlockMeta) -> Result<(), BlockError> {
    let path = dir.join(META_FILE);
    let mut file = create(&path)?;
    file.write_all(&meta_json(meta))
        .and_then(|()| file.sync_all())
        .map_err(|e| BlockError::io(&path, e))
}

/// Batches in flight between the Arrow and Parquet stages of a cut.
const PIPELINE_DEPTH: usize = 2;

/// What the Arrow stage hands the Parquet stage.
enum Piece {
    Batch(RecordBatch),
    /// The row group is complete.
    EndOfRowGroup,
}

/// The sorted spans of a block and what was derived from each, row by row.
#[derive(Clone, Copy)]
struct Rows<'r, 's> {
    spans: &'r [&'s Span],
    hot: &'r [HotFields<'s>],
    resource_index: &'r [u32],
}

/// The Arrow stage: builds each planned row group's batches and sends them
/// on; stops early (without error) when the Parquet stage has gone.
fn build_batches(
    plan: &[RowGroupPlan],
    sizes: &[usize],
    all: Rows<'_, '_>,
    path: &Path,
    pieces: &mpsc::SyncSender<Piece>,
) -> Result<(), BlockError> {
    for group in plan {
        for rows in batches(sizes, group.rows.clone()) {
            let batch = data_batch(
                &all.spans[rows.clone()],
                &all.hot[rows.clone()],
                &all.resource_index[rows],
                path,
            )?;
            if pieces.send(Piece::Batch(batch)).is_err() {
                return Ok(());
            }
        }
        if pieces.send(Piece::EndOfRowGroup).is_err() {
            return Ok(());
        }
    }
    Ok(())
}

/// The Parquet stage: writes `data.parquet` from what arrives, then closes
/// it; returns its size.
fn encode_data(
    path: &Path,
    props: WriterProperties,
    pieces: mpsc::Receiver<Piece>,
) -> Result<u64, BlockError> {
    let mut writer = parquet_writer(path, &DATA_SCHEMA, props)?;
    for piece in pieces {
        match piece {
            Piece::Batch(batch) => write_batch(&mut writer, &batch, path)?,
            Piece::EndOfRowGroup => writer.flush().map_err(|e| BlockError::parquet(path, e))?,
        }
    }
    close(writer, path)
}

/// Sorts by (trace id, start, span id) after keeping the first of each
/// (trace id, span id); returns the spans, the row range of each trace and
/// each trace's summary.
fn sort_and_summarize(spans: Vec<&Span>) -> (Vec<&Span>, Vec<Range<usize>>, Vec<TraceSummary>) {
    let mut order = sorted_keys(&spans);
    drop_later_duplicates(&mut order);
    let out: Vec<&Span> = order.iter().map(|k| spans[k.3]).collect();

    let mut ranges = Vec::new();
    let mut summaries = Vec::new();
    let mut at = 0;
    while at < out.len() {
        let id = out[at].trace_id;
        let end = at + out[at..].iter().take_while(|s| s.trace_id == id).count();
        // Already in the order Trace::new sorts into (start, span id).
        summaries.push(TraceSummary::of(id, out[at..end].iter().copied()));
        ranges.push(at..end);
        at = end;
    }
    (out, ranges, summaries)
}

/// A span's place in a block: trace id, start, span id, input index.
type SortKey = (TraceId, UnixNanos, SpanId, usize);

/// Every span's [`SortKey`], sorted. Each span is read once, here: the
/// cut walks spans cold from memory, so sorting by id to drop duplicates
/// first and then again by start cost a second sort and a second read.
fn sorted_keys(spans: &[&Span]) -> Vec<SortKey> {
    let mut keys: Vec<SortKey> = spans
        .iter()
        .enumerate()
        .map(|(i, s)| (s.trace_id, s.start, s.span_id, i))
        .collect();
    keys.sort_unstable();
    keys
}

/// Keeps, of each (trace id, span id), the key with the lowest input index:
/// the first sent. Copies need not be adjacent (a retry may carry another
/// start), but they are in the same trace's run of `keys`, which is
/// checked with a sort of that run's span ids only when it has more than
/// one span.
fn drop_later_duplicates(keys: &mut Vec<SortKey>) {
    let mut ids: Vec<(SpanId, usize)> = Vec::new();
    let mut later: Vec<usize> = Vec::new();
    let mut at = 0;
    while at < keys.len() {
        let trace = keys[at].0;
        let end = at + keys[at..].iter().take_while(|k| k.0 == trace).count();
        if end - at > 1 {
            ids.clear();
            ids.extend(keys[at..end].iter().map(|k| (k.2, k.3)));
            ids.sort_unstable();
            later.extend(ids.windows(2).filter(|w| w[0].0 == w[1].0).map(|w| w[1].1));
        }
        at = end;
    }
    if !later.is_empty() {
        let later: HashSet<usize> = later.into_iter().collect();
        keys.retain(|k| !later.contains(&k.3));
    }
}

/// One row group: its rows and how many traces (or pieces of one) it holds.
struct RowGroupPlan {
    rows: Range<usize>,
    traces: u64,
}

/// Cuts row groups at trace boundaries: a row group takes whole traces
/// while it stays within `max_rows` and [`MAX_ROW_GROUP_BYTES`]; a trace
/// larger than that alone is split into pieces of `max_rows`.
fn plan_row_groups(sizes: &[usize], traces: &[Range<usize>], max_rows: usize) -> Vec<RowGroupPlan> {
    let mut plan: Vec<RowGroupPlan> = Vec::new();
    let mut current = RowGroupPlan {
        rows: 0..0,
        traces: 0,
    };
    let mut current_bytes = 0usize;
    for trace in traces {
        let bytes: usize = sizes[trace.clone()].iter().sum();
        let fits = current.rows.len() + trace.len() <= max_rows
            && current_bytes + bytes <= MAX_ROW_GROUP_BYTES;
        if !fits && !current.rows.is_empty() {
            let next = current.rows.end;
            plan.push(std::mem::replace(
                &mut current,
                RowGroupPlan {
                    rows: next..next,
                    traces: 0,
                },
            ));
            current_bytes = 0;
        }
        if trace.len() <= max_rows {
            current.rows.end = trace.end;
            current.traces += 1;
            current_bytes += bytes;
            continue;
        }
        // A giant trace: full pieces become row groups of their own; the
        // remainder starts the next row group.
        let mut start = trace.start;
        while trace.end - start > max_rows {
            plan.push(RowGroupPlan {
                rows: start..start + max_rows,
                traces: 1,
            });
            start += max_rows;
        }
        current = RowGroupPlan {
            rows: start..trace.end,
            traces: 1,
        };
        current_bytes = sizes[start..trace.end].iter().sum();
    }
    if !current.rows.is_empty() {
        plan.push(current);
    }
    plan
}

/// Splits a row group's rows into record batches of bounded rows and
/// bytes (`sizes` holds each span's [`super::encode::approx_bytes`]).
pub(super) fn batches(
    sizes: &[usize],
    rows: Range<usize>,
) -> impl Iterator<Item = Range<usize>> + '_ {
    let mut start = rows.start;
    std::iter::from_fn(move || {
        if start >= rows.end {
            return None;
        }
        let mut end = start;
        let mut bytes = 0;
        while end < rows.end
            && end - start < BATCH_ROWS
            && (end == start || bytes < MAX_BATCH_BYTES)
        {
            bytes += sizes[end];
            end += 1;
        }
        let batch = start..end;
        start = end;
        Some(batch)
    })
}

/// What the meta file says of a block's spans, derived from all of them.
struct Counted {
    counts: BlockCounts,
    min_start: UnixNanos,
    max_end: UnixNanos,
}

impl Counted {
    /// `hot[i]` must be `HotFields::of(spans[i])`.
    fn of(spans: &[&Span], hot: &[HotFields<'_>]) -> Counted {
        Counted {
            counts: BlockCounts::of(spans, hot),
            min_start: spans.iter().map(|s| s.start).min().unwrap_or_default(),
            max_end: spans.iter().map(|s| s.end).max().unwrap_or_default(),
        }
    }
}

fn block_meta(
    id: &str,
    counted: Counted,
    spans: &[&Span],
    trace_count: usize,
    data_bytes: u64,
    opts: &BlockWriteOptions,
) -> BlockMeta {
    MetaParts {
        counts: counted.counts,
        min_start: counted.min_start,
        max_end: counted.max_end,
        span_count: spans.len() as u64,
        trace_count: trace_count as u64,
        // Sorted by trace id: the first and last rows bound it.
        trace_ids: spans
            .first()
            .zip(spans.last())
            .map(|(a, b)| (a.trace_id, b.trace_id)),
        data_bytes,
    }
    .into_meta(id, opts)
}

/// What a writer learned about the spans it wrote, for [`BlockMeta`].
pub(super) struct MetaParts {
    pub(super) counts: BlockCounts,
    pub(super) min_start: UnixNanos,
    pub(super) max_end: UnixNanos,
    pub(super) span_count: u64,
    pub(super) trace_count: u64,
    pub(super) trace_ids: Option<(TraceId, TraceId)>,
    pub(super) data_bytes: u64,
}

impl MetaParts {
    pub(super) fn into_meta(self, id: &str, opts: &BlockWriteOptions) -> BlockMeta {
        let BlockCounts {
            counts,
            services,
            mut names,
        } = self.counts;
        let names_truncated = names.len() > MAX_META_NAMES;
        names.truncate(MAX_META_NAMES);
        BlockMeta {
            version: FORMAT_VERSION.to_string(),
            id: id.to_string(),
            min_start: self.min_start,
            max_end: self.max_end,
            span_count: self.span_count,
            trace_count: self.trace_count,
            services,
            names,
            names_truncated,
            data_bytes: self.data_bytes,
            wal_segments: opts.wal_segments,
            replaces: opts.replaces.clone(),
            compaction_level: opts.compaction_level,
            created: UnixNanos::now(),
            span_counts: Some(counts),
            trace_ids: self.trace_ids,
            siblings: opts.siblings.clone(),
            hot_rules: super::meta::HOT_RULES,
        }
    }
}

pub(super) fn create(path: &Path) -> Result<File, BlockError> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| BlockError::io(path, e))
}

pub(super) fn parquet_writer(
    path: &Path,
    schema: &arrow_schema::SchemaRef,
    props: WriterProperties,
) -> Result<ArrowWriter<BufWriter<File>>, BlockError> {
    let file = BufWriter::with_capacity(1 << 20, create(path)?);
    ArrowWriter::try_new(file, schema.clone(), Some(props))
        .map_err(|e| BlockError::parquet(path, e))
}

pub(super) fn write_batch(
    writer: &mut ArrowWriter<BufWriter<File>>,
    batch: &RecordBatch,
    path: &Path,
) -> Result<(), BlockError> {
    writer
        .write(batch)
        .map_err(|e| BlockError::parquet(path, e))
}

/// Finishes the footer, fsyncs, and returns the file's size.
pub(super) fn close(
    mut writer: ArrowWriter<BufWriter<File>>,
    path: &Path,
) -> Result<u64, BlockError> {
    writer.finish().map_err(|e| BlockError::parquet(path, e))?;
    let buffered = writer.inner_mut();
    buffered.flush().map_err(|e| BlockError::io(path, e))?;
    let file = buffered.get_ref();
    file.sync_all().map_err(|e| BlockError::io(path, e))?;
    let len = file.metadata().map_err(|e| BlockError::io(path, e))?.len();
    Ok(len)
}

/// Makes a directory's entries (new files, renames) durable.
fn sync_dir(dir: &Path) -> Result<(), BlockError> {
    #[cfg(unix)]
    {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| BlockError::io(dir, e))
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::test_support::span;

    proptest! {
        /// One sort and a per-trace duplicate check give what dropping
        /// duplicates by id first and then sorting by start gave: the
        /// first sent copy of each span, in (trace, start, span id) order,
        /// however the copies' starts and positions fall.
        #[test]
        fn one_sort_keeps_the_first_sent_copy_in_block_order(
            input in prop::collection::vec((0u8..4, 0u64..4, 0u8..6), 0..60),
        ) {
            let spans: Vec<Span> = input
                .iter()
                .map(|&(t, start, s)| span(t, s, None, "svc", "op", start, start + 1))
                .collect();
            let refs: Vec<&Span> = spans.iter().collect();
            let mut by_id: Vec<(TraceId, SpanId, usize)> = refs
                .iter()
                .enumerate()
                .map(|(i, s)| (s.trace_id, s.span_id, i))
                .collect();
            by_id.sort_unstable();
            by_id.dedup_by(|later, first| later.0 == first.0 && later.1 == first.1);
            let mut want: Vec<SortKey> = by_id
                .into_iter()
                .map(|(t, s, i)| (t, refs[i].start, s, i))
                .collect();
            want.sort_unstable();
            let mut got = sorted_keys(&refs);
            drop_later_duplicates(&mut got);
            prop_assert_eq!(got, want);
        }
    }

    fn plan(trace_lens: &[usize], max_rows: usize) -> Vec<(Range<usize>, u64)> {
        let mut traces = Vec::new();
        let mut at = 0;
        for len in trace_lens {
            traces.push(at..at + len);
            at += len;
        }
        plan_row_groups(&vec![100; at], &traces, max_rows)
            .into_iter()
            .map(|g| (g.rows, g.traces))
            .collect()
    }

    #[test]
    fn row_groups_end_at_trace_boundaries_and_split_only_giant_traces() {
        assert_eq!(plan(&[3, 3, 3], 7), [(0..6, 2), (6..9, 1)]);
        assert_eq!(plan(&[7, 1], 7), [(0..7, 1), (7..8, 1)]);
        // A 17-span trace with max 5: three full pieces, the rest joins the
        // next trace.
        assert_eq!(
            plan(&[2, 17, 1], 5),
            [(0..2, 1), (2..7, 1), (7..12, 1), (12..17, 1), (17..20, 2)]
        );
    }

    #[test]
    fn batches_are_bounded_by_rows_and_bytes() {
        let sizes = vec![1; BATCH_ROWS * 2 + 1];
        let rows: Vec<usize> = batches(&sizes, 0..sizes.len()).map(|r| r.len()).collect();
        assert_eq!(rows, [BATCH_ROWS, BATCH_ROWS, 1]);
        let big = vec![MAX_BATCH_BYTES / 2 + 1; 5];
        let rows: Vec<Range<usize>> = batches(&big, 1..5).collect();
        assert_eq!(rows, [1..3, 3..5]);
    }
}
