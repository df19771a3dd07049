//! `POST /api/v1/sql`: read-only SQL over the spans of a time range.
//!
//! The body is JSON: `{"query": "SELECT …", "since": "1h"}`, or `start` /
//! `end` (Unix seconds or RFC 3339, as text or number) instead of `since`;
//! without any, the last hour. The rows are the spans that *start* in the
//! range (a long trace that began before it contributes its later spans).
//! The handler hands [`chaintrace_sql::run_sql_feed`] a feed that reads
//! the store as the query pulls ([`Store::stream_traces`]: every span in
//! range, duplicates dropped, a chunk of whole traces at a time), so no
//! range is too big to query; that crate owns the table, the guards and
//! the answer's shape: `{"columns": [{"name", "type"}], "rows": [[…]],
//! "truncated": bool}`. Every refusal is a 400 with `{"error": "…"}`.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use std::sync::Arc;

use chaintrace_model::{SpanColumn, UnixNanos};
use chaintrace_sql::{
    check_query, run_sql_feed, OpenColumns, SpanChunks, SpanFeed, SqlError, SqlLimits,
};
use chaintrace_store::Store;
use serde::Deserialize;

use crate::api::{error, store_error, AppState};
use crate::range::RangeParams;

/// SQL requests run one at a time: each reads the store's blocks of its
/// range and may hold its operators' memory limit, and two at once would
/// break the server's memory bound. The permit goes with the query's
/// thread, so a query past its time limit keeps the slot until it has
/// really stopped (planning stops at its next step, execution at its next
/// batch): abandoned queries cannot pile up.
static SQL_SLOT: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(1);

/// SQL queries running now (holding the slot): 0 or 1.
pub(crate) fn running() -> usize {
    1 - SQL_SLOT.available_permits().min(1)
}

/// How long a request waits for the running one before it is turned away.
const SQL_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// The request body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SqlRequest {
    query: String,
    #[serde(default)]
    since: Option<String>,
    #[serde(default)]
    start: Option<TimeText>,
    #[serde(default)]
    end: Option<TimeText>,
}

/// A time as JSON text (`"2026-01-01T00:00:00Z"`, `"1767225600"`) or number.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum TimeText {
    Text(String),
    Number(serde_json::Number),
}

impl TimeText {
    fn into_text(self) -> String {
        match self {
            TimeText::Text(t) => t,
            TimeText::Number(n) => n.to_string(),
        }
    }
}

/// `POST /api/v1/sql`.
///
/// The body is read as JSON whatever its `Content-Type`, so a bare
/// `curl -d '{"query": "…"}'` works.
pub async fn sql(State(state): State<AppState>, body: Bytes) -> Response {
    let response = answer(&state, &body).await;
    if response.status() == StatusCode::BAD_REQUEST {
        state.metrics.sql_invalid.inc();
    }
    response
}

