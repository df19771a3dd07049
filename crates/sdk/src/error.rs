//! Recording a failure on a span the way chaintrace (and the OpenTelemetry
//! conventions) read it: status ERROR with the message, an `error.type`
//! attribute, and an `exception` event with `exception.type`,
//! `exception.message` and, when there is one, `exception.stacktrace`.
//!
//! This module only writes attributes and events; whether a failure is
//! retried is [`crate::Retry`]'s business.

use std::backtrace::{Backtrace, BacktraceStatus};
use std::error::Error;
use std::fmt::Write as _;

use opentelemetry::trace::{SpanRef, Status, TraceContextExt};
use opentelemetry::{Context, KeyValue};

/// Records `err` on the current span: status ERROR with the error's
/// message, `error.type` set to the last segment of its Rust type name
/// (`RateLimitError` for `my_app::client::RateLimitError`), and an
/// `exception` event.
///
/// The event's `exception.stacktrace` holds the error's `source()` chain
/// ("Caused by:") and a [`Backtrace`] captured here, when backtraces are
/// enabled (`RUST_BACKTRACE=1` or `RUST_LIB_BACKTRACE=1`); it is left out
/// when there is neither.
///
/// ```
/// use chaintrace_sdk::{in_span, record_error};
///
/// in_span("read_config", |_cx| {
///     if let Err(err) = std::fs::read("/nonexistent/config.toml") {
///         record_error(&err); // error.type = "Error" (std::io::Error)
///     }
/// });
/// ```
pub fn record_error<E: Error + 'static>(err: &E) {
    record_error_on(&Context::current().span(), err, None);
}

/// [`record_error`] with the error type named by the caller, for errors
/// whose Rust type says little (an enum's variant, `Box<dyn Error>`,
/// `anyhow::Error`): `record_error_as(&err, "RateLimitError")`.
pub fn record_error_as(err: &(dyn Error + 'static), error_type: &str) {
    record_error_on(&Context::current().span(), err, Some(error_type));
}

/// Records `err` on `span`; the error type is `error_type` when given, else
/// the last segment of `E`'s type name.
pub(crate) fn record_error_on<E: Error + ?Sized + 'static>(
    span: &SpanRef<'_>,
    err: &E,
    error_type: Option<&str>,
) {
    if !span.is_recording() {
        return;
    }
    let error_type = match error_type {
        Some(name) => name.to_string(),
        None => short_type_name(std::any::type_name::<E>()).to_string(),
    };
    let message = err.to_string();
    let mut event = vec![
        KeyValue::new("exception.type", error_type.clone()),
        KeyValue::new("exception.message", message.clone()),
    ];
    let stacktrace = stacktrace(err, &Backtrace::capture());
    if !stacktrace.is_empty() {
        event.push(KeyValue::new("exception.stacktrace", stacktrace));
    }
    span.add_event("exception", event);
    span.set_attribute(KeyValue::new("error.type", error_type));
    span.set_status(Status::error(message));
}

/// The last path segment of a Rust type name, generics dropped:
/// `my_app::client::RateLimitError` → `RateLimitError`,
/// `my_app::Wrapper<alloc::string::String>` → `Wrapper`.
///
/// chaintrace (like the OpenTelemetry conventions for other languages)
/// matches error classes on dot-separated names, so the Rust `::` path is
/// not kept: `RateLimitError` must find it.
fn short_type_name(full: &str) -> &str {
    let path = full.split('<').next().unwrap_or(full);
    let last = path.rsplit("::").next().unwrap_or(path);
    last.strip_prefix("dyn ").unwrap_or(last).trim()
}

/// The `source()` chain as "Caused by:" lines, then the backtrace if one
/// was captured; empty when there is neither.
fn stacktrace<E: Error + ?Sized>(err: &E, backtrace: &Backtrace) -> String {
    let mut out = String::new();
    let mut cause = err.source();
    if cause.is_some() {
        out.push_str("Caused by:\n");
    }
    let mut n = 0;
    while let Some(c) = cause {
        let _ = writeln!(out, "    {n}: {c}");
        n += 1;
        cause = c.source();
    }
    if backtrace.status() == BacktraceStatus::Captured {
        if !out.is_empty() {
            out.push('\n');
        }
        let _ = write!(out, "Stack backtrace:\n{backtrace}");
    }
    out
}

#[cfg(test)]
mod tests {
    use std::fmt;

    use opentelemetry::trace::Status;

    use super::*;
    use crate::in_span;
    use crate::test_support::{event_attr, finished, named};

    #[derive(Debug)]
    struct RateLimitError {
        source: std::io::Error,
    }
    impl fmt::Display for RateLimitError {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("rate limit exceeded")
        }
    }
    impl Error for RateLimitError {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            Some(&self.source)
        }
    }

    #[test]
    fn short_type_names() {
        assert_eq!(
            short_type_name("my_app::client::RateLimitError"),
            "RateLimitError"
        );
        assert_eq!(
            short_type_name("my_app::Wrapper<alloc::string::String>"),
            "Wrapper"
        );
        assert_eq!(short_type_name("dyn core::error::Error"), "Error");
        assert_eq!(short_type_name("Plain"), "Plain");
    }

    #[test]
    fn records_status_type_and_exception_event_with_causes() {
        let err = RateLimitError {
            source: std::io::Error::other("HTTP 429"),
        };
        let trace_id = in_span("api_call", |cx| {
            record_error(&err);
            cx.span().span_context().trace_id()
        });
        let spans = finished(trace_id);
        let span = named(&spans, "api_call");
        assert_eq!(span.status, Status::error("rate limit exceeded"));
        assert!(span
            .attributes
            .contains(&KeyValue::new("error.type", "RateLimitError")));
        let event = span
            .events
            .iter()
            .find(|e| e.name == "exception")
            .expect("exception event");
        assert_eq!(
            event_attr(event, "exception.type").as_deref(),
            Some("RateLimitError")
        );
        assert_eq!(
            event_attr(event, "exception.message").as_deref(),
            Some("rate limit exceeded")
        );
        let stack = event_attr(event, "exception.stacktrace").expect("stacktrace");
        assert!(stack.starts_with("Caused by:\n    0: HTTP 429"), "{stack}");
    }

    #[test]
    fn caller_named_type_and_no_stacktrace_without_causes_or_backtrace() {
        let err = std::io::Error::other("boom");
        let trace_id = in_span("call", |cx| {
            record_error_as(&err, "RateLimitError");
            cx.span().span_context().trace_id()
        });
        let spans = finished(trace_id);
        let span = named(&spans, "call");
        assert!(span
            .attributes
            .contains(&KeyValue::new("error.type", "RateLimitError")));
        let event = &span.events.events[0];
        assert_eq!(
            event_attr(event, "exception.type").as_deref(),
            Some("RateLimitError")
        );
        // Backtraces are off in this test process unless RUST_BACKTRACE is set.
        if Backtrace::capture().status() != BacktraceStatus::Captured {
            assert_eq!(event_attr(event, "exception.stacktrace"), None);
        }
    }

    #[test]
    fn a_captured_backtrace_follows_the_causes() {
        let err = RateLimitError {
            source: std::io::Error::other("HTTP 429"),
        };
        let text = stacktrace(&err, &Backtrace::force_capture());
        assert!(
            text.starts_with("Caused by:\n    0: HTTP 429\n\nStack backtrace:\n"),
            "{text}"
        );
        assert_eq!(
            stacktrace(&std::io::Error::other("x"), &Backtrace::disabled()),
            ""
        );
    }
}
