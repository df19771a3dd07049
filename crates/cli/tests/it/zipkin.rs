//! OpenTelemetry's Python Zipkin exporters (JSON and protobuf), unchanged,
//! send a RAG chain to `chaintrace serve --zipkin`; the stored trace keeps
//! the tree, kinds, times, resource, scope, attributes, statuses and the
//! exception event.
//!
//! Runs `tests/it/python/zipkin_chain.py` with the interpreter named by
//! `CHAINTRACE_TEST_PYTHON_ZIPKIN` (a virtualenv of
//! `scripts/test-requirements-zipkin.txt`, which `scripts/test` makes).

use std::collections::HashMap;
use std::process::Command;
use std::sync::Arc;

use chaintrace_model::{AnyValue, Span, SpanKind, StatusCode, Trace};

use crate::harness::Server;

const PYTHON_VAR: &str = "CHAINTRACE_TEST_PYTHON_ZIPKIN";

fn python() -> String {
    std::env::var(PYTHON_VAR).unwrap_or_else(|_| {
        panic!(
            "{PYTHON_VAR} is not set: run the suite with ./scripts/test, which makes a \
             virtualenv of scripts/test-requirements-zipkin.txt"
        )
    })
}

/// Runs the chain once with `protocol` (`json` or `proto`) against the
/// server's Zipkin endpoint and returns the stored spans by name.
async fn run_chain(server: &Server, protocol: &str, fail: bool) -> HashMap<String, Span> {
    let url = server
        .zipkin
        .clone()
        .expect("serve prints its Zipkin address");
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/it/python/zipkin_chain.py"
    );
    let mut command = Command::new(python());
    command.arg(script).arg(protocol).arg(&url);
    if fail {
        command.arg("fail");
    }
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .expect("run the Zipkin exporter script");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "zipkin_chain.py {protocol} failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    // The exporter logs a refused export and still exits 0.
    assert!(
        !stderr.contains("Traceback") && !stderr.contains("Failed to export"),
        "{stderr}"
    );
    let printed: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    let trace_id = printed["trace_id"].as_str().unwrap().to_string();
    let (status, body) = server.get_json(&format!("/api/v1/traces/{trace_id}")).await;
    assert_eq!(status, 200, "{body}");
    let trace: Trace = serde_json::from_value(body).unwrap();
    trace
        .spans
        .into_iter()
        .map(|s| (s.name.to_string(), s))
        .collect()
}

fn text<'a>(span: &'a Span, key: &str) -> Option<&'a str> {
    span.attr(key).and_then(AnyValue::as_str)
}

