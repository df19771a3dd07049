//! Rollups: small per-minute figures of the spans of a block, written once
//! beside it, so that analytics over an hour or a week add up kilobytes of
//! cells instead of decoding every span.
//!
//! A [`Rollup`] holds, per minute (the minute in which a trace's earliest
//! span of the block started), the traces counted and one [`Cell`] per
//! [`CellKey`]: service, span name and, for a span that counts an LLM
//! call, the call's model, provider and token shape. Cells keep counts,
//! error counts, a [`DurationSketch`], self-time and critical-path sums and
//! token sums: everything the per-operation and per-model analytics need.
//! Cost is not kept: it is computed when read, from the current price
//! table, so a price change re-prices history. The token shape splits the
//! calls whose pricing differs (no tokens reported, cache reads, cache
//! writes), so pricing the summed tokens of a cell gives the sum of the
//! calls' prices.
//!
//! What only the analysis crate can say of a trace (self time, critical
//! path, which spans count an LLM call, their tokens) comes through
//! [`TraceFigures`], so this crate and the store stay below it.
//!
//! Counts are weighted by tail sampling ([`crate::conventions::sampling_weight`]):
//! a trace kept at rate r adds 1 / r to counts, sums and sketches; `spans`
//! and [`Minute::sampled_traces`] count what was stored.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::conventions::sampling_weight;
use crate::sketch::DurationSketch;
use crate::{Trace, UnixNanos};

/// One minute in nanoseconds: the rollups' time step.
pub const MINUTE_NANOS: u64 = 60_000_000_000;

/// One hour in nanoseconds.
pub const HOUR_NANOS: u64 = 60 * MINUTE_NANOS;

/// How finely a read of rollups keeps time: the key each minute's figures
/// are added under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Everything under one key, the range's first minute: per-operation,
    /// per-model and error figures of the whole range.
    Total,
    /// Per hour (series with buckets of whole hours).
    Hour,
    /// Per minute.
    Minute,
}

impl Step {
    /// The key of `minute` in a read starting at minute `lo`.
    pub fn key(self, minute: u64, lo: u64) -> u64 {
        match self {
            Step::Total => lo,
            Step::Hour => minute - minute % HOUR_NANOS,
            Step::Minute => minute,
        }
    }
}

/// What a store keeps in memory of a block's rollup: its figures over all
/// its minutes and per hour, and which minutes it has. The minutes
/// themselves stay in the file until a read needs them (a range that cuts
/// through the block, or a series in minutes).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RollupSummary {
    /// Its first and last minute (`None`: no span).
    pub minutes: Option<(u64, u64)>,
    /// All minutes together.
    pub total: Minute,
    /// Per hour.
    pub hours: BTreeMap<u64, Minute>,
}

/// The start of the minute holding `t`.
pub fn minute_of(t: UnixNanos) -> u64 {
    t.0 - t.0 % MINUTE_NANOS
}

/// Token-report shape bit: input or output tokens were reported.
pub const SHAPE_TOKENS: u8 = 1;
/// Token-report shape bit: cache reads were reported and non-zero.
pub const SHAPE_CACHE_READ: u8 = 2;
/// Token-report shape bit: cache writes were reported and non-zero.
pub const SHAPE_CACHE_WRITE: u8 = 4;

/// What a cell groups by.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct CellKey {
    /// `service.name` of the spans.
    pub service: String,
    /// Span name.
    pub name: String,
    /// Set for spans that count an LLM call.
    pub call: Option<CallKey>,
}

/// The LLM call part of a [`CellKey`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct CallKey {
    /// The model (possibly from an enclosing span); `None`: tokens without a model.
    pub model: Option<String>,
    /// The provider, when known.
    pub provider: Option<String>,
    /// [`SHAPE_TOKENS`], [`SHAPE_CACHE_READ`], [`SHAPE_CACHE_WRITE`] or'ed.
    pub shape: u8,
}

/// Token sums of the calls of a cell, each call weighted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallTokens {
    /// Input tokens, cache included.
    pub input: u64,
    /// Output tokens, reasoning included.
    pub output: u64,
    /// Cache reads.
    pub cache_read: u64,
    /// Cache writes.
    pub cache_write: u64,
    /// Reasoning tokens.
    pub reasoning: u64,
    /// Totals as reported (else input + output).
    pub total: u64,
    /// Per call `input − cache_read − cache_write` (at least 0), summed:
    /// the tokens billed at the plain input price.
    pub uncached: u64,
}

