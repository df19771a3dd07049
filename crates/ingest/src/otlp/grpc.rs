//! The OTLP/gRPC receiver: `opentelemetry.proto.collector.trace.v1.TraceService/Export`.
//!
//! Hand-written instead of opentelemetry-proto's generated server because
//! the generated one decodes with tonic's `ProstCodec`, which answers a
//! malformed message with `INTERNAL`; a sender's bad bytes are its own
//! fault, so this service answers `INVALID_ARGUMENT` naming what was wrong.
//!
//! | outcome | gRPC status |
//! |---|---|
//! | stored (maybe some spans rejected) | OK, `partial_success` when spans were rejected or links dropped |
//! | malformed protobuf | `INVALID_ARGUMENT` |
//! | message over [`Limits::max_request_bytes`] (after gzip) | tonic's `OUT_OF_RANGE` / `RESOURCE_EXHAUSTED` |
//! | sink [`SinkError::Overloaded`] | `UNAVAILABLE` (SDKs retry it with backoff) |
//! | sink [`SinkError::TooLarge`] | `INVALID_ARGUMENT` |
//! | sink [`SinkError::Failed`] | `INTERNAL` |

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use prost::Message;
use tonic::codec::{Codec, CompressionEncoding, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::{Body, Service, StdError};
use tonic::server::{NamedService, UnaryService};
use tonic::Status;

use super::wire::decode_wire_within;
use super::{export_response, protobuf_bound, Admitted, DecodeGate, Limits, BODY_WAIT};
use crate::{SinkError, SpanSink};

/// The gRPC service name OTLP exporters call.
pub const TRACE_SERVICE_NAME: &str = "opentelemetry.proto.collector.trace.v1.TraceService";
const EXPORT_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

/// The OTLP trace service, ready for [`tonic::transport::Server::add_service`].
///
/// ```no_run
/// # async fn run(sink: std::sync::Arc<dyn chaintrace_ingest::SpanSink>) -> Result<(), Box<dyn std::error::Error>> {
/// use chaintrace_ingest::otlp::{trace_service, Limits};
/// tonic::transport::Server::builder()
///     .add_service(trace_service(sink, Limits::default()))
///     .serve("127.0.0.1:4317".parse()?)
///     .await?;
/// # Ok(())
/// # }
/// ```
pub fn trace_service(sink: Arc<dyn SpanSink>, limits: Limits) -> GrpcTraceService {
    GrpcTraceService { sink, limits }
}

/// The OTLP/gRPC trace receiver built by [`trace_service`]: a tower
/// service over HTTP/2 gRPC requests, cheap to clone.
#[derive(Clone)]
pub struct GrpcTraceService {
    sink: Arc<dyn SpanSink>,
    limits: Limits,
}

impl fmt::Debug for GrpcTraceService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GrpcTraceService")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl NamedService for GrpcTraceService {
    const NAME: &'static str = TRACE_SERVICE_NAME;
}

impl<B> Service<http::Request<B>> for GrpcTraceService
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if request.uri().path() != EXPORT_PATH {
            let status = Status::unimplemented(format!(
                "{} is not served here; {TRACE_SERVICE_NAME} serves only Export",
                request.uri().path()
            ));
            return Box::pin(async move { Ok(status.into_http()) });
        }
        let reached = Arc::new(AtomicBool::new(false));
        let export = Export {
            sink: Arc::clone(&self.sink),
            reached: Arc::clone(&reached),
            gate: self.limits.gate.clone(),
            bodies: self.limits.bodies.clone(),
        };
        let limit = self.limits.max_request_bytes;
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(OtlpCodec)
                .accept_compressed(CompressionEncoding::Gzip)
                .max_decoding_message_size(limit);
            let response = grpc.unary(export, request).await;
            Ok(client_fault_is_invalid_argument(response, &reached))
        })
    }
}

/// tonic answers `INTERNAL` when it cannot get one message out of the
/// request: a body cut off mid-message, the compressed flag set without a
/// `grpc-encoding`, or no message at all. Those are the caller's mistakes,
/// and a client retries `INTERNAL` as if the server had failed: answer
/// `INVALID_ARGUMENT` instead. `reached` tells them apart from an
/// `INTERNAL` of [`Export`] itself (a failed store), which stays.
fn client_fault_is_invalid_argument(
    response: http::Response<tonic::body::Body>,
    reached: &AtomicBool,
) -> http::Response<tonic::body::Body> {
    if reached.load(Ordering::Acquire) {
        return response;
    }
    match Status::from_header_map(response.headers()) {
        Some(status) if status.code() == tonic::Code::Internal => {
            Status::invalid_argument(format!("malformed gRPC request: {}", status.message()))
                .into_http()
        }
        _ => response,
    }
}

