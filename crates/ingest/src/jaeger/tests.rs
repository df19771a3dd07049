use std::collections::BTreeMap;
use std::sync::Arc;

use chaintrace_model::{AnyValue, KeyValue, Span, SpanKind, StatusCode};

use super::test_encoder::{self, tag, JBatch, JLog, JRef, JSpan, JValue};
use super::*;
use crate::testing::{fixture, JSON_FIXTURE};

/// The Python SDK's Jaeger exporter's datagram (see testdata/README.md).
pub(super) const COMPACT_FIXTURE: &str = "jaeger-thrift-compact-emitbatch-python-rag-chain.bin";

pub(super) fn decoded_fixture() -> DecodedSpans {
    decode_emit_batch(&fixture(COMPACT_FIXTURE), ThriftProtocol::Compact).unwrap()
}

/// `root/child/grandchild` by span names, from the span's ancestors.
fn path(span: &Span, spans: &[Span]) -> String {
    let mut names = vec![span.name.to_string()];
    let mut parent = span.parent_span_id;
    while let Some(id) = parent {
        let Some(p) = spans
            .iter()
            .find(|s| s.span_id == id && s.trace_id == span.trace_id)
        else {
            names.push("?".into());
            break;
        };
        names.push(p.name.to_string());
        parent = p.parent_span_id;
    }
    names.reverse();
    names.join("/")
}

/// What a user sees of each span of each trace, by path; the failed
/// trace last. Resource attributes the Jaeger exporter copies into every
/// span's tags are left out, as are the SDK's qualified exception types
/// (the two fixtures come from different SDK versions).
fn shape(spans: &[Span]) -> Vec<BTreeMap<String, String>> {
    let mut traces: BTreeMap<_, BTreeMap<String, String>> = BTreeMap::new();
    for span in spans {
        let attributes: Vec<String> = span
            .attributes
            .iter()
            .filter(|kv| !kv.key.starts_with("telemetry.") && !kv.key.starts_with("service."))
            .map(|kv| format!("{}={:?}", kv.key, kv.value))
            .collect();
        let events: Vec<String> = span
            .events
            .iter()
            .map(|e| {
                let message = e.attributes.iter().find(|kv| kv.key == "exception.message");
                format!("{}{:?}", e.name, message.map(|kv| &kv.value))
            })
            .collect();
        let seen = format!(
            "kind={:?} status={:?}:{} scope={} attributes={attributes:?} events={events:?}",
            span.kind, span.status.code, span.status.message, span.scope.name
        );
        traces
            .entry(span.trace_id)
            .or_default()
            .insert(path(span, spans), seen);
    }
    let mut traces: Vec<_> = traces.into_values().collect();
    traces.sort_by_key(|t| t.values().any(|s| s.contains("status=Error")));
    traces
}

#[test]
fn real_datagram_decodes_to_the_rag_chain() {
    let decoded = decoded_fixture();
    assert_eq!(decoded.rejected, 0, "{:?}", decoded.errors);
    assert_eq!(decoded.spans.len(), 14);
    let spans = &decoded.spans;
    for span in spans {
        assert_eq!(span.service_name(), "rag-chain");
        assert!(Arc::ptr_eq(&span.resource, &spans[0].resource));
        assert!(Arc::ptr_eq(&span.scope, &spans[0].scope));
        assert_eq!(span.scope.name, "__main__");
        assert_eq!(span.kind, SpanKind::Internal);
        assert!(span.attr("span.kind").is_none() && span.attr("otel.library.name").is_none());
        assert!(span.end > span.start);
    }
    // Resource attributes travel as span tags; the process carries only the name.
    assert_eq!(spans[0].resource.attributes.len(), 1);
    assert_eq!(
        spans[0]
            .attr("telemetry.sdk.version")
            .and_then(AnyValue::as_str),
        Some("1.21.0")
    );

    let paths: Vec<String> = spans.iter().map(|s| path(s, spans)).collect();
    for expected in [
        "process_query/fetch_context",
        "process_query/embed_query",
        "process_query/vector_search",
        "process_query/llm_call/prompt_assembly",
        "process_query/llm_call/api_call",
        "process_query",
    ] {
        assert_eq!(
            paths.iter().filter(|p| *p == expected).count(),
            2,
            "{expected}: {paths:?}"
        );
    }
    let traces: std::collections::HashSet<_> = spans.iter().map(|s| s.trace_id).collect();
    assert_eq!(traces.len(), 2);

    let embed = spans.iter().find(|s| s.name == "embed_query").unwrap();
    assert_eq!(
        embed.attr("model").and_then(AnyValue::as_str),
        Some("text-embedding-3-small")
    );
    assert_eq!(embed.attr("embedding_dim"), Some(&AnyValue::Int(1536)));
    assert_eq!(
        embed.duration().0 % 1_000,
        0,
        "microseconds became nanoseconds"
    );

    let failed: Vec<&Span> = spans.iter().filter(|s| s.is_error()).collect();
    let mut failed_names: Vec<&str> = failed.iter().map(|s| s.name.as_str()).collect();
    failed_names.sort();
    assert_eq!(failed_names, ["api_call", "llm_call", "process_query"]);
    let api_call = failed.iter().find(|s| s.name == "api_call").unwrap();
    assert_eq!(
        api_call.status.message,
        "RateLimitError: rate limit exceeded: 40 requests/min"
    );
    assert!(api_call.attr("error").is_none() && api_call.attr("otel.status_code").is_none());
    assert_eq!(
        api_call.attr("error_type").and_then(AnyValue::as_str),
        Some("RateLimitError")
    );
    let names: Vec<&str> = api_call.events.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["API request sent", "exception", "exception"]);
    let exception = &api_call.events[1];
    assert!(exception.time > api_call.start && exception.time <= api_call.end);
    assert_eq!(
        chaintrace_model::find_attr(&exception.attributes, "exception.type")
            .and_then(AnyValue::as_str),
        Some("RateLimitError")
    );
    let ok_api_call = spans
        .iter()
        .find(|s| s.name == "api_call" && !s.is_error())
        .unwrap();
    assert_eq!(ok_api_call.status.code, StatusCode::Unset);
    assert_eq!(ok_api_call.attr("output_tokens"), Some(&AnyValue::Int(128)));
}

