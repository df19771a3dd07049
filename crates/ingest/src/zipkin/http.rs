//! Zipkin's HTTP receiver: `POST /api/v2/spans` with a JSON array of v2
//! spans (`application/json`) or a `ListOfSpans` (`application/x-protobuf`),
//! plain or `Content-Encoding: gzip` — what Zipkin reporters and
//! OpenTelemetry's Zipkin exporters send.
//!
//! It meets the same bounds as the OTLP and Jaeger receivers, sharing
//! their gates (give it a clone of the same [`Limits`]): the body takes
//! room in the body gate as it arrives and as it inflates, decoding waits
//! for room for an upper bound of what the body can become and decodes
//! within it, off the async workers.
//!
//! | outcome | answer |
//! |---|---|
//! | stored (spans with bad ids rejected and counted) | 202, as Zipkin answers, with a line saying how many were taken |
//! | not JSON or protobuf, or compressed other than gzip | 415 |
//! | body over `--max-request-bytes` (sent or inflated), or decoding past its budget | 413 |
//! | not Zipkin v2 JSON or protobuf, bad gzip, JSON nested too deep | 400 naming the field or position |
//! | store or gates over their budget | 503 with `Retry-After` |
//! | store failed | 500 |

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use bytes::Bytes;

use super::json::json_bound;
use super::proto::protobuf_bound;
use super::{decode_json_within, decode_protobuf_within, ZipkinError};
use crate::otlp::body::{inflate_onto, read_gated, BodyError};
use crate::otlp::{Admitted, Limits, BODY_WAIT};
use crate::{SinkError, SpanSink};

/// `POST /api/v2/spans` for Zipkin v2 spans, JSON or protobuf.
///
/// ```no_run
/// # async fn run(sink: std::sync::Arc<dyn chaintrace_ingest::SpanSink>) -> std::io::Result<()> {
/// use chaintrace_ingest::{otlp::Limits, zipkin::zipkin_router};
/// let app = zipkin_router(sink, Limits::default());
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:9411").await?;
/// axum::serve(listener, app).await
/// # }
/// ```
pub fn zipkin_router(sink: Arc<dyn SpanSink>, limits: Limits) -> Router {
    Router::new()
        .route("/api/v2/spans", post(post_spans))
        .with_state(Receiver { sink, limits })
}

#[derive(Clone)]
struct Receiver {
    sink: Arc<dyn SpanSink>,
    limits: Limits,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    Protobuf,
}

/// What the sender hears: a status and one line of text.
struct Answer {
    status: StatusCode,
    message: String,
}

fn answer(status: StatusCode, message: impl Into<String>) -> Answer {
    Answer {
        status,
        message: message.into(),
    }
}

impl IntoResponse for Answer {
    fn into_response(self) -> Response {
        let mut response = (self.status, self.message).into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

/// The body format by `Content-Type`; a body without one is read as JSON,
/// as Zipkin's server reads it.
fn format(headers: &HeaderMap) -> Result<Format, Answer> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Ok(Format::Json);
    };
    let text = String::from_utf8_lossy(value.as_bytes());
    let essence = text.split(';').next().unwrap_or("").trim();
    if essence.eq_ignore_ascii_case("application/json") {
        Ok(Format::Json)
    } else if essence.eq_ignore_ascii_case("application/x-protobuf")
        || essence.eq_ignore_ascii_case("application/protobuf")
    {
        Ok(Format::Protobuf)
    } else {
        Err(answer(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "unsupported Content-Type {text:?}: want application/json (Zipkin v2 spans) \
                 or application/x-protobuf (ListOfSpans)"
            ),
        ))
    }
}

/// Whether the body is gzip; other encodings are refused.
fn is_gzip(headers: &HeaderMap) -> Result<bool, Answer> {
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
        Err(answer(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("unsupported Content-Encoding {text:?}: want gzip or identity"),
        ))
    }
}

fn overloaded_bodies() -> Answer {
    answer(
        StatusCode::SERVICE_UNAVAILABLE,
        "overloaded, retry later: request bodies in flight fill their memory budget",
    )
}

fn refusal(e: ZipkinError) -> Answer {
    match e {
        ZipkinError::TooLarge(_) => answer(StatusCode::PAYLOAD_TOO_LARGE, e.to_string()),
        e => answer(StatusCode::BAD_REQUEST, e.to_string()),
    }
}

/// Runs `work` on the blocking pool; a panic in it is a logged 500.
async fn off_the_workers<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Answer> {
    tokio::task::spawn_blocking(work).await.map_err(|e| {
        tracing::error!(error = %e, "decoding a Zipkin body panicked");
        answer(
            StatusCode::INTERNAL_SERVER_ERROR,
            "decoding the request failed (a bug; it is logged)",
        )
    })
}

