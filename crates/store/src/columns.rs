//! Some columns of every span of a time range, read from the blocks'
//! Parquet columns without rebuilding spans: what SQL reads when a query
//! uses only hot columns ([`Store::stream_columns`]).
//!
//! Two passes over the generations whose time range meets the asked one
//! (blocks, frozen heads, the active head's traces meeting it):
//! 1. **Duplicates**: a k-way merge in trace-id order over each input's
//!    (trace id, span id) — for a block only those two columns are read —
//!    in arrival order ([`crate::generations`]); a span id already seen in
//!    the trace marks that row dropped, so the first copy wins, as in every
//!    read. Only the dropped rows are remembered.
//! 2. **Columns**: each block's asked columns (and `start_unix_nano`, for
//!    the range) are read a batch at a time, rows dropped by pass 1 or
//!    starting outside the range are filtered out, and the rest handed to
//!    the visitor as an Arrow batch typed as [`SpanColumn`] says; the heads'
//!    spans become batches of the same columns.
//!
//! Memory: one batch of ids per input during pass 1, one batch of columns
//! during pass 2, the dropped rows, and a copy of the active head's traces
//! that meet the range.
//!
//! [`Store::stream_columns`]: crate::Store::stream_columns

use std::sync::Arc;

use arrow_array::builder::{
    FixedSizeBinaryBuilder, Int64Builder, StringBuilder, UInt64Builder, UInt8Builder,
};
use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, UInt64Type};
use arrow_array::{Array, ArrayRef, BooleanArray, RecordBatch, RecordBatchOptions};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use chaintrace_model::{Span, SpanColumn, SpanId, TraceId, UnixNanos};

use crate::block::schema::col;
use std::collections::HashSet;

use crate::block::{Block, BlockError, HOT_RULES};
use crate::embedded::{FrozenHead, Inner};
use crate::generations::MergeQueue;

use crate::store::{StoreError, StreamStats};

/// Rows per batch handed over.
const BATCH_ROWS: usize = 8192;

/// The `data.parquet` column holding `column`.
fn block_column(column: SpanColumn) -> &'static str {
    match column {
        SpanColumn::TraceId => col::TRACE_ID,
        SpanColumn::SpanId => col::SPAN_ID,
        SpanColumn::ParentSpanId => col::PARENT_SPAN_ID,
        SpanColumn::Service => col::SERVICE,
        SpanColumn::Name => col::NAME,
        SpanColumn::Kind => col::KIND,
        SpanColumn::StatusCode => col::STATUS_CODE,
        SpanColumn::StatusMessage => col::STATUS_MESSAGE,
        SpanColumn::Start => col::START,
        SpanColumn::Duration => col::DURATION,
        SpanColumn::OwnModel => col::LLM_MODEL,
        SpanColumn::InputTokens => col::INPUT_TOKENS,
        SpanColumn::OutputTokens => col::OUTPUT_TOKENS,
        SpanColumn::ErrorType => col::ERROR_TYPE,
    }
}

/// The Arrow type of `column` in a columnar read (see [`SpanColumn`]).
pub fn column_type(column: SpanColumn) -> DataType {
    match column {
        SpanColumn::TraceId => DataType::FixedSizeBinary(16),
        SpanColumn::SpanId | SpanColumn::ParentSpanId => DataType::FixedSizeBinary(8),
        SpanColumn::Kind | SpanColumn::StatusCode => DataType::UInt8,
        SpanColumn::Start | SpanColumn::Duration => DataType::UInt64,
        SpanColumn::InputTokens | SpanColumn::OutputTokens => DataType::Int64,
        SpanColumn::Service
        | SpanColumn::Name
        | SpanColumn::StatusMessage
        | SpanColumn::OwnModel
        | SpanColumn::ErrorType => DataType::Utf8,
    }
}

