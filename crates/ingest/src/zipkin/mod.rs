//! Zipkin v2: the decoders of its JSON and protobuf span lists and the
//! HTTP receiver of `POST /api/v2/spans` ([`zipkin_router`]).
//!
//! Accepted: a JSON array of v2 spans ([`decode_json`], as in
//! openzipkin/zipkin-api's `zipkin2-api.yaml`) and a protobuf
//! `ListOfSpans` ([`decode_protobuf`], `zipkin.proto`). Not accepted:
//! Zipkin v1 (`/api/v1/spans`, JSON or Thrift), Kafka or Scribe
//! transports.
//!
//! Spans are mapped as OpenTelemetry's Zipkin exporters map them
//! (specification `trace/sdk_exporters/zipkin.md`), in reverse, so a span
//! from an OpenTelemetry SDK comes back as it was recorded wherever
//! Zipkin kept enough. A span whose ids cannot be stored is rejected alone
//! and counted in [`DecodedSpans`] with its place (`spans[3].traceId:
//! traceId "xyz" is not hex`); a body that is not a list of spans at all
//! is a [`ZipkinError`] naming the field (JSON) or the message (protobuf).
//!
//! # Mapping
//!
//! | Zipkin v2 | chaintrace [`Span`](chaintrace_model::Span) |
//! |---|---|
//! | `traceId` (16 or 32 hex digits; protobuf 8 or 16 bytes) | `trace_id`; a 64-bit id is left-padded with zeros, as Zipkin pads it; shorter hex is padded too; all zeros, not hex or too long rejects the span |
//! | `id` | `span_id` (up to 16 hex digits, left-padded; protobuf 8 bytes); bad or zero rejects the span |
//! | `parentId` | `parent_span_id`; absent or all zeros means root; not hex rejects the span |
//! | `name` | `name` |
//! | `kind` `CLIENT`, `SERVER`, `PRODUCER`, `CONSUMER` | `kind`; absent is `INTERNAL` (Zipkin: "the span is local", and the exporters send `INTERNAL` as absent); another JSON name is a 400, as Zipkin refuses it; an unknown protobuf number is `UNSPECIFIED` |
//! | `timestamp`, `duration` (µs) | `start`, `end = start + duration` (ns, saturating) |
//! | `localEndpoint.serviceName` | resource attribute `service.name` (when not empty) |
//! | `localEndpoint.ipv4` (else `ipv6`), `.port` | resource attributes `network.local.address`, `network.local.port` (int); with both addresses, the IPv6 one is `zipkin.local_endpoint.ipv6`. One resource is shared by all spans of a body with an equal local endpoint |
//! | `remoteEndpoint.serviceName`, `.ipv4` (else `ipv6`), `.port` | span attributes `peer.service`, `network.peer.address`, `network.peer.port` (int); with both addresses, `zipkin.remote_endpoint.ipv6` |
//! | `tags` | string attributes, in the order sent (protobuf: sorted by key, a map has no order) |
//! | tag `error` | `status` ERROR, its value the message (it wins over `otel.status_code`); tag removed |
//! | tag `otel.status_code` (`OK`, `ERROR`, `UNSET`) | `status.code`; tag removed |
//! | tag `otel.status_description` | `status.message` when the status has none; tag removed |
//! | tags `otel.scope.name`/`.version`, else `otel.library.name`/`.version` | `scope`; tags removed; spans with equal scopes share one |
//! | `annotations` | `events`: `timestamp` µs → ns; a value that is exactly a JSON object of one object member, `{"name": {attributes}}` (how OpenTelemetry's exporters write an event), becomes that name and those attributes with their JSON types; any other value is the event's name |
//! | `shared` | see below |
//! | `debug` | not kept: it asks the collector to keep the span whatever the sampling, and we keep every span |
//!
//! Zipkin tags are strings, so an attribute the SDK recorded as the int
//! `1250` arrives as the string `"1250"` and is stored as that string
//! ([`AnyValue::as_i64`](chaintrace_model::AnyValue::as_i64) reads it as a
//! number). Arrays arrive as JSON text (`["a","b"]`) and stay that text:
//! a string attribute that happens to look like JSON cannot be told apart.
//! OpenTelemetry's Python exporter also copies the resource's attributes
//! into every span's tags; they cannot be told apart from the span's own
//! either, so they stay span attributes. The exporter's
//! `otel.dropped_*_count` tags stay attributes.
//!
//! ## Shared spans
//!
//! A `shared` span is the server half of an RPC whose client and server
//! recorded one span id (B3's old habit). The store keeps one span per id
//! in a trace, so kept as sent the server half would replace or be
//! replaced by the client half. As Jaeger's query does for such spans, the
//! server half gets its own id and the client half (the id it was sent
//! with) becomes its parent; the sent id is kept in the attribute
//! `zipkin.shared_span_id`. The new id is a fixed function of the sent one,
//! so a retried batch dedupes. Should the client half never arrive, the
//! server span's parent is missing from the trace.

mod http;
mod json;
mod mapping;
mod proto;

pub use http::zipkin_router;
pub use json::{decode_json, decode_json_within, JSON_CONTAINER_BYTES, JSON_STRING_BYTES};
pub use mapping::{
    LOCAL_ADDRESS_KEY, LOCAL_IPV6_KEY, LOCAL_PORT_KEY, PEER_ADDRESS_KEY, PEER_IPV6_KEY,
    PEER_PORT_KEY, PEER_SERVICE_KEY, SHARED_SPAN_ID_KEY,
};
pub use proto::{
    decode_protobuf, decode_protobuf_within, PROTOBUF_ITEM_BYTES, PROTOBUF_SPAN_BYTES,
};

pub use crate::otlp::DecodedSpans;

/// Why a Zipkin body could not be read at all; the whole request is
/// refused (HTTP 400, or 413 for [`ZipkinError::TooLarge`]).
#[derive(Debug, thiserror::Error)]
pub enum ZipkinError {
    /// Not a JSON array of v2 spans; the message names the field path
    /// (`spans[3].timestamp: …`) or the line and column.
    #[error("invalid Zipkin v2 JSON: {0}")]
    Json(String),
    /// Not a protobuf `ListOfSpans`; the message names the message and
    /// field prost stopped in.
    #[error("invalid Zipkin protobuf: {0}")]
    Protobuf(String),
    /// The body could decode to more memory than one request may take;
    /// the message says how much and asks for smaller batches.
    #[error("request too large: {0}")]
    TooLarge(String),
}

#[cfg(test)]
mod http_tests;
#[cfg(test)]
mod tests;
