//! The MCP server, driven by the real `mcp` client package from PyPI the
//! way a coding agent calls it: over stdio (`chaintrace mcp`) and over
//! streamable HTTP (`POST /mcp`), on a server with keys. Every tool is
//! called and its answer checked against the query API's.

use std::process::Command;

use serde_json::{json, Value};

use crate::harness::{
    add_key, chaintrace, last_json_line, python, python_script, urlencode, Server,
};

/// GET with a key: the JSON answer, which must be a 200.
async fn api(server: &Server, key: &str, path: &str) -> Value {
    let resp = reqwest::Client::new()
        .get(format!("{}{path}", server.api))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{path}");
    resp.json().await.unwrap()
}

/// Runs the MCP client script: its report.
async fn client(args: Vec<String>) -> Value {
    let mut cmd = Command::new(python("CHAINTRACE_TEST_PYTHON_MCP"));
    cmd.arg(python_script("mcp_client.py")).args(args);
    last_json_line("the mcp client", cmd).await
}

fn ids(traces: &Value) -> Vec<String> {
    traces
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["trace_id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn agents_get_the_apis_answers_over_stdio_and_http() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys.toml");
    let keys_arg = keys.to_str().unwrap();
    let ingest = add_key(&keys, "collector", "ingest", "default");
    let read = add_key(&keys, "agent", "read", "default");
    let server = Server::start(&dir.path().join("data"), &["--keys", keys_arg]);
    let grpc = server.grpc_url();
    let (ok, _, err) = tokio::task::spawn_blocking(move || {
        chaintrace(&[
            "demo",
            "--otlp-grpc",
            &grpc,
            "--rounds",
            "2",
            "--key",
            &ingest,
        ])
    })
    .await
    .unwrap();
    assert!(ok, "{err}");

    // What the API says.
    let errors_q = "{ status = error }";
    let searched = api(
        &server,
        &read,
        &format!("/api/v1/search?q={}&since=1h&limit=20", urlencode(errors_q)),
    )
    .await;
    let failed = ids(&searched["traces"]);
    assert!(failed.len() >= 2, "{searched}");
    let all = api(&server, &read, "/api/v1/traces?since=1h&limit=100").await;
    let every = ids(&all["traces"]);
    let (a, b) = (every[1].clone(), every[0].clone());
    let analysis = api(
        &server,
        &read,
        &format!(
            "/api/v1/traces/{}/analysis?parallel=fetch_context,embed_query",
            failed[0]
        ),
    )
    .await;
    let plain = api(
        &server,
        &read,
        &format!("/api/v1/traces/{}/analysis", failed[0]),
    )
    .await;
    let compared = api(&server, &read, &format!("/api/v1/compare/{a}/{b}")).await;
    let sessions = api(&server, &read, "/api/v1/sessions?since=1h").await;
    let counted: Value = reqwest::Client::new()
        .post(format!("{}/api/v1/sql", server.api))
        .bearer_auth(&read)
        .json(&json!({"query": "SELECT count(*) AS n FROM spans", "since": "1h"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();

    let calls = json!([
        ["search_traces", {"query": errors_q, "since": "1h"}],
        ["get_trace", {"trace_id": failed[0]}],
        ["analyze_trace", {"trace_id": failed[0], "parallel": ["fetch_context", "embed_query"]}],
        ["top_operations", {"since": "1h"}],
        ["error_groups", {"since": "1h"}],
        ["list_sessions", {"since": "1h"}],
        ["compare_traces", {"a": a, "b": b}],
        ["sql", {"query": "SELECT count(*) AS n FROM spans", "since": "1h"}],
        ["get_trace", {"trace_id": "not-hex"}],
    ])
    .to_string();
    let stdio = client(vec![
        "stdio".into(),
        crate::harness::bin().into(),
        server.api.clone(),
        read.clone(),
        calls.clone(),
    ])
    .await;
    let http = client(vec![
        "http".into(),
        format!("{}/mcp", server.api),
        read.clone(),
        calls,
    ])
    .await;

    for (transport, report) in [("stdio", &stdio), ("http", &http)] {
        assert_eq!(report["server"], "chaintrace", "{transport}");
        let tools: Vec<&str> = report["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap())
            .collect();
        assert_eq!(
            tools,
            [
                "search_traces",
                "get_trace",
                "analyze_trace",
                "top_operations",
                "error_groups",
                "list_sessions",
                "compare_traces",
                "sql"
            ],
            "{transport}"
        );
        let r = |i: usize| &report["results"][i];
        for i in 0..8 {
            assert_eq!(
                r(i)["is_error"],
                false,
                "{transport} {}: {}",
                r(i)["tool"],
                r(i)["text"]
            );
        }
        assert_eq!(
            ids(&r(0)["structured"]["traces"]),
            failed,
            "{transport} search_traces"
        );
        let summary = &r(1)["structured"];
        let tree = summary["tree"].as_str().unwrap();
        assert!(
            tree.contains("◆ process_query") && tree.contains("ERROR RateLimitError"),
            "{transport}: {tree}"
        );
        assert_eq!(
            summary["critical_path"], plain["critical_path"],
            "{transport} get_trace"
        );
        assert_eq!(
            summary["llm_totals"], plain["llm_totals"],
            "{transport} get_trace"
        );
        assert_eq!(r(2)["structured"], analysis, "{transport} analyze_trace");
        let ops: Vec<&str> = r(3)["structured"]["operations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["name"].as_str().unwrap())
            .collect();
        assert!(
            ops.contains(&"llm_call") && ops.contains(&"api_call"),
            "{transport}: {ops:?}"
        );
        assert!(
            r(4)["text"].as_str().unwrap().contains("RateLimitError"),
            "{transport} error_groups"
        );
        assert_eq!(
            r(5)["structured"]["sessions"].as_array().map(Vec::len),
            sessions["sessions"].as_array().map(Vec::len),
            "{transport}"
        );
        assert_eq!(r(6)["structured"], compared, "{transport} compare_traces");
        assert_eq!(
            r(7)["structured"]["rows"],
            counted["rows"],
            "{transport} sql"
        );
        assert!(
            counted["rows"]
                .as_array()
                .is_some_and(|rows| rows.len() == 1),
            "{counted}"
        );
        assert_eq!(r(8)["is_error"], true, "{transport}");
        assert!(
            r(8)["text"].as_str().unwrap().contains("not a trace id"),
            "{transport}"
        );
    }

    // POST /mcp is behind the keys like every other route.
    let anonymous = reqwest::Client::new()
        .post(format!("{}/mcp", server.api))
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
}
