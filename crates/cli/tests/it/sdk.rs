//! The Rust SDK's examples (`crates/sdk/examples`) export the RAG chain to
//! a real `chaintrace serve` over OTLP/gRPC; the native API gives back the
//! tree, the overlap of the concurrent children, the GenAI attributes (and
//! chaintrace's LLM view of them), the session and user ids, the span and
//! event bridged from `tracing`, and the retried `RateLimitError` with its
//! exception event, folded as a retry.
//!
//! The examples are separate binaries: `cargo test --workspace` builds every
//! member's examples into `examples/` beside the `chaintrace` binary, and
//! `cargo build -p chaintrace-sdk --examples` does it alone. One that is
//! missing skips the test off CI, with a message, and fails it under
//! `CI=true`; one older than its sources always fails it, rather than test
//! yesterday's code.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};

use crate::harness::{Server, RAG_CHAIN_TREE};

/// The examples, and the environment the test runs each with.
const EXAMPLES: [&str; 3] = ["sequential_chain", "concurrent_chain", "failing_chain"];

/// Where cargo put example `name`: `examples/` beside the `chaintrace` binary.
fn example_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_chaintrace"))
        .parent()
        .expect("the chaintrace binary's directory")
        .join("examples")
        .join(name)
}

/// The sources of `binary` changed since it was built, from the dep-info
/// file cargo writes beside it (`<name>.d`: the binary, a colon, then every
/// local source it was built from): the same test cargo's own rebuild
/// makes, so a file only tests compile does not count. Empty when the
/// dep-info is missing.
fn changed_sources(binary: &Path) -> Vec<PathBuf> {
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let Some(built) = modified(binary) else {
        return Vec::new();
    };
    let Ok(dep_info) = std::fs::read_to_string(binary.with_extension("d")) else {
        return Vec::new();
    };
    let Some((_, sources)) = dep_info.lines().next().and_then(|l| l.split_once(": ")) else {
        return Vec::new();
    };
    // Spaces inside a path are escaped as `\ `.
    sources
        .replace("\\ ", "\0")
        .split_whitespace()
        .map(|p| PathBuf::from(p.replace('\0', " ")))
        .filter(|p| modified(p).is_some_and(|t| t > built))
        .collect()
}

/// The example binaries, or `None` (off CI) when one is missing.
fn examples() -> Option<Vec<PathBuf>> {
    let paths: Vec<PathBuf> = EXAMPLES.iter().map(|n| example_path(n)).collect();
    let missing: Vec<String> = paths
        .iter()
        .filter(|p| !p.exists())
        .map(|p| p.display().to_string())
        .collect();
    let fix = "build them with `cargo build -p chaintrace-sdk --examples` \
               (`cargo test --workspace` does)";
    if !missing.is_empty() {
        let msg = format!("SDK examples not built: {}; {fix}", missing.join(", "));
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{msg}");
        }
        eprintln!("SKIPPED: {msg}");
        return None;
    }
    for path in &paths {
        let changed = changed_sources(path);
        assert!(
            changed.is_empty(),
            "{} is older than its sources {changed:?}; {fix}",
            path.display()
        );
    }
    Some(paths)
}

/// Runs an example against `endpoint` and returns the trace id it printed.
fn run(example: &Path, endpoint: &str, env: &[(&str, &str)]) -> String {
    let mut cmd = Command::new(example);
    // Only what the test sets: nothing from the developer's shell.
    for var in [
        "OTEL_SERVICE_NAME",
        "OTEL_RESOURCE_ATTRIBUTES",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT",
        "RUST_BACKTRACE",
        "RUST_LIB_BACKTRACE",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
        .envs(env.iter().copied());
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", example.display()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{} failed ({}):\n{stdout}\n{stderr}",
        example.display(),
        out.status
    );
    let id = stdout
        .lines()
        .find_map(|l| l.strip_prefix("trace_id="))
        .unwrap_or_else(|| panic!("no trace_id= line in {stdout:?}"))
        .trim()
        .to_string();
    assert!(
        id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()) && id != "0".repeat(32),
        "trace id {id:?}"
    );
    id
}

