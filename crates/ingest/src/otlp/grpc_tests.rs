//! Tests of the OTLP/gRPC receiver over a real loopback socket, called
//! with opentelemetry-proto's generated client and a raw-bytes client.

use std::net::SocketAddr;

use bytes::BufMut;
use http::uri::PathAndQuery;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Channel, Server};
use tonic::Code;

use super::*;
use crate::testing::{fixture, RecordingSink, SinkMode, PB_FIXTURE};

const EXPORT_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

async fn serve(mode: SinkMode, max_request_bytes: usize) -> (SocketAddr, Arc<RecordingSink>) {
    let sink = Arc::new(RecordingSink::new(mode));
    let service = trace_service(sink.clone(), Limits::new(max_request_bytes, 192 << 20));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        Server::builder()
            .add_service(service)
            .serve_with_incoming(TcpIncoming::from(listener)),
    );
    (addr, sink)
}

async fn client(addr: SocketAddr) -> TraceServiceClient<Channel> {
    TraceServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap()
}

fn fixture_request() -> ExportTraceServiceRequest {
    ExportTraceServiceRequest::decode(&fixture(PB_FIXTURE)[..]).unwrap()
}

/// Sends arbitrary bytes as the request message, to test what the
/// generated client cannot send: malformed protobuf.
#[derive(Debug, Clone, Copy, Default)]
struct RawBytesCodec;

impl Codec for RawBytesCodec {
    type Encode = Vec<u8>;
    type Decode = ExportTraceServiceResponse;
    type Encoder = RawBytesEncoder;
    type Decoder = ResponseDecoder;

    fn encoder(&mut self) -> RawBytesEncoder {
        RawBytesEncoder
    }

    fn decoder(&mut self) -> ResponseDecoder {
        ResponseDecoder
    }
}

struct RawBytesEncoder;

impl Encoder for RawBytesEncoder {
    type Item = Vec<u8>;
    type Error = Status;

    fn encode(&mut self, item: Vec<u8>, buf: &mut EncodeBuf<'_>) -> Result<(), Status> {
        buf.put_slice(&item);
        Ok(())
    }
}

struct ResponseDecoder;

impl Decoder for ResponseDecoder {
    type Item = ExportTraceServiceResponse;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<Self::Item>, Status> {
        ExportTraceServiceResponse::decode(buf)
            .map(Some)
            .map_err(|e| Status::internal(e.to_string()))
    }
}

async fn send_raw(
    addr: SocketAddr,
    path: &'static str,
    bytes: Vec<u8>,
) -> Result<ExportTraceServiceResponse, Status> {
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    grpc.unary(
        tonic::Request::new(bytes),
        PathAndQuery::from_static(path),
        RawBytesCodec,
    )
    .await
    .map(tonic::Response::into_inner)
}

#[tokio::test]
async fn export_stores_spans_and_answers_ok() {
    let (addr, sink) = serve(SinkMode::Accept, 1 << 20).await;
    let response = client(addr).await.export(fixture_request()).await.unwrap();
    assert_eq!(response.into_inner().partial_success, None);
    assert_eq!(sink.spans().len(), 14);
}

#[tokio::test]
async fn gzip_compressed_export_is_accepted() {
    let (addr, sink) = serve(SinkMode::Accept, 1 << 20).await;
    let mut client = client(addr)
        .await
        .send_compressed(CompressionEncoding::Gzip);
    client.export(fixture_request()).await.unwrap();
    assert_eq!(sink.spans().len(), 14);
}

#[tokio::test]
async fn rejected_spans_are_reported_as_partial_success() {
    let (addr, sink) = serve(SinkMode::Accept, 1 << 20).await;
    let mut request = fixture_request();
    let spans = &mut request.resource_spans[0].scope_spans[0].spans;
    spans[3].span_id.truncate(6);
    spans[5].trace_id.truncate(3);
    let response = client(addr).await.export(request).await.unwrap();
    let partial = response.into_inner().partial_success.unwrap();
    assert_eq!(partial.rejected_spans, 2);
    assert_eq!(
        partial.error_message,
        "resourceSpans[0].scopeSpans[0].spans[3]: spanId has 6 bytes, want 8; \
         resourceSpans[0].scopeSpans[0].spans[5]: traceId has 3 bytes, want 16"
    );
    assert_eq!(sink.spans().len(), 12);
}

#[tokio::test]
async fn malformed_protobuf_is_invalid_argument() {
    let (addr, sink) = serve(SinkMode::Accept, 1 << 20).await;
    let status = send_raw(addr, EXPORT_PATH, vec![0x0a, 0x05, 0x01])
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().starts_with("invalid OTLP protobuf: "),
        "{}",
        status.message()
    );
    assert!(sink.spans().is_empty());

    // The raw client itself works: valid bytes pass.
    let ok = send_raw(addr, EXPORT_PATH, fixture(PB_FIXTURE)).await;
    assert!(ok.is_ok(), "{ok:?}");
}

