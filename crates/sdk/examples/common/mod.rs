//! The founding document's RAG chain, shared by the examples:
//!
//! ```text
//! process_query
//! ├── fetch_context
//! ├── embed_query
//! ├── vector_search        (#[tracing::instrument]: the tracing bridge)
//! └── llm_call             (GenAI attributes)
//!     ├── prompt_assembly
//!     └── api_call         (retried on RateLimitError, one span per attempt)
//! ```
//!
//! Model, embedding and database calls are simulated with sleeps: the
//! examples need no network but the OTLP endpoint.

use std::error::Error;
use std::fmt;
use std::process::ExitCode;
use std::time::Duration;

use chaintrace_sdk::llm::{Message, Request, Response, Usage};
use chaintrace_sdk::opentelemetry::trace::{SpanKind, TraceId};
use chaintrace_sdk::{current_trace_id, span, RequestIds, Retry};

/// The question every example asks.
pub const QUESTION: &str = "What is retrieval-augmented generation?";

/// How long each simulated step takes.
pub mod sleep_ms {
    pub const FETCH_CONTEXT: u64 = 20;
    pub const EMBED_QUERY: u64 = 30;
    pub const VECTOR_SEARCH: u64 = 15;
    pub const PROMPT_ASSEMBLY: u64 = 5;
    pub const API_CALL: u64 = 40;
    /// A rate-limited call fails fast.
    pub const RATE_LIMITED_CALL: u64 = 10;
}

/// The model API said "too many requests".
#[derive(Debug)]
pub struct RateLimitError {
    retry_after: Duration,
}

impl fmt::Display for RateLimitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "rate limit exceeded: retry after {} ms",
            self.retry_after.as_millis()
        )
    }
}

impl Error for RateLimitError {}

/// What one request left behind.
pub struct Outcome {
    /// The trace to look up in chaintrace.
    pub trace_id: TraceId,
    /// The model's answer, or why there is none.
    pub answer: Result<String, RateLimitError>,
}

/// How to run the chain.
pub struct Plan {
    /// fetch_context and embed_query at the same time (`tokio::join!`).
    pub concurrent: bool,
    /// How many api_call attempts the model API rejects before one succeeds.
    pub rate_limited_attempts: u32,
}

/// Success, or the error on stderr and a failure status (`main` returning
/// the `Result` itself would print its `Debug` form).
pub fn exit_code(result: Result<(), Box<dyn Error>>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}

fn nap(ms: u64) -> tokio::time::Sleep {
    tokio::time::sleep(Duration::from_millis(ms))
}

/// One user request, with its session and user ids on every span.
pub async fn handle_request(plan: Plan) -> Outcome {
    RequestIds::new()
        .session("sess-7f3a")
        .user("user_42")
        .run(process_query(plan))
        .await
}

async fn process_query(plan: Plan) -> Outcome {
    span("process_query")
        .kind(SpanKind::Server)
        .attr("query", QUESTION)
        .run(async {
            let trace_id = current_trace_id().unwrap_or(TraceId::INVALID);
            if plan.concurrent {
                tokio::join!(fetch_context(), embed_query());
            } else {
                fetch_context().await;
                embed_query().await;
            }
            vector_search(8).await;
            let answer = llm_call(plan.rate_limited_attempts).await;
            Outcome { trace_id, answer }
        })
        .await
}

async fn fetch_context() {
    span("fetch_context")
        .attr("context_size_bytes", 4096)
        .run(nap(sleep_ms::FETCH_CONTEXT))
        .await
}

async fn embed_query() {
    span("embed_query")
        .kind(SpanKind::Client)
        .attr("gen_ai.operation.name", "embeddings")
        .attr("gen_ai.request.model", "text-embedding-3-small")
        .attr("embedding_dim", 1536)
        .run(nap(sleep_ms::EMBED_QUERY))
        .await
}

/// Instrumented with `tracing`, not with this crate: the span still lands
/// in the trace, under process_query.
#[tracing::instrument(fields(database = "pinecone"))]
async fn vector_search(top_k: u32) -> u32 {
    nap(sleep_ms::VECTOR_SEARCH).await;
    tracing::info!(results_found = top_k, "search done");
    top_k
}

async fn llm_call(rate_limited_attempts: u32) -> Result<String, RateLimitError> {
    let request = Request::chat("anthropic", "claude-3-5-sonnet-latest")
        .max_tokens(1024)
        .temperature(0.7)
        .system_instruction("Answer in one sentence.")
        .message(Message::user(QUESTION));
    request
        .span("llm_call")
        .try_run(async {
            span("prompt_assembly")
                .attr("prompt_length", 2048)
                .run(nap(sleep_ms::PROMPT_ASSEMBLY))
                .await;
            let answer = Retry::attempts(3)
                .backoff(Duration::from_millis(25))
                .run(span("api_call").kind(SpanKind::Client), |attempt| {
                    api_call(attempt, rate_limited_attempts)
                })
                .await?;
            Response::new()
                .model("claude-3-5-sonnet-20241022")
                .usage(Usage::tokens(1250, 340).cache_read(1000))
                .finish_reason("end_turn")
                .message(Message::assistant(answer.clone()))
                .record();
            Ok(answer)
        })
        .await
}

/// The model API: the first `rate_limited_attempts` attempts are refused.
async fn api_call(attempt: u32, rate_limited_attempts: u32) -> Result<String, RateLimitError> {
    // A `tracing` event: it becomes an event of this attempt's span.
    tracing::info!(attempt, "API request sent");
    if attempt <= rate_limited_attempts {
        nap(sleep_ms::RATE_LIMITED_CALL).await;
        return Err(RateLimitError {
            retry_after: Duration::from_millis(25),
        });
    }
    nap(sleep_ms::API_CALL).await;
    Ok("Retrieval-augmented generation answers from documents fetched for the question.".into())
}
