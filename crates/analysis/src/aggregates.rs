//! Figures across many traces: per operation (service + span name) and per
//! LLM model, and the same bucketed over time.
//!
//! The caller chooses the traces (time range, TraceQL filter); these are plain
//! functions over whatever it passes. Durations are the spans' reported
//! durations; self time and critical-path time use intervals clamped into
//! parents, like the per-trace analysis. Percentiles are nearest-rank: p90 of
//! ten values is the ninth smallest, always a value that was observed.
//!
//! Critical-path share is measured on the walk-back path
//! ([`crate::CriticalPath::segments`]), which partitions each root's duration:
//! an operation's share is the time the roots spent waiting on its own work,
//! over the summed duration of all roots. Sorting by it gives the "top
//! bottlenecks".

use std::collections::BTreeMap;

use chaintrace_model::rollup::{Minute, Rollup};
use chaintrace_model::{DurationNanos, DurationSketch, Trace, UnixNanos};
use serde::Serialize;

use crate::critical_path::critical_nanos;
use crate::llm::{llm_spans_with, LlmTotals};
use crate::prices::PriceTable;
use crate::tree::SpanTree;
use chaintrace_model::conventions::sampling_weight;

/// Figures for one operation: spans with the same service and name.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OperationStats {
    /// `service.name`.
    pub service: String,
    /// Span name.
    pub name: String,
    /// Number of spans; with tail sampling, an estimate of the spans sent
    /// (each weighted by 1 / its trace's sampling rate).
    pub count: u64,
    /// Spans stored and counted (equal to `count` without sampling).
    pub sampled_count: u64,
    /// Spans with status ERROR.
    pub error_count: u64,
    /// `error_count / count`.
    pub error_rate: f64,
    /// Median duration.
    pub p50_nano: u64,
    /// 90th-percentile duration.
    pub p90_nano: u64,
    /// 99th-percentile duration.
    pub p99_nano: u64,
    /// Longest duration.
    pub max_nano: u64,
    /// Mean self time.
    pub mean_self_nano: u64,
    /// Time the roots spent waiting on this operation's own work.
    pub critical_path_nano: u64,
    /// `critical_path_nano` over the summed critical-path time of all traces.
    pub critical_path_share: f64,
    /// Traces in which this operation is on the critical path.
    pub critical_path_traces: u64,
    /// Counted LLM calls made by this operation's spans.
    pub llm_calls: u64,
    /// Input tokens of those calls (cache included).
    pub input_tokens: u64,
    /// Output tokens of those calls.
    pub output_tokens: u64,
    /// Known cost of those calls, USD.
    pub cost_usd: f64,
    /// Calls whose cost is unknown, so `cost_usd` leaves them out.
    pub unpriced_calls: u64,
}

/// Figures for one LLM model over its counted calls.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelStats {
    /// The model as reported (`None`: tokens reported without any model).
    pub model: Option<String>,
    /// The provider, when known.
    pub provider: Option<String>,
    /// The price-table entry that priced it, when one did.
    pub priced_as: Option<String>,
    /// Number of calls (estimated under sampling, as `count` of
    /// [`OperationStats`]).
    pub calls: u64,
    /// Calls stored and counted.
    pub sampled_calls: u64,
    /// Calls whose span has status ERROR.
    pub error_count: u64,
    /// `error_count / calls`.
    pub error_rate: f64,
    /// Median call duration.
    pub p50_nano: u64,
    /// 90th-percentile call duration.
    pub p90_nano: u64,
    /// 99th-percentile call duration.
    pub p99_nano: u64,
    /// Tokens and cost.
    #[serde(flatten)]
    pub usage: LlmTotals,
}

/// The figures of the traces that started in one time bucket.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SeriesBucket {
    /// Bucket start (a multiple of the bucket width since the epoch).
    pub start: UnixNanos,
    /// Traces in the bucket (under tail sampling, the estimate: each
    /// weighted by 1 / its sampling rate).
    pub traces: u64,
    /// Traces read in the bucket.
    pub sampled_traces: u64,
    /// Per operation, as [`operation_stats`] orders them.
    pub operations: Vec<OperationStats>,
    /// Per model, as [`model_stats`] orders them.
    pub models: Vec<ModelStats>,
}

