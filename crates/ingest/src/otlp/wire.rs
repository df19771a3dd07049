//! OTLP protobuf bytes → model [`Span`]s in one pass, without building
//! opentelemetry-proto's structs first.
//!
//! Decoding with prost and then converting cost about 4 µs a span, most of
//! it allocating OTLP `String`s, `Vec`s and `AnyValue` wrappers only to move
//! them into the model and free the rest. This module reads the protobuf
//! wire format of `ExportTraceServiceRequest` itself: ids stay borrowed
//! slices of the body until checked, strings are checked as UTF-8 in place
//! and copied once into the model, and every `Vec` is sized by counting
//! its fields before filling it.
//!
//! It owns reading the wire format exactly as prost does, so that
//! [`decode_wire`] and `decode_request(ExportTraceServiceRequest::decode(b))`
//! agree on every input, valid or not: fields in any order, unknown fields
//! (groups included) skipped, the last value kept of a scalar field sent
//! twice, a singular message field sent twice (`resource`, `scope`,
//! `status`, `value`, the `AnyValue` arms) merged, every string checked as
//! UTF-8 (also those the model does not keep), every known field's wire
//! type checked, and prost's recursion limit of 100 nested messages
//! applied at the same depths. It must not judge ids or times itself:
//! those checks are [`super::decode`]'s and are shared with the other
//! decoders.

mod logs;
mod reader;

#[cfg(test)]
pub(crate) use logs::decode_logs_within_at;
pub(crate) use logs::{decode_logs_within, LOG_BYTES_PER_BODY_BYTE};

use std::mem::size_of;
use std::sync::Arc;

use chaintrace_model::{
    AnyValue, Event, IdError, KeyValue, Link, Resource, Scope, Span, SpanKind, Status, StatusCode,
    UnixNanos,
};

use self::reader::{count_fields, count_nested, Reader, WireError, WireType};
use super::decode::{
    link_dropped, link_ids, span_times, DecodeError, DecodedSpans, SpanIds, SpanPos,
};

/// How many messages deep prost decodes before it gives up (its
/// `RECURSION_LIMIT`): the budget of the request's own fields.
const RECURSION_LIMIT: u32 = 100;

/// The fewest bytes a span that is kept takes on the wire: its trace id
/// (tag, length, 16 bytes) and span id (tag, length, 8 bytes). Span
/// vectors are reserved for no more spans than the bytes can hold.
const MIN_SPAN_WIRE_BYTES: usize = 28;

/// Parses a protobuf `ExportTraceServiceRequest` straight into model spans.
///
/// Gives the same [`DecodedSpans`] as [`super::decode_request`] on prost's
/// decoding of `body`, and fails exactly when prost would, with
/// [`DecodeError::Protobuf`] naming where the body went wrong.
pub(crate) fn decode_wire(body: &[u8]) -> Result<DecodedSpans, DecodeError> {
    decode_wire_within(body, usize::MAX).map(|(decoded, _)| decoded)
}

/// The most one body byte can become decoded (see
/// [`super::protobuf_bound`]), as the decoder charges it: the smallest
/// message is 2 bytes, and costs half a message charge per byte plus its
/// slot in a vector that may have doubled (the largest slot, twice, per 2
/// bytes); a kept span (at least 28 bytes) its share of `size_of::<Span>()`
/// twice over (reserved, then charged); the string bytes one for one; and
/// one for rounding.
pub(crate) const PROTOBUF_BYTES_PER_BODY_BYTE: usize =
    reader::MESSAGE_BYTES / 2 + LARGEST_SLOT + 2 * size_of::<Span>() / MIN_SPAN_WIRE_BYTES + 2;

/// The largest element the decoder pushes into a vector.
const LARGEST_SLOT: usize = max(
    max(size_of::<KeyValue>(), size_of::<AnyValue>()),
    max(size_of::<Event>(), size_of::<Link>()),
);

const fn max(a: usize, b: usize) -> usize {
    if a > b {
        a
    } else {
        b
    }
}

