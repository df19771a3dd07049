//! Tests of the OTLP → model decoding, against the captured Python SDK runs.

use std::collections::{BTreeMap, HashMap};

use opentelemetry_proto::tonic::common::v1::{any_value, ArrayValue, KeyValueList};
use prost::Message;

use super::*;
use crate::otlp::{decode_json, decode_protobuf};
use crate::testing::{fixture, JSON_FIXTURE, PB_FIXTURE};

fn fixture_request() -> ExportTraceServiceRequest {
    ExportTraceServiceRequest::decode(fixture(PB_FIXTURE).as_slice()).unwrap()
}

fn decoded_pb() -> DecodedSpans {
    decode_protobuf(&fixture(PB_FIXTURE)).unwrap()
}

fn decoded_json() -> DecodedSpans {
    decode_json(&fixture(JSON_FIXTURE)).unwrap()
}

/// Each span's path of names from its root, e.g. `process_query/llm_call/api_call`.
fn path(span: &Span, spans: &[Span]) -> String {
    let by_id: HashMap<_, _> = spans.iter().map(|s| ((s.trace_id, s.span_id), s)).collect();
    let mut names = vec![span.name.clone()];
    let mut current = span;
    while let Some(parent) = current.parent_span_id {
        current = by_id[&(current.trace_id, parent)];
        names.push(current.name.clone());
    }
    names.reverse();
    names.join("/")
}

/// The traces in order of their roots' start, each as its spans by path.
fn traces_by_path(spans: &[Span]) -> Vec<BTreeMap<String, &Span>> {
    let mut traces: BTreeMap<_, Vec<&Span>> = BTreeMap::new();
    for span in spans {
        traces.entry(span.trace_id).or_default().push(span);
    }
    let mut traces: Vec<Vec<&Span>> = traces.into_values().collect();
    traces.sort_by_key(|t| t.iter().map(|s| s.start).min());
    traces
        .into_iter()
        .map(|t| t.into_iter().map(|s| (path(s, spans), s)).collect())
        .collect()
}

const RAG_CHAIN_PATHS: [&str; 7] = [
    "process_query",
    "process_query/embed_query",
    "process_query/fetch_context",
    "process_query/llm_call",
    "process_query/llm_call/api_call",
    "process_query/llm_call/prompt_assembly",
    "process_query/vector_search",
];

fn check_rag_chain(decoded: &DecodedSpans) {
    assert_eq!(decoded.spans.len(), 14);
    assert_eq!((decoded.rejected, decoded.dropped_links), (0, 0));
    assert!(decoded.errors.is_empty());
    let traces = traces_by_path(&decoded.spans);
    assert_eq!(traces.len(), 2);
    for trace in &traces {
        let paths: Vec<&str> = trace.keys().map(String::as_str).collect();
        assert_eq!(paths, RAG_CHAIN_PATHS);
    }

    let (ok, failed) = (&traces[0], &traces[1]);
    for span in ok.values() {
        assert_eq!(span.status.code, StatusCode::Unset, "{}", span.name);
        assert_eq!(span.kind, SpanKind::Internal);
        assert!(span.end >= span.start);
    }
    let api_call = ok["process_query/llm_call/api_call"];
    assert_eq!(api_call.attr("input_tokens"), Some(&AnyValue::Int(19)));
    assert_eq!(api_call.attr("output_tokens"), Some(&AnyValue::Int(128)));
    assert_eq!(api_call.attr("stop_reason"), Some(&"end_turn".into()));
    assert_eq!(api_call.events.len(), 1);
    assert_eq!(api_call.events[0].name, "API request sent");
    assert!(api_call.events[0].time >= api_call.start);
    let fetch = ok["process_query/fetch_context"];
    assert_eq!(fetch.attr("user_id"), Some(&AnyValue::Int(42)));
    assert_eq!(fetch.attr("context_size_bytes"), Some(&AnyValue::Int(36)));
    assert_eq!(
        ok["process_query/llm_call"].attr("model"),
        Some(&"claude-3-opus-20250219".into())
    );
    assert_eq!(
        ok["process_query/embed_query"].attr("model"),
        Some(&"text-embedding-3-small".into())
    );
    assert_eq!(
        ok["process_query/vector_search"].attr("database"),
        Some(&"pinecone".into())
    );

    let message = "RateLimitError: rate limit exceeded: 40 requests/min";
    for path in [
        "process_query",
        "process_query/llm_call",
        "process_query/llm_call/api_call",
    ] {
        assert_eq!(failed[path].status.code, StatusCode::Error, "{path}");
        assert_eq!(failed[path].status.message, message, "{path}");
    }
    assert_eq!(
        failed["process_query/fetch_context"].status.code,
        StatusCode::Unset
    );
    let api_call = failed["process_query/llm_call/api_call"];
    assert!(api_call.is_error());
    assert_eq!(api_call.attr("error_type"), Some(&"RateLimitError".into()));
    assert_eq!(api_call.attr("status"), Some(&"error".into()));
    let exception = api_call
        .events
        .iter()
        .find(|e| e.name == "exception")
        .unwrap();
    let attr = |k| chaintrace_model::find_attr(&exception.attributes, k);
    assert_eq!(
        attr("exception.type"),
        Some(&"__main__.RateLimitError".into())
    );
    assert_eq!(
        attr("exception.message"),
        Some(&"rate limit exceeded: 40 requests/min".into())
    );
    let stack = attr("exception.stacktrace")
        .and_then(AnyValue::as_str)
        .unwrap();
    assert!(stack.starts_with("Traceback (most recent call last):"));

    for span in &decoded.spans {
        assert_eq!(span.service_name(), "rag-chain");
        assert_eq!(span.scope.name, "__main__");
        assert!(Arc::ptr_eq(&span.resource, &decoded.spans[0].resource));
    }
}

