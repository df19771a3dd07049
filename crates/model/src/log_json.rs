//! The JSON shape of a list of [`LogRecord`]s: like a trace document, each
//! resource and scope once in a table of its own and every record naming
//! its own by index, because records of one export share them and either
//! can be large.
//!
//! ```json
//! {"resources": [{"attributes": […]}], "scopes": [{"name": "app"}],
//!  "logs": [{"time": 1700000000000000000, "severity": "WARN",
//!            "severity_number": 13, "severity_text": "WARNING",
//!            "body": {"string": "retrying"}, "message": "retrying",
//!            "attributes": […], "trace_id": "…", "span_id": "…",
//!            "resource": 0, "scope": 0, …}]}
//! ```
//!
//! Where the tables live (and under which keys) is the caller's choice: the
//! query API writes them beside the records of `/api/v1/logs` and beside a
//! trace's spans. [`LogTables`] builds the three parts; [`resolve_logs`]
//! reads them back.

use std::sync::Arc;

use compact_str::CompactString;
use serde::{Deserialize, Serialize, Serializer};

use crate::log::LogRecord;
use crate::span::{AnyValue, KeyValue, Resource, Scope, UnixNanos};
use crate::trace_json::Distinct;
use crate::{SpanId, TraceId};

/// Records ready to be written: the distinct resources and scopes in
/// first-use order, and each record with their indexes.
pub struct LogTables<'a> {
    /// Distinct resources; a record's `resource` indexes this.
    pub resources: Vec<&'a Resource>,
    /// Distinct scopes; a record's `scope` indexes this.
    pub scopes: Vec<&'a Scope>,
    /// The records, in the order given.
    pub logs: Vec<LogOut<'a>>,
}

impl<'a> LogTables<'a> {
    /// Splits `logs` into records and their shared tables.
    pub fn new(logs: &'a [LogRecord]) -> LogTables<'a> {
        let mut resources = Distinct::new();
        let mut scopes = Distinct::new();
        let logs = logs
            .iter()
            .map(|log| LogOut {
                resource: resources.index_of(&log.resource),
                scope: scopes.index_of(&log.scope),
                log,
            })
            .collect();
        LogTables {
            resources: resources.values,
            scopes: scopes.values,
            logs,
        }
    }
}

/// One record as written: its fields, the coarse `severity` name, the body
/// as display text (`message`), and its resource and scope by index.
pub struct LogOut<'a> {
    log: &'a LogRecord,
    resource: usize,
    scope: usize,
}

impl Serialize for LogOut<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let log = self.log;
        let mut out = serializer.serialize_struct("LogRecord", 15)?;
        out.serialize_field("time", &log.time)?;
        out.serialize_field("observed_time", &log.observed_time)?;
        out.serialize_field("severity", &log.severity())?;
        out.serialize_field("severity_number", &log.severity_number)?;
        out.serialize_field("severity_text", &log.severity_text)?;
        out.serialize_field("body", &log.body)?;
        out.serialize_field("message", &log.message())?;
        out.serialize_field("attributes", &log.attributes)?;
        out.serialize_field("trace_id", &log.trace_id)?;
        out.serialize_field("span_id", &log.span_id)?;
        out.serialize_field("flags", &log.flags)?;
        out.serialize_field("event_name", &log.event_name)?;
        out.serialize_field("dropped_attributes_count", &log.dropped_attributes_count)?;
        out.serialize_field("resource", &self.resource)?;
        out.serialize_field("scope", &self.scope)?;
        out.end()
    }
}

/// One record as read back; `severity` and `message` are derived, so they
/// are not read.
#[derive(Debug, Deserialize)]
pub struct LogIn {
    time: UnixNanos,
    #[serde(default)]
    observed_time: UnixNanos,
    #[serde(default)]
    severity_number: u8,
    #[serde(default)]
    severity_text: CompactString,
    body: AnyValue,
    #[serde(default)]
    attributes: Vec<KeyValue>,
    trace_id: Option<TraceId>,
    span_id: Option<SpanId>,
    #[serde(default)]
    flags: u32,
    #[serde(default)]
    event_name: CompactString,
    #[serde(default)]
    dropped_attributes_count: u32,
    resource: usize,
    scope: usize,
}

