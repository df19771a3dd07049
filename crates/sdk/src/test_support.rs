//! One in-memory tracer provider for the whole unit-test process.
//!
//! The span helpers use OpenTelemetry's global provider, and tests run in
//! parallel, so the provider is installed once and every test reads back
//! only the spans of its own trace.

use std::sync::OnceLock;

use opentelemetry::trace::TraceId;
use opentelemetry::{global, Key};
use opentelemetry_sdk::trace::{
    InMemorySpanExporter, SdkTracerProvider, SimpleSpanProcessor, SpanData,
};

use crate::request::RequestIdsProcessor;

struct Installed {
    provider: SdkTracerProvider,
    exporter: InMemorySpanExporter,
}

fn installed() -> &'static Installed {
    static INSTALLED: OnceLock<Installed> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(RequestIdsProcessor)
            .with_span_processor(SimpleSpanProcessor::new(exporter.clone()))
            .build();
        global::set_tracer_provider(provider.clone());
        Installed { provider, exporter }
    })
}

/// The test provider (installed as the global one on first use).
pub(crate) fn provider() -> &'static SdkTracerProvider {
    &installed().provider
}

/// Every ended span of `trace_id`.
pub(crate) fn finished(trace_id: TraceId) -> Vec<SpanData> {
    installed()
        .exporter
        .get_finished_spans()
        .expect("in-memory exporter")
        .into_iter()
        .filter(|s| s.span_context.trace_id() == trace_id)
        .collect()
}

/// The span named `name`, panicking with the names present if none is.
pub(crate) fn named<'a>(spans: &'a [SpanData], name: &str) -> &'a SpanData {
    spans.iter().find(|s| s.name == name).unwrap_or_else(|| {
        let names: Vec<&str> = spans.iter().map(|s| s.name.as_ref()).collect();
        panic!("no span {name} among {names:?}")
    })
}

/// A span attribute's value as text.
pub(crate) fn attr(span: &SpanData, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key == Key::from(key.to_string()))
        .map(|kv| kv.value.to_string())
}

/// An event attribute's value as text.
pub(crate) fn event_attr(event: &opentelemetry::trace::Event, key: &str) -> Option<String> {
    event
        .attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.to_string())
}