async fn post_spans(State(receiver): State<Receiver>, headers: HeaderMap, body: Body) -> Response {
    match receive(&receiver, &headers, body).await {
        Ok(answer) | Err(answer) => answer.into_response(),
    }
}

async fn receive(receiver: &Receiver, headers: &HeaderMap, body: Body) -> Result<Answer, Answer> {
    let format = format(headers)?;
    let gzip = is_gzip(headers)?;
    let limits = &receiver.limits;
    let limit = limits.max_request_bytes;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let too_large = || {
        answer(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body exceeds the limit of {limit} bytes"),
        )
    };
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let capacity = declared.map_or(0, |n| usize::try_from(n).unwrap_or(limit));
    // The body holds room in the body gate from its first byte until it
    // has been decoded, growing as it arrives and as it is inflated.
    let bodies = limits.bodies.clone();
    let mut held = Admitted::default();
    let raw = read_gated(body, limit, capacity, &bodies, &mut held)
        .await
        .map_err(|e| match e {
            BodyError::TooLarge => too_large(),
            BodyError::TimedOut(e) => answer(
                StatusCode::REQUEST_TIMEOUT,
                format!("could not read the request body: {e}"),
            ),
            BodyError::GateFull => overloaded_bodies(),
            BodyError::Unreadable(e) | BodyError::BadGzip(e) => answer(
                StatusCode::BAD_REQUEST,
                format!("could not read the request body: {e}"),
            ),
        })?;

    // Inflating and scanning cost CPU in proportion to the body: off the
    // async workers, which must stay free to accept and answer. The
    // inflater asks for room as it goes, waiting on the runtime from the
    // blocking thread.
    let runtime = tokio::runtime::Handle::current();
    let (bytes, bound, held) = off_the_workers(move || {
        let bytes = if gzip {
            let mut out = Vec::new();
            let compressed = raw.len();
            inflate_onto(&mut out, &raw, limit, |len| {
                runtime.block_on(bodies.grow_to(&mut held, compressed + len, BODY_WAIT))
            })
            .map_err(|e| match e {
                BodyError::TooLarge => answer(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("decompressed request body exceeds the limit of {limit} bytes"),
                ),
                BodyError::GateFull => overloaded_bodies(),
                BodyError::BadGzip(e) | BodyError::TimedOut(e) | BodyError::Unreadable(e) => {
                    answer(StatusCode::BAD_REQUEST, format!("invalid gzip body: {e}"))
                }
            })?;
            drop(raw);
            held.shrink_to(out.len());
            Bytes::from(out)
        } else {
            raw
        };
        let bound = match format {
            Format::Json => json_bound(&bytes).map_err(refusal)?,
            Format::Protobuf => protobuf_bound(&bytes).map_err(refusal)?,
        };
        Ok::<_, Answer>((bytes, bound, held))
    })
    .await??;

    let (mut admitted, budget) = limits.gate.enter(bound).await;
    let decoded = off_the_workers(move || {
        let decoded = match format {
            Format::Json => decode_json_within(&bytes, budget),
            Format::Protobuf => decode_protobuf_within(&bytes, budget),
        };
        drop(bytes);
        chaintrace_model::memory::release_after(decoded.as_ref().map_or(budget, |(_, used)| *used));
        decoded
    })
    .await?;
    // The body is gone; what it decoded to is held until the store answers.
    drop(held);
    let (decoded, used) = decoded.map_err(refusal)?;
    admitted.shrink_to(used);
    decoded.log_partial("Zipkin");

    let taken = decoded.spans.len();
    let summary = if decoded.rejected > 0 {
        format!(
            "accepted {taken} spans, rejected {}: {}",
            decoded.rejected,
            decoded.error_message()
        )
    } else {
        format!("accepted {taken} spans")
    };
    if taken > 0 {
        receiver
            .sink
            .accept(decoded.spans)
            .await
            .map_err(|e| match e {
                SinkError::Overloaded(m) => answer(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("overloaded, retry later: {m}"),
                ),
                SinkError::TooLarge(m) => answer(StatusCode::PAYLOAD_TOO_LARGE, m),
                SinkError::Failed(m) => {
                    tracing::warn!(error = %m, "storing Zipkin spans failed");
                    answer(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        format!("storing spans failed: {m}"),
                    )
                }
            })?;
    }
    Ok(answer(StatusCode::ACCEPTED, summary))
}
