//! Evaluates a parsed query against one trace, in memory, without I/O.
//!
//! Every spanset expression becomes a set of span indices of the trace; the
//! trace matches when the final set is non-empty. Conditions inside `{ }`
//! are tested span by span; structural operators use the parent links,
//! resolved once per trace and only when the query has such an operator.
//! Malformed traces (parent cycles, duplicate span ids, missing parents)
//! never loop or panic: each structural walk is linear in the trace size.
//! Regex matches are charged to the caller's [`RegexBudget`] before they
//! run; an evaluation that cannot pay for one fails instead of answering.

use std::cell::{OnceCell, RefCell};
use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};

use chaintrace_model::{
    error_class_matches, find_attr, AnyValue, Span, SpanKind, StatusCode, Trace,
};
use serde::Serialize;

use crate::ast::{
    Aggregate, Attribute, AttributeScope, CompareOp, Comparison, Field, FieldExpr, Intrinsic,
    Literal, Query, SpansetExpr, SpansetFilter, SpansetOp, Stage,
};
use crate::budget::{RegexBudget, RegexBudgetExhausted};

/// Attribute keys that name an error class; see the crate docs on matching
/// them. Defined once, in `chaintrace_model::conventions`.
pub use chaintrace_model::conventions::ERROR_TYPE_KEYS;

/// Span attributes that, when a span lacks them, are read from its first
/// `exception` event (the virtual attributes described in the crate docs).
pub const EXCEPTION_EVENT_KEYS: [&str; 2] = ["exception.type", "exception.message"];

/// The spans of one trace that satisfied a query.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TraceMatch {
    /// Matched spans in trace order (ascending `span_index`).
    pub matched: Vec<MatchedSpan>,
}

/// One matched span.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MatchedSpan {
    /// Index into `Trace::spans`.
    pub span_index: usize,
    /// Values of the fields named by `select(...)` stages, keyed by the field
    /// as the normalised query spells it (`span.gen_ai.request.model`,
    /// `name`, `duration` in nanoseconds as an integer). Absent fields are left out.
    pub selected: Vec<(String, AnyValue)>,
}

/// Runs `query` over `trace`: `None` when the trace does not satisfy it,
/// otherwise the spans of the final spanset.
///
/// Regex matches are not held to any budget: use [`evaluate_within`] for
/// queries or data from outside the process.
pub fn evaluate(query: &Query, trace: &Trace) -> Option<TraceMatch> {
    let mut budget = RegexBudget::unlimited();
    // `None` on an error is unreachable in practice: an unlimited budget
    // runs out only after 2⁶⁴ units, far beyond the bytes × states of any
    // trace in memory.
    evaluate_within(query, trace, &mut budget).unwrap_or_default()
}

/// Like [`evaluate`], charging every regex match to `budget` first. When a
/// match does not fit, it is not run and the evaluation fails: the trace
/// may or may not match, and the caller's scan should stop and say so.
pub fn evaluate_within(
    query: &Query,
    trace: &Trace,
    budget: &mut RegexBudget,
) -> Result<Option<TraceMatch>, RegexBudgetExhausted> {
    if let Some(e) = budget.exhausted() {
        return Err(e.clone());
    }
    let ctx = Context::new(trace, budget);
    let result = ctx.spanset(&query.expr);
    let budget = ctx.budget.into_inner();
    if let Some(e) = budget.exhausted() {
        return Err(e.clone());
    }
    if result.is_empty() {
        return Ok(None);
    }
    let Spanset {
        members,
        mut selected,
    } = result;
    let matched = members
        .iter()
        .enumerate()
        .filter(|(_, m)| **m)
        .map(|(span_index, _)| MatchedSpan {
            span_index,
            selected: selected.remove(&span_index).unwrap_or_default(),
        })
        .collect();
    Ok(Some(TraceMatch { matched }))
}