#[test]
fn pb_fixture_decodes_to_the_rag_chain() {
    check_rag_chain(&decoded_pb());
}

#[test]
fn json_fixture_decodes_to_the_rag_chain() {
    check_rag_chain(&decoded_json());
}

/// The span with what differs between two runs of one program blanked:
/// ids, times, the SDK's per-process `service.instance.id`, and the
/// virtualenv's path in stack traces (the runs used different ones; only
/// a trace's last line is kept). Everything else must agree exactly.
fn without_run_details(span: &Span) -> Span {
    let mut span = span.clone();
    span.trace_id = TraceId::default();
    span.span_id = SpanId::default();
    span.parent_span_id = span.parent_span_id.map(|_| SpanId::default());
    (span.start, span.end) = (UnixNanos(0), UnixNanos(0));
    for event in &mut span.events {
        event.time = UnixNanos(0);
        for kv in &mut event.attributes {
            if let ("exception.stacktrace", AnyValue::String(text)) =
                (kv.key.as_str(), &mut kv.value)
            {
                *text = text.lines().last().unwrap_or("").into();
            }
        }
    }
    let mut resource = (*span.resource).clone();
    resource
        .attributes
        .retain(|kv| kv.key != "service.instance.id");
    span.resource = Arc::new(resource);
    span
}

#[test]
fn pb_and_json_fixtures_agree_field_by_field() {
    let (pb, json) = (decoded_pb(), decoded_json());
    let (pb_traces, json_traces) = (traces_by_path(&pb.spans), traces_by_path(&json.spans));
    assert_eq!((pb_traces.len(), json_traces.len()), (2, 2));
    for (pb_trace, json_trace) in pb_traces.iter().zip(&json_traces) {
        for (path, pb_span) in pb_trace {
            let json_span = json_trace[path];
            assert_eq!(
                without_run_details(pb_span),
                without_run_details(json_span),
                "{path}"
            );
        }
    }
}

#[test]
fn mangled_ids_reject_only_their_spans() {
    let mut request = fixture_request();
    let spans = &mut request.resource_spans[0].scope_spans[0].spans;
    spans[3].span_id.truncate(6);
    spans[5].trace_id.truncate(3);
    let decoded = decode_request(request);
    assert_eq!(decoded.spans.len(), 12);
    assert_eq!(decoded.rejected, 2);
    assert_eq!(
        decoded.errors,
        [
            "resourceSpans[0].scopeSpans[0].spans[3]: spanId has 6 bytes, want 8",
            "resourceSpans[0].scopeSpans[0].spans[5]: traceId has 3 bytes, want 16",
        ]
    );
    assert_eq!(decoded.error_message(), decoded.errors.join("; "));
}

#[test]
fn bad_parent_rejects_zero_parent_is_root_zero_trace_rejects() {
    let mut request = fixture_request();
    let spans = &mut request.resource_spans[0].scope_spans[0].spans;
    spans[0].parent_span_id = vec![1; 4];
    spans[1].parent_span_id = vec![0; 8];
    spans[2].trace_id = vec![0; 16];
    let decoded = decode_request(request);
    assert_eq!(decoded.rejected, 2);
    assert_eq!(
        decoded.errors,
        [
            "resourceSpans[0].scopeSpans[0].spans[0]: parentSpanId has 4 bytes, want 8",
            "resourceSpans[0].scopeSpans[0].spans[2]: traceId is all zeros, which is not a valid id",
        ]
    );
    assert_eq!(decoded.spans[0].name, "embed_query");
    assert_eq!(decoded.spans[0].parent_span_id, None);
}

