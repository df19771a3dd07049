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
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;

use super::json::json_bound;
use super::proto::protobuf_bound;
use super::{decode_json_within, decode_protobuf_within, ZipkinError};
use crate::metrics::{Protocol, ReceiverMetrics};
use crate::otlp::Limits;
use crate::receive::{counted, decode_within, is_gzip, read_body, store, summary, Refused};
use crate::SpanSink;

/// `POST /api/v2/spans` for Zipkin v2 spans.
pub fn zipkin_router(sink: Arc<dyn SpanSink>, limits: Limits) -> Router {
    Router::new()
        .route("/api/v2/spans", post(post_spans))
        .with_state(Receiver {
            metrics: limits.metrics().receiver(Protocol::Zipkin).clone(),
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    Protobuf,
}

/// The body format from `Content-Type`; none is JSON, as Zipkin takes it.
fn format(headers: &HeaderMap) -> Result<Format, Refused> {
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
        Err(Refused::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "unsupported Content-Type {text:?}: want application/json (Zipkin v2 spans) \
                 or application/x-protobuf (ListOfSpans)"
            ),
        ))
    }
}

fn refusal(e: ZipkinError) -> Refused {
    match e {
        ZipkinError::TooLarge(_) => Refused::new(StatusCode::PAYLOAD_TOO_LARGE, e.to_string()),
        e => Refused::new(StatusCode::BAD_REQUEST, e.to_string()),
    }
}

async fn post_spans(State(receiver): State<Receiver>, headers: HeaderMap, body: Body) -> Response {
    match counted(&receiver.metrics, receive(&receiver, &headers, body)).await {
        Ok(accepted) => (StatusCode::ACCEPTED, accepted).into_response(),
        Err(refused) => refused.plain(),
    }
}

async fn receive(receiver: &Receiver, headers: &HeaderMap, body: Body) -> Result<String, Refused> {
    let format = format(headers)?;
    let gzip = is_gzip(headers)?;
    let limits = &receiver.limits;
    // The bound scan reads the body's framing (protobuf) or shape (JSON).
    let body = read_body(
        limits,
        &receiver.metrics,
        headers,
        body,
        gzip,
        move |bytes| {
            match format {
                Format::Json => json_bound(bytes),
                Format::Protobuf => protobuf_bound(bytes),
            }
            .map_err(refusal)
        },
    )
    .await?;
    let (decoded, _admitted) = decode_within(limits, body, move |bytes, budget| {
        match format {
            Format::Json => decode_json_within(bytes, budget),
            Format::Protobuf => decode_protobuf_within(bytes, budget),
        }
        .map_err(refusal)
    })
    .await?;
    let accepted = summary(&decoded);
    store(&receiver.sink, &receiver.metrics, decoded, "Zipkin").await?;
    Ok(accepted)
}
