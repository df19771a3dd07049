//! Zipkin v2 protobuf (`zipkin.proto3`'s `ListOfSpans`) → [`ZipkinSpan`]s
//! → model spans.
//!
//! The messages are written out below with prost's derive, field numbers
//! as in openzipkin/zipkin-api's `zipkin.proto`: four small messages do
//! not earn a build script and protoc.

use std::collections::HashMap;
use std::mem::size_of;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use chaintrace_model::{Event, KeyValue, Resource, Span, SpanKind};
use prost::Message;

use super::mapping::{Annotation, Endpoint, Mapper, RawId, ZipkinSpan};
use super::ZipkinError;
use crate::otlp::DecodedSpans;

/// `zipkin.proto3.ListOfSpans`.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct ListOfSpans {
    #[prost(message, repeated, tag = "1")]
    pub spans: Vec<ProtoSpan>,
}

/// `zipkin.proto3.Span`.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct ProtoSpan {
    /// 8 or 16 bytes, big-endian.
    #[prost(bytes = "vec", tag = "1")]
    pub trace_id: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub parent_id: Vec<u8>,
    #[prost(bytes = "vec", tag = "3")]
    pub id: Vec<u8>,
    /// `Span.Kind`: 0 unspecified, 1 CLIENT, 2 SERVER, 3 PRODUCER, 4 CONSUMER.
    #[prost(int32, tag = "4")]
    pub kind: i32,
    #[prost(string, tag = "5")]
    pub name: String,
    #[prost(fixed64, tag = "6")]
    pub timestamp: u64,
    #[prost(uint64, tag = "7")]
    pub duration: u64,
    #[prost(message, optional, tag = "8")]
    pub local_endpoint: Option<ProtoEndpoint>,
    #[prost(message, optional, tag = "9")]
    pub remote_endpoint: Option<ProtoEndpoint>,
    #[prost(message, repeated, tag = "10")]
    pub annotations: Vec<ProtoAnnotation>,
    #[prost(map = "string, string", tag = "11")]
    pub tags: HashMap<String, String>,
    /// A request to keep the span whatever the sampling: we keep all.
    #[prost(bool, tag = "12")]
    pub debug: bool,
    #[prost(bool, tag = "13")]
    pub shared: bool,
}

/// `zipkin.proto3.Endpoint`.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct ProtoEndpoint {
    #[prost(string, tag = "1")]
    pub service_name: String,
    /// 4 bytes.
    #[prost(bytes = "vec", tag = "2")]
    pub ipv4: Vec<u8>,
    /// 16 bytes.
    #[prost(bytes = "vec", tag = "3")]
    pub ipv6: Vec<u8>,
    #[prost(int32, tag = "4")]
    pub port: i32,
}

/// `zipkin.proto3.Annotation`.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct ProtoAnnotation {
    #[prost(fixed64, tag = "1")]
    pub timestamp: u64,
    #[prost(string, tag = "2")]
    pub value: String,
}

/// Parses a `ListOfSpans` body and maps its spans.
///
/// ```
/// // Field 1 (spans), one empty Span: no ids, so rejected and named.
/// let decoded = chaintrace_ingest::zipkin::decode_protobuf(&[0x0a, 0x00]).unwrap();
/// assert_eq!(decoded.rejected, 1);
/// assert!(decoded.errors[0].starts_with("spans[0].traceId"), "{:?}", decoded.errors);
/// ```
pub fn decode_protobuf(body: &[u8]) -> Result<DecodedSpans, ZipkinError> {
    decode_protobuf_within(body, usize::MAX).map(|(decoded, _)| decoded)
}

/// Bytes a span may cost decoded besides its strings: prost's struct and
/// the model's, each in a `Vec` that may have doubled, plus the resource
/// it may bring (a distinct local endpoint) and four attributes from its
/// remote endpoint.
pub const PROTOBUF_SPAN_BYTES: usize = 2 * (size_of::<ProtoSpan>() + size_of::<Span>())
    + size_of::<Option<Endpoint>>()
    + size_of::<Arc<Resource>>()
    + size_of::<Resource>()
    + 16
    + 8 * size_of::<KeyValue>();

/// Bytes an annotation or a tag may cost decoded besides its strings: the
/// larger of an annotation (prost's, then an event, in `Vec`s that may
/// have doubled) and a tag (a map entry, where hashbrown keeps up to 16/7
/// slots per entry, taken as 3; then a pair; then an attribute).
pub const PROTOBUF_ITEM_BYTES: usize = {
    let annotation = 2 * (size_of::<ProtoAnnotation>() + size_of::<Event>());
    let tag = 3 * size_of::<(String, String)>() + 2 * size_of::<KeyValue>();
    if annotation > tag {
        annotation
    } else {
        tag
    }
};

/// [`decode_protobuf`] refusing first, with [`ZipkinError::TooLarge`], a
/// body whose bound is past `budget`; also returns that bound, what the
/// decode may have held.
///
/// The bound comes from a scan of the body's framing before prost reads
/// it: spans × [`PROTOBUF_SPAN_BYTES`], annotations and tags ×
/// [`PROTOBUF_ITEM_BYTES`], and the bytes twice (prost's strings, then the
/// model's). A flat factor per body byte would have to assume a body of
/// empty spans (2 bytes each, over 800 bytes decoded per byte) and refuse
/// every batch past a few hundred KB; counted, a real span of 500 bytes is
/// bounded at about ten times its size. prost holds nothing the scan did
/// not count, so nothing finer is charged.
pub fn decode_protobuf_within(
    body: &[u8],
    budget: usize,
) -> Result<(DecodedSpans, usize), ZipkinError> {
    let bound = protobuf_bound(body)?;
    if bound > budget {
        return Err(ZipkinError::TooLarge(format!(
            "a protobuf body of {} bytes could decode to {bound} bytes, more than the memory \
             budget of one request ({budget} bytes); send smaller batches",
            body.len()
        )));
    }
    let list = ListOfSpans::decode(body).map_err(|e| ZipkinError::Protobuf(e.to_string()))?;
    let mut mapper = Mapper::default();
    for (index, span) in list.spans.into_iter().enumerate() {
        mapper.push(index, into_zipkin(span));
    }
    Ok((mapper.finish(), bound))
}