/// A stored trace as the native API returns it.
struct Trace(Value);

impl Trace {
    fn spans(&self) -> &[Value] {
        self.0["spans"].as_array().expect("spans")
    }

    /// The spans named `name`, in start order.
    fn all(&self, name: &str) -> Vec<&Value> {
        let mut spans: Vec<&Value> = self.spans().iter().filter(|s| s["name"] == name).collect();
        spans.sort_by_key(|s| start(s));
        spans
    }

    /// The one span named `name`.
    fn one(&self, name: &str) -> &Value {
        let spans = self.all(name);
        assert_eq!(spans.len(), 1, "spans named {name} in {}", self.0);
        spans[0]
    }

    fn parent_name(&self, span: &Value) -> Option<&str> {
        let parent = span["parent_span_id"].as_str()?;
        self.spans()
            .iter()
            .find(|s| s["span_id"] == parent)
            .and_then(|s| s["name"].as_str())
    }

    fn service(&self, span: &Value) -> &Value {
        let resource = &self.0["resources"][span["resource"].as_u64().unwrap() as usize];
        attr_in(&resource["attributes"], "service.name").expect("service.name")
    }

    fn scope(&self, span: &Value) -> &Value {
        &self.0["scopes"][span["scope"].as_u64().unwrap() as usize]["name"]
    }
}

fn start(span: &Value) -> u64 {
    span["start"].as_u64().expect("start")
}

fn end(span: &Value) -> u64 {
    span["end"].as_u64().expect("end")
}

/// The plain value of attribute `key` in a `[{key, value: {type: v}}]` list.
fn attr_in<'a>(attrs: &'a Value, key: &str) -> Option<&'a Value> {
    let kv = attrs.as_array()?.iter().find(|kv| kv["key"] == key)?;
    kv["value"].as_object()?.values().next()
}

fn attr<'a>(span: &'a Value, key: &str) -> Option<&'a Value> {
    attr_in(&span["attributes"], key)
}

fn events<'a>(span: &'a Value, name: &str) -> Vec<&'a Value> {
    span["events"]
        .as_array()
        .map(|e| e.iter().filter(|e| e["name"] == name).collect())
        .unwrap_or_default()
}

async fn fetch(server: &Server, id: &str) -> Trace {
    let (status, body) = server.get_json(&format!("/api/v1/traces/{id}")).await;
    assert_eq!(status, 200, "trace {id}: {body}");
    Trace(body)
}

