//! `GET /api/v1/traces/{id}/gantt`: the analysis crate's Gantt layout,
//! critical path, sibling groups and LLM calls of one trace as a compact,
//! columnar JSON document, the shape the web UI draws from.
//!
//! A 100 000-span trace is 100 000 rows: one object per row with long keys
//! would be most of the answer, so each field is one array (`rows.depth[i]`
//! is row `i`'s depth), and names, services, error types and models are
//! indices into one `strings` table. Sparse facts (errors, LLM calls, groups)
//! are lists of their own that name their row. Nothing here is computed
//! anew: layout and marks come from `chaintrace_analysis`, so the terminal and
//! the web never disagree.

use std::collections::HashMap;
use std::time::Instant;

use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chaintrace_analysis::{
    error_type, gantt, parent_rows, sibling_groups, GroupKind, LlmTotals, PriceTable,
};
use chaintrace_model::Trace;
use serde::Serialize;

use crate::api::{error, parse_trace_id, store_error, AppState};
use crate::cpu::json_response_sized;

/// Interns strings into one table; rows refer to them by index.
#[derive(Default)]
struct Strings {
    index: HashMap<String, u32>,
    table: Vec<String>,
}

impl Strings {
    fn id(&mut self, s: &str) -> u32 {
        if let Some(&i) = self.index.get(s) {
            return i;
        }
        let i = self.table.len() as u32;
        self.table.push(s.to_string());
        self.index.insert(s.to_string(), i);
        i
    }
}

/// The header of the trace page.
#[derive(Debug, Serialize)]
struct Header {
    root: Option<String>,
    root_service: Option<String>,
    services: Vec<String>,
    start_unix_nano: u64,
    duration_nano: u64,
    spans: usize,
    errors: usize,
    llm_calls: u64,
    input_tokens: u64,
    output_tokens: u64,
    total_tokens: u64,
    cost_usd: f64,
    unpriced_calls: u64,
    critical_path_nano: u64,
    critical_path_spans: usize,
    clock_skew_adjusted: bool,
}

/// Per-row columns; every array has one entry per row.
#[derive(Debug, Default, Serialize)]
struct Rows {
    /// Index of the row's span in the native trace's `spans`.
    span: Vec<usize>,
    /// Parent row, `-1` for roots.
    parent: Vec<i64>,
    depth: Vec<usize>,
    /// Nanoseconds from the trace start.
    offset: Vec<u64>,
    dur: Vec<u64>,
    #[serde(rename = "self")]
    self_: Vec<u64>,
    /// 1 when on the critical-path chain.
    crit: Vec<u8>,
    /// Time the span contributes to the walk-back critical path.
    crit_nano: Vec<u64>,
    /// 1 when the status is ERROR.
    err: Vec<u8>,
    /// 1 when the parent is missing from the trace.
    orphan: Vec<u8>,
    name: Vec<u32>,
    svc: Vec<u32>,
}

/// One failed row's error type.
#[derive(Debug, Serialize)]
struct RowError {
    row: usize,
    /// `strings` index of the short type (`RateLimitError`).
    #[serde(rename = "type")]
    type_: u32,
    full: String,
    message: String,
}

/// The LLM rows, columnar like [`Rows`]: entry `i` of every array is call
/// `i`. As one object per call with long keys they were three quarters of
/// a 100 000-span answer (12 of 16.5 MB for 50 000 calls).
#[derive(Debug, Default, Serialize)]
struct LlmColumns {
    row: Vec<usize>,
    /// `strings` index of the model, `-1` when unknown.
    model: Vec<i64>,
    /// 1 when the model was read from an ancestor.
    model_inherited: Vec<u8>,
    /// `strings` index of the provider, `-1` when unknown.
    provider: Vec<i64>,
    input: Vec<Option<u64>>,
    output: Vec<Option<u64>>,
    cache_read: Vec<Option<u64>>,
    cache_write: Vec<Option<u64>>,
    reasoning: Vec<Option<u64>>,
    total: Vec<Option<u64>>,
    cost_usd: Vec<Option<f64>>,
    /// `strings` index of the price entry used, `-1` when unpriced.
    priced_as: Vec<i64>,
    /// 1 when the call counts in the totals (not nested in another call).
    counted: Vec<u8>,
}

/// One sibling group.
#[derive(Debug, Serialize)]
struct Group {
    kind: GroupKind,
    rows: Vec<usize>,
    failed: usize,
    lost_nano: u64,
}

/// The whole answer.
#[derive(Debug, Serialize)]
struct GanttDoc {
    trace_id: String,
    header: Header,
    total_nano: u64,
    strings: Vec<String>,
    rows: Rows,
    errors: Vec<RowError>,
    llm: LlmColumns,
    groups: Vec<Group>,
}

