//! The LLM calls of a whole trace: the per-span view with the model taken
//! from an enclosing span when a span has none, each call counted once, and
//! totals.

use chaintrace_model::rollup::CallTokens;
use chaintrace_model::{SpanId, Trace};
use serde::Serialize;

use super::{call_core, call_mark, CallMark, TokenUsage};
use crate::prices::{Cost, PriceMemo, PriceTable};
use crate::tree::SpanTree;

/// One LLM span of a trace, as the analysis API lists it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LlmSpan {
    /// Index in `trace.spans`.
    pub span_index: usize,
    /// The span's id.
    pub span_id: SpanId,
    /// Span name.
    pub name: String,
    /// `service.name` of the span.
    pub service: String,
    /// The model, possibly taken from an enclosing LLM span.
    pub model: Option<String>,
    /// Whether `model` came from an enclosing span rather than this one.
    pub model_inherited: bool,
    /// The provider.
    pub provider: Option<String>,
    /// Token counts.
    #[serde(flatten)]
    pub tokens: TokenUsage,
    /// Cost, when known.
    pub cost: Option<Cost>,
    /// Whether this span is the one that counts the call in totals (see [`llm_spans`]).
    pub counted: bool,
    /// Whether the span's status is ERROR.
    pub is_error: bool,
    /// The span's duration.
    pub duration_nano: u64,
}

/// Totals over the counted LLM calls of a trace (or of many).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LlmTotals {
    /// Counted calls.
    pub calls: u64,
    /// Sum of input tokens (cache included).
    pub input_tokens: u64,
    /// Sum of output tokens (reasoning included).
    pub output_tokens: u64,
    /// Sum of cache reads.
    pub cache_read_tokens: u64,
    /// Sum of cache writes.
    pub cache_creation_tokens: u64,
    /// Sum of reasoning tokens.
    pub reasoning_tokens: u64,
    /// Sum of total tokens.
    pub total_tokens: u64,
    /// Cost of the calls whose cost is known.
    pub cost_usd: f64,
    /// Calls with a known cost.
    pub priced_calls: u64,
    /// Calls whose cost is unknown (model not in the price table, or no token counts).
    pub unpriced_calls: u64,
}

impl LlmTotals {
    /// Adds one counted call.
    pub fn add(&mut self, tokens: &TokenUsage, cost: Option<&Cost>) {
        self.add_n(tokens, cost, 1);
    }

    /// Adds one counted call that stands for `n` (a trace kept by tail
    /// sampling at rate 1 / n).
    pub fn add_n(&mut self, tokens: &TokenUsage, cost: Option<&Cost>, n: u64) {
        let times = |v: Option<u64>| v.unwrap_or(0).saturating_mul(n);
        self.calls += n;
        self.input_tokens = self.input_tokens.saturating_add(times(tokens.input_tokens));
        self.output_tokens = self
            .output_tokens
            .saturating_add(times(tokens.output_tokens));
        self.cache_read_tokens = self
            .cache_read_tokens
            .saturating_add(times(tokens.cache_read_tokens));
        self.cache_creation_tokens = self
            .cache_creation_tokens
            .saturating_add(times(tokens.cache_creation_tokens));
        self.reasoning_tokens = self
            .reasoning_tokens
            .saturating_add(times(tokens.reasoning_tokens));
        self.total_tokens = self.total_tokens.saturating_add(times(tokens.total_tokens));
        match cost {
            Some(c) => {
                self.cost_usd += c.total_usd * n as f64;
                self.priced_calls += n;
            }
            None => self.unpriced_calls += n,
        }
    }