#[test]
fn end_before_start_is_clamped() {
    let mut request = fixture_request();
    let span = &mut request.resource_spans[0].scope_spans[0].spans[0];
    span.end_time_unix_nano = span.start_time_unix_nano - 5;
    let decoded = decode_request(request);
    assert_eq!(decoded.spans[0].end, decoded.spans[0].start);
    assert_eq!(decoded.rejected, 0);
}

#[test]
fn links_with_bad_ids_are_dropped_and_reported() {
    let mut request = fixture_request();
    let span = &mut request.resource_spans[0].scope_spans[0].spans[1];
    let good = otlp_trace::span::Link {
        trace_id: span.trace_id.clone(),
        span_id: span.span_id.clone(),
        ..Default::default()
    };
    let bad = otlp_trace::span::Link {
        trace_id: span.trace_id.clone(),
        span_id: vec![7; 9],
        ..Default::default()
    };
    span.links = vec![bad, good];
    let decoded = decode_request(request);
    assert_eq!(decoded.spans.len(), 14);
    assert_eq!((decoded.rejected, decoded.dropped_links), (0, 1));
    assert_eq!(decoded.spans[1].links.len(), 1);
    assert_eq!(
        decoded.errors,
        ["resourceSpans[0].scopeSpans[0].spans[1].links[0]: spanId has 9 bytes, want 8 (link dropped, span kept)"]
    );
}

#[test]
fn error_messages_are_capped_but_all_counted() {
    let mut request = fixture_request();
    let spans = &mut request.resource_spans[0].scope_spans[0].spans;
    let template = spans[0].clone();
    spans.extend((0..25).map(|_| otlp_trace::Span {
        span_id: vec![1],
        ..template.clone()
    }));
    let decoded = decode_request(request);
    assert_eq!(decoded.spans.len(), 14);
    assert_eq!(decoded.rejected, 25);
    assert_eq!(decoded.errors.len(), MAX_ERROR_MESSAGES);
    assert!(decoded.error_message().ends_with("; and 15 more"));
}

#[test]
fn every_any_value_kind_converts() {
    use any_value::Value as V;
    let value = |v: V| otlp_common::AnyValue { value: Some(v) };
    let kv = |k: &str, v: Option<otlp_common::AnyValue>| otlp_common::KeyValue {
        key: k.into(),
        value: v,
        ..Default::default()
    };
    let mut request = fixture_request();
    request.resource_spans[0].scope_spans[0].spans[0].attributes = vec![
        kv("s", Some(value(V::StringValue("x".into())))),
        kv("b", Some(value(V::BoolValue(true)))),
        kv("i", Some(value(V::IntValue(-3)))),
        kv("d", Some(value(V::DoubleValue(1.5)))),
        kv("y", Some(value(V::BytesValue(vec![0, 255])))),
        kv(
            "a",
            Some(value(V::ArrayValue(ArrayValue {
                values: vec![value(V::IntValue(1)), otlp_common::AnyValue { value: None }],
            }))),
        ),
        kv(
            "k",
            Some(value(V::KvlistValue(KeyValueList {
                values: vec![kv("inner", Some(value(V::StringValue("v".into()))))],
            }))),
        ),
        kv("none", None),
    ];
    let decoded = decode_request(request);
    let span = &decoded.spans[0];
    assert_eq!(span.attr("s"), Some(&"x".into()));
    assert_eq!(span.attr("b"), Some(&AnyValue::Bool(true)));
    assert_eq!(span.attr("i"), Some(&AnyValue::Int(-3)));
    assert_eq!(span.attr("d"), Some(&AnyValue::Double(1.5)));
    assert_eq!(span.attr("y"), Some(&AnyValue::Bytes(vec![0, 255])));
    assert_eq!(
        span.attr("a"),
        Some(&AnyValue::Array(vec![AnyValue::Int(1), AnyValue::Empty]))
    );
    assert_eq!(
        span.attr("k"),
        Some(&AnyValue::KvList(vec![KeyValue::new("inner", "v")]))
    );
    assert_eq!(span.attr("none"), Some(&AnyValue::Empty));
}

#[test]
fn malformed_protobuf_is_a_decode_error() {
    let mut body = fixture(PB_FIXTURE);
    body.truncate(body.len() / 2);
    let err = decode_protobuf(&body).unwrap_err();
    assert!(matches!(err, DecodeError::Protobuf(_)));
    assert!(
        err.to_string().starts_with("invalid OTLP protobuf: "),
        "{err}"
    );
}
