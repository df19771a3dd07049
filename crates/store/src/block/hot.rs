//! What a block write derives from each span in one pass over its
//! attributes: the hot LLM columns (model, input and output tokens, error
//! type), whether that error type is the only error class the span names,
//! and the span's approximate Arrow size.
//!
//! The hot columns exist for queries and are never read back into a span:
//! the attributes list keeps every attribute. Each field takes the first of
//! several spellings (OpenTelemetry GenAI, its deprecated names,
//! OpenInference, the seed document's plain names) that holds a usable value.
//!
//! The cut walks every span of a block cold from memory; one walk instead
//! of three (columns, meta counts, batch sizing) is what this file is for.

use chaintrace_model::conventions::{
    self, as_count, as_text, ERROR_TYPE_ATTRIBUTE_KEYS, EXCEPTION_EVENT, EXCEPTION_TYPE_KEY,
    INPUT_TOKEN_KEYS, OUTPUT_TOKEN_KEYS, PLAIN_CACHE_CREATION_TOKENS, PLAIN_CACHE_READ_TOKENS,
    PLAIN_INPUT_TOKENS, PLAIN_OUTPUT_TOKENS, REQUEST_MODEL_KEYS, RESPONSE_MODEL_KEYS,
};
use chaintrace_model::{find_attr, AnyValue, Span};

use super::encode::{approx_attr_bytes, approx_bytes_given};
use crate::search::ERROR_TYPE_KEYS as ERROR_CLASS_KEYS;

/// Every spelling the hot fields read (`chaintrace_model::conventions`),
/// grouped: models, input and output token counts, the plain token names,
/// the error type attributes.
const MODEL_KEYS: [&str; 5] = [
    RESPONSE_MODEL_KEYS[0],
    REQUEST_MODEL_KEYS[0],
    REQUEST_MODEL_KEYS[1],
    REQUEST_MODEL_KEYS[2],
    REQUEST_MODEL_KEYS[3],
];

const PLAIN_TOKEN_KEYS: [&str; 4] = [
    PLAIN_INPUT_TOKENS,
    PLAIN_OUTPUT_TOKENS,
    PLAIN_CACHE_READ_TOKENS,
    PLAIN_CACHE_CREATION_TOKENS,
];

const ERROR_TYPE_KEYS: [&str; 2] = ERROR_TYPE_ATTRIBUTE_KEYS;

/// What a block write derives from one span.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct HotFields<'a> {
    pub llm_model: Option<&'a str>,
    pub input_tokens: Option<i64>,
    pub output_tokens: Option<i64>,
    pub error_type: Option<&'a str>,
    /// Whether every error class name search reads on the span itself
    /// (each key of [`ERROR_CLASS_KEYS`] as first found, and the
    /// `exception.type` of its first `exception` event) is a string equal
    /// to `error_type`. Its resource is not looked at.
    pub error_class_agrees: bool,
    /// [`super::encode::approx_bytes`] of the span.
    pub bytes: usize,
}