    /// Adds the calls of a rollup cell: `n` calls (weighted) with token
    /// sums `tokens` and, when priced, their summed `cost`.
    pub fn add_sums(&mut self, tokens: &CallTokens, cost: Option<&Cost>, n: u64) {
        self.calls += n;
        self.input_tokens = self.input_tokens.saturating_add(tokens.input);
        self.output_tokens = self.output_tokens.saturating_add(tokens.output);
        self.cache_read_tokens = self.cache_read_tokens.saturating_add(tokens.cache_read);
        self.cache_creation_tokens = self
            .cache_creation_tokens
            .saturating_add(tokens.cache_write);
        self.reasoning_tokens = self.reasoning_tokens.saturating_add(tokens.reasoning);
        self.total_tokens = self.total_tokens.saturating_add(tokens.total);
        match cost {
            Some(c) => {
                self.cost_usd += c.total_usd;
                self.priced_calls += n;
            }
            None => self.unpriced_calls += n,
        }
    }

    /// Totals of the counted spans.
    pub fn of(spans: &[LlmSpan]) -> LlmTotals {
        let mut t = LlmTotals::default();
        for s in spans.iter().filter(|s| s.counted) {
            t.add(&s.tokens, s.cost.as_ref());
        }
        t
    }
}

/// The LLM spans of `trace` in span order.
///
/// A span without a model takes the model of its nearest enclosing LLM span
/// (the founding example: `llm_call` names the model, its child `api_call`
/// reports the tokens). A span *counts* as a call in totals when it reports
/// tokens and no LLM span below it does (a framework span and the
/// client-library span below it often both report the same usage), or when it
/// reports no tokens and no LLM span above or below it does (an embedding call
/// with only a model).
pub fn llm_spans(trace: &Trace, prices: &PriceTable) -> Vec<LlmSpan> {
    llm_spans_with(trace, &SpanTree::build(trace), prices)
}

