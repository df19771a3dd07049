//! An LLM call as the OpenTelemetry GenAI conventions describe it, recorded
//! in one call: [`Request`] (operation, provider, model, max tokens,
//! temperature, and optionally the input messages), [`Response`] (response
//! model, token usage with cache reads and writes, finish reasons, and
//! optionally the output messages) and [`ChunkTimer`] (time to first chunk
//! of a stream).
//!
//! The names and the message JSON are the ones chaintrace's LLM view and
//! conversation panel read (`crates/analysis/src/llm`,
//! `crates/server/ui/conversation.js`): `gen_ai.input.messages` is
//! `[{"role":"user","parts":[{"type":"text","content":"…"}]}]`,
//! `gen_ai.output.messages` the same with a `finish_reason` per message, and
//! `gen_ai.system_instructions` a list of parts.
//!
//! Message content can hold personal data, so it is recorded only when
//! capture is on: [`crate::Builder::capture_message_content`] or
//! `OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true`. This module
//! writes attributes only; it must not call a model.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use opentelemetry::trace::{SpanKind, TraceContextExt};
use opentelemetry::{Array, Context, KeyValue, StringValue, Value};
use serde_json::{json, Value as Json};

use crate::span::{span, NewSpan};

/// Whether message content is recorded; set once by [`crate::Builder::init`].
static CAPTURE_CONTENT: AtomicBool = AtomicBool::new(false);

pub(crate) fn set_capture_content(on: bool) {
    CAPTURE_CONTENT.store(on, Ordering::Relaxed);
}

/// Whether [`Request`] and [`Response`] record message content (off unless
/// turned on at [`crate::init`]): check it before building large message
/// lists that would not be recorded.
pub fn capture_content() -> bool {
    CAPTURE_CONTENT.load(Ordering::Relaxed)
}

fn count(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// What was asked of a model: recorded as `gen_ai.operation.name`,
/// `gen_ai.provider.name`, `gen_ai.request.model`,
/// `gen_ai.request.max_tokens`, `gen_ai.request.temperature`, and, when
/// capture is on, `gen_ai.system_instructions` and `gen_ai.input.messages`.
///
/// ```
/// use chaintrace_sdk::llm::{Message, Request, Response, Usage};
///
/// # async fn demo() {
/// let request = Request::chat("anthropic", "claude-3-5-sonnet-latest")
///     .max_tokens(1024)
///     .temperature(0.7)
///     .message(Message::user("What is RAG?"));
/// request.span("llm_call").run(async {
///     // … call the model …
///     Response::new()
///         .model("claude-3-5-sonnet-20241022")
///         .usage(Usage::tokens(1250, 340).cache_read(1000))
///         .finish_reason("end_turn")
///         .record();
/// }).await;
/// # }
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    operation: String,
    provider: String,
    model: String,
    max_tokens: Option<u64>,
    temperature: Option<f64>,
    system: Vec<Part>,
    messages: Vec<Message>,
}

impl Request {
    /// A `chat` call to `model` of `provider` (`openai`, `anthropic`,
    /// `aws.bedrock`, …, as the GenAI conventions name them).
    pub fn chat(provider: impl Into<String>, model: impl Into<String>) -> Request {
        Request::new("chat", provider, model)
    }

    /// A call of any GenAI operation: `chat`, `embeddings`,
    /// `text_completion`, `generate_content`, …
    pub fn new(
        operation: impl Into<String>,
        provider: impl Into<String>,
        model: impl Into<String>,
    ) -> Request {
        Request {
            operation: operation.into(),
            provider: provider.into(),
            model: model.into(),
            max_tokens: None,
            temperature: None,
            system: Vec::new(),
            messages: Vec::new(),
        }
    }

    /// The output token limit asked for.
    pub fn max_tokens(mut self, max_tokens: u64) -> Request {
        self.max_tokens = Some(max_tokens);
        self
    }

    /// The sampling temperature asked for.
    pub fn temperature(mut self, temperature: f64) -> Request {
        self.temperature = Some(temperature);
        self
    }

    /// A system instruction (recorded only when capture is on).
    pub fn system_instruction(mut self, text: impl Into<String>) -> Request {
        self.system.push(Part::Text(text.into()));
        self
    }

    /// An input message (recorded only when capture is on).
    pub fn message(mut self, message: Message) -> Request {
        self.messages.push(message);
        self
    }

    /// The attributes this request records, honouring the capture switch.
    pub fn attributes(&self) -> Vec<KeyValue> {
        self.attributes_with(capture_content())
    }

    fn attributes_with(&self, capture: bool) -> Vec<KeyValue> {
        let mut out = vec![
            KeyValue::new("gen_ai.operation.name", self.operation.clone()),
            KeyValue::new("gen_ai.provider.name", self.provider.clone()),
            KeyValue::new("gen_ai.request.model", self.model.clone()),
        ];
        if let Some(n) = self.max_tokens {
            out.push(KeyValue::new("gen_ai.request.max_tokens", count(n)));
        }
        if let Some(t) = self.temperature {
            out.push(KeyValue::new("gen_ai.request.temperature", t));
        }
        if capture {
            if !self.system.is_empty() {
                let parts: Vec<Json> = self.system.iter().map(Part::to_json).collect();
                out.push(KeyValue::new(
                    "gen_ai.system_instructions",
                    Json::Array(parts).to_string(),
                ));
            }
            if !self.messages.is_empty() {
                let messages: Vec<Json> = self.messages.iter().map(|m| m.to_json(None)).collect();
                out.push(KeyValue::new(
                    "gen_ai.input.messages",
                    Json::Array(messages).to_string(),
                ));
            }
        }
        out
    }