/// One `Export` call: decode, store, answer.
struct Export {
    sink: Arc<dyn SpanSink>,
    /// Set once the call gets its message (see
    /// [`client_fault_is_invalid_argument`]).
    reached: Arc<AtomicBool>,
    /// Decoded memory in flight (see [`super::DecodeGate`]).
    gate: DecodeGate,
    /// Request bodies in flight (see [`Limits`]).
    bodies: DecodeGate,
}

/// The request is the message's raw bytes: decoding them into spans here,
/// rather than in the codec, lets a malformed message be answered with
/// `INVALID_ARGUMENT` and lets [`decode_protobuf`] skip prost's structs.
impl UnaryService<Bytes> for Export {
    type Response = ExportTraceServiceResponse;
    type Future =
        Pin<Box<dyn Future<Output = Result<tonic::Response<Self::Response>, Status>> + Send>>;

    fn call(&mut self, request: tonic::Request<Bytes>) -> Self::Future {
        self.reached.store(true, Ordering::Release);
        let sink = Arc::clone(&self.sink);
        let gate = self.gate.clone();
        let bodies = self.bodies.clone();
        Box::pin(async move {
            // Decoding costs CPU in proportion to the message: off the
            // async workers. (tonic gunzips before this, on the worker.)
            let body = request.into_inner();
            // The message counts among the bodies in flight until it is
            // decoded. (tonic has read it already: while it reads, a
            // message is bounded only by the message size limit.)
            let mut held = Admitted::default();
            if !bodies.grow_to(&mut held, body.len(), BODY_WAIT).await {
                return Err(Status::unavailable(
                    "overloaded, retry later: request bodies in flight fill their memory budget",
                ));
            }
            let (mut admitted, budget) = gate.enter(protobuf_bound(body.len())).await;
            let (decoded, used) = tokio::task::spawn_blocking(move || {
                let decoded = decode_wire_within(&body, budget);
                drop(body);
                chaintrace_model::memory::release_after(
                    decoded.as_ref().map_or(budget, |(_, used)| *used),
                );
                decoded
            })
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "decoding an OTLP/gRPC export panicked");
                Status::internal("decoding the request failed (a bug; it is logged)")
            })?
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
            // Held, for what was decoded, until the store has answered.
            drop(held);
            admitted.shrink_to(used);
            decoded.log_partial("OTLP/gRPC");
            let response = export_response(&decoded);
            if !decoded.spans.is_empty() {
                sink.accept(decoded.spans).await.map_err(|e| match e {
                    SinkError::Overloaded(m) => {
                        Status::unavailable(format!("overloaded, retry later: {m}"))
                    }
                    SinkError::TooLarge(m) => Status::invalid_argument(m),
                    SinkError::Failed(m) => {
                        tracing::warn!(error = %m, "storing an OTLP/gRPC export failed");
                        Status::internal(format!("storing spans failed: {m}"))
                    }
                })?;
            }
            Ok(tonic::Response::new(response))
        })
    }
}

/// Like tonic's `ProstCodec` for the response; the request is handed on
/// as bytes (see [`Export`]), so that a malformed one is
/// `INVALID_ARGUMENT`, not `INTERNAL`.
#[derive(Debug, Clone, Copy, Default)]
struct OtlpCodec;

impl Codec for OtlpCodec {
    type Encode = ExportTraceServiceResponse;
    type Decode = Bytes;
    type Encoder = ResponseEncoder;
    type Decoder = RequestDecoder;

    fn encoder(&mut self) -> ResponseEncoder {
        ResponseEncoder
    }

    fn decoder(&mut self) -> RequestDecoder {
        RequestDecoder
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct ResponseEncoder;

impl Encoder for ResponseEncoder {
    type Item = ExportTraceServiceResponse;
    type Error = Status;

    fn encode(&mut self, item: Self::Item, buf: &mut EncodeBuf<'_>) -> Result<(), Status> {
        item.encode(buf)
            .map_err(|e| Status::internal(format!("encoding the response: {e}")))
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct RequestDecoder;

impl Decoder for RequestDecoder {
    type Item = Bytes;
    type Error = Status;

    /// One contiguous buffer for the wire decoder; tonic has already
    /// bounded its size by [`Limits::max_request_bytes`].
    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(buf.copy_to_bytes(buf.remaining())))
    }
}

#[cfg(test)]
#[path = "grpc_tests.rs"]
mod tests;
