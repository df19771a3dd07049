//! Error groups: failed spans grouped by operation and error type, with
//! counts, first and last seen, and example traces.
//!
//! A span is failed when its status is ERROR. Its error type is, in this
//! order: the `error.type` attribute (OpenTelemetry semantic conventions), the
//! `error_type` attribute (the founding document), `exception.type` of its
//! last `exception` event, else the first line of its status message.
//!
//! Types are grouped by their last dotted segment, so `RateLimitError`,
//! `openai.RateLimitError` and `__main__.RateLimitError` (recent Python SDKs
//! qualify the name) fall in one group, whose `type_spellings` lists the full
//! names seen. Status messages are kept whole (cut to 200 characters): they
//! are free text, not names.

use std::collections::BTreeMap;

use chaintrace_model::conventions::{exception_type, ERROR_TYPE_ATTRIBUTE_KEYS};
use chaintrace_model::rollup::Rollup;
use chaintrace_model::{AnyValue, Span, Trace, TraceId, UnixNanos};
use serde::Serialize;

/// Where an error type came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum ErrorTypeSource {
    /// The `error.type` span attribute.
    #[serde(rename = "error.type")]
    ErrorTypeAttribute,
    /// The `error_type` span attribute.
    #[serde(rename = "error_type")]
    PlainErrorType,
    /// `exception.type` of an `exception` event.
    #[serde(rename = "exception.type")]
    ExceptionEvent,
    /// The status message.
    #[serde(rename = "status_message")]
    StatusMessage,
    /// Nothing said what went wrong.
    #[serde(rename = "unknown")]
    Unknown,
}

impl ErrorTypeSource {
    const ALL: [ErrorTypeSource; 5] = [
        ErrorTypeSource::ErrorTypeAttribute,
        ErrorTypeSource::PlainErrorType,
        ErrorTypeSource::ExceptionEvent,
        ErrorTypeSource::StatusMessage,
        ErrorTypeSource::Unknown,
    ];

    /// Its number in rollups.
    pub(crate) fn code(self) -> u8 {
        Self::ALL.iter().position(|&s| s == self).unwrap_or(4) as u8
    }

    /// The source numbered `code` in a rollup (unknown numbers: `Unknown`).
    pub(crate) fn from_code(code: u8) -> ErrorTypeSource {
        Self::ALL
            .get(usize::from(code))
            .copied()
            .unwrap_or(ErrorTypeSource::Unknown)
    }
}

/// The error type of a failed span.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ErrorType {
    /// As recorded: `__main__.RateLimitError`.
    pub full: String,
    /// What groups match on: `RateLimitError` (the whole message for status messages).
    pub short: String,
    /// Where it came from.
    pub source: ErrorTypeSource,
}

/// The error type of `span`, or `None` when its status is not ERROR.
///
/// ```
/// # use chaintrace_model::*;
/// # let mut span = Span { trace_id: TraceId([1; 16]), span_id: SpanId([1; 8]),
/// #     parent_span_id: None, name: "api_call".into(), kind: SpanKind::Client,
/// #     start: UnixNanos(0), end: UnixNanos(1), status: Status::default(),
/// #     attributes: vec![], events: vec![], links: vec![],
/// #     resource: Default::default(), scope: Default::default() };
/// span.status.code = StatusCode::Error;
/// span.attributes.push(KeyValue::new("error.type", "openai.RateLimitError"));
/// let t = chaintrace_analysis::error_type(&span).unwrap();
/// assert_eq!(t.short, "RateLimitError");
/// ```
pub fn error_type(span: &Span) -> Option<ErrorType> {
    if !span.is_error() {
        return None;
    }
    let named = |value: Option<&AnyValue>, source| {
        let full = value?.as_str()?.trim();
        (!full.is_empty()).then(|| ErrorType {
            full: full.to_string(),
            short: last_segment(full).to_string(),
            source,
        })
    };
    // The order of `chaintrace_model::conventions::error_type`, which the
    // store's `error_type` column and SQL follow too.
    let [dotted, plain] = ERROR_TYPE_ATTRIBUTE_KEYS;
    named(span.attr(dotted), ErrorTypeSource::ErrorTypeAttribute)
        .or_else(|| named(span.attr(plain), ErrorTypeSource::PlainErrorType))
        .or_else(|| {
            exception_type(span).map(|full| ErrorType {
                full: full.to_string(),
                short: last_segment(full).to_string(),
                source: ErrorTypeSource::ExceptionEvent,
            })
        })
        .or_else(|| {
            let line = span.status.message.lines().next().unwrap_or("").trim();
            (!line.is_empty()).then(|| {
                let cut: String = line.chars().take(200).collect();
                ErrorType {
                    full: cut.clone(),
                    short: cut,
                    source: ErrorTypeSource::StatusMessage,
                }
            })
        })
        .or(Some(ErrorType {
            full: String::new(),
            short: String::new(),
            source: ErrorTypeSource::Unknown,
        }))
}

