//! Recursive-descent parser from tokens to the syntax tree, with type checks.
//!
//! Grammar (lowest precedence first; `&&` and `||` share one level and
//! associate left, as in Tempo):
//!
//! ```text
//! query      = pipeline EOF
//! pipeline   = spansets { "|" stage }
//! spansets   = structural { ("&&" | "||") structural }
//! structural = primary { (">" | ">>" | "<" | "<<" | "~") primary }
//! primary    = "{" [ cond ] "}" | "(" pipeline ")"
//! cond       = unary { ("&&" | "||") unary }
//! unary      = "!" unary | "(" cond ")" | "true" | "false" | field op literal
//! stage      = "{" [ cond ] "}" | aggregate op literal | "select" "(" field { "," field } ")"
//! aggregate  = "count" "(" ")" | ("avg" | "min" | "max" | "sum") "(" field ")"
//! ```
//!
//! The parser does not evaluate anything; it rejects comparisons that can
//! never be meaningful (`duration = "abc"`, `status = 3`, `kind > server`)
//! with the position of the offending token.

use chaintrace_model::{SpanKind, StatusCode};

use crate::ast::{
    Aggregate, Attribute, CompareOp, Comparison, Field, FieldExpr, Intrinsic, Literal, Query,
    SpansetExpr, SpansetFilter, SpansetOp, Stage,
};
use crate::error::{quote_found, ParseError};
use crate::lexer::{tokenize, Token, TokenKind};
use crate::pattern::{compile_pattern, Pattern};

/// Longest query text accepted, in bytes.
pub const MAX_QUERY_BYTES: usize = 16 * 1024;
/// Most operators (`&&`, `||`, `!`, structural, pipeline stages) in one query.
pub const MAX_OPERATORS: usize = 256;
/// Deepest nesting of parentheses and braces.
const MAX_DEPTH: usize = 64;

const FIELD_HINT: &str = "a field such as name, status, duration, kind, statusMessage, rootName, \
                          rootServiceName, traceDuration, span.x, resource.x or .x";
const COMPARE_OPS: &str = "a comparison operator (=, !=, >, >=, <, <=, =~, !~)";

/// Parses TraceQL text into a [`Query`].
pub(crate) fn parse_query(text: &str) -> Result<Query, ParseError> {
    if text.len() > MAX_QUERY_BYTES {
        return Err(ParseError::new(
            text,
            MAX_QUERY_BYTES,
            &format!("a query of at most {MAX_QUERY_BYTES} bytes"),
            format!("{} bytes", text.len()),
        ));
    }
    let tokens = tokenize(text)?;
    let mut parser = Parser {
        text,
        tokens,
        next: 0,
        depth: 0,
        operators: 0,
    };
    let expr = parser.pipeline()?;
    if parser.peek() != &TokenKind::Eof {
        return Err(parser.error_here(
            "a spanset operator (&&, ||, >, >>, <, <<, ~), \"|\" or the end of the query",
        ));
    }
    Ok(Query { expr })
}

struct Parser<'a> {
    text: &'a str,
    tokens: Vec<Token>,
    next: usize,
    depth: usize,
    operators: usize,
}

