//! The `spans` table read while the query runs: chunks of whole traces
//! arrive from a [`SpanFeed`] (the server's store read) and become rows of
//! only the columns the query uses, so memory holds a chunk or two, not the
//! range, and `SELECT count(*)` builds no column at all.

use std::fmt;
use std::sync::Arc;

use arrow_schema::SchemaRef;
use chaintrace_model::{Span, UnixNanos};
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
        let partition = FeedPartition {
            feed: Arc::clone(&self.feed),
            projection,
            schema: Arc::clone(&schema),
        };
        Ok(Arc::new(StreamingTableExec::try_new(
            schema,
            vec![Arc::new(partition)],
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
