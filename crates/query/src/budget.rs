//! How much regex matching one search may do, and the error saying it ran out.
//!
//! A [`RegexBudget`] is made by whoever runs a query over many traces (one
//! per search request) and passed to every
//! [`evaluate_within`](crate::evaluate_within). Each `=~` / `!~` match is
//! charged its worst-case work before it runs (see the `pattern` module: one
//! unit is one NFA state stepped over one byte); a match the budget cannot
//! pay for is not run, and the evaluation fails with
//! [`RegexBudgetExhausted`] instead of returning an answer that is silently
//! missing traces. Once exhausted, a budget stays exhausted: the caller is
//! expected to stop and say so.
//!
//! Matching semantics never change: a value is matched in full or not at
//! all, however long it is.

/// Regex work units one search may spend by default: 5 × 10⁸.
///
/// One unit is one NFA state stepped over one byte. The slowest engine
/// `regex` falls back to gets through 0.1–0.2 units per nanosecond (the
/// `regex_budget` example measures it), so this allows at most about
/// 2.5–5 s of matching per search. Ordinary matches, which the lazy DFA
/// handles, run far faster than they are charged: a search over 5 000
/// traces of 100 spans with two short patterns on names and a model
/// attribute spends about 1.7 × 10⁸ units in well under a second.
pub const DEFAULT_REGEX_WORK_UNITS: u64 = 500_000_000;

/// Longest rendering of the comparison kept in [`RegexBudgetExhausted`].
const MAX_COMPARISON_CHARS: usize = 80;

/// The regex work one search may still do.
///
/// ```
/// use chaintrace_query::{evaluate_within, parse, RegexBudget};
/// # use chaintrace_model::{Trace, TraceId};
/// # let traces: Vec<Trace> = vec![Trace::new(TraceId([1; 16]), vec![])];
///
/// let q = parse(r#"{ name =~ "llm.*" }"#)?;
/// let mut budget = RegexBudget::default();
/// for trace in &traces {
///     match evaluate_within(&q, trace, &mut budget) {
///         Ok(found) => { /* Some(matched spans) or None */ }
///         Err(stopped) => { eprintln!("search stopped: {stopped}"); break; }
///     }
/// }
/// # Ok::<(), chaintrace_query::ParseError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegexBudget {
    limit: u64,
    spent: u64,
    exhausted: Option<RegexBudgetExhausted>,
}

impl Default for RegexBudget {
    /// A budget of [`DEFAULT_REGEX_WORK_UNITS`].
    fn default() -> RegexBudget {
        RegexBudget::new(DEFAULT_REGEX_WORK_UNITS)
    }
}

impl RegexBudget {
    /// A budget of `limit` work units.
    pub fn new(limit: u64) -> RegexBudget {
        RegexBudget {
            limit,
            spent: 0,
            exhausted: None,
        }
    }

    /// A budget that never runs out, for trusted queries over trusted data
    /// (what [`evaluate`](crate::evaluate) uses).
    pub fn unlimited() -> RegexBudget {
        RegexBudget::new(u64::MAX)
    }

    /// The work units this budget started with.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// The work units charged so far (never more than [`limit`](Self::limit)).
    pub fn spent(&self) -> u64 {
        self.spent
    }

    /// The match that did not fit, once the budget has run out.
    pub fn exhausted(&self) -> Option<&RegexBudgetExhausted> {
        self.exhausted.as_ref()
    }

    /// Charges `units` for matching a `value_bytes`-long value; false, with
    /// nothing charged and the budget marked exhausted (naming the
    /// comparison), when they do not fit or the budget already ran out.
    pub(crate) fn charge(
        &mut self,
        units: u64,
        value_bytes: usize,
        comparison: impl FnOnce() -> String,
    ) -> bool {
        if self.exhausted.is_some() {
            return false;
        }
        let left = self.limit - self.spent;
        if units <= left {
            self.spent += units;
            return true;
        }
        self.exhausted = Some(RegexBudgetExhausted {
            comparison: shorten(comparison()),
            value_bytes,
            needed: units,
            left,
            limit: self.limit,
        });
        false
    }
}

/// A query evaluation stopped because a regex match would have cost more
/// work than the search had left; its answer is incomplete.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "regex work budget exhausted: {comparison} on a {value_bytes}-byte value needs \
     {needed} work units, {left} of {limit} were left"
)]
pub struct RegexBudgetExhausted {
    /// The comparison whose match did not fit, as the normalised query
    /// spells it (cut to 80 characters).
    pub comparison: String,
    /// Length of the value it would have been matched against.
    pub value_bytes: usize,
    /// Work units the match was charged.
    pub needed: u64,
    /// Work units the budget had left.
    pub left: u64,
    /// Work units the budget started with.
    pub limit: u64,
}

fn shorten(text: String) -> String {
    match text.char_indices().nth(MAX_COMPARISON_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn long_comparisons_are_cut() {
        let mut budget = RegexBudget::new(0);
        assert!(!budget.charge(1, 3, || "x".repeat(200)));
        let e = budget.exhausted().expect("exhausted");
        assert_eq!(e.comparison.chars().count(), MAX_COMPARISON_CHARS + 1);
        assert!(e.comparison.ends_with('…'));
    }

    proptest! {
        /// The budget is never overspent, refuses exactly what does not
        /// fit, and stays refused afterwards.
        #[test]
        fn never_overspent(limit in 0u64..10_000, charges in prop::collection::vec(0u64..3_000, 0..20)) {
            let mut budget = RegexBudget::new(limit);
            let mut paid = 0u64;
            let mut refused = false;
            for units in charges {
                let fits = !refused && paid + units <= limit;
                prop_assert_eq!(budget.charge(units, 1, || "c".into()), fits);
                if fits {
                    paid += units;
                } else {
                    refused = true;
                }
                prop_assert_eq!(budget.spent(), paid);
                prop_assert!(budget.spent() <= budget.limit());
                prop_assert_eq!(budget.exhausted().is_some(), refused);
            }
        }
    }
}
