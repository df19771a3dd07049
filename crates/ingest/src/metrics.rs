//! What the receivers count, per protocol: requests, bytes, spans received,
//! accepted and rejected (by reason), and requests refused (by reason).
//!
//! Every receiver counts into its [`ReceiverMetrics`] from the moment it
//! starts; the handles live in the [`Limits`](crate::otlp::Limits) the
//! receivers share, and [`IngestMetrics::register`] shows those of one
//! protocol in a [`Registry`]. This module names the metrics and their
//! labels; it must not know how they are served.
//!
//! For every protocol, `spans received = spans accepted + spans rejected`
//! (all reasons) once no request is in flight. A request refused before its
//! spans were decoded (malformed, too large, …) counts in
//! `chaintrace_receiver_requests_refused_total` only: its spans were never
//! counted.

use chaintrace_metrics::{Counter, Registry};

/// A receiver, as the `protocol` label names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// OTLP over gRPC (4317).
    OtlpGrpc,
    /// OTLP over HTTP, `/v1/traces` (4318).
    OtlpHttp,
    /// Jaeger agent, Thrift compact over UDP (6831).
    JaegerCompact,
    /// Jaeger agent, Thrift binary over UDP (6832).
    JaegerBinary,
    /// Jaeger collector, Thrift over HTTP (14268).
    JaegerHttp,
    /// Zipkin v2 over HTTP (9411).
    Zipkin,
    /// chaintrace's JSON spans, `POST /api/v1/spans` on the query API.
    JsonSpans,
}

impl Protocol {
    /// Every protocol, in the order of [`IngestMetrics`]'s handles.
    pub const ALL: [Protocol; 7] = [
        Protocol::OtlpGrpc,
        Protocol::OtlpHttp,
        Protocol::JaegerCompact,
        Protocol::JaegerBinary,
        Protocol::JaegerHttp,
        Protocol::Zipkin,
        Protocol::JsonSpans,
    ];

    /// The `protocol` label value.
    pub fn label(self) -> &'static str {
        match self {
            Protocol::OtlpGrpc => "otlp_grpc",
            Protocol::OtlpHttp => "otlp_http",
            Protocol::JaegerCompact => "jaeger_compact",
            Protocol::JaegerBinary => "jaeger_binary",
            Protocol::JaegerHttp => "jaeger_http",
            Protocol::Zipkin => "zipkin",
            Protocol::JsonSpans => "json_spans",
        }
    }
}

/// Why decoded spans were not stored (`reason` of
/// `chaintrace_receiver_spans_rejected_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanRejection {
    /// The decoder refused the span and kept the rest of the request: a
    /// trace, span or parent id of the wrong length, or (JSON spans) a
    /// missing or mistyped field.
    Invalid,
    /// The store was over its memory budget: the sender was told to retry.
    Overloaded,
    /// The batch was too large for the store (one WAL record, or the whole
    /// memory budget).
    TooLarge,
    /// The store failed (e.g. a full disk).
    Failed,
    /// The sender's tenant was over its spans a second or storage quota.
    Limited,
}

impl SpanRejection {
    const ALL: [SpanRejection; 5] = [
        SpanRejection::Invalid,
        SpanRejection::Overloaded,
        SpanRejection::TooLarge,
        SpanRejection::Failed,
        SpanRejection::Limited,
    ];

    /// The `reason` label value.
    pub fn label(self) -> &'static str {
        match self {
            SpanRejection::Invalid => "invalid",
            SpanRejection::Overloaded => "overloaded",
            SpanRejection::TooLarge => "too_large",
            SpanRejection::Failed => "failed",
            SpanRejection::Limited => "limited",
        }
    }
}

