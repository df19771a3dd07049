//! Read-only SQL over spans, with Apache DataFusion.
//!
//! [`run_sql`] turns a `Vec<Span>` into one in-memory table named `spans`;
//! [`run_sql_feed`] reads the table while the query runs from a
//! [`SpanFeed`] (the server's: the store's spans of a time range, a chunk of
//! whole traces at a time, only the columns the query uses built). Either
//! runs one read-only query under a row cap, a time limit and a memory
//! limit ([`SqlLimits`]), and answers columns and JSON rows
//! ([`SqlResult`]). It does no I/O and knows nothing of HTTP or the store:
//! the caller picks the spans (and so the time range), this crate only
//! queries them.
//!
//! # The `spans` table
//!
//! One row per span:
//!
//! | column | type | meaning |
//! |---|---|---|
//! | `trace_id`, `span_id` | Utf8 | lowercase hex |
//! | `parent_span_id` | Utf8, null for roots | lowercase hex |
//! | `name`, `service` | Utf8 | operation name, resource `service.name` |
//! | `kind` | Utf8 | `unspecified`, `internal`, `server`, `client`, `producer`, `consumer` |
//! | `status` | Utf8 | `unset`, `ok`, `error` |
//! | `status_message` | Utf8, null when empty | |
//! | `start_time`, `end_time` | Timestamp(ns, UTC) | compare with `TIMESTAMP '2026-01-01T00:00:00Z'` or `now() - INTERVAL '5 minutes'` |
//! | `duration_ns` / `duration_ms` | Int64 / Float64 | `end - start` |
//! | `llm_model` | Utf8, null | `gen_ai.response.model`, `gen_ai.request.model`, `llm.model_name`, `embedding.model_name`, `model` (the rules of `chaintrace_model::conventions`, as everywhere); a span with tokens but no model (the founding chain's `api_call`) takes its nearest ancestor's |
//! | `input_tokens` | Int64, null | `gen_ai.usage.input_tokens`, `gen_ai.usage.prompt_tokens`, `llm.token_count.prompt`, else `input_tokens` + `cache_read_input_tokens` + `cache_creation_input_tokens` |
//! | `output_tokens` | Int64, null | `gen_ai.usage.output_tokens`, `gen_ai.usage.completion_tokens`, `llm.token_count.completion`, `output_tokens` |
//! | `error_type` | Utf8, null | `error.type`, `error_type`, else the first `exception` event's `exception.type` (as sent, e.g. `__main__.RateLimitError`: match with `LIKE '%RateLimitError'`) |
//! | `attributes`, `resource_attributes` | Map(Utf8 → Utf8) | every attribute, values as display text |
//! | `sample_weight` | Int64 | how many traces the span's trace stands for under tail sampling: 1 / its root's `chaintrace.sampling.rate`, rounded (1 without) |
//!
//! Attributes are read by key with a subscript, `attributes['user_id']`
//! (null when absent), and are text: cast to compare as numbers,
//! `CAST(attributes['results_found'] AS BIGINT) > 3`. `map_keys(attributes)`
//! lists a span's keys.
//!
//! # Limits
//!
//! Besides [`SqlLimits`] (rows, answer bytes, time, operator memory), every
//! query runs under fixed caps that guard what DataFusion's memory pool does
//! not count: at most [`MAX_OPERATORS`] operators and [`MAX_JOINS`] joins; a
//! join without an equality condition pairs at most
//! [`MAX_UNKEYED_JOIN_ROWS`] rows; a constant holds at most
//! [`MAX_CONSTANT_BYTES`]; `repeat`, `lpad`, `rpad`, `replace`,
//! `regexp_replace`, `concat`, `concat_ws` and `||` build at most
//! [`MAX_VALUE_BYTES`] per value and [`MAX_CALL_BYTES`] per call; the
//! generators in [`REMOVED_FUNCTIONS`] and the table functions `range` and
//! `generate_series` do not exist. Planning runs under the time limit too,
//! and stops at its next rule once the limit passes.
//!
//! # Answers
//!
//! Rows are JSON arrays in column order. Timestamps are RFC 3339 UTC strings
//! (`2026-01-01T00:00:00.250Z`, fraction digits in groups of three); maps are
//! objects; lists arrays; non-finite floats the strings `NaN`, `Infinity`,
//! `-Infinity`. Column types are Arrow's names (`Int64`, `Utf8`, …).
//!
//! ```
//! use chaintrace_sql::{run_sql, SqlLimits};
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let answer = run_sql(Vec::new(), "SELECT count(*) AS n FROM spans", &SqlLimits::default())
//!     .await
//!     .unwrap();
//! assert_eq!(answer.columns[0].name, "n");
//! assert_eq!(answer.rows, vec![vec![serde_json::json!(0)]]);
//!
//! let err = run_sql(Vec::new(), "DROP TABLE spans", &SqlLimits::default()).await.unwrap_err();
//! assert_eq!(err.to_string(), "only SELECT queries are allowed, got DROP TABLE");
//! # });
//! ```

