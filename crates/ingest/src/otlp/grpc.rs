//! The OTLP/gRPC receivers: `opentelemetry.proto.collector.trace.v1.TraceService/Export`
//! and `opentelemetry.proto.collector.logs.v1.LogsService/Export`, one type
//! ([`GrpcOtlpService`]) told apart by a const parameter.
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
//! | message over [`Limits::max_request_bytes`] (after gzip) | `RESOURCE_EXHAUSTED` (tonic's `OUT_OF_RANGE` for an uncompressed one) |
//! | request bodies in flight fill their gate for 5 s | `UNAVAILABLE` |
//! | sink [`SinkError::Overloaded`] | `UNAVAILABLE` (SDKs retry it with backoff) |
//! | sink [`SinkError::TooLarge`] | `INVALID_ARGUMENT` |
//! | sink [`SinkError::Failed`] | `INTERNAL` |
//! | sink [`SinkError::Limited`] (a tenant's limit) | `RESOURCE_EXHAUSTED` |

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use prost::Message;
use tonic::codec::{Codec, CompressionEncoding, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::{Body, Service, StdError};
use tonic::server::{NamedService, UnaryService};
use tonic::Status;

use super::body::{inflate_onto, read_gated, BodyError};
use super::wire::{decode_logs_within, decode_wire_within};
use super::{
    export_response, logs_protobuf_bound, protobuf_bound, Admitted, DecodeGate, Limits, BODY_WAIT,
};
use crate::metrics::{Protocol, ReceiverMetrics, RequestRejection};
use crate::receive::span_rejection;
use crate::{SinkError, SpanSink};

/// The gRPC service name OTLP trace exporters call.
pub const TRACE_SERVICE_NAME: &str = "opentelemetry.proto.collector.trace.v1.TraceService";
/// The gRPC service name OTLP log exporters call.
pub const LOGS_SERVICE_NAME: &str = "opentelemetry.proto.collector.logs.v1.LogsService";

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
    GrpcOtlpService {
        metrics: limits.metrics().receiver(Protocol::OtlpGrpc).clone(),
        sink,
        limits,
    }
}

/// The OTLP logs service, beside [`trace_service`] on the same server.
pub fn logs_service(sink: Arc<dyn SpanSink>, limits: Limits) -> GrpcLogsService {
    GrpcOtlpService {
        metrics: limits.metrics().receiver(Protocol::OtlpGrpc).clone(),
        sink,
        limits,
    }
}

/// An OTLP/gRPC receiver: a tower service over HTTP/2 gRPC requests, cheap
/// to clone. `LOGS` picks the signal: see [`GrpcTraceService`] and
/// [`GrpcLogsService`].
#[derive(Clone)]
pub struct GrpcOtlpService<const LOGS: bool> {
    sink: Arc<dyn SpanSink>,
    limits: Limits,
    metrics: ReceiverMetrics,
}

/// The trace receiver built by [`trace_service`].
pub type GrpcTraceService = GrpcOtlpService<false>;
/// The logs receiver built by [`logs_service`].
pub type GrpcLogsService = GrpcOtlpService<true>;

impl<const LOGS: bool> fmt::Debug for GrpcOtlpService<LOGS> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct(Self::service_name())
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl<const LOGS: bool> GrpcOtlpService<LOGS> {
    fn service_name() -> &'static str {
        if LOGS {
            LOGS_SERVICE_NAME
        } else {
            TRACE_SERVICE_NAME
        }
    }
}

impl NamedService for GrpcTraceService {
    const NAME: &'static str = TRACE_SERVICE_NAME;
}

impl NamedService for GrpcLogsService {
    const NAME: &'static str = LOGS_SERVICE_NAME;
}

