//! The WAL payload codec: a batch of spans to bytes and back.
//!
//! The payload is postcard over shapes defined here, not over the model's own
//! serde derives: the model tunes its derives for JSON (`skip_serializing_if`
//! on empty strings), which a non-self-describing format such as postcard
//! cannot read back, and the on-disk format must not change when someone
//! adjusts the JSON. Nested values (attributes, events, links, resources) do
//! use the model's derives; `tests::round_trip_every_field` guards that they
//! stay postcard-safe. This module does no I/O and knows nothing of framing.
//!
//! # Layouts
//!
//! - **Layout 1** (no longer written, still read): postcard `Vec<SpanOut>`,
//!   each span carrying its whole resource.
//! - **Layout 2**: the bytes [`LAYOUT_2_PREFIX`], then postcard
//!   [`BatchOut`]: the batch's distinct resources once, then the spans, each
//!   naming its resource by index. Spans of one OTLP export share one
//!   `Arc<Resource>` of 4–10 attributes; writing it again for every span was
//!   about a tenth of ingest CPU.
//!
//! The layout lives in the payload because nothing else can tell it: the
//! record frame (length + CRC) has no spare bits, and development builds
//! appended layout 2 to version-1 segments, so one such segment may hold both
//! layouts and its header cannot say which. Which layouts a segment may hold
//! is the segment version's business ([`super::record::SegmentVersion`]).
//!
//! Why the prefix `0x80 0x00` never starts a layout-1 payload: a layout-1
//! payload starts with postcard's varint of the span count, and postcard
//! writes varints canonically (7 bits a byte, low bits first, high bit set on
//! every byte but the last). A first byte `0x80` means the count is at least
//! 128 with its low 7 bits zero, so the second byte carries `count >> 7 >= 1`
//! and is not `0x00`. `0x80 0x00` is an over-long zero that no postcard
//! encoder writes. `tests::marker_is_no_layout_1_span_count` checks it.
//!
//! An older build, which knows only layout 1, reads a layout-2 payload as an
//! empty batch (postcard takes `0x80 0x00` as a count of zero and ignores the
//! rest). That is why layout 2 is written only to version-2 segments, which
//! such a build refuses to open rather than lose their spans.

use std::ptr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use chaintrace_model::{
    CompactString, Event, KeyValue, Link, Resource, Scope, Span, SpanId, SpanKind, Status,
    StatusCode, TraceId, UnixNanos,
};
use serde::{Deserialize, Serialize};

use crate::store::StoreError;

/// The first bytes of a layout-2 payload: a marker that cannot begin a
/// layout-1 payload (see the module doc), then the layout number.
const LAYOUT_2_PREFIX: [u8; 3] = [MARKER[0], MARKER[1], 2];

/// Begins every payload that names its layout (layout 2 onwards).
const MARKER: [u8; 2] = [0x80, 0x00];

/// Why a WAL payload does not decode into spans.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PayloadError {
    /// The bytes do not parse as the layout's shapes.
    #[error("layout {layout} payload: {source}")]
    Postcard {
        /// The layout the payload claims (1 if it names none).
        layout: u8,
        /// What postcard found wrong.
        source: postcard::Error,
    },
    /// The marker names a layout this build does not know.
    #[error("payload layout {0} is unknown to this build, which reads layouts 1 and 2")]
    UnknownLayout(u8),
    /// The payload ends after the marker, before the layout number.
    #[error("payload ends after its layout marker, before the layout number")]
    TruncatedMarker,
    /// A span names a resource the payload does not hold.
    #[error("span {span} refers to resource {index}, but the payload holds {resources} resources")]
    ResourceIndex {
        /// The span's position in the batch.
        span: usize,
        /// The index it carries.
        index: u32,
        /// Resources in the payload.
        resources: usize,
    },
    /// Bytes follow the last span of a layout-2 payload.
    #[error("{0} bytes follow the last span of a layout 2 payload")]
    TrailingBytes(usize),
}

/// A layout-2 batch as written.
#[derive(Serialize)]
struct BatchOut<'a> {
    resources: &'a [&'a Resource],
    spans: &'a [SpanOut<'a, u32>],
}

/// A layout-2 batch as read back.
#[derive(Deserialize)]
struct BatchIn {
    resources: Vec<Resource>,
    spans: Vec<SpanIn<u32>>,
}