impl CallTokens {
    fn add(&mut self, other: &CallTokens) {
        self.input = self.input.saturating_add(other.input);
        self.output = self.output.saturating_add(other.output);
        self.cache_read = self.cache_read.saturating_add(other.cache_read);
        self.cache_write = self.cache_write.saturating_add(other.cache_write);
        self.reasoning = self.reasoning.saturating_add(other.reasoning);
        self.total = self.total.saturating_add(other.total);
        self.uncached = self.uncached.saturating_add(other.uncached);
    }
}

/// The figures of the spans of one [`CellKey`] in one minute.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Cell {
    /// Spans stored (unweighted).
    pub spans: u64,
    /// Their durations, weighted: `durations.count()` estimates the spans sent.
    pub durations: DurationSketch,
    /// Spans with status ERROR, weighted.
    pub errors: u64,
    /// Self time, weighted sum.
    pub self_nano: u64,
    /// Time on the critical path of their traces, weighted sum.
    pub critical_nano: u64,
    /// Traces in which some span of the cell is on the critical path, weighted.
    pub critical_traces: u64,
    /// Token sums, for LLM call cells.
    pub tokens: CallTokens,
}

impl Cell {
    /// Adds everything `other` counted.
    pub fn merge(&mut self, other: &Cell) {
        self.spans += other.spans;
        self.durations.merge(&other.durations);
        self.errors += other.errors;
        self.self_nano = self.self_nano.saturating_add(other.self_nano);
        self.critical_nano = self.critical_nano.saturating_add(other.critical_nano);
        self.critical_traces += other.critical_traces;
        self.tokens.add(&other.tokens);
    }
}

/// The figures of one minute.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Minute {
    /// Traces whose root span is here, weighted.
    pub traces: u64,
    /// Those traces stored (unweighted).
    pub sampled_traces: u64,
    /// Critical-path time of those traces, weighted.
    pub critical_nano: u64,
    /// Cells, sorted by key.
    #[serde(with = "map_as_list")]
    pub cells: BTreeMap<CellKey, Cell>,
    /// Failed spans by operation and error type.
    #[serde(with = "map_as_list")]
    pub errors: BTreeMap<ErrorKey, ErrorCell>,
}

/// What an [`ErrorCell`] groups by.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ErrorKey {
    /// `service.name`.
    pub service: String,
    /// Span name.
    pub name: String,
    /// The grouped error type ([`ErrorFigures::short`]).
    pub error_type: String,
}

/// Most example traces and type spellings an [`ErrorCell`] keeps.
pub const ERROR_EXAMPLES: usize = 5;

/// The failed spans of one [`ErrorKey`] in one minute (not weighted:
/// tail sampling keeps every trace with an error).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ErrorCell {
    /// Where the type of the first span came from ([`ErrorFigures::source`]).
    pub source: u8,
    /// Failed spans.
    pub count: u64,
    /// Start of the earliest.
    pub first_seen: u64,
    /// The most recent `(start, trace id)` of distinct traces, newest
    /// first, at most [`ERROR_EXAMPLES`].
    pub recent: Vec<(u64, [u8; 16])>,
    /// Full type names seen, at most [`ERROR_EXAMPLES`].
    pub spellings: Vec<String>,
    /// The status message of the latest span that had one, and its start.
    pub latest_message: Option<(u64, String)>,
}

impl ErrorCell {
    /// Adds everything `other` counted (its source stays if this cell had
    /// one).
    pub fn merge(&mut self, other: &ErrorCell) {
        if self.count == 0 {
            self.source = other.source;
            self.first_seen = other.first_seen;
        } else if other.count > 0 {
            self.first_seen = self.first_seen.min(other.first_seen);
        }
        self.count += other.count;
        for &(start, trace) in &other.recent {
            self.see(start, trace);
        }
        for s in &other.spellings {
            self.spell(s);
        }
        if let Some((t, m)) = &other.latest_message {
            self.message(*t, m);
        }
    }

    fn see(&mut self, start: u64, trace: [u8; 16]) {
        if let Some(kept) = self.recent.iter_mut().find(|(_, t)| *t == trace) {
            kept.0 = kept.0.max(start);
        } else {
            self.recent.push((start, trace));
        }
        self.recent.sort_by(|a, b| b.cmp(a));
        self.recent.truncate(ERROR_EXAMPLES);
    }

    fn spell(&mut self, full: &str) {
        if !full.is_empty()
            && self.spellings.len() < ERROR_EXAMPLES
            && !self.spellings.iter().any(|s| s == full)
        {
            self.spellings.push(full.to_string());
        }
    }

    fn message(&mut self, start: u64, message: &str) {
        if !message.is_empty()
            && self
                .latest_message
                .as_ref()
                .is_none_or(|(t, _)| start >= *t)
        {
            self.latest_message = Some((start, message.to_string()));
        }
    }
}