/// The schema of a columnar read of `columns`, in that order; each field is
/// named by the block column and nullable where [`SpanColumn`] says.
pub fn columns_schema(columns: &[SpanColumn]) -> SchemaRef {
    let nullable = |c: SpanColumn| {
        matches!(
            c,
            SpanColumn::ParentSpanId
                | SpanColumn::OwnModel
                | SpanColumn::InputTokens
                | SpanColumn::OutputTokens
                | SpanColumn::ErrorType
        )
    };
    Arc::new(Schema::new(
        columns
            .iter()
            .map(|&c| Field::new(block_column(c), column_type(c), nullable(c)))
            .collect::<Vec<_>>(),
    ))
}

/// Rows of one input that pass 1 dropped, ascending.
#[derive(Debug, Default)]
struct Dropped {
    rows: Vec<u64>,
    /// Next entry of `rows` not yet passed by pass 2.
    at: usize,
}

impl Dropped {
    /// Whether row `row` is dropped; rows must be asked in ascending order.
    fn contains(&mut self, row: u64) -> bool {
        while self.rows.get(self.at).is_some_and(|&r| r < row) {
            self.at += 1;
        }
        self.rows.get(self.at) == Some(&row)
    }
}

/// A head's traces meeting the range, in trace-id order, spans in arrival
/// order: the frozen heads by reference (they do not change), the active
/// head as the asked columns built under its lock (far smaller than a
/// copy of its spans).
enum HeadInput {
    Frozen(Arc<FrozenHead>, Vec<TraceId>),
    Active {
        /// (trace id, span id) of each row, for pass 1.
        ids: Vec<(TraceId, SpanId)>,
        /// Start of each row, for the range.
        starts: Vec<u64>,
        /// The asked columns, [`BATCH_ROWS`] rows (or a trace more) each.
        batches: Vec<RecordBatch>,
    },
}

impl HeadInput {
    /// The active head's traces meeting the range, as columns.
    fn active(
        head: &crate::head::Head,
        start: Option<UnixNanos>,
        end: Option<UnixNanos>,
        columns: &[SpanColumn],
        schema: &SchemaRef,
    ) -> Result<HeadInput, StoreError> {
        let (mut ids, mut starts, mut batches) = (Vec::new(), Vec::new(), Vec::new());
        let mut pending: Vec<Span> = Vec::new();
        for id in head.trace_ids_meeting(start, end) {
            for span in head.spans_of(&id) {
                ids.push((span.trace_id, span.span_id));
                starts.push(span.start.0);
                pending.push(span);
            }
            if pending.len() >= BATCH_ROWS {
                batches.push(head_rows(&std::mem::take(&mut pending), columns, schema)?);
            }
        }
        if !pending.is_empty() {
            batches.push(head_rows(&pending, columns, schema)?);
        }
        Ok(HeadInput::Active {
            ids,
            starts,
            batches,
        })
    }

    fn ids(&self) -> Vec<(TraceId, SpanId)> {
        match self {
            HeadInput::Frozen(head, traces) => traces
                .iter()
                .flat_map(|id| head.head.spans_of(id))
                .map(|s| (s.trace_id, s.span_id))
                .collect(),
            HeadInput::Active { ids, .. } => ids.clone(),
        }
    }
}

