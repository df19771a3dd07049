//! Jaeger's `Batch` (and the `Agent.emitBatch` call carrying it) → model
//! [`Span`]s: the field mapping documented in [`super`]. Reads the structs
//! with [`super::thrift`]; must not know how either protocol spells them.

use std::borrow::Cow;
use std::mem::size_of;
use std::sync::Arc;

use chaintrace_model::{
    AnyValue, CompactString, Event, KeyValue, Link, Resource, Scope, Span, SpanId, SpanKind,
    Status, StatusCode, TraceId, UnixNanos,
};

use super::thrift::{Reader, Result, TType, ThriftError, ThriftProtocol};
use crate::otlp::DecodedSpans;

/// Decodes one `Agent.emitBatch` call message, as a Jaeger agent receives
/// it in one UDP datagram (compact on port 6831, binary on 6832).
///
/// The message must be a call or one-way call of `emitBatch`; its
/// argument 1 is the [`Batch`](super#mapping). Spans with bad ids are
/// rejected one by one and counted in [`DecodedSpans`]; bytes that are not
/// such a message are an error naming the byte offset.
///
/// ```
/// use chaintrace_ingest::jaeger::{decode_emit_batch, ThriftProtocol};
/// let err = decode_emit_batch(b"\x82\x21\x00\x04ping\x00", ThriftProtocol::Compact).unwrap_err();
/// assert!(err.to_string().contains("emitBatch"));
/// ```
pub fn decode_emit_batch(
    message: &[u8],
    protocol: ThriftProtocol,
) -> std::result::Result<DecodedSpans, ThriftError> {
    decode_emit_batch_within(message, protocol, usize::MAX).map(|(decoded, _)| decoded)
}

/// [`decode_emit_batch`] within `budget` bytes of decoded memory (past it,
/// an error that [`ThriftError::is_over_budget`] recognises); also returns
/// the bytes charged.
pub fn decode_emit_batch_within(
    message: &[u8],
    protocol: ThriftProtocol,
    budget: usize,
) -> std::result::Result<(DecodedSpans, usize), ThriftError> {
    let mut r = Reader::new(message, protocol, budget);
    let (name, kind) = r.message_begin()?;
    if name != b"emitBatch" {
        return Err(r.error(format_args!(
            "want a call of Agent.emitBatch, got method {:?}",
            String::from_utf8_lossy(name)
        )));
    }
    // 1 call, 4 oneway: Jaeger clients send oneway, Thrift lets either carry it.
    if kind != 1 && kind != 4 {
        return Err(r.error(format_args!(
            "want a call or oneway message, got message type {kind}"
        )));
    }
    let mut batch = BatchReader::default();
    r.read_struct(|r, id, ty| match (id, ty) {
        (1, TType::Struct) => batch.batch(r).map_err(|e| e.within("batch")),
        _ => r.skip(ty),
    })?;
    Ok((batch.finish(), r.used()))
}

/// Decodes a bare `Batch` struct, as the Jaeger collector receives it in
/// the body of `POST /api/traces` (`Content-Type: application/x-thrift`,
/// binary protocol).
///
/// ```
/// use chaintrace_ingest::jaeger::{decode_batch, ThriftProtocol};
/// // A Batch with no fields: no spans, nothing rejected.
/// let decoded = decode_batch(&[0], ThriftProtocol::Binary).unwrap();
/// assert!(decoded.spans.is_empty() && decoded.rejected == 0);
/// ```
pub fn decode_batch(
    body: &[u8],
    protocol: ThriftProtocol,
) -> std::result::Result<DecodedSpans, ThriftError> {
    decode_batch_within(body, protocol, usize::MAX).map(|(decoded, _)| decoded)
}

/// [`decode_batch`] within `budget` bytes of decoded memory (past it, an
/// error that [`ThriftError::is_over_budget`] recognises); also returns
/// the bytes charged.
pub fn decode_batch_within(
    body: &[u8],
    protocol: ThriftProtocol,
    budget: usize,
) -> std::result::Result<(DecodedSpans, usize), ThriftError> {
    let mut r = Reader::new(body, protocol, budget);
    let mut batch = BatchReader::default();
    batch.batch(&mut r).map_err(|e| e.within("batch"))?;
    Ok((batch.finish(), r.used()))
}