impl<'a> HotFields<'a> {
    /// One pass over the attributes: each spelling's first occurrence is
    /// noted (as a lookup by key would find it), then the spellings are
    /// tried in order. Block writes call this for every span.
    pub(crate) fn of(span: &'a Span) -> HotFields<'a> {
        let mut first: [Option<&'a AnyValue>; SLOTS] = [None; SLOTS];
        let mut attribute_bytes = 0;
        for kv in &span.attributes {
            attribute_bytes += approx_attr_bytes(kv);
            if let Some(i) = slot(&kv.key) {
                first[i].get_or_insert(&kv.value);
            }
        }
        // The rules of `chaintrace_model::conventions`, read straight from
        // the noted first occurrences (a lookup by key per field was a
        // string search per spelling on every span of every cut); the
        // proptest below holds this to the rules.
        let first_at = |at: usize, n: usize| first[at..at + n].iter().flatten().copied();
        let llm_model = first_at(MODEL_AT, MODEL_KEYS.len()).find_map(as_text);
        let mut input = first_at(INPUT_AT, INPUT_TOKEN_KEYS.len()).find_map(as_count);
        let mut output = first_at(OUTPUT_AT, OUTPUT_TOKEN_KEYS.len()).find_map(as_count);
        if input.is_none() && output.is_none() {
            let plain = |i: usize| first[PLAIN_AT + i].and_then(as_count);
            input = conventions::plain_input(plain(0), plain(2), plain(3));
            output = plain(1);
        }
        let exception_event = span
            .events
            .iter()
            .find(|e| e.name == EXCEPTION_EVENT)
            .and_then(|e| find_attr(&e.attributes, EXCEPTION_TYPE_KEY));
        let error_type = first_at(ERROR_AT, ERROR_TYPE_KEYS.len())
            .find_map(as_text)
            .or_else(|| conventions::exception_type(span));
        // ERROR_CLASS_KEYS is the two ERROR_TYPE_KEYS spellings plus
        // EXCEPTION_AT's: all three have a slot.
        let error_class_agrees = first[ERROR_AT..ERROR_AT + ERROR_TYPE_KEYS.len()]
            .iter()
            .chain([&first[EXCEPTION_AT]])
            .flatten()
            .copied()
            .chain(exception_event)
            .all(|v| v.as_str().is_some() && v.as_str() == error_type);
        let column = |n: Option<u64>| n.map(|n| i64::try_from(n).unwrap_or(i64::MAX));
        HotFields {
            llm_model,
            input_tokens: column(input),
            output_tokens: column(output),
            error_type,
            error_class_agrees,
            bytes: approx_bytes_given(span, attribute_bytes),
        }
    }
}

const MODEL_AT: usize = 0;
const INPUT_AT: usize = MODEL_AT + MODEL_KEYS.len();
const OUTPUT_AT: usize = INPUT_AT + INPUT_TOKEN_KEYS.len();
const PLAIN_AT: usize = OUTPUT_AT + OUTPUT_TOKEN_KEYS.len();
const ERROR_AT: usize = PLAIN_AT + PLAIN_TOKEN_KEYS.len();
const EXCEPTION_AT: usize = ERROR_AT + ERROR_TYPE_KEYS.len();
const SLOTS: usize = EXCEPTION_AT + 1;

// Every error class key search reads has a slot, so `error_class_agrees`
// sees each one's first occurrence.
const _: () = {
    assert!(ERROR_CLASS_KEYS.len() == ERROR_TYPE_KEYS.len() + 1);
    let mut i = 0;
    while i < ERROR_CLASS_KEYS.len() {
        let k = ERROR_CLASS_KEYS[i];
        assert!(
            same(k, ERROR_TYPE_KEYS[0])
                || same(k, ERROR_TYPE_KEYS[1])
                || same(k, EXCEPTION_TYPE_KEY)
        );
        i += 1;
    }
};

const fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut j = 0;
    while j < a.len() {
        if a[j] != b[j] {
            return false;
        }
        j += 1;
    }
    true
}

/// Bit `n` is set when some spelling is `n` bytes long (all are < 64).
const SPELLING_LENGTHS: u64 = {
    let groups: [&[&str]; 6] = [
        &MODEL_KEYS,
        &INPUT_TOKEN_KEYS,
        &OUTPUT_TOKEN_KEYS,
        &PLAIN_TOKEN_KEYS,
        &ERROR_TYPE_KEYS,
        &[EXCEPTION_TYPE_KEY],
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
        .or_else(|| rank(&PLAIN_TOKEN_KEYS).map(|i| PLAIN_AT + i))
        .or_else(|| rank(&ERROR_TYPE_KEYS).map(|i| ERROR_AT + i))
        .or_else(|| (key == EXCEPTION_TYPE_KEY).then_some(EXCEPTION_AT))
}

#[cfg(test)]
mod tests {
    use chaintrace_model::{Event, KeyValue, UnixNanos};

    use super::super::encode::approx_bytes;
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
        let hot = HotFields::of(&s);
        assert_eq!(
            (
                hot.llm_model,
                hot.input_tokens,
                hot.output_tokens,
                hot.error_type
            ),
            (
                Some("openinference"),
                Some(120),
                // GenAI counts are there, so the plain name is not read;
                // the GenAI output is not a number.
                None,
                Some("mod.RateLimitError")
            )
        );
        assert!(hot.error_class_agrees);
        s.attributes.push(KeyValue::new("error_type", "Timeout"));
        let hot = HotFields::of(&s);
        assert_eq!(hot.error_type, Some("Timeout"));
        // The exception event still names another class.
        assert!(!hot.error_class_agrees);
        let plain = span(1, 2, None, "svc", "x", 0, 1);
        let hot = HotFields::of(&plain);
        assert_eq!(
            (hot.llm_model, hot.input_tokens, hot.error_type),
            (None, None, None)
        );
        assert!(hot.error_class_agrees);
        assert_eq!(hot.bytes, approx_bytes(&plain));
    }

    /// The definition the one-pass lookup must keep: for each field, the
    /// first spelling whose first occurrence holds a usable value; every
    /// error class name on the span agreeing with the error type; the
    /// span's `approx_bytes`.
    fn by_lookup(span: &Span) -> HotFields<'_> {
        let exception = span
            .events
            .iter()
            .find(|e| e.name == "exception")
            .and_then(|e| find_attr(&e.attributes, "exception.type"));
        let error_type = conventions::error_type(span);
        let same = |v: &AnyValue| v.as_str().is_some() && v.as_str() == error_type;
        let tokens = conventions::tokens(span);
        HotFields {
            llm_model: conventions::llm_model(span),
            input_tokens: tokens.input.map(|n| n as i64),
            output_tokens: tokens.output.map(|n| n as i64),
            error_type,
            error_class_agrees: ERROR_CLASS_KEYS
                .iter()
                .filter_map(|k| find_attr(&span.attributes, k))
                .chain(exception)
                .all(same),
            bytes: approx_bytes(span),
        }
    }

