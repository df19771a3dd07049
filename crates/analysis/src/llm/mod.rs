//! The LLM view of a span: model, provider, tokens, parameters, prompt,
//! completion and cost, whichever convention the instrumentation used.
//!
//! Recognised, in this order of precedence:
//!
//! 1. OpenTelemetry GenAI: `gen_ai.request.model`, `gen_ai.response.model`,
//!    `gen_ai.provider.name` / `gen_ai.system`, `gen_ai.usage.*` (current and
//!    deprecated spellings), `gen_ai.request.max_tokens`,
//!    `gen_ai.request.temperature`, `gen_ai.response.finish_reasons`; prompt
//!    and completion from `gen_ai.input.messages` / `gen_ai.output.messages`,
//!    `gen_ai.prompt` / `gen_ai.completion` (also indexed,
//!    `gen_ai.prompt.0.content`), or the `gen_ai.*.message`, `gen_ai.choice`
//!    and `gen_ai.content.*` events.
//! 2. OpenInference: `llm.model_name` (`embedding.model_name`),
//!    `llm.provider` / `llm.system`, `llm.token_count.*`,
//!    `llm.invocation_parameters`, `input.value`, `output.value`,
//!    `openinference.span.kind`.
//! 3. The founding document's plain names: `model`, `input_tokens`,
//!    `output_tokens`, `max_tokens`, `temperature`, `stop_reason`.
//!
//! Tokens are normalised to the GenAI meaning: `input_tokens` *includes*
//! cache reads and writes, `output_tokens` includes reasoning. Plain
//! `cache_read_input_tokens` / `cache_creation_input_tokens` follow the
//! Anthropic API, where `input_tokens` excludes them, and are added in.
//!
//! [`llm_spans`] applies the view to a whole trace: a span with tokens but no
//! model (the founding example's `api_call`) takes the model of the nearest
//! enclosing LLM span, and each call is counted once even when a framework
//! span and the client-library span below it both report usage.

pub(crate) mod calls;
mod messages;
mod turn_text;

pub(crate) use calls::llm_spans_with;
pub use calls::{llm_spans, LlmSpan, LlmTotals};
pub use turn_text::{answer_text, last_user_text};

use chaintrace_model::conventions::{
    self, REASONING_TOKEN_KEYS, REQUEST_MODEL_KEYS, RESPONSE_MODEL_KEYS, TOTAL_TOKEN_KEYS,
};
use chaintrace_model::{AnyValue, Span};
use serde::Serialize;

use crate::prices::{Cost, PriceMemo, PriceTable};
use messages::{completion, prompt};

/// Token counts of a call; `None` where the span did not say.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TokenUsage {
    /// All input tokens, cache reads and writes included.
    pub input_tokens: Option<u64>,
    /// All output tokens, reasoning included.
    pub output_tokens: Option<u64>,
    /// Input tokens served from the provider's prompt cache.
    pub cache_read_tokens: Option<u64>,
    /// Input tokens written to the provider's prompt cache.
    pub cache_creation_tokens: Option<u64>,
    /// Output tokens spent on reasoning.
    pub reasoning_tokens: Option<u64>,
    /// Total as reported, else input + output.
    pub total_tokens: Option<u64>,
}

impl TokenUsage {
    /// Whether any count is known.
    pub fn is_known(&self) -> bool {
        self.input_tokens.is_some() || self.output_tokens.is_some() || self.total_tokens.is_some()
    }
}

/// What a span says about an LLM call.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LlmView {
    /// The model that answered (`gen_ai.response.model`), else the one asked for.
    pub model: Option<String>,
    /// The model asked for.
    pub request_model: Option<String>,
    /// The model that answered, when reported.
    pub response_model: Option<String>,
    /// `openai`, `anthropic`, …: from the span, else from the price table.
    pub provider: Option<String>,
    /// `chat`, `embeddings`, … (`gen_ai.operation.name`), or the OpenInference span kind.
    pub operation: Option<String>,
    /// Token counts.
    #[serde(flatten)]
    pub tokens: TokenUsage,
    /// Requested output limit.
    pub max_tokens: Option<u64>,
    /// Requested sampling temperature.
    pub temperature: Option<f64>,
    /// Why generation stopped (`finish_reasons`, `stop_reason`).
    pub finish_reasons: Vec<String>,
    /// The prompt as recorded; untrusted text.
    pub prompt: Option<String>,
    /// The completion as recorded; untrusted text.
    pub completion: Option<String>,
    /// Cost, when the model's price and the tokens are known.
    pub cost: Option<Cost>,
}

