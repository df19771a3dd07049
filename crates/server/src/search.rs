//! TraceQL search and the across-trace analytics endpoints.
//!
//! Search walks whole traces newest first within a time range through
//! [`Store::search`]: the query's hints become the store's filter, so the
//! store reads only traces that may match, and each trace it hands over is
//! tested with the TraceQL evaluator. At most `max_inspected` traces are read
//! per request, and the answer says when that cap cut the walk short
//! (`truncated`), so a slow, partial answer is never passed off as complete.
//! Analytics count every trace of the range instead ([`analytics`]).
//! Regex matching is held to one [`RegexBudget`] per request as well; when it
//! runs out the walk stops there, and the answer is `truncated` with a
//! `stopped` object naming the cause (`regex_work_budget`) and the comparison
//! that did not fit.

use std::sync::{Arc, Mutex, PoisonError};

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use std::time::{Duration, Instant};

use chaintrace_analysis::{
    analyze, llm_spans, Aggregates, ErrorGroups, LlmTotals, SeriesAggregates, SessionGroups,
};
use chaintrace_model::rollup::Step;
use chaintrace_model::{AnyValue, DurationNanos, Span, Trace, TraceSummary, UnixNanos};
use chaintrace_query::{RegexBudget, RegexBudgetExhausted};
use chaintrace_store::{SearchRequest, Store, StoreError, TraceFilter};
use serde::{Deserialize, Serialize};

use crate::api::{error, parse_trace_id, store_error, AppState};
use crate::cpu::json_response;
use crate::filter::query_filter;
use crate::range::{RangeParams, TimeRange};

/// Most traces one search or analytics request reads.
pub const MAX_INSPECTED: usize = 5_000;

/// Walks the traces in `range` that pass `filter`, newest first, handing
/// each with `state` to `visit` until it returns false. Returns the state,
/// the traces read and whether the walk stopped early (cap or visitor).
pub async fn scan<S: Default + Send + 'static>(
    store: &Arc<dyn Store>,
    range: TimeRange,
    filter: TraceFilter,
    max_inspected: usize,
    mut visit: impl FnMut(&mut S, Trace) -> bool + Send + 'static,
) -> Result<(S, usize, bool), StoreError> {
    // The store runs the visitor on its own thread; the state comes back
    // through this cell once the walk is over.
    let cell = Arc::new(Mutex::new(S::default()));
    let shared = Arc::clone(&cell);
    let request = SearchRequest {
        filter,
        start: range.start,
        end: range.end,
        max_inspected,
    };
    let stats = store
        .search(
            request,
            Box::new(move |trace| {
                let mut state = shared.lock().unwrap_or_else(PoisonError::into_inner);
                visit(&mut state, trace)
            }),
        )
        .await?;
    let state = std::mem::take(&mut *cell.lock().unwrap_or_else(PoisonError::into_inner));
    Ok((state, stats.inspected, stats.truncated))
}

/// Query parameters of `GET /api/v1/search`.
#[derive(Debug, Deserialize)]
pub struct SearchParams {
    q: Option<String>,
    limit: Option<usize>,
    #[serde(flatten)]
    range: RangeParams,
}

/// One matched span in a search result.
#[derive(Debug, Serialize)]
struct MatchedSpanOut {
    span_id: String,
    name: String,
    service: String,
    start_unix_nano: u64,
    duration_nano: u64,
    status: &'static str,
    attributes: serde_json::Map<String, serde_json::Value>,
}

/// One trace in a search result.
#[derive(Debug, Serialize)]
struct SearchHit {
    #[serde(flatten)]
    summary: TraceSummary,
    llm_tokens: u64,
    /// Cost of the trace's priced LLM calls, in US dollars.
    llm_cost_usd: f64,
    matched: Vec<MatchedSpanOut>,
}

/// `GET /api/v1/search` answer.
#[derive(Debug, Serialize)]
struct SearchAnswer {
    traces: Vec<SearchHit>,
    inspected: usize,
    truncated: bool,
    /// Present only when something other than the trace cap or the limit
    /// stopped the walk, so ordinary answers keep their shape.
    #[serde(skip_serializing_if = "Option::is_none")]
    stopped: Option<Stopped>,
}

/// What stopped a walk that had candidates left, beyond the trace cap.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Stopped {
    /// For programs: `regex_work_budget`.
    pub reason: &'static str,
    /// For people: which comparison did not fit, on how long a value.
    pub detail: String,
}

