//! Jaeger Thrift: the decoder of Jaeger's `Batch` (compact and binary
//! protocols) and the UDP receiver of the Jaeger agent's ports.
//!
//! Accepted:
//!
//! - `Agent.emitBatch` call or one-way call messages, one per UDP datagram,
//!   in Thrift compact (agent port 6831) or binary (port 6832):
//!   [`decode_emit_batch`], served by [`serve_udp`].
//! - A bare `Batch` struct, the body of the Jaeger collector's
//!   `POST /api/traces` (`application/x-thrift`, binary): [`decode_batch`].
//!
//! Not accepted: `emitZipkinBatch` (Zipkin spans), the collector's
//! `submitBatches` over TChannel or gRPC.
//!
//! The decoders are hand-written (Thrift is small) and allocate nothing
//! for a declared length or count before checking it against the bytes
//! left; structs, lists, sets and maps nest at most [`MAX_DEPTH`] deep.
//! Unknown fields, and known fields of an unexpected type, are skipped as
//! Thrift's generated readers skip them. A span whose ids cannot be stored
//! is rejected alone and counted in [`DecodedSpans`] with its place
//! (`batch.spans[3]: spanId is all zeros, …`); bytes that are not a
//! message at all are a [`ThriftError`] naming the byte offset and what
//! was expected there.
//!
//! # Mapping
//!
//! | Jaeger | chaintrace [`Span`](chaintrace_model::Span) |
//! |---|---|
//! | `Process.serviceName` | resource attribute `service.name` (when not empty) |
//! | `Process.tags` | resource attributes, after `service.name`; one resource shared by the batch's spans |
//! | `traceIdHigh`, `traceIdLow` | `trace_id`: 16 bytes, high half first, big-endian; all zero rejects the span |
//! | `spanId` | `span_id` (big-endian); zero rejects the span |
//! | `parentSpanId` | `parent_span_id`; 0 means none, then the first `CHILD_OF` reference in the same trace is the parent |
//! | other `references` | `links`, with attribute `opentracing.ref_type` = `child_of` or `follows_from`; a reference with a zero id is dropped and counted |
//! | `operationName` | `name` |
//! | `startTime`, `duration` (µs) | `start`, `end = start + duration` (ns, saturating; negative taken as 0) |
//! | `tags` | `attributes`, typed: STRING → string, DOUBLE → double, BOOL → bool, LONG → int, BINARY → bytes |
//! | tag `span.kind` (`client`, `server`, `producer`, `consumer`, `internal`) | `kind`, tag removed |
//! | tag `error` = true (bool or `"true"`) | `status.code` = ERROR, tag removed (wins over `otel.status_code`) |
//! | tag `otel.status_code` (`OK`, `ERROR`, `UNSET`) | `status.code`, tag removed |
//! | tag `otel.status_description` | `status.message` when the code is set, tag removed |
//! | tags `otel.scope.name`/`.version`, else `otel.library.name`/`.version` | `scope`, tags removed; spans with equal scopes share one |
//! | `logs` | `events`: `timestamp` µs → ns; the `event` field (else `message`, as OpenTelemetry's Python exporter writes it; else `"log"`) is the name, the other fields the attributes |
//! | `flags`, `incomplete`, `Batch.seqNo`, `Batch.stats` | not kept: the model has no place for them |
//!
//! A tag whose value is not one of those listed (`span.kind=banana`,
//! `error=false`) stays an attribute. Strings that are not UTF-8 are kept
//! with U+FFFD in place of the bad bytes: Thrift libraries do not check.

mod batch;
mod http;
mod json;
mod thrift;
mod udp;

pub use batch::{
    decode_batch, decode_batch_within, decode_emit_batch, decode_emit_batch_within, REF_TYPE_KEY,
    THRIFT_BYTES_PER_BODY_BYTE,
};
pub use http::collector_router;
pub use json::decode_jaeger_json;
pub use thrift::{ThriftError, ThriftProtocol, MAX_DEPTH};
pub use udp::{bind_udp, serve_udp, UdpCounts, UdpStats, UDP_RECEIVE_BUFFER};

pub use crate::otlp::DecodedSpans;

#[cfg(test)]
mod hostile_tests;
#[cfg(test)]
mod http_tests;
#[cfg(test)]
mod test_encoder;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod udp_tests;