/// The LLM view of `span`, or `None` when it is not an LLM span: it names no
/// model, reports no tokens and is not an OpenInference `LLM`/`EMBEDDING` span.
///
/// ```
/// use chaintrace_analysis::{llm_view, PriceTable};
/// # use chaintrace_model::*;
/// # let mut span = Span { trace_id: TraceId([1; 16]), span_id: SpanId([1; 8]),
/// #     parent_span_id: None, name: "chat".into(), kind: SpanKind::Client,
/// #     start: UnixNanos(0), end: UnixNanos(1), status: Status::default(),
/// #     attributes: vec![], events: vec![], links: vec![],
/// #     resource: Default::default(), scope: Default::default() };
/// span.attributes = vec![
///     KeyValue::new("gen_ai.request.model", "gpt-4o-mini"),
///     KeyValue::new("gen_ai.usage.input_tokens", 1000i64),
///     KeyValue::new("gen_ai.usage.output_tokens", 100i64),
/// ];
/// let view = llm_view(&span, &PriceTable::builtin()).unwrap();
/// assert_eq!(view.tokens.total_tokens, Some(1100));
/// assert!(view.cost.unwrap().total_usd > 0.0);
/// ```
pub fn llm_view(span: &Span, prices: &PriceTable) -> Option<LlmView> {
    view_with_model(span, None, prices)
}

/// What a call is, without what it said: the part of [`LlmView`] that
/// layouts, totals and lists need. A trace's calls are read through this,
/// so a 100 000-span trace never copies its prompts and completions.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CallCore {
    pub model: Option<String>,
    pub request_model: Option<String>,
    pub response_model: Option<String>,
    pub provider: Option<String>,
    /// `openinference.span.kind`, when set.
    pub oi_kind: Option<String>,
    pub tokens: TokenUsage,
    pub cost: Option<Cost>,
}

/// What the passes over a trace's tree need of one LLM span, read without
/// copying anything: the model it names and whether it reports tokens.
pub(crate) struct CallMark<'a> {
    pub model: Option<&'a str>,
    pub tokens: bool,
}

/// The [`CallMark`] of `span`, or `None` when it is not an LLM span: the
/// same decision as [`call_core`], which this must agree with.
pub(crate) fn call_mark(span: &Span) -> Option<CallMark<'_>> {
    let text = |keys: &[&str]| {
        keys.iter()
            .find_map(|k| span.attr(k).and_then(conventions::as_text))
    };
    let request_model = text(&REQUEST_MODEL_KEYS);
    let response_model = text(&RESPONSE_MODEL_KEYS);
    let tokens = tokens(span).is_known();
    let is_oi_llm = text(&["openinference.span.kind"])
        .is_some_and(|k| k.eq_ignore_ascii_case("llm") || k.eq_ignore_ascii_case("embedding"));
    if request_model.is_none() && response_model.is_none() && !tokens && !is_oi_llm {
        return None;
    }
    Some(CallMark {
        model: response_model.or(request_model),
        tokens,
    })
}