impl From<&RegexBudgetExhausted> for Stopped {
    fn from(e: &RegexBudgetExhausted) -> Stopped {
        Stopped {
            reason: "regex_work_budget",
            detail: e.to_string(),
        }
    }
}

/// The hits of one search so far, and why it stopped early if it did.
#[derive(Debug, Default)]
struct SearchState {
    hits: Vec<SearchHit>,
    stopped: Option<Stopped>,
}

fn json_value(value: &AnyValue) -> serde_json::Value {
    match value {
        AnyValue::Empty => serde_json::Value::Null,
        AnyValue::String(s) => s.as_str().into(),
        AnyValue::Bool(b) => (*b).into(),
        AnyValue::Int(i) => (*i).into(),
        AnyValue::Double(d) => (*d).into(),
        other => other.to_display_string().into(),
    }
}

fn matched_out(span: &Span, selected: &[(String, AnyValue)]) -> MatchedSpanOut {
    MatchedSpanOut {
        span_id: span.span_id.to_hex(),
        name: span.name.to_string(),
        service: span.service_name().to_string(),
        start_unix_nano: span.start.0,
        duration_nano: span.duration().0,
        status: match span.status.code {
            chaintrace_model::StatusCode::Unset => "unset",
            chaintrace_model::StatusCode::Ok => "ok",
            chaintrace_model::StatusCode::Error => "error",
        },
        attributes: selected
            .iter()
            .map(|(k, v)| (k.clone(), json_value(v)))
            .collect(),
    }
}

/// Parses an optional TraceQL text; the error is the message for a 400.
fn parse_query(text: Option<&str>) -> Result<Option<chaintrace_query::Query>, String> {
    parse_located(text).map_err(|e| e.message)
}

/// A TraceQL text that did not parse, located in the text as sent.
#[derive(Debug, Serialize)]
struct QueryError {
    #[serde(rename = "error")]
    message: String,
    /// Byte offset in the `q` parameter as sent (leading blanks included).
    position: usize,
    line: usize,
    column: usize,
}

impl QueryError {
    fn into_response(self) -> Response {
        (StatusCode::BAD_REQUEST, Json(self)).into_response()
    }
}

/// [`parse_query`], keeping where the text went wrong: the web UI marks it.
fn parse_located(text: Option<&str>) -> Result<Option<chaintrace_query::Query>, QueryError> {
    let Some(sent) = text else { return Ok(None) };
    let trimmed = sent.trim();
    if trimmed.is_empty() {
        return Ok(None);
    }
    let lead = sent.len() - sent.trim_start().len();
    chaintrace_query::parse(trimmed).map(Some).map_err(|e| {
        let lead_lines = sent[..lead].matches('\n').count();
        QueryError {
            message: format!("invalid TraceQL: {e}"),
            position: e.position + lead,
            line: e.line + lead_lines,
            column: if e.line == 1 && lead_lines == 0 {
                e.column + sent[..lead].chars().count()
            } else {
                e.column
            },
        }
    })
}

/// Query parameters of `GET /api/v1/traceql/check`.
#[derive(Debug, Deserialize)]
pub struct CheckParams {
    q: Option<String>,
}

/// `GET /api/v1/traceql/check?q=<TraceQL>`: `{"ok": true}`, or a 400 with
/// the error and its `position`, `line` and `column`; for checking as one
/// types, without running a search.
pub async fn check_query(Query(params): Query<CheckParams>) -> Response {
    match parse_located(params.q.as_deref()) {
        Ok(_) => Json(serde_json::json!({ "ok": true })).into_response(),
        Err(e) => e.into_response(),
    }
}