/// Per-minute figures of a set of spans (a block, the head, a range).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Rollup {
    /// Version of the rules the figures were computed with
    /// ([`ROLLUP_VERSION`] for rollups this build writes).
    pub version: u32,
    /// Minutes by their start (Unix nanoseconds).
    pub minutes: BTreeMap<u64, Minute>,
}

/// The rules version of rollups this build writes; a rollup of another
/// version is rebuilt.
pub const ROLLUP_VERSION: u32 = 1;

/// What the analysis crate says of one span of a trace, for rollups.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SpanFigures {
    /// Self time: the span's time not covered by its children.
    pub self_nano: u64,
    /// Its own time on the trace's critical path.
    pub critical_nano: u64,
    /// Set when the span is the one that counts an LLM call.
    pub call: Option<CallFigures>,
    /// Set when the span failed.
    pub error: Option<ErrorFigures>,
}

/// The error type of a failed span.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ErrorFigures {
    /// What groups match on (`RateLimitError`).
    pub short: String,
    /// As recorded (`openai.RateLimitError`).
    pub full: String,
    /// Where it came from, as the analysis crate numbers its sources.
    pub source: u8,
}

/// An LLM call counted by a span.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CallFigures {
    /// The model, possibly from an enclosing span.
    pub model: Option<String>,
    /// The provider.
    pub provider: Option<String>,
    /// Input tokens, cache included.
    pub input: Option<u64>,
    /// Output tokens.
    pub output: Option<u64>,
    /// Cache reads.
    pub cache_read: Option<u64>,
    /// Cache writes.
    pub cache_write: Option<u64>,
    /// Reasoning tokens.
    pub reasoning: Option<u64>,
    /// Total tokens.
    pub total: Option<u64>,
}

impl CallFigures {
    fn key(&self) -> CallKey {
        let mut shape = 0;
        if self.input.is_some() || self.output.is_some() {
            shape |= SHAPE_TOKENS;
        }
        if self.cache_read.unwrap_or(0) > 0 {
            shape |= SHAPE_CACHE_READ;
        }
        if self.cache_write.unwrap_or(0) > 0 {
            shape |= SHAPE_CACHE_WRITE;
        }
        CallKey {
            model: self.model.clone(),
            provider: self.provider.clone(),
            shape,
        }
    }

    fn tokens(&self, w: u64) -> CallTokens {
        let v = |x: Option<u64>| x.unwrap_or(0).saturating_mul(w);
        let uncached = self
            .input
            .unwrap_or(0)
            .saturating_sub(self.cache_read.unwrap_or(0))
            .saturating_sub(self.cache_write.unwrap_or(0));
        CallTokens {
            input: v(self.input),
            output: v(self.output),
            cache_read: v(self.cache_read),
            cache_write: v(self.cache_write),
            reasoning: v(self.reasoning),
            total: v(self.total),
            uncached: uncached.saturating_mul(w),
        }
    }
}

/// Computes [`SpanFigures`] of whole traces: implemented by the analysis
/// crate, handed to the store so it can roll up the blocks it writes.
pub trait TraceFigures: Send + Sync {
    /// One entry per span of `trace`, in `trace.spans` order.
    fn figures(&self, trace: &Trace) -> Vec<SpanFigures>;
}

impl Rollup {
    /// An empty rollup of this build's version.
    pub fn new() -> Rollup {
        Rollup {
            version: ROLLUP_VERSION,
            minutes: BTreeMap::new(),
        }
    }