/// `a.b.RateLimitError` → `RateLimitError`; a name ending in a dot stays whole.
fn last_segment(name: &str) -> &str {
    match name.rsplit_once('.') {
        Some((_, last)) if !last.is_empty() => last,
        _ => name,
    }
}

/// Failed spans of one operation with one error type.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ErrorGroup {
    /// `service.name`.
    pub service: String,
    /// Span name.
    pub operation: String,
    /// The grouped type (see [`ErrorType::short`]); empty when unknown.
    pub error_type: String,
    /// Where the type came from, for the first span of the group.
    pub source: ErrorTypeSource,
    /// Failed spans.
    pub count: u64,
    /// Start of the earliest failed span.
    pub first_seen: UnixNanos,
    /// Start of the latest failed span.
    pub last_seen: UnixNanos,
    /// Up to five traces, most recent first.
    pub example_trace_ids: Vec<TraceId>,
    /// The full type names seen, up to five.
    pub type_spellings: Vec<String>,
    /// The status message of the most recent span, when it has one.
    pub example_message: Option<String>,
}

/// Error groups over `traces`, the largest first (then the most recent).
pub fn error_groups(traces: &[Trace]) -> Vec<ErrorGroup> {
    let mut groups = ErrorGroups::default();
    for trace in traces {
        groups.add(trace);
    }
    groups.finish()
}

/// Most example traces a group keeps.
const EXAMPLES: usize = 5;

/// [`error_groups`] added one trace at a time, for a stream of traces of
/// any length: each group keeps its count, first and last time, its five
/// most recent traces and five spellings, not every failed span.
#[derive(Debug, Default)]
pub struct ErrorGroups {
    groups: BTreeMap<(String, String, String), GroupAcc>,
}

#[derive(Debug)]
struct GroupAcc {
    source: ErrorTypeSource,
    count: u64,
    first_seen: UnixNanos,
    /// The most recent (start, trace) pairs, newest first, distinct traces.
    recent: Vec<(UnixNanos, TraceId)>,
    spellings: Vec<String>,
    latest_message: Option<(UnixNanos, String)>,
}

impl GroupAcc {
    /// Counts a failed span of `trace` starting at `start`.
    fn see(&mut self, start: UnixNanos, trace: TraceId) {
        self.count += 1;
        self.first_seen = if self.count == 1 {
            start
        } else {
            self.first_seen.min(start)
        };
        self.keep_recent(start, trace);
    }

    /// Keeps `(start, trace)` among the most recent distinct traces.
    fn keep_recent(&mut self, start: UnixNanos, trace: TraceId) {
        if let Some(kept) = self.recent.iter_mut().find(|(_, t)| *t == trace) {
            kept.0 = kept.0.max(start);
        } else {
            self.recent.push((start, trace));
        }
        self.recent.sort_by(|a, b| b.cmp(a));
        self.recent.truncate(EXAMPLES);
    }
}

