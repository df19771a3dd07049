//! Where chaintrace reads the LLM model, token counts and error type of a
//! span: one definition, used by the block writer's hot columns, SQL,
//! search and the analysis alike, so that a model, a token sum or an error
//! group is the same number wherever it is shown.
//!
//! Clients spell these facts several ways: the OpenTelemetry GenAI
//! conventions (current and older names), OpenInference (`llm.*`), and the
//! founding document's plain names (`model`, `input_tokens`, `error_type`).
//! Each list below is in priority order: the first key a span has, with a
//! usable value, wins.
//!
//! ```
//! use chaintrace_model::conventions::{llm_model, tokens};
//! # use chaintrace_model::*;
//! # use std::sync::Arc;
//! # let mut span = Span {
//! #     trace_id: TraceId([1; 16]), span_id: SpanId([1; 8]), parent_span_id: None,
//! #     name: "llm_call".into(), kind: SpanKind::Client, start: UnixNanos(0), end: UnixNanos(1),
//! #     status: Status::default(), attributes: vec![], events: vec![], links: vec![],
//! #     resource: Arc::new(Resource::default()), scope: Arc::new(Scope::default()),
//! # };
//! span.attributes = vec![
//!     KeyValue::new("gen_ai.request.model", "gpt-4o"),
//!     KeyValue::new("gen_ai.response.model", "gpt-4o-2024-08-06"),
//!     // The founding document's names: cache reads are counted apart.
//!     KeyValue::new("input_tokens", 1000i64),
//!     KeyValue::new("cache_read_input_tokens", 250i64),
//!     KeyValue::new("output_tokens", 80i64),
//! ];
//! assert_eq!(llm_model(&span), Some("gpt-4o-2024-08-06"));
//! let t = tokens(&span);
//! assert_eq!((t.input, t.output, t.cache_read), (Some(1250), Some(80), Some(250)));
//! ```

use crate::span::{find_attr, AnyValue, Span};

/// The model that answered: preferred over the one asked for.
pub const RESPONSE_MODEL_KEYS: [&str; 1] = ["gen_ai.response.model"];

/// The model asked for, when the answer names none.
pub const REQUEST_MODEL_KEYS: [&str; 4] = [
    "gen_ai.request.model",
    "llm.model_name",
    "embedding.model_name",
    "model",
];

/// Input (prompt) tokens, cache reads and writes included.
pub const INPUT_TOKEN_KEYS: [&str; 3] = [
    "gen_ai.usage.input_tokens",
    "gen_ai.usage.prompt_tokens",
    "llm.token_count.prompt",
];

/// Output (completion) tokens.
pub const OUTPUT_TOKEN_KEYS: [&str; 3] = [
    "gen_ai.usage.output_tokens",
    "gen_ai.usage.completion_tokens",
    "llm.token_count.completion",
];

/// Input tokens read from the provider's prompt cache.
pub const CACHE_READ_TOKEN_KEYS: [&str; 3] = [
    "gen_ai.usage.cache_read.input_tokens",
    "gen_ai.usage.cache_read_input_tokens",
    "llm.token_count.prompt_details.cache_read",
];

/// Input tokens written to the provider's prompt cache.
pub const CACHE_CREATION_TOKEN_KEYS: [&str; 3] = [
    "gen_ai.usage.cache_creation.input_tokens",
    "gen_ai.usage.cache_creation_input_tokens",
    "llm.token_count.prompt_details.cache_write",
];

/// Reasoning tokens (part of the output).
pub const REASONING_TOKEN_KEYS: [&str; 3] = [
    "gen_ai.usage.reasoning.output_tokens",
    "gen_ai.usage.reasoning_tokens",
    "llm.token_count.completion_details.reasoning",
];

/// A total the client reported.
pub const TOTAL_TOKEN_KEYS: [&str; 4] = [
    "gen_ai.usage.total_tokens",
    "llm.usage.total_tokens",
    "llm.token_count.total",
    "total_tokens",
];

