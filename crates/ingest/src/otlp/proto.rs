//! OTLP protobuf bytes (the body of `POST /v1/traces` with
//! `Content-Type: application/x-protobuf`) → model spans.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;

use super::decode::{decode_request, DecodeError, DecodedSpans};

/// Parses a protobuf `ExportTraceServiceRequest` and decodes its spans.
///
/// A body that is not valid protobuf fails as a whole with
/// [`DecodeError::Protobuf`]; spans with bad ids are rejected one by one.
///
/// ```
/// let err = chaintrace_ingest::otlp::decode_protobuf(&[0x0a, 0x05, 0x01]).unwrap_err();
/// assert!(err.to_string().starts_with("invalid OTLP protobuf: "));
/// ```
pub fn decode_protobuf(body: &[u8]) -> Result<DecodedSpans, DecodeError> {
    let request = ExportTraceServiceRequest::decode(body)?;
    Ok(decode_request(request))
}