/// [`decode_wire`] allocating at most about `max_decoded_bytes`: every
/// nested message is charged [`reader::MESSAGE_BYTES`] and every kept span
/// its size, besides the string bytes the body holds one for one; past
/// the budget it stops with [`DecodeError::TooLarge`]. Also returns an
/// upper bound of the bytes it decoded into.
pub(crate) fn decode_wire_within(
    body: &[u8],
    max_decoded_bytes: usize,
) -> Result<(DecodedSpans, usize), DecodeError> {
    let budget = max_decoded_bytes.saturating_sub(body.len());
    let (decoded, charged) = reader::with_memory_budget(budget, || decode_budgeted(body));
    match decoded {
        Ok(decoded) => Ok((decoded, charged.saturating_add(body.len()))),
        Err(e) if e.over_budget() => Err(DecodeError::TooLarge(format!(
            "{}; send smaller batches",
            e.into_prost()
        ))),
        Err(e) => Err(DecodeError::Protobuf(e.into_prost())),
    }
}

fn decode_budgeted(body: &[u8]) -> Result<DecodedSpans, WireError> {
    let mut out = DecodedSpans::default();
    // Sized once: growing it scope by scope copied every span decoded so
    // far (about 3 % of ingest CPU). Request -> resource_spans ->
    // scope_spans -> spans.
    out.spans.reserve_exact(
        count_nested(Reader::new(body), &[1, 2, 2]).min(body.len() / MIN_SPAN_WIRE_BYTES),
    );
    request(Reader::new(body), &mut out)?;
    Ok(out)
}

fn request(r: Reader<'_>, out: &mut DecodedSpans) -> Result<(), WireError> {
    let budget = RECURSION_LIMIT;
    let mut ri = 0;
    each_field(r, Message::Request, |tag, wire, r| match tag {
        1 => {
            let index = ri;
            ri += 1;
            r.message(wire, budget)
                .and_then(|(body, inner)| resource_spans(body, inner, index, out))
                .map_err(|e| e.index(index))
        }
        _ => r.skip(tag, wire, budget),
    })
}

/// One `ResourceSpans`. Its `resource` may come after its spans on the
/// wire, and may come more than once (prost merges them), so a first pass
/// reads everything but the spans and a second pass reads the spans.
fn resource_spans(
    r: Reader<'_>,
    budget: u32,
    ri: usize,
    out: &mut DecodedSpans,
) -> Result<(), WireError> {
    let mut attributes = Vec::new();
    each_field(r, Message::ResourceSpans, |tag, wire, r| match tag {
        1 => {
            let (body, inner) = r.message(wire, budget)?;
            resource(body, inner, &mut attributes)
        }
        // Framing and depth only; read in the second pass.
        2 => r.frame(wire, budget).map(drop),
        3 => r.string(wire).map(drop),
        _ => r.skip(tag, wire, budget),
    })?;

    let resource = Arc::new(Resource { attributes });
    let mut si = 0;
    each_field(r, Message::ResourceSpans, |tag, wire, r| match tag {
        2 => {
            let place = ScopePlace {
                resource: ri,
                scope: si,
            };
            si += 1;
            r.message(wire, budget)
                .and_then(|(body, inner)| scope_spans(body, inner, place, &resource, out))
                .map_err(|e| e.index(place.scope))
        }
        // Checked by the first pass.
        _ => r.skip(tag, wire, budget),
    })
}

fn resource(r: Reader<'_>, budget: u32, attributes: &mut Vec<KeyValue>) -> Result<(), WireError> {
    let [count] = count_fields(r, [1]);
    reader::charge_reserve::<KeyValue>(count)?;
    attributes.reserve(count);
    each_field(r, Message::Resource, |tag, wire, r| match tag {
        1 => push_key_value(r, wire, budget, attributes),
        2 => r.varint(wire).map(drop),
        3 => {
            let (body, inner) = r.message(wire, budget)?;
            entity_ref(body, inner)
        }
        _ => r.skip(tag, wire, budget),
    })
}

/// Checked like prost checks it; the model keeps no entity refs.
fn entity_ref(r: Reader<'_>, budget: u32) -> Result<(), WireError> {
    each_field(r, Message::EntityRef, |tag, wire, r| match tag {
        1..=4 => r.string(wire).map(drop),
        _ => r.skip(tag, wire, budget),
    })
}

