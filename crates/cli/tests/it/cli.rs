//! The CLI a user types: `chaintrace demo` sends real OTLP, `traces` lists
//! it, `trace` draws it.

use serde_json::Value;

use crate::harness::{chaintrace, testdata, Server};

#[tokio::test]
async fn demo_then_traces_then_trace() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let grpc = server.grpc_url();
    let api = server.api.clone();
    let (ok, out, err) = tokio::task::spawn_blocking({
        let grpc = grpc.clone();
        move || chaintrace(&["demo", "--otlp-grpc", &grpc, "--rounds", "2"])
    })
    .await
    .unwrap();
    assert!(ok, "demo failed: {err}");
    assert!(out.contains("sent 6 demo traces"), "{out}");

    let (ok, out, err) = tokio::task::spawn_blocking({
        let api = api.clone();
        move || chaintrace(&["traces", "--server", &api, "--json"])
    })
    .await
    .unwrap();
    assert!(ok, "{err}");
    let list: Value = serde_json::from_str(&out).unwrap();
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 6);
    assert!(list
        .iter()
        .all(|t| t["root_name"] == "process_query" && t["root_service"] == "rag-chain"));
    let with_errors = list.iter().filter(|t| t["error_count"] == 1).count();
    assert_eq!(with_errors, 2, "one RateLimitError per round");
    let starts: Vec<u64> = list
        .iter()
        .map(|t| t["start_unix_nano"].as_u64().unwrap())
        .collect();
    assert!(
        starts.windows(2).all(|w| w[0] >= w[1]),
        "newest first: {starts:?}"
    );

    let (ok, table, _) = tokio::task::spawn_blocking({
        let api = api.clone();
        move || chaintrace(&["traces", "--server", &api])
    })
    .await
    .unwrap();
    assert!(ok);
    assert!(table.starts_with("TRACE ID"), "{table}");
    assert_eq!(table.lines().count(), 7);

    // The failing trace: its Gantt shows the tree, the retry and the error mark.
    let failing = list.iter().find(|t| t["error_count"] == 1).unwrap()["trace_id"]
        .as_str()
        .unwrap()
        .to_string();
    let (ok, chart, err) = tokio::task::spawn_blocking({
        let api = api.clone();
        let id = failing.clone();
        move || chaintrace(&["trace", &id, "--expand", "--server", &api])
    })
    .await
    .unwrap();
    assert!(ok, "{err}");
    let lines: Vec<&str> = chart.lines().collect();
    assert!(
        lines[0].contains(&failing)
            && lines[0].contains("8 spans")
            && lines[0].contains("1 errors"),
        "{chart}"
    );
    let row = |name: &str| {
        lines
            .iter()
            .filter(|l| l.trim_start().starts_with(name))
            .copied()
            .collect::<Vec<_>>()
    };
    assert!(row("process_query")[0].starts_with("process_query"));
    assert!(row("llm_call")[0].starts_with("  llm_call"));
    let api_rows = row("api_call");
    assert_eq!(api_rows.len(), 2, "failed call and retry: {chart}");
    assert!(
        api_rows[0].starts_with("    api_call") && api_rows[0].contains("✗ error"),
        "{chart}"
    );
    assert!(!api_rows[1].contains("✗"), "{chart}");
    // The root's bar fills the whole axis.
    let root_bar = row("process_query")[0].split('|').nth(1).unwrap();
    assert!(root_bar.chars().all(|c| c == '█'), "{chart}");

    // Folded (the default), the failed call and its retry are one row, as
    // in the web UI: how many attempts, how many failed, the time lost.
    let (ok, folded, err) = chaintrace(&["trace", &failing, "--server", &api]);
    assert!(ok, "{err}");
    let api_rows: Vec<&str> = folded
        .lines()
        .filter(|l| l.trim_start().starts_with("api_call"))
        .collect();
    assert_eq!(api_rows.len(), 1, "{folded}");
    assert!(
        api_rows[0].starts_with("    api_call ×2") && api_rows[0].contains("↻ 1 failed, "),
        "{folded}"
    );
    assert!(!api_rows[0].contains("✗"), "the retry succeeded: {folded}");
    assert_eq!(
        folded.lines().count(),
        chart.lines().count() - 1,
        "{folded}"
    );

    // The concurrent variant: fetch_context and embed_query bars start in the same column.
    let concurrent = list
        .iter()
        .filter(|t| t["error_count"] == 0)
        .map(|t| t["trace_id"].as_str().unwrap().to_string())
        .collect::<Vec<_>>();
    let mut overlapping = 0;
    for id in concurrent {
        let (ok, chart, _) = chaintrace(&["trace", &id, "--server", &api]);
        assert!(ok);
        let bar_start = |name: &str| {
            let line = chart
                .lines()
                .find(|l| l.trim_start().starts_with(name))
                .unwrap();
            line.split('|')
                .nth(1)
                .unwrap()
                .chars()
                .position(|c| c == '█')
                .unwrap()
        };
        if bar_start("fetch_context") == bar_start("embed_query") {
            overlapping += 1;
        }
    }
    assert_eq!(overlapping, 2, "one concurrent chain per round");

    // --json prints the whole trace.
    let (ok, json, _) = chaintrace(&["trace", &failing, "--json", "--server", &api]);
    assert!(ok);
    let trace: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(trace["trace_id"], failing.as_str());
    assert_eq!(trace["spans"].as_array().unwrap().len(), 8);
}

