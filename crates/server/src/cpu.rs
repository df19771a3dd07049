//! CPU-heavy request work, off the async workers, on a bounded pool.
//!
//! The async workers must stay free to accept connections, answer
//! `/api/v1/health` and take ingest: two 11-second analyses once starved
//! them all. So everything whose cost grows with the data — analysis,
//! analytics over thousands of traces, converting and serialising whole
//! traces — runs here instead: on tokio's blocking threads, at most
//! `slots` jobs at once (the machine's cores), each admitted within a
//! queue wait or refused with 503 and `Retry-After`, never queued without
//! bound. A job that panics is answered 500 and logged, not taken for a
//! closed store.
//!
//! It must not know about HTTP routes: it runs closures and says why one
//! did not run.

use std::sync::Arc;
use std::time::Duration;

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How long a job waits for a free slot before it is refused.
pub const DEFAULT_QUEUE_WAIT: Duration = Duration::from_secs(10);

/// A bounded pool for CPU-heavy request work.
#[derive(Debug, Clone)]
pub struct CpuPool {
    slots: Arc<Semaphore>,
    queue_wait: Duration,
}

/// Why a job did not produce its result.
#[derive(Debug, thiserror::Error)]
pub enum CpuError {
    /// Every slot stayed busy for the whole queue wait.
    #[error("the server is busy with other heavy requests; retry in a few seconds")]
    Busy,
    /// The job panicked: a bug, logged where it happened.
    #[error("internal error: {0}")]
    Panicked(String),
}

impl IntoResponse for CpuError {
    fn into_response(self) -> Response {
        let body = axum::Json(serde_json::json!({ "error": self.to_string() }));
        match self {
            CpuError::Busy => (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::RETRY_AFTER, "2")],
                body,
            )
                .into_response(),
            CpuError::Panicked(_) => (StatusCode::INTERNAL_SERVER_ERROR, body).into_response(),
        }
    }
}

impl Default for CpuPool {
    /// One slot per core.
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        CpuPool::new(cores, DEFAULT_QUEUE_WAIT)
    }
}

impl CpuPool {
    /// A pool running at most `slots` jobs at once (at least one), each
    /// waiting at most `queue_wait` for its turn.
    pub fn new(slots: usize, queue_wait: Duration) -> CpuPool {
        CpuPool {
            slots: Arc::new(Semaphore::new(slots.max(1))),
            queue_wait,
        }
    }

    /// Waits for a free slot, at most the queue wait. A request holds its
    /// slot from loading its data to building its answer, so the data of
    /// at most `slots` heavy requests is in memory at once: loading first
    /// and queueing after would let every waiting request hold its trace.
    pub async fn slot(&self) -> Result<Slot, CpuError> {
        let permit = tokio::time::timeout(self.queue_wait, Arc::clone(&self.slots).acquire_owned())
            .await
            .map_err(|_| CpuError::Busy)?
            .map_err(|_| CpuError::Busy)?;
        Ok(Slot { _permit: permit })
    }

    /// Runs `work` on a blocking thread once a slot is free.
    pub async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, CpuError> {
        self.slot().await?.run(work).await
    }

    /// Serialises `value` as a JSON answer with `status`, in the pool: a
    /// whole trace or a page of traces is megabytes of JSON.
    pub async fn json<T: Serialize + Send + 'static>(
        &self,
        status: StatusCode,
        value: T,
    ) -> Response {
        self.respond(move || json_response(status, &value)).await
    }

    /// Runs `work`, which builds the answer, in the pool; a job that did not
    /// run answers as [`CpuError`] says.
    pub async fn respond(&self, work: impl FnOnce() -> Response + Send + 'static) -> Response {
        match self.run(work).await {
            Ok(response) => response,
            Err(e) => e.into_response(),
        }
    }
}

/// An answer at least this large marks its job as large (see
/// [`chaintrace_model::memory`]): the same bar as a job's peak.
///
/// At 1 MiB the Gantt of every big trace gave its memory back, and the
/// next one faulted it all in again, the kernel zeroing each fresh page:
/// on a 100 000-span trace (an 8 MiB answer) a third of the request's
/// time. Jobs run one per core, so what they keep between them is a few
/// such jobs' worth, and mimalloc returns it a minute later anyway.
const LARGE_ANSWER_BYTES: u64 = chaintrace_model::memory::LARGE_JOB_BYTES as u64;

/// One slot of a [`CpuPool`], held by one request; see [`CpuPool::slot`].
#[derive(Debug)]
pub struct Slot {
    _permit: OwnedSemaphorePermit,
}

impl Slot {
    /// Runs `work` on a blocking thread, giving the slot back when it ends.
    pub async fn run<T: Send + 'static>(
        self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, CpuError> {
        let joined = tokio::task::spawn_blocking(move || {
            let _slot = self;
            work()
        })
        .await;
        joined.map_err(|e| {
            let what = if e.is_panic() {
                let panic = e.into_panic();
                panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a panic without a message".to_string())
            } else {
                "the job was cancelled at shutdown".to_string()
            };
            tracing::error!(error = %what, "a request job panicked");
            CpuError::Panicked(what)
        })
    }