/// Where a `ScopeSpans` sits in the request.
#[derive(Debug, Clone, Copy)]
struct ScopePlace {
    resource: usize,
    scope: usize,
}

/// One `ScopeSpans`, in two passes like [`resource_spans`]: its `scope`
/// first, then its spans.
fn scope_spans(
    r: Reader<'_>,
    budget: u32,
    place: ScopePlace,
    resource: &Arc<Resource>,
    out: &mut DecodedSpans,
) -> Result<(), WireError> {
    let (mut name, mut version) = ("", "");
    let mut spans = 0;
    each_field(r, Message::ScopeSpans, |tag, wire, r| match tag {
        1 => {
            let (body, inner) = r.message(wire, budget)?;
            scope(body, inner, &mut name, &mut version)
        }
        2 => {
            spans += 1;
            r.frame(wire, budget).map(drop)
        }
        3 => r.string(wire).map(drop),
        _ => r.skip(tag, wire, budget),
    })?;

    // By bytes as well as by count: empty span messages (2 bytes each, each
    // rejected for its missing ids) must not reserve a model span apiece.
    out.spans
        .reserve(spans.min(r.remaining() / MIN_SPAN_WIRE_BYTES));
    // One scope for all its spans, however long its name.
    let scope = Arc::new(Scope {
        name: name.into(),
        version: version.into(),
    });
    let mut pi = 0;
    let mut scratch = Vec::new();
    each_field(r, Message::ScopeSpans, |tag, wire, r| match tag {
        2 => {
            let pos = SpanPos {
                resource: place.resource,
                scope: place.scope,
                span: pi,
            };
            pi += 1;
            r.message(wire, budget)
                .and_then(|(body, inner)| {
                    span(body, inner, pos, resource, &scope, &mut scratch, out)
                })
                .map_err(|e| e.index(pos.span))
        }
        _ => r.skip(tag, wire, budget),
    })
}

/// One `InstrumentationScope`, merged into `name` and `version` (the last
/// one sent wins, as prost merges repeated `scope` fields).
fn scope<'a>(
    r: Reader<'a>,
    budget: u32,
    name: &mut &'a str,
    version: &mut &'a str,
) -> Result<(), WireError> {
    each_field(r, Message::Scope, |tag, wire, r| {
        match tag {
            1 => *name = r.string(wire)?,
            2 => *version = r.string(wire)?,
            // Scope attributes have no place in the model, but prost
            // would refuse a request with bad ones.
            3 => {
                let (body, inner) = r.message(wire, budget)?;
                key_value(body, inner)?;
            }
            4 => {
                r.varint(wire)?;
            }
            _ => r.skip(tag, wire, budget)?,
        }
        Ok(())
    })
}

