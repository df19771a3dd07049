//! A TraceQL regular expression (`=~`, `!~`): compiled once when the query
//! is parsed, anchored so that it must match the whole value, as in Tempo.
//!
//! This module owns how a pattern is compiled and matched; it does not know
//! which field the value came from.

use regex::{Regex, RegexBuilder};

/// Compiled size limit of one regular expression, in bytes.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// A compiled, anchored regular expression; equal when the sources are equal.
#[derive(Debug, Clone)]
pub(crate) struct Pattern(pub(crate) Regex);

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_str() == other.0.as_str()
    }
}

/// Compiles `source` so that it must match the whole value, like Tempo (RE2).
pub(crate) fn compile_pattern(source: &str) -> Result<Pattern, String> {
    let build = |text: &str| {
        RegexBuilder::new(text)
            .size_limit(REGEX_SIZE_LIMIT)
            .dfa_size_limit(REGEX_SIZE_LIMIT)
            .build()
            .map_err(|e| {
                let text = e.to_string();
                let last = text
                    .lines()
                    .rev()
                    .find(|l| !l.trim().is_empty())
                    .unwrap_or("");
                last.trim().trim_start_matches("error: ").to_string()
            })
    };
    // Validate the pattern alone first: `a)|(b` must not sneak past the anchors.
    build(source)?;
    build(&format!("^(?:{source})$")).map(Pattern)
}
