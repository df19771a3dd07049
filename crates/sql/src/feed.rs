//! The `spans` table read while the query runs: chunks of whole traces
//! arrive from a [`SpanFeed`] (the server's store read) and become rows of
//! only the columns the query uses, so memory holds a chunk or two, not the
//! range, and `SELECT count(*)` builds no column at all.

use std::fmt;
use std::sync::Arc;

use arrow_array::builder::StringBuilder;
use arrow_array::cast::AsArray;
use arrow_array::types::{UInt64Type, UInt8Type};
use arrow_array::{
    Array, ArrayRef, Float64Array, Int64Array, RecordBatch, RecordBatchOptions, StringArray,
    TimestampNanosecondArray,
};
use arrow_schema::SchemaRef;
use chaintrace_model::{Span, SpanColumn, UnixNanos};
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::TableType;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::Expr;
use datafusion::physical_expr::LexOrdering;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::{PartitionStream, StreamingTableExec};
use datafusion::physical_plan::ExecutionPlan;
use futures::StreamExt;

use crate::table::{rows_to_batches, spans_schema};

/// What a read of the feed hands over: chunks of whole traces, or an error
/// that ends the read (its message is the query's error).
pub type SpanChunks = tokio::sync::mpsc::Receiver<Result<Vec<Span>, String>>;

/// What a columnar read hands over: batches of the asked [`SpanColumn`]s in
/// the asked order, typed as `SpanColumn` says, of the spans starting in
/// the range (duplicates dropped); or an error that ends the read.
pub type ColumnChunks = tokio::sync::mpsc::Receiver<Result<RecordBatch, String>>;

/// Starts a columnar read of the given columns.
pub type OpenColumns = Box<dyn Fn(Vec<SpanColumn>) -> ColumnChunks + Send + Sync>;

/// Where the rows of the `spans` table come from when they are read as the
/// query runs ([`run_sql_feed`](crate::run_sql_feed)).
pub struct SpanFeed {
    /// Only spans starting at or after this become rows (`None`: open).
    pub start: Option<UnixNanos>,
    /// Only spans starting at or before this become rows (`None`: open).
    pub end: Option<UnixNanos>,
    /// At least as many spans as a read can hand over: plans that pair
    /// rows without a key are checked against it.
    pub max_rows: u64,
    /// Starts one read of every chunk; called each time the query scans
    /// the table (a self-join scans it twice). Dropping the receiver must
    /// stop the read.
    pub open: Box<dyn Fn() -> SpanChunks + Send + Sync>,
    /// A faster read for scans that use only columns a store keeps as
    /// columns (all but `llm_model`, `attributes` and
    /// `resource_attributes`): no span is rebuilt. `None`: every scan reads
    /// [`SpanFeed::open`].
    pub open_columns: Option<OpenColumns>,
}

impl fmt::Debug for SpanFeed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpanFeed")
            .field("start", &self.start)
            .field("end", &self.end)
            .field("max_rows", &self.max_rows)
            .finish_non_exhaustive()
    }
}

impl SpanFeed {
    /// Whether `span` is a row: it starts in the range.
    fn keeps(&self, span: &Span) -> bool {
        self.start.is_none_or(|s| span.start >= s) && self.end.is_none_or(|e| span.start <= e)
    }
}

/// The `spans` table over a [`SpanFeed`].
#[derive(Debug)]
pub(crate) struct FeedTable {
    pub(crate) feed: Arc<SpanFeed>,
}

#[async_trait::async_trait]
impl TableProvider for FeedTable {
    fn schema(&self) -> SchemaRef {
        spans_schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let projection = projection
            .cloned()
            .unwrap_or_else(|| (0..spans_schema().fields().len()).collect());
        let schema = Arc::new(spans_schema().project(&projection)?);
        let partition: Arc<dyn PartitionStream> = match raw_columns(&projection) {
            Some(raw) if self.feed.open_columns.is_some() => Arc::new(ColumnPartition {
                feed: Arc::clone(&self.feed),
                projection,
                raw,
                schema: Arc::clone(&schema),
            }),
            _ => Arc::new(FeedPartition {
                feed: Arc::clone(&self.feed),
                projection,
                schema: Arc::clone(&schema),
            }),
        };
        Ok(Arc::new(StreamingTableExec::try_new(
            schema,
            vec![partition],
            None,
            Vec::<LexOrdering>::new(),
            false,
            limit,
        )?))
    }
}

