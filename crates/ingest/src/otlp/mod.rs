//! OTLP traces: decoders (protobuf, JSON) and receivers (HTTP, gRPC).
//!
//! Both receivers share one path: bytes → [`DecodedSpans`] →
//! [`SpanSink::accept`](crate::SpanSink::accept) → an
//! `ExportTraceServiceResponse` that reports rejected spans as OTLP
//! partial success. Protobuf bytes (HTTP and gRPC) are read straight into
//! model spans by [`decode_protobuf`]; OTLP/JSON goes through
//! [`ExportTraceServiceRequest`] and [`decode_request`], which define what
//! the protobuf path must agree with. Logs (`/v1/logs`) are not handled
//! here yet.
//!
//! [`ExportTraceServiceRequest`]: opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest

mod decode;
mod grpc;
mod http;
mod json;
mod proto;
mod wire;

pub use decode::{decode_request, DecodeError, DecodedSpans, MAX_ERROR_MESSAGES};
pub use grpc::{trace_service, GrpcTraceService, TRACE_SERVICE_NAME};
pub use http::router;
pub use json::{decode_json, decode_json_within, JSON_CONTAINER_BYTES};
pub use proto::decode_protobuf;

use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceResponse,
};

/// Size bounds shared by the OTLP receivers.
///
/// ```
/// let limits = chaintrace_ingest::otlp::Limits { max_request_bytes: 4 << 20 };
/// assert!(limits.max_request_bytes < chaintrace_ingest::otlp::Limits::default().max_request_bytes);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest accepted request body (HTTP) or message (gRPC) in bytes,
    /// counted after decompression. Default 16 MiB.
    pub max_request_bytes: usize,
    /// The most memory one request may decode into (`chaintrace serve`
    /// passes `--max-memory`: the store would refuse a bigger batch
    /// anyway). An OTLP/JSON body whose shape could decode to more is
    /// refused before it is decoded. Default 384 MiB.
    pub max_decoded_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_request_bytes: 16 * 1024 * 1024,
            max_decoded_bytes: 384 * 1024 * 1024,
        }
    }
}

/// The OTLP answer for a decoded batch: partial success when spans were
/// rejected or links dropped, an empty response otherwise.
fn export_response(decoded: &DecodedSpans) -> ExportTraceServiceResponse {
    let partial_success = if decoded.rejected > 0 || !decoded.errors.is_empty() {
        Some(ExportTracePartialSuccess {
            rejected_spans: i64::try_from(decoded.rejected).unwrap_or(i64::MAX),
            error_message: decoded.error_message(),
        })
    } else {
        None
    };
    ExportTraceServiceResponse { partial_success }
}
