//! The captured Python payloads in the repository's testdata/, posted over OTLP/HTTP,
//! come back through the Jaeger API as the exact trees the SDK recorded.

use serde_json::Value;

use crate::harness::{parent_name, span_named, tag, testdata, Server, RAG_CHAIN_TREE};

/// Trace ids in the order they appear in the payload.
fn trace_ids_of_json_fixture() -> Vec<String> {
    let doc: Value =
        serde_json::from_slice(&testdata("otlp-traces-python-rag-chain.json")).unwrap();
    let mut ids: Vec<String> = Vec::new();
    for rs in doc["resourceSpans"].as_array().unwrap() {
        for ss in rs["scopeSpans"].as_array().unwrap() {
            for s in ss["spans"].as_array().unwrap() {
                let id = s["traceId"].as_str().unwrap().to_string();
                if !ids.contains(&id) {
                    ids.push(id);
                }
            }
        }
    }
    ids
}

async fn check_rag_trees(server: &Server, trace_ids: &[String]) {
    assert_eq!(trace_ids.len(), 2);
    let mut failed = 0;
    for id in trace_ids {
        let trace = server.jaeger_trace(id).await;
        let spans = trace["spans"].as_array().unwrap();
        assert_eq!(spans.len(), 7, "trace {id}");
        for (name, parent) in RAG_CHAIN_TREE {
            let span = span_named(&trace, name);
            assert_eq!(
                parent_name(&trace, span).as_deref(),
                parent,
                "parent of {name}"
            );
            let process = &trace["processes"][span["processID"].as_str().unwrap()];
            assert_eq!(process["serviceName"], "rag-chain");
        }
        assert_eq!(
            tag(span_named(&trace, "embed_query"), "model").unwrap(),
            "text-embedding-3-small"
        );
        assert_eq!(
            tag(span_named(&trace, "fetch_context"), "user_id").unwrap(),
            42
        );
        let api = span_named(&trace, "api_call");
        let sent = api["logs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["fields"][0]["value"] == "API request sent");
        assert!(sent, "api_call keeps its 'API request sent' event");
        if tag(api, "error") == Some(&Value::Bool(true)) {
            failed += 1;
            assert_eq!(tag(api, "otel.status_code").unwrap(), "ERROR");
            assert_eq!(tag(api, "error_type").unwrap(), "RateLimitError");
            let exception = api["logs"]
                .as_array()
                .unwrap()
                .iter()
                .find(|l| l["fields"][0]["value"] == "exception")
                .expect("exception event as a log");
            let field = |k: &str| {
                exception["fields"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|f| f["key"] == k)
                    .map(|f| f["value"].clone())
            };
            assert!(field("exception.type")
                .unwrap()
                .as_str()
                .unwrap()
                .ends_with("RateLimitError"));
            assert!(field("exception.stacktrace")
                .unwrap()
                .as_str()
                .unwrap()
                .contains("Traceback"));
            for ancestor in ["llm_call", "process_query"] {
                assert_eq!(
                    tag(span_named(&trace, ancestor), "error"),
                    Some(&Value::Bool(true)),
                    "{ancestor}"
                );
            }
        } else {
            assert_eq!(tag(api, "input_tokens").unwrap(), 19);
            assert_eq!(tag(api, "output_tokens").unwrap(), 128);
            assert_eq!(tag(api, "stop_reason").unwrap(), "end_turn");
        }
    }
    assert_eq!(failed, 1, "exactly one of the two runs failed");
}

#[tokio::test]
async fn json_fixture_round_trips_through_the_jaeger_api() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let (status, body) = server
        .post_traces(
            "application/json",
            testdata("otlp-traces-python-rag-chain.json"),
            false,
        )
        .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let answer: Value = serde_json::from_slice(&body).expect("a JSON ExportTraceServiceResponse");
    assert!(
        answer
            .get("partialSuccess")
            .is_none_or(|p| p.get("rejectedSpans").is_none_or(|r| r == 0 || r == "0")),
        "{answer}"
    );
    check_rag_trees(&server, &trace_ids_of_json_fixture()).await;
}

#[tokio::test]
async fn protobuf_fixture_round_trips_through_the_jaeger_api() {
    use prost::Message;
    let bytes = testdata("otlp-traces-python-rag-chain.pb");
    let request =
        opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest::decode(
            bytes.as_slice(),
        )
        .unwrap();
    let mut ids: Vec<String> = Vec::new();
    for rs in &request.resource_spans {
        for ss in &rs.scope_spans {
            for s in &ss.spans {
                let id: String = s.trace_id.iter().map(|b| format!("{b:02x}")).collect();
                if !ids.contains(&id) {
                    ids.push(id);
                }
            }
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    // gzip, as the Python exporter sends it with compression=gzip.
    let (status, _) = server
        .post_traces("application/x-protobuf", gzip(&bytes), true)
        .await;
    assert_eq!(status, 200);
    check_rag_trees(&server, &ids).await;

    // The native list shows both traces with their root, service and error counts.
    let (status, list) = server.get_json("/api/v1/traces?limit=10").await;
    assert_eq!(status, 200);
    let traces = list["traces"].as_array().unwrap();
    assert_eq!(traces.len(), 2);
    for t in traces {
        assert_eq!(t["root_name"], "process_query");
        assert_eq!(t["root_service"], "rag-chain");
        assert_eq!(t["span_count"], 7);
    }
    let errors: Vec<u64> = traces
        .iter()
        .map(|t| t["error_count"].as_u64().unwrap())
        .collect();
    assert!(
        errors.contains(&0) && errors.iter().any(|&e| e >= 3),
        "{errors:?}"
    );
    assert!(
        traces[0]["start_unix_nano"].as_u64() >= traces[1]["start_unix_nano"].as_u64(),
        "newest first"
    );
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}