impl ErrorGroups {
    /// Groups the failed spans of `trace`.
    pub fn add(&mut self, trace: &Trace) {
        for span in &trace.spans {
            let Some(ty) = error_type(span) else { continue };
            let key = (
                span.service_name().to_string(),
                span.name.to_string(),
                ty.short.clone(),
            );
            let acc = self.groups.entry(key).or_insert_with(|| GroupAcc {
                source: ty.source,
                count: 0,
                first_seen: span.start,
                recent: Vec::new(),
                spellings: Vec::new(),
                latest_message: None,
            });
            acc.see(span.start, trace.trace_id);
            if !ty.full.is_empty() && acc.spellings.len() < 5 && !acc.spellings.contains(&ty.full) {
                acc.spellings.push(ty.full);
            }
            if !span.status.message.is_empty()
                && acc
                    .latest_message
                    .as_ref()
                    .is_none_or(|(t, _)| span.start >= *t)
            {
                acc.latest_message = Some((span.start, span.status.message.clone()));
            }
        }
    }

    /// Adds the error cells of every minute of `rollup`: the groups equal
    /// those of adding the traces it was made of (when a group has more
    /// than five spellings, which five may differ).
    pub fn add_rollup(&mut self, rollup: &Rollup) {
        for minute in rollup.minutes.values() {
            for (key, cell) in &minute.errors {
                if cell.count == 0 {
                    continue;
                }
                let group = (
                    key.service.clone(),
                    key.name.clone(),
                    key.error_type.clone(),
                );
                let acc = self.groups.entry(group).or_insert_with(|| GroupAcc {
                    source: ErrorTypeSource::from_code(cell.source),
                    count: 0,
                    first_seen: UnixNanos(cell.first_seen),
                    recent: Vec::new(),
                    spellings: Vec::new(),
                    latest_message: None,
                });
                acc.first_seen = acc.first_seen.min(UnixNanos(cell.first_seen));
                acc.count += cell.count;
                for &(start, trace) in &cell.recent {
                    acc.keep_recent(UnixNanos(start), TraceId(trace));
                }
                for spelling in &cell.spellings {
                    if acc.spellings.len() < EXAMPLES && !acc.spellings.contains(spelling) {
                        acc.spellings.push(spelling.clone());
                    }
                }
                if let Some((t, m)) = &cell.latest_message {
                    let t = UnixNanos(*t);
                    if acc.latest_message.as_ref().is_none_or(|(at, _)| t >= *at) {
                        acc.latest_message = Some((t, m.clone()));
                    }
                }
            }
        }
    }

    /// Groups so far: how many there are (each holds a few hundred bytes).
    pub fn len(&self) -> usize {
        self.groups.len()
    }

