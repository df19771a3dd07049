//! Requests for the wire decoder's tests: random `ExportTraceServiceRequest`s
//! (proptest strategies), a re-encoder that writes a valid request the
//! ways prost also accepts (fields shuffled or reversed, unknown fields,
//! singular messages split in two), and small hand-made bodies.

use bytes::{Buf, BufMut};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1 as pc;
use opentelemetry_proto::tonic::resource::v1 as pr;
use opentelemetry_proto::tonic::trace::v1 as pt;
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use prost::encoding::{decode_key, decode_varint, encode_key, encode_varint, WireType as PW};
use prost::Message as _;

// ---- random requests ------------------------------------------------------

pub(super) fn arb_text() -> impl Strategy<Value = String> {
    prop_oneof![Just(String::new()), "[a-z._]{1,10}", "\\PC{0,6}"]
}

/// Mostly right-sized ids, some all zero, some of the wrong length.
pub(super) fn arb_id(len: usize) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        6 => vec(any::<u8>(), len),
        1 => Just(vec![0; len]),
        1 => vec(any::<u8>(), 0..20),
        1 => Just(Vec::new()),
    ]
}

/// Enum values: mostly known ones, some unknown, some equal to a known one
/// in their low byte.
pub(super) fn arb_enum() -> impl Strategy<Value = i32> {
    prop_oneof![
        4 => 0..6i32,
        1 => any::<i32>(),
        1 => (0..6i32, 1..1000i32).prop_map(|(k, n)| k + 256 * n),
    ]
}

pub(super) fn arb_any_value() -> impl Strategy<Value = pc::AnyValue> {
    use pc::any_value::Value as V;
    let leaf = prop_oneof![
        Just(None),
        arb_text().prop_map(|s| Some(V::StringValue(s))),
        any::<bool>().prop_map(|b| Some(V::BoolValue(b))),
        any::<i64>().prop_map(|i| Some(V::IntValue(i))),
        any::<f64>().prop_map(|d| Some(V::DoubleValue(d))),
        vec(any::<u8>(), 0..6).prop_map(|b| Some(V::BytesValue(b))),
        any::<i32>().prop_map(|i| Some(V::StringValueStrindex(i))),
    ]
    .prop_map(|value| pc::AnyValue { value });
    leaf.prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..4).prop_map(|values| pc::AnyValue {
                value: Some(V::ArrayValue(pc::ArrayValue { values })),
            }),
            vec((arb_text(), option::of(inner)), 0..4).prop_map(|kvs| pc::AnyValue {
                value: Some(V::KvlistValue(pc::KeyValueList {
                    values: kvs
                        .into_iter()
                        .map(|(key, value)| pc::KeyValue {
                            key,
                            value,
                            key_strindex: 0,
                        })
                        .collect(),
                })),
            }),
        ]
    })
}

pub(super) fn arb_attributes() -> impl Strategy<Value = Vec<pc::KeyValue>> {
    let kv = (
        arb_text(),
        option::of(arb_any_value()),
        prop_oneof![Just(0), any::<i32>()],
    );
    vec(kv, 0..4).prop_map(|kvs| {
        kvs.into_iter()
            .map(|(key, value, key_strindex)| pc::KeyValue {
                key,
                value,
                key_strindex,
            })
            .collect()
    })
}

pub(super) fn arb_event() -> impl Strategy<Value = pt::span::Event> {
    (any::<u64>(), arb_text(), arb_attributes(), any::<u32>()).prop_map(
        |(time, name, attributes, d)| pt::span::Event {
            time_unix_nano: time,
            name,
            attributes,
            dropped_attributes_count: d,
        },
    )
}

pub(super) fn arb_link() -> impl Strategy<Value = pt::span::Link> {
    (
        arb_id(16),
        arb_id(8),
        arb_text(),
        arb_attributes(),
        any::<u32>(),
    )
        .prop_map(
            |(trace_id, span_id, trace_state, attributes, flags)| pt::span::Link {
                trace_id,
                span_id,
                trace_state,
                attributes,
                dropped_attributes_count: flags / 3,
                flags,
            },
        )
}

