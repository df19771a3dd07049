//! Queries built to make the server allocate outside the memory pool or run
//! unbounded: each must be refused with an error naming what was refused,
//! before the value is built. The analytical queries the caps must not
//! break run beside them.

use serde_json::json;

use super::tests::{many_spans, rag_chain};
use super::*;

async fn refused(sql: &str) -> SqlError {
    match run_sql(rag_chain(), sql, &SqlLimits::default()).await {
        Ok(r) => panic!("{sql}: want a refusal, got {} rows", r.rows.len()),
        Err(e) => e,
    }
}

async fn too_big(sql: &str) -> String {
    match refused(sql).await {
        SqlError::TooBig(e) => e.to_string(),
        other => panic!("{sql}: want TooBig, got {other:?}"),
    }
}

#[tokio::test]
async fn constant_values_past_the_cap_are_refused_while_planning() {
    // The simplifier folds these at plan time: the check runs there.
    assert_eq!(
        too_big("SELECT repeat('x', 1000000000)").await,
        "repeat would build 1000000000 bytes, over the 16 MiB value cap"
    );
    assert_eq!(
        too_big("SELECT length(repeat('ab', 100000000)) FROM spans").await,
        "repeat would build 200000000 bytes, over the 16 MiB value cap"
    );
    assert_eq!(
        too_big("SELECT lpad('x', 1000000000)").await,
        "lpad would build 1000000001 bytes, over the 16 MiB value cap"
    );
    assert_eq!(
        too_big("SELECT rpad('x', 100000000, 'é')").await,
        "rpad would build 200000001 bytes, over the 16 MiB value cap"
    );
    let e = too_big("SELECT replace(repeat('x', 8000), 'x', repeat('y', 8000))").await;
    assert!(e.starts_with("replace would build "), "{e}");
    let e = too_big("SELECT regexp_replace(repeat('x', 8000), '', repeat('y', 8000), 'g')").await;
    assert!(e.starts_with("regexp_replace would build "), "{e}");
    // Values built from a row: one span, `llm_call` (8 bytes) repeated
    // into 8 MB each, joined past the cap.
    let one = "FROM spans WHERE name = 'llm_call' AND trace_id LIKE '01%'";
    let many = ["repeat(name, 1000000)"; 4].join(", ");
    assert_eq!(
        too_big(&format!("SELECT length(concat({many})) {one}")).await,
        "concat would build 32000000 bytes, over the 16 MiB value cap"
    );
    assert_eq!(
        too_big(&format!("SELECT length(concat_ws('-', {many})) {one}")).await,
        "concat_ws would build 32000003 bytes, over the 16 MiB value cap"
    );
    // `||` is capped like concat.
    assert_eq!(
        too_big(&format!(
            "SELECT length(repeat(name, 1500000) || repeat(name, 1500000)) {one}"
        ))
        .await,
        "|| would build 24000000 bytes, over the 16 MiB value cap"
    );
    // Folded constants under the value cap are still refused as constants.
    let e = refused("SELECT repeat('x', 10000000) || repeat('y', 10000000)").await;
    assert!(
        matches!(e, SqlError::Refused(PlanRefused::BigConstant { .. })),
        "{e:?}"
    );
    // (`1e9` is a float, which DataFusion 55 refuses as a count.)
    let e = refused("SELECT repeat('x', CAST(1e9 AS BIGINT))").await;
    assert!(
        e.to_string()
            .ends_with("build smaller values (the cap guards the server's memory)"),
        "{e}"
    );
}

