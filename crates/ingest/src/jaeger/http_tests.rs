//! The Jaeger collector endpoint, driven through its router.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;

use super::test_encoder::{bare_batch, from_model};
use super::tests::decoded_fixture;
use super::*;
use crate::otlp::Limits;
use crate::testing::{RecordingSink, SinkMode};

async fn post(
    limits: Limits,
    content_type: &str,
    body: Vec<u8>,
) -> (StatusCode, String, Arc<RecordingSink>) {
    let sink = Arc::new(RecordingSink::new(SinkMode::Accept));
    let app = collector_router(sink.clone(), limits);
    let request = Request::post("/api/traces")
        .header(header::CONTENT_TYPE, content_type)
        .body(Body::from(body))
        .unwrap();
    let response = app.oneshot(request).await.unwrap();
    let status = response.status();
    let text = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&text).into_owned(), sink)
}

#[tokio::test]
async fn a_thrift_batch_posted_to_the_collector_is_stored() {
    // The real chain (decoded from the captured datagram), re-encoded as
    // the bare binary Batch a collector receives.
    let spans = decoded_fixture().spans;
    let body = bare_batch(&from_model(&spans), ThriftProtocol::Binary);
    let (status, text, sink) = post(Limits::default(), "application/x-thrift", body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{text}");
    assert_eq!(text, "accepted 14 spans");
    let stored = sink.spans();
    assert_eq!(stored.len(), 14);
    let names = |s: &[chaintrace_model::Span]| {
        let mut n: Vec<String> = s.iter().map(|s| s.name.to_string()).collect();
        n.sort();
        n
    };
    assert_eq!(names(&stored), names(&spans));
}

#[tokio::test]
async fn wrong_media_and_bad_bytes_are_refused_naming_what_is_wrong() {
    let (status, text, _) = post(Limits::default(), "application/json", b"{}".to_vec()).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(text.contains("application/x-thrift"), "{text}");

    let (status, text, sink) = post(
        Limits::default(),
        "application/vnd.apache.thrift.binary",
        vec![0x0f, 0x00, 0x02, 0x0c, 0x7f, 0xff, 0xff, 0xff],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        text.starts_with("invalid Jaeger Thrift (binary) at byte"),
        "{text}"
    );
    assert!(sink.spans().is_empty());
}

#[tokio::test]
async fn bodies_past_the_limit_or_the_decode_budget_are_413() {
    let spans = decoded_fixture().spans;
    let body = bare_batch(&from_model(&spans), ThriftProtocol::Binary);
    let (status, text, _) = post(Limits::new(100, 1 << 20), "application/x-thrift", body).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(text, "request body exceeds the limit of 100 bytes");

    // 100 KB of empty tags, whose decoded bound is past a 256 KiB gate.
    let mut w = test_encoder::Writer::new(ThriftProtocol::Binary);
    w.struct_begin();
    w.field(2, test_encoder::Ty::List);
    w.list(test_encoder::Ty::Struct, 1);
    w.struct_begin();
    w.field(10, test_encoder::Ty::List);
    w.list(test_encoder::Ty::Struct, 100_000);
    for _ in 0..100_000 {
        w.struct_begin();
        w.struct_end();
    }
    w.struct_end();
    w.struct_end();
    let (status, text, sink) = post(
        Limits::new(1 << 20, 256 << 10),
        "application/x-thrift",
        w.out,
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(text.contains("send smaller batches"), "{text}");
    assert!(sink.spans().is_empty());
}