/// What both exporters must bring across.
fn check_chain(protocol: &str, spans: &HashMap<String, Span>, fail: bool) {
    let mut names: Vec<&str> = spans.keys().map(String::as_str).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "api_call",
            "embed_query",
            "fetch_context",
            "llm_call",
            "process_query",
            "prompt_assembly",
            "vector_search"
        ]
    );

    // The tree.
    let root = &spans["process_query"];
    assert_eq!(root.parent_span_id, None);
    let parent = |name: &str| spans[name].parent_span_id;
    for child in ["fetch_context", "embed_query", "vector_search", "llm_call"] {
        assert_eq!(parent(child), Some(root.span_id), "{child}");
    }
    for child in ["prompt_assembly", "api_call"] {
        assert_eq!(parent(child), Some(spans["llm_call"].span_id), "{child}");
    }

    // Kinds: INTERNAL travels as no kind and comes back INTERNAL.
    assert_eq!(root.kind, SpanKind::Server);
    assert_eq!(spans["api_call"].kind, SpanKind::Client);
    assert_eq!(spans["llm_call"].kind, SpanKind::Internal);

    // Times: µs on the wire, ns here; api_call slept 5 ms.
    let api = &spans["api_call"];
    assert!(api.end.0 - api.start.0 >= 5_000_000);
    assert_eq!(api.start.0 % 1_000, 0);
    assert!(root.start <= api.start && api.end <= root.end);

    // One resource from the local endpoint, shared by every span.
    let service = format!("rag-chain-zipkin-{protocol}");
    assert_eq!(root.resource.service_name(), service);
    assert_eq!(
        root.resource.attributes,
        vec![
            chaintrace_model::KeyValue::new("service.name", service.as_str()),
            chaintrace_model::KeyValue::new("network.local.address", "10.0.0.7"),
            chaintrace_model::KeyValue::new("network.local.port", 8080i64),
        ]
    );
    assert!(spans
        .values()
        .all(|s| Arc::ptr_eq(&s.resource, &root.resource)));

    // The scope, from the otel.library.* tags, which are gone.
    for span in spans.values() {
        assert_eq!(span.scope.name, "rag_chain_test");
        assert_eq!(span.scope.version, "0.1.0");
        assert!(span.attr("otel.library.name").is_none());
    }

    // Attributes: Zipkin tags are strings, ints included; arrays are
    // their JSON text. The exporter copies resource attributes into tags.
    let fetch = &spans["fetch_context"];
    assert_eq!(text(fetch, "user_id"), Some("user_42"));
    assert_eq!(text(fetch, "context_size_bytes"), Some("4096"));
    assert_eq!(
        fetch.attr("context_size_bytes").and_then(AnyValue::as_i64),
        Some(4096)
    );
    assert_eq!(text(fetch, "service.name"), Some(service.as_str()));
    assert_eq!(
        text(&spans["vector_search"], "tools"),
        Some(r#"["search","calc"]"#)
    );
    assert_eq!(text(api, "input_tokens"), Some("1250"));

    let sent = api
        .events
        .iter()
        .find(|e| e.name == "API request sent")
        .unwrap_or_else(|| panic!("no API request sent event: {:?}", api.events));
    assert!(sent.attributes.is_empty());
    assert!(api.start <= sent.time && sent.time <= api.end);

    if !fail {
        assert_eq!(text(api, "output_tokens"), Some("340"));
        for span in spans.values() {
            assert_eq!(span.status.code, StatusCode::Unset, "{}", span.name);
        }
        assert_eq!(api.events.len(), 1);
        return;
    }
    assert!(api.attr("output_tokens").is_none());
    // The SDK's status on the exception, then the root's own.
    assert_eq!(api.status.code, StatusCode::Error);
    assert_eq!(api.status.message, "RateLimitError: Rate limit exceeded");
    assert_eq!(root.status.code, StatusCode::Error);
    assert_eq!(root.status.message, "RateLimitError");
    assert_eq!(spans["llm_call"].status.code, StatusCode::Error);
    assert_eq!(spans["fetch_context"].status.code, StatusCode::Unset);
    assert!(api.attr("error").is_none() && api.attr("otel.status_code").is_none());

    let exception = api
        .events
        .iter()
        .find(|e| e.name == "exception")
        .unwrap_or_else(|| panic!("no exception event: {:?}", api.events));
    let attr = |key: &str| {
        exception
            .attributes
            .iter()
            .find(|kv| kv.key == key)
            .map(|kv| kv.value.clone())
    };
    // The SDK qualifies the class with its module.
    assert_eq!(
        attr("exception.type"),
        Some("__main__.RateLimitError".into())
    );
    assert_eq!(
        attr("exception.message"),
        Some("Rate limit exceeded".into())
    );
    let stack = attr("exception.stacktrace").unwrap();
    assert!(
        stack.as_str().is_some_and(|s| s.starts_with("Traceback")),
        "{stack:?}"
    );
}

#[tokio::test]
async fn the_python_zipkin_exporters_json_and_protobuf_round_trip_a_chain() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    for protocol in ["json", "proto"] {
        for fail in [false, true] {
            let spans = run_chain(&server, protocol, fail).await;
            check_chain(protocol, &spans, fail);
        }
    }
}
