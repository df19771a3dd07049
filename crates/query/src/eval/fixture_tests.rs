//! Evaluator tests on the captured Python RAG-chain fixture (two traces, the
//! second failing with RateLimitError in `api_call`).
//!
//! This crate may not depend on `chaintrace-ingest`, so a minimal OTLP/JSON
//! reader (only the fields queries use) turns the fixture into model spans.

use std::collections::BTreeMap;
use std::sync::Arc;

use chaintrace_model::{
    AnyValue, Event, KeyValue, Resource, Scope, Span, SpanId, SpanKind, Status, StatusCode, Trace,
    TraceId, UnixNanos,
};
use serde_json::Value;

use crate::{evaluate, parse};

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
        return AnyValue::String(s.into());
    }
    if let Some(i) = v.get("intValue") {
        // Python sends 64-bit ints as strings, Node.js as numbers.
        return AnyValue::Int(match i {
            Value::String(s) => s.parse().expect("intValue"),
            i => i.as_i64().expect("intValue"),
        });
    }
    if let Some(x) = v.get("doubleValue").and_then(Value::as_f64) {
        return AnyValue::Double(x);
    }
    if let Some(b) = v.get("boolValue").and_then(Value::as_bool) {
        return AnyValue::Bool(b);
    }
    AnyValue::Empty
}