/// Per-trace facts shared by all spans.
struct Context<'a> {
    trace: &'a Trace,
    root: Option<&'a Span>,
    trace_duration: u64,
    /// Index of each span's parent within the trace; built on first use.
    parents: OnceCell<Vec<Option<usize>>>,
    /// What regex matches may still cost; a cell because conditions are
    /// tested through shared references.
    budget: RefCell<&'a mut RegexBudget>,
}

/// A set of spans of the trace, plus what `select` attached to them.
struct Spanset {
    members: Vec<bool>,
    selected: BTreeMap<usize, Vec<(String, AnyValue)>>,
}

impl Spanset {
    fn from_members(members: Vec<bool>) -> Spanset {
        Spanset {
            members,
            selected: BTreeMap::new(),
        }
    }

    fn is_empty(&self) -> bool {
        !self.members.iter().any(|m| *m)
    }

    fn clear(&mut self) {
        self.members.iter_mut().for_each(|m| *m = false);
        self.selected.clear();
    }

    /// Keeps only the spans where `keep` is true (and their selections).
    fn retain(mut self, keep: impl Fn(usize) -> bool) -> Spanset {
        for (i, m) in self.members.iter_mut().enumerate() {
            *m = *m && keep(i);
        }
        let members = &self.members;
        self.selected.retain(|i, _| members[*i]);
        self
    }

    fn union(mut self, other: Spanset) -> Spanset {
        for (m, o) in self.members.iter_mut().zip(&other.members) {
            *m |= *o;
        }
        for (i, values) in other.selected {
            let mine = self.selected.entry(i).or_default();
            for (key, value) in values {
                if !mine.iter().any(|(k, _)| *k == key) {
                    mine.push((key, value));
                }
            }
        }
        self
    }
}

/// A field's value on one span, before comparison.
enum Value<'a> {
    Attr(&'a AnyValue),
    Text(&'a str),
    Duration(u64),
    Status(StatusCode),
    Kind(SpanKind),
}

/// A number for comparisons across int, float and duration.
#[derive(Clone, Copy)]
enum Num {
    Int(i128),
    Float(f64),
}

impl Num {
    fn as_f64(self) -> f64 {
        match self {
            Num::Int(i) => i as f64,
            Num::Float(x) => x,
        }
    }

    fn cmp(self, other: Num) -> Option<Ordering> {
        match (self, other) {
            (Num::Int(a), Num::Int(b)) => Some(a.cmp(&b)),
            _ => self.as_f64().partial_cmp(&other.as_f64()),
        }
    }
}

fn ordering_satisfies(op: CompareOp, ord: Option<Ordering>) -> bool {
    match op {
        CompareOp::Eq => ord == Some(Ordering::Equal),
        CompareOp::Ne => ord != Some(Ordering::Equal),
        CompareOp::Gt => ord == Some(Ordering::Greater),
        CompareOp::Ge => matches!(ord, Some(Ordering::Greater | Ordering::Equal)),
        CompareOp::Lt => ord == Some(Ordering::Less),
        CompareOp::Le => matches!(ord, Some(Ordering::Less | Ordering::Equal)),
        CompareOp::Match | CompareOp::NotMatch => false,
    }
}

fn literal_number(value: &Literal) -> Option<Num> {
    match value {
        Literal::Int(i) => Some(Num::Int(i128::from(*i))),
        Literal::Float(x) => Some(Num::Float(*x)),
        Literal::Duration(d) => Some(Num::Int(i128::from(d.0))),
        _ => None,
    }
}

/// A span attribute, falling back to the first `exception` event for the
/// virtual `exception.type` / `exception.message` attributes.
fn span_attribute<'a>(span: &'a Span, key: &str) -> Option<&'a AnyValue> {
    span.attr(key).or_else(|| {
        if !EXCEPTION_EVENT_KEYS.contains(&key) {
            return None;
        }
        span.events
            .iter()
            .find(|e| e.name == "exception")
            .and_then(|e| find_attr(&e.attributes, key))
    })
}

fn attribute<'a>(span: &'a Span, attr: &Attribute) -> Option<&'a AnyValue> {
    let resource = || find_attr(&span.resource.attributes, &attr.name);
    match attr.scope {
        AttributeScope::Span => span_attribute(span, &attr.name),
        AttributeScope::Resource => resource(),
        AttributeScope::Any => span_attribute(span, &attr.name).or_else(resource),
    }
}

