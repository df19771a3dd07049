//! The two texts a session transcript shows of each turn: what the user
//! said (the last user message sent to the model) and what came back (the
//! model's last answer), read from every convention the trace view reads:
//! OTel GenAI `gen_ai.input.messages` / `gen_ai.output.messages` (a JSON
//! string or a structured value, with `parts` or older `content`), the
//! per-message events (`gen_ai.user.message`, `gen_ai.choice`), Traceloop's
//! `gen_ai.prompt.{i}.*` / `gen_ai.completion.{i}.*`, OpenInference's
//! `llm.input_messages.{i}.message.*` / `llm.output_messages.{i}.message.*`
//! and `input.value` / `output.value`.

use chaintrace_model::{find_attr, AnyValue, Span};
use serde_json::Value;

/// The last message with role `user` that `span` sent to a model.
pub fn last_user_text(span: &Span) -> Option<String> {
    span.attr("gen_ai.input.messages")
        .and_then(|v| last_of_role(&messages(v)?, &["user"]))
        .or_else(|| indexed(span, "gen_ai.prompt.", ".role", ".content", Some("user")))
        .or_else(|| {
            indexed(
                span,
                "llm.input_messages.",
                ".message.role",
                ".message.content",
                Some("user"),
            )
        })
        .or_else(|| event_text(span, "gen_ai.user.message", &["content", "gen_ai.content"]))
        .or_else(|| plain(span, &["input.value", "gen_ai.prompt"]))
}

/// The model's last answer in `span`.
pub fn answer_text(span: &Span) -> Option<String> {
    span.attr("gen_ai.output.messages")
        .and_then(|v| last_of_role(&messages(v)?, &["assistant", "model"]))
        .or_else(|| indexed(span, "gen_ai.completion.", ".role", ".content", None))
        .or_else(|| {
            indexed(
                span,
                "llm.output_messages.",
                ".message.role",
                ".message.content",
                None,
            )
        })
        .or_else(|| event_text(span, "gen_ai.choice", &["message", "content"]))
        .or_else(|| plain(span, &["output.value", "gen_ai.completion"]))
}

/// A messages value as JSON: a JSON string parsed, a structured value converted.
fn messages(v: &AnyValue) -> Option<Vec<Value>> {
    let json = match v {
        AnyValue::String(s) => serde_json::from_str::<Value>(s).ok()?,
        other => to_json(other),
    };
    match json {
        Value::Array(items) => Some(items),
        _ => None,
    }
}

fn to_json(v: &AnyValue) -> Value {
    match v {
        AnyValue::Empty => Value::Null,
        AnyValue::String(s) => Value::String(s.to_string()),
        AnyValue::Bool(b) => Value::Bool(*b),
        AnyValue::Int(i) => Value::from(*i),
        AnyValue::Double(d) => Value::from(*d),
        AnyValue::Bytes(_) => Value::Null,
        AnyValue::Array(items) => Value::Array(items.iter().map(to_json).collect()),
        AnyValue::KvList(kvs) => Value::Object(
            kvs.iter()
                .map(|kv| (kv.key.to_string(), to_json(&kv.value)))
                .collect(),
        ),
    }
}

/// The text of the last message whose role is one of `roles`: its `text`
/// parts joined (or its `content` string).
fn last_of_role(items: &[Value], roles: &[&str]) -> Option<String> {
    items.iter().rev().find_map(|m| {
        let role = m.get("role")?.as_str()?;
        if !roles.contains(&role) {
            return None;
        }
        message_text(m)
    })
}

fn message_text(m: &Value) -> Option<String> {
    if let Some(text) = m.get("content").and_then(Value::as_str) {
        return (!text.is_empty()).then(|| text.to_string());
    }
    let parts = m.get("parts").or_else(|| m.get("content"))?.as_array()?;
    let texts: Vec<&str> = parts
        .iter()
        .filter(|p| {
            p.get("type")
                .and_then(Value::as_str)
                .is_none_or(|t| t == "text")
        })
        .filter_map(|p| {
            p.get("content")
                .or_else(|| p.get("text"))
                .and_then(Value::as_str)
        })
        .collect();
    (!texts.is_empty()).then(|| texts.join("\n"))
}

/// The content of the highest-numbered `{prefix}{i}{content}` whose
/// `{prefix}{i}{role}` is `role` (any role when `None`).
fn indexed(
    span: &Span,
    prefix: &str,
    role_key: &str,
    content_key: &str,
    role: Option<&str>,
) -> Option<String> {
    let mut best: Option<(u32, String)> = None;
    for kv in &span.attributes {
        let Some(rest) = kv.key.strip_prefix(prefix) else {
            continue;
        };
        let Some((index, field)) = rest.split_once('.') else {
            continue;
        };
        if format!(".{field}") != content_key {
            continue;
        }
        let Ok(i) = index.parse::<u32>() else {
            continue;
        };
        if let Some(want) = role {
            let key = format!("{prefix}{i}{role_key}");
            if span.attr(&key).and_then(AnyValue::as_str) != Some(want) {
                continue;
            }
        }
        let text = kv.value.to_display_string();
        if !text.is_empty() && best.as_ref().is_none_or(|(b, _)| i > *b) {
            best = Some((i, text));
        }
    }
    best.map(|(_, t)| t)
}

