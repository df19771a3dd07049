//! Batches decoded with the server's own OTLP decoder, checked as traces.

use std::collections::{HashMap, HashSet};

use chaintrace_ingest::otlp::decode_protobuf;
use chaintrace_model::{AnyValue, Span, TraceId};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;

use super::*;

const NOW: UnixNanos = UnixNanos(1_750_000_000_000_000_000);
const HOUR: u64 = 3_600_000_000_000;

fn load() -> LoadShape {
    LoadShape {
        spans_per_trace: 7,
        batch_spans: 1000,
        attr_bytes: 200,
        error_rate: 0.0,
        services: 3,
        time_spread: DurationNanos(HOUR),
        in_order: false,
    }
}

/// Every batch a builder makes for `traces` traces, decoded; checks that
/// each batch is valid OTLP the server accepts whole and within size.
fn generate(load: &LoadShape, traces: u64, seed: u64) -> (Vec<Vec<Span>>, Vec<Vec<u8>>) {
    let templates = Arc::new(Templates::new(load).unwrap());
    let mut builder = BatchBuilder::new(templates, seed, Some(traces));
    let mut batches = Vec::new();
    let mut bodies = Vec::new();
    while let Some(batch) = builder.next_batch(NOW) {
        // prost agrees with the hand-written framing.
        let request = ExportTraceServiceRequest::decode(&batch.body[..]).unwrap();
        assert_eq!(request.encoded_len(), batch.body.len());
        let decoded = decode_protobuf(&batch.body).unwrap();
        assert_eq!(decoded.rejected, 0, "{:?}", decoded.errors);
        assert_eq!(decoded.spans.len() as u64, batch.spans);
        assert!(decoded.spans.len() <= load.batch_spans);
        batches.push(decoded.spans);
        bodies.push(batch.body);
    }
    (batches, bodies)
}

fn by_trace(batches: &[Vec<Span>]) -> HashMap<TraceId, Vec<Span>> {
    let mut traces: HashMap<TraceId, Vec<Span>> = HashMap::new();
    for span in batches.iter().flatten() {
        traces.entry(span.trace_id).or_default().push(span.clone());
    }
    traces
}

/// One root, every parent present, nested times, unique span ids, one service.
fn check_trace(spans: &[Span], want: usize) {
    assert_eq!(spans.len(), want);
    let ids: HashSet<_> = spans.iter().map(|s| s.span_id).collect();
    assert_eq!(ids.len(), want, "span ids repeat within a trace");
    let by_id: HashMap<_, _> = spans.iter().map(|s| (s.span_id, s)).collect();
    let roots = spans.iter().filter(|s| s.parent_span_id.is_none()).count();
    assert_eq!(roots, 1);
    for s in spans {
        assert!(s.start <= s.end);
        assert_eq!(s.service_name(), spans[0].service_name());
        if let Some(p) = s.parent_span_id {
            let parent = by_id.get(&p).expect("parent within the trace");
            assert!(parent.start <= s.start && s.end <= parent.end);
        }
    }
}

#[test]
fn rag_chains_are_whole_valid_trees_with_unique_ids() {
    let (batches, _) = generate(&load(), 500, 1);
    assert_eq!(batches.len(), 4); // 3500 spans in batches of 1000
    assert!(batches[..3].iter().all(|b| b.len() == 1000));
    let traces = by_trace(&batches);
    assert_eq!(traces.len(), 500);
    for spans in traces.values() {
        check_trace(spans, 7);
    }
    let all: HashSet<_> = batches.iter().flatten().map(|s| s.span_id).collect();
    assert_eq!(all.len(), 3500, "span ids repeat across traces");
}

#[test]
fn giant_traces_split_across_batches_keep_every_span() {
    let load = LoadShape {
        spans_per_trace: 10_000,
        batch_spans: 999,
        attr_bytes: 20,
        ..load()
    };
    let (batches, _) = generate(&load, 3, 2);
    assert_eq!(batches.len(), 30_000usize.div_ceil(999));
    let traces = by_trace(&batches);
    assert_eq!(traces.len(), 3);
    for spans in traces.values() {
        check_trace(spans, 10_000);
    }
}