mod feed;
mod functions;
mod guard;
mod json;
mod stop;
mod table;

use std::sync::Arc;
use std::time::{Duration, Instant};

use chaintrace_model::Span;
use datafusion::catalog::TableProvider;
use datafusion::datasource::MemTable;
use datafusion::error::DataFusionError;
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::execution::SessionStateBuilder;
use datafusion::logical_expr::LogicalPlan;
use datafusion::optimizer::{Analyzer, AnalyzerRule, Optimizer, OptimizerRule};
use datafusion::physical_optimizer::optimizer::PhysicalOptimizer;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::execute_stream;
use datafusion::prelude::{SQLOptions, SessionConfig, SessionContext};
use futures::StreamExt;
use serde::Serialize;
use stop::{CancelOnDrop, PlanCheckpoint, Stop};

pub use feed::{ColumnChunks, OpenColumns, SpanChunks, SpanFeed};
pub use functions::{BuildRefused, MAX_CALL_BYTES, MAX_VALUE_BYTES, REMOVED as REMOVED_FUNCTIONS};
pub use guard::{PlanRefused, MAX_CONSTANT_BYTES, MAX_JOINS, MAX_OPERATORS, MAX_UNKEYED_JOIN_ROWS};
pub use table::{spans_schema, spans_to_batches};

/// The guards every query runs under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlLimits {
    /// Most rows returned; more set [`SqlResult::truncated`].
    pub max_rows: usize,
    /// Most bytes of values in the answer (as JSON text, about); rows past
    /// it are left out and set [`SqlResult::truncated`].
    pub max_answer_bytes: usize,
    /// Longest a query may take, table building included.
    pub timeout: Duration,
    /// Most memory the query's operators (sorts, aggregations, joins) may
    /// hold; beyond it the query fails. Nothing spills to disk. The `spans`
    /// table itself is not counted: its size is bounded by the caller's
    /// span cap.
    pub memory_bytes: usize,
}

impl Default for SqlLimits {
    /// 10 000 rows, 64 MiB of answer, 30 s, 512 MiB.
    fn default() -> Self {
        SqlLimits {
            max_rows: 10_000,
            max_answer_bytes: 64 << 20,
            timeout: Duration::from_secs(30),
            memory_bytes: 512 << 20,
        }
    }
}

/// One column of an answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SqlColumn {
    /// The column name as the query spelled or aliased it.
    pub name: String,
    /// Arrow's name for its type, e.g. `Int64`, `Utf8`, `Float64`.
    #[serde(rename = "type")]
    pub data_type: String,
}

/// The answer to a query.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SqlResult {
    /// The columns, in order.
    pub columns: Vec<SqlColumn>,
    /// The rows, each a list of JSON values in column order.
    pub rows: Vec<Vec<serde_json::Value>>,
    /// Whether the query had more rows than [`SqlLimits::max_rows`], or
    /// more than [`SqlLimits::max_answer_bytes`] of values.
    pub truncated: bool,
}

