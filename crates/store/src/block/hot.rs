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
    /// One pass over the attributes: each spelling's first occurrence is
    /// noted (as a lookup by key would find it), then the spellings are
    /// tried in order. Block writes call this for every span.
    pub(crate) fn of(span: &'a Span) -> HotFields<'a> {
        let mut first: [Option<&'a AnyValue>; SLOTS] = [None; SLOTS];
        for kv in &span.attributes {
            if let Some(i) = slot(&kv.key) {
                first[i].get_or_insert(&kv.value);
            }
        }
        let first_str = |at: usize, n: usize| {
            first[at..at + n]
                .iter()
                .find_map(|v| v.and_then(AnyValue::as_str))
        };
        let first_int = |at: usize, n: usize| {
            first[at..at + n]
                .iter()
                .find_map(|v| v.and_then(AnyValue::as_i64))
        };
        let exception_type = || {
            span.events
                .iter()
                .find(|e| e.name == "exception")
                .and_then(|e| find_attr(&e.attributes, "exception.type"))
                .and_then(AnyValue::as_str)
        };
        HotFields {
            llm_model: first_str(MODEL_AT, MODEL_KEYS.len()),
            input_tokens: first_int(INPUT_AT, INPUT_TOKEN_KEYS.len()),
            output_tokens: first_int(OUTPUT_AT, OUTPUT_TOKEN_KEYS.len()),
            error_type: first_str(ERROR_AT, ERROR_TYPE_KEYS.len()).or_else(exception_type),
        }
    }
}

const MODEL_AT: usize = 0;
const INPUT_AT: usize = MODEL_AT + MODEL_KEYS.len();
const OUTPUT_AT: usize = INPUT_AT + INPUT_TOKEN_KEYS.len();
const ERROR_AT: usize = OUTPUT_AT + OUTPUT_TOKEN_KEYS.len();
const SLOTS: usize = ERROR_AT + ERROR_TYPE_KEYS.len();

/// Bit `n` is set when some spelling is `n` bytes long (all are < 64).
const SPELLING_LENGTHS: u64 = {
    let groups: [&[&str]; 4] = [
        &MODEL_KEYS,
        &INPUT_TOKEN_KEYS,
        &OUTPUT_TOKEN_KEYS,
        &ERROR_TYPE_KEYS,
    ];
    let mut mask = 0u64;
    let mut g = 0;
    while g < groups.len() {
        let mut k = 0;
        while k < groups[g].len() {
            assert!(groups[g][k].len() < 64);
            mask |= 1 << groups[g][k].len();
            k += 1;
        }
        g += 1;
    }
    mask
};

/// The slot of a hot spelling: its group's start plus its rank there.
fn slot(key: &str) -> Option<usize> {
    // Most keys leave at this test: no spelling has their length.
    if key.len() >= 64 || SPELLING_LENGTHS & (1 << key.len()) == 0 {
        return None;
    }
    let rank = |keys: &[&str]| keys.iter().position(|k| *k == key);
    rank(&MODEL_KEYS)
        .map(|i| MODEL_AT + i)
        .or_else(|| rank(&INPUT_TOKEN_KEYS).map(|i| INPUT_AT + i))
        .or_else(|| rank(&OUTPUT_TOKEN_KEYS).map(|i| OUTPUT_AT + i))
        .or_else(|| rank(&ERROR_TYPE_KEYS).map(|i| ERROR_AT + i))
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

    /// The definition the one-pass lookup must keep: for each field, the
    /// first spelling whose first occurrence holds a usable value.
    fn by_lookup(span: &Span) -> HotFields<'_> {
        let first_str = |keys: &[&str]| {
            keys.iter()
                .find_map(|k| find_attr(&span.attributes, k).and_then(AnyValue::as_str))
        };
        let first_int = |keys: &[&str]| {
            keys.iter()
                .find_map(|k| find_attr(&span.attributes, k).and_then(AnyValue::as_i64))
        };
        HotFields {
            llm_model: first_str(&MODEL_KEYS),
            input_tokens: first_int(&INPUT_TOKEN_KEYS),
            output_tokens: first_int(&OUTPUT_TOKEN_KEYS),
            error_type: first_str(&ERROR_TYPE_KEYS),
        }
    }

    proptest::proptest! {
        #[test]
        fn one_pass_agrees_with_lookup_by_key(
            attrs in proptest::collection::vec((0usize..20, 0u8..3, "[a-z0-9]{0,3}"), 0..12)
        ) {
            let keys: Vec<&str> = MODEL_KEYS
                .iter()
                .chain(&INPUT_TOKEN_KEYS)
                .chain(&OUTPUT_TOKEN_KEYS)
                .chain(&ERROR_TYPE_KEYS)
                .copied()
                .chain(["user_id", "gen_ai.system", "models", "error"])
                .collect();
            let mut s = span(1, 1, None, "svc", "x", 0, 1);
            s.attributes = attrs
                .iter()
                .map(|(k, kind, text)| {
                    let key = keys[k % keys.len()];
                    match kind {
                        0 => KeyValue::new(key, text.as_str()),
                        1 => KeyValue::new(key, text.len() as i64),
                        _ => KeyValue::new(key, true),
                    }
                })
                .collect();
            proptest::prop_assert_eq!(HotFields::of(&s), by_lookup(&s));
        }
    }
}
