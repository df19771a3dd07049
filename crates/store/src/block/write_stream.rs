//! [`BlockWriter`]: writes a block from traces pushed one at a time, in
//! trace-id order, holding about one record batch of spans in memory — not
//! the block. Compaction merges blocks far larger than memory with it.
//!
//! It writes the same files by the same rules as [`super::write_block`]
//! (row groups end at trace boundaries, a giant trace alone is split; the
//! resource table, trace summaries and meta counts are the same), and
//! publishes the block with the same tmp-dir, fsync and rename protocol.
//! The cut keeps its own path (`write_block_refs`): it has every span in
//! memory already and pipelines Arrow and Parquet over two threads.

use std::fs::{self, File};
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use chaintrace_model::{Span, TraceId, TraceSummary, UnixNanos};
use parquet::arrow::ArrowWriter;

use super::encode::{approx_bytes, data_batch};
use super::error::BlockError;
use super::hot::HotFields;
use super::meta::{check_id, BlockMeta};
use super::resources::ResourceTableBuilder;
use super::schema::{data_properties, DATA_SCHEMA};
use super::stats::CountsBuilder;
use super::write::{
    begin, close, parquet_writer, publish, write_batch, write_meta, write_resources, write_traces,
    BlockWriteOptions, MetaParts, BATCH_ROWS, MAX_BATCH_BYTES, MAX_ROW_GROUP_BYTES,
};
use super::DATA_FILE;

/// Writes one block from whole traces pushed in increasing trace-id order.
///
/// Dropping it without [`BlockWriter::finish`] (or after an error) removes
/// its temporary directory: no block appears.
///
/// ```no_run
/// use chaintrace_store::block::{BlockWriteOptions, BlockWriter};
/// # fn demo(traces: Vec<Vec<chaintrace_model::Span>>) -> Result<(), chaintrace_store::block::BlockError> {
/// let dir = std::path::Path::new("./chaintrace-data/blocks");
/// let mut writer = BlockWriter::create(dir, "b000002", &BlockWriteOptions::default(), 1024)?;
/// for spans in traces {
///     // One trace's spans, sorted by (start, span id), no duplicate span ids.
///     writer.push_trace(spans)?;
/// }
/// let meta = writer.finish()?;
/// # Ok(())
/// # }
/// ```
pub struct BlockWriter {
    blocks_dir: PathBuf,
    id: String,
    opts: BlockWriteOptions,
    /// `<blocks_dir>/.tmp-<id>`; `None` once published.
    tmp: Option<PathBuf>,
    data_path: PathBuf,
    data: Option<ArrowWriter<BufWriter<File>>>,
    max_rows: usize,
    /// Spans of the open row group not yet handed to Parquet (at most one
    /// record batch), and their approximate bytes.
    pending: Vec<Span>,
    pending_bytes: usize,
    /// Rows and approximate bytes of the open row group.
    group_rows: usize,
    group_bytes: usize,
    resources: ResourceTableBuilder,
    resource_index: Vec<u32>,
    counts: CountsBuilder,
    summaries: Vec<TraceSummary>,
    span_count: u64,
    min_start: UnixNanos,
    max_end: UnixNanos,
    trace_ids: Option<(TraceId, TraceId)>,
}