/// Why a query was refused or failed. Every variant but
/// [`Internal`](SqlError::Internal) is the query's fault.
#[derive(Debug, thiserror::Error)]
pub enum SqlError {
    /// The text holds no statement.
    #[error("the query is empty")]
    Empty,
    /// More than one statement.
    #[error("send one statement at a time, got {0}")]
    MultipleStatements(usize),
    /// The text does not parse.
    #[error("SQL syntax error: {0}")]
    Syntax(String),
    /// The query holds more operators than the planner is allowed to chew on.
    #[error("the query is too complex: {operators} operators, at most {limit}; shorten long AND/OR chains, e.g. with IN (...)")]
    TooComplex {
        /// Operators counted.
        operators: usize,
        /// The cap.
        limit: usize,
    },
    /// The statement would do more than read (the name of what it is).
    #[error("only SELECT queries are allowed, got {0}")]
    NotAQuery(String),
    /// The query parses but cannot be planned: unknown column, wrong types, …
    #[error("{0}")]
    Plan(String),
    /// The query failed while running.
    #[error("query failed: {0}")]
    Execution(String),
    /// The query needed more than [`SqlLimits::memory_bytes`].
    #[error("the query needs more than its memory limit of {}; narrow the time range, filter earlier or aggregate less ({message})", fmt_bytes(*limit_bytes))]
    Memory {
        /// The limit, in bytes.
        limit_bytes: usize,
        /// DataFusion's account of what ran out.
        message: String,
    },
    /// A function would have built a value past its cap (`repeat`, `lpad`,
    /// `concat`, `||`, …).
    #[error("{0}; build smaller values (the cap guards the server's memory)")]
    TooBig(#[from] BuildRefused),
    /// A join too many or too big, or a constant too big.
    #[error("{0}")]
    Refused(#[from] PlanRefused),
    /// The query ran longer than [`SqlLimits::timeout`].
    #[error("the query was stopped after {0:?}; narrow the time range or simplify it")]
    Timeout(Duration),
    /// A fault of this crate, not of the query.
    #[error("internal error running SQL: {0}")]
    Internal(String),
}

/// Checks that `sql` is one read-only statement of bounded size, without
/// running it: call it before fetching spans, so a refused query costs
/// nothing. [`run_sql`] checks again.
///
/// ```
/// assert!(chaintrace_sql::check_query("SELECT name FROM spans").is_ok());
/// let err = chaintrace_sql::check_query("CREATE TABLE t (a INT)").unwrap_err();
/// assert_eq!(err.to_string(), "only SELECT queries are allowed, got CREATE TABLE");
/// ```
pub fn check_query(sql: &str) -> Result<(), SqlError> {
    guard::read_only_statement(sql).map(drop)
}

/// Runs one read-only query over `spans` as the table `spans`.
///
/// The statement is checked before the table is built, so a refused query
/// costs nothing. The query then runs on a thread and runtime of its own, so
/// a heavy query never starves the caller's runtime, and stops at
/// [`SqlLimits::timeout`] or as soon as the returned future is dropped. See
/// the [crate documentation](crate) for the schema and how values are written.
pub async fn run_sql(
    spans: Vec<Span>,
    sql: &str,
    limits: &SqlLimits,
) -> Result<SqlResult, SqlError> {
    run_sql_holding(spans, sql, limits, ()).await
}

/// [`run_sql`], holding `hold` until the query's thread has ended — not
/// only until this returns. A query past its time limit, or whose caller
/// went away, is told to stop, but a step of planning or a batch in flight
/// finishes first; a server that caps concurrent queries passes its permit
/// here, so that such abandoned work still counts against the cap and
/// cannot pile up.
pub async fn run_sql_holding<H: Send + 'static>(
    spans: Vec<Span>,
    sql: &str,
    limits: &SqlLimits,
    hold: H,
) -> Result<SqlResult, SqlError> {
    run_table(Table::Memory(spans), sql, limits, hold).await
}

/// [`run_sql_holding`] over spans read while the query runs: `feed` hands
/// over chunks of whole traces and only the spans starting in its range
/// become rows, of only the columns the query uses. Memory holds a chunk
/// or two and the query's operators (under [`SqlLimits::memory_bytes`]),
/// whatever the range holds, so no range is too big; the time limit still
/// stops a query that reads too long.
pub async fn run_sql_feed<H: Send + 'static>(
    feed: SpanFeed,
    sql: &str,
    limits: &SqlLimits,
    hold: H,
) -> Result<SqlResult, SqlError> {
    run_table(Table::Feed(Arc::new(feed)), sql, limits, hold).await
}

