//! The search side of the Jaeger HTTP query API: `/api/services`,
//! `/api/services/{service}/operations`, `/api/operations`, the `/api/traces`
//! search and `/api/dependencies`, answered so that Grafana's Jaeger data
//! source and the Jaeger UI work unchanged.
//!
//! This module parses Jaeger's parameters (times in µs, except
//! `/api/dependencies` in ms; Go-style durations; `tags` as a JSON object) and
//! filters what the [`Store`] returns; the JSON shapes and the trace
//! conversion live in [`crate::jaeger`]. It must not grow its own index: the
//! service and operation lists come from a bounded scan of recent spans
//! ([`CATALOG_WINDOWS`]), trace search from [`crate::search::scan`].

use std::collections::{BTreeMap, BTreeSet, HashMap};

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use chaintrace_model::{DurationNanos, Span, SpanId, SpanKind, TraceId, UnixNanos};
use chaintrace_store::{SpanClause, StoreError, TraceFilter};
use serde::Serialize;

use crate::api::{parse_trace_id, AppState};
use crate::jaeger::{to_jaeger, Envelope, JaegerProcess, JaegerSpan, JaegerTrace};
use crate::range::TimeRange;
use crate::search::{scan, MAX_INSPECTED};

/// Most distinct `traceID`s one `/api/traces` request may ask for.
pub const MAX_TRACE_IDS: usize = 100;

/// Window a `/api/traces` search covers without `start` or `lookback`: the
/// Jaeger UI's default lookback.
pub const DEFAULT_SEARCH_LOOKBACK: DurationNanos = DurationNanos(3_600 * 1_000_000_000);
/// Traces a search returns without `limit` (the Jaeger UI's and Grafana's default).
pub const DEFAULT_SEARCH_LIMIT: usize = 20;
/// Largest `limit` honoured (the Jaeger UI's maximum); larger ones are lowered to it.
pub const MAX_SEARCH_LIMIT: usize = 1_500;
/// `/api/dependencies` lookback without `lookback`: 24 h, in ms as Jaeger counts it.
pub const DEFAULT_DEPENDENCIES_LOOKBACK_MS: u64 = 24 * 3_600 * 1_000;
/// Most spans one services/operations/dependencies request reads.
pub const MAX_SCAN_SPANS: usize = 500_000;
/// Windows, ending now, that the service and operation lists are read from:
/// the first that holds at most [`MAX_SCAN_SPANS`] spans wins, so on a busy
/// store the lists show what ran recently rather than failing.
pub const CATALOG_WINDOWS: [DurationNanos; 3] = [
    DurationNanos(24 * 3_600 * 1_000_000_000),
    DurationNanos(3_600 * 1_000_000_000),
    DurationNanos(5 * 60 * 1_000_000_000),
];

/// Query parameters as sent, repeats kept (`tag=` and `traceID=` repeat).
type RawParams = Result<Query<Vec<(String, String)>>, QueryRejection>;

/// Sorted names of the services seen in recent spans.
pub async fn services(State(state): State<AppState>) -> Response {
    match catalog(&state).await {
        Ok(catalog) => ok(catalog.keys().cloned().collect::<Vec<_>>()),
        Err(answer) => answer,
    }
}

/// Sorted span names of one service.
pub async fn service_operations(
    State(state): State<AppState>,
    Path(service): Path<String>,
) -> Response {
    match catalog(&state).await {
        Ok(mut catalog) => {
            let names: BTreeSet<String> = catalog
                .remove(&service)
                .unwrap_or_default()
                .into_iter()
                .map(|(name, _)| name)
                .collect();
            ok(names.into_iter().collect::<Vec<_>>())
        }
        Err(answer) => answer,
    }
}

/// One entry of `/api/operations`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Operation {
    name: String,
    span_kind: &'static str,
}

/// `/api/operations?service=S[&spanKind=K]`: `{name, spanKind}` pairs.
pub async fn operations(State(state): State<AppState>, params: RawParams) -> Response {
    let params = match params_of(params) {
        Ok(p) => p,
        Err(msg) => return bad_request(msg),
    };
    let Some(service) = param(&params, "service") else {
        return bad_request("parameter 'service' is required".to_string());
    };
    let kind = match param(&params, "spanKind") {
        None => None,
        Some(k) if KINDS.contains(&k) => Some(k),
        Some(k) => {
            return bad_request(format!(
                "parameter 'spanKind' must be one of {}, got {k:?}",
                KINDS.join(", ")
            ))
        }
    };
    match catalog(&state).await {
        Ok(mut catalog) => ok(catalog
            .remove(service)
            .unwrap_or_default()
            .into_iter()
            .filter(|(_, k)| kind.is_none_or(|want| want == *k))
            .map(|(name, span_kind)| Operation { name, span_kind })
            .collect::<Vec<_>>()),
        Err(answer) => answer,
    }
}