impl BlockWriter {
    /// Starts block `id` in `<blocks_dir>/.tmp-<id>/`. Fails if the id is
    /// invalid or a block `id` exists. `traces_per_row_group` sizes each
    /// row group's trace-id bloom filter (too small only raises its false
    /// positive rate; `row_group_rows` is always enough).
    pub fn create(
        blocks_dir: &Path,
        id: &str,
        opts: &BlockWriteOptions,
        traces_per_row_group: u64,
    ) -> Result<BlockWriter, BlockError> {
        check_id(id)?;
        let tmp = begin(blocks_dir, id)?;
        let data_path = tmp.join(DATA_FILE);
        let max_rows = opts.row_group_rows.max(1);
        let ndv = traces_per_row_group.clamp(1, max_rows as u64);
        let data = match parquet_writer(&data_path, &DATA_SCHEMA, data_properties(ndv)) {
            Ok(w) => w,
            Err(e) => {
                let _ = fs::remove_dir_all(&tmp);
                return Err(e);
            }
        };
        Ok(BlockWriter {
            blocks_dir: blocks_dir.to_path_buf(),
            id: id.to_string(),
            opts: opts.clone(),
            tmp: Some(tmp),
            data_path,
            data: Some(data),
            max_rows,
            pending: Vec::new(),
            pending_bytes: 0,
            group_rows: 0,
            group_bytes: 0,
            resources: ResourceTableBuilder::default(),
            resource_index: Vec::new(),
            counts: CountsBuilder::default(),
            summaries: Vec::new(),
            span_count: 0,
            min_start: UnixNanos(u64::MAX),
            max_end: UnixNanos(0),
            trace_ids: None,
        })
    }

    /// Spans written so far.
    pub fn span_count(&self) -> u64 {
        self.span_count
    }

    /// Adds one whole trace: `spans` all of one trace id, greater than
    /// every trace pushed before, sorted by (start, span id), without
    /// duplicate span ids. Row groups end at trace boundaries, as with
    /// [`super::write_block`].
    pub fn push_trace(&mut self, spans: Vec<Span>) -> Result<(), BlockError> {
        let Some(first) = spans.first() else {
            return Ok(());
        };
        let id = first.trace_id;
        if let Some(bad) = spans.iter().find(|s| s.trace_id != id) {
            return Err(self.misuse(format!(
                "trace {id} was pushed with a span of trace {}",
                bad.trace_id
            )));
        }
        if let Some((_, last)) = self.trace_ids {
            if id <= last {
                return Err(self.misuse(format!(
                    "trace {id} was pushed after trace {last}: traces must come in increasing id order"
                )));
            }
        }
        self.summaries.push(TraceSummary::of(id, spans.iter()));
        self.trace_ids = Some((self.trace_ids.map_or(id, |(min, _)| min), id));
        let sizes: Vec<usize> = spans.iter().map(approx_bytes).collect();
        let bytes: usize = sizes.iter().sum();
        // The same rule as `plan_row_groups`.
        let fits = self.group_rows + spans.len() <= self.max_rows
            && self.group_bytes + bytes <= MAX_ROW_GROUP_BYTES;
        if !fits && self.group_rows > 0 {
            self.end_row_group()?;
        }
        if spans.len() <= self.max_rows {
            for (span, size) in spans.into_iter().zip(sizes) {
                self.push_span(span, size)?;
            }
            return Ok(());
        }
        // A giant trace: full pieces become row groups of their own; the
        // remainder starts the next row group.
        let whole = (spans.len() - 1) / self.max_rows;
        for (i, (span, size)) in spans.into_iter().zip(sizes).enumerate() {
            if i > 0 && i % self.max_rows == 0 && i / self.max_rows <= whole {
                self.end_row_group()?;
            }
            self.push_span(span, size)?;
        }
        Ok(())
    }

    /// Writes the rest of `data.parquet`, then `resources.parquet`,
    /// `traces.parquet` and `meta.json`, fsyncs them and renames the
    /// directory into place. Fails (leaving no block) if no span was pushed.
    pub fn finish(mut self) -> Result<BlockMeta, BlockError> {
        if self.span_count == 0 {
            return Err(BlockError::Empty {
                id: self.id.clone(),
            });
        }
        if self.group_rows > 0 {
            self.end_row_group()?;
        }
        let tmp = self.tmp.clone().unwrap_or_default();
        let data = self
            .data
            .take()
            .ok_or_else(|| self.misuse("the data file was already closed".into()))?;
        let data_bytes = close(data, &self.data_path)?;
        let resources = &self.resources;
        let resources_bytes = write_resources(&tmp, |path| resources.batch(path))?;
        let traces_bytes = write_traces(&tmp, &mut self.summaries)?;
        let meta = MetaParts {
            counts: std::mem::take(&mut self.counts).finish(),
            min_start: self.min_start,
            max_end: self.max_end,
            span_count: self.span_count,
            trace_count: self.summaries.len() as u64,
            trace_ids: self.trace_ids,
            data_bytes: data_bytes + traces_bytes + resources_bytes,
        }
        .into_meta(&self.id, &self.opts);
        write_meta(&tmp, &meta)?;
        publish(&tmp, &self.blocks_dir, &self.id)?;
        self.tmp = None;
        Ok(meta)
    }