/// The founding document's plain names, read only when a span has none of
/// the GenAI or OpenInference input and output counts. They follow the
/// Anthropic API, where `input_tokens` leaves out the cache reads and
/// writes, so those are added to the input.
pub const PLAIN_INPUT_TOKENS: &str = "input_tokens";
/// See [`PLAIN_INPUT_TOKENS`].
pub const PLAIN_OUTPUT_TOKENS: &str = "output_tokens";
/// See [`PLAIN_INPUT_TOKENS`].
pub const PLAIN_CACHE_READ_TOKENS: &str = "cache_read_input_tokens";
/// See [`PLAIN_INPUT_TOKENS`].
pub const PLAIN_CACHE_CREATION_TOKENS: &str = "cache_creation_input_tokens";

/// Every attribute key that names a span's error class, in every spelling
/// clients use: what search and TraceQL's `error_type` look at (on the span
/// and its resource), beside the `exception.type` of the first exception
/// event.
pub const ERROR_TYPE_KEYS: [&str; 3] = ["error_type", "error.type", "exception.type"];

/// The attributes a span's one error type (the `error_type` column, error
/// groups) is read from, in order, before its first exception event.
pub const ERROR_TYPE_ATTRIBUTE_KEYS: [&str; 2] = ["error.type", "error_type"];

/// The event name OpenTelemetry SDKs give a recorded exception.
pub const EXCEPTION_EVENT: &str = "exception";

/// The exception event's attribute holding the exception's type.
pub const EXCEPTION_TYPE_KEY: &str = "exception.type";

/// `v` as non-empty text, trimmed.
pub fn as_text(v: &AnyValue) -> Option<&str> {
    v.as_str().map(str::trim).filter(|s| !s.is_empty())
}

/// `v` as a count: a non-negative integer, or a float holding one.
pub fn as_count(v: &AnyValue) -> Option<u64> {
    match v {
        AnyValue::Double(d) if d.is_finite() && *d >= 0.0 && d.fract() == 0.0 => Some(*d as u64),
        other => other.as_i64().and_then(|i| u64::try_from(i).ok()),
    }
}

/// The first of `keys` whose value `read` accepts, looked up with `attr`.
fn first<'a, T>(
    attr: &impl Fn(&str) -> Option<&'a AnyValue>,
    keys: &[&str],
    read: impl Fn(&'a AnyValue) -> Option<T>,
) -> Option<T> {
    keys.iter().find_map(|k| attr(k).and_then(&read))
}

/// The span's own model: the response's, else the request's.
pub fn llm_model(span: &Span) -> Option<&str> {
    model_with(&|k| span.attr(k))
}

/// [`llm_model`] over any attribute lookup (the block writer looks up
/// from one pass over the attributes).
pub fn model_with<'a>(attr: &impl Fn(&str) -> Option<&'a AnyValue>) -> Option<&'a str> {
    first(attr, &RESPONSE_MODEL_KEYS, as_text).or_else(|| first(attr, &REQUEST_MODEL_KEYS, as_text))
}

/// A span's token counts; `None` where the span does not say.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tokens {
    /// Input tokens, cache reads and writes included.
    pub input: Option<u64>,
    /// Output tokens.
    pub output: Option<u64>,
    /// Of the input, read from the prompt cache.
    pub cache_read: Option<u64>,
    /// Of the input, written to the prompt cache.
    pub cache_creation: Option<u64>,
}

/// The span's token counts by the rule of this module's docs.
pub fn tokens(span: &Span) -> Tokens {
    tokens_with(&|k| span.attr(k))
}

