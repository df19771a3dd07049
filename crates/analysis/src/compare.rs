//! Two traces side by side: why one run was slower than another.
//!
//! Spans are matched by their *path*: the names from the root down to them,
//! each with its order among same-named siblings (`process_query >
//! llm_call > api_call[1]` is the second `api_call` under `llm_call`). Per
//! matched span the comparison gives durations, self times, tokens and cost
//! on both sides and their differences; spans found on one side only are
//! listed apart; and each trace's critical path is given as paths, with the
//! first step where they part.

use std::collections::HashMap;

use chaintrace_model::Trace;
use serde::Serialize;

use crate::critical_path::critical_path_with;
use crate::llm::llm_spans_with;
use crate::prices::PriceTable;
use crate::tree::SpanTree;

/// One span found in both traces.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MatchedSpan {
    /// Its path of names (see the module).
    pub path: String,
    /// Span name.
    pub name: String,
    /// `service.name` in the first trace.
    pub service: String,
    /// Index in the first trace's spans.
    pub a_index: usize,
    /// Index in the second trace's spans.
    pub b_index: usize,
    /// Duration in the first trace.
    pub a_duration_nano: u64,
    /// Duration in the second trace.
    pub b_duration_nano: u64,
    /// Second minus first.
    pub duration_delta_nano: i64,
    /// Self time (duration minus the union of its children) in the first.
    pub a_self_nano: u64,
    /// Self time in the second.
    pub b_self_nano: u64,
    /// Second minus first.
    pub self_delta_nano: i64,
    /// Total tokens the span reports in the first trace, if any.
    pub a_tokens: Option<u64>,
    /// In the second.
    pub b_tokens: Option<u64>,
    /// Cost in the first trace, when priced.
    pub a_cost_usd: Option<f64>,
    /// In the second.
    pub b_cost_usd: Option<f64>,
    /// Whether the span is on the first trace's critical path.
    pub a_critical: bool,
    /// On the second's.
    pub b_critical: bool,
}

/// A span found in one trace only.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LoneSpan {
    /// Its path of names.
    pub path: String,
    /// Index in its trace's spans.
    pub index: usize,
    /// Its duration.
    pub duration_nano: u64,
}

/// What [`compare`] finds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    /// The first trace's duration (earliest start to latest end).
    pub a_duration_nano: u64,
    /// The second's.
    pub b_duration_nano: u64,
    /// Second minus first.
    pub duration_delta_nano: i64,
    /// Spans in both, sorted by path (a parent before its children).
    pub matched: Vec<MatchedSpan>,
    /// Spans of the first trace with no match in the second.
    pub only_a: Vec<LoneSpan>,
    /// Spans of the second trace with no match in the first.
    pub only_b: Vec<LoneSpan>,
    /// The first trace's critical path, root first, as paths.
    pub a_critical_path: Vec<String>,
    /// The second's.
    pub b_critical_path: Vec<String>,
    /// The first step (index in both paths) where they differ; `None` when
    /// the paths are the same.
    pub critical_paths_part_at: Option<usize>,
}

/// One side's facts, by span index.
struct Side {
    paths: Vec<String>,
    self_nano: Vec<u64>,
    tokens: Vec<Option<u64>>,
    cost: Vec<Option<f64>>,
    critical: Vec<bool>,
    critical_path: Vec<String>,
    duration: u64,
}

fn side(trace: &Trace, prices: &PriceTable) -> Side {
    let n = trace.spans.len();
    let tree = SpanTree::build(trace);
    let self_nano = tree.self_times(&tree.interval);
    let mut paths = vec![String::new(); n];
    let mut done = vec![false; n];
    // Roots (and cycle entries) are numbered among themselves in tree
    // order; children among their parent's children, by start.
    let mut root_seen: HashMap<&str, usize> = HashMap::new();
    for &i in &tree.top_down {
        let name = trace.spans[i].name.as_str();
        let parent = tree.parent[i].filter(|&p| done[p]);
        let (prefix, ordinal) = match parent {
            Some(p) => {
                let earlier = tree.children[p]
                    .iter()
                    .take_while(|&&c| c != i)
                    .filter(|&&c| trace.spans[c].name == name)
                    .count();
                (format!("{} > ", paths[p]), earlier)
            }
            None => {
                let seen = root_seen.entry(name).or_insert(0);
                *seen += 1;
                (String::new(), *seen - 1)
            }
        };
        paths[i] = if ordinal == 0 {
            format!("{prefix}{name}")
        } else {
            format!("{prefix}{name}[{ordinal}]")
        };
        done[i] = true;
    }
    let mut tokens = vec![None; n];
    let mut cost = vec![None; n];
    for call in llm_spans_with(trace, &tree, prices) {
        tokens[call.span_index] = call.tokens.total_tokens;
        cost[call.span_index] = call.cost.map(|c| c.total_usd);
    }
    let path = critical_path_with(trace, &tree, &tree.interval);
    let mut critical = vec![false; n];
    for step in &path.chain {
        critical[step.span_index] = true;
    }
    let start = trace.spans.iter().map(|s| s.start.0).min().unwrap_or(0);
    let end = trace.spans.iter().map(|s| s.end.0).max().unwrap_or(0);
    Side {
        critical_path: path
            .chain
            .iter()
            .map(|s| paths[s.span_index].clone())
            .collect(),
        paths,
        self_nano,
        tokens,
        cost,
        critical,
        duration: end.saturating_sub(start),
    }
}

fn delta(a: u64, b: u64) -> i64 {
    i64::try_from(i128::from(b) - i128::from(a)).unwrap_or(if b > a { i64::MAX } else { i64::MIN })
}