impl Inner {
    /// [`Store::stream_columns`](crate::Store::stream_columns) on a blocking thread.
    pub(crate) fn stream_columns_blocking(
        &self,
        start: Option<UnixNanos>,
        end: Option<UnixNanos>,
        columns: &[SpanColumn],
        visit: &mut dyn FnMut(RecordBatch) -> bool,
    ) -> Result<StreamStats, StoreError> {
        let in_range = |t: u64| start.is_none_or(|s| t >= s.0) && end.is_none_or(|e| t <= e.0);
        let schema = columns_schema(columns);
        // Heads before blocks, as every read of several generations.
        let heads: Vec<HeadInput> = {
            let heads = self.heads();
            let mut out: Vec<HeadInput> = heads
                .frozen
                .iter()
                .map(|f| HeadInput::Frozen(Arc::clone(f), f.head.trace_ids_meeting(start, end)))
                .collect();
            out.push(HeadInput::active(
                &heads.active,
                start,
                end,
                columns,
                &schema,
            )?);
            out
        };
        let blocks = self.blocks_meeting(start, end);
        let mut stats = StreamStats {
            blocks: blocks.len() as u64,
            ..StreamStats::default()
        };

        // Pass 1 hands nothing over; an empty batch now and then asks the
        // reader whether it still wants the answer.
        let mut still_wanted = || visit(RecordBatch::new_empty(Arc::clone(&schema)));
        let Some(mut dropped) = duplicates(&blocks, &heads, &mut still_wanted)? else {
            stats.stopped = true;
            return Ok(stats);
        };
        stats.duplicates = dropped.iter().map(|d| d.rows.len() as u64).sum();

        let mut names: Vec<&str> = columns.iter().map(|&c| block_column(c)).collect();
        if !columns.contains(&SpanColumn::Start) {
            names.push(col::START);
        }
        let recomputed = [
            SpanColumn::InputTokens,
            SpanColumn::OutputTokens,
            SpanColumn::ErrorType,
            SpanColumn::OwnModel,
        ];
        let rules_matter = columns.iter().any(|c| recomputed.contains(c));
        for (block, dropped) in blocks.iter().zip(&mut dropped) {
            if rules_matter && block.meta().hot_rules < HOT_RULES {
                // Written before the rules were one: today's answer comes
                // from the attributes, in the same row order.
                let mut kept = Vec::with_capacity(BATCH_ROWS);
                for (row, span) in block.span_stream()?.enumerate() {
                    let span = span?;
                    if !dropped.contains(row as u64) && in_range(span.start.0) {
                        kept.push(span);
                    }
                    if kept.len() == BATCH_ROWS {
                        let out = head_rows(&std::mem::take(&mut kept), columns, &schema)?;
                        stats.spans += out.num_rows() as u64;
                        if !visit(out) {
                            stats.stopped = true;
                            return Ok(stats);
                        }
                    }
                }
                if !kept.is_empty() {
                    let out = head_rows(&kept, columns, &schema)?;
                    stats.spans += out.num_rows() as u64;
                    if !visit(out) {
                        stats.stopped = true;
                        return Ok(stats);
                    }
                }
                continue;
            }
            let mut row = 0u64;
            for batch in block.column_batches(&names, BATCH_ROWS)? {
                let batch = batch?;
                let starts = batch
                    .column_by_name(col::START)
                    .and_then(|c| c.as_primitive_opt::<UInt64Type>())
                    .ok_or_else(|| corrupt(block, "start_unix_nano is not UInt64"))?;
                let keep: BooleanArray = (0..batch.num_rows())
                    .map(|i| {
                        let r = row + i as u64;
                        Some(!dropped.contains(r) && in_range(starts.value(i)))
                    })
                    .collect();
                row += batch.num_rows() as u64;
                if keep.true_count() == 0 {
                    continue;
                }
                let kept = arrow_select::filter::filter_record_batch(&batch, &keep)
                    .map_err(|e| corrupt(block, &e.to_string()))?;
                let out = block_rows(block, &kept, columns, &schema)?;
                stats.spans += out.num_rows() as u64;
                if !visit(out) {
                    stats.stopped = true;
                    return Ok(stats);
                }
            }
        }
        for (head, dropped) in heads.iter().zip(dropped.iter_mut().skip(blocks.len())) {
            let mut row = 0u64;
            match head {
                HeadInput::Frozen(frozen, traces) => {
                    let mut kept: Vec<Span> = Vec::new();
                    for (i, id) in traces.iter().enumerate() {
                        for span in frozen.head.spans_of(id) {
                            if !dropped.contains(row) && in_range(span.start.0) {
                                kept.push(span);
                            }
                            row += 1;
                        }
                        if kept.len() >= BATCH_ROWS || (i + 1 == traces.len() && !kept.is_empty()) {
                            let out = head_rows(&std::mem::take(&mut kept), columns, &schema)?;
                            stats.spans += out.num_rows() as u64;
                            if !visit(out) {
                                stats.stopped = true;
                                return Ok(stats);
                            }
                        }
                    }
                }
                HeadInput::Active {
                    starts, batches, ..
                } => {
                    for batch in batches {
                        let keep: BooleanArray = (0..batch.num_rows())
                            .map(|i| {
                                let r = row + i as u64;
                                Some(!dropped.contains(r) && in_range(starts[r as usize]))
                            })
                            .collect();
                        row += batch.num_rows() as u64;
                        if keep.true_count() == 0 {
                            continue;
                        }
                        let out = arrow_select::filter::filter_record_batch(batch, &keep)
                            .map_err(|e| StoreError::Internal(e.to_string()))?;
                        stats.spans += out.num_rows() as u64;
                        if !visit(out) {
                            stats.stopped = true;
                            return Ok(stats);
                        }
                    }
                }
            }
        }
        Ok(stats)
    }
}

