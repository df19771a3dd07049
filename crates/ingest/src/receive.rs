//! The steps the HTTP span receivers besides OTLP share (Jaeger collector,
//! Zipkin, JSON spans): read the body within the body gate, inflate gzip
//! off the async workers, wait in the decode gate for an upper bound of
//! what the body can become, decode off the workers within it, store.
//! Each receiver chooses its format, its bound and how its answers look;
//! the limits, their messages and their statuses are the same for all.
//! (OTLP/HTTP uses the same body reader and inflater but words its
//! refusals for gRPC codes too.)
//!
//! Counting is here too, once for all three: [`counted`] counts the request
//! and its refusal, [`read_body`] the bytes, [`store`] the spans.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;

use crate::metrics::{ReceiverMetrics, RequestRejection, SpanRejection};
use crate::otlp::body::{inflate_onto, read_gated, BodyError};
use crate::otlp::{Admitted, DecodedSpans, Limits, BODY_WAIT};
use crate::{SinkError, SpanSink};

/// Runs a receiver's handling of one request, counting the request and,
/// when it is refused, why (from the status it is answered with).
pub(crate) async fn counted<T>(
    metrics: &ReceiverMetrics,
    handling: impl std::future::Future<Output = Result<T, Refused>>,
) -> Result<T, Refused> {
    metrics.request();
    let outcome = handling.await;
    if let Err(refused) = &outcome {
        metrics.refused(RequestRejection::from_status(refused.status));
    }
    outcome
}

/// A refused request: its status and a message naming what was wrong.
#[derive(Debug)]
pub(crate) struct Refused {
    pub(crate) status: StatusCode,
    pub(crate) message: String,
    /// `Retry-After` in seconds, when the sender was told when to retry.
    pub(crate) retry_after_secs: Option<u64>,
}

impl Refused {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Refused {
            status,
            message: message.into(),
            retry_after_secs: (status == StatusCode::SERVICE_UNAVAILABLE).then_some(1),
        }
    }

    fn retry_after(&self, mut response: Response) -> Response {
        if let Some(secs) = self.retry_after_secs {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }

    /// As plain text (what Jaeger's and Zipkin's servers answer).
    pub(crate) fn plain(self) -> Response {
        let response = (self.status, self.message.clone()).into_response();
        self.retry_after(response)
    }

    /// As `{"error": "…"}`, like the rest of chaintrace's API.
    pub(crate) fn json(self) -> Response {
        let response = (
            self.status,
            axum::Json(serde_json::json!({ "error": self.message })),
        )
            .into_response();
        self.retry_after(response)
    }
}

/// Whether `Content-Encoding` says gzip; anything but gzip and identity
/// is refused with 415.
pub(crate) fn is_gzip(headers: &HeaderMap) -> Result<bool, Refused> {
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
        Err(Refused::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("unsupported Content-Encoding {text:?}: want gzip or identity"),
        ))
    }
}

fn bodies_full() -> Refused {
    Refused::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "overloaded, retry later: request bodies in flight fill their memory budget",
    )
}

async fn off_the_workers<T: Send + 'static>(
    what: &'static str,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Refused> {
    tokio::task::spawn_blocking(work).await.map_err(|e| {
        tracing::error!(error = %e, "{what} panicked");
        Refused::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "decoding the request failed (a bug; it is logged)",
        )
    })
}

/// A body read whole, inflated, and measured, holding its room in the
/// body gate.
pub(crate) struct ReadBody {
    pub(crate) bytes: Bytes,
    /// The most the body can decode to, from the receiver's `bound`.
    pub(crate) bound: usize,
    held: Admitted,
}

