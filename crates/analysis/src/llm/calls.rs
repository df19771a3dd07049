//! The LLM calls of a whole trace: the per-span view with the model taken
//! from an enclosing span when a span has none, each call counted once, and
//! totals.

use chaintrace_model::{SpanId, Trace};
use serde::Serialize;

use super::{llm_view, view_with_model, LlmView, TokenUsage};
use crate::prices::{Cost, PriceTable};
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
        self.calls += 1;
        self.input_tokens += tokens.input_tokens.unwrap_or(0);
        self.output_tokens += tokens.output_tokens.unwrap_or(0);
        self.cache_read_tokens += tokens.cache_read_tokens.unwrap_or(0);
        self.cache_creation_tokens += tokens.cache_creation_tokens.unwrap_or(0);
        self.reasoning_tokens += tokens.reasoning_tokens.unwrap_or(0);
        self.total_tokens += tokens.total_tokens.unwrap_or(0);
        match cost {
            Some(c) => {
                self.cost_usd += c.total_usd;
                self.priced_calls += 1;
            }
            None => self.unpriced_calls += 1,
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
    let own: Vec<Option<LlmView>> = trace.spans.iter().map(|s| llm_view(s, prices)).collect();
    if own.iter().all(Option::is_none) {
        return Vec::new();
    }
    // Walk up at most n steps: a parent cycle cannot loop.
    let ancestors = |i: usize| {
        let mut next = tree.parent[i];
        let mut steps = 0;
        std::iter::from_fn(move || {
            let cur = next.filter(|_| steps < n)?;
            steps += 1;
            next = tree.parent[cur];
            Some(cur)
        })
    };
    let has_tokens = |i: usize| own[i].as_ref().is_some_and(|v| v.tokens.is_known());
    let mut tokens_below = vec![false; n];
    let mut llm_below = vec![false; n];
    for i in (0..n).filter(|&i| own[i].is_some()) {
        for a in ancestors(i) {
            llm_below[a] = true;
            if has_tokens(i) {
                tokens_below[a] = true;
            }
        }
    }

    let mut out = Vec::new();
    for (i, view) in own.iter().enumerate() {
        let Some(view) = view else { continue };
        let span = &trace.spans[i];
        let inherited = if view.model.is_none() {
            ancestors(i).find_map(|a| own[a].as_ref().and_then(|v| v.model.clone()))
        } else {
            None
        };
        let full = match inherited.as_deref() {
            Some(model) => {
                view_with_model(span, Some(model), prices).unwrap_or_else(|| view.clone())
            }
            None => view.clone(),
        };
        let counted = if has_tokens(i) {
            !tokens_below[i]
        } else {
            !llm_below[i] && !ancestors(i).any(has_tokens)
        };
        out.push(LlmSpan {
            span_index: i,
            span_id: span.span_id,
            name: span.name.to_string(),
            service: span.service_name().to_string(),
            model: full.model,
            model_inherited: inherited.is_some(),
            provider: full.provider,
            tokens: full.tokens,
            cost: full.cost,
            counted,
            is_error: span.is_error(),
            duration_nano: span.duration().0,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
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
}
