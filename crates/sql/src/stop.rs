//! Stopping a running query: at its deadline, or when the caller is gone.
//!
//! Dropping a DataFusion stream does not stop an operator that is busy in a
//! loop of its own — a cross join or an aggregation pulls batch after batch
//! without ever handing control back to the runtime, so neither a timer nor an
//! abort gets a chance. [`with_stop`] therefore puts a [`StopExec`] above
//! every node of the physical plan: each batch any operator pulls from its
//! input first checks [`Stop`], and once it is stopped the pull fails, which
//! ends the query within one batch. (They show as `StopExec` lines in the
//! output of `EXPLAIN ANALYZE`.)
//!
//! Planning is synchronous code inside DataFusion that no timer can
//! preempt, and it can be slow (a long expression, a big constant folded).
//! [`with_checkpoints`] puts a [`PlanCheckpoint`] between every analyzer,
//! optimizer and physical optimizer rule, so planning too fails at the next
//! rule once the query is stopped, rather than running to its end for a
//! caller that is gone.

use std::fmt;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::Transformed;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{RecordBatchStream, SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::LogicalPlan;
use datafusion::optimizer::{AnalyzerRule, OptimizerConfig, OptimizerRule};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::execution_plan::replace_children_if_necessary;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};
use futures::Stream;

/// When a query must stop: a deadline, and a flag for an earlier stop.
#[derive(Debug, Clone)]
pub struct Stop {
    deadline: Instant,
    cancelled: Arc<AtomicBool>,
}

impl Stop {
    /// A stop at `deadline`.
    pub fn at(deadline: Instant) -> Stop {
        Stop {
            deadline,
            cancelled: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Stops the query now (the caller no longer waits for it).
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::Relaxed);
    }

    /// Whether the deadline has passed.
    pub fn timed_out(&self) -> bool {
        Instant::now() >= self.deadline
    }

    /// Whether the query must stop.
    pub fn is_stopped(&self) -> bool {
        self.cancelled.load(Ordering::Relaxed) || self.timed_out()
    }

    /// The error a stopped pull or plan step answers.
    fn error(&self) -> DataFusionError {
        DataFusionError::Execution("the query was stopped".to_string())
    }

    fn check(&self) -> Result<()> {
        if self.is_stopped() {
            Err(self.error())
        } else {
            Ok(())
        }
    }
}

/// A planning step that only checks [`Stop`]: put between the rules of each
/// planning phase.
#[derive(Debug, Clone)]
pub struct PlanCheckpoint(pub Stop);

impl AnalyzerRule for PlanCheckpoint {
    fn name(&self) -> &str {
        "stop_checkpoint"
    }

    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        self.0.check()?;
        Ok(plan)
    }
}

impl OptimizerRule for PlanCheckpoint {
    fn name(&self) -> &str {
        "stop_checkpoint"
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        _config: &dyn OptimizerConfig,
    ) -> Result<Transformed<LogicalPlan>> {
        self.0.check()?;
        Ok(Transformed::no(plan))
    }
}

impl PhysicalOptimizerRule for PlanCheckpoint {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.0.check()?;
        Ok(plan)
    }

    fn name(&self) -> &str {
        "stop_checkpoint"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// `rules` with a [`PlanCheckpoint`] before each and one at the end.
pub fn with_checkpoints<R: ?Sized>(rules: Vec<Arc<R>>, checkpoint: Arc<R>) -> Vec<Arc<R>> {
    let mut out = Vec::with_capacity(rules.len() * 2 + 1);
    for rule in rules {
        out.push(Arc::clone(&checkpoint));
        out.push(rule);
    }
    out.push(checkpoint);
    out
}

/// Cancels a [`Stop`] when dropped: tie it to the caller's future.
pub struct CancelOnDrop(pub Stop);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

/// Puts a [`StopExec`] above every node of `plan`.
pub fn with_stop(plan: Arc<dyn ExecutionPlan>, stop: &Stop) -> Result<Arc<dyn ExecutionPlan>> {
    let children = plan
        .children()
        .into_iter()
        .map(|child| with_stop(Arc::clone(child), stop))
        .collect::<Result<Vec<_>>>()?;
    let plan = if children.is_empty() {
        plan
    } else {
        replace_children_if_necessary(plan, children)?
    };
    Ok(Arc::new(StopExec {
        input: plan,
        stop: stop.clone(),
    }))
}

/// Passes its input through, failing every pull once the query is stopped.
#[derive(Debug)]
pub struct StopExec {
    input: Arc<dyn ExecutionPlan>,
    stop: Stop,
}

impl DisplayAs for StopExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "StopExec")
    }
}

impl ExecutionPlan for StopExec {
    fn name(&self) -> &str {
        "StopExec"
    }

    fn downcast_delegate(&self) -> Option<&dyn ExecutionPlan> {
        Some(self.input.as_ref())
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.input.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if children.len() != 1 {
            return Err(DataFusionError::Internal(format!(
                "StopExec takes one child, got {}",
                children.len()
            )));
        }
        Ok(Arc::new(StopExec {
            input: children.swap_remove(0),
            stop: self.stop.clone(),
        }))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        if self.stop.is_stopped() {
            return Err(self.stop.error());
        }
        Ok(Box::pin(StopStream {
            input: self.input.execute(partition, context)?,
            stop: self.stop.clone(),
            done: false,
        }))
    }
}

struct StopStream {
    input: SendableRecordBatchStream,
    stop: Stop,
    done: bool,
}

impl Stream for StopStream {
    type Item = Result<RecordBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        if self.stop.is_stopped() {
            self.done = true;
            return Poll::Ready(Some(Err(self.stop.error())));
        }
        self.input.as_mut().poll_next(cx)
    }
}

impl RecordBatchStream for StopStream {
    fn schema(&self) -> SchemaRef {
        self.input.schema()
    }
}
