use super::*;

#[test]
fn renders_every_kind_in_the_exposition_format() {
    let registry = Registry::new();
    registry
        .counter("b_total", "Things.", &[("kind", "x")])
        .inc_by(2);
    registry.counter("b_total", "Things.", &[("kind", "y")]);
    registry.gauge("a_bytes", "Bytes held.", &[]).set(1.5);
    let h = registry.histogram("c_seconds", "Time.", &[("op", "q")], &[0.1, 1.0]);
    h.observe(0.05);
    h.observe(0.5);
    h.observe(5.0);
    assert_eq!(
        registry.render(),
        "# HELP a_bytes Bytes held.\n\
         # TYPE a_bytes gauge\n\
         a_bytes 1.5\n\
         # HELP b_total Things.\n\
         # TYPE b_total counter\n\
         b_total{kind=\"x\"} 2\n\
         b_total{kind=\"y\"} 0\n\
         # HELP c_seconds Time.\n\
         # TYPE c_seconds histogram\n\
         c_seconds_bucket{op=\"q\",le=\"0.1\"} 1\n\
         c_seconds_bucket{op=\"q\",le=\"1\"} 2\n\
         c_seconds_bucket{op=\"q\",le=\"+Inf\"} 3\n\
         c_seconds_sum{op=\"q\"} 5.55\n\
         c_seconds_count{op=\"q\"} 3\n"
    );
}

#[test]
fn label_values_and_help_are_escaped() {
    let registry = Registry::new();
    registry.counter(
        "x_total",
        "Line one\nback\\slash \"quoted\".",
        &[("path", "a\\b\"c\nd")],
    );
    let text = registry.render();
    assert!(
        text.contains("# HELP x_total Line one\\nback\\\\slash \"quoted\".\n"),
        "{text}"
    );
    assert!(
        text.contains("x_total{path=\"a\\\\b\\\"c\\nd\"} 0\n"),
        "{text}"
    );
    assert_eq!(escape_label_value("plain ✓"), "plain ✓");
}

#[test]
fn asking_twice_gives_the_same_series() {
    let registry = Registry::new();
    let a = registry.counter("n_total", "N.", &[("k", "v")]);
    let b = registry.counter("n_total", "N.", &[("k", "v")]);
    a.inc();
    b.inc();
    assert_eq!(a.get(), 2);
    assert_eq!(registry.render().matches("n_total{").count(), 1);
}

#[test]
fn registered_handles_render_what_they_counted_before() {
    let registry = Registry::new();
    let early = Counter::new();
    early.inc_by(7);
    registry.register("early_total", "Early.", &[], early.clone());
    early.inc();
    assert!(registry.render().contains("early_total 8\n"));
}

#[test]
fn hooks_run_before_each_render() {
    let registry = Registry::new();
    let gauge = registry.gauge("g", "G.", &[]);
    let seen = Counter::new();
    let (g, s) = (gauge.clone(), seen.clone());
    registry.on_scrape(move || {
        s.inc();
        g.set(s.get() as f64);
    });
    assert!(registry.render().contains("\ng 1\n"));
    assert!(registry.render().contains("\ng 2\n"));
}

#[test]
fn floats_render_as_prometheus_reads_them() {
    assert_eq!(format_float(f64::INFINITY), "+Inf");
    assert_eq!(format_float(f64::NEG_INFINITY), "-Inf");
    assert_eq!(format_float(f64::NAN), "NaN");
    assert_eq!(format_float(3.0), "3");
    assert_eq!(format_float(0.0005), "0.0005");
}

#[test]
#[should_panic(expected = "registered twice in different ways")]
fn one_name_has_one_kind() {
    let registry = Registry::new();
    registry.counter("m", "M.", &[]);
    registry.gauge("m", "M.", &[]);
}

#[test]
#[should_panic(expected = "invalid metric name")]
fn names_are_checked() {
    Registry::new().counter("bad-name", "B.", &[]);
}

#[test]
#[should_panic(expected = "invalid label name")]
fn le_is_reserved_for_buckets() {
    Registry::new().histogram("h", "H.", &[("le", "1")], &[1.0]);
}

#[test]
fn concurrent_increments_through_the_registry_all_count() {
    let registry = Registry::new();
    std::thread::scope(|scope| {
        for _ in 0..4 {
            let registry = registry.clone();
            scope.spawn(move || {
                // Each thread resolves the handle once, then counts.
                let c = registry.counter("hits_total", "Hits.", &[("t", "all")]);
                for _ in 0..25_000 {
                    c.inc();
                }
            });
        }
    });
    assert!(registry.render().contains("hits_total{t=\"all\"} 100000\n"));
}