/// `/api/traces?service=&operation=&tags=&minDuration=&maxDuration=&start=&end=&lookback=&limit=`
/// (or `?traceID=..&traceID=..`): full traces in Jaeger's shape, newest first.
pub async fn find_traces(State(state): State<AppState>, params: RawParams) -> Response {
    let request = match params_of(params).and_then(|p| parse_search(&p, UnixNanos::now())) {
        Ok(r) => r,
        Err(msg) => return bad_request(msg),
    };
    // Held from loading the traces to writing the answer.
    let slot = match state.cpu.slot().await {
        Ok(slot) => slot,
        Err(e) => return crate::api::jaeger_error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    };
    let search = match request {
        TraceRequest::ByIds(ids) => {
            let mut traces = Vec::new();
            for id in ids {
                match state.store.trace(id).await {
                    Ok(Some(trace)) => traces.push(trace),
                    Ok(None) => {}
                    Err(e) => return store_failure(e),
                }
            }
            return slot
                .respond(move || ok(traces.iter().map(to_jaeger).collect()))
                .await;
        }
        TraceRequest::Search(search) => search,
    };
    // A hit needs a span of the service (and operation): the store skips
    // traces without one.
    let mut clauses = vec![SpanClause::Service(BTreeSet::from([search
        .service
        .clone()]))];
    if let Some(op) = &search.operation {
        clauses.push(SpanClause::SpanName(BTreeSet::from([op.clone()])));
    }
    let range = search.range;
    let limit = search.limit;
    let scanned = scan(
        &state.store,
        range,
        TraceFilter { clauses },
        MAX_INSPECTED,
        move |found: &mut Vec<JaegerTrace>, trace| {
            let candidates: Vec<usize> = (0..trace.spans.len())
                .filter(|&i| search.selects(&trace.spans[i]))
                .collect();
            if candidates.is_empty() {
                return true;
            }
            let jaeger = to_jaeger(&trace);
            let hit = search.tags.is_empty()
                || candidates.iter().any(|&i| {
                    let span = &jaeger.spans[i];
                    let process = jaeger.processes.get(&span.process_id);
                    search
                        .tags
                        .iter()
                        .all(|(k, v)| has_tag(span, process, k, v))
                });
            if hit {
                found.push(jaeger);
            }
            found.len() < search.limit
        },
    )
    .await;
    match scanned {
        Ok((found, inspected, truncated)) => {
            if truncated && found.len() < limit {
                // Jaeger's envelope has no place for a partial-answer warning.
                tracing::warn!(
                    inspected,
                    found = found.len(),
                    "Jaeger trace search stopped at the inspection cap"
                );
            }
            slot.respond(move || ok(found)).await
        }
        Err(e) => store_failure(e),
    }
}

/// One edge of `/api/dependencies`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Dependency {
    parent: String,
    child: String,
    call_count: u64,
}

/// `/api/dependencies?endTs=<ms>&lookback=<ms>`: calls between services,
/// counted over parent/child span pairs of traces started in the window.
pub async fn dependencies(State(state): State<AppState>, params: RawParams) -> Response {
    let params = match params_of(params) {
        Ok(p) => p,
        Err(msg) => return bad_request(msg),
    };
    let (start, end) = match dependency_window(&params, UnixNanos::now()) {
        Ok(window) => window,
        Err(msg) => return bad_request(msg),
    };
    // From what the store keeps beside its spans, when it can.
    match state.store.dependencies(start, end).await {
        Ok(Some(calls)) => {
            return ok(calls
                .into_iter()
                .map(|(parent, child, call_count)| Dependency {
                    parent,
                    child,
                    call_count,
                })
                .collect::<Vec<_>>())
        }
        Ok(None) => {}
        Err(e) => return store_failure(e),
    }
    let slot = match state.cpu.slot().await {
        Ok(slot) => slot,
        Err(e) => return crate::api::jaeger_error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    };
    let spans = match state
        .store
        .scan_spans(Some(start), Some(end), MAX_SCAN_SPANS)
        .await
    {
        Ok(spans) => spans,
        Err(StoreError::TooMuchData { limit }) => {
            return bad_request(format!(
                "the window of parameter 'lookback' holds more than {limit} spans; narrow it"
            ))
        }
        Err(e) => return store_failure(e),
    };
    slot.respond(move || dependency_answer(&spans)).await
}

/// The `/api/dependencies` answer over `spans`.
fn dependency_answer(spans: &[Span]) -> Response {
    let service_of: HashMap<(TraceId, SpanId), &str> = spans
        .iter()
        .map(|s| ((s.trace_id, s.span_id), s.service_name()))
        .collect();
    let mut calls: BTreeMap<(&str, &str), u64> = BTreeMap::new();
    for span in spans {
        let Some(parent) = span.parent_span_id else {
            continue;
        };
        if let Some(&parent_service) = service_of.get(&(span.trace_id, parent)) {
            if parent_service != span.service_name() {
                *calls
                    .entry((parent_service, span.service_name()))
                    .or_default() += 1;
            }
        }
    }
    ok(calls
        .into_iter()
        .map(|((parent, child), call_count)| Dependency {
            parent: parent.to_string(),
            child: child.to_string(),
            call_count,
        })
        .collect::<Vec<_>>())
}

