//! `GET /api/v1/sessions` on `chaintrace serve`: traces posted as plain
//! JSON spans, grouped by their session id.

use serde_json::{json, Value};

use crate::harness::Server;

/// One turn: a root naming the session (under `key`) and maybe the user,
/// and a child that may fail. `at` is seconds before now.
fn turn(
    trace: &str,
    at: u64,
    key: &str,
    session: &str,
    user: Option<&str>,
    fail: bool,
) -> Vec<Value> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut attributes = json!({ key: session });
    if let Some(u) = user {
        attributes["user.id"] = json!(u);
    }
    vec![
        json!({"trace_id": trace, "span_id": "root", "name": "chat_turn", "service": "support-bot",
               "start_time": now - at, "duration_ms": 900, "attributes": attributes}),
        json!({"trace_id": trace, "span_id": "call", "parent_span_id": "root", "name": "llm_call",
               "service": "support-bot", "start_time": now - at, "duration_ms": 800,
               "status": if fail { "error" } else { "ok" },
               "attributes": {"gen_ai.request.model": "gpt-4o-mini",
                              "gen_ai.usage.input_tokens": 100, "gen_ai.usage.output_tokens": 20}}),
    ]
}

#[tokio::test]
async fn sessions_group_turns_by_their_session_id() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let mut spans = Vec::new();
    spans.extend(turn("turn-1", 300, "session.id", "s-1", Some("u-7"), false));
    spans.extend(turn(
        "turn-2",
        200,
        "gen_ai.conversation.id",
        "s-1",
        None,
        true,
    ));
    spans.extend(turn(
        "turn-3",
        100,
        "langfuse.session.id",
        "s-2",
        Some("u-8"),
        false,
    ));
    spans.extend(turn("no-session", 50, "other.key", "x", None, false));
    let resp = reqwest::Client::new()
        .post(format!("{}/api/v1/spans", server.api))
        .json(&spans)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());

    let (status, body) = server.get_json("/api/v1/sessions?since=1h").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["traces"], 4,
        "every trace of the range is read: {body}"
    );
    let sessions = body["sessions"].as_array().unwrap();
    let ids: Vec<&str> = sessions
        .iter()
        .map(|s| s["session_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["s-2", "s-1"], "most recently active first");
    let s1 = &sessions[1];
    assert_eq!(
        (s1["turns"].as_u64(), s1["error_turns"].as_u64()),
        (Some(2), Some(1)),
        "{s1}"
    );
    assert_eq!(s1["user"], "u-7");
    assert_eq!(s1["input_tokens"], 200);
    assert!(s1["cost_usd"].as_f64().unwrap() > 0.0, "{s1}");
    assert_eq!(s1["trace_ids"].as_array().unwrap().len(), 2);
    let duration = s1["last_end"].as_u64().unwrap() - s1["first_start"].as_u64().unwrap();
    assert_eq!(s1["duration_nano"].as_u64(), Some(duration));

    // One user's sessions; a filter; a bad filter named.
    let (_, mine) = server.get_json("/api/v1/sessions?since=1h&user=u-8").await;
    let mine: Vec<&str> = mine["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["session_id"].as_str().unwrap())
        .collect();
    assert_eq!(mine, ["s-2"]);
    let (_, failed) = server
        .get_json("/api/v1/sessions?since=1h&filter=%7B%20status%20%3D%20error%20%7D")
        .await;
    let failed = failed["sessions"].as_array().unwrap();
    assert_eq!(
        (failed.len(), failed[0]["turns"].as_u64()),
        (1, Some(1)),
        "{failed:?}"
    );
    let (status, body) = server
        .get_json("/api/v1/sessions?since=1h&filter=%7B%20name%20%3D%20%7D")
        .await;
    assert_eq!(status, 400, "{body}");
}
