//! `POST /api/v1/spans` on the query API of `chaintrace serve`: the
//! founding document's JSON span goes in as written and comes back under
//! its UUID trace id.

use serde_json::Value;

use crate::harness::{testdata, Server};

#[tokio::test]
async fn the_founding_documents_span_is_stored_under_its_uuid() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let client = reqwest::Client::new();
    let answer: Value = client
        .post(format!("{}/api/v1/spans", server.api))
        .header("content-type", "application/json")
        .body(testdata("seed-span.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["accepted"], 1, "{answer}");

    // Found by the UUID without its dashes, as the README says.
    let (status, trace) = server
        .get_json("/api/v1/traces/550e8400e29b41d4a716446655440000")
        .await;
    assert_eq!(status, 200, "{trace}");
    let span = &trace["spans"][0];
    assert_eq!(span["name"], "llm.call.claude");
    assert_eq!(
        span["end"].as_u64().unwrap() - span["start"].as_u64().unwrap(),
        1_200_000_000,
        "{span}"
    );

    // One span alone, by index or by id, as the web UI's panel reads it.
    let trace_path = "/api/v1/traces/550e8400e29b41d4a716446655440000";
    let (status, one) = server.get_json(&format!("{trace_path}/spans/0")).await;
    assert_eq!(status, 200, "{one}");
    assert_eq!(one["index"], 0);
    let span_id = one["trace"]["spans"][0]["span_id"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, by_id) = server
        .get_json(&format!("{trace_path}/spans/{span_id}"))
        .await;
    assert_eq!(status, 200, "{by_id}");
    assert_eq!(by_id, one);
    let (status, _) = server.get_json(&format!("{trace_path}/spans/7")).await;
    assert_eq!(status, 404);
    let (status, bad) = server.get_json(&format!("{trace_path}/spans/nope")).await;
    assert_eq!(status, 400);
    assert!(bad["error"].as_str().unwrap().contains("span id"), "{bad}");

    // A body that is not spans is a 400 naming why; the server goes on.
    let response = client
        .post(format!("{}/api/v1/spans", server.api))
        .body("[1, 2]")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["rejected"], 2, "{answer}");
    server.assert_still_serving(97).await;
}