/// Where the `spans` table's rows are.
enum Table {
    /// Handed over whole.
    Memory(Vec<Span>),
    /// Read as the query runs.
    Feed(Arc<SpanFeed>),
}

async fn run_table<H: Send + 'static>(
    table: Table,
    sql: &str,
    limits: &SqlLimits,
    hold: H,
) -> Result<SqlResult, SqlError> {
    let statement = guard::read_only_statement(sql)?;
    let stop = Stop::at(Instant::now() + limits.timeout);
    let _cancel = CancelOnDrop(stop.clone());
    let (answer, answered) = tokio::sync::oneshot::channel();
    let thread_limits = limits.clone();
    let thread_stop = stop.clone();
    std::thread::Builder::new()
        .name("chaintrace-sql".into())
        .stack_size(STACK_BYTES)
        .spawn(move || {
            let result = run_on_own_runtime(table, statement, &thread_limits, &thread_stop);
            let _ = answer.send(result);
            drop(hold);
            // The query's table and batches are freed; give them back.
            chaintrace_model::memory::release_unused();
        })
        .map_err(|e| SqlError::Internal(format!("cannot start a query thread: {e}")))?;
    // The query stops itself at the deadline; the grace covers a thread that
    // is slow to notice (one batch) before the caller is told.
    match tokio::time::timeout(limits.timeout + STOP_GRACE, answered).await {
        Ok(Ok(result)) => result,
        Ok(Err(_)) => Err(SqlError::Internal(
            "the query thread ended without an answer (a panic in the query engine)".into(),
        )),
        Err(_) => Err(SqlError::Timeout(limits.timeout)),
    }
}

/// Stack of the query threads. Planning recurses over the expression tree,
/// and a long `a OR b OR …` chain is deep even where the parser's nesting
/// limit holds; untouched stack pages cost no memory.
const STACK_BYTES: usize = 64 << 20;

/// How long past the deadline the caller waits for the query to notice.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// Partitions of the table, and the query's worker threads: the cores, at most 4.
fn partitions() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(4))
}

fn run_on_own_runtime(
    table: Table,
    statement: datafusion::sql::parser::Statement,
    limits: &SqlLimits,
    stop: &Stop,
) -> Result<SqlResult, SqlError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(partitions())
        .thread_name("chaintrace-sql-worker")
        .thread_stack_size(STACK_BYTES)
        .enable_time()
        .build()
        .map_err(|e| SqlError::Internal(format!("cannot start the query runtime: {e}")))?;
    let result = runtime.block_on(execute(table, statement, limits, stop));
    // Workers still busy in a stopped query finish their batch in the background.
    runtime.shutdown_background();
    match result {
        // A stopped pull or plan step fails with whatever error its caller
        // makes of it.
        Err(_) if stop.timed_out() => Err(SqlError::Timeout(limits.timeout)),
        other => other,
    }
}

