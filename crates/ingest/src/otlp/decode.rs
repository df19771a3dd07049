//! OTLP `ExportTraceServiceRequest` → checked model [`Span`]s.
//!
//! Plain functions, no I/O. A span whose ids cannot be stored is rejected on
//! its own, with a message naming its position in the request; the rest of
//! the batch is kept. Everything else an SDK sends that the model has a place
//! for is kept as sent; `trace_state`, `flags`, scope attributes and the
//! `dropped_*_count` fields have no place in the model and are not kept.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use chaintrace_model::{
    AnyValue, Event, IdError, KeyValue, Link, Resource, Scope, Span, SpanId, SpanKind, Status,
    StatusCode, TraceId, UnixNanos,
};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1 as otlp_common;
use opentelemetry_proto::tonic::trace::v1 as otlp_trace;

/// How many error messages [`DecodedSpans::errors`] keeps; the counts are always complete.
pub const MAX_ERROR_MESSAGES: usize = 10;

/// The spans of one request, and what was left out of it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DecodedSpans {
    /// The spans that passed, in request order.
    pub spans: Vec<Span>,
    /// How many spans were rejected (bad trace, span or parent id).
    pub rejected: u64,
    /// How many links were dropped for bad ids; their spans were kept.
    pub dropped_links: u64,
    /// The first [`MAX_ERROR_MESSAGES`] messages about rejected spans and
    /// dropped links, each naming the position, e.g.
    /// `resourceSpans[0].scopeSpans[1].spans[3]: spanId has 6 bytes, want 8`.
    pub errors: Vec<String>,
}

impl DecodedSpans {
    /// Logs (at debug level) that a `protocol` export was partly rejected,
    /// if it was.
    pub fn log_partial(&self, protocol: &str) {
        if self.rejected > 0 || self.dropped_links > 0 {
            tracing::debug!(
                rejected = self.rejected,
                dropped_links = self.dropped_links,
                first = ?self.errors.first(),
                "{protocol} export partly rejected"
            );
        }
    }

    /// One line for OTLP's `partial_success.error_message`: the kept
    /// messages joined by `; `, plus how many more were not kept.
    pub fn error_message(&self) -> String {
        let mut text = self.errors.join("; ");
        let total = self.rejected.saturating_add(self.dropped_links);
        let omitted = total.saturating_sub(self.errors.len() as u64);
        if omitted > 0 {
            text.push_str(&format!("; and {omitted} more"));
        }
        text
    }

    pub(crate) fn note(&mut self, message: String) {
        if self.errors.len() < MAX_ERROR_MESSAGES {
            self.errors.push(message);
        }
    }

    /// Counts the span at `pos` as rejected, for `reason`.
    pub(crate) fn reject_span(&mut self, pos: SpanPos, reason: &dyn fmt::Display) {
        self.reject(&pos, reason);
    }

    /// Counts the span at `place` (in whatever protocol's words) as
    /// rejected, for `reason`.
    pub(crate) fn reject(&mut self, place: &dyn fmt::Display, reason: &dyn fmt::Display) {
        self.rejected += 1;
        self.note(format!("{place}: {reason}"));
    }

    /// Counts a dropped link; `message` comes from [`link_dropped`].
    pub(crate) fn drop_link(&mut self, message: String) {
        self.dropped_links += 1;
        self.note(message);
    }
}

/// Why a request body could not be read as OTLP at all; the whole request is refused.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The body is not a valid `ExportTraceServiceRequest` protobuf.
    #[error("invalid OTLP protobuf: {0}")]
    Protobuf(#[from] prost::DecodeError),
    /// The body is not valid OTLP/JSON; the message names the position
    /// (line and column, or the field path) and what was wrong.
    #[error("invalid OTLP/JSON: {0}")]
    Json(String),
    /// The body decodes (or would) to more memory than one request may
    /// take: many tiny items (empty spans, empty attributes) cost far more
    /// decoded than sent. Refused as too large (HTTP 413,
    /// gRPC `INVALID_ARGUMENT`); the message says why.
    #[error("request too large: {0}")]
    TooLarge(String),
}