fn corrupt(block: &Block, detail: &str) -> StoreError {
    StoreError::Block(BlockError::corrupt(
        block.dir().join(crate::block::DATA_FILE),
        detail.to_string(),
    ))
}

/// Pass 1: the rows of each input (blocks in arrival order, then heads)
/// that repeat a span an earlier input (or an earlier row) holds; `None`
/// when `still_wanted` said no (asked every 65 536 traces).
fn duplicates(
    blocks: &[Arc<Block>],
    heads: &[HeadInput],
    still_wanted: &mut dyn FnMut() -> bool,
) -> Result<Option<Vec<Dropped>>, StoreError> {
    type Ids<'a> = Box<dyn Iterator<Item = Result<(TraceId, SpanId), StoreError>> + 'a>;
    let mut inputs: Vec<Ids<'_>> = Vec::with_capacity(blocks.len() + heads.len());
    for block in blocks {
        inputs.push(Box::new(
            block.span_ids()?.map(|r| r.map_err(StoreError::from)),
        ));
    }
    for head in heads {
        inputs.push(Box::new(head.ids().into_iter().map(Ok)));
    }
    let mut dropped: Vec<Dropped> = (0..inputs.len()).map(|_| Dropped::default()).collect();
    let mut next = inputs
        .iter_mut()
        .map(|i| i.next().transpose())
        .collect::<Result<Vec<_>, StoreError>>()?;
    let mut rows = vec![0u64; inputs.len()];
    let mut queue = MergeQueue::new(next.iter().map(|n| n.map(|(t, _)| t)));
    let mut holding: Vec<usize> = Vec::new();
    // A trace's span ids so far: a scan while few (nearly always), a set
    // past that, so a hostile trace of 300 000 spans costs linear time.
    let mut seen: Vec<SpanId> = Vec::new();
    let mut seen_set: HashSet<SpanId> = HashSet::new();
    let mut traces = 0u64;
    while let Some(id) = queue.next_trace(&mut holding) {
        traces += 1;
        if traces.is_multiple_of(1 << 16) && !still_wanted() {
            return Ok(None);
        }
        seen.clear();
        seen_set.clear();
        for &k in &holding {
            let input = &mut inputs[k];
            while let Some((_, span)) = next[k].filter(|(t, _)| *t == id) {
                let repeated = if seen.len() < SCAN_SEEN {
                    let found = seen.contains(&span);
                    if !found {
                        seen.push(span);
                        if seen.len() == SCAN_SEEN {
                            seen_set.extend(seen.iter().copied());
                        }
                    }
                    found
                } else {
                    !seen_set.insert(span)
                };
                if repeated {
                    dropped[k].rows.push(rows[k]);
                }
                rows[k] += 1;
                next[k] = input.next().transpose()?;
            }
            queue.push(k, next[k].map(|(t, _)| t));
        }
    }
    Ok(Some(dropped))
}

/// Span ids of one trace compared by a scan before a set takes over.
const SCAN_SEEN: usize = 32;

