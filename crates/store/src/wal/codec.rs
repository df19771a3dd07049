//! The WAL payload codec: a batch of spans to bytes and back.
//!
//! The payload is postcard over shapes defined here, not over the model's own
//! serde derives: the model tunes its derives for JSON (`skip_serializing_if`
//! on empty strings), which a non-self-describing format such as postcard
//! cannot read back, and the on-disk format must not change when someone
//! adjusts the JSON. Nested values (attributes, events, links, resources) do
//! use the model's derives; `tests::round_trip_every_field` guards that they
//! stay postcard-safe. This module does no I/O and knows nothing of framing.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use chaintrace_model::{
    Event, KeyValue, Link, Resource, Scope, Span, SpanId, SpanKind, Status, StatusCode, TraceId,
    UnixNanos,
};
use serde::{Deserialize, Serialize};

use crate::store::StoreError;

/// A span as written into the WAL (borrowing from the model span).
#[derive(Serialize)]
struct SpanOut<'a> {
    trace_id: TraceId,
    span_id: SpanId,
    parent_span_id: Option<SpanId>,
    name: &'a str,
    kind: SpanKind,
    start: UnixNanos,
    end: UnixNanos,
    status_code: StatusCode,
    status_message: &'a str,
    attributes: &'a [KeyValue],
    events: &'a [Event],
    links: &'a [Link],
    resource: &'a Resource,
    scope_name: &'a str,
    scope_version: &'a str,
}

/// A span as read back from the WAL.
#[derive(Deserialize)]
struct SpanIn {
    trace_id: TraceId,
    span_id: SpanId,
    parent_span_id: Option<SpanId>,
    name: String,
    kind: SpanKind,
    start: UnixNanos,
    end: UnixNanos,
    status_code: StatusCode,
    status_message: String,
    attributes: Vec<KeyValue>,
    events: Vec<Event>,
    links: Vec<Link>,
    resource: Resource,
    scope_name: String,
    scope_version: String,
}

impl<'a> From<&'a Span> for SpanOut<'a> {
    fn from(span: &'a Span) -> Self {
        // Destructured without `..` so that a new model field fails to compile
        // here instead of being silently dropped from the WAL.
        let Span {
            trace_id,
            span_id,
            parent_span_id,
            name,
            kind,
            start,
            end,
            status: Status { code, message },
            attributes,
            events,
            links,
            resource,
            scope:
                Scope {
                    name: scope_name,
                    version: scope_version,
                },
        } = span;
        SpanOut {
            trace_id: *trace_id,
            span_id: *span_id,
            parent_span_id: *parent_span_id,
            name,
            kind: *kind,
            start: *start,
            end: *end,
            status_code: *code,
            status_message: message,
            attributes,
            events,
            links,
            resource,
            scope_name,
            scope_version,
        }
    }
}

/// Encodes a batch into a WAL payload.
pub(crate) fn encode_spans(spans: &[Span]) -> Result<Vec<u8>, StoreError> {
    let out: Vec<SpanOut<'_>> = spans.iter().map(SpanOut::from).collect();
    // Sized from the last batches' bytes per span: growing by doubling
    // instead copied each payload about twice over.
    let per_span = BYTES_PER_SPAN.load(Ordering::Relaxed);
    let buffer = Vec::with_capacity(spans.len().saturating_mul(per_span + per_span / 8));
    let payload = postcard::to_extend(&out, buffer).map_err(|e| StoreError::Encode {
        spans: spans.len(),
        reason: e.to_string(),
    })?;
    if let Some(now) = payload.len().checked_div(spans.len()) {
        // A moving average; races between batches only blur it.
        BYTES_PER_SPAN.store((per_span * 3 + now) / 4, Ordering::Relaxed);
    }
    Ok(payload)
}

/// Recent WAL bytes per span, to size the next payload's buffer.
static BYTES_PER_SPAN: AtomicUsize = AtomicUsize::new(256);