/// One `Span`: read whole, then checked as [`super::decode`] checks spans.
///
/// Attributes are read into `scratch` (reused from span to span) and moved
/// into a list of exactly their number at the end: counting them first
/// took a second walk over every span's fields (~1.3 % of ingest CPU).
/// Events and links are rare and grow as they come.
fn span(
    r: Reader<'_>,
    budget: u32,
    pos: SpanPos,
    resource: &Arc<Resource>,
    scope: &Arc<Scope>,
    scratch: &mut Vec<KeyValue>,
    out: &mut DecodedSpans,
) -> Result<(), WireError> {
    scratch.clear();
    let (mut trace_id, mut span_id, mut parent_span_id): (&[u8], &[u8], &[u8]) = (&[], &[], &[]);
    let mut name = "";
    let mut kind = 0;
    let (mut start, mut end) = (0, 0);
    let (mut status_code, mut status_message) = (0, "");
    let mut events = Vec::new();
    let mut links = Vec::new();
    // Bad links are reported only once the span is known to be kept, as
    // `decode_request` does: a rejected span's links are not looked at.
    let mut bad_links: Vec<(usize, IdError)> = Vec::new();
    let mut link_index = 0;

    each_field(r, Message::Span, |tag, wire, r| {
        match tag {
            1 => trace_id = r.bytes(wire)?,
            2 => span_id = r.bytes(wire)?,
            3 => {
                r.string(wire)?; // trace_state
            }
            4 => parent_span_id = r.bytes(wire)?,
            5 => name = r.string(wire)?,
            // prost's int32: the low 32 bits of the varint.
            6 => kind = r.varint(wire)? as i32,
            7 => start = r.fixed64(wire)?,
            8 => end = r.fixed64(wire)?,
            9 => push_key_value(r, wire, budget, scratch)?,
            // dropped_{attributes,events,links}_count
            10 | 12 | 14 => {
                r.varint(wire)?;
            }
            11 => {
                let index = events.len();
                let event = r
                    .message(wire, budget)
                    .and_then(|(body, inner)| event(body, inner))
                    .map_err(|e| e.index(index))?;
                reader::charge_push(&events)?;
                events.push(event);
            }
            13 => {
                let index = link_index;
                link_index += 1;
                let link = r
                    .message(wire, budget)
                    .and_then(|(body, inner)| link(body, inner))
                    .map_err(|e| e.index(index))?;
                reader::charge_push(&links)?;
                match link {
                    Ok(link) => links.push(link),
                    Err(problem) => bad_links.push((index, problem)),
                }
            }
            15 => {
                let (body, inner) = r.message(wire, budget)?;
                status(body, inner, &mut status_code, &mut status_message)?;
            }
            16 => {
                r.fixed32(wire)?; // flags
            }
            _ => r.skip(tag, wire, budget)?,
        }
        Ok(())
    })?;

    let ids = match SpanIds::check(trace_id, span_id, parent_span_id) {
        Ok(ids) => ids,
        Err(problem) => {
            out.reject_span(pos, &problem);
            return Ok(());
        }
    };
    for (li, problem) in bad_links {
        out.drop_link(link_dropped(pos, li, &problem));
    }
    reader::charge(size_of::<Span>())?;
    let (start, end) = span_times(start, end);
    // Exactly their number; `scratch` keeps its buffer for the next span.
    reader::charge_reserve::<KeyValue>(scratch.len())?;
    let mut attributes = Vec::with_capacity(scratch.len());
    attributes.append(scratch);
    out.spans.push(Span {
        trace_id: ids.trace_id,
        span_id: ids.span_id,
        parent_span_id: ids.parent_span_id,
        name: name.into(),
        kind: SpanKind::from_otlp(kind),
        start,
        end,
        status: Status {
            code: StatusCode::from_otlp(status_code),
            message: status_message.to_owned(),
        },
        attributes,
        events,
        links,
        resource: Arc::clone(resource),
        scope: Arc::clone(scope),
    });
    Ok(())
}

/// One `Status`, merged into `code` and `message` (a span may send more
/// than one; prost merges them).
fn status<'a>(
    r: Reader<'a>,
    budget: u32,
    code: &mut i32,
    message: &mut &'a str,
) -> Result<(), WireError> {
    each_field(r, Message::Status, |tag, wire, r| {
        match tag {
            2 => *message = r.string(wire)?,
            3 => *code = r.varint(wire)? as i32,
            _ => r.skip(tag, wire, budget)?,
        }
        Ok(())
    })
}

fn event(r: Reader<'_>, budget: u32) -> Result<Event, WireError> {
    let [attribute_count] = count_fields(r, [3]);
    let mut time = 0;
    let mut name = "";
    let mut attributes = Vec::with_capacity(attribute_count);
    each_field(r, Message::Event, |tag, wire, r| {
        match tag {
            1 => time = r.fixed64(wire)?,
            2 => name = r.string(wire)?,
            3 => push_key_value(r, wire, budget, &mut attributes)?,
            4 => {
                r.varint(wire)?;
            }
            _ => r.skip(tag, wire, budget)?,
        }
        Ok(())
    })?;
    Ok(Event {
        time: UnixNanos(time),
        name: name.to_owned(),
        attributes,
    })
}