/// One read of the feed, as a stream of record batches.
#[derive(Debug)]
struct FeedPartition {
    feed: Arc<SpanFeed>,
    projection: Vec<usize>,
    schema: SchemaRef,
}

impl PartitionStream for FeedPartition {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let chunks = (self.feed.open)();
        let feed = Arc::clone(&self.feed);
        let projection = self.projection.clone();
        let chunks = futures::stream::unfold(chunks, |mut chunks| async move {
            let chunk = chunks.recv().await?;
            Some((chunk, chunks))
        });
        let batches = chunks.flat_map(move |chunk| {
            let batches = chunk.map_err(DataFusionError::Execution).and_then(|spans| {
                rows_to_batches(&spans, |s| feed.keeps(s), &projection)
                    .map_err(DataFusionError::from)
            });
            let items: Vec<DfResult<_>> = match batches {
                Ok(batches) => batches.into_iter().map(Ok).collect(),
                Err(e) => vec![Err(e)],
            };
            futures::stream::iter(items)
        });
        Box::pin(RecordBatchStreamAdapter::new(
            Arc::clone(&self.schema),
            batches,
        ))
    }
}

/// The store columns the table columns `projection` are made of, each once
/// in first-needed order; `None` when one of them is not a store column.
fn raw_columns(projection: &[usize]) -> Option<Vec<SpanColumn>> {
    let full = spans_schema();
    let mut raw: Vec<SpanColumn> = Vec::new();
    for &i in projection {
        for &c in needs(full.field(i).name())? {
            if !raw.contains(&c) {
                raw.push(c);
            }
        }
    }
    Some(raw)
}

/// The store columns table column `name` is made of.
fn needs(name: &str) -> Option<&'static [SpanColumn]> {
    use SpanColumn::*;
    Some(match name {
        "trace_id" => &[TraceId],
        "span_id" => &[SpanId],
        "parent_span_id" => &[ParentSpanId],
        "name" => &[Name],
        "service" => &[Service],
        "kind" => &[Kind],
        "status" => &[StatusCode],
        "status_message" => &[StatusMessage],
        "start_time" => &[Start],
        "end_time" => &[Start, Duration],
        "duration_ns" | "duration_ms" => &[Duration],
        "input_tokens" => &[InputTokens],
        "output_tokens" => &[OutputTokens],
        "error_type" => &[ErrorType],
        _ => return None,
    })
}

/// One columnar read, as a stream of record batches of the table's columns.
struct ColumnPartition {
    feed: Arc<SpanFeed>,
    projection: Vec<usize>,
    raw: Vec<SpanColumn>,
    schema: SchemaRef,
}

impl fmt::Debug for ColumnPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ColumnPartition")
            .field("projection", &self.projection)
            .field("raw", &self.raw)
            .finish_non_exhaustive()
    }
}

impl PartitionStream for ColumnPartition {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let chunks = match &self.feed.open_columns {
            Some(open) => open(self.raw.clone()),
            None => {
                let (tx, rx) = tokio::sync::mpsc::channel(1);
                let _ = tx.try_send(Err("this store has no columnar read".to_string()));
                rx
            }
        };
        let projection = self.projection.clone();
        let raw = self.raw.clone();
        let schema = Arc::clone(&self.schema);
        let batches = futures::stream::unfold(chunks, |mut chunks| async move {
            let chunk = chunks.recv().await?;
            Some((chunk, chunks))
        })
        .map(move |chunk| {
            chunk
                .map_err(DataFusionError::Execution)
                .and_then(|batch| table_columns(&batch, &raw, &projection, &schema))
        });
        Box::pin(RecordBatchStreamAdapter::new(
            Arc::clone(&self.schema),
            batches,
        ))
    }
}

