//! `GET /metrics` on the query API of `chaintrace serve`: the scrape parses
//! as the Prometheus text format 0.0.4 (every sample in a family with HELP
//! and TYPE, no series twice, histograms cumulative with `_count` equal to
//! the `+Inf` bucket), and the counters a user watches move by exactly what
//! was sent: spans over OTLP/HTTP and as JSON spans, bad requests, a trace
//! read and a refused SQL query.

use std::collections::{BTreeMap, HashMap};

use prost::Message;

use crate::harness::{testdata, Server};

/// A sample's labels, sorted by name.
type Labels = BTreeMap<String, String>;

/// One parsed scrape.
#[derive(Debug, Default)]
pub(crate) struct Scrape {
    /// Family name → (help, type).
    families: HashMap<String, (String, String)>,
    /// (sample name, labels) → value.
    samples: BTreeMap<(String, Labels), f64>,
}

impl Scrape {
    /// Parses `text`, panicking with the line that breaks the format.
    fn parse(text: &str) -> Scrape {
        let mut scrape = Scrape::default();
        let mut help: HashMap<String, String> = HashMap::new();
        assert!(text.ends_with('\n'), "the last line ends with a line feed");
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, text) = rest.split_once(' ').unwrap_or((rest, ""));
                assert!(
                    help.insert(name.to_string(), text.to_string()).is_none(),
                    "HELP twice for {name}"
                );
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').expect(line);
                assert!(
                    ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                    "{line}"
                );
                let text = help
                    .get(name)
                    .unwrap_or_else(|| panic!("TYPE before HELP for {name}"));
                assert!(!text.is_empty(), "empty HELP for {name}");
                let family = (text.clone(), kind.to_string());
                assert!(
                    scrape.families.insert(name.to_string(), family).is_none(),
                    "TYPE twice for {name}"
                );
            } else if line.starts_with('#') || line.is_empty() {
                panic!("unexpected line {line:?}");
            } else {
                let (name, labels, value) = parse_sample(line);
                let family = scrape
                    .family_of(&name)
                    .unwrap_or_else(|| panic!("sample {line:?} has no HELP and TYPE before it"));
                let kind = &scrape.families[&family].1;
                if kind == "counter" {
                    assert!(name.ends_with("_total"), "counter {name} ends in _total");
                    assert!(value >= 0.0, "{line}");
                }
                let key = (name, labels);
                assert!(
                    scrape.samples.insert(key.clone(), value).is_none(),
                    "series twice: {key:?}"
                );
            }
        }
        scrape.check_histograms();
        scrape
    }

    /// The family a sample belongs to: itself, or a histogram's name
    /// without `_bucket`, `_sum` or `_count`.
    fn family_of(&self, sample: &str) -> Option<String> {
        if self.families.contains_key(sample) {
            return Some(sample.to_string());
        }
        ["_bucket", "_sum", "_count"].iter().find_map(|suffix| {
            let base = sample.strip_suffix(suffix)?;
            (self.families.get(base)?.1 == "histogram").then(|| base.to_string())
        })
    }

    /// Every histogram series: buckets cumulative in `le` order, a `+Inf`
    /// bucket, `_count` equal to it, a `_sum`.
    fn check_histograms(&self) {
        for (family, (_, kind)) in &self.families {
            if kind != "histogram" {
                continue;
            }
            let mut buckets: BTreeMap<Labels, Vec<(f64, f64)>> = BTreeMap::new();
            for ((name, labels), value) in &self.samples {
                if *name == format!("{family}_bucket") {
                    let mut rest = labels.clone();
                    let le = rest.remove("le").expect("bucket with le");
                    let le: f64 = le.parse().unwrap_or_else(|_| panic!("le {le:?}"));
                    buckets.entry(rest).or_default().push((le, *value));
                }
            }
            for (labels, mut series) in buckets {
                series.sort_by(|a, b| a.0.total_cmp(&b.0));
                assert!(
                    series.windows(2).all(|w| w[0].1 <= w[1].1),
                    "{family}{labels:?}: buckets not cumulative: {series:?}"
                );
                let (le, inf) = *series.last().unwrap();
                assert_eq!(le, f64::INFINITY, "{family}{labels:?} has a +Inf bucket");
                let count = self.samples[&(format!("{family}_count"), labels.clone())];
                assert_eq!(count, inf, "{family}{labels:?}: _count is the +Inf bucket");
                assert!(self
                    .samples
                    .contains_key(&(format!("{family}_sum"), labels.clone())));
            }
        }
    }

    /// The value of `name{labels}`, panicking if there is no such series.
    pub(crate) fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let labels: Labels = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        *self
            .samples
            .get(&(name.to_string(), labels.clone()))
            .unwrap_or_else(|| panic!("no series {name}{labels:?}"))
    }

    /// The sum of `name` over every series whose labels include `labels`.
    fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .filter(|((n, l), _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|(_, v)| v)
            .sum()
    }
}