/// Why a request was refused (`reason` of
/// `chaintrace_receiver_requests_refused_total`), from its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestRejection {
    /// Not the protocol's format, bad gzip, no message (HTTP 400, gRPC
    /// `INVALID_ARGUMENT`, an undecodable datagram).
    Malformed,
    /// An unknown `Content-Type` or `Content-Encoding`, or another gRPC
    /// method (HTTP 415, gRPC `UNIMPLEMENTED`).
    Unsupported,
    /// Over `--max-request-bytes`, or decoding to more than may be held
    /// (HTTP 413, gRPC `RESOURCE_EXHAUSTED`).
    TooLarge,
    /// A memory budget was full: retry later (HTTP 503, gRPC
    /// `UNAVAILABLE`).
    Overloaded,
    /// The body stalled (HTTP 408, gRPC `DEADLINE_EXCEEDED`).
    Timeout,
    /// The store or the server failed (HTTP 500, gRPC `INTERNAL`).
    Failed,
    /// The sender's tenant was over a limit (HTTP 429).
    Limited,
}

impl RequestRejection {
    const ALL: [RequestRejection; 7] = [
        RequestRejection::Malformed,
        RequestRejection::Unsupported,
        RequestRejection::TooLarge,
        RequestRejection::Overloaded,
        RequestRejection::Timeout,
        RequestRejection::Failed,
        RequestRejection::Limited,
    ];

    /// The `reason` label value.
    pub fn label(self) -> &'static str {
        match self {
            RequestRejection::Malformed => "malformed",
            RequestRejection::Unsupported => "unsupported",
            RequestRejection::TooLarge => "too_large",
            RequestRejection::Overloaded => "overloaded",
            RequestRejection::Timeout => "timeout",
            RequestRejection::Failed => "failed",
            RequestRejection::Limited => "limited",
        }
    }

    /// The reason an HTTP refusal's status stands for.
    pub fn from_status(status: http::StatusCode) -> Self {
        match status.as_u16() {
            413 => RequestRejection::TooLarge,
            415 => RequestRejection::Unsupported,
            429 => RequestRejection::Limited,
            503 => RequestRejection::Overloaded,
            408 => RequestRejection::Timeout,
            400..=499 => RequestRejection::Malformed,
            _ => RequestRejection::Failed,
        }
    }

    /// The reason a gRPC refusal's code stands for.
    pub fn from_grpc(code: tonic::Code) -> Self {
        use tonic::Code;
        match code {
            Code::ResourceExhausted | Code::OutOfRange => RequestRejection::TooLarge,
            Code::Unimplemented => RequestRejection::Unsupported,
            Code::Unavailable => RequestRejection::Overloaded,
            Code::DeadlineExceeded | Code::Cancelled => RequestRejection::Timeout,
            Code::InvalidArgument | Code::FailedPrecondition => RequestRejection::Malformed,
            _ => RequestRejection::Failed,
        }
    }
}

impl From<SpanRejection> for RequestRejection {
    /// The request's reason when the store refused its spans for `reason`.
    fn from(reason: SpanRejection) -> Self {
        match reason {
            SpanRejection::Overloaded => RequestRejection::Overloaded,
            SpanRejection::TooLarge => RequestRejection::TooLarge,
            SpanRejection::Invalid => RequestRejection::Malformed,
            SpanRejection::Failed => RequestRejection::Failed,
            SpanRejection::Limited => RequestRejection::Limited,
        }
    }
}

/// The counters of one receiver. Cheap to clone; clones count together.
#[derive(Debug, Clone, Default)]
pub struct ReceiverMetrics {
    requests: Counter,
    bytes: Counter,
    spans_received: Counter,
    spans_accepted: Counter,
    spans_rejected: [Counter; SpanRejection::ALL.len()],
    requests_refused: [Counter; RequestRejection::ALL.len()],
    logs_received: Counter,
    logs_accepted: Counter,
    logs_rejected: [Counter; SpanRejection::ALL.len()],
}

impl ReceiverMetrics {
    /// A request (UDP: a datagram) arrived.
    pub fn request(&self) {
        self.requests.inc();
    }