/// A span as written into the WAL (borrowing from the model span). `R` is
/// how it names its resource: an index into [`BatchOut::resources`] in
/// layout 2, the resource itself in layout 1. Fields keep layout 1's order.
#[derive(Serialize)]
struct SpanOut<'a, R> {
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
    resource: R,
    scope_name: &'a str,
    scope_version: &'a str,
}

/// A span as read back from the WAL; `R` as in [`SpanOut`].
#[derive(Deserialize)]
struct SpanIn<R> {
    trace_id: TraceId,
    span_id: SpanId,
    parent_span_id: Option<SpanId>,
    name: CompactString,
    kind: SpanKind,
    start: UnixNanos,
    end: UnixNanos,
    status_code: StatusCode,
    status_message: String,
    attributes: Vec<KeyValue>,
    events: Vec<Event>,
    links: Vec<Link>,
    resource: R,
    scope_name: CompactString,
    scope_version: CompactString,
}

impl<'a, R> SpanOut<'a, R> {
    /// `span` as written, naming its resource by `resource`.
    fn new(span: &'a Span, resource: R) -> Self {
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
            resource: _,
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

impl<R> SpanIn<R> {
    /// The model span, with `resource` for the one this span named.
    fn into_span(self, resource: Arc<Resource>) -> Span {
        let SpanIn {
            trace_id,
            span_id,
            parent_span_id,
            name,
            kind,
            start,
            end,
            status_code,
            status_message,
            attributes,
            events,
            links,
            resource: _,
            scope_name,
            scope_version,
        } = self;
        Span {
            trace_id,
            span_id,
            parent_span_id,
            name,
            kind,
            start,
            end,
            status: Status {
                code: status_code,
                message: status_message,
            },
            attributes,
            events,
            links,
            resource,
            scope: Scope {
                name: scope_name,
                version: scope_version,
            },
        }
    }
}

/// Distinct resources of a batch compared by pointer before one is added.
/// Batches carry few resources; in a batch with more, a resource last seen
/// further back is written again (correct, only larger) rather than scanning
/// the whole table for every span.
const RECENT_RESOURCES: usize = 16;

/// The distinct resources of a batch being encoded, in first-use order.
#[derive(Default)]
struct ResourceTable<'a> {
    distinct: Vec<&'a Resource>,
    /// The entry the previous span used: consecutive spans usually share it.
    last: usize,
}

impl<'a> ResourceTable<'a> {
    /// The index of `resource`, added if it is new.
    fn index_of(&mut self, resource: &'a Arc<Resource>) -> usize {
        let wanted = Arc::as_ptr(resource);
        if self
            .distinct
            .get(self.last)
            .is_some_and(|r| ptr::eq(*r, wanted))
        {
            return self.last;
        }
        let from = self.distinct.len().saturating_sub(RECENT_RESOURCES);
        if let Some(i) = self.distinct[from..]
            .iter()
            .rposition(|r| ptr::eq(*r, wanted))
        {
            self.last = from + i;
            return self.last;
        }
        // An equal resource in another `Arc` (spans built one by one, not
        // decoded from one export): sharing it as layout 1's decoder did
        // keeps a replayed head from growing. In a batch from one export this
        // runs only where the resource changes.
        if self
            .distinct
            .get(self.last)
            .is_some_and(|r| **r == **resource)
        {
            return self.last;
        }
        self.last = self.distinct.len();
        self.distinct.push(resource);
        self.last
    }
}

/// Encodes a batch into a WAL payload (layout 2).
#[cfg(test)]
pub(crate) fn encode_spans(spans: &[Span]) -> Result<Vec<u8>, StoreError> {
    encode_spans_after(spans, 0)
}

/// [`encode_spans`] after `headroom` zero bytes, which the caller fills in
/// (a record's frame header), so the payload is never copied.
pub(crate) fn encode_spans_after(spans: &[Span], headroom: usize) -> Result<Vec<u8>, StoreError> {
    if u32::try_from(spans.len()).is_err() {
        return Err(StoreError::Encode {
            spans: spans.len(),
            reason: "more spans than a resource index can count".into(),
        });
    }
    let mut resources = ResourceTable::default();
    let out: Vec<SpanOut<'_, u32>> = spans
        .iter()
        // Cannot truncate: there are no more resources than spans, checked above.
        .map(|s| SpanOut::new(s, resources.index_of(&s.resource) as u32))
        .collect();
    let batch = BatchOut {
        resources: &resources.distinct,
        spans: &out,
    };
    // Sized from the last batches' bytes per span: growing by doubling
    // instead copied each payload about twice over.
    let per_span = BYTES_PER_SPAN.load(Ordering::Relaxed);
    let mut buffer = Vec::with_capacity(
        headroom + LAYOUT_2_PREFIX.len() + spans.len().saturating_mul(per_span + per_span / 8),
    );
    buffer.resize(headroom, 0);
    buffer.extend_from_slice(&LAYOUT_2_PREFIX);
    let payload = postcard::to_extend(&batch, buffer).map_err(|e| StoreError::Encode {
        spans: spans.len(),
        reason: e.to_string(),
    })?;
    if let Some(now) = (payload.len() - headroom).checked_div(spans.len()) {
        // A moving average; races between batches only blur it.
        BYTES_PER_SPAN.store((per_span * 3 + now) / 4, Ordering::Relaxed);
    }
    Ok(payload)
}

/// Recent WAL bytes per span, to size the next payload's buffer.
static BYTES_PER_SPAN: AtomicUsize = AtomicUsize::new(256);

/// Decodes a WAL payload of either layout back into spans. Spans that shared
/// a resource share one `Arc` again, which keeps the head small after a
/// replay (the head charges a shared resource to its spans in proportion).
pub(crate) fn decode_spans(payload: &[u8]) -> Result<Vec<Span>, PayloadError> {
    match payload_layout(payload)? {
        1 => decode_layout_1(payload),
        2 => decode_layout_2(&payload[LAYOUT_2_PREFIX.len()..]),
        layout => Err(PayloadError::UnknownLayout(layout)),
    }
}

/// The layout a payload says it has, known to this build or not: 1 if it
/// names none. Looks at the first bytes only, decodes nothing.
pub(crate) fn payload_layout(payload: &[u8]) -> Result<u8, PayloadError> {
    match payload.strip_prefix(&MARKER[..]) {
        None => Ok(1),
        Some(rest) => rest.first().copied().ok_or(PayloadError::TruncatedMarker),
    }
}

/// Decodes the body of a layout-2 payload (after its prefix).
fn decode_layout_2(body: &[u8]) -> Result<Vec<Span>, PayloadError> {
    let (batch, rest) = postcard::take_from_bytes::<BatchIn>(body)
        .map_err(|source| PayloadError::Postcard { layout: 2, source })?;
    // Layout 1 never checked this; layout 2 can, and a CRC-valid record
    // with bytes to spare is not one this codec wrote.
    if !rest.is_empty() {
        return Err(PayloadError::TrailingBytes(rest.len()));
    }
    let resources: Vec<Arc<Resource>> = batch.resources.into_iter().map(Arc::new).collect();
    batch
        .spans
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            let resource = usize::try_from(s.resource)
                .ok()
                .and_then(|index| resources.get(index))
                .ok_or(PayloadError::ResourceIndex {
                    span: i,
                    index: s.resource,
                    resources: resources.len(),
                })?;
            Ok(s.into_span(Arc::clone(resource)))
        })
        .collect()
}

