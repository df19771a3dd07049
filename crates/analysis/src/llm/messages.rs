//! Prompt and completion text of an LLM span, from whichever attributes or
//! events the instrumentation recorded them in. The text is untrusted: it is
//! returned as recorded, and escaping is the renderer's job.

use chaintrace_model::{find_attr, AnyValue, Span};

use super::as_text;

pub(super) fn prompt(span: &Span) -> Option<String> {
    for key in [
        "gen_ai.input.messages",
        "gen_ai.prompt",
        "input.value",
        "prompt",
    ] {
        if let Some(v) = span.attr(key) {
            return Some(display(v));
        }
    }
    indexed_messages(span, "gen_ai.prompt.")
        .or_else(|| {
            events_text(
                span,
                &["gen_ai.client.inference.operation.details"],
                &["gen_ai.input.messages"],
            )
        })
        .or_else(|| events_text(span, &["gen_ai.content.prompt"], &["gen_ai.prompt"]))
        .or_else(|| {
            let lines: Vec<String> = span
                .events
                .iter()
                .filter_map(|e| {
                    let role = e.name.strip_prefix("gen_ai.")?.strip_suffix(".message")?;
                    let content = ["content", "gen_ai.content", "message"]
                        .iter()
                        .find_map(|k| find_attr(&e.attributes, k))?;
                    Some(format!("{role}: {}", display(content)))
                })
                .collect();
            (!lines.is_empty()).then(|| lines.join("\n"))
        })
}

pub(super) fn completion(span: &Span) -> Option<String> {
    for key in [
        "gen_ai.output.messages",
        "gen_ai.completion",
        "output.value",
        "completion",
    ] {
        if let Some(v) = span.attr(key) {
            return Some(display(v));
        }
    }
    indexed_messages(span, "gen_ai.completion.")
        .or_else(|| {
            events_text(
                span,
                &["gen_ai.client.inference.operation.details"],
                &["gen_ai.output.messages"],
            )
        })
        .or_else(|| events_text(span, &["gen_ai.content.completion"], &["gen_ai.completion"]))
        .or_else(|| events_text(span, &["gen_ai.choice"], &["message", "content"]))
}

/// OpenLLMetry's `gen_ai.prompt.0.role` / `gen_ai.prompt.0.content` pairs as
/// `role: content` lines, in index order.
fn indexed_messages(span: &Span, prefix: &str) -> Option<String> {
    let mut parts: Vec<(u32, Option<String>, String)> = Vec::new();
    for kv in &span.attributes {
        let Some(rest) = kv.key.strip_prefix(prefix) else {
            continue;
        };
        let Some((index, field)) = rest.split_once('.') else {
            continue;
        };
        let Ok(index) = index.parse::<u32>() else {
            continue;
        };
        let slot = match parts.iter_mut().position(|p| p.0 == index) {
            Some(i) => i,
            None => {
                parts.push((index, None, String::new()));
                parts.len() - 1
            }
        };
        match field {
            "role" => parts[slot].1 = as_text(&kv.value),
            "content" => parts[slot].2 = display(&kv.value),
            _ => {}
        }
    }
    parts.retain(|p| !p.2.is_empty());
    if parts.is_empty() {
        return None;
    }
    parts.sort_by_key(|p| p.0);
    let lines: Vec<String> = parts
        .into_iter()
        .map(|(_, role, content)| match role {
            Some(role) => format!("{role}: {content}"),
            None => content,
        })
        .collect();
    Some(lines.join("\n"))
}

/// The first of `keys` on events named one of `names`, joined by newlines.
fn events_text(span: &Span, names: &[&str], keys: &[&str]) -> Option<String> {
    let parts: Vec<String> = span
        .events
        .iter()
        .filter(|e| names.contains(&e.name.as_str()))
        .filter_map(|e| {
            keys.iter()
                .find_map(|k| find_attr(&e.attributes, k))
                .map(|v| match v {
                    // `gen_ai.choice` carries `message` as a map with `content`.
                    AnyValue::KvList(kvs) => find_attr(kvs, "content")
                        .map(display)
                        .unwrap_or_else(|| display(v)),
                    _ => display(v),
                })
        })
        .collect();
    (!parts.is_empty()).then(|| parts.join("\n"))
}

fn display(v: &AnyValue) -> String {
    v.to_display_string()
}