/// Per-operation figures over `traces`, the biggest bottleneck first
/// (critical-path time, then count, then service and name).
pub fn operation_stats(traces: &[Trace], prices: &PriceTable) -> Vec<OperationStats> {
    let mut acc = Aggregates::default();
    for trace in traces {
        acc.add(trace, prices);
    }
    acc.operations()
}

/// The `limit` operations that held the roots up longest: [`operation_stats`]
/// without operations that were never on a critical path.
pub fn top_bottlenecks(traces: &[Trace], prices: &PriceTable, limit: usize) -> Vec<OperationStats> {
    let mut acc = Aggregates::default();
    for trace in traces {
        acc.add(trace, prices);
    }
    acc.bottlenecks(limit)
}

/// Per-model figures over the counted LLM calls of `traces` (see
/// [`crate::llm_spans`]), the most expensive first (then most calls, then name).
pub fn model_stats(traces: &[Trace], prices: &PriceTable) -> Vec<ModelStats> {
    let mut acc = Aggregates::default();
    for trace in traces {
        acc.add(trace, prices);
    }
    acc.models()
}

/// [`operation_stats`] and [`model_stats`] per time bucket of width `bucket`,
/// each trace counted in the bucket where its root started. Buckets without
/// traces are left out; a zero width is taken as one nanosecond.
pub fn operation_series(
    traces: &[Trace],
    prices: &PriceTable,
    bucket: DurationNanos,
) -> Vec<SeriesBucket> {
    let mut series = SeriesAggregates::new(bucket);
    for trace in traces {
        series.add(trace, prices);
    }
    series.finish()
}

/// [`operation_series`] added one trace at a time.
#[derive(Default)]
pub struct SeriesAggregates {
    width: u64,
    buckets: BTreeMap<u64, (u64, u64, Aggregates)>,
}

impl SeriesAggregates {
    /// Buckets of width `bucket` (zero: one nanosecond).
    pub fn new(bucket: DurationNanos) -> SeriesAggregates {
        SeriesAggregates {
            width: bucket.0.max(1),
            buckets: BTreeMap::new(),
        }
    }

    /// Counts `trace` in the bucket where its root started.
    pub fn add(&mut self, trace: &Trace, prices: &PriceTable) {
        self.add_weighted(trace, prices, sampling_weight(&trace.spans));
    }

    /// [`SeriesAggregates::add`] with the trace's weight already known.
    pub fn add_weighted(&mut self, trace: &Trace, prices: &PriceTable, w: u64) {
        let Some(start) = trace
            .root()
            .map(|r| r.start.0)
            .or_else(|| trace.spans.iter().map(|s| s.start.0).min())
        else {
            return;
        };
        let (weighted, count, acc) = self.buckets.entry(start - start % self.width).or_default();
        *weighted += w.max(1);
        *count += 1;
        acc.add_weighted(trace, prices, w);
    }

    /// The bucket width in nanoseconds.
    pub fn width(&self) -> u64 {
        self.width
    }

    /// Adds every minute of `rollup` to the bucket holding it (exact when
    /// the bucket width is a whole number of minutes).
    pub fn add_rollup(&mut self, rollup: &Rollup, prices: &PriceTable) {
        for (&start, minute) in &rollup.minutes {
            let (weighted, count, acc) =
                self.buckets.entry(start - start % self.width).or_default();
            *weighted += minute.traces;
            *count += minute.sampled_traces;
            acc.add_minute(minute, prices);
        }
    }

    /// Groups held, over all buckets (each a few hundred bytes to 8 KiB).
    pub fn groups(&self) -> usize {
        self.buckets.values().map(|(_, _, a)| a.groups()).sum()
    }

    /// The buckets, oldest first.
    pub fn finish(self) -> Vec<SeriesBucket> {
        self.buckets
            .into_iter()
            .map(|(start, (traces, sampled_traces, mut acc))| SeriesBucket {
                start: UnixNanos(start),
                traces,
                sampled_traces,
                operations: acc.operations(),
                models: acc.models(),
            })
            .collect()
    }
}

/// Nearest-rank percentile of sorted values; 0 for none.
pub(crate) fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Most durations a group keeps exactly; past it the group's percentiles
/// come from a [`DurationSketch`] (within its 1 % relative error), so a
/// group costs at most 8 KiB of values however many spans it has.
const EXACT_DURATIONS: usize = 1024;