/// The last event named `name`: the first of `keys` it holds (a map's
/// `content` when the value is a map).
fn event_text(span: &Span, name: &str, keys: &[&str]) -> Option<String> {
    span.events
        .iter()
        .rev()
        .filter(|e| e.name == name)
        .find_map(|e| {
            let v = keys.iter().find_map(|k| find_attr(&e.attributes, k))?;
            let text = match v {
                AnyValue::KvList(kvs) => find_attr(kvs, "content")?.to_display_string(),
                other => other.to_display_string(),
            };
            (!text.is_empty()).then_some(text)
        })
}

fn plain(span: &Span, keys: &[&str]) -> Option<String> {
    keys.iter()
        .find_map(|k| span.attr(k))
        .map(AnyValue::to_display_string)
        .filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use chaintrace_model::{Event, KeyValue};

    use super::*;
    use crate::test_support::{span, with};

    #[test]
    fn each_convention_gives_the_last_user_message_and_the_answer() {
        let otel = with(
            span(1, None, "chat", 0, 10),
            &[
                (
                    "gen_ai.input.messages",
                    r#"[{"role":"system","parts":[{"type":"text","content":"be brief"}]},
                        {"role":"user","parts":[{"type":"text","content":"first"}]},
                        {"role":"assistant","parts":[{"type":"text","content":"ok"}]},
                        {"role":"user","parts":[{"type":"text","content":"What is RAG?"},
                                                {"type":"uri","uri":"https://x"}]}]"#
                        .into(),
                ),
                (
                    "gen_ai.output.messages",
                    r#"[{"role":"assistant","parts":[{"type":"tool_call","name":"f"},
                        {"type":"text","content":"Retrieval first."}]}]"#
                        .into(),
                ),
            ],
        );
        assert_eq!(last_user_text(&otel).as_deref(), Some("What is RAG?"));
        assert_eq!(answer_text(&otel).as_deref(), Some("Retrieval first."));

        let traceloop = with(
            span(2, None, "openai.chat", 0, 10),
            &[
                ("gen_ai.prompt.0.role", "user".into()),
                ("gen_ai.prompt.0.content", "hello".into()),
                ("gen_ai.prompt.1.role", "assistant".into()),
                ("gen_ai.prompt.1.content", "hi".into()),
                ("gen_ai.prompt.2.role", "user".into()),
                ("gen_ai.prompt.2.content", "and again".into()),
                ("gen_ai.completion.0.role", "assistant".into()),
                ("gen_ai.completion.0.content", "again hi".into()),
            ],
        );
        assert_eq!(last_user_text(&traceloop).as_deref(), Some("and again"));
        assert_eq!(answer_text(&traceloop).as_deref(), Some("again hi"));

        let openinference = with(
            span(3, None, "ChatCompletion", 0, 10),
            &[
                ("llm.input_messages.0.message.role", "user".into()),
                ("llm.input_messages.0.message.content", "ping".into()),
                ("llm.output_messages.0.message.role", "assistant".into()),
                ("llm.output_messages.0.message.content", "pong".into()),
            ],
        );
        assert_eq!(last_user_text(&openinference).as_deref(), Some("ping"));
        assert_eq!(answer_text(&openinference).as_deref(), Some("pong"));

        let mut events = span(4, None, "chat", 0, 10);
        events.events = vec![
            Event {
                time: events.start,
                name: "gen_ai.user.message".into(),
                attributes: vec![KeyValue::new("content", "from an event")],
            },
            Event {
                time: events.start,
                name: "gen_ai.choice".into(),
                attributes: vec![KeyValue::new(
                    "message",
                    AnyValue::KvList(vec![KeyValue::new("content", "choice text")]),
                )],
            },
        ];
        assert_eq!(last_user_text(&events).as_deref(), Some("from an event"));
        assert_eq!(answer_text(&events).as_deref(), Some("choice text"));

        let chain = with(
            span(5, None, "chain", 0, 10),
            &[
                ("input.value", "plain question".into()),
                ("output.value", "plain answer".into()),
            ],
        );
        assert_eq!(last_user_text(&chain).as_deref(), Some("plain question"));
        assert_eq!(answer_text(&chain).as_deref(), Some("plain answer"));
        assert_eq!(last_user_text(&span(6, None, "x", 0, 1)), None);
    }
}
