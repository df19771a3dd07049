//! The syntax tree of a TraceQL query, and its normalised text form.
//!
//! Only the parser builds these values (a comparison carries the regular
//! expression compiled from its literal), so every [`Query`] is well typed.
//! `Display` prints a canonical spelling that parses back to the same tree:
//! unscoped intrinsic names, double-quoted strings, durations in the largest
//! exact unit, and parentheses wherever `&&`/`||` are mixed.

use std::fmt;

use chaintrace_model::{DurationNanos, SpanKind, StatusCode};

use crate::pattern::Pattern;

/// A parsed query: a spanset expression, possibly ending in a pipeline.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    /// The expression evaluated against each trace.
    pub expr: SpansetExpr,
}

/// An expression whose value, for one trace, is a set of spans.
#[derive(Debug, Clone, PartialEq)]
pub enum SpansetExpr {
    /// `{ condition }`: the spans for which the condition holds.
    Filter(SpansetFilter),
    /// Two spansets combined by a set or structural operator.
    Binary {
        /// The operator.
        op: SpansetOp,
        /// Left operand.
        lhs: Box<SpansetExpr>,
        /// Right operand.
        rhs: Box<SpansetExpr>,
    },
    /// `input | stage | stage ...`; never nested directly in another pipeline's input.
    Pipeline {
        /// The spanset the stages start from.
        input: Box<SpansetExpr>,
        /// Stages, applied left to right.
        stages: Vec<Stage>,
    },
}

/// `{ ... }`: a condition tested on every span of a trace.
#[derive(Debug, Clone, PartialEq)]
pub struct SpansetFilter {
    /// `None` for `{}`, which selects every span.
    pub condition: Option<FieldExpr>,
}

/// An operator between two spansets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SpansetOp {
    /// `&&`: both sides non-empty; the result is their union.
    And,
    /// `||`: the union.
    Or,
    /// `>`: right-hand spans whose parent is a left-hand span.
    Child,
    /// `>>`: right-hand spans with an ancestor among the left-hand spans.
    Descendant,
    /// `<`: right-hand spans that are the parent of a left-hand span.
    Parent,
    /// `<<`: right-hand spans that are an ancestor of a left-hand span.
    Ancestor,
    /// `~`: right-hand spans with a sibling (same parent, other span) among the left-hand spans.
    Sibling,
}

impl SpansetOp {
    /// The operator as written in a query.
    pub fn as_str(self) -> &'static str {
        match self {
            SpansetOp::And => "&&",
            SpansetOp::Or => "||",
            SpansetOp::Child => ">",
            SpansetOp::Descendant => ">>",
            SpansetOp::Parent => "<",
            SpansetOp::Ancestor => "<<",
            SpansetOp::Sibling => "~",
        }
    }

    /// Structural operators bind tighter than `&&` and `||`, as in Tempo.
    fn is_structural(self) -> bool {
        !matches!(self, SpansetOp::And | SpansetOp::Or)
    }
}

/// A boolean condition on one span.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldExpr {
    /// `true` or `false`.
    Bool(bool),
    /// `field op value`.
    Compare(Comparison),
    /// `!(...)`.
    Not(Box<FieldExpr>),
    /// `a && b`.
    And(Box<FieldExpr>, Box<FieldExpr>),
    /// `a || b`.
    Or(Box<FieldExpr>, Box<FieldExpr>),
}

/// `field op value`, type-checked by the parser.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    /// What is compared.
    pub field: Field,
    /// How.
    pub op: CompareOp,
    /// With what.
    pub value: Literal,
    /// For `=~` / `!~`: the literal compiled as an anchored (full-match) regex.
    pub(crate) pattern: Option<Pattern>,
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CompareOp {
    /// `=`
    Eq,
    /// `!=`
    Ne,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `=~`: the whole value matches the regular expression.
    Match,
    /// `!~`: the value does not match the regular expression.
    NotMatch,
}

