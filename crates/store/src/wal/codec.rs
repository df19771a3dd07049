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
//! - **Layout 2** (no longer written, still read): the bytes
//!   [`LAYOUT_2_PREFIX`], then postcard `BatchOut2`: the batch's distinct
//!   resources once, then the spans, each naming its resource by index and
//!   carrying its scope's name and version. Spans of one OTLP export share
//!   one `Arc<Resource>` of 4–10 attributes; writing it again for every span
//!   was about a tenth of ingest CPU.
//! - **Layout 3**: the bytes [`LAYOUT_3_PREFIX`], then postcard
//!   [`BatchOut`]: the distinct resources once, the distinct scopes once,
//!   then the spans, each naming both by index. A scope is shared the same
//!   way (`Arc<Scope>`), and written per span a 96 KiB scope name on 3 000
//!   spans turned a 257 KiB request into 288 MiB of WAL.
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
//!
//! Layout 3 goes only to version-3 segments for the same reason: a build
//! that knows layouts 1 and 2 would take a layout-3 record for damage and
//! truncate the segment there.

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

/// The first bytes of a layout-3 payload.
const LAYOUT_3_PREFIX: [u8; 3] = [MARKER[0], MARKER[1], 3];

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
    #[error("payload layout {0} is unknown to this build, which reads layouts 1 to 3")]
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
    /// A span names a scope the payload does not hold.
    #[error("span {span} refers to scope {index}, but the payload holds {scopes} scopes")]
    ScopeIndex {
        /// The span's position in the batch.
        span: usize,
        /// The index it carries.
        index: u32,
        /// Scopes in the payload.
        scopes: usize,
    },
    /// Bytes follow the last span of a layout-2 or -3 payload.
    #[error("{1} bytes follow the last span of a layout {0} payload")]
    TrailingBytes(u8, usize),
}

/// A layout-3 batch as written: what [`postcard_out::batch`] writes by
/// hand, and the tests hold it to.
#[derive(Serialize)]
#[cfg_attr(not(test), allow(dead_code))]
struct BatchOut<'a> {
    resources: &'a [&'a Resource],
    scopes: &'a [ScopeOut<'a>],
    spans: &'a [SpanOut<'a, u32, u32>],
}

/// A layout-3 batch as read back.
#[derive(Deserialize)]
struct BatchIn {
    resources: Vec<Resource>,
    scopes: Vec<ScopeIn>,
    spans: Vec<SpanIn<u32, u32>>,
}

/// A layout-2 batch as written by builds before layout 3 (the tests make
/// old payloads with it).
#[cfg(test)]
#[derive(Serialize)]
struct BatchOut2<'a> {
    resources: &'a [&'a Resource],
    spans: &'a [SpanOut<'a, u32, ScopeOut<'a>>],
}

/// A layout-2 batch as read back.
#[derive(Deserialize)]
struct BatchIn2 {
    resources: Vec<Resource>,
    spans: Vec<SpanIn<u32, ScopeIn>>,
}

/// A scope as the WAL writes it: its name, then its version. (Not the
/// model's derive, which skips empty strings, as postcard cannot.) Layouts 1
/// and 2 write these two fields inside every span, layout 3 once per scope.
#[derive(Serialize, Clone, Copy)]
struct ScopeOut<'a> {
    name: &'a str,
    version: &'a str,
}

impl<'a> ScopeOut<'a> {
    #[cfg_attr(not(test), allow(dead_code))]
    fn new(scope: &'a Scope) -> Self {
        let Scope { name, version } = scope;
        ScopeOut { name, version }
    }
}

/// A scope as read back.
#[derive(Deserialize, PartialEq)]
struct ScopeIn {
    name: CompactString,
    version: CompactString,
}

impl ScopeIn {
    fn empty() -> Self {
        ScopeIn {
            name: CompactString::default(),
            version: CompactString::default(),
        }
    }

    fn into_scope(self) -> Scope {
        Scope {
            name: self.name,
            version: self.version,
        }
    }
}

/// A span as written into the WAL (borrowing from the model span). `R` is
/// how it names its resource: an index into [`BatchOut::resources`] in
/// layouts 2 and 3, the resource itself in layout 1; `S` its scope: an index
/// in layout 3, the [`ScopeOut`] fields in layouts 1 and 2. Fields keep
/// layout 1's order (postcard writes a struct as its fields, nothing else).
#[derive(Serialize)]
struct SpanOut<'a, R, S> {
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
    scope: S,
}

/// A span as read back from the WAL; `R` and `S` as in [`SpanOut`].
#[derive(Deserialize)]
struct SpanIn<R, S> {
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
    scope: S,
}