pub(super) fn arb_span() -> impl Strategy<Value = pt::Span> {
    let ids = (
        arb_id(16),
        arb_id(8),
        prop_oneof![arb_id(8), Just(Vec::new())],
    );
    let scalars = (
        arb_text(),
        arb_enum(),
        any::<u64>(),
        any::<u64>(),
        arb_text(),
        any::<u32>(),
    );
    let status = option::of((arb_text(), arb_enum()))
        .prop_map(|s| s.map(|(message, code)| pt::Status { message, code }));
    let lists = (
        arb_attributes(),
        vec(arb_event(), 0..3),
        vec(arb_link(), 0..3),
        status,
    );
    (ids, scalars, lists).prop_map(
        |(
            (trace_id, span_id, parent_span_id),
            (name, kind, start, end, trace_state, flags),
            (attributes, events, links, status),
        )| pt::Span {
            trace_id,
            span_id,
            trace_state,
            parent_span_id,
            flags,
            name,
            kind,
            start_time_unix_nano: start,
            end_time_unix_nano: end,
            attributes,
            dropped_attributes_count: flags % 7,
            events,
            dropped_events_count: flags % 5,
            links,
            dropped_links_count: flags % 3,
            status,
        },
    )
}

pub(super) fn arb_request() -> impl Strategy<Value = ExportTraceServiceRequest> {
    let scope = option::of((arb_text(), arb_text(), arb_attributes())).prop_map(|s| {
        s.map(|(name, version, attributes)| pc::InstrumentationScope {
            name,
            version,
            attributes,
            dropped_attributes_count: 1,
        })
    });
    let scope_spans =
        (scope, vec(arb_span(), 0..4), arb_text()).prop_map(|(scope, spans, schema_url)| {
            pt::ScopeSpans {
                scope,
                spans,
                schema_url,
            }
        });
    let entity_ref =
        (arb_text(), arb_text(), vec(arb_text(), 0..2)).prop_map(|(schema_url, t, keys)| {
            pc::EntityRef {
                schema_url,
                r#type: t,
                id_keys: keys.clone(),
                description_keys: keys,
            }
        });
    let resource = option::of((arb_attributes(), vec(entity_ref, 0..2))).prop_map(|r| {
        r.map(|(attributes, entity_refs)| pr::Resource {
            attributes,
            dropped_attributes_count: 2,
            entity_refs,
        })
    });
    let resource_spans = (resource, vec(scope_spans, 0..3), arb_text()).prop_map(
        |(resource, scope_spans, schema_url)| pt::ResourceSpans {
            resource,
            scope_spans,
            schema_url,
        },
    );
    vec(resource_spans, 0..3)
        .prop_map(|resource_spans| ExportTraceServiceRequest { resource_spans })
}

// ---- re-encoding the same request differently ------------------------------

/// The decoder's own list of messages; the helpers below add which field
/// holds which message.
pub(super) use super::Message as Msg;

impl Msg {
    /// Every message, for tests that walk them all.
    pub(super) const ALL: [Msg; 14] = [
        Msg::Request,
        Msg::ResourceSpans,
        Msg::Resource,
        Msg::EntityRef,
        Msg::ScopeSpans,
        Msg::Scope,
        Msg::Span,
        Msg::Event,
        Msg::Link,
        Msg::Status,
        Msg::KeyValue,
        Msg::AnyValue,
        Msg::ArrayValue,
        Msg::KeyValueList,
    ];
}

impl Msg {
    pub(super) fn child(self, tag: u32) -> Option<Msg> {
        use Msg::*;
        Some(match (self, tag) {
            (Request, 1) => ResourceSpans,
            (ResourceSpans, 1) => Resource,
            (ResourceSpans, 2) => ScopeSpans,
            (Resource, 1) | (Scope, 3) | (Span, 9) | (Event, 3) | (Link, 4) => KeyValue,
            (KeyValueList, 1) => KeyValue,
            (Resource, 3) => EntityRef,
            (ScopeSpans, 1) => Scope,
            (ScopeSpans, 2) => Span,
            (Span, 11) => Event,
            (Span, 13) => Link,
            (Span, 15) => Status,
            (KeyValue, 2) | (ArrayValue, 1) => AnyValue,
            (AnyValue, 5) => ArrayValue,
            (AnyValue, 6) => KeyValueList,
            _ => return None,
        })
    }

    /// Singular message fields, which prost merges when sent twice.
    pub(super) fn merges(self, tag: u32) -> bool {
        use Msg::*;
        matches!(
            (self, tag),
            (ResourceSpans, 1) | (ScopeSpans, 1) | (Span, 15) | (KeyValue, 2) | (AnyValue, 5 | 6)
        )
    }

