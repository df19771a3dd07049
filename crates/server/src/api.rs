//! HTTP routes of the query API: the native JSON endpoints under `/api/v1`
//! and the Jaeger-compatible `/api/traces/{id}`.
//!
//! Handlers only translate HTTP to `Store` calls and results back to JSON;
//! they hold no state of their own.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chaintrace_analysis::PriceTable;
use chaintrace_model::{DurationNanos, TraceId, UnixNanos};
use chaintrace_store::{Store, StoreError, TraceListQuery};
use serde::{Deserialize, Serialize};

use crate::cpu::{json_response, CpuPool};
use crate::jaeger::{to_jaeger_with_logs, Envelope, EnvelopeError};
use crate::metrics::{metrics_router, ApiMetrics};
use chaintrace_metrics::Registry;

/// Largest `limit` a trace list accepts.
pub const MAX_LIST_LIMIT: usize = 1000;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    /// Where traces are read from.
    pub store: Arc<dyn Store>,
    /// Model prices for LLM cost.
    pub prices: Arc<PriceTable>,
    /// Where CPU-heavy work of a request runs.
    pub cpu: CpuPool,
    /// What the handlers count for `/metrics`.
    pub metrics: ApiMetrics,
}

/// Builds the query API router over `store`, pricing LLM calls with `prices`.
pub fn router(store: Arc<dyn Store>, prices: Arc<PriceTable>) -> Router {
    build(store, prices, ApiMetrics::default(), CpuPool::default())
}

/// [`router`], timing every request and counting SQL queries in
/// `registry`, and serving `registry` at `GET /metrics`.
///
/// ```
/// # fn demo(store: std::sync::Arc<dyn chaintrace_store::Store>) {
/// let registry = chaintrace_metrics::Registry::new();
/// let prices = std::sync::Arc::new(chaintrace_analysis::PriceTable::empty());
/// let app = chaintrace_server::router_with_metrics(store, prices, &registry);
/// # }
/// ```
pub fn router_with_metrics(
    store: Arc<dyn Store>,
    prices: Arc<PriceTable>,
    registry: &Registry,
) -> Router {
    router_sharing(store, prices, registry, CpuPool::default())
}

/// [`router_with_metrics`] whose heavy work runs in `cpu`: the routers of
/// several stores (one per tenant) share one pool, so that together they
/// take no more cores than one.
pub fn router_sharing(
    store: Arc<dyn Store>,
    prices: Arc<PriceTable>,
    registry: &Registry,
    cpu: CpuPool,
) -> Router {
    build(store, prices, ApiMetrics::registered(registry), cpu)
        .merge(metrics_router(registry.clone()))
}

