//! The Zipkin endpoint, driven through its router.

use std::io::Write;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use http_body_util::BodyExt;
use prost::Message;
use tower::ServiceExt;

use super::proto::{ListOfSpans, ProtoSpan};
use super::*;
use crate::otlp::Limits;
use crate::testing::{RecordingSink, SinkMode};

const BODY: &str = r#"[
    {"traceId":"5b8efff798038103d269b633813fc60c","id":"0000000000000001","name":"process_query",
     "kind":"SERVER","timestamp":1700000000000000,"duration":100,"localEndpoint":{"serviceName":"rag"}},
    {"traceId":"5b8efff798038103d269b633813fc60c","id":"0000000000000002","parentId":"0000000000000001",
     "name":"llm_call","timestamp":1700000000000010,"duration":50,"localEndpoint":{"serviceName":"rag"}},
    {"traceId":"nothex","id":"0000000000000003"}
]"#;

struct Sent {
    status: StatusCode,
    text: String,
    retry_after: Option<String>,
    sink: Arc<RecordingSink>,
}

async fn post(
    limits: Limits,
    mode: SinkMode,
    headers: &[(header::HeaderName, &str)],
    body: Vec<u8>,
) -> Sent {
    let sink = Arc::new(RecordingSink::new(mode));
    let app = zipkin_router(sink.clone(), limits);
    let mut request = Request::post("/api/v2/spans");
    for (name, value) in headers {
        request = request.header(name, *value);
    }
    let response = app
        .oneshot(request.body(Body::from(body)).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let retry_after = response
        .headers()
        .get(header::RETRY_AFTER)
        .map(|v| v.to_str().unwrap().to_string());
    let text = response.into_body().collect().await.unwrap().to_bytes();
    Sent {
        status,
        text: String::from_utf8_lossy(&text).into_owned(),
        retry_after,
        sink,
    }
}

const JSON: (header::HeaderName, &str) = (header::CONTENT_TYPE, "application/json");
const PROTO: (header::HeaderName, &str) = (header::CONTENT_TYPE, "application/x-protobuf");
const GZIP: (header::HeaderName, &str) = (header::CONTENT_ENCODING, "gzip");

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

#[tokio::test]
async fn json_is_stored_with_202_and_bad_spans_named() {
    let sent = post(Limits::default(), SinkMode::Accept, &[JSON], BODY.into()).await;
    assert_eq!(sent.status, StatusCode::ACCEPTED, "{}", sent.text);
    assert_eq!(
        sent.text,
        r#"accepted 2 spans, rejected 1: spans[2].traceId: traceId "nothex" is not hex"#
    );
    let stored = sent.sink.spans();
    let names: Vec<&str> = stored.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["process_query", "llm_call"]);
    assert_eq!(stored[1].parent_span_id, Some(stored[0].span_id));
}

#[tokio::test]
async fn no_content_type_is_json_and_gzip_is_inflated() {
    let sent = post(
        Limits::default(),
        SinkMode::Accept,
        &[GZIP],
        gzip(BODY.as_bytes()),
    )
    .await;
    assert_eq!(sent.status, StatusCode::ACCEPTED, "{}", sent.text);
    assert_eq!(sent.sink.spans().len(), 2);

    let list = ListOfSpans {
        spans: vec![ProtoSpan {
            trace_id: vec![7; 16],
            id: vec![8; 8],
            name: "gzipped".into(),
            ..Default::default()
        }],
    };
    let sent = post(
        Limits::default(),
        SinkMode::Accept,
        &[PROTO, GZIP],
        gzip(&list.encode_to_vec()),
    )
    .await;
    assert_eq!(sent.status, StatusCode::ACCEPTED, "{}", sent.text);
    assert_eq!(sent.sink.spans()[0].name, "gzipped");
}