async fn answer(state: &AppState, body: &[u8]) -> Response {
    if let Err(e) = chaintrace_model::check_json_depth(body, chaintrace_model::MAX_JSON_DEPTH) {
        return error(
            StatusCode::BAD_REQUEST,
            format!("invalid request body: {e}"),
        );
    }
    let request: SqlRequest = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!(
                    "invalid request body: {e}; want JSON like \
                     {{\"query\": \"SELECT name, count(*) FROM spans GROUP BY name\", \"since\": \"1h\"}}"
                ),
            )
        }
    };
    // Refuse a bad query before loading any spans.
    if let Err(e) = check_query(&request.query) {
        return error(StatusCode::BAD_REQUEST, e.to_string());
    }
    let range = RangeParams {
        since: request.since,
        start: request.start.map(TimeText::into_text),
        end: request.end.map(TimeText::into_text),
    };
    let range = match range.resolve(Some("1h")) {
        Ok(r) => r,
        Err(msg) => return error(StatusCode::BAD_REQUEST, msg),
    };
    let slot = match tokio::time::timeout(SQL_WAIT, SQL_SLOT.acquire()).await {
        Ok(Ok(permit)) => permit,
        _ => {
            state.metrics.sql_busy.inc();
            let mut response = error(
                StatusCode::SERVICE_UNAVAILABLE,
                "another SQL query has been running for 30 s; retry later".to_string(),
            );
            response
                .headers_mut()
                .insert("retry-after", axum::http::HeaderValue::from_static("5"));
            return response;
        }
    };
    // Plans pairing rows without a key are checked against every stored
    // span: a bound, not a count.
    let max_rows = match state.store.stats().await {
        Ok(stats) => stats.spans.saturating_add(stats.block_spans),
        Err(e) => return store_error(e),
    };
    let feed = SpanFeed {
        start: range.start,
        end: range.end,
        max_rows,
        open: store_reader(Arc::clone(&state.store), range.start, range.end),
        open_columns: Some(column_reader(
            Arc::clone(&state.store),
            range.start,
            range.end,
        )),
    };
    match run_sql_feed(feed, &request.query, &SqlLimits::default(), slot).await {
        Ok(result) => Json(result).into_response(),
        Err(SqlError::Internal(msg)) => {
            tracing::error!(error = %msg, "SQL query failed");
            error(StatusCode::INTERNAL_SERVER_ERROR, msg)
        }
        Err(e) => error(StatusCode::BAD_REQUEST, e.to_string()),
    }
}

/// Opens reads of the store's spans in `[start, end]` for a [`SpanFeed`]:
/// each runs on this runtime's blocking threads, two chunks ahead of the
/// query at most, and stops when the query drops its receiver.
fn store_reader(
    store: Arc<dyn Store>,
    start: Option<UnixNanos>,
    end: Option<UnixNanos>,
) -> Box<dyn Fn() -> SpanChunks + Send + Sync> {
    let runtime = tokio::runtime::Handle::current();
    Box::new(move || {
        let (chunks, receiver) = tokio::sync::mpsc::channel(2);
        let store = Arc::clone(&store);
        runtime.spawn(async move {
            let sender = chunks.clone();
            let visit = Box::new(move |chunk| sender.blocking_send(Ok(chunk)).is_ok());
            if let Err(e) = store.stream_traces(start, end, visit).await {
                tracing::warn!(error = %e, "SQL could not read the store");
                let _ = chunks
                    .send(Err(format!("cannot read the stored spans: {e}")))
                    .await;
            }
        });
        receiver
    })
}