/// The durations of one group: exact while few, a sketch beyond.
#[derive(Debug, Default)]
struct Durations {
    exact: Vec<u64>,
    sketch: Option<DurationSketch>,
}

impl Durations {
    /// Counts `value` `n` times: a value standing for several (a sampled
    /// trace's) moves the group to the sketch, which counts repeats.
    fn push(&mut self, value: u64, n: u64) {
        if n > 1 && self.sketch.is_none() {
            let mut sketch = DurationSketch::new();
            for &v in &self.exact {
                sketch.add(v);
            }
            self.exact = Vec::new();
            self.sketch = Some(sketch);
        }
        if let Some(sketch) = &mut self.sketch {
            sketch.add_n(value, n);
            return;
        }
        self.exact.push(value);
        if self.exact.len() > EXACT_DURATIONS {
            let mut sketch = DurationSketch::new();
            for &v in &self.exact {
                sketch.add(v);
            }
            self.exact = Vec::new();
            self.sketch = Some(sketch);
        }
    }

    /// Adds the durations `other` counted (a rollup cell's): the group
    /// moves to its sketch.
    fn merge_sketch(&mut self, other: &DurationSketch) {
        if other.count() == 0 {
            return;
        }
        let exact = std::mem::take(&mut self.exact);
        let sketch = self.sketch.get_or_insert_with(|| {
            let mut s = DurationSketch::new();
            for v in exact {
                s.add(v);
            }
            s
        });
        sketch.merge(other);
    }

    fn count(&self) -> u64 {
        self.sketch
            .as_ref()
            .map_or(self.exact.len() as u64, DurationSketch::count)
    }

    /// p50, p90, p99 and the maximum (exact), nearest-rank.
    fn summary(&mut self) -> [u64; 4] {
        match &self.sketch {
            Some(s) => [
                s.quantile(0.5).unwrap_or(0),
                s.quantile(0.9).unwrap_or(0),
                s.quantile(0.99).unwrap_or(0),
                s.max().unwrap_or(0),
            ],
            None => {
                self.exact.sort_unstable();
                let v = &self.exact;
                [
                    percentile(v, 50.0),
                    percentile(v, 90.0),
                    percentile(v, 99.0),
                    v.last().copied().unwrap_or(0),
                ]
            }
        }
    }
}

#[derive(Default)]
struct OperationAcc {
    durations: Durations,
    /// Spans counted, unweighted.
    spans: u64,
    errors: u64,
    self_sum: u128,
    critical: u64,
    critical_traces: u64,
    llm: LlmTotals,
}

#[derive(Default)]
struct ModelAcc {
    /// Calls counted, unweighted.
    calls: u64,
    provider: Option<String>,
    priced_as: Option<String>,
    durations: Durations,
    errors: u64,
    usage: LlmTotals,
}

/// Per-operation and per-model figures added one trace at a time, for a
/// stream of traces of any length: each group keeps counts and sums, and
/// its durations exactly up to 1 024 of them, then as a sketch (1 %
/// relative error), so memory grows with the groups, not the spans.
#[derive(Default)]
pub struct Aggregates {
    ops: BTreeMap<(String, String), OperationAcc>,
    models: BTreeMap<Option<String>, ModelAcc>,
    total_critical: u64,
    /// Whether any trace stood for more than one (tail sampling).
    estimated: bool,
}

impl Aggregates {
    /// Adds the spans and LLM calls of `trace` (whole: self time and
    /// critical path are per trace).
    ///
    /// A trace kept by tail sampling at rate r counts 1 / r times (see
    /// [`sampling_weight`]), so counts, sums and percentiles estimate what
    /// was sent; [`Aggregates::estimated`] then says so.
    pub fn add(&mut self, trace: &Trace, prices: &PriceTable) {
        self.add_weighted(trace, prices, sampling_weight(&trace.spans));
    }