/// `GET /api/v1/search?q=<TraceQL>&since=1h&limit=20`
pub async fn search(State(state): State<AppState>, Query(params): Query<SearchParams>) -> Response {
    let query = match parse_located(params.q.as_deref()) {
        Ok(q) => q,
        Err(e) => return e.into_response(),
    };
    let range = match params.range.resolve(Some("1h")) {
        Ok(r) => r,
        Err(msg) => return error(StatusCode::BAD_REQUEST, msg),
    };
    let limit = params.limit.unwrap_or(20);
    if limit == 0 || limit > 1000 {
        return error(
            StatusCode::BAD_REQUEST,
            format!("limit must be between 1 and 1000, got {limit}"),
        );
    }
    // Held for the walk: it reads and evaluates whole traces.
    let slot = match state.cpu.slot().await {
        Ok(slot) => slot,
        Err(e) => return e.into_response(),
    };
    let prices = Arc::clone(&state.prices);
    let filter = query_filter(query.as_ref());
    let has_query = query.is_some();
    let mut budget = RegexBudget::default();
    let scanned = scan(
        &state.store,
        range,
        filter,
        MAX_INSPECTED,
        move |found: &mut SearchState, trace| {
            let matched = match &query {
                None => Some(Vec::new()),
                Some(q) => match q.evaluate_within(&trace, &mut budget) {
                    Ok(m) => m.map(|m| {
                        m.matched
                            .iter()
                            .filter_map(|ms| {
                                trace
                                    .spans
                                    .get(ms.span_index)
                                    .map(|s| matched_out(s, &ms.selected))
                            })
                            .collect()
                    }),
                    Err(e) => {
                        found.stopped = Some(Stopped::from(&e));
                        return false;
                    }
                },
            };
            if let Some(matched) = matched {
                let totals = LlmTotals::of(&llm_spans(&trace, &prices));
                found.hits.push(SearchHit {
                    summary: trace.summary(),
                    llm_tokens: totals.input_tokens.saturating_add(totals.output_tokens),
                    llm_cost_usd: totals.cost_usd,
                    matched,
                });
            }
            found.hits.len() < limit
        },
    )
    .await;
    match scanned {
        Ok((found, inspected, truncated)) => {
            slot.json(
                StatusCode::OK,
                SearchAnswer {
                    traces: found.hits,
                    inspected,
                    truncated: (truncated && has_query) || found.stopped.is_some(),
                    stopped: found.stopped,
                },
            )
            .await
        }
        Err(e) => store_error(e),
    }
}

/// Query parameters of `GET /api/v1/traces/{id}/analysis`.
#[derive(Debug, Deserialize)]
pub struct AnalysisParams {
    parallel: Option<String>,
}

/// `GET /api/v1/traces/{id}/analysis[?parallel=a,b]`
pub async fn trace_analysis(
    State(state): State<AppState>,
    Path(trace_id): Path<String>,
    Query(params): Query<AnalysisParams>,
) -> Response {
    let id = match parse_trace_id(&trace_id) {
        Ok(id) => id,
        Err(msg) => return error(StatusCode::BAD_REQUEST, msg),
    };
    let slot = match state.cpu.slot().await {
        Ok(slot) => slot,
        Err(e) => return e.into_response(),
    };
    let trace = match state.store.trace(id).await {
        Ok(Some(t)) => t,
        Ok(None) => return error(StatusCode::NOT_FOUND, format!("trace {id} not found")),
        Err(e) => return store_error(e),
    };
    let prices = Arc::clone(&state.prices);
    slot.respond(move || {
        let names: Vec<&str> = params
            .parallel
            .as_deref()
            .map(|p| {
                p.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        let parallel = (!names.is_empty()).then_some(names.as_slice());
        match analyze(&trace, &prices, parallel) {
            Ok(analysis) => json_response(StatusCode::OK, &analysis),
            Err(e) => error(StatusCode::BAD_REQUEST, e.to_string()),
        }
    })
    .await
}

/// `GET /api/v1/compare/{a}/{b}`: trace `b` against trace `a`, spans
/// matched by their path of names (see `chaintrace_analysis::compare`).
/// Both traces are loaded in one CPU slot, one after the other.
pub async fn compare_traces(
    State(state): State<AppState>,
    Path((a, b)): Path<(String, String)>,
) -> Response {
    let (a, b) = match (parse_trace_id(&a), parse_trace_id(&b)) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(msg), _) | (_, Err(msg)) => return error(StatusCode::BAD_REQUEST, msg),
    };
    let slot = match state.cpu.slot().await {
        Ok(slot) => slot,
        Err(e) => return e.into_response(),
    };
    let mut traces = Vec::with_capacity(2);
    for id in [a, b] {
        match state.store.trace(id).await {
            Ok(Some(t)) => traces.push(t),
            Ok(None) => return error(StatusCode::NOT_FOUND, format!("trace {id} not found")),
            Err(e) => return store_error(e),
        }
    }
    let prices = Arc::clone(&state.prices);
    slot.respond(move || {
        let comparison = chaintrace_analysis::compare(&traces[0], &traces[1], &prices);
        json_response(StatusCode::OK, &comparison)
    })
    .await
}

