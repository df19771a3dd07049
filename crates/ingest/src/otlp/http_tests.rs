//! Tests of the OTLP/HTTP receiver, driven through the router without sockets.

use std::io::Write;
use std::sync::Arc;

use axum::http::{HeaderMap, Request};
use http_body_util::BodyExt;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use tower::ServiceExt;

use super::*;
use crate::testing::{fixture, RecordingSink, SinkMode, JSON_FIXTURE, PB_FIXTURE};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;

const PB: &str = "application/x-protobuf";
const JSON: &str = "application/json";

fn receiver(mode: SinkMode, max_request_bytes: usize) -> (Router, Arc<RecordingSink>) {
    let sink = Arc::new(RecordingSink::new(mode));
    let app = router(sink.clone(), Limits::new(max_request_bytes, 192 << 20));
    (app, sink)
}

fn post(content_type: &str, body: impl Into<Body>) -> Request<Body> {
    Request::post("/v1/traces")
        .header(header::CONTENT_TYPE, content_type)
        .body(body.into())
        .unwrap()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

async fn send(app: Router, request: Request<Body>) -> (StatusCode, HeaderMap, Bytes) {
    let response = app.oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, headers, body)
}

fn rpc_status(body: &[u8]) -> RpcStatus {
    RpcStatus::decode(body).unwrap()
}

#[tokio::test]
async fn protobuf_export_is_stored_and_answered_in_protobuf() {
    let (app, sink) = receiver(SinkMode::Accept, 1 << 20);
    let (status, headers, body) = send(app, post(PB, fixture(PB_FIXTURE))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], PB);
    let response = ExportTraceServiceResponse::decode(body).unwrap();
    assert_eq!(response.partial_success, None);
    assert_eq!(sink.spans().len(), 14);
}

#[tokio::test]
async fn json_export_with_charset_is_answered_in_json() {
    let (app, sink) = receiver(SinkMode::Accept, 1 << 20);
    let request = post("Application/JSON; charset=utf-8", fixture(JSON_FIXTURE));
    let (status, headers, body) = send(app, request).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], JSON);
    assert_eq!(&body[..], b"{}");
    assert_eq!(sink.spans().len(), 14);
}

#[tokio::test]
async fn rejected_spans_are_reported_as_partial_success() {
    let mut request = ExportTraceServiceRequest::decode(&fixture(PB_FIXTURE)[..]).unwrap();
    request.resource_spans[0].scope_spans[0].spans[3]
        .span_id
        .truncate(6);
    let (app, sink) = receiver(SinkMode::Accept, 1 << 20);
    let (status, _, body) = send(app.clone(), post(PB, request.encode_to_vec())).await;
    assert_eq!(status, StatusCode::OK);
    let partial = ExportTraceServiceResponse::decode(body)
        .unwrap()
        .partial_success
        .unwrap();
    assert_eq!(partial.rejected_spans, 1);
    assert_eq!(
        partial.error_message,
        "resourceSpans[0].scopeSpans[0].spans[3]: spanId has 6 bytes, want 8"
    );
    assert_eq!(sink.spans().len(), 13);

    let json = serde_json::to_vec(&request).unwrap();
    let (status, _, body) = send(app, post(JSON, json)).await;
    assert_eq!(status, StatusCode::OK);
    let answer: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(answer["partialSuccess"]["rejectedSpans"], 1);
    assert!(answer["partialSuccess"]["errorMessage"]
        .as_str()
        .unwrap()
        .contains("spans[3]: spanId has 6 bytes"));
}

#[tokio::test]
async fn gzip_bodies_are_inflated() {
    let (app, sink) = receiver(SinkMode::Accept, 1 << 20);
    let mut request = post(JSON, gzip(&fixture(JSON_FIXTURE)));
    request
        .headers_mut()
        .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    let (status, _, _) = send(app, request).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(sink.spans().len(), 14);
}

