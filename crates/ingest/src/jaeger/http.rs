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
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;

use super::{decode_batch_within, ThriftProtocol, THRIFT_BYTES_PER_BODY_BYTE};
use crate::metrics::{Protocol, ReceiverMetrics};
use crate::otlp::Limits;
use crate::receive::{counted, decode_within, read_body, store, summary, Refused};
use crate::SpanSink;

/// `POST /api/traces` for Jaeger Thrift batches.
pub fn collector_router(sink: Arc<dyn SpanSink>, limits: Limits) -> Router {
    Router::new()
        .route("/api/traces", post(post_traces))
        .with_state(Receiver {
            metrics: limits.metrics().receiver(Protocol::JaegerHttp).clone(),
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
    match counted(&receiver.metrics, receive(&receiver, &headers, body)).await {
        Ok(accepted) => (StatusCode::ACCEPTED, accepted).into_response(),
        Err(refused) => refused.plain(),
    }
}

async fn receive(receiver: &Receiver, headers: &HeaderMap, body: Body) -> Result<String, Refused> {
    if !is_thrift(headers) {
        return Err(Refused::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "want Content-Type: application/x-thrift (a Jaeger Batch in Thrift binary)",
        ));
    }
    if headers
        .get(header::CONTENT_ENCODING)
        .is_some_and(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"))
    {
        return Err(Refused::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "compressed Jaeger Thrift bodies are not taken: send them uncompressed",
        ));
    }
    let limits = &receiver.limits;
    let body = read_body(limits, &receiver.metrics, headers, body, false, |bytes| {
        Ok(bytes.len().saturating_mul(THRIFT_BYTES_PER_BODY_BYTE))
    })
    .await?;
    let (decoded, _admitted) = decode_within(limits, body, |bytes, budget| {
        decode_batch_within(bytes, ThriftProtocol::Binary, budget).map_err(|e| {
            let status = if e.is_over_budget() {
                StatusCode::PAYLOAD_TOO_LARGE
            } else {
                StatusCode::BAD_REQUEST
            };
            Refused::new(status, e.to_string())
        })
    })
    .await?;
    let accepted = summary(&decoded);
    store(
        &receiver.sink,
        &receiver.metrics,
        decoded,
        "Jaeger Thrift HTTP",
    )
    .await?;
    Ok(accepted)
}