    fn push_span(&mut self, span: Span, size: usize) -> Result<(), BlockError> {
        if self.pending.len() >= BATCH_ROWS
            || (!self.pending.is_empty() && self.pending_bytes >= MAX_BATCH_BYTES)
        {
            self.write_pending()?;
        }
        self.span_count += 1;
        self.min_start = self.min_start.min(span.start);
        self.max_end = self.max_end.max(span.end);
        self.group_rows += 1;
        self.group_bytes += size;
        self.pending_bytes += size;
        self.resource_index.push(self.resources.push(&span));
        self.pending.push(span);
        Ok(())
    }

    /// Hands the pending spans to Parquet as one record batch.
    fn write_pending(&mut self) -> Result<(), BlockError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let spans: Vec<&Span> = self.pending.iter().collect();
        let hot: Vec<HotFields<'_>> = spans.iter().map(|s| HotFields::of(s)).collect();
        for (span, hot) in spans.iter().zip(&hot) {
            self.counts.add(span, hot);
        }
        let batch = data_batch(&spans, &hot, &self.resource_index, &self.data_path)?;
        let Some(writer) = self.data.as_mut() else {
            return Err(BlockError::corrupt(
                &self.data_path,
                "the data file was already closed",
            ));
        };
        write_batch(writer, &batch, &self.data_path)?;
        self.pending.clear();
        self.resource_index.clear();
        self.pending_bytes = 0;
        Ok(())
    }

    fn end_row_group(&mut self) -> Result<(), BlockError> {
        self.write_pending()?;
        if let Some(writer) = self.data.as_mut() {
            writer
                .flush()
                .map_err(|e| BlockError::parquet(&self.data_path, e))?;
        }
        self.group_rows = 0;
        self.group_bytes = 0;
        Ok(())
    }

    fn misuse(&self, detail: String) -> BlockError {
        BlockError::corrupt(&self.data_path, detail)
    }
}