#[test]
fn error_rate_is_respected_and_errors_look_like_rate_limits() {
    let count_errors = |rate: f64| {
        let (batches, _) = generate(
            &LoadShape {
                error_rate: rate,
                ..load()
            },
            2000,
            3,
        );
        let traces = by_trace(&batches);
        let mut errors = 0;
        for spans in traces.values() {
            let failed: Vec<_> = spans.iter().filter(|s| s.is_error()).collect();
            // The failing api_call, and the exception propagated to llm_call
            // and the root.
            let names: Vec<&str> = failed.iter().map(|s| s.name.as_str()).collect();
            assert!(failed.is_empty() || failed.len() == 3, "{names:?}");
            if let Some(s) = failed.iter().find(|s| s.name == "api_call") {
                errors += 1;
                assert!(
                    names.contains(&"llm_call") && names.contains(&"process_query"),
                    "{names:?}"
                );
                let attr = |k| s.attr(k).and_then(AnyValue::as_str);
                assert_eq!(attr("error_type"), Some("RateLimitError"));
                assert_eq!(attr("error.type"), Some("RateLimitError"));
                let event = &s.events[0];
                assert_eq!(event.name, "exception");
                assert!(s.start <= event.time && event.time <= s.end);
            }
        }
        errors
    };
    assert_eq!(count_errors(0.0), 0);
    assert_eq!(count_errors(1.0), 2000);
    let some = count_errors(0.2);
    assert!(
        (340..=460).contains(&some),
        "{some} of 2000 failed at rate 0.2"
    );
}

#[test]
fn prompt_and_completion_have_the_asked_size() {
    let (batches, _) = generate(
        &LoadShape {
            attr_bytes: 5000,
            spans_per_trace: 20,
            ..load()
        },
        10,
        4,
    );
    let api_calls: Vec<_> = batches
        .iter()
        .flatten()
        .filter(|s| s.name == "api_call")
        .collect();
    assert_eq!(api_calls.len(), 10 * 3);
    for s in api_calls {
        for key in ["gen_ai.prompt", "gen_ai.completion"] {
            let text = s.attr(key).and_then(AnyValue::as_str).unwrap();
            assert_eq!(text.len(), 5000, "{key}");
        }
    }
}

#[test]
fn timestamps_lie_within_the_spread_window() {
    for spans_per_trace in [7, 2000] {
        let minute = HOUR / 60;
        let load = LoadShape {
            spans_per_trace,
            time_spread: DurationNanos(minute),
            in_order: false,
            ..load()
        };
        let (batches, _) = generate(&load, 20, 5);
        let starts: HashSet<_> = batches.iter().flatten().map(|s| s.start).collect();
        assert!(starts.len() > 20, "times do not vary");
        for s in batches.iter().flatten() {
            assert!(s.start.0 >= NOW.0 - minute, "{s:?}");
            assert!(s.end <= NOW, "{s:?}");
        }
    }
}

#[test]
fn traces_spread_over_services_and_budget_is_exact() {
    let (batches, _) = generate(&load(), 300, 6);
    let traces = by_trace(&batches);
    assert_eq!(traces.len(), 300);
    let mut per_service: HashMap<String, usize> = HashMap::new();
    for spans in traces.values() {
        *per_service
            .entry(spans[0].service_name().to_string())
            .or_default() += 1;
    }
    assert_eq!(per_service.len(), 3);
    assert!(per_service.values().all(|&n| n >= 60), "{per_service:?}");
}

#[test]
fn same_seed_same_bytes_other_seed_other_ids() {
    let (_, a) = generate(&load(), 50, 7);
    let (_, b) = generate(&load(), 50, 7);
    let (_, c) = generate(&load(), 50, 8);
    assert_eq!(a, b);
    assert_ne!(a, c);
}

#[test]
fn bad_shapes_are_refused_with_a_reason() {
    let err = Templates::new(&LoadShape {
        error_rate: 1.5,
        ..load()
    })
    .unwrap_err();
    assert!(err.to_string().contains("error rate 1.5"), "{err}");
}

#[test]
fn in_order_traces_walk_through_the_spread_oldest_first() {
    // One trace per request, so requests show the order traces started.
    let load = LoadShape {
        in_order: true,
        batch_spans: 7,
        ..load()
    };
    let (batches, _) = generate(&load, 120, 9);
    let mut roots: Vec<u64> = Vec::new();
    let mut seen = HashSet::new();
    for s in batches.iter().flatten() {
        if s.parent_span_id.is_none() && seen.insert(s.trace_id) {
            roots.push(s.start.0);
        }
    }
    assert_eq!(roots.len(), 120);
    let step = HOUR / 120;
    for pair in roots.windows(2) {
        assert!(pair[1] + step >= pair[0], "{pair:?}");
    }
    // The first in the oldest minutes, the last in the newest.
    assert!(roots[0] < NOW.0 - HOUR + 2 * step);
    assert!(roots[119] > NOW.0 - 3 * step - HOUR / 10);
}
