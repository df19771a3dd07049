//! Retrying a fallible async call with exponential backoff, one span per
//! attempt: every attempt is a sibling span of the same name under the
//! caller's span, the failed ones carry their error (see
//! [`crate::record_error`]). That is the shape chaintrace folds into one
//! "api_call ×2 — 1 failed" row and prices as the cost of retries.
//!
//! This module decides when to try again and how long to wait; it knows
//! nothing of what the call does.

use std::error::Error;
use std::fmt;
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::time::Duration;

use crate::span::NewSpan;

type RetryIf = Arc<dyn Fn(&(dyn Error + 'static)) -> bool + Send + Sync>;

/// How often and how patiently to retry.
///
/// The wait after failed attempt *n* is `backoff × 2^(n-1)`, at most
/// `max_backoff`; with jitter (the default) a random value between half of
/// that and all of it, so that many clients do not retry in step.
///
/// ```
/// # async fn demo() {
/// use std::time::Duration;
/// use chaintrace_sdk::Retry;
///
/// # async fn call_model(_attempt: u32) -> Result<String, std::io::Error> { Ok(String::new()) }
/// let answer = Retry::attempts(3)
///     .backoff(Duration::from_millis(200))
///     .run("api_call", |attempt| call_model(attempt))
///     .await;
/// # }
/// ```
#[derive(Clone)]
pub struct Retry {
    max_attempts: u32,
    backoff: Duration,
    max_backoff: Duration,
    jitter: bool,
    retry_if: Option<RetryIf>,
}

impl fmt::Debug for Retry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Retry")
            .field("max_attempts", &self.max_attempts)
            .field("backoff", &self.backoff)
            .field("max_backoff", &self.max_backoff)
            .field("jitter", &self.jitter)
            .field("retry_if", &self.retry_if.is_some())
            .finish()
    }
}

impl Default for Retry {
    /// Three attempts, 200 ms then 400 ms apart (jittered), every error retried.
    fn default() -> Retry {
        Retry::attempts(3)
    }
}

impl Retry {
    /// At most `max_attempts` attempts in all (the first included; 0 counts
    /// as 1), 200 ms initial backoff, 30 s at most, jittered.
    pub fn attempts(max_attempts: u32) -> Retry {
        Retry {
            max_attempts: max_attempts.max(1),
            backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(30),
            jitter: true,
            retry_if: None,
        }
    }

    /// The wait after the first failed attempt; it doubles after each next one.
    pub fn backoff(mut self, backoff: Duration) -> Retry {
        self.backoff = backoff;
        self
    }

    /// The longest wait between two attempts.
    pub fn max_backoff(mut self, max_backoff: Duration) -> Retry {
        self.max_backoff = max_backoff;
        self
    }

    /// Whether waits are jittered (on by default).
    pub fn jitter(mut self, jitter: bool) -> Retry {
        self.jitter = jitter;
        self
    }

    /// Retries only errors for which `retryable` answers true (downcast to
    /// find your type); any other error is returned at once. Without it,
    /// every error is retried.
    pub fn retry_if(
        mut self,
        retryable: impl Fn(&(dyn Error + 'static)) -> bool + Send + Sync + 'static,
    ) -> Retry {
        self.retry_if = Some(Arc::new(retryable));
        self
    }

    /// The wait after failed attempt `attempt` (1-based), before jitter.
    fn delay(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1));
        self.backoff.saturating_mul(factor).min(self.max_backoff)
    }