/// `name{a="x",b="y"} value`, label values unescaped.
fn parse_sample(line: &str) -> (String, Labels, f64) {
    let name_end = line
        .find(['{', ' '])
        .unwrap_or_else(|| panic!("no value in {line:?}"));
    let name = &line[..name_end];
    assert!(
        !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
            && !name.starts_with(|c: char| c.is_ascii_digit()),
        "bad metric name in {line:?}"
    );
    let mut labels = Labels::new();
    let mut rest = &line[name_end..];
    if let Some(body) = rest.strip_prefix('{') {
        let mut chars = body.char_indices().peekable();
        let end = loop {
            let (start, c) = chars
                .next()
                .unwrap_or_else(|| panic!("unclosed {{ in {line:?}"));
            if c == '}' {
                break start;
            }
            if c == ',' {
                continue;
            }
            let eq = body[start..].find('=').expect(line) + start;
            let key = &body[start..eq];
            while chars.peek().is_some_and(|&(i, _)| i <= eq) {
                chars.next();
            }
            assert_eq!(chars.next().map(|(_, c)| c), Some('"'), "{line:?}");
            let mut value = String::new();
            loop {
                match chars.next().map(|(_, c)| c) {
                    Some('\\') => match chars.next().map(|(_, c)| c) {
                        Some('\\') => value.push('\\'),
                        Some('"') => value.push('"'),
                        Some('n') => value.push('\n'),
                        other => panic!("bad escape {other:?} in {line:?}"),
                    },
                    Some('"') => break,
                    Some(c) => value.push(c),
                    None => panic!("unclosed label value in {line:?}"),
                }
            }
            assert!(
                labels.insert(key.to_string(), value).is_none(),
                "label {key} twice in {line:?}"
            );
        };
        rest = &body[end + 1..];
    }
    let value = rest
        .strip_prefix(' ')
        .unwrap_or_else(|| panic!("no space before the value in {line:?}"));
    let value: f64 = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line:?}")),
    };
    (name.to_string(), labels, value)
}

pub(crate) async fn scrape(server: &Server) -> Scrape {
    let response = reqwest::get(format!("{}/metrics", server.api))
        .await
        .expect("GET /metrics");
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    Scrape::parse(&response.text().await.unwrap())
}

#[test]
fn the_parser_reads_escapes_and_refuses_duplicates() {
    let text = "# HELP a_total A.\n# TYPE a_total counter\na_total{p=\"x\\\\y\\\"z\\n\"} 2\n";
    let scrape = Scrape::parse(text);
    assert_eq!(scrape.value("a_total", &[("p", "x\\y\"z\n")]), 2.0);
    let twice = format!("{text}a_total{{p=\"x\\\\y\\\"z\\n\"}} 3\n");
    assert!(std::panic::catch_unwind(|| Scrape::parse(&twice)).is_err());
    let orphan = "b 1\n";
    assert!(std::panic::catch_unwind(|| Scrape::parse(orphan)).is_err());
}