impl Drop for BlockWriter {
    fn drop(&mut self) {
        if let Some(tmp) = self.tmp.take() {
            // Best effort: an unfinished block leaves nothing behind (and
            // a crash leaves a `.tmp-*` directory the catalog removes).
            drop(self.data.take());
            let _ = fs::remove_dir_all(tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use chaintrace_model::{KeyValue, Resource};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use proptest::prelude::*;

    use super::super::testing::{demo_spans, spans};
    use super::super::{write_block, Block, RESOURCES_FILE};
    use super::*;
    use crate::test_support::span;

    fn rows_per_group(block: &Block) -> Vec<i64> {
        let meta = block.data.meta.metadata();
        meta.row_groups().iter().map(|g| g.num_rows()).collect()
    }

    fn resource_rows(block: &Block) -> i64 {
        let file = File::open(block.dir().join(RESOURCES_FILE)).unwrap();
        let reader = ParquetRecordBatchReaderBuilder::try_new(file).unwrap();
        reader.metadata().file_metadata().num_rows()
    }

    /// Writes `input` with `write_block`, then its spans again trace by
    /// trace with a `BlockWriter`, and checks that both blocks agree.
    fn same_as_write_block(input: Vec<Span>, rows: usize) -> Result<(), TestCaseError> {
        let tmp = tempfile::tempdir().unwrap();
        let opts = BlockWriteOptions {
            row_group_rows: rows,
            replaces: vec!["x".into()],
            siblings: vec!["a".into(), "b".into()],
            compaction_level: 1,
            ..BlockWriteOptions::default()
        };
        let want_meta = write_block(tmp.path(), "a", input, &opts).unwrap();
        let want = Block::open(&tmp.path().join("a")).unwrap();
        let spans = want.read_all().unwrap();
        let mut writer = BlockWriter::create(tmp.path(), "b", &opts, 4).unwrap();
        let mut at = 0;
        while at < spans.len() {
            let id = spans[at].trace_id;
            let end = at + spans[at..].iter().take_while(|s| s.trace_id == id).count();
            writer.push_trace(spans[at..end].to_vec()).unwrap();
            at = end;
        }
        let meta = writer.finish().unwrap();
        let got = Block::open(&tmp.path().join("b")).unwrap();
        prop_assert_eq!(got.meta(), &meta);
        let strip = |m: &BlockMeta| BlockMeta {
            id: String::new(),
            created: UnixNanos(0),
            data_bytes: 0,
            ..m.clone()
        };
        prop_assert_eq!(strip(&meta), strip(&want_meta));
        prop_assert_eq!(got.read_all().unwrap(), spans);
        prop_assert_eq!(
            got.trace_summaries(None, None).unwrap(),
            want.trace_summaries(None, None).unwrap()
        );
        prop_assert_eq!(rows_per_group(&got), rows_per_group(&want));
        prop_assert_eq!(resource_rows(&got), resource_rows(&want));
        let left: Vec<_> = fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        prop_assert_eq!(left.len(), 2, "no temporary directory left: {:?}", left);
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]

        #[test]
        fn writes_what_write_block_writes(input in spans(24), rows in 1usize..10) {
            same_as_write_block(input, rows)?;
        }
    }

    #[test]
    fn giant_traces_and_many_resources_match_write_block() {
        let mut input = demo_spans(40, 1_700_000_000_000_000_000);
        // One trace of 25 spans (rows 10: split in three), one of exactly 20.
        for i in 0..25u8 {
            input.push(span(
                7,
                i + 1,
                Some(1),
                "svc",
                "step",
                100 + u64::from(i),
                200,
            ));
        }
        for i in 0..20u8 {
            input.push(span(
                8,
                i + 1,
                Some(1),
                "db",
                "query",
                100 + u64::from(i),
                200,
            ));
        }
        // More distinct resources than the dedupe window, some resent equal.
        for i in 0..80u8 {
            let mut s = span(9, i + 1, Some(1), &format!("svc{}", i % 40), "x", 1, 2);
            s.resource = Arc::new(Resource {
                attributes: vec![
                    KeyValue::new("service.name", format!("svc{}", i % 40)),
                    KeyValue::new("host", "h1"),
                ],
            });
            input.push(s);
        }
        same_as_write_block(input.clone(), 10).unwrap();
        same_as_write_block(input, 64 * 1024).unwrap();
    }

    #[test]
    fn refuses_out_of_order_traces_and_leaves_nothing_when_dropped() {
        let tmp = tempfile::tempdir().unwrap();
        let opts = BlockWriteOptions::default();
        let mut writer = BlockWriter::create(tmp.path(), "w", &opts, 1).unwrap();
        writer
            .push_trace(vec![span(5, 1, None, "a", "x", 1, 2)])
            .unwrap();
        let err = writer
            .push_trace(vec![span(4, 1, None, "a", "x", 1, 2)])
            .unwrap_err();
        assert!(err.to_string().contains("increasing id order"), "{err}");
        let err = writer
            .push_trace(vec![
                span(6, 1, None, "a", "x", 1, 2),
                span(7, 1, None, "a", "x", 1, 2),
            ])
            .unwrap_err();
        assert!(err.to_string().contains("with a span of trace"), "{err}");
        assert!(tmp.path().join(".tmp-w").exists());
        drop(writer);
        assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 0);

        let writer = BlockWriter::create(tmp.path(), "e", &opts, 1).unwrap();
        assert!(matches!(writer.finish(), Err(BlockError::Empty { .. })));
        assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 0);
    }
}
