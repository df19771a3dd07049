//! Tail sampling: which traces a block keeps.
//!
//! Every span is in the WAL before its batch is acknowledged, and stays in
//! the head until the head is cut into a block. The sampler decides at that
//! cut, trace by trace, so a crash before it loses nothing (the WAL replays
//! the head, and the cut decides again) and the head's memory budget is the
//! pending set's budget: an over-full head is cut early, as without
//! sampling.
//!
//! A trace is *complete* once its root ended at least the decision wait
//! before the cut (a trace without a root: once its last span ended that
//! long ago). A complete trace is kept when a span failed (`error`), when
//! its root took longer than the running p99 of its root operation
//! (`slow`; every trace of an operation is kept until the operation has
//! been seen [`WARM_UP_TRACES`] times: `warm_up`), when it matches a keep
//! rule (a TraceQL condition: `rule`), or when its trace-id hash falls under
//! the rate of its root's service, else the base rate (`rate`, the same
//! answer on every node). A trace
//! not yet complete is kept whole (`young`): deciding it early could drop an
//! error that has not arrived yet. Every decision is remembered (the newest
//! [`REMEMBERED_DECISIONS`]), and spans arriving later follow it.
//!
//! A kept trace's root carries `chaintrace.sampling.policy` and
//! `chaintrace.sampling.rate` (1 for every policy but `rate`): a count
//! weighted by 1 / rate estimates the traces before sampling.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::time::Duration;

use chaintrace_model::{
    DurationSketch, KeyValue, Span, SpanId, StatusCode, Trace, TraceId, UnixNanos,
};

/// Traces of one root operation kept whole before its p99 is trusted.
pub const WARM_UP_TRACES: u64 = 100;

/// Root operations whose p99 is tracked; traces of operations past it are
/// judged by the other policies only (a flood of one-off root names cannot
/// make every trace "warming up"). A sketch holds at most ~1 600 buckets
/// (1 ns to 10⁴ s at 1 %), so this bounds the sketches at ~50 MB however
/// spread the durations; real root operations number in the tens.
pub const MAX_OPERATIONS: usize = 1_000;

/// Decisions remembered for spans arriving after their trace was decided.
pub const REMEMBERED_DECISIONS: usize = 1 << 18;

/// Root attribute naming the policy that kept the trace.
pub const POLICY_ATTRIBUTE: &str = chaintrace_model::conventions::SAMPLING_POLICY_KEY;

/// Root attribute holding the rate the trace was kept at.
pub const RATE_ATTRIBUTE: &str = chaintrace_model::conventions::SAMPLING_RATE_KEY;

/// Root attribute naming the keep rule that kept the trace.
pub const RULE_ATTRIBUTE: &str = "chaintrace.sampling.rule";

/// Regex work (see `chaintrace_query::RegexBudget`) the keep rules may
/// spend on one cut; past it, the rest of the cut's traces are judged by
/// the other policies (and counted in `rule_budget_exhausted`).
pub const RULE_WORK_PER_CUT: u64 = 100_000_000;

/// How traces are sampled.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingConfig {
    /// Share of the traces no other policy keeps, in (0, 1].
    pub base_rate: f64,
    /// How long after its root ended a trace is decided.
    pub decision_wait: Duration,
    /// Traces matching any of these are always kept (`rule`).
    pub keep: Vec<KeepRule>,
    /// A rate of their own for the traces whose root is of these
    /// services, in place of `base_rate`.
    pub service_rates: BTreeMap<String, f64>,
}

impl SamplingConfig {
    /// Error, slow and rate policies at `base_rate`, no rules.
    pub fn new(base_rate: f64, decision_wait: Duration) -> SamplingConfig {
        SamplingConfig {
            base_rate,
            decision_wait,
            keep: Vec::new(),
            service_rates: BTreeMap::new(),
        }
    }
}

/// A TraceQL condition whose traces are always kept.
#[derive(Debug, Clone, PartialEq)]
pub struct KeepRule {
    /// The query as written (recorded on kept roots).
    pub text: String,
    query: chaintrace_query::Query,
}

impl KeepRule {
    /// Parses `text` as TraceQL; the error says where it is wrong.
    pub fn parse(text: &str) -> Result<KeepRule, String> {
        let query = chaintrace_query::parse(text).map_err(|e| e.to_string())?;
        Ok(KeepRule {
            text: text.to_string(),
            query,
        })
    }
}

