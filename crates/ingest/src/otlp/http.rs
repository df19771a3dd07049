//! The OTLP/HTTP receiver: `POST /v1/traces` and `POST /v1/logs` as an
//! axum [`Router`]. Both take the same path; only decoding, the sink call
//! and the response message differ ([`Signal`]).
//!
//! Accepts `application/x-protobuf` and `application/json` bodies, plain or
//! `Content-Encoding: gzip`, bounded by [`Limits::max_request_bytes`] while
//! reading (chunked bodies have no `Content-Length`) and again after
//! decompression. It decodes, hands the spans to the [`SpanSink`] and
//! answers only after the sink did.
//!
//! | outcome | status | body |
//! |---|---|---|
//! | stored (maybe some spans rejected) | 200 | `ExportTraceServiceResponse`, with `partial_success` when spans were rejected or links dropped |
//! | body not protobuf/JSON OTLP, bad gzip | 400 | error |
//! | body over the limit | 413 | error |
//! | body stalled (the listener's read timeout: an `io::Error` of kind `TimedOut`) | 408 | error |
//! | other `Content-Type` or `Content-Encoding` | 415 | error |
//! | sink [`SinkError::Overloaded`] | 503 + `Retry-After: 1` | error |
//! | sink [`SinkError::TooLarge`] | 413 | error |
//! | sink [`SinkError::Failed`] | 500 | error |
//! | sink [`SinkError::Limited`] (a tenant's limit) | 429 + `Retry-After` | error |
//!
//! Bodies answer in the request's format, as the OTLP spec asks: an error is
//! a `google.rpc.Status` (protobuf, or `{"code":..,"message":".."}` in
//! JSON) whose message names what was wrong; exporters log that message.
//! A 415 for an unknown `Content-Type` answers `text/plain`, since the
//! client's format is unknown.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use bytes::Bytes;
use prost::Message;

use super::body::{inflate_onto, read_gated, BodyError};
use super::json::{decode_shaped, json_shape, JsonShape};
use super::logs::{decode_logs_shaped, DecodedLogs};
use super::wire::{decode_logs_within, decode_wire_within};
use super::{
    export_response, logs_protobuf_bound, protobuf_bound, Admitted, DecodeError, DecodeGate,
    DecodedSpans, Limits, BODY_WAIT,
};
use crate::metrics::{Protocol, ReceiverMetrics, RequestRejection};
use crate::receive::span_rejection;
use crate::{SinkError, SpanSink};

/// The OTLP/HTTP endpoints, `POST /v1/traces` and `POST /v1/logs`,
/// feeding `sink`.
///
/// Other paths answer 404 (metrics are not taken), other methods 405.
///
/// ```no_run
/// # async fn run(sink: std::sync::Arc<dyn chaintrace_ingest::SpanSink>) -> std::io::Result<()> {
/// use chaintrace_ingest::otlp::{router, Limits};
/// let app = router(sink, Limits::default());
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:4318").await?;
/// axum::serve(listener, app).await
/// # }
/// ```
pub fn router(sink: Arc<dyn SpanSink>, limits: Limits) -> Router {
    Router::new()
        .route("/v1/traces", post(export_traces))
        .route("/v1/logs", post(export_logs))
        .with_state(Receiver {
            metrics: limits.metrics().receiver(Protocol::OtlpHttp).clone(),
            sink,
            limits,
        })
}

#[derive(Clone)]
struct Receiver {
    sink: Arc<dyn SpanSink>,
    limits: Limits,
    metrics: ReceiverMetrics,
}

/// The body format, from `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Protobuf,
    Json,
}

impl Format {
    fn content_type(self) -> &'static str {
        match self {
            Format::Protobuf => "application/x-protobuf",
            Format::Json => "application/json",
        }
    }
}

/// A refused request: HTTP status, the matching gRPC code for the
/// `google.rpc.Status` body, and a message naming what was wrong.
#[derive(Debug)]
struct Refusal {
    status: StatusCode,
    code: tonic::Code,
    message: String,
    /// `Retry-After` in seconds.
    retry_after_secs: Option<u64>,
}

impl Refusal {
    fn new(status: StatusCode, code: tonic::Code, message: impl Into<String>) -> Self {
        Refusal {
            status,
            code,
            message: message.into(),
            retry_after_secs: (status == StatusCode::SERVICE_UNAVAILABLE).then_some(1),
        }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Refusal::new(
            StatusCode::BAD_REQUEST,
            tonic::Code::InvalidArgument,
            message,
        )
    }

