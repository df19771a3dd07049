//! The search and analytics answers when the regex work budget stops a
//! walk: `truncated`, plus a `stopped` object naming the cause, and the
//! hits found before it; ordinary answers keep their shape.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use chaintrace_analysis::PriceTable;
use chaintrace_model::{Resource, SpanId, SpanKind, Status, TraceId, UnixNanos};
use chaintrace_store::{EmbeddedConfig, EmbeddedStore, Store};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tempfile::TempDir;
use tower::ServiceExt;

use super::*;

const MIN: u64 = 60_000_000_000;
const PATHOLOGICAL: &str = r#"{ name =~ "[ab]*a[ab]{1000}" || name =~ "llm.*" }"#;

/// The router over an embedded store; the store goes before its directory.
struct Fixture {
    router: Router,
    _dir: TempDir,
}

fn span(trace: u8, minutes_ago: u64, name: String) -> Span {
    let start = UnixNanos::now().0 - minutes_ago * MIN;
    Span {
        trace_id: TraceId([trace; 16]),
        span_id: SpanId([trace; 8]),
        parent_span_id: None,
        name: name.into(),
        kind: SpanKind::Internal,
        start: UnixNanos(start),
        end: UnixNanos(start + 1_000_000),
        status: Status::default(),
        attributes: Vec::new(),
        events: Vec::new(),
        links: Vec::new(),
        resource: Arc::new(Resource::default()),
        scope: Default::default(),
    }
}

/// `a`/`b` bytes in a pattern the pathological regex's lazy DFA cannot
/// keep up with.
fn ab_text(len: usize) -> String {
    (0..len)
        .map(|i| if (i * 7 + i / 3) % 5 < 2 { 'a' } else { 'b' })
        .collect()
}

/// Newest first: trace 1 `llm_call` (10 min ago), trace 2 a 2 MiB name of
/// `a`s and `b`s (20 min ago), trace 3 `llm_call` (30 min ago).
async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let (store, _) = EmbeddedStore::open(EmbeddedConfig::new(dir.path())).expect("store opens");
    store
        .append(vec![
            span(1, 10, "llm_call".into()),
            span(2, 20, ab_text(2 << 20)),
            span(3, 30, "llm_call".into()),
        ])
        .await
        .expect("append");
    Fixture {
        router: crate::router(
            Arc::new(store) as Arc<dyn Store>,
            Arc::new(PriceTable::empty()),
        ),
        _dir: dir,
    }
}

impl Fixture {
    async fn get(&self, path: &str, query: &str) -> (StatusCode, Value) {
        let uri = format!("{path}?{}&since=1h", url_param(query));
        let response = self
            .router
            .clone()
            .oneshot(Request::get(uri).body(Body::empty()).expect("request"))
            .await
            .expect("answer");
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        (status, serde_json::from_slice(&bytes).expect("JSON"))
    }
}

/// `q=<query>` / `filter=<query>` with the query percent-encoded.
fn url_param(pair: &str) -> String {
    let (key, value) = pair.split_once('=').expect("key=value");
    let encoded: String = value
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    format!("{key}={encoded}")
}

fn trace_ids(body: &Value) -> Vec<String> {
    body["traces"]
        .as_array()
        .expect("traces")
        .iter()
        .map(|t| t["trace_id"].as_str().expect("trace_id")[..2].to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_search_the_regex_budget_stops_says_so() {
    let f = fixture().await;
    let (status, body) = f.get("/api/v1/search", &format!("q={PATHOLOGICAL}")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(trace_ids(&body), ["01"], "the hit before the stop is kept");
    assert_eq!(body["truncated"], json!(true));
    assert_eq!(body["inspected"], json!(2));
    assert_eq!(body["stopped"]["reason"], json!("regex_work_budget"));
    let detail = body["stopped"]["detail"].as_str().expect("detail");
    assert!(
        detail.starts_with(
            "regex work budget exhausted: name =~ \"[ab]*a[ab]{1000}\" on a 2097152-byte value"
        ),
        "{detail}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ordinary_regex_search_keeps_its_shape() {
    let f = fixture().await;
    let (status, body) = f.get("/api/v1/search", r#"q={ name =~ "llm.*" }"#).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(trace_ids(&body), ["01", "03"]);
    assert_eq!(body["truncated"], json!(false));
    assert_eq!(body["inspected"], json!(3));
    assert!(body.get("stopped").is_none(), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analytics_the_regex_budget_stops_say_so() {
    let f = fixture().await;
    let (status, body) = f
        .get(
            "/api/v1/analytics/operations",
            &format!("filter={PATHOLOGICAL}"),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["traces"], json!(1));
    assert_eq!(body["truncated"], json!(true));
    assert_eq!(body["stopped"]["reason"], json!("regex_work_budget"));

    let (status, body) = f
        .get(
            "/api/v1/analytics/operations",
            r#"filter={ name =~ "llm.*" }"#,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["traces"], json!(2));
    assert_eq!(body["truncated"], json!(false));
    assert!(body.get("stopped").is_none(), "{body}");
}

#[test]
fn a_bad_query_is_located_in_the_text_as_sent() {
    let err = parse_located(Some("  { name = }")).unwrap_err();
    assert_eq!((err.position, err.line, err.column), (11, 1, 12));
    let err = parse_located(Some("\n{ name = }")).unwrap_err();
    assert_eq!((err.position, err.line, err.column), (10, 2, 10));
    assert!(parse_located(Some("   ")).unwrap().is_none());
    assert!(parse_located(Some(r#"{ name = "a" } && { status = error }"#)).is_ok());
}