/// [`tokens`] over any attribute lookup.
pub fn tokens_with<'a>(attr: &impl Fn(&str) -> Option<&'a AnyValue>) -> Tokens {
    let mut t = Tokens {
        input: first(attr, &INPUT_TOKEN_KEYS, as_count),
        output: first(attr, &OUTPUT_TOKEN_KEYS, as_count),
        cache_read: first(attr, &CACHE_READ_TOKEN_KEYS, as_count),
        cache_creation: first(attr, &CACHE_CREATION_TOKEN_KEYS, as_count),
    };
    if t.input.is_none() && t.output.is_none() {
        let plain = |k: &str| attr(k).and_then(as_count);
        let (input, read, write) = (
            plain(PLAIN_INPUT_TOKENS),
            plain(PLAIN_CACHE_READ_TOKENS),
            plain(PLAIN_CACHE_CREATION_TOKENS),
        );
        t.input = plain_input(input, read, write);
        t.output = plain(PLAIN_OUTPUT_TOKENS);
        t.cache_read = t.cache_read.or(read);
        t.cache_creation = t.cache_creation.or(write);
    }
    t
}

/// The input count the founding document's plain names give: `input_tokens`
/// plus the cache reads and writes it leaves out, or `None` when none is
/// there.
pub fn plain_input(
    input: Option<u64>,
    cache_read: Option<u64>,
    cache_creation: Option<u64>,
) -> Option<u64> {
    let parts = [input, cache_read, cache_creation];
    parts.iter().any(Option::is_some).then(|| {
        parts
            .iter()
            .flatten()
            .fold(0u64, |a, b| a.saturating_add(*b))
    })
}

/// The span's error type: the first of [`ERROR_TYPE_ATTRIBUTE_KEYS`] it
/// has as non-empty text, else [`exception_type`] (as sent, e.g.
/// `__main__.RateLimitError`).
pub fn error_type(span: &Span) -> Option<&str> {
    first(&|k| span.attr(k), &ERROR_TYPE_ATTRIBUTE_KEYS, as_text).or_else(|| exception_type(span))
}

/// The `exception.type` of the span's first exception event that has one
/// as non-empty text.
pub fn exception_type(span: &Span) -> Option<&str> {
    span.events
        .iter()
        .filter(|e| e.name == EXCEPTION_EVENT)
        .find_map(|e| find_attr(&e.attributes, EXCEPTION_TYPE_KEY).and_then(as_text))
}

/// Where a session id is read from, first found wins: OpenTelemetry's
/// `session.id`, the GenAI conversation, Langfuse's session.
pub const SESSION_ID_KEYS: [&str; 3] = [
    "session.id",
    "gen_ai.conversation.id",
    "langfuse.session.id",
];

/// Where a user id is read from, first found wins.
pub const USER_ID_KEYS: [&str; 2] = ["user.id", "enduser.id"];

/// The first of `keys` any span of `spans` holds as non-empty text: the
/// root's attributes are looked at first, then every span in order.
pub fn trace_text<'a>(spans: &'a [Span], keys: &[&str]) -> Option<&'a str> {
    let of = |s: &'a Span| keys.iter().find_map(|k| s.attr(k).and_then(as_text));
    spans
        .iter()
        .filter(|s| s.parent_span_id.is_none())
        .find_map(of)
        .or_else(|| spans.iter().find_map(of))
}

/// Root attribute naming the tail-sampling policy that kept a trace.
pub const SAMPLING_POLICY_KEY: &str = "chaintrace.sampling.policy";

/// Root attribute holding the rate a trace was kept at (1 for the policies
/// that keep every such trace).
pub const SAMPLING_RATE_KEY: &str = "chaintrace.sampling.rate";