    /// Runs `work`, which builds the answer, on a blocking thread.
    pub async fn respond(self, work: impl FnOnce() -> Response + Send + 'static) -> Response {
        let work = move || {
            let response = work();
            // A job that wrote a large answer held more while it worked:
            // give back what it freed. Small ones keep it for the next.
            let size = axum::body::HttpBody::size_hint(response.body()).lower();
            if size >= LARGE_ANSWER_BYTES {
                chaintrace_model::memory::release_unused();
            }
            response
        };
        match self.run(work).await {
            Ok(response) => response,
            Err(e) => e.into_response(),
        }
    }

    /// Serialises `value` as a JSON answer with `status`, on a blocking thread.
    pub async fn json<T: Serialize + Send + 'static>(
        self,
        status: StatusCode,
        value: T,
    ) -> Response {
        self.respond(move || json_response(status, &value)).await
    }
}

/// Largest JSON answer built: past it the request is refused, with a
/// message asking for less, instead of holding gigabytes while writing it.
pub const MAX_ANSWER_BYTES: usize = 256 << 20;

/// Collects serialised bytes until a cap, then fails.
struct CappedWriter(Vec<u8>, usize);

impl std::io::Write for CappedWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.0.len() + buf.len() > self.1 {
            return Err(std::io::Error::other("answer over the cap"));
        }
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// `value` as a JSON answer with `status`, serialised here (call it inside
/// the pool); over [`MAX_ANSWER_BYTES`] it is a 400 that says so.
pub fn json_response<T: Serialize + ?Sized>(status: StatusCode, value: &T) -> Response {
    capped_json_response(status, value, MAX_ANSWER_BYTES, 0)
}

/// [`json_response`] into a buffer sized for about `expected` bytes (at
/// most the cap): a 16 MB answer then is written once, not grown and
/// copied a dozen times.
pub fn json_response_sized<T: Serialize + ?Sized>(
    status: StatusCode,
    value: &T,
    expected: usize,
) -> Response {
    capped_json_response(status, value, MAX_ANSWER_BYTES, expected)
}

fn capped_json_response<T: Serialize + ?Sized>(
    status: StatusCode,
    value: &T,
    cap: usize,
    expected: usize,
) -> Response {
    let mut out = CappedWriter(Vec::with_capacity(expected.min(cap)), cap);
    match serde_json::to_writer(&mut out, value) {
        Ok(()) => (status, [(header::CONTENT_TYPE, "application/json")], out.0).into_response(),
        Err(e) if e.is_io() => (
            StatusCode::BAD_REQUEST,
            axum::Json(serde_json::json!({ "error": format!(
                "the answer would be over {} MiB of JSON; ask for less (a narrower time range, \
                 a lower limit, fewer trace ids)",
                cap >> 20
            ) })),
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "cannot serialise an answer");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                axum::Json(
                    serde_json::json!({ "error": format!("cannot serialise the answer: {e}") }),
                ),
            )
                .into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_over_the_cap_is_refused_not_built() {
        let big = vec!["x".repeat(1024); 3 << 10];
        let ok = capped_json_response(StatusCode::OK, &big, 4 << 20, 0);
        assert_eq!(ok.status(), StatusCode::OK);
        let refused = capped_json_response(StatusCode::OK, &big, 2 << 20, 0);
        assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    }

    #[tokio::test]
    async fn a_panicking_job_is_an_internal_error_and_the_pool_goes_on() {
        let pool = CpuPool::new(1, Duration::from_secs(5));
        let err = pool.run(|| -> u32 { panic!("boom") }).await.unwrap_err();
        assert!(
            matches!(&err, CpuError::Panicked(m) if m == "boom"),
            "{err}"
        );
        assert_eq!(
            err.into_response().status(),
            StatusCode::INTERNAL_SERVER_ERROR
        );
        assert_eq!(pool.run(|| 7).await.unwrap(), 7);
    }

    #[tokio::test]
    async fn a_job_finding_every_slot_busy_past_the_wait_is_refused_with_retry_after() {
        let pool = CpuPool::new(1, Duration::from_millis(20));
        let (release, hold) = std::sync::mpsc::channel::<()>();
        let busy = {
            let pool = pool.clone();
            tokio::spawn(async move { pool.run(move || hold.recv().ok()).await })
        };
        // Wait until the first job holds the only slot.
        while pool.slots.available_permits() > 0 {
            tokio::task::yield_now().await;
        }
        let refused = pool.run(|| 1).await.unwrap_err();
        assert!(matches!(refused, CpuError::Busy));
        let response = refused.into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(response.headers().contains_key(header::RETRY_AFTER));
        release.send(()).unwrap();
        assert!(busy.await.unwrap().is_ok());
        assert_eq!(pool.run(|| 2).await.unwrap(), 2);
    }

    #[tokio::test]
    async fn a_slot_taken_before_loading_is_held_until_its_job_ends() {
        let pool = CpuPool::new(1, Duration::from_millis(20));
        // A request holds its slot while it loads (no job running yet):
        // another finds the pool full.
        let loading = pool.slot().await.unwrap();
        assert!(matches!(pool.slot().await, Err(CpuError::Busy)));
        assert!(matches!(pool.run(|| 1).await, Err(CpuError::Busy)));
        // Its job runs in the same slot, which is free once the job ends.
        assert_eq!(loading.run(|| 2).await.unwrap(), 2);
        assert_eq!(pool.run(|| 3).await.unwrap(), 3);
    }
}
