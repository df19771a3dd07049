//! The OTLP/gRPC exporter on a Tokio runtime of its own.
//!
//! The tonic exporter needs a Tokio runtime to drive its connection, and the
//! SDK's batch processor exports from a plain thread of its own. Were the
//! connection driven by the application's runtime, flushing at shutdown
//! would block the very runtime it waits on whenever that runtime has one
//! thread (`#[tokio::main(flavor = "current_thread")]`, `#[tokio::test]`),
//! and the exporter would stop with the runtime. So the exporter gets a
//! small current-thread runtime on a thread named `chaintrace-export`:
//! [`crate::init`] works with any runtime or none, and the guard can flush
//! from anywhere.
//!
//! This module only builds and hosts the exporter; what is exported, and
//! when, is the SDK's batch processor's business.

use std::sync::mpsc;
use std::thread::JoinHandle;

use opentelemetry::Context;
use opentelemetry_otlp::{SpanExporter, WithExportConfig};
use tokio::sync::oneshot;

use crate::setup::InitError;

/// The runtime thread; stopped (after the provider has flushed) by [`ExportRuntime::stop`].
#[derive(Debug)]
pub(crate) struct ExportRuntime {
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl ExportRuntime {
    /// Starts the runtime thread and builds an exporter to `endpoint` on it.
    pub(crate) fn start(endpoint: &str) -> Result<(ExportRuntime, SpanExporter), InitError> {
        let (ready_tx, ready_rx) = mpsc::channel();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let endpoint_owned = endpoint.to_string();
        let thread = std::thread::Builder::new()
            .name("chaintrace-export".into())
            .spawn(move || {
                // Nothing the exporter's connection does may be traced
                // itself: it would feed spans back into the export.
                let _suppressed = Context::enter_telemetry_suppressed_scope();
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(e) => {
                        let _ = ready_tx.send(Err(InitError::ExportRuntime(e)));
                        return;
                    }
                };
                let exporter = {
                    // tonic spawns its connection tasks onto the runtime
                    // current when the channel is made.
                    let _entered = runtime.enter();
                    SpanExporter::builder()
                        .with_tonic()
                        .with_endpoint(endpoint_owned.clone())
                        .build()
                        .map_err(|source| InitError::Exporter {
                            endpoint: endpoint_owned,
                            source,
                        })
                };
                let built = exporter.is_ok();
                let _ = ready_tx.send(exporter);
                if built {
                    // Drive the connection until told to stop (or the
                    // guard is gone and the sender with it).
                    runtime.block_on(async {
                        let _ = stop_rx.await;
                    });
                }
            })
            .map_err(InitError::ExportThread)?;
        let mut runtime = ExportRuntime {
            stop: Some(stop_tx),
            thread: Some(thread),
        };
        match ready_rx.recv() {
            Ok(Ok(exporter)) => Ok((runtime, exporter)),
            Ok(Err(e)) => {
                runtime.stop();
                Err(e)
            }
            Err(_) => {
                runtime.stop();
                Err(InitError::ExportThreadDied {
                    endpoint: endpoint.to_string(),
                })
            }
        }
    }

    /// Stops the runtime and waits for its thread. Call it after the
    /// provider has shut down: spans still queued then are lost.
    pub(crate) fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for ExportRuntime {
    fn drop(&mut self) {
        self.stop();
    }
}
