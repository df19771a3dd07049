//! Asking questions end to end: TraceQL search for the founding question in
//! both ways clients record errors, trace analysis (critical path, what-if),
//! analytics, and the CLI commands over them; `chaintrace gen` against the
//! real server.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    span, status, ResourceSpans, ScopeSpans, Span, Status,
};
use prost::Message;
use serde_json::Value;

use crate::harness::{chaintrace, testdata, Server};

fn kv(key: &str, v: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(v) }),
        ..Default::default()
    }
}

fn text(key: &str, v: &str) -> KeyValue {
    kv(key, any_value::Value::StringValue(v.into()))
}

/// The founding document's chain, laid out in ms from `t0` (ns): root
/// process_query 1200 ms; fetch_context 50, embed_query 100, vector_search
/// 50, llm_call 950 (prompt_assembly 10, api_call 920), back to back.
/// `otel_error` makes api_call fail the OpenTelemetry way (error.type and a
/// qualified exception type, status ERROR up the chain).
fn founding_chain(trace: u8, t0: u64, otel_error: bool) -> ExportTraceServiceRequest {
    let ms = 1_000_000u64;
    let sid = |n: u8| vec![trace, n, 0, 0, 0, 0, 0, 1];
    let mk = |n: u8, parent: Option<u8>, name: &str, start: u64, end: u64| Span {
        trace_id: vec![trace; 16],
        span_id: sid(n),
        parent_span_id: parent.map(sid).unwrap_or_default(),
        name: name.into(),
        kind: 1,
        start_time_unix_nano: t0 + start * ms,
        end_time_unix_nano: t0 + end * ms,
        ..Default::default()
    };
    let mut spans = vec![
        mk(1, None, "process_query", 0, 1200),
        mk(2, Some(1), "fetch_context", 0, 50),
        mk(3, Some(1), "embed_query", 50, 150),
        mk(4, Some(1), "vector_search", 150, 200),
        mk(5, Some(1), "llm_call", 200, 1150),
        mk(6, Some(5), "prompt_assembly", 200, 210),
        mk(7, Some(5), "api_call", 210, 1130),
    ];
    spans[4]
        .attributes
        .push(text("gen_ai.request.model", "claude-3-opus-20250219"));
    spans[6].attributes.extend([
        kv(
            "gen_ai.usage.input_tokens",
            any_value::Value::IntValue(1200),
        ),
        kv(
            "gen_ai.usage.output_tokens",
            any_value::Value::IntValue(350),
        ),
    ]);
    if otel_error {
        let err = Status {
            code: status::StatusCode::Error as i32,
            message: "rate limited".into(),
        };
        for i in [0, 4, 6] {
            spans[i].status = Some(err.clone());
        }
        spans[6]
            .attributes
            .push(text("error.type", "anthropic.RateLimitError"));
        spans[6].events.push(span::Event {
            time_unix_nano: t0 + 1130 * ms,
            name: "exception".into(),
            attributes: vec![
                text("exception.type", "__main__.RateLimitError"),
                text("exception.message", "Rate limit exceeded"),
            ],
            dropped_attributes_count: 0,
        });
    }
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![text("service.name", "rag")],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            schema_url: String::new(),
        }],
    }
}

fn hex(b: u8) -> String {
    format!("{b:02x}").repeat(16)
}

fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

async fn send(server: &Server, req: ExportTraceServiceRequest) {
    let (status, _) = server
        .post_traces("application/x-protobuf", req.encode_to_vec(), false)
        .await;
    assert_eq!(status, 200);
}