/// The most one body byte can become decoded, as the reader charges it:
/// the smallest list element is one byte and is charged twice the largest
/// kept element (a span); strings are charged one for one. For the decode
/// gate's upper bound of a body.
pub const THRIFT_BYTES_PER_BODY_BYTE: usize = 2 * std::mem::size_of::<Span>() + 1;

/// The spans of a batch as they are read, and its process. Spans get the
/// resource at the end: Thrift lets `process` come after `spans`.
#[derive(Default)]
pub(super) struct BatchReader {
    pub(super) out: DecodedSpans,
    pub(super) resource: Resource,
    /// Every distinct scope seen, shared by the spans that name it.
    scopes: Vec<Arc<Scope>>,
    /// Span indexes in the batch, for the messages of rejected spans.
    next_span: usize,
}

impl BatchReader {
    fn batch(&mut self, r: &mut Reader<'_>) -> Result<()> {
        r.read_struct(|r, id, ty| match (id, ty) {
            (1, TType::Struct) => {
                self.resource = process(r).map_err(|e| e.within("process"))?;
                Ok(())
            }
            (2, TType::List) => r
                .read_list("the list of spans", size_of::<Span>(), |r, ty, _| {
                    let index = self.next_span;
                    self.next_span += 1;
                    if ty != TType::Struct {
                        return r.skip(ty);
                    }
                    self.span(r, index)
                        .map_err(|e| e.within(&format!("[{index}]")))
                })
                .map_err(|e| e.within("spans")),
            _ => r.skip(ty),
        })
    }

    fn span(&mut self, r: &mut Reader<'_>, index: usize) -> Result<()> {
        let raw = RawSpan::read(r)?;
        let place = format!("batch.spans[{index}]");
        match self.convert(raw, &place) {
            Ok(span) => self.out.spans.push(span),
            Err(reason) => self.out.reject(&place, &reason),
        }
        Ok(())
    }

    pub(super) fn finish(mut self) -> DecodedSpans {
        let resource = Arc::new(self.resource);
        for span in &mut self.out.spans {
            span.resource = Arc::clone(&resource);
        }
        self.out
    }

    fn scope(&mut self, scope: Scope) -> Arc<Scope> {
        if let Some(shared) = self.scopes.iter().find(|s| ***s == scope) {
            return Arc::clone(shared);
        }
        let shared = Arc::new(scope);
        self.scopes.push(Arc::clone(&shared));
        shared
    }

    /// Checks a span's ids, sorts its tags and turns its references into
    /// the parent and links: shared by the Thrift and JSON readers.
    pub(super) fn convert(
        &mut self,
        raw: RawSpan,
        place: &str,
    ) -> std::result::Result<Span, String> {
        let trace_id = trace_id(raw.trace_id_high, raw.trace_id_low)
            .map_err(|e| format!("traceIdHigh/traceIdLow: {e}"))?;
        let span_id = SpanId::from_bytes(&raw.span_id.to_be_bytes()).map_err(|e| e.to_string())?;
        let mut parent_span_id =
            (raw.parent_span_id != 0).then(|| SpanId(raw.parent_span_id.to_be_bytes()));

        let mut links = Vec::new();
        for (ri, reference) in raw.references.into_iter().enumerate() {
            let ids = trace_id_of(&reference).and_then(|t| {
                SpanId::from_bytes(&reference.span_id.to_be_bytes())
                    .map(|s| (t, s))
                    .map_err(|e| e.to_string())
            });
            let (ref_trace, ref_span) = match ids {
                Ok(ids) => ids,
                Err(problem) => {
                    self.out.drop_link(format!(
                        "{place}.references[{ri}]: {problem} (reference dropped, span kept)"
                    ));
                    continue;
                }
            };
            let child_of = reference.ref_type == CHILD_OF;
            if child_of && ref_trace == trace_id {
                if parent_span_id.is_none() {
                    parent_span_id = Some(ref_span);
                    continue;
                }
                if parent_span_id == Some(ref_span) {
                    // The parent said twice: as parentSpanId and as a reference.
                    continue;
                }
            }
            let ref_type = if child_of { "child_of" } else { "follows_from" };
            links.push(Link {
                trace_id: ref_trace,
                span_id: ref_span,
                attributes: vec![KeyValue::new(REF_TYPE_KEY, ref_type)],
            });
        }

        let tags = SpanTags::sort(raw.tags);
        let start = micros_to_nanos(raw.start_time);
        let end = UnixNanos(start.0.saturating_add(micros_to_nanos(raw.duration).0));
        let scope = self.scope(tags.scope);
        Ok(Span {
            trace_id,
            span_id,
            parent_span_id,
            name: raw.operation_name,
            kind: tags.kind,
            start,
            end,
            status: tags.status,
            attributes: tags.attributes,
            events: raw.logs,
            links,
            // Replaced by the batch's in `finish`.
            resource: Arc::default(),
            scope,
        })
    }
}