/// The [`CallCore`] of `span`, or `None` when it is not an LLM span (see
/// [`llm_view`]); `fallback_model` is used when the span names none.
pub(crate) fn call_core(
    span: &Span,
    fallback_model: Option<&str>,
    prices: &mut PriceMemo,
) -> Option<CallCore> {
    let text = |keys: &[&str]| keys.iter().find_map(|k| span.attr(k).and_then(as_text));
    let request_model = text(&REQUEST_MODEL_KEYS);
    let response_model = text(&RESPONSE_MODEL_KEYS);
    let tokens = tokens(span);
    let oi_kind = text(&["openinference.span.kind"]);
    let is_oi_llm = oi_kind
        .as_deref()
        .is_some_and(|k| k.eq_ignore_ascii_case("llm") || k.eq_ignore_ascii_case("embedding"));
    if request_model.is_none() && response_model.is_none() && !tokens.is_known() && !is_oi_llm {
        return None;
    }

    let model = response_model
        .clone()
        .or_else(|| request_model.clone())
        .or_else(|| fallback_model.map(str::to_string));
    let priced = model.as_deref().and_then(|m| prices.lookup(m));
    let cost = priced.and_then(|(name, price)| PriceTable::cost_at(name, price, &tokens));
    let provider = text(&[
        "gen_ai.provider.name",
        "gen_ai.system",
        "llm.provider",
        "llm.system",
        "provider",
    ])
    .or_else(|| priced.and_then(|(_, p)| p.provider.clone()));
    Some(CallCore {
        model,
        request_model,
        response_model,
        provider,
        oi_kind,
        tokens,
        cost,
    })
}

/// [`llm_view`], with `fallback_model` used when the span names none.
fn view_with_model(
    span: &Span,
    fallback_model: Option<&str>,
    prices: &PriceTable,
) -> Option<LlmView> {
    let core = call_core(span, fallback_model, &mut PriceMemo::new(prices))?;
    let text = |keys: &[&str]| keys.iter().find_map(|k| span.attr(k).and_then(as_text));
    let count = |keys: &[&str]| keys.iter().find_map(|k| span.attr(k).and_then(as_u64));

    let params = span
        .attr("llm.invocation_parameters")
        .and_then(AnyValue::as_str)
        .and_then(|s| serde_json::from_str::<serde_json::Value>(s).ok());
    let param = |k: &str| params.as_ref().and_then(|p| p.get(k)).cloned();

    let mut finish_reasons = Vec::new();
    for key in [
        "gen_ai.response.finish_reasons",
        "stop_reason",
        "finish_reason",
    ] {
        match span.attr(key) {
            Some(AnyValue::Array(items)) => {
                finish_reasons.extend(items.iter().filter_map(as_text));
            }
            Some(v) => finish_reasons.extend(as_text(v)),
            None => continue,
        }
        break;
    }

    Some(LlmView {
        model: core.model,
        request_model: core.request_model,
        response_model: core.response_model,
        provider: core.provider,
        operation: text(&["gen_ai.operation.name"]).or(core.oi_kind),
        tokens: core.tokens,
        max_tokens: count(&["gen_ai.request.max_tokens", "max_tokens"])
            .or_else(|| param("max_tokens").and_then(|v| v.as_u64()))
            .or_else(|| param("max_completion_tokens").and_then(|v| v.as_u64())),
        temperature: ["gen_ai.request.temperature", "temperature"]
            .iter()
            .find_map(|k| span.attr(k).and_then(as_f64))
            .or_else(|| param("temperature").and_then(|v| v.as_f64())),
        finish_reasons,
        prompt: prompt(span),
        completion: completion(span),
        cost: core.cost,
    })
}

/// Token counts, normalised to the GenAI meaning.
fn tokens(span: &Span) -> TokenUsage {
    let count = |keys: &[&str]| keys.iter().find_map(|k| span.attr(k).and_then(as_u64));
    let conventions::Tokens {
        input,
        output,
        cache_read,
        cache_creation,
    } = conventions::tokens(span);
    let reasoning = count(&REASONING_TOKEN_KEYS);
    let total = count(&TOTAL_TOKEN_KEYS).or(match (input, output) {
        (None, None) => None,
        (i, o) => Some(i.unwrap_or(0) + o.unwrap_or(0)),
    });
    TokenUsage {
        input_tokens: input,
        output_tokens: output,
        cache_read_tokens: cache_read,
        cache_creation_tokens: cache_creation,
        reasoning_tokens: reasoning,
        total_tokens: total,
    }
}

fn as_text(v: &AnyValue) -> Option<String> {
    conventions::as_text(v).map(str::to_string)
}

fn as_u64(v: &AnyValue) -> Option<u64> {
    conventions::as_count(v)
}