#[cfg(test)]
impl<'a, R, S> SpanOut<'a, R, S> {
    /// `span` as written, naming its resource by `resource` and its scope by
    /// `scope`.
    fn new(span: &'a Span, resource: R, scope: S) -> Self {
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
            scope: _,
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
            scope,
        }
    }
}

impl<R, S> SpanIn<R, S> {
    /// The model span, with `resource` and `scope` for the ones it named.
    fn into_span(self, resource: Arc<Resource>, scope: Arc<Scope>) -> Span {
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
            scope: _,
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
            scope,
        }
    }
}

/// Distinct resources (or scopes) of a batch compared by pointer before one
/// is added. Batches carry few; in a batch with more, one last seen further
/// back is written again (correct, only larger) rather than scanning the
/// whole table for every span.
const RECENT_RESOURCES: usize = 16;

/// The distinct resources (or scopes) of a batch being encoded, in
/// first-use order.
struct SharedTable<'a, T> {
    distinct: Vec<&'a T>,
    /// The entry the previous span used: consecutive spans usually share it.
    last: usize,
}

impl<T> Default for SharedTable<'_, T> {
    fn default() -> Self {
        SharedTable {
            distinct: Vec::new(),
            last: 0,
        }
    }
}

impl<'a, T: PartialEq> SharedTable<'a, T> {
    /// The index of `resource`, added if it is new.
    fn index_of(&mut self, resource: &'a Arc<T>) -> usize {
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

/// Encodes a batch into a WAL payload (layout 3).
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
    let mut resources = SharedTable::default();
    let mut scopes = SharedTable::default();
    // Cannot truncate: there are no more resources or scopes than spans,
    // checked above.
    let index: Vec<(u32, u32)> = spans
        .iter()
        .map(|s| {
            (
                resources.index_of(&s.resource) as u32,
                scopes.index_of(&s.scope) as u32,
            )
        })
        .collect();
    // Sized from the last batches' bytes per span: growing by doubling
    // instead copied each payload about twice over.
    let per_span = BYTES_PER_SPAN.load(Ordering::Relaxed);
    let mut payload = Vec::with_capacity(
        headroom + LAYOUT_3_PREFIX.len() + spans.len().saturating_mul(per_span + per_span / 8),
    );
    payload.resize(headroom, 0);
    payload.extend_from_slice(&LAYOUT_3_PREFIX);
    postcard_out::batch(
        &mut payload,
        &resources.distinct,
        &scopes.distinct,
        spans,
        &index,
    );
    if let Some(now) = (payload.len() - headroom).checked_div(spans.len()) {
        // A moving average; races between batches only blur it.
        BYTES_PER_SPAN.store((per_span * 3 + now) / 4, Ordering::Relaxed);
    }
    Ok(payload)
}

/// postcard's encoding of [`BatchOut`], written straight from the model
/// spans. Through serde it was about 5 % of ingest CPU: every id went out
/// byte by byte, every field through a generic serializer. The bytes are
/// the same (`codec_tests::hand_encoding_is_postcard` holds them to
/// `postcard::to_extend`), so nothing about the format changes:
/// - unsigned integers and lengths are LEB128 varints, signed ones zigzag
///   first; `f64` is 8 little-endian bytes; `u8` and `bool` one byte;
/// - strings and byte strings are a length, then the bytes;
/// - `Option` is a 0 or 1 byte, then the value;
/// - an enum is its variant index (a varint), then its fields;
/// - structs, arrays and tuples are their fields in order, nothing else.
mod postcard_out {
    use chaintrace_model::{
        AnyValue, Event, KeyValue, Link, Resource, Scope, Span, SpanKind, Status, StatusCode,
    };

    pub(super) fn batch(
        out: &mut Vec<u8>,
        resources: &[&Resource],
        scopes: &[&Scope],
        spans: &[Span],
        index: &[(u32, u32)],
    ) {
        len(out, resources.len());
        for Resource { attributes: kvs } in resources {
            attributes(out, kvs);
        }
        len(out, scopes.len());
        for Scope { name, version } in scopes {
            text(out, name);
            text(out, version);
        }
        len(out, spans.len());
        for (s, &(resource, scope)) in spans.iter().zip(index) {
            span(out, s, resource, scope);
        }
    }