/// `SpanRefType.CHILD_OF`; the other, 1, is `FOLLOWS_FROM`.
pub(super) const CHILD_OF: i32 = 0;

/// The link attribute that keeps a Jaeger reference's type, as
/// OpenTelemetry's Jaeger receiver names it.
pub const REF_TYPE_KEY: &str = "opentracing.ref_type";

/// 128-bit trace id from its two halves, high first (big-endian).
fn trace_id(high: i64, low: i64) -> std::result::Result<TraceId, chaintrace_model::IdError> {
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&high.to_be_bytes());
    bytes[8..].copy_from_slice(&low.to_be_bytes());
    TraceId::from_bytes(&bytes)
}

fn trace_id_of(reference: &RawRef) -> std::result::Result<TraceId, String> {
    trace_id(reference.trace_id_high, reference.trace_id_low)
        .map_err(|e| format!("traceIdHigh/traceIdLow: {e}"))
}

/// Jaeger counts microseconds; a negative time (never sent by a working
/// client) is taken as zero rather than wrapping to the far future.
fn micros_to_nanos(micros: i64) -> UnixNanos {
    UnixNanos(u64::try_from(micros).unwrap_or(0).saturating_mul(1_000))
}

/// `Process`: `serviceName` → `service.name`, then its tags, as the
/// resource's attributes.
fn process(r: &mut Reader<'_>) -> Result<Resource> {
    let mut service_name = None;
    let mut tags = Vec::new();
    r.read_struct(|r, id, ty| match (id, ty) {
        (1, TType::Binary) => {
            service_name = Some(r.string("serviceName")?.into_owned());
            Ok(())
        }
        (2, TType::List) => read_tags(r, &mut tags).map_err(|e| e.within("tags")),
        _ => r.skip(ty),
    })?;
    let mut attributes = Vec::with_capacity(tags.len() + 1);
    if let Some(name) = service_name.filter(|n| !n.is_empty()) {
        attributes.push(KeyValue::new("service.name", name));
    }
    attributes.extend(tags);
    Ok(Resource { attributes })
}

/// A `Span` as sent, before its ids are checked and its tags sorted.
#[derive(Default)]
pub(super) struct RawSpan {
    pub(super) trace_id_low: i64,
    pub(super) trace_id_high: i64,
    pub(super) span_id: i64,
    pub(super) parent_span_id: i64,
    pub(super) operation_name: CompactString,
    pub(super) references: Vec<RawRef>,
    pub(super) start_time: i64,
    pub(super) duration: i64,
    pub(super) tags: Vec<KeyValue>,
    pub(super) logs: Vec<Event>,
}

impl RawSpan {
    /// Fields of the wrong type are skipped, as Thrift's generated readers
    /// do; `flags` and `incomplete` have no place in the model.
    fn read(r: &mut Reader<'_>) -> Result<RawSpan> {
        let mut span = RawSpan::default();
        r.read_struct(|r, id, ty| {
            match (id, ty) {
                (1, TType::I64) => span.trace_id_low = r.i64("traceIdLow")?,
                (2, TType::I64) => span.trace_id_high = r.i64("traceIdHigh")?,
                (3, TType::I64) => span.span_id = r.i64("spanId")?,
                (4, TType::I64) => span.parent_span_id = r.i64("parentSpanId")?,
                (5, TType::Binary) => {
                    span.operation_name = CompactString::from(r.string("operationName")?)
                }
                (6, TType::List) => {
                    span.references.clear();
                    r.read_list("references", size_of::<Link>(), |r, ty, index| {
                        if ty != TType::Struct {
                            return r.skip(ty);
                        }
                        let reference =
                            RawRef::read(r).map_err(|e| e.within(&format!("[{index}]")))?;
                        span.references.push(reference);
                        Ok(())
                    })
                    .map_err(|e| e.within("references"))?
                }
                (8, TType::I64) => span.start_time = r.i64("startTime")?,
                (9, TType::I64) => span.duration = r.i64("duration")?,
                (10, TType::List) => {
                    span.tags.clear();
                    read_tags(r, &mut span.tags).map_err(|e| e.within("tags"))?
                }
                (11, TType::List) => {
                    span.logs.clear();
                    r.read_list("logs", size_of::<Event>(), |r, ty, index| {
                        if ty != TType::Struct {
                            return r.skip(ty);
                        }
                        let log = read_log(r).map_err(|e| e.within(&format!("[{index}]")))?;
                        span.logs.push(log);
                        Ok(())
                    })
                    .map_err(|e| e.within("logs"))?
                }
                _ => r.skip(ty)?,
            }
            Ok(())
        })?;
        Ok(span)
    }
}

