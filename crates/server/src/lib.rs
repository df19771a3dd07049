//! chaintrace's query API over HTTP.
//!
//! [`router`] serves the native JSON API under `/api/v1` (health, trace list,
//! whole trace with its log records, log search) and the Jaeger-compatible `/api/traces/{id}`, reading from any
//! [`chaintrace_store::Store`]. It never writes: ingest lives in
//! `chaintrace-ingest`. The web UI (`/`, `/trace/{id}`, assets under `/ui/`)
//! is served from here too, with its Gantt endpoint `/api/v1/traces/{id}/gantt`.

mod api;
pub mod auth;
mod compress;
pub mod cpu;
pub mod filter;
mod gantt;
pub mod jaeger;
mod jaeger_api;
mod logs;
pub mod loopback;
pub mod mcp;
mod metrics;
pub mod openapi;
pub mod percent;
pub mod range;
pub mod search;
mod sessions;
pub mod sql;
pub mod ui;

pub use api::{router, router_sharing, router_with_metrics, AppState, MAX_LIST_LIMIT};
pub use logs::MAX_TRACE_LOGS;
pub use metrics::{metrics_router, ApiMetrics};