fn gantt_doc(trace: &Trace, prices: &PriceTable) -> GanttDoc {
    // One span tree for layout, critical path and LLM calls.
    let gantt::Chart {
        layout,
        path,
        calls,
    } = gantt::chart(trace, prices);
    let totals = LlmTotals::of(&calls);
    let summary = trace.summary();
    let mut strings = Strings::default();
    let mut rows = Rows::default();
    let mut row_of_span = vec![0usize; trace.spans.len()];
    let mut errors = Vec::new();
    for (r, (row, parent)) in layout
        .rows
        .iter()
        .zip(parent_rows(&layout.rows))
        .enumerate()
    {
        row_of_span[row.span_index] = r;
        rows.span.push(row.span_index);
        rows.parent.push(parent.map_or(-1, |p| p as i64));
        rows.depth.push(row.depth);
        rows.offset.push(row.offset_nano);
        rows.dur.push(row.duration_nano);
        rows.self_.push(row.self_nano);
        rows.crit.push(u8::from(row.on_critical_path));
        rows.crit_nano.push(row.critical_nano);
        rows.err.push(u8::from(row.is_error));
        rows.orphan.push(u8::from(row.orphan));
        rows.name.push(strings.id(&row.name));
        rows.svc.push(strings.id(&row.service));
        if let Some(t) = trace.spans.get(row.span_index).and_then(error_type) {
            errors.push(RowError {
                row: r,
                type_: strings.id(&t.short),
                full: t.full,
                message: trace.spans[row.span_index].status.message.clone(),
            });
        }
    }
    let mut llm = LlmColumns::default();
    let mut optional = |s: Option<&str>| s.map_or(-1, |s| i64::from(strings.id(s)));
    for c in &calls {
        llm.row
            .push(row_of_span.get(c.span_index).copied().unwrap_or(0));
        llm.model.push(optional(c.model.as_deref()));
        llm.model_inherited.push(u8::from(c.model_inherited));
        llm.provider.push(optional(c.provider.as_deref()));
        llm.input.push(c.tokens.input_tokens);
        llm.output.push(c.tokens.output_tokens);
        llm.cache_read.push(c.tokens.cache_read_tokens);
        llm.cache_write.push(c.tokens.cache_creation_tokens);
        llm.reasoning.push(c.tokens.reasoning_tokens);
        llm.total.push(c.tokens.total_tokens);
        llm.cost_usd.push(c.cost.as_ref().map(|c| c.total_usd));
        llm.priced_as
            .push(optional(c.cost.as_ref().map(|c| c.priced_as.as_str())));
        llm.counted.push(u8::from(c.counted));
    }
    let groups = sibling_groups(&layout)
        .into_iter()
        .map(|g| Group {
            kind: g.kind,
            rows: g.rows,
            failed: g.failed,
            lost_nano: g.lost_nano,
        })
        .collect();
    let mut services: Vec<String> = layout.rows.iter().map(|r| r.service.clone()).collect();
    services.sort();
    services.dedup();
    GanttDoc {
        trace_id: trace.trace_id.to_hex(),
        header: Header {
            root: summary.root_name,
            root_service: summary.root_service,
            services,
            start_unix_nano: layout.start.0,
            duration_nano: layout.total_nano,
            spans: trace.spans.len(),
            errors: summary.error_count as usize,
            llm_calls: totals.calls,
            input_tokens: totals.input_tokens,
            output_tokens: totals.output_tokens,
            total_tokens: totals.total_tokens,
            cost_usd: totals.cost_usd,
            unpriced_calls: totals.unpriced_calls,
            critical_path_nano: path.total_nano,
            critical_path_spans: path.chain.len(),
            clock_skew_adjusted: path.clock_skew_adjusted,
        },
        total_nano: layout.total_nano,
        strings: strings.table,
        rows,
        errors,
        llm,
        groups,
    }
}