/// Decodes a WAL payload back into spans.
///
/// Spans of one batch usually share a resource; consecutive equal resources
/// are shared again (one `Arc`) to keep the head small after a replay.
pub(crate) fn decode_spans(payload: &[u8]) -> Result<Vec<Span>, postcard::Error> {
    let decoded: Vec<SpanIn> = postcard::from_bytes(payload)?;
    let mut spans = Vec::with_capacity(decoded.len());
    let mut last_resource: Option<Arc<Resource>> = None;
    for s in decoded {
        let resource = match &last_resource {
            Some(prev) if **prev == s.resource => Arc::clone(prev),
            _ => {
                let r = Arc::new(s.resource);
                last_resource = Some(Arc::clone(&r));
                r
            }
        };
        spans.push(Span {
            trace_id: s.trace_id,
            span_id: s.span_id,
            parent_span_id: s.parent_span_id,
            name: s.name,
            kind: s.kind,
            start: s.start,
            end: s.end,
            status: Status {
                code: s.status_code,
                message: s.status_message,
            },
            attributes: s.attributes,
            events: s.events,
            links: s.links,
            resource,
            scope: Scope {
                name: s.scope_name,
                version: s.scope_version,
            },
        });
    }
    Ok(spans)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::span;
    use chaintrace_model::AnyValue;

    #[test]
    fn round_trip_every_field() {
        let mut full = span(1, 2, Some(1), "rag", "llm_call", 100, 250);
        full.kind = SpanKind::Client;
        full.status = Status {
            code: StatusCode::Error,
            message: "RateLimitError".into(),
        };
        full.attributes = vec![
            KeyValue::new("empty", AnyValue::Empty),
            KeyValue::new("s", ""),
            KeyValue::new("b", true),
            KeyValue::new("i", -7i64),
            KeyValue::new("d", 0.5f64),
            KeyValue::new("bytes", AnyValue::Bytes(vec![0, 255])),
            KeyValue::new(
                "arr",
                AnyValue::Array(vec![AnyValue::Int(1), AnyValue::from("x")]),
            ),
            KeyValue::new("kv", AnyValue::KvList(vec![KeyValue::new("k", "v")])),
        ];
        full.events = vec![
            Event {
                time: UnixNanos(120),
                name: "exception".into(),
                attributes: vec![KeyValue::new("exception.type", "RateLimitError")],
            },
            Event {
                time: UnixNanos(130),
                name: String::new(),
                attributes: vec![],
            },
        ];
        full.links = vec![Link {
            trace_id: TraceId([9; 16]),
            span_id: SpanId([8; 8]),
            attributes: vec![],
        }];
        full.scope = Scope {
            name: "openai".into(),
            version: String::new(),
        };
        // The minimal span has every optional string empty: exactly what the
        // model's own derives cannot round-trip through postcard.
        let mut minimal = span(1, 3, None, "rag", "", 0, 0);
        minimal.resource = Arc::new(Resource::default());
        let batch = vec![full, minimal, span(1, 4, Some(2), "rag", "embed", 5, 6)];

        let bytes = encode_spans(&batch).unwrap();
        let back = decode_spans(&bytes).unwrap();
        assert_eq!(back, batch);
    }

    #[test]
    fn decoded_spans_share_equal_consecutive_resources() {
        let batch = vec![
            span(1, 1, None, "rag", "a", 0, 1),
            span(1, 2, Some(1), "rag", "b", 0, 1),
            span(1, 3, Some(1), "db", "c", 0, 1),
        ];
        let back = decode_spans(&encode_spans(&batch).unwrap()).unwrap();
        assert!(Arc::ptr_eq(&back[0].resource, &back[1].resource));
        assert!(!Arc::ptr_eq(&back[1].resource, &back[2].resource));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(decode_spans(&[]).is_err());
        assert!(decode_spans(&[5, 1, 2, 3]).is_err());
    }
}