/// The table columns `projection` of a store batch holding `raw`.
fn table_columns(
    batch: &RecordBatch,
    raw: &[SpanColumn],
    projection: &[usize],
    schema: &SchemaRef,
) -> DfResult<RecordBatch> {
    let bad = |what: &str| {
        DataFusionError::Execution(format!(
            "the store's {what} column is not as SpanColumn says"
        ))
    };
    let at = |c: SpanColumn| raw.iter().position(|&r| r == c).map(|i| batch.column(i));
    let u64s = |c: SpanColumn| {
        at(c)
            .and_then(|a| a.as_primitive_opt::<UInt64Type>())
            .ok_or_else(|| bad("start or duration"))
    };
    let full = spans_schema();
    let n = batch.num_rows();
    let clamp = |t: u64| i64::try_from(t).unwrap_or(i64::MAX);
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(projection.len());
    for &i in projection {
        let name = full.field(i).name().as_str();
        let array: ArrayRef = match name {
            "trace_id" | "span_id" | "parent_span_id" => {
                let c = match name {
                    "trace_id" => SpanColumn::TraceId,
                    "span_id" => SpanColumn::SpanId,
                    _ => SpanColumn::ParentSpanId,
                };
                let ids = at(c)
                    .and_then(|a| a.as_fixed_size_binary_opt())
                    .ok_or_else(|| bad(name))?;
                let mut out = StringBuilder::with_capacity(n, n * ids.value_length() as usize * 2);
                let mut text = String::new();
                for row in 0..n {
                    if ids.is_null(row) {
                        out.append_null();
                        continue;
                    }
                    text.clear();
                    for b in ids.value(row) {
                        text.push(HEX[usize::from(b >> 4)]);
                        text.push(HEX[usize::from(b & 0xf)]);
                    }
                    out.append_value(&text);
                }
                Arc::new(out.finish())
            }
            "name" | "service" => {
                let c = if name == "name" {
                    SpanColumn::Name
                } else {
                    SpanColumn::Service
                };
                Arc::clone(at(c).ok_or_else(|| bad(name))?)
            }
            "error_type" => Arc::clone(at(SpanColumn::ErrorType).ok_or_else(|| bad(name))?),
            "input_tokens" => Arc::clone(at(SpanColumn::InputTokens).ok_or_else(|| bad(name))?),
            "output_tokens" => Arc::clone(at(SpanColumn::OutputTokens).ok_or_else(|| bad(name))?),
            "status_message" => {
                let m = at(SpanColumn::StatusMessage)
                    .and_then(|a| a.as_string_opt::<i32>())
                    .ok_or_else(|| bad(name))?;
                let out: StringArray = m.iter().map(|v| v.filter(|s| !s.is_empty())).collect();
                Arc::new(out)
            }
            "kind" | "status" => {
                let c = if name == "kind" {
                    SpanColumn::Kind
                } else {
                    SpanColumn::StatusCode
                };
                let codes = at(c)
                    .and_then(|a| a.as_primitive_opt::<UInt8Type>())
                    .ok_or_else(|| bad(name))?;
                let text = |code: u8| -> &'static str {
                    if name == "kind" {
                        KINDS
                            .get(usize::from(code))
                            .copied()
                            .unwrap_or("unspecified")
                    } else {
                        STATUSES.get(usize::from(code)).copied().unwrap_or("unset")
                    }
                };
                let out: StringArray = codes.values().iter().map(|&c| Some(text(c))).collect();
                Arc::new(out)
            }
            "start_time" | "end_time" => {
                let start = u64s(SpanColumn::Start)?;
                let times: TimestampNanosecondArray = if name == "start_time" {
                    start.values().iter().map(|&t| Some(clamp(t))).collect()
                } else {
                    let duration = u64s(SpanColumn::Duration)?;
                    start
                        .values()
                        .iter()
                        .zip(duration.values().iter())
                        .map(|(&s, &d)| Some(clamp(s.saturating_add(d))))
                        .collect()
                };
                Arc::new(times.with_timezone("UTC"))
            }
            "duration_ns" => {
                let d = u64s(SpanColumn::Duration)?;
                let out: Int64Array = d.values().iter().map(|&v| Some(clamp(v))).collect();
                Arc::new(out)
            }
            "duration_ms" => {
                let d = u64s(SpanColumn::Duration)?;
                let out: Float64Array = d.values().iter().map(|&v| Some(v as f64 / 1e6)).collect();
                Arc::new(out)
            }
            other => {
                return Err(DataFusionError::Internal(format!(
                    "{other} has no columnar read"
                )))
            }
        };
        columns.push(array);
    }
    Ok(RecordBatch::try_new_with_options(
        Arc::clone(schema),
        columns,
        &RecordBatchOptions::new().with_row_count(Some(n)),
    )?)
}

const HEX: [char; 16] = [
    '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', 'a', 'b', 'c', 'd', 'e', 'f',
];

/// Span kinds by OTLP number, as the table writes them.
const KINDS: [&str; 6] = [
    "unspecified",
    "internal",
    "server",
    "client",
    "producer",
    "consumer",
];

/// Status codes by OTLP number, as the table writes them.
const STATUSES: [&str; 3] = ["unset", "ok", "error"];
