//! `run_sql` over the founding RAG chain: one trace that succeeds, one that
//! fails with `RateLimitError`, and one span in the OpenTelemetry GenAI style.

use std::sync::Arc;
use std::time::Duration;

use chaintrace_model::{
    AnyValue, Event, KeyValue, Resource, Span, SpanColumn, SpanId, SpanKind, Status, StatusCode,
    TraceId, UnixNanos,
};
use serde_json::{json, Value};

use super::*;

/// 2026-01-01T00:00:00Z.
const BASE: u64 = 1_767_225_600_000_000_000;
const MS: u64 = 1_000_000;

fn resource(service: &str) -> Arc<Resource> {
    Arc::new(Resource {
        attributes: vec![
            KeyValue::new("service.name", service),
            KeyValue::new("deployment.environment", "test"),
        ],
    })
}

#[allow(clippy::too_many_arguments)]
fn span(
    trace: u8,
    id: u8,
    parent: Option<u8>,
    name: &str,
    start_ms: u64,
    end_ms: u64,
    attrs: Vec<KeyValue>,
    resource: &Arc<Resource>,
) -> Span {
    let t0 = BASE + u64::from(trace - 1) * 60_000 * MS;
    Span {
        trace_id: TraceId([trace; 16]),
        span_id: SpanId([trace, id, 0, 0, 0, 0, 0, 1]),
        parent_span_id: parent.map(|p| SpanId([trace, p, 0, 0, 0, 0, 0, 1])),
        name: name.into(),
        kind: SpanKind::Internal,
        start: UnixNanos(t0 + start_ms * MS),
        end: UnixNanos(t0 + end_ms * MS),
        status: Status::default(),
        attributes: attrs,
        events: Vec::new(),
        links: Vec::new(),
        resource: Arc::clone(resource),
        scope: Default::default(),
    }
}

fn error(mut span: Span, message: &str) -> Span {
    span.status = Status {
        code: StatusCode::Error,
        message: message.into(),
    };
    span
}

fn exception_event(ty: &str) -> Event {
    Event {
        time: UnixNanos(BASE),
        name: "exception".into(),
        attributes: vec![
            KeyValue::new("exception.type", ty),
            KeyValue::new("exception.message", "rate limited"),
        ],
    }
}