/// A `SpanRef` as sent.
#[derive(Default)]
pub(super) struct RawRef {
    pub(super) ref_type: i32,
    pub(super) trace_id_low: i64,
    pub(super) trace_id_high: i64,
    pub(super) span_id: i64,
}

impl RawRef {
    fn read(r: &mut Reader<'_>) -> Result<RawRef> {
        let mut reference = RawRef::default();
        r.read_struct(|r, id, ty| {
            match (id, ty) {
                (1, TType::I32) => reference.ref_type = r.i32("refType")?,
                (2, TType::I64) => reference.trace_id_low = r.i64("traceIdLow")?,
                (3, TType::I64) => reference.trace_id_high = r.i64("traceIdHigh")?,
                (4, TType::I64) => reference.span_id = r.i64("spanId")?,
                _ => r.skip(ty)?,
            }
            Ok(())
        })?;
        Ok(reference)
    }
}

/// A `Log` → an [`Event`]: the `event` field names it (else `message`,
/// which OpenTelemetry's Python exporter writes; else `log`), the other
/// fields are its attributes.
fn read_log(r: &mut Reader<'_>) -> Result<Event> {
    let mut timestamp = 0;
    let mut fields = Vec::new();
    r.read_struct(|r, id, ty| match (id, ty) {
        (1, TType::I64) => {
            timestamp = r.i64("timestamp")?;
            Ok(())
        }
        (2, TType::List) => {
            fields.clear();
            read_tags(r, &mut fields).map_err(|e| e.within("fields"))
        }
        _ => r.skip(ty),
    })?;
    Ok(log_event(timestamp, fields))
}

/// A log's timestamp (µs) and fields as an [`Event`] (see [`read_log`]).
pub(super) fn log_event(timestamp: i64, mut fields: Vec<KeyValue>) -> Event {
    let named_by = |key: &str| {
        fields
            .iter()
            .position(|kv| kv.key == key && matches!(kv.value, AnyValue::String(_)))
    };
    let name = match named_by("event").or_else(|| named_by("message")) {
        Some(i) => fields.remove(i).value.to_display_string(),
        None => "log".to_string(),
    };
    Event {
        time: micros_to_nanos(timestamp),
        name,
        attributes: fields,
    }
}

fn read_tags(r: &mut Reader<'_>, into: &mut Vec<KeyValue>) -> Result<()> {
    r.read_list("a list of tags", size_of::<KeyValue>(), |r, ty, index| {
        if ty != TType::Struct {
            return r.skip(ty);
        }
        let tag = read_tag(r).map_err(|e| e.within(&format!("[{index}]")))?;
        into.push(tag);
        Ok(())
    })
}

/// `TagType` as numbered in jaeger.thrift.
const STRING: i32 = 0;
const DOUBLE: i32 = 1;
const BOOL: i32 = 2;
const LONG: i32 = 3;
const BINARY: i32 = 4;