    /// A field number this message does not define.
    pub(super) fn unknown_tag(self, n: u32) -> u32 {
        use Msg::*;
        let last = match self {
            Request | ArrayValue | KeyValueList => 1,
            ResourceSpans | Resource | ScopeSpans | KeyValue | Status => 3,
            EntityRef | Scope | Event => 4,
            Link => 6,
            AnyValue => 8,
            Span => 16,
            LogsRequest | ResourceLogs | ScopeLogs | LogRecord => {
                unreachable!("these requests are traces requests")
            }
        };
        last + 1 + n
    }
}

#[derive(Debug, Clone)]
pub(super) enum Value {
    Varint(u64),
    Fixed64(u64),
    Len(Vec<u8>),
    Group(Vec<Field>),
    Fixed32(u32),
}

#[derive(Debug, Clone)]
pub(super) struct Field {
    pub tag: u32,
    pub value: Value,
}

/// The fields of a valid message, in wire order.
pub(super) fn fields(mut bytes: &[u8]) -> Vec<Field> {
    fields_of_group(&mut bytes, None)
}

/// The fields up to the end-group of `group`, or to the end.
pub(super) fn fields_of_group(bytes: &mut &[u8], group: Option<u32>) -> Vec<Field> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let (tag, wire) = decode_key(bytes).unwrap();
        let value = match wire {
            PW::Varint => Value::Varint(decode_varint(bytes).unwrap()),
            PW::SixtyFourBit => Value::Fixed64(bytes.get_u64_le()),
            PW::ThirtyTwoBit => Value::Fixed32(bytes.get_u32_le()),
            PW::LengthDelimited => {
                let len = decode_varint(bytes).unwrap() as usize;
                let value = bytes[..len].to_vec();
                bytes.advance(len);
                Value::Len(value)
            }
            PW::StartGroup => Value::Group(fields_of_group(bytes, Some(tag))),
            PW::EndGroup => {
                assert_eq!(group, Some(tag));
                return out;
            }
        };
        out.push(Field { tag, value });
    }
    out
}

pub(super) fn encode_fields(fields: &[Field], out: &mut Vec<u8>) {
    for field in fields {
        match &field.value {
            Value::Varint(v) => {
                encode_key(field.tag, PW::Varint, out);
                encode_varint(*v, out);
            }
            Value::Fixed64(v) => {
                encode_key(field.tag, PW::SixtyFourBit, out);
                out.put_u64_le(*v);
            }
            Value::Fixed32(v) => {
                encode_key(field.tag, PW::ThirtyTwoBit, out);
                out.put_u32_le(*v);
            }
            Value::Len(bytes) => {
                encode_key(field.tag, PW::LengthDelimited, out);
                encode_varint(bytes.len() as u64, out);
                out.extend_from_slice(bytes);
            }
            Value::Group(inner) => {
                encode_key(field.tag, PW::StartGroup, out);
                encode_fields(inner, out);
                encode_key(field.tag, PW::EndGroup, out);
            }
        }
    }
}

pub(super) fn encode(fields: &[Field]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_fields(fields, &mut out);
    out
}

/// A small deterministic generator: proptest picks the seed.
pub(super) struct Rng(pub u64);

impl Rng {
    pub(super) fn below(&mut self, n: u64) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n.max(1)
    }

    pub(super) fn one_in(&mut self, n: u64) -> bool {
        self.below(n) == 0
    }

    pub(super) fn unknown_field(&mut self, msg: Msg, depth: u32) -> Field {
        let tag = msg.unknown_tag(self.below(20) as u32);
        let value = match self.below(if depth < 3 { 5 } else { 4 }) {
            0 => Value::Varint(self.below(u64::MAX)),
            1 => Value::Fixed64(self.below(u64::MAX)),
            2 => Value::Len((0..self.below(5)).map(|i| i as u8).collect()),
            3 => Value::Fixed32(self.below(u64::from(u32::MAX)) as u32),
            _ => Value::Group(
                (0..self.below(3))
                    .map(|_| self.unknown_field(msg, depth + 1))
                    .collect(),
            ),
        };
        Field { tag, value }
    }
}

