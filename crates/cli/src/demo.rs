//! `chaintrace demo`: sends realistic LLM-chain traces to a running server
//! over real OTLP/gRPC, so a newcomer sees data at once.
//!
//! Three shapes, as teams run them: the sequential RAG chain
//! (fetch_context → embed_query → vector_search → llm_call), a concurrent
//! variant where fetch_context and embed_query overlap, and a chain whose
//! `api_call` fails with `RateLimitError` and is retried. Times are laid out
//! in the recent past rather than slept, so the demo finishes at once.

use anyhow::{Context, Result};
use chaintrace_model::UnixNanos;
use clap::Args;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    span, status, ResourceSpans, ScopeSpans, Span, Status,
};

/// Flags of `chaintrace demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// OTLP/gRPC endpoint of the server.
    #[arg(
        long,
        env = "CHAINTRACE_OTLP_GRPC_URL",
        default_value = "http://127.0.0.1:4317"
    )]
    pub otlp_grpc: String,

    /// How many rounds to send; each round is one trace of every shape.
    #[arg(long, default_value_t = 3)]
    pub rounds: u32,

    /// API key with the ingest scope, when the server asks for one.
    #[arg(long, env = "CHAINTRACE_KEY", hide_env_values = true)]
    pub key: Option<String>,
}

/// A tiny deterministic generator (xorshift), enough for plausible jitter.
struct Jitter(u64);

impl Jitter {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// `base_ms` ± up to 20 %, in nanoseconds.
    fn ms(&mut self, base_ms: u64) -> u64 {
        let spread = base_ms / 5 + 1;
        let v = base_ms - spread / 2 + self.next() % spread;
        v * 1_000_000
    }

    fn bytes<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        for chunk in out.chunks_mut(8) {
            let v = self.next().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
        out
    }
}

fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn s(key: &str, v: &str) -> KeyValue {
    kv(key, any_value::Value::StringValue(v.to_string()))
}

fn i(key: &str, v: i64) -> KeyValue {
    kv(key, any_value::Value::IntValue(v))
}

fn f(key: &str, v: f64) -> KeyValue {
    kv(key, any_value::Value::DoubleValue(v))
}

/// Builds the spans of one trace.
struct TraceBuilder<'a> {
    trace_id: [u8; 16],
    spans: Vec<Span>,
    jitter: &'a mut Jitter,
}

impl TraceBuilder<'_> {
    fn span(
        &mut self,
        parent: Option<&[u8]>,
        name: &str,
        kind: span::SpanKind,
        start: u64,
        end: u64,
        attributes: Vec<KeyValue>,
    ) -> Vec<u8> {
        let id = self.jitter.bytes::<8>().to_vec();
        self.spans.push(Span {
            trace_id: self.trace_id.to_vec(),
            span_id: id.clone(),
            parent_span_id: parent.map(<[u8]>::to_vec).unwrap_or_default(),
            name: name.to_string(),
            kind: kind as i32,
            start_time_unix_nano: start,
            end_time_unix_nano: end,
            attributes,
            ..Default::default()
        });
        id
    }

    fn last(&mut self) -> &mut Span {
        let n = self.spans.len();
        &mut self.spans[n - 1]
    }
}

/// Which chain to build.
#[derive(Clone, Copy, PartialEq)]
enum Shape {
    Sequential,
    Concurrent,
    RateLimited,
}

fn api_call_attrs(input: i64, output: i64) -> Vec<KeyValue> {
    vec![
        s("model", "claude-3-opus-20250219"),
        s("gen_ai.system", "anthropic"),
        s("gen_ai.request.model", "claude-3-opus-20250219"),
        i("gen_ai.request.max_tokens", 1024),
        f("gen_ai.request.temperature", 0.7),
        i("input_tokens", input),
        i("output_tokens", output),
        i("gen_ai.usage.input_tokens", input),
        i("gen_ai.usage.output_tokens", output),
        s("stop_reason", "end_turn"),
    ]
}

