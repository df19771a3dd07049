//! Spans around the steps of a chain, in the spirit of Python's
//! `tracer.start_as_current_span(...)`: as a closure, as a guard, or around
//! a future. Each new span is a child of the current OpenTelemetry context
//! and is current while its code runs, so nested steps nest.
//!
//! This module starts and ends spans through the global tracer provider
//! that [`crate::init`] installs; it knows nothing of how spans are exported.

use std::borrow::Cow;
use std::error::Error;
use std::future::Future;
use std::time::SystemTime;

use opentelemetry::context::FutureExt as _;
use opentelemetry::trace::{SpanKind, TraceContextExt, TraceId, Tracer};
use opentelemetry::{global, Context, ContextGuard, InstrumentationScope, Key, KeyValue, Value};

use crate::error::record_error_on;

/// The name of this crate's instrumentation scope.
const SCOPE: &str = "chaintrace-sdk";

/// The instrumentation scope of every span this crate starts (the
/// `tracing` bridge's included): `chaintrace-sdk` and its version.
pub(crate) fn scope() -> InstrumentationScope {
    InstrumentationScope::builder(SCOPE)
        .with_version(env!("CARGO_PKG_VERSION"))
        .build()
}

fn tracer() -> global::BoxedTracer {
    // Unit tests share one in-memory provider, installed before any span.
    #[cfg(test)]
    crate::test_support::provider();
    global::tracer_with_scope(scope())
}

/// A span about to start: its name, kind and first attributes.
///
/// Made by [`span`]; started by [`in_scope`](NewSpan::in_scope),
/// [`enter`](NewSpan::enter), [`run`](NewSpan::run) or their `try_`
/// forms, which also record an `Err` with [`crate::record_error`].
///
/// ```
/// use chaintrace_sdk::{span, KeyValue};
/// use chaintrace_sdk::opentelemetry::trace::SpanKind;
///
/// let hits = span("vector_search")
///     .kind(SpanKind::Client)
///     .attr("database", "pinecone")
///     .in_scope(|_cx| 8);
/// assert_eq!(hits, 8);
/// ```
#[derive(Debug, Clone)]
#[must_use = "a NewSpan does nothing until it is started"]
pub struct NewSpan {
    name: Cow<'static, str>,
    kind: SpanKind,
    attributes: Vec<KeyValue>,
}

/// A span named `name`, to be started as a child of the current context.
pub fn span(name: impl Into<Cow<'static, str>>) -> NewSpan {
    NewSpan {
        name: name.into(),
        kind: SpanKind::Internal,
        attributes: Vec::new(),
    }
}

impl From<&'static str> for NewSpan {
    fn from(name: &'static str) -> NewSpan {
        span(name)
    }
}

impl From<String> for NewSpan {
    fn from(name: String) -> NewSpan {
        span(name)
    }
}

impl From<Cow<'static, str>> for NewSpan {
    fn from(name: Cow<'static, str>) -> NewSpan {
        span(name)
    }
}

/// Runs `f` inside a new span named `name` (a child of the current one),
/// which is current while `f` runs and ends when it returns.
///
/// ```
/// use chaintrace_sdk::in_span;
///
/// let answer = in_span("llm_call", |_cx| {
///     in_span("prompt_assembly", |_cx| { /* nested: a child of llm_call */ });
///     42
/// });
/// assert_eq!(answer, 42);
/// ```
pub fn in_span<T>(name: impl Into<Cow<'static, str>>, f: impl FnOnce(&Context) -> T) -> T {
    span(name).in_scope(f)
}

impl NewSpan {
    /// The span's kind (`Internal` unless set): `Server` for a request's
    /// root, `Client` for a call to another service such as a model API.
    pub fn kind(mut self, kind: SpanKind) -> NewSpan {
        self.kind = kind;
        self
    }

    /// Adds an attribute, set when the span starts (where samplers see it).
    pub fn attr(mut self, key: impl Into<Key>, value: impl Into<Value>) -> NewSpan {
        self.attributes.push(KeyValue::new(key, value));
        self
    }

    /// Adds attributes, set when the span starts.
    pub fn attrs(mut self, attributes: impl IntoIterator<Item = KeyValue>) -> NewSpan {
        self.attributes.extend(attributes);
        self
    }

    /// Starts the span as a child of `parent` and returns the context that
    /// holds it, not yet current. The span ends when [`end`] is called on it
    /// or when the last clone of the context is dropped.
    ///
    /// [`end`]: opentelemetry::trace::SpanRef::end
    pub fn start_with_parent(self, parent: &Context) -> Context {
        let tracer = tracer();
        let builder = tracer
            .span_builder(self.name)
            .with_kind(self.kind)
            .with_attributes(self.attributes);
        let span = tracer.build_with_context(builder, parent);
        parent.with_span(span)
    }