/// Query parameters of `GET /api/v1/traces/{id}/match`.
#[derive(Debug, Deserialize)]
pub struct MatchParams {
    q: Option<String>,
}

/// `GET /api/v1/traces/{id}/match?q=<TraceQL>`: the spans of one trace a
/// TraceQL query selects, as indexes into the native trace's `spans`
/// (`{"spans": [3, 7], "stopped": …}`): the trace page's find box. A bad
/// query is a 400 with its position, as for the search.
pub async fn trace_match(
    State(state): State<AppState>,
    Path(trace_id): Path<String>,
    Query(params): Query<MatchParams>,
) -> Response {
    let id = match parse_trace_id(&trace_id) {
        Ok(id) => id,
        Err(msg) => return error(StatusCode::BAD_REQUEST, msg),
    };
    let query = match parse_located(params.q.as_deref()) {
        Ok(Some(q)) => q,
        Ok(None) => return error(StatusCode::BAD_REQUEST, "q: want a TraceQL query".into()),
        Err(e) => return e.into_response(),
    };
    let slot = match state.cpu.slot().await {
        Ok(slot) => slot,
        Err(e) => return e.into_response(),
    };
    let trace = match state.store.trace(id).await {
        Ok(Some(t)) => t,
        Ok(None) => return error(StatusCode::NOT_FOUND, format!("trace {id} not found")),
        Err(e) => return store_error(e),
    };
    slot.respond(move || {
        let mut budget = RegexBudget::default();
        let (spans, stopped) = match query.evaluate_within(&trace, &mut budget) {
            Ok(Some(m)) => {
                let mut spans: Vec<usize> = m.matched.iter().map(|ms| ms.span_index).collect();
                spans.sort_unstable();
                spans.dedup();
                (spans, None)
            }
            Ok(None) => (Vec::new(), None),
            Err(e) => (Vec::new(), Some(Stopped::from(&e))),
        };
        json_response(
            StatusCode::OK,
            &serde_json::json!({ "spans": spans, "stopped": stopped }),
        )
    })
    .await
}

/// Query parameters of the analytics endpoints.
#[derive(Debug, Deserialize)]
pub struct AnalyticsParams {
    filter: Option<String>,
    /// Sessions only: those of this user.
    user: Option<String>,
    bucket: Option<String>,
    limit: Option<usize>,
    /// `auto` (default), `rollups` or `traces`: where figures come from.
    source: Option<String>,
    #[serde(flatten)]
    range: RangeParams,
}

/// Where an analytics answer comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// Rollups when they can answer, else the traces.
    Auto,
    /// The blocks' per-minute rollups and the head.
    Rollups,
    /// Every trace of the range, read whole.
    Traces,
}

/// Which analytics figure to compute.
#[derive(Debug, Clone, Copy)]
pub enum Analytics {
    /// Per operation.
    Operations,
    /// Per LLM model.
    Models,
    /// Error groups.
    Errors,
    /// Ranked bottlenecks.
    Bottlenecks,
    /// Per-operation and per-model figures bucketed over time.
    Series,
    /// Traces grouped by session (`/api/v1/sessions`).
    Sessions,
}

/// Longest an analytics walk reads before it answers with what it has
/// (`truncated`, `stopped.reason = "time"`).
const ANALYTICS_TIME: Duration = Duration::from_secs(20);

/// Most groups (operations and models, error groups; over all buckets of
/// a series) one analytics walk holds before it stops
/// (`stopped.reason = "groups"`): each costs up to 8 KiB.
const MAX_GROUPS: usize = 20_000;

/// What an analytics walk adds traces into.
enum Figures {
    Aggregates(Aggregates),
    Errors(ErrorGroups),
    Series(SeriesAggregates),
    Sessions(SessionGroups),
}

impl Figures {
    /// Adds the minutes of `rollup`; false for figures rollups cannot give.
    fn add_rollup(
        &mut self,
        rollup: &chaintrace_model::rollup::Rollup,
        prices: &chaintrace_analysis::PriceTable,
    ) -> bool {
        match self {
            Figures::Aggregates(a) => a.add_rollup(rollup, prices),
            Figures::Series(s) => s.add_rollup(rollup, prices),
            Figures::Errors(e) => e.add_rollup(rollup),
            Figures::Sessions(_) => return false,
        }
        true
    }

