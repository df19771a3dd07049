//! OTLP traces and logs: decoders (protobuf, JSON) and receivers (HTTP, gRPC).
//!
//! Both receivers share one path: bytes → [`DecodedSpans`] →
//! [`SpanSink::accept`](crate::SpanSink::accept) → an
//! `ExportTraceServiceResponse` that reports rejected spans as OTLP
//! partial success. Protobuf bytes (HTTP and gRPC) are read straight into
//! model spans by [`decode_protobuf`]; OTLP/JSON goes through
//! [`ExportTraceServiceRequest`] and [`decode_request`], which define what
//! the protobuf path must agree with. Logs (`/v1/logs`, `LogsService`)
//! take the same path with [`DecodedLogs`] ([`logs`]).
//!
//! [`ExportTraceServiceRequest`]: opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest

pub(crate) mod body;
mod decode;
mod encode;
mod grpc;
mod http;
mod json;
mod logs;
mod proto;
mod wire;

pub use decode::{decode_request, DecodeError, DecodedSpans, MAX_ERROR_MESSAGES};
pub use encode::to_otlp;
pub use grpc::{
    logs_service, trace_service, GrpcLogsService, GrpcOtlpService, GrpcTraceService,
    LOGS_SERVICE_NAME, TRACE_SERVICE_NAME,
};
pub use http::{refusal_response, router};
pub use json::{decode_json, decode_json_within, JSON_CONTAINER_BYTES};
pub use logs::{decode_logs_json, decode_logs_protobuf, decode_logs_request, DecodedLogs};
pub use proto::decode_protobuf;

use std::sync::Arc;

use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceResponse,
};

use crate::metrics::IngestMetrics;

/// Size bounds shared by the receivers, and their counters. Clones share
/// one [`DecodeGate`] and one [`IngestMetrics`]: give every receiver clones
/// of one `Limits`.
///
/// ```
/// let limits = chaintrace_ingest::otlp::Limits::new(4 << 20, 64 << 20);
/// assert!(limits.max_request_bytes < chaintrace_ingest::otlp::Limits::default().max_request_bytes);
/// ```
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest accepted request body (HTTP) or message (gRPC) in bytes,
    /// counted after decompression. Default 16 MiB.
    pub max_request_bytes: usize,
    /// Decoded memory of all requests in flight together, and so of any
    /// one request (see [`DecodeGate`]).
    pub(crate) gate: DecodeGate,
    /// Request bodies in flight (read, inflated, being decoded), all
    /// together: half of the decoded bound. Bodies are gated apart from
    /// what they decode to, and always taken first, so no request waits
    /// for one gate while holding the other's room another request needs.
    pub(crate) bodies: DecodeGate,
    /// What every receiver given a clone counts, per protocol.
    metrics: Arc<IngestMetrics>,
}

/// How long a request waits for room for its body before it is answered
/// "overloaded, retry" (HTTP 503 / gRPC `UNAVAILABLE`). Room is taken as
/// bytes arrive, so two half-read bodies could each wait for the other:
/// the wait ends that.
pub(crate) const BODY_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

impl Limits {
    /// Bodies up to `max_request_bytes`; decoded requests in flight (being
    /// decoded, or decoded and waiting for the store's answer) hold at
    /// most `max_decoded_bytes` together.
    pub fn new(max_request_bytes: usize, max_decoded_bytes: usize) -> Self {
        Limits {
            max_request_bytes,
            gate: DecodeGate::new(max_decoded_bytes),
            bodies: DecodeGate::new(max_decoded_bytes / 2),
            metrics: Arc::default(),
        }
    }

    /// The counters of the receivers sharing these limits; register them
    /// in a [`chaintrace_metrics::Registry`] to serve them.
    pub fn metrics(&self) -> &IngestMetrics {
        &self.metrics
    }

    /// The decoded-memory bound given to [`Limits::new`].
    pub fn max_decoded_bytes(&self) -> usize {
        self.gate.capacity_kib as usize * 1024
    }
}

impl Default for Limits {
    /// 16 MiB bodies, 192 MiB decoded in flight (half the default
    /// `--max-memory`).
    fn default() -> Self {
        Limits::new(16 * 1024 * 1024, 192 * 1024 * 1024)
    }
}

