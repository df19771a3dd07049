//! OTLP logs end to end: the Python SDK's captured log export and its span
//! (testdata), the real `LoggingHandler` over gRPC and HTTP, and what a user
//! then sees: `/api/v1/logs`, the trace API, Jaeger's span logs, the CLI;
//! and acknowledged records surviving `kill -9`.

use std::path::Path;
use std::process::Command;

use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use prost::Message;
use serde_json::Value;

use crate::harness::{chaintrace, span_named, tag, testdata, Server};

/// POSTs an OTLP body to the server's `/v1/logs` or `/v1/traces`.
async fn post(server: &Server, path: &str, body: Vec<u8>) -> (u16, String) {
    let base = server.otlp_http.trim_end_matches("/v1/traces");
    let resp = reqwest::Client::new()
        .post(format!("{base}{path}"))
        .header("content-type", "application/x-protobuf")
        .body(body)
        .send()
        .await
        .expect("POST");
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap_or_default())
}

/// Sends the captured Python export (one `llm_call` span, two records
/// written in it) and returns the trace id.
async fn send_fixture(server: &Server) -> String {
    let (status, body) = post(server, "/v1/traces", testdata("otlp-logs-traces-python.pb")).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = post(server, "/v1/logs", testdata("otlp-logs-python.pb")).await;
    assert_eq!(status, 200, "{body}");
    let (status, logs) = server.get_json("/api/v1/logs?limit=10").await;
    assert_eq!(status, 200, "{logs}");
    logs["logs"][0]["trace_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no record came back: {logs}"))
        .to_string()
}