#[tokio::test]
async fn trace_command_errors_are_clear() {
    let (ok, _, err) = chaintrace(&["trace", "xyz", "--server", "http://127.0.0.1:9"]);
    assert!(!ok);
    assert!(err.contains("\"xyz\" is not a trace id"), "{err}");

    let (ok, _, err) = chaintrace(&[
        "trace",
        "0123456789abcdef0123456789abcdef",
        "--server",
        "http://127.0.0.1:9",
    ]);
    assert!(!ok);
    assert!(err.contains("cannot reach chaintrace"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let (ok, _, err) = chaintrace(&[
        "trace",
        "0123456789abcdef0123456789abcdef",
        "--server",
        &server.api,
    ]);
    assert!(!ok);
    assert!(err.contains("404") && err.contains("not found"), "{err}");

    // The captured Python run renders with its real names and the failing call marked.
    let (status, _) = server
        .post_traces(
            "application/json",
            testdata("otlp-traces-python-rag-chain.json"),
            false,
        )
        .await;
    assert_eq!(status, 200);
    let (_, list) = server.get_json("/api/v1/traces").await;
    let failing = list["traces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["error_count"].as_u64() > Some(0))
        .unwrap();
    let id = failing["trace_id"].as_str().unwrap();
    let (ok, chart, err) = chaintrace(&["trace", id, "--server", &server.api]);
    assert!(ok, "{err}");
    let api_call = chart
        .lines()
        .find(|l| l.trim_start().starts_with("api_call"))
        .unwrap();
    assert!(
        api_call.starts_with("    api_call") && api_call.contains("✗ error"),
        "{chart}"
    );
    assert_eq!(
        chart.lines().filter(|l| l.contains("✗ error")).count(),
        3,
        "api_call, llm_call, process_query: {chart}"
    );
}

/// Span names and services are the sender's: an escape sequence in them
/// reaches the operator's terminal only as visible text.
#[tokio::test]
async fn terminal_output_shows_escape_sequences_instead_of_sending_them() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let body = serde_json::json!({"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name",
            "value": {"stringValue": "svc\u{1b}[31m"}}]},
        "scopeSpans": [{"spans": [
            {"traceId": "5eed0000000000000000000000000001", "spanId": "0000000000000001",
             "name": "root\u{1b}]0;pwned\u{7}\u{9b}2J\u{202e}", "kind": 1,
             "startTimeUnixNano": now.to_string(), "endTimeUnixNano": (now + 1_000_000).to_string()}
        ]}]
    }]});
    let (status, _) = server
        .post_traces("application/json", body.to_string().into_bytes(), false)
        .await;
    assert_eq!(status, 200);
    let id = "5eed0000000000000000000000000001";
    for args in [
        vec!["trace", id],
        vec!["traces"],
        vec!["analyze", id],
        vec!["search", "{ kind = internal }", "--since", "1h"],
        vec!["sql", "SELECT name, service FROM spans", "--since", "1h"],
    ] {
        let mut args = args;
        args.extend(["--server", &server.api]);
        let (ok, out, err) = chaintrace(&args);
        assert!(ok, "{args:?}: {err}");
        assert!(
            !out.chars().any(|c| c.is_control() && c != '\n'),
            "{args:?} printed a raw control character: {out:?}"
        );
        assert!(
            !out.contains('\u{202e}'),
            "{args:?} printed a raw bidi override: {out:?}"
        );
        assert!(out.contains("root\\x1b]0;pwned\\x07"), "{args:?}: {out}");
    }
}