    /// Starts the span as a child of the current context; see
    /// [`start_with_parent`](NewSpan::start_with_parent).
    pub fn start(self) -> Context {
        self.start_with_parent(&Context::current())
    }

    /// Starts the span and makes it current until the guard is dropped,
    /// which ends it. For synchronous code: the guard must not be held
    /// across an `.await` (use [`run`](NewSpan::run) there).
    ///
    /// ```
    /// let _guard = chaintrace_sdk::span("fetch_context").enter();
    /// // everything here runs inside fetch_context
    /// ```
    pub fn enter(self) -> SpanGuard {
        let cx = self.start();
        let attached = cx.clone().attach();
        SpanGuard {
            cx,
            _attached: attached,
        }
    }

    /// Runs `f` inside the span, which ends when `f` returns (or unwinds).
    pub fn in_scope<T>(self, f: impl FnOnce(&Context) -> T) -> T {
        let guard = self.enter();
        f(&guard.cx)
    }

    /// [`in_scope`](NewSpan::in_scope) for fallible work: an `Err` is
    /// recorded on the span (status, `error.type`, `exception` event).
    pub fn try_in_scope<T, E: Error + 'static>(
        self,
        f: impl FnOnce(&Context) -> Result<T, E>,
    ) -> Result<T, E> {
        let guard = self.enter();
        let result = f(&guard.cx);
        if let Err(err) = &result {
            let span = guard.cx.span();
            // Recording (a backtrace above all) takes time the work did not.
            let finished = SystemTime::now();
            record_error_on(&span, err, None);
            span.end_with_timestamp(finished);
        }
        result
    }

    /// Runs `fut` inside the span: the span is current whenever `fut` is
    /// polled, so it survives `.await` and thread hops of a multi-threaded
    /// runtime, and ends when `fut` completes (or is dropped).
    ///
    /// The span starts when the future is first polled, as a child of the
    /// context current then — as a Python `with` block starts where it is
    /// entered — so wrappers compose: `span("a").run(span("b").run(f))`
    /// makes `b` a child of `a`, and futures polled together by
    /// `tokio::join!` are siblings under the span that joins them. A task
    /// started by `tokio::spawn` begins with an empty context: hand it to
    /// [`crate::spawn`] instead, which carries the context along.
    ///
    /// ```
    /// # async fn demo() {
    /// use chaintrace_sdk::span;
    ///
    /// span("process_query").run(async {
    ///     // Two children that run at the same time, both under process_query.
    ///     tokio::join!(
    ///         span("fetch_context").run(async { /* … */ }),
    ///         span("embed_query").run(async { /* … */ }),
    ///     );
    /// }).await;
    /// # }
    /// ```
    pub async fn run<F: Future>(self, fut: F) -> F::Output {
        let cx = self.start();
        let out = fut.with_context(cx.clone()).await;
        cx.span().end();
        out
    }

    /// [`run`](NewSpan::run) for fallible work: an `Err` is recorded on the
    /// span (status, `error.type`, `exception` event).
    pub async fn try_run<T, E, F>(self, fut: F) -> Result<T, E>
    where
        E: Error + 'static,
        F: Future<Output = Result<T, E>>,
    {
        let cx = self.start();
        let result = fut.with_context(cx.clone()).await;
        let span = cx.span();
        // Recording (a backtrace above all) takes time the work did not.
        let finished = SystemTime::now();
        if let Err(err) = &result {
            record_error_on(&span, err, None);
        }
        span.end_with_timestamp(finished);
        result
    }
}

/// A started span that is current until this guard is dropped, which ends
/// it. Made by [`NewSpan::enter`].
#[must_use = "the span ends when the guard is dropped"]
#[derive(Debug)]
pub struct SpanGuard {
    cx: Context,
    _attached: ContextGuard,
}

impl SpanGuard {
    /// The context holding the span (for attributes, events, or as an
    /// explicit parent).
    pub fn context(&self) -> &Context {
        &self.cx
    }
}

impl Drop for SpanGuard {
    fn drop(&mut self) {
        // End first; the context is detached after, when the fields drop.
        self.cx.span().end();
    }
}

/// `tokio::spawn`, carrying the current context into the task: spans the
/// task starts are children of the span current here. (`tokio::spawn`
/// alone starts the task with an empty context.)
///
/// ```
/// # async fn demo() {
/// chaintrace_sdk::span("process_query").run(async {
///     let task = chaintrace_sdk::spawn(chaintrace_sdk::span("embed_query").run(async { 1536 }));
///     assert_eq!(task.await.unwrap(), 1536);
/// }).await;
/// # }
/// ```
pub fn spawn<F>(fut: F) -> tokio::task::JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    tokio::spawn(fut.with_current_context())
}