    /// `n` bytes of a request were read, as sent (before gunzip).
    pub fn bytes(&self, n: usize) {
        self.bytes.inc_by(n as u64);
    }

    /// A request was refused before any of its spans were stored.
    pub fn refused(&self, reason: RequestRejection) {
        self.requests_refused[reason as usize].inc();
    }

    /// A request decoded to `kept` spans for the store and `invalid` spans
    /// the decoder refused.
    pub fn decoded(&self, kept: usize, invalid: u64) {
        self.spans_received.inc_by(kept as u64 + invalid);
        self.spans_rejected[SpanRejection::Invalid as usize].inc_by(invalid);
    }

    /// The store took `n` spans.
    pub fn accepted(&self, n: usize) {
        self.spans_accepted.inc_by(n as u64);
    }

    /// The store refused `n` spans.
    pub fn store_refused(&self, n: usize, reason: SpanRejection) {
        self.spans_rejected[reason as usize].inc_by(n as u64);
    }

    /// A logs request decoded to `kept` records for the store and
    /// `invalid` records the decoder refused.
    pub fn logs_decoded(&self, kept: usize, invalid: u64) {
        self.logs_received.inc_by(kept as u64 + invalid);
        self.logs_rejected[SpanRejection::Invalid as usize].inc_by(invalid);
    }

    /// The store took `n` log records.
    pub fn logs_accepted(&self, n: usize) {
        self.logs_accepted.inc_by(n as u64);
    }

    /// The store refused `n` log records.
    pub fn logs_store_refused(&self, n: usize, reason: SpanRejection) {
        self.logs_rejected[reason as usize].inc_by(n as u64);
    }

    /// Log records the store took so far.
    pub fn logs_accepted_total(&self) -> u64 {
        self.logs_accepted.get()
    }

    /// Requests counted so far.
    pub fn requests(&self) -> u64 {
        self.requests.get()
    }

    /// Spans the store took so far.
    pub fn spans_accepted(&self) -> u64 {
        self.spans_accepted.get()
    }

    /// Spans rejected so far for `reason`.
    pub fn spans_rejected(&self, reason: SpanRejection) -> u64 {
        self.spans_rejected[reason as usize].get()
    }

    /// Requests refused so far for `reason`.
    pub fn requests_refused(&self, reason: RequestRejection) -> u64 {
        self.requests_refused[reason as usize].get()
    }

    fn register(&self, registry: &Registry, protocol: Protocol) {
        let p = ("protocol", protocol.label());
        registry.register(
            "chaintrace_receiver_requests_total",
            "Requests (UDP: datagrams) that reached a span receiver.",
            &[p],
            self.requests.clone(),
        );
        registry.register(
            "chaintrace_receiver_received_bytes_total",
            "Bytes of request bodies (UDP: datagrams) read by a span receiver, as sent (before gunzip).",
            &[p],
            self.bytes.clone(),
        );
        registry.register(
            "chaintrace_receiver_spans_received_total",
            "Spans decoded from requests (accepted plus rejected).",
            &[p],
            self.spans_received.clone(),
        );
        registry.register(
            "chaintrace_receiver_spans_accepted_total",
            "Spans stored (in the write-ahead log) and acknowledged.",
            &[p],
            self.spans_accepted.clone(),
        );
        for reason in SpanRejection::ALL {
            registry.register(
                "chaintrace_receiver_spans_rejected_total",
                "Decoded spans not stored, by reason: invalid (bad id or field), overloaded, too_large, failed.",
                &[p, ("reason", reason.label())],
                self.spans_rejected[reason as usize].clone(),
            );
        }
        if matches!(protocol, Protocol::OtlpGrpc | Protocol::OtlpHttp) {
            registry.register(
                "chaintrace_receiver_logs_received_total",
                "OTLP log records decoded from requests (accepted plus rejected).",
                &[p],
                self.logs_received.clone(),
            );
            registry.register(
                "chaintrace_receiver_logs_accepted_total",
                "OTLP log records stored (in the log write-ahead log) and acknowledged.",
                &[p],
                self.logs_accepted.clone(),
            );
            for reason in SpanRejection::ALL {
                registry.register(
                    "chaintrace_receiver_logs_rejected_total",
                    "Decoded log records not stored, by reason: invalid (bad id), overloaded, too_large, failed.",
                    &[p, ("reason", reason.label())],
                    self.logs_rejected[reason as usize].clone(),
                );
            }
        }
        for reason in RequestRejection::ALL {
            registry.register(
                "chaintrace_receiver_requests_refused_total",
                "Requests refused whole, by reason: malformed, unsupported, too_large, overloaded, timeout, failed.",
                &[p, ("reason", reason.label())],
                self.requests_refused[reason as usize].clone(),
            );
        }
    }
}

