//! Time-range query parameters shared by the search and analytics
//! endpoints: `since=1h`, or `start`/`end` in Unix seconds or RFC 3339.

use chaintrace_model::{DurationNanos, UnixNanos};
use serde::Deserialize;

/// The raw parameters.
#[derive(Debug, Default, Deserialize)]
pub struct RangeParams {
    /// How far back from now, e.g. `15m`, `1h`, `7d`.
    pub since: Option<String>,
    /// Range start: Unix seconds or RFC 3339.
    pub start: Option<String>,
    /// Range end: Unix seconds or RFC 3339; defaults to now.
    pub end: Option<String>,
}

/// A checked range; `None` ends are open.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TimeRange {
    /// Earliest trace start.
    pub start: Option<UnixNanos>,
    /// Latest trace start.
    pub end: Option<UnixNanos>,
}

impl RangeParams {
    /// Checks the parameters; `default_since` applies when none is given.
    pub fn resolve(&self, default_since: Option<&str>) -> Result<TimeRange, String> {
        let end = match self.end.as_deref().filter(|s| !s.is_empty()) {
            Some(text) => Some(text.parse::<UnixNanos>().map_err(|e| format!("end: {e}"))?),
            None => None,
        };
        let start = match (
            self.start.as_deref().filter(|s| !s.is_empty()),
            self.since.as_deref(),
        ) {
            (Some(_), Some(_)) => return Err("give either since or start, not both".to_string()),
            (Some(text), None) => Some(
                text.parse::<UnixNanos>()
                    .map_err(|e| format!("start: {e}"))?,
            ),
            (None, since) => match since.or(default_since) {
                Some(text) => {
                    let d: DurationNanos = text.parse().map_err(|e| format!("since: {e}"))?;
                    let anchor = end.unwrap_or_else(UnixNanos::now);
                    Some(UnixNanos(anchor.0.saturating_sub(d.0)))
                }
                None => None,
            },
        };
        if let (Some(s), Some(e)) = (start, end) {
            if s > e {
                return Err("start is after end".to_string());
            }
        }
        Ok(TimeRange { start, end })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_from_since_or_start_end() {
        let p = |since: Option<&str>, start: Option<&str>, end: Option<&str>| RangeParams {
            since: since.map(Into::into),
            start: start.map(Into::into),
            end: end.map(Into::into),
        };
        let r = p(None, Some("100"), Some("200")).resolve(None).unwrap();
        assert_eq!(r.start, Some(UnixNanos(100_000_000_000)));
        assert_eq!(r.end, Some(UnixNanos(200_000_000_000)));
        let r = p(Some("1h"), None, Some("7200")).resolve(None).unwrap();
        assert_eq!(r.start, Some(UnixNanos(3_600_000_000_000)));
        assert!(p(None, None, None).resolve(None).unwrap().start.is_none());
        assert!(p(None, None, None)
            .resolve(Some("1h"))
            .unwrap()
            .start
            .is_some());
        assert!(p(Some("1h"), Some("5"), None).resolve(None).is_err());
        assert!(p(None, Some("300"), Some("200"))
            .resolve(None)
            .unwrap_err()
            .contains("after"));
        assert!(p(Some("soon"), None, None)
            .resolve(None)
            .unwrap_err()
            .contains("since"));
    }
}
