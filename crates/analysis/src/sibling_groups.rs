//! Sibling groups of a Gantt layout: runs of same-named siblings that a
//! chart shows as one expandable row, and retries folded into one row.
//!
//! A trace of an agent holds hundreds of `vector_search` calls side by side,
//! and a client that retries leaves `api_call`, `api_call`, `api_call` of
//! which all but the last failed. Both read better as one row: "vector_search
//! ×312", "api_call ×2 — 1 failed, 114 ms lost". The terminal and the web UI
//! take the groups from here so they fold the same rows.
//!
//! It works on [`GanttLayout`] rows only (names, times, errors); it must not
//! decide how a group is drawn.

use serde::Serialize;

use crate::gantt::{GanttLayout, GanttRow};

/// Fewest same-named siblings that group when they are not a retry.
pub const MIN_RUN: usize = 3;

/// What kind of group a [`SiblingGroup`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupKind {
    /// Same-named siblings one after another (at least [`MIN_RUN`]).
    Run,
    /// Attempts of one operation, one after the other, where every attempt
    /// but the last failed.
    Retry,
}

/// Consecutive siblings (in start order) of one name, shown as one row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SiblingGroup {
    /// Run or retry.
    pub kind: GroupKind,
    /// The members' row indices in the layout, in order; each member's
    /// subtree follows it in the layout.
    pub rows: Vec<usize>,
    /// How many members failed.
    pub failed: usize,
    /// For a retry: from the first attempt's start to the last attempt's
    /// start, the time the failures cost (the whole span of the group when
    /// the last attempt failed too). Zero for runs.
    pub lost_nano: u64,
}

/// The parent row of every row (`None` for roots), from the layout's
/// depth-first order: the nearest earlier row one level up.
pub fn parent_rows(rows: &[GanttRow]) -> Vec<Option<usize>> {
    let mut open: Vec<usize> = Vec::new();
    rows.iter()
        .enumerate()
        .map(|(i, row)| {
            open.truncate(row.depth);
            let parent = if row.depth == 0 {
                None
            } else {
                open.last().copied()
            };
            open.push(i);
            parent
        })
        .collect()
}

/// The groups of `layout`, ordered by their first row. Siblings are taken
/// in layout order (start time); only adjacent same-named siblings group.
pub fn sibling_groups(layout: &GanttLayout) -> Vec<SiblingGroup> {
    let rows = &layout.rows;
    let parents = parent_rows(rows);
    // Children of each row (and of the virtual top, at index `rows.len()`).
    let top = rows.len();
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); rows.len() + 1];
    for (i, parent) in parents.iter().enumerate() {
        children[parent.unwrap_or(top)].push(i);
    }
    let mut groups = Vec::new();
    for siblings in &children {
        let mut at = 0;
        while at < siblings.len() {
            let name = &rows[siblings[at]].name;
            let len = siblings[at..]
                .iter()
                .take_while(|&&r| rows[r].name == *name)
                .count();
            let run = &siblings[at..at + len];
            if let Some(group) = group_of(rows, run) {
                groups.push(group);
            }
            at += len;
        }
    }
    groups.sort_by_key(|g| g.rows[0]);
    groups
}

/// The group a run of same-named siblings forms, if any.
fn group_of(rows: &[GanttRow], run: &[usize]) -> Option<SiblingGroup> {
    if run.len() < 2 {
        return None;
    }
    let failed = run.iter().filter(|&&r| rows[r].is_error).count();
    let (first, last) = (&rows[run[0]], &rows[run[run.len() - 1]]);
    let earlier_failed = run[..run.len() - 1].iter().all(|&r| rows[r].is_error);
    // Retries wait for the attempt before: each starts once the previous ended.
    let sequential = run.windows(2).all(|w| {
        let (a, b) = (&rows[w[0]], &rows[w[1]]);
        b.offset_nano >= a.offset_nano + a.duration_nano
    });
    if earlier_failed && sequential {
        let lost_nano = if last.is_error {
            (last.offset_nano + last.duration_nano).saturating_sub(first.offset_nano)
        } else {
            last.offset_nano.saturating_sub(first.offset_nano)
        };
        return Some(SiblingGroup {
            kind: GroupKind::Retry,
            rows: run.to_vec(),
            failed,
            lost_nano,
        });
    }
    (run.len() >= MIN_RUN).then(|| SiblingGroup {
        kind: GroupKind::Run,
        rows: run.to_vec(),
        failed,
        lost_nano: 0,
    })
}

