//! Measures what the regex work budget does to the pathological pattern of
//! issue 19 and to an ordinary search, and prints one JSON object.
//!
//! ```text
//! cargo run --release -p chaintrace-query --example regex_budget
//! ```
//!
//! `calibration` times the pattern unbudgeted over a value small enough to
//! finish quickly, to show how many work units the slowest engine gets
//! through per nanosecond on this machine.

use std::sync::Arc;
use std::time::Instant;

use chaintrace_model::{
    KeyValue, Resource, Span, SpanId, SpanKind, Status, Trace, TraceId, UnixNanos,
};
use chaintrace_query::{evaluate, evaluate_within, parse, RegexBudget};

const PATHOLOGICAL: &str = r#"{ name =~ "[ab]*a[ab]{1000}" }"#;

fn span(trace: u32, id: u32, name: String) -> Span {
    let mut trace_id = [0; 16];
    trace_id[..4].copy_from_slice(&trace.to_be_bytes());
    let mut span_id = [0; 8];
    span_id[..4].copy_from_slice(&(id + 1).to_be_bytes());
    Span {
        trace_id: TraceId(trace_id),
        span_id: SpanId(span_id),
        parent_span_id: None,
        name: name.into(),
        kind: SpanKind::Internal,
        start: UnixNanos(0),
        end: UnixNanos(1),
        status: Status::default(),
        attributes: Vec::new(),
        events: Vec::new(),
        links: Vec::new(),
        resource: Arc::new(Resource::default()),
        scope: Default::default(),
    }
}

/// `len` pseudo-random `a`/`b` bytes: no DFA of the pattern fits in memory.
fn ab_text(len: usize) -> String {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if x & 1 == 0 {
                'a'
            } else {
                'b'
            }
        })
        .collect()
}

fn one_span_trace(name: String) -> Trace {
    Trace::new(TraceId([1; 16]), vec![span(1, 0, name)])
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let q = parse(PATHOLOGICAL)?;

    // The issue's case: a 2 MiB name under the default budget.
    let trace = one_span_trace(ab_text(2 << 20));
    let mut budget = RegexBudget::default();
    let started = Instant::now();
    let result = evaluate_within(&q, &trace, &mut budget);
    let budgeted_ns = started.elapsed().as_nanos();
    let stopped = result.as_ref().err().map(ToString::to_string);

    // Unbudgeted over 64 KiB: how fast the slowest engine really is.
    let small = one_span_trace(ab_text(64 << 10));
    let mut probe = RegexBudget::unlimited();
    let started = Instant::now();
    evaluate_within(&q, &small, &mut probe)?;
    let small_ns = started.elapsed().as_nanos();
    let small_units = probe.spent();

    // An ordinary search: 5 000 traces of 100 spans with short names.
    let ordinary = parse(r#"{ name =~ "llm.*" && span.model =~ "claude.*" }"#)?;
    let names = [
        "llm_call",
        "api_call",
        "retrieve_documents",
        "process_query",
    ];
    let traces: Vec<Trace> = (0..5_000u32)
        .map(|t| {
            let spans = (0..100u32)
                .map(|i| {
                    let name = names[(t + i) as usize % names.len()];
                    let mut s = span(t, i, name.to_string());
                    if name == "llm_call" {
                        s.attributes
                            .push(KeyValue::new("model", "claude-3-opus-20250219"));
                    }
                    s
                })
                .collect();
            Trace::new(span(t, 0, String::new()).trace_id, spans)
        })
        .collect();
    let mut search_budget = RegexBudget::default();
    let started = Instant::now();
    let mut matched = 0usize;
    let mut ordinary_stopped = None;
    for t in &traces {
        match evaluate_within(&ordinary, t, &mut search_budget) {
            Ok(found) => matched += usize::from(found.is_some()),
            Err(e) => {
                ordinary_stopped = Some(e.to_string());
                break;
            }
        }
    }
    let ordinary_ns = started.elapsed().as_nanos();
    let unbudgeted_matches = traces
        .iter()
        .filter(|t| evaluate(&ordinary, t).is_some())
        .count();

    println!(
        "{}",
        serde_json::json!({
            "pathological": {
                "query": PATHOLOGICAL,
                "value_bytes": 2 << 20,
                "budget_units": budget.limit(),
                "spent_units": budget.spent(),
                "stopped": stopped,
                "elapsed_ms": budgeted_ns as f64 / 1e6,
            },
            "calibration": {
                "value_bytes": 64 << 10,
                "units": small_units,
                "elapsed_ms": small_ns as f64 / 1e6,
                "units_per_ns": small_units as f64 / small_ns.max(1) as f64,
            },
            "ordinary_search": {
                "traces": traces.len(),
                "spans_per_trace": 100,
                "spent_units": search_budget.spent(),
                "matched": matched,
                "matched_unbudgeted": unbudgeted_matches,
                "stopped": ordinary_stopped,
                "elapsed_ms": ordinary_ns as f64 / 1e6,
            },
        })
    );
    Ok(())
}
