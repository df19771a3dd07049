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
        self.get_uri(&format!("{path}?{}&since=1h", url_param(query)))
            .await
    }

    /// GET `uri` as given (several parameters, none encoded here).
    async fn get_uri(&self, uri: &str) -> (StatusCode, Value) {
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

/// 6 000 traces (more than one search reads) of a root and a child, every
/// 20th child failing with `RateLimitError`, half cut into a block and half
/// in memory, 500 of them sent twice; and one trace from two hours ago.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analytics_count_every_trace_of_the_range_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (store, _) = EmbeddedStore::open(EmbeddedConfig::new(dir.path())).expect("store opens");
    let store = Arc::new(store);
    let traces = 6000u32;
    let trace = |i: u32| {
        let mut id = [7u8; 16];
        id[..4].copy_from_slice(&i.to_be_bytes());
        let mut root = span(0, 30, "process_query".into());
        root.trace_id = TraceId(id);
        root.start.0 += u64::from(i) * 1_000_000;
        root.end.0 = root.start.0 + 50_000_000;
        let mut child = root.clone();
        child.span_id = SpanId([1; 8]);
        child.parent_span_id = Some(root.span_id);
        child.name = "api_call".into();
        child.end.0 = child.start.0 + 1_000_000 * u64::from(1 + i % 40);
        if i.is_multiple_of(20) {
            child.status = Status {
                code: chaintrace_model::StatusCode::Error,
                message: "429".into(),
            };
            child.attributes = vec![chaintrace_model::KeyValue::new(
                "error.type",
                "RateLimitError",
            )];
        }
        vec![root, child]
    };
    let half: Vec<Span> = (0..traces / 2).flat_map(trace).collect();
    store.append(half).await.expect("append");
    tokio::task::block_in_place(|| store.flush()).expect("cut");
    let rest: Vec<Span> = (traces / 2..traces).flat_map(trace).collect();
    store.append(rest).await.expect("append");
    let again: Vec<Span> = (2800..3300).flat_map(trace).collect();
    store.append(again).await.expect("append the retried batch");
    let mut old = span(9, 120, "process_query".into());
    old.trace_id = TraceId([9; 16]);
    store.append(vec![old]).await.expect("append");
    let f = Fixture {
        router: crate::router(
            Arc::clone(&store) as Arc<dyn Store>,
            Arc::new(PriceTable::empty()),
        ),
        _dir: dir,
    };

    let (status, body) = f.get("/api/v1/analytics/errors", "filter=").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (body["traces"].clone(), body["truncated"].clone()),
        (json!(traces), json!(false))
    );
    assert_eq!(body["errors"][0]["error_type"], json!("RateLimitError"));
    assert_eq!(body["errors"][0]["count"], json!(traces / 20));
    assert_eq!(
        body["errors"][0]["example_trace_ids"]
            .as_array()
            .map(Vec::len),
        Some(5)
    );

    let (status, body) = f.get("/api/v1/analytics/operations", "filter=").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let ops = body["operations"].as_array().expect("operations");
    let api = ops
        .iter()
        .find(|o| o["name"] == "api_call")
        .expect("api_call");
    assert_eq!(
        (api["count"].clone(), api["error_count"].clone()),
        (json!(traces), json!(traces / 20))
    );
    // Durations 1..=40 ms, 150 of each: the exact p50 is 20 ms, p99 40 ms.
    let p50 = api["p50_nano"].as_f64().expect("p50");
    assert!((p50 - 20e6).abs() <= 0.01 * 20e6, "{p50}");
    assert_eq!(api["max_nano"], json!(40_000_000));

    // A filter counts only what it matches; the two-hour-old trace is in
    // a 3 h range.
    let (_, body) = f
        .get(
            "/api/v1/analytics/operations",
            r#"filter={ status = error }"#,
        )
        .await;
    assert_eq!(body["traces"], json!(traces / 20));
    let (_, body) = f
        .get_uri("/api/v1/analytics/series?since=3h&bucket=1h")
        .await;
    let counted: u64 = body["series"]
        .as_array()
        .expect("series")
        .iter()
        .map(|b| b["traces"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(counted, u64::from(traces) + 1, "{}", body["series"]);
}

/// A needle among 12 000 traces over three blocks and memory: one span
/// with a unique `user_id`, sent first; one resource with a unique
/// deployment. Search reads a few traces, not 5 000, and finds them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attribute_needles_are_found_anywhere_in_range() {
    use chaintrace_model::KeyValue;
    let dir = tempfile::tempdir().expect("temp dir");
    let (store, _) = EmbeddedStore::open(EmbeddedConfig::new(dir.path())).expect("store opens");
    let store = Arc::new(store);
    let plain = Arc::new(Resource {
        attributes: vec![
            KeyValue::new("service.name", "rag"),
            KeyValue::new("deployment", "main"),
        ],
    });
    let canary = Arc::new(Resource {
        attributes: vec![
            KeyValue::new("service.name", "rag"),
            KeyValue::new("deployment", "canary"),
        ],
    });
    let trace = |i: u32| {
        let mut id = [5u8; 16];
        id[..4].copy_from_slice(&i.to_be_bytes());
        let mut root = span(0, 40, "process_query".into());
        root.trace_id = TraceId(id);
        root.start.0 += u64::from(i) * 100_000;
        root.end.0 = root.start.0 + 3_000_000;
        root.resource = Arc::clone(&plain);
        root.attributes = vec![KeyValue::new("user_id", format!("u-{}", i % 97))];
        let mut child = root.clone();
        child.span_id = SpanId([1; 8]);
        child.parent_span_id = Some(root.span_id);
        child.name = "api_call".into();
        vec![root, child]
    };
    let mut needle = trace(0);
    needle[1]
        .attributes
        .push(KeyValue::new("user_id", "u-needle"));
    needle[1].attributes.swap(0, 1);
    store.append(needle).await.expect("append");
    for part in 0..3u32 {
        let spans: Vec<Span> = (1 + part * 4000..1 + (part + 1) * 4000)
            .flat_map(trace)
            .collect();
        store.append(spans).await.expect("append");
        tokio::task::block_in_place(|| store.flush()).expect("cut");
    }
    let mut on_canary = trace(20_000);
    on_canary
        .iter_mut()
        .for_each(|s| s.resource = Arc::clone(&canary));
    store.append(on_canary).await.expect("append");
    let f = Fixture {
        router: crate::router(
            Arc::clone(&store) as Arc<dyn Store>,
            Arc::new(PriceTable::empty()),
        ),
        _dir: dir,
    };
    let needle_id = "00000000";
    let (status, body) = f
        .get("/api/v1/search", r#"q={ span.user_id = "u-needle" }"#)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let found: Vec<&str> = body["traces"]
        .as_array()
        .expect("traces")
        .iter()
        .map(|t| t["trace_id"].as_str().expect("id"))
        .collect();
    assert_eq!(found.len(), 1, "{body}");
    assert!(found[0].starts_with(needle_id), "{body}");
    assert!(
        body["inspected"].as_u64().expect("inspected") < 10,
        "{body}"
    );
    assert_eq!(body["truncated"], json!(false));

    let (status, body) = f
        .get(
            "/api/v1/search",
            r#"q={ resource.deployment = "canary" && duration > 2ms }"#,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["traces"].as_array().map(Vec::len), Some(1), "{body}");
    assert!(
        body["inspected"].as_u64().expect("inspected") < 10,
        "{body}"
    );
    // An unscoped key finds the span attribute too; a value nobody has
    // finds nothing, having read nothing.
    let (_, body) = f
        .get("/api/v1/search", r#"q={ .user_id = "u-needle" }"#)
        .await;
    assert_eq!(body["traces"].as_array().map(Vec::len), Some(1), "{body}");
    let (_, body) = f
        .get("/api/v1/search", r#"q={ span.user_id = "nobody" }"#)
        .await;
    assert_eq!(
        (body["traces"].clone(), body["inspected"].clone()),
        (json!([]), json!(0))
    );
}

/// The same figures from the rollups as from reading every trace: counts,
/// errors, critical path, tokens and cost exactly, percentiles within the
/// sketch's 1 %; over two blocks (one compacted from two) and the head.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analytics_from_rollups_equal_analytics_from_the_traces() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = EmbeddedConfig::new(dir.path());
    config.figures = Some(chaintrace_store::Figures::new(
        chaintrace_analysis::RollupFigures,
    ));
    config.compaction_min_blocks = 2;
    config.compaction_fresh_blocks = 1;
    let (store, _) = EmbeddedStore::open(config).expect("store opens");
    let store = Arc::new(store);
    // At the start of a ten-minute compaction window (the default), so
    // that the blocks holding the re-sent duplicates always merge: blocks
    // whose first spans fall in two windows are never compacted together,
    // and the rollups would count those duplicates twice (a known edge).
    // Without this the test failed when `now - 40 min` lay in the last
    // 25 s of a window.
    let first = (UnixNanos::now().0 - 40 * MIN) / (10 * MIN) * (10 * MIN);
    let trace = |i: u32| {
        let mut id = [3u8; 16];
        id[..4].copy_from_slice(&i.to_be_bytes());
        let mut root = span(0, 0, "process_query".into());
        root.trace_id = TraceId(id);
        root.start.0 = first + u64::from(i) * 250_000_000;
        root.end.0 = root.start.0 + 900_000_000;
        let mut call = root.clone();
        call.span_id = SpanId([1; 8]);
        call.parent_span_id = Some(root.span_id);
        call.name = "llm_call".into();
        call.start.0 += 100_000_000;
        call.end.0 = call.start.0 + 1_000_000 * u64::from(100 + i % 400);
        call.attributes = vec![
            chaintrace_model::KeyValue::new("gen_ai.request.model", "gpt-4o-mini"),
            chaintrace_model::KeyValue::new("gen_ai.usage.input_tokens", i64::from(500 + i % 50)),
            chaintrace_model::KeyValue::new("gen_ai.usage.output_tokens", i64::from(40 + i % 7)),
        ];
        if i.is_multiple_of(13) {
            call.status = Status {
                code: chaintrace_model::StatusCode::Error,
                message: "429".into(),
            };
        }
        let mut step = root.clone();
        step.span_id = SpanId([2; 8]);
        step.parent_span_id = Some(root.span_id);
        step.name = "vector_search".into();
        step.end.0 = step.start.0 + 1_000_000 * u64::from(20 + i % 30);
        vec![root, call, step]
    };
    // 2 400 traces over ten minutes: three cuts (two of them compacted
    // into one block) and the head. Duplicates, as a client's retries make
    // them: re-sent into the same head, and re-sent into the next cut
    // (compaction then keeps one copy).
    for part in 0..4u32 {
        let mut spans: Vec<Span> = (part * 600..part * 600 + 600).flat_map(trace).collect();
        match part {
            0 => spans.extend((0..50).flat_map(trace)),
            1 => spans.extend((100..200).flat_map(trace)),
            _ => {}
        }
        store.append(spans).await.expect("append");
        if part < 3 {
            tokio::task::block_in_place(|| store.flush()).expect("cut");
        }
    }
    tokio::task::block_in_place(|| store.compact()).expect("compaction");
    let f = Fixture {
        router: crate::router(
            Arc::clone(&store) as Arc<dyn Store>,
            Arc::new(PriceTable::builtin()),
        ),
        _dir: dir,
    };
    let close = |a: &Value, b: &Value| {
        let (a, b) = (a.as_f64().unwrap_or(-1.0), b.as_f64().unwrap_or(-2.0));
        (a - b).abs() <= 0.0101 * a.abs().max(b.abs())
    };
    for (what, list) in [
        ("operations", "operations"),
        ("models", "models"),
        ("bottlenecks", "bottlenecks"),
    ] {
        let path = format!("/api/v1/analytics/{what}");
        let (status, rolled) = f.get(&path, "source=auto").await;
        assert_eq!(status, StatusCode::OK, "{rolled}");
        assert_eq!(rolled["source"], json!("rollups"), "{rolled}");
        let (status, walked) = f.get(&path, "source=traces").await;
        assert_eq!(status, StatusCode::OK, "{walked}");
        assert_eq!(walked["source"], json!("traces"));
        assert_eq!(
            (&rolled["traces"], &walked["traces"]),
            (&json!(2400), &json!(2400)),
            "{what}"
        );
        let (r, w) = (
            rolled[list].as_array().unwrap(),
            walked[list].as_array().unwrap(),
        );
        assert_eq!(r.len(), w.len(), "{what}: {rolled} vs {walked}");
        assert!(!r.is_empty(), "{what}");
        for (r, w) in r.iter().zip(w) {
            let r = r.as_object().unwrap();
            for (key, wv) in w.as_object().unwrap() {
                let rv = &r[key];
                if key.starts_with('p') && key.ends_with("_nano") {
                    assert!(close(rv, wv), "{what} {key}: {rv} vs {wv}");
                } else if key.contains("cost") || key.contains("share") || key.ends_with("rate") {
                    let (a, b) = (rv.as_f64().unwrap(), wv.as_f64().unwrap());
                    assert!(
                        (a - b).abs() <= 1e-9 * a.abs().max(1.0),
                        "{what} {key}: {a} vs {b}"
                    );
                } else {
                    assert_eq!(rv, wv, "{what} {key}");
                }
            }
        }
    }
    // Error groups: the same groups, counts, times, examples and messages.
    let rolled = f.get("/api/v1/analytics/errors", "source=rollups").await.1;
    let walked = f.get("/api/v1/analytics/errors", "source=traces").await.1;
    assert_eq!(rolled["source"], json!("rollups"));
    assert_eq!(rolled["errors"], walked["errors"]);
    assert_eq!(rolled["errors"][0]["count"], json!(2400 / 13 + 1));
    let models = f.get("/api/v1/analytics/models", "source=rollups").await.1;
    assert_eq!(models["models"][0]["calls"], json!(2400));
    assert!(
        models["models"][0]["cost_usd"].as_f64().unwrap() > 0.0,
        "{models}"
    );
    assert_eq!(models["models"][0]["error_count"], json!(2400 / 13 + 1));

    // A series in five-minute buckets: the same traces in each.
    let series = |source: &'static str| {
        let f = &f;
        async move {
            let uri = format!("/api/v1/analytics/series?source={source}&bucket=5m&since=1h");
            let (status, body) = f.get_uri(&uri).await;
            assert_eq!(status, StatusCode::OK);
            body
        }
    };
    let (rolled, walked) = (series("rollups").await, series("traces").await);
    assert_eq!(rolled["source"], json!("rollups"));
    let counts = |v: &Value| -> Vec<(Value, Value)> {
        v["series"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| (b["start"].clone(), b["traces"].clone()))
            .collect()
    };
    // Ten minutes from a window's start fill exactly two five-minute buckets.
    assert_eq!(counts(&rolled).len(), 2, "{rolled}");
    assert_eq!(counts(&rolled), counts(&walked));

    // What rollups cannot answer is said, not guessed.
    for (path, query, needle) in [
        (
            "/api/v1/analytics/operations",
            "source=rollups&filter=%7B%20status%20%3D%20error%20%7D",
            "filter",
        ),
        ("/api/v1/sessions", "source=rollups", "sessions"),
        (
            "/api/v1/analytics/series",
            "source=rollups&bucket=90s",
            "whole minutes",
        ),
        (
            "/api/v1/analytics/operations",
            "source=everything",
            "auto, rollups or traces",
        ),
    ] {
        let (status, body) = f.get_uri(&format!("{path}?{query}&since=1h")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}?{query}");
        let text = body.to_string();
        assert!(text.contains(needle), "{text}");
    }
}
