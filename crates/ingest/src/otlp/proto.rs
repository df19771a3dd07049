//! OTLP protobuf bytes (the body of `POST /v1/traces` with
//! `Content-Type: application/x-protobuf`, or an OTLP/gRPC `Export`
//! message) → model spans.

use super::decode::{DecodeError, DecodedSpans};
use super::wire::decode_wire;

/// Parses a protobuf `ExportTraceServiceRequest` and decodes its spans.
///
/// A body that is not valid protobuf fails as a whole with
/// [`DecodeError::Protobuf`]; spans with bad ids are rejected one by one.
/// The result is the same as [`decode_request`](super::decode_request) on
/// prost's decoding of `body`, without building prost's structs first.
///
/// ```
/// let err = chaintrace_ingest::otlp::decode_protobuf(&[0x0a, 0x05, 0x01]).unwrap_err();
/// assert!(err.to_string().starts_with("invalid OTLP protobuf: "));
/// ```
pub fn decode_protobuf(body: &[u8]) -> Result<DecodedSpans, DecodeError> {
    decode_wire(body)
}