/// The asked columns of a block batch, typed as [`SpanColumn`] says.
fn block_rows(
    block: &Block,
    batch: &RecordBatch,
    columns: &[SpanColumn],
    schema: &SchemaRef,
) -> Result<RecordBatch, StoreError> {
    let mut arrays: Vec<ArrayRef> = Vec::with_capacity(columns.len());
    for &c in columns {
        let name = block_column(c);
        let array = batch
            .column_by_name(name)
            .ok_or_else(|| corrupt(block, &format!("no {name} column")))?;
        let array = match (c, array.data_type()) {
            // `vparquet4` keeps the service as a dictionary.
            (SpanColumn::Service, DataType::Dictionary(_, _)) => {
                let dict = array
                    .as_dictionary_opt::<Int32Type>()
                    .ok_or_else(|| corrupt(block, "service is not a dictionary of Int32 keys"))?;
                let values = dict
                    .values()
                    .as_string_opt::<i32>()
                    .ok_or_else(|| corrupt(block, "service values are not text"))?;
                let mut out = StringBuilder::with_capacity(dict.len(), dict.len() * 8);
                for key in dict.keys().iter() {
                    out.append_value(key.map_or("", |k| values.value(k as usize)));
                }
                Arc::new(out.finish()) as ArrayRef
            }
            (_, t) if *t == column_type(c) => Arc::clone(array),
            (_, t) => {
                return Err(corrupt(
                    block,
                    &format!("{name} is {t}, not {}", column_type(c)),
                ))
            }
        };
        arrays.push(array);
    }
    RecordBatch::try_new_with_options(
        Arc::clone(schema),
        arrays,
        &RecordBatchOptions::new().with_row_count(Some(batch.num_rows())),
    )
    .map_err(|e| corrupt(block, &e.to_string()))
}