/// The counters of every receiver, one [`ReceiverMetrics`] per [`Protocol`].
#[derive(Debug, Default)]
pub struct IngestMetrics {
    receivers: [ReceiverMetrics; Protocol::ALL.len()],
}

impl IngestMetrics {
    /// The counters of `protocol`'s receiver.
    pub fn receiver(&self, protocol: Protocol) -> &ReceiverMetrics {
        &self.receivers[protocol as usize]
    }

    /// Shows `protocol`'s counters in `registry`, every reason at zero
    /// from the start (so rates and alerts see the series before the
    /// first rejection).
    ///
    /// ```
    /// use chaintrace_ingest::metrics::Protocol;
    /// let limits = chaintrace_ingest::otlp::Limits::default();
    /// let registry = chaintrace_metrics::Registry::new();
    /// limits.metrics().register(&registry, Protocol::OtlpHttp);
    /// let text = registry.render();
    /// assert!(text.contains(
    ///     "chaintrace_receiver_spans_rejected_total{protocol=\"otlp_http\",reason=\"invalid\"} 0"
    /// ));
    /// ```
    pub fn register(&self, registry: &Registry, protocol: Protocol) {
        self.receiver(protocol).register(registry, protocol);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_codes_map_to_reasons() {
        use http::StatusCode;
        let http = |s: u16| RequestRejection::from_status(StatusCode::from_u16(s).unwrap());
        assert_eq!(http(400), RequestRejection::Malformed);
        assert_eq!(http(408), RequestRejection::Timeout);
        assert_eq!(http(413), RequestRejection::TooLarge);
        assert_eq!(http(415), RequestRejection::Unsupported);
        assert_eq!(http(503), RequestRejection::Overloaded);
        assert_eq!(http(500), RequestRejection::Failed);
        let grpc = RequestRejection::from_grpc;
        assert_eq!(
            grpc(tonic::Code::InvalidArgument),
            RequestRejection::Malformed
        );
        assert_eq!(
            grpc(tonic::Code::ResourceExhausted),
            RequestRejection::TooLarge
        );
        assert_eq!(grpc(tonic::Code::Unavailable), RequestRejection::Overloaded);
        assert_eq!(grpc(tonic::Code::Internal), RequestRejection::Failed);
    }

    #[test]
    fn every_label_is_registered_once() {
        let metrics = IngestMetrics::default();
        let registry = Registry::new();
        for protocol in Protocol::ALL {
            metrics.register(&registry, protocol);
        }
        metrics.receiver(Protocol::Zipkin).decoded(3, 2);
        let text = registry.render();
        assert_eq!(
            text.matches("chaintrace_receiver_spans_rejected_total{")
                .count(),
            Protocol::ALL.len() * SpanRejection::ALL.len()
        );
        assert!(text.contains("chaintrace_receiver_spans_received_total{protocol=\"zipkin\"} 5\n"));
        assert!(text.contains(
            "chaintrace_receiver_spans_rejected_total{protocol=\"zipkin\",reason=\"invalid\"} 2\n"
        ));
    }
}