#[tokio::test]
async fn other_methods_are_unimplemented() {
    let (addr, _) = serve(SinkMode::Accept, 1 << 20).await;
    let status = send_raw(
        addr,
        "/opentelemetry.proto.collector.trace.v1.TraceService/Other",
        Vec::new(),
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::Unimplemented, "{status:?}");
}

#[tokio::test]
async fn sink_answers_become_unavailable_and_internal() {
    let (addr, _) = serve(SinkMode::Overloaded, 1 << 20).await;
    let status = client(addr)
        .await
        .export(fixture_request())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(status.message(), "overloaded, retry later: wal over budget");

    let (addr, _) = serve(SinkMode::Failed, 1 << 20).await;
    let status = client(addr)
        .await
        .export(fixture_request())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Internal);
}

#[tokio::test]
async fn messages_over_the_limit_are_refused_before_decoding() {
    let (addr, sink) = serve(SinkMode::Accept, 1000).await;
    let status = client(addr)
        .await
        .export(fixture_request())
        .await
        .unwrap_err();
    assert!(
        matches!(status.code(), Code::OutOfRange | Code::ResourceExhausted),
        "{status:?}"
    );

    // The limit holds after decompression too.
    let mut client = client(addr)
        .await
        .send_compressed(CompressionEncoding::Gzip);
    let mut request = fixture_request();
    request.resource_spans[0].scope_spans[0].spans[0].name = "x".repeat(100_000);
    let status = client.export(request).await.unwrap_err();
    assert!(
        matches!(status.code(), Code::OutOfRange | Code::ResourceExhausted),
        "{status:?}"
    );
    assert!(sink.spans().is_empty());
}

#[test]
fn service_is_named_for_otlp_exporters() {
    assert_eq!(
        <GrpcTraceService as NamedService>::NAME,
        "opentelemetry.proto.collector.trace.v1.TraceService"
    );
}

/// Posts `body` as the raw HTTP/2 body of an Export call (gRPC framing
/// included, so the test can break it) and returns the gRPC status.
async fn export_frames(addr: SocketAddr, body: Vec<u8>) -> (Code, String) {
    export_encoded_frames(addr, body, "identity").await
}