impl Parser<'_> {
    fn peek(&self) -> &TokenKind {
        &self.tokens[self.next].kind
    }

    fn current(&self) -> &Token {
        &self.tokens[self.next]
    }

    fn bump(&mut self) -> Token {
        let token = self.tokens[self.next].clone();
        if token.kind != TokenKind::Eof {
            self.next += 1;
        }
        token
    }

    fn error_at(&self, token: &Token, expected: &str) -> ParseError {
        ParseError::new(
            self.text,
            token.start,
            expected,
            quote_found(&self.text[token.start..token.end]),
        )
    }

    fn error_here(&self, expected: &str) -> ParseError {
        self.error_at(self.current(), expected)
    }

    fn expect(&mut self, kind: TokenKind, expected: &str) -> Result<Token, ParseError> {
        if *self.peek() == kind {
            Ok(self.bump())
        } else {
            Err(self.error_here(expected))
        }
    }

    fn count_operator(&mut self, token: &Token) -> Result<(), ParseError> {
        self.operators += 1;
        if self.operators > MAX_OPERATORS {
            return Err(self.error_at(
                token,
                &format!("a simpler query (at most {MAX_OPERATORS} operators)"),
            ));
        }
        Ok(())
    }

    fn enter(&mut self, token: &Token) -> Result<(), ParseError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.error_at(
                token,
                &format!("at most {MAX_DEPTH} levels of nested parentheses and braces"),
            ));
        }
        Ok(())
    }

    // ---- spanset level ----

    fn pipeline(&mut self) -> Result<SpansetExpr, ParseError> {
        let input = self.spansets()?;
        if *self.peek() != TokenKind::Pipe {
            return Ok(input);
        }
        // `(a | s1) | s2` is the same as `a | s1 | s2`: keep one flat pipeline.
        let (input, mut stages) = match input {
            SpansetExpr::Pipeline { input, stages } => (input, stages),
            other => (Box::new(other), Vec::new()),
        };
        while *self.peek() == TokenKind::Pipe {
            let pipe = self.bump();
            self.count_operator(&pipe)?;
            stages.push(self.stage()?);
        }
        Ok(SpansetExpr::Pipeline { input, stages })
    }

    fn spansets(&mut self) -> Result<SpansetExpr, ParseError> {
        let mut lhs = self.structural()?;
        loop {
            let op = match self.peek() {
                TokenKind::AndAnd => SpansetOp::And,
                TokenKind::OrOr => SpansetOp::Or,
                _ => return Ok(lhs),
            };
            let token = self.bump();
            self.count_operator(&token)?;
            let rhs = self.structural()?;
            lhs = binary(op, lhs, rhs);
        }
    }

    fn structural(&mut self) -> Result<SpansetExpr, ParseError> {
        let mut lhs = self.spanset_primary()?;
        loop {
            let op = match self.peek() {
                TokenKind::Gt => SpansetOp::Child,
                TokenKind::GtGt => SpansetOp::Descendant,
                TokenKind::Lt => SpansetOp::Parent,
                TokenKind::LtLt => SpansetOp::Ancestor,
                TokenKind::Tilde => SpansetOp::Sibling,
                _ => return Ok(lhs),
            };
            let token = self.bump();
            self.count_operator(&token)?;
            let rhs = self.spanset_primary()?;
            lhs = binary(op, lhs, rhs);
        }
    }

    fn spanset_primary(&mut self) -> Result<SpansetExpr, ParseError> {
        match self.peek() {
            TokenKind::LBrace => Ok(SpansetExpr::Filter(self.filter()?)),
            TokenKind::LParen => {
                let open = self.bump();
                self.enter(&open)?;
                let inner = self.pipeline()?;
                self.expect(TokenKind::RParen, "\")\" or an operator")?;
                self.depth -= 1;
                Ok(inner)
            }
            _ => Err(self.error_here("a spanset filter \"{ ... }\" or \"(\"")),
        }
    }

    fn filter(&mut self) -> Result<SpansetFilter, ParseError> {
        let open = self.expect(TokenKind::LBrace, "\"{\"")?;
        self.enter(&open)?;
        if *self.peek() == TokenKind::RBrace {
            self.bump();
            self.depth -= 1;
            return Ok(SpansetFilter { condition: None });
        }
        let condition = self.condition()?;
        self.expect(TokenKind::RBrace, "\"&&\", \"||\" or \"}\"")?;
        self.depth -= 1;
        Ok(SpansetFilter {
            condition: Some(condition),
        })
    }

    // ---- span conditions ----

    fn condition(&mut self) -> Result<FieldExpr, ParseError> {
        let mut lhs = self.unary()?;
        loop {
            let and = match self.peek() {
                TokenKind::AndAnd => true,
                TokenKind::OrOr => false,
                _ => return Ok(lhs),
            };
            let token = self.bump();
            self.count_operator(&token)?;
            let rhs = Box::new(self.unary()?);
            lhs = if and {
                FieldExpr::And(Box::new(lhs), rhs)
            } else {
                FieldExpr::Or(Box::new(lhs), rhs)
            };
        }
    }

    fn unary(&mut self) -> Result<FieldExpr, ParseError> {
        match self.peek() {
            TokenKind::Bang => {
                let bang = self.bump();
                self.count_operator(&bang)?;
                self.enter(&bang)?;
                let inner = self.unary()?;
                self.depth -= 1;
                Ok(FieldExpr::Not(Box::new(inner)))
            }
            TokenKind::LParen => {
                let open = self.bump();
                self.enter(&open)?;
                let inner = self.condition()?;
                self.expect(TokenKind::RParen, "\")\", \"&&\" or \"||\"")?;
                self.depth -= 1;
                Ok(inner)
            }
            TokenKind::Word(w) if w == "true" || w == "false" => {
                let value = w == "true";
                self.bump();
                Ok(FieldExpr::Bool(value))
            }
            _ => Ok(FieldExpr::Compare(self.comparison()?)),
        }
    }

    fn comparison(&mut self) -> Result<Comparison, ParseError> {
        let field = self.field()?;
        let op_token = self.current().clone();
        let op = self.compare_op(COMPARE_OPS)?;
        let value_token = self.current().clone();
        let value = self.literal()?;
        let pattern = check_comparison(self, &field, op, &op_token, &value, &value_token)?;
        Ok(Comparison {
            field,
            op,
            value,
            pattern,
        })
    }

    fn field(&mut self) -> Result<Field, ParseError> {
        let token = self.current().clone();
        match &token.kind {
            TokenKind::Attribute(scope, name) => {
                self.bump();
                Ok(Field::Attribute(Attribute {
                    scope: *scope,
                    name: name.clone(),
                }))
            }
            TokenKind::Word(w) => match Intrinsic::from_name(w) {
                Some(i) => {
                    self.bump();
                    Ok(Field::Intrinsic(i))
                }
                None if w.contains('.') => Err(self.error_at(
                    &token,
                    &format!(
                        "{FIELD_HINT} (an attribute needs a scope: span.{w}, resource.{w} or .{w})"
                    ),
                )),
                None => Err(self.error_at(&token, FIELD_HINT)),
            },
            _ => Err(self.error_at(&token, FIELD_HINT)),
        }
    }

    fn compare_op(&mut self, expected: &str) -> Result<CompareOp, ParseError> {
        let op = match self.peek() {
            TokenKind::Eq => CompareOp::Eq,
            TokenKind::Ne => CompareOp::Ne,
            TokenKind::Gt => CompareOp::Gt,
            TokenKind::Ge => CompareOp::Ge,
            TokenKind::Lt => CompareOp::Lt,
            TokenKind::Le => CompareOp::Le,
            TokenKind::Match => CompareOp::Match,
            TokenKind::NotMatch => CompareOp::NotMatch,
            _ => return Err(self.error_here(expected)),
        };
        self.bump();
        Ok(op)
    }

    fn literal(&mut self) -> Result<Literal, ParseError> {
        let value = match self.peek() {
            TokenKind::String(s) => Literal::String(s.clone()),
            TokenKind::Int(i) => Literal::Int(*i),
            TokenKind::Float(x) => Literal::Float(*x),
            TokenKind::Duration(d) => Literal::Duration(*d),
            TokenKind::Word(w) => match w.as_str() {
                "true" => Literal::Bool(true),
                "false" => Literal::Bool(false),
                "nil" => Literal::Nil,
                "ok" => Literal::Status(StatusCode::Ok),
                "error" => Literal::Status(StatusCode::Error),
                "unset" => Literal::Status(StatusCode::Unset),
                "server" => Literal::Kind(SpanKind::Server),
                "client" => Literal::Kind(SpanKind::Client),
                "internal" => Literal::Kind(SpanKind::Internal),
                "producer" => Literal::Kind(SpanKind::Producer),
                "consumer" => Literal::Kind(SpanKind::Consumer),
                "unspecified" => Literal::Kind(SpanKind::Unspecified),
                _ => return Err(self.unknown_value()),
            },
            _ => return Err(self.unknown_value()),
        };
        self.bump();
        Ok(value)
    }

    fn unknown_value(&self) -> ParseError {
        let mut expected = "a value: a \"string\", a number, a duration such as 500ms, true, \
                            false, nil, a status (ok, error, unset) or a kind (server, client, ...)"
            .to_string();
        if let TokenKind::Word(w) = self.peek() {
            expected.push_str(&format!(" (write \"{w}\" for text)"));
        }
        self.error_here(&expected)
    }

    // ---- pipeline stages ----

    fn stage(&mut self) -> Result<Stage, ParseError> {
        let token = self.current().clone();
        let func = match &token.kind {
            TokenKind::LBrace => return Ok(Stage::Filter(self.filter()?)),
            TokenKind::Word(w) if w == "select" => return self.select(),
            TokenKind::Word(w) if matches!(w.as_str(), "count" | "avg" | "min" | "max" | "sum") => {
                w.clone()
            }
            _ => {
                return Err(self.error_at(
                    &token,
                    "a pipeline stage: \"{ ... }\", count(), avg(...), min(...), max(...), sum(...) or select(...)",
                ))
            }
        };
        self.bump();
        self.expect(TokenKind::LParen, &format!("\"(\" after {func}"))?;
        let aggregate = if func == "count" {
            Aggregate::Count
        } else {
            let field_token = self.current().clone();
            let field = self.field()?;
            let numeric = match &field {
                Field::Intrinsic(i) => matches!(i, Intrinsic::Duration | Intrinsic::TraceDuration),
                Field::Attribute(_) => true,
            };
            if !numeric {
                return Err(self.error_at(
                    &field_token,
                    &format!("a number-valued field inside {func}(): duration, traceDuration or an attribute"),
                ));
            }
            match func.as_str() {
                "avg" => Aggregate::Avg(field),
                "min" => Aggregate::Min(field),
                "max" => Aggregate::Max(field),
                _ => Aggregate::Sum(field),
            }
        };
        let close_hint = if func == "count" {
            "\")\" (count() takes no argument)"
        } else {
            "\")\""
        };
        self.expect(TokenKind::RParen, close_hint)?;
        let op_token = self.current().clone();
        let op = self.compare_op(&format!(
            "a comparison operator (=, !=, >, >=, <, <=) after {aggregate}"
        ))?;
        if matches!(op, CompareOp::Match | CompareOp::NotMatch) {
            return Err(self.error_at(&op_token, "=, !=, >, >=, < or <= (aggregates are numbers)"));
        }
        let value_token = self.current().clone();
        let value = self.literal()?;
        let is_duration_field = match &aggregate {
            Aggregate::Count => false,
            Aggregate::Avg(f) | Aggregate::Min(f) | Aggregate::Max(f) | Aggregate::Sum(f) => {
                matches!(f, Field::Intrinsic(_))
            }
        };
        let fits = match (&aggregate, &value) {
            (Aggregate::Count, Literal::Int(_) | Literal::Float(_)) => true,
            (Aggregate::Count, _) => false,
            (_, Literal::Duration(_)) => true,
            (_, Literal::Int(_) | Literal::Float(_)) => !is_duration_field,
            _ => false,
        };
        if !fits {
            let want = if matches!(aggregate, Aggregate::Count) {
                "a number"
            } else if is_duration_field {
                "a duration such as 500ms or 1.5s"
            } else {
                "a number or a duration"
            };
            return Err(self.error_at(&value_token, &format!("{want} to compare with {aggregate}")));
        }
        Ok(Stage::Aggregate {
            func: aggregate,
            op,
            value,
        })
    }

    fn select(&mut self) -> Result<Stage, ParseError> {
        self.bump();
        self.expect(TokenKind::LParen, "\"(\" after select")?;
        let mut fields = vec![self.field()?];
        while *self.peek() == TokenKind::Comma {
            self.bump();
            fields.push(self.field()?);
        }
        self.expect(TokenKind::RParen, "\",\" or \")\"")?;
        Ok(Stage::Select(fields))
    }
}