    /// Adds `trace`, which stands for `weight` traces (tail sampling).
    fn add(&mut self, trace: &Trace, prices: &chaintrace_analysis::PriceTable, weight: u64) {
        match self {
            Figures::Aggregates(a) => a.add_weighted(trace, prices, weight),
            Figures::Errors(e) => e.add(trace),
            Figures::Series(s) => s.add_weighted(trace, prices, weight),
            Figures::Sessions(s) => s.add(trace, prices),
        }
    }

    fn groups(&self) -> usize {
        match self {
            Figures::Aggregates(a) => a.groups(),
            Figures::Errors(e) => e.len(),
            Figures::Series(s) => s.groups(),
            Figures::Sessions(s) => s.len(),
        }
    }
}

/// An analytics walk so far.
struct Walk {
    figures: Figures,
    /// Traces counted (started in range, passed the filter).
    traces: u64,
    /// The traces they stand for: each weighted by 1 / its tail-sampling
    /// rate (equal to `traces` without sampling).
    weighted: u64,
    /// Traces read.
    inspected: u64,
    stopped: Option<Stopped>,
}

/// The analytics endpoints: `GET /api/v1/analytics/{operations,models,errors,bottlenecks,series}`.
///
/// Every trace that started in the range and passes the filter is counted:
/// the store hands over every span of the range a chunk of whole traces at
/// a time ([`Store::stream_traces`](chaintrace_store::Store::stream_traces))
/// and each trace is added to bounded figures, on the store's blocking
/// thread, while this request holds a CPU slot. The walk stops early only
/// at a real bound ([`ANALYTICS_TIME`], [`MAX_GROUPS`], the regex budget),
/// and then says which in `stopped`.
pub async fn analytics(state: AppState, params: AnalyticsParams, what: Analytics) -> Response {
    let query = match parse_query(params.filter.as_deref()) {
        Ok(q) => q,
        Err(msg) => return error(StatusCode::BAD_REQUEST, msg),
    };
    let range = match params.range.resolve(Some("1h")) {
        Ok(r) => r,
        Err(msg) => return error(StatusCode::BAD_REQUEST, msg),
    };
    let source = match params.source.as_deref() {
        None | Some("auto") => Source::Auto,
        Some("rollups") => Source::Rollups,
        Some("traces") => Source::Traces,
        Some(other) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("source must be auto, rollups or traces, not {other:?}"),
            )
        }
    };
    // Rollups hold whole minutes of unfiltered figures per operation,
    // model and error group: a filter, a bucket that is not whole minutes
    // and sessions need the traces.
    let mut no_rollups: Option<&str> = match what {
        Analytics::Sessions => Some("sessions are read from the traces"),
        _ if query.is_some() => Some("a filter needs the traces"),
        _ => None,
    };
    let figures = match what {
        Analytics::Errors => Figures::Errors(ErrorGroups::default()),
        Analytics::Sessions => Figures::Sessions(SessionGroups::for_user(params.user.clone())),
        Analytics::Series => {
            let bucket = match params
                .bucket
                .as_deref()
                .unwrap_or("5m")
                .parse::<DurationNanos>()
            {
                Ok(b) if b.0 > 0 => b,
                Ok(_) => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "bucket must be greater than zero".into(),
                    )
                }
                Err(e) => return error(StatusCode::BAD_REQUEST, format!("bucket: {e}")),
            };
            if bucket.0 % chaintrace_model::rollup::MINUTE_NANOS != 0 {
                no_rollups = no_rollups.or(Some("a bucket of whole minutes is needed for rollups"));
            }
            Figures::Series(SeriesAggregates::new(bucket))
        }
        _ => Figures::Aggregates(Aggregates::default()),
    };
    if source == Source::Rollups {
        if let Some(why) = no_rollups {
            return error(StatusCode::BAD_REQUEST, format!("source=rollups: {why}"));
        }
    }
    let limit = params.limit.unwrap_or(10).min(1000);
    // Series read hours or minutes; everything else the whole range at once.
    let step = match &figures {
        Figures::Series(s) if s.width() % chaintrace_model::rollup::HOUR_NANOS == 0 => Step::Hour,
        Figures::Series(_) => Step::Minute,
        _ => Step::Total,
    };
    let figures = if source != Source::Traces && no_rollups.is_none() {
        match from_rollups(&state, range, figures, what, limit, step).await {
            Ok(response) => return response,
            Err(figures) if source == Source::Rollups => {
                drop(figures);
                return error(
                    StatusCode::BAD_REQUEST,
                    "source=rollups: this store keeps no rollups".into(),
                );
            }
            Err(figures) => figures,
        }
    } else {
        figures
    };
    // Two threads: the store decodes chunks of traces on its own, this
    // request's CPU slot adds them up, two chunks apart at most; on two
    // cores the walk takes about the longer of the two, not their sum. The
    // slot is held from the first chunk to the answer.
    let slot = match state.cpu.slot().await {
        Ok(slot) => slot,
        Err(e) => return e.into_response(),
    };
    let (chunks, received) = std::sync::mpsc::sync_channel::<Vec<Span>>(2);
    // The store stops reading once the figures stop taking chunks.
    let visit = Box::new(move |chunk: Vec<Span>| chunks.send(chunk).is_ok());
    let prices = Arc::clone(&state.prices);
    let figures_done = slot.run(move || {
        let mut walk = Walk {
            figures,
            traces: 0,
            weighted: 0,
            inspected: 0,
            stopped: None,
        };
        let deadline = Instant::now() + ANALYTICS_TIME;
        let in_range =
            |t: UnixNanos| range.start.is_none_or(|s| t >= s) && range.end.is_none_or(|e| t <= e);
        let mut budget = RegexBudget::default();
        let timed_out = || Stopped {
            reason: "time",
            detail: format!(
                "read for {} s; narrow the time range or add a filter",
                ANALYTICS_TIME.as_secs()
            ),
        };
        'chunks: loop {
            // A chunk the store is slow to hand over still ends at the bound.
            let wait = deadline.saturating_duration_since(Instant::now());
            let chunk = match received.recv_timeout(wait) {
                Ok(chunk) => chunk,
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    walk.stopped = Some(timed_out());
                    break;
                }
            };
            for trace in whole_traces(chunk) {
                walk.inspected += 1;
                let start = trace.start();
                if !in_range(start) {
                    continue;
                }
                if let Some(q) = &query {
                    match q.evaluate_within(&trace, &mut budget) {
                        Ok(Some(_)) => {}
                        Ok(None) => continue,
                        Err(e) => {
                            walk.stopped = Some(Stopped::from(&e));
                            break 'chunks;
                        }
                    }
                }
                walk.traces += 1;
                let weight = chaintrace_model::conventions::sampling_weight(&trace.spans);
                walk.weighted += weight;
                walk.figures.add(&trace, &prices, weight);
            }
            if walk.figures.groups() > MAX_GROUPS {
                walk.stopped = Some(Stopped {
                    reason: "groups",
                    detail: format!(
                        "more than {MAX_GROUPS} groups (operations, models or error types); \
                         add a filter or narrow the time range"
                    ),
                });
                break;
            }
            if Instant::now() >= deadline {
                walk.stopped = Some(timed_out());
                break;
            }
        }
        // Dropping the receiver here ends the store's read at its next chunk.
        let response = answer(walk, what, limit);
        chaintrace_model::memory::release_unused();
        response
    });
    let reading = state.store.stream_traces(range.start, range.end, visit);
    let (figures, read) = tokio::join!(figures_done, reading);
    if let Err(e) = read {
        return store_error(e);
    }
    match figures {
        Ok(response) => response,
        Err(e) => e.into_response(),
    }
}

