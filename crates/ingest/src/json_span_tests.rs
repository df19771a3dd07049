//! Tests of the JSON span receiver.

use axum::http::{header, Request};
use http_body_util::BodyExt;
use tower::ServiceExt;

use super::*;
use crate::testing::{fixture, RecordingSink, SinkMode};

#[test]
fn the_founding_documents_span_decodes_as_documented() {
    let out = decode_json_spans(&fixture("seed-span.json")).unwrap();
    assert_eq!(out.decoded.rejected, 0, "{:?}", out.decoded.errors);
    assert!(out.warnings.is_empty(), "{:?}", out.warnings);
    let [span] = &out.decoded.spans[..] else {
        panic!("want one span: {:?}", out.decoded.spans)
    };
    assert_eq!(span.trace_id.to_hex(), "550e8400e29b41d4a716446655440000");
    assert_eq!(span.name, "llm.call.claude");
    assert_eq!(span.start, "2026-06-02T14:30:00Z".parse().unwrap());
    assert_eq!(span.duration().0, 1_200_000_000);
    assert_eq!(span.status.code, Code::Ok);
    assert_eq!(
        span.attr("model"),
        Some(&AnyValue::String("claude-3-opus-20250219".into()))
    );
    assert_eq!(span.attr("max_tokens"), Some(&AnyValue::Int(1024)));
    assert_eq!(span.attr("temperature"), Some(&AnyValue::Double(0.7)));
    assert_eq!(span.events.len(), 1);
    assert_eq!(span.events[0].name, "API request sent");
    assert_eq!(
        span.events[0].time,
        "2026-06-02T14:30:00.050Z".parse().unwrap()
    );
    // The UUID is the trace id itself, the span ids are hashed; the
    // strings as sent are kept.
    assert_eq!(
        span.attr(SOURCE_TRACE_ID),
        Some(&AnyValue::String(
            "550e8400-e29b-41d4-a716-446655440000".into()
        ))
    );
    assert_eq!(
        span.attr(SOURCE_SPAN_ID),
        Some(&AnyValue::String(
            "f0ca7b1a-51e2-4d37-9476-b5e9a3d5c9f2".into()
        ))
    );
    assert_eq!(
        span.attr(SOURCE_PARENT_SPAN_ID),
        Some(&AnyValue::String(
            "a1b2c3d4-e5f6-4g7h-8i9j-k0l1m2n3o4p5".into()
        ))
    );
    assert_eq!(span.resource.service_name(), "unknown_service");
}

#[test]
fn string_ids_hash_stably_and_a_parent_named_alike_is_found() {
    let body = br#"
{"trace_id": "run-42", "span_id": "root", "name": "chain", "start_time": "2026-01-01T00:00:00Z", "end_time": "2026-01-01T00:00:02Z", "service": "rag"}
{"trace_id": "run-42", "span_id": "step-1", "parent_span_id": "root", "name": "llm_call", "start_time": 1767225600.5, "duration_ms": 500, "kind": "client", "status": "ERROR", "status_message": "RateLimitError"}
"#;
    let out = decode_json_spans(body).unwrap();
    let [root, child] = &out.decoded.spans[..] else {
        panic!("{:?}", out.decoded)
    };
    assert_eq!(root.trace_id, child.trace_id);
    assert_eq!(child.parent_span_id, Some(root.span_id));
    // Fixed by the documented hash: the same string is the same span in
    // every version.
    assert_eq!(root.span_id.to_hex(), format!("{:016x}", fnv1a(1, "root")));
    assert_eq!(
        root.trace_id.to_hex()[..16],
        format!("{:016x}", fnv1a(2, "run-42"))
    );
    assert_ne!(root.span_id, child.span_id);
    assert_eq!(child.kind, SpanKind::Client);
    assert_eq!(child.status.code, Code::Error);
    assert_eq!(child.status.message, "RateLimitError");
    assert_eq!(child.duration().0, 500_000_000);
    assert_eq!(root.resource.service_name(), "rag");
    // Hex ids stay as they are, and are not repeated as attributes.
    let hex = br#"[{"trace_id": "0123456789abcdef0123456789abcdef", "span_id": "0123456789abcdef", "name": "x", "start_time": "2026-01-01T00:00:00Z", "duration_ms": 1}]"#;
    let out = decode_json_spans(hex).unwrap();
    let span = &out.decoded.spans[0];
    assert_eq!(span.span_id.to_hex(), "0123456789abcdef");
    assert!(span.attr(SOURCE_SPAN_ID).is_none() && span.attr(SOURCE_TRACE_ID).is_none());
}