pub(crate) fn llm_spans_with(trace: &Trace, tree: &SpanTree, prices: &PriceTable) -> Vec<LlmSpan> {
    let n = trace.spans.len();
    // Per span what the tree passes need, borrowed from the span: a call's
    // full reading is made once, below, straight into its `LlmSpan`.
    let marks: Vec<Option<CallMark>> = trace.spans.iter().map(call_mark).collect();
    let calls = marks.iter().filter(|m| m.is_some()).count();
    if calls == 0 {
        return Vec::new();
    }
    // One pass down and one up the tree, never a walk up from each span:
    // a 40 000-span chain would cost 40 000² steps.
    let parent = tree.parent_before();
    let has_tokens = |i: usize| marks[i].as_ref().is_some_and(|m| m.tokens);
    // Top-down: the nearest enclosing span's model, and whether any
    // enclosing span reports tokens.
    let mut model_above: Vec<Option<&str>> = vec![None; n];
    let mut tokens_above = vec![false; n];
    for &i in &tree.top_down {
        if let Some(p) = parent[i] {
            model_above[i] = marks[p].as_ref().and_then(|m| m.model).or(model_above[p]);
            tokens_above[i] = has_tokens(p) || tokens_above[p];
        }
    }
    // Bottom-up: whether any LLM span, or any reporting tokens, lies below.
    let mut tokens_below = vec![false; n];
    let mut llm_below = vec![false; n];
    for &i in tree.top_down.iter().rev() {
        if let Some(p) = parent[i] {
            llm_below[p] |= marks[i].is_some() || llm_below[i];
            tokens_below[p] |= has_tokens(i) || tokens_below[i];
        }
    }

    let mut memo = PriceMemo::new(prices);
    let mut out = Vec::with_capacity(calls);
    for (i, span) in trace.spans.iter().enumerate() {
        let Some(mark) = &marks[i] else { continue };
        let inherited = if mark.model.is_none() {
            model_above[i]
        } else {
            None
        };
        // A call that takes its model from above is priced as that model.
        let Some(core) = call_core(span, inherited, &mut memo) else {
            continue;
        };
        let counted = if has_tokens(i) {
            !tokens_below[i]
        } else {
            !llm_below[i] && !tokens_above[i]
        };
        out.push(LlmSpan {
            span_index: i,
            span_id: span.span_id,
            name: span.name.to_string(),
            service: span.service_name().to_string(),
            model: core.model,
            model_inherited: inherited.is_some(),
            provider: core.provider,
            tokens: core.tokens,
            cost: core.cost,
            counted,
            is_error: span.is_error(),
            duration_nano: span.duration().0,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use chaintrace_model::Span;

    use super::*;
    use crate::llm::{llm_view, LlmView};
    use crate::test_support::*;

    #[test]
    fn trace_spans_inherit_the_model_and_count_each_call_once() {
        let t = founding();
        let spans = llm_spans(&t, &PriceTable::builtin());
        let summary: Vec<_> = spans
            .iter()
            .map(|s| {
                (
                    s.name.as_str(),
                    s.model.as_deref(),
                    s.model_inherited,
                    s.counted,
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("embed_query", Some("text-embedding-3-small"), false, true),
                ("llm_call", Some("claude-3-opus-20250219"), false, false),
                ("api_call", Some("claude-3-opus-20250219"), true, true),
            ]
        );
        let api = &spans[2];
        // 1200×$15 + 350×$75 per million = $0.04425
        assert!((api.cost.as_ref().unwrap().total_usd - 0.04425).abs() < 1e-12);
        let totals = LlmTotals::of(&spans);
        assert_eq!(
            (totals.calls, totals.input_tokens, totals.output_tokens),
            (2, 1200, 350)
        );
        assert_eq!((totals.priced_calls, totals.unpriced_calls), (1, 1));

        // A wrapper span and the client span below it both report usage.
        let t = Trace::new(
            chaintrace_model::TraceId([1; 16]),
            vec![
                with(
                    span(1, None, "ChatOpenAI", 0, 100),
                    &[
                        ("gen_ai.request.model", "gpt-4o".into()),
                        ("gen_ai.usage.input_tokens", 10i64.into()),
                    ],
                ),
                with(
                    span(2, Some(1), "openai.chat", 1, 99),
                    &[
                        ("gen_ai.request.model", "gpt-4o".into()),
                        ("gen_ai.usage.input_tokens", 10i64.into()),
                    ],
                ),
            ],
        );
        let totals = LlmTotals::of(&llm_spans(&t, &PriceTable::builtin()));
        assert_eq!((totals.calls, totals.input_tokens), (1, 10));
    }

    /// The definition the linear passes must agree with: walk up from
    /// each span (at most n steps, so a parent cycle ends).
    fn reference(trace: &Trace, prices: &PriceTable) -> Vec<(Option<String>, bool, bool)> {
        let tree = SpanTree::build(trace);
        let parent = tree.parent_before();
        let n = trace.spans.len();
        let own: Vec<Option<LlmView>> = trace.spans.iter().map(|s| llm_view(s, prices)).collect();
        let ancestors = |i: usize| {
            let mut out = Vec::new();
            let mut next = parent[i];
            while let Some(p) = next.filter(|_| out.len() < n) {
                out.push(p);
                next = parent[p];
            }
            out
        };
        let below = |a: usize, pred: &dyn Fn(usize) -> bool| {
            (0..n).any(|i| pred(i) && ancestors(i).contains(&a))
        };
        let has_tokens = |i: usize| own[i].as_ref().is_some_and(|v| v.tokens.is_known());
        (0..n)
            .filter(|&i| own[i].is_some())
            .map(|i| {
                let view = own[i].as_ref().unwrap();
                let inherited = if view.model.is_none() {
                    ancestors(i)
                        .into_iter()
                        .find_map(|a| own[a].as_ref().and_then(|v| v.model.clone()))
                } else {
                    None
                };
                let counted = if has_tokens(i) {
                    !below(i, &has_tokens)
                } else {
                    !below(i, &|j| own[j].is_some()) && !ancestors(i).into_iter().any(has_tokens)
                };
                (
                    inherited.clone().or(view.model.clone()),
                    inherited.is_some(),
                    counted,
                )
            })
            .collect()
    }

    fn chain_span(
        i: u64,
        parent: Option<u64>,
        attrs: &[(&str, chaintrace_model::AnyValue)],
    ) -> Span {
        let id = |i: u64| chaintrace_model::SpanId((i + 1).to_be_bytes());
        let mut s = span_ns(1, None, "step", T0 + i, T0 + 2 * 40_000 - i);
        s.span_id = id(i);
        s.parent_span_id = parent.map(id);
        with(s, attrs)
    }

    proptest::proptest! {
        /// Random forests with parent cycles, some spans naming a model,
        /// some reporting tokens: the linear passes give the reference's
        /// models, inheritance and counting.
        #[test]
        fn linear_passes_agree_with_walking_up_from_each_span(
            shape in proptest::collection::vec((0u64..12, 0u8..4), 1..12)
        ) {
            let n = shape.len() as u64;
            let spans: Vec<Span> = shape
                .iter()
                .enumerate()
                .map(|(i, &(p, kind))| {
                    let i = i as u64;
                    // p == n or beyond: no parent; otherwise any span, cycles included.
                    let parent = (p < n && p != i).then_some(p);
                    let attrs: Vec<(&str, chaintrace_model::AnyValue)> = match kind {
                        0 => vec![],
                        1 => vec![("gen_ai.request.model", "gpt-4o".into())],
                        2 => vec![("gen_ai.usage.input_tokens", 5i64.into())],
                        _ => vec![
                            ("gen_ai.request.model", "claude-3-haiku".into()),
                            ("gen_ai.usage.output_tokens", 3i64.into()),
                        ],
                    };
                    chain_span(i, parent, &attrs)
                })
                .collect();
            let trace = Trace::new(chaintrace_model::TraceId([1; 16]), spans);
            let prices = PriceTable::builtin();
            let got: Vec<(Option<String>, bool, bool)> = llm_spans(&trace, &prices)
                .into_iter()
                .map(|s| (s.model, s.model_inherited, s.counted))
                .collect();
            proptest::prop_assert_eq!(got, reference(&trace, &prices));
        }
    }

    /// The chain that took 11 s: 40 000 nested spans, the model named once
    /// at the top and tokens reported by every span. Each inherits the
    /// model, and only the innermost counts (every other has usage below).
    #[test]
    fn a_forty_thousand_span_chain_inherits_and_counts_in_linear_time() {
        const N: u64 = 40_000;
        let spans: Vec<Span> = (0..N)
            .map(|i| {
                let mut attrs = vec![("gen_ai.usage.input_tokens", 2i64.into())];
                if i == 0 {
                    attrs.push(("gen_ai.request.model", "gpt-4o".into()));
                }
                chain_span(i, i.checked_sub(1), &attrs)
            })
            .collect();
        let trace = Trace::new(chaintrace_model::TraceId([1; 16]), spans);
        let prices = PriceTable::builtin();
        let calls = llm_spans(&trace, &prices);
        assert_eq!(calls.len(), N as usize);
        assert!(calls.iter().all(|c| c.model.as_deref() == Some("gpt-4o")));
        assert_eq!(
            calls.iter().filter(|c| c.model_inherited).count(),
            N as usize - 1
        );
        let counted: Vec<usize> = calls
            .iter()
            .filter(|c| c.counted)
            .map(|c| c.span_index)
            .collect();
        assert_eq!(counted.len(), 1);
        assert_eq!(
            trace.spans[counted[0]].span_id,
            chaintrace_model::SpanId(N.to_be_bytes())
        );
        // The whole analysis of the same chain: no deep recursion either.
        let analysis = crate::analyze(&trace, &prices, None).unwrap();
        assert_eq!(analysis.critical_path.len(), N as usize);
    }
}