#[tokio::test]
async fn a_gzip_bomb_is_413_before_it_inflates_past_the_limit() {
    // 64 MiB of zeros in about 64 KB, against a 1 MiB limit.
    let bomb = gzip(&vec![b' '; 64 << 20]);
    assert!(bomb.len() < 1 << 20);
    let sent = post(
        Limits::new(1 << 20, 64 << 20),
        SinkMode::Accept,
        &[JSON, GZIP],
        bomb,
    )
    .await;
    assert_eq!(sent.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", sent.text);
    assert_eq!(
        sent.text,
        "decompressed request body exceeds the limit of 1048576 bytes"
    );
    let sent = post(
        Limits::default(),
        SinkMode::Accept,
        &[JSON, GZIP],
        b"not gzip".to_vec(),
    )
    .await;
    assert_eq!(sent.status, StatusCode::BAD_REQUEST);
    assert!(
        sent.text.starts_with("invalid gzip body: "),
        "{}",
        sent.text
    );
}

#[tokio::test]
async fn bodies_past_the_limit_or_the_decode_gate_are_413() {
    let sent = post(
        Limits::new(100, 1 << 20),
        SinkMode::Accept,
        &[JSON],
        BODY.into(),
    )
    .await;
    assert_eq!(sent.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(sent.text, "request body exceeds the limit of 100 bytes");

    // 20 000 empty spans: 40 KB of protobuf whose bound passes a 1 MiB gate.
    let body = [0x0a, 0x00].repeat(20_000);
    let sent = post(
        Limits::new(1 << 20, 1 << 20),
        SinkMode::Accept,
        &[PROTO],
        body,
    )
    .await;
    assert_eq!(sent.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", sent.text);
    assert!(sent.text.contains("send smaller batches"), "{}", sent.text);

    let json = format!("[{}]", vec!["{}"; 20_000].join(","));
    let sent = post(
        Limits::new(1 << 20, 1 << 20),
        SinkMode::Accept,
        &[JSON],
        json.into(),
    )
    .await;
    assert_eq!(sent.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", sent.text);
    assert!(sent.text.contains("send smaller batches"), "{}", sent.text);
    assert!(sent.sink.spans().is_empty());
}

#[tokio::test]
async fn bad_bodies_are_400_naming_what_is_wrong() {
    let sent = post(
        Limits::default(),
        SinkMode::Accept,
        &[JSON],
        br#"[{"traceId":"01","id":"02","duration":-1}]"#.to_vec(),
    )
    .await;
    assert_eq!(sent.status, StatusCode::BAD_REQUEST);
    assert!(
        sent.text
            .starts_with("invalid Zipkin v2 JSON: spans[0].duration: invalid value"),
        "{}",
        sent.text
    );

    let deep = format!("[{}{}]", "[".repeat(1000), "]".repeat(1000));
    let sent = post(Limits::default(), SinkMode::Accept, &[JSON], deep.into()).await;
    assert_eq!(sent.status, StatusCode::BAD_REQUEST);
    assert!(sent.text.contains("nests deeper than 64"), "{}", sent.text);

    let sent = post(
        Limits::default(),
        SinkMode::Accept,
        &[PROTO],
        b"\x0a\x05ab".to_vec(),
    )
    .await;
    assert_eq!(sent.status, StatusCode::BAD_REQUEST);
    assert!(
        sent.text.starts_with("invalid Zipkin protobuf: "),
        "{}",
        sent.text
    );
    assert!(sent.sink.spans().is_empty());
}

#[tokio::test]
async fn other_media_types_and_encodings_are_415() {
    let sent = post(
        Limits::default(),
        SinkMode::Accept,
        &[(header::CONTENT_TYPE, "application/x-thrift")],
        BODY.into(),
    )
    .await;
    assert_eq!(sent.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(sent.text.contains("want application/json"), "{}", sent.text);

    let sent = post(
        Limits::default(),
        SinkMode::Accept,
        &[JSON, (header::CONTENT_ENCODING, "br")],
        BODY.into(),
    )
    .await;
    assert_eq!(sent.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(sent.text.contains("want gzip or identity"), "{}", sent.text);
}

#[tokio::test]
async fn the_stores_answer_is_the_senders() {
    let sent = post(
        Limits::default(),
        SinkMode::Overloaded,
        &[JSON],
        BODY.into(),
    )
    .await;
    assert_eq!(sent.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(sent.retry_after.as_deref(), Some("1"));
    assert_eq!(sent.text, "overloaded, retry later: wal over budget");

    let sent = post(Limits::default(), SinkMode::Failed, &[JSON], BODY.into()).await;
    assert_eq!(sent.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(sent.text, "storing spans failed: disk on fire");
}
