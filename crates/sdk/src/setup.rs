//! One-line set-up: [`init`] / [`Builder`] install an OpenTelemetry tracer
//! provider exporting over OTLP/gRPC in batches, the W3C trace-context and
//! baggage propagators, the session/user-id processor and (optionally) the
//! `tracing` bridge; the returned [`Guard`] flushes and shuts down.
//!
//! One rule for configuration: what the code sets is a default, and the
//! standard `OTEL_*` environment variables, when set, override it — so the
//! same binary can be pointed elsewhere or renamed by whoever deploys it.
//!
//! This module wires things together; it must not know what a span means.

use std::sync::Arc;
use std::time::Duration;

use opentelemetry::propagation::TextMapCompositePropagator;
use opentelemetry::{global, KeyValue};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::propagation::{BaggagePropagator, TraceContextPropagator};
use opentelemetry_sdk::resource::{EnvResourceDetector, TelemetryResourceDetector};
use opentelemetry_sdk::trace::{
    BatchSpanProcessor, SdkTracerProvider, Span, SpanData, SpanProcessor,
};
use opentelemetry_sdk::Resource;
use tracing::Level;
use tracing_subscriber::layer::{Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

use crate::export::ExportRuntime;
use crate::request::RequestIdsProcessor;

/// Where spans go when neither the code nor the environment says.
pub const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:4317";

/// Why [`init`] failed.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// The endpoint is not an `http://` or `https://` URL.
    #[error(
        "OTLP/gRPC endpoint {endpoint:?} (from {from}) has no scheme: \
         write http://{endpoint} (or https:// for TLS)"
    )]
    EndpointWithoutScheme {
        /// The endpoint as given.
        endpoint: String,
        /// Where it came from: the variable's name, or the code.
        from: &'static str,
    },
    /// The OTLP exporter could not be built for the endpoint (a malformed
    /// URL, usually).
    #[error("cannot export to OTLP/gRPC endpoint {endpoint:?}: {source}")]
    Exporter {
        /// The endpoint, after the environment was consulted.
        endpoint: String,
        /// What the exporter said.
        source: opentelemetry_otlp::ExporterBuildError,
    },
    /// The exporter's own Tokio runtime could not be built.
    #[error("cannot build the span exporter's Tokio runtime: {0}")]
    ExportRuntime(#[source] std::io::Error),
    /// The exporter's thread could not be started.
    #[error("cannot start the span exporter's thread: {0}")]
    ExportThread(#[source] std::io::Error),
    /// The exporter's thread ended before it handed over the exporter.
    #[error("the span exporter's thread for {endpoint:?} stopped before the exporter was ready")]
    ExportThreadDied {
        /// The endpoint.
        endpoint: String,
    },
    /// The `tracing` bridge was asked for, but the process already has a
    /// global `tracing` subscriber.
    #[error(
        "a global `tracing` subscriber is already set; build with `.tracing(false)` \
         and add `guard.tracing_layer()` to your own subscriber"
    )]
    TracingSubscriberAlreadySet,
}

/// Spans could not be flushed to the endpoint.
#[derive(Debug, thiserror::Error)]
#[error("exporting spans to {endpoint}: {source}")]
pub struct ExportError {
    /// The endpoint.
    pub endpoint: String,
    /// What the SDK said.
    pub source: opentelemetry_sdk::error::OTelSdkError,
}

/// Sets up tracing for service `service_name` with everything else at its
/// default; see [`Builder`].
///
/// ```no_run
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let _guard = chaintrace_sdk::init("rag-service")?;
/// // … spans are exported until `_guard` is dropped, which flushes …
/// # Ok(()) }
/// ```
pub fn init(service_name: impl Into<String>) -> Result<Guard, InitError> {
    Builder::new(service_name).init()
}