/// Why a trace was kept, or that it was not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Policy {
    /// A span failed.
    Error,
    /// A keep rule matched.
    Rule,
    /// The root took longer than its operation's running p99.
    Slow,
    /// Its operation has not been seen [`WARM_UP_TRACES`] times yet.
    WarmUp,
    /// Its trace-id hash fell under the base rate.
    Rate,
    /// Not complete at the cut: kept whole.
    Young,
    /// Dropped.
    Dropped,
}

impl Policy {
    /// The name recorded on roots and in metrics.
    pub fn name(self) -> &'static str {
        match self {
            Policy::Error => "error",
            Policy::Rule => "rule",
            Policy::Slow => "slow",
            Policy::WarmUp => "warm_up",
            Policy::Rate => "rate",
            Policy::Young => "young",
            Policy::Dropped => "dropped",
        }
    }

    /// Every policy, in a fixed order (for metrics).
    pub const ALL: [Policy; 7] = [
        Policy::Error,
        Policy::Rule,
        Policy::Slow,
        Policy::WarmUp,
        Policy::Rate,
        Policy::Young,
        Policy::Dropped,
    ];
}

/// Counts of what the sampler decided, since the store opened.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct SamplingStats {
    /// Traces kept because a span failed.
    pub kept_error: u64,
    /// Traces kept by a keep rule.
    pub kept_rule: u64,
    /// Traces kept as slower than their operation's p99.
    pub kept_slow: u64,
    /// Traces kept while their operation warmed up.
    pub kept_warm_up: u64,
    /// Traces kept by the base rate.
    pub kept_rate: u64,
    /// Traces kept whole because they were not complete at the cut.
    pub kept_young: u64,
    /// Traces dropped.
    pub dropped: u64,
    /// Spans written to blocks.
    pub spans_kept: u64,
    /// Spans dropped.
    pub spans_dropped: u64,
    /// Spans that arrived after their trace was decided, and followed it.
    pub late_spans: u64,
    /// Cuts whose keep rules ran out of regex work before the last trace.
    pub rule_budget_exhausted: u64,
}

impl SamplingStats {
    /// Traces decided by `policy`.
    pub fn traces(&self, policy: Policy) -> u64 {
        match policy {
            Policy::Error => self.kept_error,
            Policy::Rule => self.kept_rule,
            Policy::Slow => self.kept_slow,
            Policy::WarmUp => self.kept_warm_up,
            Policy::Rate => self.kept_rate,
            Policy::Young => self.kept_young,
            Policy::Dropped => self.dropped,
        }
    }

    fn traces_mut(&mut self, policy: Policy) -> &mut u64 {
        match policy {
            Policy::Error => &mut self.kept_error,
            Policy::Rule => &mut self.kept_rule,
            Policy::Slow => &mut self.kept_slow,
            Policy::WarmUp => &mut self.kept_warm_up,
            Policy::Rate => &mut self.kept_rate,
            Policy::Young => &mut self.kept_young,
            Policy::Dropped => &mut self.dropped,
        }
    }
}

/// What one cut writes: the traces to leave out, and the roots to write
/// in place of the head's (the same spans, labelled with their policy).
#[derive(Debug, Default)]
pub(crate) struct CutPlan {
    pub dropped: HashSet<TraceId>,
    pub labelled: HashMap<(TraceId, SpanId), Span>,
}

impl CutPlan {
    /// The spans to write, from the head's.
    pub(crate) fn apply<'a>(&'a self, spans: Vec<&'a Span>) -> Vec<&'a Span> {
        spans
            .into_iter()
            .filter(|s| !self.dropped.contains(&s.trace_id))
            .map(|s| self.labelled.get(&(s.trace_id, s.span_id)).unwrap_or(s))
            .collect()
    }
}

/// The running state of sampling: per-operation durations and recent
/// decisions.
#[derive(Debug)]
pub(crate) struct Sampler {
    config: SamplingConfig,
    durations: HashMap<(String, String), DurationSketch>,
    decided: HashMap<TraceId, bool>,
    order: VecDeque<TraceId>,
    stats: SamplingStats,
}

