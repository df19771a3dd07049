//! What the query API shows in `/metrics`, and the endpoint itself:
//! request latency per endpoint (the route template, e.g.
//! `/api/v1/traces/{trace_id}`, never the raw path, so the series stay
//! few), SQL queries running and refused. The handlers only update
//! handles; rendering belongs to [`chaintrace_metrics::Registry`].

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use chaintrace_metrics::{Counter, Histogram, Registry, LATENCY_BUCKETS};

/// The label of requests no route matched (404s), so that probing random
/// paths cannot make new series.
const UNMATCHED: &str = "unmatched";

const REQUEST_SECONDS: &str = "chaintrace_api_request_duration_seconds";
const REQUEST_SECONDS_HELP: &str =
    "Time from a query API request's arrival to its answer's headers, by route template.";

/// The query API's handles. Without a registry (`ApiMetrics::default()`,
/// what [`crate::router`] uses) they count and are never shown.
#[derive(Clone, Default)]
pub struct ApiMetrics {
    registry: Option<Registry>,
    /// One histogram per route template, made at a template's first request
    /// and read under a read lock after that.
    latency: Arc<RwLock<HashMap<String, Histogram>>>,
    /// SQL requests turned away because another query held the slot.
    pub(crate) sql_busy: Counter,
    /// SQL requests refused with a 400: a bad body or query, a range with
    /// too many spans, or a query stopped by one of its limits.
    pub(crate) sql_invalid: Counter,
}

impl std::fmt::Debug for ApiMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiMetrics").finish_non_exhaustive()
    }
}

impl ApiMetrics {
    /// Handles shown in `registry`.
    pub fn registered(registry: &Registry) -> Self {
        let refused = |reason| {
            registry.counter(
                "chaintrace_sql_queries_refused_total",
                "SQL requests refused, by reason: busy (another query ran for the whole wait) \
                 or invalid (a bad body or query, too many spans, a query limit).",
                &[("reason", reason)],
            )
        };
        let metrics = ApiMetrics {
            registry: Some(registry.clone()),
            latency: Arc::default(),
            sql_busy: refused("busy"),
            sql_invalid: refused("invalid"),
        };
        let running = registry.gauge(
            "chaintrace_sql_queries_running",
            "SQL queries running now (at most one).",
            &[],
        );
        registry.on_scrape(move || running.set(crate::sql::running() as f64));
        metrics
    }

    /// The latency histogram of `endpoint`.
    fn latency(&self, endpoint: &str) -> Histogram {
        let cached = self
            .latency
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(endpoint)
            .cloned();
        if let Some(histogram) = cached {
            return histogram;
        }
        let labels = [("endpoint", endpoint)];
        let histogram = match &self.registry {
            Some(registry) => registry.histogram(
                REQUEST_SECONDS,
                REQUEST_SECONDS_HELP,
                &labels,
                LATENCY_BUCKETS,
            ),
            None => Histogram::new(LATENCY_BUCKETS),
        };
        self.latency
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(endpoint.to_string())
            .or_insert(histogram)
            .clone()
    }
}

/// Middleware: times each request under its route template.
pub(crate) async fn time_requests(
    State(metrics): State<ApiMetrics>,
    request: Request,
    next: Next,
) -> Response {
    let endpoint = request
        .extensions()
        .get::<MatchedPath>()
        .map_or(UNMATCHED.to_string(), |path| path.as_str().to_string());
    let started = Instant::now();
    let response = next.run(request).await;
    metrics
        .latency(&endpoint)
        .observe_duration(started.elapsed());
    response
}

/// `GET /metrics`: `registry` in the Prometheus text format 0.0.4.
///
/// ```
/// let registry = chaintrace_metrics::Registry::new();
/// let app: axum::Router = chaintrace_server::metrics_router(registry);
/// ```
pub fn metrics_router(registry: Registry) -> Router {
    Router::new().route(
        "/metrics",
        get(move || {
            let registry = registry.clone();
            async move {
                // Scrape hooks read files (the store's blocks, /proc).
                match tokio::task::spawn_blocking(move || registry.render()).await {
                    Ok(text) => (
                        [(header::CONTENT_TYPE, chaintrace_metrics::CONTENT_TYPE)],
                        text,
                    )
                        .into_response(),
                    Err(e) => {
                        tracing::error!(error = %e, "rendering /metrics failed");
                        crate::api::error(
                            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                            "rendering metrics failed (a bug; it is logged)".to_string(),
                        )
                    }
                }
            }
        }),
    )
}
