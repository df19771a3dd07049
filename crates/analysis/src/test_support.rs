//! Trace builders shared by this crate's unit tests: the founding document's
//! worked example, sequential and concurrent.

use std::sync::Arc;

use chaintrace_model::{
    KeyValue, Resource, Span, SpanId, SpanKind, Status, StatusCode, Trace, TraceId, UnixNanos,
};

/// The time all test traces start at (ms offsets are added to it).
pub const T0: u64 = 1_780_000_000_000_000_000;

/// Milliseconds as nanoseconds.
pub const fn ms(n: u64) -> u64 {
    n * 1_000_000
}

/// A span of service `rag-chain` from `start_ms` to `end_ms` after [`T0`].
pub fn span(id: u8, parent: Option<u8>, name: &str, start_ms: u64, end_ms: u64) -> Span {
    span_ns(id, parent, name, T0 + ms(start_ms), T0 + ms(end_ms))
}

/// A span with absolute nanosecond times.
pub fn span_ns(id: u8, parent: Option<u8>, name: &str, start: u64, end: u64) -> Span {
    Span {
        trace_id: TraceId([1; 16]),
        span_id: SpanId([id; 8]),
        parent_span_id: parent.map(|p| SpanId([p; 8])),
        name: name.into(),
        kind: SpanKind::Internal,
        start: UnixNanos(start),
        end: UnixNanos(end),
        status: Status::default(),
        attributes: vec![],
        events: vec![],
        links: vec![],
        resource: service("rag-chain"),
        scope: Default::default(),
    }
}

/// A resource with this `service.name`.
pub fn service(name: &str) -> Arc<Resource> {
    Arc::new(Resource {
        attributes: vec![KeyValue::new("service.name", name)],
    })
}

/// Marks a span failed with `error_type` as the founding document spells it.
pub fn failed(mut s: Span, error_type: &str) -> Span {
    s.status = Status {
        code: StatusCode::Error,
        message: format!("{error_type}: try again later"),
    };
    s.attributes.push(KeyValue::new("error_type", error_type));
    s
}

/// Adds attributes.
pub fn with(mut s: Span, attrs: &[(&str, chaintrace_model::AnyValue)]) -> Span {
    s.attributes
        .extend(attrs.iter().map(|(k, v)| KeyValue::new(*k, v.clone())));
    s
}

/// The founding document's example, run back to back: `process_query`
/// 1200 ms = fetch_context 50 + embed_query 100 + vector_search 50 +
/// llm_call 950 + 50 ms of its own work after the LLM answered; inside
/// `llm_call` (self 20 ms): prompt_assembly 10 ms, api_call 920 ms.
pub fn founding_spans() -> Vec<Span> {
    vec![
        with(
            span(1, None, "process_query", 0, 1200),
            &[("user_message_length", 42i64.into())],
        ),
        span(2, Some(1), "fetch_context", 0, 50),
        with(
            span(3, Some(1), "embed_query", 50, 150),
            &[("model", "text-embedding-3-small".into())],
        ),
        span(4, Some(1), "vector_search", 150, 200),
        with(
            span(5, Some(1), "llm_call", 200, 1150),
            &[("model", "claude-3-opus-20250219".into())],
        ),
        span(6, Some(5), "prompt_assembly", 200, 210),
        with(
            span(7, Some(5), "api_call", 210, 1130),
            &[
                ("input_tokens", 1200i64.into()),
                ("output_tokens", 350i64.into()),
                ("stop_reason", "end_turn".into()),
            ],
        ),
    ]
}

/// [`founding_spans`] as a trace.
pub fn founding() -> Trace {
    Trace::new(TraceId([1; 16]), founding_spans())
}

/// The same chain with fetch_context and embed_query already concurrent:
/// both start at 0, so everything after them is 50 ms earlier (root 1150 ms).
pub fn founding_concurrent() -> Trace {
    let spans = founding_spans()
        .into_iter()
        .map(|mut s| {
            let shift = match s.name.as_str() {
                "process_query" | "fetch_context" => 0,
                _ => ms(50),
            };
            s.start.0 -= shift;
            s.end.0 -= if s.name == "fetch_context" { 0 } else { ms(50) };
            s
        })
        .collect();
    Trace::new(TraceId([1; 16]), spans)
}