/// [`export_frames`] with a `grpc-encoding`.
async fn export_encoded_frames(addr: SocketAddr, body: Vec<u8>, encoding: &str) -> (Code, String) {
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let request = http::Request::post(format!("http://{addr}{EXPORT_PATH}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("grpc-encoding", encoding)
        .body(tonic::body::Body::new(
            http_body_util::Full::new(Bytes::from(body))
                .map_err(|e| -> tonic::codegen::StdError { match e {} }),
        ))
        .unwrap();
    let response = channel.oneshot(request).await.unwrap();
    let status = match Status::from_header_map(response.headers()) {
        Some(status) => status,
        None => {
            let collected = response.into_body().collect().await.unwrap();
            let trailers = collected.trailers().cloned().unwrap_or_default();
            Status::from_header_map(&trailers).unwrap_or_else(|| Status::ok(""))
        }
    };
    (status.code(), status.message().to_string())
}

/// A gRPC message frame: compressed flag, big-endian length, bytes.
fn frame(compressed: bool, declared_len: u32, bytes: &[u8]) -> Vec<u8> {
    let mut out = vec![u8::from(compressed)];
    out.extend_from_slice(&declared_len.to_be_bytes());
    out.extend_from_slice(bytes);
    out
}

#[tokio::test]
async fn broken_framing_is_invalid_argument_not_internal() {
    let (addr, sink) = serve(SinkMode::Accept, 1 << 20).await;
    let message = fixture_request().encode_to_vec();
    let cases = [
        (
            "a message cut short",
            frame(false, message.len() as u32, &message[..10]),
        ),
        (
            "compressed flag without grpc-encoding",
            frame(true, message.len() as u32, &message),
        ),
        ("no message at all", Vec::new()),
    ];
    for (what, body) in cases {
        let (code, message) = export_frames(addr, body).await;
        assert_eq!(code, Code::InvalidArgument, "{what}: {message}");
        assert!(
            message.starts_with("malformed gRPC request: "),
            "{what}: {message}"
        );
    }
    assert!(sink.spans().is_empty());
    // Framed right, the same bytes are stored: the test's framing is sound.
    let (code, message) = export_frames(addr, frame(false, message.len() as u32, &message)).await;
    assert_eq!(code, Code::Ok, "{message}");
    assert_eq!(sink.spans().len(), 14);
}

#[tokio::test]
async fn a_failing_store_is_still_internal() {
    let (addr, _) = serve(SinkMode::Failed, 1 << 20).await;
    let message = fixture_request().encode_to_vec();
    let (code, message) = export_frames(addr, frame(false, message.len() as u32, &message)).await;
    assert_eq!(code, Code::Internal, "{message}");
    assert!(message.contains("storing spans failed"), "{message}");
}

#[tokio::test]
async fn gzip_messages_are_inflated_within_the_limit_and_bad_gzip_is_invalid_argument() {
    use std::io::Write;
    let gzip = |data: &[u8]| {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    };
    let (addr, sink) = serve(SinkMode::Accept, 64 << 10).await;

    // A few KiB that inflate past the limit: refused, nothing stored.
    let bomb = gzip(&vec![0u8; 4 << 20]);
    let (code, message) =
        export_encoded_frames(addr, frame(true, bomb.len() as u32, &bomb), "gzip").await;
    assert_eq!(code, Code::ResourceExhausted, "{message}");
    assert_eq!(
        message,
        "decompressed request message exceeds the limit of 65536 bytes"
    );

    // Not gzip at all behind the compressed flag.
    let (code, message) = export_encoded_frames(addr, frame(true, 5, b"hello"), "gzip").await;
    assert_eq!(code, Code::InvalidArgument, "{message}");
    assert!(message.contains("invalid gzip message"), "{message}");
    assert!(sink.spans().is_empty());

    // The same framing with a real message is stored.
    let message = gzip(&fixture_request().encode_to_vec());
    let (code, text) =
        export_encoded_frames(addr, frame(true, message.len() as u32, &message), "gzip").await;
    assert_eq!(code, Code::Ok, "{text}");
    assert_eq!(sink.spans().len(), 14);
}

#[tokio::test]
async fn messages_in_flight_share_the_body_gate_with_http() {
    use http_body_util::StreamBody;
    use tonic::codegen::tokio_stream::{self, StreamExt};
    use tower::ServiceExt;
    // Bodies may hold 256 KiB in flight.
    let limits = Limits::new(1 << 20, 512 << 10);
    let sink = Arc::new(RecordingSink::new(SinkMode::Accept));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        Server::builder()
            .add_service(trace_service(sink.clone(), limits.clone()))
            .serve_with_incoming(TcpIncoming::from(listener)),
    );

    // A caller that sent 200 KiB of its message and went quiet.
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let sent: Vec<Result<http_body::Frame<Bytes>, tonic::codegen::StdError>> = vec![Ok(
        http_body::Frame::data(Bytes::from(frame(false, 300 << 10, &vec![0x0a; 200 << 10]))),
    )];
    let stalled = tokio_stream::iter(sent).chain(tokio_stream::pending());
    let request = http::Request::post(format!("http://{addr}{EXPORT_PATH}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(tonic::body::Body::new(StreamBody::new(stalled)))
        .unwrap();
    let holder = tokio::spawn(channel.oneshot(request));
    while limits.bodies.available() > 56 << 10 {
        tokio::task::yield_now().await;
    }

    // A 100 KiB message does not fit beside it: UNAVAILABLE, which the
    // SDKs retry, and nothing stored.
    let mut request = fixture_request();
    request.resource_spans[0].scope_spans[0].spans[0].name = "x".repeat(100 << 10);
    let message = request.encode_to_vec();
    let body = frame(false, message.len() as u32, &message);
    let (code, text) = export_frames(addr, body.clone()).await;
    assert_eq!(code, Code::Unavailable, "{text}");
    assert!(text.contains("request bodies in flight"), "{text}");
    assert!(sink.spans().is_empty());

    // Once the quiet caller is gone, its room is free again.
    holder.abort();
    let _ = holder.await;
    while limits.bodies.available() < 256 << 10 {
        tokio::task::yield_now().await;
    }
    let (code, text) = export_frames(addr, body).await;
    assert_eq!(code, Code::Ok, "{text}");
    assert_eq!(sink.spans().len(), 14);
}

#[tokio::test]
async fn the_logs_service_stores_records_beside_the_trace_service() {
    use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    let sink = Arc::new(RecordingSink::new(SinkMode::Accept));
    let limits = Limits::new(1 << 20, 192 << 20);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        Server::builder()
            .add_service(trace_service(sink.clone(), limits.clone()))
            .add_service(logs_service(sink.clone(), limits))
            .serve_with_incoming(TcpIncoming::from(listener)),
    );
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let request = ExportLogsServiceRequest::decode(&fixture("otlp-logs-python.pb")[..]).unwrap();
    let response = LogsServiceClient::new(channel.clone())
        .send_compressed(CompressionEncoding::Gzip)
        .export(request.clone())
        .await
        .unwrap();
    assert_eq!(response.into_inner().partial_success, None);
    TraceServiceClient::new(channel)
        .export(fixture_request())
        .await
        .unwrap();
    assert_eq!(sink.log_batches.lock().unwrap().concat().len(), 2);
    assert_eq!(sink.spans().len(), 14);

    // Bad bytes on the logs path are the sender's fault too.
    let status = send_raw(
        addr,
        "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
        vec![0x0a, 0x05, 0x01],
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
}
