//! Test support shared by the unit tests: fixtures and recording sinks.

use std::sync::Mutex;

use chaintrace_model::Span;

use crate::{SinkError, SpanSink};

/// The Python SDK's OTLP/HTTP protobuf body (see testdata/README.md).
pub const PB_FIXTURE: &str = "otlp-traces-python-rag-chain.pb";
/// The Python SDK's OTLP/JSON body (a different run of the same program).
pub const JSON_FIXTURE: &str = "otlp-traces-python-rag-chain.json";

/// Reads a file of the shared, read-only test data.
pub fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/../../testdata/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading fixture {path}: {e}"))
}

/// What a [`RecordingSink`] answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkMode {
    /// Records the batch and answers Ok.
    Accept,
    /// Answers Overloaded.
    Overloaded,
    /// Answers Failed.
    Failed,
}

/// A sink that records every batch it accepts.
pub struct RecordingSink {
    pub mode: SinkMode,
    pub batches: Mutex<Vec<Vec<Span>>>,
    pub log_batches: Mutex<Vec<Vec<chaintrace_model::LogRecord>>>,
}

impl RecordingSink {
    pub fn new(mode: SinkMode) -> Self {
        RecordingSink {
            mode,
            batches: Mutex::new(Vec::new()),
            log_batches: Mutex::new(Vec::new()),
        }
    }

    /// All spans accepted so far.
    pub fn spans(&self) -> Vec<Span> {
        self.batches.lock().unwrap().concat()
    }
}

#[async_trait::async_trait]
impl SpanSink for RecordingSink {
    async fn accept(&self, spans: Vec<Span>) -> Result<(), SinkError> {
        match self.mode {
            SinkMode::Accept => {
                self.batches.lock().unwrap().push(spans);
                Ok(())
            }
            SinkMode::Overloaded => Err(SinkError::Overloaded("wal over budget".into())),
            SinkMode::Failed => Err(SinkError::Failed("disk on fire".into())),
        }
    }

    async fn accept_logs(&self, logs: Vec<chaintrace_model::LogRecord>) -> Result<(), SinkError> {
        match self.mode {
            SinkMode::Accept => {
                self.log_batches.lock().unwrap().push(logs);
                Ok(())
            }
            SinkMode::Overloaded => Err(SinkError::Overloaded("wal over budget".into())),
            SinkMode::Failed => Err(SinkError::Failed("disk on fire".into())),
        }
    }
}