impl<const LOGS: bool, B> Service<http::Request<B>> for GrpcOtlpService<LOGS>
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
        let metrics = self.metrics.clone();
        metrics.request();
        let service = Self::service_name();
        let path = request.uri().path();
        let is_export = path
            .strip_prefix('/')
            .and_then(|p| p.strip_prefix(service))
            .is_some_and(|m| m == "/Export");
        if !is_export {
            metrics.refused(RequestRejection::Unsupported);
            let status = Status::unimplemented(format!(
                "{path} is not served here; {service} serves only Export"
            ));
            return Box::pin(async move { Ok(status.into_http()) });
        }
        let reached = Arc::new(AtomicBool::new(false));
        let sink = Arc::clone(&self.sink);
        let gate = self.limits.gate.clone();
        let bodies = self.limits.bodies.clone();
        let limit = self.limits.max_request_bytes;
        Box::pin(async move {
            // The whole request is read here first, taking room in the
            // body gate as it arrives, and a gzip message is inflated off
            // the async workers; tonic then only unframes bytes in memory.
            let (parts, body) = request.into_parts();
            let mut held = Admitted::default();
            let raw = match read_grpc_body(body, limit, &bodies, &mut held).await {
                Ok(raw) => raw,
                Err(status) => return Ok(refused(&metrics, status)),
            };
            metrics.bytes(raw.len());
            let gzip = parts
                .headers
                .get("grpc-encoding")
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"));
            let (raw, held) = if gzip {
                let runtime = tokio::runtime::Handle::current();
                let inflated = tokio::task::spawn_blocking(move || {
                    let out = inflate_message(&raw, limit, |len| {
                        runtime.block_on(bodies.grow_to(&mut held, raw.len() + len, BODY_WAIT))
                    });
                    out.map(|message| {
                        let message = message.unwrap_or(raw);
                        held.shrink_to(message.len());
                        (message, held)
                    })
                })
                .await;
                match inflated {
                    Ok(Ok(done)) => done,
                    Ok(Err(status)) => return Ok(refused(&metrics, status)),
                    Err(e) => {
                        tracing::error!(error = %e, "inflating an OTLP/gRPC export panicked");
                        return Ok(refused(
                            &metrics,
                            Status::internal("inflating the request failed (a bug; it is logged)"),
                        ));
                    }
                }
            } else {
                (raw, held)
            };
            let request = http::Request::from_parts(parts, http_body_util::Full::new(raw));
            let export = Export {
                logs: LOGS,
                sink,
                metrics: metrics.clone(),
                reached: Arc::clone(&reached),
                gate,
                body_room: Some(held),
            };
            let mut grpc = tonic::server::Grpc::new(OtlpCodec)
                .accept_compressed(CompressionEncoding::Gzip)
                .max_decoding_message_size(limit);
            let response = grpc.unary(export, request).await;
            let response = client_fault_is_invalid_argument(response, &reached);
            // A call that reached `Export` counted its own refusal, with
            // the store's reason rather than the code's.
            if !reached.load(Ordering::Acquire) {
                if let Some(status) = Status::from_header_map(response.headers()) {
                    if status.code() != tonic::Code::Ok {
                        metrics.refused(RequestRejection::from_grpc(status.code()));
                    }
                }
            }
            Ok(response)
        })
    }
}

/// Counts a refusal before the call reached `Export`, and answers it.
fn refused(metrics: &ReceiverMetrics, status: Status) -> http::Response<tonic::body::Body> {
    metrics.refused(RequestRejection::from_grpc(status.code()));
    status.into_http()
}