/// One `Link`: the outer error refuses the request, the inner one drops
/// only this link.
fn link(r: Reader<'_>, budget: u32) -> Result<Result<Link, IdError>, WireError> {
    let [attribute_count] = count_fields(r, [4]);
    let (mut trace_id, mut span_id): (&[u8], &[u8]) = (&[], &[]);
    let mut attributes = Vec::with_capacity(attribute_count);
    each_field(r, Message::Link, |tag, wire, r| {
        match tag {
            1 => trace_id = r.bytes(wire)?,
            2 => span_id = r.bytes(wire)?,
            3 => {
                r.string(wire)?; // trace_state
            }
            4 => push_key_value(r, wire, budget, &mut attributes)?,
            5 => {
                r.varint(wire)?;
            }
            6 => {
                r.fixed32(wire)?; // flags
            }
            _ => r.skip(tag, wire, budget)?,
        }
        Ok(())
    })?;
    Ok(link_ids(trace_id, span_id).map(|(trace_id, span_id)| Link {
        trace_id,
        span_id,
        attributes,
    }))
}

/// Reads one `KeyValue` field of a message whose fields have `budget`.
fn push_key_value(
    r: &mut Reader<'_>,
    wire: WireType,
    budget: u32,
    into: &mut Vec<KeyValue>,
) -> Result<(), WireError> {
    let index = into.len();
    let kv = r
        .message(wire, budget)
        .and_then(|(body, inner)| key_value(body, inner))
        .map_err(|e| e.index(index))?;
    reader::charge_push(into)?;
    into.push(kv);
    Ok(())
}

fn key_value(r: Reader<'_>, budget: u32) -> Result<KeyValue, WireError> {
    let mut key = "";
    let mut value = AnyValue::Empty;
    each_field(r, Message::KeyValue, |tag, wire, r| {
        match tag {
            1 => key = r.string(wire)?,
            2 => {
                let (body, inner) = r.message(wire, budget)?;
                any_value(body, inner, &mut value)?;
            }
            3 => {
                r.varint(wire)?; // key_strindex
            }
            _ => r.skip(tag, wire, budget)?,
        }
        Ok(())
    })?;
    Ok(KeyValue {
        key: key.into(),
        value,
    })
}

/// Merges one `AnyValue` message into `value`, as prost merges its oneof:
/// the last arm sent wins, except that an array (or kvlist) sent while the
/// value already is one is appended to it. An absent value and
/// `string_value_strindex` (an index into a profiles dictionary, which
/// traces do not carry) are both [`AnyValue::Empty`], as `decode_request`
/// converts them; prost treats the two alike when merging too.
fn any_value(r: Reader<'_>, budget: u32, value: &mut AnyValue) -> Result<(), WireError> {
    each_field(r, Message::AnyValue, |tag, wire, r| {
        match tag {
            1 => *value = AnyValue::String(r.string(wire)?.into()),
            2 => *value = AnyValue::Bool(r.varint(wire)? != 0),
            3 => *value = AnyValue::Int(r.varint(wire)? as i64),
            4 => *value = AnyValue::Double(f64::from_bits(r.fixed64(wire)?)),
            5 => {
                let (body, inner) = r.message(wire, budget)?;
                let mut items = match std::mem::replace(value, AnyValue::Empty) {
                    AnyValue::Array(items) => items,
                    _ => Vec::new(),
                };
                array_value(body, inner, &mut items)?;
                *value = AnyValue::Array(items);
            }
            6 => {
                let (body, inner) = r.message(wire, budget)?;
                let mut items = match std::mem::replace(value, AnyValue::Empty) {
                    AnyValue::KvList(items) => items,
                    _ => Vec::new(),
                };
                kvlist_value(body, inner, &mut items)?;
                *value = AnyValue::KvList(items);
            }
            7 => *value = AnyValue::Bytes(r.bytes(wire)?.to_vec()),
            8 => {
                r.varint(wire)?;
                *value = AnyValue::Empty;
            }
            _ => r.skip(tag, wire, budget)?,
        }
        Ok(())
    })
}

fn array_value(r: Reader<'_>, budget: u32, items: &mut Vec<AnyValue>) -> Result<(), WireError> {
    let [count] = count_fields(r, [1]);
    reader::charge_reserve::<AnyValue>(count)?;
    items.reserve(count);
    each_field(r, Message::ArrayValue, |tag, wire, r| match tag {
        1 => {
            let mut item = AnyValue::Empty;
            r.message(wire, budget)
                .and_then(|(body, inner)| any_value(body, inner, &mut item))
                .map_err(|e| e.index(items.len()))?;
            items.push(item);
            Ok(())
        }
        _ => r.skip(tag, wire, budget),
    })
}