    proptest::proptest! {
        #[test]
        fn one_pass_agrees_with_lookup_by_key(
            attrs in proptest::collection::vec((0usize..21, 0u8..3, "[a-z0-9]{0,3}"), 0..12),
            exception in proptest::option::of((0u8..3, "[a-z]{0,2}")),
        ) {
            let keys: Vec<&str> = MODEL_KEYS
                .iter()
                .chain(&INPUT_TOKEN_KEYS)
                .chain(&OUTPUT_TOKEN_KEYS)
                .chain(&PLAIN_TOKEN_KEYS)
                .chain(&ERROR_TYPE_KEYS)
                .copied()
                .chain(["exception.type", "user_id", "gen_ai.system", "models", "error"])
                .collect();
            let mut s = span(1, 1, None, "svc", "x", 0, 1);
            s.attributes = attrs
                .iter()
                .map(|(k, kind, text)| {
                    let key = keys[k % keys.len()];
                    match kind {
                        0 => KeyValue::new(key, text.as_str()),
                        1 => KeyValue::new(key, text.len() as i64 - 1),
                        _ => KeyValue::new(key, true),
                    }
                })
                .collect();
            if let Some((kind, text)) = exception {
                let value = match kind {
                    0 => AnyValue::from(text.as_str()),
                    1 => AnyValue::Int(text.len() as i64),
                    _ => AnyValue::Bool(true),
                };
                s.events.push(Event {
                    time: UnixNanos(1),
                    name: "exception".into(),
                    attributes: vec![KeyValue::new("exception.type", value)],
                });
            }
            proptest::prop_assert_eq!(HotFields::of(&s), by_lookup(&s));
        }
    }
}
