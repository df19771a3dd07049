//! The bridge from the `tracing` ecosystem: spans of `#[tracing::instrument]`
//! and `tracing::info_span!` become OpenTelemetry spans of the same trace
//! (through `tracing-opentelemetry`), and `tracing` events become events
//! of the innermost span current when they fire — whichever API started it.
//!
//! `tracing-opentelemetry` alone attaches an event to the current *tracing*
//! span and drops events outside one, so an `info!` inside
//! [`crate::in_span`] would be lost, and one inside `in_span` inside an
//! instrumented function would land on the outer span. So its layer here
//! sees spans only, and [`ActiveSpanEvents`] adds every event to the
//! OpenTelemetry context's current span, which `tracing-opentelemetry`
//! keeps in step with entered tracing spans (context activation).
//!
//! This module turns `tracing` data into OpenTelemetry data; it must not
//! decide where spans are exported.

use std::fmt;

use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::filter::{filter_fn, FilterExt, LevelFilter, Targets};
use tracing_subscriber::layer::{Context as LayerContext, Layer};
use tracing_subscriber::registry::LookupSpan;

use crate::span::scope;

/// The `tracing` layer for `provider`: spans and events at `level` or
/// more severe, from every target except the exporter's own stack (whose
/// spans would otherwise be traced while exporting spans).
pub(crate) fn layer<S>(provider: &SdkTracerProvider, level: Level) -> impl Layer<S>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let targets = Targets::new().with_default(level).with_targets(
        [
            "h2",
            "hyper",
            "hyper_util",
            "tonic",
            "tower",
            "opentelemetry",
        ]
        .map(|t| (t, LevelFilter::OFF)),
    );
    let spans = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer_with_scope(scope()))
        .with_filter(filter_fn(|meta| meta.is_span()).and(targets.clone()));
    let events = ActiveSpanEvents.with_filter(targets);
    spans.and_then(events)
}

/// Adds each `tracing` event to the current OpenTelemetry span as a span
/// event: named by its message, with `level`, `target` and its fields as
/// attributes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ActiveSpanEvents;

impl<S: Subscriber> Layer<S> for ActiveSpanEvents {
    fn on_event(&self, event: &Event<'_>, _ctx: LayerContext<'_, S>) {
        let cx = Context::current();
        let span = cx.span();
        if !span.is_recording() {
            return;
        }
        let meta = event.metadata();
        let mut fields = Fields {
            message: None,
            attributes: vec![
                KeyValue::new("level", meta.level().as_str()),
                KeyValue::new("target", meta.target().to_string()),
            ],
        };
        event.record(&mut fields);
        let name = fields.message.unwrap_or_else(|| meta.name().to_string());
        span.add_event(name, fields.attributes);
    }
}

/// An event's fields as attributes; the `message` field becomes the name.
struct Fields {
    message: Option<String>,
    attributes: Vec<KeyValue>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = Some(value.to_string());
        } else {
            self.attributes
                .push(KeyValue::new(field.name(), value.to_string()));
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.attributes.push(KeyValue::new(field.name(), value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        match i64::try_from(value) {
            Ok(v) => self.attributes.push(KeyValue::new(field.name(), v)),
            Err(_) => self.record_debug(field, &value),
        }
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.attributes.push(KeyValue::new(field.name(), value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.attributes.push(KeyValue::new(field.name(), value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let text = format!("{value:?}");
        if field.name() == "message" {
            self.message = Some(text);
        } else {
            self.attributes.push(KeyValue::new(field.name(), text));
        }
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry::trace::SpanId;
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;
    use crate::test_support::{attr, event_attr, finished, named, provider};
    use crate::{current_trace_id, in_span, span};

    #[tracing::instrument(fields(database = "pinecone"))]
    fn vector_search(k: u32) -> u32 {
        tracing::info!(hits = 8, "searched");
        in_span("inside_instrumented", |_| {
            tracing::warn!("slow shard");
        });
        k
    }

    #[test]
    fn instrumented_spans_join_the_trace_and_events_land_on_the_innermost_span() {
        let subscriber = tracing_subscriber::registry().with(layer(provider(), Level::INFO));
        let trace_id = tracing::subscriber::with_default(subscriber, || {
            in_span("process_query", |_| {
                tracing::info!(step = "start", "query received");
                vector_search(5);
                tracing::debug!("below the level: dropped");
                current_trace_id().unwrap()
            })
        });
        let spans = finished(trace_id);
        let root = named(&spans, "process_query");
        let search = named(&spans, "vector_search");
        let inner = named(&spans, "inside_instrumented");
        assert_eq!(root.parent_span_id, SpanId::INVALID);
        assert_eq!(search.parent_span_id, root.span_context.span_id());
        assert_eq!(inner.parent_span_id, search.span_context.span_id());
        assert_eq!(attr(search, "database").as_deref(), Some("pinecone"));
        assert_eq!(attr(search, "k").as_deref(), Some("5"));

        let names = |s: &opentelemetry_sdk::trace::SpanData| -> Vec<String> {
            s.events.iter().map(|e| e.name.to_string()).collect()
        };
        assert_eq!(names(root), ["query received"]);
        assert_eq!(names(search), ["searched"]);
        assert_eq!(names(inner), ["slow shard"]);
        let received = &root.events.events[0];
        assert_eq!(event_attr(received, "step").as_deref(), Some("start"));
        assert_eq!(event_attr(received, "level").as_deref(), Some("INFO"));
        assert_eq!(
            event_attr(&search.events.events[0], "hits").as_deref(),
            Some("8")
        );
    }

    #[tokio::test]
    async fn instrumented_futures_keep_their_parent_across_await() {
        use tracing::Instrument;
        let subscriber = tracing_subscriber::registry().with(layer(provider(), Level::INFO));
        let _default = tracing::subscriber::set_default(subscriber);
        let trace_id = span("root")
            .run(async {
                async {
                    tokio::task::yield_now().await;
                    in_span("leaf", |_| {});
                }
                .instrument(tracing::info_span!("step"))
                .await;
                current_trace_id().unwrap()
            })
            .await;
        let spans = finished(trace_id);
        assert_eq!(
            named(&spans, "step").parent_span_id,
            named(&spans, "root").span_context.span_id()
        );
        assert_eq!(
            named(&spans, "leaf").parent_span_id,
            named(&spans, "step").span_context.span_id()
        );
    }
}
