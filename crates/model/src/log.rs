//! Log records (OTLP logs): what a program wrote while a span ran, tied to
//! that span by its trace and span ids when the logging SDK knew them.

use std::sync::Arc;

use compact_str::CompactString;
use serde::{Deserialize, Serialize};

use crate::{AnyValue, KeyValue, Resource, Scope, SpanId, TraceId, UnixNanos};

/// One log record, as OTLP's `LogRecord` carries it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogRecord {
    /// When the event happened: the record's `time_unix_nano`, or its
    /// observed time when the sender left that at 0 (as the protocol
    /// allows). Every query orders and filters by this.
    pub time: UnixNanos,
    /// When the logging SDK or collector saw it; 0 when unknown.
    pub observed_time: UnixNanos,
    /// OTLP severity number, 0 (unspecified) to 24 (FATAL4); see
    /// [`Severity`].
    pub severity_number: u8,
    /// The severity as the source named it (`WARNING`, `warn`); may be empty.
    #[serde(default, skip_serializing_if = "CompactString::is_empty")]
    pub severity_text: CompactString,
    /// The message: usually a string, any [`AnyValue`] allowed.
    pub body: AnyValue,
    /// Record attributes (`code.function`, `exception.type`, ...).
    #[serde(default)]
    pub attributes: Vec<KeyValue>,
    /// The trace the record was written in, if any.
    pub trace_id: Option<TraceId>,
    /// The span the record was written in, if any.
    pub span_id: Option<SpanId>,
    /// W3C trace flags (OTLP `flags`).
    #[serde(default)]
    pub flags: u32,
    /// OTLP `event_name`: set when the record is an event of a named kind.
    #[serde(default, skip_serializing_if = "CompactString::is_empty")]
    pub event_name: CompactString,
    /// Attributes the sender dropped to stay within its limits.
    #[serde(default)]
    pub dropped_attributes_count: u32,
    /// The producing entity, shared by all records of one resource batch.
    pub resource: Arc<Resource>,
    /// The logging library, shared by all records of one scope batch.
    pub scope: Arc<Scope>,
}

impl LogRecord {
    /// The resource's `service.name`.
    pub fn service_name(&self) -> &str {
        self.resource.service_name()
    }

    /// The coarse severity of [`LogRecord::severity_number`], or, when that
    /// is 0, of [`LogRecord::severity_text`].
    pub fn severity(&self) -> Option<Severity> {
        Severity::from_number(self.severity_number)
            .or_else(|| self.severity_text.parse::<Severity>().ok())
    }

    /// The body as display text.
    pub fn message(&self) -> String {
        self.body.to_display_string()
    }
}

/// The six severity ranges of the OpenTelemetry log data model, each
/// covering four numbers (TRACE 1–4, DEBUG 5–8, INFO 9–12, WARN 13–16,
/// ERROR 17–20, FATAL 21–24). Ordered: `Warn < Error`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Severity {
    /// Numbers 1–4.
    Trace,
    /// Numbers 5–8.
    Debug,
    /// Numbers 9–12.
    Info,
    /// Numbers 13–16.
    Warn,
    /// Numbers 17–20.
    Error,
    /// Numbers 21–24.
    Fatal,
}

impl Severity {
    /// Every range, lowest first.
    pub const ALL: [Severity; 6] = [
        Severity::Trace,
        Severity::Debug,
        Severity::Info,
        Severity::Warn,
        Severity::Error,
        Severity::Fatal,
    ];

    /// The range holding OTLP severity number `n`; `None` for 0
    /// (unspecified) and numbers past 24.
    pub fn from_number(n: u8) -> Option<Severity> {
        match n {
            1..=24 => Some(Severity::ALL[usize::from((n - 1) / 4)]),
            _ => None,
        }
    }

    /// The lowest number of the range (TRACE 1, DEBUG 5, ..., FATAL 21).
    pub fn lowest_number(self) -> u8 {
        self as u8 * 4 + 1
    }

    /// The range's name as the data model spells it: `TRACE` ... `FATAL`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Trace => "TRACE",
            Severity::Debug => "DEBUG",
            Severity::Info => "INFO",
            Severity::Warn => "WARN",
            Severity::Error => "ERROR",
            Severity::Fatal => "FATAL",
        }
    }
}

/// Why a severity name could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown severity {0:?}: want trace, debug, info, warn, error or fatal")]
pub struct SeverityParseError(pub String);

impl std::str::FromStr for Severity {
    type Err = SeverityParseError;

    /// Reads a range name in any case, with the names logging libraries
    /// use for the same ranges (`warning`, `critical`, `err`).
    fn from_str(text: &str) -> Result<Severity, SeverityParseError> {
        let lower = text.trim().to_ascii_lowercase();
        // "WARN2", "ERROR3": the data model's short names of single numbers.
        let name = lower.trim_end_matches(|c: char| c.is_ascii_digit());
        Ok(match name {
            "trace" | "finest" | "finer" => Severity::Trace,
            "debug" | "fine" | "config" => Severity::Debug,
            "info" | "information" | "informational" | "notice" => Severity::Info,
            "warn" | "warning" => Severity::Warn,
            "error" | "err" | "severe" => Severity::Error,
            "fatal" | "critical" | "crit" | "alert" | "emergency" | "emerg" | "panic" => {
                Severity::Fatal
            }
            _ => return Err(SeverityParseError(text.chars().take(32).collect())),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn severity_numbers_map_to_their_ranges() {
        assert_eq!(Severity::from_number(0), None);
        assert_eq!(Severity::from_number(1), Some(Severity::Trace));
        assert_eq!(Severity::from_number(9), Some(Severity::Info));
        assert_eq!(Severity::from_number(13), Some(Severity::Warn));
        assert_eq!(Severity::from_number(17), Some(Severity::Error));
        assert_eq!(Severity::from_number(24), Some(Severity::Fatal));
        assert_eq!(Severity::from_number(25), None);
        for s in Severity::ALL {
            assert_eq!(Severity::from_number(s.lowest_number()), Some(s));
        }
        assert!(Severity::Warn < Severity::Error);
    }

    #[test]
    fn severity_names_are_read_as_logging_libraries_write_them() {
        assert_eq!("WARNING".parse(), Ok(Severity::Warn));
        assert_eq!("critical".parse(), Ok(Severity::Fatal));
        assert_eq!("ERROR3".parse(), Ok(Severity::Error));
        assert!("loud"
            .parse::<Severity>()
            .unwrap_err()
            .to_string()
            .contains("\"loud\""));
    }
}
