//! The Jaeger collector's HTTP receiver: `POST /api/traces` with one
//! Thrift binary `Batch` (`Content-Type: application/x-thrift`), what
//! Jaeger clients and OpenTelemetry's Jaeger exporter send when given a
//! collector endpoint instead of an agent.
//!
//! It meets the same bounds as the OTLP receivers, sharing their gates
//! (give it a clone of the same [`Limits`]): the body takes room in the
//! body gate as it arrives, decoding waits for room for an upper bound of
//! what the body can become and decodes within it, off the async workers.
//!
//! | outcome | answer |
//! |---|---|
//! | stored (spans with bad ids rejected and counted) | 202, a line saying how many were taken |
//! | not `application/x-thrift` / `application/vnd.apache.thrift.binary`, or compressed | 415 |
//! | body over `--max-request-bytes`, or decoding past its budget | 413 |
//! | not a Thrift binary `Batch` | 400 naming the byte and the field |
//! | store or gates over their budget | 503 with `Retry-After` |

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;

use super::{decode_batch_within, ThriftProtocol, THRIFT_BYTES_PER_BODY_BYTE};
use crate::otlp::body::{read_gated, BodyError};
use crate::otlp::{Admitted, Limits};
use crate::{SinkError, SpanSink};

/// `POST /api/traces` for Jaeger Thrift batches.
pub fn collector_router(sink: Arc<dyn SpanSink>, limits: Limits) -> Router {
    Router::new()
        .route("/api/traces", post(post_traces))
        .with_state(Receiver { sink, limits })
}

#[derive(Clone)]
struct Receiver {
    sink: Arc<dyn SpanSink>,
    limits: Limits,
}

fn answer(status: StatusCode, message: impl Into<String>) -> Response {
    let mut response = (status, message.into()).into_response();
    if status == StatusCode::SERVICE_UNAVAILABLE {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}

fn is_thrift(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return false;
    };
    let text = String::from_utf8_lossy(value.as_bytes());
    let essence = text.split(';').next().unwrap_or("").trim();
    essence.eq_ignore_ascii_case("application/x-thrift")
        || essence.eq_ignore_ascii_case("application/vnd.apache.thrift.binary")
}

async fn post_traces(State(receiver): State<Receiver>, headers: HeaderMap, body: Body) -> Response {
    if !is_thrift(&headers) {
        return answer(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "want Content-Type: application/x-thrift (a Jaeger Batch in Thrift binary)",
        );
    }
    if headers
        .get(header::CONTENT_ENCODING)
        .is_some_and(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"))
    {
        return answer(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "compressed Jaeger Thrift bodies are not taken: send them uncompressed",
        );
    }
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
        return too_large();
    }
    let capacity = declared.map_or(0, |n| usize::try_from(n).unwrap_or(limit));
    let mut held = Admitted::default();
    let raw = match read_gated(body, limit, capacity, &limits.bodies, &mut held).await {
        Ok(raw) => raw,
        Err(BodyError::TooLarge) => return too_large(),
        Err(BodyError::TimedOut(e)) => {
            return answer(
                StatusCode::REQUEST_TIMEOUT,
                format!("could not read the request body: {e}"),
            )
        }
        Err(BodyError::GateFull) => {
            return answer(
                StatusCode::SERVICE_UNAVAILABLE,
                "overloaded, retry later: request bodies in flight fill their memory budget",
            )
        }
        Err(BodyError::Unreadable(e) | BodyError::BadGzip(e)) => {
            return answer(
                StatusCode::BAD_REQUEST,
                format!("could not read the request body: {e}"),
            )
        }
    };
    let bound = raw.len().saturating_mul(THRIFT_BYTES_PER_BODY_BYTE);
    let (mut admitted, budget) = limits.gate.enter(bound).await;
    let decoded = tokio::task::spawn_blocking(move || {
        let decoded = decode_batch_within(&raw, ThriftProtocol::Binary, budget);
        drop(raw);
        chaintrace_model::memory::release_after(decoded.as_ref().map_or(budget, |(_, used)| *used));
        decoded
    })
    .await;
    // The body is gone; what it decoded to is held until the store answers.
    drop(held);
    let (decoded, used) = match decoded {
        Ok(Ok(done)) => done,
        Ok(Err(e)) if e.is_over_budget() => {
            return answer(StatusCode::PAYLOAD_TOO_LARGE, e.to_string())
        }
        Ok(Err(e)) => return answer(StatusCode::BAD_REQUEST, e.to_string()),
        Err(e) => {
            tracing::error!(error = %e, "decoding a Jaeger Thrift batch panicked");
            return answer(
                StatusCode::INTERNAL_SERVER_ERROR,
                "decoding the request failed (a bug; it is logged)",
            );
        }
    };
    admitted.shrink_to(used);
    decoded.log_partial("Jaeger Thrift HTTP");
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
        if let Err(e) = receiver.sink.accept(decoded.spans).await {
            return match e {
                SinkError::Overloaded(m) => answer(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("overloaded, retry later: {m}"),
                ),
                SinkError::TooLarge(m) => answer(StatusCode::PAYLOAD_TOO_LARGE, m),
                SinkError::Failed(m) => {
                    tracing::warn!(error = %m, "storing a Jaeger Thrift batch failed");
                    answer(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        format!("storing spans failed: {m}"),
                    )
                }
            };
        }
    }
    answer(StatusCode::ACCEPTED, summary)
}
