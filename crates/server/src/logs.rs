//! Log records in the query API: `GET /api/v1/logs`, and the records of a
//! trace beside its spans.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chaintrace_model::{LogOut, LogRecord, LogTables, Resource, Scope, Severity, SpanId, TraceId};
use chaintrace_store::{LogPage, LogQuery, Store, StoreError, MAX_LOG_LIMIT};
use serde::{Deserialize, Serialize};

use crate::api::{error, parse_trace_id, store_error, AppState};
use crate::range::RangeParams;

/// The most records a trace answer carries; past it the answer says
/// `logs_truncated` and `/api/v1/logs?trace_id=` pages through the rest.
pub const MAX_TRACE_LOGS: usize = MAX_LOG_LIMIT;

/// Query parameters of `GET /api/v1/logs`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct LogParams {
    trace_id: Option<String>,
    span_id: Option<String>,
    /// Lowest severity: `warn` keeps WARN, ERROR and FATAL.
    severity: Option<String>,
    service: Option<String>,
    /// Text the body or an attribute value contains, ignoring case.
    q: Option<String>,
    since: Option<String>,
    start: Option<String>,
    end: Option<String>,
    limit: Option<usize>,
}

impl LogParams {
    /// The store query these parameters ask for, or what is wrong with them.
    fn query(self) -> Result<LogQuery, String> {
        let nonempty = |s: Option<String>| s.filter(|s| !s.trim().is_empty());
        let trace_id = match nonempty(self.trace_id) {
            Some(text) => Some(parse_trace_id(text.trim())?),
            None => None,
        };
        let span_id = match nonempty(self.span_id) {
            Some(text) => Some(
                text.trim()
                    .parse::<SpanId>()
                    .map_err(|e| format!("span_id: {e}"))?,
            ),
            None => None,
        };
        let min_severity = match nonempty(self.severity) {
            Some(text) => Some(
                text.parse::<Severity>()
                    .map_err(|e| format!("severity: {e}"))?,
            ),
            None => None,
        };
        let limit = self.limit.unwrap_or(100);
        if limit == 0 || limit > MAX_LOG_LIMIT {
            return Err(format!(
                "limit must be between 1 and {MAX_LOG_LIMIT}, got {limit}"
            ));
        }
        let range = RangeParams {
            since: nonempty(self.since),
            start: self.start,
            end: self.end,
        }
        .resolve(None)?;
        Ok(LogQuery {
            trace_id,
            span_id,
            min_severity,
            service: nonempty(self.service),
            text: nonempty(self.q),
            start: range.start,
            end: range.end,
            limit,
        })
    }
}

/// The answer of `GET /api/v1/logs`: records newest first, with their
/// resources and scopes by index (see `chaintrace_model::LogTables`).
#[derive(Serialize)]
struct LogsAnswer<'a> {
    logs: Vec<LogOut<'a>>,
    resources: Vec<&'a Resource>,
    scopes: Vec<&'a Scope>,
    /// Records that matched; more than `logs` holds when the limit cut.
    matched: u64,
    /// Records the store read to answer.
    inspected: u64,
    /// The store stopped at its bound before it saw every record in range.
    truncated: bool,
}

/// `GET /api/v1/logs?trace_id=&span_id=&severity=&service=&q=&since=&start=&end=&limit=`.
pub(crate) async fn logs(
    State(AppState { store, cpu, .. }): State<AppState>,
    Query(params): Query<LogParams>,
) -> Response {
    let query = match params.query() {
        Ok(query) => query,
        Err(msg) => return error(StatusCode::BAD_REQUEST, msg),
    };
    let slot = match cpu.slot().await {
        Ok(slot) => slot,
        Err(e) => return e.into_response(),
    };
    match store.logs(query).await {
        Ok(page) => {
            slot.respond(move || {
                let tables = LogTables::new(&page.logs);
                crate::cpu::json_response(
                    StatusCode::OK,
                    &LogsAnswer {
                        logs: tables.logs,
                        resources: tables.resources,
                        scopes: tables.scopes,
                        matched: page.matched,
                        inspected: page.inspected,
                        truncated: page.truncated,
                    },
                )
            })
            .await
        }
        Err(e) => store_error(e),
    }
}

/// The records of trace `id` (of one span when `span` is set), oldest
/// first, and whether there were more than [`MAX_TRACE_LOGS`].
pub(crate) async fn trace_logs(
    store: &dyn Store,
    id: TraceId,
    span: Option<SpanId>,
) -> Result<(Vec<LogRecord>, bool), StoreError> {
    let LogPage {
        mut logs,
        matched,
        truncated,
        ..
    } = store
        .logs(LogQuery {
            trace_id: Some(id),
            span_id: span,
            limit: MAX_TRACE_LOGS,
            ..LogQuery::default()
        })
        .await?;
    let cut = truncated || matched > logs.len() as u64;
    // The store answers newest first; a trace reads in time order.
    logs.reverse();
    Ok((logs, cut))
}

/// A trace's records as its answer carries them: `logs` (each naming its
/// entry of `log_resources` and `log_scopes`) and `logs_truncated`.
#[derive(Serialize)]
pub(crate) struct TraceLogs<'a> {
    logs: Vec<LogOut<'a>>,
    log_resources: Vec<&'a Resource>,
    log_scopes: Vec<&'a Scope>,
    logs_truncated: bool,
}

impl<'a> TraceLogs<'a> {
    pub(crate) fn new(logs: &'a [LogRecord], truncated: bool) -> TraceLogs<'a> {
        let tables = LogTables::new(logs);
        TraceLogs {
            logs: tables.logs,
            log_resources: tables.resources,
            log_scopes: tables.scopes,
            logs_truncated: truncated,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> LogParams {
        let text = pairs
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&");
        serde_urlencoded::from_str(&text).expect("parameters parse")
    }

    #[test]
    fn parameters_become_a_store_query() {
        let q = params(&[
            ("trace_id", "0af7651916cd43dd8448eb211c80319c"),
            ("span_id", "b7ad6b7169203331"),
            ("severity", "warning"),
            ("service", "rag"),
            ("q", "timeout"),
            ("since", "1h"),
            ("limit", "5"),
        ])
        .query()
        .expect("valid");
        assert_eq!(
            q.trace_id.map(|t| t.to_hex()).as_deref(),
            Some("0af7651916cd43dd8448eb211c80319c")
        );
        assert_eq!(
            q.span_id.map(|s| s.to_hex()).as_deref(),
            Some("b7ad6b7169203331")
        );
        assert_eq!(q.min_severity, Some(Severity::Warn));
        assert_eq!(q.service.as_deref(), Some("rag"));
        assert_eq!(q.text.as_deref(), Some("timeout"));
        assert!(q.start.is_some());
        assert_eq!(q.limit, 5);
        assert_eq!(params(&[]).query().expect("no filter is fine").limit, 100);
    }

    #[test]
    fn bad_parameters_name_what_is_wrong() {
        let err = |pairs: &[(&str, &str)]| params(pairs).query().unwrap_err();
        assert!(err(&[("trace_id", "xyz")]).contains("trace id"));
        assert!(err(&[("span_id", "12")]).starts_with("span_id"));
        assert!(err(&[("severity", "loud")]).contains("unknown severity"));
        assert!(err(&[("limit", "0")]).contains("limit"));
        assert!(err(&[("limit", "10001")]).contains("10000"));
        assert!(err(&[("since", "soon")]).contains("since"));
        assert!(err(&[("since", "1h"), ("start", "5")]).contains("either"));
    }
}