/// `[endTs - lookback, endTs]`, both in ms; `endTs` defaults to `now`.
fn dependency_window(
    params: &[(String, String)],
    now: UnixNanos,
) -> Result<(UnixNanos, UnixNanos), String> {
    let millis = |name: &str| -> Result<Option<u64>, String> {
        param(params, name)
            .map(|t| {
                t.parse::<u64>()
                    .map_err(|_| format!("parameter '{name}' must be milliseconds, got {t:?}"))
            })
            .transpose()
    };
    let end = match millis("endTs")? {
        Some(ms) => UnixNanos(ms.saturating_mul(1_000_000)),
        None => now,
    };
    let lookback = millis("lookback")?.unwrap_or(DEFAULT_DEPENDENCIES_LOOKBACK_MS);
    let start = UnixNanos(end.0.saturating_sub(lookback.saturating_mul(1_000_000)));
    Ok((start, end))
}

/// Span kinds as `/api/operations` names them; unspecified is `""`.
const KINDS: [&str; 5] = ["server", "client", "internal", "producer", "consumer"];

fn jaeger_kind(kind: SpanKind) -> &'static str {
    match kind {
        SpanKind::Unspecified => "",
        other => other.as_str(),
    }
}

/// Service → its (span name, span kind) pairs, from recent spans.
type Catalog = BTreeMap<String, BTreeSet<(String, &'static str)>>;

/// The catalog, or the answer to give instead: from the store's
/// operations of the last day when it keeps them (every block written by
/// this build does), else from the spans of the first window holding at
/// most [`MAX_SCAN_SPANS`]. It holds a CPU-pool slot while it reads: the
/// Jaeger UI asks for the services on every page.
async fn catalog(state: &AppState) -> Result<Catalog, Response> {
    let slot =
        state.cpu.slot().await.map_err(|e| {
            crate::api::jaeger_error(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
        })?;
    let now = UnixNanos::now();
    // First what the store keeps beside its spans (block metas and the
    // spans in memory): no span decoded.
    let day = UnixNanos(now.0.saturating_sub(CATALOG_WINDOWS[0].0));
    match state.store.operations(day).await {
        Ok(Some(operations)) => {
            return slot
                .run(move || {
                    let mut catalog = Catalog::new();
                    for op in operations {
                        catalog
                            .entry(op.service)
                            .or_default()
                            .insert((op.name, jaeger_kind(op.kind)));
                    }
                    catalog
                })
                .await
                .map_err(axum::response::IntoResponse::into_response);
        }
        Ok(None) => {}
        Err(e) => return Err(store_failure(e)),
    }
    let mut too_much = None;
    for window in CATALOG_WINDOWS {
        let start = UnixNanos(now.0.saturating_sub(window.0));
        match state
            .store
            .scan_spans(Some(start), None, MAX_SCAN_SPANS)
            .await
        {
            Ok(spans) => {
                return slot
                    .run(move || {
                        let mut catalog = Catalog::new();
                        for span in &spans {
                            catalog
                                .entry(span.service_name().to_string())
                                .or_default()
                                .insert((span.name.to_string(), jaeger_kind(span.kind)));
                        }
                        catalog
                    })
                    .await
                    .map_err(axum::response::IntoResponse::into_response);
            }
            Err(e @ StoreError::TooMuchData { .. }) => {
                tracing::info!(
                    window_ns = window.0,
                    "service catalog window too large, narrowing"
                );
                too_much = Some(e);
            }
            Err(e) => return Err(store_failure(e)),
        }
    }
    Err(store_failure(too_much.unwrap_or(StoreError::TooMuchData {
        limit: MAX_SCAN_SPANS,
    })))
}

/// What a `/api/traces` request asks for.
#[derive(Debug)]
enum TraceRequest {
    /// `traceID=` given: these traces, other parameters ignored (as Jaeger does).
    ByIds(Vec<TraceId>),
    Search(TraceSearch),
}

/// A checked `/api/traces` search.
#[derive(Debug)]
struct TraceSearch {
    service: String,
    operation: Option<String>,
    /// Every one must match a tag of the selected span, its process or its logs.
    tags: Vec<(String, String)>,
    min_duration: Option<DurationNanos>,
    max_duration: Option<DurationNanos>,
    /// Trace start, both ends set.
    range: TimeRange,
    limit: usize,
}

impl TraceSearch {
    /// Whether `span` passes the filters other than tags.
    fn selects(&self, span: &Span) -> bool {
        let d = span.duration();
        span.service_name() == self.service
            && self.operation.as_ref().is_none_or(|op| *op == span.name)
            && self.min_duration.is_none_or(|min| d >= min)
            && self.max_duration.is_none_or(|max| d <= max)
    }
}

fn parse_search(params: &[(String, String)], now: UnixNanos) -> Result<TraceRequest, String> {
    let ids = params
        .iter()
        .filter(|(k, v)| k == "traceID" && !v.is_empty())
        .map(|(_, v)| parse_trace_id(v).map_err(|e| format!("parameter 'traceID': {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    if !ids.is_empty() {
        // The same id asked for again is answered once: repeating one big
        // trace id must not multiply the answer.
        let mut seen = std::collections::HashSet::new();
        let ids: Vec<TraceId> = ids.into_iter().filter(|id| seen.insert(*id)).collect();
        if ids.len() > MAX_TRACE_IDS {
            return Err(format!(
                "parameter 'traceID': {} distinct trace ids, at most {MAX_TRACE_IDS} per request",
                ids.len()
            ));
        }
        return Ok(TraceRequest::ByIds(ids));
    }
    let service = param(params, "service")
        .ok_or_else(|| "parameter 'service' is required".to_string())?
        .to_string();
    let micros = |name: &str| -> Result<Option<UnixNanos>, String> {
        param(params, name)
            .map(|t| {
                t.parse::<u64>()
                    .map(|us| UnixNanos(us.saturating_mul(1_000)))
                    .map_err(|_| {
                        format!("parameter '{name}' must be microseconds since the Unix epoch, got {t:?}")
                    })
            })
            .transpose()
    };
    let duration = |name: &str| -> Result<Option<DurationNanos>, String> {
        param(params, name)
            .map(|t| t.parse().map_err(|e| format!("parameter '{name}': {e}")))
            .transpose()
    };
    let end = micros("end")?.unwrap_or(now);
    let start = match (micros("start")?, param(params, "lookback")) {
        (Some(start), _) => start,
        (None, Some(text)) if text != "custom" => {
            let d: DurationNanos = text
                .parse()
                .map_err(|e| format!("parameter 'lookback': {e}"))?;
            UnixNanos(end.0.saturating_sub(d.0))
        }
        (None, _) => UnixNanos(end.0.saturating_sub(DEFAULT_SEARCH_LOOKBACK.0)),
    };
    if start > end {
        return Err("parameter 'start' is after 'end'".to_string());
    }
    let (min_duration, max_duration) = (duration("minDuration")?, duration("maxDuration")?);
    if let (Some(min), Some(max)) = (min_duration, max_duration) {
        if max < min {
            return Err("'maxDuration' should be greater than 'minDuration'".to_string());
        }
    }
    let limit = match param(params, "limit") {
        None => DEFAULT_SEARCH_LIMIT,
        Some(t) => match t.parse::<usize>() {
            Ok(0) => DEFAULT_SEARCH_LIMIT,
            Ok(n) => n.min(MAX_SEARCH_LIMIT),
            Err(_) => {
                return Err(format!(
                    "parameter 'limit' must be a whole number, got {t:?}"
                ))
            }
        },
    };
    let mut tags = match param(params, "tags") {
        None => Vec::new(),
        Some(text) => parse_json_tags(text)?,
    };
    for (_, text) in params.iter().filter(|(k, v)| k == "tag" && !v.is_empty()) {
        let (key, value) = text
            .split_once(':')
            .ok_or_else(|| format!("malformed parameter 'tag': want key:value, got {text:?}"))?;
        tags.push((key.to_string(), value.to_string()));
    }
    Ok(TraceRequest::Search(TraceSearch {
        service,
        operation: param(params, "operation").map(str::to_string),
        tags,
        min_duration,
        max_duration,
        range: TimeRange {
            start: Some(start),
            end: Some(end),
        },
        limit,
    }))
}

/// Reads `tags`: a JSON object of strings (numbers and booleans are taken as
/// their text too, which Jaeger's stricter parser refuses).
fn parse_json_tags(text: &str) -> Result<Vec<(String, String)>, String> {
    let malformed = |why: String| {
        format!("malformed parameter 'tags': want a JSON object of strings such as {{\"error\":\"true\"}}: {why}")
    };
    chaintrace_model::check_json_depth(text.as_bytes(), chaintrace_model::MAX_JSON_DEPTH)
        .map_err(|e| malformed(e.to_string()))?;
    let object: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(text).map_err(|e| malformed(e.to_string()))?;
    object
        .into_iter()
        .map(|(key, value)| match value {
            serde_json::Value::String(s) => Ok((key, s)),
            serde_json::Value::Bool(_) | serde_json::Value::Number(_) => {
                Ok((key, value.to_string()))
            }
            other => Err(malformed(format!("the value of {key:?} is {other}"))),
        })
        .collect()
}

/// Whether the span, its process or one of its logs has tag `key` showing `want`.
fn has_tag(span: &JaegerSpan, process: Option<&JaegerProcess>, key: &str, want: &str) -> bool {
    let shows = |value: &serde_json::Value| match value {
        serde_json::Value::String(s) => s == want,
        serde_json::Value::Bool(b) => want.eq_ignore_ascii_case(if *b { "true" } else { "false" }),
        serde_json::Value::Number(n) => {
            n.to_string() == want || want.parse::<f64>().is_ok_and(|w| n.as_f64() == Some(w))
        }
        _ => false,
    };
    let process_tags = process.map(|p| p.tags.as_slice()).unwrap_or_default();
    span.tags
        .iter()
        .chain(process_tags)
        .chain(span.logs.iter().flat_map(|log| &log.fields))
        .any(|tag| tag.key == key && shows(&tag.value))
}

/// The first non-empty value of `name`: clients send empty values for unset fields.
fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, v)| k == name && !v.is_empty())
        .map(|(_, v)| v.as_str())
}

fn params_of(params: RawParams) -> Result<Vec<(String, String)>, String> {
    params
        .map(|Query(p)| p)
        .map_err(|e| format!("malformed query string: {e}"))
}

fn ok<T: Serialize>(data: Vec<T>) -> Response {
    let envelope = Envelope {
        total: data.len(),
        data: Some(data),
        limit: 0,
        offset: 0,
        errors: None,
    };
    crate::cpu::json_response(StatusCode::OK, &envelope)
}

/// Jaeger's error envelope (shared with `/api/traces/{id}`).
fn failure(status: StatusCode, msg: String) -> Response {
    crate::api::jaeger_error(status, msg)
}

fn bad_request(msg: String) -> Response {
    failure(StatusCode::BAD_REQUEST, msg)
}

fn store_failure(err: StoreError) -> Response {
    tracing::error!(error = %err, "Jaeger query failed");
    let status = if err.is_retryable() {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    };
    failure(status, err.to_string())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::body::Body;
    use axum::http::Request;
    use axum::Router;
    use chaintrace_analysis::PriceTable;
    use chaintrace_model::{KeyValue, Resource, Status};
    use chaintrace_store::{EmbeddedConfig, EmbeddedStore, Store};
    use http_body_util::BodyExt;
    use serde_json::{json, Value};
    use tower::ServiceExt;

    use super::*;

    const MS: u64 = 1_000_000;
    const MIN: u64 = 60_000 * MS;

    use tempfile::TempDir;

    /// The router over an embedded store; the store goes before its directory.
    struct Fixture {
        router: Router,
        now: UnixNanos,
        _dir: TempDir,
    }

    struct SpanSpec<'a> {
        trace: u8,
        id: u8,
        parent: Option<u8>,
        service: &'a str,
        name: &'a str,
        kind: SpanKind,
        start: u64,
        duration: u64,
        attrs: Vec<KeyValue>,
        error: bool,
    }

    fn span(s: SpanSpec) -> Span {
        let mut resource = vec![KeyValue::new("service.name", s.service)];
        if s.service == "indexer" {
            resource.push(KeyValue::new("deployment.environment", "prod"));
        }
        Span {
            trace_id: TraceId([s.trace; 16]),
            span_id: SpanId([s.id; 8]),
            parent_span_id: s.parent.map(|p| SpanId([p; 8])),
            name: s.name.into(),
            kind: s.kind,
            start: UnixNanos(s.start),
            end: UnixNanos(s.start + s.duration),
            status: Status {
                code: if s.error {
                    chaintrace_model::StatusCode::Error
                } else {
                    chaintrace_model::StatusCode::Unset
                },
                message: String::new(),
            },
            attributes: s.attrs,
            events: Vec::new(),
            links: Vec::new(),
            resource: Arc::new(Resource {
                attributes: resource,
            }),
            scope: Default::default(),
        }
    }

    /// Traces, oldest first:
    /// 4 (3 h ago): chat-api `POST /chat` 500ms → llm-gateway `llm.call` 100ms;
    /// 1 (10 min ago): chat-api `POST /chat` 2s → llm-gateway `llm.call` 1.5s,
    ///   ERROR, model claude-3-opus-20250219;
    /// 2 (9 min ago): chat-api `POST /chat` 400ms → chat-api `retrieve` 250ms,
    ///   → llm-gateway `llm.call` 300ms, model gpt-4o;
    /// 3 (8 min ago): indexer `index.batch` 100ms (producer, resource
    ///   deployment.environment=prod) → indexer `embed` (kind unspecified).
    async fn fixture(with_data: bool) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = EmbeddedStore::open(EmbeddedConfig::new(dir.path())).unwrap();
        let now = UnixNanos::now();
        let t1 = now.0 - 10 * MIN;
        let s = |trace, id, parent, service, name, kind, start, duration| SpanSpec {
            trace,
            id,
            parent,
            service,
            name,
            kind,
            start,
            duration,
            attrs: Vec::new(),
            error: false,
        };
        let model = |m: &str| vec![KeyValue::new("model", m)];
        let spans = vec![
            s(
                4,
                1,
                None,
                "chat-api",
                "POST /chat",
                SpanKind::Server,
                now.0 - 180 * MIN,
                500 * MS,
            ),
            s(
                4,
                2,
                Some(1),
                "llm-gateway",
                "llm.call",
                SpanKind::Client,
                now.0 - 180 * MIN + MS,
                100 * MS,
            ),
            s(
                1,
                1,
                None,
                "chat-api",
                "POST /chat",
                SpanKind::Server,
                t1,
                2_000 * MS,
            ),
            SpanSpec {
                attrs: model("claude-3-opus-20250219"),
                error: true,
                ..s(
                    1,
                    2,
                    Some(1),
                    "llm-gateway",
                    "llm.call",
                    SpanKind::Client,
                    t1 + MS,
                    1_500 * MS,
                )
            },
            s(
                2,
                1,
                None,
                "chat-api",
                "POST /chat",
                SpanKind::Server,
                t1 + MIN,
                400 * MS,
            ),
            s(
                2,
                2,
                Some(1),
                "chat-api",
                "retrieve",
                SpanKind::Internal,
                t1 + MIN + MS,
                250 * MS,
            ),
            SpanSpec {
                attrs: model("gpt-4o"),
                ..s(
                    2,
                    3,
                    Some(1),
                    "llm-gateway",
                    "llm.call",
                    SpanKind::Client,
                    t1 + MIN + 90 * MS,
                    300 * MS,
                )
            },
            s(
                3,
                1,
                None,
                "indexer",
                "index.batch",
                SpanKind::Producer,
                t1 + 2 * MIN,
                100 * MS,
            ),
            s(
                3,
                2,
                Some(1),
                "indexer",
                "embed",
                SpanKind::Unspecified,
                t1 + 2 * MIN + MS,
                50 * MS,
            ),
        ];
        if with_data {
            store
                .append(spans.into_iter().map(span).collect())
                .await
                .unwrap();
        }
        Fixture {
            router: crate::router(Arc::new(store), Arc::new(PriceTable::empty())),
            now,
            _dir: dir,
        }
    }

    impl Fixture {
        async fn get(&self, uri: &str) -> (StatusCode, Value) {
            let response = self
                .router
                .clone()
                .oneshot(Request::get(uri).body(Body::empty()).unwrap())
                .await
                .unwrap();
            let status = response.status();
            let bytes = response.into_body().collect().await.unwrap().to_bytes();
            (status, serde_json::from_slice(&bytes).unwrap())
        }

        /// First bytes of the trace ids a `/api/traces` query answers, in order.
        async fn trace_ids(&self, query: &str) -> Vec<u8> {
            let (status, body) = self.get(&format!("/api/traces?{query}")).await;
            assert_eq!(status, StatusCode::OK, "{query}: {body}");
            let data = body["data"].as_array().unwrap();
            assert_eq!(body["total"], data.len(), "{query}");
            data.iter()
                .map(|t| u8::from_str_radix(&t["traceID"].as_str().unwrap()[..2], 16).unwrap())
                .collect()
        }
    }

    fn encode(text: &str) -> String {
        crate::percent::percent_encode(text, b"")
    }

    fn envelope(data: Value) -> Value {
        let total = data.as_array().map_or(0, Vec::len);
        json!({ "data": data, "total": total, "limit": 0, "offset": 0, "errors": null })
    }

    fn bad(msg: &str) -> Value {
        json!({ "data": null, "total": 0, "limit": 0, "offset": 0,
                "errors": [{ "code": 400, "msg": msg }] })
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn services_and_operations_are_sorted_plain_lists() {
        let f = fixture(true).await;
        let (status, body) = f.get("/api/services").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            body,
            envelope(json!(["chat-api", "indexer", "llm-gateway"]))
        );
        let (_, body) = f.get("/api/services/chat-api/operations").await;
        assert_eq!(body, envelope(json!(["POST /chat", "retrieve"])));
        let (_, body) = f.get("/api/services/nobody/operations").await;
        assert_eq!(body, envelope(json!([])));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn operations_carry_span_kind_and_filter_by_it() {
        let f = fixture(true).await;
        let (_, body) = f.get("/api/operations?service=chat-api").await;
        assert_eq!(
            body,
            envelope(json!([
                { "name": "POST /chat", "spanKind": "server" },
                { "name": "retrieve", "spanKind": "internal" },
            ]))
        );
        let (_, body) = f
            .get("/api/operations?service=chat-api&spanKind=server")
            .await;
        assert_eq!(
            body,
            envelope(json!([{ "name": "POST /chat", "spanKind": "server" }]))
        );
        let (_, body) = f.get("/api/operations?service=indexer&spanKind=").await;
        assert_eq!(
            body,
            envelope(json!([
                { "name": "embed", "spanKind": "" },
                { "name": "index.batch", "spanKind": "producer" },
            ]))
        );
        let (_, body) = f
            .get("/api/operations?service=chat-api&spanKind=consumer")
            .await;
        assert_eq!(body, envelope(json!([])));
        let (status, body) = f.get("/api/operations").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body, bad("parameter 'service' is required"));
        let (status, body) = f.get("/api/operations?service=x&spanKind=sever").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(body["errors"][0]["msg"]
            .as_str()
            .unwrap()
            .contains("spanKind"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn traces_are_full_jaeger_traces_newest_first() {
        let f = fixture(true).await;
        let (status, body) = f.get("/api/traces?service=chat-api").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            (body["limit"].clone(), body["offset"].clone()),
            (json!(0), json!(0))
        );
        assert_eq!(body["errors"], Value::Null);
        assert_eq!(body["total"], 2);
        let newest = &body["data"][0];
        assert_eq!(newest["traceID"], TraceId([2; 16]).to_hex());
        assert_eq!(newest["warnings"], json!([]));
        let spans = newest["spans"].as_array().unwrap();
        assert_eq!(spans.len(), 3, "full trace, not a summary");
        assert_eq!(spans[0]["operationName"], "POST /chat");
        assert_eq!(spans[0]["references"], json!([]));
        assert_eq!(spans[0]["logs"], json!([]));
        assert_eq!(spans[0]["duration"], 400_000);
        assert_eq!(
            newest["processes"][spans[0]["processID"].as_str().unwrap()]["serviceName"],
            "chat-api"
        );
        // Any span of the service counts, not only the root; the old trace 4
        // is outside the default 1 h window.
        assert_eq!(f.trace_ids("service=llm-gateway").await, vec![2, 1]);
        assert_eq!(
            f.trace_ids("service=chat-api&operation=retrieve").await,
            vec![2]
        );
        assert_eq!(
            f.trace_ids("service=llm-gateway&operation=retrieve").await,
            Vec::<u8>::new()
        );
        assert_eq!(f.trace_ids("service=nobody").await, Vec::<u8>::new());
        assert_eq!(f.trace_ids("service=chat-api&limit=1").await, vec![2]);
        assert_eq!(f.trace_ids("service=chat-api&limit=0").await, vec![2, 1]);
        assert_eq!(
            f.trace_ids(&format!("traceID={}", TraceId([3; 16]).to_hex()))
                .await,
            vec![3]
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tags_match_on_the_same_span_as_service_and_operation() {
        let f = fixture(true).await;
        let tags = |json: &str| format!("tags={}", encode(json));
        let q = |rest: String| format!("service=llm-gateway&{rest}");
        assert_eq!(f.trace_ids(&q(tags(r#"{"error":"true"}"#))).await, vec![1]);
        // The failing span belongs to llm-gateway, not chat-api.
        let q2 = format!("service=chat-api&{}", tags(r#"{"error":"true"}"#));
        assert_eq!(f.trace_ids(&q2).await, Vec::<u8>::new());
        let opus = tags(r#"{"model":"claude-3-opus-20250219"}"#);
        assert_eq!(f.trace_ids(&q(opus.clone())).await, vec![1]);
        assert_eq!(
            f.trace_ids(&q(tags(r#"{"model":"gpt-4o","span.kind":"client"}"#)))
                .await,
            vec![2]
        );
        assert_eq!(
            f.trace_ids(&q(tags(r#"{"model":"gpt-4o","error":"true"}"#)))
                .await,
            Vec::<u8>::new()
        );
        assert_eq!(
            f.trace_ids(&q(tags(r#"{"otel.status_code":"ERROR"}"#)))
                .await,
            vec![1]
        );
        // Resource attributes (Jaeger process tags) and the older `tag=k:v` form.
        let env = format!(
            "service=indexer&{}",
            tags(r#"{"deployment.environment":"prod"}"#)
        );
        assert_eq!(f.trace_ids(&env).await, vec![3]);
        assert_eq!(
            f.trace_ids(&q(format!("tag={}", encode("model:gpt-4o"))))
                .await,
            vec![2]
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn durations_bound_the_matching_span() {
        let f = fixture(true).await;
        assert_eq!(
            f.trace_ids("service=llm-gateway&minDuration=1.2s").await,
            vec![1]
        );
        assert_eq!(
            f.trace_ids("service=llm-gateway&maxDuration=300ms").await,
            vec![2]
        );
        assert_eq!(
            f.trace_ids("service=chat-api&minDuration=300ms&maxDuration=1.2s")
                .await,
            vec![2]
        );
        assert_eq!(
            f.trace_ids("service=chat-api&minDuration=300ms&maxDuration=")
                .await,
            vec![2, 1]
        );
        assert_eq!(
            f.trace_ids("service=indexer&maxDuration=100us").await,
            Vec::<u8>::new()
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn time_window_from_microseconds_or_lookback() {
        let f = fixture(true).await;
        let us = |t: u64| t / 1_000;
        let (t1, now) = (f.now.0 - 10 * MIN, f.now.0);
        let q = format!(
            "service=chat-api&start={}&end={}",
            us(t1 + 30_000 * MS),
            us(now)
        );
        assert_eq!(f.trace_ids(&q).await, vec![2]);
        let q = format!(
            "service=chat-api&start={}&end={}",
            us(now - 240 * MIN),
            us(now - 120 * MIN)
        );
        assert_eq!(f.trace_ids(&q).await, vec![4]);
        assert_eq!(
            f.trace_ids("service=chat-api&lookback=6h").await,
            vec![2, 1, 4]
        );
        assert_eq!(
            f.trace_ids("service=chat-api&lookback=2d").await,
            vec![2, 1, 4]
        );
        assert_eq!(
            f.trace_ids("service=chat-api&lookback=custom").await,
            vec![2, 1]
        );
        // start/end win over lookback, as the Jaeger UI sends all three.
        let q = format!(
            "service=chat-api&lookback=1h&start={}&end={}",
            us(now - 240 * MIN),
            us(now)
        );
        assert_eq!(f.trace_ids(&q).await, vec![2, 1, 4]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn bad_search_parameters_answer_400_envelopes() {
        let f = fixture(true).await;
        let (status, body) = f.get("/api/traces").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body, bad("parameter 'service' is required"));
        let (status, body) = f.get("/api/traces?service=&operation=x").await;
        assert_eq!(
            (status, body),
            (
                StatusCode::BAD_REQUEST,
                bad("parameter 'service' is required")
            )
        );
        for (query, names) in [
            (format!("tags={}", encode("{error=true}")), "'tags'"),
            (format!("tags={}", encode(r#"{"a":{"b":"c"}}"#)), "'tags'"),
            ("tag=novalue".to_string(), "'tag'"),
            ("minDuration=fast".to_string(), "'minDuration'"),
            ("maxDuration=10".to_string(), "'maxDuration'"),
            ("minDuration=2s&maxDuration=1s".to_string(), "'maxDuration'"),
            ("start=yesterday".to_string(), "'start'"),
            ("end=-5".to_string(), "'end'"),
            ("start=2000&end=1000".to_string(), "'start'"),
            ("lookback=forever".to_string(), "'lookback'"),
            ("limit=ten".to_string(), "'limit'"),
        ] {
            let (status, body) = f
                .get(&format!("/api/traces?service=chat-api&{query}"))
                .await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{query}");
            assert_eq!(body["data"], Value::Null, "{query}");
            assert_eq!(body["errors"][0]["code"], 400, "{query}");
            let msg = body["errors"][0]["msg"].as_str().unwrap();
            assert!(msg.contains(names), "{query}: {msg}");
        }
        let (status, body) = f.get("/api/traces?traceID=xyz").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(body["errors"][0]["msg"]
            .as_str()
            .unwrap()
            .contains("traceID"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn dependencies_count_calls_across_services_in_ms_windows() {
        let f = fixture(true).await;
        let (status, body) = f.get("/api/dependencies").await;
        assert_eq!(status, StatusCode::OK);
        // Default 24 h: traces 1, 2 and 4 each call llm-gateway once; the
        // chat-api → chat-api and indexer → indexer pairs are not edges.
        assert_eq!(
            body,
            envelope(json!([{ "parent": "chat-api", "child": "llm-gateway", "callCount": 3 }]))
        );
        let now_ms = f.now.0 / MS;
        let (_, body) = f
            .get(&format!(
                "/api/dependencies?endTs={now_ms}&lookback=3600000"
            ))
            .await;
        assert_eq!(body["data"][0]["callCount"], 2);
        let end = now_ms - 120 * 60_000;
        let (_, body) = f
            .get(&format!("/api/dependencies?endTs={end}&lookback=7200000"))
            .await;
        assert_eq!(body["data"][0]["callCount"], 1);
        let (_, body) = f
            .get(&format!("/api/dependencies?endTs={now_ms}&lookback=1000"))
            .await;
        assert_eq!(body, envelope(json!([])));
        let (status, body) = f.get("/api/dependencies?endTs=now").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(body["errors"][0]["msg"]
            .as_str()
            .unwrap()
            .contains("'endTs'"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_empty_store_answers_empty_arrays() {
        let f = fixture(false).await;
        for uri in [
            "/api/services",
            "/api/services/chat-api/operations",
            "/api/operations?service=chat-api",
            "/api/traces?service=chat-api",
            "/api/dependencies",
        ] {
            let (status, body) = f.get(uri).await;
            assert_eq!(
                (status, body),
                (StatusCode::OK, envelope(json!([]))),
                "{uri}"
            );
        }
    }
}