fn build(shape: Shape, end_of_trace: u64, jitter: &mut Jitter, session: Option<&str>) -> Vec<Span> {
    use span::SpanKind::{Client, Internal, Server};
    let mut b = TraceBuilder {
        trace_id: jitter.bytes::<16>(),
        spans: Vec::new(),
        jitter,
    };
    // Lay the chain out forwards from t0, then shift it to end at `end_of_trace`.
    let t0 = 0u64;
    let fetch = b.jitter.ms(50);
    let embed = b.jitter.ms(100);
    let search = b.jitter.ms(50);
    let (fetch_start, embed_start) = match shape {
        Shape::Concurrent => (t0, t0),
        _ => (t0, t0 + fetch),
    };
    let search_start = (fetch_start + fetch).max(embed_start + embed);
    let llm_start = search_start + search;
    let prompt = b.jitter.ms(10);

    // Each turn of the demo conversation says what the user asked and
    // what came back (OpenInference's chain input and output).
    let (question, answer) = match shape {
        Shape::Sequential => (
            "What is our refund policy for annual plans?",
            "Annual plans can be refunded in full within 30 days, pro rata after that.",
        ),
        Shape::Concurrent => (
            "And for monthly plans?",
            "Monthly plans are not refunded; cancelling stops the next charge.",
        ),
        Shape::RateLimited => (
            "Can you summarise both in one sentence?",
            "Annual: full refund for 30 days, then pro rata; monthly: no refund, cancel any time.",
        ),
    };
    let mut root_attrs = vec![s("user_id", "user_42"), s("user.id", "user_42")];
    if let Some(session) = session {
        root_attrs.push(s("session.id", session));
    }
    root_attrs.extend([s("input.value", question), s("output.value", answer)]);
    let root = b.span(None, "process_query", Server, t0, 0, root_attrs);
    b.span(
        Some(&root),
        "fetch_context",
        Internal,
        fetch_start,
        fetch_start + fetch,
        vec![s("user_id", "user_42"), i("context_size_bytes", 4096)],
    );
    b.span(
        Some(&root),
        "embed_query",
        Client,
        embed_start,
        embed_start + embed,
        vec![
            s("model", "text-embedding-3-small"),
            s("gen_ai.request.model", "text-embedding-3-small"),
            s("gen_ai.operation.name", "embeddings"),
            i("embedding_dim", 1536),
        ],
    );
    b.span(
        Some(&root),
        "vector_search",
        Client,
        search_start,
        search_start + search,
        vec![s("database", "pinecone"), i("results_found", 8)],
    );
    let llm = b.span(
        Some(&root),
        "llm_call",
        Internal,
        llm_start,
        0,
        vec![s("model", "claude-3-opus-20250219")],
    );
    b.span(
        Some(&llm),
        "prompt_assembly",
        Internal,
        llm_start,
        llm_start + prompt,
        vec![i("prompt_length", 2048)],
    );
    let mut t = llm_start + prompt;
    if shape == Shape::RateLimited {
        let failed = b.jitter.ms(120);
        b.span(Some(&llm), "api_call", Client, t, t + failed, {
            let mut a = api_call_attrs(1250, 0);
            a.extend([
                s("status", "error"),
                s("error_type", "RateLimitError"),
                s("error.type", "RateLimitError"),
                s(
                    "error_message",
                    "Rate limit exceeded: 50 requests per minute",
                ),
            ]);
            a
        });
        let sp = b.last();
        sp.status = Some(Status {
            code: status::StatusCode::Error as i32,
            message: "RateLimitError: Rate limit exceeded: 50 requests per minute".to_string(),
        });
        sp.events.push(span::Event {
            time_unix_nano: t + failed,
            name: "exception".to_string(),
            attributes: vec![
                s("exception.type", "RateLimitError"),
                s("exception.message", "Rate limit exceeded: 50 requests per minute"),
                s(
                    "exception.stacktrace",
                    "Traceback (most recent call last):\n  File \"chain.py\", line 88, in api_call\n    raise RateLimitError(\"Rate limit exceeded: 50 requests per minute\")\nRateLimitError: Rate limit exceeded: 50 requests per minute",
                ),
            ],
            dropped_attributes_count: 0,
        });
        // The client backs off before retrying.
        t += failed + b.jitter.ms(200);
    }
    let api = b.jitter.ms(920);
    b.span(Some(&llm), "api_call", Client, t, t + api, {
        let mut a = api_call_attrs(1250, 340);
        if shape == Shape::RateLimited {
            a.push(i("retry_attempt", 1));
        }
        a
    });
    b.last().events.push(span::Event {
        time_unix_nano: t + 1_000_000,
        name: "API request sent".to_string(),
        attributes: vec![],
        dropped_attributes_count: 0,
    });
    let end = t + api;
    // Close llm_call and the root, then move everything into the past.
    for sp in &mut b.spans {
        if sp.end_time_unix_nano == 0 {
            sp.end_time_unix_nano = end;
        }
    }
    let shift = end_of_trace - end;
    for sp in &mut b.spans {
        sp.start_time_unix_nano += shift;
        sp.end_time_unix_nano += shift;
        for ev in &mut sp.events {
            ev.time_unix_nano += shift;
        }
    }
    b.spans
}