fn build(
    store: Arc<dyn Store>,
    prices: Arc<PriceTable>,
    metrics: ApiMetrics,
    cpu: CpuPool,
) -> Router {
    use crate::search::{analytics_handler, search, trace_analysis, Analytics};
    let router = Router::new()
        .route("/", get(crate::ui::search_page))
        .route("/trace/{trace_id}", get(crate::ui::trace_page))
        .route("/sessions", get(crate::ui::sessions_page))
        .route("/sessions/{session_id}", get(crate::ui::sessions_page))
        .route("/compare/{a}/{b}", get(crate::ui::compare_page))
        .route("/ui/{version}/{file}", get(crate::ui::asset))
        .route("/api", get(index))
        .route("/api/v1/health", get(health))
        .route("/api/v1/openapi.json", get(crate::openapi::openapi))
        .route("/api/v1/whoami", get(crate::auth::login::whoami))
        .route("/api/v1/stats", get(stats))
        .route("/api/v1/traces", get(list_traces))
        .route("/api/v1/traces/{trace_id}", get(native_trace))
        .route("/api/v1/traces/{trace_id}/spans/{span}", get(native_span))
        .route("/api/v1/traces/{trace_id}/analysis", get(trace_analysis))
        .route(
            "/api/v1/compare/{a}/{b}",
            get(crate::search::compare_traces),
        )
        .route(
            "/api/v1/traces/{trace_id}/match",
            get(crate::search::trace_match),
        )
        .route(
            "/api/v1/traces/{trace_id}/gantt",
            get(crate::gantt::trace_gantt),
        )
        .route("/api/v1/traceql/check", get(crate::search::check_query))
        .route("/api/v1/search", get(search))
        .route("/api/v1/logs", get(crate::logs::logs))
        .route("/api/v1/sql", post(crate::sql::sql))
        .route(
            "/api/v1/analytics/operations",
            get(analytics_handler(Analytics::Operations)),
        )
        .route(
            "/api/v1/analytics/models",
            get(analytics_handler(Analytics::Models)),
        )
        .route(
            "/api/v1/analytics/errors",
            get(analytics_handler(Analytics::Errors)),
        )
        .route(
            "/api/v1/analytics/bottlenecks",
            get(analytics_handler(Analytics::Bottlenecks)),
        )
        .route(
            "/api/v1/analytics/series",
            get(analytics_handler(Analytics::Series)),
        )
        .route(
            "/api/v1/sessions",
            get(analytics_handler(Analytics::Sessions)),
        )
        .route(
            "/api/v1/sessions/{session_id}",
            get(crate::sessions::session),
        )
        .route("/api/traces/{trace_id}", get(jaeger_trace))
        .route("/api/services", get(crate::jaeger_api::services))
        .route(
            "/api/services/{service}/operations",
            get(crate::jaeger_api::service_operations),
        )
        .route("/api/operations", get(crate::jaeger_api::operations))
        .route("/api/traces", get(crate::jaeger_api::find_traces))
        .route("/api/dependencies", get(crate::jaeger_api::dependencies))
        .fallback(not_found);
    router
        // gzip when the client asks for it (browsers, Grafana and curl
        // --compressed do): trace JSON shrinks about tenfold. Large answers
        // are compressed off the async workers first; tower-http does the
        // rest and skips what is already encoded.
        .layer(axum::middleware::from_fn_with_state(
            cpu.clone(),
            crate::compress::gzip_large_answers,
        ))
        .layer(tower_http::compression::CompressionLayer::new())
        // Outermost, so that the time includes compression.
        .layer(axum::middleware::from_fn_with_state(
            metrics.clone(),
            crate::metrics::time_requests,
        ))
        .with_state(AppState {
            store,
            prices,
            cpu,
            metrics,
        })
}

async fn index() -> impl IntoResponse {
    (
        [("content-type", "text/plain; charset=utf-8")],
        "chaintrace query API (the web UI is at /)\n\n\
         GET /api/v1/health\n\
         GET /api/v1/openapi.json  this API described in OpenAPI 3.1\n\
         GET /api/v1/whoami  the API key a request came with (name, tenant, scopes; never the key)\n\
         GET /metrics  Prometheus metrics (text format 0.0.4), served by chaintrace serve\n\
         GET /api/v1/stats\n\
         GET /api/v1/traces?limit=20&service=NAME&since=1h\n\
         GET /api/v1/traces/{trace_id}  the spans and the log records written in them\n\
         GET /api/v1/traces/{trace_id}/spans/{span_id or index}\n\
         GET /api/v1/traces/{trace_id}/analysis?parallel=a,b\n\
         GET /api/v1/traces/{trace_id}/gantt\n\
         GET /api/v1/traces/{trace_id}/match?q=<TraceQL>\n\
         GET /api/v1/compare/{trace_a}/{trace_b}  trace b against trace a, span by span\n\
         GET /api/v1/traceql/check?q=<TraceQL>\n\
         GET /api/v1/search?q=<TraceQL>&since=1h&limit=20\n\
         GET /api/v1/logs?trace_id=&span_id=&severity=warn&service=&q=<text>&since=1h&limit=100\n\
         POST /api/v1/sql  {\"query\": \"SELECT ...\", \"since\": \"1h\"}\n\
         GET /api/v1/analytics/{operations,models,errors,bottlenecks,series}?since=1h&filter=<TraceQL>&source=auto|rollups|traces\n\
         GET /api/v1/sessions?since=1h&user=&filter=<TraceQL>&limit=10  traces grouped by session.id\n\
         GET /api/v1/sessions/{id}?since=24h&limit=200  one session's turns as a transcript\n\
         POST /api/v1/spans  JSON spans (one object, an array, or one per line), served by chaintrace serve\n\
         POST /mcp  the MCP server for coding agents (streamable HTTP), served by chaintrace serve\n\
         \nJaeger-compatible (Grafana's Jaeger data source, the Jaeger UI):\n\
         GET /api/traces/{trace_id}\n\
         GET /api/traces?service=&operation=&tags=&minDuration=&maxDuration=&start=&end=&lookback=&limit=\n\
         GET /api/services\n\
         GET /api/services/{service}/operations\n\
         GET /api/operations?service=&spanKind=\n\
         GET /api/dependencies?endTs=&lookback=\n",
    )
}