/// The trace id of the current span, or `None` outside any (sampled or
/// not) span: what to log or print so a trace can be found again.
pub fn current_trace_id() -> Option<TraceId> {
    let cx = Context::current();
    let id = cx.span().span_context().trace_id();
    (id != TraceId::INVALID).then_some(id)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use opentelemetry::trace::{Status, TraceContextExt};

    use super::*;
    use crate::test_support::{finished, named};

    #[test]
    fn closures_nest_and_set_kind_and_attributes() {
        let trace_id = in_span("root", |cx| {
            span("child")
                .kind(SpanKind::Client)
                .attr("n", 3)
                .in_scope(|_| in_span("grandchild", |_| {}));
            cx.span().span_context().trace_id()
        });
        let spans = finished(trace_id);
        let (root, child, grand) = (
            named(&spans, "root"),
            named(&spans, "child"),
            named(&spans, "grandchild"),
        );
        assert_eq!(root.parent_span_id, opentelemetry::trace::SpanId::INVALID);
        assert_eq!(child.parent_span_id, root.span_context.span_id());
        assert_eq!(grand.parent_span_id, child.span_context.span_id());
        assert_eq!(child.span_kind, SpanKind::Client);
        assert!(child.attributes.contains(&KeyValue::new("n", 3)));
    }

    #[test]
    fn guard_ends_the_span_and_restores_the_parent() {
        let root = span("root").enter();
        let trace_id = root.context().span().span_context().trace_id();
        {
            let _child = span("child").enter();
            assert_ne!(
                Context::current().span().span_context().span_id(),
                root.context().span().span_context().span_id()
            );
        }
        assert_eq!(
            Context::current().span().span_context().span_id(),
            root.context().span().span_context().span_id()
        );
        drop(root);
        let spans = finished(trace_id);
        assert_eq!(spans.len(), 2);
        assert_eq!(
            named(&spans, "child").parent_span_id,
            named(&spans, "root").span_context.span_id()
        );
        assert_eq!(current_trace_id(), None);
    }

    #[test]
    fn try_in_scope_records_the_error() {
        let trace_id = in_span("root", |cx| {
            let _ =
                span("fails").try_in_scope(|_| Err::<(), _>(std::io::Error::other("disk on fire")));
            cx.span().span_context().trace_id()
        });
        let spans = finished(trace_id);
        let failed = named(&spans, "fails");
        assert_eq!(failed.status, Status::error("disk on fire"));
        assert_eq!(named(&spans, "root").status, Status::Unset);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn futures_keep_their_span_across_await_join_and_spawn() {
        let trace_id = span("root")
            .run(async {
                let nap = || tokio::time::sleep(Duration::from_millis(30));
                tokio::join!(
                    span("a").run(async {
                        nap().await;
                        in_span("a.inner", |_| {});
                    }),
                    span("b").run(async { nap().await }),
                );
                // `spawn` carries the context into the task.
                let spawned = spawn(span("spawned").run(async move {
                    nap().await;
                    in_span("spawned.inner", |_| {});
                }));
                spawned.await.unwrap();
                // Wrappers compose: the inner span starts inside the outer.
                span("wrapper").run(span("nested").run(nap())).await;
                current_trace_id().unwrap()
            })
            .await;
        let spans = finished(trace_id);
        let id = |name| named(&spans, name).span_context.span_id();
        let parent = |name| named(&spans, name).parent_span_id;
        assert_eq!(parent("a"), id("root"));
        assert_eq!(parent("b"), id("root"));
        assert_eq!(parent("a.inner"), id("a"));
        assert_eq!(parent("spawned"), id("root"));
        assert_eq!(parent("spawned.inner"), id("spawned"));
        assert_eq!(parent("nested"), id("wrapper"));
        let (a, b) = (named(&spans, "a"), named(&spans, "b"));
        assert!(
            a.start_time < b.end_time && b.start_time < a.end_time,
            "joined siblings overlap"
        );
    }

    #[tokio::test]
    async fn try_run_records_the_error_and_ends_the_span() {
        #[derive(Debug)]
        struct RateLimitError;
        impl std::fmt::Display for RateLimitError {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("rate limited")
            }
        }
        impl Error for RateLimitError {}

        let trace_id = span("root")
            .run(async {
                let _ = span("api_call")
                    .try_run(async { Err::<(), _>(RateLimitError) })
                    .await;
                current_trace_id().unwrap()
            })
            .await;
        let spans = finished(trace_id);
        let call = named(&spans, "api_call");
        assert_eq!(call.status, Status::error("rate limited"));
        assert!(call
            .attributes
            .contains(&KeyValue::new("error.type", "RateLimitError")));
    }
}
