//! The regex work budget: pathological matches stop the evaluation and say
//! so, counted in work units (never wall-clock time); ordinary ones answer
//! exactly as without a budget.

use chaintrace_model::Trace;
use proptest::prelude::*;

use super::tests::{chain, span, with, ErrorStyle};
use crate::{evaluate, evaluate_within, parse, RegexBudget, DEFAULT_REGEX_WORK_UNITS};

/// `len` pseudo-random `a`/`b` bytes: the lazy DFA of `[ab]*a[ab]{1000}`
/// cannot keep up with them, so `regex` would fall back to its Pike VM.
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

fn one_span(name: &str) -> Trace {
    Trace::new(
        chaintrace_model::TraceId([1; 16]),
        vec![span(1, None, name, 0, 10)],
    )
}

#[test]
fn the_issue_pattern_over_a_2_mib_name_stops_unrun() {
    let name = ab_text(2 << 20);
    let trace = one_span(&name);
    for query in [
        r#"{ name =~ "[ab]*a[ab]{1000}" }"#,
        r#"{ name !~ "[ab]*a[ab]{1000}" }"#,
    ] {
        let q = parse(query).expect("parses");
        let mut budget = RegexBudget::default();
        let stopped = evaluate_within(&q, &trace, &mut budget).expect_err(query);
        assert_eq!(budget.limit(), DEFAULT_REGEX_WORK_UNITS);
        assert_eq!(
            budget.spent(),
            0,
            "the match that cannot be paid is not run"
        );
        assert_eq!(stopped.value_bytes, 2 << 20);
        assert!(stopped.needed > DEFAULT_REGEX_WORK_UNITS, "{stopped}");
        assert_eq!(stopped.left, DEFAULT_REGEX_WORK_UNITS);
        assert_eq!(budget.exhausted(), Some(&stopped));
        let message = stopped.to_string();
        assert!(
            message.starts_with("regex work budget exhausted: name ")
                && message.contains(r#""[ab]*a[ab]{1000}" on a 2097152-byte value"#),
            "{message}"
        );
    }
}

#[test]
fn a_search_stops_at_the_match_that_does_not_fit() {
    // Each trace costs the same; a budget of 3½ traces pays for three.
    let q = parse(r#"{ name =~ "[ab]*a[ab]{1000}" }"#).expect("parses");
    let trace = one_span(&ab_text(4 << 10));
    let mut probe = RegexBudget::unlimited();
    evaluate_within(&q, &trace, &mut probe).expect("unlimited");
    let per_trace = probe.spent();
    assert!(per_trace > 4 << 10);

    let mut budget = RegexBudget::new(per_trace * 7 / 2);
    let answers: Vec<_> = (0..10)
        .map(|_| evaluate_within(&q, &trace, &mut budget))
        .collect();
    let expected = evaluate(&q, &trace);
    assert!(answers[..3].iter().all(|a| *a == Ok(expected.clone())));
    assert!(answers[3..].iter().all(Result::is_err), "stays stopped");
    assert_eq!(budget.spent(), 3 * per_trace);
    assert!(budget.spent() <= budget.limit());
}

#[test]
fn a_query_without_regexes_spends_nothing_but_stops_once_exhausted() {
    let t = chain(ErrorStyle::Seed);
    let plain = parse(r#"{ name = "llm_call" }"#).expect("parses");
    let mut budget = RegexBudget::default();
    assert!(evaluate_within(&plain, &t, &mut budget)
        .expect("in budget")
        .is_some());
    assert_eq!(budget.spent(), 0);

    let regex = parse(r#"{ name =~ "llm.*" }"#).expect("parses");
    let mut spent = RegexBudget::new(0);
    assert!(evaluate_within(&regex, &t, &mut spent).is_err());
    assert!(
        evaluate_within(&plain, &t, &mut spent).is_err(),
        "an exhausted search has stopped, whatever comes next"
    );
}

#[test]
fn ordinary_regexes_answer_as_without_a_budget() {
    let queries = [
        r#"{ name =~ "llm.*" }"#,
        r#"{ name !~ "llm.*" }"#,
        r#"{ name =~ ".*_(query|search)" }"#,
        r#"{ statusMessage =~ "RateLimitError:.*" }"#,
        r#"{ span.model =~ "claude.*" || .error_type =~ ".*RateLimit.*" }"#,
        r#"{ name =~ "process_query" } >> { span.exception.type =~ ".*Error" }"#,
        r#"{ rootName =~ `\w+` } | count() > 3"#,
    ];
    for style in [
        ErrorStyle::None,
        ErrorStyle::Seed,
        ErrorStyle::OtelAttribute,
        ErrorStyle::OtelEvent,
    ] {
        let t = chain(style);
        for query in queries {
            let q = parse(query).expect("parses");
            let mut budget = RegexBudget::default();
            let got = evaluate_within(&q, &t, &mut budget).expect(query);
            assert_eq!(got, evaluate(&q, &t), "{query}");
            // A seven-span trace with short values costs a few thousand units.
            assert!(budget.spent() < 1_000_000, "{query}: {}", budget.spent());
        }
    }
}

proptest! {
    /// Within budget, a budgeted evaluation is the unbudgeted one, and the
    /// work charged is what the matches cost.
    #[test]
    fn budgeted_equals_unbudgeted_within_budget(
        names in prop::collection::vec("[a-z_]{0,12}", 1..6),
        model in "[a-z0-9-]{0,20}",
        pattern in prop::sample::select(vec!["llm.*", "[a-z]+_call", ".*", "a|b|c", "(ab)*", "[^_]*_[^_]*"]),
    ) {
        let spans = names
            .iter()
            .enumerate()
            .map(|(i, n)| with(span(i as u8 + 1, None, n, 0, 10), "model", model.as_str()))
            .collect();
        let t = Trace::new(chaintrace_model::TraceId([1; 16]), spans);
        let q = parse(&format!(r#"{{ name =~ "{pattern}" || span.model !~ "{pattern}" }}"#)).expect("parses");
        let mut budget = RegexBudget::default();
        prop_assert_eq!(evaluate_within(&q, &t, &mut budget).expect("in budget"), evaluate(&q, &t));
        prop_assert!(budget.spent() > 0);
        prop_assert!(budget.exhausted().is_none());
    }
}