impl Sampler {
    pub(crate) fn new(config: SamplingConfig) -> Sampler {
        Sampler {
            config,
            durations: HashMap::new(),
            decided: HashMap::new(),
            order: VecDeque::new(),
            stats: SamplingStats::default(),
        }
    }

    pub(crate) fn stats(&self) -> SamplingStats {
        self.stats.clone()
    }

    /// Decides every trace of a head being cut at `now`.
    pub(crate) fn plan<'a>(
        &mut self,
        traces: impl Iterator<Item = (TraceId, &'a [Span])>,
        now: UnixNanos,
    ) -> CutPlan {
        let mut plan = CutPlan::default();
        let mut budget = chaintrace_query::RegexBudget::new(RULE_WORK_PER_CUT);
        let mut exhausted = false;
        for (id, spans) in traces {
            if let Some(&keep) = self.decided.get(&id) {
                self.stats.late_spans += spans.len() as u64;
                self.count_spans(keep, spans.len());
                if !keep {
                    plan.dropped.insert(id);
                }
                continue;
            }
            let (policy, rule) = self.decide(id, spans, now, &mut budget, &mut exhausted);
            let keep = policy != Policy::Dropped;
            *self.stats.traces_mut(policy) += 1;
            self.count_spans(keep, spans.len());
            self.remember(id, keep);
            if !keep {
                plan.dropped.insert(id);
                continue;
            }
            if let Some(root) = spans.iter().find(|s| s.parent_span_id.is_none()) {
                let rate = if policy == Policy::Rate {
                    self.rate_of(root)
                } else {
                    1.0
                };
                let mut labelled = root.clone();
                labelled.attributes.retain(|kv| {
                    kv.key != POLICY_ATTRIBUTE
                        && kv.key != RATE_ATTRIBUTE
                        && kv.key != RULE_ATTRIBUTE
                });
                labelled
                    .attributes
                    .push(KeyValue::new(POLICY_ATTRIBUTE, policy.name()));
                labelled
                    .attributes
                    .push(KeyValue::new(RATE_ATTRIBUTE, rate));
                if let Some(rule) = rule {
                    labelled
                        .attributes
                        .push(KeyValue::new(RULE_ATTRIBUTE, rule));
                }
                plan.labelled.insert((id, root.span_id), labelled);
            }
        }
        if exhausted {
            self.stats.rule_budget_exhausted += 1;
        }
        plan
    }

    /// The rate for traces rooted at `root`: its service's, else the base.
    fn rate_of(&self, root: &Span) -> f64 {
        self.config
            .service_rates
            .get(root.service_name())
            .copied()
            .unwrap_or(self.config.base_rate)
    }

    fn count_spans(&mut self, keep: bool, n: usize) {
        if keep {
            self.stats.spans_kept += n as u64;
        } else {
            self.stats.spans_dropped += n as u64;
        }
    }

    fn remember(&mut self, id: TraceId, keep: bool) {
        if self.decided.insert(id, keep).is_none() {
            self.order.push_back(id);
        }
        while self.order.len() > REMEMBERED_DECISIONS {
            if let Some(old) = self.order.pop_front() {
                self.decided.remove(&old);
            }
        }
    }

    /// The policy for one trace seen whole for the first time, and the
    /// text of the keep rule that kept it, if one did.
    fn decide(
        &mut self,
        id: TraceId,
        spans: &[Span],
        now: UnixNanos,
        budget: &mut chaintrace_query::RegexBudget,
        exhausted: &mut bool,
    ) -> (Policy, Option<String>) {
        if self.config.keep.is_empty() || *exhausted {
            return (self.judge(id, spans, now), None);
        }
        let policy = self.judge(id, spans, now);
        if matches!(policy, Policy::Young | Policy::Error) {
            return (policy, None);
        }
        // A rule costs a copy of the trace and its regex work: only traces
        // the other policies judge by speed or rate get here.
        let trace = Trace::new(id, spans.to_vec());
        for rule in &self.config.keep {
            match rule.query.evaluate_within(&trace, budget) {
                Ok(Some(_)) => return (Policy::Rule, Some(rule.text.clone())),
                Ok(None) => {}
                Err(_) => {
                    *exhausted = true;
                    break;
                }
            }
        }
        (policy, None)
    }