    /// [`Aggregates::add`] with the trace's weight already known (`w`
    /// traces stand for this one).
    pub fn add_weighted(&mut self, trace: &Trace, prices: &PriceTable, w: u64) {
        let w = w.max(1);
        self.estimated |= w > 1;
        let tree = SpanTree::build(trace);
        let self_nano = tree.self_times(&tree.interval);
        let critical = critical_nanos(&tree);
        self.total_critical += w * critical.iter().sum::<u64>();
        let mut keys = Vec::with_capacity(trace.spans.len());
        for (i, span) in trace.spans.iter().enumerate() {
            let key = (span.service_name().to_string(), span.name.to_string());
            let op = self.ops.entry(key.clone()).or_default();
            op.durations.push(span.duration().0, w);
            op.spans += 1;
            op.errors += w * u64::from(span.is_error());
            op.self_sum += u128::from(w) * u128::from(self_nano[i]);
            op.critical += w * critical[i];
            keys.push(key);
        }
        // Once per trace per operation, however many of its spans are on the path.
        let mut on_path: Vec<&(String, String)> = keys
            .iter()
            .zip(&critical)
            .filter(|(_, &c)| c > 0)
            .map(|(k, _)| k)
            .collect();
        on_path.sort();
        on_path.dedup();
        for key in on_path {
            if let Some(op) = self.ops.get_mut(key) {
                op.critical_traces += w;
            }
        }
        for call in llm_spans_with(trace, &tree, prices)
            .into_iter()
            .filter(|s| s.counted)
        {
            if let Some(op) = self.ops.get_mut(&keys[call.span_index]) {
                op.llm.add_n(&call.tokens, call.cost.as_ref(), w);
            }
            let m = self.models.entry(call.model.clone()).or_default();
            m.provider = m.provider.take().or(call.provider.clone());
            if let Some(cost) = &call.cost {
                m.priced_as.get_or_insert_with(|| cost.priced_as.clone());
            }
            m.durations.push(call.duration_nano, w);
            m.calls += 1;
            m.errors += w * u64::from(call.is_error);
            m.usage.add_n(&call.tokens, call.cost.as_ref(), w);
        }
    }

    /// Adds every minute of `rollup`: the figures equal those of adding
    /// the traces it was made of (percentiles within the sketch's 1 %),
    /// cost from `prices` as they are now.
    pub fn add_rollup(&mut self, rollup: &Rollup, prices: &PriceTable) {
        for minute in rollup.minutes.values() {
            self.add_minute(minute, prices);
        }
    }

    fn add_minute(&mut self, minute: &Minute, prices: &PriceTable) {
        self.total_critical = self.total_critical.saturating_add(minute.critical_nano);
        self.estimated |= minute.traces != minute.sampled_traces;
        for (key, cell) in &minute.cells {
            let op_key = (key.service.clone(), key.name.clone());
            let op = self.ops.entry(op_key).or_default();
            op.durations.merge_sketch(&cell.durations);
            op.spans += cell.spans;
            op.errors += cell.errors;
            op.self_sum += u128::from(cell.self_nano);
            op.critical = op.critical.saturating_add(cell.critical_nano);
            op.critical_traces += cell.critical_traces;
            let Some(call) = &key.call else {
                continue;
            };
            let calls = cell.durations.count();
            let cost = call
                .model
                .as_deref()
                .and_then(|m| prices.cost_of_sums(m, call.shape, &cell.tokens));
            op.llm.add_sums(&cell.tokens, cost.as_ref(), calls);
            let m = self.models.entry(call.model.clone()).or_default();
            if m.provider.is_none() {
                // As a call's reading does: the span's provider, else the
                // price table's for its model.
                m.provider = call.provider.clone().or_else(|| {
                    let (_, price) = prices.lookup(call.model.as_deref()?)?;
                    price.provider.clone()
                });
            }
            if let Some(cost) = &cost {
                m.priced_as.get_or_insert_with(|| cost.priced_as.clone());
            }
            m.durations.merge_sketch(&cell.durations);
            m.calls += cell.spans;
            m.errors += cell.errors;
            m.usage.add_sums(&cell.tokens, cost.as_ref(), calls);
        }
    }

    /// Whether a trace kept by tail sampling was counted: the figures are
    /// then estimates of what was sent.
    pub fn estimated(&self) -> bool {
        self.estimated
    }

    /// Groups held: operations plus models.
    pub fn groups(&self) -> usize {
        self.ops.len() + self.models.len()
    }

    /// The `limit` operations longest on the critical path (none that never was).
    pub fn bottlenecks(&mut self, limit: usize) -> Vec<OperationStats> {
        let mut ops = self.operations();
        ops.retain(|o| o.critical_path_nano > 0);
        ops.truncate(limit);
        ops
    }