#[tokio::test]
async fn compare_two_demo_traces_through_the_api_and_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let grpc = server.grpc_url();
    let (ok, _, err) = tokio::task::spawn_blocking(move || {
        chaintrace(&["demo", "--otlp-grpc", &grpc, "--rounds", "1"])
    })
    .await
    .unwrap();
    assert!(ok, "demo failed: {err}");
    let (_, list) = server.get_json("/api/v1/traces?limit=10").await;
    let list = list["traces"].as_array().unwrap().clone();
    assert_eq!(list.len(), 3, "{list:?}");
    let id = |t: &Value| t["trace_id"].as_str().unwrap().to_string();
    let failing = list.iter().find(|t| t["error_count"] == 1).map(id).unwrap();
    let fine = list
        .iter()
        .find(|t| t["error_count"] == 0 && t["span_count"] == 7)
        .map(id)
        .unwrap();

    // The failing run retried api_call: that attempt is the one span only
    // it has; every other span is matched, and the durations add up.
    let (status, c) = server
        .get_json(&format!("/api/v1/compare/{fine}/{failing}"))
        .await;
    assert_eq!(status, 200, "{c}");
    assert!(c["only_a"].as_array().unwrap().is_empty(), "{c}");
    let only_b: Vec<&str> = c["only_b"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["path"].as_str().unwrap())
        .collect();
    assert_eq!(only_b, ["process_query > llm_call > api_call[1]"], "{c}");
    assert_eq!(c["matched"].as_array().unwrap().len(), 7);
    let delta = c["b_duration_nano"].as_i64().unwrap() - c["a_duration_nano"].as_i64().unwrap();
    assert_eq!(c["duration_delta_nano"].as_i64(), Some(delta));
    for m in c["matched"].as_array().unwrap() {
        let d = m["b_duration_nano"].as_i64().unwrap() - m["a_duration_nano"].as_i64().unwrap();
        assert_eq!(m["duration_delta_nano"].as_i64(), Some(d), "{m}");
    }
    let llm = c["matched"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "llm_call")
        .unwrap();
    assert!(
        llm["a_critical"] == true && llm["b_critical"] == true,
        "{llm}"
    );

    // Compared with itself, nothing differs.
    let (_, same) = server
        .get_json(&format!("/api/v1/compare/{fine}/{fine}"))
        .await;
    assert_eq!(same["duration_delta_nano"], 0);
    assert!(same["critical_paths_part_at"].is_null());

    // The CLI draws the same comparison.
    let api = server.api.clone();
    let (a, b) = (fine.clone(), failing.clone());
    let (ok, table, err) =
        tokio::task::spawn_blocking(move || chaintrace(&["compare", &a, &b, "--server", &api]))
            .await
            .unwrap();
    assert!(ok, "{err}");
    assert!(table.starts_with("b against a: "), "{table}");
    assert!(
        table.contains("only in b: process_query > llm_call > api_call[1]"),
        "{table}"
    );
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("process_query > llm_call ") && l.ends_with("◆◆")),
        "{table}"
    );

    // A missing or malformed id is named.
    let missing = "0".repeat(31) + "1";
    let (status, body) = server
        .get_json(&format!("/api/v1/compare/{fine}/{missing}"))
        .await;
    assert_eq!(status, 404);
    assert!(body["error"].as_str().unwrap().contains(&missing), "{body}");
    let (status, _) = server.get_json(&format!("/api/v1/compare/{fine}/zz")).await;
    assert_eq!(status, 400);
    let api = server.api.clone();
    let (ok, _, err) = tokio::task::spawn_blocking(move || {
        chaintrace(&["compare", &fine, &missing, "--server", &api])
    })
    .await
    .unwrap();
    assert!(!ok && err.contains("not found"), "{err}");
}