fn request(spans: Vec<Span>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![
                    s("service.name", "rag-chain"),
                    s("service.version", "1.4.0"),
                    s("deployment.environment", "demo"),
                    s("telemetry.sdk.name", "chaintrace-demo"),
                ],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "chaintrace.demo".to_string(),
                    version: env!("CARGO_PKG_VERSION").to_string(),
                    ..Default::default()
                }),
                spans,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

/// Sends the demo traffic and prints the ids of the traces it sent.
pub async fn run(args: DemoArgs) -> Result<()> {
    let mut client = TraceServiceClient::connect(args.otlp_grpc.clone())
        .await
        .with_context(|| {
            format!(
                "cannot reach the OTLP/gRPC receiver at {} — is `chaintrace serve` running?",
                args.otlp_grpc
            )
        })?;
    let authorization = match &args.key {
        Some(key) => Some(
            format!("Bearer {}", key.trim())
                .parse::<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>()
                .context("the API key has characters gRPC metadata cannot carry")?,
        ),
        None => None,
    };
    let now = UnixNanos::now().0;
    let mut jitter = Jitter(now | 1);
    let mut sent = Vec::new();
    for round in 0..args.rounds {
        // Each round is one conversation: three turns of one session.
        let session = format!("demo-{}-{round}", now / 1_000_000_000);
        for (k, shape) in [Shape::Sequential, Shape::Concurrent, Shape::RateLimited]
            .into_iter()
            .enumerate()
        {
            // Space traces a few seconds apart, newest last.
            let back = u64::from(args.rounds - round) * 9 + (3 - k as u64) * 3;
            let spans = build(
                shape,
                now - back * 1_000_000_000,
                &mut jitter,
                Some(&session),
            );
            let trace_id = hex_id(&spans[0].trace_id);
            let mut export = tonic::Request::new(request(spans));
            if let Some(value) = &authorization {
                export.metadata_mut().insert("authorization", value.clone());
            }
            let answer = client
                .export(export)
                .await
                .with_context(|| format!("export of demo trace {trace_id} failed"))?
                .into_inner();
            if let Some(p) = answer.partial_success.filter(|p| p.rejected_spans > 0) {
                anyhow::bail!(
                    "server rejected {} demo spans: {}",
                    p.rejected_spans,
                    p.error_message
                );
            }
            let label = match shape {
                Shape::Sequential => "sequential chain",
                Shape::Concurrent => "concurrent chain (fetch_context ∥ embed_query)",
                Shape::RateLimited => "RateLimitError, then retry",
            };
            sent.push((trace_id, label));
        }
    }
    println!(
        "sent {} demo traces over OTLP/gRPC to {}:",
        sent.len(),
        args.otlp_grpc
    );
    for (id, label) in &sent {
        println!("  {id}  {label}");
    }
    if let Some((id, _)) = sent.last() {
        println!("\nsee one with:  chaintrace trace {id}");
        println!(
            "and the conversation:  chaintrace sessions demo-{}-0",
            now / 1_000_000_000
        );
    }
    Ok(())
}

fn hex_id(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequential_chain_runs_back_to_back_and_concurrent_overlaps() {
        let mut j = Jitter(7);
        let seq = build(Shape::Sequential, 10_000_000_000_000, &mut j, None);
        let by = |spans: &[Span], n: &str| {
            spans
                .iter()
                .find(|s| s.name == n)
                .map(|s| (s.start_time_unix_nano, s.end_time_unix_nano))
                .unwrap()
        };
        assert_eq!(seq.len(), 7);
        assert!(by(&seq, "embed_query").0 >= by(&seq, "fetch_context").1);
        let root = by(&seq, "process_query");
        assert_eq!(root.1, 10_000_000_000_000);
        for sp in &seq {
            assert!(sp.start_time_unix_nano >= root.0 && sp.end_time_unix_nano <= root.1);
        }
        let con = build(Shape::Concurrent, 10_000_000_000_000, &mut j, None);
        assert_eq!(by(&con, "embed_query").0, by(&con, "fetch_context").0);

        let rl = build(Shape::RateLimited, 10_000_000_000_000, &mut j, None);
        assert_eq!(rl.len(), 8);
        let failed: Vec<_> = rl
            .iter()
            .filter(|s| s.status.as_ref().is_some_and(|st| st.code == 2))
            .collect();
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0].name, "api_call");
    }
}
