//! Evaluator tests on generated traces shaped like the founding document's chain.

use std::sync::Arc;

use chaintrace_model::{
    AnyValue, Event, KeyValue, Resource, Span, SpanId, SpanKind, Status, StatusCode, Trace,
    TraceId, UnixNanos,
};

use crate::{evaluate, parse};

const MS: u64 = 1_000_000;

/// A span of trace 1 with id `id`, from `start_ms` to `end_ms`.
pub(super) fn span(id: u8, parent: Option<u8>, name: &str, start_ms: u64, end_ms: u64) -> Span {
    Span {
        trace_id: TraceId([1; 16]),
        span_id: SpanId([id; 8]),
        parent_span_id: parent.map(|p| SpanId([p; 8])),
        name: name.into(),
        kind: SpanKind::Internal,
        start: UnixNanos(1_000 * MS + start_ms * MS),
        end: UnixNanos(1_000 * MS + end_ms * MS),
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

pub(super) fn with(mut s: Span, key: &str, value: impl Into<AnyValue>) -> Span {
    s.attributes.push(KeyValue::new(key, value));
    s
}

fn failed(mut s: Span, message: &str) -> Span {
    s.status = Status {
        code: StatusCode::Error,
        message: message.to_string(),
    };
    s
}

fn exception_event(mut s: Span, class: &str, message: &str) -> Span {
    s.events.push(Event {
        time: s.end,
        name: "exception".to_string(),
        attributes: vec![
            KeyValue::new("exception.type", class),
            KeyValue::new("exception.message", message),
        ],
    });
    s
}

/// The founding document's chain (1200 ms; llm_call → api_call fails with a
/// rate limit, recorded the way `error_style` says).
pub(super) fn chain(error_style: ErrorStyle) -> Trace {
    let mut root = with(
        span(1, None, "process_query", 0, 1200),
        "user_message_length",
        14,
    );
    root.kind = SpanKind::Server;
    let fetch = with(span(2, Some(1), "fetch_context", 0, 200), "user_id", 42);
    let embed = with(
        span(3, Some(1), "embed_query", 200, 450),
        "model",
        "text-embedding-3-small",
    );
    let search = with(
        span(4, Some(1), "vector_search", 450, 600),
        "database",
        "pinecone",
    );
    let llm = with(
        span(5, Some(1), "llm_call", 600, 1200),
        "model",
        "claude-3-opus-20250219",
    );
    let prompt = with(
        span(6, Some(5), "prompt_assembly", 600, 650),
        "prompt_length",
        76,
    );
    let mut api = span(7, Some(5), "api_call", 650, 1180);
    api.kind = SpanKind::Client;
    api = with(with(api, "input_tokens", 19), "temperature", 0.7);
    api = with(api, "cached", true);
    let message = "RateLimitError: rate limit exceeded";
    let (llm, api) = match error_style {
        ErrorStyle::None => (llm, api),
        ErrorStyle::Seed => (
            failed(llm, message),
            with(failed(api, message), "error_type", "RateLimitError"),
        ),
        ErrorStyle::OtelAttribute => (
            failed(llm, message),
            with(failed(api, message), "error.type", "openai.RateLimitError"),
        ),
        ErrorStyle::OtelEvent => (
            failed(llm, message),
            exception_event(
                failed(api, message),
                "__main__.RateLimitError",
                "rate limit exceeded",
            ),
        ),
    };
    Trace::new(
        TraceId([1; 16]),
        vec![root, fetch, embed, search, llm, prompt, api],
    )
}

#[derive(Clone, Copy)]
pub(super) enum ErrorStyle {
    None,
    Seed,
    OtelAttribute,
    OtelEvent,
}

/// Names of the matched spans, in trace order; empty when the trace does not match.
fn run(query: &str, trace: &Trace) -> Vec<String> {
    let q = parse(query).unwrap_or_else(|e| panic!("{query}: {e}"));
    match evaluate(&q, trace) {
        None => Vec::new(),
        Some(m) => {
            assert!(!m.matched.is_empty(), "a match is never empty");
            m.matched
                .iter()
                .map(|s| trace.spans[s.span_index].name.to_string())
                .collect()
        }
    }
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[test]
fn filters_test_each_span() {
    let t = chain(ErrorStyle::Seed);
    assert_eq!(run(r#"{ name = "llm_call" }"#, &t), names(&["llm_call"]));
    assert_eq!(run("{}", &t).len(), 7);
    assert_eq!(
        run("{ status = error }", &t),
        names(&["llm_call", "api_call"])
    );
    assert_eq!(run("{ status != error }", &t).len(), 5);
    assert_eq!(
        run("{ status = unset && kind = server }", &t),
        names(&["process_query"])
    );
    assert_eq!(run("{ kind = client }", &t), names(&["api_call"]));
    assert_eq!(
        run(r#"{ statusMessage =~ "RateLimitError:.*" }"#, &t),
        names(&["llm_call", "api_call"])
    );
    assert_eq!(run(r#"{ name = "nope" }"#, &t), names(&[]));
    assert_eq!(run("{ false }", &t), names(&[]));
}

#[test]
fn durations_compare_in_nanoseconds() {
    let t = chain(ErrorStyle::None);
    assert_eq!(run("{ duration > 900ms }", &t), names(&["process_query"]));
    assert_eq!(
        run("{ duration >= 600ms && duration < 1s }", &t),
        names(&["llm_call"])
    );
    assert_eq!(
        run("{ span:duration = 50ms }", &t),
        names(&["prompt_assembly"])
    );
    assert_eq!(
        run("{ duration <= 150000us }", &t),
        names(&["vector_search", "prompt_assembly"])
    );
    assert_eq!(run("{ duration > 1.2s }", &t), names(&[]));
}

#[test]
fn trace_level_intrinsics_hold_for_every_span() {
    let t = chain(ErrorStyle::None);
    assert_eq!(run(r#"{ rootName = "process_query" }"#, &t).len(), 7);
    assert_eq!(run(r#"{ trace:rootName = "llm_call" }"#, &t).len(), 0);
    assert_eq!(
        run(
            r#"{ rootServiceName = "rag-chain" && name = "api_call" }"#,
            &t
        ),
        names(&["api_call"])
    );
    assert_eq!(run(r#"{ trace:rootService != "rag-chain" }"#, &t).len(), 0);
    assert_eq!(
        run("{ traceDuration = 1200ms && duration < 100ms }", &t),
        names(&["prompt_assembly"])
    );
    assert_eq!(run("{ trace:duration > 2s }", &t).len(), 0);
}

#[test]
fn attributes_by_scope_type_and_absence() {
    let t = chain(ErrorStyle::None);
    assert_eq!(
        run(r#"{ span.model =~ "claude.*" }"#, &t),
        names(&["llm_call"])
    );
    assert_eq!(
        run(r#"{ .model = "text-embedding-3-small" }"#, &t),
        names(&["embed_query"])
    );
    assert_eq!(
        run(r#"{ resource.service.name = "rag-chain" }"#, &t).len(),
        7
    );
    assert_eq!(
        run(r#"{ .service.name = "rag-chain" }"#, &t).len(),
        7,
        ".x falls back to the resource"
    );
    assert_eq!(run(r#"{ span.service.name = "rag-chain" }"#, &t).len(), 0);
    assert_eq!(
        run(r#"{ resource.model = "claude-3-opus-20250219" }"#, &t).len(),
        0
    );
    // numbers across int / float, booleans
    assert_eq!(
        run("{ span.input_tokens > 18.5 }", &t),
        names(&["api_call"])
    );
    assert_eq!(
        run("{ span.input_tokens = 19.0 }", &t),
        names(&["api_call"])
    );
    assert_eq!(
        run("{ span.temperature < 1 && span.temperature > 0.5 }", &t),
        names(&["api_call"])
    );
    assert_eq!(run("{ span.cached = true }", &t), names(&["api_call"]));
    assert_eq!(run("{ span.cached != false }", &t), names(&["api_call"]));
    // type mismatches never match, in either direction
    assert_eq!(run(r#"{ span.input_tokens = "19" }"#, &t).len(), 0);
    assert_eq!(run(r#"{ span.input_tokens != "19" }"#, &t).len(), 0);
    assert_eq!(run("{ span.model = 1 }", &t).len(), 0);
    // a missing attribute never matches, != included; nil tests presence
    assert_eq!(
        run(r#"{ span.model != "x" }"#, &t),
        names(&["embed_query", "llm_call"])
    );
    assert_eq!(run(r#"{ span.nope != "x" }"#, &t).len(), 0);
    assert_eq!(run(r#"{ span.nope !~ "x" }"#, &t).len(), 0);
    assert_eq!(
        run("{ span.model != nil }", &t),
        names(&["embed_query", "llm_call"])
    );
    assert_eq!(run("{ span.model = nil }", &t).len(), 5);
    assert_eq!(
        run(r#"{ !(span.model = "claude-3-opus-20250219") }"#, &t).len(),
        6
    );
    // lexical order on strings
    assert_eq!(
        run(r#"{ name > "prompt_assembly" }"#, &t),
        names(&["vector_search"])
    );
}

#[test]
fn regexes_match_the_whole_value() {
    let t = chain(ErrorStyle::None);
    assert_eq!(run(r#"{ name =~ "llm" }"#, &t).len(), 0);
    assert_eq!(run(r#"{ name =~ "llm.*" }"#, &t), names(&["llm_call"]));
    assert_eq!(run(r#"{ name =~ "a|api_call" }"#, &t), names(&["api_call"]));
    assert_eq!(
        run(r#"{ name =~ ".*_(query|search)" }"#, &t),
        names(&["process_query", "embed_query", "vector_search"])
    );
    assert_eq!(run(r#"{ name !~ ".*_.*" }"#, &t).len(), 0);
    assert_eq!(
        run(r#"{ span.model !~ "claude.*" }"#, &t),
        names(&["embed_query"])
    );
    assert_eq!(
        run(r#"{ span.input_tokens =~ "19" }"#, &t).len(),
        0,
        "regexes only see strings"
    );
}

#[test]
fn boolean_logic_follows_tempo_precedence() {
    let t = chain(ErrorStyle::Seed);
    // (name = fetch_context || name = api_call) && status = error
    assert_eq!(
        run(
            r#"{ name = "fetch_context" || name = "api_call" && status = error }"#,
            &t
        ),
        names(&["api_call"])
    );
    assert_eq!(
        run(
            r#"{ name = "fetch_context" || (name = "api_call" && status = error) }"#,
            &t
        ),
        names(&["fetch_context", "api_call"])
    );
    assert_eq!(
        run(r#"{ !(status = error) && !(name = "process_query") }"#, &t).len(),
        4
    );
}

#[test]
fn spanset_and_or() {
    let t = chain(ErrorStyle::None);
    assert_eq!(
        run(r#"{ name = "llm_call" } && { name = "api_call" }"#, &t),
        names(&["llm_call", "api_call"])
    );
    assert_eq!(
        run(r#"{ name = "llm_call" } && { name = "nope" }"#, &t).len(),
        0
    );
    assert_eq!(
        run(r#"{ name = "nope" } && { name = "llm_call" }"#, &t).len(),
        0
    );
    assert_eq!(
        run(r#"{ name = "nope" } || { name = "llm_call" }"#, &t),
        names(&["llm_call"])
    );
    assert_eq!(
        run(r#"{ name = "fetch_context" } || { name = "llm_call" }"#, &t),
        names(&["fetch_context", "llm_call"])
    );
}

#[test]
fn structural_operators() {
    let t = chain(ErrorStyle::None);
    assert_eq!(
        run(r#"{ name = "process_query" } > {}"#, &t),
        names(&["fetch_context", "embed_query", "vector_search", "llm_call"])
    );
    assert_eq!(
        run(r#"{ name = "process_query" } > { name = "api_call" }"#, &t).len(),
        0
    );
    assert_eq!(
        run(r#"{ name = "process_query" } >> { name = "api_call" }"#, &t),
        names(&["api_call"])
    );
    assert_eq!(run(r#"{ name = "process_query" } >> {}"#, &t).len(), 6);
    assert_eq!(run(r#"{ name = "api_call" } >> {}"#, &t).len(), 0);
    assert_eq!(
        run(r#"{ name = "api_call" } < {}"#, &t),
        names(&["llm_call"])
    );
    assert_eq!(
        run(r#"{ name = "api_call" } << {}"#, &t),
        names(&["process_query", "llm_call"])
    );
    assert_eq!(run(r#"{ name = "process_query" } << {}"#, &t).len(), 0);
    assert_eq!(
        run(r#"{ name = "fetch_context" } ~ {}"#, &t),
        names(&["embed_query", "vector_search", "llm_call"])
    );
    assert_eq!(
        run(
            r#"{ name = "prompt_assembly" } ~ { name = "prompt_assembly" }"#,
            &t
        )
        .len(),
        0
    );
    assert_eq!(
        run("{} ~ {}", &t).len(),
        6,
        "every span but the root has a sibling"
    );
    assert_eq!(
        run(r#"{ name = "process_query" } ~ {}"#, &t).len(),
        0,
        "roots are nobody's siblings"
    );
    // chains associate left: spans of c whose parent is a b whose parent is an a
    assert_eq!(
        run(
            r#"{ name = "process_query" } > { name = "llm_call" } > { name = "api_call" }"#,
            &t
        ),
        names(&["api_call"])
    );
    assert_eq!(
        run(
            r#"{ name = "process_query" } > ({ name = "llm_call" } > { name = "api_call" })"#,
            &t
        )
        .len(),
        0
    );
    // structural binds tighter than &&
    assert_eq!(
        run(
            r#"{ name = "llm_call" } > { name = "api_call" } && { name = "fetch_context" }"#,
            &t
        ),
        names(&["fetch_context", "api_call"])
    );
}

#[test]
fn pipelines_aggregate_the_spanset() {
    let t = chain(ErrorStyle::Seed);
    assert_eq!(run("{} | count() > 6", &t).len(), 7);
    assert_eq!(run("{} | count() > 7", &t).len(), 0);
    assert_eq!(
        run("{ status = error } | count() = 2", &t),
        names(&["llm_call", "api_call"])
    );
    // durations: 1200, 200, 250, 150, 600, 50, 530 ms → sum 2980, avg 425.71…
    assert_eq!(run("{} | avg(duration) > 425ms", &t).len(), 7);
    assert_eq!(run("{} | avg(duration) > 426ms", &t).len(), 0);
    assert_eq!(run("{} | max(duration) = 1.2s", &t).len(), 7);
    assert_eq!(run("{} | min(duration) = 50ms", &t).len(), 7);
    assert_eq!(run("{} | sum(duration) = 2980ms", &t).len(), 7);
    assert_eq!(run("{} | sum(span.input_tokens) = 19", &t).len(), 7);
    assert_eq!(run("{} | avg(span.prompt_length) > 75.5", &t).len(), 7);
    assert_eq!(
        run("{ span.nope = 1 } | count() = 0", &t).len(),
        0,
        "an empty spanset never matches"
    );
    assert_eq!(run("{} | avg(span.nope) > 0", &t).len(), 0);
    assert_eq!(run("{} | max(traceDuration) = 1200ms", &t).len(), 7);
    // a filter stage narrows the spanset; stages apply in order
    assert_eq!(
        run(r#"{} | { duration < 100ms } | count() = 1"#, &t),
        names(&["prompt_assembly"])
    );
    assert_eq!(
        run(
            r#"({ status = error } | count() > 5) || { name = "llm_call" }"#,
            &t
        ),
        names(&["llm_call"])
    );
}

#[test]
fn select_reports_fields_of_matched_spans() {
    let t = chain(ErrorStyle::Seed);
    let q = parse(r#"{ status = error } | select(span.model, span.error_type, name, duration, status, kind, resource.service.name, span.nope)"#).unwrap();
    let m = evaluate(&q, &t).unwrap();
    assert_eq!(m.matched.len(), 2);
    let llm = &m.matched[0];
    assert_eq!(t.spans[llm.span_index].name, "llm_call");
    assert_eq!(
        llm.selected,
        vec![
            (
                "span.model".to_string(),
                AnyValue::from("claude-3-opus-20250219")
            ),
            ("name".to_string(), AnyValue::from("llm_call")),
            ("duration".to_string(), AnyValue::Int(600 * MS as i64)),
            ("status".to_string(), AnyValue::from("error")),
            ("kind".to_string(), AnyValue::from("internal")),
            (
                "resource.service.name".to_string(),
                AnyValue::from("rag-chain")
            ),
        ]
    );
    let api = &m.matched[1];
    assert_eq!(
        api.selected[0],
        (
            "span.error_type".to_string(),
            AnyValue::from("RateLimitError")
        )
    );
    // selections survive later set operators and are not duplicated
    let q = parse(r#"({ name = "api_call" } | select(name)) || ({ status = error } | select(name, span.model))"#).unwrap();
    let m = evaluate(&q, &t).unwrap();
    assert_eq!(
        m.matched[1].selected,
        vec![("name".to_string(), AnyValue::from("api_call"))]
    );
    assert_eq!(m.matched[0].selected.len(), 2);
    // without select, nothing is attached
    let m = evaluate(&parse("{ status = error }").unwrap(), &t).unwrap();
    assert!(m.matched.iter().all(|s| s.selected.is_empty()));
}

const FOUNDING_QUERIES: [&str; 3] = [
    r#"{ name = "llm_call" && status = error } >> { span.error_type = "RateLimitError" || span.error.type = "RateLimitError" || span.exception.type = "RateLimitError" }"#,
    r#"{ name = "llm_call" && status = error } > { .error_type = "RateLimitError" || .error.type = "RateLimitError" || .exception.type = "RateLimitError" }"#,
    r#"{ span.error_type = "RateLimitError" || span.error.type = "RateLimitError" || span.exception.type = "RateLimitError" } < { name = "llm_call" && status = error }"#,
];

#[test]
fn the_founding_question_whichever_way_the_error_was_recorded() {
    for style in [
        ErrorStyle::Seed,
        ErrorStyle::OtelAttribute,
        ErrorStyle::OtelEvent,
    ] {
        let t = chain(style);
        assert_eq!(run(FOUNDING_QUERIES[0], &t), names(&["api_call"]));
        assert_eq!(run(FOUNDING_QUERIES[1], &t), names(&["api_call"]));
        assert_eq!(run(FOUNDING_QUERIES[2], &t), names(&["llm_call"]));
    }
    let healthy = chain(ErrorStyle::None);
    for q in FOUNDING_QUERIES {
        assert_eq!(run(q, &healthy).len(), 0, "{q}");
    }
}

#[test]
fn error_class_names_match_their_last_dotted_segment() {
    let event = chain(ErrorStyle::OtelEvent);
    assert_eq!(
        run(r#"{ span.exception.type = "RateLimitError" }"#, &event),
        names(&["api_call"])
    );
    assert_eq!(
        run(r#"{ .exception.type = "RateLimitError" }"#, &event),
        names(&["api_call"])
    );
    assert_eq!(
        run(
            r#"{ span.exception.type = "__main__.RateLimitError" }"#,
            &event
        ),
        names(&["api_call"])
    );
    assert_eq!(
        run(r#"{ span.exception.type = "main.RateLimitError" }"#, &event).len(),
        0,
        "dotted names compare whole"
    );
    assert_eq!(run(r#"{ span.exception.type = "Error" }"#, &event).len(), 0);
    assert_eq!(
        run(r#"{ span.exception.type != "RateLimitError" }"#, &event).len(),
        0
    );
    assert_eq!(
        run(r#"{ span.exception.type != "Timeout" }"#, &event),
        names(&["api_call"])
    );
    assert_eq!(
        run(r#"{ span.exception.type =~ "RateLimitError" }"#, &event).len(),
        0,
        "regexes compare whole"
    );
    assert_eq!(
        run(r#"{ span.exception.type =~ ".*RateLimitError" }"#, &event),
        names(&["api_call"])
    );
    assert_eq!(
        run(
            r#"{ span.exception.message = "rate limit exceeded" }"#,
            &event
        ),
        names(&["api_call"])
    );
    assert_eq!(
        run(r#"{ resource.exception.type = "RateLimitError" }"#, &event).len(),
        0,
        "events belong to spans"
    );
    let attr = chain(ErrorStyle::OtelAttribute);
    assert_eq!(
        run(r#"{ span.error.type = "RateLimitError" }"#, &attr),
        names(&["api_call"])
    );
    // other attributes get no such treatment
    let t = Trace::new(
        TraceId([1; 16]),
        vec![with(span(1, None, "a", 0, 1), "kind_of", "x.Foo")],
    );
    assert_eq!(run(r#"{ span.kind_of = "Foo" }"#, &t).len(), 0);
}

#[test]
fn a_span_attribute_wins_over_the_exception_event() {
    let s = exception_event(
        with(span(1, None, "a", 0, 1), "exception.type", "Explicit"),
        "FromEvent",
        "m",
    );
    let t = Trace::new(TraceId([1; 16]), vec![s]);
    assert_eq!(run(r#"{ span.exception.type = "Explicit" }"#, &t).len(), 1);
    assert_eq!(run(r#"{ span.exception.type = "FromEvent" }"#, &t).len(), 0);
    assert_eq!(run(r#"{ span.exception.message = "m" }"#, &t).len(), 1);
    assert_eq!(
        run(r#"{ span.exception.stacktrace != nil }"#, &t).len(),
        0,
        "only type and message are virtual"
    );
}

#[test]
fn malformed_traces_neither_hang_nor_panic() {
    // a parent cycle, a self-parent, a duplicate id and an orphan
    let spans = vec![
        span(1, Some(2), "a", 0, 10),
        span(2, Some(1), "b", 0, 10),
        span(3, Some(3), "self", 0, 10),
        span(4, Some(9), "orphan", 0, 10),
        span(4, Some(9), "orphan-dup", 0, 10),
    ];
    let t = Trace::new(TraceId([1; 16]), spans);
    assert_eq!(run(r#"{ name = "a" } >> {}"#, &t), names(&["a", "b"]));
    assert_eq!(run(r#"{ name = "a" } << {}"#, &t), names(&["a", "b"]));
    assert_eq!(run("{} > {}", &t), names(&["a", "b"]));
    assert_eq!(
        run(r#"{ name = "orphan" } ~ {}"#, &t),
        names(&["orphan-dup"])
    );
    assert_eq!(
        run(r#"{ rootName = "orphan" }"#, &t).len(),
        5,
        "the earliest span with a missing parent is the root"
    );
    let empty = Trace::new(TraceId([1; 16]), Vec::new());
    assert_eq!(run("{}", &empty).len(), 0);
    assert_eq!(run(r#"{ rootName = "x" }"#, &empty).len(), 0);
}

#[test]
fn deep_traces_are_walked_in_linear_time() {
    // a 20 000-span chain: quadratic walks would take minutes in debug builds
    let n: u32 = 20_000;
    let id = |i: u32| {
        let mut bytes = [0u8; 8];
        bytes[4..].copy_from_slice(&(i + 1).to_be_bytes());
        SpanId(bytes)
    };
    let spans = (0..n)
        .map(|i| {
            let mut s = span(1, None, if i == 0 { "root" } else { "step" }, 0, 1);
            s.span_id = id(i);
            s.parent_span_id = (i > 0).then(|| id(i - 1));
            s
        })
        .collect();
    let t = Trace::new(TraceId([1; 16]), spans);
    assert_eq!(run(r#"{ name = "root" } >> {}"#, &t).len(), n as usize - 1);
    assert_eq!(run(r#"{ name = "step" } << {}"#, &t).len(), n as usize - 1);
    assert_eq!(run("{} >> {} | count() > 19000", &t).len(), n as usize - 1);
}