    fn too_large(message: impl Into<String>) -> Self {
        Refusal::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            tonic::Code::ResourceExhausted,
            message,
        )
    }

    fn unsupported(message: impl Into<String>) -> Self {
        Refusal::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            tonic::Code::InvalidArgument,
            message,
        )
    }

    fn into_response(self, format: Format) -> Response {
        let body = match format {
            Format::Protobuf => RpcStatus {
                code: self.code as i32,
                message: self.message,
            }
            .encode_to_vec(),
            Format::Json => serde_json::json!({"code": self.code as i32, "message": self.message})
                .to_string()
                .into_bytes(),
        };
        let mut response = (
            self.status,
            [(header::CONTENT_TYPE, format.content_type())],
            body,
        )
            .into_response();
        if let Some(secs) = self.retry_after_secs {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

/// `google.rpc.Status` without `details`, which OTLP error bodies carry.
#[derive(Clone, PartialEq, prost::Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

/// What an export carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Signal {
    Traces,
    Logs,
}

/// An export, decoded.
enum Decoded {
    Spans(DecodedSpans),
    Logs(DecodedLogs),
}

/// The OTLP response to an export, by signal.
enum Answer {
    Traces(opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse),
    Logs(opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse),
}

async fn export_traces(
    State(receiver): State<Receiver>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    export_signal(receiver, Signal::Traces, headers, body).await
}

async fn export_logs(State(receiver): State<Receiver>, headers: HeaderMap, body: Body) -> Response {
    export_signal(receiver, Signal::Logs, headers, body).await
}

async fn export_signal(
    receiver: Receiver,
    signal: Signal,
    headers: HeaderMap,
    body: Body,
) -> Response {
    receiver.metrics.request();
    let format = match request_format(&headers) {
        Ok(format) => format,
        Err(message) => {
            receiver.metrics.refused(RequestRejection::Unsupported);
            return (StatusCode::UNSUPPORTED_MEDIA_TYPE, message).into_response();
        }
    };
    match export(&receiver, signal, format, &headers, body).await {
        Ok(response) => success(format, &response),
        Err(refusal) => {
            receiver
                .metrics
                .refused(RequestRejection::from_status(refusal.status));
            tracing::debug!(status = %refusal.status, message = %refusal.message, "OTLP/HTTP export refused");
            refusal.into_response(format)
        }
    }
}

async fn export(
    receiver: &Receiver,
    signal: Signal,
    format: Format,
    headers: &HeaderMap,
    body: Body,
) -> Result<Answer, Refusal> {
    let gzip = is_gzip(headers)?;
    let limit = receiver.limits.max_request_bytes;
    // The body holds room in the body gate from its first byte until it
    // has been decoded, growing as it arrives and as it is inflated.
    let bodies = receiver.limits.bodies.clone();
    let mut held = Admitted::default();
    let raw = read_body(body, headers, limit, &bodies, &mut held).await?;
    receiver.metrics.bytes(raw.len());
    // Gunzip and decoding cost CPU in proportion to the body: off the async
    // workers, which must stay free to accept and answer. First gunzip and
    // bound what the body can decode to, then wait for that much room in
    // the decode gate, then decode within it.
    let runtime = tokio::runtime::Handle::current();
    let (bytes, shape, held) = off_the_workers(
        move || -> Result<(Bytes, Option<JsonShape>, Admitted), Refusal> {
            let bytes = if gzip {
                let compressed = raw.len();
                let inflated = gunzip(&raw, limit, |len| {
                    runtime.block_on(bodies.grow_to(&mut held, compressed + len, BODY_WAIT))
                })?;
                drop(raw);
                held.shrink_to(inflated.len());
                Bytes::from(inflated)
            } else {
                raw
            };
            let shape = match format {
                Format::Protobuf => None,
                Format::Json => Some(json_shape(&bytes).map_err(refusal)?),
            };
            Ok((bytes, shape, held))
        },
    )
    .await??;
    let bound = match (shape, signal) {
        (Some(shape), _) => shape.bound,
        (None, Signal::Traces) => protobuf_bound(bytes.len()),
        (None, Signal::Logs) => logs_protobuf_bound(bytes.len()),
    };
    let (mut admitted, budget) = receiver.limits.gate.enter(bound).await;
    let (decoded, used) = off_the_workers(move || {
        let decoded = match (shape, signal) {
            (None, Signal::Traces) => {
                decode_wire_within(&bytes, budget).map(|(d, used)| (Decoded::Spans(d), used))
            }
            (Some(shape), Signal::Traces) => {
                decode_shaped(&bytes, shape, budget).map(|d| (Decoded::Spans(d), bound))
            }
            (None, Signal::Logs) => {
                decode_logs_within(&bytes, budget).map(|(d, used)| (Decoded::Logs(d), used))
            }
            (Some(shape), Signal::Logs) => {
                decode_logs_shaped(&bytes, shape, budget).map(|d| (Decoded::Logs(d), bound))
            }
        };
        let peak = match &decoded {
            Ok((_, used)) => *used,
            Err(_) => budget,
        };
        drop(bytes);
        chaintrace_model::memory::release_after(peak);
        decoded
    })
    .await?
    .map_err(refusal)?;
    // The body is gone; what it decoded to is held, until the store has
    // answered.
    drop(held);
    admitted.shrink_to(used);
    let decoded = match decoded {
        Decoded::Spans(decoded) => decoded,
        Decoded::Logs(decoded) => return store_logs(receiver, decoded).await.map(Answer::Logs),
    };
    decoded.log_partial("OTLP/HTTP");
    let count = decoded.spans.len();
    receiver.metrics.decoded(count, decoded.rejected);

    let response = export_response(&decoded);
    if count > 0 {
        receiver
            .sink
            .accept(decoded.spans)
            .await
            .inspect_err(|e| receiver.metrics.store_refused(count, span_rejection(e)))
            .map_err(|e| sink_refusal(e, "spans"))?;
        receiver.metrics.accepted(count);
    }
    Ok(Answer::Traces(response))
}

/// Stores a logs export's records; answers its response.
async fn store_logs(
    receiver: &Receiver,
    decoded: DecodedLogs,
) -> Result<opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse, Refusal> {
    if decoded.rejected > 0 {
        tracing::debug!(rejected = decoded.rejected, first = ?decoded.errors.first(), "OTLP/HTTP logs export partly rejected");
    }
    let count = decoded.logs.len();
    receiver.metrics.logs_decoded(count, decoded.rejected);
    let response = decoded.response();
    if count > 0 {
        receiver
            .sink
            .accept_logs(decoded.logs)
            .await
            .inspect_err(|e| {
                receiver
                    .metrics
                    .logs_store_refused(count, span_rejection(e))
            })
            .map_err(|e| sink_refusal(e, "log records"))?;
        receiver.metrics.logs_accepted(count);
    }
    Ok(response)
}

/// The answer when the sink refused a batch of `what`.
fn sink_refusal(e: SinkError, what: &str) -> Refusal {
    match e {
        SinkError::Overloaded(m) => Refusal::new(
            StatusCode::SERVICE_UNAVAILABLE,
            tonic::Code::Unavailable,
            format!("overloaded, retry later: {m}"),
        ),
        SinkError::TooLarge(m) => Refusal::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            tonic::Code::InvalidArgument,
            m,
        ),
        SinkError::Limited {
            message,
            retry_after_secs,
        } => Refusal {
            retry_after_secs: Some(retry_after_secs),
            ..Refusal::new(
                StatusCode::TOO_MANY_REQUESTS,
                tonic::Code::ResourceExhausted,
                message,
            )
        },
        SinkError::Failed(m) => {
            tracing::warn!(error = %m, "storing an OTLP/HTTP export failed");
            Refusal::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                tonic::Code::Internal,
                format!("storing {what} failed: {m}"),
            )
        }
    }
}