/// Tracing set-up, before [`init`](Builder::init).
///
/// | setting | code | environment (wins when set) | default |
/// |---|---|---|---|
/// | service name | [`new`](Builder::new) | `OTEL_SERVICE_NAME`, else `service.name` in `OTEL_RESOURCE_ATTRIBUTES` | — |
/// | endpoint | [`endpoint`](Builder::endpoint) | `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, else `OTEL_EXPORTER_OTLP_ENDPOINT` | [`DEFAULT_ENDPOINT`] |
/// | resource attributes | [`resource_attribute`](Builder::resource_attribute) | `OTEL_RESOURCE_ATTRIBUTES` | — |
/// | message content | [`capture_message_content`](Builder::capture_message_content) | `OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT` | off |
///
/// Batching follows the SDK's `OTEL_BSP_*` variables, export timeout and
/// headers `OTEL_EXPORTER_OTLP_TIMEOUT` / `…_HEADERS`.
#[derive(Debug, Clone)]
#[must_use = "a Builder does nothing until init() is called"]
pub struct Builder {
    service_name: String,
    endpoint: Option<String>,
    resource: Vec<KeyValue>,
    tracing: bool,
    tracing_level: Level,
    capture_message_content: bool,
}

/// What the builder and the environment resolve to.
#[derive(Debug, PartialEq)]
struct Settings {
    endpoint: String,
    /// The variable the endpoint came from, or "the code" / "the default".
    endpoint_from: &'static str,
    service_name_override: Option<String>,
    capture_message_content: bool,
}

impl Builder {
    /// Set-up for service `service_name` (the `service.name` resource attribute).
    pub fn new(service_name: impl Into<String>) -> Builder {
        Builder {
            service_name: service_name.into(),
            endpoint: None,
            resource: Vec::new(),
            tracing: true,
            tracing_level: Level::INFO,
            capture_message_content: false,
        }
    }

    /// The OTLP/gRPC endpoint, e.g. `http://collector:4317`, unless the
    /// environment names one.
    pub fn endpoint(mut self, endpoint: impl Into<String>) -> Builder {
        self.endpoint = Some(endpoint.into());
        self
    }

    /// A resource attribute (`deployment.environment.name`, `service.version`, …).
    pub fn resource_attribute(
        mut self,
        key: impl Into<opentelemetry::Key>,
        value: impl Into<opentelemetry::Value>,
    ) -> Builder {
        self.resource.push(KeyValue::new(key, value));
        self
    }

    /// Whether [`init`](Builder::init) installs the `tracing` bridge as the
    /// global `tracing` subscriber (on by default). Turn it off to compose
    /// your own subscriber with [`Guard::tracing_layer`].
    pub fn tracing(mut self, install: bool) -> Builder {
        self.tracing = install;
        self
    }

    /// The least severe `tracing` level bridged (`INFO` by default).
    pub fn tracing_level(mut self, level: Level) -> Builder {
        self.tracing_level = level;
        self
    }

    /// Whether LLM message content (`gen_ai.input.messages`,
    /// `gen_ai.output.messages`, `gen_ai.system_instructions`) is recorded.
    /// Off by default: prompts and answers can hold personal data.
    pub fn capture_message_content(mut self, capture: bool) -> Builder {
        self.capture_message_content = capture;
        self
    }

    fn settings(&self, env: impl Fn(&str) -> Option<String>) -> Result<Settings, InitError> {
        let env = |key: &str| env(key).filter(|v| !v.trim().is_empty());
        let (endpoint, endpoint_from) = [
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "OTEL_EXPORTER_OTLP_ENDPOINT",
        ]
        .into_iter()
        .find_map(|key| env(key).map(|v| (v.trim().to_string(), key)))
        .or_else(|| self.endpoint.clone().map(|e| (e, "the code")))
        .unwrap_or_else(|| (DEFAULT_ENDPOINT.to_string(), "the default"));
        if !["http://", "https://"]
            .iter()
            .any(|scheme| endpoint.starts_with(scheme))
        {
            // The exporter would take it for https:// and ask for TLS.
            return Err(InitError::EndpointWithoutScheme {
                endpoint,
                from: endpoint_from,
            });
        }
        let capture_message_content =
            match env("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT") {
                Some(v) => v.trim().eq_ignore_ascii_case("true"),
                None => self.capture_message_content,
            };
        Ok(Settings {
            endpoint,
            endpoint_from,
            service_name_override: env("OTEL_SERVICE_NAME"),
            capture_message_content,
        })
    }