/// Where a span sits in a request, printed as OTLP/JSON spells the path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct SpanPos {
    pub resource: usize,
    pub scope: usize,
    pub span: usize,
}

impl fmt::Display for SpanPos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "resourceSpans[{}].scopeSpans[{}].spans[{}]",
            self.resource, self.scope, self.span
        )
    }
}

/// The message for link `link` of the span at `pos`, dropped for `problem`.
pub(crate) fn link_dropped(pos: SpanPos, link: usize, problem: &dyn fmt::Display) -> String {
    format!("{pos}.links[{link}]: {problem} (link dropped, span kept)")
}

/// Verdicts reached before the typed request existed (the JSON decoder's
/// repair pass): spans to reject and links already dropped.
#[derive(Debug, Default)]
pub(crate) struct EarlyFindings {
    /// Spans to reject, with the reason (without the position).
    pub rejected: HashMap<SpanPos, String>,
    /// Messages for links removed from the request, position included.
    pub dropped_links: Vec<String>,
}

/// Turns an OTLP request into model spans, rejecting spans with bad ids.
///
/// ```
/// use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
/// let decoded = chaintrace_ingest::otlp::decode_request(ExportTraceServiceRequest::default());
/// assert!(decoded.spans.is_empty() && decoded.rejected == 0);
/// ```
pub fn decode_request(request: ExportTraceServiceRequest) -> DecodedSpans {
    decode_with(request, EarlyFindings::default())
}

/// [`decode_request`] with verdicts reached earlier (see [`EarlyFindings`]).
pub(crate) fn decode_with(
    request: ExportTraceServiceRequest,
    early: EarlyFindings,
) -> DecodedSpans {
    let mut out = DecodedSpans::default();
    let total: usize = request
        .resource_spans
        .iter()
        .flat_map(|rs| &rs.scope_spans)
        .map(|ss| ss.spans.len())
        .sum();
    out.spans.reserve(total);
    for message in early.dropped_links {
        out.drop_link(message);
    }

    for (ri, resource_spans) in request.resource_spans.into_iter().enumerate() {
        let resource = Arc::new(Resource {
            attributes: resource_spans
                .resource
                .map(|r| convert_attributes(r.attributes))
                .unwrap_or_default(),
        });
        for (si, scope_spans) in resource_spans.scope_spans.into_iter().enumerate() {
            // One scope for all its spans, however long its name.
            let scope = Arc::new(
                scope_spans
                    .scope
                    .map(|s| Scope {
                        name: s.name.into(),
                        version: s.version.into(),
                    })
                    .unwrap_or_default(),
            );
            for (pi, span) in scope_spans.spans.into_iter().enumerate() {
                let pos = SpanPos {
                    resource: ri,
                    scope: si,
                    span: pi,
                };
                if let Some(reason) = early.rejected.get(&pos) {
                    out.reject_span(pos, reason);
                    continue;
                }
                match convert_span(span, pos, &resource, &scope, &mut out) {
                    Ok(span) => out.spans.push(span),
                    Err(e) => out.reject_span(pos, &e),
                }
            }
        }
    }
    out
}

fn convert_span(
    span: otlp_trace::Span,
    pos: SpanPos,
    resource: &Arc<Resource>,
    scope: &Arc<Scope>,
    out: &mut DecodedSpans,
) -> Result<Span, IdError> {
    let ids = SpanIds::check(&span.trace_id, &span.span_id, &span.parent_span_id)?;
    let (start, end) = span_times(span.start_time_unix_nano, span.end_time_unix_nano);

    let status = span
        .status
        .map(|s| Status {
            code: StatusCode::from_otlp(s.code),
            message: s.message,
        })
        .unwrap_or_default();

    let events = span
        .events
        .into_iter()
        .map(|e| Event {
            time: UnixNanos(e.time_unix_nano),
            name: e.name,
            attributes: convert_attributes(e.attributes),
        })
        .collect();

    let mut links = Vec::with_capacity(span.links.len());
    for (li, link) in span.links.into_iter().enumerate() {
        match link_ids(&link.trace_id, &link.span_id) {
            Ok((trace_id, span_id)) => links.push(Link {
                trace_id,
                span_id,
                attributes: convert_attributes(link.attributes),
            }),
            Err(e) => out.drop_link(link_dropped(pos, li, &e)),
        }
    }

    Ok(Span {
        trace_id: ids.trace_id,
        span_id: ids.span_id,
        parent_span_id: ids.parent_span_id,
        name: span.name.into(),
        kind: SpanKind::from_otlp(span.kind),
        start,
        end,
        status,
        attributes: convert_attributes(span.attributes),
        events,
        links,
        resource: Arc::clone(resource),
        scope: Arc::clone(scope),
    })
}