fn as_f64(v: &AnyValue) -> Option<f64> {
    match v {
        AnyValue::Double(d) => Some(*d),
        AnyValue::Int(i) => Some(*i as f64),
        AnyValue::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use chaintrace_model::{Event, KeyValue, UnixNanos};

    use super::*;
    use crate::test_support::*;

    fn attrs(list: &[(&str, AnyValue)]) -> Span {
        with(span(1, None, "call", 0, 10), list)
    }

    #[test]
    fn plain_span_is_not_an_llm_span() {
        let s = attrs(&[("database", "pinecone".into())]);
        assert_eq!(llm_view(&s, &PriceTable::builtin()), None);
    }

    #[test]
    fn genai_convention_with_cache_and_reasoning_tokens() {
        let s = attrs(&[
            ("gen_ai.operation.name", "chat".into()),
            ("gen_ai.provider.name", "anthropic".into()),
            ("gen_ai.request.model", "claude-3-5-sonnet-latest".into()),
            ("gen_ai.response.model", "claude-3-5-sonnet-20241022".into()),
            ("gen_ai.usage.input_tokens", 10_000i64.into()),
            ("gen_ai.usage.cache_read.input_tokens", 6_000i64.into()),
            ("gen_ai.usage.cache_creation.input_tokens", 2_000i64.into()),
            ("gen_ai.usage.output_tokens", "500".into()),
            ("gen_ai.usage.reasoning.output_tokens", 120i64.into()),
            ("gen_ai.request.max_tokens", 1024i64.into()),
            ("gen_ai.request.temperature", 0.7.into()),
            (
                "gen_ai.response.finish_reasons",
                AnyValue::Array(vec!["stop".into()]),
            ),
            (
                "gen_ai.input.messages",
                r#"[{"role":"user","parts":[]}]"#.into(),
            ),
        ]);
        let v = llm_view(&s, &PriceTable::builtin()).unwrap();
        assert_eq!(v.model.as_deref(), Some("claude-3-5-sonnet-20241022"));
        assert_eq!(v.request_model.as_deref(), Some("claude-3-5-sonnet-latest"));
        assert_eq!(v.provider.as_deref(), Some("anthropic"));
        assert_eq!(v.operation.as_deref(), Some("chat"));
        assert_eq!(
            v.tokens,
            TokenUsage {
                input_tokens: Some(10_000),
                output_tokens: Some(500),
                cache_read_tokens: Some(6_000),
                cache_creation_tokens: Some(2_000),
                reasoning_tokens: Some(120),
                total_tokens: Some(10_500),
            }
        );
        assert_eq!((v.max_tokens, v.temperature), (Some(1024), Some(0.7)));
        assert_eq!(v.finish_reasons, ["stop"]);
        assert!(v.prompt.unwrap().contains("user"));
        // 2000×$3 + 6000×$0.30 + 2000×$3.75 + 500×$15 per million = $0.0228
        let cost = v.cost.unwrap();
        assert!((cost.total_usd - 0.0228).abs() < 1e-12, "{cost:?}");
    }

    #[test]
    fn genai_deprecated_spellings_and_message_events() {
        let mut s = attrs(&[
            ("gen_ai.system", "openai".into()),
            ("gen_ai.request.model", "gpt-4o-mini".into()),
            ("gen_ai.usage.prompt_tokens", 2_000i64.into()),
            ("gen_ai.usage.completion_tokens", 100i64.into()),
            ("gen_ai.usage.cache_read_input_tokens", 1_000i64.into()),
        ]);
        let ev = |name: &str, key: &str, value: AnyValue| Event {
            time: UnixNanos(T0),
            name: name.into(),
            attributes: vec![KeyValue::new(key, value)],
        };
        s.events = vec![
            ev("gen_ai.system.message", "content", "Be brief.".into()),
            ev("gen_ai.user.message", "content", "What is RAG?".into()),
            ev(
                "gen_ai.choice",
                "message",
                AnyValue::KvList(vec![KeyValue::new("content", "Retrieval first.")]),
            ),
        ];
        let v = llm_view(&s, &PriceTable::builtin()).unwrap();
        assert_eq!(v.provider.as_deref(), Some("openai"));
        assert_eq!(v.tokens.input_tokens, Some(2_000));
        assert_eq!(v.tokens.cache_read_tokens, Some(1_000));
        assert_eq!(
            v.prompt.as_deref(),
            Some("system: Be brief.\nuser: What is RAG?")
        );
        assert_eq!(v.completion.as_deref(), Some("Retrieval first."));
        // gpt-4o-mini: 1000×$0.15 + 1000×$0.075 + 100×$0.60 per million = $0.000285
        assert!((v.cost.unwrap().total_usd - 0.000285).abs() < 1e-12);
    }

    #[test]
    fn genai_indexed_prompt_attributes() {
        let s = attrs(&[
            ("gen_ai.request.model", "gpt-4o".into()),
            ("gen_ai.prompt.1.role", "user".into()),
            ("gen_ai.prompt.1.content", "hi".into()),
            ("gen_ai.prompt.0.role", "system".into()),
            ("gen_ai.prompt.0.content", "be kind".into()),
            ("gen_ai.completion.0.content", "hello".into()),
        ]);
        let v = llm_view(&s, &PriceTable::builtin()).unwrap();
        assert_eq!(v.prompt.as_deref(), Some("system: be kind\nuser: hi"));
        assert_eq!(v.completion.as_deref(), Some("hello"));
        assert_eq!(v.cost, None, "no tokens, nothing to price");
    }

    #[test]
    fn openinference_convention() {
        let s = attrs(&[
            ("openinference.span.kind", "LLM".into()),
            ("llm.model_name", "gpt-4o-2024-08-06".into()),
            ("llm.provider", "openai".into()),
            ("llm.token_count.prompt", 1_000i64.into()),
            ("llm.token_count.completion", 200i64.into()),
            ("llm.token_count.total", 1_200i64.into()),
            (
                "llm.invocation_parameters",
                r#"{"temperature":0.2,"max_tokens":256}"#.into(),
            ),
            ("input.value", "question".into()),
            ("output.value", "answer".into()),
        ]);
        let v = llm_view(&s, &PriceTable::builtin()).unwrap();
        assert_eq!(v.model.as_deref(), Some("gpt-4o-2024-08-06"));
        assert_eq!(v.operation.as_deref(), Some("LLM"));
        assert_eq!(v.tokens.total_tokens, Some(1_200));
        assert_eq!((v.max_tokens, v.temperature), (Some(256), Some(0.2)));
        assert_eq!(v.prompt.as_deref(), Some("question"));
        assert_eq!(v.completion.as_deref(), Some("answer"));
        // 1000×$2.50 + 200×$10 per million = $0.0045
        assert!((v.cost.unwrap().total_usd - 0.0045).abs() < 1e-12);
    }

    #[test]
    fn plain_names_of_the_founding_document() {
        let s = attrs(&[
            ("model", "claude-3-opus-20250219".into()),
            ("max_tokens", 1024i64.into()),
            ("temperature", 0.7.into()),
            ("input_tokens", 1_000i64.into()),
            ("output_tokens", 200i64.into()),
            ("cache_read_input_tokens", 4_000i64.into()),
            ("stop_reason", "end_turn".into()),
        ]);
        let v = llm_view(&s, &PriceTable::builtin()).unwrap();
        assert_eq!(
            v.provider.as_deref(),
            Some("anthropic"),
            "from the price table"
        );
        // Anthropic's input_tokens excludes cache reads: normalised to 5000.
        assert_eq!(v.tokens.input_tokens, Some(5_000));
        assert_eq!(v.tokens.cache_read_tokens, Some(4_000));
        assert_eq!(v.finish_reasons, ["end_turn"]);
        // claude-3-opus: 1000×$15 + 4000×$1.50 + 200×$75 per million = $0.036
        assert!((v.cost.unwrap().total_usd - 0.036).abs() < 1e-12);
    }

    #[test]
    fn unknown_model_keeps_tokens_and_has_no_cost() {
        let s = attrs(&[
            ("gen_ai.request.model", "in-house-7b".into()),
            ("gen_ai.usage.input_tokens", 10i64.into()),
        ]);
        let v = llm_view(&s, &PriceTable::builtin()).unwrap();
        assert_eq!(v.tokens.input_tokens, Some(10));
        assert_eq!(v.cost, None);
    }
}