    /// Installs the tracer provider as OpenTelemetry's global one (which
    /// [`crate::span`], libraries using the opentelemetry API and the
    /// `tracing` bridge all use) and returns the guard that flushes it.
    pub fn init(self) -> Result<Guard, InitError> {
        if self.tracing && tracing::dispatcher::has_been_set() {
            return Err(InitError::TracingSubscriberAlreadySet);
        }
        let settings = self.settings(|key| std::env::var(key).ok())?;

        // Code first, then the environment over it.
        let mut resource = Resource::builder_empty()
            .with_service_name(self.service_name.clone())
            .with_attributes(self.resource.clone())
            .with_detector(Box::new(TelemetryResourceDetector))
            .with_detector(Box::new(EnvResourceDetector::new()));
        if let Some(name) = &settings.service_name_override {
            resource = resource.with_service_name(name.clone());
        }

        let resource = resource.build();
        let (export, exporter) = ExportRuntime::start(&settings.endpoint)?;
        let mut batch = BatchSpanProcessor::builder(exporter).build();
        batch.set_resource(&resource);
        let batch = SharedBatch(Arc::new(batch));
        let provider = SdkTracerProvider::builder()
            .with_resource(resource)
            .with_span_processor(RequestIdsProcessor)
            .with_span_processor(batch.clone())
            .build();
        global::set_tracer_provider(provider.clone());
        global::set_text_map_propagator(TextMapCompositePropagator::new(vec![
            Box::new(TraceContextPropagator::new()),
            Box::new(BaggagePropagator::new()),
        ]));
        crate::llm::set_capture_content(settings.capture_message_content);

        let guard = Guard {
            provider,
            batch,
            export,
            endpoint: settings.endpoint,
            tracing_level: self.tracing_level,
            finished: false,
        };
        if self.tracing {
            let subscriber = tracing_subscriber::registry().with(guard.tracing_layer());
            // Lost a race with another thread setting one: the guard's
            // drop shuts the provider down again.
            tracing::subscriber::set_global_default(subscriber)
                .map_err(|_| InitError::TracingSubscriberAlreadySet)?;
        }
        Ok(guard)
    }
}

/// Keeps tracing running; dropping it (or [`shutdown`](Guard::shutdown))
/// exports the spans still queued and stops the exporter.
///
/// Dropping cannot return an error, so a failed final export is reported
/// on stderr; call [`shutdown`](Guard::shutdown) to handle it yourself.
/// Flushing blocks the calling thread: for as long as the export takes,
/// and about ten seconds at worst when the endpoint does not answer.
#[derive(Debug)]
#[must_use = "dropping the guard shuts tracing down at once"]
pub struct Guard {
    provider: SdkTracerProvider,
    batch: SharedBatch,
    export: ExportRuntime,
    endpoint: String,
    tracing_level: Level,
    finished: bool,
}

impl Guard {
    /// The endpoint spans are exported to.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Exports every span ended so far, now.
    pub fn flush(&self) -> Result<(), ExportError> {
        self.batch.force_flush().map_err(|source| ExportError {
            endpoint: self.endpoint.clone(),
            source,
        })
    }

    /// The `tracing` bridge (see [`Builder::tracing`]) as a layer for your
    /// own subscriber:
    ///
    /// ```no_run
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use tracing_subscriber::layer::SubscriberExt;
    /// use tracing_subscriber::util::SubscriberInitExt;
    ///
    /// let guard = chaintrace_sdk::Builder::new("rag-service").tracing(false).init()?;
    /// tracing_subscriber::registry()
    ///     .with(tracing_subscriber::fmt::layer())
    ///     .with(guard.tracing_layer())
    ///     .init();
    /// # Ok(()) }
    /// ```
    pub fn tracing_layer<S>(&self) -> impl Layer<S>
    where
        S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    {
        crate::bridge::layer(&self.provider, self.tracing_level)
    }

    /// Exports the spans still queued, then stops exporting; spans ended
    /// afterwards are dropped.
    pub fn shutdown(mut self) -> Result<(), ExportError> {
        self.finish()
    }