/// Answers from the store's rollups (the blocks' per-minute figures and
/// the head's), over the whole minutes holding the range; hands `figures`
/// back when the store keeps none.
async fn from_rollups(
    state: &AppState,
    range: TimeRange,
    mut figures: Figures,
    what: Analytics,
    limit: usize,
    step: Step,
) -> Result<Response, Figures> {
    let slot = match state.cpu.slot().await {
        Ok(slot) => slot,
        Err(e) => return Ok(e.into_response()),
    };
    let from = range.start.unwrap_or(UnixNanos(0));
    let to = range.end.unwrap_or_else(UnixNanos::now);
    let read = match state.store.rollups(from, to, step).await {
        Ok(Some(read)) => read,
        Ok(None) => return Err(figures),
        Err(e) => return Ok(store_error(e)),
    };
    let prices = Arc::clone(&state.prices);
    let done = slot.run(move || {
        figures.add_rollup(&read.rollup, &prices);
        let minutes = &read.rollup.minutes;
        let walk = Walk {
            figures,
            traces: minutes.values().map(|m| m.sampled_traces).sum(),
            weighted: minutes.values().map(|m| m.traces).sum(),
            inspected: 0,
            stopped: None,
        };
        let lo = chaintrace_model::rollup::minute_of(from);
        let hi = chaintrace_model::rollup::minute_of(to) + chaintrace_model::rollup::MINUTE_NANOS;
        let details = serde_json::json!({
            "source": "rollups",
            "range": { "start": lo, "end": hi },
            "rollups": {
                "blocks": read.blocks,
                "rolled_up_now": read.built,
                "files_read": read.files_read,
                "head_traces": read.head_traces,
            },
        });
        answer_with(walk, what, limit, details)
    });
    Ok(done.await.unwrap_or_else(|e| e.into_response()))
}