    /// Young, error, warm-up, slow, rate or dropped (no rules).
    fn judge(&mut self, id: TraceId, spans: &[Span], now: UnixNanos) -> Policy {
        let wait = u64::try_from(self.config.decision_wait.as_nanos()).unwrap_or(u64::MAX);
        let root = spans.iter().find(|s| s.parent_span_id.is_none());
        let ended = match root {
            Some(r) => r.end,
            None => spans.iter().map(|s| s.end).max().unwrap_or_default(),
        };
        if ended.0.saturating_add(wait) > now.0 {
            return Policy::Young;
        }
        if spans.iter().any(|s| s.status.code == StatusCode::Error) {
            return Policy::Error;
        }
        if let Some(root) = root {
            let key = (root.service_name().to_string(), root.name.to_string());
            let tracked =
                self.durations.len() < MAX_OPERATIONS || self.durations.contains_key(&key);
            if tracked {
                let sketch = self.durations.entry(key).or_default();
                let duration = root.duration().0;
                let seen = sketch.count();
                let p99 = sketch.quantile(0.99);
                sketch.add(duration);
                if seen < WARM_UP_TRACES {
                    return Policy::WarmUp;
                }
                if p99.is_some_and(|p| duration > p) {
                    return Policy::Slow;
                }
            }
        }
        let rate = root.map_or(self.config.base_rate, |r| self.rate_of(r));
        if under_rate(id, rate) {
            Policy::Rate
        } else {
            Policy::Dropped
        }
    }
}