impl CompareOp {
    /// The operator as written in a query.
    pub fn as_str(self) -> &'static str {
        match self {
            CompareOp::Eq => "=",
            CompareOp::Ne => "!=",
            CompareOp::Gt => ">",
            CompareOp::Ge => ">=",
            CompareOp::Lt => "<",
            CompareOp::Le => "<=",
            CompareOp::Match => "=~",
            CompareOp::NotMatch => "!~",
        }
    }
}

/// Something a span has: an intrinsic or an attribute.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Field {
    /// A built-in property of every span or trace.
    Intrinsic(Intrinsic),
    /// A span or resource attribute.
    Attribute(Attribute),
}

/// The intrinsics of the subset; each also has Tempo's colon spelling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Intrinsic {
    /// `name` / `span:name`: the span's operation name.
    Name,
    /// `status` / `span:status`: `ok`, `error` or `unset`.
    Status,
    /// `statusMessage` / `span:statusMessage`: the status description ("" when absent).
    StatusMessage,
    /// `duration` / `span:duration`: end minus start.
    Duration,
    /// `kind` / `span:kind`.
    Kind,
    /// `rootName` / `trace:rootName`: the root span's name.
    RootName,
    /// `rootServiceName` / `trace:rootService`: the root span's `service.name`.
    RootServiceName,
    /// `traceDuration` / `trace:duration`: earliest start to latest end of the trace.
    TraceDuration,
}

impl Intrinsic {
    /// The unscoped spelling, used by `Display`.
    pub fn as_str(self) -> &'static str {
        match self {
            Intrinsic::Name => "name",
            Intrinsic::Status => "status",
            Intrinsic::StatusMessage => "statusMessage",
            Intrinsic::Duration => "duration",
            Intrinsic::Kind => "kind",
            Intrinsic::RootName => "rootName",
            Intrinsic::RootServiceName => "rootServiceName",
            Intrinsic::TraceDuration => "traceDuration",
        }
    }

    /// Reads either spelling: `name` or `span:name`, `rootServiceName` or `trace:rootService`, ...
    pub fn from_name(text: &str) -> Option<Intrinsic> {
        Some(match text {
            "name" | "span:name" => Intrinsic::Name,
            "status" | "span:status" => Intrinsic::Status,
            "statusMessage" | "span:statusMessage" => Intrinsic::StatusMessage,
            "duration" | "span:duration" => Intrinsic::Duration,
            "kind" | "span:kind" => Intrinsic::Kind,
            "rootName" | "trace:rootName" => Intrinsic::RootName,
            "rootServiceName" | "trace:rootService" => Intrinsic::RootServiceName,
            "traceDuration" | "trace:duration" => Intrinsic::TraceDuration,
            _ => return None,
        })
    }
}

/// `span.x`, `resource.x` or `.x`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Attribute {
    /// Where to look.
    pub scope: AttributeScope,
    /// The attribute key, e.g. `gen_ai.request.model`.
    pub name: String,
}

/// Where an attribute is looked up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AttributeScope {
    /// `span.x`: the span's own attributes (plus the virtual `exception.*` ones).
    Span,
    /// `resource.x`: the attributes of the span's resource.
    Resource,
    /// `.x`: the span first, then its resource.
    Any,
}

/// A constant in a query.
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    /// `"text"` or `` `text` ``.
    String(String),
    /// `42`, `-1`.
    Int(i64),
    /// `0.5`.
    Float(f64),
    /// `true` / `false`.
    Bool(bool),
    /// `nil`: with `=` the attribute is absent, with `!=` present.
    Nil,
    /// `500ms`, `1.5s`, `2m`, `1h`, `100us`, `10ns`.
    Duration(DurationNanos),
    /// `ok`, `error`, `unset`.
    Status(StatusCode),
    /// `server`, `client`, `internal`, `producer`, `consumer`, `unspecified`.
    Kind(SpanKind),
}