/// Reads a whole gRPC request body: at most `limit` bytes of message plus
/// its framing and what gzip may add, growing `held` in `bodies` as bytes
/// arrive.
async fn read_grpc_body<B>(
    body: B,
    limit: usize,
    bodies: &DecodeGate,
    held: &mut Admitted,
) -> Result<Bytes, Status>
where
    B: Body<Data = Bytes>,
    B::Error: Into<StdError>,
{
    let most = limit.saturating_add(limit / 64).saturating_add(1024);
    read_gated(body, most, 0, bodies, held)
        .await
        .map_err(|e| match e {
            BodyError::TooLarge => Status::resource_exhausted(format!(
                "request message exceeds the limit of {limit} bytes"
            )),
            BodyError::TimedOut(e) => {
                Status::deadline_exceeded(format!("could not read the request: {e}"))
            }
            BodyError::GateFull => gate_full(),
            BodyError::Unreadable(e) | BodyError::BadGzip(e) => {
                Status::invalid_argument(format!("could not read the request: {e}"))
            }
        })
}

/// The answer when request bodies in flight fill their gate: retryable.
fn gate_full() -> Status {
    Status::unavailable(
        "overloaded, retry later: request bodies in flight fill their memory budget",
    )
}

/// The request body with its one gzip-compressed message inflated and
/// framed uncompressed, or `None` when the body is not one compressed
/// message (tonic then reads it as sent, and names what is wrong). Asks
/// `room` for room for that many inflated bytes before each step.
fn inflate_message(
    body: &Bytes,
    limit: usize,
    room: impl FnMut(usize) -> bool,
) -> Result<Option<Bytes>, Status> {
    let [1, a, b, c, d, ..] = body[..] else {
        return Ok(None);
    };
    let len = u32::from_be_bytes([a, b, c, d]) as usize;
    if body.len() != 5 + len {
        return Ok(None);
    }
    let mut out = vec![0, 0, 0, 0, 0];
    inflate_onto(&mut out, &body[5..], limit, room).map_err(|e| match e {
        BodyError::TooLarge => Status::resource_exhausted(format!(
            "decompressed request message exceeds the limit of {limit} bytes"
        )),
        BodyError::GateFull => gate_full(),
        BodyError::BadGzip(e) | BodyError::TimedOut(e) | BodyError::Unreadable(e) => {
            Status::invalid_argument(format!("invalid gzip message: {e}"))
        }
    })?;
    let framed = u32::try_from(out.len() - 5)
        .unwrap_or(u32::MAX)
        .to_be_bytes();
    out[1..5].copy_from_slice(&framed);
    Ok(Some(Bytes::from(out)))
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
    /// A logs export, not a traces one.
    logs: bool,
    sink: Arc<dyn SpanSink>,
    metrics: ReceiverMetrics,
    /// Set once the call gets its message (see
    /// [`client_fault_is_invalid_argument`]).
    reached: Arc<AtomicBool>,
    /// Decoded memory in flight (see [`super::DecodeGate`]).
    gate: DecodeGate,
    /// The request's room among the bodies in flight (see [`Limits`]),
    /// given back once the message is decoded.
    body_room: Option<Admitted>,
}

/// The request is the message's raw bytes: decoding them into spans here,
/// rather than in the codec, lets a malformed message be answered with
/// `INVALID_ARGUMENT` and lets [`decode_protobuf`] skip prost's structs.
impl UnaryService<Bytes> for Export {
    /// The encoded response message (of the export's signal).
    type Response = Bytes;
    type Future =
        Pin<Box<dyn Future<Output = Result<tonic::Response<Self::Response>, Status>> + Send>>;

