//! The founding document's JSON span: `POST /api/v1/spans` with one span
//! object, an array of them, or JSON lines (one object per line).
//!
//! ```json
//! {"trace_id": "550e8400-e29b-41d4-a716-446655440000", "span_id": "f0ca7b1a-…",
//!  "parent_span_id": "…", "name": "llm.call.claude",
//!  "start_time": "2026-06-02T14:30:00Z", "end_time": "2026-06-02T14:30:01.200Z",
//!  "duration_ms": 1200, "attributes": {"model": "claude-3-opus-20250219"},
//!  "events": [{"timestamp": "2026-06-02T14:30:00.050Z", "message": "API request sent"}],
//!  "status": "ok"}
//! ```
//!
//! | field | becomes |
//! |---|---|
//! | `trace_id` | 32 hex digits as they are; a UUID (`8-4-4-4-12` hex) its 16 bytes; any other string a stable hash of it (below) |
//! | `span_id`, `parent_span_id` | 16 hex digits as they are; any other string a stable hash, so a parent given as the same string is found |
//! | the id strings as sent, when they were not already the id in hex | attributes `chaintrace.source.trace_id`, `chaintrace.source.span_id`, `chaintrace.source.parent_span_id` |
//! | `name` | the span name (required) |
//! | `start_time`, `end_time` | RFC 3339 (or Unix seconds); `end_time` may be left out when `duration_ms` is given |
//! | `duration_ms` | checked against the two times: a mismatch over 1 ms is reported in the answer's `warnings`, the times are kept |
//! | `status` | `ok`, `error` or `unset` (any case); `status_message` its description |
//! | `kind` | `internal`, `server`, `client`, `producer`, `consumer` |
//! | `service` (or `service_name`) | resource `service.name` (default `unknown_service`) |
//! | `attributes` | typed attributes: strings, integers, floats, booleans, arrays, objects as maps |
//! | `events[]` | events: `timestamp`, `message` (or `name`) as the name, optional `attributes` |
//!
//! The stable hash is FNV-1a (64-bit) over the id's UTF-8 bytes, prefixed
//! with one byte: `0x01` for a span id, `0x02` and `0x03` for the two
//! halves of a trace id. It never changes between versions: the same
//! string always names the same span.
//!
//! A span that breaks a rule (no name, an unreadable time, an end before
//! its start, an unknown status) is rejected alone and named in the
//! answer (`spans[2].status: …`); the others are stored. The answer is
//! `{"accepted": n, "rejected": n, "errors": […], "warnings": […]}`: 200
//! when anything was accepted or nothing was sent, 400 when every span
//! was rejected or the body is not JSON.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use chaintrace_model::{
    AnyValue, CompactString, Event, KeyValue, Resource, Scope, Span, SpanId, SpanKind, Status,
    StatusCode as Code, TraceId, UnixNanos,
};
use serde::Deserialize;
use serde_json::Value;

use crate::metrics::{Protocol, ReceiverMetrics};
use crate::otlp::{DecodedSpans, Limits};
use crate::receive::{counted, decode_within, is_gzip, read_body, store, Refused};
use crate::SpanSink;

/// Attribute keeping a `trace_id` string that was not the id in hex.
pub const SOURCE_TRACE_ID: &str = "chaintrace.source.trace_id";
/// Attribute keeping a `span_id` string that was not the id in hex.
pub const SOURCE_SPAN_ID: &str = "chaintrace.source.span_id";
/// Attribute keeping a `parent_span_id` string that was not the id in hex.
pub const SOURCE_PARENT_SPAN_ID: &str = "chaintrace.source.parent_span_id";

/// Decoded memory per body byte the gate is asked for: serde's values of
/// a JSON body take a few times its size; every value is at least 1 byte
/// and becomes at most a map entry of about this much.
const BYTES_PER_BODY_BYTE: usize = 64;

/// What a batch of JSON spans became.
#[derive(Debug, Default)]
pub struct DecodedJsonSpans {
    /// The spans, their rejections and the reasons.
    pub decoded: DecodedSpans,
    /// Things that were kept as sent but look wrong (`duration_ms` that
    /// disagrees with the times).
    pub warnings: Vec<String>,
}