#[test]
fn bad_spans_are_rejected_alone_and_a_duration_mismatch_is_reported() {
    let body = br#"[
 {"trace_id": "t", "span_id": "a", "name": "good", "start_time": "2026-01-01T00:00:00Z", "end_time": "2026-01-01T00:00:01Z", "duration_ms": 1500},
 {"trace_id": "t", "span_id": "b", "start_time": "2026-01-01T00:00:00Z", "duration_ms": 1},
 {"trace_id": "t", "span_id": "c", "name": "x", "start_time": "yesterday", "duration_ms": 1},
 {"trace_id": "t", "span_id": "d", "name": "x", "start_time": "2026-01-01T00:00:01Z", "end_time": "2026-01-01T00:00:00Z"},
 {"trace_id": "t", "span_id": "e", "name": "x", "start_time": "2026-01-01T00:00:00Z", "duration_ms": 1, "status": "fine"},
 {"trace_id": "t", "span_id": "f", "name": "x", "start_time": "2026-01-01T00:00:00Z"},
 "not a span"
]"#;
    let out = decode_json_spans(body).unwrap();
    assert_eq!(out.decoded.spans.len(), 1);
    // Times are kept as sent; the disagreeing duration is reported.
    assert_eq!(out.decoded.spans[0].duration().0, 1_000_000_000);
    assert_eq!(out.warnings.len(), 1);
    assert!(
        out.warnings[0]
            .starts_with("spans[0].duration_ms: 1500 ms, but end_time - start_time is 1000 ms"),
        "{:?}",
        out.warnings
    );
    assert_eq!(out.decoded.rejected, 6);
    let errors = out.decoded.errors.join("\n");
    for want in [
        "spans[1].name: missing",
        "spans[2].start_time: ",
        "spans[3].end_time: before start_time",
        "spans[4].status: \"fine\" is not a status",
        "spans[5].end_time: missing: give end_time or duration_ms",
        "spans[6]: invalid type: string",
    ] {
        assert!(errors.contains(want), "{want:?} not in\n{errors}");
    }
}

#[test]
fn bodies_that_are_not_spans_are_errors_naming_why() {
    assert!(decode_json_spans(b"{\"trace_id\": ")
        .unwrap_err()
        .starts_with("invalid JSON"));
    assert!(decode_json_spans(b"42")
        .unwrap_err()
        .contains("got a number"));
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    assert!(decode_json_spans(deep.as_bytes())
        .unwrap_err()
        .starts_with("invalid JSON"));
}

async fn post(limits: Limits, body: Vec<u8>) -> (StatusCode, Value, Arc<RecordingSink>) {
    let sink = Arc::new(RecordingSink::new(SinkMode::Accept));
    let app = json_span_router(sink.clone(), limits);
    let request = Request::post("/api/v1/spans")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body))
        .unwrap();
    let response = app.oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap(), sink)
}

#[tokio::test]
async fn the_endpoint_stores_good_spans_and_answers_with_counts() {
    let (status, answer, sink) = post(Limits::default(), fixture("seed-span.json")).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["accepted"], 1);
    assert_eq!(answer["rejected"], 0);
    assert_eq!(sink.spans().len(), 1);

    let (status, answer, sink) = post(
        Limits::default(),
        br#"{"trace_id": "t", "span_id": "s"}"#.to_vec(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert_eq!(answer["rejected"], 1);
    assert!(sink.spans().is_empty());

    let (status, answer, _) = post(Limits::default(), b"nope".to_vec()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(answer["error"]
        .as_str()
        .unwrap()
        .starts_with("invalid JSON"));

    // Past what decoded requests may hold: 413 before decoding.
    let (status, answer, _) = post(
        Limits::new(1 << 20, 64 << 10),
        fixture("seed-span.json").repeat(4),
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{answer}");
    assert!(answer["error"]
        .as_str()
        .unwrap()
        .contains("send smaller batches"));
}