fn messages(answer: &Value) -> Vec<String> {
    answer["logs"]
        .as_array()
        .unwrap_or_else(|| panic!("no logs in {answer}"))
        .iter()
        .map(|l| l["message"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[tokio::test]
async fn python_log_records_show_under_their_span_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let trace_id = send_fixture(&server).await;

    // The log search: newest first, every filter.
    let q = |query: String| {
        let server = &server;
        async move { server.get_json(&format!("/api/v1/logs?{query}")).await }
    };
    let (status, all) = q(format!("trace_id={trace_id}")).await;
    assert_eq!(status, 200, "{all}");
    assert_eq!(
        messages(&all),
        ["retrying after RateLimitError", "API request sent"],
        "{all}"
    );
    assert_eq!(all["matched"], 2);
    assert_eq!(all["truncated"], false);
    let warn = &all["logs"][0];
    assert_eq!(warn["severity"], "WARN");
    assert_eq!(warn["severity_text"], "WARN");
    let resource = &all["resources"][warn["resource"].as_u64().unwrap() as usize];
    assert!(resource.to_string().contains("rag-chain"), "{resource}");
    let span_id = warn["span_id"].as_str().unwrap().to_string();
    assert!(
        warn["attributes"].to_string().contains("retry_attempt"),
        "{warn}"
    );

    let (_, found) = q(format!("trace_id={trace_id}&severity=warning")).await;
    assert_eq!(messages(&found), ["retrying after RateLimitError"]);
    let (_, found) = q("q=ratelimiterror".to_string()).await;
    assert_eq!(messages(&found), ["retrying after RateLimitError"]);
    let (_, found) = q(format!("span_id={span_id}&service=rag-chain&since=3650d")).await;
    assert_eq!(messages(&found).len(), 2, "{found}");
    let (_, found) = q("service=someone-else".to_string()).await;
    assert_eq!(messages(&found).len(), 0, "{found}");
    let (_, found) = q(format!("trace_id={trace_id}&limit=1")).await;
    assert_eq!(messages(&found).len(), 1);
    assert_eq!(found["matched"], 2);

    // Bad parameters: 400 naming what was wrong.
    for (query, says) in [
        ("severity=loud", "severity"),
        ("trace_id=nothex", "trace id"),
        ("span_id=123", "span_id"),
        ("limit=0", "limit"),
        ("limit=20000", "limit"),
        ("since=yesterday", "since"),
    ] {
        let (status, body) = q(query.to_string()).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert!(
            body["error"].as_str().unwrap_or_default().contains(says),
            "{query}: {body}"
        );
    }

    // The trace API carries the records beside the spans.
    let (status, trace) = server.get_json(&format!("/api/v1/traces/{trace_id}")).await;
    assert_eq!(status, 200, "{trace}");
    assert_eq!(trace["spans"].as_array().unwrap().len(), 1);
    assert_eq!(trace["spans"][0]["name"], "llm_call");
    assert_eq!(
        messages(&trace),
        ["API request sent", "retrying after RateLimitError"],
        "oldest first in a trace: {trace}"
    );
    assert_eq!(trace["logs"][0]["span_id"], trace["spans"][0]["span_id"]);
    assert_eq!(trace["logs_truncated"], false);
    assert!(trace["log_resources"][0].to_string().contains("rag-chain"));
    // And one span's answer carries that span's records.
    let (status, one) = server
        .get_json(&format!("/api/v1/traces/{trace_id}/spans/{span_id}"))
        .await;
    assert_eq!(status, 200, "{one}");
    assert_eq!(messages(&one["trace"]).len(), 2, "{one}");

    // Jaeger's span logs, marked as log records.
    let jaeger = server.jaeger_trace(&trace_id).await;
    let llm = span_named(&jaeger, "llm_call");
    let logs = llm["logs"].as_array().unwrap();
    assert_eq!(logs.len(), 2, "{llm}");
    let field = |log: &Value, key: &str| {
        log["fields"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["key"] == key)
            .map(|f| f["value"].clone())
    };
    let retry = &logs[1];
    assert_eq!(
        field(retry, "message"),
        Some("retrying after RateLimitError".into())
    );
    assert_eq!(field(retry, "level"), Some("WARN".into()));
    assert_eq!(field(retry, "otel.log_record"), Some(true.into()));
    assert_eq!(field(retry, "retry_attempt"), Some(1.into()));
    assert!(logs[0]["timestamp"].as_u64() <= logs[1]["timestamp"].as_u64());
    assert!(
        tag(llm, "error").is_none(),
        "a WARN record is not a span error"
    );

    // The CLI: under the span in the chart, and as a table.
    let (ok, out, err) = chaintrace(&["trace", &trace_id, "--server", &server.api]);
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    let row = lines
        .iter()
        .position(|l| l.starts_with("llm_call"))
        .expect(&out);
    assert!(lines[row + 1].contains("API request sent"), "{out}");
    assert!(lines[row + 2].contains("WARN"), "{out}");
    assert!(
        lines[row + 2].contains("retrying after RateLimitError"),
        "{out}"
    );
    let (ok, out, err) = chaintrace(&[
        "logs",
        "--trace-id",
        &trace_id,
        "--severity",
        "warn",
        "--server",
        &server.api,
    ]);
    assert!(ok, "{err}");
    assert_eq!(out.lines().count(), 2, "a header and one record: {out}");
    assert!(
        out.contains("retrying after RateLimitError") && out.contains(&span_id),
        "{out}"
    );
    let (ok, _, err) = chaintrace(&["logs", "--severity", "loud", "--server", &server.api]);
    assert!(!ok);
    assert!(err.contains("unknown severity"), "{err}");

    // The same export again over gRPC's LogsService: logs are not
    // deduplicated (a record has no id), so the trace now holds four.
    let request = ExportLogsServiceRequest::decode(testdata("otlp-logs-python.pb").as_slice())
        .expect("the fixture is an ExportLogsServiceRequest");
    let mut client = LogsServiceClient::connect(server.grpc_url()).await.unwrap();
    let response = client.export(request).await.expect("gRPC export");
    assert!(response
        .into_inner()
        .partial_success
        .is_none_or(|p| p.rejected_log_records == 0));
    let (_, all) = q(format!("trace_id={trace_id}")).await;
    assert_eq!(all["matched"], 4, "{all}");
}

#[tokio::test]
async fn acknowledged_log_records_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let trace_id = send_fixture(&server).await;
    let data_dir = server.data_dir.clone();
    server.kill9();

    let server = Server::start(&data_dir, &[]);
    let (status, all) = server
        .get_json(&format!("/api/v1/logs?trace_id={trace_id}"))
        .await;
    assert_eq!(status, 200, "{all}");
    assert_eq!(
        messages(&all),
        ["retrying after RateLimitError", "API request sent"],
        "after kill -9 and restart: {all}"
    );
    let (_, stats) = server.get_json("/api/v1/stats").await;
    assert_eq!(stats["log_records"], 2, "{stats}");
}

/// Runs `python/logging_chain.py` with the OTLP exporters' Python.
fn run_logging_chain(protocol: &str, endpoint: &str) -> Value {
    let python = std::env::var("CHAINTRACE_TEST_PYTHON").unwrap_or_else(|_| {
        panic!(
            "CHAINTRACE_TEST_PYTHON is not set: run the suite with ./scripts/test, \
             which installs the OpenTelemetry Python SDK into a virtualenv"
        )
    });
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/python/logging_chain.py");
    let out = Command::new(python)
        .arg(&script)
        .arg(protocol)
        .arg(endpoint)
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "python {protocol} logging chain failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("script output {stdout:?}: {e}"))
}

#[tokio::test]
async fn the_python_logging_handler_over_grpc_and_http() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let http_base = server.otlp_http.trim_end_matches("/v1/traces").to_string();
    for (protocol, endpoint) in [("grpc", server.grpc_url()), ("http", http_base)] {
        let run = run_logging_chain(protocol, &endpoint);
        let trace_id = run["trace_id"].as_str().unwrap();
        let api_call = run["spans"]["api_call"].as_str().unwrap();
        let root = run["spans"]["process_query"].as_str().unwrap();

        let (status, trace) = server.get_json(&format!("/api/v1/traces/{trace_id}")).await;
        assert_eq!(status, 200, "{protocol}: {trace}");
        let logs = trace["logs"].as_array().unwrap();
        let by_message = |text: &str| {
            logs.iter()
                .find(|l| l["message"].as_str().unwrap_or_default().contains(text))
                .unwrap_or_else(|| panic!("{protocol}: no record {text:?} in {trace}"))
        };
        assert_eq!(
            logs.len(),
            4,
            "{protocol}: the chain logs four times in spans: {trace}"
        );
        let received = by_message("query received");
        assert_eq!(received["span_id"], root, "{protocol}");
        assert_eq!(received["severity"], "INFO");
        assert!(received["attributes"].to_string().contains("user_42"));
        assert_eq!(by_message("calling the model")["severity"], "DEBUG");
        let failed = by_message("model call failed");
        assert_eq!(failed["span_id"], api_call, "{protocol}");
        assert_eq!(failed["severity"], "ERROR");
        assert!(
            failed["attributes"].to_string().contains("RateLimitError"),
            "the exception's type rides along: {failed}"
        );
        let retry = by_message("retrying after RateLimitError");
        assert_eq!(retry["span_id"], api_call, "{protocol}");
        assert_eq!(retry["severity"], "WARN");

        // The record written outside any span: found by service, severity and text.
        let service = format!("logging-chain-{protocol}");
        let (_, found) = server
            .get_json(&format!(
                "/api/v1/logs?service={service}&severity=error&q=DISK%20FULL"
            ))
            .await;
        assert_eq!(
            messages(&found),
            ["cache warm-up failed: disk full"],
            "{protocol}: {found}"
        );
        assert_eq!(found["logs"][0]["span_id"], Value::Null);
    }
}