/// The decode gate's bound for a protobuf body: its spans, annotations
/// and tags counted by their framing (see [`decode_protobuf_within`]).
/// Bad framing is an error naming the byte, as prost would refuse it.
pub(crate) fn protobuf_bound(body: &[u8]) -> Result<usize, ZipkinError> {
    let (mut spans, mut items) = (0usize, 0usize);
    let mut top = Fields::new(body, 0);
    while let Some((field, value)) = top.next()? {
        if let (1, Some((span, offset))) = (field, value) {
            spans += 1;
            let mut inner = Fields::new(span, offset);
            while let Some((field, _)) = inner.next()? {
                if field == 10 || field == 11 {
                    items += 1;
                }
            }
        }
    }
    Ok(spans
        .saturating_mul(PROTOBUF_SPAN_BYTES)
        .saturating_add(items.saturating_mul(PROTOBUF_ITEM_BYTES))
        .saturating_add(body.len().saturating_mul(2)))
}

/// The fields of one protobuf message: number, and for length-delimited
/// fields the bytes and their offset in the body.
struct Fields<'a> {
    bytes: &'a [u8],
    at: usize,
    /// Offset of `bytes` in the body, for messages.
    base: usize,
}

impl<'a> Fields<'a> {
    fn new(bytes: &'a [u8], base: usize) -> Self {
        Fields { bytes, at: 0, base }
    }

    fn error(&self, what: &str) -> ZipkinError {
        ZipkinError::Protobuf(format!("at byte {}: {what}", self.base + self.at))
    }

    fn varint(&mut self) -> Result<u64, ZipkinError> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let Some(&b) = self.bytes.get(self.at) else {
                return Err(self.error("a varint runs past the end"));
            };
            self.at += 1;
            value |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(value);
            }
        }
        Err(self.error("a varint is longer than 10 bytes"))
    }

    fn skip(&mut self, n: usize) -> Result<(), ZipkinError> {
        if self.bytes.len() - self.at < n {
            return Err(self.error("a field runs past the end of its message"));
        }
        self.at += n;
        Ok(())
    }

    #[allow(clippy::type_complexity)]
    fn next(&mut self) -> Result<Option<(u64, Option<(&'a [u8], usize)>)>, ZipkinError> {
        if self.at == self.bytes.len() {
            return Ok(None);
        }
        let key = self.varint()?;
        let field = key >> 3;
        let value = match key & 7 {
            0 => {
                self.varint()?;
                None
            }
            1 => {
                self.skip(8)?;
                None
            }
            2 => {
                let len = usize::try_from(self.varint()?).unwrap_or(usize::MAX);
                let start = self.at;
                self.skip(len)?;
                Some((&self.bytes[start..self.at], self.base + start))
            }
            5 => {
                self.skip(4)?;
                None
            }
            // Groups (3, 4) are not in zipkin.proto; prost would refuse
            // them nested, and no Zipkin client sends them.
            other => return Err(self.error(&format!("wire type {other} of field {field}"))),
        };
        Ok(Some((field, value)))
    }
}

fn into_zipkin(span: ProtoSpan) -> ZipkinSpan {
    // A map arrives in no particular order; sorted, the attributes are
    // the same whichever order the sender's map had.
    let mut tags: Vec<(String, String)> = span.tags.into_iter().collect();
    tags.sort_unstable();
    ZipkinSpan {
        trace_id: RawId::Bytes(span.trace_id),
        id: RawId::Bytes(span.id),
        parent_id: RawId::Bytes(span.parent_id),
        kind: match span.kind {
            1 => Some(SpanKind::Client),
            2 => Some(SpanKind::Server),
            3 => Some(SpanKind::Producer),
            4 => Some(SpanKind::Consumer),
            // 0 is absent; a number from a later zipkin.proto is unknown.
            0 => None,
            _ => Some(SpanKind::Unspecified),
        },
        name: span.name,
        timestamp: span.timestamp,
        duration: span.duration,
        local_endpoint: span.local_endpoint.map(endpoint),
        remote_endpoint: span.remote_endpoint.map(endpoint),
        annotations: span
            .annotations
            .into_iter()
            .map(|a| Annotation {
                timestamp: a.timestamp,
                value: a.value,
            })
            .collect(),
        tags,
        shared: span.shared,
    }
}

/// Addresses in the text JSON uses; one of a wrong length is kept as hex
/// rather than dropped.
fn endpoint(e: ProtoEndpoint) -> Endpoint {
    let ipv4 = match <[u8; 4]>::try_from(e.ipv4.as_slice()) {
        Ok(octets) => Some(Ipv4Addr::from(octets).to_string()),
        Err(_) => (!e.ipv4.is_empty()).then(|| hex::encode(&e.ipv4)),
    };
    let ipv6 = match <[u8; 16]>::try_from(e.ipv6.as_slice()) {
        Ok(octets) => Some(Ipv6Addr::from(octets).to_string()),
        Err(_) => (!e.ipv6.is_empty()).then(|| hex::encode(&e.ipv6)),
    };
    Endpoint {
        service_name: e.service_name,
        ipv4,
        ipv6,
        port: (e.port != 0).then_some(i64::from(e.port)),
    }
}