/// The traces of a chunk (spans grouped by trace id, as the store hands
/// them over).
fn whole_traces(chunk: Vec<Span>) -> Vec<Trace> {
    let mut traces = Vec::new();
    let mut spans: Vec<Span> = Vec::new();
    for span in chunk {
        if spans.last().is_some_and(|s| s.trace_id != span.trace_id) {
            let id = spans[0].trace_id;
            traces.push(Trace::new(id, std::mem::take(&mut spans)));
        }
        spans.push(span);
    }
    if let Some(first) = spans.first() {
        let id = first.trace_id;
        traces.push(Trace::new(id, spans));
    }
    traces
}

/// The answer of an analytics walk (in the CPU pool).
fn answer(walk: Walk, what: Analytics, limit: usize) -> Response {
    answer_with(walk, what, limit, serde_json::json!({ "source": "traces" }))
}

/// [`answer`] with the fields of `details` added.
fn answer_with(walk: Walk, what: Analytics, limit: usize, details: serde_json::Value) -> Response {
    let mut body = match walk.figures {
        Figures::Aggregates(mut a) => match what {
            Analytics::Models => serde_json::json!({ "models": a.models() }),
            Analytics::Bottlenecks => serde_json::json!({ "bottlenecks": a.bottlenecks(limit) }),
            _ => serde_json::json!({ "operations": a.operations() }),
        },
        Figures::Errors(e) => serde_json::json!({ "errors": e.finish() }),
        Figures::Series(s) => serde_json::json!({ "series": s.finish() }),
        Figures::Sessions(s) => serde_json::json!({ "sessions": s.finish(limit) }),
    };
    if let Some(obj) = body.as_object_mut() {
        // Under tail sampling the figures are estimates of what was sent:
        // `traces` is then the estimate and `sampled_traces` what was read.
        // Error groups count failed spans, and sampling keeps every trace
        // with one: they stay exact.
        let estimated = walk.weighted != walk.traces
            && !matches!(what, Analytics::Errors | Analytics::Sessions);
        obj.insert("estimated".into(), estimated.into());
        if estimated {
            obj.insert("sampled_traces".into(), walk.traces.into());
            obj.insert("traces".into(), walk.weighted.into());
        } else {
            obj.insert("traces".into(), walk.traces.into());
        }
        obj.insert("inspected".into(), walk.inspected.into());
        obj.insert("truncated".into(), walk.stopped.is_some().into());
        if let serde_json::Value::Object(extra) = details {
            obj.extend(extra);
        }
        if let Some(stopped) = walk.stopped {
            obj.insert("stopped".into(), serde_json::json!(stopped));
        }
    }
    json_response(StatusCode::OK, &body)
}

/// Axum handler factory for one analytics figure.
pub fn analytics_handler(
    what: Analytics,
) -> impl Fn(
    State<AppState>,
    Query<AnalyticsParams>,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Response> + Send>>
       + Clone
       + Send
       + Sync
       + 'static {
    move |State(state), Query(params)| Box::pin(analytics(state, params, what))
}

#[cfg(test)]
#[path = "search_tests.rs"]
mod tests;