    fn finish(&mut self) -> Result<(), ExportError> {
        if std::mem::replace(&mut self.finished, true) {
            return Ok(());
        }
        // The batch processor's shutdown exports what is queued but does
        // not report how that went; a flush first does.
        let flushed = self.batch.force_flush();
        let shut_down = self.provider.shutdown();
        // Only now: the exports above ran on this runtime.
        self.export.stop();
        flushed.and(shut_down).map_err(|source| ExportError {
            endpoint: self.endpoint.clone(),
            source,
        })
    }
}

/// The batch span processor, shared by the provider and the guard: the
/// provider's flush folds every processor's result into one debug string,
/// the processor's own says what went wrong ("…Connection refused").
#[derive(Debug, Clone)]
struct SharedBatch(Arc<BatchSpanProcessor>);

impl SpanProcessor for SharedBatch {
    fn on_start(&self, span: &mut Span, cx: &opentelemetry::Context) {
        self.0.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        self.0.on_end(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.0.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }

    // `set_resource` stays the default no-op: the resource was given to
    // the processor before it was shared (it needs `&mut`).
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Err(e) = self.finish() {
            eprintln!("chaintrace-sdk: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn resolve(builder: &Builder, env: &[(&str, &str)]) -> Result<Settings, InitError> {
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        builder.settings(|key| env.get(key).cloned())
    }

    fn settings(builder: &Builder, env: &[(&str, &str)]) -> Settings {
        resolve(builder, env).expect("valid settings")
    }

    #[test]
    fn defaults_without_code_or_environment() {
        assert_eq!(
            settings(&Builder::new("svc"), &[]),
            Settings {
                endpoint: DEFAULT_ENDPOINT.into(),
                endpoint_from: "the default",
                service_name_override: None,
                capture_message_content: false,
            }
        );
    }

    #[test]
    fn code_sets_defaults_and_the_environment_overrides_them() {
        let builder = Builder::new("svc")
            .endpoint("http://code:4317")
            .capture_message_content(true);
        let from_code = settings(&builder, &[("OTEL_SERVICE_NAME", "  ")]);
        assert_eq!(from_code.endpoint, "http://code:4317");
        assert_eq!(from_code.endpoint_from, "the code");
        assert_eq!(from_code.service_name_override, None, "blank is unset");
        assert!(from_code.capture_message_content);

        let from_env = settings(
            &builder,
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://generic:4317"),
                ("OTEL_SERVICE_NAME", "renamed"),
                (
                    "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT",
                    "false",
                ),
            ],
        );
        assert_eq!(from_env.endpoint, "http://generic:4317");
        assert_eq!(from_env.endpoint_from, "OTEL_EXPORTER_OTLP_ENDPOINT");
        assert_eq!(from_env.service_name_override.as_deref(), Some("renamed"));
        assert!(!from_env.capture_message_content);

        let traces_first = settings(
            &builder,
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://generic:4317"),
                ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://traces:4317"),
            ],
        );
        assert_eq!(traces_first.endpoint, "http://traces:4317");
    }

    #[test]
    fn an_endpoint_without_scheme_is_refused_with_its_source() {
        let builder = Builder::new("svc").endpoint("127.0.0.1:4317");
        let err = |env: &[(&str, &str)]| match resolve(&builder, env) {
            Err(e) => e.to_string(),
            Ok(s) => panic!("accepted {s:?}"),
        };
        assert_eq!(
            err(&[]),
            "OTLP/gRPC endpoint \"127.0.0.1:4317\" (from the code) has no scheme: \
             write http://127.0.0.1:4317 (or https:// for TLS)"
        );
        assert!(err(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4317")])
            .contains("(from OTEL_EXPORTER_OTLP_ENDPOINT)"));
        let fixed = [("OTEL_EXPORTER_OTLP_ENDPOINT", "https://collector:4317")];
        assert_eq!(
            settings(&builder, &fixed).endpoint,
            "https://collector:4317"
        );
    }

    #[test]
    fn a_malformed_endpoint_is_named_in_the_error() {
        let err = match ExportRuntime::start("not a url") {
            Err(e) => e,
            Ok(_) => panic!("a malformed endpoint was accepted"),
        };
        let text = err.to_string();
        assert!(text.contains("\"not a url\""), "{text}");
    }
}