#[tokio::test]
async fn metrics_count_what_was_sent_and_parse_as_prometheus_text() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let before = scrape(&server).await;
    // Every receiver that is served shows, with every reason from the start.
    for protocol in [
        "otlp_grpc",
        "otlp_http",
        "jaeger_compact",
        "jaeger_binary",
        "jaeger_http",
        "zipkin",
        "json_spans",
    ] {
        let p = ("protocol", protocol);
        before.value("chaintrace_receiver_requests_total", &[p]);
        before.value(
            "chaintrace_receiver_spans_rejected_total",
            &[p, ("reason", "invalid")],
        );
        before.value(
            "chaintrace_receiver_requests_refused_total",
            &[p, ("reason", "malformed")],
        );
    }
    assert_eq!(before.families["chaintrace_head_bytes"].1, "gauge");
    assert_eq!(
        before.families["chaintrace_wal_sync_duration_seconds"].1,
        "histogram"
    );
    assert!(before.value("process_resident_memory_bytes", &[]) > 0.0);
    assert!(before.value("process_open_fds", &[]) > 0.0);

    // OTLP/HTTP: 3 good spans; then 3 more of which one has a 6-byte span
    // id (partial success); then a body that is not protobuf (400) and a
    // Content-Type the receiver does not take (415).
    let client = reqwest::Client::new();
    let good = crate::otlp::request(901, 3).encode_to_vec();
    let mut partly = crate::otlp::request(902, 3);
    partly.resource_spans[0].scope_spans[0].spans[2].span_id = vec![1, 2, 3, 4, 5, 6];
    let partly = partly.encode_to_vec();
    for body in [&good, &partly] {
        let (status, _) = server
            .post_traces("application/x-protobuf", body.clone(), false)
            .await;
        assert_eq!(status, 200);
    }
    let garbage = b"\xff\xff\xff\xff".to_vec();
    let (status, _) = server
        .post_traces("application/x-protobuf", garbage.clone(), false)
        .await;
    assert_eq!(status, 400);
    let (status, _) = server
        .post_traces("text/plain", b"hi".to_vec(), false)
        .await;
    assert_eq!(status, 415);

    // JSON spans: the founding document's span, then two that are not spans.
    let seed = testdata("seed-span.json");
    let not_spans = b"[1, 2]".to_vec();
    for (body, want) in [(&seed, 200), (&not_spans, 400)] {
        let response = client
            .post(format!("{}/api/v1/spans", server.api))
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), want);
    }

    // The query API: one trace read, one SQL query refused.
    let trace = crate::otlp::hex(&crate::otlp::trace_id(901));
    let (status, _) = server.get_json(&format!("/api/v1/traces/{trace}")).await;
    assert_eq!(status, 200);
    let response = client
        .post(format!("{}/api/v1/sql", server.api))
        .body(r#"{"query": "DELETE FROM spans"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);

    let after = scrape(&server).await;
    let moved = |name: &str, labels: &[(&str, &str)]| {
        after.value(name, labels) - before.value(name, labels)
    };
    let http = ("protocol", "otlp_http");
    assert_eq!(moved("chaintrace_receiver_requests_total", &[http]), 4.0);
    assert_eq!(
        moved("chaintrace_receiver_received_bytes_total", &[http]),
        (good.len() + partly.len() + garbage.len()) as f64,
        "bodies as sent; the 415 is refused before its body is read"
    );
    assert_eq!(
        moved("chaintrace_receiver_spans_received_total", &[http]),
        6.0
    );
    assert_eq!(
        moved("chaintrace_receiver_spans_accepted_total", &[http]),
        5.0
    );
    let rejected = |labels: &[(&str, &str)], reason| {
        let mut labels = labels.to_vec();
        labels.push(("reason", reason));
        after.value("chaintrace_receiver_spans_rejected_total", &labels)
    };
    assert_eq!(rejected(&[http], "invalid"), 1.0);
    let refused = |labels: &[(&str, &str)], reason| {
        let mut labels = labels.to_vec();
        labels.push(("reason", reason));
        after.value("chaintrace_receiver_requests_refused_total", &labels)
    };
    assert_eq!(refused(&[http], "malformed"), 1.0);
    assert_eq!(refused(&[http], "unsupported"), 1.0);
    assert_eq!(
        after.sum("chaintrace_receiver_requests_refused_total", &[http]),
        2.0
    );

    let json = ("protocol", "json_spans");
    assert_eq!(moved("chaintrace_receiver_requests_total", &[json]), 2.0);
    assert_eq!(
        moved("chaintrace_receiver_received_bytes_total", &[json]),
        (seed.len() + not_spans.len()) as f64
    );
    assert_eq!(
        moved("chaintrace_receiver_spans_received_total", &[json]),
        3.0
    );
    assert_eq!(
        moved("chaintrace_receiver_spans_accepted_total", &[json]),
        1.0
    );
    assert_eq!(rejected(&[json], "invalid"), 2.0);
    // All spans accounted for, on every receiver.
    for protocol in ["otlp_http", "json_spans", "otlp_grpc", "zipkin"] {
        let p = ("protocol", protocol);
        assert_eq!(
            after.value("chaintrace_receiver_spans_received_total", &[p]),
            after.value("chaintrace_receiver_spans_accepted_total", &[p])
                + after.sum("chaintrace_receiver_spans_rejected_total", &[p]),
            "{protocol}: received = accepted + rejected"
        );
    }
    // Receivers nobody sent to did not move.
    assert_eq!(
        moved(
            "chaintrace_receiver_requests_total",
            &[("protocol", "zipkin")]
        ),
        0.0
    );

    // The store: the 6 accepted spans are in memory or in blocks; every
    // fsync that committed them is in the latency histogram.
    assert_eq!(
        after.value("chaintrace_head_spans", &[]) + after.value("chaintrace_block_spans", &[]),
        6.0
    );
    assert!(
        after.value("chaintrace_head_bytes", &[]) > 0.0
            || after.value("chaintrace_blocks", &[]) > 0.0
    );
    let syncs = after.value("chaintrace_wal_syncs_total", &[]);
    assert!(syncs >= 1.0, "3 stored requests were fsynced");
    assert_eq!(
        after.value("chaintrace_wal_sync_duration_seconds_count", &[]),
        syncs
    );

    // The query API: one request per route template, the template as label.
    let latency = "chaintrace_api_request_duration_seconds_count";
    assert_eq!(
        after.value(latency, &[("endpoint", "/api/v1/traces/{trace_id}")]),
        1.0
    );
    assert_eq!(after.value(latency, &[("endpoint", "/api/v1/sql")]), 1.0);
    assert!(
        !after
            .samples
            .keys()
            .any(|(_, l)| l.get("endpoint").is_some_and(|e| e.contains(&trace))),
        "raw paths never become labels"
    );
    assert_eq!(
        moved(
            "chaintrace_sql_queries_refused_total",
            &[("reason", "invalid")]
        ),
        1.0
    );
    assert_eq!(after.value("chaintrace_sql_queries_running", &[]), 0.0);
}