fn binary(op: SpansetOp, lhs: SpansetExpr, rhs: SpansetExpr) -> SpansetExpr {
    SpansetExpr::Binary {
        op,
        lhs: Box::new(lhs),
        rhs: Box::new(rhs),
    }
}

/// Rejects comparisons whose types can never match and compiles regexes.
fn check_comparison(
    parser: &Parser<'_>,
    field: &Field,
    op: CompareOp,
    op_token: &Token,
    value: &Literal,
    value_token: &Token,
) -> Result<Option<Pattern>, ParseError> {
    let is_regex = matches!(op, CompareOp::Match | CompareOp::NotMatch);
    let equality_only = matches!(op, CompareOp::Eq | CompareOp::Ne);
    let value_error =
        |want: &str| Err(parser.error_at(value_token, &format!("{want} to compare with {field}")));
    let op_error = |want: &str| Err(parser.error_at(op_token, want));
    match field {
        Field::Intrinsic(i) => match i {
            Intrinsic::Name
            | Intrinsic::StatusMessage
            | Intrinsic::RootName
            | Intrinsic::RootServiceName => {
                if !matches!(value, Literal::String(_)) {
                    return value_error("a \"string\"");
                }
            }
            Intrinsic::Status => {
                if !equality_only {
                    return op_error("= or != (status compares only for equality)");
                }
                if !matches!(value, Literal::Status(_)) {
                    return value_error("ok, error or unset (unquoted)");
                }
            }
            Intrinsic::Kind => {
                if !equality_only {
                    return op_error("= or != (kind compares only for equality)");
                }
                if !matches!(value, Literal::Kind(_)) {
                    return value_error(
                        "server, client, internal, producer, consumer or unspecified (unquoted)",
                    );
                }
            }
            Intrinsic::Duration | Intrinsic::TraceDuration => {
                if is_regex {
                    return op_error("=, !=, >, >=, < or <= (durations are not text)");
                }
                if !matches!(value, Literal::Duration(_)) {
                    return value_error("a duration such as 500ms or 1.5s");
                }
            }
        },
        Field::Attribute(_) => match value {
            Literal::Status(_) | Literal::Kind(_) => {
                let word = &parser.text[value_token.start..value_token.end];
                return Err(parser.error_at(
                    value_token,
                    &format!(
                        "a \"string\", number, boolean, duration or nil to compare with {field} \
                         (write \"{word}\" for text)"
                    ),
                ));
            }
            Literal::Nil | Literal::Bool(_) if !equality_only => {
                let what = if *value == Literal::Nil {
                    "nil"
                } else {
                    "a boolean"
                };
                return op_error(&format!("= or != (to compare with {what})"));
            }
            _ => {}
        },
    }
    if !is_regex {
        return Ok(None);
    }
    let Literal::String(source) = value else {
        return Err(parser.error_at(value_token, "a \"string\" holding a regular expression"));
    };
    compile_pattern(source)
        .map(Some)
        .map_err(|why| parser.error_at(value_token, &format!("a valid regular expression ({why})")))
}

#[cfg(test)]
mod tests;