    /// Per-operation figures, the biggest bottleneck first.
    pub fn operations(&mut self) -> Vec<OperationStats> {
        let total = self.total_critical;
        let mut out: Vec<OperationStats> = std::mem::take(&mut self.ops)
            .into_iter()
            .map(|((service, name), mut op)| {
                let count = op.durations.count();
                let [p50, p90, p99, max] = op.durations.summary();
                OperationStats {
                    service,
                    name,
                    count,
                    sampled_count: op.spans,
                    error_count: op.errors,
                    error_rate: ratio(op.errors, count),
                    p50_nano: p50,
                    p90_nano: p90,
                    p99_nano: p99,
                    max_nano: max,
                    mean_self_nano: (op.self_sum / u128::from(count.max(1))) as u64,
                    critical_path_nano: op.critical,
                    critical_path_share: ratio(op.critical, total),
                    critical_path_traces: op.critical_traces,
                    llm_calls: op.llm.calls,
                    input_tokens: op.llm.input_tokens,
                    output_tokens: op.llm.output_tokens,
                    cost_usd: op.llm.cost_usd,
                    unpriced_calls: op.llm.unpriced_calls,
                }
            })
            .collect();
        out.sort_by(|a, b| {
            b.critical_path_nano
                .cmp(&a.critical_path_nano)
                .then(b.count.cmp(&a.count))
                .then_with(|| (&a.service, &a.name).cmp(&(&b.service, &b.name)))
        });
        out
    }

    /// Per-model figures, the most expensive first.
    pub fn models(&mut self) -> Vec<ModelStats> {
        let mut out: Vec<ModelStats> = std::mem::take(&mut self.models)
            .into_iter()
            .map(|(model, mut m)| {
                let [p50, p90, p99, _] = m.durations.summary();
                ModelStats {
                    model,
                    provider: m.provider,
                    priced_as: m.priced_as,
                    calls: m.usage.calls,
                    sampled_calls: m.calls,
                    error_count: m.errors,
                    error_rate: ratio(m.errors, m.usage.calls),
                    p50_nano: p50,
                    p90_nano: p90,
                    p99_nano: p99,
                    usage: m.usage,
                }
            })
            .collect();
        out.sort_by(|a, b| {
            b.usage
                .cost_usd
                .total_cmp(&a.usage.cost_usd)
                .then(b.calls.cmp(&a.calls))
                .then_with(|| a.model.cmp(&b.model))
        });
        out
    }
}

fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

#[cfg(test)]
mod tests {
    use chaintrace_model::TraceId;

    use super::*;
    use crate::test_support::*;

    /// The founding trace shifted to start `at_ms` later, with `llm_ms` added
    /// to api_call (and so to llm_call and the root), under a new trace id.
    fn run(id: u8, at_ms: u64, llm_ms: u64, fail: bool) -> Trace {
        let spans = founding_spans()
            .into_iter()
            .map(|mut s| {
                s.trace_id = TraceId([id; 16]);
                s.start.0 += ms(at_ms);
                s.end.0 += ms(at_ms);
                if ["process_query", "llm_call", "api_call"].contains(&s.name.as_str()) {
                    s.end.0 += ms(llm_ms);
                }
                if s.name == "api_call" && fail {
                    s = failed(s, "RateLimitError");
                }
                s
            })
            .collect();
        Trace::new(TraceId([id; 16]), spans)
    }