fn attributes(v: &Value) -> Vec<KeyValue> {
    v.get("attributes")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .map(|kv| KeyValue {
                    key: kv["key"].as_str().expect("key").into(),
                    value: any_value(&kv["value"]),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The fixture's traces, in order of first appearance of their trace id.
fn fixture_traces() -> Vec<Trace> {
    let text = std::fs::read_to_string(FIXTURE).expect("fixture is readable");
    let json: Value = serde_json::from_str(&text).expect("fixture is JSON");
    let mut by_trace: BTreeMap<usize, (TraceId, Vec<Span>)> = BTreeMap::new();
    let mut order: Vec<TraceId> = Vec::new();
    for rs in json["resourceSpans"].as_array().expect("resourceSpans") {
        let resource = Arc::new(Resource {
            attributes: attributes(&rs["resource"]),
        });
        for ss in rs["scopeSpans"].as_array().expect("scopeSpans") {
            let scope = Scope {
                name: ss["scope"]["name"].as_str().unwrap_or_default().into(),
                version: Default::default(),
            };
            for s in ss["spans"].as_array().expect("spans") {
                let trace_id: TraceId = s["traceId"].as_str().unwrap().parse().unwrap();
                let status = &s["status"];
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
                        code: StatusCode::from_otlp(status["code"].as_i64().unwrap_or(0) as i32),
                        message: status["message"].as_str().unwrap_or_default().to_string(),
                    },
                    attributes: attributes(s),
                    events: s
                        .get("events")
                        .and_then(Value::as_array)
                        .map(|events| {
                            events
                                .iter()
                                .map(|e| Event {
                                    time: UnixNanos(nanos(&e["timeUnixNano"])),
                                    name: e["name"].as_str().unwrap().to_string(),
                                    attributes: attributes(e),
                                })
                                .collect()
                        })
                        .unwrap_or_default(),
                    links: Vec::new(),
                    resource: resource.clone(),
                    scope: Arc::new(scope.clone()),
                };
                let slot = order
                    .iter()
                    .position(|t| *t == trace_id)
                    .unwrap_or_else(|| {
                        order.push(trace_id);
                        order.len() - 1
                    });
                by_trace
                    .entry(slot)
                    .or_insert((trace_id, Vec::new()))
                    .1
                    .push(span);
            }
        }
    }
    by_trace
        .into_values()
        .map(|(id, spans)| Trace::new(id, spans))
        .collect()
}

/// For each fixture trace: the names of the spans the query matched.
fn run(query: &str, traces: &[Trace]) -> Vec<Vec<String>> {
    let q = parse(query).unwrap_or_else(|e| panic!("{query}: {e}"));
    traces
        .iter()
        .map(|t| {
            evaluate(&q, t)
                .map(|m| {
                    m.matched
                        .iter()
                        .map(|s| t.spans[s.span_index].name.to_string())
                        .collect()
                })
                .unwrap_or_default()
        })
        .collect()
}

#[test]
fn fixture_holds_one_healthy_and_one_failing_trace() {
    let traces = fixture_traces();
    assert_eq!(traces.len(), 2);
    assert!(traces.iter().all(|t| t.spans.len() == 7));
    assert_eq!(traces[0].summary().error_count, 0);
    assert_eq!(traces[1].summary().error_count, 3);
}

/// The queries the README publishes, and which span each selects in the
/// failing trace (none in the healthy one).
const RATE_LIMIT_QUERIES: &[(&str, &[&str])] = &[
    (
        r#"{ name = "llm_call" && status = error } > { .error_type = "RateLimitError" }"#,
        &["api_call"],
    ),
    (
        r#"{ name = "llm_call" && status = error } >> { span.error_type = "RateLimitError" || span.error.type = "RateLimitError" || span.exception.type = "RateLimitError" }"#,
        &["api_call"],
    ),
    (
        r#"{ span.error_type = "RateLimitError" || span.error.type = "RateLimitError" || span.exception.type = "RateLimitError" } << { name = "llm_call" }"#,
        &["llm_call"],
    ),
    (
        r#"{ name = "llm_call" && status = error && span.exception.type = "RateLimitError" }"#,
        &["llm_call"],
    ),
    (
        r#"{ status = error && span.error_type = "RateLimitError" }"#,
        &["api_call"],
    ),
    (
        r#"{ span.exception.type = "RateLimitError" }"#,
        &["api_call", "llm_call", "process_query"],
    ),
    (
        r#"{ span.exception.type = "__main__.RateLimitError" && span.exception.message =~ "rate limit.*" }"#,
        &["api_call", "llm_call", "process_query"],
    ),
    (
        r#"{ rootServiceName = "rag-chain" && statusMessage =~ "RateLimitError:.*" } | count() = 3"#,
        &["api_call", "llm_call", "process_query"],
    ),
];

#[test]
fn rate_limit_queries_select_exactly_the_failing_trace() {
    let traces = fixture_traces();
    for (query, expected) in RATE_LIMIT_QUERIES {
        let got = run(query, &traces);
        assert!(
            got[0].is_empty(),
            "{query} matched the healthy trace: {:?}",
            got[0]
        );
        let mut failing = got[1].clone();
        failing.sort();
        let mut want: Vec<String> = expected.iter().map(|s| s.to_string()).collect();
        want.sort();
        assert_eq!(failing, want, "{query}");
    }
}

#[test]
fn error_type_on_the_llm_call_itself_does_not_match_the_fixture() {
    // The fixture puts error_type on api_call, not on llm_call.
    let traces = fixture_traces();
    let got = run(
        r#"{ name = "llm_call" && status = error && span.error_type = "RateLimitError" }"#,
        &traces,
    );
    assert!(got.iter().all(Vec::is_empty));
}

#[test]
fn fixture_structure_and_attributes() {
    let traces = fixture_traces();
    let both = |q: &str| run(q, &traces);
    assert_eq!(
        both(r#"{ rootName = "process_query" } | count() = 7"#)
            .iter()
            .map(Vec::len)
            .collect::<Vec<_>>(),
        vec![7, 7]
    );
    assert_eq!(
        both(r#"{ name = "process_query" } > {}"#)[0].len(),
        4,
        "fetch_context, embed_query, vector_search, llm_call"
    );
    assert_eq!(
        both(r#"{ name = "vector_search" } ~ { span.model =~ "claude.*" }"#)[0],
        vec!["llm_call".to_string()]
    );
    assert_eq!(
        both(r#"{ span.database = "pinecone" && span.results_found = 5 }"#)[1],
        vec!["vector_search".to_string()]
    );
    assert_eq!(
        both(
            r#"{ resource.service.name = "rag-chain" && name = "api_call" && span.input_tokens > 10 }"#
        ),
        vec![vec!["api_call".to_string()], vec![]],
        "the failing api_call has no token counts"
    );
    assert_eq!(
        both("{ traceDuration > 40ms && duration > 40ms }")[0],
        vec!["process_query".to_string()]
    );
    assert!(both("{ kind = internal } | count() = 7")
        .iter()
        .all(|m| m.len() == 7));
    let q = parse(
        r#"{ name = "api_call" } | select(span.error_type, span.exception.type, span.stop_reason)"#,
    )
    .unwrap();
    let failing = evaluate(&q, &traces[1]).unwrap();
    assert_eq!(
        failing.matched[0].selected,
        vec![
            (
                "span.error_type".to_string(),
                AnyValue::from("RateLimitError")
            ),
            (
                "span.exception.type".to_string(),
                AnyValue::from("__main__.RateLimitError")
            ),
        ]
    );
    let healthy = evaluate(&q, &traces[0]).unwrap();
    assert_eq!(
        healthy.matched[0].selected,
        vec![("span.stop_reason".to_string(), AnyValue::from("end_turn"))]
    );
}

#[test]
fn hints_admit_the_fixture() {
    let traces = fixture_traces();
    for (query, _) in RATE_LIMIT_QUERIES {
        let hints = parse(query).unwrap().trace_hints();
        let t = &traces[1];
        assert!(
            hints.admits(
                |n| t.spans.iter().any(|s| s.name == n),
                |svc| t.spans.iter().any(|s| s.service_name() == svc)
            ),
            "{query}"
        );
    }
    let hints = parse(r#"{ name = "llm_call" } >> { name = "rerank" }"#)
        .unwrap()
        .trace_hints();
    assert!(!hints.admits(|n| traces[1].spans.iter().any(|s| s.name == n), |_| true));
}
