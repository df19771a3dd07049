//! The analysis crate's side of rollups: what a block's rollup records of
//! each span ([`RollupFigures`]), computed with the same tree, critical
//! path and LLM-call rules as a trace's analysis, so that figures read from
//! rollups equal those computed from the traces.

use chaintrace_model::rollup::{CallFigures, ErrorFigures, SpanFigures, TraceFigures};
use chaintrace_model::Trace;

use crate::critical_path::critical_nanos;
use crate::errors::error_type;
use crate::llm::llm_spans_with;
use crate::prices::PriceTable;
use crate::tree::SpanTree;

/// [`TraceFigures`] from this crate's rules: self time, critical path and
/// the counted LLM calls of each span. Hand it to the store
/// (`EmbeddedConfig::figures`) so the blocks it writes get rollups.
#[derive(Debug, Default, Clone, Copy)]
pub struct RollupFigures;

impl TraceFigures for RollupFigures {
    fn figures(&self, trace: &Trace) -> Vec<SpanFigures> {
        let tree = SpanTree::build(trace);
        let self_nano = tree.self_times(&tree.interval);
        let critical = critical_nanos(&tree);
        let mut out: Vec<SpanFigures> = self_nano
            .into_iter()
            .zip(critical)
            .zip(&trace.spans)
            .map(|((self_nano, critical_nano), span)| SpanFigures {
                self_nano,
                critical_nano,
                call: None,
                error: error_type(span).map(|t| ErrorFigures {
                    short: t.short,
                    full: t.full,
                    source: t.source.code(),
                }),
            })
            .collect();
        // Cost is left to the reader (the current price table), so none
        // is looked up here.
        let no_prices = PriceTable::empty();
        for call in llm_spans_with(trace, &tree, &no_prices)
            .into_iter()
            .filter(|c| c.counted)
        {
            if let Some(fig) = out.get_mut(call.span_index) {
                let t = call.tokens;
                fig.call = Some(CallFigures {
                    model: call.model,
                    provider: call.provider,
                    input: t.input_tokens,
                    output: t.output_tokens,
                    cache_read: t.cache_read_tokens,
                    cache_write: t.cache_creation_tokens,
                    reasoning: t.reasoning_tokens,
                    total: t.total_tokens,
                });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use chaintrace_model::conventions::SAMPLING_RATE_KEY;
    use chaintrace_model::rollup::Rollup;
    use chaintrace_model::{AnyValue, KeyValue, TraceId};

    use super::*;
    use crate::aggregates::Aggregates;
    use crate::test_support::{failed, founding_spans, ms, with};

    /// Founding chains spread over three minutes: some failed, some with
    /// cache reads or a model the price table lacks, some kept by sampling.
    fn traces() -> Vec<Trace> {
        (0..240u32)
            .map(|i| {
                let mut spans = founding_spans();
                for s in &mut spans {
                    let shift = ms(u64::from(i) * 750) + u64::from(i % 7) * 1_000;
                    s.start.0 += shift;
                    s.end.0 += shift + u64::from(i % 5) * 1_000_000;
                    s.trace_id = TraceId([
                        (i % 251) as u8,
                        (i / 251) as u8,
                        1,
                        2,
                        3,
                        4,
                        5,
                        6,
                        7,
                        8,
                        9,
                        10,
                        11,
                        12,
                        13,
                        14,
                    ]);
                }
                if i % 9 == 0 {
                    spans[6] = failed(spans[6].clone(), "RateLimitError");
                }
                if i % 4 == 0 {
                    spans[6] = with(
                        spans[6].clone(),
                        &[("gen_ai.usage.cache_read_input_tokens", 300i64.into())],
                    );
                }
                if i % 11 == 0 {
                    spans[4].attributes.retain(|kv| kv.key != "model");
                    spans[4] = with(spans[4].clone(), &[("model", "house-model-7".into())]);
                }
                if i % 3 == 0 {
                    spans[0]
                        .attributes
                        .push(KeyValue::new(SAMPLING_RATE_KEY, AnyValue::Double(0.25)));
                }
                let id = spans[0].trace_id;
                Trace::new(id, spans)
            })
            .collect()
    }

    fn close(a: u64, b: u64) -> bool {
        a.abs_diff(b) as f64 <= 0.0101 * a.max(b) as f64
    }

    #[test]
    fn figures_from_a_rollup_equal_figures_from_its_traces() {
        let prices = PriceTable::builtin();
        let traces = traces();
        let mut walked = Aggregates::default();
        let mut walked_errors = crate::errors::ErrorGroups::default();
        // Two rollups (two blocks), merged as a read merges them.
        let (mut a, mut b) = (Rollup::new(), Rollup::new());
        for (i, t) in traces.iter().enumerate() {
            walked.add(t, &prices);
            walked_errors.add(t);
            let r = if i % 2 == 0 { &mut a } else { &mut b };
            r.add_trace(t, &RollupFigures.figures(t));
        }
        a.merge(&b);
        assert!(a.minutes.len() >= 3, "{} minutes", a.minutes.len());
        let mut rolled = Aggregates::default();
        rolled.add_rollup(&a, &prices);
        let mut rolled_errors = crate::errors::ErrorGroups::default();
        rolled_errors.add_rollup(&a);
        let errors = walked_errors.finish();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].count, 27);
        assert_eq!(rolled_errors.finish(), errors);
        assert!(walked.estimated() && rolled.estimated());
        let (w, r) = (walked.operations(), rolled.operations());
        assert_eq!(w.len(), r.len());
        for (w, r) in w.iter().zip(&r) {
            let name = &w.name;
            assert_eq!((&w.service, &w.name), (&r.service, &r.name));
            assert_eq!(
                (w.count, w.sampled_count, w.error_count, w.mean_self_nano),
                (r.count, r.sampled_count, r.error_count, r.mean_self_nano),
                "{name}"
            );
            assert_eq!(
                (w.critical_path_nano, w.critical_path_traces, w.llm_calls),
                (r.critical_path_nano, r.critical_path_traces, r.llm_calls),
                "{name}"
            );
            assert_eq!(
                (w.input_tokens, w.output_tokens, w.unpriced_calls),
                (r.input_tokens, r.output_tokens, r.unpriced_calls),
                "{name}"
            );
            assert!(
                (w.cost_usd - r.cost_usd).abs() <= 1e-9 * w.cost_usd.max(1.0),
                "{name}: {} vs {}",
                w.cost_usd,
                r.cost_usd
            );
            assert!(
                (w.critical_path_share - r.critical_path_share).abs() < 1e-12,
                "{name}"
            );
            assert_eq!(w.max_nano, r.max_nano, "{name}");
            for (x, y) in [
                (w.p50_nano, r.p50_nano),
                (w.p90_nano, r.p90_nano),
                (w.p99_nano, r.p99_nano),
            ] {
                assert!(close(x, y), "{name}: {x} vs {y}");
            }
        }
        let (w, r) = (walked.models(), rolled.models());
        assert_eq!(w.len(), r.len());
        assert!(w
            .iter()
            .any(|m| m.usage.unpriced_calls > 0 && m.usage.priced_calls == 0));
        assert!(w.iter().any(|m| m.usage.cache_read_tokens > 0));
        for (w, r) in w.iter().zip(&r) {
            assert_eq!(
                (&w.model, &w.provider, &w.priced_as),
                (&r.model, &r.provider, &r.priced_as)
            );
            assert_eq!(
                (w.calls, w.sampled_calls, w.error_count),
                (r.calls, r.sampled_calls, r.error_count)
            );
            let (wu, ru) = (&w.usage, &r.usage);
            assert_eq!(
                (
                    wu.input_tokens,
                    wu.output_tokens,
                    wu.cache_read_tokens,
                    wu.total_tokens,
                    wu.priced_calls,
                    wu.unpriced_calls
                ),
                (
                    ru.input_tokens,
                    ru.output_tokens,
                    ru.cache_read_tokens,
                    ru.total_tokens,
                    ru.priced_calls,
                    ru.unpriced_calls
                )
            );
            assert!((wu.cost_usd - ru.cost_usd).abs() <= 1e-9 * wu.cost_usd.max(1.0));
            assert!(close(w.p99_nano, r.p99_nano));
        }
    }

    #[test]
    fn a_price_change_reprices_a_rollup_written_before_it() {
        let trace = crate::test_support::founding();
        let mut rollup = Rollup::new();
        rollup.add_trace(&trace, &RollupFigures.figures(&trace));
        let cost = |toml: &str| {
            let prices = PriceTable::parse(toml).unwrap();
            let mut agg = Aggregates::default();
            agg.add_rollup(&rollup, &prices);
            agg.models()
                .into_iter()
                .map(|m| m.usage.cost_usd)
                .sum::<f64>()
        };
        let cheap = cost("[models.claude-3-opus]\ninput = 1.0\noutput = 2.0\n");
        let dear = cost("[models.claude-3-opus]\ninput = 10.0\noutput = 20.0\n");
        // 1 200 input and 350 output tokens.
        assert!(
            (cheap - (1200.0 * 1.0 + 350.0 * 2.0) / 1e6).abs() < 1e-12,
            "{cheap}"
        );
        assert!((dear - 10.0 * cheap).abs() < 1e-12, "{dear}");
    }
}
