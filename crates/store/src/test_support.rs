//! Span builders shared by this crate's unit tests.

use std::sync::Arc;

use chaintrace_model::{KeyValue, Resource, Span, SpanId, SpanKind, Status, TraceId, UnixNanos};

/// The trace id made of sixteen `n` bytes.
pub(crate) fn trace_id(n: u8) -> TraceId {
    TraceId([n; TraceId::LEN])
}

/// A span of trace `trace` with id `span` (eight `span` bytes), optional
/// parent, the given `service.name`, name and times.
pub(crate) fn span(
    trace: u8,
    span: u8,
    parent: Option<u8>,
    service: &str,
    name: &str,
    start: u64,
    end: u64,
) -> Span {
    Span {
        trace_id: trace_id(trace),
        span_id: SpanId([span; SpanId::LEN]),
        parent_span_id: parent.map(|p| SpanId([p; SpanId::LEN])),
        name: name.into(),
        kind: SpanKind::Internal,
        start: UnixNanos(start),
        end: UnixNanos(end),
        status: Status::default(),
        attributes: vec![KeyValue::new("step", name)],
        events: Vec::new(),
        links: Vec::new(),
        resource: Arc::new(Resource {
            attributes: vec![KeyValue::new("service.name", service)],
        }),
        scope: Default::default(),
    }
}