/// Compares trace `a` with trace `b` (the second is the one asked about:
/// deltas are `b − a`). Linear in the spans of both, apart from sorting.
pub fn compare(a: &Trace, b: &Trace, prices: &PriceTable) -> Comparison {
    let sa = side(a, prices);
    let sb = side(b, prices);
    let in_b: HashMap<&str, usize> = sb
        .paths
        .iter()
        .enumerate()
        .map(|(i, p)| (p.as_str(), i))
        .collect();
    // The first trace's spans in tree order (paths sort parents first).
    let mut order: Vec<usize> = (0..a.spans.len()).collect();
    order.sort_by(|&x, &y| sa.paths[x].cmp(&sa.paths[y]));
    let mut matched = Vec::new();
    let mut only_a = Vec::new();
    let mut found_b = vec![false; b.spans.len()];
    for i in order {
        let span = &a.spans[i];
        match in_b.get(sa.paths[i].as_str()) {
            Some(&j) => {
                found_b[j] = true;
                let other = &b.spans[j];
                matched.push(MatchedSpan {
                    path: sa.paths[i].clone(),
                    name: span.name.to_string(),
                    service: span.service_name().to_string(),
                    a_index: i,
                    b_index: j,
                    a_duration_nano: span.duration().0,
                    b_duration_nano: other.duration().0,
                    duration_delta_nano: delta(span.duration().0, other.duration().0),
                    a_self_nano: sa.self_nano[i],
                    b_self_nano: sb.self_nano[j],
                    self_delta_nano: delta(sa.self_nano[i], sb.self_nano[j]),
                    a_tokens: sa.tokens[i],
                    b_tokens: sb.tokens[j],
                    a_cost_usd: sa.cost[i],
                    b_cost_usd: sb.cost[j],
                    a_critical: sa.critical[i],
                    b_critical: sb.critical[j],
                });
            }
            None => only_a.push(LoneSpan {
                path: sa.paths[i].clone(),
                index: i,
                duration_nano: span.duration().0,
            }),
        }
    }
    let mut only_b: Vec<LoneSpan> = (0..b.spans.len())
        .filter(|&j| !found_b[j])
        .map(|j| LoneSpan {
            path: sb.paths[j].clone(),
            index: j,
            duration_nano: b.spans[j].duration().0,
        })
        .collect();
    only_b.sort_by(|x, y| x.path.cmp(&y.path));
    let critical_paths_part_at = (sa.critical_path != sb.critical_path).then(|| {
        sa.critical_path
            .iter()
            .zip(&sb.critical_path)
            .take_while(|(x, y)| x == y)
            .count()
    });
    Comparison {
        a_duration_nano: sa.duration,
        b_duration_nano: sb.duration,
        duration_delta_nano: delta(sa.duration, sb.duration),
        matched,
        only_a,
        only_b,
        a_critical_path: sa.critical_path,
        b_critical_path: sb.critical_path,
        critical_paths_part_at,
    }
}

#[cfg(test)]
mod tests {
    use chaintrace_model::TraceId;

    use super::*;
    use crate::test_support::*;

    #[test]
    fn the_concurrent_chain_saves_fifty_milliseconds_on_the_same_critical_path() {
        let prices = PriceTable::builtin();
        let c = compare(&founding(), &founding_concurrent(), &prices);
        assert_eq!(c.duration_delta_nano, -(ms(50) as i64));
        assert!(c.only_a.is_empty() && c.only_b.is_empty(), "{c:?}");
        assert_eq!(c.matched.len(), founding().spans.len());
        let by_name = |n: &str| c.matched.iter().find(|m| m.name == n).unwrap();
        // embed_query now starts with fetch_context instead of after it:
        // the same work, 50 ms earlier; the root is 50 ms shorter.
        assert_eq!(by_name("embed_query").duration_delta_nano, 0);
        assert_eq!(
            by_name("process_query").duration_delta_nano,
            -(ms(50) as i64)
        );
        assert_eq!(
            by_name("api_call").path,
            "process_query > llm_call > api_call"
        );
        assert_eq!(c.critical_paths_part_at, None);
        assert_eq!(c.a_critical_path, c.b_critical_path);
        assert_eq!(c.a_critical_path[0], "process_query");
    }

    #[test]
    fn same_named_siblings_match_in_order_and_extra_ones_stand_apart() {
        // A retry: the second trace's api_call ran twice.
        let a = founding();
        let mut spans = founding_spans();
        let api = spans.iter().find(|s| s.name == "api_call").unwrap().clone();
        let mut retry = api.clone();
        retry.span_id = chaintrace_model::SpanId([99; 8]);
        retry.start.0 += ms(1);
        spans.push(retry);
        let b = Trace::new(TraceId([2; 16]), spans);
        let c = compare(&a, &b, &PriceTable::builtin());
        assert!(c.only_a.is_empty());
        assert_eq!(c.only_b.len(), 1);
        assert_eq!(c.only_b[0].path, "process_query > llm_call > api_call[1]");
        // Tokens and cost come along for LLM spans.
        let api_call = c.matched.iter().find(|m| m.name == "api_call").unwrap();
        assert_eq!(api_call.a_tokens, api_call.b_tokens);
        assert!(api_call.a_tokens.is_some());
        // Compared with itself, nothing differs.
        let same = compare(&a, &a, &PriceTable::builtin());
        assert!(same
            .matched
            .iter()
            .all(|m| m.duration_delta_nano == 0 && m.self_delta_nano == 0));
        assert_eq!(same.duration_delta_nano, 0);
    }
}
