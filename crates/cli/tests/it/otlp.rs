//! OTLP requests built in the test, sent over gRPC with tonic's generated
//! client and over HTTP, including partial success.

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;

use crate::harness::Server;

/// 16-byte trace id number `n` (never all zero).
pub fn trace_id(n: u64) -> [u8; 16] {
    let mut id = [0xabu8; 16];
    id[8..].copy_from_slice(&n.to_be_bytes());
    id
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// One request holding `spans` spans of trace `n`: span 1 is the root, the rest its children.
pub fn request(n: u64, spans: u64) -> ExportTraceServiceRequest {
    let base = 1_760_000_000_000_000_000u64 + n * 1_000_000_000;
    let spans = (1..=spans)
        .map(|i| Span {
            trace_id: trace_id(n).to_vec(),
            span_id: (n << 16 | i).to_be_bytes().to_vec(),
            parent_span_id: if i == 1 {
                vec![]
            } else {
                (n << 16 | 1).to_be_bytes().to_vec()
            },
            name: if i == 1 {
                "process_query".into()
            } else {
                format!("step_{i}")
            },
            kind: 1,
            start_time_unix_nano: base + i * 1000,
            end_time_unix_nano: base + 1_000_000 + i,
            attributes: vec![KeyValue {
                key: "step".into(),
                value: Some(AnyValue {
                    value: Some(any_value::Value::IntValue(i as i64)),
                }),
                ..Default::default()
            }],
            ..Default::default()
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![KeyValue {
                    key: "service.name".into(),
                    value: Some(AnyValue {
                        value: Some(any_value::Value::StringValue("durable".into())),
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            schema_url: String::new(),
        }],
    }
}

/// Span ids of a trace from the native API, or an empty list if unknown.
pub async fn span_ids(server: &Server, n: u64) -> Vec<String> {
    let (status, body) = server
        .get_json(&format!("/api/v1/traces/{}", hex(&trace_id(n))))
        .await;
    if status == 404 {
        return vec![];
    }
    assert_eq!(status, 200, "{body}");
    body["spans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["span_id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn grpc_export_with_partial_success() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let mut client = TraceServiceClient::connect(server.grpc_url())
        .await
        .unwrap();

    let answer = client.export(request(1, 5)).await.unwrap().into_inner();
    assert!(answer.partial_success.is_none_or(|p| p.rejected_spans == 0));
    assert_eq!(span_ids(&server, 1).await.len(), 5);

    // Two bad spans in a batch of six: the four good ones are stored, the two counted.
    let mut req = request(2, 6);
    req.resource_spans[0].scope_spans[0].spans[2].span_id = vec![1, 2, 3, 4, 5, 6];
    req.resource_spans[0].scope_spans[0].spans[4].trace_id = vec![9; 3];
    let answer = client.export(req).await.unwrap().into_inner();
    let partial = answer.partial_success.expect("partial success");
    assert_eq!(partial.rejected_spans, 2);
    assert!(
        partial.error_message.contains("spanId has 6 bytes, want 8"),
        "{}",
        partial.error_message
    );
    assert!(
        partial
            .error_message
            .contains("traceId has 3 bytes, want 16"),
        "{}",
        partial.error_message
    );
    assert_eq!(span_ids(&server, 2).await.len(), 4);
}

#[tokio::test]
async fn http_protobuf_partial_success_answer_is_protobuf() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let mut req = request(3, 4);
    req.resource_spans[0].scope_spans[0].spans[1].span_id = vec![];
    let (status, body) = server
        .post_traces("application/x-protobuf", req.encode_to_vec(), false)
        .await;
    assert_eq!(status, 200);
    let answer = ExportTraceServiceResponse::decode(body.as_slice()).expect("protobuf answer");
    assert_eq!(answer.partial_success.map(|p| p.rejected_spans), Some(1));
    assert_eq!(span_ids(&server, 3).await.len(), 3);
}