/// A `Tag` → a typed attribute, by its `vType`; a value field its type
/// does not name is ignored, and an unknown type gives an empty value.
fn read_tag(r: &mut Reader<'_>) -> Result<KeyValue> {
    let mut key = CompactString::default();
    let mut v_type = STRING;
    let mut v_str: Option<Cow<'_, str>> = None;
    let mut v_double = 0.0;
    let mut v_bool = false;
    let mut v_long = 0;
    let mut v_binary: &[u8] = &[];
    r.read_struct(|r, id, ty| {
        match (id, ty) {
            (1, TType::Binary) => key = CompactString::from(r.string("key")?),
            (2, TType::I32) => v_type = r.i32("vType")?,
            (3, TType::Binary) => v_str = Some(r.string("vStr")?),
            (4, TType::Double) => v_double = r.double("vDouble")?,
            (5, TType::Bool) => v_bool = r.bool("vBool")?,
            (6, TType::I64) => v_long = r.i64("vLong")?,
            (7, TType::Binary) => {
                v_binary = r.binary("vBinary")?;
                r.charge(v_binary.len())?;
            }
            _ => r.skip(ty)?,
        }
        Ok(())
    })?;
    let value = match v_type {
        STRING => AnyValue::String(v_str.map(CompactString::from).unwrap_or_default()),
        DOUBLE => AnyValue::Double(v_double),
        BOOL => AnyValue::Bool(v_bool),
        LONG => AnyValue::Int(v_long),
        BINARY => AnyValue::Bytes(v_binary.to_vec()),
        _ => AnyValue::Empty,
    };
    Ok(KeyValue { key, value })
}

/// A span's tags split into what the model keeps apart (kind, status,
/// scope) and the attributes.
struct SpanTags {
    kind: SpanKind,
    status: Status,
    scope: Scope,
    attributes: Vec<KeyValue>,
}

impl SpanTags {
    /// The tags OpenTelemetry's Jaeger exporters write for what Jaeger has
    /// no field for are taken back out; a tag whose value is not one they
    /// write (`span.kind=banana`, `error=false`) stays an attribute.
    fn sort(tags: Vec<KeyValue>) -> SpanTags {
        let mut kind = SpanKind::Unspecified;
        let mut error_tag = false;
        let mut otel_code = None;
        let mut description = None;
        let (mut library_name, mut library_version) = (None, None);
        let (mut scope_name, mut scope_version) = (None, None);
        let mut attributes = Vec::with_capacity(tags.len());
        for tag in tags {
            let text = tag.value.as_str();
            let taken = match (tag.key.as_str(), text) {
                ("span.kind", Some(text)) => match span_kind(text) {
                    Some(k) => {
                        kind = k;
                        true
                    }
                    None => false,
                },
                ("otel.status_code", Some(text)) => match status_code(text) {
                    Some(code) => {
                        otel_code = Some(code);
                        true
                    }
                    None => false,
                },
                ("error", _) => {
                    let failed = matches!(tag.value, AnyValue::Bool(true))
                        || text.is_some_and(|t| t.eq_ignore_ascii_case("true"));
                    error_tag |= failed;
                    failed
                }
                ("otel.status_description", Some(text)) => {
                    description = Some(text.to_string());
                    true
                }
                ("otel.library.name", Some(text)) => set(&mut library_name, text),
                ("otel.library.version", Some(text)) => set(&mut library_version, text),
                ("otel.scope.name", Some(text)) => set(&mut scope_name, text),
                ("otel.scope.version", Some(text)) => set(&mut scope_version, text),
                _ => false,
            };
            if !taken {
                attributes.push(tag);
            }
        }
        // The error tag wins over otel.status_code, as in OpenTelemetry's
        // Jaeger receiver: Jaeger itself shows a span as failed by it alone.
        let code = if error_tag {
            StatusCode::Error
        } else {
            otel_code.unwrap_or(StatusCode::Unset)
        };
        let message = match description {
            Some(text) if code != StatusCode::Unset => text,
            // A description of no status: kept where it came from.
            Some(text) => {
                attributes.push(KeyValue::new("otel.status_description", text));
                String::new()
            }
            None => String::new(),
        };
        SpanTags {
            kind,
            status: Status { code, message },
            scope: Scope {
                name: scope_name.or(library_name).unwrap_or_default(),
                version: scope_version.or(library_version).unwrap_or_default(),
            },
            attributes,
        }
    }
}

fn set(slot: &mut Option<CompactString>, text: &str) -> bool {
    *slot = Some(text.into());
    true
}

fn span_kind(text: &str) -> Option<SpanKind> {
    Some(match text.to_ascii_lowercase().as_str() {
        "internal" => SpanKind::Internal,
        "server" => SpanKind::Server,
        "client" => SpanKind::Client,
        "producer" => SpanKind::Producer,
        "consumer" => SpanKind::Consumer,
        _ => return None,
    })
}

fn status_code(text: &str) -> Option<StatusCode> {
    Some(match text.to_ascii_uppercase().as_str() {
        "OK" => StatusCode::Ok,
        "ERROR" => StatusCode::Error,
        "UNSET" => StatusCode::Unset,
        _ => return None,
    })
}