    /// Calls `op(attempt)` (1-based) until it succeeds, fails with an error
    /// not to be retried, or the attempts are used up; returns the last
    /// result. Each attempt runs in its own span made from `attempt_span`
    /// (a name, or a [`NewSpan`] with kind and attributes), a child of the
    /// span current where the returned future runs, with a `retry.attempt`
    /// attribute; a failed attempt's span records its error.
    ///
    /// Waits use `tokio::time::sleep`: run it on a Tokio runtime with time
    /// enabled.
    pub async fn run<T, E, F, Fut>(
        &self,
        attempt_span: impl Into<NewSpan>,
        mut op: F,
    ) -> Result<T, E>
    where
        E: Error + 'static,
        F: FnMut(u32) -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let attempt_span = attempt_span.into();
        let mut attempt = 1;
        loop {
            let result = attempt_span
                .clone()
                .attr("retry.attempt", i64::from(attempt))
                .try_run(op(attempt))
                .await;
            let err = match result {
                Ok(value) => return Ok(value),
                Err(err) => err,
            };
            let retryable = self.retry_if.as_ref().is_none_or(|f| f(&err));
            if !retryable || attempt >= self.max_attempts {
                return Err(err);
            }
            tokio::time::sleep(self.jittered(self.delay(attempt))).await;
            attempt += 1;
        }
    }

    fn jittered(&self, delay: Duration) -> Duration {
        if !self.jitter || delay.is_zero() {
            return delay;
        }
        // A fresh random seed per call from the standard library: enough
        // spread for backoff, no dependency.
        let random = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        let half = delay / 2;
        let nanos = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX);
        half + Duration::from_nanos(random % nanos.saturating_add(1))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use opentelemetry::trace::Status;
    use opentelemetry::KeyValue;

    use super::*;
    use crate::test_support::{attr, finished, named};
    use crate::{current_trace_id, span};

    #[derive(Debug)]
    struct RateLimitError;
    impl fmt::Display for RateLimitError {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("rate limit exceeded")
        }
    }
    impl Error for RateLimitError {}

    #[derive(Debug)]
    struct BadRequest;
    impl fmt::Display for BadRequest {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("bad request")
        }
    }
    impl Error for BadRequest {}

    #[test]
    fn delays_double_up_to_the_cap_and_jitter_stays_within_half() {
        let retry = Retry::attempts(10)
            .backoff(Duration::from_millis(100))
            .max_backoff(Duration::from_millis(350));
        let delays: Vec<u128> = (1..=4).map(|n| retry.delay(n).as_millis()).collect();
        assert_eq!(delays, [100, 200, 350, 350]);
        for _ in 0..100 {
            let d = retry.jittered(Duration::from_millis(100));
            assert!(d >= Duration::from_millis(50) && d <= Duration::from_millis(100));
        }
        assert_eq!(
            retry.jitter(false).jittered(Duration::from_millis(100)),
            Duration::from_millis(100)
        );
        assert_eq!(Retry::attempts(0).max_attempts, 1);
    }

    #[tokio::test]
    async fn failed_attempts_are_sibling_spans_with_their_error() {
        let retry = Retry::attempts(3).backoff(Duration::from_millis(5));
        let (result, trace_id) = span("llm_call")
            .run(async {
                let result = retry
                    .run("api_call", |attempt| async move {
                        if attempt < 3 {
                            Err(RateLimitError)
                        } else {
                            Ok(attempt)
                        }
                    })
                    .await;
                (result, current_trace_id().unwrap())
            })
            .await;
        assert_eq!(result.unwrap(), 3);
        let spans = finished(trace_id);
        let llm = named(&spans, "llm_call").span_context.span_id();
        let mut attempts: Vec<_> = spans.iter().filter(|s| s.name == "api_call").collect();
        attempts.sort_by_key(|s| s.start_time);
        assert_eq!(attempts.len(), 3);
        for (i, s) in attempts.iter().enumerate() {
            assert_eq!(s.parent_span_id, llm);
            assert_eq!(attr(s, "retry.attempt"), Some((i + 1).to_string()));
        }
        for failed in &attempts[..2] {
            assert_eq!(failed.status, Status::error("rate limit exceeded"));
            assert!(failed
                .attributes
                .contains(&KeyValue::new("error.type", "RateLimitError")));
            assert_eq!(failed.events.events[0].name, "exception");
        }
        assert_eq!(attempts[2].status, Status::Unset);
        assert!(
            attempts[0].end_time <= attempts[1].start_time,
            "attempts follow each other"
        );
    }

    #[tokio::test]
    async fn gives_up_after_max_attempts_or_on_a_non_retryable_error() {
        let calls = AtomicU32::new(0);
        let result: Result<(), _> = Retry::attempts(2)
            .backoff(Duration::from_millis(1))
            .run("call", |_| async {
                calls.fetch_add(1, Ordering::Relaxed);
                Err(RateLimitError)
            })
            .await;
        assert!(result.is_err());
        assert_eq!(calls.load(Ordering::Relaxed), 2);

        let calls = AtomicU32::new(0);
        let result: Result<(), _> = Retry::attempts(5)
            .backoff(Duration::from_millis(1))
            .retry_if(|e| e.downcast_ref::<BadRequest>().is_none())
            .run("call", |_| async {
                calls.fetch_add(1, Ordering::Relaxed);
                Err(BadRequest)
            })
            .await;
        assert!(result.is_err());
        assert_eq!(calls.load(Ordering::Relaxed), 1, "not retried");
    }
}