/// Reads the body (at most `--max-request-bytes`, after gunzip when
/// `gzip`), then runs `bound` over it off the workers: the most it can
/// decode to, or why it cannot be decoded at all.
pub(crate) async fn read_body(
    limits: &Limits,
    metrics: &ReceiverMetrics,
    headers: &HeaderMap,
    body: Body,
    gzip: bool,
    bound: impl FnOnce(&[u8]) -> Result<usize, Refused> + Send + 'static,
) -> Result<ReadBody, Refused> {
    let limit = limits.max_request_bytes;
    let too_large = move || {
        Refused::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body exceeds the limit of {limit} bytes"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let capacity = declared.map_or(0, |n| usize::try_from(n).unwrap_or(limit));
    let bodies = limits.bodies.clone();
    let mut held = Admitted::default();
    let raw = read_gated(body, limit, capacity, &bodies, &mut held)
        .await
        .map_err(|e| match e {
            BodyError::TooLarge => too_large(),
            BodyError::TimedOut(e) => Refused::new(
                StatusCode::REQUEST_TIMEOUT,
                format!("could not read the request body: {e}"),
            ),
            BodyError::GateFull => bodies_full(),
            BodyError::Unreadable(e) | BodyError::BadGzip(e) => Refused::new(
                StatusCode::BAD_REQUEST,
                format!("could not read the request body: {e}"),
            ),
        })?;
    metrics.bytes(raw.len());
    let runtime = tokio::runtime::Handle::current();
    off_the_workers("inflating a request body", move || {
        let bytes = if gzip {
            let mut out = Vec::new();
            let compressed = raw.len();
            inflate_onto(&mut out, &raw, limit, |len| {
                runtime.block_on(bodies.grow_to(&mut held, compressed + len, BODY_WAIT))
            })
            .map_err(|e| match e {
                BodyError::TooLarge => Refused::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("decompressed request body exceeds the limit of {limit} bytes"),
                ),
                BodyError::GateFull => bodies_full(),
                BodyError::BadGzip(e) | BodyError::TimedOut(e) | BodyError::Unreadable(e) => {
                    Refused::new(StatusCode::BAD_REQUEST, format!("invalid gzip body: {e}"))
                }
            })?;
            drop(raw);
            held.shrink_to(out.len());
            Bytes::from(out)
        } else {
            raw
        };
        let bound = bound(&bytes)?;
        Ok(ReadBody { bytes, bound, held })
    })
    .await?
}

/// Waits in the decode gate for the body's bound, then runs `decode` with
/// the bytes it may take, off the workers. Returns what it decoded and the
/// gate's permit for what that holds, to keep until the store answers.
pub(crate) async fn decode_within<T: Send + 'static>(
    limits: &Limits,
    body: ReadBody,
    decode: impl FnOnce(&[u8], usize) -> Result<(T, usize), Refused> + Send + 'static,
) -> Result<(T, Admitted), Refused> {
    let ReadBody { bytes, bound, held } = body;
    let (mut admitted, budget) = limits.gate.enter(bound).await;
    let decoded = off_the_workers("decoding a request", move || {
        let decoded = decode(&bytes, budget);
        drop(bytes);
        chaintrace_model::memory::release_after(decoded.as_ref().map_or(budget, |(_, used)| *used));
        decoded
    })
    .await?;
    // The body is gone; what it decoded to is held until the store answers.
    drop(held);
    let (decoded, used) = decoded?;
    admitted.shrink_to(used);
    Ok((decoded, admitted))
}

/// Hands the spans to the store, counting them; a refusal as the sender
/// should see it.
pub(crate) async fn store(
    sink: &Arc<dyn SpanSink>,
    metrics: &ReceiverMetrics,
    decoded: DecodedSpans,
    what: &str,
) -> Result<(), Refused> {
    decoded.log_partial(what);
    let count = decoded.spans.len();
    metrics.decoded(count, decoded.rejected);
    if count == 0 {
        return Ok(());
    }
    match sink.accept(decoded.spans).await {
        Ok(()) => {
            metrics.accepted(count);
            Ok(())
        }
        Err(e) => {
            metrics.store_refused(count, span_rejection(&e));
            Err(match e {
                SinkError::Overloaded(m) => Refused::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("overloaded, retry later: {m}"),
                ),
                SinkError::TooLarge(m) => Refused::new(StatusCode::PAYLOAD_TOO_LARGE, m),
                SinkError::Limited {
                    message,
                    retry_after_secs,
                } => Refused {
                    retry_after_secs: Some(retry_after_secs),
                    ..Refused::new(StatusCode::TOO_MANY_REQUESTS, message)
                },
                SinkError::Failed(m) => {
                    tracing::warn!(error = %m, "storing {what} spans failed");
                    Refused::new(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        format!("storing spans failed: {m}"),
                    )
                }
            })
        }
    }
}

/// Why the store's refusal rejected spans, as counted.
pub(crate) fn span_rejection(e: &SinkError) -> SpanRejection {
    match e {
        SinkError::Overloaded(_) => SpanRejection::Overloaded,
        SinkError::TooLarge(_) => SpanRejection::TooLarge,
        SinkError::Failed(_) => SpanRejection::Failed,
        SinkError::Limited { .. } => SpanRejection::Limited,
    }
}

/// `accepted N spans`, and what was rejected and why.
pub(crate) fn summary(decoded: &DecodedSpans) -> String {
    let taken = decoded.spans.len();
    if decoded.rejected > 0 {
        format!(
            "accepted {taken} spans, rejected {}: {}",
            decoded.rejected,
            decoded.error_message()
        )
    } else {
        format!("accepted {taken} spans")
    }
}
