//! The [`Registry`]: names, help texts and labels for metric handles, and
//! their rendering in the Prometheus text exposition format 0.0.4.
//!
//! Registering takes a lock and may allocate; it is meant for startup (or
//! the first time a label set is met). Updating a handle never touches the
//! registry.

use std::fmt::Write as _;
use std::sync::{Arc, Mutex, PoisonError};

use crate::metric::{Counter, Gauge, Histogram};

/// The `Content-Type` of [`Registry::render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A handle of any kind, as the registry holds it.
#[derive(Debug, Clone)]
pub enum Metric {
    /// See [`Counter`].
    Counter(Counter),
    /// See [`Gauge`].
    Gauge(Gauge),
    /// See [`Histogram`].
    Histogram(Histogram),
}

impl Metric {
    fn kind(&self) -> &'static str {
        match self {
            Metric::Counter(_) => "counter",
            Metric::Gauge(_) => "gauge",
            Metric::Histogram(_) => "histogram",
        }
    }
}

impl From<Counter> for Metric {
    fn from(c: Counter) -> Self {
        Metric::Counter(c)
    }
}

impl From<Gauge> for Metric {
    fn from(g: Gauge) -> Self {
        Metric::Gauge(g)
    }
}

impl From<Histogram> for Metric {
    fn from(h: Histogram) -> Self {
        Metric::Histogram(h)
    }
}

/// One metric name: its help, its kind, its label names and its series.
#[derive(Debug)]
struct Family {
    name: String,
    help: String,
    kind: &'static str,
    label_names: Vec<String>,
    /// Label values (in `label_names` order) and the handle, in the order
    /// they were registered.
    series: Vec<(Vec<String>, Metric)>,
}

type Hook = Arc<dyn Fn() + Send + Sync>;

#[derive(Default)]
struct Inner {
    families: Mutex<Vec<Family>>,
    hooks: Mutex<Vec<Hook>>,
}

/// Metric families by name, and what to run before each scrape. Cheap to
/// clone; clones share everything.
///
/// A name is registered with one kind, one help text and one set of label
/// names; each distinct set of label values is one series. Asking again for
/// a series that exists returns its handle, so there are never two.
///
/// ```
/// use chaintrace_metrics::Registry;
/// let registry = Registry::new();
/// let spans = registry.counter(
///     "chaintrace_spans_total",
///     "Spans received.",
///     &[("protocol", "otlp_http")],
/// );
/// spans.inc_by(3);
/// let text = registry.render();
/// assert!(text.contains("# TYPE chaintrace_spans_total counter\n"));
/// assert!(text.contains("chaintrace_spans_total{protocol=\"otlp_http\"} 3\n"));
/// ```
#[derive(Clone, Default)]
pub struct Registry {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let families = self.families();
        f.debug_struct("Registry")
            .field(
                "families",
                &families.iter().map(|f| &f.name).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Registry::default()
    }

    fn families(&self) -> std::sync::MutexGuard<'_, Vec<Family>> {
        // Registration never leaves a family half-changed at a panic.
        self.inner
            .families
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The counter `name{labels}`, made at zero the first time.
    ///
    /// # Panics
    ///
    /// As [`Registry::register`].
    pub fn counter(&self, name: &str, help: &str, labels: &[(&str, &str)]) -> Counter {
        match self.get_or_register(name, help, labels, || Counter::new().into()) {
            Metric::Counter(c) => c,
            other => unreachable!("{name} is a {}", other.kind()),
        }
    }

    /// The gauge `name{labels}`, made at zero the first time.
    ///
    /// # Panics
    ///
    /// As [`Registry::register`].
    pub fn gauge(&self, name: &str, help: &str, labels: &[(&str, &str)]) -> Gauge {
        match self.get_or_register(name, help, labels, || Gauge::new().into()) {
            Metric::Gauge(g) => g,
            other => unreachable!("{name} is a {}", other.kind()),
        }
    }

    /// The histogram `name{labels}`, made empty with `bounds` the first time
    /// (a series that exists keeps its own bounds).
    ///
    /// # Panics
    ///
    /// As [`Registry::register`] and [`Histogram::new`].
    pub fn histogram(
        &self,
        name: &str,
        help: &str,
        labels: &[(&str, &str)],
        bounds: &[f64],
    ) -> Histogram {
        match self.get_or_register(name, help, labels, || Histogram::new(bounds).into()) {
            Metric::Histogram(h) => h,
            other => unreachable!("{name} is a {}", other.kind()),
        }
    }

    /// Renders an existing handle as `name{labels}`: for components that
    /// count from the moment they start and are shown in a registry later.
    /// A series already registered under these labels is replaced.
    ///
    /// # Panics
    ///
    /// When `name` or a label name is not a valid Prometheus name, when
    /// `name` was registered before with another kind, help text or label
    /// names, or when a histogram has a label `le`. Names and labels are
    /// chosen in code, so each of these is a bug that any test registering
    /// the metric finds.
    pub fn register(
        &self,
        name: &str,
        help: &str,
        labels: &[(&str, &str)],
        metric: impl Into<Metric>,
    ) {
        let metric = metric.into();
        let mut families = self.families();
        let family = family_for(&mut families, name, help, labels, metric.kind());
        let values: Vec<String> = labels.iter().map(|(_, v)| v.to_string()).collect();
        match family.series.iter_mut().find(|(v, _)| *v == values) {
            Some(series) => series.1 = metric,
            None => family.series.push((values, metric)),
        }
    }