/// The founding chain, run twice (the second run fails), plus one GenAI span.
pub(crate) fn rag_chain() -> Vec<Span> {
    let rag = resource("rag-chain");
    let mut spans = Vec::new();
    for trace in [1u8, 2] {
        spans.push(span(trace, 1, None, "process_query", 0, 1000, vec![], &rag));
        spans.push(span(
            trace,
            2,
            Some(1),
            "fetch_context",
            0,
            50,
            vec![
                KeyValue::new("user_id", "u-42"),
                KeyValue::new("context_size_bytes", 2048i64),
            ],
            &rag,
        ));
        spans.push(span(
            trace,
            3,
            Some(1),
            "embed_query",
            50,
            150,
            vec![
                KeyValue::new("model", "text-embedding-3-small"),
                KeyValue::new("embedding_dim", 1536i64),
            ],
            &rag,
        ));
        spans.push(span(
            trace,
            4,
            Some(1),
            "vector_search",
            150,
            300,
            vec![
                KeyValue::new("database", "pinecone"),
                KeyValue::new("results_found", 5i64),
            ],
            &rag,
        ));
        spans.push(span(
            trace,
            5,
            Some(1),
            "llm_call",
            300,
            1000,
            vec![KeyValue::new("model", "claude-3-opus-20250219")],
            &rag,
        ));
        spans.push(span(
            trace,
            6,
            Some(5),
            "prompt_assembly",
            300,
            320,
            vec![KeyValue::new("prompt_length", 900i64)],
            &rag,
        ));
        let api_attrs = if trace == 1 {
            vec![
                KeyValue::new("input_tokens", 1200i64),
                KeyValue::new("output_tokens", 300i64),
                KeyValue::new("stop_reason", "end_turn"),
            ]
        } else {
            vec![
                KeyValue::new("input_tokens", 1100i64),
                KeyValue::new("status", "error"),
                KeyValue::new("error_type", "RateLimitError"),
                KeyValue::new("error_message", "429 Too Many Requests"),
            ]
        };
        let mut api = span(trace, 7, Some(5), "api_call", 320, 1000, api_attrs, &rag);
        api.kind = SpanKind::Client;
        api.events.push(Event {
            time: UnixNanos(BASE),
            name: "API request sent".into(),
            attributes: Vec::new(),
        });
        spans.push(api);
    }
    // The failing run: api_call fails, the exception propagates upwards.
    let failing = |spans: &[Span], name: &str| {
        spans
            .iter()
            .position(|s| s.trace_id.0[0] == 2 && s.name == name)
            .unwrap()
    };
    for name in ["process_query", "llm_call", "api_call"] {
        let i = failing(&spans, name);
        spans[i] = error(spans[i].clone(), "429 Too Many Requests");
    }
    let llm = failing(&spans, "llm_call");
    spans[llm]
        .events
        .push(exception_event("__main__.RateLimitError"));

    let chat = resource("chat-svc");
    let mut genai = span(
        3,
        1,
        None,
        "chat gpt-4o",
        0,
        2500,
        vec![
            KeyValue::new("gen_ai.request.model", "gpt-4o"),
            KeyValue::new("gen_ai.response.model", "gpt-4o-2024-08-06"),
            KeyValue::new("gen_ai.usage.input_tokens", 100i64),
            KeyValue::new("gen_ai.usage.output_tokens", AnyValue::String("20".into())),
            KeyValue::new("gen_ai.usage.output_tokens", 999i64),
        ],
        &chat,
    );
    genai.kind = SpanKind::Client;
    spans.push(genai);
    spans
}