#[test]
fn real_datagram_matches_the_same_chain_sent_over_otlp() {
    let jaeger = decoded_fixture();
    let otlp = crate::otlp::decode_json(&fixture(JSON_FIXTURE)).unwrap();
    let (jaeger, otlp) = (shape(&jaeger.spans), shape(&otlp.spans));
    assert_eq!(jaeger.len(), 2);
    assert_eq!(jaeger, otlp);
}

fn full_batch() -> JBatch {
    let trace = (0x0102_0304_0506_0708, 0x1112_1314_1516_1718); // (high, low)
    let span = |id: i64, name: &str| JSpan {
        trace_id_high: trace.0,
        trace_id_low: trace.1,
        span_id: id,
        operation_name: name.into(),
        flags: 1,
        start_time: 1_780_000_000_000_000,
        duration: 1_500,
        ..JSpan::default()
    };
    let reference = |ref_type, span_id| JRef {
        ref_type,
        trace_id_high: trace.0,
        trace_id_low: trace.1,
        span_id,
    };
    let mut root = span(1, "root");
    root.tags = vec![
        tag("s", JValue::Str("text".into())),
        tag("d", JValue::Double(2.5)),
        tag("b", JValue::Bool(true)),
        tag("f", JValue::Bool(false)),
        tag("l", JValue::Long(-7_000_000_000)),
        tag("bin", JValue::Binary(vec![0, 255, 7])),
        tag("span.kind", JValue::Str("server".into())),
        tag("otel.status_code", JValue::Str("OK".into())),
        tag("otel.library.name", JValue::Str("lib".into())),
        tag("otel.library.version", JValue::Str("1.2".into())),
    ];
    root.logs = vec![
        JLog {
            timestamp: 1_780_000_000_000_100,
            fields: vec![
                tag("level", JValue::Str("info".into())),
                tag("event", JValue::Str("cache miss".into())),
                tag("n", JValue::Long(3)),
            ],
        },
        JLog {
            timestamp: 1_780_000_000_000_200,
            fields: vec![tag("k", JValue::Double(0.5))],
        },
    ];
    // Parent from a CHILD_OF reference; another CHILD_OF, a FOLLOWS_FROM
    // and a reference with a zero span id besides.
    let mut child = span(2, "child");
    child.references = vec![
        reference(0, 1),
        reference(1, 9),
        reference(0, 8),
        reference(1, 0),
    ];
    child.tags = vec![
        tag("error", JValue::Bool(true)),
        tag("otel.status_code", JValue::Str("OK".into())),
        tag("otel.status_description", JValue::Str("boom".into())),
        tag("span.kind", JValue::Str("banana".into())),
        tag("otel.scope.name", JValue::Str("lib".into())),
        tag("otel.scope.version", JValue::Str("1.2".into())),
    ];
    let mut no_trace = span(3, "no trace");
    (no_trace.trace_id_high, no_trace.trace_id_low) = (0, 0);
    let mut grandchild = span(4, "grandchild");
    grandchild.parent_span_id = 2;
    grandchild.references = vec![reference(0, 2)];
    grandchild.start_time = i64::MAX;
    grandchild.duration = i64::MAX;
    let no_span = span(0, "no span");
    JBatch {
        service_name: "checkout".into(),
        process_tags: vec![
            tag("host.name", JValue::Str("box".into())),
            tag("cores", JValue::Long(8)),
        ],
        spans: vec![root, child, no_trace, grandchild, no_span],
    }
}

