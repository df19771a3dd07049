//! The error of parsing: a query that does not parse or does not type-check.

/// Why a query was rejected, and where.
///
/// `Display` reads `at 14: expected a comparison operator, found "llm_call"`;
/// `position` is the 0-based byte offset of the offending token, `line` and
/// `column` (1-based, column counted in characters) locate it in multi-line
/// queries.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("at {position}: expected {expected}, found {found}")]
pub struct ParseError {
    /// Byte offset (0-based) of the offending token in the query text.
    pub position: usize,
    /// 1-based line of `position`.
    pub line: usize,
    /// 1-based column of `position`, in characters.
    pub column: usize,
    /// What would have been valid there.
    pub expected: String,
    /// What was there instead (quoted source text, or `end of query`).
    pub found: String,
}

impl ParseError {
    pub(crate) fn new(text: &str, position: usize, expected: &str, found: String) -> ParseError {
        let before = text.get(..position).unwrap_or(text);
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before[line_start..].chars().count() + 1;
        ParseError {
            position,
            line,
            column,
            expected: expected.to_string(),
            found,
        }
    }
}

/// Quotes a token's source text for `found`, cut to 40 characters.
pub(crate) fn quote_found(source: &str) -> String {
    if source.is_empty() {
        return "end of query".to_string();
    }
    let mut cut: String = source.chars().take(40).collect();
    if cut.len() < source.len() {
        cut.push('…');
    }
    // String literals already carry their quotes.
    if cut.starts_with('"') || cut.starts_with('`') {
        cut
    } else {
        format!("\"{cut}\"")
    }
}