fn kvlist_value(r: Reader<'_>, budget: u32, items: &mut Vec<KeyValue>) -> Result<(), WireError> {
    let [count] = count_fields(r, [1]);
    reader::charge_reserve::<KeyValue>(count)?;
    items.reserve(count);
    each_field(r, Message::KeyValueList, |tag, wire, r| match tag {
        1 => push_key_value(r, wire, budget, items),
        _ => r.skip(tag, wire, budget),
    })
}

/// Calls `field` for each field of a message, with its number and wire
/// type and the reader positioned at its value; an error is labelled with
/// the field's name on its way out.
fn each_field<'a>(
    mut r: Reader<'a>,
    message: Message,
    mut field: impl FnMut(u32, WireType, &mut Reader<'a>) -> Result<(), WireError>,
) -> Result<(), WireError> {
    while !r.is_empty() {
        let (tag, wire) = r.key()?;
        field(tag, wire, &mut r).map_err(|e| e.within(message.field_name(tag), tag))?;
    }
    Ok(())
}

/// The messages of `ExportTraceServiceRequest` and
/// `ExportLogsServiceRequest`, to name fields in errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Message {
    Request,
    ResourceSpans,
    Resource,
    EntityRef,
    ScopeSpans,
    Scope,
    Span,
    Event,
    Link,
    Status,
    KeyValue,
    AnyValue,
    ArrayValue,
    KeyValueList,
    LogsRequest,
    ResourceLogs,
    ScopeLogs,
    LogRecord,
}

impl Message {
    /// A field's name as OTLP/JSON spells it, `None` for unknown fields.
    fn field_name(self, tag: u32) -> Option<&'static str> {
        let names: &[&'static str] = match self {
            Message::Request => &["resourceSpans"],
            Message::ResourceSpans => &["resource", "scopeSpans", "schemaUrl"],
            Message::Resource => &["attributes", "droppedAttributesCount", "entityRefs"],
            Message::EntityRef => &["schemaUrl", "type", "idKeys", "descriptionKeys"],
            Message::ScopeSpans => &["scope", "spans", "schemaUrl"],
            Message::Scope => &["name", "version", "attributes", "droppedAttributesCount"],
            Message::Span => &[
                "traceId",
                "spanId",
                "traceState",
                "parentSpanId",
                "name",
                "kind",
                "startTimeUnixNano",
                "endTimeUnixNano",
                "attributes",
                "droppedAttributesCount",
                "events",
                "droppedEventsCount",
                "links",
                "droppedLinksCount",
                "status",
                "flags",
            ],
            Message::Event => &[
                "timeUnixNano",
                "name",
                "attributes",
                "droppedAttributesCount",
            ],
            Message::Link => &[
                "traceId",
                "spanId",
                "traceState",
                "attributes",
                "droppedAttributesCount",
                "flags",
            ],
            // Field 1 was the deprecated code, removed from the proto.
            Message::Status => &["", "message", "code"],
            Message::KeyValue => &["key", "value", "keyStrindex"],
            Message::AnyValue => &[
                "stringValue",
                "boolValue",
                "intValue",
                "doubleValue",
                "arrayValue",
                "kvlistValue",
                "bytesValue",
                "stringValueStrindex",
            ],
            Message::ArrayValue | Message::KeyValueList => &["values"],
            Message::LogsRequest => &["resourceLogs"],
            Message::ResourceLogs => &["resource", "scopeLogs", "schemaUrl"],
            Message::ScopeLogs => &["scope", "logRecords", "schemaUrl"],
            // Field 4 is reserved.
            Message::LogRecord => &[
                "timeUnixNano",
                "severityNumber",
                "severityText",
                "",
                "body",
                "attributes",
                "droppedAttributesCount",
                "flags",
                "traceId",
                "spanId",
                "observedTimeUnixNano",
                "eventName",
            ],
        };
        let index = usize::try_from(tag).ok()?.checked_sub(1)?;
        names.get(index).copied().filter(|name| !name.is_empty())
    }
}

#[cfg(test)]
mod test_requests;
#[cfg(test)]
#[path = "wire_tests.rs"]
mod tests;