/// Whether `id` falls under `rate`: a hash of the whole id compared with
/// the rate's share of the hash space, so every node answers the same and
/// ids that are not random (counters, ids with a fixed half) still spread.
pub fn under_rate(id: TraceId, rate: f64) -> bool {
    if rate >= 1.0 {
        return true;
    }
    if rate <= 0.0 {
        return false;
    }
    // FNV-1a over the 16 bytes, then a splitmix64 finaliser.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.0 {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^= h >> 31;
    (h as f64) < rate * (u64::MAX as f64)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::time::Duration;

    use chaintrace_model::{AnyValue, Span, SpanId, StatusCode, TraceId, UnixNanos};

    use super::*;
    use crate::test_support::{span, SplitMix as Seeded};

    const NOW: UnixNanos = UnixNanos(10_000_000_000_000_000);

    /// One generated chain: a root of `op` lasting `ms`, a child that fails
    /// when `failed`, ended an hour before [`NOW`].
    fn chain(n: u64, op: &str, ms: u64, failed: bool) -> Vec<Span> {
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&n.to_be_bytes());
        id[8..].copy_from_slice(&n.wrapping_mul(0x9e37_79b9).to_le_bytes());
        let start = NOW.0 - 3_600_000_000_000 - ms * 1_000_000;
        let mut root = span(1, 1, None, "rag", op, start, start + ms * 1_000_000);
        let mut child = span(1, 2, Some(1), "rag", "api_call", start, start + 1_000_000);
        root.trace_id = TraceId(id);
        child.trace_id = TraceId(id);
        if failed {
            child.status.code = StatusCode::Error;
        }
        vec![root, child]
    }

    struct Generated {
        traces: Vec<Vec<Span>>,
        failed: Vec<bool>,
    }

    /// `n` chains over three operations, durations log-normal around
    /// 200 ms (one operation five times slower), one in ten failed.
    fn generate(n: u64, seed: u64) -> Generated {
        let mut rng = Seeded(seed);
        let mut out = Generated {
            traces: Vec::new(),
            failed: Vec::new(),
        };
        for i in 0..n {
            let op = ["answer", "ingest", "summarise"][(rng.next() % 3) as usize];
            // Box-Muller normal, exp'd.
            let (u, v) = (rng.unit().max(1e-12), rng.unit());
            let normal = (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos();
            let scale = if op == "summarise" { 1000.0 } else { 200.0 };
            let ms = (scale * (0.5 * normal).exp()).max(1.0) as u64;
            let failed = rng.next().is_multiple_of(10);
            out.traces.push(chain(i, op, ms, failed));
            out.failed.push(failed);
        }
        out
    }

    fn config(rate: f64) -> SamplingConfig {
        SamplingConfig::new(rate, Duration::from_secs(10))
    }

    /// Runs `traces` through `sampler` in cuts of 1 000; the policy of each.
    fn run(sampler: &mut Sampler, traces: &[Vec<Span>]) -> Vec<Option<(String, f64)>> {
        let mut labels = Vec::new();
        for cut in traces.chunks(1000) {
            let plan = sampler.plan(cut.iter().map(|t| (t[0].trace_id, t.as_slice())), NOW);
            for t in cut {
                let id = t[0].trace_id;
                if plan.dropped.contains(&id) {
                    labels.push(None);
                    continue;
                }
                let root = &plan.labelled[&(id, t[0].span_id)];
                let policy = match root.attr(POLICY_ATTRIBUTE) {
                    Some(AnyValue::String(s)) => s.to_string(),
                    other => panic!("policy {other:?}"),
                };
                let rate = match root.attr(RATE_ATTRIBUTE) {
                    Some(AnyValue::Double(r)) => *r,
                    other => panic!("rate {other:?}"),
                };
                labels.push(Some((policy, rate)));
            }
        }
        labels
    }

    #[test]
    fn errors_and_slow_traces_are_kept_and_the_rest_at_the_rate() {
        let rate = 0.05;
        let g = generate(30_000, 7);
        let mut sampler = Sampler::new(config(rate));
        let labels = run(&mut sampler, &g.traces);

        // Every trace with a failed span is kept, as `error`.
        for (i, l) in labels.iter().enumerate() {
            if g.failed[i] {
                assert_eq!(l.as_ref().map(|l| l.0.as_str()), Some("error"), "trace {i}");
            }
        }
        // Every trace clearly slower than its operation's true p99, once the
        // operation has been seen 2 000 times, is kept.
        let mut by_op: HashMap<String, Vec<u64>> = HashMap::new();
        for t in &g.traces {
            by_op
                .entry(t[0].name.to_string())
                .or_default()
                .push(t[0].duration().0);
        }
        let p99: HashMap<String, u64> = by_op
            .into_iter()
            .map(|(op, mut d)| {
                d.sort_unstable();
                (op, d[d.len() * 99 / 100])
            })
            .collect();
        let mut seen: HashMap<String, u64> = HashMap::new();
        let mut slow_checked = 0;
        for (i, t) in g.traces.iter().enumerate() {
            let op = t[0].name.to_string();
            let n = seen.entry(op.clone()).or_default();
            *n += 1;
            if *n > 2000 && t[0].duration().0 as f64 > 1.1 * p99[&op] as f64 {
                slow_checked += 1;
                assert!(labels[i].is_some(), "slow trace {i} of {op} dropped");
            }
        }
        assert!(slow_checked > 50, "only {slow_checked} slow traces checked");
        // Warm-up: the first traces of each operation are all kept.
        let warm = labels.iter().flatten().filter(|l| l.0 == "warm_up").count() as u64;
        assert_eq!(warm, sampler.stats().kept_warm_up);
        assert!(warm <= 3 * WARM_UP_TRACES, "{warm} kept warming up");
        // The rest: kept at the rate, within four standard deviations.
        let rest: Vec<&Option<(String, f64)>> = labels
            .iter()
            .filter(|l| l.as_ref().is_none_or(|l| l.0 == "rate"))
            .collect();
        let kept = rest.iter().filter(|l| l.is_some()).count() as f64;
        let n = rest.len() as f64;
        let sigma = (n * rate * (1.0 - rate)).sqrt();
        assert!(
            (kept - n * rate).abs() < 4.0 * sigma,
            "{kept} of {n} kept at rate {rate}"
        );
        // Every rate-kept root says its rate; the others say 1.
        for l in labels.iter().flatten() {
            assert_eq!(l.1, if l.0 == "rate" { rate } else { 1.0 }, "{l:?}");
        }
        // Weighted by 1 / rate, the kept traces estimate the true count.
        let estimate: f64 = labels.iter().flatten().map(|l| 1.0 / l.1).sum();
        let truth = g.traces.len() as f64;
        let spread = (n * (1.0 - rate) / rate).sqrt();
        assert!(
            (estimate - truth).abs() < 4.0 * spread,
            "estimated {estimate} traces of {truth}"
        );
        let stats = sampler.stats();
        assert_eq!(
            Policy::ALL.iter().map(|&p| stats.traces(p)).sum::<u64>(),
            truth as u64
        );
        assert_eq!(stats.spans_kept + stats.spans_dropped, 2 * truth as u64);
    }

    #[test]
    fn two_nodes_decide_the_same_traces_alike() {
        let g = generate(5_000, 11);
        let first = run(&mut Sampler::new(config(0.02)), &g.traces);
        let second = run(&mut Sampler::new(config(0.02)), &g.traces);
        assert_eq!(first, second);
        // The hash alone: the same answer for the same id, on any node.
        let mut rng = Seeded(3);
        let ids: Vec<TraceId> = (0..20_000)
            .map(|_| {
                let mut b = [0u8; 16];
                b[..8].copy_from_slice(&rng.next().to_le_bytes());
                b[8..].copy_from_slice(&rng.next().to_le_bytes());
                TraceId(b)
            })
            .collect();
        let share = ids.iter().filter(|id| under_rate(**id, 0.1)).count();
        assert!(
            (1_800..2_200).contains(&share),
            "{share} of 20 000 under 10 %"
        );
        // Ids that are counters (not random) spread as well.
        let counters = (0u64..20_000)
            .filter(|n| {
                let mut b = [0u8; 16];
                b[8..].copy_from_slice(&n.to_be_bytes());
                under_rate(TraceId(b), 0.1)
            })
            .count();
        assert!(
            (1_800..2_200).contains(&counters),
            "{counters} counter ids under 10 %"
        );
        assert!(under_rate(ids[0], 1.0) && !under_rate(ids[0], 0.0));
    }

    #[test]
    fn young_traces_are_kept_whole_and_late_spans_follow_the_decision() {
        let mut sampler = Sampler::new(config(0.000_001));
        // Warm the operation up so that plain traces are dropped.
        let warm: Vec<Vec<Span>> = (0..WARM_UP_TRACES)
            .map(|i| chain(i, "answer", 100, false))
            .collect();
        run(&mut sampler, &warm);
        let dropped = chain(1_000, "answer", 100, false);
        let mut young = chain(1_001, "answer", 100, false);
        // Its root ended a second ago: inside the 10 s wait.
        for s in &mut young {
            s.end = UnixNanos(NOW.0 - 1_000_000_000);
        }
        let rootless = vec![young[1].clone()];
        let mut rootless_id = rootless;
        rootless_id[0].trace_id = TraceId([0xaa; 16]);
        let plan = sampler.plan(
            [
                (dropped[0].trace_id, dropped.as_slice()),
                (young[0].trace_id, young.as_slice()),
                (rootless_id[0].trace_id, rootless_id.as_slice()),
            ]
            .into_iter(),
            NOW,
        );
        assert!(plan.dropped.contains(&dropped[0].trace_id));
        assert!(!plan.dropped.contains(&young[0].trace_id));
        assert!(
            !plan.dropped.contains(&rootless_id[0].trace_id),
            "a rootless young trace"
        );
        let label = &plan.labelled[&(young[0].trace_id, young[0].span_id)];
        assert_eq!(label.attr(POLICY_ATTRIBUTE), Some(&"young".into()));
        assert_eq!(sampler.stats().kept_young, 2);

        // Later spans of both follow: the dropped trace's are dropped, the
        // young trace's kept, and neither is decided again.
        let mut late_dropped = span(1, 9, Some(1), "rag", "late", 0, 1);
        late_dropped.trace_id = dropped[0].trace_id;
        late_dropped.status.code = StatusCode::Error;
        let mut late_young = span(1, 9, Some(1), "rag", "late", 0, 1);
        late_young.trace_id = young[0].trace_id;
        let late = [late_dropped, late_young];
        let plan = sampler.plan(
            late.iter().map(|s| (s.trace_id, std::slice::from_ref(s))),
            NOW,
        );
        assert!(plan.dropped.contains(&dropped[0].trace_id));
        assert!(!plan.dropped.contains(&young[0].trace_id));
        assert!(
            plan.labelled.is_empty(),
            "late spans are not labelled again"
        );
        assert_eq!(sampler.stats().late_spans, 2);
    }

    #[test]
    fn keep_rules_and_service_rates() {
        let mut config = config(0.000_001);
        config
            .keep
            .push(KeepRule::parse(r#"{ span.customer = "acme" }"#).unwrap());
        config.service_rates.insert("checkout".into(), 1.0);
        let mut sampler = Sampler::new(config);
        let in_checkout = |mut t: Vec<Span>| {
            t[0].resource = std::sync::Arc::new(chaintrace_model::Resource {
                attributes: vec![KeyValue::new("service.name", "checkout")],
            });
            t
        };
        // Both root operations warm up first.
        let warm: Vec<Vec<Span>> = (0..WARM_UP_TRACES)
            .flat_map(|i| {
                [
                    chain(i, "answer", 100, false),
                    in_checkout(chain(500 + i, "answer", 100, false)),
                ]
            })
            .collect();
        run(&mut sampler, &warm);
        let plain = chain(1_000, "answer", 100, false);
        let mut acme = chain(1_001, "answer", 100, false);
        acme[1].attributes.push(KeyValue::new("customer", "acme"));
        let checkout = in_checkout(chain(1_002, "answer", 100, false));
        let labels = run(&mut sampler, &[plain, acme, checkout]);
        assert_eq!(labels[0], None, "no rule, the base rate: dropped");
        assert_eq!(labels[1], Some(("rule".to_string(), 1.0)));
        // A service with a rate of its own: kept at its rate, and says so.
        assert_eq!(labels[2], Some(("rate".to_string(), 1.0)));
        assert_eq!(sampler.stats().kept_rule, 1);
        assert_eq!(sampler.stats().rule_budget_exhausted, 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_cut_writes_only_what_sampling_keeps() {
        use crate::{EmbeddedConfig, EmbeddedStore, Store};
        let dir = tempfile::tempdir().unwrap();
        let mut config = EmbeddedConfig::new(dir.path());
        config.sampling = Some(config_for_store());
        config.maintenance_interval = Duration::from_secs(3600);
        let (store, _) = EmbeddedStore::open(config.clone()).unwrap();
        // Timestamps of an hour ago: complete at the cut.
        let now = UnixNanos::now().0;
        let shift = |mut t: Vec<Span>| {
            for s in &mut t {
                s.start = UnixNanos(s.start.0 + (now - NOW.0));
                s.end = UnixNanos(s.end.0 + (now - NOW.0));
            }
            t
        };
        let warm: Vec<Span> = (0..WARM_UP_TRACES)
            .flat_map(|i| shift(chain(i, "answer", 100, false)))
            .collect();
        let plain = shift(chain(5_000, "answer", 100, false));
        let failed = shift(chain(5_001, "answer", 100, true));
        // The operation warms up in a cut of its own (a cut decides its
        // traces in no particular order).
        store.append(warm).await.unwrap();
        tokio::task::block_in_place(|| store.flush()).unwrap();
        store.append(plain.clone()).await.unwrap();
        store.append(failed.clone()).await.unwrap();
        // Before the cut every span is there: the head holds them.
        assert!(store.trace(plain[0].trace_id).await.unwrap().is_some());
        tokio::task::block_in_place(|| store.flush()).unwrap();

        assert!(
            store.trace(plain[0].trace_id).await.unwrap().is_none(),
            "dropped at the cut"
        );
        let kept = store
            .trace(failed[0].trace_id)
            .await
            .unwrap()
            .expect("error trace kept");
        assert_eq!(kept.spans.len(), 2);
        let root = kept.root().unwrap();
        assert_eq!(root.attr(POLICY_ATTRIBUTE), Some(&"error".into()));
        assert_eq!(root.attr(RATE_ATTRIBUTE), Some(&AnyValue::Double(1.0)));
        let warm_root = store
            .trace(chain(0, "answer", 1, false)[0].trace_id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            warm_root.root().unwrap().attr(POLICY_ATTRIBUTE),
            Some(&"warm_up".into())
        );
        let stats = store.stats().await.unwrap().sampling.unwrap();
        assert_eq!(
            (stats.kept_warm_up, stats.kept_error, stats.dropped),
            (WARM_UP_TRACES, 1, 1)
        );
        assert_eq!(stats.spans_dropped, 2);

        // A late span of the dropped trace is dropped at the next cut; one
        // of the kept trace is written beside it.
        let mut late_dropped = plain[1].clone();
        late_dropped.span_id = SpanId([7; 8]);
        let mut late_kept = failed[1].clone();
        late_kept.span_id = SpanId([7; 8]);
        store.append(vec![late_dropped, late_kept]).await.unwrap();
        tokio::task::block_in_place(|| store.flush()).unwrap();
        assert!(store.trace(plain[0].trace_id).await.unwrap().is_none());
        assert_eq!(
            store
                .trace(failed[0].trace_id)
                .await
                .unwrap()
                .unwrap()
                .spans
                .len(),
            3
        );
        assert_eq!(store.stats().await.unwrap().sampling.unwrap().late_spans, 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_burst_stays_within_the_memory_budget_and_keeps_every_error() {
        use crate::{EmbeddedConfig, EmbeddedStore, Store, StoreError};
        let dir = tempfile::tempdir().unwrap();
        let mut config = EmbeddedConfig::new(dir.path());
        config.sampling = Some(SamplingConfig::new(0.05, Duration::ZERO));
        config.max_memory = 2 << 20;
        config.block_max_bytes = 256 << 10;
        config.overload_wait = Duration::from_millis(200);
        config.retention = None;
        let budget = config.max_memory;
        let (store, _) = EmbeddedStore::open(config).unwrap();
        let store = std::sync::Arc::new(store);
        let now = UnixNanos::now().0;
        let shift = move |mut t: Vec<Span>| {
            for s in &mut t {
                s.start = UnixNanos(s.start.0 + (now - NOW.0));
                s.end = UnixNanos(s.end.0 + (now - NOW.0));
            }
            t
        };
        // Four exporters at once, 60 batches of 25 two-span traces each,
        // one trace in ten failed; a refused batch is sent again.
        let mut tasks = Vec::new();
        for worker in 0..4u64 {
            let store = std::sync::Arc::clone(&store);
            tasks.push(tokio::spawn(async move {
                let mut peak = 0u64;
                let mut biggest = 0u64;
                let mut failed = Vec::new();
                for b in 0..60u64 {
                    let mut batch = Vec::new();
                    for t in 0..25u64 {
                        let n = (worker * 60 + b) * 25 + t;
                        let bad = n % 10 == 3;
                        if bad {
                            failed.push(n);
                        }
                        batch.extend(shift(chain(n, "answer", 100 + n % 50, bad)));
                    }
                    let bytes: u64 = batch.iter().map(crate::head::estimate_span_bytes).sum();
                    biggest = biggest.max(bytes);
                    loop {
                        match store.append(batch.clone()).await {
                            Ok(_) => break,
                            Err(StoreError::Overloaded(_)) => {
                                tokio::time::sleep(Duration::from_millis(20)).await
                            }
                            Err(e) => panic!("{e}"),
                        }
                    }
                    peak = peak.max(store.stats().await.unwrap().head_bytes);
                }
                (peak, biggest, failed)
            }));
        }
        let mut failed = Vec::new();
        let (mut peak, mut biggest) = (0, 0);
        for task in tasks {
            let (p, b, mut f) = task.await.unwrap();
            (peak, biggest) = (peak.max(p), biggest.max(b));
            failed.append(&mut f);
        }
        // An append is admitted while the head is under budget: at most the
        // four batches in flight go past it.
        assert!(
            peak <= budget + 4 * biggest,
            "head held {peak} bytes, budget {budget}, batches of {biggest}"
        );
        tokio::task::block_in_place(|| store.flush()).unwrap();
        let stats = store.stats().await.unwrap();
        let sampling = stats.sampling.unwrap();
        assert!(stats.blocks_cut > 2, "{} cuts", stats.blocks_cut);
        assert_eq!(sampling.kept_error, failed.len() as u64);
        assert!(sampling.dropped > 4 * 60 * 25 / 2, "{sampling:?}");
        for n in failed.iter().step_by(7) {
            let id = chain(*n, "answer", 1, true)[0].trace_id;
            assert!(
                store.trace(id).await.unwrap().is_some(),
                "error trace {n} lost"
            );
        }
    }

    fn config_for_store() -> SamplingConfig {
        SamplingConfig::new(0.000_001, Duration::from_secs(10))
    }
}