#[tokio::test]
async fn per_row_values_are_capped_while_running() {
    // Not constant: the count comes from each row.
    let e = too_big("SELECT repeat(name, duration_ns) FROM spans").await;
    assert!(e.starts_with("repeat would build "), "{e}");
    assert!(e.ends_with(" bytes, over the 16 MiB value cap"), "{e}");
    // Each value is under the value cap, but one batch of them is not.
    let e = match run_sql(
        many_spans(2_000),
        "SELECT repeat(name, 10000 + duration_ns % 2) FROM spans",
        &SqlLimits::default(),
    )
    .await
    {
        Err(SqlError::TooBig(e)) => e.to_string(),
        other => panic!("want TooBig, got {other:?}"),
    };
    assert!(e.starts_with("repeat would build "), "{e}");
    assert!(
        e.ends_with("in one call, over the 64 MiB cap for one call"),
        "{e}"
    );
    // A chain of `||` over a column: each link is capped.
    let chain = vec!["attributes['user_id']"; 200].join(" || ");
    let r = run_sql(
        rag_chain(),
        &format!("SELECT length({chain}) FROM spans WHERE name = 'fetch_context'"),
        &SqlLimits::default(),
    )
    .await
    .unwrap();
    assert_eq!(r.rows, vec![vec![json!(800)], vec![json!(800)]]);
}

#[tokio::test]
async fn big_constants_are_refused_as_constants() {
    // Under the value cap, but a constant is copied into every row.
    let e = refused("SELECT repeat('x', 100000) FROM spans").await;
    assert!(
        matches!(e, SqlError::Refused(PlanRefused::BigConstant { .. })),
        "{e:?}"
    );
    assert!(
        e.to_string().starts_with("the query holds a constant of "),
        "{e}"
    );
}

#[tokio::test]
async fn generators_are_removed() {
    for sql in [
        "SELECT * FROM range(0, 100000000)",
        "SELECT * FROM generate_series(1, 100000000)",
        "SELECT range(0, 100000000)",
        "SELECT generate_series(1, 100000000)",
        "SELECT array_repeat('x', 100000000)",
        "SELECT list_repeat('x', 100000000)",
        "SELECT array_resize(make_array(1), 100000000, 0)",
    ] {
        let e = refused(sql).await;
        assert!(matches!(e, SqlError::Plan(_)), "{sql}: {e:?}");
        let text = e.to_string();
        assert!(
            text.contains("not found") || text.contains("Invalid function"),
            "{sql}: {text}"
        );
    }
}