async fn execute(
    table: Table,
    statement: datafusion::sql::parser::Statement,
    limits: &SqlLimits,
    stop: &Stop,
) -> Result<SqlResult, SqlError> {
    let internal = |e: DataFusionError| SqlError::Internal(df_message(&e));
    let (table, table_rows): (Arc<dyn TableProvider>, u64) = match table {
        Table::Memory(spans) => {
            let partitions = partitions();
            let batches = spans_to_batches(&spans)
                .map_err(|e| SqlError::Internal(format!("building the spans table: {e}")))?;
            let rows = spans.len() as u64;
            drop(spans);
            if stop.is_stopped() {
                return Err(SqlError::Timeout(limits.timeout));
            }
            let mut parts = vec![Vec::new(); partitions];
            for (i, batch) in batches.into_iter().enumerate() {
                parts[i % partitions].push(batch);
            }
            let table = MemTable::try_new(spans_schema(), parts).map_err(internal)?;
            (Arc::new(table), rows)
        }
        Table::Feed(feed) => {
            let rows = feed.max_rows;
            (Arc::new(feed::FeedTable { feed }), rows)
        }
    };
    let partitions = partitions();

    let runtime = RuntimeEnvBuilder::new()
        .with_memory_limit(limits.memory_bytes, 1.0)
        .with_disk_manager_builder(
            DiskManagerBuilder::default().with_mode(DiskManagerMode::Disabled),
        )
        .build_arc()
        .map_err(internal)?;
    let config = SessionConfig::new()
        .with_target_partitions(partitions)
        .with_information_schema(false);
    let ctx = SessionContext::new_with_state(session_state(config, runtime, stop, table_rows));
    functions::restrict(&ctx);
    ctx.register_table("spans", table).map_err(internal)?;

    let plan = ctx
        .state()
        .statement_to_plan(statement)
        .await
        .map_err(|e| refusal(&e).unwrap_or_else(|| SqlError::Plan(plan_message(&e))))?;
    // The second lock: whatever the guard let through must plan to a read.
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
        .verify_plan(&plan)
        .map_err(|e| SqlError::NotAQuery(df_message(&e)))?;

    let failed = |e: DataFusionError| run_error(e, limits);
    // EXPLAIN and DESCRIBE must stay the root of their plans.
    let describes = matches!(
        plan,
        LogicalPlan::Explain(_) | LogicalPlan::Analyze(_) | LogicalPlan::DescribeTable(_)
    );
    let mut frame = ctx.execute_logical_plan(plan).await.map_err(failed)?;
    if !describes {
        // One row past the cap tells whether there were more; the limit also
        // lets DataFusion stop early (a sort becomes a top-k).
        frame = frame
            .limit(0, Some(limits.max_rows.saturating_add(1)))
            .map_err(failed)?;
    }
    let task = Arc::new(frame.task_ctx());
    let physical = frame.create_physical_plan().await.map_err(failed)?;
    let physical = stop::with_stop(physical, stop).map_err(failed)?;
    let mut stream = execute_stream(physical, task).map_err(failed)?;
    let columns = stream
        .schema()
        .fields()
        .iter()
        .map(|f| SqlColumn {
            name: f.name().clone(),
            data_type: f.data_type().to_string(),
        })
        .collect();

    let mut rows = Vec::new();
    let mut truncated = false;
    let mut answer_bytes = 0usize;
    'batches: while let Some(batch) = stream.next().await {
        let batch = batch.map_err(failed)?;
        for row in 0..batch.num_rows() {
            if rows.len() == limits.max_rows {
                truncated = true;
                break 'batches;
            }
            let cells: Vec<serde_json::Value> = batch
                .columns()
                .iter()
                .map(|c| json::cell(c.as_ref(), row))
                .collect();
            answer_bytes = answer_bytes.saturating_add(cells.iter().map(json_bytes).sum());
            if answer_bytes > limits.max_answer_bytes {
                truncated = true;
                break 'batches;
            }
            rows.push(cells);
        }
    }
    Ok(SqlResult {
        columns,
        rows,
        truncated,
    })
}