    fn get_or_register(
        &self,
        name: &str,
        help: &str,
        labels: &[(&str, &str)],
        make: impl FnOnce() -> Metric,
    ) -> Metric {
        let metric = make();
        let mut families = self.families();
        let family = family_for(&mut families, name, help, labels, metric.kind());
        if let Some((_, existing)) = family.series.iter().find(|(v, _)| {
            v.iter()
                .map(String::as_str)
                .eq(labels.iter().map(|(_, v)| *v))
        }) {
            return existing.clone();
        }
        let values = labels.iter().map(|(_, v)| v.to_string()).collect();
        family.series.push((values, metric.clone()));
        metric
    }

    /// Runs `hook` at the start of every [`Registry::render`], before
    /// anything is read: for gauges and counters that follow state kept
    /// elsewhere (a store's statistics, `/proc/self`). Hooks may block
    /// briefly (file reads); render from a thread that may block.
    pub fn on_scrape(&self, hook: impl Fn() + Send + Sync + 'static) {
        self.inner
            .hooks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Arc::new(hook));
    }

    /// Every family in the text exposition format 0.0.4, sorted by name,
    /// each with its `# HELP` and `# TYPE` lines; serve it with
    /// [`CONTENT_TYPE`].
    pub fn render(&self) -> String {
        let hooks: Vec<Hook> = self
            .inner
            .hooks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        // Outside the families' lock: a hook may register a series.
        for hook in hooks {
            hook();
        }
        let families = self.families();
        let mut order: Vec<&Family> = families.iter().collect();
        order.sort_by(|a, b| a.name.cmp(&b.name));
        let mut out = String::new();
        for family in order {
            render_family(&mut out, family);
        }
        out
    }
}

/// The family `name`, made if new; checks that it is asked for the same way
/// as before.
fn family_for<'a>(
    families: &'a mut Vec<Family>,
    name: &str,
    help: &str,
    labels: &[(&str, &str)],
    kind: &'static str,
) -> &'a mut Family {
    assert!(is_metric_name(name), "invalid metric name {name:?}");
    for (label, _) in labels {
        assert!(
            is_label_name(label) && !(kind == "histogram" && *label == "le"),
            "invalid label name {label:?} for {name}"
        );
    }
    let label_names: Vec<String> = labels.iter().map(|(n, _)| n.to_string()).collect();
    let at = match families.iter().position(|f| f.name == name) {
        Some(at) => {
            let family = &families[at];
            assert!(
                family.kind == kind && family.help == help && family.label_names == label_names,
                "{name} registered twice in different ways: {} {:?} {:?}, then {kind} {help:?} {label_names:?}",
                family.kind,
                family.help,
                family.label_names,
            );
            at
        }
        None => {
            families.push(Family {
                name: name.to_string(),
                help: help.to_string(),
                kind,
                label_names,
                series: Vec::new(),
            });
            families.len() - 1
        }
    };
    &mut families[at]
}

/// `[a-zA-Z_:][a-zA-Z0-9_:]*`
fn is_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// `[a-zA-Z_][a-zA-Z0-9_]*`, not starting with `__` (reserved).
fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    !name.starts_with("__")
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn render_family(out: &mut String, family: &Family) {
    let name = &family.name;
    let _ = writeln!(out, "# HELP {name} {}", escape_help(&family.help));
    let _ = writeln!(out, "# TYPE {name} {}", family.kind);
    for (values, metric) in &family.series {
        let labels: Vec<(&str, &str)> = family
            .label_names
            .iter()
            .map(String::as_str)
            .zip(values.iter().map(String::as_str))
            .collect();
        match metric {
            Metric::Counter(c) => sample(out, name, "", &labels, None, &c.get().to_string()),
            Metric::Gauge(g) => sample(out, name, "", &labels, None, &format_float(g.get())),
            Metric::Histogram(h) => {
                let snapshot = h.snapshot();
                let bounds = snapshot
                    .bounds
                    .iter()
                    .map(|b| format_float(*b))
                    .chain(std::iter::once("+Inf".to_string()));
                for (le, count) in bounds.zip(&snapshot.cumulative) {
                    let le = Some(("le", le.as_str()));
                    sample(out, name, "_bucket", &labels, le, &count.to_string());
                }
                sample(
                    out,
                    name,
                    "_sum",
                    &labels,
                    None,
                    &format_float(snapshot.sum),
                );
                let count = snapshot.count().to_string();
                sample(out, name, "_count", &labels, None, &count);
            }
        }
    }
}

/// One line: `name{a="x",le="1"} value`.
fn sample(
    out: &mut String,
    name: &str,
    suffix: &str,
    labels: &[(&str, &str)],
    extra: Option<(&str, &str)>,
    value: &str,
) {
    out.push_str(name);
    out.push_str(suffix);
    let mut all = labels.iter().copied().chain(extra).peekable();
    if all.peek().is_some() {
        out.push('{');
        for (i, (label, value)) in all.enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "{label}=\"{}\"", escape_label_value(value));
        }
        out.push('}');
    }
    out.push(' ');
    out.push_str(value);
    out.push('\n');
}

/// A label value as the format wants it: `\`, `"` and line feeds escaped.
pub fn escape_label_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// A help text as the format wants it: `\` and line feeds escaped.
fn escape_help(help: &str) -> String {
    help.replace('\\', "\\\\").replace('\n', "\\n")
}

/// A float as Prometheus reads it: `+Inf`, `-Inf`, `NaN`, or Rust's
/// shortest round-trip decimal (never an exponent Go could not parse).
fn format_float(value: f64) -> String {
    if value.is_nan() {
        "NaN".to_string()
    } else if value == f64::INFINITY {
        "+Inf".to_string()
    } else if value == f64::NEG_INFINITY {
        "-Inf".to_string()
    } else {
        value.to_string()
    }
}

#[cfg(test)]
#[path = "registry_tests.rs"]
mod tests;