    /// Sets the request's attributes on the current span.
    pub fn record(&self) {
        Context::current().span().set_attributes(self.attributes());
    }

    /// A `Client` span named `name` that starts with this request's
    /// attributes (so samplers see the model), ready to run the call in.
    pub fn span(&self, name: impl Into<std::borrow::Cow<'static, str>>) -> NewSpan {
        span(name).kind(SpanKind::Client).attrs(self.attributes())
    }
}

/// Token counts of a call, in the GenAI meaning: `input_tokens` counts
/// *all* input tokens, cache reads and writes included. (Anthropic's API
/// reports `input_tokens` without them: add its `cache_read_input_tokens`
/// and `cache_creation_input_tokens` in.)
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    cache_read: Option<u64>,
    cache_creation: Option<u64>,
}

impl Usage {
    /// Input (cache reads and writes included) and output tokens.
    pub fn tokens(input_tokens: u64, output_tokens: u64) -> Usage {
        Usage {
            input_tokens: Some(input_tokens),
            output_tokens: Some(output_tokens),
            ..Usage::default()
        }
    }

    /// Input tokens served from the provider's prompt cache
    /// (`gen_ai.usage.cache_read.input_tokens`).
    pub fn cache_read(mut self, tokens: u64) -> Usage {
        self.cache_read = Some(tokens);
        self
    }

    /// Input tokens written to the provider's prompt cache
    /// (`gen_ai.usage.cache_creation.input_tokens`).
    pub fn cache_creation(mut self, tokens: u64) -> Usage {
        self.cache_creation = Some(tokens);
        self
    }

    fn attributes(&self, out: &mut Vec<KeyValue>) {
        for (key, value) in [
            ("gen_ai.usage.input_tokens", self.input_tokens),
            ("gen_ai.usage.output_tokens", self.output_tokens),
            ("gen_ai.usage.cache_read.input_tokens", self.cache_read),
            (
                "gen_ai.usage.cache_creation.input_tokens",
                self.cache_creation,
            ),
        ] {
            if let Some(n) = value {
                out.push(KeyValue::new(key, count(n)));
            }
        }
    }
}

/// What a model answered: recorded as `gen_ai.response.model`,
/// `gen_ai.response.id`, `gen_ai.usage.*`,
/// `gen_ai.response.finish_reasons` and, when capture is on,
/// `gen_ai.output.messages`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Response {
    model: Option<String>,
    id: Option<String>,
    usage: Usage,
    finish_reasons: Vec<String>,
    messages: Vec<Message>,
}

impl Response {
    /// An empty response record; add what the provider reported.
    pub fn new() -> Response {
        Response::default()
    }

    /// The model that answered, as the provider named it.
    pub fn model(mut self, model: impl Into<String>) -> Response {
        self.model = Some(model.into());
        self
    }

    /// The provider's id of the completion.
    pub fn id(mut self, id: impl Into<String>) -> Response {
        self.id = Some(id.into());
        self
    }

    /// Token usage.
    pub fn usage(mut self, usage: Usage) -> Response {
        self.usage = usage;
        self
    }

    /// Why generation stopped (`stop`, `end_turn`, `length`, …); one per choice.
    pub fn finish_reason(mut self, reason: impl Into<String>) -> Response {
        self.finish_reasons.push(reason.into());
        self
    }

    /// An output message (recorded only when capture is on). Without its
    /// own finish reason it takes the response's, in order.
    pub fn message(mut self, message: Message) -> Response {
        self.messages.push(message);
        self
    }

    /// The attributes this response records, honouring the capture switch.
    pub fn attributes(&self) -> Vec<KeyValue> {
        self.attributes_with(capture_content())
    }

    fn attributes_with(&self, capture: bool) -> Vec<KeyValue> {
        let mut out = Vec::new();
        if let Some(model) = &self.model {
            out.push(KeyValue::new("gen_ai.response.model", model.clone()));
        }
        if let Some(id) = &self.id {
            out.push(KeyValue::new("gen_ai.response.id", id.clone()));
        }
        self.usage.attributes(&mut out);
        if !self.finish_reasons.is_empty() {
            let reasons: Vec<StringValue> = self
                .finish_reasons
                .iter()
                .map(|r| StringValue::from(r.clone()))
                .collect();
            out.push(KeyValue::new(
                "gen_ai.response.finish_reasons",
                Value::Array(Array::String(reasons)),
            ));
        }
        if capture && !self.messages.is_empty() {
            let messages: Vec<Json> = self
                .messages
                .iter()
                .enumerate()
                .map(|(i, m)| {
                    let fallback = self
                        .finish_reasons
                        .get(i)
                        .or(self.finish_reasons.first())
                        .map(String::as_str);
                    m.to_json(Some(fallback.unwrap_or("stop")))
                })
                .collect();
            out.push(KeyValue::new(
                "gen_ai.output.messages",
                Json::Array(messages).to_string(),
            ));
        }
        out
    }