/// One span as sent. Unknown fields are ignored, as OTLP receivers do.
#[derive(Debug, Deserialize)]
struct RawSpan {
    trace_id: Option<String>,
    span_id: Option<String>,
    parent_span_id: Option<String>,
    name: Option<String>,
    start_time: Option<Value>,
    end_time: Option<Value>,
    duration_ms: Option<f64>,
    #[serde(default)]
    attributes: BTreeMap<String, Value>,
    #[serde(default)]
    events: Vec<RawEvent>,
    status: Option<String>,
    status_message: Option<String>,
    kind: Option<String>,
    #[serde(alias = "service_name")]
    service: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RawEvent {
    timestamp: Option<Value>,
    #[serde(alias = "name")]
    message: Option<String>,
    #[serde(default)]
    attributes: BTreeMap<String, Value>,
}

/// Decodes a body of JSON spans: one object, an array of objects, or
/// objects one after another (JSON lines). An error is a body that is not
/// JSON of that shape; a bad span is rejected alone.
///
/// ```
/// let body = br#"{"trace_id": "550e8400-e29b-41d4-a716-446655440000", "span_id": "a",
///   "name": "llm.call", "start_time": "2026-06-02T14:30:00Z", "duration_ms": 1200, "status": "ok"}"#;
/// let out = chaintrace_ingest::json_span::decode_json_spans(body).unwrap();
/// let span = &out.decoded.spans[0];
/// assert_eq!(span.trace_id.to_hex(), "550e8400e29b41d4a716446655440000");
/// assert_eq!(span.duration().0, 1_200_000_000);
/// ```
pub fn decode_json_spans(body: &[u8]) -> Result<DecodedJsonSpans, String> {
    chaintrace_model::check_json_depth(body, chaintrace_model::MAX_JSON_DEPTH)
        .map_err(|e| format!("invalid JSON: {e}"))?;
    let mut out = DecodedJsonSpans::default();
    let mut resources: BTreeMap<String, Arc<Resource>> = BTreeMap::new();
    let scope = Arc::new(Scope::default());
    let mut index = 0usize;
    for value in serde_json::Deserializer::from_slice(body).into_iter::<Value>() {
        let value = value.map_err(|e| format!("invalid JSON: {e}"))?;
        let items = match value {
            Value::Array(items) => items,
            object @ Value::Object(_) => vec![object],
            other => {
                return Err(format!(
                    "want a span object, an array of them, or one object per line; got {}",
                    kind_of(&other)
                ))
            }
        };
        for item in items {
            let place = format!("spans[{index}]");
            index += 1;
            let raw: RawSpan = match serde_json::from_value(item) {
                Ok(raw) => raw,
                Err(e) => {
                    out.decoded.reject(&place, &e);
                    continue;
                }
            };
            match span(raw, &place, &mut resources, &scope, &mut out.warnings) {
                Ok(span) => out.decoded.spans.push(span),
                Err((field, reason)) => out.decoded.reject(&format!("{place}.{field}"), &reason),
            }
        }
    }
    Ok(out)
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// FNV-1a, 64-bit, over `tag` then `text`: see the module docs.
fn fnv1a(tag: u8, text: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in std::iter::once(&tag).chain(text.as_bytes()) {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

fn hex_bytes<const N: usize>(text: &str) -> Option<[u8; N]> {
    if text.len() != 2 * N || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut out = [0u8; N];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// The trace id a string names, and whether it was the id in hex already.
fn trace_id_of(text: &str) -> (TraceId, bool) {
    if let Some(bytes) = hex_bytes::<16>(text) {
        return (TraceId(bytes), true);
    }
    let parts: Vec<&str> = text.split('-').collect();
    if parts.iter().map(|p| p.len()).eq([8, 4, 4, 4, 12]) {
        if let Some(bytes) = hex_bytes::<16>(&parts.concat()) {
            return (TraceId(bytes), false);
        }
    }
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&fnv1a(2, text).to_be_bytes());
    bytes[8..].copy_from_slice(&fnv1a(3, text).to_be_bytes());
    (TraceId(bytes), false)
}

/// The span id a string names, and whether it was the id in hex already.
fn span_id_of(text: &str) -> (SpanId, bool) {
    match hex_bytes::<8>(text) {
        Some(bytes) => (SpanId(bytes), true),
        None => (SpanId(fnv1a(1, text).to_be_bytes()), false),
    }
}

fn time_of(value: &Value) -> Result<UnixNanos, String> {
    match value {
        Value::String(text) => text.parse::<UnixNanos>().map_err(|e| e.to_string()),
        Value::Number(n) => n
            .to_string()
            .parse::<UnixNanos>()
            .map_err(|e| e.to_string()),
        other => Err(format!(
            "want an RFC 3339 time or Unix seconds, got {}",
            kind_of(other)
        )),
    }
}

/// A JSON value as an attribute value.
fn any_value(value: Value) -> AnyValue {
    match value {
        Value::Null => AnyValue::Empty,
        Value::Bool(b) => AnyValue::Bool(b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => AnyValue::Int(i),
            None => AnyValue::Double(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => AnyValue::String(CompactString::from(s)),
        Value::Array(items) => AnyValue::Array(items.into_iter().map(any_value).collect()),
        Value::Object(map) => AnyValue::KvList(
            map.into_iter()
                .map(|(k, v)| KeyValue::new(k, any_value(v)))
                .collect(),
        ),
    }
}

fn attributes(map: BTreeMap<String, Value>) -> Vec<KeyValue> {
    map.into_iter()
        .map(|(k, v)| KeyValue::new(k, any_value(v)))
        .collect()
}

type Rejection = (&'static str, String);

fn span(
    raw: RawSpan,
    place: &str,
    resources: &mut BTreeMap<String, Arc<Resource>>,
    scope: &Arc<Scope>,
    warnings: &mut Vec<String>,
) -> Result<Span, Rejection> {
    let name = raw
        .name
        .filter(|n| !n.is_empty())
        .ok_or(("name", "missing: every span needs a name".to_string()))?;
    let trace_text = raw
        .trace_id
        .filter(|t| !t.is_empty())
        .ok_or(("trace_id", "missing".to_string()))?;
    let span_text = raw
        .span_id
        .filter(|t| !t.is_empty())
        .ok_or(("span_id", "missing".to_string()))?;
    let (trace_id, trace_is_hex) = trace_id_of(&trace_text);
    let (span_id, span_is_hex) = span_id_of(&span_text);
    let parent = raw.parent_span_id.filter(|p| !p.is_empty());
    let parent_id = parent.as_deref().map(span_id_of);

    let start = time_of(
        raw.start_time
            .as_ref()
            .ok_or(("start_time", "missing".to_string()))?,
    )
    .map_err(|e| ("start_time", e))?;
    let duration_nanos = match raw.duration_ms {
        Some(ms) if !(0.0..=1e12).contains(&ms) => {
            return Err((
                "duration_ms",
                format!("{ms} is not a duration in milliseconds"),
            ))
        }
        Some(ms) => Some((ms * 1e6).round() as u64),
        None => None,
    };
    let end = match (&raw.end_time, duration_nanos) {
        (Some(end), _) => time_of(end).map_err(|e| ("end_time", e))?,
        (None, Some(d)) => UnixNanos(start.0.saturating_add(d)),
        (None, None) => {
            return Err((
                "end_time",
                "missing: give end_time or duration_ms".to_string(),
            ))
        }
    };
    if end.0 < start.0 {
        return Err(("end_time", "before start_time".to_string()));
    }
    if let (Some(_), Some(d)) = (&raw.end_time, duration_nanos) {
        let measured = end.0 - start.0;
        if measured.abs_diff(d) > 1_000_000 {
            warnings.push(format!(
                "{place}.duration_ms: {} ms, but end_time - start_time is {} ms; the times are kept",
                d as f64 / 1e6,
                measured as f64 / 1e6
            ));
        }
    }
    let code = match raw
        .status
        .as_deref()
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None | Some("unset") => Code::Unset,
        Some("ok") => Code::Ok,
        Some("error") => Code::Error,
        Some(other) => {
            return Err((
                "status",
                format!("{other:?} is not a status: want ok, error or unset"),
            ))
        }
    };
    let kind = match raw.kind.as_deref().map(str::to_ascii_lowercase).as_deref() {
        None | Some("internal") => SpanKind::Internal,
        Some("server") => SpanKind::Server,
        Some("client") => SpanKind::Client,
        Some("producer") => SpanKind::Producer,
        Some("consumer") => SpanKind::Consumer,
        Some(other) => {
            return Err((
                "kind",
                format!(
                "{other:?} is not a span kind: want internal, server, client, producer or consumer"
            ),
            ))
        }
    };
    let mut events = Vec::with_capacity(raw.events.len());
    for (i, event) in raw.events.into_iter().enumerate() {
        let time = match &event.timestamp {
            Some(t) => time_of(t).map_err(|e| ("events", format!("[{i}].timestamp: {e}")))?,
            None => start,
        };
        events.push(Event {
            time,
            name: event.message.unwrap_or_else(|| "event".to_string()),
            attributes: attributes(event.attributes),
        });
    }

    let mut attrs = attributes(raw.attributes);
    if !trace_is_hex {
        attrs.push(KeyValue::new(SOURCE_TRACE_ID, trace_text));
    }
    if !span_is_hex {
        attrs.push(KeyValue::new(SOURCE_SPAN_ID, span_text));
    }
    if let (Some(text), Some((_, false))) = (&parent, parent_id) {
        attrs.push(KeyValue::new(SOURCE_PARENT_SPAN_ID, text.as_str()));
    }
    let service = raw.service.unwrap_or_else(|| "unknown_service".to_string());
    let resource = Arc::clone(resources.entry(service.clone()).or_insert_with(|| {
        Arc::new(Resource {
            attributes: vec![KeyValue::new("service.name", service)],
        })
    }));
    Ok(Span {
        trace_id,
        span_id,
        parent_span_id: parent_id.map(|(id, _)| id),
        name: CompactString::from(name),
        kind,
        start,
        end,
        status: Status {
            code,
            message: raw.status_message.unwrap_or_default(),
        },
        attributes: attrs,
        events,
        links: Vec::new(),
        resource,
        scope: Arc::clone(scope),
    })
}

/// `POST /api/v1/spans`, to merge into the query API's router.
pub fn json_span_router(sink: Arc<dyn SpanSink>, limits: Limits) -> Router {
    Router::new()
        .route("/api/v1/spans", post(post_spans))
        .with_state(Receiver {
            metrics: limits.metrics().receiver(Protocol::JsonSpans).clone(),
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

async fn post_spans(State(receiver): State<Receiver>, headers: HeaderMap, body: Body) -> Response {
    match counted(&receiver.metrics, receive(&receiver, &headers, body)).await {
        Ok((status, answer)) => (status, Json(answer)).into_response(),
        Err(refused) => refused.json(),
    }
}

async fn receive(
    receiver: &Receiver,
    headers: &HeaderMap,
    body: Body,
) -> Result<(StatusCode, Value), Refused> {
    let gzip = is_gzip(headers)?;
    let limits = &receiver.limits;
    let most = limits.max_decoded_bytes();
    let body = read_body(
        limits,
        &receiver.metrics,
        headers,
        body,
        gzip,
        move |bytes| {
            let bound = bytes.len().saturating_mul(BYTES_PER_BODY_BYTE);
            if bound > most {
                return Err(Refused::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!(
                        "a JSON body of {} bytes may decode to more than the {} MiB decoded \
                     requests may hold; send smaller batches (at most {} bytes)",
                        bytes.len(),
                        most >> 20,
                        most / BYTES_PER_BODY_BYTE
                    ),
                ));
            }
            Ok(bound)
        },
    )
    .await?;
    let bound = body.bound;
    let (out, _admitted) = decode_within(limits, body, move |bytes, _| {
        decode_json_spans(bytes)
            .map(|out| (out, bound))
            .map_err(|message| Refused::new(StatusCode::BAD_REQUEST, message))
    })
    .await?;
    let DecodedJsonSpans { decoded, warnings } = out;
    let answer = serde_json::json!({
        "accepted": decoded.spans.len(),
        "rejected": decoded.rejected,
        "errors": decoded.errors,
        "warnings": warnings,
    });
    let status = if decoded.spans.is_empty() && decoded.rejected > 0 {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    store(&receiver.sink, &receiver.metrics, decoded, "JSON").await?;
    Ok((status, answer))
}

#[cfg(test)]
#[path = "json_span_tests.rs"]
mod tests;
