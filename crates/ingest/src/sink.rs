//! Where receivers hand decoded spans: the [`SpanSink`] seam.
//!
//! Receivers depend on this trait, never on a store, so that ingest stays
//! left of storage in the data flow. The sink's answer is what the sender
//! hears: `Ok` means "stored", [`SinkError::Overloaded`] means "try later",
//! [`SinkError::TooLarge`] "send it in smaller pieces" and
//! [`SinkError::Failed`] "this failed".

use chaintrace_model::{LogRecord, Span};

/// Something that takes batches of decoded spans (and log records),
/// usually the store.
#[async_trait::async_trait]
pub trait SpanSink: Send + Sync + 'static {
    /// Stores the spans durably; Ok only once they survive a crash.
    async fn accept(&self, spans: Vec<Span>) -> Result<(), SinkError>;

    /// Stores log records durably; Ok only once they survive a crash. The
    /// default refuses them: a sink that keeps only spans says so.
    async fn accept_logs(&self, logs: Vec<LogRecord>) -> Result<(), SinkError> {
        Err(SinkError::Failed(format!(
            "this server does not store logs ({} records refused)",
            logs.len()
        )))
    }
}

/// Why a sink did not take a batch.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The sink is over its budget; the sender should retry later
    /// (HTTP 503 with `Retry-After`, gRPC `UNAVAILABLE`).
    #[error("{0}")]
    Overloaded(String),
    /// The batch could not be stored (HTTP 500, gRPC `INTERNAL`).
    #[error("{0}")]
    Failed(String),
    /// The batch can never be taken as it is, however long the sender
    /// waits: it is bigger than the sink can hold. Sending it again would
    /// fail again; smaller batches succeed (HTTP 413, gRPC
    /// `INVALID_ARGUMENT`, neither retried by OpenTelemetry SDKs).
    #[error("{0}")]
    TooLarge(String),
    /// The sender is over a limit set for it (its tenant's spans a second,
    /// or storage quota): retry after `retry_after_secs` (HTTP 429 with
    /// `Retry-After`, gRPC `RESOURCE_EXHAUSTED`).
    #[error("{message}")]
    Limited {
        /// What limit, and by how much.
        message: String,
        /// When a retry may succeed, in whole seconds (at least 1).
        retry_after_secs: u64,
    },
}
