//! Measures the embedded store's write path in isolation (no network, no
//! OTLP decoding), so that it can be profiled with `perf record`:
//!
//! ```text
//! cargo run --release -p chaintrace-store --example store_profile -- [spans] [phase]
//! ```
//!
//! `phase` is `append` (WAL + head only, no cuts), `block` (write one block
//! of `spans` spans), or `all` (the default: appends from 8 tasks with the
//! default configuration, retrying when over budget, until every span is in
//! a block). Prints one JSON line per phase. Not a test: timing decides
//! nothing.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chaintrace_model::{
    AnyValue, Event, KeyValue, Resource, Scope, Span, SpanId, SpanKind, Status, StatusCode,
    TraceId, UnixNanos,
};
use chaintrace_store::block::{write_block, BlockWriteOptions};
use chaintrace_store::{EmbeddedConfig, EmbeddedStore, Store, StoreError};

const SERVICES: [&str; 5] = [
    "rag-chain",
    "support-bot",
    "code-agent",
    "search-api",
    "summarizer",
];

fn kv(key: &str, value: impl Into<AnyValue>) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: value.into(),
    }
}

/// Name, parent index, start and end (ms), attributes.
type Slot = (&'static str, Option<usize>, u64, u64, Vec<KeyValue>);

/// A seven-span RAG chain like `chaintrace gen` sends.
fn chain(n: u64, resources: &[Arc<Resource>]) -> Vec<Span> {
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&n.wrapping_mul(0x9e37_79b9_7f4a_7c15).to_be_bytes());
    id[8..].copy_from_slice(&n.to_be_bytes());
    let trace_id = TraceId(id);
    let base = 1_700_000_000_000_000_000 + n * 1_000_000;
    let resource = Arc::clone(&resources[n as usize % resources.len()]);
    let error = n.is_multiple_of(50);
    let slots: [Slot; 7] = [
        (
            "process_query",
            None,
            0,
            1130,
            vec![kv("user_id", "user_42")],
        ),
        (
            "fetch_context",
            Some(0),
            0,
            50,
            vec![kv("user_id", "user_42"), kv("context_size_bytes", 4096i64)],
        ),
        (
            "embed_query",
            Some(0),
            50,
            150,
            vec![
                kv("model", "text-embedding-3-small"),
                kv("gen_ai.request.model", "text-embedding-3-small"),
                kv("gen_ai.operation.name", "embeddings"),
                kv("embedding_dim", 1536i64),
            ],
        ),
        (
            "vector_search",
            Some(0),
            150,
            200,
            vec![kv("database", "pinecone"), kv("results_found", 8i64)],
        ),
        (
            "llm_call",
            Some(0),
            200,
            1130,
            vec![kv("model", "claude-3-opus-20250219")],
        ),
        (
            "prompt_assembly",
            Some(4),
            200,
            210,
            vec![kv("prompt_length", 2048i64)],
        ),
        (
            "api_call",
            Some(4),
            210,
            1130,
            vec![
                kv("model", "claude-3-opus-20250219"),
                kv("gen_ai.system", "anthropic"),
                kv("gen_ai.request.model", "claude-3-opus-20250219"),
                kv("gen_ai.request.max_tokens", 1024i64),
                kv("gen_ai.request.temperature", 0.7f64),
                kv("input_tokens", 1250i64),
                kv("output_tokens", 340i64),
                kv("gen_ai.usage.input_tokens", 1250i64),
                kv("gen_ai.usage.output_tokens", 340i64),
                kv("stop_reason", "end_turn"),
            ],
        ),
    ];
    let span_id = |i: usize| SpanId((n * 8 + i as u64 + 1).to_be_bytes());
    slots
        .into_iter()
        .enumerate()
        .map(|(i, (name, parent, start, end, attributes))| {
            let failing = error && (i == 6 || i == 4 || i == 0);
            let mut events = Vec::new();
            if error && i == 6 {
                events.push(Event {
                    time: UnixNanos(base + end * 1_000_000),
                    name: "exception".into(),
                    attributes: vec![kv("exception.type", "RateLimitError")],
                });
            }
            Span {
                trace_id,
                span_id: span_id(i),
                parent_span_id: parent.map(span_id),
                name: name.into(),
                kind: SpanKind::Internal,
                start: UnixNanos(base + start * 1_000_000),
                end: UnixNanos(base + end * 1_000_000),
                status: Status {
                    code: if failing {
                        StatusCode::Error
                    } else {
                        StatusCode::Unset
                    },
                    message: if failing {
                        "RateLimitError: rate limit exceeded".into()
                    } else {
                        String::new()
                    },
                },
                attributes,
                events,
                links: Vec::new(),
                resource: Arc::clone(&resource),
                scope: std::sync::Arc::new(Scope {
                    name: "chaintrace-gen".into(),
                    version: "0.1.0".into(),
                }),
            }
        })
        .collect()
}