#[tokio::test]
async fn the_demo_conversation_reads_as_a_session_through_the_api_and_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let grpc = server.grpc_url();
    let (ok, demo_out, err) = tokio::task::spawn_blocking(move || {
        chaintrace(&["demo", "--otlp-grpc", &grpc, "--rounds", "2"])
    })
    .await
    .unwrap();
    assert!(ok, "demo failed: {err}");
    // The demo names its first conversation.
    let session = demo_out
        .lines()
        .find_map(|l| l.split("chaintrace sessions ").nth(1))
        .map(str::trim)
        .unwrap()
        .to_string();

    let (status, list) = server.get_json("/api/v1/sessions?since=1h").await;
    assert_eq!(status, 200, "{list}");
    let sessions = list["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 2, "{list}");
    assert!(
        sessions
            .iter()
            .all(|s| s["turns"] == 3 && s["user"] == "user_42"),
        "{list}"
    );

    let (status, one) = server
        .get_json(&format!("/api/v1/sessions/{session}?since=1h"))
        .await;
    assert_eq!(status, 200, "{one}");
    let turns = one["turns"].as_array().unwrap();
    let asked: Vec<&str> = turns
        .iter()
        .map(|t| t["user_input"].as_str().unwrap())
        .collect();
    assert_eq!(
        asked,
        [
            "What is our refund policy for annual plans?",
            "And for monthly plans?",
            "Can you summarise both in one sentence?"
        ]
    );
    assert!(turns[0]["gap_nano"].is_null() && turns[1]["gap_nano"].as_u64().unwrap() > 0);
    assert_eq!(
        turns[2]["error_types"],
        serde_json::json!(["RateLimitError"])
    );
    assert!(
        turns
            .iter()
            .all(|t| t["input_tokens"].as_u64().unwrap() > 0),
        "{one}"
    );

    // The CLI shows the same, as a list and as a transcript.
    let api = server.api.clone();
    let (ok, table, err) = tokio::task::spawn_blocking(move || {
        chaintrace(&["sessions", "--since", "1h", "--server", &api])
    })
    .await
    .unwrap();
    assert!(ok, "{err}");
    assert!(
        table.contains(&session) && table.contains("user_42"),
        "{table}"
    );
    let api = server.api.clone();
    let id = session.clone();
    let (ok, transcript, err) = tokio::task::spawn_blocking(move || {
        chaintrace(&["sessions", &id, "--since", "1h", "--server", &api])
    })
    .await
    .unwrap();
    assert!(ok, "{err}");
    assert!(
        transcript.starts_with(&format!("session {session}: 3 turns, 1 with errors")),
        "{transcript}"
    );
    assert!(
        transcript.contains("user: And for monthly plans?"),
        "{transcript}"
    );
    assert!(
        transcript.contains("1 failed (RateLimitError)"),
        "{transcript}"
    );
}