async fn query(sql: &str) -> SqlResult {
    run_sql(rag_chain(), sql, &SqlLimits::default())
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

async fn query_err(sql: &str, limits: &SqlLimits) -> SqlError {
    match run_sql(rag_chain(), sql, limits).await {
        Ok(r) => panic!("{sql}: want an error, got {r:?}"),
        Err(e) => e,
    }
}

fn rows(result: &SqlResult) -> Value {
    json!(result.rows)
}

#[tokio::test]
async fn counts_per_name() {
    let r = query("SELECT name, count(*) AS n FROM spans GROUP BY name ORDER BY name").await;
    assert_eq!(
        serde_json::to_value(&r.columns).unwrap(),
        json!([{"name": "name", "type": "Utf8"}, {"name": "n", "type": "Int64"}])
    );
    assert_eq!(
        rows(&r),
        json!([
            ["api_call", 2],
            ["chat gpt-4o", 1],
            ["embed_query", 2],
            ["fetch_context", 2],
            ["llm_call", 2],
            ["process_query", 2],
            ["prompt_assembly", 2],
            ["vector_search", 2]
        ])
    );
    assert!(!r.truncated);
}

#[tokio::test]
async fn percentiles_per_name() {
    // DataFusion 55 spells the percentile as an ordered-set aggregate; the
    // older argument form is accepted too.
    let r = query(
        "SELECT name, approx_percentile_cont(0.99) WITHIN GROUP (ORDER BY duration_ms) AS p99, \
                approx_percentile_cont(duration_ms, 0.5) AS p50, median(duration_ms) AS median \
         FROM spans WHERE service = 'rag-chain' GROUP BY name ORDER BY p99 DESC, name LIMIT 3",
    )
    .await;
    assert_eq!(
        rows(&r),
        json!([
            ["process_query", 1000.0, 1000.0, 1000.0],
            ["llm_call", 700.0, 700.0, 700.0],
            ["api_call", 680.0, 680.0, 680.0]
        ])
    );
}

#[tokio::test]
async fn attributes_by_key() {
    let r = query(
        "SELECT attributes['user_id'] AS user_id, attributes['missing'] AS missing, \
                resource_attributes['service.name'] AS svc \
         FROM spans WHERE name = 'fetch_context' ORDER BY trace_id",
    )
    .await;
    assert_eq!(
        rows(&r),
        json!([["u-42", null, "rag-chain"], ["u-42", null, "rag-chain"]])
    );
    let r =
        query("SELECT count(*) FROM spans WHERE CAST(attributes['results_found'] AS BIGINT) >= 5")
            .await;
    assert_eq!(rows(&r), json!([[2]]));
    // Duplicate keys: the first one sent wins, as everywhere in chaintrace.
    let r = query("SELECT attributes, map_keys(attributes) FROM spans WHERE service = 'chat-svc'")
        .await;
    assert_eq!(
        rows(&r),
        json!([[
            {
                "gen_ai.request.model": "gpt-4o",
                "gen_ai.response.model": "gpt-4o-2024-08-06",
                "gen_ai.usage.input_tokens": "100",
                "gen_ai.usage.output_tokens": "20"
            },
            [
                "gen_ai.request.model",
                "gen_ai.response.model",
                "gen_ai.usage.input_tokens",
                "gen_ai.usage.output_tokens"
            ]
        ]])
    );
}

#[tokio::test]
async fn errors_and_error_types() {
    let r = query(
        "SELECT name, status, status_message, error_type FROM spans \
         WHERE status = 'error' ORDER BY start_time, name",
    )
    .await;
    assert_eq!(
        rows(&r),
        json!([
            ["process_query", "error", "429 Too Many Requests", null],
            [
                "llm_call",
                "error",
                "429 Too Many Requests",
                "__main__.RateLimitError"
            ],
            [
                "api_call",
                "error",
                "429 Too Many Requests",
                "RateLimitError"
            ]
        ])
    );
    // The founding question.
    let r = query(
        "SELECT trace_id, name FROM spans \
         WHERE name = 'llm_call' AND error_type LIKE '%RateLimitError'",
    )
    .await;
    assert_eq!(rows(&r), json!([["02".repeat(16), "llm_call"]]));
    let r = query("SELECT count(*) FROM spans WHERE regexp_like(error_type, 'RateLimit')").await;
    assert_eq!(rows(&r), json!([[2]]));
}

#[tokio::test]
async fn token_sums_per_model() {
    let r = query(
        "SELECT llm_model, count(*) AS calls, sum(input_tokens) AS input, sum(output_tokens) AS output \
         FROM spans WHERE input_tokens IS NOT NULL OR output_tokens IS NOT NULL \
         GROUP BY llm_model ORDER BY llm_model",
    )
    .await;
    assert_eq!(
        rows(&r),
        json!([
            ["claude-3-opus-20250219", 2, 2300, 300],
            ["gpt-4o-2024-08-06", 1, 100, 20]
        ])
    );
    let r = query("SELECT name, llm_model FROM spans WHERE trace_id = '0101010101010101010101010101010101010101' OR (trace_id LIKE '01%' AND llm_model IS NOT NULL) ORDER BY name").await;
    assert_eq!(
        rows(&r),
        json!([
            ["api_call", "claude-3-opus-20250219"],
            ["embed_query", "text-embedding-3-small"],
            ["llm_call", "claude-3-opus-20250219"]
        ])
    );
}

#[tokio::test]
async fn timestamps_filter_and_print_as_rfc3339() {
    let r = query(
        "SELECT trace_id, min(start_time) AS start, max(end_time) AS end, count(*) AS spans \
         FROM spans WHERE start_time >= TIMESTAMP '2026-01-01T00:01:00Z' \
         GROUP BY trace_id ORDER BY start",
    )
    .await;
    assert_eq!(r.columns[1].data_type, "Timestamp(ns, \"UTC\")");
    assert_eq!(
        rows(&r),
        json!([
            [
                "02".repeat(16),
                "2026-01-01T00:01:00Z",
                "2026-01-01T00:01:01Z",
                7
            ],
            [
                "03".repeat(16),
                "2026-01-01T00:02:00Z",
                "2026-01-01T00:02:02.500Z",
                1
            ]
        ])
    );
    let r = query(
        "SELECT duration_ns, duration_ms, parent_span_id, kind FROM spans \
         WHERE name = 'api_call' AND start_time < TIMESTAMP '2026-01-01T00:00:30Z'",
    )
    .await;
    assert_eq!(
        rows(&r),
        json!([[680_000_000, 680.0, "0105000000000001", "client"]])
    );
}

#[tokio::test]
async fn rows_are_capped_and_marked_truncated() {
    let limits = SqlLimits {
        max_rows: 3,
        ..SqlLimits::default()
    };
    let r = run_sql(
        rag_chain(),
        "SELECT * FROM spans ORDER BY start_time",
        &limits,
    )
    .await
    .unwrap();
    assert_eq!(r.rows.len(), 3);
    assert!(r.truncated);
    assert_eq!(r.columns.len(), spans_schema().fields().len());
    let r = run_sql(rag_chain(), "SELECT name FROM spans LIMIT 3", &limits)
        .await
        .unwrap();
    assert_eq!(r.rows.len(), 3);
    assert!(!r.truncated, "exactly the cap is not truncated");
}

#[tokio::test]
async fn only_queries_are_allowed() {
    let limits = SqlLimits::default();
    for (sql, kind) in [
        ("CREATE TABLE t AS SELECT * FROM spans", "CREATE TABLE"),
        ("INSERT INTO spans SELECT * FROM spans", "INSERT INTO"),
        ("DELETE FROM spans", "DELETE FROM"),
        ("DROP TABLE spans", "DROP TABLE"),
        ("COPY spans TO '/tmp/spans.csv'", "COPY"),
        ("SET datafusion.execution.batch_size = 1", "SET"),
    ] {
        assert_eq!(
            query_err(sql, &limits).await.to_string(),
            format!("only SELECT queries are allowed, got {kind}")
        );
    }
    // EXPLAIN and DESCRIBE only read.
    let r = query("EXPLAIN SELECT name FROM spans WHERE status = 'error'").await;
    assert_eq!(r.columns[0].name, "plan_type");
    let r = query("DESCRIBE spans").await;
    assert_eq!(r.rows.len(), spans_schema().fields().len());
    assert_eq!(r.rows[0][0], json!("trace_id"));
}

#[tokio::test]
async fn syntax_and_planning_errors_carry_datafusion_messages() {
    let limits = SqlLimits::default();
    let e = query_err("SELEC name FROM spans", &limits).await;
    assert!(matches!(e, SqlError::Syntax(_)), "{e:?}");
    assert!(
        e.to_string().starts_with("SQL syntax error: Expected"),
        "{e}"
    );
    let e = query_err("SELECT nme FROM spans", &limits).await;
    assert!(matches!(e, SqlError::Plan(_)), "{e:?}");
    assert!(e.to_string().contains("nme"), "{e}");
    let e = query_err("SELECT * FROM traces", &limits).await;
    assert_eq!(
        e.to_string(),
        "table 'datafusion.public.traces' not found; the only table is `spans`"
    );
    let e = query_err("SELECT 1; SELECT 2", &limits).await;
    assert_eq!(e.to_string(), "send one statement at a time, got 2");
}

/// `n` spans with distinct ids, for the guard tests.
pub(crate) fn many_spans(n: u32) -> Vec<Span> {
    let rag = resource("bulk");
    (0..n)
        .map(|i| {
            let b = i.to_be_bytes();
            let mut s = span(1, 1, None, "bulk", 0, u64::from(i % 1000), vec![], &rag);
            s.trace_id = TraceId([1, b[0], b[1], b[2], b[3], 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
            s.span_id = SpanId([1, b[0], b[1], b[2], b[3], 0, 0, 1]);
            s.name = format!("op-{}", i % 5000).into();
            s
        })
        .collect()
}

#[tokio::test]
async fn memory_limit_fails_the_query_not_the_process() {
    let limits = SqlLimits {
        memory_bytes: 256 << 10,
        ..SqlLimits::default()
    };
    let e = run_sql(
        many_spans(50_000),
        "SELECT span_id, name, count(*) FROM spans GROUP BY span_id, name ORDER BY 3 DESC, 1",
        &limits,
    )
    .await
    .unwrap_err();
    assert!(matches!(e, SqlError::Memory { .. }), "{e:?}");
    assert!(
        e.to_string().contains("memory limit of 0 MiB") || e.to_string().contains("memory limit"),
        "{e}"
    );
    // The same query fits the default limit.
    let r = run_sql(
        many_spans(50_000),
        "SELECT count(DISTINCT span_id) FROM spans",
        &SqlLimits::default(),
    )
    .await
    .unwrap();
    assert_eq!(rows(&r), json!([[50_000]]));
}

#[tokio::test]
async fn time_limit_stops_a_runaway_query() {
    let limits = SqlLimits {
        timeout: Duration::from_millis(300),
        ..SqlLimits::default()
    };
    let started = std::time::Instant::now();
    let e = run_sql(
        many_spans(2_000),
        // Keyed joins, so the join guard lets them through: every span has
        // the same service, so this pairs 2 000³ rows.
        "SELECT count(*) FROM spans a JOIN spans b ON a.service = b.service \
         JOIN spans c ON b.service = c.service \
         WHERE a.duration_ns + b.duration_ns > c.duration_ns",
        &limits,
    )
    .await
    .unwrap_err();
    assert!(matches!(e, SqlError::Timeout(_)), "{e:?}");
    // Only a hang detector: without the stop, this query runs for hours.
    assert!(started.elapsed() < Duration::from_secs(60));
}

#[tokio::test]
async fn answer_serializes_as_columns_rows_truncated() {
    let r = query("SELECT 1 AS one, 'x' AS x, NULL AS nothing, 1.5 AS f").await;
    assert_eq!(
        serde_json::to_value(&r).unwrap(),
        json!({
            "columns": [
                {"name": "one", "type": "Int64"},
                {"name": "x", "type": "Utf8"},
                {"name": "nothing", "type": "Null"},
                {"name": "f", "type": "Float64"}
            ],
            "rows": [[1, "x", null, 1.5]],
            "truncated": false
        })
    );
}

#[tokio::test]
async fn big_queries_are_refused_not_crashing() {
    let limits = SqlLimits::default();
    let ors = vec!["name = 'x'"; 5_000].join(" OR ");
    let e = query_err(&format!("SELECT count(*) FROM spans WHERE {ors}"), &limits).await;
    assert!(matches!(e, SqlError::TooComplex { .. }), "{e:?}");
    let deep = format!("SELECT {}1{}", "(".repeat(10_000), ")".repeat(10_000));
    let e = query_err(&deep, &limits).await;
    assert_eq!(e.to_string(), "SQL syntax error: recursion limit exceeded");
    // Just under the cap plans and runs.
    let sum = vec!["duration_ns"; 400].join(" + ");
    let r = query(&format!("SELECT max({sum}) FROM spans")).await;
    assert_eq!(rows(&r), json!([[400 * 2_500_000_000i64]]));
}

/// A feed handing over `spans` in chunks of `chunk` whole traces (the
/// fixture's traces are contiguous), each read on a thread of its own; with
/// `columns`, also a columnar read built from the same spans as a store
/// would (own model, tokens and error type by the conventions).
fn feed_of(
    spans: Vec<Span>,
    chunk: usize,
    start: Option<u64>,
    end: Option<u64>,
    columns: bool,
) -> SpanFeed {
    let max_rows = spans.len() as u64;
    let spans = Arc::new(spans);
    let for_columns = Arc::clone(&spans);
    let open_columns: Option<OpenColumns> = columns.then(|| {
        Box::new(move |wanted: Vec<SpanColumn>| {
            let (tx, rx) = tokio::sync::mpsc::channel(2);
            let kept: Vec<Span> = for_columns
                .iter()
                .filter(|s| {
                    start.is_none_or(|t| s.start.0 >= t) && end.is_none_or(|t| s.start.0 <= t)
                })
                .cloned()
                .collect();
            std::thread::spawn(move || {
                for piece in kept.chunks(chunk.max(1)) {
                    if tx.blocking_send(Ok(raw_batch(piece, &wanted))).is_err() {
                        return;
                    }
                }
            });
            rx
        }) as OpenColumns
    });
    SpanFeed {
        start: start.map(UnixNanos),
        end: end.map(UnixNanos),
        max_rows,
        open: Box::new(move || {
            let (tx, rx) = tokio::sync::mpsc::channel(2);
            let spans = Arc::clone(&spans);
            std::thread::spawn(move || {
                let traces: Vec<&[Span]> =
                    spans.chunk_by(|a, b| a.trace_id == b.trace_id).collect();
                for piece in traces.chunks(chunk.max(1)) {
                    if tx.blocking_send(Ok(piece.concat())).is_err() {
                        return;
                    }
                }
            });
            rx
        }),
        open_columns,
    }
}

/// The `wanted` columns of `spans`, typed as [`SpanColumn`] says.
fn raw_batch(spans: &[Span], wanted: &[SpanColumn]) -> arrow_array::RecordBatch {
    use arrow_array::builder::{
        FixedSizeBinaryBuilder, Int64Builder, StringBuilder, UInt64Builder, UInt8Builder,
    };
    use arrow_array::ArrayRef;
    use chaintrace_model::conventions;
    let mut fields = Vec::new();
    let mut arrays: Vec<ArrayRef> = Vec::new();
    for &c in wanted {
        let (ty, array): (arrow_schema::DataType, ArrayRef) = match c {
            SpanColumn::TraceId | SpanColumn::SpanId | SpanColumn::ParentSpanId => {
                let len = if c == SpanColumn::TraceId { 16 } else { 8 };
                let mut b = FixedSizeBinaryBuilder::new(len);
                for s in spans {
                    let id = match c {
                        SpanColumn::TraceId => Some(s.trace_id.0.to_vec()),
                        SpanColumn::SpanId => Some(s.span_id.0.to_vec()),
                        _ => s.parent_span_id.map(|p| p.0.to_vec()),
                    };
                    match id {
                        Some(id) => b.append_value(id).unwrap(),
                        None => b.append_null(),
                    }
                }
                (
                    arrow_schema::DataType::FixedSizeBinary(len),
                    Arc::new(b.finish()),
                )
            }
            SpanColumn::Kind | SpanColumn::StatusCode => {
                let mut b = UInt8Builder::new();
                for s in spans {
                    b.append_value(if c == SpanColumn::Kind {
                        s.kind.otlp_number()
                    } else {
                        s.status.code.otlp_number()
                    });
                }
                (arrow_schema::DataType::UInt8, Arc::new(b.finish()))
            }
            SpanColumn::Start | SpanColumn::Duration => {
                let mut b = UInt64Builder::new();
                for s in spans {
                    b.append_value(if c == SpanColumn::Start {
                        s.start.0
                    } else {
                        s.duration().0
                    });
                }
                (arrow_schema::DataType::UInt64, Arc::new(b.finish()))
            }
            SpanColumn::InputTokens | SpanColumn::OutputTokens => {
                let mut b = Int64Builder::new();
                for s in spans {
                    let t = conventions::tokens(s);
                    let n = if c == SpanColumn::InputTokens {
                        t.input
                    } else {
                        t.output
                    };
                    b.append_option(n.map(|n| n as i64));
                }
                (arrow_schema::DataType::Int64, Arc::new(b.finish()))
            }
            _ => {
                let mut b = StringBuilder::new();
                for s in spans {
                    b.append_option(match c {
                        SpanColumn::Service => Some(s.service_name().to_string()),
                        SpanColumn::Name => Some(s.name.to_string()),
                        SpanColumn::StatusMessage => Some(s.status.message.to_string()),
                        SpanColumn::OwnModel => conventions::llm_model(s).map(str::to_string),
                        _ => conventions::error_type(s).map(str::to_string),
                    });
                }
                (arrow_schema::DataType::Utf8, Arc::new(b.finish()))
            }
        };
        fields.push(arrow_schema::Field::new(format!("{c:?}"), ty, true));
        arrays.push(array);
    }
    arrow_array::RecordBatch::try_new_with_options(
        Arc::new(arrow_schema::Schema::new(fields)),
        arrays,
        &arrow_array::RecordBatchOptions::new().with_row_count(Some(spans.len())),
    )
    .unwrap()
}

#[tokio::test]
async fn a_feed_answers_what_the_same_spans_in_memory_answer() {
    let spans = rag_chain();
    let queries = [
        "SELECT count(*) AS n FROM spans",
        "SELECT trace_id, span_id, parent_span_id, name, service, kind, status, status_message, start_time, end_time, duration_ns, duration_ms, input_tokens, output_tokens, error_type FROM spans ORDER BY span_id",
        "SELECT service, count(*), sum(input_tokens), approx_percentile_cont(duration_ms, 0.5) FROM spans GROUP BY service ORDER BY service",
        "SELECT name, count(*) AS n, sum(duration_ms) AS ms FROM spans GROUP BY name ORDER BY name",
        "SELECT llm_model, sum(input_tokens) AS i, sum(output_tokens) AS o FROM spans GROUP BY llm_model ORDER BY llm_model",
        "SELECT trace_id, span_id, error_type, status FROM spans WHERE status = 'error' ORDER BY span_id",
        "SELECT attributes['query'] AS q, resource_attributes['deployment.environment'] AS env FROM spans WHERE parent_span_id IS NULL ORDER BY q",
        "SELECT a.name, b.name FROM spans a JOIN spans b ON a.span_id = b.parent_span_id ORDER BY a.name, b.name",
        "SELECT * FROM spans ORDER BY span_id LIMIT 3",
    ];
    for query in queries {
        let want = run_sql(spans.clone(), query, &SqlLimits::default())
            .await
            .unwrap();
        for chunk in [1, 3, 1000] {
            for columns in [false, true] {
                let feed = feed_of(spans.clone(), chunk, None, None, columns);
                let got = run_sql_feed(feed, query, &SqlLimits::default(), ())
                    .await
                    .unwrap();
                assert_eq!(
                    got, want,
                    "{query} in chunks of {chunk}, columns: {columns}"
                );
            }
        }
    }
}

#[tokio::test]
async fn a_feed_keeps_only_spans_starting_in_its_range_but_models_come_from_ancestors() {
    let spans = rag_chain();
    // The second run only: spans starting in its minute.
    let (from, to) = (BASE + 60_000 * MS, BASE + 120_000 * MS - 1);
    let inside: Vec<Span> = spans
        .iter()
        .filter(|s| s.start.0 >= from && s.start.0 <= to)
        .cloned()
        .collect();
    assert!(!inside.is_empty() && inside.len() < spans.len());
    let query = "SELECT count(*) AS n, count(llm_model) AS with_model FROM spans";
    let got = run_sql_feed(
        feed_of(spans.clone(), 1000, Some(from), Some(to), true),
        query,
        &SqlLimits::default(),
        (),
    )
    .await
    .unwrap();
    let want = run_sql(inside, query, &SqlLimits::default()).await.unwrap();
    assert_eq!(got.rows[0][0], want.rows[0][0]);
    // A range holding only a token-counting span still names its model,
    // taken from the ancestor outside the range.
    let api = spans
        .iter()
        .find(|s| s.name == "api_call" && s.trace_id == TraceId([2; 16]))
        .expect("the second run's api_call");
    let only_api = run_sql_feed(
        feed_of(
            spans.clone(),
            1000,
            Some(api.start.0),
            Some(api.start.0),
            true,
        ),
        "SELECT name, llm_model FROM spans",
        &SqlLimits::default(),
        (),
    )
    .await
    .unwrap();
    let rows: Vec<&Value> = only_api.rows.iter().map(|r| &r[1]).collect();
    assert!(
        !rows.is_empty() && rows.iter().all(|m| m.is_string()),
        "{:?}",
        only_api.rows
    );
}

#[tokio::test]
async fn a_failing_feed_fails_the_query_with_its_message() {
    let feed = SpanFeed {
        start: None,
        end: None,
        max_rows: 0,
        open: Box::new(|| {
            let (tx, rx) = tokio::sync::mpsc::channel(1);
            std::thread::spawn(move || {
                let _ = tx.blocking_send(Err("block 42 is unreadable".to_string()));
            });
            rx
        }),
        open_columns: None,
    };
    let err = run_sql_feed(
        feed,
        "SELECT count(*) FROM spans",
        &SqlLimits::default(),
        (),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("block 42 is unreadable"), "{err}");
}

#[tokio::test]
async fn hot_columns_are_read_as_columns_and_the_rest_from_spans() {
    // Reading spans fails: a query that succeeds read columns only.
    let failing_spans = || -> Box<dyn Fn() -> SpanChunks + Send + Sync> {
        Box::new(|| {
            let (tx, rx) = tokio::sync::mpsc::channel(1);
            let _ = tx.try_send(Err("spans were read".to_string()));
            rx
        })
    };
    let spans = rag_chain();
    let columnar =
        "SELECT name, count(*) AS n, max(end_time) AS last FROM spans GROUP BY name ORDER BY name";
    let want = run_sql(spans.clone(), columnar, &SqlLimits::default())
        .await
        .unwrap();
    let mut feed = feed_of(spans.clone(), 1000, None, None, true);
    feed.open = failing_spans();
    let got = run_sql_feed(feed, columnar, &SqlLimits::default(), ())
        .await
        .unwrap();
    assert_eq!(got, want);

    let mut feed = feed_of(spans, 1000, None, None, true);
    feed.open = failing_spans();
    let err = run_sql_feed(
        feed,
        "SELECT llm_model FROM spans",
        &SqlLimits::default(),
        (),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("spans were read"), "{err}");
}

#[tokio::test]
async fn sample_weight_is_how_many_traces_a_trace_stands_for() {
    // Trace 1 was kept by tail sampling at 5 %; trace 2 (it failed) at 1.
    let mut spans = rag_chain();
    for s in spans.iter_mut().filter(|s| s.parent_span_id.is_none()) {
        let rate = if s.trace_id.0[0] == 1 { 0.05 } else { 1.0 };
        s.attributes.push(KeyValue::new(
            chaintrace_model::conventions::SAMPLING_RATE_KEY,
            rate,
        ));
    }
    let sql = "SELECT trace_id, count(*) AS sampled, sum(sample_weight) AS est \
               FROM spans WHERE name <> 'chat gpt-4o' GROUP BY trace_id ORDER BY trace_id";
    let r = run_sql(spans, sql, &SqlLimits::default()).await.unwrap();
    assert_eq!(
        rows(&r),
        json!([["01".repeat(16), 7, 140], ["02".repeat(16), 7, 7]])
    );
    // Without sampling every span weighs 1.
    let r = query("SELECT min(sample_weight) AS lo, max(sample_weight) AS hi FROM spans").await;
    assert_eq!(rows(&r), json!([[1, 1]]));
}