    /// In [`super::SpanOut`]'s field order.
    fn span(out: &mut Vec<u8>, s: &Span, resource: u32, scope: u32) {
        // Destructured without `..` so that a new model field fails to
        // compile here instead of being silently dropped from the WAL.
        let Span {
            trace_id,
            span_id,
            parent_span_id,
            name,
            kind,
            start,
            end,
            status: Status { code, message },
            attributes: span_attributes,
            events,
            links,
            resource: _,
            scope: _,
        } = s;
        out.extend_from_slice(&trace_id.0);
        out.extend_from_slice(&span_id.0);
        match parent_span_id {
            None => out.push(0),
            Some(p) => {
                out.push(1);
                out.extend_from_slice(&p.0);
            }
        }
        text(out, name);
        varint(out, kind_index(*kind));
        varint(out, start.0);
        varint(out, end.0);
        varint(out, status_index(*code));
        text(out, message);
        attributes(out, span_attributes);
        len(out, events.len());
        for Event {
            time,
            name,
            attributes: event_attributes,
        } in events
        {
            varint(out, time.0);
            text(out, name);
            attributes(out, event_attributes);
        }
        len(out, links.len());
        for Link {
            trace_id,
            span_id,
            attributes: link_attributes,
        } in links
        {
            out.extend_from_slice(&trace_id.0);
            out.extend_from_slice(&span_id.0);
            attributes(out, link_attributes);
        }
        varint(out, u64::from(resource));
        varint(out, u64::from(scope));
    }

    fn attributes(out: &mut Vec<u8>, kvs: &[KeyValue]) {
        len(out, kvs.len());
        for KeyValue { key, value: v } in kvs {
            text(out, key);
            value(out, v);
        }
    }

    /// Variant indexes in declaration order, as serde derives them.
    fn value(out: &mut Vec<u8>, v: &AnyValue) {
        match v {
            AnyValue::Empty => varint(out, 0),
            AnyValue::String(s) => {
                varint(out, 1);
                text(out, s);
            }
            AnyValue::Bool(b) => {
                varint(out, 2);
                out.push(u8::from(*b));
            }
            AnyValue::Int(i) => {
                varint(out, 3);
                varint(out, ((i << 1) ^ (i >> 63)) as u64);
            }
            AnyValue::Double(d) => {
                varint(out, 4);
                out.extend_from_slice(&d.to_le_bytes());
            }
            AnyValue::Bytes(b) => {
                varint(out, 5);
                len(out, b.len());
                out.extend_from_slice(b);
            }
            AnyValue::Array(items) => {
                varint(out, 6);
                len(out, items.len());
                for item in items {
                    value(out, item);
                }
            }
            AnyValue::KvList(kvs) => {
                varint(out, 7);
                attributes(out, kvs);
            }
        }
    }

    fn kind_index(kind: SpanKind) -> u64 {
        u64::from(kind.otlp_number())
    }

    fn status_index(code: StatusCode) -> u64 {
        u64::from(code.otlp_number())
    }

    fn text(out: &mut Vec<u8>, s: &str) {
        len(out, s.len());
        out.extend_from_slice(s.as_bytes());
    }

    fn len(out: &mut Vec<u8>, n: usize) {
        varint(out, n as u64);
    }

    fn varint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push(v as u8 | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }
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
        3 => decode_layout_3(&payload[LAYOUT_3_PREFIX.len()..]),
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

/// Decodes the body of a layout-3 payload (after its prefix).
fn decode_layout_3(body: &[u8]) -> Result<Vec<Span>, PayloadError> {
    let (batch, rest) = postcard::take_from_bytes::<BatchIn>(body)
        .map_err(|source| PayloadError::Postcard { layout: 3, source })?;
    // A CRC-valid record with bytes to spare is not one this codec wrote.
    if !rest.is_empty() {
        return Err(PayloadError::TrailingBytes(3, rest.len()));
    }
    let resources: Vec<Arc<Resource>> = batch.resources.into_iter().map(Arc::new).collect();
    let scopes: Vec<Arc<Scope>> = batch
        .scopes
        .into_iter()
        .map(|s| Arc::new(s.into_scope()))
        .collect();
    batch
        .spans
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            let resource = shared(&resources, s.resource).ok_or(PayloadError::ResourceIndex {
                span: i,
                index: s.resource,
                resources: resources.len(),
            })?;
            let scope = shared(&scopes, s.scope).ok_or(PayloadError::ScopeIndex {
                span: i,
                index: s.scope,
                scopes: scopes.len(),
            })?;
            Ok(s.into_span(resource, scope))
        })
        .collect()
}

/// Entry `index` of a payload's table of resources or scopes.
fn shared<T>(table: &[Arc<T>], index: u32) -> Option<Arc<T>> {
    usize::try_from(index)
        .ok()
        .and_then(|i| table.get(i))
        .cloned()
}

/// Shares a scope written inside every span (layouts 1 and 2) between
/// consecutive spans that carry an equal one, as layout 3 shares it.
#[derive(Default)]
struct InlineScopes {
    last: Option<(ScopeIn, Arc<Scope>)>,
}

