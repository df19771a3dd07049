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

/// The most one body byte can become decoded. Every element of a repeated
/// field or map takes at least 2 bytes on the wire (its tag and a zero
/// length), and the costliest is a span: prost's struct and the model's,
/// each in a `Vec` that may have doubled, plus the resource it may bring
/// (a distinct local endpoint) and four attributes from its remote
/// endpoint. A tag (a map entry, then a pair, then an attribute) and an
/// annotation cost less. Strings and bytes are held twice: prost's copy,
/// then the model's. About 1.2 KiB per byte today (the sizes are taken
/// from the types): a 16 MiB body of nothing but empty spans could decode
/// to that much, so the bound is honest and nothing finer is charged.
pub const PROTOBUF_BYTES_PER_BODY_BYTE: usize = {
    let span = 2 * (size_of::<ProtoSpan>() + size_of::<Span>())
        + size_of::<Option<Endpoint>>()
        + size_of::<Arc<Resource>>()
        + size_of::<Resource>()
        + 16
        + 8 * size_of::<KeyValue>();
    let annotation = 2 * (size_of::<ProtoAnnotation>() + size_of::<Event>());
    // hashbrown keeps at most 8 entries per 7 slots' worth, in a power
    // of two: up to 16/7 slots per entry, taken as 3.
    let tag = 3 * size_of::<(String, String)>() + 2 * size_of::<KeyValue>();
    let largest = if span > annotation { span } else { annotation };
    let largest = if largest > tag { largest } else { tag };
    largest.div_ceil(2) + 2
};

/// [`decode_protobuf`] refusing first, with [`ZipkinError::TooLarge`], a
/// body whose bound ([`PROTOBUF_BYTES_PER_BODY_BYTE`] per byte) is past
/// `budget`; also returns that bound, what the decode may have held.
pub fn decode_protobuf_within(
    body: &[u8],
    budget: usize,
) -> Result<(DecodedSpans, usize), ZipkinError> {
    let bound = protobuf_bound(body.len());
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

/// The decode gate's bound for a protobuf body of `len` bytes.
pub(crate) fn protobuf_bound(len: usize) -> usize {
    len.saturating_mul(PROTOBUF_BYTES_PER_BODY_BYTE)
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