    /// Adds the spans of `trace` (all spans of one trace that a block, or
    /// the head, holds) with `figures` from [`TraceFigures::figures`].
    /// Everything lands in the minute of the trace's earliest span; the
    /// trace itself is counted only where its root span is.
    pub fn add_trace(&mut self, trace: &Trace, figures: &[SpanFigures]) {
        let Some(first) = trace.spans.first() else {
            return;
        };
        let w = sampling_weight(&trace.spans).max(1);
        let start = trace
            .spans
            .iter()
            .map(|s| s.start)
            .min()
            .unwrap_or(first.start);
        let minute = self.minutes.entry(minute_of(start)).or_default();
        if trace.spans.iter().any(|s| s.parent_span_id.is_none()) {
            minute.traces += w;
            minute.sampled_traces += 1;
        }
        // An operation on the path counts the trace once, in its first cell.
        let mut on_path: HashMap<(&str, &str), &CellKey> = HashMap::new();
        let mut keys = Vec::with_capacity(trace.spans.len());
        for (span, fig) in trace.spans.iter().zip(figures) {
            keys.push(CellKey {
                service: span.service_name().to_string(),
                name: span.name.to_string(),
                call: fig.call.as_ref().map(CallFigures::key),
            });
        }
        for ((span, fig), key) in trace.spans.iter().zip(figures).zip(&keys) {
            let cell = match minute.cells.get_mut(key) {
                Some(cell) => cell,
                None => minute.cells.entry(key.clone()).or_default(),
            };
            cell.spans += 1;
            cell.durations.add_n(span.duration().0, w);
            cell.errors += w * u64::from(span.is_error());
            cell.self_nano = cell
                .self_nano
                .saturating_add(fig.self_nano.saturating_mul(w));
            let critical = fig.critical_nano.saturating_mul(w);
            cell.critical_nano = cell.critical_nano.saturating_add(critical);
            minute.critical_nano = minute.critical_nano.saturating_add(critical);
            if let Some(call) = &fig.call {
                cell.tokens.add(&call.tokens(w));
            }
            if let Some(err) = &fig.error {
                let key = ErrorKey {
                    service: key.service.clone(),
                    name: key.name.clone(),
                    error_type: err.short.clone(),
                };
                let e = minute.errors.entry(key).or_insert_with(|| ErrorCell {
                    source: err.source,
                    first_seen: span.start.0,
                    ..ErrorCell::default()
                });
                e.count += 1;
                e.first_seen = e.first_seen.min(span.start.0);
                e.see(span.start.0, trace.trace_id.0);
                e.spell(&err.full);
                e.message(span.start.0, &span.status.message);
            }
            if fig.critical_nano > 0 {
                on_path
                    .entry((key.service.as_str(), key.name.as_str()))
                    .or_insert(key);
            }
        }
        for key in on_path.into_values() {
            if let Some(cell) = minute.cells.get_mut(key) {
                cell.critical_traces += w;
            }
        }
    }

    /// Adds everything `other` counted.
    pub fn merge(&mut self, other: &Rollup) {
        for (&start, theirs) in &other.minutes {
            self.merge_minute(start, theirs);
        }
    }

    /// Adds the minutes of `other` that start in `[from, to)`.
    pub fn merge_range(&mut self, other: &Rollup, from: u64, to: u64) {
        for (&start, theirs) in other.minutes.range(from..to) {
            self.merge_minute(start, theirs);
        }
    }

    /// Its figures over all minutes and per hour.
    pub fn summary(&self) -> RollupSummary {
        let mut total = Rollup::new();
        let mut hours = Rollup::new();
        for (&start, minute) in &self.minutes {
            total.merge_minute(0, minute);
            hours.merge_minute(Step::Hour.key(start, 0), minute);
        }
        RollupSummary {
            minutes: self
                .minutes
                .keys()
                .next()
                .zip(self.minutes.keys().next_back())
                .map(|(a, b)| (*a, *b)),
            total: total.minutes.remove(&0).unwrap_or_default(),
            hours: hours.minutes,
        }
    }

    /// Adds the minutes of `other` that start in `[from, to)`, each under
    /// its key at `step`.
    pub fn merge_range_at(&mut self, other: &Rollup, from: u64, to: u64, step: Step) {
        for (&start, theirs) in other.minutes.range(from..to) {
            self.merge_minute(step.key(start, from), theirs);
        }
    }

    /// Adds `theirs` (the figures of a minute, an hour or more) under `key`.
    pub fn merge_minute(&mut self, key: u64, theirs: &Minute) {
        let mine = self.minutes.entry(key).or_default();
        mine.traces += theirs.traces;
        mine.sampled_traces += theirs.sampled_traces;
        mine.critical_nano = mine.critical_nano.saturating_add(theirs.critical_nano);
        for (key, cell) in &theirs.cells {
            match mine.cells.get_mut(key) {
                Some(c) => c.merge(cell),
                None => {
                    mine.cells.insert(key.clone(), cell.clone());
                }
            }
        }
        for (key, cell) in &theirs.errors {
            match mine.errors.get_mut(key) {
                Some(c) => c.merge(cell),
                None => {
                    mine.errors.insert(key.clone(), cell.clone());
                }
            }
        }
    }

    /// The rollup file's bytes (postcard).
    pub fn to_bytes(&self) -> Vec<u8> {
        // Plain integers, strings, maps and lists: encoding cannot fail.
        postcard::to_allocvec(self).unwrap_or_default()
    }