impl InlineScopes {
    fn share(&mut self, written: ScopeIn) -> Arc<Scope> {
        match &self.last {
            Some((prev, shared)) if *prev == written => Arc::clone(shared),
            _ => {
                let scope = Arc::new(Scope {
                    name: written.name.clone(),
                    version: written.version.clone(),
                });
                self.last = Some((written, Arc::clone(&scope)));
                scope
            }
        }
    }
}

/// Decodes the body of a layout-2 payload (after its prefix).
fn decode_layout_2(body: &[u8]) -> Result<Vec<Span>, PayloadError> {
    let (batch, rest) = postcard::take_from_bytes::<BatchIn2>(body)
        .map_err(|source| PayloadError::Postcard { layout: 2, source })?;
    // Layout 1 never checked this; layout 2 can, and a CRC-valid record
    // with bytes to spare is not one this codec wrote.
    if !rest.is_empty() {
        return Err(PayloadError::TrailingBytes(2, rest.len()));
    }
    let resources: Vec<Arc<Resource>> = batch.resources.into_iter().map(Arc::new).collect();
    let mut scopes = InlineScopes::default();
    batch
        .spans
        .into_iter()
        .enumerate()
        .map(|(i, mut s)| {
            let resource = shared(&resources, s.resource).ok_or(PayloadError::ResourceIndex {
                span: i,
                index: s.resource,
                resources: resources.len(),
            })?;
            let scope = scopes.share(std::mem::replace(&mut s.scope, ScopeIn::empty()));
            Ok(s.into_span(resource, scope))
        })
        .collect()
}

/// Decodes a layout-1 payload. Consecutive equal resources and scopes are
/// shared again (one `Arc`), as they were written out for every span.
fn decode_layout_1(payload: &[u8]) -> Result<Vec<Span>, PayloadError> {
    let decoded: Vec<SpanIn<Resource, ScopeIn>> = postcard::from_bytes(payload)
        .map_err(|source| PayloadError::Postcard { layout: 1, source })?;
    let mut spans = Vec::with_capacity(decoded.len());
    let mut last_resource: Option<Arc<Resource>> = None;
    let mut scopes = InlineScopes::default();
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
        let scope = scopes.share(std::mem::replace(&mut s.scope, ScopeIn::empty()));
        spans.push(s.into_span(resource, scope));
    }
    Ok(spans)
}

/// Layout 3 through serde and postcard: what the hand encoder must match.
#[cfg(test)]
pub(super) fn encode_with_postcard(spans: &[Span]) -> Vec<u8> {
    let mut resources = SharedTable::default();
    let mut scopes = SharedTable::default();
    let out: Vec<SpanOut<'_, u32, u32>> = spans
        .iter()
        .map(|s| {
            SpanOut::new(
                s,
                resources.index_of(&s.resource) as u32,
                scopes.index_of(&s.scope) as u32,
            )
        })
        .collect();
    let scopes: Vec<ScopeOut<'_>> = scopes.distinct.iter().map(|s| ScopeOut::new(s)).collect();
    let batch = BatchOut {
        resources: &resources.distinct,
        scopes: &scopes,
        spans: &out,
    };
    postcard::to_extend(&batch, LAYOUT_3_PREFIX.to_vec()).expect("postcard encodes to a Vec")
}

/// Encodes `spans` in layout 2, as builds before layout 3 wrote them: the
/// tests' way to make old payloads.
#[cfg(test)]
pub(super) fn encode_layout_2(spans: &[Span]) -> Vec<u8> {
    let mut resources = SharedTable::default();
    let out: Vec<SpanOut<'_, u32, ScopeOut<'_>>> = spans
        .iter()
        .map(|s| {
            SpanOut::new(
                s,
                resources.index_of(&s.resource) as u32,
                ScopeOut::new(&s.scope),
            )
        })
        .collect();
    let batch = BatchOut2 {
        resources: &resources.distinct,
        spans: &out,
    };
    postcard::to_extend(&batch, LAYOUT_2_PREFIX.to_vec()).expect("postcard encodes to a Vec")
}

/// Encodes `spans` in layout 1, as builds before layout 2 wrote them.
#[cfg(test)]
pub(super) fn encode_layout_1(spans: &[Span]) -> Vec<u8> {
    let out: Vec<SpanOut<'_, &Resource, ScopeOut<'_>>> = spans
        .iter()
        .map(|s| SpanOut::new(s, &*s.resource, ScopeOut::new(&s.scope)))
        .collect();
    postcard::to_allocvec(&out).expect("layout 1 encodes")
}

#[cfg(test)]
#[path = "codec_tests.rs"]
mod tests;
