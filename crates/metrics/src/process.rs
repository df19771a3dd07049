//! Metrics of the running process, read from `/proc/self` at each scrape
//! (Linux; elsewhere only the start time is there). The names are the
//! ones every Prometheus client library uses (`process_…`, no
//! `chaintrace_` prefix), so existing dashboards and alerts read them.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::Registry;

/// Registers `process_resident_memory_bytes`, `process_open_fds`,
/// `process_max_fds` and `process_start_time_seconds` in `registry`.
///
/// The start time is the moment this is called; call it at startup.
///
/// ```
/// let registry = chaintrace_metrics::Registry::new();
/// chaintrace_metrics::process::register(&registry);
/// assert!(registry.render().contains("# TYPE process_start_time_seconds gauge"));
/// ```
pub fn register(registry: &Registry) {
    let started = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    registry
        .gauge(
            "process_start_time_seconds",
            "Start time of the process since the Unix epoch, in seconds.",
            &[],
        )
        .set(started);
    if !cfg!(target_os = "linux") {
        return;
    }
    let rss = registry.gauge(
        "process_resident_memory_bytes",
        "Resident memory size in bytes.",
        &[],
    );
    let open = registry.gauge("process_open_fds", "Open file descriptors.", &[]);
    let max = registry.gauge(
        "process_max_fds",
        "Most file descriptors the process may open (its soft limit).",
        &[],
    );
    registry.on_scrape(move || {
        // A read that fails leaves the last value: a scrape never fails
        // for it.
        if let Some(bytes) = resident_bytes() {
            rss.set(bytes as f64);
        }
        if let Ok(entries) = std::fs::read_dir("/proc/self/fd") {
            // The directory handle read_dir holds is one of the entries.
            open.set(entries.count().saturating_sub(1) as f64);
        }
        if let Some(limit) = max_open_files() {
            max.set(limit as f64);
        }
    });
}

/// `VmRSS` of `/proc/self/status`, in bytes.
fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_kib_field(&status, "VmRSS:")
}

fn parse_kib_field(status: &str, field: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kib: u64 = line[field.len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// The soft limit of `Max open files` in `/proc/self/limits`.
fn max_open_files() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_kib_fields() {
        let status = "Name:\tx\nVmRSS:\t  1234 kB\nVmHWM:\t 2000 kB\n";
        assert_eq!(parse_kib_field(status, "VmRSS:"), Some(1234 * 1024));
        assert_eq!(parse_kib_field(status, "VmSwap:"), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn reads_this_process() {
        let registry = Registry::new();
        register(&registry);
        let text = registry.render();
        let value = |name: &str| -> f64 {
            let line = text
                .lines()
                .find(|l| l.starts_with(&format!("{name} ")))
                .unwrap_or_else(|| panic!("{name} in {text}"));
            line[name.len() + 1..].parse().unwrap()
        };
        assert!(value("process_resident_memory_bytes") > 0.0);
        assert!(value("process_open_fds") >= 3.0);
        assert!(value("process_max_fds") >= value("process_open_fds"));
        assert!(value("process_start_time_seconds") > 1.7e9);
    }
}
