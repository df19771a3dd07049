//! The GenAI attributes and message JSON, in the shape chaintrace reads.

use super::*;
use crate::test_support::{attr, finished, named};

fn get<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a Value> {
    attrs
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| &kv.value)
}

#[test]
fn request_attributes_without_and_with_content() {
    let request = Request::chat("anthropic", "claude-3-5-sonnet-latest")
        .max_tokens(1024)
        .temperature(0.7)
        .system_instruction("Be brief.")
        .message(Message::user("What is RAG?"));
    let plain = request.attributes_with(false);
    assert_eq!(
        plain,
        vec![
            KeyValue::new("gen_ai.operation.name", "chat"),
            KeyValue::new("gen_ai.provider.name", "anthropic"),
            KeyValue::new("gen_ai.request.model", "claude-3-5-sonnet-latest"),
            KeyValue::new("gen_ai.request.max_tokens", 1024),
            KeyValue::new("gen_ai.request.temperature", 0.7),
        ]
    );
    let full = request.attributes_with(true);
    let input: Json =
        serde_json::from_str(&get(&full, "gen_ai.input.messages").unwrap().as_str()).unwrap();
    assert_eq!(
        input,
        json!([{"role": "user", "parts": [{"type": "text", "content": "What is RAG?"}]}])
    );
    let system: Json =
        serde_json::from_str(&get(&full, "gen_ai.system_instructions").unwrap().as_str()).unwrap();
    assert_eq!(system, json!([{"type": "text", "content": "Be brief."}]));
}

#[test]
fn response_attributes_usage_reasons_and_output_messages() {
    let response = Response::new()
        .model("claude-3-5-sonnet-20241022")
        .id("msg_1")
        .usage(
            Usage::tokens(10_000, 500)
                .cache_read(6_000)
                .cache_creation(2_000),
        )
        .finish_reason("end_turn")
        .message(Message::assistant("Retrieval first."))
        .message(
            Message::new("assistant")
                .part(Part::ToolCall {
                    id: "t1".into(),
                    name: "search".into(),
                    arguments: json!({"q": "rag"}),
                })
                .finish_reason("tool_call"),
        );
    let attrs = response.attributes_with(true);
    for (key, value) in [
        ("gen_ai.usage.input_tokens", 10_000),
        ("gen_ai.usage.output_tokens", 500),
        ("gen_ai.usage.cache_read.input_tokens", 6_000),
        ("gen_ai.usage.cache_creation.input_tokens", 2_000),
    ] {
        assert_eq!(get(&attrs, key), Some(&Value::I64(value)), "{key}");
    }
    assert_eq!(
        get(&attrs, "gen_ai.response.finish_reasons"),
        Some(&Value::Array(Array::String(vec!["end_turn".into()])))
    );
    let output: Json =
        serde_json::from_str(&get(&attrs, "gen_ai.output.messages").unwrap().as_str()).unwrap();
    assert_eq!(
        output,
        json!([
            {"role": "assistant", "parts": [{"type": "text", "content": "Retrieval first."}], "finish_reason": "end_turn"},
            {"role": "assistant", "parts": [{"type": "tool_call", "id": "t1", "name": "search", "arguments": {"q": "rag"}}], "finish_reason": "tool_call"}
        ])
    );
    assert_eq!(
        get(&response.attributes_with(false), "gen_ai.output.messages"),
        None
    );
}

#[test]
fn content_is_off_unless_turned_on() {
    // No test turns it on: the switch is process-wide.
    assert!(!capture_content());
    let request = Request::chat("openai", "gpt-4o").message(Message::user("secret"));
    assert_eq!(get(&request.attributes(), "gen_ai.input.messages"), None);
}

#[tokio::test]
async fn request_span_and_chunk_timer_record_on_the_span() {
    let request = Request::chat("openai", "gpt-4o-mini").max_tokens(64);
    let trace_id = request
        .span("llm_call")
        .run(async {
            let mut timer = ChunkTimer::start();
            tokio::time::sleep(Duration::from_millis(20)).await;
            timer.chunk();
            timer.chunk();
            assert!(timer.time_to_first_chunk().unwrap() >= Duration::from_millis(20));
            Response::new().usage(Usage::tokens(12, 3)).record();
            crate::current_trace_id().unwrap()
        })
        .await;
    let spans = finished(trace_id);
    let llm = named(&spans, "llm_call");
    assert_eq!(llm.span_kind, SpanKind::Client);
    assert_eq!(
        attr(llm, "gen_ai.request.model"),
        Some("gpt-4o-mini".into())
    );
    assert_eq!(attr(llm, "gen_ai.usage.output_tokens"), Some("3".into()));
    let ttfc: f64 = attr(llm, "gen_ai.response.time_to_first_chunk")
        .unwrap()
        .parse()
        .unwrap();
    assert!(ttfc >= 0.02, "{ttfc}");
}
