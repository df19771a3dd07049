//! Session and user ids, set once per request and carried by every span of
//! it as `session.id` and `user.id` (the OpenTelemetry attribute names;
//! chaintrace groups traces into sessions by `session.id`).
//!
//! The ids ride in the context's baggage, so they reach every span started
//! under it — ours, `#[tracing::instrument]` ones, and those of libraries
//! using the opentelemetry API — and [`RequestIdsProcessor`] copies them
//! onto each span as it starts. Baggage is also what the W3C `baggage`
//! header propagates to downstream services: do not put secrets in it.

use std::future::Future;

use opentelemetry::baggage::{Baggage, BaggageExt};
use opentelemetry::context::{FutureExt as _, WithContext};
use opentelemetry::{Context, ContextGuard, KeyValue};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{Span, SpanData, SpanProcessor};

/// The baggage keys copied onto spans; they are the attribute names too.
const KEYS: [&str; 2] = ["session.id", "user.id"];

/// The session and user a request belongs to.
///
/// ```
/// # async fn demo() {
/// use chaintrace_sdk::{span, RequestIds};
///
/// RequestIds::new()
///     .session("sess-7f3a")
///     .user("user_42")
///     .run(span("process_query").run(async {
///         // process_query and every span below it carry
///         // session.id = "sess-7f3a" and user.id = "user_42".
///     }))
///     .await;
/// # }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestIds {
    session_id: Option<String>,
    user_id: Option<String>,
}

impl RequestIds {
    /// No ids yet.
    pub fn new() -> RequestIds {
        RequestIds::default()
    }

    /// The session (conversation) id: `session.id`.
    pub fn session(mut self, id: impl Into<String>) -> RequestIds {
        self.session_id = Some(id.into());
        self
    }

    /// The end user's id: `user.id`.
    pub fn user(mut self, id: impl Into<String>) -> RequestIds {
        self.user_id = Some(id.into());
        self
    }

    /// The current context with these ids added to its baggage (other
    /// baggage entries are kept).
    pub fn context(&self) -> Context {
        let cx = Context::current();
        let mut baggage: Baggage = cx
            .baggage()
            .iter()
            .map(|(k, (v, m))| (k.clone(), (v.clone(), m.clone())))
            .collect();
        for (key, value) in KEYS.iter().zip([&self.session_id, &self.user_id]) {
            if let Some(value) = value {
                // Over-long values (baggage limits) are dropped by `insert`.
                let _ = baggage.insert(*key, value.clone());
            }
        }
        cx.with_baggage(baggage)
    }

    /// Makes the ids current on this thread until the guard is dropped.
    pub fn attach(&self) -> ContextGuard {
        self.context().attach()
    }

    /// Runs `fut` with the ids current whenever it is polled.
    pub fn run<F: Future>(&self, fut: F) -> WithContext<F> {
        fut.with_context(self.context())
    }
}

/// Copies `session.id` and `user.id` from the parent context's baggage onto
/// each span as it starts. [`crate::init`] installs it.
#[derive(Debug, Default)]
pub struct RequestIdsProcessor;

impl SpanProcessor for RequestIdsProcessor {
    fn on_start(&self, span: &mut Span, cx: &Context) {
        use opentelemetry::trace::Span as _;
        let baggage = cx.baggage();
        for key in KEYS {
            if let Some(value) = baggage.get(key) {
                span.set_attribute(KeyValue::new(key, value.to_string()));
            }
        }
    }

    fn on_end(&self, _span: SpanData) {}

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: std::time::Duration) -> OTelSdkResult {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry::trace::TraceContextExt;

    use super::*;
    use crate::test_support::{attr, finished, named};
    use crate::{current_trace_id, in_span, span};

    #[tokio::test]
    async fn ids_reach_every_span_of_the_request_and_no_other() {
        let trace_id = RequestIds::new()
            .session("sess-1")
            .user("user_42")
            .run(span("root").run(async {
                in_span("child", |_| in_span("grandchild", |_| {}));
                current_trace_id().unwrap()
            }))
            .await;
        let spans = finished(trace_id);
        assert_eq!(spans.len(), 3);
        for s in &spans {
            assert_eq!(
                attr(s, "session.id").as_deref(),
                Some("sess-1"),
                "{}",
                s.name
            );
            assert_eq!(attr(s, "user.id").as_deref(), Some("user_42"), "{}", s.name);
        }

        let outside = in_span("unrelated", |cx| cx.span().span_context().trace_id());
        let spans = finished(outside);
        assert_eq!(attr(named(&spans, "unrelated"), "session.id"), None);
    }

    #[test]
    fn other_baggage_is_kept_and_only_given_ids_are_set() {
        let _outer = Context::current_with_baggage([KeyValue::new("tenant", "acme")]).attach();
        let cx = RequestIds::new().user("u").context();
        assert_eq!(cx.baggage().get("tenant").map(|v| v.as_str()), Some("acme"));
        assert_eq!(cx.baggage().get("user.id").map(|v| v.as_str()), Some("u"));
        assert_eq!(cx.baggage().get("session.id"), None);
    }
}