/// A refusal made in front of the receiver (by an API-key gate), worded as
/// OTLP/HTTP words its own: a `google.rpc.Status` in the request's format
/// (protobuf when the request's format is not known), with the gRPC code
/// that matches `status` (401 UNAUTHENTICATED, 403 PERMISSION_DENIED, 429
/// RESOURCE_EXHAUSTED).
pub fn refusal_response(status: StatusCode, message: &str, request: &HeaderMap) -> Response {
    let code = match status {
        StatusCode::UNAUTHORIZED => tonic::Code::Unauthenticated,
        StatusCode::FORBIDDEN => tonic::Code::PermissionDenied,
        StatusCode::TOO_MANY_REQUESTS => tonic::Code::ResourceExhausted,
        StatusCode::BAD_REQUEST => tonic::Code::InvalidArgument,
        _ => tonic::Code::Unknown,
    };
    let format = request_format(request).unwrap_or(Format::Protobuf);
    Refusal::new(status, code, message).into_response(format)
}

/// The format named by `Content-Type`, parameters such as `charset` ignored.
fn request_format(headers: &HeaderMap) -> Result<Format, String> {
    const WANT: &str = "want application/x-protobuf or application/json";
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Err(format!("missing Content-Type: {WANT}"));
    };
    let text = String::from_utf8_lossy(value.as_bytes());
    let essence = text.split(';').next().unwrap_or("").trim();
    if essence.eq_ignore_ascii_case("application/x-protobuf") {
        Ok(Format::Protobuf)
    } else if essence.eq_ignore_ascii_case("application/json") {
        Ok(Format::Json)
    } else {
        Err(format!("unsupported Content-Type {text:?}: {WANT}"))
    }
}

/// Runs `work` on the blocking pool; a panic in it is a logged 500.
async fn off_the_workers<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Refusal> {
    tokio::task::spawn_blocking(work).await.map_err(|e| {
        tracing::error!(error = %e, "decoding an OTLP/HTTP export panicked");
        Refusal::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            tonic::Code::Internal,
            "decoding the request failed (a bug; it is logged)",
        )
    })
}