#[cfg(test)]
mod tests {
    use chaintrace_model::{Trace, TraceId};

    use super::*;
    use crate::gantt::layout;
    use crate::test_support::{failed, span};

    #[test]
    fn parents_follow_depths() {
        let g = layout(&crate::test_support::founding());
        let names: Vec<Option<&str>> = parent_rows(&g.rows)
            .iter()
            .map(|p| p.map(|p| g.rows[p].name.as_str()))
            .collect();
        assert_eq!(
            names,
            [
                None,
                Some("process_query"),
                Some("process_query"),
                Some("process_query"),
                Some("process_query"),
                Some("llm_call"),
                Some("llm_call"),
            ]
        );
    }

    #[test]
    fn a_failed_attempt_then_a_success_folds_as_a_retry() {
        let trace = Trace::new(
            TraceId([1; 16]),
            vec![
                span(1, None, "llm_call", 0, 1000),
                failed(span(2, Some(1), "api_call", 10, 110), "RateLimitError"),
                span(3, Some(1), "api_call", 124, 900),
            ],
        );
        let groups = sibling_groups(&layout(&trace));
        assert_eq!(
            groups,
            [SiblingGroup {
                kind: GroupKind::Retry,
                rows: vec![1, 2],
                failed: 1,
                lost_nano: 114_000_000,
            }]
        );
    }

    #[test]
    fn all_attempts_failing_lose_the_whole_group() {
        let trace = Trace::new(
            TraceId([1; 16]),
            vec![
                span(1, None, "llm_call", 0, 1000),
                failed(span(2, Some(1), "api_call", 0, 100), "RateLimitError"),
                failed(span(3, Some(1), "api_call", 200, 300), "RateLimitError"),
            ],
        );
        let g = sibling_groups(&layout(&trace));
        assert_eq!(g[0].kind, GroupKind::Retry);
        assert_eq!((g[0].failed, g[0].lost_nano), (2, 300_000_000));
    }

    #[test]
    fn overlapping_calls_with_failures_are_a_run_not_a_retry() {
        let trace = Trace::new(
            TraceId([1; 16]),
            vec![
                span(1, None, "root", 0, 1000),
                failed(span(2, Some(1), "search", 0, 500), "Timeout"),
                failed(span(3, Some(1), "search", 10, 500), "Timeout"),
                span(4, Some(1), "search", 20, 500),
            ],
        );
        let g = sibling_groups(&layout(&trace));
        assert_eq!(g.len(), 1);
        assert_eq!(
            (g[0].kind, g[0].failed, g[0].lost_nano),
            (GroupKind::Run, 2, 0)
        );
    }

    #[test]
    fn runs_need_three_and_only_adjacent_same_names_group() {
        let mut spans = vec![span(1, None, "agent", 0, 10_000)];
        for i in 0..5u8 {
            let at = 10 + u64::from(i) * 10;
            spans.push(span(10 + i, Some(1), "vector_search", at, at + 5));
        }
        spans.push(span(30, Some(1), "rerank", 100, 110));
        spans.push(span(31, Some(1), "vector_search", 120, 130));
        spans.push(span(32, Some(1), "vector_search", 130, 140));
        // Children of a grouped member stay under it.
        spans.push(span(40, Some(10), "embed", 11, 12));
        let trace = Trace::new(TraceId([1; 16]), spans);
        let g = layout(&trace);
        let groups = sibling_groups(&g);
        assert_eq!(groups.len(), 1, "{groups:?}");
        assert_eq!(groups[0].kind, GroupKind::Run);
        let names: Vec<&str> = groups[0]
            .rows
            .iter()
            .map(|&r| g.rows[r].name.as_str())
            .collect();
        assert_eq!(names, ["vector_search"; 5]);
        assert_eq!(g.rows[groups[0].rows[0] + 1].name, "embed");
    }

    #[test]
    fn the_founding_example_has_no_groups() {
        assert!(sibling_groups(&layout(&crate::test_support::founding())).is_empty());
    }
}