    /// Whether no failed span was seen.
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// The groups, the largest first (then the most recent).
    pub fn finish(self) -> Vec<ErrorGroup> {
        let mut out: Vec<ErrorGroup> = self
            .groups
            .into_iter()
            .map(|((service, operation, error_type), acc)| ErrorGroup {
                service,
                operation,
                error_type,
                source: acc.source,
                count: acc.count,
                first_seen: acc.first_seen,
                last_seen: acc.recent.first().map(|s| s.0).unwrap_or_default(),
                example_trace_ids: acc.recent.iter().map(|(_, id)| *id).collect(),
                type_spellings: acc.spellings,
                example_message: acc.latest_message.map(|(_, m)| m),
            })
            .collect();
        out.sort_by(|a, b| {
            b.count
                .cmp(&a.count)
                .then(b.last_seen.cmp(&a.last_seen))
                .then_with(|| {
                    (&a.service, &a.operation, &a.error_type).cmp(&(
                        &b.service,
                        &b.operation,
                        &b.error_type,
                    ))
                })
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use chaintrace_model::{Event, KeyValue, StatusCode};

    use super::*;
    use crate::test_support::*;

    fn exception_event(ty: &str) -> Event {
        Event {
            time: UnixNanos(T0),
            name: "exception".into(),
            attributes: vec![
                KeyValue::new("exception.type", ty),
                KeyValue::new("exception.message", "slow down"),
            ],
        }
    }

    /// A trace whose api_call failed, its type recorded by `mark`.
    fn failing(id: u8, at_ms: u64, mark: impl Fn(&mut Span)) -> Trace {
        let mut spans = founding_spans();
        for s in &mut spans {
            s.trace_id = TraceId([id; 16]);
            s.start.0 += ms(at_ms);
            s.end.0 += ms(at_ms);
        }
        let api = spans.iter_mut().find(|s| s.name == "api_call").unwrap();
        api.status.code = StatusCode::Error;
        mark(api);
        Trace::new(TraceId([id; 16]), spans)
    }

    #[test]
    fn type_sources_in_order_of_precedence() {
        let mut s = span(1, None, "x", 0, 1);
        assert_eq!(error_type(&s), None, "not failed");
        s.status.code = StatusCode::Error;
        assert_eq!(error_type(&s).unwrap().source, ErrorTypeSource::Unknown);
        s.status.message = "upstream said no\nTraceback …".into();
        let t = error_type(&s).unwrap();
        assert_eq!(
            (t.short.as_str(), t.source),
            ("upstream said no", ErrorTypeSource::StatusMessage)
        );
        s.events.push(exception_event("__main__.RateLimitError"));
        let t = error_type(&s).unwrap();
        assert_eq!(t.full, "__main__.RateLimitError");
        assert_eq!(t.short, "RateLimitError");
        s.attributes.push(KeyValue::new("error_type", "QuotaError"));
        assert_eq!(
            error_type(&s).unwrap().source,
            ErrorTypeSource::PlainErrorType
        );
        s.attributes.push(KeyValue::new("error.type", "429"));
        let t = error_type(&s).unwrap();
        assert_eq!(
            (t.short.as_str(), t.source),
            ("429", ErrorTypeSource::ErrorTypeAttribute)
        );
    }

    #[test]
    fn groups_by_operation_and_short_type_with_examples() {
        let mut traces = Vec::new();
        // Seven failures of one kind, spelled three ways.
        for i in 0..7u8 {
            traces.push(failing(i + 1, u64::from(i) * 1000, |s| match i % 3 {
                0 => s
                    .attributes
                    .push(KeyValue::new("error_type", "RateLimitError")),
                1 => s.events.push(exception_event("__main__.RateLimitError")),
                _ => s
                    .attributes
                    .push(KeyValue::new("error.type", "openai.RateLimitError")),
            }));
        }
        traces.push(failing(20, 500, |s| {
            s.status.message = "connection reset".into();
        }));
        // A successful trace adds nothing.
        traces.push(founding());

        let groups = error_groups(&traces);
        assert_eq!(groups.len(), 2);
        let g = &groups[0];
        assert_eq!(
            (
                g.service.as_str(),
                g.operation.as_str(),
                g.error_type.as_str()
            ),
            ("rag-chain", "api_call", "RateLimitError")
        );
        assert_eq!(g.count, 7);
        assert_eq!(g.source, ErrorTypeSource::PlainErrorType);
        assert_eq!(g.first_seen.0, T0 + ms(210));
        assert_eq!(g.last_seen.0, T0 + ms(6210));
        let examples: Vec<u8> = g.example_trace_ids.iter().map(|t| t.0[0]).collect();
        assert_eq!(examples, [7, 6, 5, 4, 3]);
        assert_eq!(
            g.type_spellings,
            [
                "RateLimitError",
                "__main__.RateLimitError",
                "openai.RateLimitError"
            ]
        );
        let reset = &groups[1];
        assert_eq!(
            (reset.error_type.as_str(), reset.count),
            ("connection reset", 1)
        );
        assert_eq!(reset.example_message.as_deref(), Some("connection reset"));
    }
}
