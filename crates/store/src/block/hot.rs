//! The hot LLM columns derived from a span's attributes and events: model,
//! input and output tokens, error type.
//!
//! These columns exist for queries and are never read back into a span:
//! the attributes list keeps every attribute. Each field takes the first of
//! several spellings (OpenTelemetry GenAI, its deprecated names,
//! OpenInference, the seed document's plain names) that holds a usable value.

use chaintrace_model::{find_attr, AnyValue, Span};

/// Model name keys, most specific first.
const MODEL_KEYS: [&str; 4] = [
    "gen_ai.request.model",
    "gen_ai.response.model",
    "llm.model_name",
    "model",
];

const INPUT_TOKEN_KEYS: [&str; 4] = [
    "gen_ai.usage.input_tokens",
    "gen_ai.usage.prompt_tokens",
    "llm.token_count.prompt",
    "input_tokens",
];

const OUTPUT_TOKEN_KEYS: [&str; 4] = [
    "gen_ai.usage.output_tokens",
    "gen_ai.usage.completion_tokens",
    "llm.token_count.completion",
    "output_tokens",
];

const ERROR_TYPE_KEYS: [&str; 2] = ["error.type", "error_type"];

/// The derived hot fields of one span.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct HotFields<'a> {
    pub llm_model: Option<&'a str>,
    pub input_tokens: Option<i64>,
    pub output_tokens: Option<i64>,
    pub error_type: Option<&'a str>,
}

impl<'a> HotFields<'a> {
    pub(crate) fn of(span: &'a Span) -> HotFields<'a> {
        let attrs = &span.attributes;
        let first_str = |keys: &[&str]| {
            keys.iter()
                .find_map(|k| find_attr(attrs, k).and_then(AnyValue::as_str))
        };
        let first_int = |keys: &[&str]| {
            keys.iter()
                .find_map(|k| find_attr(attrs, k).and_then(AnyValue::as_i64))
        };
        let exception_type = || {
            span.events
                .iter()
                .find(|e| e.name == "exception")
                .and_then(|e| find_attr(&e.attributes, "exception.type"))
                .and_then(AnyValue::as_str)
        };
        HotFields {
            llm_model: first_str(&MODEL_KEYS),
            input_tokens: first_int(&INPUT_TOKEN_KEYS),
            output_tokens: first_int(&OUTPUT_TOKEN_KEYS),
            error_type: first_str(&ERROR_TYPE_KEYS).or_else(exception_type),
        }
    }
}

#[cfg(test)]
mod tests {
    use chaintrace_model::{Event, KeyValue, UnixNanos};

    use super::*;
    use crate::test_support::span;

    #[test]
    fn first_usable_spelling_wins() {
        let mut s = span(1, 1, None, "svc", "llm_call", 0, 1);
        s.attributes = vec![
            KeyValue::new("model", "plain"),
            KeyValue::new("llm.model_name", "openinference"),
            KeyValue::new("gen_ai.usage.prompt_tokens", "120"),
            KeyValue::new("output_tokens", 7i64),
            KeyValue::new("gen_ai.usage.output_tokens", "not a number"),
        ];
        s.events = vec![Event {
            time: UnixNanos(1),
            name: "exception".into(),
            attributes: vec![KeyValue::new("exception.type", "mod.RateLimitError")],
        }];
        assert_eq!(
            HotFields::of(&s),
            HotFields {
                llm_model: Some("openinference"),
                input_tokens: Some(120),
                output_tokens: Some(7),
                error_type: Some("mod.RateLimitError"),
            }
        );
        s.attributes.push(KeyValue::new("error_type", "Timeout"));
        assert_eq!(HotFields::of(&s).error_type, Some("Timeout"));
        assert_eq!(
            HotFields::of(&span(1, 2, None, "svc", "x", 0, 1)),
            HotFields::default()
        );
    }
}