/// Joins records read back with their tables; an error names the record
/// whose index points past its table.
pub fn resolve_logs(
    resources: &[Arc<Resource>],
    scopes: &[Arc<Scope>],
    logs: Vec<LogIn>,
) -> Result<Vec<LogRecord>, String> {
    logs.into_iter()
        .enumerate()
        .map(|(i, l)| {
            let resource = resources.get(l.resource).cloned().ok_or_else(|| {
                format!(
                    "log {i} names resource {}, but there are {}",
                    l.resource,
                    resources.len()
                )
            })?;
            let scope = scopes.get(l.scope).cloned().ok_or_else(|| {
                format!(
                    "log {i} names scope {}, but there are {}",
                    l.scope,
                    scopes.len()
                )
            })?;
            Ok(LogRecord {
                time: l.time,
                observed_time: l.observed_time,
                severity_number: l.severity_number,
                severity_text: l.severity_text,
                body: l.body,
                attributes: l.attributes,
                trace_id: l.trace_id,
                span_id: l.span_id,
                flags: l.flags,
                event_name: l.event_name,
                dropped_attributes_count: l.dropped_attributes_count,
                resource,
                scope,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(n: u8, resource: &Arc<Resource>, scope: &Arc<Scope>) -> LogRecord {
        LogRecord {
            time: UnixNanos(1_700_000_000_000_000_000 + u64::from(n)),
            observed_time: UnixNanos(0),
            severity_number: 13,
            severity_text: "WARNING".into(),
            body: AnyValue::String(format!("retry {n}").into()),
            attributes: vec![KeyValue::new("attempt", AnyValue::Int(i64::from(n)))],
            trace_id: Some(TraceId([7; 16])),
            span_id: Some(SpanId([n; 8])),
            flags: 1,
            event_name: CompactString::default(),
            dropped_attributes_count: 0,
            resource: Arc::clone(resource),
            scope: Arc::clone(scope),
        }
    }

    #[derive(Deserialize)]
    struct Doc {
        resources: Vec<Arc<Resource>>,
        scopes: Vec<Arc<Scope>>,
        logs: Vec<LogIn>,
    }

    #[test]
    fn records_share_their_tables_and_read_back_equal() {
        let resource = Arc::new(Resource {
            attributes: vec![KeyValue::new(
                "service.name",
                AnyValue::String("rag".into()),
            )],
        });
        let other = Arc::new(Resource::default());
        let scope = Arc::new(Scope {
            name: "app.chain".into(),
            version: CompactString::default(),
        });
        let logs = vec![
            record(1, &resource, &scope),
            record(2, &other, &scope),
            record(3, &resource, &scope),
        ];
        let tables = LogTables::new(&logs);
        let json = serde_json::json!({
            "resources": tables.resources,
            "scopes": tables.scopes,
            "logs": tables.logs,
        });
        assert_eq!(json["resources"].as_array().map(Vec::len), Some(2));
        assert_eq!(json["scopes"].as_array().map(Vec::len), Some(1));
        assert_eq!(json["logs"][2]["resource"], 0);
        assert_eq!(json["logs"][1]["resource"], 1);
        assert_eq!(json["logs"][0]["severity"], "WARN");
        assert_eq!(json["logs"][0]["message"], "retry 1");
        assert_eq!(json["logs"][0]["span_id"], "0101010101010101");

        let doc: Doc = serde_json::from_value(json).expect("reads back");
        let back = resolve_logs(&doc.resources, &doc.scopes, doc.logs).expect("indexes valid");
        assert_eq!(back, logs);
    }

    #[test]
    fn an_index_past_its_table_is_an_error_naming_the_record() {
        let json = serde_json::json!({
            "resources": [], "scopes": [{"name": "a"}],
            "logs": [{"time": 1, "body": {"string": "x"}, "trace_id": null, "span_id": null,
                      "resource": 0, "scope": 0}],
        });
        let doc: Doc = serde_json::from_value(json).expect("shape is right");
        let err = resolve_logs(&doc.resources, &doc.scopes, doc.logs).unwrap_err();
        assert!(err.contains("log 0 names resource 0"), "{err}");
    }
}