/// How many traces one kept trace stands for: 1 / its root's
/// [`SAMPLING_RATE_KEY`], rounded to a whole number (exact for the rates
/// that divide one: 1 %, 2 %, 5 %, 10 %, 20 %, 25 %, 50 %); 1 for a trace
/// sampling did not judge, or a rate that is not in (0, 1].
pub fn sampling_weight(spans: &[Span]) -> u64 {
    let rate = spans
        .iter()
        .filter(|s| s.parent_span_id.is_none())
        .find_map(|s| s.attr(SAMPLING_RATE_KEY))
        .and_then(|v| match v {
            AnyValue::Double(d) => Some(*d),
            AnyValue::Int(i) => Some(*i as f64),
            _ => None,
        });
    match rate {
        Some(r) if r > 0.0 && r <= 1.0 => (1.0 / r).round().clamp(1.0, 1e9) as u64,
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::{Event, KeyValue, Resource, Scope, SpanId, SpanKind, Status, TraceId, UnixNanos};

    fn span(attributes: Vec<KeyValue>) -> Span {
        Span {
            trace_id: TraceId([1; 16]),
            span_id: SpanId([1; 8]),
            parent_span_id: None,
            name: "llm_call".into(),
            kind: SpanKind::Client,
            start: UnixNanos(0),
            end: UnixNanos(1),
            status: Status::default(),
            attributes,
            events: Vec::new(),
            links: Vec::new(),
            resource: Arc::new(Resource::default()),
            scope: Arc::new(Scope::default()),
        }
    }

    #[test]
    fn the_answering_model_wins_and_blank_names_do_not_count() {
        let s = span(vec![
            KeyValue::new("model", "claude-3-opus"),
            KeyValue::new("gen_ai.response.model", "  "),
            KeyValue::new("llm.model_name", "gpt-4o"),
        ]);
        assert_eq!(llm_model(&s), Some("gpt-4o"));
        assert_eq!(llm_model(&span(vec![KeyValue::new("model", 3i64)])), None);
    }

    #[test]
    fn genai_counts_win_over_plain_names_and_cache_is_part_of_input() {
        let s = span(vec![
            KeyValue::new("input_tokens", 999i64),
            KeyValue::new("gen_ai.usage.input_tokens", 1200i64),
            KeyValue::new("gen_ai.usage.cache_read.input_tokens", 200i64),
            KeyValue::new("gen_ai.usage.output_tokens", AnyValue::Double(40.0)),
        ]);
        assert_eq!(
            tokens(&s),
            Tokens {
                input: Some(1200),
                output: Some(40),
                cache_read: Some(200),
                cache_creation: None
            }
        );
        let plain = span(vec![
            KeyValue::new("input_tokens", 1000i64),
            KeyValue::new("cache_creation_input_tokens", 30i64),
            KeyValue::new("output_tokens", -5i64),
        ]);
        let t = tokens(&plain);
        assert_eq!(
            (t.input, t.output, t.cache_creation),
            (Some(1030), None, Some(30))
        );
    }

    #[test]
    fn error_type_from_attributes_then_the_exception_event() {
        let mut s = span(vec![KeyValue::new("error_type", "RateLimitError")]);
        assert_eq!(error_type(&s), Some("RateLimitError"));
        s.attributes.clear();
        s.events.push(Event {
            time: UnixNanos(0),
            name: "exception".into(),
            attributes: vec![KeyValue::new("exception.type", "openai.RateLimitError")],
        });
        assert_eq!(error_type(&s), Some("openai.RateLimitError"));
        s.attributes.push(KeyValue::new("error.type", "429"));
        assert_eq!(error_type(&s), Some("429"));
    }

    #[test]
    fn a_root_kept_at_a_rate_stands_for_its_inverse() {
        let root = |rate: Option<AnyValue>| {
            let mut s = crate::span::test_span(1, "root", 0);
            if let Some(r) = rate {
                s.attributes
                    .push(crate::KeyValue::new(SAMPLING_RATE_KEY, r));
            }
            s
        };
        assert_eq!(sampling_weight(&[root(Some(AnyValue::Double(0.05)))]), 20);
        assert_eq!(sampling_weight(&[root(Some(AnyValue::Double(0.03)))]), 33);
        assert_eq!(sampling_weight(&[root(Some(AnyValue::Int(1)))]), 1);
        assert_eq!(sampling_weight(&[root(None)]), 1);
        for bad in [
            AnyValue::Double(0.0),
            AnyValue::Double(1.5),
            AnyValue::Double(f64::NAN),
            "x".into(),
        ] {
            assert_eq!(sampling_weight(&[root(Some(bad.clone()))]), 1, "{bad:?}");
        }
        // Only a root's rate counts.
        let mut child = root(Some(AnyValue::Double(0.1)));
        child.parent_span_id = Some(crate::SpanId([9; 8]));
        assert_eq!(sampling_weight(&[child]), 1);
    }
}