    /// Sets the response's attributes on the current span.
    pub fn record(&self) {
        Context::current().span().set_attributes(self.attributes());
    }
}

/// One message of a conversation: a role and its parts.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    role: String,
    parts: Vec<Part>,
    finish_reason: Option<String>,
}

impl Message {
    /// A message of `role` (`user`, `assistant`, `tool`, …) with no parts yet.
    pub fn new(role: impl Into<String>) -> Message {
        Message {
            role: role.into(),
            parts: Vec::new(),
            finish_reason: None,
        }
    }

    /// A user message of one text part.
    pub fn user(text: impl Into<String>) -> Message {
        Message::new("user").text(text)
    }

    /// An assistant message of one text part.
    pub fn assistant(text: impl Into<String>) -> Message {
        Message::new("assistant").text(text)
    }

    /// A tool's answer to the call `id`.
    pub fn tool_response(id: impl Into<String>, response: Json) -> Message {
        Message::new("tool").part(Part::ToolCallResponse {
            id: id.into(),
            response,
        })
    }

    /// Adds a text part.
    pub fn text(self, text: impl Into<String>) -> Message {
        self.part(Part::Text(text.into()))
    }

    /// Adds a part.
    pub fn part(mut self, part: Part) -> Message {
        self.parts.push(part);
        self
    }

    /// Why generation of this (output) message stopped.
    pub fn finish_reason(mut self, reason: impl Into<String>) -> Message {
        self.finish_reason = Some(reason.into());
        self
    }

    /// The GenAI JSON shape; output messages carry a `finish_reason`.
    fn to_json(&self, output_finish_reason: Option<&str>) -> Json {
        let mut m = json!({
            "role": self.role,
            "parts": self.parts.iter().map(Part::to_json).collect::<Vec<_>>(),
        });
        let reason = self.finish_reason.as_deref().or(output_finish_reason);
        if let (Some(reason), Some(map)) = (reason, m.as_object_mut()) {
            map.insert("finish_reason".into(), Json::String(reason.into()));
        }
        m
    }
}

/// A part of a message, as the GenAI conventions type them.
#[derive(Debug, Clone, PartialEq)]
pub enum Part {
    /// Text: `{"type":"text","content":…}`.
    Text(String),
    /// The model asks for a tool: `{"type":"tool_call","id","name","arguments"}`.
    ToolCall {
        /// The call's id, echoed by the tool's response.
        id: String,
        /// The tool's name.
        name: String,
        /// The arguments, as the model gave them.
        arguments: Json,
    },
    /// A tool's answer: `{"type":"tool_call_response","id","response"}`.
    ToolCallResponse {
        /// The id of the call answered.
        id: String,
        /// What the tool returned.
        response: Json,
    },
}

impl Part {
    fn to_json(&self) -> Json {
        match self {
            Part::Text(text) => json!({"type": "text", "content": text}),
            Part::ToolCall {
                id,
                name,
                arguments,
            } => json!({"type": "tool_call", "id": id, "name": name, "arguments": arguments}),
            Part::ToolCallResponse { id, response } => {
                json!({"type": "tool_call_response", "id": id, "response": response})
            }
        }
    }
}

/// Time to first chunk of a streamed answer, recorded on the span current
/// when the timer starts as `gen_ai.response.time_to_first_chunk` (seconds).
///
/// ```
/// # async fn demo() {
/// use chaintrace_sdk::llm::{ChunkTimer, Request};
///
/// Request::chat("openai", "gpt-4o-mini").span("llm_call").run(async {
///     let mut timer = ChunkTimer::start(); // when the request is sent
///     for _chunk in ["Retrieval", "-augmented", " generation"] {
///         timer.chunk(); // the first call records the attribute
///     }
/// }).await;
/// # }
/// ```
#[derive(Debug)]
pub struct ChunkTimer {
    cx: Context,
    issued: Instant,
    first: Option<Duration>,
}

impl ChunkTimer {
    /// Starts timing now, for the current span.
    pub fn start() -> ChunkTimer {
        ChunkTimer {
            cx: Context::current(),
            issued: Instant::now(),
            first: None,
        }
    }

    /// Marks a chunk's arrival; the first one records the attribute.
    pub fn chunk(&mut self) {
        if self.first.is_none() {
            let elapsed = self.issued.elapsed();
            self.first = Some(elapsed);
            self.cx.span().set_attribute(KeyValue::new(
                "gen_ai.response.time_to_first_chunk",
                elapsed.as_secs_f64(),
            ));
        }
    }

    /// The time to the first chunk, once one arrived.
    pub fn time_to_first_chunk(&self) -> Option<Duration> {
        self.first
    }
}

#[cfg(test)]
mod tests;