#[tokio::test]
async fn unsupported_media_is_415() {
    let (app, sink) = receiver(SinkMode::Accept, 1 << 20);
    let (status, headers, body) = send(app.clone(), post("text/plain", "hi")).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(headers[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    assert_eq!(
        String::from_utf8_lossy(&body),
        r#"unsupported Content-Type "text/plain": want application/x-protobuf or application/json"#
    );

    let request = Request::post("/v1/traces").body(Body::empty()).unwrap();
    let (status, _, body) = send(app.clone(), request).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(String::from_utf8_lossy(&body).starts_with("missing Content-Type"));

    let mut request = post(PB, fixture(PB_FIXTURE));
    request
        .headers_mut()
        .insert(header::CONTENT_ENCODING, HeaderValue::from_static("br"));
    let (status, _, body) = send(app, request).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(
        rpc_status(&body).message,
        r#"unsupported Content-Encoding "br": want gzip or identity"#
    );
    assert!(sink.spans().is_empty());
}

#[tokio::test]
async fn oversized_bodies_are_413_with_or_without_content_length() {
    let body = fixture(PB_FIXTURE);
    let (app, sink) = receiver(SinkMode::Accept, 1000);

    let mut declared = post(PB, body.clone());
    declared
        .headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    let (status, _, reply) = send(app.clone(), declared).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        rpc_status(&reply).message,
        "request body exceeds the limit of 1000 bytes"
    );

    // As Node.js exporters send it: chunked, no Content-Length.
    let chunks: Vec<Result<Bytes, std::io::Error>> = body
        .chunks(300)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    let streamed = Body::from_stream(tonic::codegen::tokio_stream::iter(chunks));
    let (status, _, _) = send(app, post(PB, streamed)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(sink.spans().is_empty());
}

#[tokio::test]
async fn a_body_that_times_out_is_408() {
    let (app, sink) = receiver(SinkMode::Accept, 1 << 20);
    // What the listener's body timeout yields once the client stalls.
    let chunks: Vec<Result<Bytes, std::io::Error>> = vec![
        Ok(Bytes::from_static(b"\x0a")),
        Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "the request body stalled",
        )),
    ];
    let stalled = Body::from_stream(tonic::codegen::tokio_stream::iter(chunks));
    let (status, _, reply) = send(app, post(PB, stalled)).await;
    assert_eq!(status, StatusCode::REQUEST_TIMEOUT);
    assert!(
        rpc_status(&reply).message.contains("stalled"),
        "{:?}",
        rpc_status(&reply).message
    );
    assert!(sink.spans().is_empty());
}

#[tokio::test]
async fn gzip_bomb_is_413() {
    let bomb = gzip(&vec![0u8; 4 << 20]);
    assert!(bomb.len() < 64 << 10, "{}", bomb.len());
    let (app, _) = receiver(SinkMode::Accept, 64 << 10);
    let mut request = post(PB, bomb);
    request
        .headers_mut()
        .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    let (status, _, body) = send(app, request).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        rpc_status(&body).message,
        "decompressed request body exceeds the limit of 65536 bytes"
    );
}

#[tokio::test]
async fn bodies_above_axums_default_limit_are_accepted() {
    let mut request = ExportTraceServiceRequest::decode(&fixture(PB_FIXTURE)[..]).unwrap();
    let span = &mut request.resource_spans[0].scope_spans[0].spans[0];
    span.name = "x".repeat(3 << 20);
    let (app, sink) = receiver(SinkMode::Accept, Limits::default().max_request_bytes);
    let (status, _, _) = send(app, post(PB, request.encode_to_vec())).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(sink.spans().len(), 14);
}

#[tokio::test]
async fn malformed_bodies_are_400_naming_the_problem() {
    let (app, sink) = receiver(SinkMode::Accept, 1 << 20);

    let (status, headers, body) = send(app.clone(), post(PB, vec![0x0a, 0x05, 0x01])).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(headers[header::CONTENT_TYPE], PB);
    let rpc = rpc_status(&body);
    assert_eq!(rpc.code, tonic::Code::InvalidArgument as i32);
    assert!(
        rpc.message.starts_with("invalid OTLP protobuf: "),
        "{}",
        rpc.message
    );

    let (status, headers, body) = send(app.clone(), post(JSON, "{\"resourceSpans\": [}")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(headers[header::CONTENT_TYPE], JSON);
    let answer: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(answer["code"], 3);
    let message = answer["message"].as_str().unwrap();
    assert!(message.starts_with("invalid OTLP/JSON: "), "{message}");
    assert!(message.contains("line 1 column 20"), "{message}");

    let mut request = post(PB, b"not gzip".to_vec());
    request
        .headers_mut()
        .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    let (status, _, body) = send(app, request).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(rpc_status(&body).message.starts_with("invalid gzip body"));
    assert!(sink.spans().is_empty());
}

#[tokio::test]
async fn sink_answers_become_503_with_retry_after_and_500() {
    let (app, _) = receiver(SinkMode::Overloaded, 1 << 20);
    let (status, headers, body) = send(app, post(PB, fixture(PB_FIXTURE))).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(headers[header::RETRY_AFTER], "1");
    let rpc = rpc_status(&body);
    assert_eq!(rpc.code, tonic::Code::Unavailable as i32);
    assert_eq!(rpc.message, "overloaded, retry later: wal over budget");

    let (app, _) = receiver(SinkMode::Failed, 1 << 20);
    let (status, headers, _) = send(app, post(JSON, fixture(JSON_FIXTURE))).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(headers.get(header::RETRY_AFTER).is_none());
}

#[tokio::test]
async fn empty_request_is_ok_without_calling_the_sink() {
    let (app, sink) = receiver(SinkMode::Overloaded, 1 << 20);
    let (status, _, body) = send(app, post(PB, Vec::new())).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.is_empty(), "an empty response encodes to no bytes");
    assert!(sink.batches.lock().unwrap().is_empty());
}

