//! Instrument Rust LLM chains for chaintrace — or any OpenTelemetry (OTLP)
//! backend — in the founding document's style: nested spans around each
//! step, attributes, events, errors, concurrency, LLM calls and retries.
//!
//! It is a thin layer **on** the `opentelemetry`, `opentelemetry_sdk` and
//! `opentelemetry-otlp` crates, not a tracer of its own: the spans are
//! OpenTelemetry spans, the global tracer provider is OpenTelemetry's, and
//! anything instrumented with the opentelemetry API or `tracing` lands in
//! the same traces.
//!
//! | need | item |
//! |---|---|
//! | set up export, flush at exit | [`init`], [`Builder`], [`Guard`] |
//! | a span around a step | [`in_span`], [`span`] → [`NewSpan`] (`in_scope`, `enter`, `run`, `try_run`) |
//! | keep the span across `tokio::spawn` | [`spawn`], or [`FutureExt::with_current_context`] |
//! | record a failure | [`record_error`], [`record_error_as`] |
//! | an LLM call's model, tokens, messages | [`llm::Request`], [`llm::Response`], [`llm::ChunkTimer`] |
//! | session and user of a request | [`RequestIds`] |
//! | retries, one span per attempt | [`Retry`] |
//! | `#[tracing::instrument]` and `tracing` events | on by default, see [`Builder::tracing`] |
//!
//! # Example
//!
//! The founding document's chain against a chaintrace listening on
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (default `http://127.0.0.1:4317`);
//! `crates/sdk/examples` has it runnable, sequential, concurrent and failing.
//!
//! ```no_run
//! use std::time::Duration;
//!
//! use chaintrace_sdk::llm::{Request, Response, Usage};
//! use chaintrace_sdk::opentelemetry::trace::SpanKind;
//! use chaintrace_sdk::{span, RequestIds, Retry};
//!
//! #[derive(Debug)]
//! struct RateLimitError;
//! impl std::fmt::Display for RateLimitError {
//!     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
//!         f.write_str("rate limit exceeded")
//!     }
//! }
//! impl std::error::Error for RateLimitError {}
//!
//! #[tracing::instrument(fields(database = "pinecone"))]
//! async fn vector_search() -> usize {
//!     tokio::time::sleep(Duration::from_millis(15)).await;
//!     8
//! }
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let guard = chaintrace_sdk::init("rag-service")?;
//!
//!     let answer = RequestIds::new().session("sess-7f3a").user("user_42").run(
//!         span("process_query").kind(SpanKind::Server).run(async {
//!             // fetch_context and embed_query at the same time, both
//!             // children of process_query.
//!             tokio::join!(
//!                 span("fetch_context").run(tokio::time::sleep(Duration::from_millis(20))),
//!                 span("embed_query")
//!                     .attr("embedding_dim", 1536)
//!                     .run(tokio::time::sleep(Duration::from_millis(30))),
//!             );
//!             vector_search().await;
//!             let request = Request::chat("anthropic", "claude-3-5-sonnet-latest")
//!                 .max_tokens(1024)
//!                 .temperature(0.7);
//!             request.span("llm_call").run(async {
//!                 span("prompt_assembly").in_scope(|_| { /* build the prompt */ });
//!                 let text = Retry::attempts(3)
//!                     .run("api_call", |_attempt| async {
//!                         tracing::info!("API request sent"); // an event on api_call
//!                         tokio::time::sleep(Duration::from_millis(40)).await;
//!                         Ok::<_, RateLimitError>("Retrieval first.".to_string())
//!                     })
//!                     .await?;
//!                 Response::new()
//!                     .model("claude-3-5-sonnet-20241022")
//!                     .usage(Usage::tokens(1250, 340))
//!                     .finish_reason("end_turn")
//!                     .record();
//!                 Ok::<_, RateLimitError>(text)
//!             }).await
//!         }),
//!     ).await?;
//!
//!     println!("{answer}");
//!     guard.shutdown()?; // flush; dropping the guard would too
//!     Ok(())
//! }
//! ```
//!
//! # Runtime
//!
//! [`NewSpan::run`], [`spawn`] and [`Retry`] use Tokio. The exporter runs on
//! a small Tokio runtime of its own (a thread named `chaintrace-export`),
//! so [`init`] works from any runtime, or none, and the guard can flush
//! from anywhere.

mod bridge;
mod error;
mod export;
pub mod llm;
mod request;
mod retry;
mod setup;
mod span;
#[cfg(test)]
mod test_support;

pub use error::{record_error, record_error_as};
pub use request::{RequestIds, RequestIdsProcessor};
pub use retry::Retry;
pub use setup::{init, Builder, ExportError, Guard, InitError, DEFAULT_ENDPOINT};
pub use span::{current_trace_id, in_span, span, spawn, NewSpan, SpanGuard};

/// The opentelemetry API this crate is built on, for span kinds, statuses,
/// attributes and anything the helpers do not cover.
pub use opentelemetry;
/// Attach a context to a future, stream or sink (`with_context`,
/// `with_current_context`), e.g. before handing it to `tokio::spawn`.
pub use opentelemetry::context::FutureExt;
pub use opentelemetry::{Context, KeyValue};
