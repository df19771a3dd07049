//! The unmodified OpenTelemetry Python SDK (from PyPI, installed by
//! scripts/test) exports the RAG chain over OTLP/gRPC and OTLP/HTTP; the
//! trees, durations, tags and statuses come back through the Jaeger API.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::harness::{parent_name, python, span_named, tag, Server, RAG_CHAIN_TREE};

/// The OTLP exporters' Python.
fn otlp_python() -> String {
    python("CHAINTRACE_TEST_PYTHON")
}

/// The Jaeger Thrift exporter's Python (it pins an older SDK).
fn jaeger_python() -> String {
    python("CHAINTRACE_TEST_PYTHON_JAEGER")
}

fn run_chain(python: &str, protocol: &str, endpoint: &str, fail: bool) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/python/rag_chain.py");
    let mut cmd = Command::new(python);
    cmd.arg(&script).arg(protocol).arg(endpoint);
    if fail {
        cmd.arg("fail");
    }
    let out = cmd.output().expect("run python");
    assert!(
        out.status.success(),
        "python {protocol} exporter failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("script output {stdout:?}: {e}"))
}

async fn check(server: &Server, protocol: &str, result: &Value, fail: bool) {
    let trace_id = result["trace_id"].as_str().unwrap();
    let trace = server.jaeger_trace(trace_id).await;
    let spans = trace["spans"].as_array().unwrap();
    assert_eq!(spans.len(), 7, "{trace}");
    for (name, parent) in RAG_CHAIN_TREE {
        let span = span_named(&trace, name);
        assert_eq!(
            parent_name(&trace, span).as_deref(),
            parent,
            "parent of {name}"
        );
        assert_eq!(
            trace["processes"][span["processID"].as_str().unwrap()]["serviceName"],
            format!("rag-chain-{protocol}")
        );
        if let Some(sleep_ms) = result["sleeps_ms"][name].as_u64() {
            let micros = span["duration"].as_u64().unwrap();
            assert!(
                micros >= sleep_ms * 1000,
                "{name} lasted {micros} µs, slept {sleep_ms} ms"
            );
        }
        assert_eq!(tag(span, "otel.scope.name").unwrap(), "rag_chain_test");
    }
    // Children start no earlier than the root and sequential siblings do not overlap.
    let start = |n: &str| span_named(&trace, n)["startTime"].as_u64().unwrap();
    let end = |n: &str| start(n) + span_named(&trace, n)["duration"].as_u64().unwrap();
    assert!(start("fetch_context") >= start("process_query"));
    assert!(start("embed_query") >= end("fetch_context"));
    assert!(start("llm_call") >= end("vector_search"));
    assert_eq!(
        tag(span_named(&trace, "process_query"), "span.kind").unwrap(),
        "server"
    );
    let api = span_named(&trace, "api_call");
    assert_eq!(tag(api, "span.kind").unwrap(), "client");
    assert_eq!(tag(api, "input_tokens").unwrap(), 1250);
    assert_eq!(
        tag(span_named(&trace, "embed_query"), "embedding_dim").unwrap(),
        1536
    );
    if fail {
        for name in ["api_call", "llm_call", "process_query"] {
            let span = span_named(&trace, name);
            assert_eq!(
                tag(span, "error"),
                Some(&Value::Bool(true)),
                "{name} is an error"
            );
            assert_eq!(tag(span, "otel.status_code").unwrap(), "ERROR");
        }
        assert_eq!(tag(api, "error_type").unwrap(), "RateLimitError");
        let logs = api["logs"].as_array().unwrap();
        let exception = logs
            .iter()
            .find(|l| l["fields"][0]["value"] == "exception")
            .expect("exception event");
        let typ = exception["fields"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["key"] == "exception.type")
            .unwrap();
        assert!(typ["value"].as_str().unwrap().ends_with("RateLimitError"));
        assert!(tag(span_named(&trace, "fetch_context"), "error").is_none());
    } else {
        assert_eq!(tag(api, "output_tokens").unwrap(), 340);
        assert_eq!(tag(api, "stop_reason").unwrap(), "end_turn");
        assert!(spans.iter().all(|s| tag(s, "error").is_none()));
    }
}

#[tokio::test]
async fn python_sdk_grpc_and_http_exporters() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let grpc_url = server.grpc_url();
    let http_url = server.otlp_http.clone();
    for (protocol, endpoint) in [("grpc", grpc_url.as_str()), ("http", http_url.as_str())] {
        for fail in [false, true] {
            let endpoint = endpoint.to_string();
            let protocol_owned = protocol.to_string();
            let result = tokio::task::spawn_blocking(move || {
                run_chain(&otlp_python(), &protocol_owned, &endpoint, fail)
            })
            .await
            .unwrap();
            check(&server, protocol, &result, fail).await;
        }
    }
    let (_, list) = server.get_json("/api/v1/traces").await;
    assert_eq!(list["traces"].as_array().unwrap().len(), 4);
}

/// The Jaeger Thrift exporter the founding document uses, unchanged, to
/// the agent (UDP, Thrift compact) and to the collector (HTTP, Thrift
/// binary): the same chain, tree, tags, statuses and exception log.
#[tokio::test]
async fn python_jaeger_thrift_exporter_to_agent_and_collector() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let agent = server
        .jaeger_compact
        .expect("Jaeger agent address")
        .to_string();
    let collector = server
        .jaeger_http
        .clone()
        .expect("Jaeger collector address");
    for (protocol, endpoint) in [("jaeger-agent", agent), ("jaeger-collector", collector)] {
        for fail in [false, true] {
            let endpoint = endpoint.clone();
            let result = tokio::task::spawn_blocking(move || {
                run_chain(&jaeger_python(), protocol, &endpoint, fail)
            })
            .await
            .unwrap();
            // UDP has no answer: the exporter is done before the spans are
            // stored. Wait (bounded) until all seven are there.
            let trace_id = result["trace_id"].as_str().unwrap().to_string();
            let mut stored = 0;
            for _ in 0..300 {
                let (_, body) = server.get_json(&format!("/api/traces/{trace_id}")).await;
                stored = body["data"][0]["spans"].as_array().map_or(0, Vec::len);
                if stored == 7 {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            assert_eq!(stored, 7, "{protocol}: spans of {trace_id} stored");
            check(&server, protocol, &result, fail).await;
        }
    }
}
