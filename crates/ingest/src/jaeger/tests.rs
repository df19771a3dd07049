use std::collections::BTreeMap;
use std::sync::Arc;

use chaintrace_model::{AnyValue, Span, SpanKind, StatusCode};

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