/// Opens columnar reads of the store's spans starting in `[start, end]`
/// for a [`SpanFeed`], like [`store_reader`]. A store without a columnar
/// read ends the read with an error naming it (the embedded store has one).
fn column_reader(
    store: Arc<dyn Store>,
    start: Option<UnixNanos>,
    end: Option<UnixNanos>,
) -> OpenColumns {
    let runtime = tokio::runtime::Handle::current();
    Box::new(move |columns: Vec<SpanColumn>| {
        let (chunks, receiver) = tokio::sync::mpsc::channel(2);
        let store = Arc::clone(&store);
        runtime.spawn(async move {
            let sender = chunks.clone();
            let visit = Box::new(move |batch| sender.blocking_send(Ok(batch)).is_ok());
            let failed = match store.stream_columns(start, end, columns, visit).await {
                Ok(Some(_)) => return,
                Ok(None) => "this store has no columnar read".to_string(),
                Err(e) => {
                    tracing::warn!(error = %e, "SQL could not read the store's columns");
                    format!("cannot read the stored spans: {e}")
                }
            };
            let _ = chunks.send(Err(failed)).await;
        });
        receiver
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::body::Body;
    use axum::http::Request;
    use chaintrace_analysis::PriceTable;
    use chaintrace_model::{
        KeyValue, Resource, Span, SpanId, SpanKind, Status, StatusCode as SpanStatus, TraceId,
        UnixNanos,
    };
    use chaintrace_store::{EmbeddedConfig, EmbeddedStore, Store};
    use http_body_util::BodyExt;
    use serde_json::{json, Value};
    use tower::ServiceExt;

    const MIN: u64 = 60_000_000_000;

    use tempfile::TempDir;

    /// The store goes before its directory.
    struct Fixture {
        store: Arc<EmbeddedStore>,
        router: axum::Router,
        _dir: TempDir,
    }

    fn span(trace: u8, id: u8, parent: Option<u8>, name: &str, start: u64, ms: u64) -> Span {
        Span {
            trace_id: TraceId([trace; 16]),
            span_id: SpanId([trace, id, 0, 0, 0, 0, 0, 1]),
            parent_span_id: parent.map(|p| SpanId([trace, p, 0, 0, 0, 0, 0, 1])),
            name: name.into(),
            kind: SpanKind::Internal,
            start: UnixNanos(start),
            end: UnixNanos(start + ms * 1_000_000),
            status: Status::default(),
            attributes: Vec::new(),
            events: Vec::new(),
            links: Vec::new(),
            resource: Arc::new(Resource {
                attributes: vec![KeyValue::new("service.name", "rag-chain")],
            }),
            scope: Default::default(),
        }
    }

    /// Trace 1 ten minutes ago (the failing RAG chain's LLM part), trace 2
    /// three hours ago.
    async fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = EmbeddedStore::open(EmbeddedConfig::new(dir.path())).unwrap();
        let store = Arc::new(store);
        let t1 = UnixNanos::now().0 - 10 * MIN;
        let t2 = UnixNanos::now().0 - 180 * MIN;
        let mut llm = span(1, 2, Some(1), "llm_call", t1 + 300_000_000, 700);
        llm.attributes = vec![KeyValue::new("model", "claude-3-opus-20250219")];
        let mut api = span(1, 3, Some(2), "api_call", t1 + 320_000_000, 680);
        api.attributes = vec![
            KeyValue::new("input_tokens", 1100i64),
            KeyValue::new("error_type", "RateLimitError"),
            KeyValue::new("user_id", "u-42"),
        ];
        api.status = Status {
            code: SpanStatus::Error,
            message: "429".into(),
        };
        let spans = vec![
            span(1, 1, None, "process_query", t1, 1000),
            llm,
            api,
            span(2, 1, None, "process_query", t2, 900),
        ];
        store.append(spans).await.unwrap();
        let router = crate::router(
            Arc::clone(&store) as Arc<dyn Store>,
            Arc::new(PriceTable::empty()),
        );
        Fixture {
            store,
            router,
            _dir: dir,
        }
    }

    impl Fixture {
        async fn post(&self, body: &str) -> (axum::http::StatusCode, Value) {
            let response = self
                .router
                .clone()
                .oneshot(
                    Request::post("/api/v1/sql")
                        .header("content-type", "application/json")
                        .body(Body::from(body.to_string()))
                        .unwrap(),
                )
                .await
                .unwrap();
            let status = response.status();
            let bytes = response.into_body().collect().await.unwrap().to_bytes();
            (status, serde_json::from_slice(&bytes).unwrap())
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sql_over_the_last_hour_by_default() {
        let f = fixture().await;
        let (status, body) = f
            .post(
                r#"{"query": "SELECT name, count(*) AS n FROM spans GROUP BY name ORDER BY name"}"#,
            )
            .await;
        assert_eq!(status, axum::http::StatusCode::OK, "{body}");
        assert_eq!(
            body,
            json!({
                "columns": [{"name": "name", "type": "Utf8"}, {"name": "n", "type": "Int64"}],
                "rows": [["api_call", 1], ["llm_call", 1], ["process_query", 1]],
                "truncated": false
            })
        );
        let (status, body) = f
            .post(r#"{"query": "SELECT count(*) FROM spans", "since": "4h"}"#)
            .await;
        assert_eq!(status, axum::http::StatusCode::OK, "{body}");
        assert_eq!(body["rows"], json!([[4]]));
        // start/end as numbers or text.
        let start = (UnixNanos::now().0 - 200 * MIN) / 1_000_000_000;
        let end = (UnixNanos::now().0 - 100 * MIN) / 1_000_000_000;
        let (status, body) = f
            .post(&format!(
                r#"{{"query": "SELECT trace_id FROM spans", "start": {start}, "end": "{end}"}}"#
            ))
            .await;
        assert_eq!(status, axum::http::StatusCode::OK, "{body}");
        assert_eq!(body["rows"], json!([["02".repeat(16)]]));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_founding_question_in_sql() {
        let f = fixture().await;
        let (status, body) = f
            .post(
                r#"{"query": "SELECT name, llm_model, input_tokens, error_type, attributes['user_id'] AS user_id, status FROM spans WHERE error_type LIKE '%RateLimitError'"}"#,
            )
            .await;
        assert_eq!(status, axum::http::StatusCode::OK, "{body}");
        assert_eq!(
            body["rows"],
            json!([[
                "api_call",
                "claude-3-opus-20250219",
                1100,
                "RateLimitError",
                "u-42",
                "error"
            ]])
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn refusals_are_400_with_a_message() {
        let f = fixture().await;
        let cases = [
            (
                r#"{"query": "DROP TABLE spans"}"#,
                "only SELECT queries are allowed, got DROP TABLE",
            ),
            (
                r#"{"query": "SELEC 1"}"#,
                "SQL syntax error: Expected: an SQL statement, found: SELEC at Line: 1, Column: 1",
            ),
            (
                r#"{"query": "SELECT 1", "since": "soon"}"#,
                "since: invalid duration",
            ),
            (
                r#"{"query": "SELECT nme FROM spans"}"#,
                "No field named nme",
            ),
            (r#"{"query": "SELECT 1""#, "invalid request body: EOF"),
            (
                r#"{"since": "1h"}"#,
                "invalid request body: missing field `query`",
            ),
            (
                r#"{"query": "SELECT 1", "sinse": "1h"}"#,
                "invalid request body: unknown field `sinse`",
            ),
        ];
        for (body, want) in cases {
            let (status, answer) = f.post(body).await;
            assert_eq!(
                status,
                axum::http::StatusCode::BAD_REQUEST,
                "{body}: {answer}"
            );
            let got = answer["error"].as_str().unwrap();
            assert!(got.starts_with(want), "{body}: {got}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn blocks_memory_and_duplicates_count_each_span_once() {
        let f = fixture().await;
        async fn count(f: &Fixture) -> Value {
            let (status, body) = f
                .post(r#"{"query": "SELECT count(*) AS n, count(DISTINCT span_id) AS d, sum(input_tokens) AS tokens FROM spans", "since": "4h"}"#)
                .await;
            assert_eq!(status, axum::http::StatusCode::OK, "{body}");
            body["rows"][0].clone()
        }
        assert_eq!(count(&f).await, json!([4, 4, 1100]));
        // The spans go to a block; the exporter then retries trace 1 (a
        // renamed copy that must not show) and 3 000 more spans arrive:
        // block, memory and duplicates, counted once each.
        tokio::task::block_in_place(|| f.store.flush()).unwrap();
        let t = UnixNanos::now().0 - 30 * MIN;
        let mut retried = span(1, 1, None, "second copy", t, 10);
        retried.trace_id = TraceId([1; 16]);
        let mut more: Vec<Span> = (0..3000u32)
            .map(|i| {
                let mut s = span(3, 1, None, "bulk", t + u64::from(i), 1);
                s.trace_id = TraceId([3 + (i % 200) as u8 % 250; 16]);
                s.span_id = SpanId([(i >> 8) as u8, i as u8, 9, 9, 9, 9, 9, 9]);
                s
            })
            .collect();
        more.push(retried);
        f.store.append(more).await.unwrap();
        assert_eq!(count(&f).await, json!([3004, 3004, 1100]));
        let (status, body) = f
            .post(r#"{"query": "SELECT count(*) FROM spans WHERE name = 'second copy'", "since": "4h"}"#)
            .await;
        assert_eq!(status, axum::http::StatusCode::OK, "{body}");
        assert_eq!(body["rows"], json!([[0]]));
    }
}