/// What every run of the chain shows, whichever example ran it.
fn check_chain(trace: &Trace, service: &str, attempts: usize) {
    assert_eq!(trace.spans().len(), 6 + attempts, "{}", trace.0);
    // api_call comes once per attempt: checked apart.
    for &(name, parent) in &RAG_CHAIN_TREE[..6] {
        assert_eq!(
            trace.parent_name(trace.one(name)),
            parent,
            "parent of {name}"
        );
    }
    let api_calls = trace.all("api_call");
    assert_eq!(api_calls.len(), attempts);
    for span in trace.spans() {
        let name = span["name"].as_str().unwrap();
        assert_eq!(trace.service(span), service, "service of {name}");
        assert_eq!(trace.scope(span), "chaintrace-sdk", "scope of {name}");
        // Set once by RequestIds, carried by every span of the request.
        assert_eq!(
            attr(span, "session.id"),
            Some(&json!("sess-7f3a")),
            "{name}"
        );
        assert_eq!(attr(span, "user.id"), Some(&json!("user_42")), "{name}");
        if name == "api_call" {
            assert_eq!(trace.parent_name(span), Some("llm_call"));
        }
    }
    assert_eq!(trace.one("process_query")["kind"], "server");
    assert!(api_calls.iter().all(|s| s["kind"] == "client"));
    // The slept time is inside each span.
    for (name, ms) in [
        ("fetch_context", 20),
        ("embed_query", 30),
        ("vector_search", 15),
        ("prompt_assembly", 5),
    ] {
        let span = trace.one(name);
        assert!(end(span) - start(span) >= ms * 1_000_000, "{name}: {span}");
    }
    let last = api_calls[attempts - 1];
    assert!(end(last) - start(last) >= 40_000_000, "{last}");

    // #[tracing::instrument] and tracing::info! through the bridge.
    let search = trace.one("vector_search");
    assert_eq!(attr(search, "database"), Some(&json!("pinecone")));
    // `#[instrument]` records arguments with their Debug form.
    assert_eq!(attr(search, "top_k"), Some(&json!("8")));
    let done = events(search, "search done");
    assert_eq!(done.len(), 1, "{search}");
    assert_eq!(attr(done[0], "results_found"), Some(&json!(8)));
    for call in &api_calls {
        assert_eq!(events(call, "API request sent").len(), 1, "{call}");
    }

    // The GenAI attributes on llm_call, recorded in one call each.
    let llm = trace.one("llm_call");
    for (key, value) in [
        ("gen_ai.operation.name", json!("chat")),
        ("gen_ai.provider.name", json!("anthropic")),
        ("gen_ai.request.model", json!("claude-3-5-sonnet-latest")),
        ("gen_ai.request.max_tokens", json!(1024)),
        ("gen_ai.request.temperature", json!(0.7)),
        ("gen_ai.response.model", json!("claude-3-5-sonnet-20241022")),
        ("gen_ai.usage.input_tokens", json!(1250)),
        ("gen_ai.usage.output_tokens", json!(340)),
        ("gen_ai.usage.cache_read.input_tokens", json!(1000)),
    ] {
        assert_eq!(attr(llm, key), Some(&value), "{key} in {llm}");
    }
    let reasons = attr(llm, "gen_ai.response.finish_reasons").expect("finish reasons");
    assert_eq!(reasons, &json!([{"string": "end_turn"}]), "{llm}");
    assert_eq!(trace.one("llm_call")["kind"], "client");
}

/// chaintrace's own reading of the LLM call: model, provider, tokens, cost.
async fn check_llm_view(server: &Server, id: &str) {
    let (status, analysis) = server
        .get_json(&format!("/api/v1/traces/{id}/analysis"))
        .await;
    assert_eq!(status, 200, "{analysis}");
    let call = analysis["llm"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "llm_call")
        .unwrap_or_else(|| panic!("no llm_call in {analysis}"));
    assert_eq!(call["model"], "claude-3-5-sonnet-20241022");
    assert_eq!(call["provider"], "anthropic");
    assert_eq!(call["input_tokens"], 1250);
    assert_eq!(call["output_tokens"], 340);
    assert_eq!(call["cache_read_tokens"], 1000);
    assert!(call["cost"]["total_usd"].as_f64().unwrap() > 0.0, "{call}");
}

