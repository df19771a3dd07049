//! One rule for the model, the tokens and the error type of a span: SQL,
//! the analytics endpoints, TraceQL search and the terminal show the same
//! answer for a span that spells them several ways at once, before and
//! after its block is cut.

use serde_json::{json, Value};

use crate::harness::{chaintrace, Server};

const TRACE: &str = "c0de0000000000000000000000000001";

fn kv(key: &str, value: Value) -> Value {
    json!({ "key": key, "value": value })
}

/// A root and an `llm_call` that names both the model asked for and the
/// one that answered, counts tokens the founding document's way (cache
/// reads apart from `input_tokens`), and failed with an exception event.
fn request(t0: u64) -> Value {
    let ms = |n: u64| (t0 + n * 1_000_000).to_string();
    json!({"resourceSpans": [{
        "resource": {"attributes": [kv("service.name", json!({"stringValue": "rag"}))]},
        "scopeSpans": [{"spans": [
            {"traceId": TRACE, "spanId": "0000000000000001", "name": "process_query",
             "kind": 2, "startTimeUnixNano": ms(0), "endTimeUnixNano": ms(100)},
            {"traceId": TRACE, "spanId": "0000000000000002", "parentSpanId": "0000000000000001",
             "name": "llm_call", "kind": 3, "startTimeUnixNano": ms(10), "endTimeUnixNano": ms(90),
             "attributes": [
                kv("model", json!({"stringValue": "claude-3-opus"})),
                kv("gen_ai.request.model", json!({"stringValue": "gpt-4o"})),
                kv("gen_ai.response.model", json!({"stringValue": "gpt-4o-2024-08-06"})),
                kv("input_tokens", json!({"intValue": "1000"})),
                kv("cache_read_input_tokens", json!({"intValue": "250"})),
                kv("output_tokens", json!({"intValue": "80"})),
             ],
             "events": [{"timeUnixNano": ms(89), "name": "exception", "attributes": [
                kv("exception.type", json!({"stringValue": "openai.RateLimitError"})),
                kv("exception.message", json!({"stringValue": "429"})),
             ]}],
             "status": {"code": 2, "message": "rate limited"}},
        ]}],
    }]})
}

pub(crate) async fn sql(server: &Server, query: &str) -> Value {
    let resp = reqwest::Client::new()
        .post(format!("{}/api/v1/sql", server.api))
        .json(&json!({ "query": query, "since": "1h" }))
        .send()
        .await
        .expect("POST /api/v1/sql");
    let status = resp.status();
    let body: Value = resp.json().await.expect("JSON");
    assert_eq!(status, 200, "{body}");
    body
}

async fn check_everywhere(server: &Server, when: &str) {
    let rows = sql(
        server,
        "SELECT llm_model, input_tokens, output_tokens, error_type FROM spans WHERE name = 'llm_call'",
    )
    .await;
    assert_eq!(
        rows["rows"],
        json!([["gpt-4o-2024-08-06", 1250, 80, "openai.RateLimitError"]]),
        "{when}: SQL"
    );

    let (status, models) = server.get_json("/api/v1/analytics/models?since=1h").await;
    assert_eq!(status, 200, "{models}");
    let model = &models["models"][0];
    assert_eq!(model["model"], "gpt-4o-2024-08-06", "{when}: {models}");
    assert_eq!(model["input_tokens"], 1250, "{when}: {models}");
    assert_eq!(model["output_tokens"], 80, "{when}: {models}");
    assert_eq!(model["cache_read_tokens"], 250, "{when}: {models}");

    let (status, errors) = server.get_json("/api/v1/analytics/errors?since=1h").await;
    assert_eq!(status, 200, "{errors}");
    assert_eq!(
        errors["errors"][0]["error_type"], "RateLimitError",
        "{when}: {errors}"
    );
    assert_eq!(errors["errors"][0]["count"], 1, "{when}: {errors}");

    let query = r#"{ span.exception.type = "RateLimitError" && span.gen_ai.response.model = "gpt-4o-2024-08-06" }"#;
    let (ok, out, err) = chaintrace(&["search", query, "--since", "1h", "--server", &server.api]);
    assert!(ok, "{when}: {err}");
    assert!(out.contains(TRACE), "{when}: search found nothing:\n{out}");

    let (ok, out, err) = chaintrace(&["analyze", TRACE, "--server", &server.api]);
    assert!(ok, "{when}: {err}");
    assert!(out.contains("gpt-4o-2024-08-06"), "{when}: analyze:\n{out}");
}

#[tokio::test]
async fn model_tokens_and_error_type_agree_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--block-max-age", "1s"]);
    let t0 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_nanos() as u64
        - 60_000_000_000;
    let (status, body) = server
        .post_traces(
            "application/json",
            request(t0).to_string().into_bytes(),
            false,
        )
        .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    check_everywhere(&server, "in memory").await;
    server.wait_for_cut("the llm_call trace").await;
    check_everywhere(&server, "in a block").await;
}