    /// Reads [`Rollup::to_bytes`]'s output; an error says what was wrong.
    pub fn from_bytes(bytes: &[u8]) -> Result<Rollup, String> {
        let (rollup, rest) =
            postcard::take_from_bytes::<Rollup>(bytes).map_err(|e| e.to_string())?;
        if !rest.is_empty() {
            return Err(format!("{} bytes after the rollup", rest.len()));
        }
        Ok(rollup)
    }

    /// Cells over all minutes.
    pub fn cell_count(&self) -> usize {
        self.minutes.values().map(|m| m.cells.len()).sum()
    }
}

/// A map with struct keys as a list of `[key, value]` pairs (JSON object
/// keys are strings only; postcard, the file format, has no maps of
/// structs either).
mod map_as_list {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub(super) fn serialize<K: Serialize, V: Serialize, S: Serializer>(
        map: &BTreeMap<K, V>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_seq(map.iter())
    }

    pub(super) fn deserialize<'de, K, V, D>(d: D) -> Result<BTreeMap<K, V>, D::Error>
    where
        K: Ord + Deserialize<'de>,
        V: Deserialize<'de>,
        D: Deserializer<'de>,
    {
        let entries = Vec::<(K, V)>::deserialize(d)?;
        Ok(entries.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::span::test_span;
    use crate::{AnyValue, KeyValue, Status, StatusCode, TraceId};

    fn figures(n: usize) -> Vec<SpanFigures> {
        vec![SpanFigures::default(); n]
    }

    fn chain(trace: u8, start_s: u64, error: bool) -> Trace {
        let start = start_s * 1_000_000_000;
        let mut root = test_span(1, "chain", start);
        root.end = UnixNanos(start + 900_000_000);
        let mut call = test_span(2, "llm_call", start + 100_000_000);
        call.parent_span_id = Some(root.span_id);
        call.end = UnixNanos(start + 600_000_000);
        if error {
            call.status = Status {
                code: StatusCode::Error,
                message: "RateLimitError".into(),
            };
        }
        let id = TraceId([trace; 16]);
        for s in [&mut root, &mut call] {
            s.trace_id = id;
        }
        Trace::new(id, vec![root, call])
    }

    #[test]
    fn traces_land_in_the_minute_of_their_earliest_span_and_merge_back() {
        let mut a = Rollup::new();
        let mut b = Rollup::new();
        let t1 = chain(1, 10, false);
        let t2 = chain(2, 70, true);
        let mut figs = figures(2);
        figs[1].call = Some(CallFigures {
            model: Some("gpt-4o".into()),
            input: Some(100),
            cache_read: Some(30),
            output: Some(7),
            ..CallFigures::default()
        });
        figs[1].critical_nano = 500_000_000;
        a.add_trace(&t1, &figs);
        b.add_trace(&t2, &figs);
        let mut both = a.clone();
        both.merge(&b);
        assert_eq!(
            both.minutes.keys().copied().collect::<Vec<_>>(),
            [0, MINUTE_NANOS]
        );
        let second = &both.minutes[&MINUTE_NANOS];
        assert_eq!((second.traces, second.sampled_traces), (1, 1));
        let call_key = CellKey {
            service: "unknown_service".into(),
            name: "llm_call".into(),
            call: Some(CallKey {
                model: Some("gpt-4o".into()),
                provider: None,
                shape: SHAPE_TOKENS | SHAPE_CACHE_READ,
            }),
        };
        let cell = &second.cells[&call_key];
        assert_eq!((cell.spans, cell.errors, cell.critical_traces), (1, 1, 1));
        assert_eq!(cell.tokens.uncached, 70);
        assert_eq!(cell.durations.max(), Some(500_000_000));
        // Only minute one's half in the range.
        let mut part = Rollup::new();
        part.merge_range(&both, MINUTE_NANOS, 2 * MINUTE_NANOS);
        assert_eq!(part.minutes.len(), 1);
        // The file format round-trips.
        let bytes = both.to_bytes();
        assert_eq!(Rollup::from_bytes(&bytes).unwrap(), both);
        assert!(Rollup::from_bytes(&bytes[..bytes.len() - 1]).is_err());
    }

    #[test]
    fn a_sampled_trace_counts_for_the_traces_it_stands_for() {
        let mut t = chain(3, 5, false);
        t.spans[0].attributes.push(KeyValue::new(
            crate::conventions::SAMPLING_RATE_KEY,
            AnyValue::Double(0.05),
        ));
        let mut r = Rollup::new();
        r.add_trace(&t, &figures(2));
        let m = &r.minutes[&0];
        assert_eq!((m.traces, m.sampled_traces), (20, 1));
        let cell = m.cells.values().next().unwrap();
        assert_eq!((cell.spans, cell.durations.count()), (1, 20));
    }
}