#[tokio::test]
async fn rust_sdk_examples_export_the_chain() {
    let Some(paths) = examples() else { return };
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let endpoint = server.grpc_url();
    let run_blocking = |i: usize, env: &'static [(&'static str, &'static str)]| {
        let (path, endpoint) = (paths[i].clone(), endpoint.clone());
        tokio::task::spawn_blocking(move || run(&path, &endpoint, env))
    };

    // Sequential: siblings one after the other; message content is off by default.
    let id = run_blocking(0, &[]).await.unwrap();
    let trace = fetch(&server, &id).await;
    check_chain(&trace, "rag-chain", 1);
    for (before, after) in [
        ("fetch_context", "embed_query"),
        ("embed_query", "vector_search"),
        ("vector_search", "llm_call"),
        ("prompt_assembly", "api_call"),
    ] {
        assert!(
            end(trace.one(before)) <= start(trace.one(after)),
            "{before} ends before {after} starts"
        );
    }
    let llm = trace.one("llm_call");
    assert_eq!(
        attr(llm, "gen_ai.input.messages"),
        None,
        "captured by default"
    );
    assert!(trace.spans().iter().all(|s| s["status"]["code"] != "error"));
    check_llm_view(&server, &id).await;

    // Concurrent, renamed and with message content on, both by the environment.
    let id = run_blocking(
        1,
        &[
            ("OTEL_SERVICE_NAME", "rag-chain-concurrent"),
            ("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true"),
        ],
    )
    .await
    .unwrap();
    let trace = fetch(&server, &id).await;
    check_chain(&trace, "rag-chain-concurrent", 1);
    let (fetch_cx, embed) = (trace.one("fetch_context"), trace.one("embed_query"));
    assert!(
        start(fetch_cx) < end(embed) && start(embed) < end(fetch_cx),
        "fetch_context and embed_query overlap: {fetch_cx} {embed}"
    );
    let search = start(trace.one("vector_search"));
    assert!(end(fetch_cx) <= search && end(embed) <= search);
    let llm = trace.one("llm_call");
    let messages = |key| -> Value {
        serde_json::from_str(attr(llm, key).and_then(Value::as_str).expect(key)).unwrap()
    };
    assert_eq!(
        messages("gen_ai.input.messages"),
        json!([{"role": "user", "parts": [{"type": "text", "content": "What is retrieval-augmented generation?"}]}])
    );
    assert_eq!(
        messages("gen_ai.system_instructions"),
        json!([{"type": "text", "content": "Answer in one sentence."}])
    );
    let output = messages("gen_ai.output.messages");
    assert_eq!(output[0]["role"], "assistant");
    assert_eq!(output[0]["finish_reason"], "end_turn");
    assert_eq!(output[0]["parts"][0]["type"], "text");
    check_llm_view(&server, &id).await;

    // Failing: api_call is refused once with a RateLimitError, then retried.
    let id = run_blocking(2, &[("RUST_BACKTRACE", "1")]).await.unwrap();
    let trace = fetch(&server, &id).await;
    check_chain(&trace, "rag-chain", 2);
    let attempts = trace.all("api_call");
    let (failed, retried) = (attempts[0], attempts[1]);
    assert_eq!(
        failed["status"],
        json!({"code": "error", "message": "rate limit exceeded: retry after 25 ms"})
    );
    assert_eq!(attr(failed, "error.type"), Some(&json!("RateLimitError")));
    assert_eq!(attr(failed, "retry.attempt"), Some(&json!(1)));
    let exception = events(failed, "exception");
    assert_eq!(exception.len(), 1, "{failed}");
    assert_eq!(
        attr(exception[0], "exception.type"),
        Some(&json!("RateLimitError"))
    );
    assert_eq!(
        attr(exception[0], "exception.message"),
        Some(&json!("rate limit exceeded: retry after 25 ms"))
    );
    let stack = attr(exception[0], "exception.stacktrace")
        .and_then(Value::as_str)
        .expect("a stacktrace with RUST_BACKTRACE=1");
    assert!(stack.starts_with("Stack backtrace:"), "{stack}");
    assert!(
        end(failed) <= start(retried),
        "attempts one after the other"
    );
    assert_eq!(retried["status"]["code"], "unset");
    assert_eq!(attr(retried, "retry.attempt"), Some(&json!(2)));
    for name in ["llm_call", "process_query"] {
        assert_eq!(
            trace.one(name)["status"]["code"],
            "unset",
            "{name} succeeded"
        );
    }
    check_llm_view(&server, &id).await;
    // chaintrace folds the two attempts as one retried operation.
    let (status, gantt) = server.get_json(&format!("/api/v1/traces/{id}/gantt")).await;
    assert_eq!(status, 200, "{gantt}");
    let retries: Vec<&Value> = gantt["groups"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|g| g["kind"] == "retry")
        .collect();
    assert_eq!(retries.len(), 1, "{}", gantt["groups"]);
    assert_eq!(retries[0]["failed"], 1);
    assert_eq!(retries[0]["rows"].as_array().unwrap().len(), 2);
    assert!(retries[0]["lost_nano"].as_u64().unwrap() >= 10_000_000);
}