/// `=` / `!=` on an error-class attribute: a dotless name also matches the
/// last dotted segment (`RateLimitError` matches `__main__.RateLimitError`).
fn error_type_equals(key: &str, value: &str, wanted: &str) -> bool {
    if ERROR_TYPE_KEYS.contains(&key) {
        error_class_matches(value, wanted)
    } else {
        value == wanted
    }
}

impl<'a> Context<'a> {
    fn new(trace: &'a Trace, budget: &'a mut RegexBudget) -> Context<'a> {
        let start = trace.start();
        let end = trace.spans.iter().map(|s| s.end).max().unwrap_or_default();
        Context {
            trace,
            root: trace.root(),
            trace_duration: end.since(start).0,
            parents: OnceCell::new(),
            budget: RefCell::new(budget),
        }
    }

    fn len(&self) -> usize {
        self.trace.spans.len()
    }

    fn parents(&self) -> &[Option<usize>] {
        self.parents.get_or_init(|| {
            let mut index = HashMap::with_capacity(self.len());
            for (i, span) in self.trace.spans.iter().enumerate() {
                index.entry(span.span_id).or_insert(i);
            }
            self.trace
                .spans
                .iter()
                .enumerate()
                .map(|(i, span)| {
                    let parent = index.get(&span.parent_span_id?).copied()?;
                    (parent != i).then_some(parent)
                })
                .collect()
        })
    }

    // ---- spansets ----

    fn spanset(&self, expr: &SpansetExpr) -> Spanset {
        match expr {
            SpansetExpr::Filter(filter) => self.filter(filter),
            SpansetExpr::Binary { op, lhs, rhs } => {
                let left = self.spanset(lhs);
                if left.is_empty() && *op != SpansetOp::Or {
                    return left;
                }
                let right = self.spanset(rhs);
                match op {
                    SpansetOp::Or => left.union(right),
                    SpansetOp::And if right.is_empty() => right,
                    SpansetOp::And => left.union(right),
                    structural => self.structural(*structural, &left, right),
                }
            }
            SpansetExpr::Pipeline { input, stages } => {
                let mut set = self.spanset(input);
                for stage in stages {
                    if set.is_empty() {
                        break;
                    }
                    set = self.stage(stage, set);
                }
                set
            }
        }
    }

    fn filter(&self, filter: &SpansetFilter) -> Spanset {
        let members = match &filter.condition {
            None => vec![true; self.len()],
            Some(c) => self
                .trace
                .spans
                .iter()
                .map(|s| self.condition(c, s))
                .collect(),
        };
        Spanset::from_members(members)
    }

    /// The right-hand spans related to a left-hand span as `op` says.
    fn structural(&self, op: SpansetOp, left: &Spanset, right: Spanset) -> Spanset {
        let parents = self.parents();
        let l = &left.members;
        match op {
            SpansetOp::Child => right.retain(|b| parents[b].is_some_and(|p| l[p])),
            SpansetOp::Parent => {
                let mut is_parent = vec![false; self.len()];
                for p in (0..self.len()).filter(|a| l[*a]).filter_map(|a| parents[a]) {
                    is_parent[p] = true;
                }
                right.retain(|b| is_parent[b])
            }
            SpansetOp::Descendant => {
                let below = has_ancestor_in(parents, l);
                right.retain(|b| below[b])
            }
            SpansetOp::Ancestor => {
                let mut above = vec![false; self.len()];
                for a in (0..self.len()).filter(|a| l[*a]) {
                    let mut next = parents[a];
                    while let Some(p) = next {
                        if above[p] {
                            break; // already walked from here (or a cycle)
                        }
                        above[p] = true;
                        next = parents[p];
                    }
                }
                right.retain(|b| above[b])
            }
            SpansetOp::Sibling => {
                // Siblings share a parent id, even when that parent span is missing.
                let spans = &self.trace.spans;
                let mut per_parent: HashMap<_, usize> = HashMap::new();
                for a in (0..self.len()).filter(|a| l[*a]) {
                    if let Some(p) = spans[a].parent_span_id {
                        *per_parent.entry(p).or_default() += 1;
                    }
                }
                right.retain(|b| {
                    spans[b].parent_span_id.is_some_and(|p| {
                        per_parent.get(&p).copied().unwrap_or(0) > usize::from(l[b])
                    })
                })
            }
            SpansetOp::And | SpansetOp::Or => {
                unreachable!("set operators are handled by the caller")
            }
        }
    }

    fn stage(&self, stage: &Stage, mut set: Spanset) -> Spanset {
        match stage {
            Stage::Filter(filter) => {
                let keep = self.filter(filter).members;
                set.retain(|i| keep[i])
            }
            Stage::Aggregate { func, op, value } => {
                let holds = self
                    .aggregate(func, &set)
                    .zip(literal_number(value))
                    .is_some_and(|(got, want)| ordering_satisfies(*op, Num::Float(got).cmp(want)));
                if !holds {
                    set.clear();
                }
                set
            }
            Stage::Select(fields) => {
                for i in (0..self.len()).filter(|i| set.members[*i]) {
                    let span = &self.trace.spans[i];
                    let entry = set.selected.entry(i).or_default();
                    for field in fields {
                        let key = field.to_string();
                        if entry.iter().any(|(k, _)| *k == key) {
                            continue;
                        }
                        if let Some(value) = self.field(field, span) {
                            entry.push((key, to_any_value(value)));
                        }
                    }
                }
                set
            }
        }
    }

    fn aggregate(&self, func: &Aggregate, set: &Spanset) -> Option<f64> {
        let members = (0..self.len()).filter(|i| set.members[*i]);
        let field = match func {
            Aggregate::Count => return Some(members.count() as f64),
            Aggregate::Avg(f) | Aggregate::Min(f) | Aggregate::Max(f) | Aggregate::Sum(f) => f,
        };
        let values: Vec<f64> = members
            .filter_map(|i| match self.field(field, &self.trace.spans[i])? {
                Value::Duration(d) => Some(d as f64),
                Value::Attr(AnyValue::Int(n)) => Some(*n as f64),
                Value::Attr(AnyValue::Double(x)) => Some(*x),
                _ => None,
            })
            .collect();
        if values.is_empty() {
            return None;
        }
        let sum: f64 = values.iter().sum();
        Some(match func {
            Aggregate::Avg(_) => sum / values.len() as f64,
            Aggregate::Min(_) => values.iter().copied().fold(f64::INFINITY, f64::min),
            Aggregate::Max(_) => values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            _ => sum,
        })
    }

    // ---- conditions on one span ----

    fn condition(&self, expr: &FieldExpr, span: &'a Span) -> bool {
        match expr {
            FieldExpr::Bool(b) => *b,
            FieldExpr::Compare(c) => self.compare(c, span),
            FieldExpr::Not(inner) => !self.condition(inner, span),
            FieldExpr::And(l, r) => self.condition(l, span) && self.condition(r, span),
            FieldExpr::Or(l, r) => self.condition(l, span) || self.condition(r, span),
        }
    }

    fn field(&self, field: &Field, span: &'a Span) -> Option<Value<'a>> {
        Some(match field {
            Field::Attribute(a) => Value::Attr(attribute(span, a)?),
            Field::Intrinsic(i) => match i {
                Intrinsic::Name => Value::Text(&span.name),
                Intrinsic::Status => Value::Status(span.status.code),
                Intrinsic::StatusMessage => Value::Text(&span.status.message),
                Intrinsic::Duration => Value::Duration(span.duration().0),
                Intrinsic::Kind => Value::Kind(span.kind),
                Intrinsic::RootName => Value::Text(&self.root?.name),
                Intrinsic::RootServiceName => Value::Text(self.root?.service_name()),
                Intrinsic::TraceDuration => Value::Duration(self.trace_duration),
            },
        })
    }

    fn compare(&self, c: &Comparison, span: &'a Span) -> bool {
        let value = self.field(&c.field, span);
        if c.value == Literal::Nil {
            return (c.op == CompareOp::Eq) == value.is_none();
        }
        // A missing field never matches, `!=` and `!~` included (as in Tempo).
        let Some(value) = value else {
            return false;
        };
        let text = match &value {
            Value::Text(t) => Some(*t),
            Value::Attr(AnyValue::String(s)) => Some(s.as_str()),
            _ => None,
        };
        match (&value, &c.value) {
            (_, Literal::String(wanted)) => {
                let Some(text) = text else {
                    return false;
                };
                match c.op {
                    CompareOp::Match | CompareOp::NotMatch => {
                        let Some(pattern) = &c.pattern else {
                            return false;
                        };
                        let mut budget = self.budget.borrow_mut();
                        // Unpaid, the answer is unknown; `false` is as good
                        // as any, since the caller gets an error instead.
                        pattern
                            .matches_within(text, &mut budget, || c.to_string())
                            .is_some_and(|m| m == (c.op == CompareOp::Match))
                    }
                    CompareOp::Eq | CompareOp::Ne => {
                        let key = match &c.field {
                            Field::Attribute(a) => a.name.as_str(),
                            Field::Intrinsic(_) => "",
                        };
                        error_type_equals(key, text, wanted) == (c.op == CompareOp::Eq)
                    }
                    op => ordering_satisfies(op, Some(text.cmp(wanted.as_str()))),
                }
            }
            (Value::Duration(d), Literal::Duration(want)) => {
                ordering_satisfies(c.op, Some(d.cmp(&want.0)))
            }
            (Value::Status(s), Literal::Status(want)) => (s == want) == (c.op == CompareOp::Eq),
            (Value::Kind(k), Literal::Kind(want)) => (k == want) == (c.op == CompareOp::Eq),
            (Value::Attr(AnyValue::Bool(b)), Literal::Bool(want)) => {
                (b == want) == (c.op == CompareOp::Eq)
            }
            (Value::Attr(v), wanted) => {
                let got = match v {
                    AnyValue::Int(i) => Num::Int(i128::from(*i)),
                    AnyValue::Double(x) => Num::Float(*x),
                    _ => return false,
                };
                literal_number(wanted).is_some_and(|w| ordering_satisfies(c.op, got.cmp(w)))
            }
            _ => false,
        }
    }
}