/// The answer to a body that does not decode: 413 when it is too large
/// once decoded, 400 otherwise.
fn refusal(e: DecodeError) -> Refusal {
    match e {
        DecodeError::TooLarge(_) => Refusal::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            tonic::Code::InvalidArgument,
            e.to_string(),
        ),
        e => Refusal::bad_request(e.to_string()),
    }
}

/// Whether the body is gzip-compressed; other encodings are refused.
fn is_gzip(headers: &HeaderMap) -> Result<bool, Refusal> {
    let Some(value) = headers.get(header::CONTENT_ENCODING) else {
        return Ok(false);
    };
    let text = String::from_utf8_lossy(value.as_bytes());
    let encoding = text.trim();
    if encoding.is_empty() || encoding.eq_ignore_ascii_case("identity") {
        Ok(false)
    } else if encoding.eq_ignore_ascii_case("gzip") || encoding.eq_ignore_ascii_case("x-gzip") {
        Ok(true)
    } else {
        Err(Refusal::unsupported(format!(
            "unsupported Content-Encoding {text:?}: want gzip or identity"
        )))
    }
}

/// Reads the whole body, refusing it as soon as it passes `limit` bytes,
/// growing `held` in `bodies` to cover what has arrived.
async fn read_body(
    body: Body,
    headers: &HeaderMap,
    limit: usize,
    bodies: &DecodeGate,
    held: &mut Admitted,
) -> Result<Bytes, Refusal> {
    let too_large =
        || Refusal::too_large(format!("request body exceeds the limit of {limit} bytes"));
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let capacity = declared.map_or(0, |n| usize::try_from(n).unwrap_or(limit));
    read_gated(body, limit, capacity, bodies, held)
        .await
        .map_err(|e| match e {
            BodyError::TooLarge => too_large(),
            BodyError::TimedOut(e) => Refusal::new(
                StatusCode::REQUEST_TIMEOUT,
                tonic::Code::DeadlineExceeded,
                format!("could not read the request body: {e}"),
            ),
            BodyError::GateFull => bodies_full(),
            BodyError::Unreadable(e) | BodyError::BadGzip(e) => {
                Refusal::bad_request(format!("could not read the request body: {e}"))
            }
        })
}

/// The refusal when request bodies in flight fill their gate for
/// [`BODY_WAIT`]: retryable, as the SDKs retry 503 with backoff.
fn bodies_full() -> Refusal {
    Refusal::new(
        StatusCode::SERVICE_UNAVAILABLE,
        tonic::Code::Unavailable,
        "overloaded, retry later: request bodies in flight fill their memory budget",
    )
}

/// Inflates a gzip body of at most `limit` bytes inflated, asking `room`
/// for room as it goes.
fn gunzip(
    compressed: &[u8],
    limit: usize,
    room: impl FnMut(usize) -> bool,
) -> Result<Vec<u8>, Refusal> {
    let mut out = Vec::new();
    inflate_onto(&mut out, compressed, limit, room).map_err(|e| match e {
        BodyError::TooLarge => Refusal::too_large(format!(
            "decompressed request body exceeds the limit of {limit} bytes"
        )),
        BodyError::GateFull => bodies_full(),
        BodyError::BadGzip(e) | BodyError::TimedOut(e) | BodyError::Unreadable(e) => {
            Refusal::bad_request(format!("invalid gzip body: {e}"))
        }
    })?;
    Ok(out)
}

/// 200 with the response in the request's format. In JSON an absent
/// `partial_success` is left out (`{}`), as the spec asks for full success.
fn success(format: Format, response: &Answer) -> Response {
    let body = match (format, response) {
        (Format::Protobuf, Answer::Traces(r)) => r.encode_to_vec(),
        (Format::Protobuf, Answer::Logs(r)) => r.encode_to_vec(),
        (Format::Json, Answer::Traces(r)) => match &r.partial_success {
            Some(partial) => serde_json::json!({
                "partialSuccess": {
                    "rejectedSpans": partial.rejected_spans,
                    "errorMessage": partial.error_message,
                }
            }),
            None => serde_json::json!({}),
        }
        .to_string()
        .into_bytes(),
        (Format::Json, Answer::Logs(r)) => match &r.partial_success {
            Some(partial) => serde_json::json!({
                "partialSuccess": {
                    "rejectedLogRecords": partial.rejected_log_records,
                    "errorMessage": partial.error_message,
                }
            }),
            None => serde_json::json!({}),
        }
        .to_string()
        .into_bytes(),
    };
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, format.content_type())],
        body,
    )
        .into_response()
}

#[cfg(test)]
#[path = "http_tests.rs"]
mod tests;