#[tokio::test]
async fn other_paths_and_methods_are_not_served() {
    let (app, _) = receiver(SinkMode::Accept, 1 << 20);
    let metrics = Request::post("/v1/metrics")
        .header(header::CONTENT_TYPE, PB)
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(app.clone(), metrics).await.0, StatusCode::NOT_FOUND);
    let get = Request::get("/v1/traces").body(Body::empty()).unwrap();
    assert_eq!(send(app, get).await.0, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn bodies_in_flight_share_one_memory_gate() {
    // Decoded requests may hold 512 KiB in flight, bodies half that.
    let sink = Arc::new(RecordingSink::new(SinkMode::Accept));
    let limits = Limits::new(1 << 20, 512 << 10);
    let app = router(sink.clone(), limits.clone());

    // A sender that sent 200 KiB and then went quiet holds that much room.
    let first: Vec<Result<Bytes, std::io::Error>> = vec![Ok(Bytes::from(vec![0x0a; 200 << 10]))];
    let stalled = tonic::codegen::tokio_stream::StreamExt::chain(
        tonic::codegen::tokio_stream::iter(first),
        tonic::codegen::tokio_stream::pending(),
    );
    let holder = tokio::spawn(send(app.clone(), post(PB, Body::from_stream(stalled))));
    while limits.bodies.available() > 56 << 10 {
        tokio::task::yield_now().await;
    }

    // A 100 KiB request does not fit beside it: after waiting for room, a
    // retryable 503, and nothing stored.
    let mut request = ExportTraceServiceRequest::decode(&fixture(PB_FIXTURE)[..]).unwrap();
    request.resource_spans[0].scope_spans[0].spans[0].name = "x".repeat(100 << 10);
    let body = request.encode_to_vec();
    let (status, headers, reply) = send(app.clone(), post(PB, body.clone())).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(headers.contains_key(header::RETRY_AFTER));
    assert!(
        rpc_status(&reply)
            .message
            .contains("request bodies in flight"),
        "{:?}",
        rpc_status(&reply).message
    );
    assert!(sink.spans().is_empty());

    // Once the quiet sender is gone its room is free again.
    holder.abort();
    let _ = holder.await;
    let (status, _, _) = send(app, post(PB, body)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(sink.spans().len(), 14);
}

fn post_logs(content_type: &str, body: impl Into<Body>) -> Request<Body> {
    Request::post("/v1/logs")
        .header(header::CONTENT_TYPE, content_type)
        .body(body.into())
        .unwrap()
}

#[tokio::test]
async fn logs_exports_are_stored_in_protobuf_json_and_gzip() {
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse;
    let (app, sink) = receiver(SinkMode::Accept, 1 << 20);
    let (status, headers, body) =
        send(app.clone(), post_logs(PB, fixture("otlp-logs-python.pb"))).await;
    assert_eq!(status, StatusCode::OK, "{body:?}");
    assert_eq!(headers[header::CONTENT_TYPE], PB);
    assert_eq!(
        ExportLogsServiceResponse::decode(body)
            .unwrap()
            .partial_success,
        None
    );
    let gzipped = Request::post("/v1/logs")
        .header(header::CONTENT_TYPE, PB)
        .header(header::CONTENT_ENCODING, "gzip")
        .body(Body::from(gzip(&fixture("otlp-logs-python.pb"))))
        .unwrap();
    assert_eq!(send(app.clone(), gzipped).await.0, StatusCode::OK);
    let json = br#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[
        {"body":{"stringValue":"kept"},"traceId":"5b8efff798038103d269b633813fc60c"},
        {"body":{"stringValue":"bad id"},"traceId":"5b8e"}]}]}]}"#;
    let (status, _, body) = send(app.clone(), post_logs(JSON, &json[..])).await;
    assert_eq!(status, StatusCode::OK);
    let answer: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        answer["partialSuccess"]["rejectedLogRecords"], 1,
        "{answer}"
    );
    assert!(
        answer["partialSuccess"]["errorMessage"]
            .as_str()
            .unwrap()
            .contains("logRecords[1]: traceId has 2 bytes, want 16"),
        "{answer}"
    );
    let batches = sink.log_batches.lock().unwrap();
    let sizes: Vec<usize> = batches.iter().map(Vec::len).collect();
    assert_eq!(sizes, [2, 2, 1]);
    assert!(sink.spans().is_empty(), "logs are not spans");
}

#[tokio::test]
async fn a_malformed_logs_body_is_400_naming_the_field() {
    let (app, sink) = receiver(SinkMode::Accept, 1 << 20);
    // A log record (field 2 of ScopeLogs) whose severity text (field 3)
    // claims more bytes than there are.
    let body = vec![0x0a, 0x06, 0x12, 0x04, 0x12, 0x02, 0x1a, 0x09];
    let (status, _, body) = send(app.clone(), post_logs(PB, body)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let message = rpc_status(&body).message;
    assert!(message.contains("invalid OTLP protobuf"), "{message}");
    let (status, _, _) = send(app, post_logs(JSON, &b"{\"resourceLogs\":{}}"[..])).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(sink.log_batches.lock().unwrap().is_empty());
}

#[tokio::test]
async fn an_overloaded_store_is_503_for_logs_too() {
    let (app, _) = receiver(SinkMode::Overloaded, 1 << 20);
    let (status, headers, _) = send(app, post_logs(PB, fixture("otlp-logs-python.pb"))).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(headers[header::RETRY_AFTER], "1");
}