/// One step of a pipeline.
#[derive(Debug, Clone, PartialEq)]
pub enum Stage {
    /// `| { ... }`: keeps the spans of the spanset that satisfy the filter.
    Filter(SpansetFilter),
    /// `| count() > 3`, `| avg(duration) > 1s`: keeps the spanset only if the comparison holds.
    Aggregate {
        /// The aggregate function.
        func: Aggregate,
        /// The comparison operator.
        op: CompareOp,
        /// The value compared with (a number, or a duration for durations).
        value: Literal,
    },
    /// `| select(span.x, name)`: reports these fields for every span of the spanset.
    Select(Vec<Field>),
}

/// An aggregate over the spans of a spanset.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Aggregate {
    /// `count()`: the number of spans.
    Count,
    /// `avg(field)` over the spans where the field is a number or duration.
    Avg(Field),
    /// `max(field)`.
    Max(Field),
    /// `min(field)`.
    Min(Field),
    /// `sum(field)`.
    Sum(Field),
}

// ---- Display: the normalised form ----

impl fmt::Display for Query {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.expr.fmt(f)
    }
}

/// Binding strength of a spanset expression when printed as an operand.
fn spanset_prec(e: &SpansetExpr) -> u8 {
    match e {
        SpansetExpr::Pipeline { .. } => 0,
        SpansetExpr::Binary { op, .. } if !op.is_structural() => 1,
        SpansetExpr::Binary { .. } => 2,
        SpansetExpr::Filter(_) => 3,
    }
}

fn write_spanset_operand(f: &mut fmt::Formatter<'_>, e: &SpansetExpr, paren: bool) -> fmt::Result {
    if paren {
        write!(f, "({e})")
    } else {
        write!(f, "{e}")
    }
}

impl fmt::Display for SpansetExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpansetExpr::Filter(filter) => filter.fmt(f),
            SpansetExpr::Binary { op, lhs, rhs } => {
                let own = spanset_prec(self);
                // Left-associative: the left operand needs parentheses only when
                // it binds looser, or (for readability) when it mixes && and ||.
                let lhs_paren = spanset_prec(lhs) < own
                    || (own == 1
                        && spanset_prec(lhs) == 1
                        && matches!(&**lhs, SpansetExpr::Binary { op: l, .. } if l != op));
                write_spanset_operand(f, lhs, lhs_paren)?;
                write!(f, " {} ", op.as_str())?;
                write_spanset_operand(f, rhs, spanset_prec(rhs) <= own)
            }
            SpansetExpr::Pipeline { input, stages } => {
                write_spanset_operand(f, input, spanset_prec(input) == 0)?;
                for stage in stages {
                    write!(f, " | {stage}")?;
                }
                Ok(())
            }
        }
    }
}

impl fmt::Display for SpansetFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.condition {
            None => f.write_str("{}"),
            Some(c) => write!(f, "{{ {c} }}"),
        }
    }
}

/// 0 for `&&`/`||`, 1 for everything that needs no parentheses.
fn field_prec(e: &FieldExpr) -> u8 {
    match e {
        FieldExpr::And(..) | FieldExpr::Or(..) => 0,
        _ => 1,
    }
}

fn write_field_operand(f: &mut fmt::Formatter<'_>, e: &FieldExpr, paren: bool) -> fmt::Result {
    if paren {
        write!(f, "({e})")
    } else {
        write!(f, "{e}")
    }
}

