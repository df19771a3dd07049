//! `GET /api/v1/sessions/{id}`: one session's turns, oldest first, as a
//! transcript ([`chaintrace_analysis::session_turns`]).
//!
//! The session's traces are found by a TraceQL search for the id under any
//! of the session keys (so the store's attribute bloom filters skip the
//! blocks that cannot hold it), then kept only when the id is the trace's
//! session by the documented rule (the first key found, the root first).

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chaintrace_analysis::session_turns;
use chaintrace_model::conventions::{trace_text, SESSION_ID_KEYS};
use chaintrace_model::Trace;
use chaintrace_query::RegexBudget;
use serde::Deserialize;

use crate::api::{error, store_error, AppState};
use crate::filter::query_filter;
use crate::range::RangeParams;
use crate::search::{scan, MAX_INSPECTED};

/// Most turns one answer lists (the newest are kept).
pub const MAX_TURNS: usize = 1000;

/// Query parameters of `GET /api/v1/sessions/{id}`.
#[derive(Debug, Deserialize)]
pub struct SessionParams {
    limit: Option<usize>,
    #[serde(flatten)]
    range: RangeParams,
}

/// A TraceQL string literal holding `text`.
fn quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `GET /api/v1/sessions/{id}?since=24h[&limit=200]`.
pub async fn session(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(params): Query<SessionParams>,
) -> Response {
    if id.is_empty() || id.len() > 1024 || id.chars().any(char::is_control) {
        return error(
            StatusCode::BAD_REQUEST,
            "a session id is 1 to 1024 bytes of text without control characters".into(),
        );
    }
    let range = match params.range.resolve(Some("24h")) {
        Ok(r) => r,
        Err(msg) => return error(StatusCode::BAD_REQUEST, msg),
    };
    let limit = params.limit.unwrap_or(200);
    if limit == 0 || limit > MAX_TURNS {
        return error(
            StatusCode::BAD_REQUEST,
            format!("limit must be between 1 and {MAX_TURNS}, got {limit}"),
        );
    }
    let condition = SESSION_ID_KEYS
        .iter()
        .map(|k| format!("span.{k} = {}", quoted(&id)))
        .collect::<Vec<_>>()
        .join(" || ");
    let query = match chaintrace_query::parse(&format!("{{ {condition} }}")) {
        Ok(q) => q,
        Err(e) => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("the session query did not parse: {e}"),
            )
        }
    };
    let slot = match state.cpu.slot().await {
        Ok(slot) => slot,
        Err(e) => return e.into_response(),
    };
    let filter = query_filter(Some(&query));
    let wanted = id.clone();
    let mut budget = RegexBudget::default();
    let scanned = scan(
        &state.store,
        range,
        filter,
        MAX_INSPECTED,
        move |found: &mut Vec<Trace>, trace| {
            let matches = matches!(query.evaluate_within(&trace, &mut budget), Ok(Some(_)));
            if matches && trace_text(&trace.spans, &SESSION_ID_KEYS) == Some(wanted.as_str()) {
                found.push(trace);
            }
            found.len() < limit
        },
    )
    .await;
    let (traces, inspected, truncated) = match scanned {
        Ok(found) => found,
        Err(e) => return store_error(e),
    };
    let prices = Arc::clone(&state.prices);
    let count = traces.len();
    let done = slot.run(move || {
        let turns = session_turns(&traces, &prices);
        let body = serde_json::json!({
            "session_id": id,
            "turns": turns,
            "inspected": inspected,
            "truncated": truncated || count >= limit,
        });
        crate::cpu::json_response(StatusCode::OK, &body)
    });
    done.await.unwrap_or_else(|e| e.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_ids_become_traceql_strings_that_parse_back() {
        for id in ["s-1", "a\"b", "back\\slash", "tab\there", "é ünï"] {
            let text = format!("{{ span.session.id = {} }}", quoted(id));
            assert!(chaintrace_query::parse(&text).is_ok(), "{text}");
        }
    }

    async fn get(router: &axum::Router, uri: &str) -> (StatusCode, serde_json::Value) {
        use http_body_util::BodyExt;
        use tower::ServiceExt;
        let response = router
            .clone()
            .oneshot(
                axum::http::Request::get(uri)
                    .body(axum::body::Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_session_reads_as_its_turns_oldest_first() {
        use chaintrace_model::{KeyValue, Span, SpanId, TraceId, UnixNanos};
        use chaintrace_store::{EmbeddedConfig, EmbeddedStore, Store};

        let dir = tempfile::tempdir().unwrap();
        let (store, _) = EmbeddedStore::open(EmbeddedConfig::new(dir.path())).unwrap();
        let base = UnixNanos::now().0 - 3_600_000_000_000;
        let turn = |t: u8, at_s: u64, key: &str, session: &str, question: &str| {
            let start = base + at_s * 1_000_000_000;
            let root = Span {
                trace_id: TraceId([t; 16]),
                span_id: SpanId([1; 8]),
                parent_span_id: None,
                name: "chat_turn".into(),
                kind: Default::default(),
                start: UnixNanos(start),
                end: UnixNanos(start + 2_000_000_000),
                status: Default::default(),
                attributes: vec![KeyValue::new(key, session)],
                events: vec![],
                links: vec![],
                resource: Default::default(),
                scope: Default::default(),
            };
            let mut call = root.clone();
            call.span_id = SpanId([2; 8]);
            call.parent_span_id = Some(root.span_id);
            call.name = "llm_call".into();
            call.attributes = vec![
                KeyValue::new("gen_ai.request.model", "gpt-4o-mini"),
                KeyValue::new("gen_ai.usage.input_tokens", 100i64),
                KeyValue::new("gen_ai.usage.output_tokens", 20i64),
                KeyValue::new("gen_ai.prompt.0.role", "user"),
                KeyValue::new("gen_ai.prompt.0.content", question),
                KeyValue::new(
                    "gen_ai.completion.0.content",
                    format!("answer to {question}"),
                ),
            ];
            vec![root, call]
        };
        let mut spans = Vec::new();
        spans.extend(turn(3, 60, "session.id", "s-1", "third"));
        spans.extend(turn(1, 0, "session.id", "s-1", "first"));
        spans.extend(turn(2, 10, "gen_ai.conversation.id", "s-1", "second"));
        spans.extend(turn(4, 20, "session.id", "s-2", "other session"));
        store.append(spans).await.unwrap();
        let router = crate::router(
            Arc::new(store) as Arc<dyn Store>,
            Arc::new(chaintrace_analysis::PriceTable::builtin()),
        );

        let (status, body) = get(&router, "/api/v1/sessions/s-1?since=2h").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let turns = body["turns"].as_array().unwrap();
        let inputs: Vec<&str> = turns
            .iter()
            .map(|t| t["user_input"].as_str().unwrap())
            .collect();
        assert_eq!(inputs, ["first", "second", "third"]);
        assert_eq!(turns[2]["output"], "answer to third");
        // The second turn started 10 s after the first, which lasted 2 s.
        assert_eq!(turns[1]["gap_nano"], 8_000_000_000u64);
        assert_eq!(turns[0]["input_tokens"], 100);
        assert_eq!(body["truncated"], false);

        let (_, body) = get(&router, "/api/v1/sessions/s-1?since=2h&limit=2").await;
        assert_eq!(body["turns"].as_array().unwrap().len(), 2);
        assert_eq!(body["truncated"], true);
        let (_, body) = get(&router, "/api/v1/sessions/nobody?since=2h").await;
        assert_eq!(body["turns"], serde_json::json!([]));
        let (status, body) = get(&router, "/api/v1/sessions/s-1?limit=0").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(body["error"].as_str().unwrap().contains("limit"), "{body}");
    }
}
