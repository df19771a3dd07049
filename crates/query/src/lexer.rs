//! Splits TraceQL text into tokens, each with the byte range it came from.
//!
//! The lexer knows spelling only (operators, words, attribute paths, strings,
//! numbers, durations); what a word means is the parser's business. Every
//! error points at the byte where the bad token starts.

use chaintrace_model::DurationNanos;

use crate::ast::AttributeScope;
use crate::error::{quote_found, ParseError};

/// What a token is.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum TokenKind {
    LBrace,
    RBrace,
    LParen,
    RParen,
    Comma,
    Pipe,
    AndAnd,
    OrOr,
    Bang,
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
    Match,
    NotMatch,
    GtGt,
    LtLt,
    Tilde,
    /// A bare word: `name`, `span:name`, `error`, `count`; also `foo.bar`
    /// (kept whole so that the parser can say an attribute needs a scope).
    Word(String),
    Attribute(AttributeScope, String),
    String(String),
    Int(i64),
    Float(f64),
    Duration(DurationNanos),
    Eof,
}

/// A token and where it sits in the query text.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Token {
    pub kind: TokenKind,
    /// Byte offset of the first byte.
    pub start: usize,
    /// Byte offset one past the last byte.
    pub end: usize,
}

/// Characters allowed in an unquoted attribute name (after `span.`, `resource.` or `.`).
pub(crate) fn is_attribute_char(c: char) -> bool {
    !c.is_whitespace()
        && !c.is_control()
        && !matches!(
            c,
            '{' | '}'
                | '('
                | ')'
                | '='
                | '~'
                | '!'
                | '<'
                | '>'
                | '&'
                | '|'
                | '^'
                | ','
                | '"'
                | '\''
                | '`'
        )
}

fn is_word_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Turns the whole text into tokens, ending with one `Eof` token.
pub(crate) fn tokenize(text: &str) -> Result<Vec<Token>, ParseError> {
    let mut lexer = Lexer { text, pos: 0 };
    let mut tokens = Vec::new();
    loop {
        let token = lexer.next_token()?;
        let done = token.kind == TokenKind::Eof;
        tokens.push(token);
        if done {
            return Ok(tokens);
        }
    }
}

struct Lexer<'a> {
    text: &'a str,
    pos: usize,
}