#[tokio::test]
async fn big_joins_without_equality_are_refused() {
    let e = match run_sql(
        many_spans(2_000),
        "SELECT count(*) FROM spans a, spans b",
        &SqlLimits::default(),
    )
    .await
    {
        Err(e) => e,
        Ok(r) => panic!("want a refusal, got {r:?}"),
    };
    assert_eq!(
        e.to_string(),
        "a join without an equality condition (a cross join) of up to 2000 × 2000 rows \
         would pair 4000000 rows, at most 1000000; join on equal columns \
         (e.g. a.trace_id = b.trace_id) or narrow both sides first"
    );
    let e = run_sql(
        many_spans(2_000),
        "SELECT count(*) FROM spans a JOIN spans b ON a.duration_ns < b.duration_ns",
        &SqlLimits::default(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(e, SqlError::Refused(PlanRefused::Unkeyed { .. })),
        "{e:?}"
    );
    // Small sides pass: a limit bounds them.
    let r = run_sql(
        many_spans(2_000),
        "SELECT count(*) FROM (SELECT * FROM spans LIMIT 100) a, (SELECT * FROM spans LIMIT 100) b",
        &SqlLimits::default(),
    )
    .await
    .unwrap();
    assert_eq!(r.rows, vec![vec![json!(10_000)]]);
    // A filter that names both sides becomes a key.
    let r = run_sql(
        many_spans(2_000),
        "SELECT count(*) FROM spans a, spans b WHERE a.span_id = b.span_id",
        &SqlLimits::default(),
    )
    .await
    .unwrap();
    assert_eq!(r.rows, vec![vec![json!(2_000)]]);
}

#[tokio::test]
async fn joins_are_counted() {
    let joins = (1..=9)
        .map(|i| format!("JOIN spans s{i} ON s{i}.span_id = s0.span_id"))
        .collect::<Vec<_>>()
        .join(" ");
    let e = refused(&format!("SELECT count(*) FROM spans s0 {joins}")).await;
    assert_eq!(e.to_string(), "the query joins 9 times, at most 8");
}

#[tokio::test]
async fn answers_are_capped_in_bytes() {
    let limits = SqlLimits {
        max_answer_bytes: 100,
        ..SqlLimits::default()
    };
    let r = run_sql(rag_chain(), "SELECT trace_id FROM spans", &limits)
        .await
        .unwrap();
    // Each cell is 34 bytes as JSON.
    assert_eq!(r.rows.len(), 2);
    assert!(r.truncated);
}

#[tokio::test]
async fn analytical_queries_still_work() {
    // Parent and child through a self-join on trace and parent ids.
    let r = run_sql(
        rag_chain(),
        "SELECT p.name AS parent, c.name AS child, count(*) AS n \
         FROM spans c JOIN spans p ON c.trace_id = p.trace_id AND c.parent_span_id = p.span_id \
         WHERE p.name = 'llm_call' GROUP BY p.name, c.name ORDER BY child",
        &SqlLimits::default(),
    )
    .await
    .unwrap();
    assert_eq!(
        json!(r.rows),
        json!([
            ["llm_call", "api_call", 2],
            ["llm_call", "prompt_assembly", 2]
        ])
    );
    let r = run_sql(
        rag_chain(),
        "SELECT service, approx_percentile_cont(0.5) WITHIN GROUP (ORDER BY duration_ms) AS p50, \
                concat(service, '/', count(*)) AS label, lpad(CAST(count(*) AS VARCHAR), 4, '0') AS padded, \
                repeat('-', 3) || name AS dashed \
         FROM spans WHERE name = 'process_query' GROUP BY service, name",
        &SqlLimits::default(),
    )
    .await
    .unwrap();
    assert_eq!(
        json!(r.rows),
        json!([[
            "rag-chain",
            1000.0,
            "rag-chain/2",
            "0002",
            "---process_query"
        ]])
    );
    // `||` keeps its null: null when a side is null.
    let r = run_sql(
        rag_chain(),
        "SELECT 'a' || NULL, concat('a', NULL)",
        &SqlLimits::default(),
    )
    .await
    .unwrap();
    assert_eq!(json!(r.rows), json!([[null, "a"]]));
}

#[tokio::test]
async fn planning_stops_when_the_caller_gives_up() {
    // A stopped query fails at its next planning step: a zero time limit
    // stops it before planning ends.
    let limits = SqlLimits {
        timeout: std::time::Duration::ZERO,
        ..SqlLimits::default()
    };
    let e = run_sql(rag_chain(), "SELECT name FROM spans", &limits)
        .await
        .unwrap_err();
    assert!(matches!(e, SqlError::Timeout(_)), "{e:?}");
    // The hold is kept until the query thread ends, then dropped.
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    struct Hold(std::sync::mpsc::Sender<()>);
    impl Drop for Hold {
        fn drop(&mut self) {
            let _ = self.0.send(());
        }
    }
    let r = run_sql_holding(rag_chain(), "SELECT 1", &SqlLimits::default(), Hold(tx))
        .await
        .unwrap();
    assert_eq!(r.rows, vec![vec![json!(1)]]);
    assert!(rx.recv().is_ok());
}

#[test]
fn planning_checkpoints_fail_once_stopped() {
    use datafusion::optimizer::{OptimizerContext, OptimizerRule};
    let stop = Stop::at(std::time::Instant::now() + std::time::Duration::from_secs(60));
    let checkpoint = PlanCheckpoint(stop.clone());
    let plan = LogicalPlan::EmptyRelation(datafusion::logical_expr::EmptyRelation {
        produce_one_row: true,
        schema: Arc::new(datafusion::common::DFSchema::empty()),
    });
    let config = OptimizerContext::new();
    assert!(checkpoint.rewrite(plan.clone(), &config).is_ok());
    stop.cancel();
    let e = checkpoint.rewrite(plan, &config).unwrap_err();
    assert_eq!(e.to_string(), "Execution error: the query was stopped");
}