/// The asked columns of head spans, as a block write would store them.
fn head_rows<'s>(
    spans: &'s [Span],
    columns: &[SpanColumn],
    schema: &SchemaRef,
) -> Result<RecordBatch, StoreError> {
    // The attribute pass only for the columns that need it: this runs
    // under the active head's lock, and `count(*)` or `name` need none.
    let needs_hot = columns.iter().any(|c| {
        matches!(
            c,
            SpanColumn::OwnModel
                | SpanColumn::InputTokens
                | SpanColumn::OutputTokens
                | SpanColumn::ErrorType
        )
    });
    let hot: Vec<crate::block::HotFields<'s>> = if needs_hot {
        spans.iter().map(crate::block::HotFields::of).collect()
    } else {
        Vec::new()
    };
    let n = spans.len();
    let text = |f: &dyn Fn(usize) -> Option<&'s str>| -> ArrayRef {
        let mut b = StringBuilder::with_capacity(n, n * 8);
        (0..n).for_each(|i| b.append_option(f(i)));
        Arc::new(b.finish())
    };
    let id = |len: i32, f: &dyn Fn(usize) -> Option<Vec<u8>>| -> Result<ArrayRef, StoreError> {
        let mut b = FixedSizeBinaryBuilder::with_capacity(n, len);
        for i in 0..n {
            match f(i) {
                Some(bytes) => b
                    .append_value(bytes)
                    .map_err(|e| StoreError::Internal(e.to_string()))?,
                None => b.append_null(),
            }
        }
        Ok(Arc::new(b.finish()))
    };
    let mut arrays: Vec<ArrayRef> = Vec::with_capacity(columns.len());
    for &c in columns {
        arrays.push(match c {
            SpanColumn::TraceId => id(16, &|i| Some(spans[i].trace_id.0.to_vec()))?,
            SpanColumn::SpanId => id(8, &|i| Some(spans[i].span_id.0.to_vec()))?,
            SpanColumn::ParentSpanId => id(8, &|i| spans[i].parent_span_id.map(|p| p.0.to_vec()))?,
            SpanColumn::Service => text(&|i| Some(spans[i].service_name())),
            SpanColumn::Name => text(&|i| Some(spans[i].name.as_str())),
            SpanColumn::StatusMessage => text(&|i| Some(spans[i].status.message.as_str())),
            SpanColumn::OwnModel => text(&|i| hot[i].llm_model),
            SpanColumn::ErrorType => text(&|i| hot[i].error_type),
            SpanColumn::Kind | SpanColumn::StatusCode => {
                let mut b = UInt8Builder::with_capacity(n);
                for s in spans {
                    b.append_value(if c == SpanColumn::Kind {
                        s.kind.otlp_number()
                    } else {
                        s.status.code.otlp_number()
                    });
                }
                Arc::new(b.finish())
            }
            SpanColumn::Start | SpanColumn::Duration => {
                let mut b = UInt64Builder::with_capacity(n);
                for s in spans {
                    b.append_value(if c == SpanColumn::Start {
                        s.start.0
                    } else {
                        s.duration().0
                    });
                }
                Arc::new(b.finish())
            }
            SpanColumn::InputTokens | SpanColumn::OutputTokens => {
                let mut b = Int64Builder::with_capacity(n);
                for h in &hot {
                    b.append_option(if c == SpanColumn::InputTokens {
                        h.input_tokens
                    } else {
                        h.output_tokens
                    });
                }
                Arc::new(b.finish())
            }
        });
    }
    RecordBatch::try_new_with_options(
        Arc::clone(schema),
        arrays,
        &RecordBatchOptions::new().with_row_count(Some(n)),
    )
    .map_err(|e| StoreError::Internal(e.to_string()))
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use arrow_array::{FixedSizeBinaryArray, StringArray, UInt64Array};

    use super::*;
    use crate::test_support::{at_ms, generations_with_retries, span};
    use crate::{EmbeddedConfig, EmbeddedStore, Store};

    type Row = (Vec<u8>, Vec<u8>, String, String, u64, u64, Option<String>);

    /// (trace, span, name, service, start, duration, model) of every row
    /// `stream_columns` hands over.
    async fn columnar(
        store: &EmbeddedStore,
        start: Option<u64>,
        end: Option<u64>,
    ) -> (Vec<Row>, StreamStats) {
        use SpanColumn::*;
        let rows = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&rows);
        let stats = store
            .stream_columns(
                start.map(UnixNanos),
                end.map(UnixNanos),
                vec![TraceId, SpanId, Name, Service, Start, Duration, OwnModel],
                Box::new(move |batch| {
                    let c = |i: usize| batch.column(i);
                    let ids = |i: usize| {
                        c(i).as_any()
                            .downcast_ref::<FixedSizeBinaryArray>()
                            .unwrap()
                            .clone()
                    };
                    let text =
                        |i: usize| c(i).as_any().downcast_ref::<StringArray>().unwrap().clone();
                    let num =
                        |i: usize| c(i).as_any().downcast_ref::<UInt64Array>().unwrap().clone();
                    let (t, s, n, sv, st, d, m) =
                        (ids(0), ids(1), text(2), text(3), num(4), num(5), text(6));
                    let mut out = sink.lock().unwrap();
                    for r in 0..batch.num_rows() {
                        out.push((
                            t.value(r).to_vec(),
                            s.value(r).to_vec(),
                            n.value(r).to_string(),
                            sv.value(r).to_string(),
                            st.value(r),
                            d.value(r),
                            m.is_valid(r).then(|| m.value(r).to_string()),
                        ));
                    }
                    true
                }),
            )
            .await
            .unwrap()
            .expect("the embedded store reads columns");
        let mut rows = std::mem::take(&mut *rows.lock().unwrap());
        rows.sort();
        (rows, stats)
    }

    /// The same figures from the spans trace-by-id shows.
    async fn expected(
        store: &EmbeddedStore,
        ids: &[u8],
        start: Option<u64>,
        end: Option<u64>,
    ) -> Vec<Row> {
        let mut rows = Vec::new();
        for &id in ids {
            let Some(trace) = store
                .trace(crate::test_support::trace_id(id))
                .await
                .unwrap()
            else {
                continue;
            };
            for s in trace.spans {
                if start.is_some_and(|t| s.start.0 < t) || end.is_some_and(|t| s.start.0 > t) {
                    continue;
                }
                rows.push((
                    s.trace_id.0.to_vec(),
                    s.span_id.0.to_vec(),
                    s.name.to_string(),
                    s.service_name().to_string(),
                    s.start.0,
                    s.duration().0,
                    chaintrace_model::conventions::llm_model(&s).map(str::to_string),
                ));
            }
        }
        rows.sort();
        rows
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn columns_of_blocks_and_memory_match_the_spans_each_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = generations_with_retries(dir.path()).await;
        let t = at_ms;
        let ids = [1, 2, 3, 9];
        for (from, to) in [
            (None, None),
            (Some(t(6)), Some(t(10))),
            (Some(t(100)), None),
        ] {
            let (got, stats) = columnar(&store, from, to).await;
            assert_eq!(
                got,
                expected(&store, &ids, from, to).await,
                "range {from:?}..{to:?}"
            );
            assert_eq!(stats.spans as usize, got.len());
        }
        let (all, stats) = columnar(&store, None, None).await;
        assert_eq!(all.len(), 7);
        assert!(!all.iter().any(|r| r.2 == "second copy"));
        assert_eq!(stats.duplicates, 2, "{stats:?}");
        assert!(all
            .iter()
            .any(|r| r.2 == "llm" && r.3 == "gateway" && r.6.as_deref() == Some("gpt-4o")));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn blocks_written_under_older_rules_answer_from_their_attributes() {
        let dir = tempfile::tempdir().unwrap();
        let store = generations_with_retries(dir.path()).await;
        let want = columnar(&store, None, None).await.0;
        drop(store);
        // Every block's meta as an older build wrote it: no `hot_rules`.
        let mut rewritten = 0;
        for entry in std::fs::read_dir(dir.path().join("blocks")).unwrap() {
            let meta = entry.unwrap().path().join("meta.json");
            if let Ok(text) = std::fs::read_to_string(&meta) {
                let mut json: serde_json::Value = serde_json::from_str(&text).unwrap();
                assert_eq!(json["hot_rules"], serde_json::json!(HOT_RULES));
                json.as_object_mut().unwrap().remove("hot_rules");
                std::fs::write(&meta, json.to_string()).unwrap();
                rewritten += 1;
            }
        }
        assert!(rewritten >= 2);
        let (store, _) = EmbeddedStore::open(EmbeddedConfig::new(dir.path())).unwrap();
        let (got, stats) = columnar(&store, None, None).await;
        assert_eq!(got, want);
        assert_eq!(stats.duplicates, 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_columns_count_rows_and_the_visitor_can_stop() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = EmbeddedStore::open(EmbeddedConfig::new(dir.path())).unwrap();
        let spans: Vec<Span> = (0..20_000u32)
            .map(|i| {
                let mut s = span(
                    1,
                    1,
                    None,
                    "svc",
                    "op",
                    10 + u64::from(i),
                    20 + u64::from(i),
                );
                s.trace_id.0[..4].copy_from_slice(&i.to_be_bytes());
                s
            })
            .collect();
        store.append(spans[..12_000].to_vec()).await.unwrap();
        tokio::task::block_in_place(|| store.flush()).unwrap();
        store.append(spans[11_000..].to_vec()).await.unwrap();
        let counted = Arc::new(Mutex::new(0usize));
        let sink = Arc::clone(&counted);
        let stats = store
            .stream_columns(
                None,
                None,
                Vec::new(),
                Box::new(move |b| {
                    assert_eq!(b.num_columns(), 0);
                    *sink.lock().unwrap() += b.num_rows();
                    true
                }),
            )
            .await
            .unwrap()
            .unwrap();
        assert_eq!(*counted.lock().unwrap(), 20_000);
        assert_eq!((stats.spans, stats.duplicates), (20_000, 1_000));
        let stats = store
            .stream_columns(None, None, Vec::new(), Box::new(|_| false))
            .await
            .unwrap()
            .unwrap();
        assert!(stats.stopped && stats.spans < 20_000, "{stats:?}");
    }
}