async fn health() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

async fn stats(State(AppState { store, .. }): State<AppState>) -> Response {
    match store.stats().await {
        Ok(stats) => Json(stats).into_response(),
        Err(e) => store_error(e),
    }
}

async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "no such endpoint".to_string())
}

/// A native error answer: `{"error": "..."}`.
pub(crate) fn error(status: StatusCode, message: String) -> Response {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}

pub(crate) fn store_error(err: StoreError) -> Response {
    tracing::error!(error = %err, "query failed");
    let status = if err.is_retryable() {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    };
    error(status, err.to_string())
}

pub(crate) fn parse_trace_id(text: &str) -> Result<TraceId, String> {
    // Jaeger clients sometimes drop leading zeros of 64-bit-era ids: pad them back.
    let padded;
    let text = if text.len() < 32 && !text.is_empty() {
        padded = format!("{text:0>32}");
        &padded
    } else {
        text
    };
    TraceId::from_hex(text).map_err(|e| format!("invalid trace id: {e}"))
}

/// Query parameters of `GET /api/v1/traces`.
#[derive(Debug, Deserialize)]
struct ListParams {
    limit: Option<usize>,
    service: Option<String>,
    since: Option<String>,
}

/// Answer of `GET /api/v1/traces`.
#[derive(Debug, Serialize)]
struct TraceList {
    traces: Vec<chaintrace_model::TraceSummary>,
}

async fn list_traces(
    State(AppState { store, .. }): State<AppState>,
    Query(params): Query<ListParams>,
) -> Response {
    let limit = params.limit.unwrap_or(20);
    if limit == 0 || limit > MAX_LIST_LIMIT {
        return error(
            StatusCode::BAD_REQUEST,
            format!("limit must be between 1 and {MAX_LIST_LIMIT}, got {limit}"),
        );
    }
    let start = match params.since.as_deref() {
        None => None,
        Some(text) => match text.parse::<DurationNanos>() {
            Ok(d) => Some(UnixNanos(UnixNanos::now().0.saturating_sub(d.0))),
            Err(e) => return error(StatusCode::BAD_REQUEST, format!("since: {e}")),
        },
    };
    let query = TraceListQuery {
        limit,
        service: params.service.filter(|s| !s.is_empty()),
        start,
        end: None,
    };
    match store.recent_traces(&query).await {
        Ok(traces) => Json(TraceList { traces }).into_response(),
        Err(e) => store_error(e),
    }
}

async fn native_trace(
    State(AppState { store, cpu, .. }): State<AppState>,
    Path(trace_id): Path<String>,
) -> Response {
    let id = match parse_trace_id(&trace_id) {
        Ok(id) => id,
        Err(msg) => return error(StatusCode::BAD_REQUEST, msg),
    };
    let slot = match cpu.slot().await {
        Ok(slot) => slot,
        Err(e) => return e.into_response(),
    };
    let trace = match store.trace(id).await {
        Ok(Some(trace)) => trace,
        Ok(None) => return error(StatusCode::NOT_FOUND, format!("trace {id} not found")),
        Err(e) => return store_error(e),
    };
    let (logs, logs_truncated) = match crate::logs::trace_logs(store.as_ref(), id, None).await {
        Ok(found) => found,
        Err(e) => return store_error(e),
    };
    slot.respond(move || {
        json_response(
            StatusCode::OK,
            &TraceAnswer {
                trace: &trace,
                logs: crate::logs::TraceLogs::new(&logs, logs_truncated),
            },
        )
    })
    .await
}

/// A trace as `GET /api/v1/traces/{id}` answers it: the trace document
/// (`chaintrace_model::Trace`'s JSON) plus the log records written in it.
#[derive(Serialize)]
struct TraceAnswer<'a> {
    #[serde(flatten)]
    trace: &'a chaintrace_model::Trace,
    #[serde(flatten)]
    logs: crate::logs::TraceLogs<'a>,
}

