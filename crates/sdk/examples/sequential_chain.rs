//! The founding document's RAG chain, one step after the other.
//!
//! Exports to `OTEL_EXPORTER_OTLP_ENDPOINT` (OTLP/gRPC, default
//! `http://127.0.0.1:4317`), e.g. a `chaintrace serve`, and prints
//! `trace_id=<32 hex>` once the spans are flushed:
//!
//! ```text
//! cargo run -p chaintrace-sdk --example sequential_chain
//! chaintrace trace <trace id>
//! ```

mod common;

use std::process::ExitCode;

use common::{handle_request, Plan};

#[tokio::main]
async fn main() -> ExitCode {
    common::exit_code(run().await)
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let guard = chaintrace_sdk::init("rag-chain")?;
    let outcome = handle_request(Plan {
        concurrent: false,
        rate_limited_attempts: 0,
    })
    .await;
    // Flush before printing the id, so the trace is there to look up.
    guard.shutdown()?;
    println!("trace_id={}", outcome.trace_id);
    outcome.answer?;
    Ok(())
}