    fn traces() -> Vec<Trace> {
        (0..10u8)
            .map(|i| run(i + 1, u64::from(i) * 1000, u64::from(i) * 100, i == 9))
            .collect()
    }

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<u64> = (1..=10).collect();
        assert_eq!(percentile(&v, 50.0), 5);
        assert_eq!(percentile(&v, 90.0), 9);
        assert_eq!(percentile(&v, 99.0), 10);
        assert_eq!(percentile(&[7], 99.0), 7);
        assert_eq!(percentile(&[], 50.0), 0);
    }

    #[test]
    fn per_operation_figures() {
        let ops = operation_stats(&traces(), &PriceTable::builtin());
        let api = ops.iter().find(|o| o.name == "api_call").unwrap();
        assert_eq!(api.service, "rag-chain");
        assert_eq!((api.count, api.error_count), (10, 1));
        assert!((api.error_rate - 0.1).abs() < 1e-12);
        // api_call durations are 920, 1020, …, 1820 ms.
        assert_eq!(api.p50_nano, ms(1320));
        assert_eq!(api.p90_nano, ms(1720));
        assert_eq!(api.p99_nano, ms(1820));
        assert_eq!(api.mean_self_nano, ms(1370));
        assert_eq!(
            (api.llm_calls, api.input_tokens, api.output_tokens),
            (10, 12_000, 3_500)
        );
        // 10 × (1200×$15 + 350×$75) per million
        assert!((api.cost_usd - 0.4425).abs() < 1e-9);
        assert_eq!(api.unpriced_calls, 0);

        let embed = ops.iter().find(|o| o.name == "embed_query").unwrap();
        assert_eq!((embed.llm_calls, embed.unpriced_calls), (10, 10));
        let llm = ops.iter().find(|o| o.name == "llm_call").unwrap();
        assert_eq!(llm.llm_calls, 0, "its call is counted on api_call");
    }

    #[test]
    fn critical_path_share_ranks_the_bottlenecks() {
        let ts = traces();
        let ops = operation_stats(&ts, &PriceTable::builtin());
        assert_eq!(ops[0].name, "api_call");
        // Roots total 10×1200 + (0+…+900) = 16 500 ms; api_call holds 13 700 of it.
        assert_eq!(ops[0].critical_path_nano, ms(13_700));
        assert!((ops[0].critical_path_share - 13_700.0 / 16_500.0).abs() < 1e-12);
        assert_eq!(ops[0].critical_path_traces, 10);
        let share: f64 = ops.iter().map(|o| o.critical_path_share).sum();
        assert!((share - 1.0).abs() < 1e-12);
        let names: Vec<_> = ops.iter().map(|o| o.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "api_call",
                "embed_query",
                "fetch_context",
                "process_query",
                "vector_search",
                "llm_call",
                "prompt_assembly"
            ]
        );

        // With fetch_context concurrent to embed_query it drops off the path.
        let concurrent = founding_concurrent();
        let top = top_bottlenecks(
            std::slice::from_ref(&concurrent),
            &PriceTable::builtin(),
            10,
        );
        assert!(top.iter().all(|o| o.name != "fetch_context"));
        assert_eq!(top_bottlenecks(&ts, &PriceTable::builtin(), 2).len(), 2);
    }

    #[test]
    fn per_model_figures() {
        let models = model_stats(&traces(), &PriceTable::builtin());
        let opus = &models[0];
        assert_eq!(opus.model.as_deref(), Some("claude-3-opus-20250219"));
        assert_eq!(opus.provider.as_deref(), Some("anthropic"));
        assert_eq!(opus.priced_as.as_deref(), Some("claude-3-opus"));
        assert_eq!((opus.calls, opus.error_count), (10, 1));
        assert_eq!(opus.p50_nano, ms(1320));
        assert_eq!(opus.usage.input_tokens, 12_000);
        let embed = &models[1];
        assert_eq!(embed.model.as_deref(), Some("text-embedding-3-small"));
        assert_eq!(
            (embed.usage.priced_calls, embed.usage.unpriced_calls),
            (0, 10)
        );
        assert_eq!(embed.usage.cost_usd, 0.0);
    }

    #[test]
    fn series_buckets_by_root_start() {
        let ts = traces();
        let series = operation_series(&ts, &PriceTable::builtin(), DurationNanos(ms(5_000)));
        assert_eq!(series.len(), 2);
        assert_eq!(series[0].traces, 5);
        assert_eq!(series[0].start.0 % ms(5_000), 0);
        let api = |b: &SeriesBucket| {
            b.operations
                .iter()
                .find(|o| o.name == "api_call")
                .unwrap()
                .error_count
        };
        assert_eq!((api(&series[0]), api(&series[1])), (0, 1));
        assert_eq!(series[1].models[0].calls, 5);
        assert_eq!(
            operation_series(&[], &PriceTable::empty(), DurationNanos(0)),
            []
        );
    }

    #[test]
    fn many_spans_of_an_operation_keep_exact_counts_and_percentiles_within_one_percent() {
        // 3 000 runs of the founding chain with api_call from 900 ms up in
        // uneven steps: past the exact-durations cap, so from the sketch.
        let mut exact = Vec::new();
        let mut acc = Aggregates::default();
        for i in 0..3000u64 {
            let extra = (i * 7919) % 3001;
            let t = run((i % 250) as u8 + 1, i, extra, i % 10 == 0);
            exact.push(
                t.spans
                    .iter()
                    .find(|s| s.name == "api_call")
                    .unwrap()
                    .duration()
                    .0,
            );
            acc.add(&t, &PriceTable::builtin());
        }
        exact.sort_unstable();
        let ops = acc.operations();
        let api = ops.iter().find(|o| o.name == "api_call").unwrap();
        assert_eq!((api.count, api.error_count), (3000, 300));
        assert_eq!(api.max_nano, *exact.last().unwrap());
        for (got, p) in [
            (api.p50_nano, 50.0),
            (api.p90_nano, 90.0),
            (api.p99_nano, 99.0),
        ] {
            let want = percentile(&exact, p);
            let off = (got as f64 - want as f64).abs() / want as f64;
            assert!(
                off <= chaintrace_model::sketch::RELATIVE_ERROR,
                "p{p}: {got} vs {want}"
            );
        }
        assert_eq!(api.llm_calls, 3000);
    }

    #[test]
    fn spans_of_other_services_are_other_operations() {
        let mut t = founding();
        t.spans[6].resource = service("llm-gateway");
        let ops = operation_stats(&[t], &PriceTable::empty());
        assert!(ops
            .iter()
            .any(|o| o.service == "llm-gateway" && o.name == "api_call"));
        assert_eq!(ops.iter().filter(|o| o.name == "api_call").count(), 1);
        assert_eq!(ops.len(), 7);
    }

    #[test]
    fn traces_kept_by_sampling_stand_for_those_dropped() {
        use chaintrace_model::conventions::SAMPLING_RATE_KEY;
        use chaintrace_model::KeyValue;
        // One trace kept at 5 % (it stands for 20), one failed trace kept
        // at rate 1, one trace sampling never judged.
        let mut kept = run(1, 0, 100, false);
        let root = kept
            .spans
            .iter_mut()
            .find(|s| s.parent_span_id.is_none())
            .unwrap();
        root.attributes.push(KeyValue::new(SAMPLING_RATE_KEY, 0.05));
        let mut failed_trace = run(2, 1000, 100, true);
        let root = failed_trace
            .spans
            .iter_mut()
            .find(|s| s.parent_span_id.is_none())
            .unwrap();
        root.attributes.push(KeyValue::new(SAMPLING_RATE_KEY, 1.0));
        let plain = run(3, 2000, 100, false);
        let prices = PriceTable::builtin();

        let mut acc = Aggregates::default();
        acc.add(&plain, &prices);
        assert!(!acc.estimated(), "no sampled trace yet");
        acc.add(&kept, &prices);
        acc.add(&failed_trace, &prices);
        assert!(acc.estimated());
        let ops = acc.operations();
        let api = ops.iter().find(|o| o.name == "api_call").unwrap();
        assert_eq!((api.count, api.sampled_count), (22, 3));
        assert_eq!(api.error_count, 1);
        assert!((api.error_rate - 1.0 / 22.0).abs() < 1e-12);
        // Tokens and cost: one trace's worth 22 times over, operation by
        // operation.
        let one = operation_stats(std::slice::from_ref(&plain), &prices);
        let calls_per_trace: u64 = one.iter().map(|o| o.llm_calls).sum();
        assert!(calls_per_trace > 0);
        for o in one.iter().filter(|o| o.llm_calls > 0) {
            let many = ops.iter().find(|m| m.name == o.name).unwrap();
            assert_eq!(many.llm_calls, 22 * o.llm_calls, "{}", o.name);
            assert_eq!(many.input_tokens, 22 * o.input_tokens, "{}", o.name);
            assert!(
                (many.cost_usd - 22.0 * o.cost_usd).abs() < 1e-9,
                "{}",
                o.name
            );
        }
        let models = acc.models();
        assert_eq!(
            models.iter().map(|m| m.sampled_calls).sum::<u64>(),
            3 * calls_per_trace
        );
        assert_eq!(
            models.iter().map(|m| m.calls).sum::<u64>(),
            22 * calls_per_trace
        );

        let mut series = SeriesAggregates::new(DurationNanos(ms(100_000)));
        for t in [&plain, &kept, &failed_trace] {
            series.add(t, &prices);
        }
        let buckets = series.finish();
        assert_eq!(buckets.len(), 1);
        assert_eq!((buckets[0].traces, buckets[0].sampled_traces), (22, 3));
    }
}