/// `GET /api/v1/traces/{trace_id}/spans/{span}`: one span of a trace, by
/// its 16-hex-digit id or its index in the trace's `spans`:
/// `{"index": i, "trace": <the trace JSON holding only that span>}`. The
/// web UI reads a span's details (and resolves a span id from a link) from
/// this instead of downloading a 100 000-span trace.
async fn native_span(
    State(AppState { store, cpu, .. }): State<AppState>,
    Path((trace_id, span)): Path<(String, String)>,
) -> Response {
    let id = match parse_trace_id(&trace_id) {
        Ok(id) => id,
        Err(msg) => return error(StatusCode::BAD_REQUEST, msg),
    };
    let wanted = if span.len() == 16 {
        match span.parse::<chaintrace_model::SpanId>() {
            Ok(span_id) => Ok(span_id),
            Err(e) => return error(StatusCode::BAD_REQUEST, format!("span {span:?}: {e}")),
        }
    } else {
        match span.parse::<usize>() {
            Ok(index) => Err(index),
            Err(_) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("span {span:?}: want a span id (16 hex digits) or an index"),
                )
            }
        }
    };
    let slot = match cpu.slot().await {
        Ok(slot) => slot,
        Err(e) => return e.into_response(),
    };
    let trace = match store.trace(id).await {
        Ok(Some(trace)) => trace,
        Ok(None) => return error(StatusCode::NOT_FOUND, format!("trace {id} not found")),
        Err(e) => return store_error(e),
    };
    // A linear scan of at most the trace's spans: microseconds.
    let index = match wanted {
        Ok(span_id) => trace.spans.iter().position(|s| s.span_id == span_id),
        Err(index) => (index < trace.spans.len()).then_some(index),
    };
    let Some(index) = index else {
        return error(
            StatusCode::NOT_FOUND,
            format!("trace {id} has no span {span}"),
        );
    };
    let span_id = trace.spans[index].span_id;
    let (logs, logs_truncated) =
        match crate::logs::trace_logs(store.as_ref(), id, Some(span_id)).await {
            Ok(found) => found,
            Err(e) => return store_error(e),
        };
    slot.respond(move || {
        let one = chaintrace_model::Trace {
            trace_id: trace.trace_id,
            spans: vec![trace.spans[index].clone()],
        };
        json_response(
            StatusCode::OK,
            &SpanAnswer {
                index,
                trace: TraceAnswer {
                    trace: &one,
                    logs: crate::logs::TraceLogs::new(&logs, logs_truncated),
                },
            },
        )
    })
    .await
}

/// `GET /api/v1/traces/{id}/spans/{span}`'s answer: the span's index and a
/// trace holding only it, with its log records.
#[derive(Serialize)]
struct SpanAnswer<'a> {
    index: usize,
    trace: TraceAnswer<'a>,
}

/// A Jaeger envelope carrying one error, with `data: null`.
pub(crate) fn jaeger_error(status: StatusCode, msg: String) -> Response {
    let body: Envelope<()> = Envelope {
        data: None,
        total: 0,
        limit: 0,
        offset: 0,
        errors: Some(vec![EnvelopeError {
            code: status.as_u16(),
            msg,
        }]),
    };
    (status, Json(body)).into_response()
}

async fn jaeger_trace(
    State(AppState { store, cpu, .. }): State<AppState>,
    Path(trace_id): Path<String>,
) -> Response {
    let id = match parse_trace_id(&trace_id) {
        Ok(id) => id,
        Err(msg) => return jaeger_error(StatusCode::BAD_REQUEST, msg),
    };
    let slot = match cpu.slot().await {
        Ok(slot) => slot,
        Err(e) => return e.into_response(),
    };
    match store.trace(id).await {
        Ok(Some(trace)) => {
            let logs = match crate::logs::trace_logs(store.as_ref(), id, None).await {
                Ok((logs, _)) => logs,
                Err(e) => return jaeger_error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
            };
            slot.respond(move || {
                let envelope = Envelope {
                    data: Some(vec![to_jaeger_with_logs(&trace, &logs)]),
                    total: 1,
                    limit: 0,
                    offset: 0,
                    errors: None,
                };
                json_response(StatusCode::OK, &envelope)
            })
            .await
        }
        Ok(None) => jaeger_error(StatusCode::NOT_FOUND, "trace not found".to_string()),
        Err(e) => jaeger_error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}