/// Decodes a layout-1 payload. Consecutive equal resources are shared again
/// (one `Arc`), as the resource was written out for every span.
fn decode_layout_1(payload: &[u8]) -> Result<Vec<Span>, PayloadError> {
    let decoded: Vec<SpanIn<Resource>> = postcard::from_bytes(payload)
        .map_err(|source| PayloadError::Postcard { layout: 1, source })?;
    let mut spans = Vec::with_capacity(decoded.len());
    let mut last_resource: Option<Arc<Resource>> = None;
    for mut s in decoded {
        let written = std::mem::take(&mut s.resource);
        let resource = match &last_resource {
            Some(prev) if **prev == written => Arc::clone(prev),
            _ => {
                let r = Arc::new(written);
                last_resource = Some(Arc::clone(&r));
                r
            }
        };
        spans.push(s.into_span(resource));
    }
    Ok(spans)
}

/// Encodes `spans` in layout 1, as builds before layout 2 wrote them: the
/// tests' way to make old payloads.
#[cfg(test)]
pub(super) fn encode_layout_1(spans: &[Span]) -> Vec<u8> {
    let out: Vec<SpanOut<'_, &Resource>> = spans
        .iter()
        .map(|s| SpanOut::new(s, &*s.resource))
        .collect();
    postcard::to_allocvec(&out).expect("layout 1 encodes")
}

#[cfg(test)]
#[path = "codec_tests.rs"]
mod tests;