/// A span's three ids, checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SpanIds {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    pub parent_span_id: Option<SpanId>,
}

impl SpanIds {
    /// Checks a span's ids as sent; the first bad one (trace, span, parent)
    /// is the reason its span is rejected.
    pub(crate) fn check(
        trace_id: &[u8],
        span_id: &[u8],
        parent_span_id: &[u8],
    ) -> Result<SpanIds, IdError> {
        Ok(SpanIds {
            trace_id: TraceId::from_bytes(trace_id)?,
            span_id: SpanId::from_bytes(span_id)?,
            parent_span_id: parent_id(parent_span_id)?,
        })
    }
}

/// Checks a link's ids; a link failing them is dropped, its span kept.
pub(crate) fn link_ids(trace_id: &[u8], span_id: &[u8]) -> Result<(TraceId, SpanId), IdError> {
    Ok((TraceId::from_bytes(trace_id)?, SpanId::from_bytes(span_id)?))
}

/// A span's start and end as the model wants them. Clock skew or a buggy
/// SDK can end a span before it starts; the model promises end >= start,
/// and the span is still worth keeping, so its end is clamped.
pub(crate) fn span_times(start: u64, end: u64) -> (UnixNanos, UnixNanos) {
    (UnixNanos(start), UnixNanos(end.max(start)))
}

/// An empty parent id means "root". So does an all-zero one: some
/// converters (Zipkin, OpenTracing bridges) write zeros for "no parent".
fn parent_id(bytes: &[u8]) -> Result<Option<SpanId>, IdError> {
    if bytes.is_empty() || (bytes.len() == SpanId::LEN && bytes.iter().all(|b| *b == 0)) {
        return Ok(None);
    }
    SpanId::from_bytes(bytes).map(Some).map_err(|e| match e {
        IdError::Length { got, want, .. } => IdError::Length {
            what: "parentSpanId",
            got,
            want,
        },
        other => other,
    })
}

pub(crate) fn convert_attributes(attributes: Vec<otlp_common::KeyValue>) -> Vec<KeyValue> {
    attributes.into_iter().map(convert_key_value).collect()
}

fn convert_key_value(kv: otlp_common::KeyValue) -> KeyValue {
    KeyValue {
        key: kv.key.into(),
        value: kv.value.map(convert_any_value).unwrap_or(AnyValue::Empty),
    }
}

/// Converts a value fully. Nesting depth needs no guard of its own: prost
/// (100 levels) and serde_json (128) bound it while parsing.
pub(crate) fn convert_any_value(value: otlp_common::AnyValue) -> AnyValue {
    use otlp_common::any_value::Value;
    match value.value {
        None => AnyValue::Empty,
        Some(Value::StringValue(s)) => AnyValue::String(s.into()),
        Some(Value::BoolValue(b)) => AnyValue::Bool(b),
        Some(Value::IntValue(i)) => AnyValue::Int(i),
        Some(Value::DoubleValue(d)) => AnyValue::Double(d),
        Some(Value::BytesValue(b)) => AnyValue::Bytes(b),
        Some(Value::ArrayValue(a)) => {
            AnyValue::Array(a.values.into_iter().map(convert_any_value).collect())
        }
        Some(Value::KvlistValue(kvs)) => {
            AnyValue::KvList(kvs.values.into_iter().map(convert_key_value).collect())
        }
        // An index into a profiles dictionary; traces carry no dictionary.
        Some(Value::StringValueStrindex(_)) => AnyValue::Empty,
    }
}

#[cfg(test)]
#[path = "decode_tests.rs"]
mod tests;