/// Bounds the memory of decoded requests in flight. A request takes
/// permits for an upper bound of its decoded size before it is decoded
/// (its body length times the most a body byte can become, or for JSON the
/// bound its shape gives), decodes within what it got, gives back what it
/// did not use, and holds the rest until the store has answered. A request
/// whose bound exceeds the whole gate waits for all of it and may decode
/// to no more: past that it is refused as too large. Before this, four
/// concurrent 14 MB bodies of empty attributes took the server to 2.9 GiB.
#[derive(Debug, Clone)]
pub(crate) struct DecodeGate {
    permits: Arc<tokio::sync::Semaphore>,
    /// One permit per KiB.
    capacity_kib: u32,
}

impl DecodeGate {
    fn new(bytes: usize) -> Self {
        let capacity_kib = u32::try_from(bytes.div_ceil(1024))
            .unwrap_or(u32::MAX)
            .clamp(1, tokio::sync::Semaphore::MAX_PERMITS as u32);
        DecodeGate {
            permits: Arc::new(tokio::sync::Semaphore::new(capacity_kib as usize)),
            capacity_kib,
        }
    }

    /// Waits for room for a request that may decode to `bound` bytes;
    /// returns its permit and the bytes it may decode to.
    pub(crate) async fn enter(&self, bound: usize) -> (Admitted, usize) {
        let kib = u32::try_from(bound.div_ceil(1024))
            .unwrap_or(u32::MAX)
            .clamp(1, self.capacity_kib);
        // The semaphore is never closed.
        let permit = Arc::clone(&self.permits).acquire_many_owned(kib).await.ok();
        (Admitted(permit), kib as usize * 1024)
    }

    /// Bytes free in the gate now.
    #[cfg(test)]
    pub(crate) fn available(&self) -> usize {
        self.permits.available_permits() * 1024
    }

    /// Grows `held` to cover `bytes` in all (at most the whole gate),
    /// waiting at most `wait` for the room; `false` if it did not come.
    pub(crate) async fn grow_to(
        &self,
        held: &mut Admitted,
        bytes: usize,
        wait: std::time::Duration,
    ) -> bool {
        let want = u32::try_from(bytes.div_ceil(1024))
            .unwrap_or(u32::MAX)
            .min(self.capacity_kib);
        let have = held.0.as_ref().map_or(0, |p| p.num_permits());
        let Some(more) = (want as usize).checked_sub(have).filter(|n| *n > 0) else {
            return true;
        };
        let acquire = Arc::clone(&self.permits).acquire_many_owned(more as u32);
        match tokio::time::timeout(wait, acquire).await {
            // The semaphore is never closed.
            Ok(Ok(permit)) => {
                match &mut held.0 {
                    Some(p) => p.merge(permit),
                    None => held.0 = Some(permit),
                }
                true
            }
            _ => false,
        }
    }
}

/// Permits of one request in the [`DecodeGate`], given back when dropped.
#[derive(Default)]
pub(crate) struct Admitted(Option<tokio::sync::OwnedSemaphorePermit>);

impl Admitted {
    /// Keeps permits for `used` bytes, giving back the rest.
    pub(crate) fn shrink_to(&mut self, used: usize) {
        if let Some(permit) = &mut self.0 {
            let keep = used.div_ceil(1024).max(1);
            if let Some(extra) = permit.num_permits().checked_sub(keep).filter(|n| *n > 0) {
                drop(permit.split(extra));
            }
        }
    }
}

/// Whether a body read failed because the client stalled: the listener
/// reports that as an [`std::io::Error`] of kind `TimedOut` somewhere in the
/// chain, so this crate need not know the listener's types.
pub(crate) fn timed_out(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(e) = next {
        if e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
        {
            return true;
        }
        next = e.source();
    }
    false
}

/// The most a protobuf body of `len` bytes can decode to: every 2 bytes
/// a message of [`wire`]'s per-message charge, every 28 bytes a span, the
/// strings one for one.
pub(crate) fn protobuf_bound(len: usize) -> usize {
    len.saturating_mul(wire::PROTOBUF_BYTES_PER_BODY_BYTE)
}

/// The most a protobuf logs body of `len` bytes can decode to.
pub(crate) fn logs_protobuf_bound(len: usize) -> usize {
    len.saturating_mul(wire::LOG_BYTES_PER_BODY_BYTE)
}

/// The OTLP answer for a decoded batch: partial success when spans were
/// rejected or links dropped, an empty response otherwise.
fn export_response(decoded: &DecodedSpans) -> ExportTraceServiceResponse {
    let partial_success = if decoded.rejected > 0 || !decoded.errors.is_empty() {
        Some(ExportTracePartialSuccess {
            rejected_spans: i64::try_from(decoded.rejected).unwrap_or(i64::MAX),
            error_message: decoded.error_message(),
        })
    } else {
        None
    };
    ExportTraceServiceResponse { partial_success }
}