    fn call(&mut self, request: tonic::Request<Bytes>) -> Self::Future {
        self.reached.store(true, Ordering::Release);
        let sink = Arc::clone(&self.sink);
        let metrics = self.metrics.clone();
        let gate = self.gate.clone();
        let held = self.body_room.take();
        if self.logs {
            return Box::pin(async move {
                export_logs(request.into_inner(), sink, metrics, gate, held)
                    .await
                    .map(|r| tonic::Response::new(Bytes::from(r.encode_to_vec())))
            });
        }
        Box::pin(async move {
            // Decoding costs CPU in proportion to the message: off the
            // async workers (the call has inflated it off them too).
            let body = request.into_inner();
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
                metrics.refused(RequestRejection::Failed);
                Status::internal("decoding the request failed (a bug; it is logged)")
            })?
            .map_err(|e| {
                metrics.refused(RequestRejection::Malformed);
                Status::invalid_argument(e.to_string())
            })?;
            // Held, for what was decoded, until the store has answered.
            drop(held);
            admitted.shrink_to(used);
            decoded.log_partial("OTLP/gRPC");
            let count = decoded.spans.len();
            metrics.decoded(count, decoded.rejected);
            let response = export_response(&decoded);
            if count > 0 {
                sink.accept(decoded.spans).await.map_err(|e| {
                    let reason = span_rejection(&e);
                    metrics.store_refused(count, reason);
                    metrics.refused(reason.into());
                    match e {
                        SinkError::Overloaded(m) => {
                            Status::unavailable(format!("overloaded, retry later: {m}"))
                        }
                        SinkError::TooLarge(m) => Status::invalid_argument(m),
                        SinkError::Limited { message, .. } => Status::resource_exhausted(message),
                        SinkError::Failed(m) => {
                            tracing::warn!(error = %m, "storing an OTLP/gRPC export failed");
                            Status::internal(format!("storing spans failed: {m}"))
                        }
                    }
                })?;
                metrics.accepted(count);
            }
            Ok(tonic::Response::new(Bytes::from(response.encode_to_vec())))
        })
    }
}

/// A logs `Export`: decode off the workers within the gate, store, answer.
async fn export_logs(
    body: Bytes,
    sink: Arc<dyn SpanSink>,
    metrics: ReceiverMetrics,
    gate: DecodeGate,
    held: Option<Admitted>,
) -> Result<opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse, Status> {
    let (mut admitted, budget) = gate.enter(logs_protobuf_bound(body.len())).await;
    let (decoded, used) = tokio::task::spawn_blocking(move || {
        let decoded = decode_logs_within(&body, budget);
        drop(body);
        chaintrace_model::memory::release_after(decoded.as_ref().map_or(budget, |(_, used)| *used));
        decoded
    })
    .await
    .map_err(|e| {
        tracing::error!(error = %e, "decoding an OTLP/gRPC logs export panicked");
        metrics.refused(RequestRejection::Failed);
        Status::internal("decoding the request failed (a bug; it is logged)")
    })?
    .map_err(|e| {
        metrics.refused(RequestRejection::Malformed);
        Status::invalid_argument(e.to_string())
    })?;
    drop(held);
    admitted.shrink_to(used);
    let count = decoded.logs.len();
    metrics.logs_decoded(count, decoded.rejected);
    let response = decoded.response();
    if count > 0 {
        sink.accept_logs(decoded.logs).await.map_err(|e| {
            let reason = span_rejection(&e);
            metrics.logs_store_refused(count, reason);
            metrics.refused(reason.into());
            match e {
                SinkError::Overloaded(m) => {
                    Status::unavailable(format!("overloaded, retry later: {m}"))
                }
                SinkError::TooLarge(m) => Status::invalid_argument(m),
                SinkError::Limited { message, .. } => Status::resource_exhausted(message),
                SinkError::Failed(m) => {
                    tracing::warn!(error = %m, "storing an OTLP/gRPC logs export failed");
                    Status::internal(format!("storing log records failed: {m}"))
                }
            }
        })?;
        metrics.logs_accepted(count);
    }
    Ok(response)
}

/// Like tonic's `ProstCodec` for the response; the request is handed on
/// as bytes (see [`Export`]), so that a malformed one is
/// `INVALID_ARGUMENT`, not `INTERNAL`.
#[derive(Debug, Clone, Copy, Default)]
struct OtlpCodec;

impl Codec for OtlpCodec {
    type Encode = Bytes;
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
    /// The response message, already encoded by the export.
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Self::Item, buf: &mut EncodeBuf<'_>) -> Result<(), Status> {
        bytes::BufMut::put_slice(buf, &item);
        Ok(())
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