/// `GET /api/v1/traces/{id}/gantt`
pub async fn trace_gantt(State(state): State<AppState>, Path(trace_id): Path<String>) -> Response {
    let id = match parse_trace_id(&trace_id) {
        Ok(id) => id,
        Err(msg) => return error(StatusCode::BAD_REQUEST, msg),
    };
    let slot = match state.cpu.slot().await {
        Ok(slot) => slot,
        Err(e) => return e.into_response(),
    };
    let asked = Instant::now();
    match state.store.trace(id).await {
        Ok(Some(trace)) => {
            let read = asked.elapsed();
            let prices = state.prices.clone();
            slot.respond(move || {
                let started = Instant::now();
                let doc = gantt_doc(&trace, &prices);
                let analysed = started.elapsed();
                // About 85 bytes of JSON per row.
                let mut response =
                    json_response_sized(StatusCode::OK, &doc, trace.spans.len() * 90);
                let written = started.elapsed() - analysed;
                drop(doc);
                drop(trace);
                // Where the time went, for the browser's developer tools
                // and scripts/bench-ui (compression comes after this).
                let timing = format!(
                    "store;dur={:.1}, analysis;dur={:.1}, json;dur={:.1}",
                    read.as_secs_f64() * 1e3,
                    analysed.as_secs_f64() * 1e3,
                    written.as_secs_f64() * 1e3
                );
                if let Ok(value) = HeaderValue::from_str(&timing) {
                    response.headers_mut().insert("server-timing", value);
                }
                response
            })
            .await
        }
        Ok(None) => error(StatusCode::NOT_FOUND, format!("trace {id} not found")),
        Err(e) => store_error(e),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use chaintrace_model::{
        KeyValue, Resource, Span, SpanId, SpanKind, Status, StatusCode as Code, TraceId, UnixNanos,
    };

    use super::*;

    fn span(id: u8, parent: Option<u8>, name: &str, start_ms: u64, end_ms: u64) -> Span {
        Span {
            trace_id: TraceId([1; 16]),
            span_id: SpanId([id; 8]),
            parent_span_id: parent.map(|p| SpanId([p; 8])),
            name: name.into(),
            kind: SpanKind::Internal,
            start: UnixNanos(1_000_000_000_000 + start_ms * 1_000_000),
            end: UnixNanos(1_000_000_000_000 + end_ms * 1_000_000),
            status: Status::default(),
            attributes: vec![],
            events: vec![],
            links: vec![],
            resource: Arc::new(Resource {
                attributes: vec![KeyValue::new("service.name", "rag-chain")],
            }),
            scope: Default::default(),
        }
    }

    #[test]
    fn columns_line_up_and_facts_name_their_rows() {
        let mut failing = span(3, Some(2), "api_call", 10, 110);
        failing.status.code = Code::Error;
        failing
            .attributes
            .push(KeyValue::new("error.type", "openai.RateLimitError"));
        let mut llm = span(2, Some(1), "llm_call", 5, 900);
        llm.attributes = vec![
            KeyValue::new("gen_ai.request.model", "gpt-4o-mini"),
            KeyValue::new("gen_ai.usage.input_tokens", 1000i64),
            KeyValue::new("gen_ai.usage.output_tokens", 100i64),
        ];
        let trace = Trace::new(
            TraceId([1; 16]),
            vec![
                span(1, None, "process_query", 0, 1000),
                llm,
                failing,
                span(4, Some(2), "api_call", 124, 900),
            ],
        );
        let doc = gantt_doc(&trace, &PriceTable::builtin());
        let json = serde_json::to_value(&doc).unwrap();
        let rows = &json["rows"];
        for col in [
            "span", "parent", "depth", "offset", "dur", "self", "crit", "err", "name",
        ] {
            assert_eq!(rows[col].as_array().unwrap().len(), 4, "{col}");
        }
        assert_eq!(rows["parent"], serde_json::json!([-1, 0, 1, 1]));
        let strings = json["strings"].as_array().unwrap();
        let name_of = |row: usize| strings[rows["name"][row].as_u64().unwrap() as usize].clone();
        assert_eq!(name_of(2), "api_call");
        assert_eq!(json["errors"][0]["row"], 2);
        assert_eq!(
            strings[json["errors"][0]["type"].as_u64().unwrap() as usize],
            "RateLimitError"
        );
        assert_eq!(json["groups"][0]["kind"], "retry");
        assert_eq!(json["groups"][0]["lost_nano"], 114_000_000u64);
        assert_eq!(json["header"]["llm_calls"], 1);
        assert_eq!(json["header"]["errors"], 1);
        let llm = &json["llm"];
        assert_eq!(llm["row"], serde_json::json!([1]));
        assert!(llm["cost_usd"][0].as_f64().unwrap() > 0.0);
        assert_eq!(llm["input"][0], 1000);
        assert_eq!(llm["cache_read"][0], serde_json::Value::Null);
        let string = |col: &str| strings[llm[col][0].as_u64().unwrap() as usize].clone();
        assert_eq!(string("model"), "gpt-4o-mini");
        assert_eq!(string("priced_as"), "gpt-4o-mini");
        assert_eq!(llm["counted"][0], 1);
    }
}