/// The session a query plans and runs in: DataFusion's defaults, with a
/// [`PlanCheckpoint`] between all planning rules, `||` capped after type
/// coercion, and the [`guard::PlanGuard`] after the optimizer.
fn session_state(
    config: SessionConfig,
    runtime: Arc<datafusion::execution::runtime_env::RuntimeEnv>,
    stop: &Stop,
    table_rows: u64,
) -> datafusion::execution::SessionState {
    let checkpoint = PlanCheckpoint(stop.clone());
    let mut analyzer = Analyzer::new().rules;
    analyzer.push(Arc::new(functions::CapConcatOperator::default()));
    let analyzer = stop::with_checkpoints(
        analyzer,
        Arc::new(checkpoint.clone()) as Arc<dyn AnalyzerRule + Send + Sync>,
    );
    let mut optimizer = Optimizer::new().rules;
    optimizer.push(Arc::new(guard::PlanGuard { table_rows }));
    let optimizer = stop::with_checkpoints(
        optimizer,
        Arc::new(checkpoint.clone()) as Arc<dyn OptimizerRule + Send + Sync>,
    );
    let physical = stop::with_checkpoints(
        PhysicalOptimizer::new().rules,
        Arc::new(checkpoint) as Arc<dyn PhysicalOptimizerRule + Send + Sync>,
    );
    SessionStateBuilder::new()
        .with_config(config)
        .with_runtime_env(runtime)
        .with_default_features()
        .with_analyzer_rules(analyzer)
        .with_optimizer_rules(optimizer)
        .with_physical_optimizer_rules(physical)
        .build()
}

/// About how many bytes `value` takes as JSON text.
fn json_bytes(value: &serde_json::Value) -> usize {
    match value {
        serde_json::Value::String(s) => s.len() + 2,
        serde_json::Value::Array(items) => items.iter().map(json_bytes).sum::<usize>() + 2,
        serde_json::Value::Object(map) => map
            .iter()
            .map(|(k, v)| k.len() + 3 + json_bytes(v))
            .sum::<usize>()
            .saturating_add(2),
        _ => 8,
    }
}

/// The refusal a capped function or the join guard raised, wherever in
/// DataFusion's error chain it sits.
fn refusal(err: &DataFusionError) -> Option<SqlError> {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = next {
        if let Some(r) = e.downcast_ref::<BuildRefused>() {
            return Some(SqlError::TooBig(r.clone()));
        }
        if let Some(r) = e.downcast_ref::<PlanRefused>() {
            return Some(SqlError::Refused(r.clone()));
        }
        next = e.source();
    }
    None
}

fn run_error(err: DataFusionError, limits: &SqlLimits) -> SqlError {
    if let Some(refused) = refusal(&err) {
        return refused;
    }
    match err.find_root() {
        DataFusionError::ResourcesExhausted(message) => SqlError::Memory {
            limit_bytes: limits.memory_bytes,
            message: message.clone(),
        },
        DataFusionError::Plan(_) | DataFusionError::SchemaError(..) => {
            SqlError::Plan(df_message(&err))
        }
        _ => SqlError::Execution(df_message(&err)),
    }
}

/// [`df_message`], with a hint when the query names a table other than `spans`.
fn plan_message(err: &DataFusionError) -> String {
    let message = df_message(err);
    if message.starts_with("table ") && message.ends_with("not found") {
        format!("{message}; the only table is `spans`")
    } else {
        message
    }
}

/// `512 MiB`, `256 KiB`, `100 bytes`.
fn fmt_bytes(bytes: usize) -> String {
    match bytes {
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{} MiB", b >> 20),
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / (1 << 20) as f64),
        b if b >= 1 << 10 => format!("{} KiB", b >> 10),
        b => format!("{b} bytes"),
    }
}

/// DataFusion's message for the innermost error, without backtrace or the
/// `Error during planning:`-style prefix.
fn df_message(err: &DataFusionError) -> String {
    let root = err.find_root();
    let text = match root {
        DataFusionError::SQL(parser_error, _) => parser_error.to_string(),
        other => other.message().into_owned(),
    };
    let text = text
        .split(DataFusionError::BACK_TRACE_SEP)
        .next()
        .unwrap_or_default();
    text.strip_prefix("sql parser error: ")
        .unwrap_or(text)
        .trim()
        .to_string()
}

#[cfg(test)]
mod hostile_tests;
#[cfg(test)]
mod tests;