fn resources() -> Vec<Arc<Resource>> {
    SERVICES
        .iter()
        .map(|s| {
            Arc::new(Resource {
                attributes: vec![
                    kv("service.name", *s),
                    kv("telemetry.sdk.language", "python"),
                    kv("telemetry.sdk.name", "opentelemetry"),
                    kv("telemetry.sdk.version", "1.45.2"),
                ],
            })
        })
        .collect()
}

fn spans(count: u64, from_trace: u64) -> Vec<Span> {
    let resources = resources();
    (from_trace..)
        .flat_map(|n| chain(n, &resources))
        .take(count as usize)
        .collect()
}

fn emit(phase: &str, spans: u64, seconds: f64) {
    println!(
        "{{\"phase\":\"{phase}\",\"spans\":{spans},\"seconds\":{seconds:.3},\"spans_per_sec\":{:.0}}}",
        spans as f64 / seconds
    );
}

async fn append_all(store: Arc<EmbeddedStore>, total: u64, tasks: u64, batch: u64) {
    let per_task = total / tasks;
    let mut handles = Vec::new();
    for t in 0..tasks {
        let store = Arc::clone(&store);
        handles.push(tokio::spawn(async move {
            let traces_per_batch = batch / 7;
            let mut trace = t * 1_000_000_000;
            let mut sent = 0;
            while sent < per_task {
                let first = trace;
                trace += traces_per_batch;
                sent += traces_per_batch * 7;
                loop {
                    // Built anew for each attempt: a clone would cost as much.
                    match store.append(spans(traces_per_batch * 7, first)).await {
                        Ok(()) => break,
                        Err(StoreError::Overloaded(_)) => {
                            tokio::time::sleep(Duration::from_millis(20)).await
                        }
                        Err(e) => panic!("append failed: {e}"),
                    }
                }
            }
        }));
    }
    for h in handles {
        h.await.expect("append task");
    }
}

// The server binary's allocator, so the profile matches what it runs.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// User plus system CPU time of the whole process (all threads), in seconds.
fn cpu_seconds() -> f64 {
    // SAFETY: getrusage only writes the struct it is given.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let total: u64 = args
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2_000_000);
    let phase = args.next().unwrap_or_else(|| "all".into());
    let dir = tempfile::tempdir().expect("temp dir");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    match phase.as_str() {
        "gen" => {
            let started = Instant::now();
            let n = spans(total, 0).len() as u64;
            emit("gen", n, started.elapsed().as_secs_f64());
        }
        "block" => {
            let input = spans(total, 0);
            let started = Instant::now();
            let cpu = cpu_seconds();
            let meta = write_block(dir.path(), "b1", input, &BlockWriteOptions::default())
                .expect("write block");
            emit("block", meta.span_count, started.elapsed().as_secs_f64());
            let cpu = cpu_seconds() - cpu;
            println!(
                "{{\"phase\":\"block_cpu\",\"cpu_seconds\":{cpu:.3},\"cpu_us_per_span\":{:.3},\"bytes_per_span\":{:.1}}}",
                cpu * 1e6 / meta.span_count.max(1) as f64,
                meta.data_bytes as f64 / meta.span_count.max(1) as f64
            );
        }
        "append" | "all" => {
            let mut config = EmbeddedConfig::new(dir.path());
            if phase == "append" {
                config.block_max_bytes = u64::MAX;
                config.block_max_age = Duration::from_secs(3600);
                config.max_memory = u64::MAX;
            } else {
                config.block_max_age = Duration::from_secs(1);
            }
            let (store, _) = EmbeddedStore::open(config).expect("open store");
            let store = Arc::new(store);
            let started = Instant::now();
            rt.block_on(append_all(Arc::clone(&store), total, 8, 2002));
            emit("append", total, started.elapsed().as_secs_f64());
            if phase == "all" {
                loop {
                    let stats = rt.block_on(store.stats()).expect("stats");
                    if stats.spans == 0 {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                emit("durable_in_blocks", total, started.elapsed().as_secs_f64());
            }
        }
        other => panic!("unknown phase {other}"),
    }
}