#[test]
fn every_tag_type_reference_and_log_round_trips_in_both_protocols() {
    let batch = full_batch();
    let decoded = decode_emit_batch(
        &test_encoder::emit_batch(&batch, ThriftProtocol::Binary),
        ThriftProtocol::Binary,
    )
    .unwrap();
    for (protocol, bare) in [
        (ThriftProtocol::Binary, true),
        (ThriftProtocol::Compact, false),
        (ThriftProtocol::Compact, true),
    ] {
        let again = if bare {
            decode_batch(&test_encoder::bare_batch(&batch, protocol), protocol)
        } else {
            decode_emit_batch(&test_encoder::emit_batch(&batch, protocol), protocol)
        };
        assert_eq!(again.unwrap(), decoded, "{protocol}, bare Batch: {bare}");
    }

    assert_eq!(decoded.rejected, 2);
    assert_eq!(decoded.dropped_links, 1);
    assert!(decoded.errors[0].starts_with("batch.spans[1].references[3]: spanId"));
    assert!(decoded.errors[1].starts_with("batch.spans[2]: traceIdHigh/traceIdLow"));
    assert!(decoded.errors[2].starts_with("batch.spans[4]: spanId is all zeros"));
    let [root, child, grandchild] = &decoded.spans[..] else {
        panic!("want 3 spans, got {:?}", decoded.spans);
    };

    let resource = &root.resource.attributes;
    assert_eq!(resource[0], KeyValue::new("service.name", "checkout"));
    assert_eq!(resource[1], KeyValue::new("host.name", "box"));
    assert_eq!(resource[2], KeyValue::new("cores", 8));
    assert!(Arc::ptr_eq(&root.resource, &grandchild.resource));

    assert_eq!(root.trace_id.to_hex(), "01020304050607081112131415161718");
    assert_eq!(root.span_id.to_hex(), "0000000000000001");
    assert_eq!(root.parent_span_id, None);
    assert_eq!(root.start.0, 1_780_000_000_000_000_000);
    assert_eq!(root.duration().0, 1_500_000);
    assert_eq!(root.kind, SpanKind::Server);
    assert_eq!(root.status.code, StatusCode::Ok);
    assert_eq!(
        (root.scope.name.as_str(), root.scope.version.as_str()),
        ("lib", "1.2")
    );
    assert!(Arc::ptr_eq(&root.scope, &child.scope));
    assert_eq!(
        root.attributes,
        vec![
            KeyValue::new("s", "text"),
            KeyValue::new("d", 2.5),
            KeyValue::new("b", true),
            KeyValue::new("f", false),
            KeyValue::new("l", -7_000_000_000),
            KeyValue::new("bin", AnyValue::Bytes(vec![0, 255, 7])),
        ]
    );
    assert_eq!(root.events.len(), 2);
    assert_eq!(root.events[0].name, "cache miss");
    assert_eq!(root.events[0].time.0, 1_780_000_000_000_100_000);
    assert_eq!(
        root.events[0].attributes,
        vec![KeyValue::new("level", "info"), KeyValue::new("n", 3)]
    );
    assert_eq!(root.events[1].name, "log");
    assert_eq!(root.events[1].attributes, vec![KeyValue::new("k", 0.5)]);

    assert_eq!(child.parent_span_id, Some(root.span_id));
    assert_eq!(child.status.code, StatusCode::Error, "error=true wins");
    assert_eq!(child.status.message, "boom");
    assert_eq!(child.kind, SpanKind::Unspecified);
    assert_eq!(child.attributes, vec![KeyValue::new("span.kind", "banana")]);
    let links: Vec<(String, &AnyValue)> = child
        .links
        .iter()
        .map(|l| (l.span_id.to_hex(), &l.attributes[0].value))
        .collect();
    assert_eq!(
        links,
        vec![
            ("0000000000000009".into(), &AnyValue::from("follows_from")),
            ("0000000000000008".into(), &AnyValue::from("child_of")),
        ]
    );
    assert!(child.links.iter().all(|l| l.trace_id == root.trace_id));

    assert_eq!(grandchild.parent_span_id, Some(child.span_id));
    assert!(grandchild.links.is_empty(), "the parent is not a link too");
    assert_eq!(grandchild.start.0, u64::MAX, "saturates");
    assert_eq!(grandchild.end.0, u64::MAX);
    assert_eq!(*grandchild.scope, chaintrace_model::Scope::default());
}

#[test]
fn real_datagram_re_encoded_decodes_the_same_in_both_protocols() {
    let original = decoded_fixture();
    let batch = test_encoder::from_model(&original.spans);
    for protocol in [ThriftProtocol::Binary, ThriftProtocol::Compact] {
        let message = test_encoder::emit_batch(&batch, protocol);
        assert_eq!(decode_emit_batch(&message, protocol).unwrap(), original);
        let body = test_encoder::bare_batch(&batch, protocol);
        assert_eq!(decode_batch(&body, protocol).unwrap(), original);
    }
}