impl Lexer<'_> {
    fn rest(&self) -> &str {
        &self.text[self.pos..]
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn peek2(&self) -> Option<char> {
        self.rest().chars().nth(1)
    }

    fn error(&self, at: usize, expected: &str, found: String) -> ParseError {
        ParseError::new(self.text, at, expected, found)
    }

    fn next_token(&mut self) -> Result<Token, ParseError> {
        while self.peek().is_some_and(char::is_whitespace) {
            self.pos += self.peek().map_or(1, char::len_utf8);
        }
        let start = self.pos;
        let Some(c) = self.peek() else {
            return Ok(Token {
                kind: TokenKind::Eof,
                start,
                end: start,
            });
        };
        let two = |l: &Self, second: char| l.peek2() == Some(second);
        let (kind, len) = match c {
            '{' => (TokenKind::LBrace, 1),
            '}' => (TokenKind::RBrace, 1),
            '(' => (TokenKind::LParen, 1),
            ')' => (TokenKind::RParen, 1),
            ',' => (TokenKind::Comma, 1),
            '~' => (TokenKind::Tilde, 1),
            '|' if two(self, '|') => (TokenKind::OrOr, 2),
            '|' => (TokenKind::Pipe, 1),
            '&' if two(self, '&') => (TokenKind::AndAnd, 2),
            '!' if two(self, '=') => (TokenKind::Ne, 2),
            '!' if two(self, '~') => (TokenKind::NotMatch, 2),
            '!' => (TokenKind::Bang, 1),
            '=' if two(self, '~') => (TokenKind::Match, 2),
            '=' => (TokenKind::Eq, 1),
            '>' if two(self, '=') => (TokenKind::Ge, 2),
            '>' if two(self, '>') => (TokenKind::GtGt, 2),
            '>' => (TokenKind::Gt, 1),
            '<' if two(self, '=') => (TokenKind::Le, 2),
            '<' if two(self, '<') => (TokenKind::LtLt, 2),
            '<' => (TokenKind::Lt, 1),
            '"' => {
                return self
                    .double_quoted(start)
                    .map(|s| self.token(TokenKind::String(s), start))
            }
            '`' => {
                return self
                    .backquoted(start)
                    .map(|s| self.token(TokenKind::String(s), start))
            }
            '.' => {
                self.pos += 1;
                return self.attribute(AttributeScope::Any, start);
            }
            c if c.is_ascii_digit() => return self.number(start),
            '-' if self.peek2().is_some_and(|d| d.is_ascii_digit()) => return self.number(start),
            c if is_word_start(c) => return self.word(start),
            '&' => return Err(self.error(start, "\"&&\"", "\"&\"".into())),
            c => {
                return Err(self.error(
                    start,
                    "an operator, a field, a value, a brace or a parenthesis",
                    quote_found(&c.to_string()),
                ))
            }
        };
        self.pos += len;
        Ok(self.token(kind, start))
    }

    fn token(&self, kind: TokenKind, start: usize) -> Token {
        Token {
            kind,
            start,
            end: self.pos,
        }
    }

    /// A word, a colon intrinsic (`span:name`), or a scoped attribute (`span.x`).
    fn word(&mut self, start: usize) -> Result<Token, ParseError> {
        let len = self
            .rest()
            .find(|c| !is_word_char(c))
            .unwrap_or(self.rest().len());
        self.pos += len;
        let word = &self.text[start..self.pos];
        match self.peek() {
            Some('.') if matches!(word, "span" | "resource") => {
                self.pos += 1;
                let scope = if word == "span" {
                    AttributeScope::Span
                } else {
                    AttributeScope::Resource
                };
                return self.attribute(scope, start);
            }
            Some(':') if self.peek2().is_some_and(is_word_start) => {
                self.pos += 1;
                let len = self
                    .rest()
                    .find(|c| !is_word_char(c))
                    .unwrap_or(self.rest().len());
                self.pos += len;
            }
            Some('.') if self.peek2().is_some_and(is_attribute_char) => {
                // `foo.bar`: an attribute without a scope; keep it whole for the error.
                let len = self
                    .rest()
                    .find(|c| !is_attribute_char(c))
                    .unwrap_or(self.rest().len());
                self.pos += len;
            }
            _ => {}
        }
        let word = self.text[start..self.pos].to_string();
        Ok(self.token(TokenKind::Word(word), start))
    }

    /// The name after `span.`, `resource.` or `.`: bare, or a double-quoted string.
    fn attribute(&mut self, scope: AttributeScope, start: usize) -> Result<Token, ParseError> {
        let name = if self.peek() == Some('"') {
            self.double_quoted(self.pos)?
        } else {
            let len = self
                .rest()
                .find(|c| !is_attribute_char(c))
                .unwrap_or(self.rest().len());
            if len == 0 {
                let found = quote_found(&self.peek().map(String::from).unwrap_or_default());
                return Err(self.error(self.pos, "an attribute name", found));
            }
            self.pos += len;
            self.text[self.pos - len..self.pos].to_string()
        };
        Ok(self.token(TokenKind::Attribute(scope, name), start))
    }

    /// A Go-style double-quoted string: `\" \\ \n \r \t \uXXXX \UXXXXXXXX`.
    fn double_quoted(&mut self, start: usize) -> Result<String, ParseError> {
        self.pos = start + 1;
        let mut out = String::new();
        loop {
            let Some(c) = self.peek() else {
                return Err(self.error(
                    start,
                    "a closing '\"' for this string",
                    "end of query".into(),
                ));
            };
            let at = self.pos;
            self.pos += c.len_utf8();
            match c {
                '"' => return Ok(out),
                '\\' => {
                    let esc = self.peek();
                    self.pos += esc.map_or(0, char::len_utf8);
                    let decoded = match esc {
                        Some('"') => Some('"'),
                        Some('\\') => Some('\\'),
                        Some('n') => Some('\n'),
                        Some('r') => Some('\r'),
                        Some('t') => Some('\t'),
                        Some('u') => self.hex_escape(4),
                        Some('U') => self.hex_escape(8),
                        _ => None,
                    };
                    let Some(decoded) = decoded else {
                        let end = (self.pos).min(self.text.len());
                        return Err(self.error(
                            at,
                            "an escape such as \\\" \\\\ \\n \\t or \\u00e9 (write \\\\ for a \
                             backslash, or use a `backquoted` string for regular expressions)",
                            quote_found(&self.text[at..end]),
                        ));
                    };
                    out.push(decoded);
                }
                c => out.push(c),
            }
        }
    }

    fn hex_escape(&mut self, digits: usize) -> Option<char> {
        let hex = self.rest().get(..digits)?;
        let code = u32::from_str_radix(hex, 16).ok()?;
        if !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return None;
        }
        self.pos += digits;
        char::from_u32(code)
    }

    /// A raw string between backquotes: no escapes.
    fn backquoted(&mut self, start: usize) -> Result<String, ParseError> {
        let body = &self.text[start + 1..];
        match body.find('`') {
            Some(len) => {
                self.pos = start + 1 + len + 1;
                Ok(body[..len].to_string())
            }
            None => Err(self.error(
                start,
                "a closing '`' for this string",
                "end of query".into(),
            )),
        }
    }

    /// An integer, a float or a duration (`-12`, `0.5`, `1.5s`, `1m30s`).
    fn number(&mut self, start: usize) -> Result<Token, ParseError> {
        let negative = self.peek() == Some('-');
        if negative {
            self.pos += 1;
        }
        let len = self
            .rest()
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '.' || c == 'µ'))
            .unwrap_or(self.rest().len());
        self.pos += len;
        let text = &self.text[start..self.pos];
        let digits = &text[usize::from(negative)..];
        let bad = |what: &str| self.error(start, what, quote_found(text));
        if digits.chars().all(|c| c.is_ascii_digit()) {
            let value = text.parse::<i64>().map_err(|_| {
                bad("an integer between -9223372036854775808 and 9223372036854775807")
            })?;
            return Ok(self.token(TokenKind::Int(value), start));
        }
        if let Some((whole, frac)) = digits.split_once('.') {
            let plain = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit());
            if plain(whole) && plain(frac) {
                let value: f64 = text.parse().map_err(|_| bad("a number"))?;
                if !value.is_finite() {
                    return Err(bad("a finite number"));
                }
                return Ok(self.token(TokenKind::Float(value), start));
            }
        }
        const DURATION: &str = "a number or a duration such as 500ms, 1.5s, 2m, 1h, 100us or 10ns";
        if negative {
            return Err(bad("a duration that is not negative"));
        }
        let nanos = parse_duration(digits).ok_or_else(|| bad(DURATION))?;
        Ok(self.token(TokenKind::Duration(DurationNanos(nanos)), start))
    }
}