/// Re-encodes a valid `msg` in ways prost reads without complaint: fields
/// shuffled, singular message fields split into two (prost merges them),
/// earlier throw-away copies of scalar fields (the last one wins), and
/// unknown fields of every wire type, groups included.
pub(super) fn mangle(bytes: &[u8], msg: Msg, rng: &mut Rng) -> Vec<u8> {
    let mut out = Vec::new();
    for mut field in fields(bytes) {
        let child = msg.child(field.tag);
        if let (Some(child), Value::Len(body)) = (child, &field.value) {
            let body = mangle(body, child, rng);
            if msg.merges(field.tag) && rng.one_in(3) {
                let inner = fields(&body);
                let at = rng.below(inner.len() as u64 + 1) as usize;
                out.push(Field {
                    tag: field.tag,
                    value: Value::Len(encode(&inner[..at])),
                });
                field.value = Value::Len(encode(&inner[at..]));
            } else {
                field.value = Value::Len(body);
            }
        } else if child.is_none() && rng.one_in(4) {
            let junk = match &field.value {
                Value::Varint(_) => Value::Varint(rng.below(u64::MAX)),
                Value::Fixed64(_) => Value::Fixed64(rng.below(u64::MAX)),
                Value::Fixed32(_) => Value::Fixed32(rng.below(1000) as u32),
                // ASCII: valid both as a string and as bytes.
                _ => Value::Len(b"junk".repeat(rng.below(3) as usize)),
            };
            out.push(Field {
                tag: field.tag,
                value: junk,
            });
        }
        out.push(field);
        if rng.one_in(3) {
            out.push(rng.unknown_field(msg, 0));
        }
    }
    if rng.one_in(2) {
        for i in (1..out.len()).rev() {
            out.swap(i, rng.below(i as u64 + 1) as usize);
        }
    }
    encode(&out)
}

/// `msg` with the fields of every message in reverse order.
pub(super) fn reversed(bytes: &[u8], msg: Msg) -> Vec<u8> {
    let mut out = fields(bytes);
    for field in &mut out {
        if let (Some(child), Value::Len(body)) = (msg.child(field.tag), &mut field.value) {
            *body = reversed(body, child);
        }
    }
    out.reverse();
    encode(&out)
}

// ---- hand-made bodies ------------------------------------------------------

pub(super) fn len_field(tag: u32, body: &[u8]) -> Vec<u8> {
    encode(&[Field {
        tag,
        value: Value::Len(body.to_vec()),
    }])
}

/// A request with one resource and one scope around `spans` (encoded spans).
pub(super) fn request_of(spans: &[Vec<u8>]) -> Vec<u8> {
    let scope_spans: Vec<u8> = spans.iter().flat_map(|s| len_field(2, s)).collect();
    len_field(1, &len_field(2, &scope_spans))
}

pub(super) fn good_span(name: &str) -> pt::Span {
    pt::Span {
        trace_id: vec![1; 16],
        span_id: vec![2; 8],
        name: name.into(),
        start_time_unix_nano: 10,
        end_time_unix_nano: 20,
        ..Default::default()
    }
}

/// A whole request with `body` as the body of a `msg` in it.
pub(super) fn inside(msg: Msg, body: &[u8]) -> Vec<u8> {
    use Msg::*;
    match msg {
        Request => body.to_vec(),
        ResourceSpans => len_field(1, body),
        Resource => inside(ResourceSpans, &len_field(1, body)),
        EntityRef => inside(Resource, &len_field(3, body)),
        ScopeSpans => inside(ResourceSpans, &len_field(2, body)),
        Scope => inside(ScopeSpans, &len_field(1, body)),
        Span => inside(
            ScopeSpans,
            &len_field(2, &[good_span("s").encode_to_vec(), body.to_vec()].concat()),
        ),
        Event => inside(Span, &len_field(11, body)),
        Link => inside(Span, &len_field(13, body)),
        Status => inside(Span, &len_field(15, body)),
        KeyValue => inside(Span, &len_field(9, body)),
        AnyValue => inside(KeyValue, &len_field(2, body)),
        ArrayValue => inside(AnyValue, &len_field(5, body)),
        KeyValueList => inside(AnyValue, &len_field(6, body)),
        LogsRequest | ResourceLogs | ScopeLogs | LogRecord => {
            unreachable!("these requests are traces requests")
        }
    }
}

/// `msg` with unknown fields (groups too) after every field.
pub(super) fn mangle_unknown_only(bytes: &[u8], msg: Msg, rng: &mut Rng) -> Vec<u8> {
    let mut out = Vec::new();
    for mut field in fields(bytes) {
        if let (Some(child), Value::Len(body)) = (msg.child(field.tag), &mut field.value) {
            *body = mangle_unknown_only(body, child, rng);
        }
        out.push(field);
        out.push(rng.unknown_field(msg, 0));
    }
    encode(&out)
}