impl fmt::Display for FieldExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (op, lhs, rhs) = match self {
            FieldExpr::Bool(b) => return write!(f, "{b}"),
            FieldExpr::Compare(c) => return c.fmt(f),
            FieldExpr::Not(inner) => return write!(f, "!({inner})"),
            FieldExpr::And(l, r) => ("&&", l, r),
            FieldExpr::Or(l, r) => ("||", l, r),
        };
        // Same rule as for spansets: && and || have equal precedence (as in
        // Tempo), so a left operand of the other kind gets parentheses.
        let lhs_paren = matches!(
            (self, &**lhs),
            (FieldExpr::And(..), FieldExpr::Or(..)) | (FieldExpr::Or(..), FieldExpr::And(..))
        );
        write_field_operand(f, lhs, lhs_paren)?;
        write!(f, " {op} ")?;
        write_field_operand(f, rhs, field_prec(rhs) == 0)
    }
}

impl fmt::Display for Comparison {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.field, self.op.as_str(), self.value)
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Field::Intrinsic(i) => f.write_str(i.as_str()),
            Field::Attribute(a) => a.fmt(f),
        }
    }
}

impl fmt::Display for Attribute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.scope {
            AttributeScope::Span => "span.",
            AttributeScope::Resource => "resource.",
            AttributeScope::Any => ".",
        })?;
        if !self.name.is_empty() && self.name.chars().all(crate::lexer::is_attribute_char) {
            f.write_str(&self.name)
        } else {
            write_quoted(f, &self.name)
        }
    }
}

/// Writes `text` as a double-quoted TraceQL string.
pub(crate) fn write_quoted(f: &mut impl fmt::Write, text: &str) -> fmt::Result {
    f.write_char('"')?;
    for c in text.chars() {
        match c {
            '"' => f.write_str("\\\"")?,
            '\\' => f.write_str("\\\\")?,
            '\n' => f.write_str("\\n")?,
            '\r' => f.write_str("\\r")?,
            '\t' => f.write_str("\\t")?,
            c if c.is_control() => write!(f, "\\u{:04x}", c as u32)?,
            c => f.write_char(c)?,
        }
    }
    f.write_char('"')
}

/// Writes a duration in the largest unit that represents it exactly.
pub(crate) fn write_duration(f: &mut impl fmt::Write, d: DurationNanos) -> fmt::Result {
    const UNITS: [(u64, &str); 5] = [
        (3_600_000_000_000, "h"),
        (60_000_000_000, "m"),
        (1_000_000_000, "s"),
        (1_000_000, "ms"),
        (1_000, "us"),
    ];
    for (scale, unit) in UNITS {
        if d.0 != 0 && d.0.is_multiple_of(scale) {
            return write!(f, "{}{unit}", d.0 / scale);
        }
    }
    write!(f, "{}ns", d.0)
}

impl fmt::Display for Literal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Literal::String(s) => write_quoted(f, s),
            Literal::Int(i) => write!(f, "{i}"),
            Literal::Float(x) => {
                let text = x.to_string();
                if text.contains('.') {
                    f.write_str(&text)
                } else {
                    write!(f, "{text}.0")
                }
            }
            Literal::Bool(b) => write!(f, "{b}"),
            Literal::Nil => f.write_str("nil"),
            Literal::Duration(d) => write_duration(f, *d),
            Literal::Status(s) => f.write_str(match s {
                StatusCode::Ok => "ok",
                StatusCode::Error => "error",
                StatusCode::Unset => "unset",
            }),
            Literal::Kind(k) => f.write_str(k.as_str()),
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stage::Filter(filter) => filter.fmt(f),
            Stage::Aggregate { func, op, value } => write!(f, "{func} {} {value}", op.as_str()),
            Stage::Select(fields) => {
                f.write_str("select(")?;
                for (i, field) in fields.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    field.fmt(f)?;
                }
                f.write_str(")")
            }
        }
    }
}

impl fmt::Display for Aggregate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Aggregate::Count => f.write_str("count()"),
            Aggregate::Avg(field) => write!(f, "avg({field})"),
            Aggregate::Max(field) => write!(f, "max({field})"),
            Aggregate::Min(field) => write!(f, "min({field})"),
            Aggregate::Sum(field) => write!(f, "sum({field})"),
        }
    }
}