fn url_encode(q: &str) -> String {
    q.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

const FOUNDING_QUERY: &str = r#"{ name = "llm_call" && status = error } >> { span.error_type = "RateLimitError" || span.error.type = "RateLimitError" || span.exception.type = "RateLimitError" }"#;

#[tokio::test]
async fn the_founding_question_finds_exactly_the_failing_traces() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--retention", "0"]);
    // The captured Python run (error_type attribute) and two generated chains
    // recorded the OpenTelemetry way, one failing and one healthy.
    let (status, _) = server
        .post_traces(
            "application/json",
            testdata("otlp-traces-python-rag-chain.json"),
            false,
        )
        .await;
    assert_eq!(status, 200);
    let t0 = now_ns() - 600_000_000_000;
    send(&server, founding_chain(0xa1, t0, true)).await;
    send(&server, founding_chain(0xa2, t0 + 2_000_000_000, false)).await;

    let (_, all) = server.get_json("/api/v1/traces?limit=100").await;
    let fixture_failing: Vec<String> = all["traces"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["root_service"] == "rag-chain" && t["error_count"].as_u64() > Some(0))
        .map(|t| t["trace_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(fixture_failing.len(), 1);

    let path = format!(
        "/api/v1/search?q={}&start=0&limit=50",
        url_encode(FOUNDING_QUERY)
    );
    let (status, answer) = server.get_json(&path).await;
    assert_eq!(status, 200, "{answer}");
    let mut found: Vec<String> = answer["traces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["trace_id"].as_str().unwrap().to_string())
        .collect();
    found.sort();
    let mut want = vec![fixture_failing[0].clone(), hex(0xa1)];
    want.sort();
    assert_eq!(found, want, "exactly the two failing traces: {answer}");
    for t in answer["traces"].as_array().unwrap() {
        let matched: Vec<&str> = t["matched"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["name"].as_str().unwrap())
            .collect();
        assert_eq!(matched, ["api_call"], "{t}");
    }
    let otel = answer["traces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["trace_id"] == hex(0xa1).as_str())
        .unwrap();
    assert_eq!(otel["llm_tokens"], 1550);
    assert_eq!(otel["root_name"], "process_query");

    // A plain filter over duration and the select pipeline.
    let q = r#"{ duration > 900ms && name = "api_call" } | select(span.gen_ai.usage.input_tokens)"#;
    let (status, answer) = server
        .get_json(&format!("/api/v1/search?q={}&start=0", url_encode(q)))
        .await;
    assert_eq!(status, 200);
    let hits = answer["traces"].as_array().unwrap();
    assert_eq!(
        hits.len(),
        2,
        "the two generated chains have a 920 ms api_call: {answer}"
    );
    assert_eq!(
        hits[0]["matched"][0]["attributes"]["span.gen_ai.usage.input_tokens"],
        1200
    );

    // Errors name the position.
    let (status, answer) = server
        .get_json(&format!("/api/v1/search?q={}", url_encode(r#"{ name = }"#)))
        .await;
    assert_eq!(status, 400);
    assert!(
        answer["error"].as_str().unwrap().contains("at 9"),
        "{answer}"
    );

    // The CLI finds the same.
    let (ok, out, err) = tokio::task::spawn_blocking({
        let api = server.api.clone();
        move || {
            chaintrace(&[
                "search",
                FOUNDING_QUERY,
                "--since",
                "3650d",
                "--server",
                &api,
            ])
        }
    })
    .await
    .unwrap();
    assert!(ok, "{err}");
    assert!(
        out.contains(&hex(0xa1)) && out.contains(&fixture_failing[0]),
        "{out}"
    );
    assert!(out.contains("2 traces matched"), "{out}");
}

#[tokio::test]
async fn analysis_reproduces_the_founding_example() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--retention", "0"]);
    send(
        &server,
        founding_chain(0xb1, now_ns() - 60_000_000_000, false),
    )
    .await;
    let id = hex(0xb1);

    let (status, a) = server
        .get_json(&format!(
            "/api/v1/traces/{id}/analysis?parallel=fetch_context,embed_query"
        ))
        .await;
    assert_eq!(status, 200, "{a}");
    let path: Vec<&str> = a["critical_path"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(path, ["process_query", "llm_call", "api_call"]);
    assert_eq!(a["duration_nano"], 1_200_000_000u64);
    assert_eq!(a["fully_parallel_bound_nano"], 950_000_000u64);
    assert_eq!(a["what_if"]["saved_nano"], 50_000_000u64);
    assert_eq!(a["what_if"]["duration_nano"], 1_150_000_000u64);
    let api_call = a["llm"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["name"] == "api_call")
        .unwrap();
    assert_eq!(api_call["input_tokens"], 1200);
    assert!(
        api_call["cost"]["total_usd"].as_f64().unwrap() > 0.0,
        "{api_call}"
    );

    let (status, e) = server
        .get_json(&format!(
            "/api/v1/traces/{id}/analysis?parallel=fetch_context,nope"
        ))
        .await;
    assert_eq!(status, 400);
    assert!(e["error"].as_str().unwrap().contains("nope"), "{e}");

    let (ok, out, err) = tokio::task::spawn_blocking({
        let api = server.api.clone();
        move || {
            chaintrace(&[
                "analyze",
                &id,
                "--parallel",
                "fetch_context,embed_query",
                "--server",
                &api,
            ])
        }
    })
    .await
    .unwrap();
    assert!(ok, "{err}");
    assert!(
        out.contains("critical path: process_query → llm_call → api_call"),
        "{out}"
    );
    assert!(out.contains("if all siblings overlapped: 950 ms"), "{out}");
    assert!(out.contains("saves 50.0 ms"), "{out}");
    let api_row = out
        .lines()
        .find(|l| l.contains("api_call") && l.contains('|'))
        .unwrap();
    assert!(
        api_row.starts_with("◆"),
        "api_call is marked on the critical path: {out}"
    );
    let fetch_row = out
        .lines()
        .find(|l| l.contains("fetch_context") && l.contains('|'))
        .unwrap();
    assert!(fetch_row.contains("self"), "{out}");
}

#[tokio::test]
async fn analytics_and_gen_against_the_real_server() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let (ok, out, err) = tokio::task::spawn_blocking({
        let url = server.otlp_http.clone();
        move || {
            chaintrace(&[
                "gen",
                "--otlp-http",
                &url,
                "--traces",
                "60",
                "--concurrency",
                "2",
                "--batch-spans",
                "100",
                "--error-rate",
                "0.5",
                "--seed",
                "7",
                "--time-spread",
                "10m",
            ])
        }
    })
    .await
    .unwrap();
    assert!(ok, "{err}");
    let result: Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_eq!(result["sent_spans"], 420, "{result}");
    assert_eq!(result["acked_spans"], 420, "{result}");
    assert_eq!(result["rejected_spans"], 0);

    let (status, ops) = server
        .get_json("/api/v1/analytics/operations?since=1h")
        .await;
    assert_eq!(status, 200, "{ops}");
    assert_eq!(ops["traces"], 60);
    let api_call: Vec<&Value> = ops["operations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["name"] == "api_call")
        .collect();
    assert!(!api_call.is_empty());
    let calls: u64 = api_call.iter().map(|o| o["count"].as_u64().unwrap()).sum();
    let errors: u64 = api_call
        .iter()
        .map(|o| o["error_count"].as_u64().unwrap())
        .sum();
    assert!(
        calls >= 60 && errors > 0 && errors < calls,
        "{calls} calls, {errors} errors"
    );

    // The founding question finds every generated failure, and only those.
    let (status, answer) = server
        .get_json(&format!(
            "/api/v1/search?q={}&since=1h&limit=1000",
            url_encode(FOUNDING_QUERY)
        ))
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer["traces"].as_array().unwrap().len() as u64,
        errors,
        "one hit per failed api_call: {answer}"
    );
    let (status, answer) = server
        .get_json(&format!(
            "/api/v1/search?q={}&since=1h&limit=1000",
            url_encode(r#"{ resource.service.name = "rag-chain" }"#)
        ))
        .await;
    assert_eq!(status, 200, "{answer}");
    let by_service = answer["traces"].as_array().unwrap();
    assert!(
        !by_service.is_empty() && by_service.iter().all(|t| t["root_service"] == "rag-chain"),
        "{answer}"
    );

    let (status, groups) = server.get_json("/api/v1/analytics/errors?since=1h").await;
    assert_eq!(status, 200);
    let rate_limited: u64 = groups["errors"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|g| {
            g["error_type"]
                .as_str()
                .unwrap_or("")
                .ends_with("RateLimitError")
                && g["operation"] == "api_call"
        })
        .map(|g| g["count"].as_u64().unwrap())
        .sum();
    assert_eq!(
        rate_limited, errors,
        "every failed api_call lands in a RateLimitError group"
    );

    let (ok, out, err) = tokio::task::spawn_blocking({
        let api = server.api.clone();
        move || chaintrace(&["errors", "--since", "1h", "--server", &api])
    })
    .await
    .unwrap();
    assert!(ok, "{err}");
    assert!(
        out.contains("RateLimitError") && out.contains("api_call"),
        "{out}"
    );
    let (ok, out, err) = tokio::task::spawn_blocking({
        let api = server.api.clone();
        move || chaintrace(&["top", "--since", "1h", "--server", &api])
    })
    .await
    .unwrap();
    assert!(ok, "{err}");
    assert!(
        out.contains("OPERATION") && out.contains("llm_call") && out.contains("60 traces analysed"),
        "{out}"
    );

    // SQL over the same spans, through the CLI.
    let (ok, out, err) = tokio::task::spawn_blocking({
        let api = server.api.clone();
        move || {
            chaintrace(&[
                "sql",
                "SELECT count(*) AS spans, sum(CASE WHEN status = 'error' AND name = 'api_call' THEN 1 ELSE 0 END) AS failed_calls FROM spans",
                "--since", "1h", "--json", "--server", &api,
            ])
        }
    })
    .await
    .unwrap();
    assert!(ok, "{err}");
    let answer: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(answer["rows"][0][0], 420, "{answer}");
    assert_eq!(answer["rows"][0][1].as_u64(), Some(errors), "{answer}");
    let (ok, _, err) = chaintrace(&["sql", "DROP TABLE spans", "--server", &server.api]);
    assert!(!ok);
    assert!(err.contains("only SELECT queries are allowed"), "{err}");
}
