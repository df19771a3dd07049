//! A TraceQL regular expression (`=~`, `!~`): compiled once when the query
//! is parsed, anchored so that it must match the whole value, as in Tempo,
//! and priced so that matching it can be held to a [`RegexBudget`].
//!
//! The `regex` crate never backtracks, but it is only linear in the value's
//! length *times the automaton's size*: when its lazy DFA gives up (as it
//! does on `[ab]*a[ab]{1000}`, whose DFA would need 2¹⁰⁰⁰ states) it falls
//! back to a Pike VM that may step every NFA state for every byte. A compiled
//! size limit caps the automaton, not that product, so each match is charged
//! `(value bytes + 1) × NFA states` before it runs. The charge is the worst
//! case: most matches take far less. This module does not know which field
//! the value came from.

use regex::{Regex, RegexBuilder};
use regex_automata::nfa::thompson;

use crate::budget::RegexBudget;

/// Compiled size limit of one regular expression, in bytes.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// A compiled, anchored regular expression; equal when the sources are equal.
#[derive(Debug, Clone)]
pub(crate) struct Pattern {
    regex: Regex,
    /// States of the anchored pattern's Thompson NFA: what one byte of a
    /// value can cost at worst, in work units.
    states: u64,
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.regex.as_str() == other.regex.as_str()
    }
}

impl Pattern {
    /// Work units a match against `value` is charged: an upper bound on the
    /// steps the slowest engine `regex` may fall back to takes.
    pub(crate) fn cost(&self, value: &str) -> u64 {
        let positions = u64::try_from(value.len())
            .unwrap_or(u64::MAX)
            .saturating_add(1);
        positions.saturating_mul(self.states)
    }

    /// Whether the pattern matches the whole of `value`, if `budget` can pay
    /// for it; `None` (and the budget marked exhausted, naming `comparison`)
    /// when it cannot, in which case nothing was run.
    pub(crate) fn matches_within(
        &self,
        value: &str,
        budget: &mut RegexBudget,
        comparison: impl FnOnce() -> String,
    ) -> Option<bool> {
        budget
            .charge(self.cost(value), value.len(), comparison)
            .then(|| self.regex.is_match(value))
    }
}

/// Compiles `source` so that it must match the whole value, like Tempo (RE2).
pub(crate) fn compile_pattern(source: &str) -> Result<Pattern, String> {
    let build = |text: &str| {
        RegexBuilder::new(text)
            .size_limit(REGEX_SIZE_LIMIT)
            .dfa_size_limit(REGEX_SIZE_LIMIT)
            .build()
            .map_err(|e| last_line(&e.to_string()))
    };
    // Validate the pattern alone first: `a)|(b` must not sneak past the anchors.
    build(source)?;
    let anchored = format!("^(?:{source})$");
    let regex = build(&anchored)?;
    // The same syntax defaults as `regex` (Unicode, UTF-8), so the count is
    // that of the NFA the regex's engines run.
    let nfa = thompson::Compiler::new()
        .configure(thompson::Config::new().nfa_size_limit(Some(REGEX_SIZE_LIMIT)))
        .build(&anchored)
        .map_err(|e| last_line(&e.to_string()))?;
    let states = u64::try_from(nfa.states().len()).unwrap_or(u64::MAX);
    Ok(Pattern { regex, states })
}

/// The last non-empty line of a regex error, which says what was wrong
/// without the multi-line source excerpt.
fn last_line(text: &str) -> String {
    let last = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    last.trim().trim_start_matches("error: ").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cost_grows_with_the_value_and_the_automaton() {
        let small = compile_pattern("llm.*").expect("compiles");
        let big = compile_pattern("[ab]*a[ab]{1000}").expect("compiles");
        assert!(small.states > 0);
        assert!(
            big.states > 1000,
            "one state per repetition at least: {}",
            big.states
        );
        assert_eq!(small.cost(""), small.states);
        assert_eq!(small.cost("llm_call"), 9 * small.states);
        assert!(big.cost("ab") > small.cost("ab"));
    }

    #[test]
    fn a_match_the_budget_cannot_pay_for_is_not_run() {
        let p = compile_pattern("llm.*").expect("compiles");
        let cost = p.cost("llm_call");
        let mut budget = RegexBudget::new(cost);
        assert_eq!(
            p.matches_within("llm_call", &mut budget, String::new),
            Some(true)
        );
        assert_eq!(budget.spent(), cost);
        assert_eq!(
            p.matches_within("llm_call", &mut budget, || "name =~ \"llm.*\"".into()),
            None
        );
        assert_eq!(budget.spent(), cost, "a refused match spends nothing");
        let why = budget.exhausted().expect("exhausted").to_string();
        assert!(why.contains(r#"name =~ "llm.*""#), "{why}");
    }
}