/// Go-style durations with exact integer arithmetic: `1.5s`, `300ms`, `1h30m`.
fn parse_duration(text: &str) -> Option<u64> {
    let mut rest = text;
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let num_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        let (number, tail) = rest.split_at(num_len);
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let scale: u128 = match unit {
            "ns" => 1,
            "us" | "µs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "d" => 86_400_000_000_000,
            _ => return None,
        };
        let (whole, frac) = number.split_once('.').unwrap_or((number, ""));
        if whole.is_empty() || (number.contains('.') && frac.is_empty()) || frac.contains('.') {
            return None;
        }
        let whole: u128 = whole.parse().ok()?;
        let mut part = whole.checked_mul(scale)?;
        // Fractional digits beyond nanosecond precision are dropped.
        let mut unit_scale = scale;
        for digit in frac.bytes() {
            unit_scale /= 10;
            part += u128::from(digit - b'0') * unit_scale;
        }
        total = total.checked_add(part)?;
        rest = tail;
    }
    u64::try_from(total).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(text: &str) -> Vec<TokenKind> {
        tokenize(text)
            .unwrap()
            .into_iter()
            .map(|t| t.kind)
            .collect()
    }

    #[test]
    fn operators_use_the_longest_match() {
        use TokenKind::*;
        assert_eq!(
            kinds("&& || | ! != !~ = =~ > >= >> < <= << ~"),
            vec![
                AndAnd, OrOr, Pipe, Bang, Ne, NotMatch, Eq, Match, Gt, Ge, GtGt, Lt, Le, LtLt,
                Tilde, Eof
            ]
        );
    }

    #[test]
    fn words_attributes_and_colon_intrinsics() {
        use TokenKind::*;
        assert_eq!(
            kinds("span:name span.gen_ai.request.model resource.service.name .x span.\"my attr\" foo.bar"),
            vec![
                Word("span:name".into()),
                Attribute(AttributeScope::Span, "gen_ai.request.model".into()),
                Attribute(AttributeScope::Resource, "service.name".into()),
                Attribute(AttributeScope::Any, "x".into()),
                Attribute(AttributeScope::Span, "my attr".into()),
                Word("foo.bar".into()),
                Eof
            ]
        );
    }

    #[test]
    fn numbers_and_durations() {
        use TokenKind::*;
        let d = |n| Duration(DurationNanos(n));
        assert_eq!(
            kinds("42 -7 0.25 500ms 1.5s 2m 1h 100us 10ns 1m30s 2µs"),
            vec![
                Int(42),
                Int(-7),
                Float(0.25),
                d(500_000_000),
                d(1_500_000_000),
                d(120_000_000_000),
                d(3_600_000_000_000),
                d(100_000),
                d(10),
                d(90_000_000_000),
                d(2_000),
                Eof
            ]
        );
        assert_eq!(parse_duration("18446744073709551615ns"), Some(u64::MAX));
        assert_eq!(parse_duration("18446744073709551616ns"), None);
        assert_eq!(parse_duration("1.s"), None);
        assert_eq!(parse_duration("5"), None);
    }

    #[test]
    fn strings_with_escapes_and_backquotes() {
        use TokenKind::*;
        assert_eq!(
            kinds(r#""a\"b\\c\n\u00e9" `raw\d+`"#),
            vec![String("a\"b\\c\né".into()), String("raw\\d+".into()), Eof]
        );
    }

    #[test]
    fn errors_point_at_the_bad_token() {
        let err = tokenize(r#"{ name = "abc }"#).unwrap_err();
        assert_eq!(err.position, 9);
        let err = tokenize(r#"{ span.x =~ "\d+" }"#).unwrap_err();
        assert_eq!(err.position, 13);
        assert!(err.to_string().contains("backquoted"), "{err}");
        let err = tokenize("{ duration > 5parsecs }").unwrap_err();
        assert_eq!(err.position, 13);
        assert_eq!(
            err.to_string(),
            "at 13: expected a number or a duration such as 500ms, 1.5s, 2m, 1h, 100us or 10ns, found \"5parsecs\""
        );
        assert_eq!(tokenize("{ a # }").unwrap_err().position, 4);
        assert_eq!(tokenize("{ span. }").unwrap_err().position, 7);
        assert_eq!(tokenize("{ x & y }").unwrap_err().position, 4);
    }
}