/// For every span: does any ancestor belong to `set`? Linear, cycle-safe.
fn has_ancestor_in(parents: &[Option<usize>], set: &[bool]) -> Vec<bool> {
    let n = parents.len();
    let mut memo: Vec<Option<bool>> = vec![None; n];
    let mut on_path = vec![false; n];
    let mut path = Vec::new();
    for start in 0..n {
        if memo[start].is_some() {
            continue;
        }
        let mut current = start;
        let answer = loop {
            path.push(current);
            on_path[current] = true;
            match parents[current] {
                None => break false,
                Some(p) if set[p] => break true,
                Some(p) => match memo[p] {
                    Some(known) => break known,
                    // A cycle whose members were all checked on the way up.
                    None if on_path[p] => break false,
                    None => current = p,
                },
            }
        };
        for node in path.drain(..) {
            memo[node] = Some(answer);
            on_path[node] = false;
        }
    }
    memo.into_iter().map(|m| m.unwrap_or(false)).collect()
}

fn to_any_value(value: Value<'_>) -> AnyValue {
    match value {
        Value::Attr(v) => v.clone(),
        Value::Text(t) => AnyValue::String(t.into()),
        Value::Duration(d) => AnyValue::Int(i64::try_from(d).unwrap_or(i64::MAX)),
        Value::Status(s) => AnyValue::String(
            match s {
                StatusCode::Ok => "ok",
                StatusCode::Error => "error",
                StatusCode::Unset => "unset",
            }
            .into(),
        ),
        Value::Kind(k) => AnyValue::String(k.as_str().into()),
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod fixture_tests;

#[cfg(test)]
mod budget_tests;
