//! Tests on the captured Python RAG-chain fixture (two runs of the chain, the
//! second failing with `RateLimitError` in `api_call`).
//!
//! This crate may not depend on `chaintrace-ingest`, so a minimal OTLP/JSON
//! reader (only the fields analysis uses) turns the fixture into model spans.

use std::collections::BTreeMap;
use std::sync::Arc;

use chaintrace_model::{
    AnyValue, Event, KeyValue, Resource, Span, SpanId, SpanKind, Status, StatusCode, Trace,
    TraceId, UnixNanos,
};
use serde_json::Value;

use crate::{analyze, error_groups, gantt, ErrorTypeSource, PriceTable};

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../testdata/otlp-traces-python-rag-chain.json"
);

fn nanos(v: &Value) -> u64 {
    match v {
        Value::String(s) => s.parse().expect("decimal timestamp"),
        v => v.as_u64().expect("numeric timestamp"),
    }
}

fn any_value(v: &Value) -> AnyValue {
    if let Some(s) = v.get("stringValue").and_then(Value::as_str) {
        return s.into();
    }
    if let Some(i) = v.get("intValue") {
        return AnyValue::Int(match i {
            Value::String(s) => s.parse().expect("intValue"),
            i => i.as_i64().expect("intValue"),
        });
    }
    if let Some(x) = v.get("doubleValue").and_then(Value::as_f64) {
        return x.into();
    }
    if let Some(b) = v.get("boolValue").and_then(Value::as_bool) {
        return b.into();
    }
    AnyValue::Empty
}

fn attributes(v: &Value) -> Vec<KeyValue> {
    v.get("attributes")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .map(|kv| KeyValue::new(kv["key"].as_str().expect("key"), any_value(&kv["value"])))
                .collect()
        })
        .unwrap_or_default()
}

/// The fixture's traces, in order of their roots' start.
fn fixture_traces() -> Vec<Trace> {
    let text = std::fs::read_to_string(FIXTURE).expect("fixture is readable");
    let json: Value = serde_json::from_str(&text).expect("fixture is JSON");
    let mut by_trace: BTreeMap<TraceId, Vec<Span>> = BTreeMap::new();
    for rs in json["resourceSpans"].as_array().expect("resourceSpans") {
        let resource = Arc::new(Resource {
            attributes: attributes(&rs["resource"]),
        });
        for ss in rs["scopeSpans"].as_array().expect("scopeSpans") {
            for s in ss["spans"].as_array().expect("spans") {
                let trace_id: TraceId = s["traceId"].as_str().unwrap().parse().unwrap();
                let span = Span {
                    trace_id,
                    span_id: s["spanId"].as_str().unwrap().parse().unwrap(),
                    parent_span_id: s
                        .get("parentSpanId")
                        .and_then(Value::as_str)
                        .filter(|p| !p.is_empty())
                        .map(|p| p.parse::<SpanId>().unwrap()),
                    name: s["name"].as_str().unwrap().into(),
                    kind: SpanKind::from_otlp(s["kind"].as_i64().unwrap_or(0) as i32),
                    start: UnixNanos(nanos(&s["startTimeUnixNano"])),
                    end: UnixNanos(nanos(&s["endTimeUnixNano"])),
                    status: Status {
                        code: StatusCode::from_otlp(
                            s["status"]["code"].as_i64().unwrap_or(0) as i32
                        ),
                        message: s["status"]["message"].as_str().unwrap_or("").to_string(),
                    },
                    attributes: attributes(s),
                    events: s
                        .get("events")
                        .and_then(Value::as_array)
                        .map(|evs| {
                            evs.iter()
                                .map(|e| Event {
                                    time: UnixNanos(nanos(&e["timeUnixNano"])),
                                    name: e["name"].as_str().unwrap_or("").to_string(),
                                    attributes: attributes(e),
                                })
                                .collect()
                        })
                        .unwrap_or_default(),
                    links: vec![],
                    resource: resource.clone(),
                    scope: Default::default(),
                };
                by_trace.entry(trace_id).or_default().push(span);
            }
        }
    }
    let mut traces: Vec<Trace> = by_trace
        .into_iter()
        .map(|(id, spans)| Trace::new(id, spans))
        .collect();
    traces.sort_by_key(|t| t.root().map(|r| r.start));
    traces
}

#[test]
fn fixture_critical_path_and_cost() {
    let traces = fixture_traces();
    assert_eq!(traces.len(), 2);
    for t in &traces {
        let a = analyze(
            t,
            &PriceTable::builtin(),
            Some(&["fetch_context", "embed_query"]),
        )
        .unwrap();
        let chain: Vec<_> = a.critical_path.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(chain, ["process_query", "llm_call", "api_call"]);
        let sum: u64 = a.critical_segments.iter().map(|s| s.duration_nano).sum();
        assert_eq!(sum, a.duration_nano);
        assert!(a.fully_parallel_bound_nano < a.duration_nano);
        let w = a.what_if.unwrap();
        assert!(w.saved_nano > 0 && w.saved_nano < a.duration_nano);
    }
    let ok = analyze(&traces[0], &PriceTable::builtin(), None).unwrap();
    let api = ok.llm.iter().find(|s| s.name == "api_call").unwrap();
    assert_eq!(api.model.as_deref(), Some("claude-3-opus-20250219"));
    assert!(api.model_inherited);
    assert_eq!(
        (api.tokens.input_tokens, api.tokens.output_tokens),
        (Some(19), Some(128))
    );
    // claude-3-opus: 19×$15 + 128×$75 per million = $0.009885
    let cost = api.cost.as_ref().unwrap().total_usd;
    assert!((cost - 0.009885).abs() < 1e-12, "{cost}");
}

#[test]
fn fixture_error_groups() {
    let groups = error_groups(&fixture_traces());
    let summary: Vec<_> = groups
        .iter()
        .map(|g| {
            (
                g.operation.as_str(),
                g.error_type.as_str(),
                g.count,
                g.source,
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (
                "api_call",
                "RateLimitError",
                1,
                ErrorTypeSource::PlainErrorType
            ),
            (
                "llm_call",
                "RateLimitError",
                1,
                ErrorTypeSource::ExceptionEvent
            ),
            (
                "process_query",
                "RateLimitError",
                1,
                ErrorTypeSource::ExceptionEvent
            ),
        ]
    );
    assert_eq!(groups[1].type_spellings, ["__main__.RateLimitError"]);
}

#[test]
fn fixture_gantt_snapshot() {
    for (i, t) in fixture_traces().iter().enumerate() {
        insta::assert_json_snapshot!(format!("gantt_fixture_run{}", i + 1), gantt::layout(t));
    }
}
